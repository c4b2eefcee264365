//! The interface every AAC encoder offers, and what it hands on: the native encoder
//! (`encode.rs`) and the FDK encoder (`fdk.rs`, feature `fdk-aac`) implement [`AudioEncoder`]; the
//! pipeline and the muxer ([`super::mux`]) see only these types. Kept apart from both encoders
//! so that each imports it and neither imports the other.
use crate::error::Result;

/// One encoded AAC frame. `pts` and `duration` count samples at the output rate; the first
/// packets have negative `pts` (the encoder's priming), which the muxer turns into an edit list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPacket {
    pub data: Vec<u8>,
    pub pts: i64,
    pub duration: i64,
}

/// What the muxer needs to describe an encoder's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamParams {
    pub sample_rate: u32,
    pub channels: u16,
    pub bitrate_bps: u64,
    /// Samples per channel per packet (1024 for AAC-LC, 2048 for HE-AAC at the output rate).
    pub frame_samples: usize,
    /// Samples the encoder emits before the first input sample; the first packet's pts is
    /// minus this, and the muxer's edit list hides it.
    pub priming_samples: i64,
    /// The AudioSpecificConfig.
    pub extradata: Vec<u8>,
    /// The clock of the MP4 track (`mdhd` timescale and the `mp4a` entry's rate): the output
    /// rate, except for dual-rate HE-AAC, where it is the AAC core's rate (half the output
    /// rate) as Apple's encoders write it and FFmpeg's demuxer and decoder expect it. Packet
    /// timestamps above stay in output samples; the muxer converts them.
    pub media_timescale: u32,
}

/// An AAC encoder: planar f32 frames of `frame_samples` in (the last may be shorter), packets
/// with timestamps in output samples out. The pipeline and the muxer only see this trait.
pub trait AudioEncoder: Send {
    fn params(&self) -> StreamParams;
    /// Encodes one frame; packets that come out are appended to `out`.
    fn encode(&mut self, planes: &[&[f32]], out: &mut Vec<EncodedPacket>) -> Result<()>;
    /// Flushes; the last packets are appended to `out`.
    fn finish(&mut self, out: &mut Vec<EncodedPacket>) -> Result<()>;
}
