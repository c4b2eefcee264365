//! Backups of source folders: made before any processing, verified, atomic, pruned by age,
//! restorable without ever overwriting a live folder in place.
//!
//! Layout: `data/backup/{folder}_{YYYYMMDD_HHMMSS}/` holds the folder's complete structure plus
//! `metadata.txt` (source path, time, every file with size and BLAKE3 checksum) and the same
//! manifest as JSON for programs (see `manifest`). Creation:
//!
//! 1. check free space (blocks available to unprivileged users, `f_bavail`);
//! 2. copy into a hidden staging folder `.tmp-<uuid>` (reflink when the file system can,
//!    else `copy_file_range` through `std::io::copy`), `fsync` every file and folder;
//! 3. re-read every copy and compare its checksum with the source's;
//! 4. write the manifests, then rename the staging folder to its final name (a second backup in
//!    the same second gets `_2`).
//!
//! A crash or a full disk at any step leaves only the staging folder, which is never listed and
//! is removed by the next run ([`BackupStore::clean_temporaries`]).
//!
//! With `BACKUP_ENCRYPT_TO` ([`BackupStore::encrypting_to`]) step 2 encrypts every file with
//! age as it copies it and step 3 checks the encrypted copy and the source without decrypting;
//! `verify` checks an encrypted backup without a key and `restore` needs an [`Identity`]
//! (see `crypt` for what is recorded and why).
//!
//! The parts: `manifest` (the two manifest files), `copy` (checked, durable copies and the
//! free-space check), `crypt` (age encryption), `walk` (listing a folder), `verify` and
//! `restore` (those operations of [`BackupStore`]); here the store itself, creation, listing
//! and pruning.
mod copy;
mod crypt;
mod manifest;
mod restore;
mod verify;
mod walk;

pub use copy::available_space;
pub(crate) use copy::copy_tree;
pub(crate) use crypt::looks_secret;
pub use crypt::{Identity, Recipients};
pub use manifest::MANIFEST;

use crate::workflow::errors::{Error, Result};
use crate::workflow::staging::{self, Staging};
use crate::workflow::Hooks;
use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};
use copy::{check_space, copy_entry, sync_dirs};
use manifest::{Entry, Manifest};
use serde::Serialize;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use uuid::Uuid;
use walk::{walk, walk_excluding};

/// Appended to for every pruned backup.
pub const CLEANUP_LOG: &str = "cleanup_log.txt";
const STAGING_PREFIX: &str = "tmp";
const DELETING_PREFIX: &str = "deleting";
pub(crate) const RESTORE_PREFIX: &str = "aiom4b-restore";

/// A published backup, or a folder that looks like one but whose manifest cannot be read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupInfo {
    /// The folder name under `data/backup/`.
    pub name: String,
    /// The backup folder's full path.
    pub path: PathBuf,
    /// The folder that was backed up; `None` when the manifest cannot tell (damaged).
    pub source: Option<PathBuf>,
    /// From the manifest; for a damaged backup from its name, else the folder's change time.
    pub created: DateTime<FixedOffset>,
    /// The job the backup was made for, as recorded in the manifest (`None` for a manual
    /// backup or a damaged one).
    pub job: Option<Uuid>,
    /// Files the manifest lists; for a damaged backup, the files that are there.
    pub files: usize,
    /// Total size in bytes of those files (folders and links count 0); for an encrypted
    /// backup the size of their content, not of its encryption.
    pub total_bytes: u64,
    /// The age recipients (`age1…`, public keys) the backup's files are encrypted to; `None`
    /// for an unencrypted backup (and a damaged one).
    pub encrypted_to: Option<Vec<String>>,
    /// Why the backup cannot be trusted (its manifest is missing, empty or malformed), or
    /// `None`. Only the manifest is checked here; [`BackupStore::verify`] reads the content.
    pub damaged: Option<String>,
}

/// The result of checking a backup against its manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    /// The backup's folder name under `data/backup/`.
    pub name: String,
    /// The backup folder's full path.
    pub path: PathBuf,
    /// Files of the manifest that were looked at (0 when the manifest is unreadable).
    pub files_checked: usize,
    /// Empty when the backup is intact.
    pub problems: Vec<String>,
}

