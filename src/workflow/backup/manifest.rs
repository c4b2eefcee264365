//! A backup's manifest: what was backed up, from where, when, and every entry with its size and
//! BLAKE3 checksum. Two files hold it, written from the same [`Manifest`]:
//!
//! - `metadata.txt`, for people (the spec asks for it): a header of `key: value` lines, `---`,
//!   then one tab-separated line per entry. Paths are escaped ([`escape`]) so that any Unix
//!   path — newlines, tabs, backslashes, bytes that are not UTF-8 — fits on one line and reads
//!   back exactly. When the source folder has a `metadata.txt` of its own, ours is
//!   `.aiom4b-metadata.txt`.
//! - a JSON sidecar (`manifest.json`), for programs: no escaping of aiom4b's own;
//!   paths are JSON strings, or arrays of bytes when they are not UTF-8.
//!
//! Version 1 backups (before the sidecar) have only `metadata.txt`; version 2's header names
//! its sidecar (`sidecar: …`), so a reader knows whether one must exist and which file it is
//! (the name changes when the source folder has a file of that name). [`read`] prefers the
//! sidecar and requires `metadata.txt` to say the same: either file damaged or missing makes
//! the backup damaged, as a damaged `metadata.txt` always did.
//!
//! An encrypted backup (version 3, see `crypt`) names its recipients in the header
//! (`encryption: age`, `recipients: age1…,…`) and lists its files as `age` entries with the
//! plaintext's size and the ciphertext's size and BLAKE3 (`"kind": "age"` in the sidecar). An
//! older aiom4b refuses such an entry as malformed, so it calls the backup damaged instead of
//! restoring ciphertext as if it were the files.
use crate::workflow::errors::{Error, Result};
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use uuid::Uuid;

/// The human-readable manifest's name; `ALT_MANIFEST` when the source folder has its own.
pub const MANIFEST: &str = "metadata.txt";
pub(super) const ALT_MANIFEST: &str = ".aiom4b-metadata.txt";
/// The JSON sidecar's usual name (`manifest-2.json`… when the source has one). Not hidden:
/// it is as much part of the backup as `metadata.txt`, and hidden names in `data/` are
/// temporaries.
pub(super) const SIDECAR: &str = "manifest.json";
const HEADER: &str = "# aiom4b backup";
/// The JSON sidecar's `format` field.
const JSON_FORMAT: &str = "aiom4b backup manifest";
/// The version written: 2 = with a JSON sidecar; 3 = encrypted (`age` entries).
const VERSION: u32 = 2;
const VERSION_ENCRYPTED: u32 = 3;
/// The `encryption:` header value of an encrypted backup.
const AGE: &str = "age";

/// One entry of a backup, relative to the folder root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry {
    Dir(PathBuf),
    /// A file: `size` bytes of content. In an encrypted backup (`age_size` set) the file in
    /// the backup is its age encryption, of `age_size` bytes, and `hash` is that
    /// ciphertext's BLAKE3; otherwise `hash` is the content's.
    File {
        rel: PathBuf,
        size: u64,
        hash: blake3::Hash,
        age_size: Option<u64>,
    },
    Link {
        rel: PathBuf,
        target: PathBuf,
    },
}

impl Entry {
    pub(super) fn rel(&self) -> &Path {
        match self {
            Entry::Dir(rel) | Entry::File { rel, .. } | Entry::Link { rel, .. } => rel,
        }
    }

    pub(super) fn size(&self) -> u64 {
        match self {
            Entry::File { size, .. } => *size,
            _ => 0,
        }
    }
}

/// A backup's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Manifest {
    pub source: PathBuf,
    pub created: DateTime<FixedOffset>,
    pub job: Option<Uuid>,
    /// The age recipients (`age1…`) the files are encrypted to; `None`: not encrypted.
    pub encrypted_to: Option<Vec<String>>,
    pub entries: Vec<Entry>,
}

/// A manifest read from a backup folder, with the names of the files that hold it (which are
/// the backup's own, not part of what was backed up).
#[derive(Debug, Clone)]
pub(super) struct ReadManifest {
    pub manifest: Manifest,
    pub files: Vec<PathBuf>,
}

