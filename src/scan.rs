//! Folders → the MP3 files of the book, in book order.
//!
//! The scan only looks at names and file metadata; it never opens a file (so a FIFO named
//! `x.mp3` cannot block it) and never judges content — [`sniff_mp3`] is the cheap content check
//! that validation (`probe.rs`) calls; [`open_regular`] is how the other stages open a file
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
//! [`Order::Natural`] compares the path relative to the scanned folder component by component
//! with [`natural_cmp`]'s rules, with two additions:
//!
//! * **Files directly in a folder come before its subfolders' files**, at every level. The usual
//!   layouts (everything in one folder, or everything in disc folders) are unaffected; in a mixed
//!   layout a loose `00 - Intro.mp3` plays before `CD1/`, which is the more common intent than
//!   interleaving by name. A folder with such a mix gets an informational finding so the user
//!   can check.
//! * **Disc folders** (`CD1`, `CD 2`, `Disc 3`, `Disk 05`, `Part 4`, `CD1 - Title`, any case) are
//!   ordered as a whole by their number, whatever their spelling: `CD 2` before `CD10`.
//!
//! Several folders are concatenated in the order given; each is ordered on its own.
use crate::model::{Finding, FindingKind, FolderSummary, Scan, ScannedFile, Severity};
use crate::mp3bytes;
use crate::options::{Order, ScanOptions};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use unicode_normalization::UnicodeNormalization;

/// Scans `folders` and returns their MP3 files in book order with every problem found.
///
/// Never fails early and never panics: a missing folder, an unreadable subfolder or a FIFO named
/// `x.mp3` become [`Finding`]s and the scan goes on. [`Scan::folders`] has one summary per input
/// folder, in the order given, so `ScannedFile::folder_index` indexes it.
///
/// With [`Order::Tags`] the files come back in natural order; the caller reads the tags and
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

        let mut walker = Walker {
            root: folder,
            root_canon: root_canon.clone(),
            max_depth,
            exclude: &opts.exclude,
            visited: HashSet::from([root_canon.clone()]),
            found: Vec::new(),
            findings: Vec::new(),
            too_deep: Vec::new(),
            other_audio: BTreeMap::new(),
            root_unreadable: false,
        };
        walker.walk_dir(Path::new(""), &root_canon, 1);
        let Walker {
            mut found,
            findings,
            too_deep,
            other_audio,
            root_unreadable,
            ..
        } = walker;
        out.findings.extend(findings);

        sort_candidates(&mut found, opts.order);

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
) -> Finding {
    let mut remedy = format!(
        "put the audiobook's .mp3 files in this folder or in subfolders up to {max_depth} \
         level(s) deep"
    );
    if !other_audio.is_empty() {
        let list: Vec<String> = other_audio
            .iter()
            .map(|(ext, n)| format!("{n} .{ext}"))
            .collect();
        remedy.push_str(&format!(
            "; found {} file(s), but only MP3 is converted",
            list.join(", ")
        ));
    }
    if deeper {
        remedy.push_str("; some subfolders were too deep to scan: raise the maximum scan depth");
    }
    Finding::error(FindingKind::NoMp3Found, folder, "no MP3 files found").with_remedy(remedy)
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

/// An MP3 found by the walk, before ordering and de-duplication.
#[derive(Debug)]
struct Candidate {
    rel_path: PathBuf,
    size_bytes: u64,
    /// Identity of the file for de-duplication (symlinks resolved).
    canonical: PathBuf,
}

/// Other audio formats worth naming when a folder has no MP3 at all.
const OTHER_AUDIO: [&str; 11] = [
    "m4a", "m4b", "aac", "flac", "ogg", "opus", "wav", "wma", "mp2", "mp4", "aiff",
];

struct Walker<'a> {
    root: &'a Path,
    root_canon: PathBuf,
    max_depth: usize,
    /// Canonical folders never entered ([`ScanOptions::exclude`]).
    exclude: &'a [PathBuf],
    /// Canonical directories already entered: the loop guard.
    visited: HashSet<PathBuf>,
    found: Vec<Candidate>,
    findings: Vec<Finding>,
    /// Subfolders not entered because of `max_depth` (relative paths).
    too_deep: Vec<PathBuf>,
    /// Counts of other audio extensions, for a helpful "no MP3 found".
    other_audio: BTreeMap<String, usize>,
    root_unreadable: bool,
}

