//! Options for every stage as plain structs with the specification's defaults and `validate()`.
//! The CLI maps its flags onto these in one place (`src/bin/aiom4b/args.rs`).
use crate::error::{Error, Result};
use crate::model::{BookMetadata, TargetFormat};
pub use crate::silence::SilenceOptions;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How the files of a folder are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Natural order: `2` before `10`, disc folders as a whole.
    #[default]
    Natural,
    /// Plain code-point order of the relative path.
    Alpha,
    /// ID3 disc/track numbers when every file has a track number, else natural.
    Tags,
}

/// Options of the scan stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScanOptions {
    /// How deep to descend below each folder (1 = only the folder itself). Default 3.
    pub max_depth: usize,
    /// How the files of each folder are put in book order. Default [`Order::Natural`].
    pub order: Order,
    /// Folders never scanned wherever they appear inside an input folder (canonical paths):
    /// aiom4b's own data folder, so that a `DATA_DIR` inside a book folder never feeds its
    /// backups, database or logs back into a book.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<PathBuf>,
    /// The input formats accepted (`ALLOWED_INPUTS`). Default: all of them. With MP3 alone
    /// the scan takes `.mp3` names only, as the workflow specification says.
    #[serde(default)]
    pub inputs: crate::model::InputFormats,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            max_depth: 3,
            order: Order::Natural,
            exclude: Vec::new(),
            inputs: crate::model::InputFormats::all(),
        }
    }
}

/// Size limits applied by validation.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Limits {
    /// Largest accepted single file, in MiB (`MAX_FILE_SIZE_MB`, default 1000).
    pub max_file_size_mb: u64,
    /// Largest accepted total of all files, in MiB (default 50 000).
    pub max_total_size_mb: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_size_mb: 1000,
            max_total_size_mb: 50_000,
        }
    }
}

/// Where chapter titles come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChapterTitles {
    /// ID3 titles when present and not all identical, else file names.
    #[default]
    Auto,
    /// ID3 titles; a file without one gets its cleaned file name.
    Tags,
    /// Cleaned file names (a leading track number and its separator removed, underscores as
    /// spaces), whatever the tags say.
    Filenames,
}

/// Options of the plan stage.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PlanOptions {
    /// Where chapter titles come from. Default [`ChapterTitles::Auto`].
    pub chapter_titles: ChapterTitles,
    /// Metadata that overrides what the tags say (CLI `--title`, `--author`, ...).
    pub overrides: BookMetadata,
    /// A cover image that overrides the embedded/folder cover.
    pub cover: Option<PathBuf>,
    /// No cover at all, whatever the files and the folder hold (the web page's "no cover").
    /// Wins over [`cover`](Self::cover).
    #[serde(default)]
    pub no_cover: bool,
    /// Output path; default `<data_dir>/output/<sanitized title>.m4b`.
    pub output: Option<PathBuf>,
    /// Data directory (`DATA_DIR`, default `./data`).
    pub data_dir: Option<PathBuf>,
    /// The requested output format, resolved against the inputs by the plan.
    pub target: TargetSpec,
    /// Accept files that are shorter than their header says (truncated) with a warning, as
    /// [`ConvertOptions::allow_damaged`] accepts damaged frames; otherwise such a file is an
    /// error finding and the plan fails, before anything is converted.
    #[serde(default)]
    pub allow_damaged: bool,
    /// The files in this order (paths relative to their book folder, as
    /// [`PlannedTrack::rel_path`](crate::model::PlannedTrack) shows them); files not named
    /// follow in their scanned order. Empty: the scanned (natural) order. What a person sets
    /// when reviewing a plan (the web page's up/down buttons).
    #[serde(default)]
    pub track_order: Vec<PathBuf>,
    /// Chapter titles by position in the final order; an empty string keeps the planned title.
    /// More titles than files is an [`Error::Options`](crate::Error::Options): the edit was
    /// made against another version of the folder.
    #[serde(default)]
    pub chapter_title_overrides: Vec<String>,
}

/// Requested output format; `None` fields follow a preset or the inputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TargetSpec {
    /// The preset that fills the fields left `None`.
    pub preset: Preset,
    /// Output sample rate in Hz; must be one of [`AAC_SAMPLE_RATES`].
    pub sample_rate: Option<u32>,
    /// Output channel count: 1 (mono) or 2 (stereo).
    pub channels: Option<u16>,
    /// AAC bitrate in bits per second (e.g. 64000), at most 320000 and at least 8000 per
    /// channel.
    pub bitrate_bps: Option<u64>,
}

