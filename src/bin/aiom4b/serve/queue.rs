//! The job queue: `pending` jobs in the job store, run by worker threads of any number of
//! processes (`aiom4b serve` with its own workers, `aiom4b worker` on other hosts).
//!
//! The store is the queue: a job is created `pending` with everything needed to run it in its
//! `options` (the engine's options and the service's part of the request, see
//! [`ServiceRequest`]). A worker thread claims the oldest pending job no process holds
//! ([`JobStore::claim_next`]: `FOR UPDATE SKIP LOCKED` on PostgreSQL) under a lease that the
//! runner renews while the job runs; a process that dies loses its leases and their jobs are
//! claimed again once the lease runs out ([`JobStore::requeue_expired`], run by each
//! process's waker thread). The waker also waits for the store's sign of new work (LISTEN/NOTIFY
//! on PostgreSQL) and wakes the idle workers at once; polling every [`POLL`] is the fallback.
//!
//! Workers are plain threads (the conversion blocks; its engine starts its own threads): each
//! one gets an equal share of the cores (`Config::engine_threads`) unless told otherwise.
//! Before a job runs, its folders are checked again against SOURCE_DIR: a folder swapped for a
//! symlink out of it after the request was accepted fails the job instead of being read.
//!
//! [`JobStore::claim_next`]: aiom4b::workflow::JobStore::claim_next
//! [`JobStore::requeue_expired`]: aiom4b::workflow::JobStore::requeue_expired
use super::confine::SourceRoot;
use super::events::EventHub;
use aiom4b::workflow::jobs::JobFailure;
use aiom4b::workflow::{
    BookEngine, CancelRequest, ErrorCategory, Job, JobRequest, JobRunner, JobStatus, LeaseTerms,
    Workflow,
};
use aiom4b::{ConvertOptions, Limits, PlanOptions, ScanOptions};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// The service's part of a job's request, kept in the job's `options` under `"service"`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceRequest {
    /// The output file's name (sanitized, without `.m4b`); `None` follows NAME_TEMPLATE.
    pub output_name: Option<String>,
}

/// The engine and the request of a job, as stored in its `options`.
pub fn job_options(engine: &BookEngine, service: &ServiceRequest) -> serde_json::Value {
    let mut options = engine.options_json();
    options["service"] = serde_json::json!(service);
    options
}

/// Rebuilds what [`job_options`] stored.
fn engine_of(job: &Job) -> Result<(BookEngine, ServiceRequest), String> {
    fn part<T: serde::de::DeserializeOwned>(job: &Job, key: &str) -> Result<T, String> {
        serde_json::from_value(job.options.get(key).cloned().unwrap_or_default())
            .map_err(|e| format!("the job's stored {key} options cannot be read: {e}"))
    }
    let engine = BookEngine::new(
        part::<ScanOptions>(job, "scan")?,
        part::<Limits>(job, "limits")?,
        part::<PlanOptions>(job, "plan")?,
        part::<ConvertOptions>(job, "convert")?,
    );
    let service = part::<Option<ServiceRequest>>(job, "service")?.unwrap_or_default();
    Ok((engine, service))
}

/// How often idle workers look for work when no wake-up comes (SQLite has none; PostgreSQL's
/// NOTIFY may be lost while a connection is re-made), and how often expired leases are looked
/// for.
pub const POLL: Duration = Duration::from_secs(2);
/// Attempts before a job whose holders keep dying is failed.
pub const MAX_ATTEMPTS: u32 = 3;

#[derive(Default)]
struct State {
    /// The jobs this process's workers hold.
    running: HashSet<Uuid>,
    stopping: bool,
    /// Counts wake-ups, so that one that comes between a worker's empty claim and its wait is
    /// not lost.
    wakes: u64,
}

/// How a process takes part in the queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    /// Worker threads (jobs at once); 0 runs none (`serve --no-worker`).
    pub workers: usize,
    /// Engine threads per job; `None`: an equal share of the cores.
    pub engine_threads: Option<usize>,
    /// The lease a claimed job is held under.
    pub lease: LeaseTerms,
}

pub struct Queue {
    wf: Arc<Workflow>,
    hub: Arc<EventHub>,
    root: SourceRoot,
    state: Mutex<State>,
    wake: Condvar,
    pub max_pending: usize,
    settings: QueueSettings,
}

/// What [`Queue::cancel`] did.
#[derive(Debug)]
pub enum Cancelled {
    /// The job was pending and is now `cancelled`.
    Pending(Box<Job>),
    /// The job runs (here or on another instance); it stops at its next packet (within about
    /// a second elsewhere) and is recorded `cancelled`.
    Running,
    /// Not pending nor running.
    NotActive,
}

