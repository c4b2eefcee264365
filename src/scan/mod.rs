//! Folders → the MP3 files of the book, in book order.
//!
//! The scan only looks at names and file metadata; it never opens a file (so a FIFO named
//! `x.mp3` cannot block it) and never judges content — [`sniff_mp3`] is the cheap content check
//! that validation (`probe.rs`) calls; `regular.rs` is how the other stages open a file
//! they were given by name, refusing FIFOs and devices at once. Every problem is reported at
//! once as a [`Finding`] in [`Scan::findings`]; the scan never stops at the first one, never
//! panics and never prints.
//!
//! # Discovery
//!
//! Each folder is walked up to [`ScanOptions::max_depth`] levels (1 = the folder's own files).
//! Only regular files whose extension is `mp3` in any case are taken. Hidden entries (a leading
//! `.`, which includes macOS AppleDouble `._*` files) are ignored. A symbolic link is followed
//! only when its canonical target stays inside the canonical scanned folder; directories are
//! tracked by canonical path so a symlink loop is neither followed forever nor scanned twice.
//! The same file reached twice (a symlink next to its target, a folder given twice or nested in
//! another input) is listed once, at its first position in book order.
//!
//! # Order
//!
//! [`Order::Natural`](crate::options::Order::Natural) compares the path relative to the scanned folder component by component
//! with [`natural_cmp`]'s rules, with two additions:
//!
//! * **Files directly in a folder come before its subfolders' files**, at every level. The usual
//!   layouts (everything in one folder, or everything in disc folders) are unaffected; in a mixed
//!   layout a loose `00 - Intro.mp3` plays before `CD1/`, which is the more common intent than
//!   interleaving by name. A folder with such a mix gets an informational finding so the user
//!   can check.
//! * **Disc folders** (`CD1`, `CD 2`, `Disc 3`, `Disk 05`, `Part 4`, `Teil 2`, `Vol. 1`,
//!   `Side 2`, `Tape 3`, `CD1 - Title`, any case) are ordered as a whole by their number,
//!   whatever their spelling: `CD 2` before `CD10`. The same words decide, in
//!   [`is_disc_folder`], whether `aiom4b folders` sees a book made of disc folders.
//!
//! Several folders are concatenated in the order given; each is ordered on its own.
//!
//! # Layout
//!
//! This file keeps the entry point [`scan`] and turns what the walk meets into findings;
//! `walk.rs` is the crate's one directory walker (its rules on symbolic links, depth and hidden
//! entries are documented there; `workflow::folders` and the source folder's delete use it
//! too), `order.rs` owns natural order, the disc-folder rule and tag order, `sniff.rs` opens
//! and sniffs single files.
mod fingerprint;
mod order;
mod sniff;
pub(crate) mod walk;

pub use fingerprint::{fingerprint, fingerprint_folder, Fingerprint};
pub use order::{is_disc_folder, natural_cmp, order_by_tags, tag_order};
pub use sniff::{sniff_container, sniff_mp3, Container};

use crate::model::{Finding, FindingKind, FolderSummary, Scan, ScannedFile, Severity};
use crate::options::ScanOptions;
use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use walk::{Event, Policy, Skip, Walk};

