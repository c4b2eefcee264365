//! What happens to a source folder after a successful conversion: kept (default), moved
//! (`--move-source-to DIR`) or deleted (`--delete-source`).
//!
//! Both changes need the folder's backup: if they fail half-way (a permission problem, a full
//! disk on the move target), the folder is restored from the backup to its original place,
//! so the user never ends up with half a source folder.
use crate::scan::walk::{Event, Skip, Walk};
use crate::workflow::backup::{self, BackupInfo, BackupStore};
use crate::workflow::errors::{Error, Result};
use crate::workflow::staging::{self, fsync_dir, Staging};
use crate::workflow::Hooks;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The change applied to each source folder after its book was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PostAction {
    /// Leave the source folder as it is.
    #[default]
    Keep,
    /// Move the folder into this directory (`DIR/{folder name}`).
    MoveTo(PathBuf),
    /// Delete the folder.
    Delete,
}

impl PostAction {
    /// How the job record stores it: `move:DIR`, `delete`, or nothing to keep the sources.
    pub fn record(&self) -> Option<String> {
        match self {
            PostAction::Keep => None,
            PostAction::MoveTo(dir) => Some(format!("move:{}", dir.display())),
            PostAction::Delete => Some("delete".into()),
        }
    }
}

/// The prefix of a cross-file-system move's staging folder in the target directory.
pub(crate) const MOVE_PREFIX: &str = "aiom4b-move";

/// The temporaries a move of job `id` may create in `dir` (its staging folder and lock), for
/// the job record to hold before they exist.
pub(crate) fn move_temporaries(dir: &Path, id: uuid::Uuid) -> [PathBuf; 2] {
    Staging::paths(dir, MOVE_PREFIX, &id.simple().to_string())
}

/// Applies `action` to `source`, rolling back from `backup` on failure. Returns the new place
/// of the folder when it was moved.
pub(crate) fn apply(
    action: &PostAction,
    job: uuid::Uuid,
    source: &Path,
    backup: &BackupInfo,
    backups: &BackupStore,
    hooks: &Hooks,
) -> Result<Option<PathBuf>> {
    match action {
        PostAction::Keep => Ok(None),
        PostAction::Delete => {
            remove_tree(source, hooks)
                .map_err(|e| rollback(source, "deleting the source folder", e, backup, backups))?;
            crate::workflow::audit!(action = "source.delete", source = %source.display(), backup = %backup.name, "deleted source folder after conversion");
            Ok(None)
        }
        PostAction::MoveTo(dir) => {
            let dest = move_target(source, dir)?;
            match staging::rename_noreplace(source, &dest) {
                Ok(()) => {
                    // One rename: either it happened or not, nothing to roll back.
                    fsync_dir(dir).map_err(|e| Error::io(dir, "flush folder", e))?;
                    if let Some(parent) = source.parent() {
                        let _ = fsync_dir(parent);
                    }
                }
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
                    // Another file system: copy (checked), publish, then delete the original.
                    // What a killed earlier move left here goes first (its lock is free).
                    staging::clean_stale(dir, MOVE_PREFIX)
                        .map_err(|e| Error::io(dir, "clean unfinished moves", e))?;
                    let stage = Staging::named(dir, MOVE_PREFIX, &job.simple().to_string())
                        .map_err(|e| Error::io(dir, "create staging folder", e))?;
                    if let Some(hook) = &hooks.at_stage {
                        hook("move");
                    }
                    backup::copy_tree(source, stage.path())?;
                    stage
                        .publish_as(&dest)
                        .map_err(|e| Error::io(&dest, "move folder into place", e))?;
                    if let Err(e) = remove_tree(source, hooks) {
                        // Undo the whole move: original back from the backup, copy removed.
                        let err = rollback(source, "moving the source folder", e, backup, backups);
                        let _ = fs::remove_dir_all(&dest);
                        return Err(err);
                    }
                }
                Err(e) => return Err(Error::io(source, "move source folder", e)),
            }
            crate::workflow::audit!(action = "source.move", source = %source.display(), to = %dest.display(), "moved source folder after conversion");
            Ok(Some(dest))
        }
    }
}

