//! A cheap summary of a book's folders, for caching what was learned from them.
use super::walk::{Event, Walk};
use crate::options::ScanOptions;
use std::fs::Metadata;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What [`fingerprint`] returns: equal values mean that, as far as the file system tells,
/// nothing a plan of the folders reads has changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(u64);

/// Summarizes every entry the scan of `folders` would meet (the same walk: depth, links,
/// hidden entries and exclusions by `opts`), one level deeper for safety, with each entry's
/// kind, size, modification and change times and inode, plus what the walk could not read.
/// It reads no file: a few `stat` calls per file, so it is cheap next to a plan, which opens
/// and parses every MP3.
///
/// The change time (`ctime`) cannot be set by a program, so a file rewritten with its old
/// size and modification time restored (`touch -r`, `rsync -t` in place) still changes the
/// fingerprint; a file replaced by a rename changes its inode. Links the scan does not follow
/// count by their target's metadata, since `cover.jpg` may be one.
pub fn fingerprint(folders: &[PathBuf], opts: &ScanOptions) -> Fingerprint {
    let mut h = DefaultHasher::new();
    let walk = Walk {
        exclude: &opts.exclude,
        ..Walk::book(Some(opts.max_depth.max(1) + 1))
    };
    for folder in folders {
        folder.hash(&mut h);
        match std::fs::metadata(folder) {
            Ok(m) => meta(&m, &mut h),
            Err(e) => e.kind().hash(&mut h),
        }
        let _ = walk.run(folder, |event| {
            match event {
                Event::Entry(e) | Event::TooDeep(e) => {
                    0u8.hash(&mut h);
                    e.rel.hash(&mut h);
                    meta(e.meta, &mut h);
                }
                Event::Leave(_) => 1u8.hash(&mut h),
                Event::Skipped { path, .. } => {
                    2u8.hash(&mut h);
                    path.hash(&mut h);
                    if let Ok(m) = std::fs::metadata(path) {
                        meta(&m, &mut h);
                    }
                }
                Event::Unreadable { rel, error, .. } => {
                    3u8.hash(&mut h);
                    rel.hash(&mut h);
                    error.kind().hash(&mut h);
                }
                Event::EntryUnreadable { dir, error } => {
                    4u8.hash(&mut h);
                    dir.hash(&mut h);
                    error.kind().hash(&mut h);
                }
            }
            Ok::<(), std::convert::Infallible>(())
        });
    }
    Fingerprint(h.finish())
}

fn meta(m: &Metadata, h: &mut impl Hasher) {
    m.file_type().is_dir().hash(h);
    m.len().hash(h);
    (m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()).hash(h);
    (m.dev(), m.ino(), m.mode()).hash(h);
}

/// Convenience for one folder.
pub fn fingerprint_folder(folder: &Path, opts: &ScanOptions) -> Fingerprint {
    fingerprint(&[folder.to_path_buf()], opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::time::Duration;

    fn fp(dir: &Path) -> Fingerprint {
        fingerprint_folder(dir, &ScanOptions::default())
    }

    #[test]
    fn changes_with_what_a_plan_reads_and_only_then() {
        let d = tempfile::tempdir().unwrap();
        let book = d.path().join("Book");
        fs::create_dir_all(book.join("CD1")).unwrap();
        fs::write(book.join("CD1/01.mp3"), b"one").unwrap();
        fs::write(book.join("cover.jpg"), b"img").unwrap();
        let first = fp(&book);
        assert_eq!(fp(&book), first, "stable while nothing changes");

        // Same size, modification time put back: the change time still differs.
        let f = book.join("CD1/01.mp3");
        let old = fs::metadata(&f).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&f, b"ONE").unwrap();
        fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let rewritten = fp(&book);
        assert_ne!(rewritten, first, "content rewritten in place");

        fs::write(book.join("02.mp3"), b"two").unwrap();
        let added = fp(&book);
        assert_ne!(added, rewritten, "a file added");
        fs::remove_file(book.join("cover.jpg")).unwrap();
        assert_ne!(fp(&book), added, "the cover removed");

        // Something outside the folder does not matter.
        let now = fp(&book);
        fs::write(d.path().join("elsewhere.mp3"), b"x").unwrap();
        assert_eq!(fp(&book), now, "a file outside the folder");
    }
}
