//! Decoding a written M4B back to PCM through FFmpeg (mov demuxer + AAC decoder), with the
//! edit list applied. Used to measure coding error (splice quality, SNR) — verification of the
//! structure uses an independent reader instead (`aiom4b::verify`).
use crate::error::{Error, Result};
use ff::ffi;
use ffmpeg_next as ff;
use std::fs::File;
use std::path::Path;

/// Decodes every audio sample of `path` into planar f32 (one Vec per channel).
pub fn decode_m4b(path: &Path) -> Result<(u32, Vec<Vec<f32>>)> {
    crate::init();
    let file = File::open(path).map_err(|e| Error::io(path, "cannot open", e))?;
    let io = ff::format::context::StreamIo::from_read_seek(file)
        .map_err(|e| Error::av(Some(path), "set up reading", e))?;
    let mut opts = ff::Dictionary::new();
    opts.set("format_whitelist", "mov,mp4,m4a,3gp,3g2,mj2");
    let mut ctx = ff::format::input_from_stream(io, None, Some(opts))
        .map_err(|e| Error::av(Some(path), "open the M4B", e))?;
    let st = ctx.streams().best(ff::media::Type::Audio).ok_or_else(|| {
        Error::av(
            Some(path),
            "find the audio track",
            ff::Error::StreamNotFound,
        )
    })?;
    let index = st.index();
    let tb = st.time_base();
    let mut cctx = ff::codec::context::Context::from_parameters(st.parameters())
        .map_err(|e| Error::av(Some(path), "read the audio parameters", e))?;
    // SAFETY: valid unopened context; the packet time base lets libavcodec apply the edit
    // list's skip-samples exactly.
    unsafe {
        (*cctx.as_mut_ptr()).pkt_timebase = tb.into();
    }
    let mut dec = cctx
        .decoder()
        .audio()
        .map_err(|e| Error::av(Some(path), "open the AAC decoder", e))?;
    let mut planes: Vec<Vec<f32>> = Vec::new();
    let mut rate = 0;
    let mut frame = ff::frame::Audio::empty();
    let mut take = |dec: &mut ff::decoder::Audio, planes: &mut Vec<Vec<f32>>, rate: &mut u32| {
        while dec.receive_frame(&mut frame).is_ok() {
            let n = frame.samples();
            let ch = frame.channels() as usize;
            *rate = frame.rate();
            if planes.is_empty() {
                planes.resize(ch, Vec::new());
            }
            for (c, p) in planes.iter_mut().enumerate().take(ch) {
                p.extend_from_slice(&frame.plane::<f32>(c)[..n]);
            }
        }
    };
    loop {
        // A fresh packet per read: av_read_frame does not release what a reused packet holds,
        // so reusing one leaks every packet's buffer.
        let mut packet = ff::Packet::empty();
        match packet.read(&mut ctx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(e) => return Err(Error::av(Some(path), "read audio", e)),
        }
        if packet.stream() != index {
            continue;
        }
        match dec.send_packet(&packet) {
            Ok(()) => {}
            Err(ff::Error::Other { errno }) if errno == ffi::EAGAIN => {}
            Err(e) => return Err(Error::av(Some(path), "decode AAC", e)),
        }
        take(&mut dec, &mut planes, &mut rate);
    }
    let _ = dec.send_eof();
    take(&mut dec, &mut planes, &mut rate);
    Ok((rate, planes))
}
