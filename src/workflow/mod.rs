//! The workflow around the conversion engine: jobs, backups, output naming, post-actions,
//! recovery after crashes, batches, configuration.
//!
//! ```text
//!  run_job: create job (pending) ─▶ prepare (injected: validate/plan) ─▶ back up each folder ─▶
//!           processing ─▶ convert (injected) ─▶ name + permissions + publish .part ─▶
//!           move/delete sources (rollback from backup) ─▶
//!           completed | failed | cancelled (category, message, remedy) ─▶ audit line
//! ```
//!
//! The conversion itself is injected as closures, so the workflow knows nothing of FFmpeg
//! and is tested with fake converters. The engine plugs in like this (the CLI's
//! `cmd_convert.rs` is the full version):
//!
//! ```ignore
//! let outcome = workflow.run_job_prepared(
//!     request,
//!     // Before any backup: an input that cannot be converted fails the job at once.
//!     |folders| Ok(aiom4b::plan::plan(folders, &scan, &config.limits(), &plan_options)?),
//!     |ctx: &JobContext, book: &Book| {
//!         ctx.set_audio_duration(book.duration_secs());
//!         let converter = Converter::new(ConvertOptions { jobs: ctx.engine_threads(), ..options.clone() });
//!         // The job's .part is the only temporary: the engine writes it, the workflow publishes it.
//!         converter.convert_to_part(book, ctx.part_path(), ctx, &CancelToken::from_flag(ctx.cancel_flag()))?;
//!         Ok(ConversionResult { output: ctx.part_path().to_path_buf(), metadata: book.metadata.clone(),
//!                               audio_duration_secs: Some(book.duration_secs()), ..Default::default() })
//!     },
//! )?;
//! ```
//!
//! The library logs through `tracing` only: every event of a job is inside a `job` span with a
//! `job_id` field, and audit events (one per job, backup, restore, deletion) use the target
//! [`AUDIT_TARGET`].
pub mod backup;
pub mod batch;
mod category;
pub mod config;
pub mod errors;
pub mod folders;
pub mod jobs;
pub mod logfile;
pub mod naming;
pub mod post_action;
mod preflight;
pub mod process;
pub mod retry;
pub mod staging;

pub use backup::BackupStore;
pub use batch::{run_batch, run_batch_prepared, BatchOptions, BatchReport, BookResult, BookStatus};
pub use config::{Config, ConfigError, Overrides};
pub use errors::{Error, ErrorCategory, JobError, Result};
pub use jobs::{Job, JobFilter, JobStats, JobStatus, JobStore, SqliteStore, StageTiming};
pub use post_action::PostAction;

use crate::model::BookMetadata;
use crate::publish::{self, PartFile};
use jobs::JobFailure;
use process::{Liveness, ProcessIdentity};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The `tracing` target of audit lines.
pub const AUDIT_TARGET: &str = "aiom4b::audit";

/// Emits an audit line (`tracing::info!` with target [`AUDIT_TARGET`]).
macro_rules! audit {
    ($($t:tt)*) => { tracing::info!(target: "aiom4b::audit", $($t)*) };
}
pub(crate) use audit;

/// Conversion attempts per job when failures are transient.
const MAX_ATTEMPTS: u32 = 3;
/// Progress is written at most this often…
const PROGRESS_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// …and only when it moved by at least this many percentage points.
const PROGRESS_MIN_STEP: f64 = 1.0;

/// Fault-injection points for tests (kill during backup, failing deletions). Not for production.
#[doc(hidden)]
#[derive(Clone, Default)]
#[allow(clippy::type_complexity)]
pub struct Hooks {
    /// Called after each file copied into a backup's staging folder.
    pub after_backup_file: Option<Arc<dyn Fn(&Path) + Send + Sync>>,
    /// Called before each file of a source folder is removed; an error aborts the removal.
    pub before_source_remove: Option<Arc<dyn Fn(&Path) -> std::io::Result<()> + Send + Sync>>,
    /// Called when a job reaches a point where a crash is worth testing: `convert` (the first
    /// progress write), `publish` (output recorded, part complete, before the rename),
    /// `published` (after the rename, before the record says so), `move` (a cross-file-system
    /// move's staging folder exists, before the copy).
    pub at_stage: Option<Arc<dyn Fn(&str) + Send + Sync>>,
}

