//! [`JobStore`] on PostgreSQL (`DATABASE_URL=postgres://…`), for several aiom4b processes on
//! several machines sharing one job store.
//!
//! The schema mirrors the SQLite one (`sqlite.rs`) in PostgreSQL's own types: `uuid`,
//! `timestamptz`, `jsonb`, `bigint`. Migrations are numbered scripts recorded in
//! `aiom4b_schema`; they run in one transaction under an advisory lock, so processes starting
//! together migrate once. Every method is one statement or one transaction, so the store is as
//! atomic as the SQLite one; conditional updates decide races between processes.
//!
//! One connection per store behind a mutex (the workflow's writes are few and short); a
//! connection that broke (server restart, network cut) is opened again and the operation
//! retried with backoff, like SQLite's busy database.
use super::{
    path_text, paths_json, redact_url, update_assignments, IdempotencyRecord, Job, JobFailure,
    JobFilter, JobLogLine, JobStats, JobStatus, JobStore, StoreError, COLUMNS, LEASE_COLUMNS,
    NO_HOLDER,
};
use crate::workflow::category::ErrorCategory;
use crate::workflow::process::ProcessIdentity;
use crate::workflow::retry::{retry, Backoff};
use chrono::{DateTime, Utc};
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row};
use std::path::PathBuf;
use std::sync::Mutex;
use uuid::Uuid;

/// The schema, one script per version. Never edit a released script: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: jobs, their archive, their log lines (the SQLite store's versions 1–3 in one).
    "CREATE TABLE jobs (
        id UUID PRIMARY KEY,
        status TEXT NOT NULL CHECK (status IN ('pending','processing','completed','failed','cancelled')),
        created_at TIMESTAMPTZ NOT NULL,
        started_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ,
        progress_percent DOUBLE PRECISION NOT NULL DEFAULT 0,
        source_folders JSONB NOT NULL,
        options JSONB NOT NULL,
        output_path TEXT,
        backup_paths JSONB NOT NULL DEFAULT '[]',
        input_bytes BIGINT,
        output_bytes BIGINT,
        audio_duration_secs DOUBLE PRECISION,
        stage_timings JSONB NOT NULL DEFAULT '[]',
        attempts INTEGER NOT NULL DEFAULT 0,
        error_category TEXT CHECK (error_category IN ('input','processing','output','system')),
        error_message TEXT,
        error_remedy TEXT,
        pid BIGINT,
        hostname TEXT,
        pid_start_ticks BIGINT,
        part_path TEXT,
        temp_paths JSONB NOT NULL DEFAULT '[]',
        post_action TEXT,
        -- Insertion order: breaks ties between jobs created in the same millisecond.
        ord BIGSERIAL NOT NULL
    );
    CREATE INDEX jobs_status_created ON jobs (status, created_at);
    CREATE INDEX jobs_created ON jobs (created_at);
    CREATE TABLE jobs_archive (LIKE jobs INCLUDING CONSTRAINTS);
    ALTER TABLE jobs_archive ADD COLUMN archived_at TIMESTAMPTZ;
    CREATE UNIQUE INDEX jobs_archive_id ON jobs_archive (id);
    CREATE TABLE job_log (
        seq BIGSERIAL PRIMARY KEY,
        job_id UUID NOT NULL,
        time TIMESTAMPTZ NOT NULL,
        level TEXT NOT NULL,
        target TEXT NOT NULL,
        message TEXT NOT NULL,
        fields JSONB NOT NULL DEFAULT '{}'
    );
    CREATE INDEX job_log_job ON job_log (job_id, seq);",
    // 2: the service's Idempotency-Keys, per caller (the SQLite store's version 4).
    "CREATE TABLE idempotency_keys (
        key TEXT NOT NULL,
        caller TEXT NOT NULL,
        body_hash TEXT NOT NULL,
        job_ids JSONB NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (key, caller)
    );
    CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);",
    // 3: leases of jobs claimed from the shared queue (the SQLite store's version 5).
    "ALTER TABLE jobs ADD COLUMN lease_token UUID;
    ALTER TABLE jobs ADD COLUMN lease_expires_at TIMESTAMPTZ;
    ALTER TABLE jobs_archive ADD COLUMN lease_token UUID;
    ALTER TABLE jobs_archive ADD COLUMN lease_expires_at TIMESTAMPTZ;
    CREATE INDEX jobs_status_lease ON jobs (status, lease_expires_at);",
    // 4: cancel requests from any process (JobStore::request_cancel).
    "ALTER TABLE jobs ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT false;
    ALTER TABLE jobs_archive ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT false;",
    // 5: the parts of a book published in several files (the SQLite store's version 7).
    "ALTER TABLE jobs ADD COLUMN output_parts JSONB NOT NULL DEFAULT '[]';
    ALTER TABLE jobs_archive ADD COLUMN output_parts JSONB NOT NULL DEFAULT '[]';",
    // 6: how the audio was made (the SQLite store's version 8).
    "ALTER TABLE jobs ADD COLUMN audio JSONB;
    ALTER TABLE jobs_archive ADD COLUMN audio JSONB;",
];

