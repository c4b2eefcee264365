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
    /// An input folder does not exist (error).
    FolderMissing,
    /// An input path exists but is not a folder, e.g. a single MP3 file was given (error).
    NotADirectory,
    /// Something cannot be read (permissions, I/O error): an input folder or an MP3 file
    /// (error), or a subfolder or folder entry the scan skipped (warning).
    Unreadable,
    /// An input folder (with its subfolders up to the scan depth) holds no `.mp3` file (error).
    NoMp3Found,
    /// One MP3 file is larger than
    /// [`Limits::max_file_size_mb`](crate::Limits::max_file_size_mb) (error).
    FileTooLarge,
    /// All MP3 files together are larger than
    /// [`Limits::max_total_size_mb`](crate::Limits::max_total_size_mb) (error).
    TotalTooLarge,
    /// An MP3 file has 0 bytes (error).
    EmptyFile,
    /// A file named `.mp3` is not MPEG audio, or none of its first frames decode (error).
    NotMp3,
    /// A file is truncated or has frames that do not decode: an error, or a warning when
    /// damaged input is allowed and the audio that decodes is kept.
    Damaged,
    /// The inputs differ in sample rate, channel count or CBR/VBR; each is converted to the
    /// target format on its own (info).
    MixedFormats,
    /// Inputs will be resampled to the target rate. Declared for `--json` consumers; the
    /// library does not emit it at present ([`MixedFormats`](Self::MixedFormats) covers it).
    Resampled,
    /// A folder entry the scan left out or used once: a repeated input folder, a file reached
    /// twice through links or nested inputs, a symbolic link out of the folder, a FIFO or
    /// device named `.mp3`, subfolders deeper than the scan depth, the data folder
    /// (warning or info).
    SkippedEntry,
    /// Several chapters would have the same title. Declared for `--json` consumers; the
    /// library does not emit it at present (repeated titles are numbered " (2)", " (3)" …).
    DuplicateTitles,
    /// The book has more chapters than the Nero `chpl` list holds (255); the QuickTime chapter
    /// track still has all of them (warning).
    ChplTruncated,
    /// An embedded picture or a cover image file was skipped: unreadable, too large, or not a
    /// usable JPEG/PNG (warning).
    Cover,
    /// A title or tag longer than [`MAX_TITLE_BYTES`] / [`MAX_LONG_TEXT_BYTES`] was shortened.
    TextShortened,
    /// Anything else, e.g. a folder with MP3s both directly inside and in subfolders (info), or
    /// a chapter-time warning from the conversion (warning).
    Other,
}

/// One problem or remark about the input, naming the file and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// How bad it is; any [`Severity::Error`] blocks the conversion.
    pub severity: Severity,
    /// What kind of problem it is (stable name).
    pub kind: FindingKind,
    /// The file or folder concerned, if any.
    pub path: Option<PathBuf>,
    /// What is wrong.
    pub message: String,
    /// What the user should do about it.
    pub remedy: Option<String>,
}

impl Finding {
    /// A finding without a remedy.
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
    /// An [`Severity::Error`] finding about `path`, without a remedy.
    pub fn error(kind: FindingKind, path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, kind, Some(path.into()), message)
    }
    /// A [`Severity::Warning`] finding, about `path` if given, without a remedy.
    pub fn warning(kind: FindingKind, path: Option<PathBuf>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, kind, path, message)
    }
    /// Sets what the user should do about it (replacing any remedy already set).
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
    /// File size in bytes, as the scan saw it.
    pub size_bytes: u64,
    /// Index of the folder (in the order given) the file came from.
    pub folder_index: usize,
}

/// What the scan found in one input folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderSummary {
    /// The folder as given by the caller (not canonicalized).
    pub path: PathBuf,
    /// MP3 files taken from it (duplicates of files already listed are not counted).
    pub mp3_count: usize,
    /// Total size of those MP3 files in bytes.
    pub total_bytes: u64,
}

/// The scan of all input folders: files in book order plus findings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Scan {
    /// One summary per input folder, in the order given (also for folders that could not be
    /// scanned: then with zero files).
    pub folders: Vec<FolderSummary>,
    /// Every MP3 file found, in book order.
    pub files: Vec<ScannedFile>,
    /// Problems with folders and entries (missing folder, skipped FIFO, ...).
    pub findings: Vec<Finding>,
}