impl Manifest {
    pub fn files(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e, Entry::File { .. }))
            .count()
    }

    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(Entry::size).sum()
    }

    /// The name of the text manifest: not one of the backed-up entries.
    pub fn text_name(&self) -> &'static str {
        if self.has_top_entry(MANIFEST) {
            ALT_MANIFEST
        } else {
            MANIFEST
        }
    }

    /// The name of the JSON sidecar: the first of `manifest.json`, `manifest-2.json`… that is
    /// not one of the backed-up entries.
    pub fn sidecar_name(&self) -> String {
        std::iter::once(SIDECAR.to_string())
            .chain((2..).map(|n| format!("manifest-{n}.json")))
            .find(|n| !self.has_top_entry(n))
            .expect("an unbounded sequence of names")
    }

    fn has_top_entry(&self, name: &str) -> bool {
        self.entries.iter().any(|e| e.rel() == Path::new(name))
    }

    /// Entries must be relative, non-empty and stay inside the backup (no `..`).
    fn check(&self) -> std::result::Result<(), String> {
        if self.entries.iter().any(|e| {
            e.rel()
                .components()
                .any(|c| matches!(c, Component::ParentDir))
        }) {
            return Err("an entry points outside the backup".into());
        }
        // Every file of an encrypted backup is encrypted, and no file of another is.
        let encrypted = self.encrypted_to.is_some();
        if self
            .entries
            .iter()
            .any(|e| matches!(e, Entry::File { age_size, .. } if age_size.is_some() != encrypted))
        {
            return Err(if encrypted {
                "an unencrypted file entry in an encrypted backup".into()
            } else {
                "an encrypted (age) file entry in a backup without an encryption line".into()
            });
        }
        Ok(())
    }

    /// `metadata.txt`'s text; `sidecar` is the JSON file's name, when one is written.
    pub fn to_text(&self, sidecar: Option<&str>) -> String {
        let version = match (sidecar, &self.encrypted_to) {
            (_, Some(_)) => VERSION_ENCRYPTED,
            (Some(_), None) => VERSION,
            (None, None) => 1,
        };
        let mut s = format!(
            "{HEADER}\nversion: {version}\nsource: {}\ncreated: {}\njob: {}\nfiles: {}\nbytes: {}\n",
            escape(&self.source),
            self.created
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            self.job
                .map(|j| j.to_string())
                .unwrap_or_else(|| "-".into()),
            self.files(),
            self.bytes(),
        );
        if let Some(name) = sidecar {
            s.push_str(&format!("sidecar: {}\n", escape(Path::new(name))));
        }
        if let Some(to) = &self.encrypted_to {
            s.push_str(&format!(
                "encryption: {AGE}\nrecipients: {}\n",
                to.join(",")
            ));
            s.push_str(
                "# entries: dir<TAB>path | age<TAB>blake3 of the encrypted file<TAB>its size<TAB>size<TAB>path | link<TAB>target<TAB>path\n---\n",
            );
        } else {
            s.push_str(
                "# entries: dir<TAB>path | file<TAB>blake3<TAB>size<TAB>path | link<TAB>target<TAB>path\n---\n",
            );
        }
        for e in &self.entries {
            match e {
                Entry::Dir(rel) => s.push_str(&format!("dir\t{}\n", escape(rel))),
                Entry::File {
                    rel,
                    size,
                    hash,
                    age_size: None,
                } => s.push_str(&format!(
                    "file\t{}\t{size}\t{}\n",
                    hash.to_hex(),
                    escape(rel)
                )),
                Entry::File {
                    rel,
                    size,
                    hash,
                    age_size: Some(stored),
                } => s.push_str(&format!(
                    "age\t{}\t{stored}\t{size}\t{}\n",
                    hash.to_hex(),
                    escape(rel)
                )),
                Entry::Link { rel, target } => {
                    s.push_str(&format!("link\t{}\t{}\n", escape(target), escape(rel)))
                }
            }
        }
        s
    }

    /// Parses `metadata.txt`; returns the manifest and the sidecar it names (version 2).
    /// Unknown header lines are ignored (a newer writer may add some).
    pub fn parse_text(text: &str) -> std::result::Result<(Manifest, Option<PathBuf>), String> {
        if text.trim().is_empty() {
            return Err("empty".into());
        }
        let mut lines = text.lines().enumerate();
        if lines.next().map(|(_, l)| l) != Some(HEADER) {
            return Err("missing the aiom4b header line".into());
        }
        let (mut source, mut created, mut job, mut sidecar) = (None, None, None, None);
        let (mut encryption, mut recipients) = (None, None);
        for (_, line) in lines.by_ref() {
            if line == "---" {
                break;
            }
            match line.split_once(": ") {
                Some(("source", v)) => source = unescape(v),
                Some(("created", v)) => created = DateTime::parse_from_rfc3339(v).ok(),
                Some(("job", v)) => job = Uuid::parse_str(v).ok(),
                Some(("encryption", v)) => encryption = Some(v.to_string()),
                Some(("recipients", v)) => {
                    recipients = Some(v.split(',').map(str::to_string).collect::<Vec<_>>())
                }
                Some(("sidecar", v)) => {
                    sidecar = Some(
                        unescape(v)
                            .filter(|p| is_plain_name(p))
                            .ok_or("the sidecar line does not name a file in the backup")?,
                    )
                }
                _ => {}
            }
        }
        let mut entries = Vec::new();
        for (i, line) in lines {
            let fields: Vec<&str> = line.split('\t').collect();
            let line_err = || format!("line {}: malformed entry", i + 1);
            let rel =
                |s: &str| unescape(s).filter(|p| p.is_relative() && !p.as_os_str().is_empty());
            entries.push(match fields.as_slice() {
                ["dir", p] => Entry::Dir(rel(p).ok_or_else(line_err)?),
                ["file", hash, size, p] => Entry::File {
                    rel: rel(p).ok_or_else(line_err)?,
                    size: size.parse().map_err(|_| line_err())?,
                    hash: blake3::Hash::from_hex(hash).map_err(|_| line_err())?,
                    age_size: None,
                },
                ["age", hash, stored, size, p] => Entry::File {
                    rel: rel(p).ok_or_else(line_err)?,
                    size: size.parse().map_err(|_| line_err())?,
                    hash: blake3::Hash::from_hex(hash).map_err(|_| line_err())?,
                    age_size: Some(stored.parse().map_err(|_| line_err())?),
                },
                ["link", target, p] => Entry::Link {
                    rel: rel(p).ok_or_else(line_err)?,
                    target: unescape(target).ok_or_else(line_err)?,
                },
                _ => return Err(line_err()),
            });
        }
        let encrypted_to = match (encryption.as_deref(), recipients) {
            (None, None) => None,
            (Some(AGE), Some(r)) if !r.iter().any(|k| k.is_empty()) => Some(r),
            (Some(AGE), _) => return Err("an encrypted backup without a recipients line".into()),
            (Some(other), _) => return Err(format!("unknown encryption {other:?}")),
            (None, Some(_)) => return Err("recipients without an encryption line".into()),
        };
        let m = Manifest {
            source: source.ok_or("no source line")?,
            created: created.ok_or("no valid created line")?,
            job,
            encrypted_to,
            entries,
        };
        m.check()?;
        Ok((m, sidecar))
    }

    /// The JSON sidecar's text.
    pub fn to_json(&self) -> String {
        let doc = JsonManifest {
            format: JSON_FORMAT.into(),
            version: if self.encrypted_to.is_some() {
                VERSION_ENCRYPTED
            } else {
                VERSION
            },
            encryption: self.encrypted_to.as_ref().map(|to| JsonEncryption {
                scheme: AGE.into(),
                recipients: to.clone(),
            }),
            source: JsonPath::from(self.source.as_path()),
            created: self
                .created
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            job: self.job,
            entries: self.entries.iter().map(JsonEntry::from).collect(),
        };
        serde_json::to_string_pretty(&doc).expect("a manifest serializes") + "\n"
    }

    /// Parses the JSON sidecar.
    pub fn parse_json(text: &str) -> std::result::Result<Manifest, String> {
        let doc: JsonManifest = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if doc.format != JSON_FORMAT {
            return Err(format!("not an aiom4b manifest (format {:?})", doc.format));
        }
        let mut entries = Vec::with_capacity(doc.entries.len());
        for (i, e) in doc.entries.into_iter().enumerate() {
            let bad = || format!("entry {}: malformed", i + 1);
            let rel = |p: JsonPath| {
                let p = PathBuf::from(p);
                (p.is_relative() && !p.as_os_str().is_empty())
                    .then_some(p)
                    .ok_or_else(bad)
            };
            entries.push(match e {
                JsonEntry::Dir { path } => Entry::Dir(rel(path)?),
                JsonEntry::File { path, size, blake3 } => Entry::File {
                    rel: rel(path)?,
                    size,
                    hash: blake3::Hash::from_hex(&blake3).map_err(|_| bad())?,
                    age_size: None,
                },
                JsonEntry::Age {
                    path,
                    size,
                    age_size,
                    age_blake3,
                } => Entry::File {
                    rel: rel(path)?,
                    size,
                    hash: blake3::Hash::from_hex(&age_blake3).map_err(|_| bad())?,
                    age_size: Some(age_size),
                },
                JsonEntry::Link { path, target } => Entry::Link {
                    rel: rel(path)?,
                    target: target.into(),
                },
            });
        }
        let encrypted_to = match doc.encryption {
            None => None,
            Some(e) if e.scheme == AGE && !e.recipients.is_empty() => Some(e.recipients),
            Some(e) => return Err(format!("unknown encryption {:?}", e.scheme)),
        };
        let m = Manifest {
            encrypted_to,
            source: doc.source.into(),
            created: DateTime::parse_from_rfc3339(&doc.created)
                .map_err(|e| format!("created: {e}"))?,
            job: doc.job,
            entries,
        };
        m.check()?;
        Ok(m)
    }
}

