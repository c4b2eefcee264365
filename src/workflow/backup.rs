//! Backups of source folders: made before any processing, verified, atomic, pruned by age,
//! restorable without ever overwriting a live folder in place.
//!
//! Layout: `data/backup/{folder}_{YYYYMMDD_HHMMSS}/` holds the folder's complete structure plus
//! `metadata.txt` (source path, time, every file with size and BLAKE3 checksum). Creation:
//!
//! 1. check free space (blocks available to unprivileged users, `f_bavail`);
//! 2. copy into a hidden staging folder `.tmp-<uuid>` (reflink when the file system can,
//!    else `copy_file_range` through `std::io::copy`), `fsync` every file and folder;
//! 3. re-read every copy and compare its checksum with the source's;
//! 4. write the manifest, then rename the staging folder to its final name (a second backup in
//!    the same second gets `_2`).
//!
//! A crash or a full disk at any step leaves only the staging folder, which is never listed and
//! is removed by the next run ([`BackupStore::clean_temporaries`]).
use crate::workflow::errors::{Error, Result};
use crate::workflow::staging::{self, fsync_dir, Staging};
use crate::workflow::Hooks;
use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};
use serde::Serialize;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The manifest's name; `ALT_MANIFEST` when the source folder has its own `metadata.txt`.
pub const MANIFEST: &str = "metadata.txt";
const ALT_MANIFEST: &str = ".aiom4b-metadata.txt";
const HEADER: &str = "# aiom4b backup";
/// Appended to for every pruned backup.
pub const CLEANUP_LOG: &str = "cleanup_log.txt";
const STAGING_PREFIX: &str = "tmp";
const DELETING_PREFIX: &str = "deleting";
const RESTORE_PREFIX: &str = "aiom4b-restore";

/// One entry of a backup, relative to the folder root.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir(PathBuf),
    File {
        rel: PathBuf,
        size: u64,
        hash: blake3::Hash,
    },
    Link {
        rel: PathBuf,
        target: PathBuf,
    },
}

/// The parsed `metadata.txt`.
#[derive(Debug, Clone)]
struct Manifest {
    source: PathBuf,
    created: DateTime<FixedOffset>,
    job: Option<Uuid>,
    entries: Vec<Entry>,
}

/// A published backup, or a folder that looks like one but whose manifest cannot be read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupInfo {
    /// The folder name under `data/backup/`.
    pub name: String,
    pub path: PathBuf,
    /// The folder that was backed up; `None` when the manifest cannot tell (damaged).
    pub source: Option<PathBuf>,
    /// From the manifest; for a damaged backup from its name, else the folder's change time.
    pub created: DateTime<FixedOffset>,
    pub job: Option<Uuid>,
    /// Files the manifest lists; for a damaged backup, the files that are there.
    pub files: usize,
    pub total_bytes: u64,
    /// Why the backup cannot be trusted (its manifest is missing, empty or malformed), or
    /// `None`. Only the manifest is checked here; [`BackupStore::verify`] reads the content.
    pub damaged: Option<String>,
}

/// The result of checking a backup against its manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    pub name: String,
    pub path: PathBuf,
    pub files_checked: usize,
    /// Empty when the backup is intact.
    pub problems: Vec<String>,
}

/// A backup removed by [`BackupStore::prune`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrunedBackup {
    pub name: String,
    pub created: DateTime<Local>,
}

/// The result of [`BackupStore::restore`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreReport {
    pub backup: String,
    /// The restored folder.
    pub target: PathBuf,
    /// Where the folder that was in the way was moved (when kept).
    pub displaced: Option<PathBuf>,
    pub files: usize,
}

/// The backup folder (`data/backup`) and the operations on it.
#[derive(Debug, Clone)]
pub struct BackupStore {
    dir: PathBuf,
    hooks: Hooks,
    /// Canonical folders left out of every backup (aiom4b's data folder inside a source).
    exclude: Vec<PathBuf>,
}