impl Queue {
    pub fn new(
        wf: Arc<Workflow>,
        hub: Arc<EventHub>,
        root: SourceRoot,
        max_pending: usize,
        settings: QueueSettings,
    ) -> Arc<Self> {
        Arc::new(Queue {
            wf,
            hub,
            root,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            max_pending,
            settings,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes this process's idle workers.
    fn wake_all(&self) {
        self.lock().wakes += 1;
        self.wake.notify_all();
    }

    /// Room for `n` more waiting jobs (in the whole queue)? A store that cannot answer says
    /// yes: creating the job will then fail with the store's own error.
    pub fn has_room(&self, n: usize) -> bool {
        match self.wf.store().queue_stats() {
            Ok(q) => q.waiting as usize + n <= self.max_pending,
            Err(_) => true,
        }
    }

    /// Is `id` running on one of this process's workers (its final event may still be coming)?
    pub fn is_running(&self, id: Uuid) -> bool {
        self.lock().running.contains(&id)
    }

    /// Jobs running on this process's workers.
    pub fn running(&self) -> usize {
        self.lock().running.len()
    }

    /// Creates the job `pending` in the store, which queues it for every worker.
    pub fn submit(&self, request: JobRequest) -> anyhow::Result<Job> {
        // The engine does not matter for creating: the options are in the request.
        let runner = JobRunner::new(&self.wf, aiom4b::workflow::ConvertFn(unused_convert));
        let job = runner.create(request)?.job().clone();
        self.wake_all();
        Ok(job)
    }

    pub fn cancel(&self, id: Uuid) -> anyhow::Result<Cancelled> {
        if self.lock().running.contains(&id) {
            // Running here, or about to: its runner may not have registered it yet.
            self.wf.cancel_queued(id);
            return Ok(Cancelled::Running);
        }
        Ok(match self.wf.store().request_cancel(id)? {
            CancelRequest::Cancelled => match self.wf.store().get(id)? {
                Some(job) => {
                    self.finished_outside_runner(&job);
                    Cancelled::Pending(Box::new(job))
                }
                None => Cancelled::NotActive,
            },
            // Held by a worker (of another process, or one of ours that claimed it this
            // instant): it sees the request at its next lease renewal.
            CancelRequest::Requested => Cancelled::Running,
            CancelRequest::NotActive => Cancelled::NotActive,
        })
    }

    fn finished_outside_runner(&self, job: &Job) {
        self.hub.publish(
            job.id,
            "finished",
            serde_json::json!({ "job": super::api::JobView::from(job), "warnings": [] }),
        );
    }

    /// Starts the workers, and the waker thread that wakes them and puts jobs whose holder
    /// died back in the queue. With no workers, nothing is started.
    pub fn start(self: &Arc<Self>) -> Vec<std::thread::JoinHandle<()>> {
        if self.settings.workers == 0 {
            return Vec::new();
        }
        let q = self.clone();
        std::thread::Builder::new()
            .name("aiom4b-queue-waker".into())
            .spawn(move || q.waker())
            .expect("spawning the queue's waker");
        (0..self.settings.workers)
            .map(|i| {
                let q = self.clone();
                std::thread::Builder::new()
                    .name(format!("aiom4b-queue-{i}"))
                    .spawn(move || q.work())
                    .expect("spawning a queue worker")
            })
            .collect()
    }

    /// Stops handing out jobs; running jobs are cancelled by the caller (`cancel_all`).
    pub fn stop(&self) {
        self.lock().stopping = true;
        self.wake.notify_all();
    }

    /// Waits until `grace` has passed for the workers [`Queue::start`] returned to end (their
    /// jobs stopped by the caller's `cancel_all`); those still running are left to the exit.
    pub fn join(workers: Vec<std::thread::JoinHandle<()>>, grace: Duration) {
        let deadline = std::time::Instant::now() + grace;
        for w in workers {
            while !w.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if w.is_finished() {
                let _ = w.join();
            }
        }
    }

    fn stopping(&self) -> bool {
        self.lock().stopping || self.wf.is_cancelled()
    }

    fn waker(&self) {
        while !self.stopping() {
            match self.wf.store().requeue_expired(MAX_ATTEMPTS) {
                Ok(moved) => {
                    for (id, status) in &moved {
                        tracing::warn!(target: "aiom4b::jobs", job_id = %id, %status, "a job's holder stopped renewing its lease; the job is {status} now");
                        metrics::counter!("aiom4b_queue_leases_recovered_total", "to" => status.as_str())
                            .increment(1);
                    }
                    if !moved.is_empty() {
                        self.wake_all();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "looking for expired leases failed"),
            }
            match self.wf.store().wait_for_work(POLL) {
                Ok(_) => self.wake_all(),
                Err(e) => {
                    tracing::warn!(error = %e, "waiting for new jobs failed; polling");
                    std::thread::sleep(POLL);
                    self.wake_all();
                }
            }
        }
    }

    fn work(&self) {
        let owner = self.wf.owner().clone();
        loop {
            let seen = {
                let st = self.lock();
                if st.stopping || self.wf.is_cancelled() {
                    return;
                }
                st.wakes
            };
            match self.wf.store().claim_next(&owner, self.settings.lease.ttl) {
                Ok(Some(job)) => {
                    let id = job.id;
                    self.lock().running.insert(id);
                    tracing::info!(target: "aiom4b::jobs", job_id = %id, attempts = job.attempts, "claimed");
                    if let Err(e) = self.run_one(job) {
                        tracing::error!(job_id = %id, error = %format!("{e:#}"), "queued job could not run");
                    }
                    self.lock().running.remove(&id);
                    metrics::counter!("aiom4b_jobs_finished_total").increment(1);
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "claiming a job failed"),
            }
            let st = self.lock();
            if st.wakes == seen && !st.stopping {
                // Timed, so that a `cancel_all` from the signal thread (which cannot notify
                // this condvar) is seen within a moment.
                let _ = self
                    .wake
                    .wait_timeout(st, POLL)
                    .unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    fn run_one(&self, job: Job) -> anyhow::Result<()> {
        if job.status != JobStatus::Pending {
            return Ok(());
        }
        let (engine, service) = match engine_of(&job) {
            Ok(x) => x,
            Err(msg) => return self.fail_unrun(job, ErrorCategory::System, msg),
        };
        // The folders as accepted were canonical and inside SOURCE_DIR; they must still be.
        for f in &job.source_folders {
            if let Err(e) = self.root.recheck(f) {
                let msg = format!("{}: {}", f.display(), e.message);
                return self.fail_unrun(job, ErrorCategory::Input, msg);
            }
        }
        let mut request = job_request(&self.wf, job.source_folders.clone(), &job.options, &service);
        request.engine_threads = Some(
            self.settings
                .engine_threads
                .unwrap_or_else(|| self.wf.config().engine_threads(self.settings.workers)),
        );
        let runner = JobRunner::new(&self.wf, &engine);
        let queued = runner.claimed(job, request, self.settings.lease)?;
        metrics::gauge!("aiom4b_jobs_running").increment(1.0);
        let started = std::time::Instant::now();
        let outcome = runner.run_queued(queued, &*self.hub);
        metrics::gauge!("aiom4b_jobs_running").decrement(1.0);
        let outcome = outcome?;
        // A job handed back to the queue (this worker stops) has not finished.
        if outcome.job.status != JobStatus::Pending {
            super::metrics::job_finished(&outcome.job, started.elapsed());
        }
        Ok(())
    }

    /// Ends a job that never started (its request cannot run) as failed.
    fn fail_unrun(
        &self,
        mut job: Job,
        category: ErrorCategory,
        message: String,
    ) -> anyhow::Result<()> {
        job.status = JobStatus::Failed;
        job.finished_at = Some(aiom4b::workflow::jobs::now_millis());
        job.error = Some(JobFailure {
            category,
            message,
            remedy: "check the folder under SOURCE_DIR and start the conversion again".into(),
        });
        if self.wf.store().update(&job, JobStatus::Pending)? {
            self.finished_outside_runner(&job);
        }
        Ok(())
    }
}

/// The request of a service job: its folders, the stored options, the output name if given.
pub fn job_request(
    wf: &Workflow,
    folders: Vec<PathBuf>,
    options: &serde_json::Value,
    service: &ServiceRequest,
) -> JobRequest {
    let mut r = JobRequest::default();
    r.folders = folders;
    r.options = options.clone();
    r.output_file = service
        .output_name
        .as_deref()
        .map(|n| output_file(wf.config().output_dir(), n));
    r
}

/// `DATA_DIR/output/NAME.m4b` with NAME made safe as a file name.
pub fn output_file(dir: PathBuf, name: &str) -> PathBuf {
    dir.join(format!(
        "{}.m4b",
        aiom4b::sanitize::sanitize_file_stem(name)
    ))
}

fn unused_convert(
    _: &aiom4b::workflow::JobContext<'_>,
) -> Result<aiom4b::workflow::ConversionResult, aiom4b::workflow::JobError> {
    unreachable!("create never converts")
}