impl Hooks {
    fn stage(&self, name: &str) {
        if let Some(hook) = &self.at_stage {
            hook(name);
        }
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").finish_non_exhaustive()
    }
}

/// What to convert and what to do around it.
#[derive(Debug, Clone, Default)]
pub struct JobRequest {
    /// The source folders of one book, in order.
    pub folders: Vec<PathBuf>,
    /// The conversion options, recorded in the job as given (the workflow does not read them).
    pub options: serde_json::Value,
    /// Back up the folders first; `None` follows `BACKUP_ENABLED`.
    pub backup: Option<bool>,
    /// Output file name template; `None` follows `NAME_TEMPLATE`.
    pub name_template: Option<String>,
    /// Output folder; `None` is `DATA_DIR/output`.
    pub output_dir: Option<PathBuf>,
    /// An exact output file (`-o`): replaces the folder and the name template; the `.part` is
    /// written beside it so that publishing is one rename on one file system.
    pub output_file: Option<PathBuf>,
    /// Replace an existing `output_file` (generated names are never replaced: they get ` (2)`).
    pub overwrite: bool,
    /// What to do with the source folders after success.
    pub post_action: PostAction,
    /// Conversion time limit; `None` follows `PROCESSING_TIMEOUT_SECS` (0 = from audio length).
    pub timeout: Option<Duration>,
    /// Threads the engine may use; `None` = all cores (or 1 with `USE_ALL_CPUS=false`).
    pub engine_threads: Option<usize>,
    /// Files the conversion reads besides the source folders (a cover, a chapters file): the
    /// output may never replace one of them.
    pub inputs: Vec<PathBuf>,
}

/// What the injected converter reports on success.
#[derive(Debug, Clone, Default)]
pub struct ConversionResult {
    /// The file written; normally [`JobContext::part_path`]. It must be on the output folder's
    /// file system (it is renamed into place).
    pub output: PathBuf,
    /// Title, author … for the output name.
    pub metadata: BookMetadata,
    pub audio_duration_secs: Option<f64>,
    /// The engine's own stages (scan, probe, decode …), stored with the workflow's.
    pub stage_timings: Vec<StageTiming>,
    /// Soft problems worth showing to the user.
    pub warnings: Vec<String>,
}

/// The end of a job.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    /// The final job record (status, output path, error …).
    pub job: Job,
    pub warnings: Vec<String>,
}

impl JobOutcome {
    pub fn succeeded(&self) -> bool {
        self.job.status == JobStatus::Completed
    }
}

/// What the converter gets: the job id, where to write, progress, cancellation.
/// Shared by reference with the engine's threads (it is `Sync`).
pub struct JobContext<'a> {
    id: Uuid,
    folders: &'a [PathBuf],
    part_path: &'a Path,
    engine_threads: usize,
    cancel: Arc<AtomicBool>,
    store: &'a dyn JobStore,
    hooks: &'a Hooks,
    /// (time of the last write, percent written)
    throttle: Mutex<(Option<Instant>, f64)>,
    watchdog: &'a Watchdog,
    auto_timeout: bool,
}

impl std::fmt::Debug for JobContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.id)
            .field("part_path", &self.part_path)
            .finish_non_exhaustive()
    }
}

