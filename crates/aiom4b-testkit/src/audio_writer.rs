//! Encodes f32 PCM into the other formats aiom4b reads — FLAC, WAV, Ogg Vorbis, Ogg Opus, AAC
//! or ALAC in MP4 (with chapters and a cover), raw ADTS AAC — through the linked FFmpeg's
//! encoders and muxers, for the input-format tests.
//!
//! What each file should decode to is known exactly: the samples written. Two FFmpeg details
//! matter for that:
//! - The mov muxer writes its edit list in the movie timescale, 1000 by default, so the length
//!   it records is rounded to the millisecond; `movie_timescale` is set to the sample rate so
//!   the edit list states the exact length, as iTunes' files do.
//! - libopus only encodes at 48/24/16/12/8 kHz; the spec's rate must be one of them.
use crate::error::{Error, Result};
use crate::fixtures::Signal;
use crate::mp3_writer::{add_picture_stream, picture_codec, tags_dictionary};
use aiom4b::{Picture, Tags};
use ffmpeg_next as ffmpeg;
use ffmpeg_next::{codec, format, frame, ChannelLayout, Dictionary, Packet, Rational};
use std::path::Path;

/// The file kinds [`write_audio`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioKind {
    /// FLAC (native container), 16-bit.
    Flac,
    /// RIFF WAVE, 16-bit PCM.
    Wav,
    /// Vorbis in Ogg (libvorbis).
    Vorbis,
    /// Opus in Ogg (libopus); 48, 24, 16, 12 or 8 kHz only.
    Opus,
    /// AAC-LC in MP4 (FFmpeg's aac encoder), `.m4a`/`.m4b`.
    M4aAac,
    /// ALAC in MP4.
    M4aAlac,
    /// AAC-LC in ADTS frames (`.aac`).
    Adts,
}

impl AudioKind {
    fn encoder(self) -> &'static str {
        match self {
            AudioKind::Flac => "flac",
            AudioKind::Wav => "pcm_s16le",
            AudioKind::Vorbis => "libvorbis",
            AudioKind::Opus => "libopus",
            AudioKind::M4aAac | AudioKind::Adts => "aac",
            AudioKind::M4aAlac => "alac",
        }
    }
    fn muxer(self) -> &'static str {
        match self {
            AudioKind::Flac => "flac",
            AudioKind::Wav => "wav",
            AudioKind::Vorbis | AudioKind::Opus => "ogg",
            AudioKind::M4aAac | AudioKind::M4aAlac => "ipod",
            AudioKind::Adts => "adts",
        }
    }
    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            AudioKind::Flac => "flac",
            AudioKind::Wav => "wav",
            AudioKind::Vorbis => "ogg",
            AudioKind::Opus => "opus",
            AudioKind::M4aAac | AudioKind::M4aAlac => "m4a",
            AudioKind::Adts => "aac",
        }
    }
}

/// One file to write.
#[derive(Debug, Clone)]
pub struct AudioSpec {
    pub kind: AudioKind,
    pub sample_rate: u32,
    /// 1 or 2.
    pub channels: u16,
    /// Samples per channel.
    pub samples: u64,
    pub signal: Signal,
    pub tags: Tags,
    /// Written for MP4 and FLAC (attached picture); ignored for the others.
    pub cover: Option<Picture>,
    /// Chapters (start in samples, title), MP4 only; the first must start at 0.
    pub chapters: Vec<(u64, String)>,
}

impl AudioSpec {
    /// A sine of `samples` at `rate`/`channels`, untagged.
    pub fn sine(kind: AudioKind, rate: u32, channels: u16, samples: u64) -> Self {
        AudioSpec {
            kind,
            sample_rate: rate,
            channels,
            samples,
            signal: Signal::Sine {
                freq_hz: 440.0,
                amplitude: 0.5,
            },
            tags: Tags::default(),
            cover: None,
            chapters: Vec::new(),
        }
    }
}

