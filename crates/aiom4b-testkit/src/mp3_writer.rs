//! Encodes f32 PCM into an MP3 file with libmp3lame and FFmpeg's mp3 muxer: ID3v2.3 tags, an
//! optional APIC front cover, and the Xing/LAME header that carries the exact (gapless) length.
//!
//! Its purpose is test and benchmark input generated at run time by the same libraries the
//! converter links, so neither an `ffmpeg` binary nor committed audio files are needed.
//!
//! Two FFmpeg details shape this module:
//! - The file is opened by Rust and handed to libavformat as a seekable custom `AVIOContext`
//!   (`StreamIo`), not as a URL. With a URL, libavformat parses `concat:x.mp3` or `pipe:1.mp3`
//!   as protocols and ffmpeg-next panics on non-UTF-8 paths; a `File` has neither problem.
//! - The muxer only writes the Xing/LAME header on a *seekable* output: it reserves the frame in
//!   the header and fills in frame count, encoder delay and padding in the trailer. Delay and
//!   padding come from the `AV_PKT_DATA_SKIP_SAMPLES` side data of the packets, and FFmpeg 5.1's
//!   two halves disagree about it: libmp3lame spreads the end padding over its last packets (a
//!   partial one, then one whole 1152-sample frame per flush packet), while the muxer keeps only
//!   the *last* packet's value. So whenever the flush yields an extra, empty-duration packet
//!   (libmp3lame then logs "Trying to remove 1152 samples, but the queue is empty") the LAME
//!   tag's padding comes out wrong by up to a frame — the `ffmpeg` CLI's own MP3s included.
//!   [`Mp3Writer`] therefore holds back each packet until the next one arrives and gives the
//!   final packet the sum of all discards.
//!   [`Mp3Writer::finish`] reads the header back and fails unless it describes exactly the
//!   samples that were written.
//! - The muxer has no COMM frame: a `comment` would become `TXXX:comment`, which few readers
//!   take for a comment. [`Mp3Writer::finish`] adds a real COMM frame with the `id3` crate.
use crate::error::{Error, Result};
use crate::mp3frame;
use aiom4b::{Picture, Tags};
use ffmpeg_next as ffmpeg;
use ffmpeg_next::packet::Mut as _;
use ffmpeg_next::{codec, format, frame, ChannelLayout, Dictionary, Packet, Rational};
use std::path::{Path, PathBuf};

/// Sample rates an MPEG-1/2/2.5 layer III stream can carry.
pub const MP3_SAMPLE_RATES: [u32; 9] =
    [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000];

/// How libmp3lame spends bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateControl {
    /// Constant bitrate in bits per second; libmp3lame rounds to the nearest legal MP3 bitrate
    /// for the sample rate (e.g. 128 000 at 44.1 kHz, at most 160 000 at 22.05 kHz).
    Cbr { bitrate_bps: u32 },
    /// LAME's VBR quality 0 (best) ..= 9, the `N` of `lame -VN`; `2` is the common "V2".
    Vbr { quality: u8 },
}

/// The audio format and rate control of an MP3 to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mp3Settings {
    /// One of [`MP3_SAMPLE_RATES`].
    pub sample_rate: u32,
    /// 1 or 2.
    pub channels: u16,
    pub rate_control: RateControl,
}

/// The Xing/Info + LAME header of a written file, read back from the file itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XingHeader {
    /// `Xing` (variable bitrate) rather than `Info` (constant bitrate).
    pub vbr: bool,
    /// Audio frames after the header frame.
    pub frames: u32,
    /// Samples per channel in each frame: 1152 (MPEG-1) or 576 (MPEG-2/2.5).
    pub samples_per_frame: u32,
    /// The LAME tag's encoder delay field (samples added at the start, decoder delay excluded).
    pub encoder_delay: u32,
    /// The LAME tag's padding field (samples to drop at the end, decoder delay included).
    pub padding: u32,
}

