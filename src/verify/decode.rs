//! Decoding every audio packet with Symphonia's AAC decoder, on a few scoped threads
//! (`verify-decode-N`) over contiguous ranges of packets: a long book decodes in a fraction of
//! the time, and the threads end before [`super::summarize`] returns.
use super::{MAX_AAC_PACKET_BYTES, MAX_CHUNK_READ_BYTES};
use crate::mp4box::{self, SampleTable};
use std::fs::File;

#[derive(Debug, Clone, Default)]
pub(super) struct DecodeStats {
    pub(super) packets: u64,
    pub(super) samples: u64,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
    /// Largest frame the decoder returned (1024 for AAC-LC).
    pub(super) max_frame: u64,
}

impl DecodeStats {
    pub(super) fn error(&mut self, sample: usize, what: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("packet {}: {what}", sample + 1));
        }
    }
    pub(super) fn merge(&mut self, o: DecodeStats) {
        self.packets += o.packets;
        self.samples += o.samples;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.errors += o.errors;
        self.max_frame = self.max_frame.max(o.max_frame);
    }
}

/// Decodes every packet, in parallel over contiguous ranges of samples. AAC-LC frames decode
/// independently apart from the overlap with the previous frame, which changes the first
/// frame's *values* in each range but not its sample count, and counts are what is checked.
pub(super) fn decode_all(
    file: &File,
    table: &SampleTable,
    chunks: &[mp4box::ChunkRun],
    asc: Option<&[u8]>,
    sample_rate: u32,
    channels: u16,
) -> DecodeStats {
    let params = decoder_params(asc, sample_rate, channels);
    let n_samples = table.sizes.len();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8)
        // Each thread should get at least a minute or so of audio, or it costs more than it saves.
        .min(n_samples / 4096 + 1);
    let per = n_samples.div_ceil(threads.max(1)).max(1);
    let mut total = DecodeStats::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n_samples)
            .step_by(per)
            .enumerate()
            .map(|(i, start)| {
                let params = &params;
                let range = start..(start + per).min(n_samples);
                std::thread::Builder::new()
                    .name(format!("verify-decode-{i}"))
                    .spawn_scoped(scope, move || {
                        decode_run(file, table, chunks, range, params)
                    })
            })
            .collect();
        for h in handles {
            match h {
                Ok(h) => match h.join() {
                    Ok(stats) => total.merge(stats),
                    Err(_) => total.error(0, "a decoding thread panicked"),
                },
                Err(e) => total.error(0, format!("could not start a decoding thread: {e}")),
            }
        }
    });
    total
}

/// The decoder's parameters for a stream: its AudioSpecificConfig, or for HE-AAC the AAC-LC
/// core's rate and channels (`sample_rate` and `channels` are the core's).
pub(super) fn decoder_params(
    asc: Option<&[u8]>,
    sample_rate: u32,
    channels: u16,
) -> symphonia::core::codecs::audio::AudioCodecParameters {
    use symphonia::core::audio::layouts::{CHANNEL_LAYOUT_MONO, CHANNEL_LAYOUT_STEREO};
    use symphonia::core::codecs::audio::well_known::CODEC_ID_AAC;
    use symphonia::core::codecs::audio::AudioCodecParameters;
    let mut params = AudioCodecParameters::new();
    params.for_codec(CODEC_ID_AAC).with_sample_rate(sample_rate);
    let layout = |channels| match channels {
        1 => Some(CHANNEL_LAYOUT_MONO),
        2 => Some(CHANNEL_LAYOUT_STEREO),
        _ => None,
    };
    // Symphonia 0.6 refuses a configuration that signals SBR or PS ("aac too complex"): give
    // it the AAC-LC core alone (its rate and channels, no ASC), which is what 0.5 decoded of
    // HE-AAC. `sample_rate` and `channels` are the core's here.
    let he_aac = asc
        .and_then(mp4box::parse_asc)
        .is_some_and(|a| a.sbr_rate.is_some() || a.ps);
    match asc {
        Some(asc) if !he_aac => {
            params.with_extra_data(asc.to_vec().into_boxed_slice());
        }
        _ => {
            if let Some(layout) = layout(channels) {
                params.with_channels(layout);
            }
        }
    }
    params
}

