//! Copying with proof: every file copied (reflink when the file system can), made durable and
//! read back against a checksum; folders flushed deepest first; free space checked up front.
use super::crypt::{self, Recipients};
use super::manifest::Entry;
use super::walk::walk;
use crate::workflow::errors::{Error, Result};
use crate::workflow::staging::fsync_dir;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// Copies the tree `from` into the existing empty folder `to`, checking every file's checksum
/// and making everything durable (used to move a source folder across file systems).
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let entries = walk(from)?;
    check_space(to, entries.iter().map(Entry::size).sum::<u64>() + (1 << 20))?;
    let mut copied = Vec::with_capacity(entries.len());
    for e in entries {
        copied.push(copy_entry(from, to, e, None, None)?);
    }
    sync_dirs(to, &copied)
}

/// Bytes available to unprivileged users on the file system of `dir` (reserved blocks excluded).
pub fn available_space(dir: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

pub(super) fn check_space(dir: &Path, needed: u64) -> Result<()> {
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

pub(super) fn hash_file(path: &Path) -> io::Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    h.update_reader(File::open(path)?)?;
    Ok(h.finalize())
}

/// Copies one entry from `from_root` to `to_root`, makes it durable and checks it.
/// For files: against `expected`'s checksum when given (restore), else against the source's
/// checksum taken after the copy (a source that changes meanwhile fails the check). With
/// `encrypt_to`, files are encrypted as they are copied ([`encrypt_entry`]).
pub(super) fn copy_entry(
    from_root: &Path,
    to_root: &Path,
    entry: Entry,
    expected: Option<&Entry>,
    encrypt_to: Option<&Recipients>,
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
        Entry::File { rel, .. } if encrypt_to.is_some() => {
            encrypt_entry(from_root, to_root, rel, encrypt_to.expect("checked"))
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
                age_size: None,
            })
        }
    }
}

/// Encrypts the file `rel` of `from_root` into `to_root` as it copies it (streaming, see
/// `crypt`), then checks as a plain copy is checked, without decrypting: the encrypted copy
/// read back must hash as what was written, and the source read again as what was encrypted
/// (a source that changes meanwhile fails the check).
fn encrypt_entry(from_root: &Path, to_root: &Path, rel: PathBuf, to: &Recipients) -> Result<Entry> {
    let src = from_root.join(&rel);
    let dst = to_root.join(&rel);
    let sealed = crate::workflow::retry::retry(
        &Default::default(),
        "encrypt file",
        |e: &Error| e.is_transient(),
        || {
            let _ = fs::remove_file(&dst);
            crypt::encrypt_file(&src, &dst, to)
        },
    )?;
    let written = hash_file(&dst).map_err(|e| Error::io(&dst, "read back copy", e))?;
    let source = hash_file(&src).map_err(|e| Error::io(&src, "checksum", e))?;
    let problem = if written != sealed.cipher_hash {
        Some(format!(
            "encrypted copy {} reads back differently than it was written (the disk is faulty)",
            dst.display()
        ))
    } else if source != sealed.plain_hash {
        Some("the file changed while it was being encrypted".to_string())
    } else {
        None
    };
    if let Some(p) = problem {
        return Err(Error::Checksum {
            path: src,
            problems: vec![p],
        });
    }
    Ok(Entry::File {
        rel,
        size: sealed.plain_size,
        hash: sealed.cipher_hash,
        age_size: Some(sealed.cipher_size),
    })
}

/// Copies a file's content, permissions and modification time; durable on return.
pub(super) fn copy_file(src: &Path, dst: &Path) -> Result<()> {
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
    finish_file(&to, dst, &meta)
}

/// Gives a written backup file its source's permissions and modification time (`meta`), then
/// fsyncs it: the end of a plain copy and of an encrypted one.
pub(super) fn finish_file(file: &File, path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    file.set_permissions(meta.permissions())
        .map_err(|e| Error::io(path, "set permissions", e))?;
    if let Ok(mtime) = meta.modified() {
        let _ = file.set_modified(mtime);
    }
    file.sync_all()
        .map_err(|e| Error::io(path, "flush to disk", e))
}

/// fsyncs every folder of the tree, deepest first, then the root.
pub(super) fn sync_dirs(root: &Path, entries: &[Entry]) -> Result<()> {
    for e in entries.iter().rev() {
        if let Entry::Dir(rel) = e {
            let p = root.join(rel);
            fsync_dir(&p).map_err(|e| Error::io(&p, "flush folder", e))?;
        }
    }
    fsync_dir(root).map_err(|e| Error::io(root, "flush folder", e))
}