/// Presets that users of audiobook tools expect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// AAC-LC 128 kb/s, stereo, 44.1 kHz (the specification's defaults).
    #[default]
    Default,
    /// 64 kb/s mono 44.1 kHz: spoken word at half the size.
    Speech,
    /// Follow the inputs: the most common rate, mono when every input is mono;
    /// 64 kb/s per channel.
    Source,
}

impl TargetSpec {
    /// Resolves the spec against the inputs' (rate, channels) pairs.
    pub fn resolve(&self, inputs: &[(u32, u16)]) -> TargetFormat {
        let base = match self.preset {
            Preset::Default => TargetFormat::default(),
            Preset::Speech => TargetFormat {
                sample_rate: 44_100,
                channels: 1,
                bitrate_bps: 64_000,
            },
            Preset::Source => {
                let mut counts: Vec<(u32, usize)> = Vec::new();
                for (rate, _) in inputs {
                    match counts.iter_mut().find(|(r, _)| r == rate) {
                        Some(c) => c.1 += 1,
                        None => counts.push((*rate, 1)),
                    }
                }
                // Most common rate; ties go to the higher rate (no information is thrown away).
                let rate = counts
                    .iter()
                    .max_by_key(|(r, c)| (*c, *r))
                    .map(|(r, _)| *r)
                    .unwrap_or(44_100);
                let channels = if !inputs.is_empty() && inputs.iter().all(|(_, c)| *c == 1) {
                    1
                } else {
                    2
                };
                TargetFormat {
                    sample_rate: rate,
                    channels,
                    bitrate_bps: 64_000 * channels as u64,
                }
            }
        };
        TargetFormat {
            sample_rate: self.sample_rate.unwrap_or(base.sample_rate),
            channels: self.channels.unwrap_or(base.channels),
            bitrate_bps: self.bitrate_bps.unwrap_or(base.bitrate_bps),
        }
    }
}

/// AAC sample rates the native encoder and MP4 accept.
pub const AAC_SAMPLE_RATES: [u32; 12] = [
    8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 64_000, 88_200, 96_000,
];

/// Validates a target format.
pub fn validate_target(t: &TargetFormat) -> Result<()> {
    if !AAC_SAMPLE_RATES.contains(&t.sample_rate) {
        return Err(Error::Options(format!(
            "sample rate {} Hz is not an AAC rate; use one of {:?}",
            t.sample_rate, AAC_SAMPLE_RATES
        )));
    }
    if !(1..=2).contains(&t.channels) {
        return Err(Error::Options(format!(
            "{} channels requested; audiobooks are mono (1) or stereo (2)",
            t.channels
        )));
    }
    let per_channel = t.bitrate_bps / t.channels as u64;
    if !(8_000..=320_000).contains(&t.bitrate_bps) || per_channel < 8_000 {
        return Err(Error::Options(format!(
            "bitrate {} b/s is out of range; use 8k..320k, at least 8k per channel (e.g. a bitrate of 64k)",
            t.bitrate_bps
        )));
    }
    Ok(())
}

/// The native AAC encoder's coder (`aac_coder` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AacCoder {
    /// Two-loop search: FFmpeg's default and the better quality.
    #[default]
    Twoloop,
    /// Faster, slightly lower quality.
    Fast,
}

impl AacCoder {
    /// The value of FFmpeg's `aac_coder` option for this coder.
    pub fn as_ffmpeg(&self) -> &'static str {
        match self {
            AacCoder::Twoloop => "twoloop",
            AacCoder::Fast => "fast",
        }
    }
}

/// Which AAC encoder writes the audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderChoice {
    /// FFmpeg's native `aac` encoder (always available).
    #[default]
    Native,
    /// The Fraunhofer FDK AAC library (only with the `fdk-aac` cargo feature).
    Fdk,
}

impl EncoderChoice {
    /// FDK when this build has it (it is faster and better), else the native encoder.
    pub fn best_available() -> Self {
        if cfg!(feature = "fdk-aac") {
            EncoderChoice::Fdk
        } else {
            EncoderChoice::Native
        }
    }
}

/// The AAC profile (HE profiles need the FDK encoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AacProfile {
    /// AAC-LC (Low Complexity): what every player plays; the only profile of the native
    /// encoder.
    #[default]
    Lc,
    /// HE-AAC v1 (SBR).
    He,
    /// HE-AAC v2 (SBR + parametric stereo).
    Hev2,
}

/// Everything that selects and configures an encoder instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EncoderSettings {
    /// The format to encode: rate, channels and bitrate.
    pub target: TargetFormat,
    /// Which encoder to open.
    pub encoder: EncoderChoice,
    /// The native encoder's coder (the FDK encoder has none and ignores it).
    pub coder: AacCoder,
    /// The AAC profile; HE profiles need [`EncoderChoice::Fdk`].
    pub profile: AacProfile,
}

