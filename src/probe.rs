//! One audio file (MP3, or any format `ALLOWED_INPUTS` accepts) → [`TrackInfo`]: format, rate, channels, bitrate, CBR/VBR, duration, ID3 tags,
//! embedded pictures — and proof that it decodes.
//!
//! FFmpeg (restricted to its mp3 demuxer, see `av::input`) opens the file and decodes
//! its first frames; symphonia reads the exact gapless length from the LAME/Xing header without
//! decoding. [`probe_all`] runs files in parallel on a rayon pool.
use crate::av;
use crate::error::{Error, Result};
use crate::model::{InputFormat, InputFormats, TrackInfo};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Cover pictures are sniffed from their header bytes where the demuxer reads them, in `av`.
pub use crate::av::picture::{image_facts, picture_from_bytes};

/// Frames decoded to prove a file is real MP3 audio (a renamed file fails on the first).
const PROBE_DECODE_PACKETS: usize = 8;

/// Probes one file as whatever audio it is (every format aiom4b takes).
pub fn probe_file(path: &Path) -> Result<TrackInfo> {
    probe_file_as(path, InputFormats::all())
}

/// Probes one file as whatever audio it is, if `allowed` accepts that.
pub fn probe_file_as(path: &Path, allowed: InputFormats) -> Result<TrackInfo> {
    // A FIFO reports 0 bytes and would be called empty; refuse it (or a device) for what it is.
    let meta = crate::regular::open_regular(path, "cannot read")?
        .metadata()
        .map_err(|e| Error::io(path, "cannot read", e))?;
    if meta.len() == 0 {
        let reason = "the file is empty (0 bytes)".to_string();
        let path = path.to_path_buf();
        return Err(if allowed.is_mp3_only() {
            Error::NotMp3 { path, reason }
        } else {
            Error::NotAudio { path, reason }
        });
    }
    let facts = av::input::probe_input(path, allowed, PROBE_DECODE_PACKETS)?;
    let (exact_samples, header_vbr) = match facts.format {
        InputFormat::Mp3 => header_facts(path),
        // Lossless and Vorbis/Opus streams are exact by their container; so is AAC in MP4
        // (edit list / iTunSMPB). Only raw ADTS has nothing to say.
        _ => (facts.length, Some(facts.sizes_vary)),
    };
    let duration = match exact_samples {
        Some(n) => std::time::Duration::from_secs_f64(n as f64 / facts.sample_rate as f64),
        None => facts.duration,
    };
    Ok(TrackInfo {
        path: path.to_path_buf(),
        size_bytes: meta.len(),
        sample_rate: facts.sample_rate,
        channels: facts.channels,
        bitrate_bps: facts.bitrate_bps,
        vbr: header_vbr.unwrap_or(facts.sizes_vary),
        exact_samples,
        duration,
        tags: facts.tags,
        cover: facts.pictures.first().cloned(),
        picture_count: facts.pictures.len(),
        format: facts.format,
        codec: facts.codec,
        chapters: facts.chapters,
        made_by_aiom4b: facts.made_by_aiom4b,
    })
}

/// Probes many files in parallel, keeping their order. Each entry is the file's own result, so
/// validation can list every bad file at once.
pub fn probe_all(paths: &[PathBuf]) -> Vec<Result<TrackInfo>> {
    probe_all_as(paths, InputFormats::all())
}

/// [`probe_all`] for the formats `allowed` accepts.
pub fn probe_all_as(paths: &[PathBuf], allowed: InputFormats) -> Vec<Result<TrackInfo>> {
    paths
        .par_iter()
        .map(|p| probe_file_as(p, allowed))
        .collect()
}

/// Exact gapless sample count (LAME header) and whether a Xing/VBRI header says VBR.
/// Both `None` when the file has no such header; errors here are not fatal (FFmpeg decides).
fn header_facts(path: &Path) -> (Option<u64>, Option<bool>) {
    use symphonia::core::formats::{FormatOptions, FormatReader};
    use symphonia::core::io::MediaSourceStream;
    let Ok(file) = std::fs::File::open(path) else {
        return (None, None);
    };
    let vbr = read_vbr_tag(path).map(|t| t.vbr);
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    // Symphonia's reader fails cleanly on damaged input; a panic here would only cost the
    // exact duration, so it is contained.
    let exact = crate::contained::contain(|| {
        let reader =
            symphonia::default::formats::MpaReader::try_new(mss, FormatOptions::default()).ok()?;
        let track = reader.tracks().first()?;
        // Exact only when the LAME tag gave delay/padding and the Xing tag gave a frame count
        // (which the reader gives with both already taken off); otherwise symphonia estimates
        // from the bitrate.
        match (track.delay, track.num_frames) {
            (Some(_), Some(n)) => Some(n),
            _ => None,
        }
    })
    .ok()
    .flatten();
    (exact, vbr)
}

/// What the Xing/Info/VBRI tag in the first MPEG frame of a file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VbrTag {
    /// A Xing or VBRI tag (VBR) rather than Info (CBR).
    pub vbr: bool,
    /// Where the MPEG stream starts: after the ID3v2 tags, if there are any.
    pub audio_start: u64,
    /// The stream's length in bytes as the tag gives it (its own frame included), if it does.
    pub stream_bytes: Option<u64>,
}

/// Reads the Xing (VBR), Info (CBR) or VBRI (VBR) tag of the first MPEG frame (through the one
/// MP3 byte parser, `mp3bytes`).
pub(crate) fn read_vbr_tag(path: &Path) -> Option<VbrTag> {
    let mut f = std::fs::File::open(path).ok()?;
    let t = crate::mp3bytes::read_vbr_tag(&mut f).ok()??;
    Some(VbrTag {
        vbr: t.is_vbr(),
        audio_start: t.audio_start,
        stream_bytes: t.bytes.map(u64::from),
    })
}