/// What an input file is, decided by its content (never by its name): the container and the
/// audio codec in it. `ALLOWED_INPUTS` (the config) and [`InputFormats`] name these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// MPEG-1/2/2.5 layer III.
    Mp3,
    /// AAC (LC or HE) or ALAC in an MP4 file (`.m4a`, `.m4b`, `.mp4`).
    M4a,
    /// Raw AAC in ADTS frames (`.aac`).
    Aac,
    /// FLAC (native container).
    Flac,
    /// Vorbis in Ogg.
    Vorbis,
    /// Opus in Ogg.
    Opus,
    /// PCM in a RIFF WAVE file.
    Wav,
}

impl InputFormat {
    /// Every format, in the order `ALLOWED_INPUTS` lists them.
    pub const ALL: [InputFormat; 7] = [
        InputFormat::Mp3,
        InputFormat::M4a,
        InputFormat::Aac,
        InputFormat::Flac,
        InputFormat::Vorbis,
        InputFormat::Opus,
        InputFormat::Wav,
    ];

    /// The name in `ALLOWED_INPUTS` and in `--json` (`mp3`, `m4a`, …).
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Mp3 => "mp3",
            InputFormat::M4a => "m4a",
            InputFormat::Aac => "aac",
            InputFormat::Flac => "flac",
            InputFormat::Vorbis => "vorbis",
            InputFormat::Opus => "opus",
            InputFormat::Wav => "wav",
        }
    }

    /// How a message names it ("MP3", "MP4/M4A", "Ogg Vorbis" …).
    pub fn label(self) -> &'static str {
        match self {
            InputFormat::Mp3 => "MP3",
            InputFormat::M4a => "MP4/M4A",
            InputFormat::Aac => "ADTS AAC",
            InputFormat::Flac => "FLAC",
            InputFormat::Vorbis => "Ogg Vorbis",
            InputFormat::Opus => "Ogg Opus",
            InputFormat::Wav => "WAV",
        }
    }

    /// Parses one `ALLOWED_INPUTS` name (any case; `m4b`/`mp4`/`alac` mean `m4a`, `ogg`
    /// means Vorbis).
    pub fn parse(name: &str) -> Option<InputFormat> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "mp3" => InputFormat::Mp3,
            "m4a" | "m4b" | "mp4" | "alac" => InputFormat::M4a,
            "aac" | "adts" => InputFormat::Aac,
            "flac" => InputFormat::Flac,
            "vorbis" | "ogg" => InputFormat::Vorbis,
            "opus" => InputFormat::Opus,
            "wav" | "wave" => InputFormat::Wav,
            _ => return None,
        })
    }
}

/// The input formats a conversion accepts (`ALLOWED_INPUTS`); by default all of
/// [`InputFormat::ALL`]. MP3 alone is the workflow specification's strict validation: the scan
/// then takes `.mp3` names only, as it always did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Vec<InputFormat>", try_from = "Vec<InputFormat>")]
pub struct InputFormats(u8);

impl Default for InputFormats {
    fn default() -> Self {
        InputFormats::all()
    }
}

impl InputFormats {
    /// Every format.
    pub fn all() -> Self {
        InputFormats::of(&InputFormat::ALL)
    }
    /// MP3 only (the specification's validation).
    pub fn mp3_only() -> Self {
        InputFormats::of(&[InputFormat::Mp3])
    }
    /// Exactly these formats.
    pub fn of(formats: &[InputFormat]) -> Self {
        InputFormats(formats.iter().fold(0, |m, f| m | (1 << *f as u8)))
    }
    /// Whether `f` is accepted.
    pub fn contains(self, f: InputFormat) -> bool {
        self.0 & (1 << f as u8) != 0
    }
    /// The formats in [`InputFormat::ALL`] order.
    pub fn list(self) -> Vec<InputFormat> {
        InputFormat::ALL
            .into_iter()
            .filter(|f| self.contains(*f))
            .collect()
    }
    /// Only MP3: the scan looks at `.mp3` names only.
    pub fn is_mp3_only(self) -> bool {
        self == InputFormats::mp3_only()
    }
    /// Parses `ALLOWED_INPUTS`: `all`, or names separated by commas or spaces
    /// (`mp3,m4a,flac`). Unknown names and an empty list are errors that name the valid ones.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let words: Vec<&str> = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .collect();
        if words.len() == 1 && words[0].eq_ignore_ascii_case("all") {
            return Ok(InputFormats::all());
        }
        let mut out = Vec::new();
        for w in &words {
            match InputFormat::parse(w) {
                Some(f) => out.push(f),
                None => {
                    return Err(format!(
                        "unknown input format {w:?}; use \"all\" or some of mp3, m4a, aac, flac, vorbis, opus, wav"
                    ))
                }
            }
        }
        if out.is_empty() {
            return Err(
                "no input format given; use \"all\" or some of mp3, m4a, aac, flac, vorbis, opus, wav"
                    .into(),
            );
        }
        Ok(InputFormats::of(&out))
    }
}

