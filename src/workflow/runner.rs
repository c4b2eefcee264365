//! The one way a job runs, for every front end: the CLI's `convert` and `batch`, and a
//! service's queue.
//!
//! ```text
//!  create (pending) ─▶ validate ─▶ prepare (engine: plan) ─▶ backup ─▶ processing ─▶
//!  convert (engine: .part) ─▶ publish (name, permissions, rename) ─▶ post-action
//!  (move/delete sources, rolled back from the backup) ─▶ completed | failed | cancelled
//!  (category, message, remedy) ─▶ audit line
//! ```
//!
//! A [`JobRunner`] is a [`Workflow`] (store, backups, configuration) and a [`JobEngine`]. Each
//! step is a function of `steps.rs`; every step, the engine's progress and findings, and the
//! end are [`JobEvent`]s for the caller's [`JobEvents`].
//!
//! ```ignore
//! let engine = BookEngine::new(scan, config.limits(), plan, convert);
//! let runner = JobRunner::new(&workflow, &engine);
//! // Now: one call. Later (a queue): `create` records the job as pending, `run_queued` runs it.
//! let outcome = runner.run(request, &my_events)?;
//! ```
use crate::publish::PartFile;
use crate::workflow::context::JobContext;
use crate::workflow::engine::{ConvertFn, JobEngine};
use crate::workflow::errors::JobError;
use crate::workflow::errors::Result;
use crate::workflow::events::{JobEvent, JobEventSink, JobEvents, NoEvents};
use crate::workflow::jobs::{Job, JobStatus};
use crate::workflow::lease::{CancelWatch, Heartbeat, LeaseTerms};

/// How often a job run without a lease asks the store for a cancel request (see
/// [`CancelWatch`]).
const CANCEL_POLL: std::time::Duration = std::time::Duration::from_secs(1);
use crate::workflow::request::{ConversionResult, JobOutcome, JobRequest};
use crate::workflow::steps::Run;
use crate::workflow::{audit, canonical_folders, Workflow};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Runs jobs of one [`Workflow`] with one [`JobEngine`].
#[derive(Debug)]
pub struct JobRunner<'w, E> {
    workflow: &'w Workflow,
    engine: E,
}

/// A job recorded as `pending` by [`JobRunner::create`], not run yet. It belongs to no process
/// until it runs, so recovery leaves it alone.
#[derive(Debug, Clone)]
pub struct QueuedJob {
    job: Job,
    request: JobRequest,
    output_dir: PathBuf,
    /// Set for a job claimed from a shared queue: its lease is renewed while it runs.
    lease: Option<LeaseTerms>,
}

impl QueuedJob {
    /// The job record as created.
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// The request it will run.
    pub fn request(&self) -> &JobRequest {
        &self.request
    }
}

impl<'w, E: JobEngine> JobRunner<'w, E> {
    /// A runner that runs jobs of `workflow` with `engine`.
    pub fn new(workflow: &'w Workflow, engine: E) -> Self {
        JobRunner { workflow, engine }
    }