impl BackupStore {
    /// Backups under `dir` (created when needed).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        BackupStore {
            dir: dir.into(),
            hooks: Hooks::default(),
            exclude: Vec::new(),
        }
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
        let total: u64 = plan.iter().map(entry_size).sum();
        // Per entry a block for its inode/directory slot and a manifest line; 1 MiB slack.
        let needed = total + plan.len() as u64 * 4096 + (1 << 20);
        check_space(&self.dir, needed)?;

        let stage = Staging::new(&self.dir, STAGING_PREFIX)
            .map_err(|e| Error::io(&self.dir, "create staging folder", e))?;
        let mut entries = Vec::with_capacity(plan.len());
        for entry in plan {
            let entry = copy_entry(&source, stage.path(), entry, None)?;
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
            entries,
        };
        let manifest_name = manifest_name_for(&manifest.entries);
        write_manifest(&stage.path().join(manifest_name), &manifest)?;
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
            match read_manifest(&path) {
                Ok(m) => out.push(info_from(&path, &m)),
                Err(e) if is_backup_folder(&path) => out.push(damaged_info(&path, &e)),
                Err(_) => {}
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
        Ok(out)
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

    /// Re-reads every file of a backup and compares it with the manifest; also reports missing
    /// and unexpected entries. A manifest that cannot be read is a problem of the report, not
    /// an error: the backup is damaged.
    pub fn verify(&self, name: &str) -> Result<VerifyReport> {
        let path = self.find(name)?;
        let manifest = match read_manifest(&path) {
            Ok(m) => m,
            Err(e) => {
                let report = VerifyReport {
                    name: dir_name(&path),
                    path,
                    files_checked: 0,
                    problems: vec![manifest_problem(&e)],
                };
                crate::workflow::audit!(action = "backup.verify", backup = %report.name, problems = 1, "verified backup: its manifest is unreadable");
                return Ok(report);
            }
        };
        let mut problems = Vec::new();
        let mut files_checked = 0;
        let mut expected = std::collections::HashSet::new();
        for e in &manifest.entries {
            let rel = entry_rel(e);
            expected.insert(rel.to_path_buf());
            let p = path.join(rel);
            let shown = rel.display();
            match e {
                Entry::Dir(_) => {
                    if !p.is_dir() {
                        problems.push(format!("{shown}: folder missing"));
                    }
                }
                Entry::Link { target, .. } => match fs::read_link(&p) {
                    Ok(t) if &t == target => {}
                    Ok(t) => problems.push(format!(
                        "{shown}: link points to {} instead of {}",
                        t.display(),
                        target.display()
                    )),
                    Err(_) => problems.push(format!("{shown}: symbolic link missing")),
                },
                Entry::File { size, hash, .. } => {
                    files_checked += 1;
                    match fs::symlink_metadata(&p) {
                        Ok(m) if m.is_file() => {
                            if m.len() != *size {
                                problems
                                    .push(format!("{shown}: size {} instead of {size}", m.len()));
                            } else {
                                match hash_file(&p) {
                                    Ok(h) if h == *hash => {}
                                    Ok(_) => problems.push(format!(
                                        "{shown}: checksum mismatch (content changed)"
                                    )),
                                    Err(err) => {
                                        problems.push(format!("{shown}: unreadable: {err}"))
                                    }
                                }
                            }
                        }
                        _ => problems.push(format!("{shown}: file missing")),
                    }
                }
            }
        }
        let manifest_name = manifest_name_for(&manifest.entries);
        for rel in walk(&path)?.iter().map(entry_rel) {
            if rel != Path::new(manifest_name) && !expected.contains(rel) {
                problems.push(format!("{}: not in the manifest", rel.display()));
            }
        }
        let report = VerifyReport {
            name: dir_name(&path),
            path,
            files_checked,
            problems,
        };
        crate::workflow::audit!(action = "backup.verify", backup = %report.name, problems = report.problems.len(), "verified backup");
        Ok(report)
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

    /// Restores backup `name` to its original place, or into `to` (as `to/{folder name}`).
    ///
    /// The copy is built beside the target, checked against the manifest, and only then
    /// swapped in with one atomic rename; a folder in the way is moved aside to
    /// `{target}.before-restore-{time}` (`keep_displaced`) or deleted (rollback of a
    /// half-deleted source, whose remains are a subset of the backup).
    pub fn restore(
        &self,
        name: &str,
        to: Option<&Path>,
        keep_displaced: bool,
    ) -> Result<RestoreReport> {
        let path = self.find(name)?;
        let manifest = read_manifest(&path)?;
        let report = self.verify(&dir_name(&path))?;
        if !report.problems.is_empty() {
            return Err(Error::Checksum {
                path,
                problems: report.problems,
            });
        }
        let folder_name = manifest.source.file_name().ok_or_else(|| {
            Error::Invalid(format!("{}: backup of a root folder", path.display()))
        })?;
        let target = match to {
            Some(dir) => dir.join(folder_name),
            None => manifest.source.clone(),
        };
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, "create folder", e))?;
        staging::clean_stale(&parent, RESTORE_PREFIX)
            .map_err(|e| Error::io(&parent, "clean unfinished restores", e))?;
        let total: u64 = manifest.entries.iter().map(entry_size).sum();
        check_space(&parent, total + (1 << 20))?;

        let stage = Staging::new(&parent, RESTORE_PREFIX)
            .map_err(|e| Error::io(&parent, "create staging folder", e))?;
        let mut files = 0;
        for e in &manifest.entries {
            if matches!(e, Entry::File { .. }) {
                files += 1;
            }
            copy_entry(&path, stage.path(), e.clone(), Some(e))?;
        }
        sync_dirs(stage.path(), &manifest.entries)?;

        let mut displaced = None;
        if fs::symlink_metadata(&target).is_ok() {
            staging::exchange(stage.path(), &target)
                .map_err(|e| Error::io(&target, "swap in the restored folder", e))?;
            // The staging path now holds the folder that was in the way.
            let old = stage.disown();
            if keep_displaced {
                let stamp = Local::now().format("%Y%m%d_%H%M%S");
                let mut aside = target.as_os_str().to_os_string();
                aside.push(format!(".before-restore-{stamp}"));
                let aside = PathBuf::from(aside);
                staging::rename_noreplace(&old, &aside)
                    .map_err(|e| Error::io(&aside, "move the replaced folder aside", e))?;
                displaced = Some(aside);
            } else if let Err(e) = fs::remove_dir_all(&old) {
                // The restored folder is in place: that is what counts. Whatever could not be
                // removed of the folder that was in the way (the part a failed deletion could
                // not delete either) is set aside under a visible name and reported.
                let stamp = Local::now().format("%Y%m%d_%H%M%S");
                let mut aside = target.as_os_str().to_os_string();
                aside.push(format!(".remains-{stamp}"));
                let aside = PathBuf::from(aside);
                let kept = match staging::rename_noreplace(&old, &aside) {
                    Ok(()) => aside,
                    Err(_) => old,
                };
                tracing::warn!(path = %kept.display(), error = %e, "restored; the remains of the replaced folder could not be removed");
                displaced = Some(kept);
            }
        } else {
            stage
                .publish_as(&target)
                .map_err(|e| Error::io(&target, "move the restored folder into place", e))?;
        }
        fsync_dir(&parent).map_err(|e| Error::io(&parent, "flush folder", e))?;
        let report = RestoreReport {
            backup: dir_name(&path),
            target,
            displaced,
            files,
        };
        crate::workflow::audit!(action = "backup.restore", backup = %report.backup, target = %report.target.display(), files, "restored backup");
        Ok(report)
    }
}

