//! Job records and where they are kept.
//!
//! A [`Job`] is plain data: one conversion from request to outcome. [`JobStore`] is the small
//! storage trait the workflow talks to; [`SqliteStore`] implements it on a local SQLite file.
//! The trait and the schema avoid SQLite-only ideas (UUIDs as text, timestamps as UTC
//! ISO-8601, lists as JSON, conditional updates instead of locks) so that a PostgreSQL store for
//! the later REST service is a second implementation, not a redesign.
#[cfg(test)]
pub(crate) mod conformance;
#[cfg(feature = "postgres")]
mod postgres;
pub mod rooted;
mod sqlite;

#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
pub use rooted::{RootedStore, Roots};
pub use sqlite::SqliteStore;

use crate::workflow::category::ErrorCategory;
use crate::workflow::process::ProcessIdentity;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use uuid::Uuid;

/// The life of a job: `pending → processing → completed | failed | cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Created; backups are being made.
    Pending,
    /// The conversion runs.
    Processing,
    /// The output is published. A job whose post-action (moving or deleting the sources)
    /// failed after publishing is completed too, with [`Job::error`] set.
    Completed,
    /// Ended with an error (a time-out included) before the output was published;
    /// [`Job::error`] says why.
    Failed,
    /// Stopped on request (Ctrl-C, [`Workflow::cancel`](crate::workflow::Workflow::cancel))
    /// before the output was published.
    Cancelled,
}

impl JobStatus {
    /// Every status, in life order.
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Pending,
        JobStatus::Processing,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// The stable lowercase name used in the database, the CLI and `--json`.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Processing => "processing",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Parses [`JobStatus::as_str`] back.
    pub fn parse(s: &str) -> Option<Self> {
        JobStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long one stage of a job took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTiming {
    /// `backup`, `convert`, `publish`, `post_action`, or a stage the engine reports.
    pub stage: String,
    /// Wall-clock duration in milliseconds.
    pub millis: u64,
}

/// The stored form of a failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    /// Which of the four error categories the failure belongs to.
    pub category: ErrorCategory,
    /// What went wrong, naming the file or folder.
    pub message: String,
    /// What the user should do next.
    pub remedy: String,
}

/// One conversion job, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The job's id (random, version 4).
    pub id: Uuid,
    /// Where the job is in its life.
    pub status: JobStatus,
    /// When the job was created (UTC, millisecond precision).
    pub created_at: DateTime<Utc>,
    /// When the conversion step began (the job became [`JobStatus::Processing`]).
    pub started_at: Option<DateTime<Utc>>,
    /// When the job reached its final status.
    pub finished_at: Option<DateTime<Utc>>,
    /// 0–100.
    pub progress_percent: f64,
    /// The book's input folders, in book order.
    pub source_folders: Vec<PathBuf>,
    /// The conversion options as given (opaque to the workflow).
    pub options: serde_json::Value,
    /// The published `.m4b`; recorded just before publishing (so that recovery finds it),
    /// cleared when the job fails or is cancelled.
    pub output_path: Option<PathBuf>,
    /// The backups made of the source folders, one per folder, in order.
    pub backup_paths: Vec<PathBuf>,
    /// Total size in bytes of the MP3 files in the source folders, measured at validation.
    pub input_bytes: Option<u64>,
    /// Size in bytes of the published `.m4b`.
    pub output_bytes: Option<u64>,
    /// Length of the written audio in seconds, as the engine reports it.
    pub audio_duration_secs: Option<f64>,
    /// How long each stage took, in the order run.
    pub stage_timings: Vec<StageTiming>,
    /// Conversion attempts made (transient failures are retried).
    pub attempts: u32,
    /// Why the job failed or was cancelled; on a completed job, what failed after the output
    /// was published.
    pub error: Option<JobFailure>,
    /// The process working on the job while it is pending or processing.
    pub owner: Option<ProcessIdentity>,
    /// The temporary output file; removed if the job does not complete.
    pub part_path: Option<PathBuf>,
    /// Every temporary file or folder the job may create (its `.part`, the part's sibling
    /// temporaries, a move's staging folder and lock), recorded before they are created; after a
    /// crash, recovery removes exactly these.
    #[serde(default)]
    pub temp_paths: Vec<PathBuf>,
    /// What was asked to happen to the sources after success: `move:DIR` or `delete`; `None`
    /// keeps them.
    #[serde(default)]
    pub post_action: Option<String>,
    /// With `--split-at`, the published parts in order (then [`output_path`](Self::output_path)
    /// is the first); recorded, like `output_path`, before they are renamed into place, so
    /// that recovery can finish publishing them. Empty for a book published as one file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_parts: Vec<PathBuf>,
    /// How the audio was made, as the engine reported it: the parts' AAC copied, or encoded,
    /// and why. `None` until a conversion succeeds (and for engines that do not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<crate::convert::AudioUsed>,
    /// The claim of the process that runs the job from a shared queue
    /// ([`JobStore::claim_next`]); `None` for a job its creating process runs itself.
    #[serde(default)]
    pub lease: Option<Lease>,
}

