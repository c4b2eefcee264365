//! [`JobStore`] on a local SQLite file (`data/aiom4b.db`).
//!
//! - WAL journal: readers (`aiom4b status` in another terminal) never block the writer, and a
//!   `kill -9` at any moment leaves a consistent database (the WAL is replayed on next open).
//! - One writer: all access goes through one connection behind a mutex, and every write is its
//!   own `BEGIN IMMEDIATE` transaction, which takes the write lock up front, so a transaction
//!   never fails half-way on a lock upgrade. Other processes wait on `busy_timeout`; a lock that
//!   outlasts it is a transient error the caller retries.
//! - Migrations are numbered SQL scripts; `PRAGMA user_version` says how many ran.
use super::{
    path_text, update_assignments, IdempotencyRecord, Job, JobFailure, JobFilter, JobLogLine,
    JobStats, JobStatus, JobStore, StoreError, COLUMNS, LEASE_COLUMNS, NO_HOLDER,
};
use crate::workflow::category::ErrorCategory;
use crate::workflow::process::ProcessIdentity;
use crate::workflow::retry::{retry, Backoff};
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

/// The schema, one script per version. Never edit a released script: append a new one.
///
/// Portable choices: UUIDs and timestamps as text (PostgreSQL: `uuid`, `timestamptz`), lists
/// and options as JSON text (PostgreSQL: `jsonb`), no SQLite-only column types.
const MIGRATIONS: &[&str] = &[
    // 1: jobs and their archive.
    "CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL CHECK (status IN ('pending','processing','completed','failed','cancelled')),
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        progress_percent REAL NOT NULL DEFAULT 0,
        source_folders TEXT NOT NULL,
        options TEXT NOT NULL,
        output_path TEXT,
        backup_paths TEXT NOT NULL DEFAULT '[]',
        input_bytes INTEGER,
        output_bytes INTEGER,
        audio_duration_secs REAL,
        stage_timings TEXT NOT NULL DEFAULT '[]',
        attempts INTEGER NOT NULL DEFAULT 0,
        error_category TEXT CHECK (error_category IN ('input','processing','output','system')),
        error_message TEXT,
        error_remedy TEXT,
        pid INTEGER,
        hostname TEXT,
        pid_start_ticks INTEGER,
        part_path TEXT
    );
    CREATE INDEX jobs_status_created ON jobs (status, created_at);
    CREATE INDEX jobs_created ON jobs (created_at);
    CREATE TABLE jobs_archive AS SELECT * FROM jobs WHERE 0;
    ALTER TABLE jobs_archive ADD COLUMN archived_at TEXT;
    CREATE UNIQUE INDEX jobs_archive_id ON jobs_archive (id);",
    // 2: every temporary a job may create (recovery removes exactly these), and the post-action
    // (so that recovery can say what an interrupted job had still to do).
    "ALTER TABLE jobs ADD COLUMN temp_paths TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE jobs ADD COLUMN post_action TEXT;
    ALTER TABLE jobs_archive ADD COLUMN temp_paths TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE jobs_archive ADD COLUMN post_action TEXT;",
    // 3: each job's log lines (`JobStore::append_log`), read by `GET /jobs/{id}/log`.
    // No foreign key: a line may be written before its job's record is visible, and archived
    // jobs keep their lines; `delete_finished` removes them with the job. No AUTOINCREMENT
    // (it writes `sqlite_sequence` on every commit): a new rowid is above every row left, so a
    // job's lines still increase, which is all a reader's `after` cursor needs.
    "CREATE TABLE job_log (
        seq INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL,
        time TEXT NOT NULL,
        level TEXT NOT NULL,
        target TEXT NOT NULL,
        message TEXT NOT NULL,
        fields TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX job_log_job ON job_log (job_id, seq);",
    // 4: the service's Idempotency-Keys (per caller), so that a client's retry after a restart
    // still finds the jobs its first request created. Self-contained: no other table changes.
    "CREATE TABLE idempotency_keys (
        key TEXT NOT NULL,
        caller TEXT NOT NULL,
        body_hash TEXT NOT NULL,
        job_ids TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (key, caller)
    );
    CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);",
    // 5: leases of jobs claimed from a shared queue (JobStore::claim_next).
    "ALTER TABLE jobs ADD COLUMN lease_token TEXT;
    ALTER TABLE jobs ADD COLUMN lease_expires_at TEXT;
    ALTER TABLE jobs_archive ADD COLUMN lease_token TEXT;
    ALTER TABLE jobs_archive ADD COLUMN lease_expires_at TEXT;
    CREATE INDEX jobs_status_lease ON jobs (status, lease_expires_at);",
    // 6: cancel requests from any process (JobStore::request_cancel).
    "ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs_archive ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;",
    // 7: the parts of a book published in several files (`--split-at`).
    "ALTER TABLE jobs ADD COLUMN output_parts TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE jobs_archive ADD COLUMN output_parts TEXT NOT NULL DEFAULT '[]';",
    // 8: how the audio was made (copied or encoded, and why), as JSON.
    "ALTER TABLE jobs ADD COLUMN audio TEXT;
    ALTER TABLE jobs_archive ADD COLUMN audio TEXT;",
];

