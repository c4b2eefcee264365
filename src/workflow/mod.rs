//! The workflow around the conversion engine: jobs, backups, output naming, post-actions,
//! recovery after crashes, batches, configuration.
//!
//! ```text
//!  bin (convert, batch, serve) ─▶ runner: JobRunner ─▶ steps (validate, prepare, backup,
//!       convert, publish, post_action) ─▶ engine: JobEngine (BookEngine = plan + Converter)
//!  below them: jobs (the store), backup, naming, post_action, preflight, staging, process,
//!       errors ─▶ category (nothing in the workflow imports upwards)
//! ```
//!
//! A job runs through a [`JobRunner`] (see [`runner`]): the [`Workflow`] holds the
//! configuration, the job store, the backups and the jobs running in this process; the
//! [`JobEngine`] converts (aiom4b's [`BookEngine`], or a fake in tests); the caller's
//! [`JobEvents`] get the steps, the engine's progress and findings, and the end.
//!
//! The library logs through `tracing` only: every event of a job is inside a `job` span with a
//! `job_id` field, and audit events (one per job, backup, restore, deletion) use the target
//! [`AUDIT_TARGET`].
pub mod backup;
pub mod batch;
mod category;
pub mod config;
mod context;
pub mod engine;
pub mod errors;
pub mod events;
pub mod folders;
mod hooks;
pub mod jobs;
pub mod lease;
pub mod library;
pub mod logfile;
pub mod naming;
pub mod post_action;
mod preflight;
pub mod process;
mod recover;
mod request;
pub mod retry;
pub mod runner;
pub mod staging;
mod steps;
mod watchdog;

pub use backup::BackupStore;
pub use batch::{BatchOptions, BatchReport, BookResult, BookStatus};
pub use config::{Config, ConfigError, Overrides};
pub use context::JobContext;
pub use engine::{BookEngine, ConvertFn, JobEngine};
pub use errors::{Error, ErrorCategory, JobError, Result};
pub use events::{JobEvent, JobEventSink, JobEvents, JobStep, NoEvents};
pub use hooks::Hooks;
pub use jobs::{
    CancelRequest, IdempotencyRecord, Job, JobFilter, JobStats, JobStatus, JobStore, QueueStats,
    SqliteStore, StageTiming,
};
pub use lease::LeaseTerms;
pub use post_action::PostAction;
pub use request::{ConversionResult, JobOutcome, JobRequest};
pub use runner::{JobRunner, QueuedJob};

use process::ProcessIdentity;
use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// The `tracing` target of audit lines.
pub const AUDIT_TARGET: &str = "aiom4b::audit";

/// Emits an audit line (`tracing::info!` with target [`AUDIT_TARGET`]).
macro_rules! audit {
    ($($t:tt)*) => { tracing::info!(target: "aiom4b::audit", $($t)*) };
}
pub(crate) use audit;

/// The workflow: configuration, job store, backups, and the jobs running in this process.
pub struct Workflow {
    pub(crate) config: Config,
    pub(crate) store: Arc<dyn JobStore>,
    pub(crate) backups: BackupStore,
    pub(crate) owner: ProcessIdentity,
    /// The cancel flags of the jobs running in this process.
    pub(crate) active: Mutex<HashMap<Uuid, Arc<AtomicBool>>>,
    cancel_all: AtomicBool,
    /// On [`Workflow::cancel_all`], claimed jobs go back to the queue instead of ending cancelled.
    release_on_stop: AtomicBool,
    pub(crate) hooks: Hooks,
}

impl std::fmt::Debug for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workflow")
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "postgres")]
fn open_database(url: &str) -> Result<Arc<dyn JobStore>> {
    Ok(Arc::new(jobs::PostgresStore::open(url)?))
}

#[cfg(not(feature = "postgres"))]
fn open_database(url: &str) -> Result<Arc<dyn JobStore>> {
    Err(Error::Invalid(format!(
        "DATABASE_URL={} needs aiom4b built with the `postgres` feature",
        jobs::redact_url(url)
    )))
}