/// Any number: the advisory lock that serializes migrations across processes.
const MIGRATION_LOCK: i64 = 0x6169_6f6d_3462; // "aiom4b"

/// The job store on a PostgreSQL database.
pub struct PostgresStore {
    url: String,
    /// The URL without its password, for messages.
    shown: String,
    conn: Mutex<Option<Client>>,
    /// A second connection that only LISTENs for new work ([`JobStore::wait_for_work`]).
    listener: Mutex<Option<Client>>,
    backoff: Backoff,
}

/// The channel on which inserting or requeueing a job NOTIFYs idle workers.
const WORK_CHANNEL: &str = "aiom4b_jobs";

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.shown)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`) and brings the schema up to
    /// date.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let mut store = PostgresStore {
            url: url.to_string(),
            shown: redact_url(url),
            conn: Mutex::new(None),
            listener: Mutex::new(None),
            // Opening gives up quickly: a wrong URL or a server that is not there is an error
            // for the user to see now.
            backoff: Backoff::default(),
        };
        store.migrate()?;
        // Once open, a server restart (or a fail-over) takes seconds: ride it out (about 18 s
        // in all) rather than fail the job that happened to write meanwhile.
        store.backoff = Backoff {
            attempts: 10,
            initial: std::time::Duration::from_millis(100),
            max: std::time::Duration::from_secs(4),
        };
        Ok(store)
    }

    /// The URL, without its password.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    fn err(&self, source: postgres::Error) -> StoreError {
        StoreError::Postgres {
            url: self.shown.clone(),
            source,
        }
    }

    /// Runs `f` on the connection (opened, or opened again after it broke), retrying
    /// transient failures.
    fn with_client<T: Send>(
        &self,
        what: &str,
        f: impl FnMut(&mut Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, StoreError> {
        off_runtime(|| self.with_client_here(what, f))
    }

    fn with_client_here<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        retry(&self.backoff, what, StoreError::is_transient, || {
            // A panic while holding the lock leaves at worst a connection in a failed
            // transaction, which postgres rolls back when the client is dropped below.
            let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            if guard.as_ref().is_none_or(|c| c.is_closed()) {
                *guard = Some(Client::connect(&self.url, NoTls).map_err(|e| self.err(e))?);
            }
            let client = guard.as_mut().expect("connected above");
            let r = f(client).map_err(|e| self.err(e));
            if r.as_ref().is_err_and(|e| e.is_transient()) {
                // Start the next try on a new connection.
                *guard = None;
            }
            r
        })
    }

    /// Runs `f` in a transaction and commits it; retried as a whole when transient.
    fn write<T: Send>(
        &self,
        what: &str,
        mut f: impl FnMut(&mut postgres::Transaction<'_>) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, StoreError> {
        self.with_client(what, |c| {
            let mut tx = c.transaction()?;
            let v = f(&mut tx)?;
            tx.commit()?;
            Ok(v)
        })
    }

    fn wait_here(&self, timeout: std::time::Duration) -> Result<bool, StoreError> {
        let mut guard = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            let mut c = Client::connect(&self.url, NoTls).map_err(|e| self.err(e))?;
            c.batch_execute(&format!("LISTEN {WORK_CHANNEL}"))
                .map_err(|e| self.err(e))?;
            *guard = Some(c);
        }
        use postgres::fallible_iterator::FallibleIterator;
        let client = guard.as_mut().expect("connected above");
        let got = client
            .notifications()
            .timeout_iter(timeout)
            .next()
            .map(|n| n.is_some());
        match got {
            Ok(true) => {
                // Several NOTIFYs may have come at once: one wake-up is enough for them all.
                while let Ok(Some(_)) = client.notifications().iter().next() {}
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => {
                *guard = None;
                Err(self.err(e))
            }
        }
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let known = MIGRATIONS.len() as i64;
        let found = self.write("migrate", |tx| {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS aiom4b_schema (version BIGINT PRIMARY KEY, \
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )?;
            let version: i64 = tx
                .query_one("SELECT COALESCE(MAX(version), 0) FROM aiom4b_schema", &[])?
                .get(0);
            if version > known {
                return Ok(Some(version));
            }
            for (i, script) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                tx.batch_execute(script)?;
                tx.execute(
                    "INSERT INTO aiom4b_schema (version) VALUES ($1)",
                    &[&(i as i64 + 1)],
                )?;
            }
            Ok(None)
        })?;
        match found {
            Some(found) => Err(StoreError::TooNew {
                path: PathBuf::from(&self.shown),
                found,
                known,
            }),
            None => Ok(()),
        }
    }

    fn read_jobs(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Job>, StoreError> {
        let rows = self.with_client("read jobs", |c| c.query(sql, params))?;
        rows.iter().map(|r| self.job_from_row(r)).collect()
    }

    fn job_from_row(&self, r: &Row) -> Result<Job, StoreError> {
        let id: Uuid = r
            .try_get(0)
            .map_err(|e| self.corrupt("?", format!("id: {e}")))?;
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            self.corrupt(&id.to_string(), format!("{what}: {e}"))
        };
        macro_rules! col {
            ($i:expr, $name:expr) => {
                r.try_get($i).map_err(|e| corrupt($name, &e))?
            };
        }
        let paths = |v: serde_json::Value, what: &str| -> Result<Vec<PathBuf>, StoreError> {
            let v: Vec<String> = serde_json::from_value(v).map_err(|e| corrupt(what, &e))?;
            Ok(v.into_iter().map(PathBuf::from).collect())
        };
        let status: String = col!(1, "status");
        let error_category: Option<String> = col!(15, "error_category");
        let error_message: Option<String> = col!(16, "error_message");
        let error_remedy: Option<String> = col!(17, "error_remedy");
        let error = match (error_category, error_message) {
            (Some(c), Some(m)) => Some(JobFailure {
                category: ErrorCategory::parse(&c).ok_or_else(|| corrupt("error category", &c))?,
                message: m,
                remedy: error_remedy.unwrap_or_default(),
            }),
            _ => None,
        };
        let pid: Option<i64> = col!(18, "pid");
        let hostname: Option<String> = col!(19, "hostname");
        let ticks: Option<i64> = col!(20, "pid_start_ticks");
        let owner = match (pid, hostname) {
            (Some(pid), Some(hostname)) => Some(ProcessIdentity {
                pid: pid as u32,
                hostname,
                start_ticks: ticks.map(|t| t as u64),
            }),
            _ => None,
        };
        let input_bytes: Option<i64> = col!(10, "input_bytes");
        let output_bytes: Option<i64> = col!(11, "output_bytes");
        let attempts: i32 = col!(14, "attempts");
        let output_path: Option<String> = col!(8, "output_path");
        let part_path: Option<String> = col!(21, "part_path");
        Ok(Job {
            id,
            status: JobStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
            created_at: col!(2, "created_at"),
            started_at: col!(3, "started_at"),
            finished_at: col!(4, "finished_at"),
            progress_percent: col!(5, "progress_percent"),
            source_folders: paths(col!(6, "source_folders"), "source_folders")?,
            options: col!(7, "options"),
            output_path: output_path.map(PathBuf::from),
            backup_paths: paths(col!(9, "backup_paths"), "backup_paths")?,
            input_bytes: input_bytes.map(|v| v as u64),
            output_bytes: output_bytes.map(|v| v as u64),
            audio_duration_secs: col!(12, "audio_duration_secs"),
            stage_timings: serde_json::from_value(col!(13, "stage_timings"))
                .map_err(|e| corrupt("stage_timings", &e))?,
            attempts: attempts as u32,
            error,
            owner,
            part_path: part_path.map(PathBuf::from),
            temp_paths: paths(col!(22, "temp_paths"), "temp_paths")?,
            post_action: col!(23, "post_action"),
            output_parts: paths(col!(24, "output_parts"), "output_parts")?,
            audio: {
                let a: Option<serde_json::Value> = col!(25, "audio");
                a.map(serde_json::from_value)
                    .transpose()
                    .map_err(|e| corrupt("audio", &e))?
            },
            lease: {
                let token: Option<Uuid> = col!(26, "lease_token");
                let expires: Option<DateTime<Utc>> = col!(27, "lease_expires_at");
                token
                    .zip(expires)
                    .map(|(token, expires_at)| super::Lease { token, expires_at })
            },
        })
    }

    fn corrupt(&self, id: &str, reason: String) -> StoreError {
        StoreError::Corrupt {
            path: PathBuf::from(&self.shown),
            id: id.to_string(),
            reason,
        }
    }
}

/// The values of a job in [`COLUMNS`] order.
fn job_values(job: &Job) -> Vec<Box<dyn ToSql + Sync>> {
    vec![
        Box::new(job.id),
        Box::new(job.status.as_str().to_string()),
        Box::new(job.created_at),
        Box::new(job.started_at),
        Box::new(job.finished_at),
        Box::new(job.progress_percent),
        Box::new(paths_json(&job.source_folders)),
        Box::new(job.options.clone()),
        Box::new(job.output_path.as_deref().map(path_text)),
        Box::new(paths_json(&job.backup_paths)),
        Box::new(job.input_bytes.map(|v| v as i64)),
        Box::new(job.output_bytes.map(|v| v as i64)),
        Box::new(job.audio_duration_secs),
        Box::new(serde_json::to_value(&job.stage_timings).unwrap_or_default()),
        Box::new(job.attempts as i32),
        Box::new(job.error.as_ref().map(|e| e.category.as_str().to_string())),
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
        Box::new(job.audio.as_ref().map(|a| serde_json::json!(a))),
        Box::new(job.lease.map(|l| l.token)),
        Box::new(job.lease.map(|l| l.expires_at)),
    ]
}

/// Runs `f` here, or on a thread of its own when called from inside a tokio runtime: the
/// synchronous `postgres` client runs its own runtime and panics inside another one (an async
/// caller that forgot `spawn_blocking` must get a slower answer, not a crash).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn refs(values: &[Box<dyn ToSql + Sync>]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v.as_ref()).collect()
}

impl JobStore for PostgresStore {
    fn find_idempotency_key(
        &self,
        key: &str,
        caller: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row = self.with_client("find idempotency key", |c| {
            c.query_opt(
                "SELECT body_hash, job_ids, created_at FROM idempotency_keys \
                 WHERE key = $1 AND caller = $2 AND created_at >= $3",
                &[&key, &caller, &since],
            )
        })?;
        let Some(r) = row else { return Ok(None) };
        let ids: serde_json::Value = r.get(1);
        Ok(Some(IdempotencyRecord {
            key: key.to_string(),
            caller: caller.to_string(),
            body_hash: r.get(0),
            job_ids: serde_json::from_value(ids)
                .map_err(|e| self.corrupt(&format!("(idempotency key {key:?})"), e.to_string()))?,
            created_at: r.get(2),
        }))
    }

    fn record_idempotency_key(
        &self,
        record: &IdempotencyRecord,
        expired_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let ids = serde_json::to_value(&record.job_ids).expect("uuids serialize");
        self.write("record idempotency key", |tx| {
            tx.execute(
                "DELETE FROM idempotency_keys WHERE created_at < $1",
                &[&expired_before],
            )?;
            tx.execute(
                "INSERT INTO idempotency_keys (key, caller, body_hash, job_ids, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key, caller) DO UPDATE SET \
                 body_hash = EXCLUDED.body_hash, job_ids = EXCLUDED.job_ids, \
                 created_at = EXCLUDED.created_at",
                &[
                    &record.key,
                    &record.caller,
                    &record.body_hash,
                    &ids,
                    &record.created_at,
                ],
            )?;
            Ok(())
        })
    }

    fn insert(&self, job: &Job) -> Result<(), StoreError> {
        let values = job_values(job);
        let placeholders = (1..=values.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("INSERT INTO jobs ({COLUMNS}) VALUES ({placeholders})");
        // The NOTIFY is delivered at commit, so a woken worker finds the job.
        self.write("insert job", |tx| {
            tx.execute(&sql, &refs(&values))?;
            tx.execute("SELECT pg_notify($1, '')", &[&WORK_CHANNEL])?;
            Ok(())
        })
    }

    fn get(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE id = $1 UNION ALL SELECT {COLUMNS} FROM jobs_archive WHERE id = $1"
        );
        Ok(self.read_jobs(&sql, &[&id])?.into_iter().next())
    }

    fn find_by_prefix(&self, prefix: &str) -> Result<Vec<Job>, StoreError> {
        let Some(pattern) = super::id_prefix_pattern(prefix) else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE id::text LIKE $1 UNION ALL \
             SELECT {COLUMNS} FROM jobs_archive WHERE id::text LIKE $1 LIMIT 50"
        );
        self.read_jobs(&sql, &[&pattern])
    }

    fn update(&self, job: &Job, expected: JobStatus) -> Result<bool, StoreError> {
        let mut values = job_values(job);
        values.truncate(values.len() - LEASE_COLUMNS);
        let assignments = update_assignments('$');
        let n = values.len() + 1;
        let sql = format!(
            "UPDATE jobs SET {assignments} WHERE id = $1 AND status = ${n} \
             AND lease_token IS NOT DISTINCT FROM ${}",
            n + 1
        );
        let expected = expected.as_str().to_string();
        let token = job.lease.map(|l| l.token);
        self.with_client("update job", |c| {
            let mut r = refs(&values);
            r.push(&expected);
            r.push(&token);
            Ok(c.execute(&sql, &r)? == 1)
        })
    }

    fn claim_next(
        &self,
        owner: &ProcessIdentity,
        ttl: std::time::Duration,
    ) -> Result<Option<Job>, StoreError> {
        // The database's clock, not this host's: hosts' clocks may differ, the lease must not.
        // SKIP LOCKED: a job another process is claiming this instant is passed over, not
        // waited for, and never claimed twice.
        let sql = format!(
            "UPDATE jobs SET pid = $1, hostname = $2, pid_start_ticks = $3, lease_token = $4, \
             lease_expires_at = date_trunc('milliseconds', now()) + $5 * interval '1 millisecond' \
             WHERE id = (SELECT id FROM jobs WHERE status = 'pending' \
             AND ((pid IS NULL AND lease_token IS NULL) OR lease_expires_at < now()) \
             ORDER BY created_at, ord LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}"
        );
        let ticks = owner.start_ticks.map(|t| t as i64);
        let ms = ttl.as_millis() as f64;
        let pid = owner.pid as i64;
        let rows = self.with_client("claim a job", |c| {
            c.query(&sql, &[&pid, &owner.hostname, &ticks, &Uuid::new_v4(), &ms])
        })?;
        rows.first().map(|r| self.job_from_row(r)).transpose()
    }

    fn renew_lease(
        &self,
        id: Uuid,
        token: Uuid,
        ttl: std::time::Duration,
    ) -> Result<Option<super::Renewal>, StoreError> {
        let ms = ttl.as_millis() as f64;
        let row = self.with_client("renew a lease", |c| {
            c.query_opt(
                "UPDATE jobs SET lease_expires_at = date_trunc('milliseconds', now()) \
                 + $3 * interval '1 millisecond' WHERE id = $1 AND lease_token = $2 \
                 AND status IN ('pending','processing') RETURNING lease_expires_at, cancel_requested",
                &[&id, &token, &ms],
            )
        })?;
        Ok(row.map(|r| super::Renewal {
            lease: super::Lease {
                token,
                expires_at: r.get(0),
            },
            cancel_requested: r.get(1),
        }))
    }

    fn release_lease(&self, id: Uuid, token: Uuid, attempts: u32) -> Result<bool, StoreError> {
        let attempts = attempts as i32;
        self.write("release a job", |tx| {
            let n = tx.execute(
                &format!(
                    "UPDATE jobs SET status = 'pending', started_at = NULL, progress_percent = 0, \
                 attempts = $3, {NO_HOLDER} \
                 WHERE id = $1 AND lease_token = $2 AND status IN ('pending','processing')"
                ),
                &[&id, &token, &attempts],
            )?;
            if n == 1 {
                tx.execute("SELECT pg_notify($1, '')", &[&WORK_CHANNEL])?;
            }
            Ok(n == 1)
        })
    }

    fn request_cancel(&self, id: Uuid) -> Result<super::CancelRequest, StoreError> {
        let (category, message, remedy) = super::CANCELLED;
        let category = category.as_str();
        self.write("cancel a job", |tx| {
            // Queued and held by no process: nothing will see a flag, so cancel it here.
            let n = tx.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = date_trunc('milliseconds', now()), \
                 error_category = $2, error_message = $3, error_remedy = $4 WHERE id = $1 \
                 AND status = 'pending' AND pid IS NULL AND lease_token IS NULL",
                &[&id, &category, &message, &remedy],
            )?;
            if n == 1 {
                return Ok(super::CancelRequest::Cancelled);
            }
            let n = tx.execute(
                "UPDATE jobs SET cancel_requested = true WHERE id = $1 \
                 AND status IN ('pending','processing')",
                &[&id],
            )?;
            Ok(match n {
                1 => super::CancelRequest::Requested,
                _ => super::CancelRequest::NotActive,
            })
        })
    }

    fn cancel_requested(&self, id: Uuid) -> Result<bool, StoreError> {
        let row = self.with_client("read a cancel request", |c| {
            c.query_one(
                "SELECT COUNT(*) FROM jobs WHERE id = $1 AND cancel_requested \
                 AND status IN ('pending','processing')",
                &[&id],
            )
        })?;
        Ok(row.get::<_, i64>(0) > 0)
    }

    fn queue_stats(&self) -> Result<super::QueueStats, StoreError> {
        let row = self.with_client("queue stats", |c| {
            c.query_one(
                "SELECT \
                 COUNT(*) FILTER (WHERE status = 'pending' AND pid IS NULL AND lease_token IS NULL), \
                 COUNT(*) FILTER (WHERE lease_token IS NOT NULL AND lease_expires_at >= now()), \
                 COUNT(*) FILTER (WHERE lease_token IS NOT NULL AND lease_expires_at < now()) \
                 FROM jobs WHERE status IN ('pending','processing')",
                &[],
            )
        })?;
        Ok(super::QueueStats {
            waiting: row.get::<_, i64>(0) as u64,
            leased: row.get::<_, i64>(1) as u64,
            expired: row.get::<_, i64>(2) as u64,
        })
    }

    fn wait_for_work(&self, timeout: std::time::Duration) -> Result<bool, StoreError> {
        off_runtime(|| self.wait_here(timeout))
    }

    fn requeue_expired(&self, max_attempts: u32) -> Result<Vec<(Uuid, JobStatus)>, StoreError> {
        let max = max_attempts as i32;
        let rows = self.write("requeue expired leases", |tx| {
            // A pending job that lost its lease died before converting: count that attempt.
            tx.execute(
                "UPDATE jobs SET attempts = attempts + 1 WHERE status = 'pending' \
                 AND lease_expires_at < now()",
                &[],
            )?;
            // Asked to stop before its holder died: that is what the job becomes.
            let (category, message, remedy) = super::CANCELLED;
            let category = category.as_str();
            let mut out = tx.query(
                &format!("UPDATE jobs SET status = 'cancelled', finished_at = date_trunc('milliseconds', now()), \
                 error_category = $1, error_message = $2, error_remedy = $3, \
                 {NO_HOLDER} \
                 WHERE status IN ('pending','processing') AND lease_expires_at < now() \
                 AND cancel_requested RETURNING id, status"),
                &[&category, &message, &remedy],
            )?;
            out.extend(tx.query(
                &format!("UPDATE jobs SET status = 'failed', finished_at = date_trunc('milliseconds', now()), \
                 error_category = 'system', error_message = 'the process running it stopped \
                 (its lease expired) after ' || attempts || ' attempt(s)', \
                 error_remedy = 'check the workers'' logs; retry the job', \
                 {NO_HOLDER} \
                 WHERE status IN ('pending','processing') AND lease_expires_at < now() \
                 AND attempts >= $1 RETURNING id, status"),
                &[&max],
            )?);
            let back = tx.query(
                &format!("UPDATE jobs SET status = 'pending', started_at = NULL, progress_percent = 0, \
                 {NO_HOLDER} \
                 WHERE status IN ('pending','processing') AND lease_expires_at < now() \
                 RETURNING id, status"),
                &[],
            )?;
            if !back.is_empty() {
                tx.execute("SELECT pg_notify($1, '')", &[&WORK_CHANNEL])?;
            }
            out.extend(back);
            Ok(out)
        })?;
        rows.iter()
            .map(|r| {
                let status: String = r.get(1);
                Ok((
                    r.get(0),
                    JobStatus::parse(&status)
                        .ok_or_else(|| self.corrupt("?", format!("status {status:?}")))?,
                ))
            })
            .collect()
    }

    fn set_progress(&self, id: Uuid, percent: f64) -> Result<(), StoreError> {
        let p = percent.clamp(0.0, 100.0);
        self.with_client("set progress", |c| {
            c.execute(
                "UPDATE jobs SET progress_percent = $2 WHERE id = $1 AND status = 'processing'",
                &[&id, &p],
            )
            .map(|_| ())
        })
    }

    fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let mut wheres = Vec::new();
        let mut args: Vec<Box<dyn ToSql + Sync>> = Vec::new();
        if let Some(s) = filter.status {
            args.push(Box::new(s.as_str().to_string()));
            wheres.push(format!("status = ${}", args.len()));
        }
        if let Some(folder) = &filter.source_folder {
            args.push(Box::new(serde_json::json!([path_text(folder)])));
            wheres.push(format!("source_folders @> ${}", args.len()));
        }
        let cond = if wheres.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", wheres.join(" AND "))
        };
        let mut sql = format!("SELECT {COLUMNS}, ord FROM jobs{cond}");
        if filter.include_archived {
            sql = format!("{sql} UNION ALL SELECT {COLUMNS}, ord FROM jobs_archive{cond}");
        }
        sql.push_str(" ORDER BY created_at DESC, ord DESC");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        self.read_jobs(&sql, &refs(&args))
    }

    fn archive_finished(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.write("archive jobs", |tx| {
            let cond = "status IN ('completed','failed','cancelled') AND finished_at < $1";
            tx.execute(
                &format!(
                    "INSERT INTO jobs_archive ({COLUMNS}, ord, archived_at) \
                     SELECT {COLUMNS}, ord, now() FROM jobs WHERE {cond} \
                     ON CONFLICT (id) DO NOTHING"
                ),
                &[&before],
            )?;
            let n = tx.execute(&format!("DELETE FROM jobs WHERE {cond}"), &[&before])?;
            Ok(n as usize)
        })
    }

    fn delete_finished(&self, id: Uuid) -> Result<bool, StoreError> {
        self.write("delete job", |tx| {
            let cond = "id = $1 AND status IN ('completed','failed','cancelled')";
            let live = tx.execute(&format!("DELETE FROM jobs WHERE {cond}"), &[&id])?;
            let archived = tx.execute(&format!("DELETE FROM jobs_archive WHERE {cond}"), &[&id])?;
            if live + archived > 0 {
                tx.execute("DELETE FROM job_log WHERE job_id = $1", &[&id])?;
            }
            Ok(live + archived > 0)
        })
    }

    fn stats(&self) -> Result<JobStats, StoreError> {
        let all =
            format!("SELECT {COLUMNS} FROM jobs UNION ALL SELECT {COLUMNS} FROM jobs_archive");
        self.with_client("stats", |c| {
            let mut s = JobStats::default();
            for row in c.query(&format!("SELECT status, COUNT(*) FROM ({all}) a GROUP BY status"), &[])? {
                let status: String = row.get(0);
                let n = row.get::<_, i64>(1) as u64;
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
            let secs = "EXTRACT(EPOCH FROM (finished_at - started_at))::float8";
            let r = c.query_one(
                &format!(
                    "SELECT AVG({secs}), MIN({secs}), MAX({secs}), \
                     COALESCE(SUM(input_bytes), 0)::bigint, COALESCE(SUM(output_bytes), 0)::bigint, \
                     COALESCE(SUM(audio_duration_secs), 0)::float8, \
                     SUM(CASE WHEN audio_duration_secs IS NOT NULL AND {secs} > 0 THEN {secs} END), \
                     SUM(CASE WHEN audio_duration_secs IS NOT NULL AND {secs} > 0 THEN audio_duration_secs END) \
                     FROM ({all}) a WHERE status = 'completed' AND started_at IS NOT NULL AND finished_at IS NOT NULL"
                ),
                &[],
            )?;
            s.processing_secs_avg = r.get(0);
            s.processing_secs_min = r.get(1);
            s.processing_secs_max = r.get(2);
            s.input_bytes_total = r.get::<_, i64>(3) as u64;
            s.output_bytes_total = r.get::<_, i64>(4) as u64;
            s.audio_secs_total = r.get(5);
            let busy: Option<f64> = r.get(6);
            let audio: Option<f64> = r.get(7);
            s.realtime_factor = match (audio, busy) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            for row in c.query(
                &format!(
                    "SELECT error_category, COUNT(*) FROM ({all}) a WHERE status = 'failed' \
                     AND error_category IS NOT NULL GROUP BY error_category ORDER BY 2 DESC, 1"
                ),
                &[],
            )? {
                let cat: String = row.get(0);
                if let Some(cat) = ErrorCategory::parse(&cat) {
                    s.failures_by_category.push((cat, row.get::<_, i64>(1) as u64));
                }
            }
            Ok(s)
        })
    }

    fn append_log(&self, lines: &[JobLogLine]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        self.write("append job log", |tx| {
            let st = tx.prepare(
                "INSERT INTO job_log (job_id, time, level, target, message, fields) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )?;
            for l in lines {
                let fields = serde_json::Value::Object(l.fields.clone());
                tx.execute(
                    &st,
                    &[&l.job_id, &l.time, &l.level, &l.target, &l.message, &fields],
                )?;
            }
            Ok(())
        })
    }

    fn job_log(&self, id: Uuid, after: i64, limit: usize) -> Result<Vec<JobLogLine>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.with_client("read job log", |c| {
            c.query(
                "SELECT seq, time, level, target, message, fields FROM job_log \
                 WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&id, &after, &limit],
            )
        })?;
        rows.iter()
            .map(|r| {
                let fields = match r.get::<_, serde_json::Value>(5) {
                    serde_json::Value::Object(m) => m,
                    _ => {
                        return Err(self.corrupt(
                            &id.to_string(),
                            format!("log line {}: fields are not an object", r.get::<_, i64>(0)),
                        ))
                    }
                };
                Ok(JobLogLine {
                    seq: r.get(0),
                    job_id: id,
                    time: r.get(1),
                    level: r.get(2),
                    target: r.get(3),
                    message: r.get(4),
                    fields,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fresh() -> Box<PostgresStore> {
        Box::new(PostgresStore::open(&aiom4b_testkit::postgres::fresh_database()).unwrap())
    }

    super::super::conformance::store_suite!(fresh());

    #[test]
    fn an_insert_or_a_requeue_anywhere_wakes_a_waiting_worker() {
        let url = aiom4b_testkit::postgres::fresh_database();
        let waiter = PostgresStore::open(&url).unwrap();
        let other = PostgresStore::open(&url).unwrap();
        // Nothing happens: the wait runs out.
        assert!(!waiter.wait_for_work(Duration::from_millis(200)).unwrap());
        std::thread::scope(|scope| {
            let woke = scope.spawn(|| {
                let t = std::time::Instant::now();
                (
                    waiter.wait_for_work(Duration::from_secs(60)).unwrap(),
                    t.elapsed(),
                )
            });
            // The listener is set up inside the first wait above, so this insert is heard.
            std::thread::sleep(Duration::from_millis(100));
            other
                .insert(&Job::new(vec![PathBuf::from("/a")], serde_json::json!({})))
                .unwrap();
            let (woken, after) = woke.join().unwrap();
            assert!(woken, "woken by the insert");
            assert!(after < Duration::from_secs(60), "{after:?}");
        });
        // A lease that expires and is put back wakes it too.
        let who = ProcessIdentity::current();
        other
            .claim_next(&who, Duration::from_millis(10))
            .unwrap()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        // Drain the insert's notification if a second one was queued.
        let _ = waiter.wait_for_work(Duration::from_millis(10));
        assert_eq!(other.requeue_expired(3).unwrap().len(), 1);
        assert!(waiter.wait_for_work(Duration::from_secs(60)).unwrap());
    }

    #[test]
    fn claims_from_separate_connections_never_share_a_job() {
        let url = aiom4b_testkit::postgres::fresh_database();
        super::super::conformance::claims_from_separate_connections_never_share_a_job(&|| {
            Box::new(PostgresStore::open(&url).unwrap())
        });
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact_url("postgres://aiom4b:s3cret@db:5432/jobs"),
            "postgres://aiom4b:***@db:5432/jobs"
        );
        assert_eq!(
            redact_url("postgres://aiom4b@db/jobs"),
            "postgres://aiom4b@db/jobs"
        );
        assert_eq!(
            redact_url("postgres://db/jobs?x=a@b"),
            "postgres://db/jobs?x=a@b"
        );
    }

    #[test]
    fn two_processes_opening_at_once_migrate_once_and_a_newer_schema_is_refused() {
        let url = aiom4b_testkit::postgres::fresh_database();
        std::thread::scope(|s| {
            let a = s.spawn(|| PostgresStore::open(&url).map(|_| ()));
            let b = s.spawn(|| PostgresStore::open(&url).map(|_| ()));
            a.join().unwrap().unwrap();
            b.join().unwrap().unwrap();
        });
        let mut c = Client::connect(&url, NoTls).unwrap();
        let n: i64 = c
            .query_one("SELECT COUNT(*) FROM aiom4b_schema", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, MIGRATIONS.len() as i64);
        c.execute("INSERT INTO aiom4b_schema (version) VALUES (999)", &[])
            .unwrap();
        let e = PostgresStore::open(&url).unwrap_err();
        assert!(matches!(e, StoreError::TooNew { found: 999, .. }), "{e}");
    }

    #[test]
    fn a_broken_connection_is_opened_again() {
        let url = aiom4b_testkit::postgres::fresh_database();
        let store = PostgresStore::open(&url).unwrap();
        let job = Job::new(vec![PathBuf::from("/a")], serde_json::json!({}));
        store.insert(&job).unwrap();
        // Another session ends this store's connection, as a server restart would.
        let mut admin = Client::connect(&url, NoTls).unwrap();
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .unwrap();
        assert_eq!(store.get(job.id).unwrap().unwrap().id, job.id);
    }
}