/// A backup removed by [`BackupStore::prune`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrunedBackup {
    /// The removed backup's folder name.
    pub name: String,
    /// When it was made, from the time in its name (local time).
    pub created: DateTime<Local>,
}

/// The result of [`BackupStore::restore`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreReport {
    /// The restored backup's folder name.
    pub backup: String,
    /// The restored folder.
    pub target: PathBuf,
    /// Where the folder that was in the way was moved (when kept).
    pub displaced: Option<PathBuf>,
    /// Number of files restored (folders and links not counted).
    pub files: usize,
}

/// The backup folder (`data/backup`) and the operations on it.
#[derive(Debug, Clone)]
pub struct BackupStore {
    dir: PathBuf,
    hooks: Hooks,
    /// Canonical folders left out of every backup (aiom4b's data folder inside a source).
    exclude: Vec<PathBuf>,
    /// New backups are encrypted to these (`BACKUP_ENCRYPT_TO`).
    encrypt_to: Option<Recipients>,
}

impl BackupStore {
    /// Backups under `dir` (created when needed).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        BackupStore {
            dir: dir.into(),
            hooks: Hooks::default(),
            exclude: Vec::new(),
            encrypt_to: None,
        }
    }

    /// Encrypts every new backup's files to `recipients` (`None`: no encryption).
    pub fn encrypting_to(mut self, recipients: Option<Recipients>) -> Self {
        self.encrypt_to = recipients;
        self
    }

    /// Leaves these canonical folders out of every backup wherever they appear in a source
    /// (aiom4b's data folder: a backup must not copy the live database, its own backups or logs).
    pub fn excluding(mut self, dirs: Vec<PathBuf>) -> Self {
        self.exclude = dirs;
        self
    }

    /// With fault-injection hooks (tests).
    #[doc(hidden)]
    pub fn with_hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// The backup folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes what interrupted runs left: staging folders of dead processes and half-deleted
    /// backups. Returns the removed paths.
    pub fn clean_temporaries(&self) -> Result<Vec<PathBuf>> {
        let mut removed = staging::clean_stale(&self.dir, STAGING_PREFIX)
            .map_err(|e| Error::io(&self.dir, "clean unfinished backups", e))?;
        removed.extend(
            staging::clean_stale(&self.dir, DELETING_PREFIX)
                .map_err(|e| Error::io(&self.dir, "clean half-deleted backups", e))?,
        );
        for p in &removed {
            crate::workflow::audit!(action = "backup.cleanup", path = %p.display(), "removed an unfinished backup left by an interrupted run");
        }
        Ok(removed)
    }

    /// Backs up `source` (see the module documentation). `job` is recorded in the manifest.
    pub fn create(&self, source: &Path, job: Option<Uuid>) -> Result<BackupInfo> {
        let source = fs::canonicalize(source).map_err(|_| Error::SourceMissing(source.into()))?;
        if !source.is_dir() {
            return Err(Error::SourceMissing(source));
        }
        fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, "create folder", e))?;
        let plan = walk_excluding(&source, &self.exclude)?;
        let total: u64 = plan.iter().map(Entry::size).sum();
        // Per entry a block for its inode/directory slot and a manifest line; 1 MiB slack.
        let needed = total + plan.len() as u64 * 4096 + (1 << 20);
        // age adds 16 bytes per 64 KiB chunk (its header fits in the per-entry block).
        let needed = needed
            + if self.encrypt_to.is_some() {
                total / 4096
            } else {
                0
            };
        check_space(&self.dir, needed)?;

        let stage = Staging::new(&self.dir, STAGING_PREFIX)
            .map_err(|e| Error::io(&self.dir, "create staging folder", e))?;
        let mut entries = Vec::with_capacity(plan.len());
        for entry in plan {
            let entry = copy_entry(&source, stage.path(), entry, None, self.encrypt_to.as_ref())?;
            if let Entry::File { rel, .. } = &entry {
                if let Some(hook) = &self.hooks.after_backup_file {
                    hook(&stage.path().join(rel));
                }
            }
            entries.push(entry);
        }
        let manifest = Manifest {
            source: source.clone(),
            created: Local::now().fixed_offset(),
            job,
            encrypted_to: self.encrypt_to.as_ref().map(|r| r.keys().to_vec()),
            entries,
        };
        manifest::write(stage.path(), &manifest)?;
        sync_dirs(stage.path(), &manifest.entries)?;

        let base = format!(
            "{}_{}",
            crate::sanitize::sanitize_file_stem(
                &source.file_name().unwrap_or_default().to_string_lossy()
            ),
            manifest.created.format("%Y%m%d_%H%M%S")
        );
        let path = stage
            .publish(|n| {
                if n == 1 {
                    self.dir.join(&base)
                } else {
                    self.dir.join(format!("{base}_{n}"))
                }
            })
            .map_err(|e| Error::io(&self.dir, "publish backup", e))?;
        let info = info_from(&path, &manifest);
        crate::workflow::audit!(
            action = "backup.create",
            backup = %info.name,
            source = %source.display(),
            files = info.files,
            bytes = info.total_bytes,
            job_id = job.map(|j| j.to_string()).unwrap_or_default(),
            encrypted_to = info.encrypted_to.as_ref().map(|r| r.join(",")).unwrap_or_default(),
            "backed up"
        );
        Ok(info)
    }

    /// Published backups, oldest first, damaged ones included (with [`BackupInfo::damaged`]
    /// set): a folder counts as a backup when it has a manifest file or an aiom4b backup name
    /// (`…_YYYYMMDD_HHMMSS`). Leaving out one whose manifest does not parse would make a broken
    /// backup look like no backup at all. Other folders are not aiom4b's and are not listed.
    pub fn list(&self) -> Result<Vec<BackupInfo>> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(&self.dir, "list backups", e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, "list backups", e))?;
            let name = entry.file_name();
            if name.as_bytes().starts_with(b".") || !entry.path().is_dir() {
                continue;
            }
            let path = entry.path();
            match manifest::read(&path) {
                Ok(r) => out.push(info_from(&path, &r.manifest)),
                Err(e) if is_backup_folder(&path) => out.push(damaged_info(&path, &e)),
                Err(_) => {}
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
        Ok(out)
    }

    /// The published backup at `path` as its manifest describes it; `None` when there is none
    /// there or its manifest cannot be read.
    pub fn info(&self, path: &Path) -> Option<BackupInfo> {
        manifest::read(path)
            .ok()
            .map(|r| info_from(path, &r.manifest))
    }

    /// The backup folder for `name` (exact, or a unique prefix).
    pub fn find(&self, name: &str) -> Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(Error::BackupNotFound(name.into()));
        }
        let exact = self.dir.join(name);
        if exact.is_dir() && is_backup_folder(&exact) {
            return Ok(exact);
        }
        let matches: Vec<_> = self
            .list()?
            .into_iter()
            .filter(|b| b.name.starts_with(name))
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.path.clone()),
            _ => Err(Error::BackupNotFound(name.into())),
        }
    }

    /// Removes backups older than `retention_days` (by the time in their name; 0 keeps all),
    /// appending a line per deletion to `cleanup_log.txt`.
    pub fn prune(&self, retention_days: u32, now: DateTime<Local>) -> Result<Vec<PrunedBackup>> {
        let mut pruned = Vec::new();
        if retention_days == 0 {
            return Ok(pruned);
        }
        let cutoff = now - chrono::Duration::days(retention_days as i64);
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(pruned),
            Err(e) => return Err(Error::io(&self.dir, "list backups", e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        for name in names {
            let Some(created) = time_in_name(&name) else {
                continue; // not named by aiom4b: never touched
            };
            if created >= cutoff {
                continue;
            }
            let path = self.dir.join(&name);
            // Hide it first with one rename, so a crash mid-deletion leaves a hidden folder that
            // clean_temporaries removes, never a half backup that looks complete.
            let hidden = self
                .dir
                .join(format!(".{DELETING_PREFIX}-{}", Uuid::new_v4().simple()));
            fs::rename(&path, &hidden).map_err(|e| Error::io(&path, "remove expired backup", e))?;
            fs::remove_dir_all(&hidden)
                .map_err(|e| Error::io(&hidden, "remove expired backup", e))?;
            self.log_cleanup(&format!(
                "{}\tdeleted\t{name}\tcreated {}, older than {retention_days} days",
                now.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
                created.format("%Y-%m-%d %H:%M:%S")
            ))?;
            crate::workflow::audit!(action = "backup.delete", backup = %name, reason = "retention", "pruned expired backup");
            pruned.push(PrunedBackup { name, created });
        }
        Ok(pruned)
    }

    fn log_cleanup(&self, line: &str) -> Result<()> {
        let path = self.dir.join(CLEANUP_LOG);
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"))
            .map_err(|e| Error::io(&path, "append to cleanup log", e))
    }
}

fn dir_name(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

fn info_from(path: &Path, m: &Manifest) -> BackupInfo {
    BackupInfo {
        name: dir_name(path),
        path: path.to_path_buf(),
        source: Some(m.source.clone()),
        created: m.created,
        job: m.job,
        files: m.files(),
        total_bytes: m.bytes(),
        encrypted_to: m.encrypted_to.clone(),
        damaged: None,
    }
}

/// Whether `dir` was made by aiom4b: it has a manifest file (readable or not), or an aiom4b
/// backup name. A backup whose manifest was deleted still has its name.
fn is_backup_folder(dir: &Path) -> bool {
    dir.join(MANIFEST).exists()
        || dir.join(manifest::ALT_MANIFEST).exists()
        || dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| time_in_name(n).is_some())
}

/// What is wrong with a backup whose manifest cannot be read, naming the manifest file.
fn manifest_problem(e: &Error) -> String {
    match e {
        Error::Manifest { path, reason } => format!(
            "{}: {reason}; the backup cannot be checked or restored",
            path.file_name().unwrap_or_default().to_string_lossy()
        ),
        other => other.to_string(),
    }
}

/// The listing of a backup whose manifest cannot be read: what its name and the files on disk
/// tell.
fn damaged_info(path: &Path, e: &Error) -> BackupInfo {
    let name = dir_name(path);
    let created = time_in_name(&name)
        .map(|t| t.fixed_offset())
        .or_else(|| {
            let modified = fs::metadata(path).and_then(|m| m.modified()).ok()?;
            Some(DateTime::<Local>::from(modified).fixed_offset())
        })
        .unwrap_or_default();
    let on_disk: Vec<Entry> = walk(path)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !manifest::is_manifest_name(e.rel()))
        .collect();
    BackupInfo {
        name,
        path: path.to_path_buf(),
        source: None,
        created,
        job: None,
        files: on_disk
            .iter()
            .filter(|e| matches!(e, Entry::File { .. }))
            .count(),
        total_bytes: on_disk.iter().map(Entry::size).sum(),
        encrypted_to: None,
        damaged: Some(manifest_problem(e)),
    }
}

