//! The one owner of temporary and published files: how a temporary is named, which sibling
//! temporaries belong to it, removing all of them on failure, flushing, and the no-replace
//! rename that publishes the finished file.
//!
//! Every file aiom4b writes goes through here (folders go through the workflow's `staging`,
//! which uses the same rename and flush helpers):
//!
//! - A **part file** ([`PartFile`]) is the hidden temporary an output is written to, beside its
//!   final place so that publishing is one `rename` on one file system. It owns its name and the
//!   names of its sibling temporaries ([`sibling_temp`], e.g. the tag patcher's copy); dropping
//!   an unpublished `PartFile` removes all of them.
//! - A job's part is named `.{output name}.aiom4b-{job id}.part` (or `.aiom4b-{job id}.m4b.part`
//!   when the name is generated later). [`PartFile::temporaries`] lists every path the part may
//!   create; the workflow stores that list in the job record *before* the files exist, so that
//!   recovery after `kill -9` removes exactly those paths and nothing else.
//! - The library's own [`crate::Converter::convert`] (no job record) names its part
//!   `.{name}.{pid}.part`; [`clean_stale_pid_parts`] removes those of dead processes the next
//!   time anything converts to the same output.
//! - Publishing never replaces a file unless asked ([`rename_noreplace`], `RENAME_NOREPLACE`),
//!   sets the permissions and flushes the data before the rename and the folder after it.
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// The tags of the sibling temporaries a part file may create.
const SIBLING_TAGS: [&str; 2] = [TAGS_SIBLING, EDIT_SIBLING];
/// The tag patcher's copy of the file (`mp4tags`).
pub(crate) const TAGS_SIBLING: &str = "tags";
/// An edit's rewritten copy of a part file (`edit`, e.g. the metadata a job applies to its
/// verified `.part` before publishing it).
pub(crate) const EDIT_SIBLING: &str = "edit";

/// Whether `path` is one of aiom4b's part files (a job's or the library's `.part`).
pub(crate) fn is_part_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| {
        n.to_string_lossy().starts_with('.') && n.to_string_lossy().ends_with(".part")
    })
}

/// A hidden temporary output beside its final place; removed with its sibling temporaries when
/// dropped unpublished.
#[derive(Debug)]
pub struct PartFile {
    path: PathBuf,
    armed: bool,
}

impl PartFile {
    /// Owns the temporary at `path` (which need not exist yet).
    pub fn at(path: impl Into<PathBuf>) -> PartFile {
        PartFile {
            path: path.into(),
            armed: true,
        }
    }

    /// The part file of job `id` in `dir`: `.{name}.aiom4b-{id}.part` when the output's file
    /// name is known (so that an error about it, e.g. a full disk, names the book), else
    /// `.aiom4b-{id}.m4b.part`.
    pub fn for_job(dir: &Path, output_name: Option<&OsStr>, id: uuid::Uuid) -> PartFile {
        let name = match output_name {
            Some(name) => format!(".{}.aiom4b-{id}.part", name.to_string_lossy()),
            None => format!(".aiom4b-{id}.m4b.part"),
        };
        PartFile::at(dir.join(name))
    }

    /// [`PartFile::for_job`] for one attempt of a job claimed from a shared queue:
    /// `.{name}.aiom4b-{id}-{attempt}.part`, so that two processes that both think they hold the
    /// job (one paused past its lease) never write or remove each other's file.
    pub fn for_attempt(
        dir: &Path,
        output_name: Option<&OsStr>,
        id: uuid::Uuid,
        attempt: &str,
    ) -> PartFile {
        let name = match output_name {
            Some(name) => format!(".{}.aiom4b-{id}-{attempt}.part", name.to_string_lossy()),
            None => format!(".aiom4b-{id}-{attempt}.m4b.part"),
        };
        PartFile::at(dir.join(name))
    }

    /// The library's part file for `final_path`: `.{name}.{pid}.part` beside it.
    pub fn for_process(final_path: &Path) -> PartFile {
        PartFile::at(pid_part_path(final_path, std::process::id()))
    }

    /// The temporary file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every path this part may create: itself and its sibling temporaries. Record these
    /// before writing, and remove exactly these after a crash.
    pub fn temporaries(&self) -> Vec<PathBuf> {
        temporaries_of(&self.path)
    }

    /// Publishes to exactly `target`: permissions `mode`, data flushed, then renamed. An
    /// existing `target` is `AlreadyExists` unless `overwrite`, which replaces it in one rename
    /// (readers see the old or the new file, never half of one). On an error the part and its
    /// siblings are removed.
    pub fn publish_to(
        mut self,
        target: &Path,
        mode: Option<u32>,
        overwrite: bool,
    ) -> io::Result<()> {
        prepare(&self.path, mode)?;
        if overwrite {
            fs::rename(&self.path, target)?;
        } else {
            rename_noreplace(&self.path, target)?;
        }
        self.armed = false;
        self.remove_siblings();
        fsync_dir(parent_of(target))
    }