impl From<InputFormats> for Vec<InputFormat> {
    fn from(f: InputFormats) -> Self {
        f.list()
    }
}

impl TryFrom<Vec<InputFormat>> for InputFormats {
    type Error = String;
    fn try_from(v: Vec<InputFormat>) -> std::result::Result<Self, String> {
        if v.is_empty() {
            return Err("no input format".into());
        }
        Ok(InputFormats::of(&v))
    }
}

impl std::fmt::Display for InputFormats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == InputFormats::all() {
            return f.write_str("all");
        }
        let names: Vec<&str> = self.list().into_iter().map(InputFormat::name).collect();
        f.write_str(&names.join(","))
    }
}

/// A chapter a file brings along (an M4B/M4A part's own chapter list): its start in samples
/// at the file's own rate, on the file's exact timeline (priming already removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InnerChapter {
    /// Start in samples at the file's own rate.
    pub start_samples: u64,
    /// The chapter's title as the file gives it (may be empty).
    pub title: String,
}

/// ID3 tags of one file (only what aiom4b uses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tags {
    /// Title (`TIT2`): the track's chapter title candidate.
    pub title: Option<String>,
    /// Album (`TALB`): the book title candidate.
    pub album: Option<String>,
    /// Artist (`TPE1`): the author candidate.
    pub artist: Option<String>,
    /// Album artist (`TPE2`): the author candidate when no file has an artist.
    pub album_artist: Option<String>,
    /// Composer (`TCOM`): the narrator candidate.
    pub composer: Option<String>,
    /// Genre (`TCON`).
    pub genre: Option<String>,
    /// Recording date or year (`TDRC`/`TYER`), as written in the tag (not parsed).
    pub year: Option<String>,
    /// Track number (the `n` of `TRCK` "n/total"), 1-based as tagged.
    pub track: Option<u32>,
    /// Number of tracks (the `total` of `TRCK` "n/total").
    pub track_total: Option<u32>,
    /// Disc number (the `n` of `TPOS` "n/total"), 1-based as tagged.
    pub disc: Option<u32>,
    /// Number of discs (the `total` of `TPOS` "n/total").
    pub disc_total: Option<u32>,
    /// Comment (`COMM`): the description candidate.
    pub comment: Option<String>,
}

/// An image: embedded picture or cover file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Picture {
    /// `image/jpeg` or `image/png`.
    pub mime: String,
    /// The encoded image file's bytes (JPEG or PNG as stored); not serialized.
    #[serde(skip)]
    pub data: Vec<u8>,
    /// Width in pixels from the image header, when it could be read.
    pub width: Option<u32>,
    /// Height in pixels from the image header, when it could be read.
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
    Embedded {
        /// The MP3 file the picture is embedded in.
        path: PathBuf,
    },
    /// An image file (`cover.jpg`, `folder.png`, `--cover`).
    File {
        /// The image file.
        path: PathBuf,
    },
}

/// A cover ready to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cover {
    /// Where the picture was taken from.
    pub source: CoverSource,
    /// The image as it will be embedded.
    pub picture: Picture,
}

