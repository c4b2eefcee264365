//! The Fraunhofer FDK AAC encoder (cargo feature `fdk-aac`) behind [`AudioEncoder`]: AAC-LC,
//! HE-AAC (SBR) and HE-AAC v2 (SBR + parametric stereo) as raw access units for the same muxer
//! the native encoder feeds.
//!
//! The library is built from the source bundled in `fdk-aac-sys`; its license is not
//! GPL-compatible (see `docs/fdk-aac.md`), which is why the feature is off by default.
//!
//! **Timestamps.** Packet `k` (0-based; FDK emits one per input frame from the first on)
//! decodes to the output samples starting at `k·F − delay`, `F` being the frame size at the
//! output rate (1024 for AAC-LC, 2048 for dual-rate HE-AAC). The flush produces packets until
//! the delay line is empty; packets that start at or after the last input sample are dropped and
//! the last one kept gets the true remaining duration, so the stream holds exactly
//! `delay + input` samples — the contract of the native encoder, which lets the muxer's edit
//! list and the segment arithmetic work unchanged.
//!
//! **Which delay.** FDK reports two: `nDelay` (everything, including the delay of the
//! decoder's SBR filter banks: 962 output samples) and `nDelayCore` (without it), which FDK
//! documents as the one for edit lists. HE-AAC in MP4 is written as iTunes writes it (and qaac
//! and fdkaac, which follow it) — track timescale = the core's rate (half the output rate),
//! edit list = the core delay — and an HE-AAC decoder removes its own SBR delay (Apple's does).
//! So the priming is `nDelayCore`: 2048 for AAC-LC, 4096 for HE-AAC, 6144 for HE-AAC v2.
//! FFmpeg 5.1's decoder does not remove the SBR delay (nor, by reports on iTunes files, do
//! later ones), so through FFmpeg HE-AAC starts 962 samples (22 ms at 44.1 kHz) late, as every
//! iTunes HE-AAC file does; with the full `nDelay` in an output-rate timescale instead,
//! FFmpeg 5.1 (which doubles the edit list's skip for SBR streams, expecting a core-rate
//! timescale) cuts the first 115 ms of audio (measured). AAC-LC has no such difference: both
//! delays are 2048.
//!
//! **Signalling.** For HE-AAC the AudioSpecificConfig uses *explicit hierarchical* signalling
//! (object type 5 or 29 first, then the output rate and the AAC-LC core), set explicitly
//! (FDK's default for raw MP4 payloads is the same, but not for other transports). It is what
//! Apple's encoders write for HE-AAC in MP4 (`mp4a.40.5`) and what Apple's players expect, and
//! the file announces the full output rate, so a player that only knows AAC-LC refuses it
//! instead of playing a muffled half-rate core. Implicit signalling (an AAC-LC config, SBR found
//! only in the stream) leaves players that go by the config at the core's half rate.
use super::aac::{AudioEncoder, EncodedPacket, StreamParams};
use crate::error::{Error, Result};
use crate::options::{AacProfile, EncoderSettings};
use fdk_aac_sys as sys;
use std::os::raw::{c_int, c_void};

/// FDK's `AACENC_SIGNALING_MODE` value for explicit hierarchical SBR/PS signalling.
const SIGNALING_EXPLICIT_HIERARCHICAL: u32 = 2;
/// `AACENC_TRANSMUX` value for raw access units (the ASC goes to the container).
const TRANSMUX_RAW: u32 = 0;
/// `AACENC_BITRATEMODE` value for constant bitrate (the bitrate the user asked for).
const BITRATE_MODE_CBR: u32 = 0;
/// Flush calls after which an encoder that still emits packets is considered broken: the
/// delay line of every FDK configuration is a few frames long.
const MAX_FLUSH_PACKETS: usize = 64;
/// Samples per frame of the AAC-LC core (at the core's rate).
const AAC_CORE_FRAME: u32 = 1024;

/// The environment variable that turns FDK's afterburner off (`0`, `off`, `no`, `false`):
/// about 40 % less encoder CPU for a little quality (see `docs/fdk-aac.md`).
pub const AFTERBURNER_ENV: &str = "AIOM4B_FDK_AFTERBURNER";