/// Scans `folders` and returns their MP3 files in book order with every problem found.
///
/// Never fails early and never panics: a missing folder, an unreadable subfolder or a FIFO named
/// `x.mp3` become [`Finding`]s and the scan goes on. [`Scan::folders`] has one summary per input
/// folder, in the order given, so `ScannedFile::folder_index` indexes it.
///
/// With [`Order::Tags`](crate::options::Order::Tags) the files come back in natural order; the caller reads the tags and
/// applies [`order_by_tags`] (or [`tag_order`]).
pub fn scan(folders: &[PathBuf], opts: &ScanOptions) -> Scan {
    // Depth 0 would scan nothing at all, which no caller can mean; treat it as "this folder only".
    let max_depth = opts.max_depth.max(1);
    let mut out = Scan::default();
    // Canonical paths of the files already listed, across all folders, so one file is one track.
    let mut listed: HashSet<PathBuf> = HashSet::new();
    // Canonical roots already scanned, to spot a folder given twice.
    let mut roots: Vec<PathBuf> = Vec::new();

    for (index, folder) in folders.iter().enumerate() {
        let mut summary = FolderSummary {
            path: folder.clone(),
            mp3_count: 0,
            total_bytes: 0,
        };
        let Some(root_canon) = check_root(folder, &mut out.findings) else {
            out.folders.push(summary);
            continue;
        };
        if let Some(first) = roots.iter().position(|r| *r == root_canon) {
            out.findings.push(
                Finding::warning(
                    FindingKind::SkippedEntry,
                    Some(folder.clone()),
                    format!(
                        "is the same folder as input #{}; its files are used once",
                        first + 1
                    ),
                )
                .with_remedy("remove the repeated folder from the command line"),
            );
            out.folders.push(summary);
            continue;
        }
        roots.push(root_canon.clone());

        let Walked {
            mut found,
            findings,
            too_deep,
            other_audio,
            root_unreadable,
            ..
        } = Walked::walk(folder, &root_canon, max_depth, &opts.exclude, opts.inputs);
        out.findings.extend(findings);

        order::sort_by_book_order(&mut found, opts.order, |c| &c.rel_path);

        let mut duplicates: Vec<PathBuf> = Vec::new();
        for c in found {
            if !listed.insert(c.canonical) {
                duplicates.push(folder.join(&c.rel_path));
                continue;
            }
            summary.mp3_count += 1;
            summary.total_bytes += c.size_bytes;
            out.files.push(ScannedFile {
                path: folder.join(&c.rel_path),
                rel_path: c.rel_path,
                size_bytes: c.size_bytes,
                folder_index: index,
            });
        }

        if let Some(first) = duplicates.first() {
            out.findings.push(
                Finding::warning(
                    FindingKind::SkippedEntry,
                    Some(first.clone()),
                    format!(
                        "is the same file as one listed earlier (a symbolic link or an input \
                         folder inside another); {} such file(s) in this folder are used once",
                        duplicates.len()
                    ),
                )
                .with_remedy("remove the duplicate link, or do not pass nested folders"),
            );
        }
        if !too_deep.is_empty() {
            out.findings.push(
                Finding::new(
                    Severity::Info,
                    FindingKind::SkippedEntry,
                    Some(folder.join(&too_deep[0])),
                    format!(
                        "{} subfolder(s) deeper than {max_depth} level(s) were not scanned",
                        too_deep.len()
                    ),
                )
                .with_remedy("raise the maximum scan depth if they hold parts of the book"),
            );
        }
        if summary.mp3_count > 0 {
            note_mixed_layout(&out.files, index, folder, &mut out.findings);
        } else if duplicates.is_empty() && !root_unreadable {
            out.findings.push(no_mp3_finding(
                folder,
                max_depth,
                &other_audio,
                !too_deep.is_empty(),
                opts.inputs,
            ));
        }
        out.folders.push(summary);
    }
    tracing::debug!(
        folders = folders.len(),
        files = out.files.len(),
        findings = out.findings.len(),
        "scan done"
    );
    out
}

/// Checks an input folder; returns its canonical path, or records why it cannot be scanned.
fn check_root(folder: &Path, findings: &mut Vec<Finding>) -> Option<PathBuf> {
    // `metadata` follows a symlink: a folder given as a link to elsewhere is what the user meant.
    let meta = match fs::metadata(folder) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            findings.push(
                Finding::error(FindingKind::FolderMissing, folder, "folder does not exist")
                    .with_remedy(
                        "check the path (quote it if it contains spaces) and that the drive \
                         is mounted",
                    ),
            );
            return None;
        }
        Err(e) => {
            findings.push(unreadable_root(folder, &e));
            return None;
        }
    };
    if !meta.is_dir() {
        let remedy = if is_mp3_name(folder.as_os_str()) {
            "pass the folder that contains the MP3 files, not a single file"
        } else {
            "pass a folder that contains the audiobook's MP3 files"
        };
        findings.push(
            Finding::error(FindingKind::NotADirectory, folder, "is not a folder")
                .with_remedy(remedy),
        );
        return None;
    }
    match fs::canonicalize(folder) {
        Ok(c) => Some(c),
        Err(e) => {
            findings.push(unreadable_root(folder, &e));
            None
        }
    }
}

fn unreadable_root(folder: &Path, e: &io::Error) -> Finding {
    Finding::error(
        FindingKind::Unreadable,
        folder,
        format!("folder cannot be read: {e}"),
    )
    .with_remedy(
        "check the folder's permissions (it must be readable and searchable, e.g. chmod u+rx)",
    )
}

fn no_mp3_finding(
    folder: &Path,
    max_depth: usize,
    other_audio: &BTreeMap<String, usize>,
    deeper: bool,
    inputs: crate::model::InputFormats,
) -> Finding {
    let mp3_only = inputs.is_mp3_only();
    let what = if mp3_only {
        ".mp3 files".to_string()
    } else {
        let names: Vec<&str> = inputs.list().into_iter().map(|f| f.label()).collect();
        format!("audio files ({})", names.join(", "))
    };
    let mut remedy = format!(
        "put the audiobook's {what} in this folder or in subfolders up to {max_depth} \
         level(s) deep"
    );
    if !other_audio.is_empty() {
        let list: Vec<String> = other_audio
            .iter()
            .map(|(ext, n)| format!("{n} .{ext}"))
            .collect();
        remedy.push_str(&format!(
            "; found {} file(s), but {}",
            list.join(", "),
            if mp3_only {
                "only MP3 is converted (ALLOWED_INPUTS=mp3)"
            } else {
                "aiom4b does not read that format"
            }
        ));
    }
    if deeper {
        remedy.push_str("; some subfolders were too deep to scan: raise the maximum scan depth");
    }
    let message = if mp3_only {
        "no MP3 files found"
    } else {
        "no audio files found"
    };
    Finding::error(FindingKind::NoMp3Found, folder, message).with_remedy(remedy)
}