/// Writes `spec` to `path`; returns the samples per channel written (what a gapless decoder
/// must give back, except for ADTS, whose decoder also gives the encoder's priming).
pub fn write_audio(path: impl AsRef<Path>, spec: &AudioSpec) -> Result<u64> {
    crate::init();
    let path = path.as_ref();
    let av = |what: &'static str| move |e: ffmpeg::Error| Error::av(Some(path), what, e);
    let file =
        std::fs::File::create(path).map_err(|e| Error::io(path, "create the audio file", e))?;
    let io = format::context::StreamIo::from_write_seek(file).map_err(av("set up output I/O"))?;
    let mut octx = format::output_to_stream(io, None, Some(spec.kind.muxer()))
        .map_err(av("open the muxer"))?;
    let codec = codec::encoder::find_by_name(spec.kind.encoder())
        .ok_or(ffmpeg::Error::EncoderNotFound)
        .map_err(av("find the encoder"))?;
    let layout = if spec.channels == 1 {
        ChannelLayout::MONO
    } else {
        ChannelLayout::STEREO
    };
    // The encoder's first (preferred) sample format; the samples are converted to it below.
    let sample_format = codec
        .audio()
        .ok()
        .and_then(|a| a.formats().and_then(|mut f| f.next()))
        .unwrap_or(format::Sample::F32(format::sample::Type::Planar));
    let mut enc = codec::Context::new_with_codec(codec)
        .encoder()
        .audio()
        .map_err(av("set up the encoder"))?;
    enc.set_rate(spec.sample_rate as i32);
    enc.set_channel_layout(layout);
    enc.set_format(sample_format);
    enc.set_time_base((1, spec.sample_rate as i32));
    if matches!(
        spec.kind,
        AudioKind::M4aAac | AudioKind::Adts | AudioKind::Opus
    ) {
        enc.set_bit_rate(96_000);
    }
    if octx.format().flags().contains(format::Flags::GLOBAL_HEADER) {
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    // FFmpeg's AAC encoder fills noisy bands by perceptual noise substitution (PNS), which a
    // decoder renders from a random generator whose state runs across the whole stream: a
    // packet would then decode differently after other packets. Off, every packet decodes to
    // the same samples wherever it is, so a copied packet can be compared with its source.
    let mut options = ffmpeg::Dictionary::new();
    if matches!(spec.kind, AudioKind::M4aAac | AudioKind::Adts) {
        options.set("aac_pns", "0");
    }
    let mut encoder = enc
        .open_as_with(codec, options)
        .map_err(av("open the encoder"))?;
    let frame_size = match encoder.frame_size() as usize {
        0 => 4096,
        n => n,
    };
    let audio = {
        let mut st = octx.add_stream(codec).map_err(av("add the audio stream"))?;
        st.set_parameters(&encoder);
        st.set_time_base((1, spec.sample_rate as i32));
        st.set_metadata(tags_dictionary(&spec.tags)?);
        st.index()
    };
    let picture = match (&spec.cover, spec.kind) {
        (Some(p), AudioKind::M4aAac | AudioKind::M4aAlac | AudioKind::Flac) => Some(
            add_picture_stream(&mut octx, p, picture_codec(&p.mime)?)
                .map_err(av("add the cover stream"))?,
        ),
        _ => None,
    };
    for (i, (start, title)) in spec.chapters.iter().enumerate() {
        let end = spec.chapters.get(i + 1).map_or(spec.samples, |(s, _)| *s);
        octx.add_chapter(
            i as i64,
            (1, spec.sample_rate as i32),
            *start as i64,
            end as i64,
            title,
        )
        .map_err(av("add a chapter"))?;
    }
    octx.set_metadata(tags_dictionary(&spec.tags)?);
    let mut options = Dictionary::new();
    if matches!(spec.kind, AudioKind::M4aAac | AudioKind::M4aAlac) {
        options.set("movie_timescale", &spec.sample_rate.to_string());
    }
    octx.write_header_with(options)
        .map_err(av("write the header"))?;
    let stream_tb = octx
        .stream(audio)
        .map(|s| s.time_base())
        .ok_or(ffmpeg::Error::Bug)
        .map_err(av("read the stream time base"))?;
    if let (Some(p), Some(index)) = (&spec.cover, picture) {
        let mut packet = Packet::copy(&p.data);
        packet.set_stream(index);
        packet.set_flags(codec::packet::Flags::KEY);
        packet.set_pts(Some(0));
        packet.set_dts(Some(0));
        packet
            .write_interleaved(&mut octx)
            .map_err(av("write the cover"))?;
    }

    let enc_tb = Rational::new(1, spec.sample_rate as i32);
    let channels = usize::from(spec.channels);
    let mut source = spec.signal.source(spec.sample_rate, spec.channels);
    let mut interleaved = vec![0.0f32; frame_size * channels];
    let mut done = 0u64;
    let drain =
        |encoder: &mut codec::encoder::Audio, octx: &mut format::context::Output| -> Result<()> {
            let mut packet = Packet::empty();
            loop {
                match encoder.receive_packet(&mut packet) {
                    Ok(()) => {
                        packet.set_stream(audio);
                        packet.rescale_ts(enc_tb, stream_tb);
                        packet
                            .write_interleaved(octx)
                            .map_err(av("write a packet"))?;
                        packet = Packet::empty();
                    }
                    Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                        return Ok(())
                    }
                    Err(ffmpeg::Error::Eof) => return Ok(()),
                    Err(e) => return Err(Error::av(Some(path), "encode audio", e)),
                }
            }
        };
    while done < spec.samples {
        let n = (spec.samples - done).min(frame_size as u64) as usize;
        let chunk = &mut interleaved[..n * channels];
        source.fill(chunk);
        let mut f = frame::Audio::new(sample_format, n, layout);
        f.set_rate(spec.sample_rate);
        f.set_pts(Some(done as i64));
        fill_frame(&mut f, chunk, channels, n);
        encoder.send_frame(&f).map_err(av("encode audio"))?;
        drain(&mut encoder, &mut octx)?;
        done += n as u64;
    }
    encoder.send_eof().map_err(av("flush the encoder"))?;
    drain(&mut encoder, &mut octx)?;
    octx.write_trailer().map_err(av("write the trailer"))?;
    Ok(done)
}