impl XingHeader {
    /// The exact length in samples per channel a gapless decoder yields:
    /// `frames × samples_per_frame − delay − padding` (the 529-sample decoder delay is counted
    /// once on each side of the LAME convention, so it cancels).
    pub fn gapless_samples(&self) -> u64 {
        (u64::from(self.frames) * u64::from(self.samples_per_frame))
            .saturating_sub(u64::from(self.encoder_delay) + u64::from(self.padding))
    }
}

/// What [`Mp3Writer::finish`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mp3Written {
    /// Samples per channel fed to the encoder.
    pub samples: u64,
    /// File size.
    pub bytes: u64,
    pub xing: XingHeader,
}

/// Streams f32 PCM into an MP3 file. Create it, write samples in any chunk sizes, then
/// [`finish`](Self::finish); dropping it without `finish` leaves an unfinished file.
pub struct Mp3Writer {
    path: PathBuf,
    octx: format::context::Output,
    encoder: codec::encoder::Audio,
    audio_stream: usize,
    encoder_time_base: Rational,
    stream_time_base: Rational,
    layout: ChannelLayout,
    sample_rate: u32,
    channels: usize,
    /// Samples per channel libmp3lame wants in every frame but the last.
    frame_size: usize,
    /// Planar samples not yet sent, always fewer than `frame_size` between calls.
    pending: Vec<Vec<f32>>,
    /// Samples per channel accepted so far; also the next frame's pts (time base 1/rate).
    samples_in: u64,
    /// The newest encoded packet, written once the next arrives (or with the padding total).
    held: Option<Packet>,
    /// Sum of the end-discard counts of all packets so far (see the module comment).
    discard_total: u64,
    /// Written as a COMM frame after the muxer is done (see the module comment).
    comment: Option<String>,
}

