//! Opening an audio file for FFmpeg without letting FFmpeg interpret the name or guess.
//!
//! The file is opened by Rust and handed to libavformat through a custom I/O context, so a
//! name like `concat:a.mp3|b.mp3` or `file:x.mp3` is only ever a file name, never a protocol;
//! no protocol is opened at all. The container is decided from the file's first bytes
//! (`scan::sniff_container`), and the demuxer is restricted to that one container by the format
//! whitelist, then the codec inside is checked against what that container may carry (MP4:
//! AAC or ALAC; Ogg: Vorbis or Opus; WAV: PCM …). So a PNG or a playlist renamed `.mp3` is
//! rejected instead of being demuxed as something else, and an M4A renamed `.mp3` is opened as
//! what it is.
//!
//! Exact lengths: libavcodec trims MP3's LAME delay/padding, Opus's pre-skip and end trim
//! (from the last granule position) and the priming of AAC in MP4 (from the edit list) itself.
//! It does not trim the end padding of AAC in MP4 (FFmpeg 5.1–7.1 ignore the edit list's
//! duration and `iTunSMPB`'s length for that), so [`AudioInput::length`] carries the exact
//! length the container gives and the decoder stops there (`decode::decode_file`).
use crate::error::{Error, Result};
use crate::model::{InputFormat, InputFormats};
use crate::scan::Container;
use ffmpeg_next as ff;
use std::path::{Path, PathBuf};

/// An opened audio file: the demuxer context and the index of its audio stream.
pub struct AudioInput {
    pub(crate) ctx: ff::format::context::Input,
    pub(crate) audio_index: usize,
    pub(crate) path: PathBuf,
    /// What the file is.
    pub(crate) format: InputFormat,
    /// The exact length in samples at the codec's rate when the container says it (not MP3:
    /// its LAME header is read by `probe`); decoding stops there.
    pub(crate) length: Option<u64>,
}

/// The MP3 path's name for an opened input (the ranged encoder opens MP3 only).
pub type Mp3Input = AudioInput;

/// Opens `path` as MP3 (and only as MP3).
pub fn open_mp3(path: &Path) -> Result<Mp3Input> {
    open_container(path, Container::Mpeg, InputFormats::mp3_only())
}

/// Opens `path` as whatever audio it is, if `allowed` accepts that.
pub fn open_input(path: &Path, allowed: InputFormats) -> Result<AudioInput> {
    let container = match crate::scan::sniff_container(path) {
        Ok(c) => c,
        Err(reason) => return Err(not_audio(path, allowed, None, reason)),
    };
    open_container(path, container, allowed)
}

/// The error for a file that is not usable audio: [`Error::NotMp3`] where MP3 is all that is
/// accepted or the file looks like MPEG audio (the specification's messages), else
/// [`Error::NotAudio`].
fn not_audio(
    path: &Path,
    allowed: InputFormats,
    container: Option<Container>,
    reason: String,
) -> Error {
    if allowed.is_mp3_only() || container == Some(Container::Mpeg) {
        Error::NotMp3 {
            path: path.to_path_buf(),
            reason,
        }
    } else {
        Error::NotAudio {
            path: path.to_path_buf(),
            reason,
        }
    }
}

