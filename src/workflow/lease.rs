//! A claimed job's lease, kept alive while the job runs: a named thread per leased job renews
//! it ([`JobStore::renew_lease`]) and raises the job's cancel flag when the lease is lost (the
//! store says another process holds the job now, or the store cannot be reached for longer
//! than the lease lasts) or when someone asked the job to stop ([`JobStore::request_cancel`]).
//! Before the output is published, [`Heartbeat::confirm`] renews once more, synchronously: the
//! fence that keeps a worker that was paused past its lease from publishing a job another
//! worker has taken over.
use crate::workflow::errors::{ErrorCategory, JobError};
use crate::workflow::jobs::{JobStore, Lease};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a claim lasts and how often it is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTerms {
    /// How long a claim holds without renewal: a dead holder's job goes back to the queue
    /// this long after its last renewal.
    pub ttl: Duration,
    /// How often the holder renews it, which is also how soon it sees a cancel request.
    pub renew_every: Duration,
}

impl LeaseTerms {
    /// A lease of `ttl`, renewed every third of it but at least every second (a cancel
    /// request reaches the holder within about a second).
    pub fn new(ttl: Duration) -> Self {
        LeaseTerms {
            ttl,
            renew_every: (ttl / 3).clamp(Duration::from_millis(10), Duration::from_secs(1)),
        }
    }
}

struct State {
    done: bool,
    /// When the store last confirmed the lease.
    confirmed: Instant,
}

struct Shared {
    store: Arc<dyn JobStore>,
    id: Uuid,
    token: Uuid,
    terms: LeaseTerms,
    cancel: Arc<AtomicBool>,
    lost: AtomicBool,
    cancel_requested: AtomicBool,
    state: Mutex<State>,
    wake: Condvar,
}

/// Renews a lease until dropped.
pub(crate) struct Heartbeat {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts renewing `lease` of job `id`; `cancel` is the job's cancel flag.
    pub(crate) fn start(
        store: Arc<dyn JobStore>,
        id: Uuid,
        lease: Lease,
        terms: LeaseTerms,
        cancel: Arc<AtomicBool>,
    ) -> Heartbeat {
        let shared = Arc::new(Shared {
            store,
            id,
            token: lease.token,
            terms,
            cancel,
            lost: AtomicBool::new(false),
            cancel_requested: AtomicBool::new(false),
            state: Mutex::new(State {
                done: false,
                confirmed: Instant::now(),
            }),
            wake: Condvar::new(),
        });
        let s = shared.clone();
        let span = tracing::Span::current();
        let thread = std::thread::Builder::new()
            .name("aiom4b-lease".into())
            .spawn(move || {
                let _entered = span.enter();
                s.run()
            })
            .expect("spawning the lease thread");
        Heartbeat {
            shared,
            thread: Some(thread),
        }
    }

    /// The lease is gone: the job must stop and must not publish.
    pub(crate) fn lost(&self) -> bool {
        self.shared.lost.load(Ordering::Relaxed)
    }

    /// Someone asked the job to stop.
    pub(crate) fn cancel_requested(&self) -> bool {
        self.shared.cancel_requested.load(Ordering::Relaxed)
    }

