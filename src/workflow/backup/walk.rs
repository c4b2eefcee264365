//! The backup's directory walker: a folder's entries, sorted, parents before children, symbolic
//! links kept as links, other special files skipped. Kept as it was when the backup code was
//! split up: the crate is getting one walker for every module, and backup moves to it then.
use super::manifest::Entry;
use crate::workflow::errors::{Error, Result};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Lists `root` recursively (sorted, parents before children). Files get the checksum of zero
/// bytes as a placeholder until copied. Sockets, FIFOs and devices are skipped with a warning.
pub(super) fn walk(root: &Path) -> Result<Vec<Entry>> {
    walk_excluding(root, &[])
}

/// [`walk`] without the folders in `exclude` (canonical paths) and what is below them.
pub(super) fn walk_excluding(root: &Path, exclude: &[PathBuf]) -> Result<Vec<Entry>> {
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