impl JobContext<'_> {
    pub fn job_id(&self) -> Uuid {
        self.id
    }

    /// The (canonical) source folders of the book.
    pub fn source_folders(&self) -> &[PathBuf] {
        self.folders
    }

    /// Where to write the M4B: a hidden `.part` file in the output folder, removed if the job
    /// fails and after a crash; renamed to its final name on success. Any other temporary file
    /// whose name starts with this file's name is cleaned up the same way.
    pub fn part_path(&self) -> &Path {
        self.part_path
    }

    /// Threads the engine should use for this job (cores shared between concurrent jobs).
    pub fn engine_threads(&self) -> usize {
        self.engine_threads
    }

    /// Reports progress as a fraction 0..=1. Cheap to call per packet: database writes are
    /// throttled to at most two per second and only on a change of at least one percent.
    /// A failing write is logged and ignored — progress never fails a conversion.
    pub fn progress(&self, fraction: f64) {
        let percent = (fraction * 100.0).clamp(0.0, 100.0);
        let mut t = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
        let due =
            t.0.is_none_or(|last| last.elapsed() >= PROGRESS_MIN_INTERVAL);
        if !due || percent - t.1 < PROGRESS_MIN_STEP {
            return;
        }
        let first = t.0.is_none();
        *t = (Some(Instant::now()), percent);
        drop(t);
        if first {
            self.hooks.stage("convert");
        }
        if let Err(e) = self.store.set_progress(self.id, percent) {
            tracing::debug!(error = %e, "progress not recorded");
        }
    }

    /// True once the job should stop: cancelled by the user or past its time limit. The
    /// converter checks it per packet and returns [`JobError::cancelled`].
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// The flag behind [`JobContext::is_cancelled`], for the engine's own cancel token.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Tells the workflow the audio length once known, so the derived time limit fits the book.
    /// Ignored when the limit was set explicitly.
    pub fn set_audio_duration(&self, secs: f64) {
        if self.auto_timeout && secs.is_finite() && secs >= 0.0 {
            self.watchdog.set_limit(auto_timeout(secs));
        }
    }
}

/// Share of the job's progress that encoding covers; the rest is finishing, verifying and
/// publishing, so a job does not sit at 100 % while its file is still being checked.
const ENCODE_PROGRESS_SHARE: f64 = 0.95;

/// The engine reports progress straight into the job record (throttled by
/// [`JobContext::progress`]); a CLI that also draws a bar forwards to both.
impl crate::progress::ProgressSink for JobContext<'_> {
    fn encoded(&self, done: u64, total: u64) {
        if total > 0 {
            self.progress(ENCODE_PROGRESS_SHARE * (done.min(total) as f64 / total as f64));
        }
    }
}

/// The derived time limit: 15 minutes plus twice the audio length. The engine runs tens of
/// times faster than real time, so only a stuck conversion reaches it.
fn auto_timeout(audio_secs: f64) -> Duration {
    Duration::from_secs(15 * 60) + Duration::from_secs_f64((audio_secs * 2.0).min(1e9))
}