impl Walker<'_> {
    /// Walks the directory at `rel` (relative to the root) whose canonical path is `dir_canon`
    /// (already in `visited`). `depth` is 1 for the root folder.
    fn walk_dir(&mut self, rel: &Path, dir_canon: &Path, depth: usize) {
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
fn special_kind(ft: &fs::FileType) -> &'static str {
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
fn special_kind(_ft: &fs::FileType) -> &'static str {
    "special file"
}

/// Opens `path` for reading, refusing at once anything but a regular file (after following
/// symbolic links): opening a FIFO without a writer blocks forever, and a device such as
/// `/dev/zero` never ends. The type is checked before opening and again on the opened
/// descriptor, which is opened with `O_NONBLOCK` so that even a FIFO swapped in between cannot
/// block (on a regular file the flag changes nothing). `what` names the operation for the error.
pub fn open_regular(path: &Path, what: &'static str) -> crate::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let refuse = |ft: &fs::FileType| {
        let kind = if ft.is_dir() {
            "folder"
        } else {
            special_kind(ft)
        };
        crate::Error::io(
            path,
            what,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("it is a {kind}, not a regular file"),
            ),
        )
    };
    let meta = fs::metadata(path).map_err(|e| crate::Error::io(path, what, e))?;
    if !meta.is_file() {
        return Err(refuse(&meta.file_type()));
    }
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| crate::Error::io(path, what, e))?;
    let meta = f.metadata().map_err(|e| crate::Error::io(path, what, e))?;
    if !meta.is_file() {
        return Err(refuse(&meta.file_type()));
    }
    Ok(f)
}

/// True when `name` has the extension `mp3` in any case (`a.MP3`, `b.Mp3`). Works on any
/// `OsStr`, including names that are not UTF-8.
pub fn is_mp3_name(name: &OsStr) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("mp3"))
}