/// Whether `p` is one plain file name (what a sidecar name must be).
fn is_plain_name(p: &Path) -> bool {
    let mut c = p.components();
    matches!((c.next(), c.next()), (Some(Component::Normal(_)), None))
}

/// The JSON sidecar's document.
#[derive(Serialize, Deserialize)]
struct JsonManifest {
    format: String,
    version: u32,
    source: JsonPath,
    /// RFC 3339, to the second, as in `metadata.txt` (so the two read back equal).
    created: String,
    job: Option<Uuid>,
    /// Only in an encrypted backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encryption: Option<JsonEncryption>,
    entries: Vec<JsonEntry>,
}

/// How an encrypted backup's files are encrypted, and to whom.
#[derive(Serialize, Deserialize)]
struct JsonEncryption {
    /// `age`.
    scheme: String,
    /// The `age1…` recipients.
    recipients: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum JsonEntry {
    Dir {
        path: JsonPath,
    },
    File {
        path: JsonPath,
        size: u64,
        blake3: String,
    },
    /// A file of an encrypted backup: `size` of the content, `age_size` and `age_blake3` of
    /// the encrypted file.
    Age {
        path: JsonPath,
        size: u64,
        age_size: u64,
        age_blake3: String,
    },
    Link {
        path: JsonPath,
        target: JsonPath,
    },
}

impl From<&Entry> for JsonEntry {
    fn from(e: &Entry) -> Self {
        match e {
            Entry::Dir(rel) => JsonEntry::Dir { path: rel.into() },
            Entry::File {
                rel,
                size,
                hash,
                age_size: None,
            } => JsonEntry::File {
                path: rel.into(),
                size: *size,
                blake3: hash.to_hex().to_string(),
            },
            Entry::File {
                rel,
                size,
                hash,
                age_size: Some(stored),
            } => JsonEntry::Age {
                path: rel.into(),
                size: *size,
                age_size: *stored,
                age_blake3: hash.to_hex().to_string(),
            },
            Entry::Link { rel, target } => JsonEntry::Link {
                path: rel.into(),
                target: target.as_path().into(),
            },
        }
    }
}

/// A path in JSON: a string when it is UTF-8 (nearly always), else its bytes.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum JsonPath {
    Text(String),
    Bytes(Vec<u8>),
}