/// The failure recorded on a cancelled job: category, message, remedy (also what
/// `JobError::cancelled` carries).
pub(crate) const CANCELLED: (ErrorCategory, &str, &str) = (
    ErrorCategory::Processing,
    "cancelled",
    "run the conversion again when wanted",
);

/// What [`JobStore::renew_lease`] found: the renewed lease, and whether someone asked the job
/// to stop ([`JobStore::request_cancel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    /// The lease, with its new expiry.
    pub lease: Lease,
    /// A cancel was requested: the holder stops the job (recorded cancelled).
    pub cancel_requested: bool,
}

/// What [`JobStore::request_cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelRequest {
    /// The job was queued and no process held it: it is now cancelled.
    Cancelled,
    /// A process holds the job: it is asked to stop, and does so at its next lease renewal.
    Requested,
    /// The job is finished (or unknown).
    NotActive,
}

/// The queue as a whole, for every instance's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Pending jobs no process holds: waiting for a worker.
    pub waiting: u64,
    /// Pending or processing jobs a process holds under a lease that has not expired.
    pub leased: u64,
    /// Jobs whose lease expired and that no process has put back in the queue yet.
    pub expired: u64,
}

/// A process's claim on a job: it holds the job until `expires_at` and renews the claim while
/// it works ([`JobStore::renew_lease`]). A process that dies loses it at expiry and the job
/// goes back to the queue ([`JobStore::requeue_expired`]). The token fences writes: an update
/// from a process whose lease was taken over does nothing ([`JobStore::update`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Random, new for every claim.
    pub token: Uuid,
    /// Until when the claim holds (the store's clock).
    pub expires_at: DateTime<Utc>,
}

impl Job {
    /// A new pending job.
    pub fn new(source_folders: Vec<PathBuf>, options: serde_json::Value) -> Self {
        Job {
            id: Uuid::new_v4(),
            status: JobStatus::Pending,
            created_at: now_millis(),
            started_at: None,
            finished_at: None,
            progress_percent: 0.0,
            source_folders,
            options,
            output_path: None,
            backup_paths: Vec::new(),
            input_bytes: None,
            output_bytes: None,
            audio_duration_secs: None,
            stage_timings: Vec::new(),
            attempts: 0,
            error: None,
            owner: None,
            part_path: None,
            temp_paths: Vec::new(),
            post_action: None,
            output_parts: Vec::new(),
            audio: None,
            lease: None,
        }
    }
}

/// The current time, truncated to milliseconds so that a stored and re-read job compare equal.
pub fn now_millis() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// Which jobs [`JobStore::list`] returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// Only jobs whose source folders include this (canonical) path.
    pub source_folder: Option<PathBuf>,
    /// At most this many jobs (the newest).
    pub limit: Option<usize>,
    /// Also search the archive.
    pub include_archived: bool,
}