fn open_container(path: &Path, container: Container, allowed: InputFormats) -> Result<AudioInput> {
    super::init();
    let fail = |reason: String| not_audio(path, allowed, Some(container), reason);
    if container != Container::Mpeg && allowed.is_mp3_only() {
        return Err(fail(format!(
            "it is {} audio, not MP3 (only MP3 is accepted: ALLOWED_INPUTS=mp3)",
            container.label()
        )));
    }
    // Regular files only: a FIFO swapped in after the scan must not block the demuxer.
    let file = crate::regular::open_regular(path, "cannot open")?;
    let io = ff::format::context::StreamIo::from_read_seek(file)
        .map_err(|e| Error::av(Some(path), "set up reading", e))?;
    let mut opts = ff::Dictionary::new();
    opts.set("format_whitelist", container.demuxer());
    // No protocol can be opened through a custom I/O context; the whitelist makes that explicit
    // should FFmpeg ever try to open a nested resource (an MP4 `dref` to another file).
    opts.set("protocol_whitelist", "none");
    let ctx = ff::format::input_from_stream(io, None, Some(opts)).map_err(|e| {
        fail(match e {
            ff::Error::InvalidData => format!(
                "FFmpeg's {} demuxer does not recognize it",
                if container == Container::Mpeg {
                    "MP3"
                } else {
                    container.label()
                }
            ),
            other => other.to_string(),
        })
    })?;
    let audio_index = ctx
        .streams()
        .find(|s| {
            s.parameters().medium() == ff::media::Type::Audio
                && s.disposition() & ff::format::stream::Disposition::ATTACHED_PIC
                    != ff::format::stream::Disposition::ATTACHED_PIC
        })
        .map(|s| s.index())
        .ok_or_else(|| fail("it has no audio stream".to_string()))?;
    let id = ctx
        .stream(audio_index)
        .map(|s| s.parameters().id())
        .unwrap_or(ff::codec::Id::None);
    let format = format_of(container, id).ok_or_else(|| {
        fail(match container {
            Container::Mpeg => format!("its audio is {id:?}, not MPEG layer III"),
            c => format!(
                "its audio is {id:?}, which aiom4b does not take from {} files",
                c.label()
            ),
        })
    })?;
    if !allowed.contains(format) {
        return Err(fail(format!(
            "it is {}, which this configuration does not accept (ALLOWED_INPUTS={allowed})",
            format.label()
        )));
    }
    let mut input = AudioInput {
        ctx,
        audio_index,
        path: path.to_path_buf(),
        format,
        length: None,
    };
    input.length = exact_length(&input);
    Ok(input)
}

/// The input format for a codec found in a container, when aiom4b takes that pair.
fn format_of(container: Container, id: ff::codec::Id) -> Option<InputFormat> {
    use ff::codec::Id;
    Some(match (container, id) {
        (Container::Mpeg, Id::MP3) => InputFormat::Mp3,
        (Container::Mp4, Id::AAC | Id::ALAC) => InputFormat::M4a,
        (Container::Adts, Id::AAC) => InputFormat::Aac,
        (Container::Flac, Id::FLAC) => InputFormat::Flac,
        (Container::Ogg, Id::VORBIS) => InputFormat::Vorbis,
        (Container::Ogg, Id::OPUS) => InputFormat::Opus,
        (
            Container::Wav,
            Id::PCM_U8
            | Id::PCM_S16LE
            | Id::PCM_S24LE
            | Id::PCM_S32LE
            | Id::PCM_F32LE
            | Id::PCM_F64LE,
        ) => InputFormat::Wav,
        _ => return None,
    })
}

/// The exact decoded length (samples per channel at the codec's rate) the container states:
/// - FLAC: STREAMINFO's total; WAV: the data size over the block size (FFmpeg's duration);
/// - Vorbis: the last granule position; Opus: the last granule position less the pre-skip
///   (FFmpeg's duration counts the pre-skip, its decoder drops it);
/// - AAC/ALAC in MP4: `iTunSMPB`'s original length when present, else the edit list's
///   duration (FFmpeg's duration after its edit-list handling), else the sample tables';
/// - MP3 (the LAME header, read by `probe`) and ADTS (nothing says): `None`.
fn exact_length(input: &AudioInput) -> Option<u64> {
    let st = input.ctx.stream(input.audio_index)?;
    // SAFETY: plain field reads of valid codec parameters.
    let (rate, initial_padding) = unsafe {
        let p = st.parameters().as_ptr();
        ((*p).sample_rate, (*p).initial_padding)
    };
    if rate <= 0 {
        return None;
    }
    let in_rate = |ticks: i64| -> Option<u64> {
        if ticks <= 0 {
            return None;
        }
        let tb = st.time_base();
        let (num, den) = (i128::from(tb.numerator()), i128::from(tb.denominator()));
        if num <= 0 || den <= 0 {
            return None;
        }
        let n = (i128::from(ticks) * num * i128::from(rate) + den / 2) / den;
        u64::try_from(n).ok()
    };
    match input.format {
        InputFormat::Mp3 | InputFormat::Aac => None,
        InputFormat::Flac | InputFormat::Wav | InputFormat::Vorbis => in_rate(st.duration()),
        InputFormat::Opus => {
            in_rate(st.duration()).map(|n| n.saturating_sub(initial_padding.max(0) as u64))
        }
        InputFormat::M4a => itunsmpb_length(&input.path).or_else(|| in_rate(st.duration())),
    }
}