/// Copies the tree `from` into the existing empty folder `to`, checking every file's checksum
/// and making everything durable (used to move a source folder across file systems).
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let entries = walk(from)?;
    check_space(to, entries.iter().map(entry_size).sum::<u64>() + (1 << 20))?;
    let mut copied = Vec::with_capacity(entries.len());
    for e in entries {
        copied.push(copy_entry(from, to, e, None)?);
    }
    sync_dirs(to, &copied)
}

/// Bytes available to unprivileged users on the file system of `dir` (reserved blocks excluded).
pub fn available_space(dir: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

fn check_space(dir: &Path, needed: u64) -> Result<()> {
    let available = available_space(dir).map_err(|e| Error::io(dir, "query free space", e))?;
    if available < needed {
        return Err(Error::InsufficientSpace {
            path: dir.to_path_buf(),
            needed,
            available,
        });
    }
    Ok(())
}

fn dir_name(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

fn entry_rel(e: &Entry) -> &Path {
    match e {
        Entry::Dir(rel) | Entry::File { rel, .. } | Entry::Link { rel, .. } => rel,
    }
}

fn entry_size(e: &Entry) -> u64 {
    match e {
        Entry::File { size, .. } => *size,
        _ => 0,
    }
}

fn manifest_name_for(entries: &[Entry]) -> &'static str {
    if entries.iter().any(|e| entry_rel(e) == Path::new(MANIFEST)) {
        ALT_MANIFEST
    } else {
        MANIFEST
    }
}

fn info_from(path: &Path, m: &Manifest) -> BackupInfo {
    BackupInfo {
        name: dir_name(path),
        path: path.to_path_buf(),
        source: Some(m.source.clone()),
        created: m.created,
        job: m.job,
        files: m
            .entries
            .iter()
            .filter(|e| matches!(e, Entry::File { .. }))
            .count(),
        total_bytes: m.entries.iter().map(entry_size).sum(),
        damaged: None,
    }
}

/// Whether `dir` was made by aiom4b: it has a manifest file (readable or not), or an aiom4b
/// backup name. A backup whose manifest was deleted still has its name.
fn is_backup_folder(dir: &Path) -> bool {
    dir.join(MANIFEST).exists()
        || dir.join(ALT_MANIFEST).exists()
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
        .filter(|e| {
            let rel = entry_rel(e);
            rel != Path::new(MANIFEST) && rel != Path::new(ALT_MANIFEST)
        })
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
        total_bytes: on_disk.iter().map(entry_size).sum(),
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

/// Lists `root` recursively (sorted, parents before children). Files get the checksum of zero
/// bytes as a placeholder until copied. Sockets, FIFOs and devices are skipped with a warning.
fn walk(root: &Path) -> Result<Vec<Entry>> {
    walk_excluding(root, &[])
}

/// [`walk`] without the folders in `exclude` (canonical paths) and what is below them.
fn walk_excluding(root: &Path, exclude: &[PathBuf]) -> Result<Vec<Entry>> {
    let root_canon = if exclude.is_empty() {
        PathBuf::new()
    } else {
        fs::canonicalize(root).map_err(|e| Error::io(root, "resolve folder", e))?
    };
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut children: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, "list folder", e))?
            .collect::<io::Result<_>>()
            .map_err(|e| Error::io(&dir, "list folder", e))?;
        children.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for child in children {
            let child_rel = rel.join(child.file_name());
            let path = child.path();
            let meta = fs::symlink_metadata(&path).map_err(|e| Error::io(&path, "read", e))?;
            let ft = meta.file_type();
            if ft.is_dir() && exclude.iter().any(|x| root_canon.join(&child_rel) == *x) {
                tracing::info!(path = %path.display(), "not backed up: aiom4b's data folder");
            } else if ft.is_dir() {
                out.push(Entry::Dir(child_rel.clone()));
                subdirs.push(child_rel);
            } else if ft.is_file() {
                out.push(Entry::File {
                    rel: child_rel,
                    size: meta.len(),
                    hash: blake3::hash(b""),
                });
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(|e| Error::io(&path, "read link", e))?;
                out.push(Entry::Link {
                    rel: child_rel,
                    target,
                });
            } else {
                tracing::warn!(path = %path.display(), "skipped: not a file, folder or link");
            }
        }
        // Reverse so that popping visits sub-folders in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}

fn hash_file(path: &Path) -> io::Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    h.update_reader(File::open(path)?)?;
    Ok(h.finalize())
}