/// Aggregates over all jobs, archived ones included.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobStats {
    /// Number of jobs.
    pub total: u64,
    /// Jobs with status [`JobStatus::Pending`].
    pub pending: u64,
    /// Jobs with status [`JobStatus::Processing`].
    pub processing: u64,
    /// Jobs with status [`JobStatus::Completed`].
    pub completed: u64,
    /// Jobs with status [`JobStatus::Failed`].
    pub failed: u64,
    /// Jobs with status [`JobStatus::Cancelled`].
    pub cancelled: u64,
    /// completed / (completed + failed + cancelled), 0–1; `None` before any job finished.
    pub success_rate: Option<f64>,
    /// Processing time of completed jobs (start to finish), seconds.
    pub processing_secs_avg: Option<f64>,
    /// Shortest processing time of a completed job, seconds.
    pub processing_secs_min: Option<f64>,
    /// Longest processing time of a completed job, seconds.
    pub processing_secs_max: Option<f64>,
    /// Input bytes of the completed jobs.
    pub input_bytes_total: u64,
    /// Output bytes of the completed jobs.
    pub output_bytes_total: u64,
    /// Audio seconds written by the completed jobs.
    pub audio_secs_total: f64,
    /// Audio seconds converted per second of processing over completed jobs.
    pub realtime_factor: Option<f64>,
    /// Failed jobs per category, most frequent first (cancelled jobs not counted).
    pub failures_by_category: Vec<(ErrorCategory, u64)>,
}

/// Errors of a job store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database reported an error.
    #[error("{path}: job database: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer aiom4b.
    #[error("{path}: job database schema version {found} is newer than this aiom4b knows ({known}); upgrade aiom4b")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The schema version stored in the database.
        found: i64,
        /// The newest schema version this aiom4b knows.
        known: i64,
    },
    /// The PostgreSQL job store reported an error.
    #[cfg(feature = "postgres")]
    #[error("{url}: job database: {source}")]
    Postgres {
        /// The database URL, without its password.
        url: String,
        /// The client's error.
        #[source]
        source: ::postgres::Error,
    },
    /// A stored record cannot be read back.
    #[error("{path}: job {id}: unreadable record: {reason}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The record's job id, as stored (text, possibly not a valid UUID).
        id: String,
        /// What could not be read (which column, and the parse error).
        reason: String,
    },
}

impl StoreError {
    /// A locked or busy database: another process is writing. Worth retrying.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            #[cfg(feature = "postgres")]
            StoreError::Postgres { source, .. } => postgres_transient(source),
            _ => false,
        }
    }

    /// What the user should do next.
    pub fn remedy(&self) -> &'static str {
        match self {
            StoreError::Sqlite { .. } if self.is_transient() => {
                "another aiom4b process holds the database; retry in a moment"
            }
            StoreError::Sqlite { .. } => {
                "check the disk and the permissions of data/aiom4b.db; run `sqlite3 data/aiom4b.db 'PRAGMA integrity_check'`"
            }
            StoreError::TooNew { .. } => "upgrade aiom4b, or point DATA_DIR elsewhere",
            #[cfg(feature = "postgres")]
            StoreError::Postgres { .. } => {
                "check that the PostgreSQL server of DATABASE_URL runs and accepts this user"
            }
            StoreError::Corrupt { .. } => "archive or delete the job record",
        }
    }
}

/// The job columns, in the order both stores write and read them; both tables have them.
pub(super) const COLUMNS: &str = "id, status, created_at, started_at, finished_at, \
    progress_percent, source_folders, options, output_path, backup_paths, input_bytes, \
    output_bytes, audio_duration_secs, stage_timings, attempts, error_category, error_message, \
    error_remedy, pid, hostname, pid_start_ticks, part_path, temp_paths, post_action, \
    output_parts, audio, lease_token, lease_expires_at";
/// `SET` assignments that make a job held by no process: no owner, no lease (the queue's
/// requeue, fail and release statements of both stores).
pub(super) const NO_HOLDER: &str = "pid = NULL, hostname = NULL, pid_start_ticks = NULL, \
    lease_token = NULL, lease_expires_at = NULL";

/// The last columns of [`COLUMNS`], which `update` leaves alone: the lease changes only
/// through the queue's methods.
pub(super) const LEASE_COLUMNS: usize = 2;