/// Whether the afterburner is on: unless [`AFTERBURNER_ENV`] says off.
fn afterburner() -> bool {
    !std::env::var(AFTERBURNER_ENV).is_ok_and(|v| {
        matches!(
            v.to_ascii_lowercase().as_str(),
            "0" | "off" | "no" | "false"
        )
    })
}

/// An opened FDK AAC encoder.
pub struct FdkEncoder {
    handle: sys::HANDLE_AACENCODER,
    params: StreamParams,
    channels: usize,
    /// Interleaved 16-bit input for one call (FDK takes interleaved `INT_PCM`).
    input: Vec<i16>,
    /// One access unit (sized by FDK's `maxOutBufBytes`).
    output: Vec<u8>,
    /// Input samples per channel given to the encoder so far.
    fed: i64,
    /// Packets produced so far (the next packet's index).
    produced: i64,
    /// The flush has run; the encoder accepts nothing more.
    flushed: bool,
}

// SAFETY: the handle is owned exclusively by this value; FDK encoder instances keep no
// thread-local or global mutable state, and `&mut self` keeps calls from overlapping.
unsafe impl Send for FdkEncoder {}

impl Drop for FdkEncoder {
    fn drop(&mut self) {
        // SAFETY: the handle came from aacEncOpen and is closed once; aacEncClose nulls it.
        unsafe {
            sys::aacEncClose(&mut self.handle);
        }
    }
}

/// FDK's message for an error code.
fn describe(code: sys::AACENC_ERROR) -> &'static str {
    match code {
        sys::AACENC_ERROR_AACENC_INVALID_HANDLE => "invalid handle",
        sys::AACENC_ERROR_AACENC_MEMORY_ERROR => "out of memory",
        sys::AACENC_ERROR_AACENC_UNSUPPORTED_PARAMETER => "unsupported parameter",
        sys::AACENC_ERROR_AACENC_INVALID_CONFIG => "invalid configuration",
        sys::AACENC_ERROR_AACENC_INIT_ERROR => "initialization error",
        sys::AACENC_ERROR_AACENC_INIT_AAC_ERROR => "AAC core initialization error",
        sys::AACENC_ERROR_AACENC_INIT_SBR_ERROR => "SBR initialization error",
        sys::AACENC_ERROR_AACENC_INIT_TP_ERROR => "transport initialization error",
        sys::AACENC_ERROR_AACENC_INIT_META_ERROR => "metadata initialization error",
        sys::AACENC_ERROR_AACENC_INIT_MPS_ERROR => "MPEG Surround initialization error",
        sys::AACENC_ERROR_AACENC_ENCODE_ERROR => "encoding error",
        sys::AACENC_ERROR_AACENC_ENCODE_EOF => "end of stream",
        _ => "unknown error",
    }
}

fn fdk_error(what: impl Into<String>, code: sys::AACENC_ERROR) -> Error {
    Error::Encoder {
        what: what.into(),
        reason: format!("FDK AAC: {} (code {code:#x})", describe(code)),
    }
}

/// What a settings value means to FDK and to the user.
fn profile_name(p: AacProfile) -> &'static str {
    match p {
        AacProfile::Lc => "AAC-LC",
        AacProfile::He => "HE-AAC",
        AacProfile::Hev2 => "HE-AAC v2",
    }
}