/// One informational finding when a folder has MP3s both directly inside and in subfolders,
/// because the files-first rule then decides the order and the user may want to check it.
fn note_mixed_layout(
    files: &[ScannedFile],
    index: usize,
    folder: &Path,
    findings: &mut Vec<Finding>,
) {
    let mine = files.iter().filter(|f| f.folder_index == index);
    let (mut loose, mut nested) = (0usize, 0usize);
    for f in mine {
        if f.rel_path.components().count() > 1 {
            nested += 1;
        } else {
            loose += 1;
        }
    }
    if loose > 0 && nested > 0 {
        findings.push(
            Finding::new(
                Severity::Info,
                FindingKind::Other,
                Some(folder.to_path_buf()),
                format!(
                    "has {loose} MP3 file(s) directly inside and {nested} in subfolders; the \
                     files directly inside come first"
                ),
            )
            .with_remedy("check the order; move files into the subfolders if it is wrong"),
        );
    }
}

/// True when `name` has the extension `mp3` in any case (`a.MP3`, `b.Mp3`). Works on any
/// `OsStr`, including names that are not UTF-8.
pub fn is_mp3_name(name: &OsStr) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("mp3"))
}

/// An MP3 found by the walk, before ordering and de-duplication.
#[derive(Debug)]
struct Candidate {
    rel_path: PathBuf,
    size_bytes: u64,
    /// Identity of the file for de-duplication (symlinks resolved).
    canonical: PathBuf,
}

/// Other audio formats worth naming when a folder has no file the scan takes.
const OTHER_AUDIO: [&str; 13] = [
    "m4a", "m4b", "aac", "flac", "ogg", "oga", "opus", "wav", "wma", "mp2", "mp4", "aiff", "ape",
];

/// Names the scan takes when more than MP3 is accepted (`ALLOWED_INPUTS`). The name only picks
/// candidates; what a file is, and whether it is accepted, is decided by its content (`probe`),
/// so an M4A named `.mp3` or an Ogg named `.opus` is taken for what it is.
const AUDIO_EXTENSIONS: [&str; 10] = [
    "mp3", "m4a", "m4b", "mp4", "aac", "flac", "ogg", "oga", "opus", "wav",
];

/// True when the scan takes a file named `name` as an input candidate.
pub fn takes_name(name: &OsStr, inputs: crate::model::InputFormats) -> bool {
    if inputs.is_mp3_only() {
        return is_mp3_name(name);
    }
    Path::new(name)
        .extension()
        .and_then(OsStr::to_str)
        .is_some_and(|e| AUDIO_EXTENSIONS.iter().any(|a| e.eq_ignore_ascii_case(a)))
}

/// What the walk of one input folder found, before ordering and de-duplication.
#[derive(Default)]
struct Walked {
    /// The formats accepted, which decide the names taken ([`takes_name`]).
    inputs: crate::model::InputFormats,
    found: Vec<Candidate>,
    findings: Vec<Finding>,
    /// Subfolders not entered because of the depth limit (relative paths).
    too_deep: Vec<PathBuf>,
    /// Counts of other audio extensions, for a helpful "no MP3 found".
    other_audio: BTreeMap<String, usize>,
    root_unreadable: bool,
}

impl Walked {
    /// Walks `folder` by the book rules ([`walk`]'s module doc) and turns what it meets into
    /// candidates and findings; never stops early.
    fn walk(
        folder: &Path,
        root_canon: &Path,
        max_depth: usize,
        exclude: &[PathBuf],
        inputs: crate::model::InputFormats,
    ) -> Walked {
        let mut w = Walked {
            inputs,
            ..Walked::default()
        };
        let rules = Walk {
            policy: Policy::Book,
            max_depth: Some(max_depth),
            exclude,
        };
        let _ = rules.run_canonical(folder, root_canon, |ev| {
            w.note(ev);
            Ok::<(), Infallible>(())
        });
        w
    }