/// Decodes the samples in `range` (sample indices), reading each chunk's share in one read.
/// Reads go through positioned reads on the one open file, so threads share no file offset.
pub(super) fn decode_run(
    file: &File,
    table: &SampleTable,
    chunks: &[mp4box::ChunkRun],
    range: std::ops::Range<usize>,
    params: &symphonia::core::codecs::audio::AudioCodecParameters,
) -> DecodeStats {
    use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
    use symphonia::core::packet::PacketRef;
    use symphonia::core::units::{Duration, Timestamp};
    use symphonia::default::codecs::AacDecoder;

    use std::os::unix::fs::FileExt;
    let mut st = DecodeStats::default();
    let new_decoder = || AacDecoder::try_new(params, &AudioDecoderOptions::default());
    let mut dec = match new_decoder() {
        Ok(d) => d,
        Err(e) => {
            st.error(
                range.start,
                format!("the AAC decoder rejects the stream configuration: {e}"),
            );
            return st;
        }
    };
    let size_sum =
        |r: std::ops::Range<usize>| -> u64 { table.sizes[r].iter().map(|&x| x as u64).sum() };
    // The first chunk that holds a sample of the range (chunks are in sample order).
    let first = chunks.partition_point(|c| c.first_sample + c.sample_count <= range.start);
    let mut buf = Vec::new();
    for chunk in &chunks[first..] {
        if chunk.first_sample >= range.end {
            break;
        }
        let lo = chunk.first_sample.max(range.start);
        let hi = (chunk.first_sample + chunk.sample_count).min(range.end);
        let mut offset = chunk.offset + size_sum(chunk.first_sample..lo);
        let bytes = size_sum(lo..hi);
        let whole = bytes <= MAX_CHUNK_READ_BYTES;
        if whole {
            buf.resize(bytes as usize, 0);
            let r = file.read_exact_at(&mut buf, offset);
            if let Err(e) = r {
                st.error(lo, format!("read error: {e}"));
                st.errors += (hi - lo).saturating_sub(1) as u64;
                continue;
            }
        }
        let mut pos = 0usize;
        for i in lo..hi {
            let size = table.sizes[i];
            let data: &[u8] = if size > MAX_AAC_PACKET_BYTES {
                st.error(i, format!("{size} bytes is too large for an AAC frame"));
                pos += size as usize;
                offset += size as u64;
                continue;
            } else if whole {
                let d = &buf[pos..pos + size as usize];
                pos += size as usize;
                d
            } else {
                buf.resize(size as usize, 0);
                let r = file.read_exact_at(&mut buf, offset);
                offset += size as u64;
                if let Err(e) = r {
                    st.error(i, format!("read error: {e}"));
                    continue;
                }
                &buf[..]
            };
            // Borrowed, not copied (0.5's `Packet::new_from_slice` copied every frame).
            let pkt = PacketRef::new(0, Timestamp::ZERO, Duration::ZERO, data);
            // Symphonia is not fuzz-hardened everywhere: a panic on hostile data is turned
            // into a decode error (and a fresh decoder) instead of taking the caller down.
            let r = crate::contained::contain(|| dec.decode_ref(&pkt).map(|b| b.frames()));
            match r {
                Ok(Ok(frames)) => {
                    st.packets += 1;
                    st.samples += frames as u64;
                    st.max_frame = st.max_frame.max(frames as u64);
                }
                Ok(Err(e)) => st.error(i, e),
                Err(_) => {
                    st.error(i, "the AAC decoder panicked");
                    match new_decoder() {
                        Ok(d) => dec = d,
                        Err(_) => return st,
                    }
                }
            }
        }
    }
    st
}