    /// Renews the lease now; an error when it is lost. Called right before publishing.
    pub(crate) fn confirm(&self) -> Result<(), JobError> {
        if !self.lost() {
            self.shared.renew();
        }
        match self.lost() {
            true => Err(lost_error()),
            false => Ok(()),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .done = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// For a job this process runs without a lease (a `convert` or `batch` of the CLI): a named
/// thread asks the store about every second whether someone requested a cancel
/// ([`JobStore::cancel_requested`]) — `aiom4b jobs cancel`, the service's cancel button — and
/// raises the job's cancel flag when so. Stops when dropped.
pub(crate) struct CancelWatch {
    done: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CancelWatch {
    /// Asks about job `id` every `every`; `cancel` is the job's cancel flag.
    pub(crate) fn start(
        store: Arc<dyn JobStore>,
        id: Uuid,
        every: Duration,
        cancel: Arc<AtomicBool>,
    ) -> CancelWatch {
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let d = done.clone();
        let span = tracing::Span::current();
        let thread = std::thread::Builder::new()
            .name("aiom4b-cancel-watch".into())
            .spawn(move || {
                let _entered = span.enter();
                let (lock, wake) = &*d;
                let mut stop = lock.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    stop = wake
                        .wait_timeout(stop, every)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    if *stop || cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    match store.cancel_requested(id) {
                        Ok(true) => {
                            tracing::info!(target: "aiom4b::jobs", "cancel requested");
                            cancel.store(true, Ordering::Relaxed);
                            return;
                        }
                        Ok(false) => {}
                        // A busy or unreachable store only delays the request.
                        Err(e) => {
                            tracing::debug!(error = %e, "reading the job's cancel request failed")
                        }
                    }
                }
            })
            .expect("spawning the cancel watch");
        CancelWatch {
            done,
            thread: Some(thread),
        }
    }
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        let (lock, wake) = &*self.done;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn run(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            st = self
                .wake
                .wait_timeout(st, self.terms.renew_every)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            if st.done || self.lost.load(Ordering::Relaxed) {
                return;
            }
            drop(st);
            self.renew();
            st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        }
    }

    /// One renewal; records what it learnt.
    fn renew(&self) {
        let asked = Instant::now();
        match self.store.renew_lease(self.id, self.token, self.terms.ttl) {
            Ok(Some(renewal)) => {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.confirmed = st.confirmed.max(asked);
                drop(st);
                if renewal.cancel_requested && !self.cancel_requested.swap(true, Ordering::Relaxed)
                {
                    tracing::info!(target: "aiom4b::jobs", "cancel requested");
                    self.cancel.store(true, Ordering::Relaxed);
                }
            }
            Ok(None) => self.lose("the job was taken over by another process"),
            Err(e) => {
                let since = self
                    .state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .confirmed
                    .elapsed();
                tracing::warn!(error = %e, "renewing the job's lease failed");
                // The lease may have run out in the store meanwhile: another process may take
                // the job over, so this one must stop.
                if since >= self.terms.ttl {
                    self.lose("the job store could not be reached for longer than the lease");
                }
            }
        }
    }

    fn lose(&self, why: &str) {
        if !self.lost.swap(true, Ordering::Relaxed) {
            tracing::warn!(target: "aiom4b::jobs", "lost the job's lease: {why}; stopping without publishing");
            self.cancel.store(true, Ordering::Relaxed);
        }
    }
}

/// The failure of a job whose lease was lost.
pub(crate) fn lost_error() -> JobError {
    JobError::new(
        ErrorCategory::System,
        "this worker lost its claim on the job (paused or cut off from the job store past its lease); another worker runs it",
        "nothing to do: the job runs again elsewhere; if this repeats, raise LEASE_SECS or check the worker's host",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::jobs::{CancelRequest, Job, SqliteStore};
    use crate::workflow::process::ProcessIdentity;

    fn claimed(ttl: Duration) -> (tempfile::TempDir, Arc<dyn JobStore>, Job) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn JobStore> = Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
        store
            .insert(&Job::new(vec!["/a".into()], serde_json::json!({})))
            .unwrap();
        let job = store
            .claim_next(&ProcessIdentity::current(), ttl)
            .unwrap()
            .unwrap();
        (dir, store, job)
    }

    fn wait_for(what: &str, f: impl Fn() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < Duration::from_secs(20), "waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_lease_is_renewed_while_the_job_runs() {
        let ttl = Duration::from_millis(300);
        let (_d, store, job) = claimed(ttl);
        let cancel = Arc::new(AtomicBool::new(false));
        let hb = Heartbeat::start(
            store.clone(),
            job.id,
            job.lease.unwrap(),
            LeaseTerms::new(ttl),
            cancel.clone(),
        );
        // Several lease lengths later it is still held, by the same token.
        std::thread::sleep(ttl * 4);
        assert!(store.requeue_expired(3).unwrap().is_empty());
        assert!(!hb.lost() && !cancel.load(Ordering::Relaxed));
        hb.confirm().unwrap();
        let stored = store.get(job.id).unwrap().unwrap().lease.unwrap();
        assert_eq!(stored.token, job.lease.unwrap().token);
        assert!(stored.expires_at > job.lease.unwrap().expires_at);
    }

    #[test]
    fn a_cancel_request_raises_the_flag() {
        let ttl = Duration::from_secs(60);
        let (_d, store, job) = claimed(ttl);
        let cancel = Arc::new(AtomicBool::new(false));
        let terms = LeaseTerms {
            ttl,
            renew_every: Duration::from_millis(20),
        };
        let hb = Heartbeat::start(
            store.clone(),
            job.id,
            job.lease.unwrap(),
            terms,
            cancel.clone(),
        );
        assert_eq!(
            store.request_cancel(job.id).unwrap(),
            CancelRequest::Requested
        );
        wait_for("the cancel flag", || cancel.load(Ordering::Relaxed));
        assert!(hb.cancel_requested() && !hb.lost());
    }

    #[test]
    fn a_lease_taken_over_stops_the_job_and_fails_the_fence() {
        let ttl = Duration::from_millis(30);
        let (_d, store, job) = claimed(ttl);
        let cancel = Arc::new(AtomicBool::new(false));
        // Renewing far less often than the lease lasts: a paused worker.
        let terms = LeaseTerms {
            ttl,
            renew_every: Duration::from_secs(3600),
        };
        let hb = Heartbeat::start(
            store.clone(),
            job.id,
            job.lease.unwrap(),
            terms,
            cancel.clone(),
        );
        std::thread::sleep(ttl * 3);
        assert_eq!(store.requeue_expired(3).unwrap().len(), 1);
        let other = store
            .claim_next(&ProcessIdentity::current(), Duration::from_secs(60))
            .unwrap()
            .unwrap();
        assert_eq!(other.id, job.id);
        let e = hb.confirm().unwrap_err();
        assert_eq!(e.category, ErrorCategory::System);
        assert!(e.message.contains("lost its claim"), "{}", e.message);
        assert!(hb.lost() && cancel.load(Ordering::Relaxed));
        // The new holder's lease is untouched.
        assert_eq!(store.get(job.id).unwrap().unwrap().lease, other.lease);
    }
}
