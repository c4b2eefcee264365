//! Plain data shared by every stage: scanned files, probed tracks, the planned book, findings.
//! No I/O here.
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Longest chapter title, and longest short tag (title, author, narrator, album, genre, year,
/// series, series part), in UTF-8 bytes. The plan cuts longer ones on a character boundary and
/// says so in one [`FindingKind::TextShortened`] warning.
///
/// Why 1 KiB: a QuickTime chapter is a text sample whose length field has 16 bits (FFmpeg
/// writes a title of 65,536 bytes as an empty one), the Nero `chpl` list keeps only 255 bytes
/// of each title anyway, and players show a line or two. 1 KiB still holds 256 characters of
/// any script.
pub const MAX_TITLE_BYTES: usize = 1024;

/// Longest description and comment in UTF-8 bytes (`desc`/`ldes`, `©cmt`), cut like
/// [`MAX_TITLE_BYTES`]. Apple takes long descriptions of up to 4,000 characters; 16 KiB holds
/// that in any script and keeps a tag of megabytes out of the `moov` box players read first.
pub const MAX_LONG_TEXT_BYTES: usize = 16 << 10;

/// How bad a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing (e.g. inputs will be resampled).
    Info,
    /// Converts, but the user may want to look (e.g. `chpl` truncated at 255 chapters).
    Warning,
    /// Blocks the conversion.
    Error,
}

/// What kind of problem a [`Finding`] is; stable names for `--json` and for exit decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    FolderMissing,
    NotADirectory,
    Unreadable,
    NoMp3Found,
    FileTooLarge,
    TotalTooLarge,
    EmptyFile,
    NotMp3,
    Damaged,
    MixedFormats,
    Resampled,
    SkippedEntry,
    DuplicateTitles,
    ChplTruncated,
    Cover,
    /// A title or tag longer than [`MAX_TITLE_BYTES`] / [`MAX_LONG_TEXT_BYTES`] was shortened.
    TextShortened,
    Other,
}

/// One problem or remark about the input, naming the file and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    pub kind: FindingKind,
    /// The file or folder concerned, if any.
    pub path: Option<PathBuf>,
    /// What is wrong.
    pub message: String,
    /// What the user should do about it.
    pub remedy: Option<String>,
}

impl Finding {
    pub fn new(
        severity: Severity,
        kind: FindingKind,
        path: Option<PathBuf>,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            severity,
            kind,
            path,
            message: message.into(),
            remedy: None,
        }
    }
    pub fn error(kind: FindingKind, path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, kind, Some(path.into()), message)
    }
    pub fn warning(kind: FindingKind, path: Option<PathBuf>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, kind, path, message)
    }
    pub fn with_remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = Some(remedy.into());
        self
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = &self.path {
            write!(f, "{}: ", p.display())?;
        }
        write!(f, "{}", self.message)?;
        if let Some(r) = &self.remedy {
            write!(f, " — {r}")?;
        }
        Ok(())
    }
}

/// One MP3 file found by the scan, in book order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScannedFile {
    /// Full path (folder joined with `rel_path`).
    pub path: PathBuf,
    /// Path relative to the scanned folder (e.g. `CD1/03 - Storm.mp3`).
    pub rel_path: PathBuf,
    pub size_bytes: u64,
    /// Index of the folder (in the order given) the file came from.
    pub folder_index: usize,
}

/// What the scan found in one input folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderSummary {
    pub path: PathBuf,
    pub mp3_count: usize,
    pub total_bytes: u64,
}

/// The scan of all input folders: files in book order plus findings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Scan {
    pub folders: Vec<FolderSummary>,
    pub files: Vec<ScannedFile>,
    /// Problems with folders and entries (missing folder, skipped FIFO, ...).
    pub findings: Vec<Finding>,
}