/// Sets the cancel flag when the time limit passes. One thread per running job, sleeping on a
/// condition variable; it ends when the watchdog is dropped.
struct Watchdog {
    state: Arc<(Mutex<WatchState>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct WatchState {
    started: Instant,
    limit: Duration,
    done: bool,
    timed_out: bool,
}

impl Watchdog {
    fn start(limit: Duration, cancel: Arc<AtomicBool>) -> Watchdog {
        let state = Arc::new((
            Mutex::new(WatchState {
                started: Instant::now(),
                limit,
                done: false,
                timed_out: false,
            }),
            Condvar::new(),
        ));
        let s = state.clone();
        let thread = std::thread::Builder::new()
            .name("aiom4b-watchdog".into())
            .spawn(move || {
                let (lock, cvar) = &*s;
                let mut st = lock.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if st.done {
                        return;
                    }
                    let elapsed = st.started.elapsed();
                    if elapsed >= st.limit {
                        st.timed_out = true;
                        cancel.store(true, Ordering::Relaxed);
                        return;
                    }
                    let wait = st.limit - elapsed;
                    st = cvar
                        .wait_timeout(st, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            })
            .ok();
        Watchdog { state, thread }
    }

    fn set_limit(&self, limit: Duration) {
        let (lock, cvar) = &*self.state;
        lock.lock().unwrap_or_else(|p| p.into_inner()).limit = limit;
        cvar.notify_all();
    }

    fn timed_out(&self) -> Option<Duration> {
        let st = self.state.0.lock().unwrap_or_else(|p| p.into_inner());
        st.timed_out.then_some(st.limit)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.state;
        lock.lock().unwrap_or_else(|p| p.into_inner()).done = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The workflow: configuration, job store, backups, and the jobs running in this process.
pub struct Workflow {
    config: Config,
    store: Arc<dyn JobStore>,
    backups: BackupStore,
    owner: ProcessIdentity,
    active: Mutex<HashMap<Uuid, Arc<AtomicBool>>>,
    cancel_all: AtomicBool,
    hooks: Hooks,
}

impl std::fmt::Debug for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workflow")
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl Workflow {
    /// Opens the workflow on `DATA_DIR`: creates its folders, opens `aiom4b.db`, removes what
    /// interrupted runs left behind and marks their jobs failed (see [`Workflow::recover`]).
    pub fn open(config: Config) -> Result<Workflow> {
        config
            .ensure_data_dirs()
            .map_err(|e| Error::io(&config.data_dir, "create data folders", e))?;
        let store = SqliteStore::open(&config.db_path())?;
        Workflow::with_store(config, Arc::new(store))
    }

    /// [`Workflow::open`] with another job store (PostgreSQL later, or a test double).
    pub fn with_store(config: Config, store: Arc<dyn JobStore>) -> Result<Workflow> {
        config
            .ensure_data_dirs()
            .map_err(|e| Error::io(&config.data_dir, "create data folders", e))?;
        let wf = Workflow {
            backups: BackupStore::new(config.backup_dir()).excluding(config.protected_dirs()),
            config,
            store,
            owner: ProcessIdentity::current(),
            active: Mutex::new(HashMap::new()),
            cancel_all: AtomicBool::new(false),
            hooks: Hooks::default(),
        };
        wf.backups.clean_temporaries()?;
        wf.recover()?;
        Ok(wf)
    }

    /// Installs fault-injection hooks (tests only).
    #[doc(hidden)]
    pub fn with_hooks(mut self, hooks: Hooks) -> Self {
        self.backups = self.backups.clone().with_hooks(hooks.clone());
        self.hooks = hooks;
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &dyn JobStore {
        &*self.store
    }

    pub fn backups(&self) -> &BackupStore {
        &self.backups
    }

    /// The job with this id or unique id prefix.
    pub fn find_job(&self, id: &str) -> Result<Job> {
        let mut found = self.store.find_by_prefix(id.trim())?;
        match found.len() {
            1 => Ok(found.remove(0)),
            _ => Err(Error::JobNotFound(id.into())),
        }
    }

    /// Checks a request before anything is written (see `preflight`): the output never replaces
    /// an input or lands where it would feed back into a book, sources inside the backup folder
    /// are refused, a move target must be writable and large enough. [`Workflow::run_job`] runs
    /// the same checks and fails the job with the same error; a front end calls this first to
    /// refuse a bad request without creating a job.
    pub fn preflight(&self, request: &JobRequest) -> Result<()> {
        let folders = canonical_folders(&request.folders);
        let template = request
            .name_template
            .clone()
            .unwrap_or_else(|| self.config.name_template.clone());
        preflight::check(&self.config, request, &folders, &template)
    }

    /// Asks a running job of this process to stop; false if it is not running here.
    pub fn cancel(&self, id: Uuid) -> bool {
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        active
            .get(&id)
            .map(|c| c.store(true, Ordering::Relaxed))
            .is_some()
    }

    /// Stops every running job and refuses new ones (Ctrl-C).
    pub fn cancel_all(&self) {
        self.cancel_all.store(true, Ordering::Relaxed);
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        for c in active.values() {
            c.store(true, Ordering::Relaxed);
        }
    }

    /// True after [`Workflow::cancel_all`].
    pub fn is_cancelled(&self) -> bool {
        self.cancel_all.load(Ordering::Relaxed)
    }

    /// Finds jobs left `pending` or `processing` by a process of this host that no longer
    /// runs (crash, `kill -9`, power loss), removes their `.part` files and marks them failed
    /// as interrupted. Jobs of other hosts and of live processes are left alone. Returns the
    /// recovered jobs.
    pub fn recover(&self) -> Result<Vec<Job>> {
        let mut recovered = Vec::new();
        for status in [JobStatus::Pending, JobStatus::Processing] {
            let filter = JobFilter {
                status: Some(status),
                ..Default::default()
            };
            for mut job in self.store.list(&filter)? {
                let Some(owner) = job.owner.clone() else {
                    continue; // queued for a worker, not owned by any process yet
                };
                if owner.liveness() != Liveness::Dead {
                    continue;
                }
                // The output path is recorded just before the rename, while the part still
                // exists; so the job was published only if its part is gone.
                let unpublished = job.part_path.as_ref().is_some_and(|p| p.exists());
                for p in publish::remove_temporaries(&job_temporaries(&job)) {
                    tracing::info!(path = %p.display(), "removed what an interrupted job left");
                }
                let backups = job
                    .backup_paths
                    .iter()
                    .filter_map(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect::<Vec<_>>();
                job.finished_at = Some(jobs::now_millis());
                // Published before the process ended: the book is complete (it is verified
                // before it is published); say what was left undone instead of "crash".
                let published = job
                    .output_path
                    .clone()
                    .filter(|p| !unpublished && p.is_file());
                if let Some(output) = published {
                    job.output_bytes = fs::metadata(&output).ok().map(|m| m.len());
                    job.status = JobStatus::Completed;
                    job.progress_percent = 100.0;
                    job.error = job.post_action.as_ref().map(|action| JobFailure {
                        category: ErrorCategory::System,
                        message: format!(
                            "the book was written to {}, but process {} on {} ended before the post-action ({action}) was finished",
                            output.display(), owner.pid, owner.hostname
                        ),
                        remedy: format!(
                            "check the source folders; restore an incomplete one with `aiom4b backup restore NAME` ({})",
                            backups.join(", ")
                        ),
                    });
                    if self.store.update(&job, status)? {
                        audit!(action = "job.recovered", job_id = %job.id, output = %output.display(), "job was published before its process ended; recorded as completed");
                        recovered.push(job);
                    }
                    continue;
                }
                job.status = JobStatus::Failed;
                job.error = Some(JobFailure {
                    category: ErrorCategory::System,
                    message: format!(
                        "interrupted: process {} on {} ended while the job was {status} (crash, kill or power loss)",
                        owner.pid, owner.hostname
                    ),
                    remedy: if backups.is_empty() {
                        "run the conversion again".into()
                    } else {
                        format!(
                            "run the conversion again; if a source folder looks incomplete, restore it with `aiom4b backup restore NAME` ({})",
                            backups.join(", ")
                        )
                    },
                });
                if self.store.update(&job, status)? {
                    audit!(action = "job.interrupted", job_id = %job.id, pid = owner.pid, "marked interrupted job failed");
                    recovered.push(job);
                }
            }
        }
        Ok(recovered)
    }

    /// Runs one conversion job from start to end (see the module documentation).
    ///
    /// `convert` may be called more than once when it fails with a transient error (hence
    /// `FnMut`); a panic inside it fails the job instead of the process.
    ///
    /// Returns `Ok` with the final job record whether the job completed, failed or was
    /// cancelled; `Err` only when the job could not be recorded at all (database unusable).
    pub fn run_job<F>(&self, request: JobRequest, mut convert: F) -> Result<JobOutcome>
    where
        F: FnMut(&JobContext<'_>) -> std::result::Result<ConversionResult, JobError>,
    {
        self.run_job_prepared(request, |_| Ok(()), |ctx, _: &()| convert(ctx))
    }

    /// [`Workflow::run_job`] with a `prepare` step that runs once, after the request is checked
    /// and before anything is backed up: the engine validates and plans the book there, so an
    /// input that cannot be converted fails its job (category input, with a remedy) without a
    /// useless backup. It gets the canonical source folders; what it returns is handed to every
    /// `convert` attempt. A panic in it fails the job like one in `convert`.
    pub fn run_job_prepared<T, P, F>(
        &self,
        request: JobRequest,
        prepare: P,
        mut convert: F,
    ) -> Result<JobOutcome>
    where
        P: FnOnce(&[PathBuf]) -> std::result::Result<T, JobError>,
        F: FnMut(&JobContext<'_>, &T) -> std::result::Result<ConversionResult, JobError>,
    {
        let folders = canonical_folders(&request.folders);
        let output_dir = match &request.output_file {
            Some(file) => file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
            None => request
                .output_dir
                .clone()
                .unwrap_or_else(|| self.config.output_dir()),
        };
        // Absolute, because the recorded `.part` is removed by whichever later process finds
        // the job interrupted, from whatever directory it runs in.
        let output_dir = std::path::absolute(&output_dir).unwrap_or(output_dir);
        let mut job = Job::new(folders, request.options.clone());
        job.owner = Some(self.owner.clone());
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
        self.store.insert(&job)?;

        let span = tracing::info_span!("job", job_id = %job.id);
        let _entered = span.enter();
        audit!(action = "job.create", job_id = %job.id, folders = ?job.source_folders, "job created");

        let cancel = Arc::new(AtomicBool::new(false));
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.id, cancel.clone());
        // Checked after registering, not before: a `cancel_all` that walked `active` before the
        // insert has already raised its flag, which this sees; one that walks it later finds
        // this job there. Checking first would lose a Ctrl-C that lands in between.
        if self.is_cancelled() {
            cancel.store(true, Ordering::Relaxed);
        }
        let mut stored = JobStatus::Pending;
        let mut published = false;
        let result = self.drive(
            &mut job,
            &mut stored,
            &mut published,
            &request,
            &output_dir,
            part,
            &cancel,
            prepare,
            &mut convert,
        );
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&job.id);

        let mut warnings = match result {
            Ok(warnings) => {
                job.status = JobStatus::Completed;
                job.progress_percent = 100.0;
                job.error = None;
                warnings
            }
            // The output is in place and verified; what failed after it (moving or deleting the
            // sources, which was rolled back) is recorded, but the job did what it was for.
            Err(e) if published => {
                tracing::error!(target: "aiom4b::jobs", category = %e.category, remedy = %e.remedy, "after the output was written: {}", e.message);
                job.status = JobStatus::Completed;
                job.progress_percent = 100.0;
                job.error = Some(JobFailure::from(&e));
                vec![format!("the book was written, but {}", e.message)]
            }
            Err(e) => {
                // Its temporaries are gone (the part file was dropped inside `drive`); it was
                // never published, so it has no output.
                job.output_path = None;
                job.output_bytes = None;
                job.status = if e.cancelled {
                    JobStatus::Cancelled
                } else {
                    JobStatus::Failed
                };
                job.error = Some(JobFailure::from(&e));
                match e.cancelled {
                    // Target `aiom4b::jobs`: the CLI shows the failure itself, so its terminal log
                    // leaves these out (the JSON log file keeps them).
                    true => tracing::warn!(target: "aiom4b::jobs", "job cancelled"),
                    false => {
                        tracing::error!(target: "aiom4b::jobs", category = %e.category, remedy = %e.remedy, "job failed: {}", e.message)
                    }
                }
                Vec::new()
            }
        };
        job.finished_at = Some(jobs::now_millis());
        match self.store.update(&job, stored) {
            Ok(true) => {}
            Ok(false) => {
                // Another process decided about this job meanwhile (it thought we were dead);
                // the stored decision stands.
                tracing::warn!("job record was changed by another process; keeping its version");
                if let Some(j) = self.store.get(job.id)? {
                    job = j;
                }
            }
            // The output is published and verified: a record that cannot be written (a full
            // disk under the database) must not turn that into a failure. The record still
            // names the output (written before publishing), so recovery will complete it.
            Err(e) if published => {
                tracing::error!(error = %e, "the job record could not be updated");
                warnings.push(format!(
                    "the job record could not be updated ({e}); the book is complete, and the next start of aiom4b records the job as completed"
                ));
            }
            Err(e) => return Err(e.into()),
        }
        audit!(
            action = "job.finish",
            job_id = %job.id,
            status = %job.status,
            output = job.output_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            error_category = job.error.as_ref().map(|e| e.category.as_str()).unwrap_or(""),
            "job {}", job.status
        );
        Ok(JobOutcome { job, warnings })
    }

    /// Writes `job` if the stored status is still `stored`; then `stored` follows the job.
    fn save(&self, job: &Job, stored: &mut JobStatus) -> std::result::Result<(), JobError> {
        if !self.store.update(job, *stored).map_err(Error::from)? {
            return Err(JobError::new(
                ErrorCategory::System,
                "the job record was changed by another process",
                "check `aiom4b status` and run the conversion again",
            ));
        }
        *stored = job.status;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn drive<T, P, F>(
        &self,
        job: &mut Job,
        stored: &mut JobStatus,
        published: &mut bool,
        request: &JobRequest,
        output_dir: &Path,
        part: PartFile,
        cancel: &Arc<AtomicBool>,
        prepare: P,
        convert: &mut F,
    ) -> std::result::Result<Vec<String>, JobError>
    where
        P: FnOnce(&[PathBuf]) -> std::result::Result<T, JobError>,
        F: FnMut(&JobContext<'_>, &T) -> std::result::Result<ConversionResult, JobError>,
    {
        let stopped = || cancel.load(Ordering::Relaxed);
        // --- validate before touching anything
        let backup_enabled = request.backup.unwrap_or(self.config.backup_enabled);
        let template = request
            .name_template
            .clone()
            .unwrap_or_else(|| self.config.name_template.clone());
        preflight::check(&self.config, request, &job.source_folders, &template)?;
        fs::create_dir_all(output_dir)
            .map_err(|e| Error::io(output_dir, "create output folder", e))?;
        let mut input_bytes = 0;
        for f in &job.source_folders {
            input_bytes += folders::folder_stats(f)?.total_bytes;
        }
        job.input_bytes = Some(input_bytes);
        self.save(job, stored)?;

        // --- prepare (validate and plan the input) before spending time and space on backups
        let t = Instant::now();
        let source_folders = job.source_folders.clone();
        let prepared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            prepare(&source_folders)
        }))
        .unwrap_or_else(|panic| Err(panic_error("preparing the conversion", panic)))?;
        push_timing(job, "prepare", t);
        if stopped() {
            return Err(JobError::cancelled());
        }

        // --- backups
        let mut backups = Vec::new();
        if backup_enabled {
            let t = Instant::now();
            for f in job.source_folders.clone() {
                if stopped() {
                    return Err(JobError::cancelled());
                }
                let info = self.backups.create(&f, Some(job.id))?;
                job.backup_paths.push(info.path.clone());
                self.save(job, stored)?;
                backups.push(info);
            }
            push_timing(job, "backup", t);
            // Retention is applied whenever new backups are made, so the folder stays bounded
            // without a scheduler; a failure here must not fail the conversion.
            if let Err(e) = self
                .backups
                .prune(self.config.backup_retention_days, chrono::Local::now())
            {
                tracing::warn!(error = %e, "pruning expired backups failed");
            }
        }
        if stopped() {
            return Err(JobError::cancelled());
        }

        // --- conversion
        job.status = JobStatus::Processing;
        job.started_at = Some(jobs::now_millis());
        self.save(job, stored)?;
        let explicit = request.timeout.or_else(|| {
            (self.config.processing_timeout_secs > 0)
                .then(|| Duration::from_secs(self.config.processing_timeout_secs))
        });
        // Before the engine knows the audio length: assume the lowest sensible bitrate
        // (32 kb/s), which overestimates the length and so errs on the generous side.
        let limit = explicit.unwrap_or_else(|| auto_timeout(input_bytes as f64 * 8.0 / 32_000.0));
        let watchdog = Watchdog::start(limit, cancel.clone());
        let part_path = part.path().to_path_buf();
        let source_folders = job.source_folders.clone();
        let ctx = JobContext {
            id: job.id,
            folders: &source_folders,
            part_path: &part_path,
            engine_threads: request
                .engine_threads
                .unwrap_or_else(|| self.config.engine_threads(1))
                .max(1),
            cancel: cancel.clone(),
            store: &*self.store,
            hooks: &self.hooks,
            throttle: Mutex::new((None, 0.0)),
            watchdog: &watchdog,
            auto_timeout: explicit.is_none(),
        };
        let t = Instant::now();
        let retry_policy = retry::Backoff {
            attempts: MAX_ATTEMPTS,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        };
        let result = loop {
            job.attempts += 1;
            self.save(job, stored)?;
            let attempt =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| convert(&ctx, &prepared)))
                    .unwrap_or_else(|panic| Err(panic_error("the converter", panic)));
            match attempt {
                Ok(r) => break r,
                Err(_) if stopped() => {
                    return Err(match watchdog.timed_out() {
                        Some(limit) => JobError::new(
                            ErrorCategory::Processing,
                            format!("timed out after {} s", limit.as_secs()),
                            "raise PROCESSING_TIMEOUT_SECS, or look for an input file that hangs the decoder",
                        ),
                        None => JobError::cancelled(),
                    });
                }
                Err(e) if e.transient && job.attempts < MAX_ATTEMPTS => {
                    publish::remove_temporaries(&part.temporaries());
                    let delay = retry_policy.delay(job.attempts - 1);
                    tracing::warn!(
                        attempt = job.attempts,
                        ?delay,
                        "transient failure, retrying: {}",
                        e.message
                    );
                    std::thread::sleep(delay);
                }
                Err(e) => return Err(e),
            }
        };
        drop(watchdog);
        push_timing(job, "convert", t);
        job.stage_timings
            .extend(result.stage_timings.iter().cloned());
        job.audio_duration_secs = result.audio_duration_secs;
        job.progress_percent = 100.0;

        // --- output
        let t = Instant::now();
        let produced = &result.output;
        match fs::metadata(produced) {
            Ok(m) if m.is_file() && m.len() > 0 => {}
            _ => {
                return Err(JobError::new(
                    ErrorCategory::Processing,
                    format!(
                        "the converter reported success but {} is missing or empty",
                        produced.display()
                    ),
                    "this is a bug in aiom4b; please report it",
                ))
            }
        }
        // The record names the output before the rename (write-ahead): if the process dies
        // right after it, recovery finds the published file instead of calling it a crash.
        let mode = Some(self.config.output_mode);
        let final_path = match &request.output_file {
            Some(file) => {
                job.output_path = Some(file.clone());
                self.save(job, stored)?;
                self.hooks.stage("publish");
                part.publish_to(file, mode, request.overwrite)
                    .map_err(|e| publish_error(file, e))?;
                file.clone()
            }
            None => {
                let folder = job.source_folders[0]
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let stem = naming::render(
                    &template,
                    &result.metadata,
                    &folder,
                    &naming::timestamp(chrono::Local::now()),
                );
                let candidate = |n: u32| match n {
                    1 => output_dir.join(format!("{stem}.m4b")),
                    n => output_dir.join(format!("{stem} ({n}).m4b")),
                };
                part.publish_numbered(mode, candidate, |target| {
                    job.output_path = Some(target.to_path_buf());
                    self.save(job, stored).map_err(std::io::Error::other)?;
                    self.hooks.stage("publish");
                    Ok(())
                })
                .map_err(|e| publish_error(&output_dir.join(format!("{stem}.m4b")), e))?
            }
        };
        *published = true;
        self.hooks.stage("published");
        job.output_bytes = fs::metadata(&final_path).ok().map(|m| m.len());
        job.output_path = Some(final_path.clone());
        push_timing(job, "publish", t);
        self.save(job, stored)?;
        audit!(action = "output.write", job_id = %job.id, path = %final_path.display(), bytes = job.output_bytes.unwrap_or(0), "wrote output");

        // --- post-actions (only with backups; checked above)
        if request.post_action != PostAction::Keep {
            let t = Instant::now();
            if let PostAction::MoveTo(dir) = &request.post_action {
                let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
                job.temp_paths
                    .extend(post_action::move_temporaries(&dir, job.id));
                self.save(job, stored)?;
            }
            for (f, b) in job.source_folders.clone().iter().zip(&backups) {
                post_action::apply(
                    &request.post_action,
                    job.id,
                    f,
                    b,
                    &self.backups,
                    &self.hooks,
                )?;
            }
            push_timing(job, "post_action", t);
        }
        Ok(result.warnings)
    }
}

/// The job error for a panic inside an injected step.
fn panic_error(what: &str, panic: Box<dyn std::any::Any + Send>) -> JobError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    JobError::new(
        ErrorCategory::Processing,
        format!("internal error: {what} panicked: {message}"),
        "this is a bug in aiom4b; please report it with the log from data/logs",
    )
}

fn push_timing(job: &mut Job, stage: &str, since: Instant) {
    job.stage_timings.push(StageTiming {
        stage: stage.into(),
        millis: since.elapsed().as_millis() as u64,
    });
}

fn canonical_folders(folders: &[PathBuf]) -> Vec<PathBuf> {
    folders
        .iter()
        .map(|f| fs::canonicalize(f).unwrap_or_else(|_| f.clone()))
        .collect()
}

/// The temporaries of a job as recorded: [`Job::temp_paths`], or for records written before
/// that list existed, the `.part` and its sibling temporaries.
fn job_temporaries(job: &Job) -> Vec<PathBuf> {
    if !job.temp_paths.is_empty() {
        return job.temp_paths.clone();
    }
    job.part_path
        .as_ref()
        .map(|p| publish::temporaries_of(p))
        .unwrap_or_default()
}

/// The workflow error for a failed publish of `target`.
fn publish_error(target: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::AlreadyExists => Error::OutputFileExists(target.to_path_buf()),
        _ => Error::io(target, "move the finished file into place", e),
    }
}