/// The creation time in a backup's name (`…_YYYYMMDD_HHMMSS` or `…_YYYYMMDD_HHMMSS_N`), local.
pub fn time_in_name(name: &str) -> Option<DateTime<Local>> {
    let parse = |s: &str| -> Option<DateTime<Local>> {
        let stamp = s.get(s.len().checked_sub(15)?..)?;
        if s.len() > 15 && !s[..s.len() - 15].ends_with('_') {
            return None;
        }
        let naive = NaiveDateTime::parse_from_str(stamp, "%Y%m%d_%H%M%S").ok()?;
        // In a DST fold either reading is fine for day-granular retention.
        Local.from_local_datetime(&naive).earliest()
    };
    parse(name).or_else(|| {
        let (head, n) = name.rsplit_once('_')?;
        n.chars().all(|c| c.is_ascii_digit()).then_some(())?;
        parse(head)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(root: &Path) -> PathBuf {
        let src = root.join("Book = one\nline");
        fs::create_dir_all(src.join("CD 1")).unwrap();
        fs::write(src.join("CD 1").join("01\t.mp3"), b"first").unwrap();
        fs::write(src.join("02.mp3"), vec![7u8; 5000]).unwrap();
        fs::write(src.join("metadata.txt"), b"the book's own").unwrap();
        std::os::unix::fs::symlink("02.mp3", src.join("link.mp3")).unwrap();
        src
    }

    #[test]
    fn a_backup_has_both_manifests_and_they_agree() {
        let tmp = tempfile::tempdir().unwrap();
        let src = book(tmp.path());
        let store = BackupStore::new(tmp.path().join("backup"));
        let info = store.create(&src, None).unwrap();
        assert_eq!((info.files, info.total_bytes), (3, 5 + 5000 + 14));
        // The book's own metadata.txt is content; ours goes beside it.
        assert_eq!(
            fs::read(info.path.join(MANIFEST)).unwrap(),
            b"the book's own"
        );
        let text = fs::read_to_string(info.path.join(manifest::ALT_MANIFEST)).unwrap();
        assert!(text.contains("version: 2\n") && text.contains("sidecar: manifest.json\n"));
        assert!(info.path.join(manifest::SIDECAR).is_file());
        let report = store.verify(&info.name).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(names_and_counts(&store), vec![(info.name, 3, 5019, None)]);
    }

    fn names_and_counts(store: &BackupStore) -> Vec<(String, usize, u64, Option<String>)> {
        let list = store.list().unwrap();
        list.into_iter()
            .map(|b| (b.name, b.files, b.total_bytes, b.damaged))
            .collect()
    }

    #[test]
    fn a_version_1_backup_still_lists_verifies_and_restores() {
        let tmp = tempfile::tempdir().unwrap();
        let src = book(tmp.path());
        let store = BackupStore::new(tmp.path().join("backup"));
        let info = store.create(&src, None).unwrap();
        // What an aiom4b without the sidecar wrote: metadata.txt version 1 alone.
        let m = manifest::read(&info.path).unwrap().manifest;
        fs::remove_file(info.path.join(manifest::SIDECAR)).unwrap();
        fs::write(info.path.join(m.text_name()), m.to_text(None)).unwrap();

        assert_eq!(
            names_and_counts(&store),
            vec![(info.name.clone(), 3, 5019, None)]
        );
        let report = store.verify(&info.name).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.files_checked, 3);
        let to = tmp.path().join("restored");
        let restored = store.restore(&info.name, Some(&to), false).unwrap();
        assert_eq!(restored.files, 3);
        let back = to.join(src.file_name().unwrap());
        assert_eq!(
            fs::read(back.join("CD 1").join("01\t.mp3")).unwrap(),
            b"first"
        );
        assert_eq!(
            fs::read_link(back.join("link.mp3")).unwrap(),
            Path::new("02.mp3")
        );
        assert!(!back.join(manifest::SIDECAR).exists());
        assert!(!back.join(manifest::ALT_MANIFEST).exists());
    }

    #[test]
    fn a_missing_or_contradicting_sidecar_makes_the_backup_damaged() {
        let tmp = tempfile::tempdir().unwrap();
        let src = book(tmp.path());
        let store = BackupStore::new(tmp.path().join("backup"));
        let info = store.create(&src, None).unwrap();
        let sidecar = info.path.join(manifest::SIDECAR);
        let json = fs::read_to_string(&sidecar).unwrap();
        fs::write(&sidecar, json.replace("\"size\": 5000", "\"size\": 5001")).unwrap();
        let listed = store.list().unwrap();
        let damaged = listed[0].damaged.as_deref().unwrap();
        assert!(
            damaged.contains("manifest.json: does not match"),
            "{damaged}"
        );
        // The files that are there, manifests left out (and the book's own metadata.txt, which
        // a damaged backup cannot tell from a manifest).
        assert_eq!(listed[0].files, 2);
        fs::remove_file(&sidecar).unwrap();
        let report = store.verify(&info.name).unwrap();
        assert!(
            report.problems[0].contains("missing"),
            "{:?}",
            report.problems
        );
        assert!(store
            .restore(&info.name, Some(&tmp.path().join("r")), false)
            .is_err());
    }

    #[test]
    fn times_in_names() {
        let t = time_in_name("Dune_20240115_103000").unwrap();
        assert_eq!(
            t.format("%Y-%m-%d %H:%M:%S").to_string(),
            "2024-01-15 10:30:00"
        );
        assert!(time_in_name("Dune_20240115_103000_2").is_some());
        assert!(time_in_name("Book_20240101_120000_20250101_120000").is_some());
        assert!(time_in_name("notes").is_none());
        assert!(time_in_name("x20240115_103000").is_none());
    }
}

/// Encrypted backups end to end through the store: real files, real age encryption.
#[cfg(all(test, feature = "backup-encryption"))]
mod encrypted_tests {
    use super::*;
    use aiom4b_testkit::age_keys::{age_key as key, AgeKey as Key};

    /// A book with nested folders, a file of several MiB (not a whole number of age's 64 KiB
    /// chunks), an empty file and a link.
    fn book(root: &Path) -> PathBuf {
        let src = root.join("Encrypted Book");
        fs::create_dir_all(src.join("CD 1").join("extras")).unwrap();
        let big: Vec<u8> = (0..5 * 1024 * 1024 + 12345u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        fs::write(src.join("CD 1").join("01.mp3"), &big).unwrap();
        fs::write(
            src.join("CD 1").join("extras").join("notes.txt"),
            b"secret notes",
        )
        .unwrap();
        fs::write(src.join("empty.txt"), b"").unwrap();
        fs::write(src.join("02.mp3"), vec![7u8; 70_000]).unwrap();
        std::os::unix::fs::symlink("02.mp3", src.join("link.mp3")).unwrap();
        src
    }

    fn store(dir: &Path, to: &[&Key]) -> BackupStore {
        let list: Vec<&str> = to.iter().map(|k| k.public.as_str()).collect();
        BackupStore::new(dir.join("backup"))
            .encrypting_to(Recipients::parse(&list.join(", ")).unwrap())
    }

    fn same_tree(a: &Path, b: &Path) {
        let (wa, wb) = (walk(a).unwrap(), walk(b).unwrap());
        assert_eq!(
            wa.iter().map(Entry::rel).collect::<Vec<_>>(),
            wb.iter().map(Entry::rel).collect::<Vec<_>>()
        );
        for e in wa {
            match e {
                Entry::File { rel, .. } => assert!(
                    fs::read(a.join(&rel)).unwrap() == fs::read(b.join(&rel)).unwrap(),
                    "{} differs",
                    rel.display()
                ),
                Entry::Link { rel, target } => {
                    assert_eq!(fs::read_link(b.join(&rel)).unwrap(), target)
                }
                Entry::Dir(_) => {}
            }
        }
    }

    #[test]
    fn an_encrypted_backup_round_trips_byte_for_byte() {
        let tmp = tempfile::tempdir().unwrap();
        let src = book(tmp.path());
        let (alice, bob) = (key(tmp.path(), "alice.txt"), key(tmp.path(), "bob.txt"));
        let store = store(tmp.path(), &[&alice, &bob]);
        let info = store.create(&src, None).unwrap();
        assert_eq!(
            info.encrypted_to,
            Some(vec![alice.public.clone(), bob.public.clone()])
        );
        assert_eq!(info.files, 4);
        assert_eq!(info.total_bytes, 5 * 1024 * 1024 + 12345 + 12 + 70_000);

        // On disk: age files under the same names, nothing of the plaintext.
        for rel in [
            "CD 1/01.mp3",
            "CD 1/extras/notes.txt",
            "empty.txt",
            "02.mp3",
        ] {
            let stored = fs::read(info.path.join(rel)).unwrap();
            let plain = fs::read(src.join(rel)).unwrap();
            assert!(stored.starts_with(b"age-encryption.org/v1\n"), "{rel}");
            assert!(stored.len() > plain.len(), "{rel}");
        }
        let stored = fs::read(info.path.join("CD 1/extras/notes.txt")).unwrap();
        assert!(!stored.windows(12).any(|w| w == b"secret notes"));
        let big = fs::read(info.path.join("CD 1/01.mp3")).unwrap();
        let plain = fs::read(src.join("CD 1/01.mp3")).unwrap();
        assert!(!big
            .windows(64)
            .any(|w| w == &plain[1 << 20..(1 << 20) + 64]));
        // The manifest says so, names the recipients and holds no plaintext checksum.
        let text = fs::read_to_string(info.path.join(MANIFEST)).unwrap();
        assert!(text.contains("version: 3\n") && text.contains("encryption: age\n"));
        assert!(text.contains(&format!("recipients: {},{}\n", alice.public, bob.public)));
        for rel in ["CD 1/01.mp3", "02.mp3"] {
            let plain_hash = blake3::hash(&fs::read(src.join(rel)).unwrap()).to_hex();
            assert!(!text.contains(plain_hash.as_str()), "{rel}");
            let cipher_hash = blake3::hash(&fs::read(info.path.join(rel)).unwrap()).to_hex();
            assert!(text.contains(cipher_hash.as_str()), "{rel}");
        }
        assert_eq!(store.list().unwrap()[0].encrypted_to, info.encrypted_to);

        // Verify needs no key.
        let report = store.verify(&info.name).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.files_checked, 4);

        // Either recipient's identity restores it, byte for byte.
        for (k, dir) in [(&alice, "to-a"), (&bob, "to-b")] {
            let id = Identity::from_file(&k.file).unwrap();
            assert_eq!(id.public_keys(), std::slice::from_ref(&k.public));
            let to = tmp.path().join(dir);
            let r = store
                .restore_with(&info.name, Some(&to), false, Some(&id))
                .unwrap();
            assert_eq!(r.files, 4);
            same_tree(&src, &to.join("Encrypted Book"));
            assert_eq!(
                fs::read_dir(&to).unwrap().count(),
                1,
                "no staging folder left"
            );
        }
    }

    #[test]
    fn verify_without_a_key_names_a_flipped_byte() {
        let tmp = tempfile::tempdir().unwrap();
        let src = book(tmp.path());
        let k = key(tmp.path(), "k.txt");
        let store = store(tmp.path(), &[&k]);
        let info = store.create(&src, None).unwrap();
        let victim = info.path.join("CD 1").join("01.mp3");
        let mut bytes = fs::read(&victim).unwrap();
        bytes[3 * 1024 * 1024] ^= 0x01;
        fs::write(&victim, &bytes).unwrap();
        let report = store.verify(&info.name).unwrap();
        assert_eq!(
            report.problems,
            vec!["CD 1/01.mp3: checksum mismatch (content changed)".to_string()]
        );
        // And a restore refuses it, writing nothing.
        let id = Identity::from_file(&k.file).unwrap();
        let to = tmp.path().join("restored");
        let e = store
            .restore_with(&info.name, Some(&to), false, Some(&id))
            .unwrap_err();
        assert!(e.to_string().contains("CD 1/01.mp3"), "{e}");
        assert!(!to.join("Encrypted Book").exists());
    }

    #[test]
    fn a_tampered_file_with_a_matching_manifest_fails_to_decrypt_and_writes_nothing() {
        // The manifest's ciphertext checksums are no key: age's authentication is what
        // proves the content on restore.
        let tmp = tempfile::tempdir().unwrap();
        let src = book(tmp.path());
        let k = key(tmp.path(), "k.txt");
        let store = store(tmp.path(), &[&k]);
        let info = store.create(&src, None).unwrap();
        let victim = info.path.join("02.mp3");
        let mut bytes = fs::read(&victim).unwrap();
        let last = bytes.len() - 20;
        bytes[last] ^= 0x80;
        fs::write(&victim, &bytes).unwrap();
        let mut m = manifest::read(&info.path).unwrap().manifest;
        for e in &mut m.entries {
            if let Entry::File { rel, hash, .. } = e {
                if rel == Path::new("02.mp3") {
                    *hash = blake3::hash(&bytes);
                }
            }
        }
        manifest::write(&info.path, &m).unwrap();
        assert!(store.verify(&info.name).unwrap().problems.is_empty());

        let id = Identity::from_file(&k.file).unwrap();
        let to = tmp.path().join("restored");
        let e = store
            .restore_with(&info.name, Some(&to), false, Some(&id))
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("02.mp3: does not decrypt"), "{text}");
        assert_eq!(
            fs::read_dir(&to).unwrap().count(),
            0,
            "nothing left in {to:?}"
        );
    }

    #[test]
    fn a_wrong_or_missing_identity_is_refused_and_nothing_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let src = book(tmp.path());
        let (right, wrong) = (key(tmp.path(), "right.txt"), key(tmp.path(), "wrong.txt"));
        let store = store(tmp.path(), &[&right]);
        let info = store.create(&src, None).unwrap();
        let to = tmp.path().join("restored");

        let e = store.restore(&info.name, Some(&to), false).unwrap_err();
        assert!(
            matches!(&e, Error::IdentityNeeded { recipients, .. } if recipients == std::slice::from_ref(&right.public)),
            "{e:?}"
        );
        assert!(e.to_string().contains("--identity FILE"), "{e}");
        assert!(!to.exists(), "a refused restore creates nothing");

        let id = Identity::from_file(&wrong.file).unwrap();
        let e = store
            .restore_with(&info.name, Some(&to), false, Some(&id))
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&format!("was encrypted to {}", right.public))
                && text.contains("wrong.txt holds none of its keys")
                && text.contains(&wrong.public),
            "{text}"
        );
        assert!(!text.contains(&wrong.secret) && !format!("{e:?}").contains(&wrong.secret));
        assert!(!format!("{id:?}").contains(&wrong.secret));
        assert!(!to.exists(), "a refused restore creates nothing");

        // Restoring to the original place is refused the same way, leaving it alone.
        fs::write(src.join("02.mp3"), b"changed since").unwrap();
        assert!(store
            .restore_with(&info.name, None, false, Some(&id))
            .is_err());
        assert_eq!(fs::read(src.join("02.mp3")).unwrap(), b"changed since");
    }

    #[test]
    fn an_identity_is_not_needed_for_an_unencrypted_backup() {
        let tmp = tempfile::tempdir().unwrap();
        let src = book(tmp.path());
        let k = key(tmp.path(), "k.txt");
        let store = BackupStore::new(tmp.path().join("backup"));
        let info = store.create(&src, None).unwrap();
        assert_eq!(info.encrypted_to, None);
        let id = Identity::from_file(&k.file).unwrap();
        let to = tmp.path().join("restored");
        store
            .restore_with(&info.name, Some(&to), false, Some(&id))
            .unwrap();
        same_tree(&src, &to.join("Encrypted Book"));
    }

    #[test]
    fn identity_files_are_read_without_repeating_their_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let k = key(tmp.path(), "k.txt");
        // Two keys and blank lines read fine.
        let other = key(tmp.path(), "o.txt");
        let both = tmp.path().join("both.txt");
        fs::write(&both, format!("{}\n\n{}\n", k.secret, other.secret)).unwrap();
        let id = Identity::from_file(&both).unwrap();
        assert_eq!(id.public_keys(), [k.public.clone(), other.public.clone()]);

        // A damaged key line: the error gives its number, not its content.
        let bad = tmp.path().join("bad.txt");
        // Another last character (bech32's checksum catches any single substitution; the same
        // character would leave the key valid, one time in 32).
        let (head, last) = k.secret.split_at(k.secret.len() - 1);
        let damaged = format!("{head}{}", if last == "Q" { "P" } else { "Q" });
        fs::write(&bad, format!("# comment\n{damaged}\n")).unwrap();
        let e = Identity::from_file(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.txt") && e.contains("line 2"), "{e}");
        assert!(!e.contains(&damaged[20..]), "{e}");
        let empty = tmp.path().join("empty.txt");
        fs::write(&empty, "# nothing\n").unwrap();
        let e = Identity::from_file(&empty).unwrap_err().to_string();
        assert!(e.contains("holds no age identity"), "{e}");
        assert!(Identity::from_file(&tmp.path().join("missing")).is_err());
    }

    #[test]
    fn recipients_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let k = key(tmp.path(), "k.txt");
        assert!(Recipients::parse("").unwrap().is_none());
        assert!(Recipients::parse(" , ").unwrap().is_none());
        let r = Recipients::parse(&format!(" {} ,", k.public))
            .unwrap()
            .unwrap();
        assert_eq!(r.keys(), std::slice::from_ref(&k.public));
        let e = Recipients::parse("age1notakey").unwrap_err();
        assert!(
            e.contains("\"age1notakey\" is not an age X25519 recipient"),
            "{e}"
        );
        let e = Recipients::parse(&format!("{},ssh-ed25519 AAAA", k.public)).unwrap_err();
        assert!(e.contains("ssh-ed25519"), "{e}");
        let e = Recipients::parse(&k.secret).unwrap_err();
        assert!(e.contains("secret key") && !e.contains(&k.secret), "{e}");
        assert!(!format!("{r:?}").is_empty());
    }
}
