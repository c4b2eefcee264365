//! Job records whose paths are relative to the shared roots, so that hosts that mount the
//! shared storage at different places read the same job at their own paths (issue 14).
//!
//! [`RootedStore`] wraps any [`JobStore`]. On the way in (a job inserted or updated, a list
//! filtered by source folder) every path of the job under one of the roots is written as
//! `$DATA_DIR/rel/path`, `$SOURCE_DIR/rel/path` or `$OUTPUT_DIR/rel/path` (the longest
//! matching root wins); on the way out (every method returning a job) such a path is joined
//! back onto this host's root. A path outside every root is stored as it is (absolute), and
//! a record written before (absolute paths) reads as before.
//!
//! The paths mapped are the job's own ([`Job::source_folders`], [`Job::output_path`],
//! [`Job::backup_paths`], [`Job::part_path`], [`Job::temp_paths`], [`Job::output_parts`], the folder of a
//! `move:DIR` [`Job::post_action`]) and the paths the engine keeps in the job's `options`
//! ([`OPTION_PATHS`]: the plan's cover, output and data folder, the scan's excluded
//! folders). Log lines and idempotency records hold no paths the store reads back as paths;
//! they pass through unchanged, as does every other method.
//!
//! `Workflow::open` wraps the PostgreSQL store (shared by hosts) in it; the local SQLite store
//! keeps absolute paths.
use super::{
    CancelRequest, IdempotencyRecord, Job, JobFilter, JobLogLine, JobStats, JobStatus, JobStore,
    QueueStats, Renewal, StoreError,
};
use crate::workflow::process::ProcessIdentity;
use crate::workflow::Config;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uuid::Uuid;

/// The stored name of `DATA_DIR`.
pub const DATA_ROOT: &str = "$DATA_DIR";
/// The stored name of `SOURCE_DIR`.
pub const SOURCE_ROOT: &str = "$SOURCE_DIR";
/// The stored name of the output folder, used only when it is not inside `DATA_DIR` (a
/// symlink to another volume).
pub const OUTPUT_ROOT: &str = "$OUTPUT_DIR";

/// The paths inside a job's `options` that are mapped, as JSON pointers: each points to a
/// path string or to an array of them (the engine's options, `BookEngine::options_json`).
pub const OPTION_PATHS: [&str; 4] = [
    "/plan/cover",
    "/plan/output",
    "/plan/data_dir",
    "/scan/exclude",
];

