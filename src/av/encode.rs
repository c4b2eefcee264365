//! Opening an AAC encoder: FFmpeg's native AAC-LC encoder (here) or the FDK encoder
//! (`fdk.rs`, feature `fdk-aac`), both behind the interface of [`super::aac`]: planar `f32`
//! frames of [`FRAME_SAMPLES`] in, [`EncodedPacket`]s out with timestamps in samples.
pub use super::aac::{AudioEncoder, EncodedPacket, StreamParams};
use crate::error::{Error, Result};
use crate::model::TargetFormat;
use crate::options::AacCoder;
use ff::ffi;
use ffmpeg_next as ff;

/// Samples per channel in one AAC-LC frame (and one encoder input frame).
pub const FRAME_SAMPLES: usize = 1024;

/// The AAC encoders this build contains (for `aiom4b --version`).
pub const COMPILED_ENCODERS: &str = if cfg!(feature = "fdk-aac") {
    "FFmpeg native aac (LC), Fraunhofer FDK AAC (LC, HE, HEv2; default)"
} else {
    "FFmpeg native aac (LC)"
};

/// Opens the encoder `settings` ask for.
pub fn open_encoder(settings: &crate::options::EncoderSettings) -> Result<Box<dyn AudioEncoder>> {
    use crate::options::{AacProfile, EncoderChoice};
    match settings.encoder {
        EncoderChoice::Native => {
            if settings.profile != AacProfile::Lc {
                return Err(Error::Options(
                    "HE-AAC profiles need the FDK encoder (build with the fdk-aac feature and choose the FDK encoder)".into(),
                ));
            }
            Ok(Box::new(AacEncoder::new(&settings.target, settings.coder)?))
        }
        #[cfg(feature = "fdk-aac")]
        EncoderChoice::Fdk => Ok(Box::new(super::fdk::FdkEncoder::new(settings)?)),
        #[cfg(not(feature = "fdk-aac"))]
        EncoderChoice::Fdk => Err(Error::Options(
            "this aiom4b was built without the FDK AAC encoder; rebuild with the fdk-aac feature or choose the native encoder".into(),
        )),
    }
}

/// An opened native AAC encoder.
pub struct AacEncoder {
    enc: ff::encoder::Audio,
    layout: ff::ChannelLayout,
    rate: u32,
    channels: usize,
    bitrate_bps: u64,
    next_pts: i64,
}

// SAFETY: the encoder context is owned exclusively by this value and libavcodec contexts may be
// moved between threads as long as they are not used concurrently, which `&mut self` ensures.
unsafe impl Send for AacEncoder {}

impl AacEncoder {
    /// Opens the native `aac` encoder for `target` with the given coder.
    pub fn new(target: &TargetFormat, coder: AacCoder) -> Result<Self> {
        super::init();
        let codec = ff::encoder::find_by_name("aac").ok_or_else(|| {
            Error::av(
                None,
                "find FFmpeg's native AAC encoder (libavcodec built without it?)",
                ff::Error::EncoderNotFound,
            )
        })?;
        let layout = if target.channels == 1 {
            ff::ChannelLayout::MONO
        } else {
            ff::ChannelLayout::STEREO
        };
        let mut ctx = ff::codec::context::Context::new_with_codec(codec);
        // MP4 needs the AudioSpecificConfig as extradata, not in-band.
        ctx.set_flags(ff::codec::Flags::GLOBAL_HEADER);
        ctx.set_time_base(ff::Rational::new(1, target.sample_rate as i32));
        let mut enc = ctx
            .encoder()
            .audio()
            .map_err(|e| Error::av(None, "create the AAC encoder", e))?;
        enc.set_rate(target.sample_rate as i32);
        enc.set_channel_layout(layout);
        enc.set_format(ff::format::Sample::F32(ff::format::sample::Type::Planar));
        enc.set_bit_rate(target.bitrate_bps as usize);
        let mut opts = ff::Dictionary::new();
        opts.set("aac_coder", coder.as_ffmpeg());
        let enc = enc.open_as_with(codec, opts).map_err(|e| {
            Error::av(
                None,
                format!(
                    "open the AAC encoder ({} Hz, {} ch, {} b/s)",
                    target.sample_rate, target.channels, target.bitrate_bps
                ),
                e,
            )
        })?;
        Ok(AacEncoder {
            enc,
            layout,
            rate: target.sample_rate,
            channels: target.channels as usize,
            bitrate_bps: target.bitrate_bps,
            next_pts: 0,
        })
    }

    /// The encoder's priming (samples it outputs before the first input sample).
    pub fn priming_samples(&self) -> i64 {
        // SAFETY: reading a plain field of the opened context.
        unsafe { (*self.enc.as_ptr()).initial_padding as i64 }
    }

    /// The AudioSpecificConfig.
    pub fn extradata(&self) -> Vec<u8> {
        // SAFETY: extradata/extradata_size describe a buffer owned by the opened context.
        unsafe {
            let c = self.enc.as_ptr();
            if (*c).extradata.is_null() || (*c).extradata_size <= 0 {
                return Vec::new();
            }
            std::slice::from_raw_parts((*c).extradata, (*c).extradata_size as usize).to_vec()
        }
    }

    fn receive(&mut self, out: &mut Vec<EncodedPacket>) -> Result<()> {
        let mut pkt = ff::Packet::empty();
        loop {
            match self.enc.receive_packet(&mut pkt) {
                Ok(()) => out.push(EncodedPacket {
                    data: pkt.data().map(|d| d.to_vec()).unwrap_or_default(),
                    pts: pkt.pts().unwrap_or(0),
                    duration: pkt.duration(),
                }),
                Err(ff::Error::Other { errno }) if errno == ffi::EAGAIN => return Ok(()),
                Err(ff::Error::Eof) => return Ok(()),
                Err(e) => return Err(Error::av(None, "encode AAC", e)),
            }
        }
    }
}

impl AudioEncoder for AacEncoder {
    fn params(&self) -> StreamParams {
        StreamParams {
            sample_rate: self.rate,
            channels: self.channels as u16,
            bitrate_bps: self.bitrate_bps,
            frame_samples: FRAME_SAMPLES,
            priming_samples: self.priming_samples(),
            extradata: self.extradata(),
            media_timescale: self.rate,
        }
    }

    /// Encodes one frame: `FRAME_SAMPLES` samples per plane, fewer only for the very last frame.
    /// Packets that come out are appended to `out`.
    fn encode(&mut self, planes: &[&[f32]], out: &mut Vec<EncodedPacket>) -> Result<()> {
        let n = planes.first().map_or(0, |p| p.len());
        debug_assert!(n <= FRAME_SAMPLES && n > 0);
        let mut frame = ff::frame::Audio::new(
            ff::format::Sample::F32(ff::format::sample::Type::Planar),
            n,
            self.layout,
        );
        frame.set_rate(self.rate);
        for (c, plane) in planes.iter().enumerate().take(self.channels) {
            frame.plane_mut::<f32>(c)[..n].copy_from_slice(&plane[..n]);
        }
        frame.set_pts(Some(self.next_pts));
        self.next_pts += n as i64;
        self.enc
            .send_frame(&frame)
            .map_err(|e| Error::av(None, "encode AAC", e))?;
        self.receive(out)
    }

    /// Flushes the encoder; the last packets are appended to `out`.
    fn finish(&mut self, out: &mut Vec<EncodedPacket>) -> Result<()> {
        self.enc
            .send_eof()
            .map_err(|e| Error::av(None, "flush the AAC encoder", e))?;
        self.receive(out)
    }
}