/// Where `MoveTo(dir)` puts `source`; fails before anything changes when that place is taken
/// or inside the source itself.
pub(crate) fn move_target(source: &Path, dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create folder", e))?;
    let dir = fs::canonicalize(dir).map_err(|e| Error::io(dir, "resolve folder", e))?;
    if dir.starts_with(source) {
        return Err(Error::Invalid(format!(
            "{}: cannot move a source folder into itself",
            dir.display()
        )));
    }
    let dest = dir.join(source.file_name().unwrap_or_default());
    if fs::symlink_metadata(&dest).is_ok() {
        return Err(Error::Exists(dest));
    }
    Ok(dest)
}

/// Restores `source` from `backup` after `cause` interrupted `what`; the returned error says
/// whether that worked.
fn rollback(
    source: &Path,
    what: &'static str,
    cause: io::Error,
    backup: &BackupInfo,
    backups: &BackupStore,
) -> Error {
    tracing::error!(source = %source.display(), %cause, "{what} failed; restoring the folder from backup {}", backup.name);
    let restored = match backups.restore(&backup.name, None, false) {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(source = %source.display(), error = %e, "restoring from backup failed");
            false
        }
    };
    crate::workflow::audit!(action = "source.rollback", source = %source.display(), backup = %backup.name, restored, "rolled back source folder");
    Error::SourceAction {
        path: source.to_path_buf(),
        action: what,
        reason: cause.to_string(),
        restored,
        backup: backup.name.clone(),
    }
}

/// Deletes a tree file by file (deepest first), calling the fault hook before each removal.
/// Walked by the tree rules (`scan/walk.rs`, `Policy::Tree`): every entry, hidden ones
/// included; a symbolic link is removed as a link, never followed.
fn remove_tree(root: &Path, hooks: &Hooks) -> io::Result<()> {
    Walk::tree().run(root, |ev| match ev {
        Event::Entry(e) if e.meta.is_dir() => Ok(()),
        Event::Entry(e) => {
            if let Some(hook) = &hooks.before_source_remove {
                hook(e.path)?;
            }
            fs::remove_file(e.path)
        }
        Event::Leave(e) => fs::remove_dir(e.path),
        Event::Unreadable { error, .. }
        | Event::EntryUnreadable { error, .. }
        | Event::Skipped {
            reason: Skip::Unexaminable(error),
            ..
        } => Err(error),
        // Only the book rules follow links; the tree walk has no limit and no exclusions.
        Event::Skipped { .. } | Event::TooDeep(_) => Ok(()),
    })?;
    fs::remove_dir(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::Arc;

    #[test]
    fn remove_tree_removes_links_not_their_targets() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        let keep = t.path().join("keep");
        fs::create_dir_all(src.join("CD1/.meta")).unwrap();
        fs::create_dir_all(&keep).unwrap();
        for f in ["01.mp3", ".hidden", "CD1/02.mp3", "CD1/.meta/x"] {
            fs::write(src.join(f), b"x").unwrap();
        }
        fs::write(keep.join("k.mp3"), b"k").unwrap();
        symlink(&keep, src.join("dir-link")).unwrap();
        symlink(keep.join("k.mp3"), src.join("file-link.mp3")).unwrap();
        let removed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = removed.clone();
        let hooks = Hooks {
            before_source_remove: Some(Arc::new(move |p: &Path| {
                log.lock().unwrap().push(p.to_path_buf());
                Ok(())
            })),
            ..Default::default()
        };
        remove_tree(&src, &hooks).unwrap();
        assert!(!src.exists());
        assert_eq!(fs::read(keep.join("k.mp3")).unwrap(), b"k");
        // Every file and link went through the hook, deepest folder's files before the folder.
        assert_eq!(removed.lock().unwrap().len(), 6);
    }

    #[test]
    fn remove_tree_stops_at_the_hooks_error() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(&src).unwrap();
        for f in ["a", "b"] {
            fs::write(src.join(f), b"x").unwrap();
        }
        let hooks = Hooks {
            before_source_remove: Some(Arc::new(|p: &Path| {
                if p.ends_with("b") {
                    Err(io::Error::from(io::ErrorKind::PermissionDenied))
                } else {
                    Ok(())
                }
            })),
            ..Default::default()
        };
        let e = remove_tree(&src, &hooks).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(!src.join("a").exists() && src.join("b").exists());
    }
}