impl FdkEncoder {
    /// Opens FDK for `settings` (target rate, channels, bitrate, profile).
    pub fn new(settings: &EncoderSettings) -> Result<Self> {
        let t = &settings.target;
        let channels = t.channels as usize;
        if settings.profile == AacProfile::Hev2 && channels != 2 {
            return Err(Error::Options(
                "HE-AAC v2 codes stereo as mono plus parametric stereo and needs stereo output; \
                 use the HE-AAC (v1) profile for mono"
                    .into(),
            ));
        }
        let aot = match settings.profile {
            AacProfile::Lc => sys::AUDIO_OBJECT_TYPE_AOT_AAC_LC,
            AacProfile::He => sys::AUDIO_OBJECT_TYPE_AOT_SBR,
            AacProfile::Hev2 => sys::AUDIO_OBJECT_TYPE_AOT_PS,
        } as u32;
        let mut handle: sys::HANDLE_AACENCODER = std::ptr::null_mut();
        // SAFETY: aacEncOpen writes a new handle into `handle`; 0 modules = all the AOT needs.
        let r = unsafe { sys::aacEncOpen(&mut handle, 0, channels as u32) };
        if r != sys::AACENC_ERROR_AACENC_OK {
            return Err(fdk_error("open the FDK AAC encoder", r));
        }
        // From here the handle is owned by `enc`, whose Drop closes it on every error path.
        let mut enc = FdkEncoder {
            handle,
            params: StreamParams {
                sample_rate: t.sample_rate,
                channels: t.channels,
                bitrate_bps: t.bitrate_bps,
                frame_samples: 0,
                priming_samples: 0,
                extradata: Vec::new(),
                media_timescale: t.sample_rate,
            },
            channels,
            input: Vec::new(),
            output: Vec::new(),
            fed: 0,
            produced: 0,
            flushed: false,
        };
        let set = |param: sys::AACENC_PARAM, value: u32, what: &str| -> Result<()> {
            // SAFETY: a valid handle; aacEncoder_SetParam only records the value.
            let r = unsafe { sys::aacEncoder_SetParam(enc.handle, param, value) };
            if r == sys::AACENC_ERROR_AACENC_OK {
                Ok(())
            } else {
                Err(fdk_error(format!("set the {what} to {value}"), r))
            }
        };
        set(sys::AACENC_PARAM_AACENC_AOT, aot, "audio object type")?;
        set(
            sys::AACENC_PARAM_AACENC_SAMPLERATE,
            t.sample_rate,
            "sample rate",
        )?;
        set(
            sys::AACENC_PARAM_AACENC_CHANNELMODE,
            channels as u32,
            "channel mode",
        )?;
        set(
            sys::AACENC_PARAM_AACENC_BITRATEMODE,
            BITRATE_MODE_CBR,
            "bitrate mode",
        )?;
        set(
            sys::AACENC_PARAM_AACENC_BITRATE,
            t.bitrate_bps as u32,
            "bitrate",
        )?;
        set(sys::AACENC_PARAM_AACENC_TRANSMUX, TRANSMUX_RAW, "transport")?;
        if settings.profile != AacProfile::Lc {
            set(
                sys::AACENC_PARAM_AACENC_SIGNALING_MODE,
                SIGNALING_EXPLICIT_HIERARCHICAL,
                "SBR signalling mode",
            )?;
        }
        // The analysis-by-synthesis quality stage: off by default in FDK for embedded CPUs;
        // what every desktop front end turns on. It is most of FDK's time (measured on the
        // 1-hour book: 40 % of the encoder's CPU), so [`AFTERBURNER_ENV`] can turn it off.
        set(
            sys::AACENC_PARAM_AACENC_AFTERBURNER,
            afterburner() as u32,
            "afterburner",
        )?;

        // SAFETY: a valid handle; all-null arguments apply the configuration (FDK's documented
        // initialization call).
        let r = unsafe {
            sys::aacEncEncode(
                enc.handle,
                std::ptr::null(),
                std::ptr::null(),
                std::ptr::null(),
                std::ptr::null_mut(),
            )
        };
        if r != sys::AACENC_ERROR_AACENC_OK {
            return Err(Error::Options(format!(
                "the FDK AAC encoder rejects {} at {} Hz, {} channel(s), {} b/s ({}); \
                 HE-AAC suits 16–64 kb/s at 22.05–48 kHz, AAC-LC 32–320 kb/s",
                profile_name(settings.profile),
                t.sample_rate,
                channels,
                t.bitrate_bps,
                describe(r)
            )));
        }
        let mut info = std::mem::MaybeUninit::<sys::AACENC_InfoStruct>::zeroed();
        // SAFETY: a valid, initialized handle; aacEncInfo fills the struct.
        let r = unsafe { sys::aacEncInfo(enc.handle, info.as_mut_ptr()) };
        if r != sys::AACENC_ERROR_AACENC_OK {
            return Err(fdk_error("read the encoder configuration", r));
        }
        // SAFETY: zero-initialized and filled by aacEncInfo; every field is plain data.
        let info = unsafe { info.assume_init() };
        // SAFETY: a valid handle; reading back the bitrate FDK settled on (it clamps to what
        // the configuration supports).
        let actual_bps =
            unsafe { sys::aacEncoder_GetParam(enc.handle, sys::AACENC_PARAM_AACENC_BITRATE) };
        if actual_bps as u64 != t.bitrate_bps {
            tracing::warn!(
                requested = t.bitrate_bps,
                actual = actual_bps,
                "FDK AAC adjusted the bitrate to what {} supports at {} Hz",
                profile_name(settings.profile),
                t.sample_rate
            );
        }
        let conf = info.confSize.min(info.confBuf.len() as u32) as usize;
        enc.params.frame_samples = info.frameLength as usize;
        // The core's delay, without the SBR decoder's (see the module docs).
        enc.params.priming_samples = info.nDelayCore as i64;
        // Dual-rate SBR: the core codes 1024 samples per frame at half the output rate.
        let sbr_ratio = (info.frameLength / AAC_CORE_FRAME).max(1);
        enc.params.media_timescale = t.sample_rate / sbr_ratio;
        enc.params.bitrate_bps = actual_bps as u64;
        enc.params.extradata = info.confBuf[..conf].to_vec();
        if enc.params.frame_samples == 0 || conf == 0 {
            return Err(Error::Encoder {
                what: "configure the FDK AAC encoder".into(),
                reason: format!(
                    "FDK reported a frame length of {} and a {conf}-byte AudioSpecificConfig",
                    info.frameLength
                ),
            });
        }
        enc.output = vec![0; (info.maxOutBufBytes as usize).max(768 * channels)];
        tracing::debug!(
            frame = info.frameLength,
            delay = info.nDelay,
            delay_core = info.nDelayCore,
            asc = ?enc.params.extradata,
            "FDK AAC encoder opened"
        );
        Ok(enc)
    }

