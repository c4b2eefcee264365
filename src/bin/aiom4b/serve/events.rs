//! The jobs' events as a numbered stream for Server-Sent Events.
//!
//! The runner calls [`EventHub`] (a [`JobEvents`]) from a job's thread and from the engine's
//! threads; each event becomes one small JSON record with a sequence number, kept in a ring of
//! the last [`RING_LEN`] records (so a client reconnecting with `Last-Event-ID` gets what it
//! missed) and sent on a broadcast channel to the connected clients. Progress is the engine's
//! own sample count ([`JobEvent::Encoded`]), at most [`PROGRESS_PER_SEC`] records per job per
//! second so that a fast conversion does not flood the clients.
use aiom4b::workflow::{JobEvent, JobEvents};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use uuid::Uuid;

/// Records kept for reconnecting clients: a few minutes of several busy jobs.
const RING_LEN: usize = 4096;
/// Records a slow client may fall behind before it loses some (it then reconnects with
/// `Last-Event-ID` and is served from the ring).
const CHANNEL_LEN: usize = 1024;
const PROGRESS_PER_SEC: u32 = 4;

/// One event as sent: `id:` is `seq`, `event:` is `name`, `data:` is `data`.
#[derive(Debug, Clone)]
pub struct Record {
    pub seq: u64,
    pub job: Uuid,
    pub name: &'static str,
    pub data: String,
}

impl Record {
    /// The last event of a job's stream.
    pub fn is_final(&self) -> bool {
        self.name == "finished"
    }
}

#[derive(Default)]
struct JobClock {
    sample_rate: u32,
    started: Option<Instant>,
    last_progress: Option<Instant>,
}

struct Inner {
    next_seq: u64,
    ring: VecDeque<Arc<Record>>,
    clocks: HashMap<Uuid, JobClock>,
    /// The `finished` record's number of every job that ended in this process (one entry of
    /// 24 bytes per job; outlives the ring so that a late reconnect still learns it is done).
    finals: HashMap<Uuid, u64>,
}

pub struct EventHub {
    first_seq: u64,
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Record>>,
}

/// The first number of this process's stream: microseconds since 1970 at start. A restarted
/// server thus numbers on above every id the previous one sent (it would have had to send more
/// than one record per microsecond of its life to catch up; progress is throttled to
/// [`PROGRESS_PER_SEC`] per job), so a client reconnecting with an old `Last-Event-ID` gets
/// the new records instead of waiting for the count to pass its id. Below 2^53, so the
/// page's JavaScript reads it exactly.
fn first_seq() -> u64 {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    micros.max(1)
}

impl EventHub {
    pub fn new() -> Self {
        let first = first_seq();
        EventHub {
            first_seq: first,
            inner: Mutex::new(Inner {
                next_seq: first,
                ring: VecDeque::with_capacity(RING_LEN),
                clocks: HashMap::new(),
                finals: HashMap::new(),
            }),
            tx: broadcast::channel(CHANNEL_LEN).0,
        }
    }

    /// A receiver of new records and the records after `after` still in the ring, taken
    /// under one lock so that nothing falls between them.
    pub fn subscribe(
        &self,
        after: u64,
        job: Option<Uuid>,
    ) -> (Vec<Arc<Record>>, broadcast::Receiver<Arc<Record>>) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.tx.subscribe();
        let missed = inner
            .ring
            .iter()
            .filter(|r| r.seq > after && job.is_none_or(|j| r.job == j))
            .cloned()
            .collect();
        (missed, rx)
    }

    /// The number of the last record (one below this process's first when none yet).
    pub fn last_seq(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_seq
            - 1
    }

    /// Whether `id` was handed out by this process: a record's number, or [`Self::last_seq`]
    /// (one below the first record's) as the id of an event made from a job's record.
    pub fn issued_here(&self, id: u64) -> bool {
        id + 1 >= self.first_seq
    }

    /// The number of `job`'s `finished` record, if it ended in this process.
    pub fn final_seq(&self, job: Uuid) -> Option<u64> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finals
            .get(&job)
            .copied()
    }

    /// Records an event made by the service itself (a pending job cancelled, say).
    pub fn publish(&self, job: Uuid, name: &'static str, data: serde_json::Value) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.push(&mut inner, job, name, data);
    }

    fn push(&self, inner: &mut Inner, job: Uuid, name: &'static str, data: serde_json::Value) {
        let record = Arc::new(Record {
            seq: inner.next_seq,
            job,
            name,
            data: json!({ "job_id": job, "event": name, "data": data }).to_string(),
        });
        inner.next_seq += 1;
        if record.is_final() {
            inner.finals.insert(job, record.seq);
        }
        if inner.ring.len() == RING_LEN {
            inner.ring.pop_front();
        }
        inner.ring.push_back(record.clone());
        // No receiver is not an error: nobody is watching.
        let _ = self.tx.send(record);
    }
}