/// The job store on a SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    backoff: Backoff,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        // Wait for other processes' transactions before reporting "busy"; our own retries
        // (with backoff) come on top for the rare longer wait.
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        let store = SqliteStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            backoff: Backoff::default(),
        };
        store.with_retry("configure", |c| {
            // WAL survives kill -9 at any point. synchronous=NORMAL is safe with WAL against
            // process crashes (the concern here); only an OS crash may lose the last commits.
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", "NORMAL")?;
            c.pragma_update(None, "foreign_keys", "ON")?;
            Ok(())
        })?;
        store.migrate()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `PRAGMA integrity_check`; `Ok(vec!["ok"])` for a healthy database.
    pub fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        self.with_retry("integrity_check", |c| {
            let mut st = c.prepare("PRAGMA integrity_check")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let known = MIGRATIONS.len() as i64;
        self.write("migrate", |tx| {
            let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if version > known {
                return Ok(Err(version));
            }
            for (i, script) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                tx.execute_batch(script)?;
                tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            }
            Ok(Ok(version < known))
        })?
        .map_err(|found| StoreError::TooNew {
            path: self.path.clone(),
            found,
            known,
        })
        .map(|migrated| {
            // A migration writes every page of the schema into the WAL, which is otherwise
            // copied back only after 1000 pages: move them into the database file now, so the
            // WAL starts small (it is a file of its own that a nearly full disk must take).
            // Best effort: another process reading at this moment just leaves it for later.
            if migrated {
                let _ = self.with_retry("checkpoint", |c| {
                    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                });
            }
        })
    }

    fn sqlite_err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Runs `f` on the connection, retrying while the database is busy.
    fn with_retry<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        retry(&self.backoff, what, StoreError::is_transient, || {
            // A panic while holding the lock cannot leave a half transaction (rusqlite rolls
            // back on drop), so a poisoned mutex is safe to use.
            let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn).map_err(|e| self.sqlite_err(e))
        })
    }

    /// Runs `f` in an immediate transaction and commits it; retried as a whole when busy.
    fn write<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        retry(&self.backoff, what, StoreError::is_transient, || {
            let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            let mut run = |conn: &mut Connection| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let v = f(&tx)?;
                tx.commit()?;
                Ok(v)
            };
            run(&mut conn).map_err(|e| self.sqlite_err(e))
        })
    }

    fn read_jobs(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Job>, StoreError> {
        let rows = self.with_retry("read jobs", |c| {
            let mut st = c.prepare_cached(sql)?;
            let rows = st.query_map(params, RawJob::from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter().map(|r| r.into_job(&self.path)).collect()
    }
}

fn ts(t: &DateTime<Utc>) -> String {
    // Fixed width with milliseconds and `Z`: sorts as text in time order.
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn paths_json(paths: &[PathBuf]) -> String {
    super::paths_json(paths).to_string()
}

/// The columns of a row before interpretation, so that decoding errors can name the job.
struct RawJob {
    id: String,
    status: String,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    progress_percent: f64,
    source_folders: String,
    options: String,
    output_path: Option<String>,
    backup_paths: String,
    input_bytes: Option<i64>,
    output_bytes: Option<i64>,
    audio_duration_secs: Option<f64>,
    stage_timings: String,
    attempts: i64,
    error_category: Option<String>,
    error_message: Option<String>,
    error_remedy: Option<String>,
    pid: Option<i64>,
    hostname: Option<String>,
    pid_start_ticks: Option<i64>,
    part_path: Option<String>,
    temp_paths: String,
    post_action: Option<String>,
    output_parts: String,
    audio: Option<String>,
    lease_token: Option<String>,
    lease_expires_at: Option<String>,
}

impl RawJob {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawJob {
            id: r.get(0)?,
            status: r.get(1)?,
            created_at: r.get(2)?,
            started_at: r.get(3)?,
            finished_at: r.get(4)?,
            progress_percent: r.get(5)?,
            source_folders: r.get(6)?,
            options: r.get(7)?,
            output_path: r.get(8)?,
            backup_paths: r.get(9)?,
            input_bytes: r.get(10)?,
            output_bytes: r.get(11)?,
            audio_duration_secs: r.get(12)?,
            stage_timings: r.get(13)?,
            attempts: r.get(14)?,
            error_category: r.get(15)?,
            error_message: r.get(16)?,
            error_remedy: r.get(17)?,
            pid: r.get(18)?,
            hostname: r.get(19)?,
            pid_start_ticks: r.get(20)?,
            part_path: r.get(21)?,
            temp_paths: r.get(22)?,
            post_action: r.get(23)?,
            output_parts: r.get(24)?,
            audio: r.get(25)?,
            lease_token: r.get(26)?,
            lease_expires_at: r.get(27)?,
        })
    }

    fn into_job(self, db: &Path) -> Result<Job, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            path: db.to_path_buf(),
            id: self.id.clone(),
            reason,
        };
        let time = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| corrupt(format!("time {s:?}: {e}")))
        };
        let opt_time = |s: &Option<String>| s.as_deref().map(time).transpose();
        fn json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, String> {
            serde_json::from_str(s).map_err(|e| format!("{what}: {e}"))
        }
        let paths = |what: &str, s: &str| -> Result<Vec<PathBuf>, StoreError> {
            let v: Vec<String> = json(what, s).map_err(corrupt)?;
            Ok(v.into_iter().map(PathBuf::from).collect())
        };
        let error = match (&self.error_category, &self.error_message) {
            (Some(c), Some(m)) => Some(JobFailure {
                category: ErrorCategory::parse(c)
                    .ok_or_else(|| corrupt(format!("error category {c:?}")))?,
                message: m.clone(),
                remedy: self.error_remedy.clone().unwrap_or_default(),
            }),
            _ => None,
        };
        let owner = match (self.pid, &self.hostname) {
            (Some(pid), Some(host)) => Some(ProcessIdentity {
                pid: pid as u32,
                hostname: host.clone(),
                start_ticks: self.pid_start_ticks.map(|t| t as u64),
            }),
            _ => None,
        };
        Ok(Job {
            id: Uuid::parse_str(&self.id).map_err(|e| corrupt(format!("id: {e}")))?,
            status: JobStatus::parse(&self.status)
                .ok_or_else(|| corrupt(format!("status {:?}", self.status)))?,
            created_at: time(&self.created_at)?,
            started_at: opt_time(&self.started_at)?,
            finished_at: opt_time(&self.finished_at)?,
            progress_percent: self.progress_percent,
            source_folders: paths("source_folders", &self.source_folders)?,
            options: json("options", &self.options).map_err(corrupt)?,
            output_path: self.output_path.clone().map(PathBuf::from),
            backup_paths: paths("backup_paths", &self.backup_paths)?,
            input_bytes: self.input_bytes.map(|v| v as u64),
            output_bytes: self.output_bytes.map(|v| v as u64),
            audio_duration_secs: self.audio_duration_secs,
            stage_timings: json("stage_timings", &self.stage_timings).map_err(corrupt)?,
            attempts: self.attempts as u32,
            error,
            owner,
            part_path: self.part_path.clone().map(PathBuf::from),
            temp_paths: paths("temp_paths", &self.temp_paths)?,
            post_action: self.post_action.clone(),
            output_parts: paths("output_parts", &self.output_parts)?,
            audio: self
                .audio
                .as_deref()
                .map(|a| json("audio", a))
                .transpose()
                .map_err(corrupt)?,
            lease: match (&self.lease_token, &self.lease_expires_at) {
                (Some(t), Some(e)) => Some(super::Lease {
                    token: Uuid::parse_str(t).map_err(|e| corrupt(format!("lease token: {e}")))?,
                    expires_at: time(e)?,
                }),
                _ => None,
            },
        })
    }
}