impl EncoderSettings {
    /// Settings for `encoder` with `coder` and `profile`, writing `target`.
    pub fn new(
        target: TargetFormat,
        encoder: EncoderChoice,
        coder: AacCoder,
        profile: AacProfile,
    ) -> Self {
        EncoderSettings {
            target,
            encoder,
            coder,
            profile,
        }
    }
}

/// How chapters are produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChapterMode {
    /// One chapter per input file, starting at the exact decoded sample position — except a
    /// file that brings chapters of its own (an M4B/M4A part) contributes those, offset by its
    /// start in the book.
    #[default]
    Auto,
    /// One chapter per input file, whatever chapters a file brings (`--chapters per-file`).
    PerFile,
    /// Chapters from a text file (`HH:MM:SS.mmm Title` per line).
    File(PathBuf),
    /// Chapters at the pauses of the audio, as [`ConvertOptions::silence`] says (found on the
    /// PCM the conversion decodes anyway), titled "Chapter N".
    Silence,
    /// No chapters.
    None,
}

/// Options of the conversion stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConvertOptions {
    /// Which AAC encoder writes the audio. Default [`EncoderChoice::Native`].
    pub encoder: EncoderChoice,
    /// The AAC profile; HE profiles need [`EncoderChoice::Fdk`]. Default [`AacProfile::Lc`].
    pub profile: AacProfile,
    /// The native encoder's coder (ignored by the FDK encoder). Default [`AacCoder::Twoloop`].
    pub coder: AacCoder,
    /// Worker threads for decoding/encoding; 0 = all cores.
    pub jobs: usize,
    /// How chapters are produced. Default [`ChapterMode::Auto`].
    pub chapters: ChapterMode,
    /// Keep the audio that decodes from files with damaged frames instead of failing.
    pub allow_damaged: bool,
    /// Replace an existing output file.
    pub overwrite: bool,
    /// Run the independent verification after writing (default true).
    pub verify: bool,
    /// Frames per segment of the multi-core encoder; 0 (the default) sizes segments from the
    /// worker count and a memory budget (up to 26,624 frames, about 10.3 min at 44.1 kHz, when each
    /// worker decodes its own range; from the memory budget on the in-order path). Shorter segments give more joins per minute of audio, which is what the
    /// splice-quality tests want.
    pub segment_frames: u64,
    /// How pauses are found, and the chapter lengths, for [`ChapterMode::Silence`] and
    /// [`snap_to_silence`](Self::snap_to_silence).
    #[serde(default)]
    pub silence: SilenceOptions,
    /// Move every chapter mark (from the files or a chapters file) to the nearest pause of at
    /// least [`SilenceOptions::min_pause_secs`] within this many seconds; the report says how
    /// far each moved and which found none. `None`: marks stay where they are.
    #[serde(default)]
    pub snap_to_silence: Option<f64>,
    /// Write the book as several parts, cut at chapter boundaries, when it is longer or larger
    /// than this (`convert --split-at 20h` or `4GB`): for players that choke on very long
    /// books or FAT32 devices. The parts are packet copies of the verified book (no second
    /// encode), each a verified M4B named `{name} - Part k of n.m4b`. `None`: one file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_at: Option<SplitAt>,
    /// Copy AAC parts' packets instead of re-encoding them ([`AudioMode`]). Default
    /// [`AudioMode::Auto`]: copy when every part is AAC-LC in MP4 at the output's rate and
    /// channel count, else encode; the report says which and why.
    #[serde(default)]
    pub audio: AudioMode,
}

/// Whether the audio is copied or encoded (`convert --audio`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioMode {
    /// Copy when the parts allow it (all AAC-LC in MP4, one rate and channel count, the
    /// output's), else encode.
    #[default]
    Auto,
    /// Copy, or fail saying why it cannot.
    Copy,
    /// Always encode.
    Encode,
}

impl AudioMode {
    /// Parses `auto`, `copy` or `encode`.
    pub fn parse(s: &str) -> std::result::Result<AudioMode, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(AudioMode::Auto),
            "copy" => Ok(AudioMode::Copy),
            "encode" => Ok(AudioMode::Encode),
            other => Err(format!(
                "{other:?} is not an audio mode: auto, copy or encode"
            )),
        }
    }
}

/// Where [`ConvertOptions::split_at`] cuts a book.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitAt {
    /// Parts of at most this many seconds.
    Duration(f64),
    /// Parts of at most this many bytes.
    Size(u64),
}