/// This host's roots: where `$DATA_DIR`, `$SOURCE_DIR` and `$OUTPUT_DIR` are mounted.
#[derive(Debug, Clone)]
pub struct Roots {
    /// Roots a path is written relative to, longest first (so that the deepest root wins),
    /// each as canonicalized and, when different, as configured: a path built from the
    /// configured form (`./data/output/…` made absolute) matches as well as a canonical one.
    write: Vec<(&'static str, PathBuf)>,
    /// Where each stored name is read back to (the canonical form).
    read: Vec<(&'static str, PathBuf)>,
}

/// `p` canonicalized, or made absolute when it does not exist (yet).
fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

impl Roots {
    /// The roots of `DATA_DIR`, `SOURCE_DIR` and the output folder (canonicalized once, here).
    /// The output folder is a root of its own only when it is not inside `DATA_DIR`.
    pub fn new(data_dir: &Path, source_dir: &Path, output_dir: &Path) -> Roots {
        let mut write = Vec::new();
        let mut read = Vec::new();
        let data = canonical(data_dir);
        let output = canonical(output_dir);
        let output_own = !output.starts_with(&data);
        for (name, given, root) in [
            (DATA_ROOT, data_dir, data),
            (SOURCE_ROOT, source_dir, canonical(source_dir)),
            (OUTPUT_ROOT, output_dir, output),
        ] {
            if name != OUTPUT_ROOT || output_own {
                write.push((name, root.clone()));
                let given = std::path::absolute(given).unwrap_or_else(|_| given.to_path_buf());
                if given != root {
                    write.push((name, given));
                }
            }
            read.push((name, root));
        }
        write.sort_by_key(|(_, root)| std::cmp::Reverse(root.components().count()));
        Roots { write, read }
    }

    /// The roots of a configuration.
    pub fn from_config(config: &Config) -> Roots {
        Roots::new(&config.data_dir, &config.source_dir, &config.output_dir())
    }

    /// The stored form of `p`: relative to the deepest root it is under, or `p` itself.
    pub fn to_stored(&self, p: &Path) -> PathBuf {
        for (name, root) in &self.write {
            if let Ok(rel) = p.strip_prefix(root) {
                // `join("")` would add a trailing slash.
                return if rel.as_os_str().is_empty() {
                    PathBuf::from(name)
                } else {
                    Path::new(name).join(rel)
                };
            }
        }
        p.to_path_buf()
    }

    /// This host's path of a stored one: a `$ROOT/…` path on this host's root; any other
    /// (absolute, from before, or outside every root) as it is.
    pub fn to_local(&self, p: &Path) -> PathBuf {
        for (name, root) in &self.read {
            if let Ok(rel) = p.strip_prefix(name) {
                return if rel.as_os_str().is_empty() {
                    root.clone()
                } else {
                    root.join(rel)
                };
            }
        }
        p.to_path_buf()
    }

    /// `job` with every path mapped by `f` (see the module's list).
    fn map_job(&self, job: &Job, f: impl Fn(&Path) -> PathBuf) -> Job {
        let mut j = job.clone();
        let all = |v: &mut Vec<PathBuf>| v.iter_mut().for_each(|p| *p = f(p));
        all(&mut j.source_folders);
        all(&mut j.backup_paths);
        all(&mut j.temp_paths);
        all(&mut j.output_parts);
        for p in [&mut j.output_path, &mut j.part_path].into_iter().flatten() {
            *p = f(p);
        }
        if let Some(dir) = j
            .post_action
            .as_deref()
            .and_then(|a| a.strip_prefix("move:"))
        {
            j.post_action = Some(format!("move:{}", f(Path::new(dir)).to_string_lossy()));
        }
        let text = |v: &mut serde_json::Value| {
            if let serde_json::Value::String(s) = v {
                *s = f(Path::new(s.as_str())).to_string_lossy().into_owned();
            }
        };
        for pointer in OPTION_PATHS {
            match j.options.pointer_mut(pointer) {
                Some(serde_json::Value::Array(items)) => items.iter_mut().for_each(text),
                Some(v) => text(v),
                None => {}
            }
        }
        j
    }

    /// The stored form of a job.
    pub fn job_to_stored(&self, job: &Job) -> Job {
        self.map_job(job, |p| self.to_stored(p))
    }

    /// This host's form of a stored job.
    pub fn job_to_local(&self, job: &Job) -> Job {
        self.map_job(job, |p| self.to_local(p))
    }
}

/// A [`JobStore`] that keeps paths relative to the roots (see the module).
pub struct RootedStore {
    inner: Arc<dyn JobStore>,
    roots: Roots,
}

impl RootedStore {
    /// `inner`, with paths relative to `roots`.
    pub fn new(inner: Arc<dyn JobStore>, roots: Roots) -> RootedStore {
        RootedStore { inner, roots }
    }

    /// This host's roots.
    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    fn out(&self, job: Option<Job>) -> Option<Job> {
        job.map(|j| self.roots.job_to_local(&j))
    }

    fn out_all(&self, jobs: Vec<Job>) -> Vec<Job> {
        jobs.iter().map(|j| self.roots.job_to_local(j)).collect()
    }
}

/// Methods that pass through unchanged: one line each, the trait's signature with `;` (a
/// method returning nothing says `-> ()`). A trait method with a default body must be listed
/// too, or the inner store's own implementation of it is bypassed.
macro_rules! delegate {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(fn $name(&self $(, $arg: $ty)*) -> $ret {
            self.inner.$name($($arg),*)
        })*
    };
}

impl JobStore for RootedStore {
    delegate! {
        fn set_progress(&self, id: Uuid, percent: f64) -> Result<(), StoreError>;
        fn archive_finished(&self, before: DateTime<Utc>) -> Result<usize, StoreError>;
        fn stats(&self) -> Result<JobStats, StoreError>;
        fn delete_finished(&self, id: Uuid) -> Result<bool, StoreError>;
        fn append_log(&self, lines: &[JobLogLine]) -> Result<(), StoreError>;
        fn job_log(&self, id: Uuid, after: i64, limit: usize) -> Result<Vec<JobLogLine>, StoreError>;
        fn find_idempotency_key(&self, key: &str, caller: &str, since: DateTime<Utc>) -> Result<Option<IdempotencyRecord>, StoreError>;
        fn record_idempotency_key(&self, record: &IdempotencyRecord, expired_before: DateTime<Utc>) -> Result<(), StoreError>;
        fn renew_lease(&self, id: Uuid, token: Uuid, ttl: std::time::Duration) -> Result<Option<Renewal>, StoreError>;
        fn requeue_expired(&self, max_attempts: u32) -> Result<Vec<(Uuid, JobStatus)>, StoreError>;
        fn release_lease(&self, id: Uuid, token: Uuid, attempts: u32) -> Result<bool, StoreError>;
        fn request_cancel(&self, id: Uuid) -> Result<CancelRequest, StoreError>;
        fn cancel_requested(&self, id: Uuid) -> Result<bool, StoreError>;
        fn queue_stats(&self) -> Result<QueueStats, StoreError>;
        fn wait_for_work(&self, timeout: std::time::Duration) -> Result<bool, StoreError>;
    }

