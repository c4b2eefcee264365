//! Decoding one MP3 file into planar `f32` PCM at the book's output rate and channel count.
//!
//! Gapless: the MP3 demuxer attaches the LAME encoder delay and padding as skip-samples side
//! data, and libavcodec trims them as long as the decoder knows the packet time base. So the
//! samples that come out are exactly the ones the original encoder was given.
//!
//! Rate conversion goes through swresample, one resampler per file, created at the file's first
//! frame and flushed at its end: nothing is lost or invented at the joins, and each file's
//! output depends on that file alone. Channel conversion is done here, after resampling, not by
//! swresample, because swresample's default matrix scales mono→stereo by −3 dB and stereo→mono
//! by +3 dB (clipping on loud centred speech). Audiobook listeners expect a mono file to sound
//! as loud as a stereo one, so mono is duplicated and stereo is averaged.
//!
//! # What the multi-core path relies on
//!
//! The ranged encoder (`pipeline::encode_ranges`) must know every resampled file's output length
//! before decoding, and must resample a stretch in the middle of a file exactly as this file-long
//! resampler does. swresample's defaults (a 32-tap polyphase filter, `exact_rational`: for the
//! MP3 rates to the usual output rates the phase count is the reduced ratio's numerator, so
//! output `j` is the filter at exactly `j · in/out`, with no rounding of the phase) make both
//! possible; measured on FFmpeg 5.1 for every MP3 rate to 22.05, 44.1 and 48 kHz:
//!
//! - the output does not depend on how the input is cut into calls (bit for bit);
//! - with `P`/`Q` the ratio in lowest terms (`in/out`), `n + P` input samples give exactly `Q`
//!   more output samples than `n` once `n` is past twice the filter length (≤ 72 samples);
//!   below that the count is irregular (fewer than about 30 samples give none at all). So
//!   [`resampled_len`] runs the resampler on silence of a short length congruent to `n` modulo
//!   `P` and adds whole periods;
//! - a fresh resampler started at input sample `m·P` gives output `m·Q + k` bit for bit for every
//!   `k` past its first few dozen (its start mirrors the signal instead of seeing the real audio
//!   before it; at most 83 outputs differ, for 8 kHz → 44.1 kHz) to the end of the file,
//!   flush included. [`RESAMPLE_PREROLL`] real input samples before the wanted one cover that
//!   many times over.
//!
//! The tests (`tests/integration/ranges.rs`) check all three against [`decode_file`] on MP3
//! files, so a swresample that behaved otherwise would fail them rather than shift a chapter.
use super::input::{AudioInput, Mp3Input};
use crate::error::{Error, Result};
use ff::ffi;
use ffmpeg_next as ff;

/// Planar PCM: one `Vec<f32>` per output channel, all the same length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PcmChunk {
    pub planes: Vec<Vec<f32>>,
}