    fn note(&mut self, ev: Event<'_>) {
        match ev {
            Event::Entry(e) if e.meta.is_dir() => {
                if is_mp3_name(e.name) {
                    self.findings.push(Finding::new(
                        Severity::Info,
                        FindingKind::SkippedEntry,
                        Some(e.path.to_path_buf()),
                        "is a folder named like an MP3 file; it is scanned as a subfolder",
                    ));
                }
            }
            Event::Entry(e) if e.meta.is_file() => {
                if takes_name(e.name, self.inputs) {
                    self.found.push(Candidate {
                        rel_path: e.rel.to_path_buf(),
                        size_bytes: e.meta.len(),
                        canonical: e.canonical.to_path_buf(),
                    });
                } else if let Some(ext) = Path::new(e.name).extension().and_then(OsStr::to_str) {
                    let ext = ext.to_ascii_lowercase();
                    if OTHER_AUDIO.contains(&ext.as_str()) {
                        *self.other_audio.entry(ext).or_default() += 1;
                    }
                }
            }
            Event::Entry(e) => {
                if takes_name(e.name, self.inputs) {
                    self.skip(
                        e.path,
                        format!(
                            "is a {}, not a regular file; skipped",
                            crate::regular::special_kind(&e.meta.file_type())
                        ),
                        Some("replace it with the real MP3 file, or remove it"),
                    );
                }
            }
            Event::Leave(_) => {}
            Event::TooDeep(e) => self.too_deep.push(e.rel.to_path_buf()),
            Event::Skipped { path, name, reason } => {
                self.skipped(path, takes_name(name, self.inputs), reason)
            }
            Event::Unreadable { path, rel, error } => {
                if rel.as_os_str().is_empty() {
                    self.root_unreadable = true;
                    self.findings.push(unreadable_root(path, &error));
                } else {
                    self.findings.push(
                        Finding::warning(
                            FindingKind::Unreadable,
                            Some(path.to_path_buf()),
                            format!("subfolder cannot be read and was skipped: {error}"),
                        )
                        .with_remedy(
                            "check its permissions (e.g. chmod u+rx) if it holds parts of the book",
                        ),
                    );
                }
            }
            Event::EntryUnreadable { dir, error } => self.findings.push(
                Finding::warning(
                    FindingKind::Unreadable,
                    Some(dir.to_path_buf()),
                    format!("an entry of this folder could not be read: {error}"),
                )
                .with_remedy("check the folder and the disk"),
            ),
        }
    }

    /// An entry the walk left out: worth a finding when it looks like part of the book.
    fn skipped(&mut self, path: &Path, mp3_name: bool, reason: Skip) {
        match reason {
            Skip::Unexaminable(e) if mp3_name => {
                self.skip(path, format!("could not be examined: {e}"), None)
            }
            Skip::BrokenLink(e) if mp3_name => self.skip(
                path,
                format!("is a broken symbolic link ({e})"),
                Some("fix or remove the link"),
            ),
            Skip::LinkTargetUnexaminable(e) if mp3_name => self.skip(
                path,
                format!("link target could not be examined: {e}"),
                None,
            ),
            Skip::LinkOutside { target, is_dir } if mp3_name || is_dir => self.skip(
                path,
                format!(
                    "is a symbolic link to {} outside the folder; not followed",
                    target.display()
                ),
                Some("copy the files into the folder, or pass the target folder as another input"),
            ),
            Skip::AlreadyWalked => self.findings.push(Finding::new(
                Severity::Info,
                FindingKind::SkippedEntry,
                Some(path.to_path_buf()),
                "leads to a folder that is already scanned (symbolic link); not entered",
            )),
            Skip::Excluded => self.findings.push(Finding::new(
                Severity::Info,
                FindingKind::SkippedEntry,
                Some(path.to_path_buf()),
                "is inside aiom4b's data folder (DATA_DIR: backups, database, logs); not scanned",
            )),
            _ => {}
        }
    }

    fn skip(&mut self, path: &Path, message: String, remedy: Option<&str>) {
        let mut f = Finding::warning(FindingKind::SkippedEntry, Some(path.to_path_buf()), message);
        f.remedy = remedy.map(str::to_string);
        self.findings.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Order;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;
    use std::process::Command;
    use tempfile::TempDir;

    // -- helpers ------------------------------------------------------------------------------

    /// Creates `rel` under `dir` (with its folders) holding `len` bytes.
    fn touch(dir: &Path, rel: impl AsRef<Path>, len: usize) -> PathBuf {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().expect("has a parent")).expect("create folders");
        fs::write(&p, vec![0u8; len]).expect("write file");
        p
    }

    fn scan_one(dir: &Path) -> Scan {
        scan(&[dir.to_path_buf()], &ScanOptions::default())
    }

    fn scan_with(dir: &Path, max_depth: usize, order: Order) -> Scan {
        scan(
            &[dir.to_path_buf()],
            &ScanOptions {
                max_depth,
                order,
                ..ScanOptions::default()
            },
        )
    }

    /// The relative paths in scan order, as strings.
    fn rels(s: &Scan) -> Vec<String> {
        s.files
            .iter()
            .map(|f| f.rel_path.to_string_lossy().into_owned())
            .collect()
    }

    fn findings_of(s: &Scan, kind: FindingKind) -> Vec<&Finding> {
        s.findings.iter().filter(|f| f.kind == kind).collect()
    }