impl Mp3Writer {
    /// Creates `path` (truncating it) and writes the ID3v2.3 tag, the cover and the reserved
    /// Xing frame. Tag fields that are `None` are left out.
    pub fn create(
        path: &Path,
        settings: &Mp3Settings,
        tags: &Tags,
        cover: Option<&Picture>,
    ) -> Result<Self> {
        crate::init();
        validate(settings)?;
        let av = |what: &'static str| move |e: ffmpeg::Error| Error::av(Some(path), what, e);

        let metadata = tags_dictionary(tags)?;
        let cover_codec = cover.map(|c| picture_codec(&c.mime)).transpose()?;

        let file =
            std::fs::File::create(path).map_err(|e| Error::io(path, "create the MP3 file", e))?;
        // Seekable, so the muxer writes the Xing header (see the module comment).
        let io =
            format::context::StreamIo::from_write_seek(file).map_err(av("set up output I/O"))?;
        let mut octx =
            format::output_to_stream(io, None, Some("mp3")).map_err(av("open the mp3 muxer"))?;

        let lame = codec::encoder::find_by_name("libmp3lame")
            .ok_or(ffmpeg::Error::EncoderNotFound)
            .map_err(av("find the libmp3lame encoder"))?;
        let layout = if settings.channels == 1 {
            ChannelLayout::MONO
        } else {
            ChannelLayout::STEREO
        };
        let mut enc = codec::Context::new_with_codec(lame)
            .encoder()
            .audio()
            .map_err(av("set up the MP3 encoder"))?;
        enc.set_rate(settings.sample_rate as i32);
        enc.set_channel_layout(layout);
        enc.set_format(format::Sample::F32(format::sample::Type::Planar));
        enc.set_time_base((1, settings.sample_rate as i32));
        match settings.rate_control {
            RateControl::Cbr { bitrate_bps } => enc.set_bit_rate(bitrate_bps as usize),
            RateControl::Vbr { quality } => {
                // libmp3lame switches to VBR on AV_CODEC_FLAG_QSCALE and reads the LAME -V
                // level from global_quality in lambda units.
                enc.set_flags(codec::Flags::QSCALE);
                enc.set_quality(usize::from(quality) * ffmpeg::ffi::FF_QP2LAMBDA as usize);
            }
        }
        let encoder = enc.open_as(lame).map_err(av("open the MP3 encoder"))?;
        let frame_size = encoder.frame_size() as usize;
        if frame_size == 0 {
            return Err(Error::av(
                Some(path),
                "get libmp3lame's frame size",
                ffmpeg::Error::Bug,
            ));
        }

        let audio_stream = {
            let mut stream = octx.add_stream(lame).map_err(av("add the audio stream"))?;
            // Carries initial_padding (the encoder delay) into the muxer's LAME tag.
            stream.set_parameters(&encoder);
            stream.set_time_base((1, settings.sample_rate as i32));
            stream.index()
        };
        let picture_stream = match (cover, cover_codec) {
            (Some(picture), Some(codec_id)) => Some(
                add_picture_stream(&mut octx, picture, codec_id)
                    .map_err(av("add the cover stream"))?,
            ),
            _ => None,
        };

        octx.set_metadata(metadata);
        let mut options = Dictionary::new();
        // ID3v2.3 because it is what most audiobook MP3s in the wild carry (the muxer defaults
        // to 2.4). write_xing is the default; spelled out because the gapless length depends on it.
        options.set("id3v2_version", "3");
        options.set("write_xing", "1");
        // Options the muxer did not consume come back; one left over means it was ignored.
        let unused_option = octx
            .write_header_with(options)
            .map_err(av("write the MP3 header"))?
            .iter()
            .next()
            .map(|(key, _)| key.to_string());
        if let Some(key) = unused_option {
            return Err(Error::Options(format!(
                "the mp3 muxer of the linked FFmpeg does not know the option {key}"
            )));
        }
        let stream_time_base = octx
            .stream(audio_stream)
            .map(|s| s.time_base())
            .ok_or(ffmpeg::Error::Bug)
            .map_err(av("read the audio stream's time base"))?;

        if let (Some(picture), Some(index)) = (cover, picture_stream) {
            // One packet holding the image file's bytes becomes the APIC frame. The muxer holds
            // back audio until every picture stream has delivered its packet, so send it first.
            let mut packet = Packet::copy(&picture.data);
            packet.set_stream(index);
            packet.set_flags(codec::packet::Flags::KEY);
            packet.set_pts(Some(0));
            packet.set_dts(Some(0));
            packet.write(&mut octx).map_err(av("write the cover"))?;
        }

        Ok(Mp3Writer {
            path: path.to_path_buf(),
            octx,
            encoder,
            audio_stream,
            encoder_time_base: Rational::new(1, settings.sample_rate as i32),
            stream_time_base,
            layout,
            sample_rate: settings.sample_rate,
            channels: usize::from(settings.channels),
            frame_size,
            pending: vec![Vec::with_capacity(frame_size); usize::from(settings.channels)],
            samples_in: 0,
            held: None,
            discard_total: 0,
            comment: tags.comment.clone(),
        })
    }

    /// Writes interleaved samples (`L R L R …` for stereo); the length must be a multiple of
    /// the channel count.
    pub fn write_interleaved(&mut self, samples: &[f32]) -> Result<()> {
        if samples.len() % self.channels != 0 {
            return Err(Error::Options(format!(
                "{} interleaved samples are not a whole number of {}-channel frames",
                samples.len(),
                self.channels
            )));
        }
        let channels = self.channels;
        self.push(samples.len() / channels, |ch, i| samples[i * channels + ch])
    }