impl PcmChunk {
    pub fn with_capacity(channels: usize, samples: usize) -> Self {
        PcmChunk {
            planes: (0..channels).map(|_| Vec::with_capacity(samples)).collect(),
        }
    }
    /// Samples per channel.
    pub fn len(&self) -> usize {
        self.planes.first().map_or(0, |p| p.len())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What decoding one file produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Samples per channel delivered at the output rate (after resampling).
    pub output_samples: u64,
    /// Samples per channel decoded at the file's own rate (after gapless trimming).
    pub source_samples: u64,
    /// Packets or frames the decoder rejected or flagged as corrupt.
    pub damaged_frames: u64,
    /// The first decode error's text, for the message.
    pub first_error: Option<String>,
}

/// Decodes `input`, converts to `out_rate`/`out_channels`, and hands chunks of about
/// `chunk_samples` samples to `sink` in order. `cancelled` is polled per packet.
pub fn decode_file(
    input: Mp3Input,
    out_rate: u32,
    out_channels: usize,
    chunk_samples: usize,
    cancelled: &dyn Fn() -> bool,
    sink: &mut dyn FnMut(PcmChunk) -> Result<()>,
) -> Result<DecodeStats> {
    decode_file_while(
        input,
        out_rate,
        out_channels,
        chunk_samples,
        cancelled,
        &mut |chunk| sink(chunk).map(|()| true),
    )
    .map(|(stats, _)| stats)
}

/// [`decode_file`] that stops as soon as `sink` returns `false`: the ranged encoder's workers
/// take a stretch of a file that is not MP3 this way (from its start, as the in-order path
/// decodes it, so the samples are the same). Returns the statistics so far and whether the
/// whole file was decoded (`false`: stopped by `sink`; its decoder and resampler are not
/// flushed, so the length then says nothing).
pub fn decode_file_while(
    mut input: Mp3Input,
    out_rate: u32,
    out_channels: usize,
    chunk_samples: usize,
    cancelled: &dyn Fn() -> bool,
    sink: &mut dyn FnMut(PcmChunk) -> Result<bool>,
) -> Result<(DecodeStats, bool)> {
    let path = input.path.clone();
    let av = |what: &str, e: ff::Error| Error::av(Some(&path), what.to_string(), e);
    let stream = input
        .ctx
        .stream(input.audio_index)
        .ok_or_else(|| Error::NotMp3 {
            path: path.clone(),
            reason: "audio stream vanished".into(),
        })?;
    let time_base = stream.time_base();
    let mut decoder =
        open_decoder(stream.parameters(), time_base).map_err(|(what, e)| av(what, e))?;

    let length = input.length;
    let mut stats = DecodeStats::default();
    let mut resampler: Option<Resampler> = None;
    let mut pending = PcmChunk::with_capacity(out_channels, chunk_samples + 4096);
    let mut frame = ff::frame::Audio::empty();

    let audio_index = input.audio_index;
    // Cleared when `sink` has had enough; nothing more is handed to it.
    let more = std::cell::Cell::new(true);
    let mut emit = |planes: &[&[f32]],
                    pending: &mut PcmChunk,
                    stats: &mut DecodeStats,
                    flush: bool|
     -> Result<()> {
        if let Some(first) = planes.first() {
            let n = first.len();
            stats.output_samples += n as u64;
            remix_into(planes, &mut pending.planes);
        }
        if pending.len() >= chunk_samples || (flush && !pending.is_empty()) {
            let full = std::mem::replace(
                pending,
                PcmChunk::with_capacity(out_channels, chunk_samples + 4096),
            );
            if more.get() && !sink(full)? {
                more.set(false);
            }
        }
        Ok(())
    };

    let mut handle_frame = |frame: &ff::frame::Audio,
                            resampler: &mut Option<Resampler>,
                            pending: &mut PcmChunk,
                            stats: &mut DecodeStats|
     -> Result<()> {
        let mut n = frame.samples();
        // The container's exact length ends the file where the decoder would not (AAC's end
        // padding in MP4, see `input`); everywhere else it is where the decoder stops anyway.
        if let Some(limit) = length {
            n = n.min(limit.saturating_sub(stats.source_samples) as usize);
        }
        if n == 0 {
            return Ok(());
        }
        if frame.is_corrupt() || frame.has_decode_errors() {
            stats.damaged_frames += 1;
            stats
                .first_error
                .get_or_insert_with(|| "corrupt frame".into());
        }
        stats.source_samples += n as u64;
        let in_ch = frame.channels() as usize;
        let converted;
        let planes: Vec<&[f32]> =
            if frame.format() == ff::format::Sample::F32(ff::format::sample::Type::Planar) {
                (0..in_ch).map(|c| &frame.plane::<f32>(c)[..n]).collect()
            } else {
                // MP3, AAC and Vorbis decode to planar f32; FLAC, ALAC, PCM and Opus do not.
                converted = to_planar_f32(frame, n).ok_or_else(|| Error::NotAudio {
                    path: path.clone(),
                    reason: format!("unexpected decoded sample format {:?}", frame.format()),
                })?;
                converted.iter().map(Vec::as_slice).collect()
            };
        if frame.rate() == out_rate {
            return emit(&planes, pending, stats, false);
        }
        let rs = match resampler {
            Some(r) if r.in_rate == frame.rate() && r.channels == in_ch => r,
            _ => {
                // A rate change inside one file (rare, but legal in MP3): flush the old resampler
                // so its buffered tail is not lost, then start a new one.
                if let Some(mut old) = resampler.take() {
                    let tail = old.flush().map_err(|e| av("flush the resampler", e))?;
                    let refs: Vec<&[f32]> = tail.iter().map(|v| v.as_slice()).collect();
                    emit(&refs, pending, stats, false)?;
                }
                resampler.insert(
                    Resampler::new(frame.rate(), out_rate, in_ch)
                        .map_err(|e| av("set up the resampler", e))?,
                )
            }
        };
        let out = rs.convert(&planes).map_err(|e| av("resample", e))?;
        let refs: Vec<&[f32]> = out.iter().map(|v| v.as_slice()).collect();
        emit(&refs, pending, stats, false)
    };

    loop {
        if cancelled() {
            return Err(Error::Cancelled);
        }
        // A fresh packet per read: av_read_frame does not release what a reused packet holds,
        // so reusing one leaks every packet's buffer.
        let mut packet = ff::Packet::empty();
        match packet.read(&mut input.ctx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(e) => {
                // A read error in the middle of a file is damage (truncated or unreadable data).
                stats.damaged_frames += 1;
                stats
                    .first_error
                    .get_or_insert_with(|| format!("read error: {e}"));
                break;
            }
        }
        if packet.stream() != audio_index {
            continue;
        }
        if length.is_some() {
            // The container's exact length is the one authority for the end: FFmpeg 5.1's Ogg
            // demuxer computes the last packet's end trim wrongly for some page layouts (a
            // Vorbis file of 23 049 samples decodes to 22 921, one of 700 to 1 600), so the
            // demuxer's end trim is dropped and the decoder is stopped at the length instead.
            // The start trim (priming, pre-skip) is kept: FFmpeg gets that right.
            clear_end_trim(&mut packet);
        }
        match decoder.send_packet(&packet) {
            Ok(()) => {}
            Err(ff::Error::Other { errno }) if errno == ffi::EAGAIN => {}
            Err(e) => {
                stats.damaged_frames += 1;
                stats.first_error.get_or_insert_with(|| e.to_string());
                continue;
            }
        }
        drain(&mut decoder, &mut frame, &mut |f| {
            handle_frame(f, &mut resampler, &mut pending, &mut stats)
        })?;
        if !more.get() {
            return Ok((stats, false));
        }
    }
    // Flush the decoder (the last frames and the end-padding trim), then the resampler.
    let _ = decoder.send_eof();
    drain(&mut decoder, &mut frame, &mut |f| {
        handle_frame(f, &mut resampler, &mut pending, &mut stats)
    })?;
    if let Some(mut rs) = resampler.take() {
        let tail = rs.flush().map_err(|e| av("flush the resampler", e))?;
        let refs: Vec<&[f32]> = tail.iter().map(|v| v.as_slice()).collect();
        emit(&refs, &mut pending, &mut stats, false)?;
    }
    emit(&[], &mut pending, &mut stats, true)?;
    Ok((stats, true))
}

/// Opens the decoder of a stream with parameters `params` and packet time base `tb`, or says
/// which step failed.
pub(crate) fn open_decoder(
    params: ff::codec::Parameters,
    tb: ff::Rational,
) -> std::result::Result<ff::decoder::Audio, (&'static str, ff::Error)> {
    let mut ctx = ff::codec::context::Context::from_parameters(params)
        .map_err(|e| ("read the stream parameters", e))?;
    // Without the packet time base libavcodec cannot apply the end-padding trim of the last
    // packet, and an MP3 would come out up to one frame long.
    // SAFETY: ctx is a valid, not yet opened codec context that we own.
    unsafe {
        (*ctx.as_mut_ptr()).pkt_timebase = tb.into();
    }
    ctx.decoder().audio().map_err(|e| ("open the decoder", e))
}

/// Whether a stretch of `input` can be decoded from a seek with the samples a decode from its
/// start gives there, at `out_rate` (no resampling: a resampler's state cannot be sought), and
/// how many packets before the stretch the decoder must see first. Every packet must carry its
/// exact first sample (a time base of one sample):
/// - FLAC, PCM in WAV, ALAC in MP4: packets decode on their own (pre-roll 0);
/// - AAC-LC in MP4: a packet's samples overlap the packet before's (the MDCT), so one packet
///   of pre-roll gives them exactly; two are taken. The one thing a decoder carries further
///   is the random generator of perceptual noise substitution: a stream that uses it decodes
///   with other noise (of the same spectrum) in those bands after a seek. HE-AAC is not
///   sought (its SBR carries state from packet to packet).
///
/// Vorbis and Opus are not sought: their Ogg pages time packets only by page, and Opus
/// carries state.
pub fn seek_preroll(input: &AudioInput, out_rate: u32) -> Option<u32> {
    use crate::model::InputFormat;
    let stream = input.ctx.stream(input.audio_index)?;
    let tb = stream.time_base();
    let params = stream.parameters();
    // SAFETY: `params` points at the stream's codec parameters, valid while `input` is.
    let (rate, id, profile) = unsafe {
        let p = params.as_ptr();
        ((*p).sample_rate, (*p).codec_id, (*p).profile)
    };
    if rate <= 0 || rate as u32 != out_rate || tb.numerator() != 1 || tb.denominator() != rate {
        return None;
    }
    // FFmpeg's profile number of AAC-LC (`FF_PROFILE_AAC_LOW`).
    const AAC_LOW: i32 = 1;
    match (input.format, id) {
        (InputFormat::Flac, _) | (InputFormat::Wav, _) => Some(0),
        (InputFormat::M4a, ffi::AVCodecID::AV_CODEC_ID_ALAC) => Some(0),
        (InputFormat::M4a, ffi::AVCodecID::AV_CODEC_ID_AAC) if profile == AAC_LOW => Some(2),
        _ => None,
    }
}

/// What [`decode_seeking`] decoded.
#[derive(Debug, Default)]
pub struct SeekDecode {
    /// The file's sample after the last one decoded (capped at its stated length).
    pub end: u64,
    /// Decoded to the end of the file (not stopped by the sink).
    pub whole: bool,
    /// Packets that did not decode to their stated length, or did not follow the one before.
    pub damaged: u64,
    pub first_error: Option<String>,
}

/// Decodes a file that [`seek_preroll`] allows, at its own rate, from its sample `from` to its
/// end (its stated length) or until `sink` returns `false`, remixed to `out_channels`: the
/// demuxer seeks to the packet holding `from` less `preroll` packets (libavformat's own seek,
/// which lands at or before it), packets before that are read but not decoded, the pre-roll
/// is decoded and dropped, and every packet from there on must follow the one before and
/// decode to its stated duration (else it counts as damage). The samples are those
/// [`decode_file`] gives from the file's start. Returns `None` when the demuxer cannot vouch
/// for where it landed (no timestamps, another time base, a seek that fails, lands after the
/// pre-roll or in the priming): the caller then decodes from the start.
pub fn decode_seeking(
    mut input: AudioInput,
    from: u64,
    preroll: u32,
    out_channels: usize,
    cancelled: &dyn Fn() -> bool,
    sink: &mut dyn FnMut(&[&[f32]]) -> Result<bool>,
) -> Result<Option<SeekDecode>> {
    let path = input.path.clone();
    let av = |what: &str, e: ff::Error| Error::av(Some(&path), what.to_string(), e);
    let index = input.audio_index;
    let Some(stream) = input.ctx.stream(index) else {
        return Ok(None);
    };
    let tb = stream.time_base();
    let params = stream.parameters();
    // SAFETY: `params` points at the stream's codec parameters, valid while `input` is.
    let (rate, frame_size) = unsafe {
        (
            (*params.as_ptr()).sample_rate,
            (*params.as_ptr()).frame_size,
        )
    };
    if rate <= 0 || tb.numerator() != 1 || tb.denominator() != rate {
        return Ok(None);
    }
    let Some(length) = input.length else {
        return Ok(None);
    };
    let mut decoder = open_decoder(params, tb).map_err(|(what, e)| av(what, e))?;
    // Where decoding starts: `preroll` packets of the codec's frame size before `from`.
    let start = from.saturating_sub(u64::from(preroll) * frame_size.max(1) as u64);
    if preroll > 0 && start == 0 {
        // Near the start (in the priming, for AAC) nothing is saved by seeking.
        return Ok(None);
    }
    if start > 0 {
        // By hand because ffmpeg-next's `seek` takes AV_TIME_BASE units over all streams; this
        // is libavformat's `av_seek_frame` on the audio stream, in its own time base.
        // SAFETY: the context is the open input's; `index` is one of its streams.
        let r = unsafe {
            ff::ffi::av_seek_frame(
                input.ctx.as_mut_ptr(),
                index as i32,
                start as i64,
                ff::ffi::AVSEEK_FLAG_BACKWARD as _,
            )
        };
        if r < 0 {
            return Ok(None);
        }
    }
    // Packets decoded so far; the first `preroll` only set the decoder up.
    let mut decoded = 0u32;
    let mut out = SeekDecode::default();
    let mut next: Option<u64> = None;
    let mut frame = ff::frame::Audio::empty();
    let mut scratch: Vec<Vec<f32>> = vec![Vec::new(); out_channels];
    let damage = |out: &mut SeekDecode, why: String| {
        out.damaged += 1;
        out.first_error.get_or_insert(why);
    };
    loop {
        if cancelled() {
            return Err(Error::Cancelled);
        }
        let mut packet = ff::Packet::empty();
        match packet.read(&mut input.ctx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(e) => {
                damage(&mut out, format!("read error: {e}"));
                break;
            }
        }
        if packet.stream() != index {
            continue;
        }
        let (Some(pts), d) = (packet.pts(), packet.duration()) else {
            if next.is_none() {
                return Ok(None);
            }
            damage(&mut out, "a packet without a timestamp".into());
            break;
        };
        if pts < 0 || d <= 0 {
            if next.is_none() {
                return Ok(None);
            }
            damage(&mut out, format!("a packet at {pts} of {d} samples"));
            break;
        }
        let (pts, d) = (pts as u64, d as u64);
        match next {
            // Landed after the pre-roll: nothing here can vouch for what came before.
            None if pts > start => return Ok(None),
            Some(n) if n != pts => {
                damage(
                    &mut out,
                    format!("a packet at sample {pts}, expected at {n}"),
                );
                break;
            }
            _ => {}
        }
        next = Some(pts + d);
        if pts + d <= start || pts >= length {
            continue;
        }
        // The container's length ends the file (see `decode_file`).
        clear_end_trim(&mut packet);
        let setup = decoded < preroll && pts + d <= from;
        decoded += 1;
        if let Err(e) = decoder.send_packet(&packet) {
            damage(&mut out, e.to_string());
            break;
        }
        let mut got = 0u64;
        let mut more = true;
        while decoder.receive_frame(&mut frame).is_ok() {
            let n = frame.samples() as u64;
            let at = pts + got;
            got += n;
            let lo = from.saturating_sub(at).min(n) as usize;
            let hi = n.min(length.saturating_sub(at)) as usize;
            if setup || lo >= hi || !more {
                continue;
            }
            let planes = to_planar_f32(&frame, hi).ok_or_else(|| Error::NotAudio {
                path: path.clone(),
                reason: format!("unexpected decoded sample format {:?}", frame.format()),
            })?;
            let cut: Vec<&[f32]> = planes.iter().map(|p| &p[lo..]).collect();
            for s in scratch.iter_mut() {
                s.clear();
            }
            remix_into(&cut, &mut scratch);
            let refs: Vec<&[f32]> = scratch.iter().map(Vec::as_slice).collect();
            out.end = at + hi as u64;
            more = sink(&refs)?;
        }
        // The last packet may state less than the codec's frame (MP4's last `stts` entry):
        // the stated length ends it, as in `decode_file`.
        if got != d && !(pts + d >= length && got >= d) {
            damage(
                &mut out,
                format!("a packet at sample {pts} decoded to {got} samples, not {d}"),
            );
            break;
        }
        if !more {
            return Ok(Some(out));
        }
    }
    let Some(next) = next else {
        // Not one packet after the seek: nothing vouches for where it landed.
        return Ok(None);
    };
    out.whole = out.damaged == 0;
    if out.whole {
        out.end = next.min(length);
    }
    Ok(Some(out))
}

/// Zeroes the "discard at the end" field of a packet's `AV_PKT_DATA_SKIP_SAMPLES` side data
/// (bytes 4..8; bytes 0..4 are the samples to skip at the start).
fn clear_end_trim(packet: &mut ff::Packet) {
    use ff::packet::Mut as _;
    use ffi::{av_packet_get_side_data, AVPacketSideDataType};
    // SAFETY: `packet` is a valid AVPacket we own exclusively; av_packet_get_side_data returns
    // null or a buffer of `size` bytes owned by the packet, written here only within `size`.
    // ffmpeg-next offers side data read-only.
    unsafe {
        let mut size = 0usize;
        let data = av_packet_get_side_data(
            packet.as_mut_ptr(),
            AVPacketSideDataType::AV_PKT_DATA_SKIP_SAMPLES,
            &mut size,
        );
        if !data.is_null() && size >= 8 {
            std::ptr::write_bytes(data.add(4), 0, 4);
        }
    }
}

fn drain(
    decoder: &mut ff::decoder::Audio,
    frame: &mut ff::frame::Audio,
    on_frame: &mut dyn FnMut(&ff::frame::Audio) -> Result<()>,
) -> Result<()> {
    loop {
        match decoder.receive_frame(frame) {
            Ok(()) => on_frame(frame)?,
            Err(ff::Error::Other { errno }) if errno == ffi::EAGAIN => return Ok(()),
            Err(ff::Error::Eof) => return Ok(()),
            // Errors from receive_frame are reported by the next send_packet as well; stop here.
            Err(_) => return Ok(()),
        }
    }
}

/// The first `n` samples of a decoded frame in any packed or planar integer/float format, as
/// planar `f32` (integers scaled to −1.0..1.0 as swresample does: by 2^(bits−1)).
fn to_planar_f32(frame: &ff::frame::Audio, n: usize) -> Option<Vec<Vec<f32>>> {
    use ff::format::Sample;
    let ch = frame.channels() as usize;
    let mut out = vec![Vec::with_capacity(n); ch];
    fn put<T: Copy + ff::frame::audio::Sample>(
        frame: &ff::frame::Audio,
        planar: bool,
        ch: usize,
        n: usize,
        out: &mut [Vec<f32>],
        f: impl Fn(T) -> f32,
    ) {
        if planar {
            for (c, o) in out.iter_mut().enumerate() {
                o.extend(frame.plane::<T>(c)[..n].iter().map(|v| f(*v)));
            }
        } else {
            // Packed: one plane of `n × ch` values. `plane::<T>` sizes the slice by samples,
            // not by samples × channels, so the bytes are read directly.
            let bytes = frame.data(0);
            let len = (bytes.len() / std::mem::size_of::<T>()).min(n * ch);
            // SAFETY: FFmpeg allocates frame buffers aligned for every sample type (at least 16
            // bytes), and `len` values fit in the plane's `linesize` bytes.
            let vals: &[T] = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), len) };
            for (k, v) in vals.iter().take(n * ch).enumerate() {
                out[k % ch].push(f(*v));
            }
        }
    }
    let planar = frame.is_planar();
    match frame.format() {
        Sample::U8(_) => put::<u8>(frame, planar, ch, n, &mut out, |v| {
            (f32::from(v) - 128.0) / 128.0
        }),
        Sample::I16(_) => put::<i16>(frame, planar, ch, n, &mut out, |v| f32::from(v) / 32_768.0),
        Sample::I32(_) => put::<i32>(frame, planar, ch, n, &mut out, |v| {
            (f64::from(v) / 2_147_483_648.0) as f32
        }),
        Sample::F32(_) => put::<f32>(frame, planar, ch, n, &mut out, |v| v),
        Sample::F64(_) => put::<f64>(frame, planar, ch, n, &mut out, |v| v as f32),
        _ => return None,
    }
    Some(out)
}