impl From<&Path> for JsonPath {
    fn from(p: &Path) -> Self {
        match p.to_str() {
            Some(s) => JsonPath::Text(s.to_string()),
            None => JsonPath::Bytes(p.as_os_str().as_bytes().to_vec()),
        }
    }
}

impl From<&PathBuf> for JsonPath {
    fn from(p: &PathBuf) -> Self {
        p.as_path().into()
    }
}

impl From<JsonPath> for PathBuf {
    fn from(p: JsonPath) -> Self {
        match p {
            JsonPath::Text(s) => PathBuf::from(s),
            JsonPath::Bytes(b) => PathBuf::from(OsString::from_vec(b)),
        }
    }
}

/// Escapes a path for one `metadata.txt` field: `\\`, tab, newline, CR and other control
/// characters, and bytes that are not UTF-8 become escapes, so any Unix path round-trips.
pub(super) fn escape(p: &Path) -> String {
    let mut out = String::new();
    for chunk in p.as_os_str().as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() && (c as u32) < 0x100 => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The inverse of [`escape`]; `None` for a malformed escape.
pub(super) fn unescape(s: &str) -> Option<PathBuf> {
    let mut out = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next()? {
            '\\' => out.push(b'\\'),
            't' => out.push(b'\t'),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                if hex.len() != 2 {
                    return None;
                }
                out.push(u8::from_str_radix(&hex, 16).ok()?);
            }
            _ => return None,
        }
    }
    Some(PathBuf::from(OsString::from_vec(out)))
}