    /// Flushes the encoder, writes the trailer (which fills in the Xing/LAME header) and closes
    /// the file; then reads the header back and fails with [`Error::Verify`] unless its gapless
    /// length equals the samples written.
    pub fn finish(mut self) -> Result<Mp3Written> {
        if !self.pending[0].is_empty() {
            // A short last frame: libmp3lame accepts it (AV_CODEC_CAP_SMALL_LAST_FRAME) and
            // reports the shortfall as padding, which is what makes the length exact.
            self.send_pending()?;
        }
        self.encoder
            .send_eof()
            .map_err(|e| Error::av(Some(&self.path), "flush the MP3 encoder", e))?;
        self.write_ready_packets()?;
        if let Some(mut last) = self.held.take() {
            let total = u32::try_from(self.discard_total).unwrap_or(u32::MAX);
            if let Some(skip) = skip_samples_side_data(&mut last, total > 0) {
                skip[4..8].copy_from_slice(&total.to_le_bytes());
            }
            self.write_packet(&last)?;
        }
        self.octx
            .write_trailer()
            .map_err(|e| Error::av(Some(&self.path), "write the MP3 trailer", e))?;
        let Mp3Writer {
            path,
            octx,
            samples_in,
            comment,
            ..
        } = self;
        // Dropping the context flushes the AVIOContext and closes the file.
        drop(octx);
        if let Some(comment) = comment {
            add_comment_frame(&path, &comment)?;
        }

        let bytes = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, "read the size of the written MP3", e))?
            .len();
        let xing = read_xing_header(&path)?.ok_or_else(|| Error::Verify {
            path: path.clone(),
            problems: vec!["the mp3 muxer wrote no Xing/Info header".into()],
        })?;
        if xing.gapless_samples() != samples_in {
            return Err(Error::Verify {
                path,
                problems: vec![format!(
                    "the Xing/LAME header describes {} samples, {} were written ({xing:?})",
                    xing.gapless_samples(),
                    samples_in
                )],
            });
        }
        Ok(Mp3Written {
            samples: samples_in,
            bytes,
            xing,
        })
    }

    /// Appends `n` samples per channel (`sample(channel, index)`), encoding each full frame.
    fn push(&mut self, n: usize, sample: impl Fn(usize, usize) -> f32) -> Result<()> {
        let mut i = 0;
        while i < n {
            let take = (self.frame_size - self.pending[0].len()).min(n - i);
            for (ch, plane) in self.pending.iter_mut().enumerate() {
                plane.extend((i..i + take).map(|k| sample(ch, k)));
            }
            i += take;
            if self.pending[0].len() == self.frame_size {
                self.send_pending()?;
            }
        }
        Ok(())
    }

    fn send_pending(&mut self) -> Result<()> {
        let len = self.pending[0].len();
        // A fresh frame each time: the encoder may keep a reference to a frame it was sent, so
        // reusing one buffer would need av_frame_make_writable, which ffmpeg-next does not wrap.
        let mut frame = frame::Audio::new(
            format::Sample::F32(format::sample::Type::Planar),
            len,
            self.layout,
        );
        frame.set_rate(self.sample_rate);
        frame.set_pts(Some(self.samples_in as i64));
        for (ch, plane) in self.pending.iter_mut().enumerate() {
            frame.plane_mut::<f32>(ch)[..len].copy_from_slice(plane);
            plane.clear();
        }
        self.samples_in += len as u64;
        self.encoder
            .send_frame(&frame)
            .map_err(|e| Error::av(Some(&self.path), "encode MP3 audio", e))?;
        self.write_ready_packets()
    }

    fn write_ready_packets(&mut self) -> Result<()> {
        let mut packet = Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => {
                    packet.set_stream(self.audio_stream);
                    packet.rescale_ts(self.encoder_time_base, self.stream_time_base);
                    if let Some(skip) = skip_samples_side_data(&mut packet, false) {
                        let discard = u32::from_le_bytes([skip[4], skip[5], skip[6], skip[7]]);
                        self.discard_total += u64::from(discard);
                    }
                    if let Some(previous) = self.held.replace(packet) {
                        self.write_packet(&previous)?;
                    }
                    packet = Packet::empty();
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                    return Ok(())
                }
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) => return Err(Error::av(Some(&self.path), "encode MP3 audio", e)),
            }
        }
    }
}

