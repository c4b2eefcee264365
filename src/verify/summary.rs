//! The public data of a verification: the normalized [`M4bSummary`] an independent reader
//! makes of an `.m4b`, and the [`Expectations`] it is checked against.
use super::DEFAULT_TOLERANCE_SAMPLES;
use crate::model::{BookMetadata, Chapter};
use crate::options::AacProfile;
use serde::Serialize;
use std::path::PathBuf;

/// A normalized summary of an `.m4b` as an independent reader sees it.
#[derive(Debug, Clone, Serialize)]
pub struct M4bSummary {
    /// The file that was read.
    pub path: PathBuf,
    /// Its size in bytes.
    pub file_size: u64,
    /// `ftyp` major brand; FFmpeg 5.1's `ipod` muxer writes `M4A `.
    pub major_brand: String,
    /// `ftyp` compatible brands, in file order (e.g. `["M4A ", "mp42", "isom"]`).
    pub compatible_brands: Vec<String>,
    /// Top-level boxes in file order, e.g. `["ftyp", "moov", "free", "mdat"]`.
    pub top_level: Vec<String>,
    /// `moov` comes before the first `mdat` (players can start without reading the whole file).
    pub faststart: bool,
    /// Some track uses 64-bit chunk offsets (`co64`) rather than `stco`.
    pub uses_co64: bool,
    /// Every track in `moov`, in file order (audio, chapter text, …).
    pub tracks: Vec<TrackSummary>,
    /// Number of sound (`soun`) tracks; an aiom4b book has exactly one. Only the first is
    /// summarized.
    pub audio_tracks: usize,
    /// `"aac"` for MPEG-4 AAC in `mp4a`, else the sample entry type; `"none"` without audio.
    pub codec: String,
    /// AAC profile from the AudioSpecificConfig (`"LC"`, `"HE-AAC"`, `"HE-AACv2"` …).
    pub profile: Option<String>,
    /// The rate and channels a full decoder outputs.
    pub sample_rate: u32,
    /// Channel count a full decoder outputs (1 = mono, 2 = stereo).
    pub channels: u16,
    /// What the AAC core alone decodes to (an AAC-LC-only decoder, such as Symphonia's):
    /// half the rate under dual-rate SBR (HE-AAC), one channel under parametric stereo
    /// (HE-AAC v2); otherwise the same as `sample_rate` and `channels`.
    pub core_sample_rate: u32,
    /// Channel count of the AAC core (see `core_sample_rate`).
    pub core_channels: u16,
    /// Presentation length in samples (priming removed); see the module docs.
    pub decoded_samples: u64,
    /// Presentation length in seconds (`decoded_samples / sample_rate`).
    pub duration_secs: f64,
    /// Audio payload bits per second of presentation.
    pub bitrate_bps: u64,
    /// The numbers `decoded_samples` comes from, and its decoder cross-check.
    pub length: AudioLength,
    /// The QuickTime chapter track referenced by the audio track's `tref/chap`.
    pub chapter_track: Option<ChapterTrackSummary>,
    /// The Nero chapter list `moov/udta/chpl`.
    pub chpl: Option<ChplSummary>,
    /// The iTunes-style tags.
    pub tags: TagSummary,
    /// The `covr` cover image, if there is one.
    pub cover: Option<CoverSummary>,
    /// Disagreements between the readers and internal contradictions of the file.
    /// Each one is a problem for [`check`](super::check).
    pub inconsistencies: Vec<String>,
}

/// One track as listed in `moov`.
#[derive(Debug, Clone, Serialize)]
pub struct TrackSummary {
    /// The track ID from `tkhd`.
    pub id: u32,
    /// Handler type: `soun`, `text`, `vide` …
    pub handler: String,
    /// Sample entry type: `mp4a`, `text` …
    pub sample_entry: Option<String>,
    /// The media timescale: ticks per second of the track's own times.
    pub timescale: u32,
    /// Number of MP4 samples (`stsz` entries): AAC packets in an audio track, one chapter per
    /// sample in a chapter text track.
    pub samples: u64,
}