    fn mkfifo(path: &Path) -> bool {
        Command::new("mkfifo")
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    // -- is_mp3_name --------------------------------------------------------------------------

    #[test]
    fn mp3_names_in_any_case() {
        for yes in [
            "a.mp3",
            "A.MP3",
            "b.Mp3",
            "-rf.mp3",
            "concat:x.mp3",
            "a.b.mp3",
        ] {
            assert!(is_mp3_name(OsStr::new(yes)), "{yes}");
        }
        for no in [
            "mp3",
            ".mp3",
            "a.mp3.txt",
            "a.mp4",
            "a.mp3 ",
            "a_mp3",
            "a.m3u",
            "",
        ] {
            assert!(!is_mp3_name(OsStr::new(no)), "{no}");
        }
        assert!(is_mp3_name(OsStr::from_bytes(b"\xff\xfe.mp3")));
    }

    // -- discovery ----------------------------------------------------------------------------

    #[test]
    fn scans_a_flat_folder_in_natural_order() {
        let t = TempDir::new().unwrap();
        for (name, len) in [("10.mp3", 3), ("2.mp3", 5), ("1.MP3", 7), ("notes.txt", 11)] {
            touch(t.path(), name, len);
        }
        let s = scan_one(t.path());
        assert_eq!(rels(&s), ["1.MP3", "2.mp3", "10.mp3"]);
        assert!(s.findings.is_empty(), "{:?}", s.findings);
        assert_eq!(
            s.folders,
            [FolderSummary {
                path: t.path().to_path_buf(),
                mp3_count: 3,
                total_bytes: 15
            }]
        );
        for f in &s.files {
            assert_eq!(f.path, t.path().join(&f.rel_path));
            assert_eq!(f.folder_index, 0);
            assert_eq!(f.size_bytes, fs::metadata(&f.path).unwrap().len());
        }
    }

    #[test]
    fn disc_folders_order_by_their_number() {
        let t = TempDir::new().unwrap();
        for rel in [
            "CD10/01.mp3",
            "CD 2/02.mp3",
            "CD 2/01.mp3",
            "cd1 - The Beginning/01.mp3",
            "Disc 3/01.mp3",
            "Disk 05/01.mp3",
            "disc_4/01.mp3",
        ] {
            touch(t.path(), rel, 1);
        }
        let s = scan_one(t.path());
        assert_eq!(
            rels(&s),
            [
                "cd1 - The Beginning/01.mp3",
                "CD 2/01.mp3",
                "CD 2/02.mp3",
                "Disc 3/01.mp3",
                "disc_4/01.mp3",
                "Disk 05/01.mp3",
                "CD10/01.mp3",
            ]
        );
    }

    #[test]
    fn part_folders_and_plain_folders_order_naturally() {
        let t = TempDir::new().unwrap();
        for rel in [
            "Part 10/a.mp3",
            "Part 4/a.mp3",
            "Part4 b/a.mp3",
            "Book 2/a.mp3",
            "Book 11/a.mp3",
        ] {
            touch(t.path(), rel, 1);
        }
        let s = scan_one(t.path());
        assert_eq!(
            rels(&s),
            [
                "Book 2/a.mp3",
                "Book 11/a.mp3",
                "Part 4/a.mp3",
                "Part4 b/a.mp3",
                "Part 10/a.mp3"
            ]
        );
    }

    #[test]
    fn files_in_a_folder_come_before_its_subfolders() {
        let t = TempDir::new().unwrap();
        for rel in [
            "CD1/01.mp3",
            "99 - Afterword.mp3",
            "00 - Intro.mp3",
            "CD1/sub/00.mp3",
        ] {
            touch(t.path(), rel, 1);
        }
        let s = scan_one(t.path());
        assert_eq!(
            rels(&s),
            [
                "00 - Intro.mp3",
                "99 - Afterword.mp3",
                "CD1/01.mp3",
                "CD1/sub/00.mp3"
            ]
        );
        // The mixed layout is pointed out once, as information.
        let notes = findings_of(&s, FindingKind::Other);
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].severity, Severity::Info);
    }

    #[test]
    fn depth_limits_the_descent() {
        let t = TempDir::new().unwrap();
        for rel in ["0.mp3", "a/1.mp3", "a/b/2.mp3", "a/b/c/3.mp3"] {
            touch(t.path(), rel, 1);
        }
        let s = scan_one(t.path()); // default depth 3
        assert_eq!(rels(&s), ["0.mp3", "a/1.mp3", "a/b/2.mp3"]);
        let deep = findings_of(&s, FindingKind::SkippedEntry);
        assert_eq!(deep.len(), 1);
        assert_eq!(deep[0].severity, Severity::Info);
        assert_eq!(
            deep[0].path.as_deref(),
            Some(t.path().join("a/b/c").as_path())
        );

        assert_eq!(rels(&scan_with(t.path(), 1, Order::Natural)), ["0.mp3"]);
        assert_eq!(rels(&scan_with(t.path(), 0, Order::Natural)), ["0.mp3"]);
        assert_eq!(rels(&scan_with(t.path(), 9, Order::Natural)).len(), 4);
    }

    #[test]
    fn hidden_entries_and_appledouble_files_are_ignored() {
        let t = TempDir::new().unwrap();
        for rel in [
            "01.mp3",
            "._01.mp3",
            ".hidden.mp3",
            ".git/x.mp3",
            ".Trash/CD1/a.mp3",
        ] {
            touch(t.path(), rel, 1);
        }
        let s = scan_one(t.path());
        assert_eq!(rels(&s), ["01.mp3"]);
        assert!(s.findings.is_empty(), "{:?}", s.findings);
    }

    #[test]
    fn special_files_named_mp3_are_skipped_with_a_warning() {
        let t = TempDir::new().unwrap();
        touch(t.path(), "01.mp3", 1);
        assert!(mkfifo(&t.path().join("02.mp3")), "mkfifo failed");
        let _socket = std::os::unix::net::UnixListener::bind(t.path().join("03.mp3")).unwrap();
        assert!(mkfifo(&t.path().join("pipe.txt"))); // not an MP3 name: silently ignored
        let s = scan_one(t.path());
        assert_eq!(rels(&s), ["01.mp3"]);
        let skipped = findings_of(&s, FindingKind::SkippedEntry);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped.iter().all(|f| f.severity == Severity::Warning));
        assert!(
            skipped[0].message.contains("FIFO"),
            "{}",
            skipped[0].message
        );
        assert!(
            skipped[1].message.contains("socket"),
            "{}",
            skipped[1].message
        );
        assert!(skipped.iter().all(|f| f.remedy.is_some()));
    }

    #[test]
    fn a_folder_named_mp3_is_scanned_as_a_folder() {
        let t = TempDir::new().unwrap();
        touch(t.path(), "Book.mp3/01.mp3", 1);
        let s = scan_one(t.path());
        assert_eq!(rels(&s), ["Book.mp3/01.mp3"]);
        let notes = findings_of(&s, FindingKind::SkippedEntry);
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].severity, Severity::Info);
    }

    #[test]
    fn symlinks_inside_the_folder_are_followed_once() {
        let t = TempDir::new().unwrap();
        touch(t.path(), "real/01.mp3", 1);
        touch(t.path(), "02.mp3", 2);
        symlink("real", t.path().join("alias")).unwrap();
        symlink("02.mp3", t.path().join("zz-link.mp3")).unwrap();
        let s = scan_one(t.path());
        // `alias` sorts first byte-wise, so the real folder is reached through it.
        assert_eq!(rels(&s), ["02.mp3", "alias/01.mp3"]);
        assert_eq!(s.folders[0].mp3_count, 2);
        let dup = findings_of(&s, FindingKind::SkippedEntry);
        assert!(
            dup.iter().any(|f| f.severity == Severity::Warning
                && f.path.as_deref() == Some(t.path().join("zz-link.mp3").as_path())),
            "{dup:?}"
        );
    }

    #[test]
    fn symlinks_leaving_the_folder_are_not_followed() {
        let outside = TempDir::new().unwrap();
        touch(outside.path(), "secret.mp3", 1);
        touch(outside.path(), "dir/a.mp3", 1);
        let t = TempDir::new().unwrap();
        touch(t.path(), "01.mp3", 1);
        symlink(outside.path().join("secret.mp3"), t.path().join("02.mp3")).unwrap();
        symlink(outside.path().join("dir"), t.path().join("CD2")).unwrap();
        symlink("/", t.path().join("root")).unwrap();
        let s = scan_one(t.path());
        assert_eq!(rels(&s), ["01.mp3"]);
        let skipped = findings_of(&s, FindingKind::SkippedEntry);
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(skipped.iter().all(|f| f.severity == Severity::Warning));
        assert!(skipped.iter().all(|f| f.message.contains("outside")));
    }

    #[test]
    fn symlink_loops_neither_hang_nor_duplicate() {
        let t = TempDir::new().unwrap();
        touch(t.path(), "CD1/01.mp3", 1);
        symlink("..", t.path().join("CD1/up")).unwrap();
        symlink(".", t.path().join("CD1/self")).unwrap();
        symlink("loop-b.mp3", t.path().join("loop-a.mp3")).unwrap();
        symlink("loop-a.mp3", t.path().join("loop-b.mp3")).unwrap();
        let s = scan_with(t.path(), 50, Order::Natural);
        assert_eq!(rels(&s), ["CD1/01.mp3"]);
        let skipped = findings_of(&s, FindingKind::SkippedEntry);
        // Two folder links back into scanned folders (info), two looping file links (warning).
        assert_eq!(
            skipped
                .iter()
                .filter(|f| f.severity == Severity::Info)
                .count(),
            2
        );
        assert_eq!(
            skipped
                .iter()
                .filter(|f| f.severity == Severity::Warning)
                .count(),
            2
        );
    }

    #[test]
    fn broken_symlinks_named_mp3_are_reported() {
        let t = TempDir::new().unwrap();
        touch(t.path(), "01.mp3", 1);
        symlink("gone.mp3", t.path().join("02.mp3")).unwrap();
        symlink("gone", t.path().join("other")).unwrap(); // not an MP3 name: ignored
        let s = scan_one(t.path());
        assert_eq!(rels(&s), ["01.mp3"]);
        let skipped = findings_of(&s, FindingKind::SkippedEntry);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].message.contains("broken"));
    }

    // -- folder problems ----------------------------------------------------------------------

    #[test]
    fn every_folder_problem_is_reported_at_once() {
        let t = TempDir::new().unwrap();
        let good = t.path().join("good");
        touch(&good, "01.mp3", 4);
        let missing = t.path().join("missing");
        let file = touch(t.path(), "single.mp3", 1);
        let empty = t.path().join("empty");
        fs::create_dir(&empty).unwrap();
        let s = scan(
            &[missing.clone(), good.clone(), file.clone(), empty.clone()],
            &ScanOptions::default(),
        );
        assert_eq!(rels(&s), ["01.mp3"]);
        assert_eq!(s.files[0].folder_index, 1);
        assert_eq!(s.folders.len(), 4);
        let summary: Vec<_> = s
            .folders
            .iter()
            .map(|f| (f.path.clone(), f.mp3_count))
            .collect();
        assert_eq!(
            summary,
            [
                (missing.clone(), 0),
                (good, 1),
                (file.clone(), 0),
                (empty.clone(), 0)
            ]
        );
        let got: Vec<_> = s
            .findings
            .iter()
            .map(|f| (f.kind, f.severity, f.path.clone().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (FindingKind::FolderMissing, Severity::Error, missing),
                (FindingKind::NotADirectory, Severity::Error, file),
                (FindingKind::NoMp3Found, Severity::Error, empty),
            ]
        );
        assert!(s.findings.iter().all(|f| f.remedy.is_some()));
        assert!(s.findings[1]
            .remedy
            .as_deref()
            .unwrap()
            .contains("not a single file"));
    }

    #[test]
    fn no_mp3_found_names_the_other_audio_present() {
        let t = TempDir::new().unwrap();
        for rel in ["01.flac", "02.FLAC", "cover.jpg", "a/b/c/deep.mp3"] {
            touch(t.path(), rel, 1);
        }
        // MP3 only (ALLOWED_INPUTS=mp3): the FLACs are named, not taken.
        let opts = ScanOptions {
            inputs: crate::model::InputFormats::mp3_only(),
            ..ScanOptions::default()
        };
        let s = scan(&[t.path().to_path_buf()], &opts);
        let f = findings_of(&s, FindingKind::NoMp3Found);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].message, "no MP3 files found");
        let remedy = f[0].remedy.as_deref().unwrap();
        assert!(remedy.contains("2 .flac"), "{remedy}");
        assert!(remedy.contains("only MP3"), "{remedy}");
        assert!(remedy.contains("too deep"), "{remedy}");
    }

    #[test]
    fn every_accepted_format_is_taken_by_name_and_others_are_named() {
        let t = TempDir::new().unwrap();
        for rel in [
            "01.flac", "02.M4B", "03.opus", "04.ogg", "05.wav", "06.aac", "07.mp3",
        ] {
            touch(t.path(), rel, 1);
        }
        touch(t.path(), "cover.jpg", 1);
        let s = scan_one(t.path());
        assert_eq!(
            rels(&s),
            ["01.flac", "02.M4B", "03.opus", "04.ogg", "05.wav", "06.aac", "07.mp3"]
        );
        let w = TempDir::new().unwrap();
        touch(w.path(), "01.wma", 1);
        let s = scan_one(w.path());
        let f = findings_of(&s, FindingKind::NoMp3Found);
        assert_eq!(f[0].message, "no audio files found");
        let remedy = f[0].remedy.as_deref().unwrap();
        assert!(
            remedy.contains("1 .wma") && remedy.contains("does not read"),
            "{remedy}"
        );
    }

    /// Runs `f` on a thread of its own to which file permissions apply, also when the tests run
    /// as root: there the thread's file-system uid becomes nobody's (setfsuid is per thread on
    /// Linux, and leaving uid 0 drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH with it). As any
    /// other user it just runs `f`. So a permission test checks the same on every machine.
    fn without_root_override<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        const NOBODY: libc::uid_t = 65_534;
        std::thread::scope(|s| {
            s.spawn(|| {
                if rustix::process::geteuid().is_root() {
                    // SAFETY: setfsuid changes only the calling thread's file-system uid, and
                    // this thread ends with `f`. It returns the previous uid, never an error:
                    // asking again with an invalid uid (-1) reads the current one.
                    let now = unsafe {
                        libc::setfsuid(NOBODY);
                        libc::setfsuid(libc::uid_t::MAX)
                    };
                    assert_eq!(
                        now, NOBODY as libc::c_int,
                        "cannot give up root's file access on a test thread (no CAP_SETUID?)"
                    );
                }
                f()
            })
            .join()
            .unwrap()
        })
    }

    #[test]
    fn unreadable_folders_are_reported() {
        use std::os::unix::fs::PermissionsExt;
        let t = TempDir::new().unwrap();
        // Readable by others, so that the unprivileged scan below can enter it.
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root = t.path().join("book");
        touch(&root, "01.mp3", 1);
        touch(&root, "CD2/01.mp3", 1);
        let locked_sub = root.join("CD2");
        fs::set_permissions(&locked_sub, fs::Permissions::from_mode(0o000)).unwrap();
        let other = t.path().join("locked");
        touch(&other, "01.mp3", 1);
        fs::set_permissions(&other, fs::Permissions::from_mode(0o000)).unwrap();

        let s =
            without_root_override(|| scan(&[root.clone(), other.clone()], &ScanOptions::default()));
        // Restore before asserting so TempDir can clean up whatever happens.
        fs::set_permissions(&locked_sub, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&other, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(rels(&s), ["01.mp3"]);
        let got: Vec<_> = findings_of(&s, FindingKind::Unreadable)
            .iter()
            .map(|f| (f.severity, f.path.clone().unwrap()))
            .collect();
        assert_eq!(
            got,
            [(Severity::Warning, locked_sub), (Severity::Error, other)]
        );
        // An unreadable folder is not also "empty".
        assert!(findings_of(&s, FindingKind::NoMp3Found).is_empty());
    }

    #[test]
    fn folders_are_concatenated_in_the_order_given() {
        let t = TempDir::new().unwrap();
        let (a, b) = (t.path().join("b-second"), t.path().join("a-first"));
        touch(&a, "2.mp3", 1);
        touch(&a, "10.mp3", 1);
        touch(&b, "1.mp3", 1);
        let s = scan(&[a.clone(), b.clone()], &ScanOptions::default());
        let got: Vec<_> = s
            .files
            .iter()
            .map(|f| (f.folder_index, f.path.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (0, a.join("2.mp3")),
                (0, a.join("10.mp3")),
                (1, b.join("1.mp3"))
            ]
        );
        assert_eq!(s.folders[0].mp3_count, 2);
        assert_eq!(s.folders[1].mp3_count, 1);
    }

    #[test]
    fn a_folder_given_twice_or_nested_is_used_once() {
        let t = TempDir::new().unwrap();
        touch(t.path(), "01.mp3", 1);
        touch(t.path(), "CD2/01.mp3", 1);
        let again = t.path().join(".").join("");
        let nested = t.path().join("CD2");
        let s = scan(
            &[t.path().to_path_buf(), again, nested],
            &ScanOptions::default(),
        );
        assert_eq!(rels(&s), ["01.mp3", "CD2/01.mp3"]);
        let skipped = findings_of(&s, FindingKind::SkippedEntry);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(findings_of(&s, FindingKind::NoMp3Found).is_empty());
    }

    #[test]
    fn hostile_names_are_kept_verbatim() {
        let t = TempDir::new().unwrap();
        let long = format!("{}.mp3", "x".repeat(251)); // 255 bytes, the usual limit
        let names = [
            "concat:x.mp3",
            "-rf.mp3",
            "file:x.mp3",
            "new\nline.mp3",
            "$HOME.mp3",
            "it's \"quoted\".mp3",
            "Ünïcødé 𝄞 名前.mp3",
            "a\\b.mp3",
            " lead space.mp3",
            long.as_str(),
        ];
        for n in names {
            touch(t.path(), n, 1);
        }
        let s = scan_one(t.path());
        assert_eq!(s.files.len(), names.len(), "{:?}", s.findings);
        for n in names {
            assert!(rels(&s).iter().any(|r| r == n), "{n:?} missing");
        }
        for f in &s.files {
            assert!(f.path.is_file());
        }
    }

    #[test]
    fn non_utf8_names_are_kept() {
        let t = TempDir::new().unwrap();
        let raw = OsStr::from_bytes(b"\xff\xfe 02.mp3");
        let dir = OsStr::from_bytes(b"CD\xe9 1");
        touch(t.path(), raw, 1);
        touch(t.path(), "01.mp3", 1);
        touch(&t.path().join(dir), "01.mp3", 1);
        let s = scan_one(t.path());
        assert_eq!(s.files.len(), 3);
        assert_eq!(s.files[0].rel_path, Path::new("01.mp3"));
        assert_eq!(s.files[1].rel_path.as_os_str(), raw);
        assert_eq!(s.files[2].rel_path, Path::new(dir).join("01.mp3"));
        assert!(s.files.iter().all(|f| f.path.is_file()));
    }

    #[test]
    fn alpha_order_is_code_point_order() {
        let t = TempDir::new().unwrap();
        for rel in [
            "2.mp3",
            "10.mp3",
            "a.mp3",
            "B.mp3",
            "CD 2/1.mp3",
            "CD10/1.mp3",
        ] {
            touch(t.path(), rel, 1);
        }
        let s = scan_with(t.path(), 3, Order::Alpha);
        assert_eq!(
            rels(&s),
            [
                "10.mp3",
                "2.mp3",
                "B.mp3",
                "CD 2/1.mp3",
                "CD10/1.mp3",
                "a.mp3"
            ]
        );
    }

    #[test]
    fn tags_order_scans_naturally() {
        let t = TempDir::new().unwrap();
        for rel in ["10.mp3", "9.mp3"] {
            touch(t.path(), rel, 1);
        }
        assert_eq!(
            rels(&scan_with(t.path(), 3, Order::Tags)),
            ["9.mp3", "10.mp3"]
        );
    }

    #[test]
    fn order_is_independent_of_creation_order() {
        let names = [
            "b10.mp3",
            "B2.mp3",
            "b2.mp3",
            "a.mp3",
            "CD1/x.mp3",
            "cd 1/y.mp3",
            "01.mp3",
            "1.mp3",
        ];
        let mut results = Vec::new();
        for rotate in 0..names.len() {
            let t = TempDir::new().unwrap();
            let mut order = names;
            order.rotate_left(rotate);
            for n in order {
                touch(t.path(), n, 1);
            }
            results.push(rels(&scan_one(t.path())));
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
    }
}
