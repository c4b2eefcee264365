//! Finding book folders in a library: `aiom4b folders` lists them, `aiom4b batch` converts them.
//!
//! A folder is one book when it holds MP3 files directly, or when every sub-folder that holds
//! MP3s looks like a disc of the same book (`CD1`, `Disc 2`, `Part 03`, `1`: the scan's rule,
//! [`crate::scan::is_disc_folder`], so a folder found here is ordered by the same disc numbers
//! when converted). Anything else is a shelf (`Author/`), and its sub-folders are searched in
//! turn. Folders are walked by the scan's rules (`scan/walk.rs`, `Policy::Book`): hidden
//! entries skipped, symbolic links followed only inside the folder, each folder once.
use crate::scan::is_disc_folder;
use crate::scan::walk::{Event, Walk};
use crate::workflow::errors::{Error, Result};
use chrono::{DateTime, Local};
use serde::Serialize;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// How deep below the library root books are searched (`Genre/Author/Title/CD1`).
const MAX_DEPTH: usize = 4;

/// One book folder with what it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BookFolder {
    /// The book folder (the library root joined with `name`).
    pub path: PathBuf,
    /// The path relative to the library root (e.g. `Herbert/Dune`).
    pub name: String,
    /// MP3 files below it, disc folders included (see [`FolderStats::mp3_count`]).
    pub mp3_count: usize,
    /// Their total size in bytes.
    pub total_bytes: u64,
    /// Disc sub-folders holding MP3s.
    pub disc_folders: usize,
    /// The newest modification time among the folder and its files.
    pub last_modified: Option<DateTime<Local>>,
}

/// MP3 count, bytes and newest change of everything below `folder` (recursively).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FolderStats {
    /// MP3 files found by the scan's rules, each file counted once.
    pub mp3_count: usize,
    /// Their total size in bytes.
    pub total_bytes: u64,
    /// The newest modification time among the folder and every entry below it.
    pub last_modified: Option<SystemTime>,
}

/// True for a file a book folder is recognized by: `*.mp3`, and the other formats aiom4b
/// reads (`.m4a`, `.flac`, `.ogg`, `.opus`, `.wav`, `.aac` …, any case) — but not `.m4b`,
/// because a folder of nothing but M4Bs is a finished book in most libraries (an organized
/// output folder among them); M4B parts are converted by naming their folder (`convert`).
pub fn is_mp3(path: &Path) -> bool {
    let name = path.file_name().unwrap_or(path.as_os_str());
    crate::scan::takes_name(name, crate::model::InputFormats::all())
        && !Path::new(name)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("m4b"))
}

/// Counts MP3s, bytes and the newest change below `folder` (recursively, with no depth
/// limit), by the scan's rules (`scan/walk.rs`: hidden entries skipped, links followed
/// only inside `folder`, a file reached twice counted once), so the counts are those of the
/// files a conversion of `folder` would find. A folder that cannot be listed is an error.
pub fn folder_stats(folder: &Path) -> Result<FolderStats> {
    let mut stats = FolderStats::default();
    let meta = fs::metadata(folder).map_err(|e| Error::io(folder, "read folder", e))?;
    stats.last_modified = meta.modified().ok();
    let mut counted = HashSet::new();
    Walk::book(None).run(folder, |ev| {
        match ev {
            Event::Entry(e) => {
                if let Ok(m) = e.meta.modified() {
                    stats.last_modified = Some(stats.last_modified.map_or(m, |l| l.max(m)));
                }
                if e.meta.is_file() && is_mp3(e.path) && counted.insert(e.canonical.to_owned()) {
                    stats.mp3_count += 1;
                    stats.total_bytes += e.meta.len();
                }
            }
            Event::Unreadable { path, rel, error } => {
                return Err(unlistable(folder, path, rel, error))
            }
            Event::EntryUnreadable { dir, error } => {
                return Err(Error::io(dir, "list folder", error))
            }
            // Vanished meanwhile, links leaving the folder, loops: not part of the book.
            Event::Skipped { .. } | Event::TooDeep(_) | Event::Leave(_) => {}
        }
        Ok(())
    })?;
    Ok(stats)
}

/// The error for a folder the walk could not list (the walked folder itself when `rel` is
/// empty: named as given, without the walker's trailing separator).
fn unlistable(root: &Path, path: &Path, rel: &Path, error: std::io::Error) -> Error {
    let path = if rel.as_os_str().is_empty() {
        root
    } else {
        path
    };
    Error::io(path, "list folder", error)
}