/// `column = <mark>N` for every column `update` writes (all but the id and the lease), with
/// `N` from 2 (the id is parameter 1); `mark` is the backend's placeholder (`?` or `$`).
pub(super) fn update_assignments(mark: char) -> String {
    let cols: Vec<&str> = COLUMNS.split(", ").collect();
    let set = &cols[1..cols.len() - LEASE_COLUMNS];
    set.iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = {mark}{}", i + 2))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A stored path as text. Job records are informative; a non-UTF-8 path is shown with
/// replacement characters. Nothing is deleted through a stored path alone (see
/// `Workflow::recover`).
pub(super) fn path_text(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Paths as a JSON array of [`path_text`]s.
pub(super) fn paths_json(paths: &[PathBuf]) -> serde_json::Value {
    serde_json::Value::Array(
        paths
            .iter()
            .map(|p| serde_json::Value::String(path_text(p)))
            .collect(),
    )
}

/// The `LIKE` pattern for a job id prefix as a user typed it, or `None` when it cannot match
/// any id: ids are lowercase hex with dashes, so anything else (and every `LIKE` wildcard) is
/// refused here.
pub(super) fn id_prefix_pattern(prefix: &str) -> Option<String> {
    let prefix = prefix.to_ascii_lowercase();
    (!prefix.is_empty() && prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        .then(|| format!("{prefix}%"))
}

/// A database URL with any password replaced by `***`, for messages and `aiom4b config`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &rest[..colon],
                &rest[at..]
            ),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// A broken connection, a server shutting down or starting, a serialization failure or a
/// deadlock: worth trying again (on a new connection).
#[cfg(feature = "postgres")]
fn postgres_transient(e: &::postgres::Error) -> bool {
    use ::postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(c) => {
            *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || c.code().starts_with("08")
        }
        // No answer from the server at all: the connection failed (refused, reset).
        None => e.as_db_error().is_none(),
    }
}

/// Where jobs are kept. Implementations are shared between threads; every method is one
/// atomic operation. Writes that depend on the current state ([`JobStore::update`]) are
/// conditional, so that two processes (a crashed run's successor and a live one, two
/// recoverers) never overwrite each other's decisions.
pub trait JobStore: Send + Sync {
    /// Stores a new job.
    fn insert(&self, job: &Job) -> Result<(), StoreError>;
    /// The job with this id (live or archived).
    fn get(&self, id: Uuid) -> Result<Option<Job>, StoreError>;
    /// Jobs whose id starts with `prefix` (as typed by a user), live or archived.
    fn find_by_prefix(&self, prefix: &str) -> Result<Vec<Job>, StoreError>;
    /// Writes every field of `job` but its lease if its stored status is still `expected` and
    /// its stored lease token is `job.lease`'s (none for none); returns whether it did. The
    /// lease itself changes only through the queue's methods below.
    fn update(&self, job: &Job, expected: JobStatus) -> Result<bool, StoreError>;
    /// Records progress of a running job (0–100). Cheap; called often (throttled by the caller).
    fn set_progress(&self, id: Uuid, percent: f64) -> Result<(), StoreError>;
    /// Jobs matching `filter`, newest first.
    fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError>;
    /// Moves finished jobs that finished before `before` to the archive; returns how many.
    fn archive_finished(&self, before: DateTime<Utc>) -> Result<usize, StoreError>;
    /// Aggregates over all jobs.
    fn stats(&self) -> Result<JobStats, StoreError>;
    /// Removes the record of a finished job (completed, failed or cancelled), live or
    /// archived; returns whether there was one. A pending or running job is never removed.
    fn delete_finished(&self, id: Uuid) -> Result<bool, StoreError>;
    /// Appends log lines (of any jobs) in one transaction; their `seq` is ignored and assigned
    /// by the store, increasing in the order given. Lines of a job that has no record are kept
    /// anyway: a line may arrive before its job's insert is visible (they come from another
    /// thread), and [`JobStore::delete_finished`] removes a job's lines with it.
    fn append_log(&self, lines: &[JobLogLine]) -> Result<(), StoreError>;
    /// The log lines of job `id` whose `seq` is greater than `after`, oldest first, at most
    /// `limit` of them.
    fn job_log(&self, id: Uuid, after: i64, limit: usize) -> Result<Vec<JobLogLine>, StoreError>;
    /// The record of `key` used by `caller` at or after `since`, if any.
    fn find_idempotency_key(
        &self,
        key: &str,
        caller: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// Records (or replaces) `record` and forgets every key recorded before `expired_before`.
    fn record_idempotency_key(
        &self,
        record: &IdempotencyRecord,
        expired_before: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Claims the oldest pending job that no process holds (no owner and no lease, or a lease
    /// that expired) for `owner`, with a new lease of `ttl`; returns it as stored. Processes
    /// claiming at once never get the same job.
    fn claim_next(
        &self,
        owner: &ProcessIdentity,
        ttl: std::time::Duration,
    ) -> Result<Option<Job>, StoreError>;
    /// Extends the lease `token` of job `id` to `ttl` from now, while the job is pending or
    /// processing, and says whether a cancel was requested; `Ok(None)` when the job no longer has that lease (it expired and another
    /// process took the job over): the holder must stop and must not publish.
    fn renew_lease(
        &self,
        id: Uuid,
        token: Uuid,
        ttl: std::time::Duration,
    ) -> Result<Option<Renewal>, StoreError>;
    /// Jobs whose lease expired while processing go back to the queue (pending, owner and
    /// lease cleared), or to failed (category system) once `attempts` reached `max_attempts`;
    /// an expired pending job (it died before converting) counts one attempt. Returns the jobs
    /// moved, with their new status.
    ///
    /// A job whose cancel was requested ([`JobStore::request_cancel`]) before its lease expired
    /// is cancelled instead.
    fn requeue_expired(&self, max_attempts: u32) -> Result<Vec<(Uuid, JobStatus)>, StoreError>;
    /// Hands job `id` back to the queue at once, if `token` still holds it: pending again,
    /// with no owner and no lease, `attempts` set to `attempts` (the attempt that was stopped
    /// does not count), a cancel request kept. A process that stops (SIGTERM) releases its jobs
    /// instead of letting their leases run out. Returns whether it did.
    fn release_lease(&self, id: Uuid, token: Uuid, attempts: u32) -> Result<bool, StoreError>;
    /// Cancels job `id` from any process: a queued job no process holds is cancelled at once;
    /// a job a process holds (pending or processing, leased or owned) is flagged, and its
    /// holder stops it at its next lease renewal ([`Renewal::cancel_requested`]).
    fn request_cancel(&self, id: Uuid) -> Result<CancelRequest, StoreError>;
    /// Whether a cancel of job `id` was requested ([`JobStore::request_cancel`]) while it is
    /// pending or processing: how a process that runs a job without a lease (a `convert` or
    /// `batch` of the CLI) learns of it.
    fn cancel_requested(&self, id: Uuid) -> Result<bool, StoreError>;
    /// Counts of the queue ([`QueueStats`]).
    fn queue_stats(&self) -> Result<QueueStats, StoreError>;
    /// Waits up to `timeout` for a sign that there may be work (a job inserted or put back in
    /// the queue by any process); returns whether one came. A store that cannot tell (SQLite)
    /// waits the whole time and returns false: the caller polls. Meant for one thread per
    /// process, which wakes that process's workers.
    fn wait_for_work(&self, timeout: std::time::Duration) -> Result<bool, StoreError> {
        std::thread::sleep(timeout);
        Ok(false)
    }
}

/// One log line of a job, as [`crate::workflow::joblog`] captures it from the `tracing` events
/// inside the job's span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobLogLine {
    /// Position in the store's log, increasing; assigned by the store (0 before).
    pub seq: i64,
    /// The job the line belongs to.
    pub job_id: Uuid,
    /// When the event happened.
    pub time: DateTime<Utc>,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The module that logged it (`aiom4b::workflow::runner`, `aiom4b::audit`, …).
    pub target: String,
    /// The message.
    pub message: String,
    /// The event's other fields, by name (values as JSON strings, numbers or booleans).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// A request made with an `Idempotency-Key` (the service's `POST /convert`): who sent it, a
/// hash of what it asked for, and the jobs it created.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRecord {
    /// The client's key.
    pub key: String,
    /// Who used it (a token id, or `anonymous`): keys of different callers never collide.
    pub caller: String,
    /// A hash of the request body: the same key with another body is an error.
    pub body_hash: String,
    /// The jobs the first request created.
    pub job_ids: Vec<Uuid>,
    /// When the first request was made (keys expire).
    pub created_at: DateTime<Utc>,
}