/// Everything known about one MP3 before decoding it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// The probed file.
    pub path: PathBuf,
    /// File size in bytes (ID3 tags and embedded pictures included).
    pub size_bytes: u64,
    /// Sample rate in Hz (e.g. 44100).
    pub sample_rate: u32,
    /// Channel count (1 = mono, 2 = stereo).
    pub channels: u16,
    /// Bitrate in bits per second as FFmpeg's demuxer reports it (nominal, or an estimate
    /// for VBR); 0 when unknown.
    pub bitrate_bps: u64,
    /// Variable bitrate (from the Xing/VBRI header or differing frame bitrates).
    pub vbr: bool,
    /// Exact gapless length in samples (at the file's rate) from the LAME/Xing header, when present.
    pub exact_samples: Option<u64>,
    /// Duration estimate (header/bitrate based); exact when `exact_samples` is known.
    pub duration: Duration,
    /// The ID3 tags aiom4b uses.
    pub tags: Tags,
    /// Embedded front cover (or the first picture when none is marked front).
    pub cover: Option<Picture>,
    /// Number of embedded pictures.
    pub picture_count: usize,
    /// What the file is, by its content.
    #[serde(default = "mp3_format")]
    pub format: InputFormat,
    /// The codec inside, as FFmpeg names it (`mp3`, `aac`, `alac`, `flac`, `vorbis`, `opus`,
    /// `pcm_s16le` …).
    #[serde(default)]
    pub codec: String,
    /// The file's own chapters (an M4B/M4A part), empty when it has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chapters: Vec<InnerChapter>,
    /// An M4B/M4A that aiom4b itself wrote (its `©too` says so): a book of its own, left out
    /// of a folder that also holds the files it was made from.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub made_by_aiom4b: bool,
}

fn mp3_format() -> InputFormat {
    InputFormat::Mp3
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
    /// Book title (`©nam`); planned from the most common album tag, else the first folder's
    /// name.
    pub title: Option<String>,
    /// Author (`©ART` and `aART`); planned from the most common artist (else album artist) tag.
    pub author: Option<String>,
    /// Narrator (`©nrt`, and `©wrt` composer, where several players look for it); planned
    /// from the most common composer tag.
    pub narrator: Option<String>,
    /// Album (`©alb`); the title is written there when this is `None`.
    pub album: Option<String>,
    /// Genre (`©gen`).
    pub genre: Option<String>,
    /// Release year or date (`©day`), free text as tagged or given.
    pub year: Option<String>,
    /// Description (`desc` and the long description `ldes`), at most
    /// [`MAX_LONG_TEXT_BYTES`]; planned from the most common ID3 comment.
    pub description: Option<String>,
    /// Comment (`©cmt`), at most [`MAX_LONG_TEXT_BYTES`]; only from the caller.
    pub comment: Option<String>,
    /// Series name (`©mvn`, `tvsh` and the freeform `SERIES` item); only from the caller.
    pub series: Option<String>,
    /// Position in the series, free text such as "3" or "1.5" (freeform `SERIES-PART`, and
    /// `©mvi` when it is a whole number 0–65535); only from the caller.
    pub series_part: Option<String>,
}

/// A chapter of the written book. `start_samples` is in the output sample rate; the title has
/// at most [`MAX_TITLE_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chapter {
    /// The title players show.
    pub title: String,
    /// Where the chapter starts, in samples (per channel) at the output sample rate from the
    /// start of the book.
    pub start_samples: u64,
}

/// One input file as planned: its probe and its chapter title.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedTrack {
    /// What the probe found (a truncated file's length already cut to the audio it holds).
    pub info: TrackInfo,
    /// Path relative to its input folder, as in [`ScannedFile::rel_path`].
    pub rel_path: PathBuf,
    /// The title of the chapter this file becomes (at most [`MAX_TITLE_BYTES`]).
    pub chapter_title: String,
    /// The file's rate or channel count differs from the target: swresample converts it.
    pub needs_resample: bool,
    /// The file's channel count differs from the target: swresample downmixes or upmixes it.
    pub needs_remix: bool,
}

/// The output audio format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFormat {
    /// Output sample rate in Hz.
    pub sample_rate: u32,
    /// Output channel count (1 = mono, 2 = stereo).
    pub channels: u16,
    /// AAC bitrate in bits per second (e.g. 128000).
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
    /// What the scan found in each input folder, in the order given.
    pub folders: Vec<FolderSummary>,
    /// The input files in book order, one chapter each.
    pub tracks: Vec<PlannedTrack>,
    /// The tags to write: from the inputs' ID3 tags, with the caller's overrides applied.
    pub metadata: BookMetadata,
    /// The cover to embed, if one was found or given.
    pub cover: Option<Cover>,
    /// The output audio format.
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
    /// Total size of the input files in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.tracks.iter().map(|t| t.info.size_bytes).sum()
    }
}