/// Copies one entry from `from_root` to `to_root`, makes it durable and checks it.
/// For files: against `expected`'s checksum when given (restore), else against the source's
/// checksum taken after the copy (a source that changes meanwhile fails the check).
fn copy_entry(
    from_root: &Path,
    to_root: &Path,
    entry: Entry,
    expected: Option<&Entry>,
) -> Result<Entry> {
    match entry {
        Entry::Dir(rel) => {
            let p = to_root.join(&rel);
            fs::create_dir(&p).map_err(|e| Error::io(&p, "create folder", e))?;
            Ok(Entry::Dir(rel))
        }
        Entry::Link { rel, target } => {
            let p = to_root.join(&rel);
            std::os::unix::fs::symlink(&target, &p).map_err(|e| Error::io(&p, "create link", e))?;
            Ok(Entry::Link { rel, target })
        }
        Entry::File { rel, .. } => {
            let src = from_root.join(&rel);
            let dst = to_root.join(&rel);
            crate::workflow::retry::retry(
                &Default::default(),
                "copy file",
                |e: &Error| e.is_transient(),
                || {
                    let _ = fs::remove_file(&dst);
                    copy_file(&src, &dst)
                },
            )?;
            let copied = hash_file(&dst).map_err(|e| Error::io(&dst, "read back copy", e))?;
            let size = fs::metadata(&dst)
                .map_err(|e| Error::io(&dst, "read back copy", e))?
                .len();
            let want = match expected {
                Some(Entry::File { hash, .. }) => *hash,
                _ => hash_file(&src).map_err(|e| Error::io(&src, "checksum", e))?,
            };
            if copied != want {
                return Err(Error::Checksum {
                    path: src,
                    problems: vec![format!(
                        "copy {} differs from the original (the file changed during the copy, or the disk is faulty)",
                        dst.display()
                    )],
                });
            }
            Ok(Entry::File {
                rel,
                size,
                hash: copied,
            })
        }
    }
}