/// Whether `dir` holds MP3s directly, and its sub-folders (by the scan's rules, sorted).
fn direct_mp3s(dir: &Path) -> Result<(bool, Vec<PathBuf>)> {
    let mut has_mp3 = false;
    let mut subdirs = Vec::new();
    Walk::book(Some(1)).run(dir, |ev| {
        match ev {
            Event::Entry(e) => has_mp3 |= e.meta.is_file() && is_mp3(e.path),
            // Depth 1 enters nothing: the sub-folders are the ones "too deep".
            Event::TooDeep(e) => subdirs.push(e.path.to_path_buf()),
            Event::Unreadable { path, rel, error } => {
                return Err(unlistable(dir, path, rel, error))
            }
            Event::EntryUnreadable { dir, error } => {
                return Err(Error::io(dir, "list folder", error))
            }
            Event::Skipped { .. } | Event::Leave(_) => {}
        }
        Ok(())
    })?;
    subdirs.sort();
    Ok((has_mp3, subdirs))
}

/// The book folders below `root`, sorted by path. `root` itself is a book when it qualifies.
pub fn discover_books(root: &Path) -> Result<Vec<BookFolder>> {
    if !root.is_dir() {
        return Err(Error::SourceMissing(root.to_path_buf()));
    }
    let mut books = Vec::new();
    visit(root, root, 0, &mut HashSet::new(), &mut books)?;
    books.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(books)
}

/// Classifies `dir` as a book or a shelf. `seen` holds the canonical folders already
/// classified: a folder reached again through a symbolic link is listed once, at its first
/// place in walk order.
fn visit(
    root: &Path,
    dir: &Path,
    depth: usize,
    seen: &mut HashSet<PathBuf>,
    books: &mut Vec<BookFolder>,
) -> Result<()> {
    let canonical = fs::canonicalize(dir).map_err(|e| Error::io(dir, "resolve folder", e))?;
    if !seen.insert(canonical) {
        return Ok(());
    }
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
            visit(root, &sub, depth + 1, seen, books)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn touch(dir: &Path, rel: &str, len: usize) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, vec![0u8; len]).unwrap();
    }

    #[test]
    fn stats_follow_the_scans_rules() {
        let t = tempfile::tempdir().unwrap();
        let book = t.path().join("Book");
        touch(&book, "01.mp3", 10);
        touch(&book, "CD2/02.MP3", 20);
        touch(&book, ".03.mp3", 40); // hidden: not part of the book
        touch(t.path(), "elsewhere/04.mp3", 80);
        // A second name for a file inside counts once; a link out of the folder not at all.
        symlink(book.join("01.mp3"), book.join("again.mp3")).unwrap();
        symlink(book.join("CD2"), book.join("CD2-link")).unwrap();
        symlink(t.path().join("elsewhere"), book.join("out")).unwrap();
        let s = folder_stats(&book).unwrap();
        assert_eq!((s.mp3_count, s.total_bytes), (2, 30));
        assert!(s.last_modified.is_some());
        assert!(folder_stats(&t.path().join("missing")).is_err());
    }

    #[test]
    fn books_of_other_formats_are_found_and_finished_m4bs_are_not() {
        let t = tempfile::tempdir().unwrap();
        let lib = t.path().join("lib");
        touch(&lib, "Flac Book/01.flac", 1);
        touch(&lib, "Store Book/Part 1.M4A", 1);
        touch(&lib, "Finished/Finished.m4b", 1);
        touch(&lib, "Finished/cover.jpg", 1);
        let names: Vec<String> = discover_books(&lib)
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, ["Flac Book", "Store Book"]);
    }

    #[test]
    fn a_book_reached_through_a_link_is_listed_once() {
        let t = tempfile::tempdir().unwrap();
        let lib = t.path().join("lib");
        touch(&lib, "Author/Dune/CD1/01.mp3", 1);
        touch(&lib, "Author/Dune/CD2/01.mp3", 1);
        touch(&lib, "Other/Book/01.mp3", 1);
        symlink(lib.join("Author"), lib.join("Also Author")).unwrap();
        symlink(lib.join("Author/Dune"), lib.join("Other/Dune")).unwrap();
        let books = discover_books(&lib).unwrap();
        let names: Vec<&str> = books.iter().map(|b| b.name.as_str()).collect();
        // "Also Author" sorts (and is walked) before "Author": the first place wins.
        assert_eq!(names, ["Also Author/Dune", "Other/Book"]);
        assert_eq!(books[0].disc_folders, 2);
    }
}