    /// One `aacEncEncode` call on `self.input[from..]` (`None` = flush). Returns the interleaved
    /// samples consumed, the access unit's size in `self.output`, and whether the flush is over.
    fn call(&mut self, from: Option<usize>) -> Result<(usize, usize, bool)> {
        let mut dummy: i16 = 0;
        let (in_ptr, in_len): (*mut i16, usize) = match from {
            Some(i) => (self.input[i..].as_mut_ptr(), self.input.len() - i),
            // FDK wants a non-null buffer even when flushing.
            None => (&mut dummy, 0),
        };
        let mut in_buf = in_ptr as *mut c_void;
        let mut in_id = sys::AACENC_BufferIdentifier_IN_AUDIO_DATA as c_int;
        let mut in_size = (in_len * 2) as c_int;
        let mut in_el = 2 as c_int;
        let in_desc = sys::AACENC_BufDesc {
            numBufs: 1,
            bufs: &mut in_buf,
            bufferIdentifiers: &mut in_id,
            bufSizes: &mut in_size,
            bufElSizes: &mut in_el,
        };
        let mut out_buf = self.output.as_mut_ptr() as *mut c_void;
        let mut out_id = sys::AACENC_BufferIdentifier_OUT_BITSTREAM_DATA as c_int;
        let mut out_size = self.output.len() as c_int;
        let mut out_el = 1 as c_int;
        let out_desc = sys::AACENC_BufDesc {
            numBufs: 1,
            bufs: &mut out_buf,
            bufferIdentifiers: &mut out_id,
            bufSizes: &mut out_size,
            bufElSizes: &mut out_el,
        };
        let in_args = sys::AACENC_InArgs {
            numInSamples: if from.is_some() { in_len as c_int } else { -1 },
            numAncBytes: 0,
        };
        let mut out_args = sys::AACENC_OutArgs {
            numOutBytes: 0,
            numInSamples: 0,
            numAncBytes: 0,
            bitResState: 0,
        };
        // SAFETY: the descriptors point at locals and at `self.input`/`self.output`, which live
        // and are not otherwise borrowed for the duration of the call; the sizes given are those
        // of the buffers (in bytes), so FDK reads and writes within them.
        let r =
            unsafe { sys::aacEncEncode(self.handle, &in_desc, &out_desc, &in_args, &mut out_args) };
        match r {
            sys::AACENC_ERROR_AACENC_OK => Ok((
                out_args.numInSamples.max(0) as usize,
                out_args.numOutBytes.max(0) as usize,
                false,
            )),
            sys::AACENC_ERROR_AACENC_ENCODE_EOF if from.is_none() => Ok((0, 0, true)),
            e => Err(fdk_error("encode AAC", e)),
        }
    }