    /// Publishes under the first free name that `candidate(n)` gives for n = 1, 2, … 1000
    /// (never replacing anything); returns it. `reserve` is called with each name before the
    /// rename is tried (the workflow records it in the job first, so that a crash right after
    /// the rename still knows where the file went); an error from it stops publishing.
    pub fn publish_numbered(
        mut self,
        mode: Option<u32>,
        candidate: impl Fn(u32) -> PathBuf,
        mut reserve: impl FnMut(&Path) -> io::Result<()>,
    ) -> io::Result<PathBuf> {
        prepare(&self.path, mode)?;
        for n in 1..=1000 {
            let target = candidate(n);
            if fs::symlink_metadata(&target).is_ok() {
                continue;
            }
            reserve(&target)?;
            match rename_noreplace(&self.path, &target) {
                Ok(()) => {
                    self.armed = false;
                    self.remove_siblings();
                    fsync_dir(parent_of(&target))?;
                    return Ok(target);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "1000 names taken; clean up the output folder",
        ))
    }

    /// Gives up ownership without removing anything (the caller publishes it itself).
    pub fn keep(mut self) -> PathBuf {
        self.armed = false;
        self.path.clone()
    }

    fn remove_siblings(&self) {
        for p in temporaries_of(&self.path).into_iter().skip(1) {
            let _ = fs::remove_file(p);
        }
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if self.armed {
            let removed = remove_temporaries(&temporaries_of(&self.path));
            for p in removed {
                tracing::debug!(path = %p.display(), "removed unfinished output");
            }
        }
    }
}

/// The sibling temporary `tag` of `path`, in the same folder (same file system, so its rename
/// over `path` is atomic) and hidden: `{name}.{tag}.tmp` when `path` is hidden already, else
/// `.{name}.{tag}.tmp`.
pub fn sibling_temp(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let dot = if name.starts_with('.') { "" } else { "." };
    path.with_file_name(format!("{dot}{name}.{tag}.tmp"))
}

/// `part` and every sibling temporary it may have.
pub(crate) fn temporaries_of(part: &Path) -> Vec<PathBuf> {
    std::iter::once(part.to_path_buf())
        .chain(SIBLING_TAGS.iter().map(|t| sibling_temp(part, t)))
        .collect()
}

/// Removes the given temporaries (files, or folders for staging folders); returns those that
/// existed and are gone now. Missing paths are not an error; other failures are logged.
pub fn remove_temporaries(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for p in paths {
        let result = match fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(p),
            Ok(_) => fs::remove_file(p),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => removed.push(p.clone()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "could not remove a temporary file")
            }
        }
    }
    removed
}

/// The temporary of a split part that will be published at `final_path`, for the job whose
/// own part file is `job_part` (`.{name}.aiom4b-{id}[-{attempt}].part`): the same tag after the
/// part's name, `.{part name}.aiom4b-{id}[-{attempt}].part`, beside `final_path`. Recovery
/// derives it again from the recorded parts to finish publishing them.
pub(crate) fn split_part_temp(final_path: &Path, job_part: &Path) -> PathBuf {
    let job_name = job_part
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tag = job_name
        .rfind(".aiom4b-")
        .map(|i| job_name[i + 1..].to_string())
        .unwrap_or_else(|| "aiom4b.part".into());
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    final_path.with_file_name(format!(".{name}.{tag}"))
}

/// `.{name}.{pid}.part` beside `final_path`.
fn pid_part_path(final_path: &Path, pid: u32) -> PathBuf {
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output.m4b".into());
    final_path.with_file_name(format!(".{name}.{pid}.part"))
}

/// Removes the library's part files for `final_path` (and their siblings) left by processes
/// that no longer run (`kill -9` during [`crate::Converter::convert`]). Parts of live processes
/// are left alone. Returns what was removed.
pub fn clean_stale_pid_parts(final_path: &Path) -> Vec<PathBuf> {
    let (Some(name), dir) = (final_path.file_name(), parent_of(final_path)) else {
        return Vec::new();
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".part"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || pid_exists(pid) {
            continue;
        }
        removed.extend(remove_temporaries(&temporaries_of(&dir.join(file))));
    }
    removed
}

/// Whether a process with this pid exists on this host (EPERM counts: it belongs to someone
/// else).
pub(crate) fn pid_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        // EPERM: it exists but belongs to someone else.
        Err(e) => e != rustix::io::Errno::SRCH,
    }
}

