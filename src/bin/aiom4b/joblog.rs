//! Each job's own log lines, kept in the job store so that the service (`GET /jobs/{id}/log`)
//! and the web page's job details can show them, from whichever process ran the job.
//!
//! A `tracing` layer picks the events inside the library's `job` span (it carries `job_id`) at
//! INFO and above, and hands them through a bounded channel to one writer thread, which appends
//! them to the store in batches. Like the file log it never blocks a conversion: when the
//! channel is full, lines are dropped and counted, and the count is written as a line of its
//! own. A job keeps at most [`MAX_LINES_PER_JOB`] lines (a damaged book can log a warning per
//! frame); the rest are in the log files under `DATA_DIR/logs/`, which a line says.
//!
//! Written here rather than taken from a crate: the layer is small, and what it does — pick a
//! span field, batch into the project's own store, cap per job — is specific to aiom4b.
use aiom4b::workflow::jobs::JobLogLine;
use aiom4b::workflow::JobStore;
use chrono::Utc;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;
use uuid::Uuid;

/// Lines kept per job.
pub const MAX_LINES_PER_JOB: u32 = 1000;
/// Lines queued between the program and the writer thread.
const CHANNEL_LINES: usize = 4096;
/// Lines written in one transaction at most.
const BATCH: usize = 256;
/// Lines kept while no store is attached yet (before the workflow opens).
const EARLY_LINES: usize = 1000;

enum Msg {
    Line(Box<JobLogLine>),
    Attach(Arc<dyn JobStore>),
    Flush(Sender<()>),
}

struct Sink {
    tx: Sender<Msg>,
    dropped: Arc<AtomicU64>,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// The layer; install it with the other logging layers. The writer thread starts here.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let sink = SINK.get_or_init(|| {
        let (tx, rx) = bounded(CHANNEL_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let d = dropped.clone();
        // Without the thread the lines are dropped (and counted) at the full channel.
        let _ = std::thread::Builder::new()
            .name("aiom4b-joblog".into())
            .spawn(move || writer(rx, d));
        Sink { tx, dropped }
    });
    JobLogLayer {
        tx: sink.tx.clone(),
        dropped: sink.dropped.clone(),
    }
    .with_filter(tracing_subscriber::filter::filter_fn(|m| {
        // Symphonia logs an ERROR per bad frame (see logging.rs); `verify` reports them.
        *m.level() <= Level::INFO && !m.target().starts_with("symphonia")
    }))
}

/// Starts writing the captured lines into `store` (the lines captured so far included).
/// Called when the workflow opens; a later call replaces the store.
pub fn attach(store: Arc<dyn JobStore>) {
    if let Some(sink) = SINK.get() {
        let _ = sink.tx.send(Msg::Attach(store));
    }
}

/// Waits (up to `timeout`) until the lines logged so far are in the store.
pub fn flush(timeout: Duration) {
    if let Some(sink) = SINK.get() {
        let (ack, done) = bounded(1);
        if sink.tx.send_timeout(Msg::Flush(ack), timeout).is_ok() {
            let _ = done.recv_timeout(timeout);
        }
    }
}

struct JobLogLayer {
    tx: Sender<Msg>,
    dropped: Arc<AtomicU64>,
}

/// The job id of a `job` span, kept in the span's extensions.
struct JobSpan(Uuid);

impl<S> Layer<S> for JobLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "job" {
            return;
        }
        let mut v = Fields::default();
        attrs.record(&mut v);
        let job = v
            .fields
            .get("job_id")
            .and_then(|j| j.as_str())
            .and_then(|j| Uuid::parse_str(j).ok());
        if let (Some(job), Some(span)) = (job, ctx.span(id)) {
            span.extensions_mut().insert(JobSpan(job));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(job) = ctx.event_scope(event).and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<JobSpan>().map(|j| j.0))
        }) else {
            return;
        };
        let mut v = Fields::default();
        event.record(&mut v);
        let meta = event.metadata();
        let line = JobLogLine {
            seq: 0,
            job_id: job,
            time: Utc::now(),
            level: meta.level().to_string(),
            target: meta.target().to_string(),
            message: v.message,
            fields: v.fields,
        };
        match self.tx.try_send(Msg::Line(Box::new(line))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// An event's or span's fields: `message` apart, the rest as JSON values.
#[derive(Default)]
struct Fields {
    message: String,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
        } else {
            self.fields.insert(field.name().to_string(), value);
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

/// The writer thread: batches lines into the store, caps them per job, notes drops.
fn writer(rx: Receiver<Msg>, dropped: Arc<AtomicU64>) {
    let mut store: Option<Arc<dyn JobStore>> = None;
    let mut pending: Vec<JobLogLine> = Vec::new();
    let mut per_job: HashMap<Uuid, u32> = HashMap::new();
    let mut reported_drops = 0u64;
    let mut last_job: Option<Uuid> = None;
    loop {
        // Block for the first message, then take what else is queued, up to a batch.
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut acks = Vec::new();
        let mut take = |m: Msg, pending: &mut Vec<JobLogLine>| match m {
            Msg::Line(l) => {
                let n = per_job.entry(l.job_id).or_default();
                *n += 1;
                last_job = Some(l.job_id);
                if *n < MAX_LINES_PER_JOB {
                    pending.push(*l);
                } else if *n == MAX_LINES_PER_JOB {
                    pending.push(JobLogLine {
                        message: format!(
                            "more log lines of this job are not kept here (at most \
                             {MAX_LINES_PER_JOB}); all of them are in the log files under \
                             DATA_DIR/logs/"
                        ),
                        level: "WARN".into(),
                        target: "aiom4b::joblog".into(),
                        fields: Default::default(),
                        ..*l
                    });
                }
            }
            Msg::Attach(s) => store = Some(s),
            Msg::Flush(ack) => acks.push(ack),
        };
        if let Some(m) = first {
            take(m, &mut pending);
        }
        while pending.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => take(m, &mut pending),
                Err(_) => break,
            }
        }
        let lost = dropped.load(Ordering::Relaxed);
        if lost > reported_drops {
            if let Some(job) = last_job {
                pending.push(JobLogLine {
                    seq: 0,
                    job_id: job,
                    time: Utc::now(),
                    level: "WARN".into(),
                    target: "aiom4b::joblog".into(),
                    message: format!(
                        "{} log lines were dropped (logging fell behind); see the log files",
                        lost - reported_drops
                    ),
                    fields: Default::default(),
                });
                reported_drops = lost;
            }
        }
        match &store {
            Some(s) if !pending.is_empty() => {
                // A failing store (disk full) loses these lines; the file log still has them.
                // (This thread is in no job's span, so its own warning is not captured.)
                if let Err(e) = s.append_log(&pending) {
                    tracing::warn!("cannot write {} job log lines: {e}", pending.len());
                }
                pending.clear();
            }
            Some(_) => {}
            None => {
                // Not attached yet: keep the newest lines for when it is.
                if pending.len() > EARLY_LINES {
                    let extra = pending.len() - EARLY_LINES;
                    pending.drain(..extra);
                }
            }
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}