/// Appends `input` planes to `out` planes, duplicating mono or averaging stereo as needed.
pub(crate) fn remix_into(input: &[&[f32]], out: &mut [Vec<f32>]) {
    match (input.len(), out.len()) {
        (a, b) if a == b => {
            for (o, i) in out.iter_mut().zip(input) {
                o.extend_from_slice(i);
            }
        }
        (1, _) => {
            for o in out.iter_mut() {
                o.extend_from_slice(input[0]);
            }
        }
        (_, 1) => {
            let scale = 1.0 / input.len() as f32;
            let n = input[0].len();
            out[0].extend((0..n).map(|k| input.iter().map(|p| p[k]).sum::<f32>() * scale));
        }
        (_, _) => {
            for (c, o) in out.iter_mut().enumerate() {
                o.extend_from_slice(input[c.min(input.len() - 1)]);
            }
        }
    }
}

/// Real input samples a resampler started in the middle of a file is given before the first
/// output it keeps (at least; the start is then aligned down to the ratio's period). The mirrored
/// start of a fresh resampler reaches at most half its filter (≤ 100 input samples at the MP3
/// rates) into what it outputs; this is ten times that, and costs a few dozen microseconds.
pub const RESAMPLE_PREROLL: u64 = 1024;

/// Input samples past which the output count grows by exactly one period per period of input
/// (twice the longest filter at the MP3 rates is under 400; this leaves ample room).
const STEADY_INPUT: u64 = 4096;