/// Writes both manifest files into the backup folder `dir`, durably.
pub(super) fn write(dir: &Path, m: &Manifest) -> Result<()> {
    let sidecar = m.sidecar_name();
    write_file(&dir.join(&sidecar), &m.to_json())?;
    write_file(&dir.join(m.text_name()), &m.to_text(Some(&sidecar)))
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    let mut f = File::create(path).map_err(|e| Error::io(path, "write manifest", e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(path, "write manifest", e))
}

/// Reads the manifest of the backup folder `dir` (see the module documentation).
pub(super) fn read(dir: &Path) -> Result<ReadManifest> {
    let text_path = [ALT_MANIFEST, MANIFEST]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .unwrap_or_else(|| dir.join(MANIFEST));
    let (from_text, sidecar) =
        Manifest::parse_text(&read_text(&text_path)?).map_err(|reason| Error::Manifest {
            path: text_path.clone(),
            reason,
        })?;
    let mut files = vec![PathBuf::from(text_path.file_name().unwrap_or_default())];
    let Some(sidecar) = sidecar else {
        // A version 1 backup: metadata.txt is the whole manifest.
        return Ok(ReadManifest {
            manifest: from_text,
            files,
        });
    };
    let json_path = dir.join(&sidecar);
    let bad = |reason: String| Error::Manifest {
        path: json_path.clone(),
        reason,
    };
    let manifest = Manifest::parse_json(&read_text(&json_path)?).map_err(bad)?;
    if manifest != from_text {
        return Err(bad(format!(
            "does not match {}",
            text_path.file_name().unwrap_or_default().to_string_lossy()
        )));
    }
    files.push(sidecar);
    Ok(ReadManifest { manifest, files })
}

fn read_text(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::Manifest {
        path: path.to_path_buf(),
        reason: match e.kind() {
            io::ErrorKind::NotFound => "missing".into(),
            _ => format!("cannot read: {e}"),
        },
    })
}