impl Workflow {
    /// Opens the workflow on `DATA_DIR`: creates its folders, opens the job store (`aiom4b.db`,
    /// or the PostgreSQL database of `DATABASE_URL`, whose paths are relative to the roots:
    /// [`jobs::RootedStore`]), removes what interrupted runs left behind
    /// and marks their jobs failed (see [`Workflow::recover`]).
    pub fn open(config: Config) -> Result<Workflow> {
        config
            .ensure_data_dirs()
            .map_err(|e| Error::io(&config.data_dir, "create data folders", e))?;
        let store: Arc<dyn JobStore> = if config.database_url.is_empty() {
            Arc::new(SqliteStore::open(&config.db_path())?)
        } else {
            // A shared database: hosts may mount the shared folders at different places, so
            // its paths are kept relative to DATA_DIR/SOURCE_DIR (see `jobs::rooted`).
            Arc::new(jobs::RootedStore::new(
                open_database(&config.database_url)?,
                jobs::Roots::from_config(&config),
            ))
        };
        Workflow::with_store(config, store)
    }

    /// [`Workflow::open`] with another job store (PostgreSQL later, or a test double).
    pub fn with_store(config: Config, store: Arc<dyn JobStore>) -> Result<Workflow> {
        config
            .ensure_data_dirs()
            .map_err(|e| Error::io(&config.data_dir, "create data folders", e))?;
        let wf = Workflow {
            backups: BackupStore::new(config.backup_dir())
                .excluding(config.protected_dirs())
                .encrypting_to(config.backup_encrypt_to.clone()),
            config,
            store,
            owner: ProcessIdentity::current(),
            active: Mutex::new(HashMap::new()),
            cancel_all: AtomicBool::new(false),
            release_on_stop: AtomicBool::new(false),
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

    /// This process, as job records name it ([`Job::owner`]).
    pub fn owner(&self) -> &ProcessIdentity {
        &self.owner
    }

    /// The effective configuration this workflow runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The job database.
    pub fn store(&self) -> &dyn JobStore {
        &*self.store
    }

    /// The job database, shared (for a writer on another thread, such as the job log's).
    pub fn shared_store(&self) -> Arc<dyn JobStore> {
        self.store.clone()
    }

    /// The backup folder (`data/backup`) and its operations.
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
    /// are refused, a move target must be writable and large enough. [`JobRunner::run`] runs
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

    /// Like [`Workflow::cancel`], for a job its caller is about to run through
    /// [`JobRunner::run_queued`] (a queue took it, the runner has not registered it yet): the
    /// request is kept and the job ends as cancelled as soon as it starts, instead of being
    /// lost in between.
    pub fn cancel_queued(&self, id: Uuid) {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        active
            .entry(id)
            .or_insert_with(|| Arc::new(AtomicBool::new(false)))
            .store(true, Ordering::Relaxed);
    }

    /// Stops every running job and refuses new ones (Ctrl-C).
    pub fn cancel_all(&self) {
        self.cancel_all.store(true, Ordering::Relaxed);
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        for c in active.values() {
            c.store(true, Ordering::Relaxed);
        }
    }

    /// From now on, [`Workflow::cancel_all`] (a worker process stopping) hands the jobs this
    /// process claimed from the queue back to it ([`JobStore::release_lease`]), for another
    /// process to run, instead of recording them cancelled. A job whose cancel was requested,
    /// or that was published already, still ends as it would.
    pub fn release_on_stop(&self) {
        self.release_on_stop.store(true, Ordering::Relaxed);
    }

    /// Whether a stop now releases claimed jobs (see [`Workflow::release_on_stop`]).
    pub(crate) fn releasing(&self) -> bool {
        self.is_cancelled() && self.release_on_stop.load(Ordering::Relaxed)
    }

    /// True after [`Workflow::cancel_all`].
    pub fn is_cancelled(&self) -> bool {
        self.cancel_all.load(Ordering::Relaxed)
    }
}

fn canonical_folders(folders: &[PathBuf]) -> Vec<PathBuf> {
    folders
        .iter()
        .map(|f| fs::canonicalize(f).unwrap_or_else(|_| f.clone()))
        .collect()
}