/// Where the presentation length comes from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AudioLength {
    /// Samples hidden at the start by the edit list (`elst` media_time): encoder priming.
    pub priming_samples: u64,
    /// Duration of the audio edit in samples (rounded up from the movie timescale, so it is
    /// only precise to one movie tick: 1 ms = 44.1 samples with FFmpeg's timescale 1000).
    pub edit_duration_samples: Option<u64>,
    /// Sum of the `stts` durations: every coded sample, priming included, tail trimmed.
    pub stts_samples: u64,
    /// Number of audio packets (`stsz` entries).
    pub packets: u64,
    /// Packets the AAC decoder decoded without error.
    pub decoded_packets: u64,
    /// Samples the AAC decoder produced for all packets (priming and the full last frame), in
    /// output samples: Symphonia decodes only the AAC core, so under dual-rate SBR its count
    /// is doubled.
    pub decoder_samples: u64,
    /// Packets the AAC decoder rejected; any is a problem for [`check`](super::check).
    pub decode_errors: u64,
    /// The decoder's message for the first rejected packet.
    pub first_decode_error: Option<String>,
    /// How `decoded_samples` was derived.
    pub source: String,
}

/// One chapter mark as read back. `start_samples` is in the audio's sample rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChapterMark {
    /// The chapter title as stored (a `chpl` title is cut at 255 bytes).
    pub title: String,
    /// Presentation start in samples (per channel) at the audio's sample rate.
    pub start_samples: u64,
    /// Presentation start in seconds.
    pub start_secs: f64,
}

/// The QuickTime chapter track.
#[derive(Debug, Clone, Serialize)]
pub struct ChapterTrackSummary {
    /// The chapter track's ID (the one `tref/chap` names).
    pub track_id: u32,
    /// The track's media timescale (FFmpeg: 1000).
    pub timescale: u32,
    /// The chapters in track order.
    pub chapters: Vec<ChapterMark>,
}

/// The Nero chapter list (`chpl`).
#[derive(Debug, Clone, Serialize)]
pub struct ChplSummary {
    /// VLC reads only version 1.
    pub version: u8,
    /// The 8-bit entry count in the box (FFmpeg writes at most 255 entries).
    pub declared_count: u8,
    /// The entries as read (times converted from 100 ns units).
    pub chapters: Vec<ChapterMark>,
}

/// iTunes-style tags from `moov/udta/meta/ilst`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TagSummary {
    /// `©nam`
    pub title: Option<String>,
    /// `©ART`
    pub artist: Option<String>,
    /// `aART`
    pub album_artist: Option<String>,
    /// `©alb`
    pub album: Option<String>,
    /// `©wrt`
    pub composer: Option<String>,
    /// `©gen`
    pub genre: Option<String>,
    /// `©day`
    pub date: Option<String>,
    /// `©cmt`
    pub comment: Option<String>,
    /// `desc`
    pub description: Option<String>,
    /// `ldes`
    pub long_description: Option<String>,
    /// `©nrt`
    pub narrator: Option<String>,
    /// `©too`
    pub encoder: Option<String>,
    /// `stik` (2 = audiobook)
    pub media_type: Option<u8>,
    /// `----:com.apple.iTunes:SERIES`, else `©mvn`
    pub series: Option<String>,
    /// `----:com.apple.iTunes:SERIES-PART`, else `©mvi`
    pub series_part: Option<String>,
    /// Every item key in file order (`©nam`, `----:com.apple.iTunes:SERIES` …).
    pub keys: Vec<String>,
}

/// The cover image.
#[derive(Debug, Clone, Serialize)]
pub struct CoverSummary {
    /// `jpeg`, `png` or what else the data looks like.
    pub format: String,
    /// Size of the (first) image in bytes.
    pub bytes: u64,
    /// Stored as the iTunes `covr` item (what players read), not only as a video track.
    pub in_covr: bool,
    /// Number of images in `covr`.
    pub count: usize,
}

/// What the written file should contain.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// Output sample rate in Hz a full decoder must report.
    pub sample_rate: u32,
    /// Output channel count a full decoder must report.
    pub channels: u16,
    /// Presentation length in output samples, when known.
    pub total_samples: Option<u64>,
    /// See [`DEFAULT_TOLERANCE_SAMPLES`].
    pub tolerance_samples: u64,
    /// The chapters as planned (starts in output samples); `Some(vec![])` = no chapters.
    pub chapters: Option<Vec<Chapter>>,
    /// The metadata as planned; only the `Some` fields are compared.
    pub metadata: Option<BookMetadata>,
    /// A cover must be present (`true`) or absent (`false`).
    pub cover: bool,
    /// The AAC profile the encoder was asked for; `None` accepts any.
    pub profile: Option<AacProfile>,
}

impl Expectations {
    /// Expects the given format and nothing else (no length, chapters, metadata or cover).
    pub fn new(sample_rate: u32, channels: u16) -> Self {
        Expectations {
            sample_rate,
            channels,
            total_samples: None,
            tolerance_samples: DEFAULT_TOLERANCE_SAMPLES,
            chapters: None,
            metadata: None,
            cover: false,
            profile: Some(AacProfile::Lc),
        }
    }
}