/// The values of a job in [`COLUMNS`] order.
fn job_values(job: &Job) -> Vec<Box<dyn rusqlite::ToSql>> {
    vec![
        Box::new(job.id.to_string()),
        Box::new(job.status.as_str()),
        Box::new(ts(&job.created_at)),
        Box::new(job.started_at.as_ref().map(ts)),
        Box::new(job.finished_at.as_ref().map(ts)),
        Box::new(job.progress_percent),
        Box::new(paths_json(&job.source_folders)),
        Box::new(job.options.to_string()),
        Box::new(job.output_path.as_deref().map(path_text)),
        Box::new(paths_json(&job.backup_paths)),
        Box::new(job.input_bytes.map(|v| v as i64)),
        Box::new(job.output_bytes.map(|v| v as i64)),
        Box::new(job.audio_duration_secs),
        Box::new(serde_json::to_string(&job.stage_timings).unwrap_or_else(|_| "[]".into())),
        Box::new(job.attempts as i64),
        Box::new(job.error.as_ref().map(|e| e.category.as_str())),
        Box::new(job.error.as_ref().map(|e| e.message.clone())),
        Box::new(job.error.as_ref().map(|e| e.remedy.clone())),
        Box::new(job.owner.as_ref().map(|o| o.pid as i64)),
        Box::new(job.owner.as_ref().map(|o| o.hostname.clone())),
        Box::new(
            job.owner
                .as_ref()
                .and_then(|o| o.start_ticks)
                .map(|t| t as i64),
        ),
        Box::new(job.part_path.as_deref().map(path_text)),
        Box::new(paths_json(&job.temp_paths)),
        Box::new(job.post_action.clone()),
        Box::new(paths_json(&job.output_parts)),
        Box::new(job.audio.as_ref().map(|a| serde_json::json!(a).to_string())),
        Box::new(job.lease.map(|l| l.token.to_string())),
        Box::new(job.lease.map(|l| ts(&l.expires_at))),
    ]
}