    fn insert(&self, job: &Job) -> Result<(), StoreError> {
        self.inner.insert(&self.roots.job_to_stored(job))
    }

    fn update(&self, job: &Job, expected: JobStatus) -> Result<bool, StoreError> {
        self.inner.update(&self.roots.job_to_stored(job), expected)
    }

    fn get(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        Ok(self.out(self.inner.get(id)?))
    }

    fn find_by_prefix(&self, prefix: &str) -> Result<Vec<Job>, StoreError> {
        Ok(self.out_all(self.inner.find_by_prefix(prefix)?))
    }

    fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let mut filter = filter.clone();
        if let Some(folder) = &filter.source_folder {
            filter.source_folder = Some(self.roots.to_stored(folder));
        }
        Ok(self.out_all(self.inner.list(&filter)?))
    }

    fn claim_next(
        &self,
        owner: &ProcessIdentity,
        ttl: std::time::Duration,
    ) -> Result<Option<Job>, StoreError> {
        Ok(self.out(self.inner.claim_next(owner, ttl)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::jobs::SqliteStore;

    /// An SQLite store seen through a [`RootedStore`] whose roots do not exist (they are used
    /// as given): the conformance suite's paths under `/data`, `/books` and `/out` are stored
    /// relative, the others as they are.
    struct Fresh(#[allow(dead_code)] tempfile::TempDir, RootedStore);
    impl std::ops::Deref for Fresh {
        type Target = RootedStore;
        fn deref(&self) -> &RootedStore {
            &self.1
        }
    }
    fn fresh() -> Fresh {
        let dir = tempfile::tempdir().unwrap();
        let inner = SqliteStore::open(&dir.path().join("aiom4b.db")).unwrap();
        let roots = Roots::new(
            Path::new("/nonexistent-aiom4b/data"),
            Path::new("/books"),
            Path::new("/out"),
        );
        Fresh(dir, RootedStore::new(Arc::new(inner), roots))
    }

    super::super::conformance::store_suite!(fresh());

    /// A host's folders: DATA_DIR (its output folder inside), SOURCE_DIR, and a folder
    /// outside both.
    struct Host {
        _dir: tempfile::TempDir,
        data: PathBuf,
        source: PathBuf,
        elsewhere: PathBuf,
    }

    fn host() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let (data, source, elsewhere) = (base.join("data"), base.join("books"), base.join("else"));
        for d in [&data, &data.join("output"), &source, &elsewhere] {
            std::fs::create_dir_all(d).unwrap();
        }
        Host {
            _dir: dir,
            data,
            source,
            elsewhere,
        }
    }

    impl Host {
        fn roots(&self) -> Roots {
            Roots::new(&self.data, &self.source, &self.data.join("output"))
        }
    }

    /// A job with paths under every root and outside them, in every path field.
    fn full_job(h: &Host) -> Job {
        let mut j = Job::new(
            vec![h.source.join("Author/Book"), h.elsewhere.join("Loose")],
            serde_json::json!({
                "plan": {
                    "cover": h.data.join("uploads/abc.jpg"),
                    "output": h.data.join("output/Book.m4b"),
                    "data_dir": h.data,
                    "track_order": ["CD1/01.mp3"],
                },
                "scan": { "exclude": [h.data, h.elsewhere.join("x")], "max_depth": 3 },
                "convert": { "bitrate": 64000 },
            }),
        );
        j.output_path = Some(h.data.join("output/Book.m4b"));
        j.part_path = Some(h.data.join("output/.Book.m4b.part"));
        j.temp_paths = vec![
            h.data.join("output/.Book.m4b.part"),
            h.source.join("Author/.aiom4b-move-1"),
        ];
        j.backup_paths = vec![h.data.join("backup/Book-1"), h.elsewhere.join("backup")];
        j.post_action = Some(format!("move:{}", h.source.join("Done").display()));
        j
    }

    fn text(p: &Path) -> String {
        p.to_string_lossy().into_owned()
    }

    #[test]
    fn paths_are_stored_relative_to_their_root_and_read_back() {
        let h = host();
        let inner = Arc::new(SqliteStore::open(&h.data.join("aiom4b.db")).unwrap());
        let store = RootedStore::new(inner.clone(), h.roots());
        let job = full_job(&h);
        store.insert(&job).unwrap();
        assert_eq!(store.get(job.id).unwrap().unwrap(), job);

        let raw = inner.get(job.id).unwrap().unwrap();
        assert_eq!(
            raw.source_folders,
            [
                PathBuf::from("$SOURCE_DIR/Author/Book"),
                h.elsewhere.join("Loose")
            ]
        );
        assert_eq!(
            raw.output_path.as_deref(),
            Some(Path::new("$DATA_DIR/output/Book.m4b"))
        );
        assert_eq!(
            raw.part_path.as_deref(),
            Some(Path::new("$DATA_DIR/output/.Book.m4b.part"))
        );
        assert_eq!(
            raw.temp_paths,
            [
                PathBuf::from("$DATA_DIR/output/.Book.m4b.part"),
                PathBuf::from("$SOURCE_DIR/Author/.aiom4b-move-1")
            ]
        );
        assert_eq!(
            raw.backup_paths,
            [
                PathBuf::from("$DATA_DIR/backup/Book-1"),
                h.elsewhere.join("backup")
            ]
        );
        assert_eq!(raw.post_action.as_deref(), Some("move:$SOURCE_DIR/Done"));
        assert_eq!(
            raw.options,
            serde_json::json!({
                "plan": {
                    "cover": "$DATA_DIR/uploads/abc.jpg",
                    "output": "$DATA_DIR/output/Book.m4b",
                    "data_dir": "$DATA_DIR",
                    "track_order": ["CD1/01.mp3"],
                },
                "scan": { "exclude": ["$DATA_DIR", text(&h.elsewhere.join("x"))], "max_depth": 3 },
                "convert": { "bitrate": 64000 },
            })
        );

        // Updates are mapped the same way; a record with absolute paths (written before, or
        // by the SQLite store) reads as it is.
        let mut done = job.clone();
        done.status = JobStatus::Processing;
        assert!(store.update(&done, JobStatus::Pending).unwrap());
        assert_eq!(store.get(job.id).unwrap().unwrap(), done);
        let old = Job::new(vec![h.source.join("Old")], serde_json::json!({}));
        inner.insert(&old).unwrap();
        assert_eq!(store.get(old.id).unwrap().unwrap(), old);
    }

    #[test]
    fn two_hosts_see_one_job_at_their_own_mount_paths() {
        let (a, b) = (host(), host());
        let inner: Arc<dyn JobStore> =
            Arc::new(SqliteStore::open(&a.data.join("aiom4b.db")).unwrap());
        let on_a = RootedStore::new(inner.clone(), a.roots());
        let on_b = RootedStore::new(inner, b.roots());
        let job = full_job(&a);
        on_a.insert(&job).unwrap();

        let seen = on_b.get(job.id).unwrap().unwrap();
        assert_eq!(
            seen.source_folders,
            [b.source.join("Author/Book"), a.elsewhere.join("Loose")]
        );
        assert_eq!(seen.output_path, Some(b.data.join("output/Book.m4b")));
        assert_eq!(
            seen.backup_paths,
            [b.data.join("backup/Book-1"), a.elsewhere.join("backup")]
        );
        assert_eq!(
            seen.options["plan"]["cover"],
            text(&b.data.join("uploads/abc.jpg"))
        );
        assert_eq!(
            seen.post_action,
            Some(format!("move:{}", b.source.join("Done").display()))
        );

        // B claims it from the queue and sees its own paths; B's update reads back on A at A's.
        let claimed = on_b
            .claim_next(
                &ProcessIdentity::current(),
                std::time::Duration::from_secs(60),
            )
            .unwrap()
            .unwrap();
        assert_eq!(claimed.source_folders, seen.source_folders);
        let mut running = claimed.clone();
        running.status = JobStatus::Processing;
        running.part_path = Some(b.data.join("output/.B.part"));
        assert!(on_b.update(&running, JobStatus::Pending).unwrap());
        let back = on_a.find_by_prefix(&job.id.to_string()[..8]).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].part_path, Some(a.data.join("output/.B.part")));
        assert_eq!(back[0].source_folders, job.source_folders);
    }

    #[test]
    fn lists_filter_by_source_folder_through_the_mapping() {
        let (a, b) = (host(), host());
        let inner: Arc<dyn JobStore> =
            Arc::new(SqliteStore::open(&a.data.join("aiom4b.db")).unwrap());
        let on_a = RootedStore::new(inner.clone(), a.roots());
        let on_b = RootedStore::new(inner, b.roots());
        let book = Job::new(vec![a.source.join("Book")], serde_json::json!({}));
        let other = Job::new(vec![a.source.join("Other")], serde_json::json!({}));
        let outside = Job::new(vec![a.elsewhere.join("Book")], serde_json::json!({}));
        for j in [&book, &other, &outside] {
            on_a.insert(j).unwrap();
        }
        let ids = |s: &RootedStore, folder: PathBuf| -> Vec<Uuid> {
            let filter = JobFilter {
                source_folder: Some(folder),
                ..Default::default()
            };
            s.list(&filter).unwrap().iter().map(|j| j.id).collect()
        };
        assert_eq!(ids(&on_a, a.source.join("Book")), [book.id]);
        assert_eq!(ids(&on_b, b.source.join("Book")), [book.id]);
        assert_eq!(ids(&on_b, a.elsewhere.join("Book")), [outside.id]);
        assert!(
            ids(&on_b, a.source.join("Book")).is_empty(),
            "A's mount path is not B's"
        );
        let all = on_b.list(&JobFilter::default()).unwrap();
        assert_eq!(all.len(), 3);
        assert!(all
            .iter()
            .any(|j| j.source_folders == [b.source.join("Other")]));
    }

    #[test]
    fn the_deepest_root_wins_and_the_output_folder_is_a_root_only_outside_data() {
        let h = host();
        // SOURCE_DIR inside DATA_DIR: a book there is relative to SOURCE_DIR.
        let nested = Roots::new(&h.data, &h.data.join("books"), &h.data.join("output"));
        assert_eq!(
            nested.to_stored(&h.data.join("books/A")),
            Path::new("$SOURCE_DIR/A")
        );
        assert_eq!(
            nested.to_stored(&h.data.join("output/A.m4b")),
            Path::new("$DATA_DIR/output/A.m4b")
        );
        assert_eq!(nested.to_stored(&h.data), Path::new("$DATA_DIR"));
        assert_eq!(nested.to_local(Path::new("$DATA_DIR")), h.data);
        // A root's name as a prefix of another name is no match.
        assert_eq!(
            nested.to_local(Path::new("$DATA_DIRX/a")),
            Path::new("$DATA_DIRX/a")
        );
        assert_eq!(
            nested.to_stored(&h.data.with_file_name("data2")),
            h.data.with_file_name("data2")
        );

        // The output folder a symlink to another volume: its own root.
        let out = h.elsewhere.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let link = h.data.join("linked-output");
        std::os::unix::fs::symlink(&out, &link).unwrap();
        let roots = Roots::new(&h.data, &h.source, &link);
        assert_eq!(
            roots.to_stored(&out.join("A.m4b")),
            Path::new("$OUTPUT_DIR/A.m4b")
        );
        assert_eq!(
            roots.to_local(Path::new("$OUTPUT_DIR/A.m4b")),
            out.join("A.m4b")
        );
        // The configured (symlinked) form of a path matches too.
        assert_eq!(
            roots.to_stored(&link.join("A.m4b")),
            Path::new("$OUTPUT_DIR/A.m4b")
        );
    }
}