/// swresample's default phase count (`phase_shift` 10): the ratio is exact when its reduced
/// numerator (the output side) fits in it.
const PHASE_COUNT: u64 = 1 << 10;

/// The rate ratio's period `(P, Q)`: every `P` input samples give exactly `Q` output samples
/// (`in/out = P/Q` in lowest terms), and output `m·Q` sits exactly on input `m·P`. `None` when
/// swresample does not resample this ratio exactly (its phase would be rounded), or a rate is 0.
pub fn rate_period(in_rate: u32, out_rate: u32) -> Option<(u64, u64)> {
    if in_rate == 0 || out_rate == 0 {
        return None;
    }
    let (a, b) = (in_rate as u64, out_rate as u64);
    let g = gcd(a, b);
    let (p, q) = (a / g, b / g);
    (q <= PHASE_COUNT).then_some((p, q))
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The exact number of samples [`decode_file`] delivers for a file of `n` samples at `in_rate`
/// converted to `out_rate` (one resampler for the file, flushed at its end). `None` when the
/// ratio is not one swresample resamples exactly ([`rate_period`]).
///
/// swresample's count depends only on `n`, not on the samples or how they are cut into calls;
/// past a short start it grows by exactly `Q` per `P` input samples (see the module docs). So
/// the resampler itself is asked, on silence of a length below [`STEADY_INPUT`] + `P` that is
/// congruent to `n` modulo `P`, and the whole periods are added: exact, and a few thousand
/// samples of work whatever the file's length, where decoding would take seconds.
pub fn resampled_len(in_rate: u32, out_rate: u32, n: u64) -> Result<Option<u64>> {
    let Some((p, q)) = rate_period(in_rate, out_rate) else {
        return Ok(None);
    };
    if in_rate == out_rate {
        return Ok(Some(n));
    }
    let short = if n < STEADY_INPUT + p {
        n
    } else {
        STEADY_INPUT + (n - STEADY_INPUT) % p
    };
    let periods = (n - short) / p;
    let av = |e: ff::Error| Error::av(None, "measure the resampler's output length".to_string(), e);
    let mut rs = Resampler::new(in_rate, out_rate, 1).map_err(av)?;
    let silence = vec![0.0f32; 4096];
    let mut got = 0u64;
    let mut left = short;
    while left > 0 {
        let k = left.min(silence.len() as u64) as usize;
        got += rs.convert(&[&silence[..k]]).map_err(av)?[0].len() as u64;
        left -= k as u64;
    }
    got += rs.flush().map_err(av)?[0].len() as u64;
    Ok(Some(got + periods * q))
}

/// Where a resampler must start for output sample `from` of a file to come out exactly as the
/// file-long resampler gives it, for the ratio's period `(p, q)` ([`rate_period`]): the input
/// sample to start at, on the period and at least [`RESAMPLE_PREROLL`] samples before the one
/// under `from` (or the file's start), and the file's output sample the resampler's first
/// output then is.
pub fn resample_start((p, q): (u64, u64), from: u64) -> (u64, u64) {
    let under = (from as u128 * p as u128 / q as u128) as u64;
    let periods = under.saturating_sub(RESAMPLE_PREROLL) / p;
    (periods * p, periods * q)
}

/// swresample used for rate conversion only (same channel count in and out, planar float).
/// [`decode_file`] makes one per file; `av::packets` one per resampled range, the same way.
pub(crate) struct Resampler {
    ctx: ff::software::resampling::Context,
    in_rate: u32,
    out_rate: u32,
    pub(crate) channels: usize,
}

impl Resampler {
    pub(crate) fn new(
        in_rate: u32,
        out_rate: u32,
        channels: usize,
    ) -> std::result::Result<Self, ff::Error> {
        let layout = if channels == 1 {
            ff::ChannelLayout::MONO
        } else {
            ff::ChannelLayout::STEREO
        };
        let fmt = ff::format::Sample::F32(ff::format::sample::Type::Planar);
        let ctx =
            ff::software::resampling::Context::get(fmt, layout, in_rate, fmt, layout, out_rate)?;
        Ok(Resampler {
            ctx,
            in_rate,
            out_rate,
            channels,
        })
    }

    pub(crate) fn convert(
        &mut self,
        planes: &[&[f32]],
    ) -> std::result::Result<Vec<Vec<f32>>, ff::Error> {
        let n = planes.first().map_or(0, |p| p.len());
        self.run(Some(planes), n)
    }

    pub(crate) fn flush(&mut self) -> std::result::Result<Vec<Vec<f32>>, ff::Error> {
        let mut all: Vec<Vec<f32>> = vec![Vec::new(); self.channels];
        loop {
            let part = self.run(None, 0)?;
            if part[0].is_empty() {
                return Ok(all);
            }
            for (a, p) in all.iter_mut().zip(part) {
                a.extend_from_slice(&p);
            }
        }
    }

    fn run(
        &mut self,
        input: Option<&[&[f32]]>,
        n: usize,
    ) -> std::result::Result<Vec<Vec<f32>>, ff::Error> {
        // Room for the converted input plus everything swresample still buffers.
        let cap = (n as u64 * self.out_rate as u64 / self.in_rate as u64) as usize + 1024;
        let mut out: Vec<Vec<f32>> = vec![vec![0.0f32; cap]; self.channels];
        let mut out_ptrs: Vec<*mut u8> =
            out.iter_mut().map(|p| p.as_mut_ptr() as *mut u8).collect();
        let in_ptrs: Vec<*const u8> = match input {
            Some(planes) => planes.iter().map(|p| p.as_ptr() as *const u8).collect(),
            None => Vec::new(),
        };
        // SAFETY: the context was initialized for `channels` planar f32 planes; out_ptrs point to
        // `channels` buffers of `cap` samples each; in_ptrs (when given) to `channels` planes of
        // `n` samples; a null input with count 0 asks swresample to flush.
        let got = unsafe {
            ffi::swr_convert(
                self.ctx.as_mut_ptr(),
                out_ptrs.as_mut_ptr(),
                cap as i32,
                if input.is_some() {
                    in_ptrs.as_ptr() as *mut *const u8
                } else {
                    std::ptr::null_mut()
                },
                n as i32,
            )
        };
        if got < 0 {
            return Err(ff::Error::from(got));
        }
        for p in out.iter_mut() {
            p.truncate(got as usize);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every MP3 rate to every usual output rate.
    fn pairs() -> Vec<(u32, u32)> {
        let mp3 = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000];
        let mut v = Vec::new();
        for out in [22_050, 44_100, 48_000] {
            for &i in &mp3 {
                if i != out {
                    v.push((i, out));
                }
            }
        }
        v
    }

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut r = fastrand::Rng::with_seed(seed);
        (0..n).map(|_| r.f32() - 0.5).collect()
    }

    /// `input` through one resampler in calls of `chunk` samples, flushed, as `decode_file`
    /// does with a file's frames.
    fn resample(in_rate: u32, out_rate: u32, input: &[f32], chunk: usize) -> Vec<f32> {
        let mut rs = Resampler::new(in_rate, out_rate, 1).unwrap();
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            out.extend_from_slice(&rs.convert(&[c]).unwrap()[0]);
        }
        out.extend_from_slice(&rs.flush().unwrap()[0]);
        out
    }

    #[test]
    fn every_mp3_rate_converts_exactly_to_the_usual_output_rates() {
        for (i, o) in pairs() {
            assert!(rate_period(i, o).is_some(), "{i} → {o}");
        }
        // A ratio whose reduced output side exceeds the phase count would be rounded.
        assert_eq!(rate_period(44_100, 44_101), None);
    }

    /// The predicted length is the resampler's, for every length up to well past the irregular
    /// start, a spread of longer ones, and a long one on every residue of a period.
    #[test]
    fn the_predicted_length_is_the_resampled_one() {
        let input = noise(1_200_000, 1);
        for (i, o) in pairs() {
            let (p, _) = rate_period(i, o).unwrap();
            let mut lengths: Vec<usize> = (0..=600).collect();
            lengths.extend((601..30_000).step_by(997));
            lengths.extend(
                (0..p as usize + 2)
                    .step_by(p.div_ceil(7).max(1) as usize)
                    .map(|k| 1_000_000 + k),
            );
            for n in lengths {
                let got = resample(i, o, &input[..n], 1152).len() as u64;
                let want = resampled_len(i, o, n as u64).unwrap().unwrap();
                assert_eq!(want, got, "{i} → {o}, {n} samples");
            }
        }
    }

    /// The output does not depend on how the input is cut, and a resampler started where
    /// [`resample_start`] says gives the file-long one's samples bit for bit from `from` on,
    /// through the flush.
    #[test]
    fn a_resampler_started_on_the_period_continues_the_file_long_one() {
        let input = noise(150_000, 2);
        for (i, o) in pairs() {
            let whole = resample(i, o, &input, 1152);
            assert!(whole == resample(i, o, &input, 576), "{i} → {o}: chunking");
            assert!(
                whole == resample(i, o, &input, 100_000),
                "{i} → {o}: chunking"
            );
            let period = rate_period(i, o).unwrap();
            let n = whole.len() as u64;
            let pre = RESAMPLE_PREROLL * period.1 / period.0;
            for from in [
                1,
                pre - 1,
                pre,
                pre + 1,
                pre + 777,
                n / 3,
                n / 2 + 13,
                n - 300,
                n - 1,
            ] {
                let (start, first_out) = resample_start(period, from);
                assert!(first_out <= from);
                let part = resample(i, o, &input[start as usize..], 1152);
                let skip = (from - first_out) as usize;
                assert_eq!(
                    first_out + part.len() as u64,
                    n,
                    "{i} → {o} from {from}: length"
                );
                assert!(
                    part[skip..] == whole[from as usize..],
                    "{i} → {o} from {from} (started at input {start}): samples differ"
                );
            }
        }
    }
}