fn sort_candidates(found: &mut [Candidate], order: Order) {
    match order {
        // Path's own order is component-wise byte order, i.e. code-point order per component
        // for UTF-8 names (so `a/…` sorts before `a b/…` regardless of '/' vs ' ').
        Order::Alpha => found.sort_by(|a, b| a.rel_path.cmp(&b.rel_path)),
        // Tags are read later by probe; until then the natural order is the answer and the
        // tie-break for `order_by_tags`.
        Order::Natural | Order::Tags => {
            found.sort_by_cached_key(|c| PathKey::new(&c.rel_path));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Natural order

/// One run of a name: digits compare by value, text case-insensitively. `Num` sorts before
/// `Text` at the same position (`1.mp3` before `a.mp3`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Chunk {
    Num(Number),
    Text(String),
}

/// An arbitrary-length decimal number without its leading zeros (`""` is zero).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Number(String);

impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        // Without leading zeros, a longer digit string is a larger number; equal lengths
        // compare digit by digit. No parsing, so 40-digit "numbers" in names cannot overflow.
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The natural-order key of one name: the runs, plus each number's count of leading zeros as
/// a secondary key (so `01` and `1` are distinct but adjacent).
#[derive(Debug, Clone, Default)]
struct NameKey {
    chunks: Vec<Chunk>,
    zeros: Vec<usize>,
}

impl NameKey {
    fn new(name: &str) -> NameKey {
        let mut key = NameKey::default();
        key.push_runs(&fold(name));
        key
    }

    /// Appends the runs of an already folded string.
    fn push_runs(&mut self, folded: &str) {
        let mut rest = folded;
        while let Some(first) = rest.chars().next() {
            let is_digit = first.is_ascii_digit();
            let end = rest
                .find(|c: char| c.is_ascii_digit() != is_digit)
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(end);
            if is_digit {
                let stripped = run.trim_start_matches('0');
                self.zeros.push(run.len() - stripped.len());
                self.chunks.push(Chunk::Num(Number(stripped.to_string())));
            } else {
                self.chunks.push(Chunk::Text(run.to_string()));
            }
            rest = tail;
        }
    }

    /// The key of a folder name: a disc folder's spelling is replaced by a canonical one so all
    /// disc folders order by number (`CD 2` < `cd10` < `Disc 11 - Finale`).
    fn new_dir(name: &str) -> NameKey {
        let folded = fold(name);
        let mut key = NameKey::default();
        match disc_folder(&folded) {
            Some((word, number, rest)) => {
                key.chunks.push(Chunk::Text(word.to_string()));
                key.push_runs(number);
                key.push_runs(rest);
            }
            None => key.push_runs(&folded),
        }
        key
    }
}

/// Compatibility-normalizes (full-width digits become ASCII, ligatures split) and lowercases,
/// so visually equal names compare equal before the byte tie-break.
fn fold(s: &str) -> String {
    s.nfkc().collect::<String>().to_lowercase()
}

/// Recognizes a folded disc-folder name: `cd`, `disc`, `disk` or `part`, optional separators,
/// then a number. Returns the canonical word, the digits and the rest of the name.
fn disc_folder(folded: &str) -> Option<(&'static str, &str, &str)> {
    const WORDS: [(&str, &str); 4] = [
        ("disc", "disc "),
        ("disk", "disc "),
        ("cd", "disc "),
        ("part", "part "),
    ];
    let (canonical, after) = WORDS
        .iter()
        .find_map(|(w, canon)| folded.strip_prefix(w).map(|a| (*canon, a)))?;
    let after = after.trim_start_matches([' ', '_', '-', '.', '#']);
    let digits_end = after
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(after.len());
    if digits_end == 0 {
        return None;
    }
    let (digits, rest) = after.split_at(digits_end);
    Some((canonical, digits, rest))
}

/// Compares two names in natural order: `track2` < `Track10`, `a` = `A` up to the final
/// tie-break.
///
/// Names are split into runs of ASCII digits and of other characters (after NFKC, so
/// full-width digits count). Digit runs compare by value at any length; text runs compare
/// case-insensitively (Unicode lowercasing after NFKC); a number sorts before text at the same
/// position. When that finds no difference, numbers with fewer leading zeros come first (`1`
/// before `01`), and finally the raw bytes decide, so the order is total and deterministic.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (ka, kb) = (NameKey::new(a), NameKey::new(b));
    ka.chunks
        .cmp(&kb.chunks)
        .then_with(|| ka.zeros.cmp(&kb.zeros))
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// The book-order key of a relative path: components compared in turn, a file before a
/// folder at the same level, then leading zeros, then raw bytes (a total order).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PathKey {
    /// Per component: (is a folder, runs). `false < true` puts files before folders.
    components: Vec<(bool, Vec<Chunk>)>,
    zeros: Vec<usize>,
    raw: Vec<u8>,
}

impl PathKey {
    fn new(rel: &Path) -> PathKey {
        let parts: Vec<&OsStr> = rel.iter().collect();
        let mut components = Vec::with_capacity(parts.len());
        let mut zeros = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            // Non-UTF-8 names order by their lossy text; the raw bytes still break ties.
            let name = part.to_string_lossy();
            let is_dir = i + 1 < parts.len();
            let key = if is_dir {
                NameKey::new_dir(&name)
            } else {
                NameKey::new(&name)
            };
            zeros.extend(key.zeros);
            components.push((is_dir, key.chunks));
        }
        PathKey {
            components,
            zeros,
            raw: rel.as_os_str().as_encoded_bytes().to_vec(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tag order

/// The permutation that puts `files` in ID3 disc/track order, or `None` when the tags cannot
/// be trusted with the order.
///
/// `keys[i]` is `(disc, track)` of `files[i]`. The result lists indices into `files` in the new
/// order; apply it to every vector aligned with `files`. Tags are used only when every file has
/// a track number and no two files of one input folder share a (disc, track) pair — track
/// numbers that restart in each disc folder without disc tags would otherwise interleave the
/// discs. A missing disc number counts as disc 1. Input folders keep their order; the current
/// (natural) order breaks no ties since pairs are unique, and is the fallback.
pub fn tag_order(files: &[ScannedFile], keys: &[(Option<u32>, Option<u32>)]) -> Option<Vec<usize>> {
    if files.len() != keys.len() || files.is_empty() {
        return None;
    }
    let mut sort_keys = Vec::with_capacity(files.len());
    for (i, (file, (disc, track))) in files.iter().zip(keys).enumerate() {
        let track = (*track)?;
        sort_keys.push((file.folder_index, disc.unwrap_or(1), track, i));
    }
    sort_keys.sort_unstable();
    if sort_keys
        .windows(2)
        .any(|w| (w[0].0, w[0].1, w[0].2) == (w[1].0, w[1].1, w[1].2))
    {
        return None;
    }
    Some(sort_keys.into_iter().map(|k| k.3).collect())
}

/// Reorders `files` by ID3 disc/track numbers (see [`tag_order`]); returns whether the tags
/// were used. When they are not, `files` is left untouched (natural order).
///
/// `keys[i]` belongs to `files[i]` as passed in; callers holding other vectors aligned with
/// `files` should use [`tag_order`] and apply the permutation to all of them.
pub fn order_by_tags(files: &mut [ScannedFile], keys: &[(Option<u32>, Option<u32>)]) -> bool {
    let Some(perm) = tag_order(files, keys) else {
        return false;
    };
    let reordered: Vec<ScannedFile> = perm.iter().map(|&i| files[i].clone()).collect();
    files.clone_from_slice(&reordered);
    true
}

// ---------------------------------------------------------------------------------------------
// Content sniffing

/// Cheaply checks that `path` looks like an MP3 file; the error says what it is instead.
///
/// Reads at most a few 64 KiB windows (see [`crate::mp3bytes::sniff`] for what is accepted).
/// Never opens anything but a regular file (opening a FIFO would block).
pub fn sniff_mp3(path: &Path) -> Result<(), String> {
    let meta = fs::metadata(path).map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".to_string());
    }
    if meta.len() == 0 {
        return Err("empty file (0 bytes)".to_string());
    }
    let mut file = fs::File::open(path).map_err(|e| format!("cannot be opened: {e}"))?;
    mp3bytes::sniff(meta.len(), &mut |at| read_window(&mut file, at))
}

fn read_window(file: &mut fs::File, at: u64) -> Result<Vec<u8>, String> {
    file.seek(SeekFrom::Start(at))
        .map_err(|e| format!("cannot be read: {e}"))?;
    let mut buf = Vec::new();
    file.take(mp3bytes::SNIFF_WINDOW)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot be read: {e}"))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn sort_natural(names: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        v.sort_by(|a, b| natural_cmp(a, b));
        v
    }

    fn mkfifo(path: &Path) -> bool {
        Command::new("mkfifo")
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    // -- natural_cmp --------------------------------------------------------------------------

    #[test]
    fn natural_numbers_compare_by_value() {
        assert_eq!(natural_cmp("2", "10"), Ordering::Less);
        assert_eq!(natural_cmp("track2", "Track10"), Ordering::Less);
        assert_eq!(natural_cmp("a9b", "a10a"), Ordering::Less);
        assert_eq!(natural_cmp("010", "9"), Ordering::Greater);
        assert_eq!(
            sort_natural(&["10.mp3", "1.mp3", "2.mp3", "Chapter 11", "Chapter 2"]),
            ["1.mp3", "2.mp3", "10.mp3", "Chapter 2", "Chapter 11"]
        );
    }

    #[test]
    fn natural_numbers_have_no_length_limit() {
        let big = format!("1{}", "0".repeat(40));
        let smaller = "9".repeat(40);
        assert_eq!(natural_cmp(&big, &smaller), Ordering::Greater);
        assert_eq!(
            natural_cmp(&format!("x{big}"), &format!("x{big}1")),
            Ordering::Less
        );
    }

    #[test]
    fn natural_leading_zeros_only_break_ties() {
        assert_eq!(natural_cmp("01", "2"), Ordering::Less);
        assert_eq!(natural_cmp("1", "01"), Ordering::Less);
        assert_eq!(natural_cmp("01", "001"), Ordering::Less);
        assert_eq!(
            sort_natural(&["001", "1", "01", "0", "00"]),
            ["0", "00", "1", "01", "001"]
        );
        // Zeros decide only after the whole name compared equal by value.
        assert_eq!(natural_cmp("01b", "1a"), Ordering::Greater);
    }

    #[test]
    fn natural_text_is_case_insensitive_with_a_byte_tie_break() {
        assert_eq!(natural_cmp("a", "B"), Ordering::Less);
        assert_eq!(natural_cmp("B", "a"), Ordering::Greater);
        assert_eq!(natural_cmp("A", "a"), Ordering::Less); // b'A' < b'a'
        assert_eq!(natural_cmp("a", "a"), Ordering::Equal);
        // Unicode lowercasing: É and é are the same letter.
        assert_eq!(natural_cmp("Éa", "éb"), Ordering::Less);
        assert_eq!(natural_cmp("ÄRGER 2", "ärger 10"), Ordering::Less);
    }

    #[test]
    fn natural_normalizes_compatibility_forms() {
        // Full-width digits are digits; the ligature "ﬁ" is "fi".
        assert_eq!(natural_cmp("２", "10"), Ordering::Less);
        assert_eq!(natural_cmp("ﬁle 2", "file 10"), Ordering::Less);
        // NFC vs NFD spellings of "é" are equal up to the byte tie-break.
        assert_ne!(natural_cmp("e\u{301}1", "\u{e9}1"), Ordering::Equal);
        assert_eq!(natural_cmp("e\u{301}2", "\u{e9}10"), Ordering::Less);
    }

    #[test]
    fn natural_numbers_sort_before_text() {
        assert_eq!(natural_cmp("1", "a"), Ordering::Less);
        assert_eq!(natural_cmp("", "a"), Ordering::Less);
        assert_eq!(natural_cmp("", ""), Ordering::Equal);
    }

    #[test]
    fn natural_order_is_total_and_consistent() {
        let names = [
            "",
            "0",
            "00",
            "1",
            "01",
            "a",
            "A",
            "a1",
            "a01",
            "A1",
            "a 1",
            "a10",
            "a2",
            "b",
            "B2",
            "é",
            "E\u{301}",
            "２",
            "x.mp3",
            "X.MP3",
            "10x",
            "x10",
            "ﬁ",
            "fi",
            "\u{1F4A5}",
        ];
        for a in names {
            for b in names {
                let ab = natural_cmp(a, b);
                assert_eq!(ab, natural_cmp(b, a).reverse(), "{a:?} {b:?}");
                assert_eq!(ab == Ordering::Equal, a == b, "{a:?} {b:?}");
                for c in names {
                    if ab != Ordering::Greater && natural_cmp(b, c) != Ordering::Greater {
                        assert_ne!(natural_cmp(a, c), Ordering::Greater, "{a:?} {b:?} {c:?}");
                    }
                }
            }
        }
        let forward = sort_natural(&names);
        let mut reversed = names;
        reversed.reverse();
        assert_eq!(sort_natural(&reversed), forward);
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
        let s = scan_one(t.path());
        let f = findings_of(&s, FindingKind::NoMp3Found);
        assert_eq!(f.len(), 1);
        let remedy = f[0].remedy.as_deref().unwrap();
        assert!(remedy.contains("2 .flac"), "{remedy}");
        assert!(remedy.contains("too deep"), "{remedy}");
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

    // -- order_by_tags ------------------------------------------------------------------------

    fn files(specs: &[(usize, &str)]) -> Vec<ScannedFile> {
        specs
            .iter()
            .map(|&(folder_index, rel)| ScannedFile {
                path: PathBuf::from("/book").join(rel),
                rel_path: PathBuf::from(rel),
                size_bytes: 1,
                folder_index,
            })
            .collect()
    }

    fn order_of(f: &[ScannedFile]) -> Vec<&str> {
        f.iter().map(|f| f.rel_path.to_str().unwrap()).collect()
    }

    #[test]
    fn tags_reorder_when_every_file_has_a_track() {
        let mut f = files(&[(0, "a.mp3"), (0, "b.mp3"), (0, "c.mp3")]);
        let keys = [(None, Some(3)), (None, Some(1)), (None, Some(2))];
        assert_eq!(tag_order(&f, &keys), Some(vec![1, 2, 0]));
        assert!(order_by_tags(&mut f, &keys));
        assert_eq!(order_of(&f), ["b.mp3", "c.mp3", "a.mp3"]);
    }

    #[test]
    fn tags_use_disc_numbers() {
        let mut f = files(&[(0, "x1.mp3"), (0, "x2.mp3"), (0, "y1.mp3"), (0, "y2.mp3")]);
        let keys = [
            (Some(2), Some(1)),
            (Some(2), Some(2)),
            (Some(1), Some(1)),
            (None, Some(2)),
        ];
        assert!(order_by_tags(&mut f, &keys));
        assert_eq!(order_of(&f), ["y1.mp3", "y2.mp3", "x1.mp3", "x2.mp3"]);
    }

    #[test]
    fn tags_keep_the_input_folders_in_order() {
        let mut f = files(&[(0, "a.mp3"), (0, "b.mp3"), (1, "c.mp3")]);
        let keys = [(None, Some(2)), (None, Some(1)), (None, Some(1))];
        assert!(order_by_tags(&mut f, &keys));
        assert_eq!(order_of(&f), ["b.mp3", "a.mp3", "c.mp3"]);
    }

    #[test]
    fn tags_are_ignored_when_incomplete_or_ambiguous() {
        let original = files(&[(0, "CD1/01.mp3"), (0, "CD1/02.mp3"), (0, "CD2/01.mp3")]);
        let cases: [&[(Option<u32>, Option<u32>)]; 4] = [
            // A file without a track number.
            &[(None, Some(2)), (None, None), (None, Some(1))],
            // Track numbers restarting per disc folder without disc tags: would interleave.
            &[(None, Some(1)), (None, Some(2)), (None, Some(1))],
            // Keys not aligned with the files.
            &[(None, Some(1))],
            &[],
        ];
        for keys in cases {
            let mut f = original.clone();
            assert!(!order_by_tags(&mut f, keys), "{keys:?}");
            assert_eq!(f, original);
        }
        assert!(!order_by_tags(&mut [], &[]));
    }

    // -- sniff_mp3 ----------------------------------------------------------------------------
    // What the sniffer accepts is tested on bytes in `mp3bytes`; these test the file plumbing.

    fn sniff_bytes(bytes: &[u8]) -> Result<(), String> {
        let t = TempDir::new().unwrap();
        let p = t.path().join("x.mp3");
        fs::write(&p, bytes).unwrap();
        sniff_mp3(&p)
    }

    #[test]
    fn sniff_reads_the_windows_it_needs_from_the_file() {
        use crate::mp3bytes::tests::{cat, frames, id3, MPEG1_128K};
        assert_eq!(sniff_bytes(&frames(MPEG1_128K, 3)), Ok(()));
        // The audio begins past the first window; the tag ends just inside it.
        for body in [300 * 1024, 64 * 1024 - 100] {
            let tag = id3(3, body, false);
            assert_eq!(sniff_bytes(&cat(&[&tag, &frames(MPEG1_128K, 5)])), Ok(()));
            assert_eq!(
                sniff_bytes(&cat(&[&tag, &frames(MPEG1_128K, 1)])),
                Ok(()),
                "a lone frame at the end of the file"
            );
        }
        assert_eq!(sniff_bytes(b""), Err("empty file (0 bytes)".to_string()));
        assert_eq!(
            sniff_bytes(&id3(3, 100, false)),
            Err("contains only an ID3 tag, no audio".to_string())
        );
    }

    #[test]
    fn sniff_never_opens_a_fifo() {
        let t = TempDir::new().unwrap();
        let p = t.path().join("pipe.mp3");
        assert!(mkfifo(&p));
        // Opening a FIFO for reading blocks until a writer appears: this would hang.
        assert_eq!(sniff_mp3(&p), Err("is not a regular file".to_string()));
        assert_eq!(
            sniff_mp3(t.path()),
            Err("is not a regular file".to_string())
        );
        assert!(sniff_mp3(&t.path().join("missing.mp3"))
            .unwrap_err()
            .starts_with("cannot be read"));
    }
}
