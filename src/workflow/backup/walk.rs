//! What a backup copies: a folder's entries, sorted, parents before children, symbolic links
//! kept as links, other special files skipped — read with the crate's one walker
//! ([`crate::scan::walk`]) under its tree rules.
use super::manifest::Entry;
use crate::scan::walk::{Event, Policy, Skip, Walk};
use crate::workflow::errors::{Error, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// Lists `root` recursively (sorted, parents before children). Files get the checksum of zero
/// bytes as a placeholder until copied. Sockets, FIFOs and devices are skipped with a warning.
pub(super) fn walk(root: &Path) -> Result<Vec<Entry>> {
    walk_excluding(root, &[])
}

/// [`walk`] without the folders in `exclude` (canonical paths) and what is below them. The
/// crate's one walker under its tree rules: every entry, hidden ones too, links reported as
/// links and never followed, depth first in byte order.
pub(super) fn walk_excluding(root: &Path, exclude: &[PathBuf]) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let walker = Walk {
        policy: Policy::Tree,
        max_depth: None,
        exclude,
    };
    walker.run(root, |ev| {
        match ev {
            Event::Entry(e) => {
                let ft = e.meta.file_type();
                if ft.is_dir() {
                    out.push(Entry::Dir(e.rel.to_path_buf()));
                } else if ft.is_file() {
                    out.push(Entry::File {
                        rel: e.rel.to_path_buf(),
                        size: e.meta.len(),
                        hash: blake3::hash(b""),
                        age_size: None,
                    });
                } else if ft.is_symlink() {
                    let target =
                        fs::read_link(e.path).map_err(|err| Error::io(e.path, "read link", err))?;
                    out.push(Entry::Link {
                        rel: e.rel.to_path_buf(),
                        target,
                    });
                } else {
                    tracing::warn!(path = %e.path.display(), "skipped: not a file, folder or link");
                }
            }
            Event::Skipped {
                path,
                reason: Skip::Excluded,
                ..
            } => tracing::info!(path = %path.display(), "not backed up: aiom4b's data folder"),
            Event::Skipped {
                path,
                reason: Skip::Unexaminable(err),
                ..
            } => return Err(Error::io(path, "read", err)),
            Event::Unreadable { path, rel, error } => {
                let at = if rel.as_os_str().is_empty() {
                    root
                } else {
                    path
                };
                return Err(Error::io(at, "list folder", error));
            }
            Event::EntryUnreadable { dir, error } => {
                return Err(Error::io(dir, "list folder", error))
            }
            Event::Leave(_) | Event::TooDeep(_) | Event::Skipped { .. } => {}
        }
        Ok(())
    })?;
    Ok(out)
}
