//! All-or-nothing folders: build in a hidden staging folder beside the final place, then publish
//! with one `rename`; what a crashed process left behind is found and removed by the next run.
//!
//! A staging folder `.NAME-<uuid>` has a sibling lock file `.NAME-<uuid>.lock` on which its
//! creator holds an exclusive `flock` for as long as it works. The kernel drops the lock when the
//! process dies (also on `kill -9`), so [`clean_stale`] can tell an abandoned folder (lock free
//! or lock file gone) from one that another live process is still filling. The lock file lives
//! outside the folder so that publishing (renaming the folder) never exposes it.
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// A hidden folder being filled; removed on drop unless published.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    lock_path: PathBuf,
    lock: Option<File>,
    done: bool,
}

impl Staging {
    /// Creates `parent/.{prefix}-<uuid>` and its lock.
    pub fn new(parent: &Path, prefix: &str) -> io::Result<Staging> {
        Staging::named(parent, prefix, &uuid::Uuid::new_v4().simple().to_string())
    }

    /// Creates `parent/.{prefix}-{id}` and its lock; see [`Staging::paths`] for recording them
    /// before they exist.
    pub fn named(parent: &Path, prefix: &str, id: &str) -> io::Result<Staging> {
        let [dir, lock_path] = Staging::paths(parent, prefix, id);
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        debug_assert_eq!(lock_path, parent.join(format!("{name}.lock")));
        let lock = File::create(&lock_path)?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
        // Lock first, folder second: a cleaner that sees the folder always finds a held lock.
        fs::create_dir(&dir)?;
        Ok(Staging {
            dir,
            lock_path,
            lock: Some(lock),
            done: false,
        })
    }

    /// The folder and lock file that [`Staging::named`] creates.
    pub fn paths(parent: &Path, prefix: &str, id: &str) -> [PathBuf; 2] {
        let name = format!(".{prefix}-{id}");
        [parent.join(&name), parent.join(format!("{name}.lock"))]
    }

    /// The staging folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Renames the staging folder to the first free name that `candidate(n)` gives for
    /// n = 1, 2, … (never replacing anything), makes the rename durable, and returns the name.
    pub fn publish(mut self, candidate: impl Fn(u32) -> PathBuf) -> io::Result<PathBuf> {
        for n in 1..=1000 {
            let target = candidate(n);
            match rename_noreplace(&self.dir, &target) {
                Ok(()) => {
                    if let Some(parent) = target.parent() {
                        fsync_dir(parent)?;
                    }
                    self.done = true;
                    return Ok(target);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "1000 names taken; clean up the destination",
        ))
    }

    /// Renames the staging folder to exactly `target`; `AlreadyExists` if taken.
    pub fn publish_as(mut self, target: &Path) -> io::Result<()> {
        rename_noreplace(&self.dir, target)?;
        if let Some(parent) = target.parent() {
            fsync_dir(parent)?;
        }
        self.done = true;
        Ok(())
    }

    /// Gives up ownership without removing the folder: after an exchange the staging path holds
    /// content the caller must deal with itself.
    pub fn disown(mut self) -> PathBuf {
        self.done = true;
        self.dir.clone()
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: if this fails, the next run's clean_stale removes it.
            let _ = fs::remove_dir_all(&self.dir);
        }
        let _ = fs::remove_file(&self.lock_path);
        self.lock.take();
    }
}

/// Removes the staging folders `.{prefix}-*` in `parent` whose creator is gone, with their lock
/// files; returns what was removed. Folders of live processes are left alone.
pub fn clean_stale(parent: &Path, prefix: &str) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let entries = match fs::read_dir(parent) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    let start = format!(".{prefix}-");
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(&start) || name.ends_with(".lock") {
            continue;
        }
        let lock_path = parent.join(format!("{name}.lock"));
        let lock = match File::options().write(true).open(&lock_path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Some(lock) = &lock {
            if rustix::fs::flock(lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .is_err()
            {
                continue; // a live process is working in it
            }
        }
        let path = entry.path();
        match fs::remove_dir_all(&path) {
            Ok(()) => removed.push(path),
            // The owner published it between our listing and now.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let _ = fs::remove_file(&lock_path);
    }
    // Lock files whose folder is gone (crash between removing the folder and the lock).
    for entry in fs::read_dir(parent)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(dir) = name.strip_suffix(".lock").filter(|d| d.starts_with(&start)) {
            if !parent.join(dir).exists() {
                if let Ok(f) = File::options().write(true).open(entry.path()) {
                    if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                        .is_ok()
                    {
                        let _ = fs::remove_file(entry.path());
                    }
                }
            }
        }
    }
    Ok(removed)
}

pub use crate::publish::{fsync_dir, rename_noreplace};

/// Swaps two paths atomically (both must exist); used to replace a live folder in one step.
pub fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Fallback in three renames; a crash in between leaves both folders under hidden names,
    // never a lost one.
    let tmp = a.with_file_name(format!(".aiom4b-swap-{}", uuid::Uuid::new_v4().simple()));
    fs::rename(b, &tmp)?;
    fs::rename(a, b)?;
    fs::rename(&tmp, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_staging_is_cleaned_and_live_one_is_kept() {
        let root = tempfile::tempdir().unwrap();
        let live = Staging::new(root.path(), "tmp").unwrap();
        // Simulate a dead owner: a folder with a lock file nobody holds.
        let dead = root.path().join(".tmp-dead");
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join("f"), b"x").unwrap();
        File::create(root.path().join(".tmp-dead.lock")).unwrap();
        let removed = clean_stale(root.path(), "tmp").unwrap();
        assert_eq!(removed, vec![dead.clone()]);
        assert!(live.path().exists());
        assert!(!root.path().join(".tmp-dead.lock").exists());
        let published = live
            .publish(|n| root.path().join(format!("out{n}")))
            .unwrap();
        assert!(published.ends_with("out1"));
        assert!(published.exists());
    }

    #[test]
    fn publish_never_replaces() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("out1")).unwrap();
        let s = Staging::new(root.path(), "tmp").unwrap();
        let p = s.publish(|n| root.path().join(format!("out{n}"))).unwrap();
        assert!(p.ends_with("out2"));
    }
}
