//! The scanner's directory walk: which entries of a book folder are looked at, how symbolic
//! links and depth are handled, and what is reported about the entries that are skipped.
use super::{is_mp3_name, unreadable_root};
use crate::model::{Finding, FindingKind, Severity};
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// An MP3 found by the walk, before ordering and de-duplication.
#[derive(Debug)]
pub(super) struct Candidate {
    pub(super) rel_path: PathBuf,
    pub(super) size_bytes: u64,
    /// Identity of the file for de-duplication (symlinks resolved).
    pub(super) canonical: PathBuf,
}

/// Other audio formats worth naming when a folder has no MP3 at all.
const OTHER_AUDIO: [&str; 11] = [
    "m4a", "m4b", "aac", "flac", "ogg", "opus", "wav", "wma", "mp2", "mp4", "aiff",
];

pub(super) struct Walker<'a> {
    pub(super) root: &'a Path,
    pub(super) root_canon: PathBuf,
    pub(super) max_depth: usize,
    /// Canonical folders never entered ([`crate::options::ScanOptions::exclude`]).
    pub(super) exclude: &'a [PathBuf],
    /// Canonical directories already entered: the loop guard.
    pub(super) visited: HashSet<PathBuf>,
    pub(super) found: Vec<Candidate>,
    pub(super) findings: Vec<Finding>,
    /// Subfolders not entered because of `max_depth` (relative paths).
    pub(super) too_deep: Vec<PathBuf>,
    /// Counts of other audio extensions, for a helpful "no MP3 found".
    pub(super) other_audio: BTreeMap<String, usize>,
    pub(super) root_unreadable: bool,
}

impl Walker<'_> {
    /// Walks the directory at `rel` (relative to the root) whose canonical path is `dir_canon`
    /// (already in `visited`). `depth` is 1 for the root folder.
    pub(super) fn walk_dir(&mut self, rel: &Path, dir_canon: &Path, depth: usize) {
        let dir = self.root.join(rel);
        let entries = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => return self.unreadable_dir(&dir, depth, &e),
        };
        let mut names = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => names.push(e.file_name()),
                Err(e) => {
                    // A failing entry must not hide the others: note it and read on.
                    self.findings.push(
                        Finding::warning(
                            FindingKind::Unreadable,
                            Some(dir.clone()),
                            format!("an entry of this folder could not be read: {e}"),
                        )
                        .with_remedy("check the folder and the disk"),
                    );
                }
            }
        }
        // Directory order is arbitrary; walking in byte order makes the walk itself
        // deterministic (which link of two to the same folder is entered first, for example).
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for name in names {
            self.visit(rel, &dir, dir_canon, &name, depth);
        }
    }

    fn unreadable_dir(&mut self, dir: &Path, depth: usize, e: &io::Error) {
        if depth == 1 {
            self.root_unreadable = true;
            self.findings.push(unreadable_root(dir, e));
        } else {
            self.findings.push(
                Finding::warning(
                    FindingKind::Unreadable,
                    Some(dir.to_path_buf()),
                    format!("subfolder cannot be read and was skipped: {e}"),
                )
                .with_remedy(
                    "check its permissions (e.g. chmod u+rx) if it holds parts of the book",
                ),
            );
        }
    }

    fn visit(&mut self, rel: &Path, dir: &Path, dir_canon: &Path, name: &OsStr, depth: usize) {
        // Hidden entries, including AppleDouble `._x.mp3` metadata files that look like MP3s.
        if name.as_encoded_bytes().first() == Some(&b'.') {
            return;
        }
        let path = dir.join(name);
        let rel_child = rel.join(name);
        let mp3_name = is_mp3_name(name);
        let lmeta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                if mp3_name {
                    self.skip(&path, format!("could not be examined: {e}"), None);
                }
                return;
            }
        };
        let (meta, canonical) = if lmeta.file_type().is_symlink() {
            let target = match fs::canonicalize(&path) {
                Ok(t) => t,
                Err(e) => {
                    if mp3_name {
                        self.skip(
                            &path,
                            format!("is a broken symbolic link ({e})"),
                            Some("fix or remove the link"),
                        );
                    }
                    return;
                }
            };
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    if mp3_name {
                        self.skip(
                            &path,
                            format!("link target could not be examined: {e}"),
                            None,
                        );
                    }
                    return;
                }
            };
            // Following a link out of the folder would let a stray link pull in anything on
            // the disk (or a huge tree); the user can pass that folder explicitly instead.
            if !target.starts_with(&self.root_canon) {
                if mp3_name || meta.is_dir() {
                    self.skip(
                        &path,
                        format!(
                            "is a symbolic link to {} outside the folder; not followed",
                            target.display()
                        ),
                        Some("copy the files into the folder, or pass the target folder as another input"),
                    );
                }
                return;
            }
            (meta, target)
        } else {
            // Not a link: its canonical path is its canonical directory plus its name.
            (lmeta, dir_canon.join(name))
        };

        if self.exclude.iter().any(|x| canonical.starts_with(x)) {
            self.findings.push(Finding::new(
                Severity::Info,
                FindingKind::SkippedEntry,
                Some(path),
                "is inside aiom4b's data folder (DATA_DIR: backups, database, logs); not scanned",
            ));
            return;
        }
        if meta.is_dir() {
            if self.visited.contains(&canonical) {
                // A link back to an ancestor, or a second link to a folder already scanned.
                self.findings.push(Finding::new(
                    Severity::Info,
                    FindingKind::SkippedEntry,
                    Some(path),
                    "leads to a folder that is already scanned (symbolic link); not entered",
                ));
                return;
            }
            if depth >= self.max_depth {
                self.too_deep.push(rel_child);
                return;
            }
            self.visited.insert(canonical.clone());
            if mp3_name {
                self.findings.push(Finding::new(
                    Severity::Info,
                    FindingKind::SkippedEntry,
                    Some(path),
                    "is a folder named like an MP3 file; it is scanned as a subfolder",
                ));
            }
            self.walk_dir(&rel_child, &canonical, depth + 1);
        } else if meta.is_file() {
            if mp3_name {
                self.found.push(Candidate {
                    rel_path: rel_child,
                    size_bytes: meta.len(),
                    canonical,
                });
            } else if let Some(ext) = Path::new(name).extension().and_then(OsStr::to_str) {
                let ext = ext.to_ascii_lowercase();
                if OTHER_AUDIO.contains(&ext.as_str()) {
                    *self.other_audio.entry(ext).or_default() += 1;
                }
            }
        } else if mp3_name {
            self.skip(
                &path,
                format!(
                    "is a {}, not a regular file; skipped",
                    special_kind(&meta.file_type())
                ),
                Some("replace it with the real MP3 file, or remove it"),
            );
        }
    }

    fn skip(&mut self, path: &Path, message: String, remedy: Option<&str>) {
        let mut f = Finding::warning(FindingKind::SkippedEntry, Some(path.to_path_buf()), message);
        f.remedy = remedy.map(str::to_string);
        self.findings.push(f);
    }
}

#[cfg(unix)]
pub(super) fn special_kind(ft: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "named pipe (FIFO)"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

#[cfg(not(unix))]
pub(super) fn special_kind(_ft: &fs::FileType) -> &'static str {
    "special file"
}