/// ID3 tags of one file (only what aiom4b uses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tags {
    pub title: Option<String>,
    pub album: Option<String>,
    pub artist: Option<String>,
    pub album_artist: Option<String>,
    pub composer: Option<String>,
    pub genre: Option<String>,
    pub year: Option<String>,
    pub track: Option<u32>,
    pub track_total: Option<u32>,
    pub disc: Option<u32>,
    pub disc_total: Option<u32>,
    pub comment: Option<String>,
}

/// An image: embedded picture or cover file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Picture {
    /// `image/jpeg` or `image/png`.
    pub mime: String,
    #[serde(skip)]
    pub data: Vec<u8>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

impl std::fmt::Debug for Picture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Picture")
            .field("mime", &self.mime)
            .field("bytes", &self.data.len())
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// Where the cover comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CoverSource {
    /// The front cover embedded in this MP3.
    Embedded { path: PathBuf },
    /// An image file (`cover.jpg`, `folder.png`, `--cover`).
    File { path: PathBuf },
}

/// A cover ready to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cover {
    pub source: CoverSource,
    pub picture: Picture,
}

/// Everything known about one MP3 before decoding it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackInfo {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub sample_rate: u32,
    pub channels: u16,
    pub bitrate_bps: u64,
    /// Variable bitrate (from the Xing/VBRI header or differing frame bitrates).
    pub vbr: bool,
    /// Exact gapless length in samples (at the file's rate) from the LAME/Xing header, when present.
    pub exact_samples: Option<u64>,
    /// Duration estimate (header/bitrate based); exact when `exact_samples` is known.
    pub duration: Duration,
    pub tags: Tags,
    /// Embedded front cover (or the first picture when none is marked front).
    pub cover: Option<Picture>,
    /// Number of embedded pictures.
    pub picture_count: usize,
}

impl TrackInfo {
    /// Duration in seconds as a float, preferring the exact sample count.
    pub fn duration_secs(&self) -> f64 {
        match self.exact_samples {
            Some(n) if self.sample_rate > 0 => n as f64 / self.sample_rate as f64,
            _ => self.duration.as_secs_f64(),
        }
    }
}

/// The book's metadata as it will be written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookMetadata {
    pub title: Option<String>,
    pub author: Option<String>,
    pub narrator: Option<String>,
    pub album: Option<String>,
    pub genre: Option<String>,
    pub year: Option<String>,
    pub description: Option<String>,
    pub comment: Option<String>,
    pub series: Option<String>,
    pub series_part: Option<String>,
}

/// A chapter of the written book. `start_samples` is in the output sample rate; the title has
/// at most [`MAX_TITLE_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chapter {
    pub title: String,
    pub start_samples: u64,
}

/// One input file as planned: its probe and its chapter title.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedTrack {
    pub info: TrackInfo,
    pub rel_path: PathBuf,
    pub chapter_title: String,
    /// The file's rate or channel count differs from the target: swresample converts it.
    pub needs_resample: bool,
    pub needs_remix: bool,
}

/// The output audio format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFormat {
    pub sample_rate: u32,
    pub channels: u16,
    pub bitrate_bps: u64,
}

impl Default for TargetFormat {
    /// The specification's defaults: AAC-LC 128 kb/s, stereo, 44.1 kHz.
    fn default() -> Self {
        TargetFormat {
            sample_rate: 44_100,
            channels: 2,
            bitrate_bps: 128_000,
        }
    }
}

/// The book to write: everything `convert` needs, everything `probe` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Book {
    pub folders: Vec<FolderSummary>,
    pub tracks: Vec<PlannedTrack>,
    pub metadata: BookMetadata,
    pub cover: Option<Cover>,
    pub target: TargetFormat,
    /// Where the output will be written.
    pub output_path: PathBuf,
    /// Non-blocking findings (warnings, infos).
    pub findings: Vec<Finding>,
}

impl Book {
    /// Estimated total duration in seconds (exact where headers allow).
    pub fn duration_secs(&self) -> f64 {
        self.tracks.iter().map(|t| t.info.duration_secs()).sum()
    }
    pub fn total_bytes(&self) -> u64 {
        self.tracks.iter().map(|t| t.info.size_bytes).sum()
    }
}