    /// Turns the access unit in `self.output` into the next packet, with its timestamp; packets
    /// at or past the end of the input (flush padding) are dropped and the last one kept is
    /// trimmed to the true remainder.
    fn emit(&mut self, bytes: usize, out: &mut Vec<EncodedPacket>) {
        let f = self.params.frame_samples as i64;
        let pts = self.produced * f - self.params.priming_samples;
        self.produced += 1;
        let duration = f.min(self.fed - pts);
        if duration <= 0 {
            return;
        }
        out.push(EncodedPacket {
            data: self.output[..bytes].to_vec(),
            pts,
            duration,
        });
    }
}

/// `(x · 2^15).round().clamp(-32768, 32767) as i16`, without `round` (see `encode`).
#[inline]
fn to_i16(x: f32) -> i16 {
    let v = x as f64 * 32768.0;
    ((v + 0.5f64.copysign(v)) as i32).clamp(-32768, 32767) as i16
}

impl AudioEncoder for FdkEncoder {
    fn params(&self) -> StreamParams {
        self.params.clone()
    }

    fn encode(&mut self, planes: &[&[f32]], out: &mut Vec<EncodedPacket>) -> Result<()> {
        if self.flushed {
            return Err(Error::Encoder {
                what: "encode AAC".into(),
                reason: "the FDK AAC encoder was already flushed".into(),
            });
        }
        let n = planes.first().map_or(0, |p| p.len());
        debug_assert!(n > 0 && n <= self.params.frame_samples);
        // Interleave and convert to 16 bits as libswresample does (scale by 2^15, round,
        // saturate): FDK's input type is 16-bit PCM. Rounding half away from zero as
        // `f32::round` does, but without it: on baseline x86-64 (no SSE4.1) `round` is a libm
        // call per sample, which cost 1.7 % of a whole FDK conversion. In f64 the sum is exact
        // (an f32 scaled by 2^15 has 24 significant bits) and `as` truncates toward zero, so
        // this is the same value, in a loop the compiler vectorizes.
        let ch = self.channels;
        self.input.clear();
        self.input.resize(n * ch, 0);
        for (c, plane) in planes.iter().take(ch).enumerate() {
            for (dst, &x) in self.input[c..].iter_mut().step_by(ch).zip(&plane[..n]) {
                *dst = to_i16(x);
            }
        }
        self.fed += n as i64;
        let mut at = 0;
        while at < self.input.len() {
            let (consumed, bytes, _) = self.call(Some(at))?;
            at += consumed;
            if bytes > 0 {
                self.emit(bytes, out);
            } else if consumed == 0 {
                return Err(Error::Encoder {
                    what: "encode AAC".into(),
                    reason: "the FDK AAC encoder took no input and produced no output".into(),
                });
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<EncodedPacket>) -> Result<()> {
        if self.flushed {
            return Ok(());
        }
        self.flushed = true;
        for _ in 0..MAX_FLUSH_PACKETS {
            let (_, bytes, eof) = self.call(None)?;
            if eof || bytes == 0 {
                return Ok(());
            }
            self.emit(bytes, out);
        }
        Err(Error::Encoder {
            what: "flush the FDK AAC encoder".into(),
            reason: format!("still producing packets after {MAX_FLUSH_PACKETS} flush calls"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::to_i16;

    /// The reference: what the encoder did before, with `f32::round`.
    fn by_round(x: f32) -> i16 {
        (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
    }

    #[test]
    fn the_16_bit_conversion_rounds_as_f32_round_does() {
        let half = 0.5 / 32768.0;
        let mut cases = vec![
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            1.5,
            -1.5,
            0.999_999_9,
            f32::MIN_POSITIVE,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            half,
            -half,
            3.0 * half,
            -3.0 * half,
        ];
        // Just below and above every half step around a few values, and a pseudo-random sweep.
        for k in [
            -40_000i32, -32_769, -32_768, -7, -1, 0, 1, 7, 32_766, 32_767, 40_000,
        ] {
            let at = (k as f32 + 0.5) / 32768.0;
            cases.extend([
                at,
                f32::from_bits(at.to_bits() + 1),
                f32::from_bits(at.to_bits() - 1),
            ]);
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            cases.push(f32::from_bits(seed as u32) % 1.2);
        }
        for x in cases {
            assert_eq!(to_i16(x), by_round(x), "{x:e} ({:#x})", x.to_bits());
        }
    }
}