/// Permissions first and data on disk before the rename, so the published name never points at
/// a file with the wrong mode or unflushed contents.
fn prepare(part: &Path, mode: Option<u32>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(mode) = mode {
        fs::set_permissions(part, fs::Permissions::from_mode(mode))?;
    }
    File::open(part)?.sync_all()
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Makes the entries of a folder (creations, renames) durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// Renames `from` to `to`, failing with `AlreadyExists` instead of replacing `to`.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            // Some file systems (older NFS, FUSE) don't know the flag: fall through.
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(e.into()),
        }
    }
    // A hard link fails atomically when `to` exists; where links work, this is as safe as
    // RENAME_NOREPLACE. Where they don't (some FUSE/SMB mounts), check and rename: not atomic
    // between the two, but aiom4b's own names are unique, so this only guards a user's file.
    match fs::hard_link(from, to) {
        Ok(()) => return fs::remove_file(from),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
        Err(_) => {}
    }
    if to.symlink_metadata().is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "destination exists",
        ));
    }
    fs::rename(from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_parts_temporary_carries_its_jobs_tag() {
        let id = uuid::Uuid::nil();
        let fin = Path::new("/out/Book - Part 2 of 3.m4b");
        let job = PartFile::for_job(Path::new("/out"), Some(OsStr::new("Book.m4b")), id);
        assert_eq!(
            split_part_temp(fin, job.keep().as_path()),
            PathBuf::from(format!("/out/.Book - Part 2 of 3.m4b.aiom4b-{id}.part"))
        );
        let attempt = PartFile::for_attempt(Path::new("/o"), None, id, "7");
        assert_eq!(
            split_part_temp(fin, attempt.keep().as_path()),
            PathBuf::from(format!(
                "/out/.Book - Part 2 of 3.m4b.aiom4b-{id}-7.m4b.part"
            ))
        );
    }

    #[test]
    fn dropped_part_removes_itself_and_its_siblings() {
        let dir = tempfile::tempdir().unwrap();
        let part = PartFile::for_job(dir.path(), Some(OsStr::new("b.m4b")), uuid::Uuid::nil());
        assert_eq!(
            part.path().file_name().unwrap(),
            ".b.m4b.aiom4b-00000000-0000-0000-0000-000000000000.part"
        );
        for p in part.temporaries() {
            fs::write(p, b"x").unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
        drop(part);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn publishing_never_replaces_and_a_lost_race_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.m4b");
        fs::write(&target, b"theirs").unwrap();
        let part = PartFile::for_job(dir.path(), Some(OsStr::new("out.m4b")), uuid::Uuid::nil());
        fs::write(part.path(), b"ours").unwrap();
        fs::write(sibling_temp(part.path(), TAGS_SIBLING), b"tmp").unwrap();
        let e = part.publish_to(&target, Some(0o644), false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&target).unwrap(), b"theirs");
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn numbered_publish_skips_taken_names_and_reserves_first() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("b.m4b"), b"old").unwrap();
        let part = PartFile::at(dir.path().join(".x.part"));
        fs::write(part.path(), b"new").unwrap();
        let mut reserved = Vec::new();
        let got = part
            .publish_numbered(
                Some(0o644),
                |n| match n {
                    1 => dir.path().join("b.m4b"),
                    n => dir.path().join(format!("b ({n}).m4b")),
                },
                |p| {
                    reserved.push(p.to_path_buf());
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(got, dir.path().join("b (2).m4b"));
        assert_eq!(reserved, vec![got.clone()]);
        assert_eq!(fs::read(dir.path().join("b.m4b")).unwrap(), b"old");
        assert_eq!(fs::read(&got).unwrap(), b"new");
    }

    #[test]
    fn a_failed_reservation_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let part = PartFile::at(dir.path().join(".x.part"));
        fs::write(part.path(), b"new").unwrap();
        let e = part
            .publish_numbered(
                None,
                |_| dir.path().join("b.m4b"),
                |_| Err(io::Error::other("database full")),
            )
            .unwrap_err();
        assert_eq!(e.to_string(), "database full");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn stale_pid_parts_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let final_path = dir.path().join("b.m4b");
        // A pid that cannot exist (above pid_max's ceiling of 2^22).
        let dead = pid_part_path(&final_path, 4_194_305);
        let live = pid_part_path(&final_path, std::process::id());
        fs::write(&dead, b"x").unwrap();
        fs::write(sibling_temp(&dead, TAGS_SIBLING), b"x").unwrap();
        fs::write(&live, b"x").unwrap();
        let removed = clean_stale_pid_parts(&final_path);
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(live.exists());
        assert!(!dead.exists());
    }
}