/// Whether `name` (a file at the top of a backup folder) may be one of aiom4b's manifest files.
pub(super) fn is_manifest_name(name: &Path) -> bool {
    let Some(n) = name.to_str() else {
        return false;
    };
    n == MANIFEST
        || n == ALT_MANIFEST
        || n == SIDECAR
        || n.strip_prefix("manifest-")
            .and_then(|r| r.strip_suffix(".json"))
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile_names() -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = [
            "plain/name.mp3",
            "tab\there",
            "new\nline",
            "cr\rhere",
            "back\\slash\\t",
            "\\x41 literally",
            "key=value==.mp3",
            "source: not a header",
            "---",
            "# not a comment",
            "file\tabc\t12\tfake.mp3",
            "bell\x07esc\x1b[31m",
            "ünïcödé/日本語.mp3",
            " leading and trailing ",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        v.push(PathBuf::from(OsString::from_vec(vec![
            b'a', 0xff, b'b', 0x80,
        ])));
        v.push(PathBuf::from(OsString::from_vec(
            b"dir\xc3/\xe9t\xe9.mp3".to_vec(),
        )));
        v
    }

    fn sample() -> Manifest {
        let mut entries = Vec::new();
        for (i, rel) in hostile_names().into_iter().enumerate() {
            entries.push(match i % 3 {
                0 => Entry::Dir(rel),
                1 => Entry::File {
                    rel,
                    size: i as u64 * 1000,
                    hash: blake3::hash(&[i as u8]),
                    age_size: None,
                },
                _ => Entry::Link {
                    target: PathBuf::from("../target=\n\\x"),
                    rel,
                },
            });
        }
        Manifest {
            source: PathBuf::from("/books/A: B\tC\n=D\\"),
            created: DateTime::parse_from_rfc3339("2024-01-15T10:30:00+01:00").unwrap(),
            job: Some(Uuid::from_u128(0x1234)),
            encrypted_to: None,
            entries,
        }
    }

    #[test]
    fn escaping_round_trips() {
        for p in hostile_names() {
            let e = escape(&p);
            assert!(!e.contains(['\n', '\t', '\r']), "{e:?}");
            assert_eq!(unescape(&e).unwrap(), p);
        }
        assert_eq!(unescape("bad\\q"), None);
        assert_eq!(unescape("trailing\\"), None);
        assert_eq!(unescape("short\\x4"), None);
    }

    #[test]
    fn text_round_trips_hostile_names() {
        let m = sample();
        for sidecar in [None, Some("manifest.json")] {
            let text = m.to_text(sidecar);
            let (back, named) = Manifest::parse_text(&text).unwrap();
            assert_eq!(back, m);
            assert_eq!(named.as_deref(), sidecar.map(Path::new));
            assert_eq!(text.contains("version: 2"), sidecar.is_some());
        }
    }

    #[test]
    fn json_round_trips_hostile_names() {
        let m = sample();
        let json = m.to_json();
        assert_eq!(Manifest::parse_json(&json).unwrap(), m);
        // Non-UTF-8 names are byte arrays; the rest are readable strings.
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["format"], JSON_FORMAT);
        assert_eq!(v["source"], "/books/A: B\tC\n=D\\");
        assert!(v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"].is_array()));
    }

    #[test]
    fn malformed_text_is_refused_with_a_reason() {
        let m = sample();
        let text = m.to_text(None);
        assert_eq!(Manifest::parse_text("").unwrap_err(), "empty");
        assert_eq!(
            Manifest::parse_text("version: 1\n").unwrap_err(),
            "missing the aiom4b header line"
        );
        let no_source = text.replace("source: ", "origin: ");
        assert_eq!(
            Manifest::parse_text(&no_source).unwrap_err(),
            "no source line"
        );
        let bad_entry = format!("{text}file\tnot-a-hash\tten\t01.mp3\n");
        assert!(Manifest::parse_text(&bad_entry)
            .unwrap_err()
            .ends_with("malformed entry"));
        let escape_out = format!("{text}dir\t../up\n");
        assert_eq!(
            Manifest::parse_text(&escape_out).unwrap_err(),
            "an entry points outside the backup"
        );
        let absolute = format!("{text}dir\t/etc\n");
        assert!(Manifest::parse_text(&absolute).is_err());
        let sidecar_path = text.replace("---\n", "sidecar: ../x.json\n---\n");
        assert!(Manifest::parse_text(&sidecar_path).is_err());
    }

    /// [`sample`] as an encrypted backup's manifest.
    fn encrypted_sample() -> Manifest {
        let mut m = sample();
        m.encrypted_to = Some(vec!["age1one".into(), "age1two".into()]);
        for e in &mut m.entries {
            if let Entry::File { age_size, size, .. } = e {
                *age_size = Some(*size + 200);
            }
        }
        m
    }

    #[test]
    fn an_encrypted_manifest_round_trips_and_says_so() {
        let m = encrypted_sample();
        let text = m.to_text(Some("manifest.json"));
        assert!(text.contains("version: 3\nsource: "), "{text}");
        assert!(text.contains("encryption: age\nrecipients: age1one,age1two\n"));
        assert!(text.lines().any(|l| l.starts_with("age\t")));
        assert!(!text.lines().any(|l| l.starts_with("file\t")));
        assert_eq!(Manifest::parse_text(&text).unwrap().0, m);
        let json = m.to_json();
        assert_eq!(Manifest::parse_json(&json).unwrap(), m);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["version"], 3);
        assert_eq!(v["encryption"]["scheme"], "age");
        assert!(v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "age" && e["age_size"].is_u64() && e["age_blake3"].is_string()));
        // An unencrypted one has no encryption field at all (unchanged from version 2).
        assert!(!sample().to_json().contains("encryption"));
    }

    #[test]
    fn encrypted_and_plain_entries_do_not_mix() {
        let enc = encrypted_sample().to_text(None);
        // An age entry without the encryption header, or a plain file in an encrypted backup.
        let no_header = enc
            .replace("encryption: age\n", "")
            .replace("recipients: age1one,age1two\n", "");
        assert!(Manifest::parse_text(&no_header)
            .unwrap_err()
            .contains("without an encryption line"));
        let plain = format!("{enc}file\t{}\t3\tplain.mp3\n", blake3::hash(b"x").to_hex());
        assert!(Manifest::parse_text(&plain)
            .unwrap_err()
            .contains("unencrypted file entry in an encrypted backup"));
        let other = enc.replace("encryption: age\n", "encryption: rot13\n");
        assert!(Manifest::parse_text(&other).unwrap_err().contains("rot13"));
        let no_recipients = enc.replace("recipients: age1one,age1two\n", "");
        assert!(Manifest::parse_text(&no_recipients).is_err());
    }

    #[test]
    fn malformed_json_is_refused() {
        let json = sample().to_json();
        assert!(Manifest::parse_json("{}").is_err());
        let other = json.replace(JSON_FORMAT, "something else");
        assert!(Manifest::parse_json(&other).unwrap_err().contains("format"));
        let up = json.replacen("\"path\": \"plain/name.mp3\"", "\"path\": \"../x\"", 1);
        assert_ne!(up, json);
        assert!(Manifest::parse_json(&up).is_err());
    }

    #[test]
    fn manifest_names_avoid_the_sources_own_files() {
        let mut m = sample();
        assert_eq!(m.text_name(), MANIFEST);
        assert_eq!(m.sidecar_name(), SIDECAR);
        for name in [MANIFEST, SIDECAR, "manifest-2.json"] {
            m.entries.push(Entry::Dir(name.into()));
        }
        assert_eq!(m.text_name(), ALT_MANIFEST);
        assert_eq!(m.sidecar_name(), "manifest-3.json");
        for n in [MANIFEST, ALT_MANIFEST, SIDECAR, "manifest-3.json"] {
            assert!(is_manifest_name(Path::new(n)), "{n}");
        }
        for n in [
            "manifest.jsonl",
            "manifest-.json",
            "manifest-x.json",
            "my-manifest.json",
        ] {
            assert!(!is_manifest_name(Path::new(n)), "{n}");
        }
    }

    #[test]
    fn a_version_1_backup_reads_from_metadata_txt_alone() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample();
        fs::write(dir.path().join(MANIFEST), m.to_text(None)).unwrap();
        let r = read(dir.path()).unwrap();
        assert_eq!(r.manifest, m);
        assert_eq!(r.files, vec![PathBuf::from(MANIFEST)]);
    }

    #[test]
    fn a_version_2_backup_needs_both_files_to_agree() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample();
        write(dir.path(), &m).unwrap();
        let r = read(dir.path()).unwrap();
        assert_eq!(r.manifest, m);
        assert_eq!(
            r.files,
            vec![PathBuf::from(MANIFEST), PathBuf::from(SIDECAR)]
        );

        let mut other = m.clone();
        other.job = None;
        fs::write(dir.path().join(SIDECAR), other.to_json()).unwrap();
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("does not match metadata.txt"), "{e}");

        fs::remove_file(dir.path().join(SIDECAR)).unwrap();
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(e.contains(SIDECAR) && e.contains("missing"), "{e}");

        fs::write(dir.path().join(SIDECAR), "{").unwrap();
        assert!(read(dir.path()).is_err());
    }
}
