//! Restoring a backup: built beside the target, checked, swapped in with one atomic rename;
//! a live folder is never overwritten in place.
use super::copy::{check_space, copy_entry, sync_dirs};
use super::manifest::{self, Entry};
use super::{dir_name, BackupStore, RestoreReport, RESTORE_PREFIX};
use crate::workflow::errors::{Error, Result};
use crate::workflow::staging::{self, fsync_dir, Staging};
use chrono::Local;
use std::fs;
use std::path::{Path, PathBuf};

impl BackupStore {
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
        let manifest = manifest::read(&path)?.manifest;
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
        let total: u64 = manifest.entries.iter().map(Entry::size).sum();
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