impl SplitAt {
    /// Parses `20h`, `11h30m`, `1:30:00` (a duration) or `4GB`, `3.9GiB`, `500MB` (a size).
    pub fn parse(s: &str) -> std::result::Result<SplitAt, String> {
        let t = s.trim();
        let parsed = if t.to_ascii_lowercase().ends_with('b') {
            crate::split::parse_size_bytes(t).map(SplitAt::Size)
        } else {
            crate::split::parse_duration_secs(t).map(SplitAt::Duration)
        };
        parsed.map_err(|_| {
            format!(
                "{s:?}: expected a duration such as 20h or 11h30m, or a size such as 4GB or 3.9GiB"
            )
        })
    }

    /// Checks the limit is one a book can be cut by.
    pub fn validate(&self) -> Result<()> {
        match *self {
            SplitAt::Duration(s) if !(s.is_finite() && s >= 1.0) => Err(Error::Options(format!(
                "split length {s} s is too short; parts must be at least 1 s, e.g. --split-at 20h"
            ))),
            SplitAt::Size(b) if b < (64 << 10) => Err(Error::Options(format!(
                "split size {b} bytes is too small; parts must be at least 64 KiB, e.g. --split-at 4GB"
            ))),
            _ => Ok(()),
        }
    }

    /// The limit as the splitter takes it.
    pub fn by(&self) -> crate::split::SplitBy {
        match *self {
            SplitAt::Duration(s) => crate::split::SplitBy::MaxDuration(s),
            SplitAt::Size(b) => crate::split::SplitBy::MaxSize(b),
        }
    }
}

impl std::fmt::Display for SplitAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            SplitAt::Duration(s) => write!(f, "{s} s"),
            SplitAt::Size(b) => write!(f, "{b} bytes"),
        }
    }
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            encoder: EncoderChoice::default(),
            profile: AacProfile::Lc,
            coder: AacCoder::Twoloop,
            jobs: 0,
            chapters: ChapterMode::Auto,
            allow_damaged: false,
            overwrite: false,
            verify: true,
            segment_frames: 0,
            silence: SilenceOptions::default(),
            snap_to_silence: None,
            split_at: None,
            audio: AudioMode::Auto,
        }
    }
}

impl ConvertOptions {
    /// Whether the conversion must find the audio's pauses.
    pub fn needs_pauses(&self) -> bool {
        self.chapters == ChapterMode::Silence || self.snap_to_silence.is_some()
    }

    /// Checks the chapter options that need checking (pause detection, snapping) and the
    /// split limit.
    pub fn validate_chapters(&self) -> Result<()> {
        if self.needs_pauses() {
            self.silence.validate()?;
        }
        if let Some(s) = &self.split_at {
            s.validate()?;
        }
        if let Some(w) = self.snap_to_silence {
            if !(w.is_finite() && w > 0.0 && w <= 600.0) {
                return Err(Error::Options(format!(
                    "snap window {w} s is out of range; use 0.1 to 600 s, e.g. 2s (--snap-to-silence)"
                )));
            }
        }
        Ok(())
    }

    /// The number of worker threads to use.
    pub fn effective_jobs(&self) -> usize {
        if self.jobs == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            self.jobs
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_limits_are_durations_or_sizes() {
        assert_eq!(SplitAt::parse("20h"), Ok(SplitAt::Duration(72_000.0)));
        assert_eq!(SplitAt::parse("11h30m"), Ok(SplitAt::Duration(41_400.0)));
        assert_eq!(SplitAt::parse("1:30:00"), Ok(SplitAt::Duration(5_400.0)));
        assert_eq!(SplitAt::parse(" 4GB "), Ok(SplitAt::Size(4_000_000_000)));
        assert_eq!(SplitAt::parse("3.5GiB"), Ok(SplitAt::Size(3_758_096_384)));
        for bad in ["", "soon", "20 parsecs", "4XB", "-1h", "0"] {
            let e = SplitAt::parse(bad).unwrap_err();
            assert!(e.contains("20h") && e.contains(bad.trim()), "{bad}: {e}");
        }
        assert!(SplitAt::Duration(0.5).validate().is_err());
        assert!(SplitAt::Size(1000).validate().is_err());
        assert!(SplitAt::Duration(1.0).validate().is_ok());
        assert!(SplitAt::Size(64 << 10).validate().is_ok());
        // Stored in a job's options and read back.
        let mut o = ConvertOptions::default();
        assert!(serde_json::to_value(&o).unwrap().get("split_at").is_none());
        o.split_at = Some(SplitAt::Size(4 << 30));
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["split_at"], serde_json::json!({ "size": 4u64 << 30 }));
        let back: ConvertOptions = serde_json::from_value(v).unwrap();
        assert_eq!(back.split_at, o.split_at);
        assert_eq!(
            o.split_at.unwrap().by(),
            crate::split::SplitBy::MaxSize(4 << 30)
        );
    }
}