impl JobStore for SqliteStore {
    fn find_idempotency_key(
        &self,
        key: &str,
        caller: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let since = ts(&since);
        let row = self.with_retry("find idempotency key", |c| {
            let mut st = c.prepare_cached(
                "SELECT body_hash, job_ids, created_at FROM idempotency_keys \
                 WHERE key = ?1 AND caller = ?2 AND created_at >= ?3",
            )?;
            let mut rows = st.query(params![key, caller, since])?;
            match rows.next()? {
                Some(r) => Ok(Some((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))),
                None => Ok(None),
            }
        })?;
        let Some((body_hash, ids, created)) = row else {
            return Ok(None);
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: self.path.clone(),
            id: format!("(idempotency key {key:?})"),
            reason,
        };
        Ok(Some(IdempotencyRecord {
            key: key.to_string(),
            caller: caller.to_string(),
            body_hash,
            job_ids: serde_json::from_str(&ids).map_err(|e| corrupt(e.to_string()))?,
            created_at: DateTime::parse_from_rfc3339(&created)
                .map_err(|e| corrupt(e.to_string()))?
                .with_timezone(&Utc),
        }))
    }

    fn record_idempotency_key(
        &self,
        record: &IdempotencyRecord,
        expired_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let ids = serde_json::to_string(&record.job_ids).expect("uuids serialize");
        let created = ts(&record.created_at);
        let expired = ts(&expired_before);
        self.write("record idempotency key", |tx| {
            tx.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ?1",
                params![expired],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO idempotency_keys (key, caller, body_hash, job_ids, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![record.key, record.caller, record.body_hash, ids, created],
            )?;
            Ok(())
        })
    }

    fn insert(&self, job: &Job) -> Result<(), StoreError> {
        let values = job_values(job);
        let placeholders = vec!["?"; values.len()].join(", ");
        let sql = format!("INSERT INTO jobs ({COLUMNS}) VALUES ({placeholders})");
        self.write("insert job", |tx| {
            let refs: Vec<&dyn rusqlite::ToSql> = values.iter().map(|v| v.as_ref()).collect();
            tx.execute(&sql, refs.as_slice())?;
            Ok(())
        })
    }