/// Puts interleaved f32 samples into `f` in its format (planar or packed; f32, s16 or s32).
fn fill_frame(f: &mut frame::Audio, src: &[f32], channels: usize, n: usize) {
    use format::sample::Type;
    use format::Sample;
    let to_i16 = |v: f32| (v.clamp(-1.0, 1.0) * 32_767.0).round() as i16;
    let to_i32 = |v: f32| (f64::from(v.clamp(-1.0, 1.0)) * 2_147_483_647.0).round() as i32;
    match f.format() {
        Sample::F32(Type::Planar) => {
            for c in 0..channels {
                let p = f.plane_mut::<f32>(c);
                for k in 0..n {
                    p[k] = src[k * channels + c];
                }
            }
        }
        Sample::I16(Type::Planar) => {
            for c in 0..channels {
                let p = f.plane_mut::<i16>(c);
                for k in 0..n {
                    p[k] = to_i16(src[k * channels + c]);
                }
            }
        }
        Sample::I32(Type::Planar) => {
            for c in 0..channels {
                let p = f.plane_mut::<i32>(c);
                for k in 0..n {
                    p[k] = to_i32(src[k * channels + c]);
                }
            }
        }
        packed => {
            let data = f.data_mut(0);
            match packed {
                Sample::F32(_) => {
                    for (k, v) in src.iter().enumerate() {
                        data[k * 4..k * 4 + 4].copy_from_slice(&v.to_ne_bytes());
                    }
                }
                Sample::I16(_) => {
                    for (k, v) in src.iter().enumerate() {
                        data[k * 2..k * 2 + 2].copy_from_slice(&to_i16(*v).to_ne_bytes());
                    }
                }
                Sample::I32(_) => {
                    for (k, v) in src.iter().enumerate() {
                        data[k * 4..k * 4 + 4].copy_from_slice(&to_i32(*v).to_ne_bytes());
                    }
                }
                other => panic!("the test writer does not fill {other:?} frames"),
            }
        }
    }
}

/// Moves the edit list of an MP4 that [`write_audio`] wrote (movie timescale = the rate) to
/// start `extra` samples later: an encoder with more priming (Apple's 2112), or a part cut off
/// the frame grid. The file then begins with what decoded from there and is `extra` shorter.
pub fn delay_mp4_start(path: impl AsRef<Path>, extra: u32) {
    let path = path.as_ref();
    let mut d = std::fs::read(path).expect("reading the MP4");
    let i = d
        .windows(4)
        .position(|w| w == b"elst")
        .expect("an edit list");
    assert_eq!(d[i + 4], 0, "a version 0 edit list");
    let (dur_at, time_at) = (i + 12, i + 16);
    let dur = u32::from_be_bytes(d[dur_at..dur_at + 4].try_into().unwrap());
    let time = u32::from_be_bytes(d[time_at..time_at + 4].try_into().unwrap());
    d[dur_at..dur_at + 4].copy_from_slice(&(dur - extra).to_be_bytes());
    d[time_at..time_at + 4].copy_from_slice(&(time + extra).to_be_bytes());
    std::fs::write(path, d).expect("writing the MP4");
}