impl JobEvents for EventHub {
    fn event(&self, job: Uuid, event: JobEvent<'_>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (name, data) = match event {
            JobEvent::Started { folders } => {
                inner.clocks.insert(job, JobClock::default());
                ("started", json!({ "folders": folders }))
            }
            JobEvent::Step(step) => {
                if step == aiom4b::workflow::JobStep::Convert {
                    inner.clocks.entry(job).or_default().started = Some(Instant::now());
                }
                ("step", json!({ "step": step }))
            }
            JobEvent::Planned {
                duration_secs,
                sample_rate,
            } => {
                inner.clocks.entry(job).or_default().sample_rate = sample_rate;
                (
                    "planned",
                    json!({ "duration_secs": duration_secs, "sample_rate": sample_rate }),
                )
            }
            JobEvent::Engine(stage) => (
                "stage",
                json!({ "stage": format!("{stage:?}").to_lowercase() }),
            ),
            JobEvent::Encoded { done, total } => {
                let clock = inner.clocks.entry(job).or_default();
                let now = Instant::now();
                let due = clock.last_progress.is_none_or(|t| {
                    now.duration_since(t) >= Duration::from_secs(1) / PROGRESS_PER_SEC
                });
                if !due && done < total {
                    return;
                }
                clock.last_progress = Some(now);
                let rate = f64::from(clock.sample_rate.max(1));
                let encoded_secs = done as f64 / rate;
                let elapsed = clock
                    .started
                    .map(|t| now.duration_since(t).as_secs_f64())
                    .unwrap_or(0.0);
                let realtime = (elapsed > 0.0).then(|| encoded_secs / elapsed);
                let eta_secs = realtime
                    .filter(|r| *r > 0.0)
                    .map(|r| (total.saturating_sub(done)) as f64 / rate / r);
                let fraction = if total == 0 {
                    0.0
                } else {
                    (done as f64 / total as f64).min(1.0)
                };
                (
                    "progress",
                    json!({
                        "fraction": fraction,
                        "encoded_secs": encoded_secs,
                        "realtime_factor": realtime,
                        "eta_secs": eta_secs,
                    }),
                )
            }
            JobEvent::Finding(f) => ("finding", json!(f)),
            JobEvent::Retrying {
                attempt,
                delay,
                message,
            } => (
                "retrying",
                json!({ "attempt": attempt, "delay_secs": delay.as_secs_f64(), "message": message }),
            ),
            JobEvent::Finished(outcome) => {
                inner.clocks.remove(&job);
                (
                    "finished",
                    json!({ "job": super::api::JobView::from(&outcome.job), "warnings": outcome.warnings }),
                )
            }
            // File-level decode counts and the store's own progress copy add nothing that
            // `progress` does not say.
            _ => return,
        };
        self.push(&mut inner, job, name, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_hub_numbers_above_the_previous_one() {
        let before = EventHub::new();
        for _ in 0..100 {
            before.publish(Uuid::nil(), "step", json!({}));
        }
        let last_before = before.last_seq();
        std::thread::sleep(Duration::from_millis(2));
        let after = EventHub::new();
        after.publish(Uuid::nil(), "step", json!({}));
        // A client that saw the old stream reconnects with its last id and gets the new record.
        let (missed, _rx) = after.subscribe(last_before, None);
        assert_eq!(missed.len(), 1, "{last_before} vs {}", after.last_seq());
        assert!(after.last_seq() < (1u64 << 53));
    }
}
