//! Opening an MP3 file for FFmpeg without letting FFmpeg interpret the name.
//!
//! The file is opened by Rust and handed to libavformat through a custom I/O context, so a
//! name like `concat:a.mp3|b.mp3` or `file:x.mp3` is only ever a file name, never a protocol;
//! no protocol is opened at all. The demuxer is restricted to `mp3` by the format whitelist, so
//! a PNG or a playlist renamed `.mp3` is rejected instead of being demuxed as something else.
use crate::error::{Error, Result};
use ffmpeg_next as ff;
use std::path::{Path, PathBuf};

/// An opened MP3 file: the demuxer context and the index of its audio stream.
pub struct Mp3Input {
    pub(crate) ctx: ff::format::context::Input,
    pub(crate) audio_index: usize,
    pub(crate) path: PathBuf,
}

/// Opens `path` as MP3 (and only as MP3).
pub fn open_mp3(path: &Path) -> Result<Mp3Input> {
    super::init();
    // Regular files only: a FIFO swapped in after the scan must not block the demuxer.
    let file = crate::regular::open_regular(path, "cannot open")?;
    let io = ff::format::context::StreamIo::from_read_seek(file)
        .map_err(|e| Error::av(Some(path), "set up reading", e))?;
    let mut opts = ff::Dictionary::new();
    opts.set("format_whitelist", "mp3");
    // No protocol can be opened through a custom I/O context; the whitelist makes that explicit
    // should FFmpeg ever try to open a nested resource.
    opts.set("protocol_whitelist", "none");
    let ctx = ff::format::input_from_stream(io, None, Some(opts)).map_err(|e| Error::NotMp3 {
        path: path.to_path_buf(),
        reason: match e {
            ff::Error::InvalidData => "FFmpeg's MP3 demuxer does not recognize it".to_string(),
            other => other.to_string(),
        },
    })?;
    let audio_index = ctx
        .streams()
        .find(|s| s.parameters().medium() == ff::media::Type::Audio)
        .map(|s| s.index())
        .ok_or_else(|| Error::NotMp3 {
            path: path.to_path_buf(),
            reason: "it has no audio stream".to_string(),
        })?;
    let id = ctx
        .stream(audio_index)
        .map(|s| s.parameters().id())
        .unwrap_or(ff::codec::Id::None);
    if id != ff::codec::Id::MP3 {
        return Err(Error::NotMp3 {
            path: path.to_path_buf(),
            reason: format!("its audio is {id:?}, not MPEG layer III"),
        });
    }
    Ok(Mp3Input {
        ctx,
        audio_index,
        path: path.to_path_buf(),
    })
}

/// What [`probe_mp3`] learns from FFmpeg.
#[derive(Debug, Clone)]
pub struct Mp3Facts {
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

/// Opens `path` as MP3, reads its tags and pictures, and decodes its first `decode_packets`
/// packets to prove it is real MP3 audio.
pub fn probe_mp3(path: &Path, decode_packets: usize) -> Result<Mp3Facts> {
    let mut input = open_mp3(path)?;
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
        return Err(Error::NotMp3 {
            path: path.to_path_buf(),
            reason: "no valid MPEG audio header found".into(),
        });
    }
    let tags = read_tags(&input.ctx.metadata());
    let pictures = read_pictures(&input);

    // Decode a few packets: a file that merely starts like MP3 fails here.
    let mut ctx = ff::codec::context::Context::from_parameters(params)
        .map_err(|e| Error::av(Some(path), "read the stream parameters", e))?;
    // SAFETY: ctx is a valid, unopened context we own.
    unsafe {
        (*ctx.as_mut_ptr()).pkt_timebase = time_base.into();
    }
    let mut dec = ctx.decoder().audio().map_err(|e| Error::NotMp3 {
        path: path.to_path_buf(),
        reason: format!("the MP3 decoder cannot open it ({e})"),
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
        return Err(Error::NotMp3 {
            path: path.to_path_buf(),
            reason: if sent == 0 {
                "it contains no MPEG audio frames (only a tag, or not audio)".into()
            } else {
                format!("none of its first {sent} frames decode ({errors} errors)")
            },
        });
    }
    let (lo, hi) = sizes
        .iter()
        .skip(1) // the first frame may be the Xing/Info frame
        .fold((usize::MAX, 0), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
    Ok(Mp3Facts {
        sample_rate,
        channels,
        bitrate_bps,
        duration,
        sizes_vary: hi > lo + 1 && lo != usize::MAX,
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
    let (track, track_total) = pair(&["track", "TRCK"]);
    let (disc, disc_total) = pair(&["disc", "TPOS"]);
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

fn read_pictures(input: &Mp3Input) -> Vec<crate::model::Picture> {
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
