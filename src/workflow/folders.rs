//! Finding book folders in a library: `aiom4b folders` lists them, `aiom4b batch` converts them.
//!
//! A folder is one book when it holds MP3 files directly, or when every sub-folder that holds
//! MP3s looks like a disc of the same book (`CD1`, `Disc 2`, `Part 03`, `1`: the scan's rule,
//! [`crate::scan::is_disc_folder`], so a folder found here is ordered by the same disc numbers
//! when converted). Anything else is a shelf (`Author/`), and its sub-folders are searched in
//! turn. Hidden entries are skipped.
use crate::scan::is_disc_folder;
use crate::workflow::errors::{Error, Result};
use chrono::{DateTime, Local};
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// How deep below the library root books are searched (`Genre/Author/Title/CD1`).
const MAX_DEPTH: usize = 4;

/// One book folder with what it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BookFolder {
    pub path: PathBuf,
    /// The path relative to the library root (e.g. `Herbert/Dune`).
    pub name: String,
    pub mp3_count: usize,
    pub total_bytes: u64,
    /// Disc sub-folders holding MP3s.
    pub disc_folders: usize,
    /// The newest modification time among the folder and its files.
    pub last_modified: Option<DateTime<Local>>,
}

/// MP3 count, bytes and newest change of everything below `folder` (recursively).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FolderStats {
    pub mp3_count: usize,
    pub total_bytes: u64,
    pub last_modified: Option<SystemTime>,
}

/// True for `*.mp3` in any case.
pub fn is_mp3(path: &Path) -> bool {
    crate::scan::is_mp3_name(path.as_os_str())
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// Counts MP3s, bytes and the newest change below `folder`, following no symlinks.
pub fn folder_stats(folder: &Path) -> Result<FolderStats> {
    let mut stats = FolderStats::default();
    let meta = fs::metadata(folder).map_err(|e| Error::io(folder, "read folder", e))?;
    stats.last_modified = meta.modified().ok();
    let mut stack = vec![folder.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| Error::io(&dir, "list folder", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, "list folder", e))?;
            if is_hidden(&entry.file_name()) {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue; // vanished meanwhile
            };
            if let Ok(m) = meta.modified() {
                stats.last_modified = Some(stats.last_modified.map_or(m, |l| l.max(m)));
            }
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && is_mp3(&path) {
                stats.mp3_count += 1;
                stats.total_bytes += meta.len();
            }
        }
    }
    Ok(stats)
}

fn direct_mp3s(dir: &Path) -> Result<(bool, Vec<PathBuf>)> {
    let mut has_mp3 = false;
    let mut subdirs = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, "list folder", e))? {
        let entry = entry.map_err(|e| Error::io(dir, "list folder", e))?;
        if is_hidden(&entry.file_name()) {
            continue;
        }
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            subdirs.push(entry.path());
        } else if ft.is_file() && is_mp3(&entry.path()) {
            has_mp3 = true;
        }
    }
    subdirs.sort();
    Ok((has_mp3, subdirs))
}

/// The book folders below `root`, sorted by path. `root` itself is a book when it qualifies.
pub fn discover_books(root: &Path) -> Result<Vec<BookFolder>> {
    if !root.is_dir() {
        return Err(Error::SourceMissing(root.to_path_buf()));
    }
    let mut books = Vec::new();
    visit(root, root, 0, &mut books)?;
    books.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(books)
}

fn visit(root: &Path, dir: &Path, depth: usize, books: &mut Vec<BookFolder>) -> Result<()> {
    let (has_mp3, subdirs) = direct_mp3s(dir)?;
    let mut with_audio = Vec::new();
    for sub in &subdirs {
        if folder_stats(sub)?.mp3_count > 0 {
            with_audio.push(sub.clone());
        }
    }
    let all_discs = !with_audio.is_empty()
        && with_audio.iter().all(|d| {
            d.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_disc_folder)
        });
    if has_mp3 || all_discs {
        let stats = folder_stats(dir)?;
        let name = dir
            .strip_prefix(root)
            .ok()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new(dir.file_name().unwrap_or(dir.as_os_str())))
            .to_string_lossy()
            .into_owned();
        books.push(BookFolder {
            path: dir.to_path_buf(),
            name,
            mp3_count: stats.mp3_count,
            total_bytes: stats.total_bytes,
            disc_folders: if all_discs { with_audio.len() } else { 0 },
            last_modified: stats.last_modified.map(DateTime::<Local>::from),
        });
        return Ok(());
    }
    if depth < MAX_DEPTH {
        for sub in with_audio {
            visit(root, &sub, depth + 1, books)?;
        }
    }
    Ok(())
}