impl Mp3Writer {
    fn write_packet(&mut self, packet: &Packet) -> Result<()> {
        // av_write_frame, not the interleaving variant: there is one audio stream and the cover
        // went first, so there is nothing to interleave.
        packet
            .write(&mut self.octx)
            .map(drop)
            .map_err(|e| Error::av(Some(&self.path), "write an MP3 frame", e))
    }
}

/// The packet's `AV_PKT_DATA_SKIP_SAMPLES` side data: samples to skip at the start (bytes 0..4)
/// and to discard at the end (4..8), little-endian, then two reason bytes. With `create`, a
/// zeroed one is added when the packet has none.
fn skip_samples_side_data(packet: &mut Packet, create: bool) -> Option<&mut [u8; 10]> {
    use ffmpeg::ffi::{av_packet_get_side_data, av_packet_new_side_data, AVPacketSideDataType};
    const KIND: AVPacketSideDataType = AVPacketSideDataType::AV_PKT_DATA_SKIP_SAMPLES;
    // SAFETY: `packet` is an initialized AVPacket we own exclusively for the returned borrow.
    // Both calls return null or a buffer of at least `size` bytes owned by the packet's side
    // data (new side data is zeroed), which lives as long as the packet is not modified — the
    // `&mut` borrow of `packet` guarantees that. ffmpeg-next only offers a read-only side data
    // iterator, and its type conversion panics on types it does not know.
    unsafe {
        let pkt = packet.as_mut_ptr();
        let mut size = 0usize;
        let mut data = av_packet_get_side_data(pkt, KIND, &mut size);
        if data.is_null() && create {
            size = 10;
            data = av_packet_new_side_data(pkt, KIND, size);
        }
        if data.is_null() || size < 10 {
            return None;
        }
        Some(&mut *data.cast::<[u8; 10]>())
    }
}

/// Adds an ID3v2.3 COMM frame (language `eng`, empty description) to the file's tag.
fn add_comment_frame(path: &Path, comment: &str) -> Result<()> {
    let id3_error = |e: id3::Error| {
        Error::io(
            path,
            "add the comment to the ID3 tag",
            std::io::Error::other(e.to_string()),
        )
    };
    use id3::TagLike as _;
    let mut tag = id3::Tag::read_from_path(path).map_err(id3_error)?;
    tag.add_frame(id3::frame::Comment {
        lang: "eng".into(),
        description: String::new(),
        text: comment.into(),
    });
    tag.write_to_path(path, id3::Version::Id3v23)
        .map_err(id3_error)
}

fn validate(settings: &Mp3Settings) -> Result<()> {
    if !MP3_SAMPLE_RATES.contains(&settings.sample_rate) {
        return Err(Error::Options(format!(
            "MP3 cannot carry {} Hz; use one of {MP3_SAMPLE_RATES:?}",
            settings.sample_rate
        )));
    }
    if !(1..=2).contains(&settings.channels) {
        return Err(Error::Options(format!(
            "MP3 fixtures are mono or stereo, not {} channels",
            settings.channels
        )));
    }
    match settings.rate_control {
        RateControl::Cbr { bitrate_bps } if !(8_000..=320_000).contains(&bitrate_bps) => {
            Err(Error::Options(format!(
                "MP3 bitrate {bitrate_bps} b/s is outside 8–320 kb/s"
            )))
        }
        RateControl::Vbr { quality } if quality > 9 => Err(Error::Options(format!(
            "LAME VBR quality {quality} is outside 0–9"
        ))),
        _ => Ok(()),
    }
}

