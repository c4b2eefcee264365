//! Decoding one MP3 file into planar `f32` PCM at the book's output rate and channel count.
//!
//! Gapless: the MP3 demuxer attaches the LAME encoder delay and padding as skip-samples side
//! data, and libavcodec trims them as long as the decoder knows the packet time base. So the
//! samples that come out are exactly the ones the original encoder was given.
//!
//! Rate conversion goes through swresample (flushed at the end of each file, so nothing is lost
//! or invented at the joins); channel conversion is done here, not by swresample, because
//! swresample's default matrix scales mono→stereo by −3 dB and stereo→mono by +3 dB (clipping
//! on loud centred speech). Audiobook listeners expect a mono file to sound as loud as a stereo
//! one, so mono is duplicated and stereo is averaged.
use super::input::Mp3Input;
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
    mut input: Mp3Input,
    out_rate: u32,
    out_channels: usize,
    chunk_samples: usize,
    cancelled: &dyn Fn() -> bool,
    sink: &mut dyn FnMut(PcmChunk) -> Result<()>,
) -> Result<DecodeStats> {
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
    let mut ctx = ff::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| av("read the stream parameters", e))?;
    // Without the packet time base libavcodec cannot apply the end-padding trim of the last
    // packet, and the file would come out up to one MP3 frame long.
    // SAFETY: ctx is a valid, not yet opened codec context that we own.
    unsafe {
        (*ctx.as_mut_ptr()).pkt_timebase = time_base.into();
    }
    let mut decoder = ctx
        .decoder()
        .audio()
        .map_err(|e| av("open the MP3 decoder", e))?;

    let mut stats = DecodeStats::default();
    let mut resampler: Option<Resampler> = None;
    let mut pending = PcmChunk::with_capacity(out_channels, chunk_samples + 4096);
    let mut frame = ff::frame::Audio::empty();

    let audio_index = input.audio_index;
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
            sink(full)?;
        }
        Ok(())
    };

    let mut handle_frame = |frame: &ff::frame::Audio,
                            resampler: &mut Option<Resampler>,
                            pending: &mut PcmChunk,
                            stats: &mut DecodeStats|
     -> Result<()> {
        let n = frame.samples();
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
        if frame.format() != ff::format::Sample::F32(ff::format::sample::Type::Planar) {
            return Err(Error::NotMp3 {
                path: path.clone(),
                reason: format!("unexpected decoded sample format {:?}", frame.format()),
            });
        }
        let planes: Vec<&[f32]> = (0..in_ch).map(|c| &frame.plane::<f32>(c)[..n]).collect();
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
    Ok(stats)
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

/// swresample used for rate conversion only (same channel count in and out, planar float).
struct Resampler {
    ctx: ff::software::resampling::Context,
    in_rate: u32,
    out_rate: u32,
    channels: usize,
}

impl Resampler {
    fn new(in_rate: u32, out_rate: u32, channels: usize) -> std::result::Result<Self, ff::Error> {
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

    fn convert(&mut self, planes: &[&[f32]]) -> std::result::Result<Vec<Vec<f32>>, ff::Error> {
        let n = planes.first().map_or(0, |p| p.len());
        self.run(Some(planes), n)
    }

    fn flush(&mut self) -> std::result::Result<Vec<Vec<f32>>, ff::Error> {
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