/// Copies a file's content, permissions and modification time; durable on return.
fn copy_file(src: &Path, dst: &Path) -> Result<()> {
    let mut from = File::open(src).map_err(|e| Error::io(src, "open", e))?;
    let meta = from.metadata().map_err(|e| Error::io(src, "read", e))?;
    let mut to = File::options()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(|e| Error::io(dst, "create", e))?;
    // A reflink shares the blocks copy-on-write (instant on btrfs/XFS); elsewhere io::copy uses
    // copy_file_range, which keeps the data in the kernel.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let cloned = rustix::fs::ioctl_ficlone(&to, &from).is_ok();
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let cloned = false;
    if !cloned {
        io::copy(&mut from, &mut to).map_err(|e| Error::io(dst, "copy", e))?;
    }
    to.set_permissions(meta.permissions())
        .map_err(|e| Error::io(dst, "set permissions", e))?;
    if let Ok(mtime) = meta.modified() {
        let _ = to.set_modified(mtime);
    }
    to.sync_all()
        .map_err(|e| Error::io(dst, "flush to disk", e))
}

/// fsyncs every folder of the tree, deepest first, then the root.
fn sync_dirs(root: &Path, entries: &[Entry]) -> Result<()> {
    for e in entries.iter().rev() {
        if let Entry::Dir(rel) = e {
            let p = root.join(rel);
            fsync_dir(&p).map_err(|e| Error::io(&p, "flush folder", e))?;
        }
    }
    fsync_dir(root).map_err(|e| Error::io(root, "flush folder", e))
}

/// Escapes a path for one manifest field: `\\`, tab, newline, CR and other control characters,
/// and bytes that are not UTF-8 become escapes, so any Unix path round-trips.
fn escape(p: &Path) -> String {
    let mut out = String::new();
    for chunk in p.as_os_str().as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() && (c as u32) < 0x100 => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn unescape(s: &str) -> Option<PathBuf> {
    let mut out = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next()? {
            '\\' => out.push(b'\\'),
            't' => out.push(b'\t'),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).ok()?);
            }
            _ => return None,
        }
    }
    Some(PathBuf::from(OsString::from_vec(out)))
}