/// The original length in `iTunSMPB` (iTunes' gapless info: ` 00000000 PRIMING PADDING
/// LENGTH …` in hex), from `moov/udta/meta/ilst/----`.
fn itunsmpb_length(path: &Path) -> Option<u64> {
    use crate::mp4box::{as_box_ref, meta_children, OpenedMp4};
    let mut mp4 = OpenedMp4::open(path, "read the MP4's gapless information").ok()?;
    // The moov of an audio file is sample tables and a cover; 64 MiB is far beyond any real one.
    let (top, buf) = mp4.read_moov(path, 64 << 20).ok()?;
    let moov = as_box_ref(&buf, &top);
    let meta = moov.descend(&[b"udta", b"meta"]).ok()??;
    let ilst = meta_children(&meta)
        .flatten()
        .find(|b| b.kind == *b"ilst")?;
    for item in ilst.children().flatten().filter(|b| b.kind == *b"----") {
        let mut name = None;
        let mut data = None;
        for c in item.children().flatten() {
            match &c.kind {
                b"name" if c.body.len() >= 4 => name = Some(&c.body[4..]),
                b"data" if c.body.len() >= 8 => data = Some(&c.body[8..]),
                _ => {}
            }
        }
        if name != Some(b"iTunSMPB".as_slice()) {
            continue;
        }
        let text = std::str::from_utf8(data?).ok()?;
        let fields: Vec<&str> = text.split_whitespace().collect();
        let length = u64::from_str_radix(fields.get(3)?, 16).ok()?;
        return (length > 0).then_some(length);
    }
    None
}

/// What [`probe_input`] learns from FFmpeg.
#[derive(Debug, Clone)]
pub struct InputFacts {
    /// What the file is.
    pub format: InputFormat,
    /// FFmpeg's codec name (`mp3`, `aac`, `alac`, `flac`, `vorbis`, `opus`, `pcm_s16le` …).
    pub codec: String,
    /// The container's exact length, when it states one (see [`AudioInput::length`]).
    pub length: Option<u64>,
    /// The file's own chapters (MP4 chapter track or `chpl`; Ogg/FLAC `CHAPTERnn` comments),
    /// at the codec's rate.
    pub chapters: Vec<crate::model::InnerChapter>,
    /// An MP4 whose encoding tool (`©too`) is aiom4b.
    pub made_by_aiom4b: bool,
    pub sample_rate: u32,
    pub channels: u16,
    pub bitrate_bps: u64,
    /// Header/bitrate estimate.
    pub duration: std::time::Duration,
    /// Packet sizes differ beyond the padding byte among the decoded frames (VBR hint).
    pub sizes_vary: bool,
    pub tags: crate::model::Tags,
    /// Embedded pictures, front cover first.
    pub pictures: Vec<crate::model::Picture>,
}

