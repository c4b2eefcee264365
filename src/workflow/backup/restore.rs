//! Restoring a backup: built beside the target, checked, swapped in with one atomic rename;
//! a live folder is never overwritten in place. An encrypted backup is decrypted with an
//! [`Identity`], which is first tried on every file's header: a wrong one is refused before
//! anything is written.
use super::copy::{check_space, copy_entry, hash_file, sync_dirs};
use super::crypt::{self, DecryptFailure, Identity, Undecryptable};
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
    ///
    /// An encrypted backup cannot be restored this way ([`Error::IdentityNeeded`]): see
    /// [`BackupStore::restore_with`].
    pub fn restore(
        &self,
        name: &str,
        to: Option<&Path>,
        keep_displaced: bool,
    ) -> Result<RestoreReport> {
        self.restore_with(name, to, keep_displaced, None)
    }

    /// [`BackupStore::restore`], decrypting an encrypted backup with `identity`. Before
    /// anything is written, the ciphertext is verified and the identity tried on every file:
    /// none given is [`Error::IdentityNeeded`], one that holds none of the backup's keys is
    /// [`Error::WrongIdentity`]. Each file is then decrypted into the staging folder as it is
    /// read (age authenticates every chunk, so a decryption that completes is the original
    /// content), its size checked against the manifest and the copy read back. An identity
    /// given for an unencrypted backup is not needed and not used.
    pub fn restore_with(
        &self,
        name: &str,
        to: Option<&Path>,
        keep_displaced: bool,
        identity: Option<&Identity>,
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
        let backup_name = dir_name(&path);
        let decrypt = match (&manifest.encrypted_to, identity) {
            (None, _) => None,
            (Some(recipients), None) => {
                return Err(Error::IdentityNeeded {
                    backup: backup_name,
                    recipients: recipients.clone(),
                })
            }
            (Some(recipients), Some(id)) => {
                for e in &manifest.entries {
                    if let Entry::File { rel, .. } = e {
                        let file = path.join(rel);
                        crypt::check_opens(&file, id).map_err(|u| {
                            undecryptable(&backup_name, recipients, id, &file, rel, u)
                        })?;
                    }
                }
                Some((recipients, id))
            }
        };
        if manifest.encrypted_to.is_none() && identity.is_some() {
            tracing::info!(backup = %backup_name, "the backup is not encrypted: the identity is not needed");
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
            match (e, decrypt) {
                (Entry::File { rel, size, .. }, Some((recipients, id))) => {
                    let d = Decrypt {
                        backup: &backup_name,
                        recipients,
                        identity: id,
                    };
                    d.file(&path, stage.path(), rel, *size)?
                }
                _ => {
                    copy_entry(&path, stage.path(), e.clone(), Some(e), None)?;
                }
            }
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
        crate::workflow::audit!(action = "backup.restore", backup = %report.backup, target = %report.target.display(), files, decrypted = decrypt.is_some(), "restored backup");
        Ok(report)
    }
}

/// Decrypting the files of one encrypted backup with one identity.
struct Decrypt<'a> {
    backup: &'a str,
    recipients: &'a [String],
    identity: &'a Identity,
}

impl Decrypt<'_> {
    /// Decrypts the backup's file `rel` into the staging folder, checks the plaintext's size
    /// against the manifest's `size` and reads the written copy back.
    fn file(&self, backup: &Path, stage: &Path, rel: &Path, size: u64) -> Result<()> {
        let src = backup.join(rel);
        let dst = stage.join(rel);
        let (written, hash) = crate::workflow::retry::retry(
            &Default::default(),
            "decrypt file",
            |e: &Error| e.is_transient(),
            || {
                let _ = fs::remove_file(&dst);
                crypt::decrypt_file(&src, &dst, self.identity).map_err(|f| match f {
                    DecryptFailure::Source(u) => {
                        undecryptable(self.backup, self.recipients, self.identity, &src, rel, u)
                    }
                    DecryptFailure::Other(e) => e,
                })
            },
        )?;
        let problem = if written != size {
            Some(format!(
                "{}: decrypts to {written} bytes instead of {size}",
                rel.display()
            ))
        } else if hash_file(&dst).map_err(|e| Error::io(&dst, "read back copy", e))? != hash {
            Some(format!(
                "restored copy {} reads back differently than it was written (the disk is faulty)",
                dst.display()
            ))
        } else {
            None
        };
        match problem {
            Some(p) => Err(Error::Checksum {
                path: src,
                problems: vec![p],
            }),
            None => Ok(()),
        }
    }
}

/// The error for a file of an encrypted backup that `identity` cannot decrypt.
fn undecryptable(
    backup: &str,
    recipients: &[String],
    identity: &Identity,
    file: &Path,
    rel: &Path,
    why: Undecryptable,
) -> Error {
    match why {
        Undecryptable::WrongKey => Error::WrongIdentity {
            backup: backup.to_string(),
            recipients: recipients.to_vec(),
            file: identity.file().to_path_buf(),
            holds: identity.public_keys().to_vec(),
        },
        Undecryptable::Damaged(reason) => Error::Checksum {
            path: file.to_path_buf(),
            problems: vec![format!("{}: {reason}", rel.display())],
        },
        Undecryptable::Io(e) => Error::io(file, "read", e),
    }
}
