//! The job queue: `pending` jobs in the store, run by `MAX_CONCURRENT_JOBS` worker threads.
//!
//! The store is the queue's memory: a job is created `pending` with everything needed to run
//! it in its `options` (the engine's options and the service's part of the request, see
//! [`ServiceRequest`]), so the jobs that were pending when the process stopped run after the
//! next start ([`Queue::load_pending`]). In memory there is only the order and which jobs a
//! worker has claimed, under one lock, so that cancelling a pending job and a worker claiming
//! it never both happen.
//!
//! Workers are plain threads (the conversion blocks; its engine starts its own threads): each
//! one gets an equal share of the cores (`Config::engine_threads`). Before a job runs, its
//! folders are checked again against SOURCE_DIR: a folder swapped for a symlink out of it
//! after the request was accepted fails the job instead of being read.
use super::confine::SourceRoot;
use super::events::EventHub;
use aiom4b::workflow::jobs::JobFailure;
use aiom4b::workflow::{
    BookEngine, ErrorCategory, Job, JobFilter, JobRequest, JobRunner, JobStatus, Workflow,
};
use aiom4b::{ConvertOptions, Limits, PlanOptions, ScanOptions};
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
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

#[derive(Default)]
struct State {
    pending: VecDeque<Uuid>,
    running: HashSet<Uuid>,
    stopping: bool,
}

pub struct Queue {
    wf: Arc<Workflow>,
    hub: Arc<EventHub>,
    root: SourceRoot,
    state: Mutex<State>,
    wake: Condvar,
    pub max_pending: usize,
    workers: usize,
}

/// What [`Queue::cancel`] did.
#[derive(Debug)]
pub enum Cancelled {
    /// The job was pending and is now `cancelled`.
    Pending(Box<Job>),
    /// The job runs; it stops at its next packet and is recorded `cancelled`.
    Running,
    /// Not pending nor running here.
    NotActive,
}

impl Queue {
    pub fn new(
        wf: Arc<Workflow>,
        hub: Arc<EventHub>,
        root: SourceRoot,
        max_pending: usize,
    ) -> Arc<Self> {
        let workers = wf.config().max_concurrent_jobs.max(1);
        Arc::new(Queue {
            wf,
            hub,
            root,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            max_pending,
            workers,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues the jobs the store holds as pending and unowned, oldest first: those of an
    /// earlier run of the service.
    pub fn load_pending(&self) -> anyhow::Result<usize> {
        let mut jobs = self.wf.store().list(&JobFilter {
            status: Some(JobStatus::Pending),
            ..Default::default()
        })?;
        jobs.retain(|j| j.owner.is_none());
        jobs.sort_by_key(|j| j.created_at);
        let mut st = self.lock();
        for j in &jobs {
            st.pending.push_back(j.id);
        }
        self.wake.notify_all();
        Ok(jobs.len())
    }

    /// Room for `n` more pending jobs?
    pub fn has_room(&self, n: usize) -> bool {
        self.lock().pending.len() + n <= self.max_pending
    }

    /// Is `id` running on one of this service's workers (its final event may still be coming)?
    pub fn is_running(&self, id: Uuid) -> bool {
        self.lock().running.contains(&id)
    }

    pub fn lengths(&self) -> (usize, usize) {
        let st = self.lock();
        (st.pending.len(), st.running.len())
    }

    /// Creates the job `pending` in the store and queues it.
    pub fn submit(&self, request: JobRequest) -> anyhow::Result<Job> {
        // The engine does not matter for creating: the options are in the request.
        let runner = JobRunner::new(&self.wf, aiom4b::workflow::ConvertFn(unused_convert));
        let job = runner.create(request)?.job().clone();
        let mut st = self.lock();
        st.pending.push_back(job.id);
        self.wake.notify_one();
        Ok(job)
    }

    pub fn cancel(&self, id: Uuid) -> anyhow::Result<Cancelled> {
        let mut st = self.lock();
        if let Some(pos) = st.pending.iter().position(|j| *j == id) {
            st.pending.remove(pos);
            drop(st);
            if let Some(mut job) = self.wf.store().get(id)? {
                if job.status == JobStatus::Pending {
                    job.status = JobStatus::Cancelled;
                    job.finished_at = Some(aiom4b::workflow::jobs::now_millis());
                    if self.wf.store().update(&job, JobStatus::Pending)? {
                        self.finished_outside_runner(&job);
                        return Ok(Cancelled::Pending(Box::new(job)));
                    }
                }
            }
            return Ok(Cancelled::NotActive);
        }
        if st.running.contains(&id) {
            // Running, or about to: its runner may not have registered it yet.
            self.wf.cancel_queued(id);
            return Ok(Cancelled::Running);
        }
        Ok(Cancelled::NotActive)
    }

    fn finished_outside_runner(&self, job: &Job) {
        self.hub.publish(
            job.id,
            "finished",
            serde_json::json!({ "job": super::api::JobView::from(job), "warnings": [] }),
        );
    }

    /// Starts the workers.
    pub fn start(self: &Arc<Self>) -> Vec<std::thread::JoinHandle<()>> {
        (0..self.workers)
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

    fn work(&self) {
        loop {
            let id = {
                let mut st = self.lock();
                loop {
                    if st.stopping || self.wf.is_cancelled() {
                        return;
                    }
                    if let Some(id) = st.pending.pop_front() {
                        st.running.insert(id);
                        break id;
                    }
                    // Timed, so that a `cancel_all` from the signal thread (which cannot
                    // notify this condvar) is seen within a moment.
                    st = self
                        .wake
                        .wait_timeout(st, std::time::Duration::from_millis(200))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            };
            if let Err(e) = self.run_one(id) {
                tracing::error!(job_id = %id, error = %format!("{e:#}"), "queued job could not run");
            }
            self.lock().running.remove(&id);
            metrics::counter!("aiom4b_jobs_finished_total").increment(1);
        }
    }

    fn run_one(&self, id: Uuid) -> anyhow::Result<()> {
        let Some(job) = self.wf.store().get(id)? else {
            return Ok(());
        };
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
        request.engine_threads = Some(self.wf.config().engine_threads(self.workers));
        let runner = JobRunner::new(&self.wf, &engine);
        let queued = runner.requeue(job, request)?;
        metrics::gauge!("aiom4b_jobs_running").increment(1.0);
        let started = std::time::Instant::now();
        let outcome = runner.run_queued(queued, &*self.hub);
        metrics::gauge!("aiom4b_jobs_running").decrement(1.0);
        let outcome = outcome?;
        super::metrics::job_finished(&outcome.job, started.elapsed());
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