fn write_manifest(path: &Path, m: &Manifest) -> Result<()> {
    let files = m
        .entries
        .iter()
        .filter(|e| matches!(e, Entry::File { .. }))
        .count();
    let bytes: u64 = m.entries.iter().map(entry_size).sum();
    let mut s = format!(
        "{HEADER}\nversion: 1\nsource: {}\ncreated: {}\njob: {}\nfiles: {files}\nbytes: {bytes}\n\
         # entries: dir<TAB>path | file<TAB>blake3<TAB>size<TAB>path | link<TAB>target<TAB>path\n---\n",
        escape(&m.source),
        m.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        m.job.map(|j| j.to_string()).unwrap_or_else(|| "-".into()),
    );
    for e in &m.entries {
        match e {
            Entry::Dir(rel) => s.push_str(&format!("dir\t{}\n", escape(rel))),
            Entry::File { rel, size, hash } => s.push_str(&format!(
                "file\t{}\t{size}\t{}\n",
                hash.to_hex(),
                escape(rel)
            )),
            Entry::Link { rel, target } => {
                s.push_str(&format!("link\t{}\t{}\n", escape(target), escape(rel)))
            }
        }
    }
    let mut f = File::create(path).map_err(|e| Error::io(path, "write manifest", e))?;
    f.write_all(s.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(path, "write manifest", e))
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = [ALT_MANIFEST, MANIFEST]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .unwrap_or_else(|| dir.join(MANIFEST));
    let bad = |reason: String| Error::Manifest {
        path: path.clone(),
        reason,
    };
    let text = fs::read_to_string(&path).map_err(|e| {
        bad(match e.kind() {
            io::ErrorKind::NotFound => "missing".into(),
            _ => format!("cannot read: {e}"),
        })
    })?;
    if text.trim().is_empty() {
        return Err(bad("empty".into()));
    }
    let mut lines = text.lines().enumerate();
    if lines.next().map(|(_, l)| l) != Some(HEADER) {
        return Err(bad("missing the aiom4b header line".into()));
    }
    let (mut source, mut created, mut job) = (None, None, None);
    for (_, line) in lines.by_ref() {
        if line == "---" {
            break;
        }
        match line.split_once(": ") {
            Some(("source", v)) => source = unescape(v),
            Some(("created", v)) => created = DateTime::parse_from_rfc3339(v).ok(),
            Some(("job", v)) => job = Uuid::parse_str(v).ok(),
            _ => {}
        }
    }
    let mut entries = Vec::new();
    for (i, line) in lines {
        let fields: Vec<&str> = line.split('\t').collect();
        let line_err = || bad(format!("line {}: malformed entry", i + 1));
        let rel = |s: &str| unescape(s).filter(|p| p.is_relative() && !p.as_os_str().is_empty());
        entries.push(match fields.as_slice() {
            ["dir", p] => Entry::Dir(rel(p).ok_or_else(line_err)?),
            ["file", hash, size, p] => Entry::File {
                rel: rel(p).ok_or_else(line_err)?,
                size: size.parse().map_err(|_| line_err())?,
                hash: blake3::Hash::from_hex(hash).map_err(|_| line_err())?,
            },
            ["link", target, p] => Entry::Link {
                rel: rel(p).ok_or_else(line_err)?,
                target: unescape(target).ok_or_else(line_err)?,
            },
            _ => return Err(line_err()),
        });
    }
    // Entries must stay inside the backup: no `..` components.
    if entries.iter().any(|e| {
        entry_rel(e)
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    }) {
        return Err(bad("an entry points outside the backup".into()));
    }
    Ok(Manifest {
        source: source.ok_or_else(|| bad("no source line".into()))?,
        created: created.ok_or_else(|| bad("no valid created line".into()))?,
        job,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips() {
        for s in [
            "plain/name.mp3",
            "tab\there",
            "new\nline",
            "back\\slash",
            "ünïcödé",
        ] {
            assert_eq!(unescape(&escape(Path::new(s))).unwrap(), PathBuf::from(s));
        }
        let raw = PathBuf::from(OsString::from_vec(vec![b'a', 0xff, b'b']));
        assert_eq!(unescape(&escape(&raw)).unwrap(), raw);
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