    fn get(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        let id = id.to_string();
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE id = ?1 UNION ALL SELECT {COLUMNS} FROM jobs_archive WHERE id = ?1"
        );
        Ok(self.read_jobs(&sql, &[&id])?.into_iter().next())
    }

    fn find_by_prefix(&self, prefix: &str) -> Result<Vec<Job>, StoreError> {
        let Some(pattern) = super::id_prefix_pattern(prefix) else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE id LIKE ?1 UNION ALL SELECT {COLUMNS} FROM jobs_archive WHERE id LIKE ?1 LIMIT 50"
        );
        self.read_jobs(&sql, &[&pattern])
    }

    fn update(&self, job: &Job, expected: JobStatus) -> Result<bool, StoreError> {
        let mut values = job_values(job);
        values.truncate(values.len() - LEASE_COLUMNS);
        let assignments = update_assignments('?');
        let n = values.len() + 1;
        let sql = format!(
            "UPDATE jobs SET {assignments} WHERE id = ?1 AND status = ?{n} AND lease_token IS ?{}",
            n + 1
        );
        let expected = expected.as_str();
        let token = job.lease.map(|l| l.token.to_string());
        self.write("update job", |tx| {
            let mut refs: Vec<&dyn rusqlite::ToSql> = values.iter().map(|v| v.as_ref()).collect();
            refs.push(&expected);
            refs.push(&token);
            Ok(tx.execute(&sql, refs.as_slice())? == 1)
        })
    }

    fn claim_next(
        &self,
        owner: &ProcessIdentity,
        ttl: std::time::Duration,
    ) -> Result<Option<Job>, StoreError> {
        let now = Utc::now();
        let lease = super::Lease {
            token: Uuid::new_v4(),
            expires_at: super::now_millis() + chrono::Duration::from_std(ttl).unwrap_or_default(),
        };
        let sql = format!(
            "UPDATE jobs SET pid = ?1, hostname = ?2, pid_start_ticks = ?3, lease_token = ?4, \
             lease_expires_at = ?5 WHERE id = (SELECT id FROM jobs WHERE status = 'pending' \
             AND ((pid IS NULL AND lease_token IS NULL) OR lease_expires_at < ?6) \
             ORDER BY created_at, rowid LIMIT 1) RETURNING {COLUMNS}"
        );
        let (now, expires, token) = (ts(&now), ts(&lease.expires_at), lease.token.to_string());
        let ticks = owner.start_ticks.map(|t| t as i64);
        let rows = self.write("claim a job", |tx| {
            let mut st = tx.prepare_cached(&sql)?;
            let rows = st.query_map(
                params![owner.pid as i64, owner.hostname, ticks, token, expires, now],
                RawJob::from_row,
            )?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .next()
            .map(|r| r.into_job(&self.path))
            .transpose()
    }

    fn renew_lease(
        &self,
        id: Uuid,
        token: Uuid,
        ttl: std::time::Duration,
    ) -> Result<Option<super::Renewal>, StoreError> {
        let expires_at = super::now_millis() + chrono::Duration::from_std(ttl).unwrap_or_default();
        let (id_s, token_s, expires) = (id.to_string(), token.to_string(), ts(&expires_at));
        let cancel: Option<bool> = self.write("renew a lease", |tx| {
            tx.query_row(
                "UPDATE jobs SET lease_expires_at = ?3 WHERE id = ?1 AND lease_token = ?2 \
                 AND status IN ('pending','processing') RETURNING cancel_requested",
                params![id_s, token_s, expires],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|c| c.map(|c| c != 0))
        })?;
        Ok(cancel.map(|cancel_requested| super::Renewal {
            lease: super::Lease { token, expires_at },
            cancel_requested,
        }))
    }

    fn release_lease(&self, id: Uuid, token: Uuid, attempts: u32) -> Result<bool, StoreError> {
        let (id, token) = (id.to_string(), token.to_string());
        let n = self.write("release a job", |tx| {
            tx.execute(
                &format!(
                    "UPDATE jobs SET status = 'pending', started_at = NULL, progress_percent = 0, \
                 attempts = ?3, {NO_HOLDER} \
                 WHERE id = ?1 AND lease_token = ?2 AND status IN ('pending','processing')"
                ),
                params![id, token, attempts],
            )
        })?;
        Ok(n == 1)
    }

    fn request_cancel(&self, id: Uuid) -> Result<super::CancelRequest, StoreError> {
        let (id_s, now) = (id.to_string(), ts(&super::now_millis()));
        let (category, message, remedy) = super::CANCELLED;
        self.write("cancel a job", |tx| {
            // Queued and held by no process: nothing will see a flag, so cancel it here.
            let n = tx.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?2, error_category = ?3, \
                 error_message = ?4, error_remedy = ?5 WHERE id = ?1 AND status = 'pending' \
                 AND pid IS NULL AND lease_token IS NULL",
                params![id_s, now, category.as_str(), message, remedy],
            )?;
            if n == 1 {
                return Ok(super::CancelRequest::Cancelled);
            }
            let n = tx.execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1 \
                 AND status IN ('pending','processing')",
                params![id_s],
            )?;
            Ok(match n {
                1 => super::CancelRequest::Requested,
                _ => super::CancelRequest::NotActive,
            })
        })
    }

    fn cancel_requested(&self, id: Uuid) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with_retry("read a cancel request", |c| {
            c.query_row(
                "SELECT COUNT(*) FROM jobs WHERE id = ?1 AND cancel_requested = 1 \
                 AND status IN ('pending','processing')",
                params![id],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n > 0)
    }

    fn queue_stats(&self) -> Result<super::QueueStats, StoreError> {
        let now = ts(&Utc::now());
        self.with_retry("queue stats", |c| {
            c.query_row(
                "SELECT \
                 COUNT(*) FILTER (WHERE status = 'pending' AND pid IS NULL AND lease_token IS NULL), \
                 COUNT(*) FILTER (WHERE lease_token IS NOT NULL AND lease_expires_at >= ?1), \
                 COUNT(*) FILTER (WHERE lease_token IS NOT NULL AND lease_expires_at < ?1) \
                 FROM jobs WHERE status IN ('pending','processing')",
                params![now],
                |r| {
                    Ok(super::QueueStats {
                        waiting: r.get::<_, i64>(0)? as u64,
                        leased: r.get::<_, i64>(1)? as u64,
                        expired: r.get::<_, i64>(2)? as u64,
                    })
                },
            )
        })
    }

    fn requeue_expired(&self, max_attempts: u32) -> Result<Vec<(Uuid, JobStatus)>, StoreError> {
        let now = ts(&Utc::now());
        let rows = self.write("requeue expired leases", |tx| {
            // A pending job that lost its lease died before converting: count that attempt.
            tx.execute(
                "UPDATE jobs SET attempts = attempts + 1 WHERE status = 'pending' \
                 AND lease_expires_at < ?1",
                params![now],
            )?;
            // Asked to stop before its holder died: that is what the job becomes.
            let (category, message, remedy) = super::CANCELLED;
            let mut cancelled = tx.prepare_cached(&format!(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?1, error_category = ?2, \
                 error_message = ?3, error_remedy = ?4, \
                 {NO_HOLDER} \
                 WHERE status IN ('pending','processing') AND lease_expires_at < ?1 \
                 AND cancel_requested = 1 RETURNING id, status"
            ))?;
            let mut out: Vec<(String, String)> = cancelled
                .query_map(params![now, category.as_str(), message, remedy], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut failed = tx.prepare_cached(&format!(
                "UPDATE jobs SET status = 'failed', finished_at = ?1, error_category = 'system', \
                 error_message = 'the process running it stopped (its lease expired) ' || \
                 attempts || ' times', error_remedy = 'check the workers'' logs; retry the job', \
                 {NO_HOLDER} \
                 WHERE status IN ('pending','processing') AND lease_expires_at < ?1 \
                 AND attempts >= ?2 RETURNING id, status"
            ))?;
            out.extend(
                failed
                    .query_map(params![now, max_attempts], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
            );
            let mut back = tx.prepare_cached(&format!(
                "UPDATE jobs SET status = 'pending', started_at = NULL, progress_percent = 0, \
                 {NO_HOLDER} \
                 WHERE status IN ('pending','processing') AND lease_expires_at < ?1 \
                 RETURNING id, status"
            ))?;
            out.extend(
                back.query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
            );
            Ok(out)
        })?;
        rows.into_iter()
            .map(|(id, status)| {
                let bad = |what: &str| StoreError::Corrupt {
                    path: self.path.clone(),
                    id: id.clone(),
                    reason: what.to_string(),
                };
                Ok((
                    Uuid::parse_str(&id).map_err(|_| bad("id"))?,
                    JobStatus::parse(&status).ok_or_else(|| bad("status"))?,
                ))
            })
            .collect()
    }

    fn set_progress(&self, id: Uuid, percent: f64) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write("set progress", |tx| {
            tx.execute(
                "UPDATE jobs SET progress_percent = ?2 WHERE id = ?1 AND status = 'processing'",
                params![id, percent.clamp(0.0, 100.0)],
            )?;
            Ok(())
        })
    }

    fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let mut wheres = Vec::new();
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
        if let Some(s) = filter.status {
            args.push(Box::new(s.as_str()));
            wheres.push(format!("status = ?{}", args.len()));
        }
        if let Some(folder) = &filter.source_folder {
            args.push(Box::new(path_text(folder)));
            wheres.push(format!(
                "EXISTS (SELECT 1 FROM json_each(source_folders) WHERE value = ?{})",
                args.len()
            ));
        }
        let cond = if wheres.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", wheres.join(" AND "))
        };
        // rowid breaks ties between jobs created in the same millisecond (insertion order).
        let mut sql = format!("SELECT {COLUMNS}, rowid AS ord FROM jobs{cond}");
        if filter.include_archived {
            sql = format!("{sql} UNION ALL SELECT {COLUMNS}, rowid AS ord FROM jobs_archive{cond}");
        }
        sql.push_str(" ORDER BY created_at DESC, ord DESC");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let refs: Vec<&dyn rusqlite::ToSql> = args.iter().map(|v| v.as_ref()).collect();
        self.read_jobs(&sql, &refs)
    }

    fn archive_finished(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let before = ts(&before);
        let now = ts(&Utc::now());
        self.write("archive jobs", |tx| {
            let cond = "status IN ('completed','failed','cancelled') AND finished_at < ?1";
            tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO jobs_archive ({COLUMNS}, archived_at) \
                     SELECT {COLUMNS}, ?2 FROM jobs WHERE {cond}"
                ),
                params![before, now],
            )?;
            tx.execute(&format!("DELETE FROM jobs WHERE {cond}"), params![before])
        })
    }

    fn delete_finished(&self, id: Uuid) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write("delete job", |tx| {
            let cond = "id = ?1 AND status IN ('completed','failed','cancelled')";
            let live = tx.execute(&format!("DELETE FROM jobs WHERE {cond}"), params![id])?;
            let archived = tx.execute(
                &format!("DELETE FROM jobs_archive WHERE {cond}"),
                params![id],
            )?;
            if live + archived > 0 {
                tx.execute("DELETE FROM job_log WHERE job_id = ?1", params![id])?;
            }
            Ok(live + archived > 0)
        })
    }

    fn append_log(&self, lines: &[JobLogLine]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        self.write("append job log", |tx| {
            let mut st = tx.prepare_cached(
                "INSERT INTO job_log (job_id, time, level, target, message, fields) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for l in lines {
                let fields = serde_json::Value::Object(l.fields.clone()).to_string();
                st.execute(params![
                    l.job_id.to_string(),
                    ts(&l.time),
                    l.level,
                    l.target,
                    l.message,
                    fields
                ])?;
            }
            Ok(())
        })
    }

    fn job_log(&self, id: Uuid, after: i64, limit: usize) -> Result<Vec<JobLogLine>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.with_retry("read job log", |c| {
            let mut st = c.prepare_cached(
                "SELECT seq, time, level, target, message, fields FROM job_log \
                 WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = st.query_map(params![id.to_string(), after, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(seq, time, level, target, message, fields)| {
                let corrupt = |what: &str| StoreError::Corrupt {
                    path: self.path.clone(),
                    id: id.to_string(),
                    reason: format!("log line {seq}: {what}"),
                };
                let time = DateTime::parse_from_rfc3339(&time)
                    .map_err(|_| corrupt("bad time"))?
                    .with_timezone(&Utc);
                let fields = match serde_json::from_str(&fields) {
                    Ok(serde_json::Value::Object(m)) => m,
                    _ => return Err(corrupt("bad fields")),
                };
                Ok(JobLogLine {
                    seq,
                    job_id: id,
                    time,
                    level,
                    target,
                    message,
                    fields,
                })
            })
            .collect()
    }

    fn stats(&self) -> Result<JobStats, StoreError> {
        let all =
            format!("SELECT {COLUMNS} FROM jobs UNION ALL SELECT {COLUMNS} FROM jobs_archive");
        self.with_retry("stats", |c| {
            let mut s = JobStats::default();
            let mut st = c.prepare(&format!(
                "SELECT status, COUNT(*) FROM ({all}) GROUP BY status"
            ))?;
            for row in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                let (status, n) = row?;
                let n = n as u64;
                s.total += n;
                match JobStatus::parse(&status) {
                    Some(JobStatus::Pending) => s.pending = n,
                    Some(JobStatus::Processing) => s.processing = n,
                    Some(JobStatus::Completed) => s.completed = n,
                    Some(JobStatus::Failed) => s.failed = n,
                    Some(JobStatus::Cancelled) => s.cancelled = n,
                    None => {}
                }
            }
            let finished = s.completed + s.failed + s.cancelled;
            s.success_rate = (finished > 0).then(|| s.completed as f64 / finished as f64);
            // julianday difference in days → seconds.
            let secs = "(julianday(finished_at) - julianday(started_at)) * 86400.0";
            c.query_row(
                &format!(
                    "SELECT AVG({secs}), MIN({secs}), MAX({secs}), \
                     COALESCE(SUM(input_bytes), 0), COALESCE(SUM(output_bytes), 0), \
                     COALESCE(SUM(audio_duration_secs), 0), \
                     SUM(CASE WHEN audio_duration_secs IS NOT NULL AND {secs} > 0 THEN {secs} END), \
                     SUM(CASE WHEN audio_duration_secs IS NOT NULL AND {secs} > 0 THEN audio_duration_secs END) \
                     FROM ({all}) WHERE status = 'completed' AND started_at IS NOT NULL AND finished_at IS NOT NULL"
                ),
                [],
                |r| {
                    s.processing_secs_avg = r.get(0)?;
                    s.processing_secs_min = r.get(1)?;
                    s.processing_secs_max = r.get(2)?;
                    s.input_bytes_total = r.get::<_, i64>(3)? as u64;
                    s.output_bytes_total = r.get::<_, i64>(4)? as u64;
                    s.audio_secs_total = r.get(5)?;
                    let busy: Option<f64> = r.get(6)?;
                    let audio: Option<f64> = r.get(7)?;
                    s.realtime_factor = match (audio, busy) {
                        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                        _ => None,
                    };
                    Ok(())
                },
            )?;
            let mut st = c.prepare(&format!(
                "SELECT error_category, COUNT(*) FROM ({all}) WHERE status = 'failed' \
                 AND error_category IS NOT NULL GROUP BY error_category ORDER BY 2 DESC"
            ))?;
            for row in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                let (c, n) = row?;
                if let Some(c) = ErrorCategory::parse(&c) {
                    s.failures_by_category.push((c, n as u64));
                }
            }
            Ok(s)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store on a fresh file, with its folder.
    struct Fresh(tempfile::TempDir, SqliteStore);
    impl std::ops::Deref for Fresh {
        type Target = SqliteStore;
        fn deref(&self) -> &SqliteStore {
            &self.1
        }
    }
    fn fresh() -> Fresh {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("aiom4b.db")).unwrap();
        Fresh(dir, store)
    }

    super::super::conformance::store_suite!(fresh());

    #[test]
    fn claims_from_separate_connections_never_share_a_job() {
        let f = fresh();
        let db = f.0.path().join("aiom4b.db");
        super::super::conformance::claims_from_separate_connections_never_share_a_job(&|| {
            Box::new(SqliteStore::open(&db).unwrap())
        });
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let f = fresh();
        f.with_retry("bump", |c| c.pragma_update(None, "user_version", 999))
            .unwrap();
        let e = SqliteStore::open(&f.0.path().join("aiom4b.db")).unwrap_err();
        assert!(matches!(e, StoreError::TooNew { found: 999, .. }), "{e}");
    }

    use chrono::TimeDelta;

    fn record(key: &str, caller: &str, at: DateTime<Utc>) -> IdempotencyRecord {
        IdempotencyRecord {
            key: key.into(),
            caller: caller.into(),
            body_hash: "h1".into(),
            job_ids: vec![Uuid::new_v4(), Uuid::new_v4()],
            created_at: at,
        }
    }

    #[test]
    fn idempotency_keys_are_per_caller_survive_reopening_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("aiom4b.db");
        let now = Utc::now();
        let day = TimeDelta::hours(24);
        let old = record("k-old", "anonymous", now - TimeDelta::hours(25));
        let fresh = record("k", "anonymous", now);
        {
            let store = SqliteStore::open(&db).unwrap();
            store.record_idempotency_key(&old, now - day * 30).unwrap();
            store.record_idempotency_key(&fresh, now - day).unwrap();
        }
        let store = SqliteStore::open(&db).unwrap();
        let found = store
            .find_idempotency_key("k", "anonymous", now - day)
            .unwrap();
        let found = found.expect("the key after reopening");
        assert_eq!(found.job_ids, fresh.job_ids);
        assert_eq!(found.body_hash, "h1");
        // Another caller's key of the same name is another key.
        assert!(store
            .find_idempotency_key("k", "token:abcd", now - day)
            .unwrap()
            .is_none());
        // Older than 24 h: not found, and removed by the next record.
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        assert!(store
            .find_idempotency_key("k-old", "anonymous", now - day)
            .unwrap()
            .is_none());
        assert!(store
            .find_idempotency_key("k-old", "anonymous", epoch)
            .unwrap()
            .is_none());
    }
}