/// The muxer's generic metadata keys; for ID3v2.3 it maps them to TIT2, TALB, TPE1, TPE2, TCOM,
/// TCON, TYER (split from `date`), TRCK, TPOS. The comment is left out: keys without an ID3
/// frame become TXXX frames named after the key (see the module comment).
pub(crate) fn tags_dictionary(tags: &Tags) -> Result<Dictionary<'static>> {
    let numbered = |n: Option<u32>, total: Option<u32>| match (n, total) {
        (Some(n), Some(t)) => Some(format!("{n}/{t}")),
        (Some(n), None) => Some(n.to_string()),
        _ => None,
    };
    let fields = [
        ("title", tags.title.clone()),
        ("album", tags.album.clone()),
        ("artist", tags.artist.clone()),
        ("album_artist", tags.album_artist.clone()),
        ("composer", tags.composer.clone()),
        ("genre", tags.genre.clone()),
        ("date", tags.year.clone()),
        ("track", numbered(tags.track, tags.track_total)),
        ("disc", numbered(tags.disc, tags.disc_total)),
    ];
    if tags.comment.as_deref().is_some_and(|c| c.contains('\0')) {
        return Err(Error::Options(
            "the comment contains a NUL character".into(),
        ));
    }
    let mut dict = Dictionary::new();
    for (key, value) in fields {
        if let Some(value) = value {
            // ffmpeg-next panics on interior NULs; C strings cannot carry them anyway.
            if value.contains('\0') {
                return Err(Error::Options(format!(
                    "tag {key} contains a NUL character"
                )));
            }
            dict.set(key, &value);
        }
    }
    Ok(dict)
}

pub(crate) fn picture_codec(mime: &str) -> Result<codec::Id> {
    match mime {
        "image/jpeg" | "image/jpg" => Ok(codec::Id::MJPEG),
        "image/png" => Ok(codec::Id::PNG),
        other => Err(Error::Options(format!(
            "cover MIME type {other:?} is not image/jpeg or image/png"
        ))),
    }
}

/// Adds the attached-picture stream whose single packet the muxer turns into an APIC frame.
pub(crate) fn add_picture_stream(
    octx: &mut format::context::Output,
    picture: &Picture,
    codec_id: codec::Id,
) -> std::result::Result<usize, ffmpeg::Error> {
    // Only the codec id (which picks the APIC MIME type) matters to the mp3 muxer, but
    // libavformat rejects video streams without dimensions, so unknown ones are given as 1×1.
    let image_codec = codec::encoder::find(codec_id)
        .or_else(|| codec::decoder::find(codec_id))
        .ok_or(ffmpeg::Error::EncoderNotFound)?;
    let mut params = codec::Context::new_with_codec(image_codec)
        .encoder()
        .video()?;
    params.set_width(picture.width.unwrap_or(1).max(1));
    params.set_height(picture.height.unwrap_or(1).max(1));
    let mut stream = octx.add_stream_with(params.as_ref())?;
    let mut metadata = Dictionary::new();
    // The APIC picture type comes from the stream's `comment`, matched against FFmpeg's list of
    // ID3 picture type names; without it the picture is written as type 0 "Other".
    metadata.set("comment", "Cover (front)");
    stream.set_metadata(metadata);
    // SAFETY: `stream` borrows `octx` mutably, so the AVStream pointer is valid and not aliased;
    // `disposition` is a plain int that ffmpeg-next has no setter for.
    unsafe {
        (*stream.as_mut_ptr()).disposition |= ffmpeg::ffi::AV_DISPOSITION_ATTACHED_PIC;
    }
    Ok(stream.index())
}

/// Reads the Xing/Info header and its LAME extension from the first frame after the ID3v2 tags
/// (with the test kit's own parser, not the library's); `None` unless the header has a frame
/// count and a LAME extension.
pub fn read_xing_header(path: &Path) -> Result<Option<XingHeader>> {
    let io = |e| Error::io(path, "read back the written MP3", e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let header = mp3frame::read_xing_lame(&mut file).map_err(io)?;
    Ok(header.map(|x| XingHeader {
        vbr: x.vbr,
        frames: x.frames,
        samples_per_frame: x.frame.samples_per_frame(),
        encoder_delay: x.encoder_delay,
        padding: x.padding,
    }))
}