    /// The workflow its jobs are recorded in.
    pub fn workflow(&self) -> &'w Workflow {
        self.workflow
    }

    /// The engine that converts its books.
    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// Runs one job from start to end (see the module documentation).
    ///
    /// Returns `Ok` with the final job record whether the job completed, failed or was
    /// cancelled; `Err` only when the job could not be recorded at all (database unusable).
    pub fn run(&self, request: JobRequest, events: &dyn JobEvents) -> Result<JobOutcome> {
        let queued = self.insert(request, true)?;
        self.run_queued(queued, events)
    }

    /// Records a job as `pending` without running it (a queue); [`JobRunner::run_queued`]
    /// runs it later, in this process.
    pub fn create(&self, request: JobRequest) -> Result<QueuedJob> {
        self.insert(request, false)
    }

    /// A job that a store holds as `pending` (made by [`JobRunner::create`], perhaps by an
    /// earlier process) with the request it is to run, ready for [`JobRunner::run_queued`]: a
    /// queue that keeps its requests elsewhere (a service re-reads them after a restart).
    /// `request.folders` are ignored: the job's own (canonical) source folders run. Fails with
    /// [`Error::Invalid`] when the job is not pending any more.
    pub fn requeue(&self, job: Job, request: JobRequest) -> Result<QueuedJob> {
        if job.status != JobStatus::Pending {
            return Err(crate::workflow::Error::Invalid(format!(
                "job {} is {}, not pending",
                job.id, job.status
            )));
        }
        let output_dir = self.output_dir(&request);
        Ok(QueuedJob {
            job,
            request,
            output_dir,
            lease: None,
        })
    }

    /// A job this process claimed from a shared queue ([`JobStore::claim_next`], with the
    /// lease `terms` it claimed it for), ready for [`JobRunner::run_queued`], which renews the
    /// lease while the job runs, stops the job when the lease is lost or a cancel is requested
    /// ([`JobStore::request_cancel`]), and confirms the lease right before publishing.
    ///
    /// What an earlier attempt left (its holder died or was paused past its lease) is removed,
    /// and this attempt writes a part file of its own: a paused holder that wakes up cannot
    /// touch this one's, nor this one its.
    ///
    /// [`JobStore::claim_next`]: crate::workflow::JobStore::claim_next
    /// [`JobStore::request_cancel`]: crate::workflow::JobStore::request_cancel
    pub fn claimed(
        &self,
        mut job: Job,
        request: JobRequest,
        terms: LeaseTerms,
    ) -> Result<QueuedJob> {
        let Some(lease) = job.lease else {
            return Err(crate::workflow::Error::Invalid(format!(
                "job {} was not claimed (it has no lease)",
                job.id
            )));
        };
        let mut queued = self.requeue(job.clone(), request)?;
        for p in crate::publish::remove_temporaries(&job.temp_paths) {
            tracing::info!(job_id = %job.id, path = %p.display(), "removed what an earlier attempt left");
        }
        let token = lease.token.simple().to_string();
        let part = PartFile::for_attempt(
            &queued.output_dir,
            queued
                .request
                .output_file
                .as_ref()
                .and_then(|f| f.file_name()),
            job.id,
            &token[..8],
        );
        job.part_path = Some(part.path().to_path_buf());
        job.temp_paths = part.temporaries();
        let _ = part.keep();
        queued.job = job;
        queued.lease = Some(terms);
        Ok(queued)
    }

    /// Runs a job made by [`JobRunner::create`]. It takes the job over for this process; if
    /// another one took it meanwhile, the job ends with that process's record.
    pub fn run_queued(&self, queued: QueuedJob, events: &dyn JobEvents) -> Result<JobOutcome> {
        let wf = self.workflow;
        let QueuedJob {
            mut job,
            request,
            output_dir,
            lease,
        } = queued;
        job.owner = Some(wf.owner.clone());
        let span = tracing::info_span!("job", job_id = %job.id);
        let _entered = span.enter();
        let events = JobEventSink::new(job.id, events);
        if lease.is_some() {
            // In the job's own log: which instance ran which attempt, whatever host reads it.
            tracing::info!(
                target: "aiom4b::jobs",
                instance_id = %wf.owner.instance_id(),
                attempt = job.attempts + 1,
                "claimed from the queue by {}",
                wf.owner.instance_id()
            );
        }
        events.emit(JobEvent::Started {
            folders: &job.source_folders,
        });

        // A flag set already if the job was cancelled between its queue and here
        // (`Workflow::cancel_queued`).
        let cancel = wf
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(job.id)
            .or_insert_with(|| Arc::new(AtomicBool::new(false)))
            .clone();
        // Checked after registering, not before: a `cancel_all` that walked `active` before the
        // insert has already raised its flag, which this sees; one that walks it later finds
        // this job there. Checking first would lose a Ctrl-C that lands in between.
        if wf.is_cancelled() {
            cancel.store(true, Ordering::Relaxed);
        }
        let part = PartFile::at(job.part_path.clone().unwrap_or_default());
        let heartbeat = lease.zip(job.lease).map(|(terms, held)| {
            Arc::new(Heartbeat::start(
                wf.store.clone(),
                job.id,
                held,
                terms,
                cancel.clone(),
            ))
        });
        // Without a lease nothing renews, so a watch reads cancel requests from the store.
        let watch = heartbeat
            .is_none()
            .then(|| CancelWatch::start(wf.store.clone(), job.id, CANCEL_POLL, cancel.clone()));
        let mut run = Run {
            wf,
            job,
            stored: JobStatus::Pending,
            published: false,
            request,
            output_dir,
            cancel,
            events,
            report: None,
            heartbeat: heartbeat.clone(),
        };
        let attempts_at_claim = run.job.attempts;
        let result = run.steps(&self.engine, part);
        drop(watch);
        wf.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&run.job.id);
        // This process stops (a worker's SIGTERM), not the job: hand it back to the queue.
        let release = match (&heartbeat, run.job.lease, &result) {
            (Some(h), Some(held), Err(e))
                if e.cancelled
                    && wf.releasing()
                    && !run.published
                    && !h.lost()
                    && !h.cancel_requested() =>
            {
                Some(held.token)
            }
            _ => None,
        };
        if let Some(token) = release {
            drop(heartbeat);
            let id = run.job.id;
            if wf.store.release_lease(id, token, attempts_at_claim)? {
                tracing::info!(target: "aiom4b::jobs", "released back to the queue: this worker stops");
                audit!(action = "job.release", job_id = %id, "job handed back to the queue");
                let job = wf.store.get(id)?.unwrap_or(run.job);
                return Ok(JobOutcome {
                    job,
                    warnings: vec!["handed back to the queue: this process stopped".into()],
                    report: None,
                });
            }
            // The lease was gone meanwhile: the store's record stands.
            let job = wf.store.get(id)?.unwrap_or(run.job);
            return Ok(JobOutcome {
                job,
                warnings: Vec::new(),
                report: None,
            });
        }
        let outcome = run.finish(result);
        // Renewed until the final record is written, so that no other process takes the job
        // over in between.
        drop(heartbeat);
        let outcome = outcome?;
        events.emit(JobEvent::Finished(&outcome));
        Ok(outcome)
    }

    /// The job record for `request`, in the store as `pending`; `owned` by this process when
    /// it runs right away.
    fn insert(&self, request: JobRequest, owned: bool) -> Result<QueuedJob> {
        let wf = self.workflow;
        let folders = canonical_folders(&request.folders);
        let output_dir = self.output_dir(&request);
        let mut job = Job::new(folders, request.options.clone());
        job.owner = owned.then(|| wf.owner.clone());
        job.post_action = request.post_action.record();
        // Hidden, unique per job, and naming the output when it is known, so that an error
        // about the temporary file (e.g. a full disk) still says which book it was. Its every
        // temporary is in the record before any of them exists: recovery removes exactly those.
        let part = PartFile::for_job(
            &output_dir,
            request.output_file.as_ref().and_then(|f| f.file_name()),
            job.id,
        );
        job.part_path = Some(part.path().to_path_buf());
        job.temp_paths = part.temporaries();
        // Nothing exists yet for the part file's drop to remove; `run_queued` owns it again.
        let _ = part.keep();
        wf.store.insert(&job)?;
        audit!(action = "job.create", job_id = %job.id, folders = ?job.source_folders, "job created");
        Ok(QueuedJob {
            job,
            request,
            output_dir,
            lease: None,
        })
    }

    /// Where the job's output and `.part` go: beside `-o`, else the request's or the
    /// configured output folder; absolute, because the recorded `.part` is removed by whichever
    /// later process finds the job interrupted, from whatever directory it runs in.
    fn output_dir(&self, request: &JobRequest) -> PathBuf {
        let wf = self.workflow;
        let output_dir = match &request.output_file {
            Some(file) => file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
            None => request
                .output_dir
                .clone()
                .unwrap_or_else(|| wf.config.output_dir()),
        };
        std::path::absolute(&output_dir).unwrap_or(output_dir)
    }
}

impl Workflow {
    /// Runs one job with a convert function and no events: a shortcut for
    /// [`JobRunner::run`] with [`ConvertFn`], for tests and simple tools.
    pub fn run_job<F>(&self, request: JobRequest, convert: F) -> Result<JobOutcome>
    where
        F: Fn(&JobContext<'_>) -> std::result::Result<ConversionResult, JobError> + Sync,
    {
        JobRunner::new(self, ConvertFn(convert)).run(request, &NoEvents)
    }
}