/// Opens `path` as whatever audio `allowed` accepts, reads its tags, pictures and chapters,
/// and decodes its first `decode_packets` packets to prove it is real audio.
pub fn probe_input(
    path: &Path,
    allowed: InputFormats,
    decode_packets: usize,
) -> Result<InputFacts> {
    let mut input = open_input(path, allowed)?;
    let format = input.format;
    let fail = |reason: String| not_audio(path, allowed, None, reason);
    let (sample_rate, channels, bitrate_bps, duration, params, time_base) = {
        let st = input
            .ctx
            .stream(input.audio_index)
            .expect("audio stream index is valid");
        let par = st.parameters();
        // SAFETY: plain field reads of valid codec parameters.
        let (rate, ch, br) = unsafe {
            let p = par.as_ptr();
            ((*p).sample_rate, (*p).ch_layout.nb_channels, (*p).bit_rate)
        };
        let dur_us = input.ctx.duration().max(0) as u64;
        (
            rate.max(0) as u32,
            ch.max(0) as u16,
            br.max(0) as u64,
            std::time::Duration::from_micros(dur_us),
            par,
            st.time_base(),
        )
    };
    if sample_rate == 0 || channels == 0 {
        return Err(fail(if format == InputFormat::Mp3 {
            "no valid MPEG audio header found".into()
        } else {
            "its audio stream has no sample rate or channels".into()
        }));
    }
    let codec = params.id().name().to_string();
    let mut tags = read_tags(&input.ctx.metadata());
    if tags == crate::model::Tags::default() {
        // Ogg keeps its Vorbis comments on the stream, not the file.
        if let Some(st) = input.ctx.stream(input.audio_index) {
            tags = read_tags(&st.metadata());
        }
    }
    let pictures = read_pictures(&input);
    let chapters = read_chapters(&input, sample_rate);
    // movenc's `©too` comes back as "encoder".
    let made_by_aiom4b = format == InputFormat::M4a
        && input
            .ctx
            .metadata()
            .get("encoder")
            .is_some_and(|e| e.starts_with("aiom4b"));

    // Decode a few packets: a file that merely starts like MP3 fails here.
    let mut ctx = ff::codec::context::Context::from_parameters(params)
        .map_err(|e| Error::av(Some(path), "read the stream parameters", e))?;
    // SAFETY: ctx is a valid, unopened context we own.
    unsafe {
        (*ctx.as_mut_ptr()).pkt_timebase = time_base.into();
    }
    let mut dec = ctx.decoder().audio().map_err(|e| {
        fail(format!(
            "the {} decoder cannot open it ({e})",
            if format == InputFormat::Mp3 {
                "MP3"
            } else {
                codec.as_str()
            }
        ))
    })?;
    let mut frame = ff::frame::Audio::empty();
    let (mut sent, mut decoded, mut errors) = (0usize, 0usize, 0usize);
    let mut sizes: Vec<usize> = Vec::new();
    while sent < decode_packets {
        // A fresh packet per read: av_read_frame does not release what a reused packet holds,
        // so reusing one leaks every packet's buffer.
        let mut packet = ff::Packet::empty();
        match packet.read(&mut input.ctx) {
            Ok(()) => {}
            Err(_) => break,
        }
        if packet.stream() != input.audio_index {
            continue;
        }
        sent += 1;
        sizes.push(packet.size());
        if dec.send_packet(&packet).is_err() {
            errors += 1;
            continue;
        }
        while dec.receive_frame(&mut frame).is_ok() {
            decoded += 1;
        }
    }
    let _ = dec.send_eof();
    while dec.receive_frame(&mut frame).is_ok() {
        decoded += 1;
    }
    if decoded == 0 {
        return Err(fail(if sent == 0 && format == InputFormat::Mp3 {
            "it contains no MPEG audio frames (only a tag, or not audio)".into()
        } else if sent == 0 {
            "it contains no audio packets".into()
        } else {
            format!("none of its first {sent} frames decode ({errors} errors)")
        }));
    }
    let (lo, hi) = sizes
        .iter()
        .skip(1) // the first frame may be the Xing/Info frame
        .fold((usize::MAX, 0), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
    Ok(InputFacts {
        format,
        codec,
        length: input.length,
        chapters,
        made_by_aiom4b,
        sample_rate,
        channels,
        bitrate_bps,
        duration,
        sizes_vary: lo != usize::MAX && hi > lo + 1,
        tags,
        pictures,
    })
}

fn read_tags(md: &ff::DictionaryRef<'_>) -> crate::model::Tags {
    let get = |keys: &[&str]| -> Option<String> {
        keys.iter()
            .find_map(|k| md.get(k))
            .map(|v| v.trim().trim_end_matches('\0').to_string())
            .filter(|v| !v.is_empty())
    };
    let pair = |keys: &[&str]| -> (Option<u32>, Option<u32>) {
        match get(keys) {
            Some(v) => {
                let mut it = v.splitn(2, '/');
                let n = it.next().and_then(|x| x.trim().parse().ok());
                let t = it.next().and_then(|x| x.trim().parse().ok());
                (n, t)
            }
            None => (None, None),
        }
    };
    let (track, track_total) = pair(&["track", "TRCK", "tracknumber"]);
    let (disc, disc_total) = pair(&["disc", "TPOS", "discnumber"]);
    crate::model::Tags {
        title: get(&["title", "TIT2"]),
        album: get(&["album", "TALB"]),
        artist: get(&["artist", "TPE1"]),
        album_artist: get(&["album_artist", "TPE2"]),
        composer: get(&["composer", "TCOM"]),
        genre: get(&["genre", "TCON"]),
        year: get(&["date", "TDRC", "TYER", "year"]),
        track,
        track_total,
        disc,
        disc_total,
        comment: get(&["comment", "COMM"]),
    }
}

/// The file's own chapters from FFmpeg's demuxer (MP4 chapter track or Nero `chpl`, Vorbis
/// comment `CHAPTERnn`), as starts at `rate` with their titles, sorted, the first at 0.
/// A single chapter says nothing a file's own chapter would not, so it counts as none.
fn read_chapters(input: &AudioInput, rate: u32) -> Vec<crate::model::InnerChapter> {
    let mut out: Vec<crate::model::InnerChapter> = input
        .ctx
        .chapters()
        .filter_map(|c| {
            let tb = c.time_base();
            let (num, den) = (i128::from(tb.numerator()), i128::from(tb.denominator()));
            if num <= 0 || den <= 0 || c.start() < 0 {
                return None;
            }
            let start = (i128::from(c.start()) * num * i128::from(rate) + den / 2) / den;
            let title = c
                .metadata()
                .get("title")
                .map(|t| t.trim().to_string())
                .unwrap_or_default();
            Some(crate::model::InnerChapter {
                start_samples: u64::try_from(start).ok()?,
                title,
            })
        })
        .collect();
    out.sort_by_key(|c| c.start_samples);
    out.dedup_by_key(|c| c.start_samples);
    if let Some(first) = out.first_mut() {
        first.start_samples = 0;
    }
    if out.len() < 2 {
        out.clear();
    }
    out
}

fn read_pictures(input: &AudioInput) -> Vec<crate::model::Picture> {
    let mut front = Vec::new();
    let mut other = Vec::new();
    for st in input.ctx.streams() {
        if st.disposition() & ff::format::stream::Disposition::ATTACHED_PIC
            != ff::format::stream::Disposition::ATTACHED_PIC
        {
            continue;
        }
        // SAFETY: attached_pic is a packet owned by the stream, filled by the demuxer.
        let data = unsafe {
            let p = &(*st.as_ptr()).attached_pic;
            if p.data.is_null() || p.size <= 0 {
                continue;
            }
            std::slice::from_raw_parts(p.data, p.size as usize).to_vec()
        };
        let Some(pic) = super::picture::picture_from_bytes(data) else {
            continue;
        };
        let is_front = st
            .metadata()
            .get("comment")
            .map(|c| c.eq_ignore_ascii_case("Cover (front)"))
            .unwrap_or(false);
        if is_front {
            front.push(pic);
        } else {
            other.push(pic);
        }
    }
    front.extend(other);
    front
}
