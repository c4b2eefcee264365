//! Verification while converting: the encoder's packets are decoded by the independent decoder
//! (Symphonia's AAC decoder, the one [`decode`](super::decode) uses on a written file) as they
//! come out of the encoder, on the encoder's own thread, instead of in a second pass over the
//! written file. What was decoded is then tied to what was written by a digest: every run of
//! packets a [`PacketCheck`] saw has a BLAKE3 digest of its sizes and bytes, and the final
//! check ([`super::summarize_streamed`]) reads the file's packets through its own sample table
//! and requires the same digests over the same packet ranges, the runs tiling the whole track.
//!
//! So the file is still checked by readers that did not write it — the box walker for the
//! container (sample tables, edit list, chapters, tags), Symphonia for every packet's decode —
//! and a packet changed, lost, added or reordered between encoder and disk fails the digest,
//! where before it would have failed (or, if it still decoded, passed) the second decode.
//! The decode moves off the critical path: it runs while the encoders work, and the final check
//! costs a read and a hash of the audio (about 60 MB an hour at 128 kb/s) instead of a decode.
use super::decode::{decoder_params, DecodeStats};
use crate::mp4box::{self, ChunkRun, SampleTable};
use symphonia::core::codecs::audio::AudioDecoder;
use symphonia::default::codecs::AacDecoder;

/// What one [`PacketCheck`] found: packets `[first_packet, first_packet + packets)` of the
/// track (0-based, in the order they are written) decoded as `stats` says, with `digest`
/// over their sizes and bytes.
#[derive(Debug, Clone)]
pub struct VerifiedRun {
    /// The run's first packet (0-based index in the track).
    pub first_packet: u64,
    /// Packets in the run.
    pub packets: u64,
    /// BLAKE3 over every packet's size (u32, little-endian) and bytes, in order.
    pub digest: [u8; 32],
    pub(super) stats: DecodeStats,
}

/// Decodes a run of consecutive packets with the independent decoder as they are produced,
/// and digests them for the cross-check against the written file.
pub struct PacketCheck {
    decoder: Option<AacDecoder>,
    params: symphonia::core::codecs::audio::AudioCodecParameters,
    hasher: blake3::Hasher,
    first_packet: u64,
    /// Packets given so far.
    seen: u64,
    stats: DecodeStats,
}

impl PacketCheck {
    /// A check of the packets from `first_packet` on, of the stream `asc` describes (its
    /// AudioSpecificConfig; HE-AAC streams are decoded as their AAC-LC core, as the written
    /// file's check does).
    pub fn new(asc: &[u8], first_packet: u64) -> PacketCheck {
        let parsed = mp4box::parse_asc(asc);
        let rate = parsed.and_then(|a| a.sample_rate).unwrap_or(0);
        let channels = parsed.map_or(0, |a| a.channel_config as u16);
        let params = decoder_params(Some(asc), rate, channels);
        let mut check = PacketCheck {
            decoder: None,
            params,
            hasher: blake3::Hasher::new(),
            first_packet,
            seen: 0,
            stats: DecodeStats::default(),
        };
        check.decoder = check.fresh_decoder(0);
        check
    }

    fn fresh_decoder(&mut self, at: usize) -> Option<AacDecoder> {
        use symphonia::core::codecs::audio::AudioDecoderOptions;
        match AacDecoder::try_new(&self.params, &AudioDecoderOptions::default()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.stats.error(
                    at,
                    format!("the AAC decoder rejects the stream configuration: {e}"),
                );
                None
            }
        }
    }

    /// Decodes and digests the next packet.
    pub fn packet(&mut self, data: &[u8]) {
        use symphonia::core::packet::PacketRef;
        use symphonia::core::units::{Duration, Timestamp};
        let index = (self.first_packet + self.seen) as usize;
        self.seen += 1;
        digest_packet(&mut self.hasher, data);
        let Some(dec) = self.decoder.as_mut() else {
            self.stats.error(index, "no decoder");
            return;
        };
        let pkt = PacketRef::new(0, Timestamp::ZERO, Duration::ZERO, data);
        // As in the written file's check: a panic on odd data is a decode error.
        let r = crate::contained::contain(|| dec.decode_ref(&pkt).map(|b| b.frames()));
        match r {
            Ok(Ok(frames)) => {
                let st = &mut self.stats;
                st.packets += 1;
                st.samples += frames as u64;
                st.max_frame = st.max_frame.max(frames as u64);
            }
            Ok(Err(e)) => self.stats.error(index, e),
            Err(_) => {
                self.stats.error(index, "the AAC decoder panicked");
                self.decoder = self.fresh_decoder(index);
            }
        }
    }

    /// The run's result.
    pub fn finish(self) -> VerifiedRun {
        VerifiedRun {
            first_packet: self.first_packet,
            packets: self.seen,
            digest: *self.hasher.finalize().as_bytes(),
            stats: self.stats,
        }
    }
}

/// One packet into a run's digest: its size, then its bytes (so that moving a byte across a
/// packet boundary changes the digest too).
fn digest_packet(h: &mut blake3::Hasher, data: &[u8]) {
    h.update(&(data.len() as u32).to_le_bytes());
    h.update(data);
}

/// The decode statistics of `runs`, after checking that they tile the track's packets and that
/// the file holds exactly the packets they digested. A run the file disagrees with counts all
/// its packets as errors, with the first error saying which packets differ.
pub(super) fn check_runs(
    file: &std::fs::File,
    table: &SampleTable,
    chunks: &[ChunkRun],
    runs: &[VerifiedRun],
) -> DecodeStats {
    use std::os::unix::fs::FileExt;
    let n = table.sizes.len();
    let mut runs: Vec<&VerifiedRun> = runs.iter().collect();
    runs.sort_by_key(|r| r.first_packet);
    let mut total = DecodeStats::default();
    let mut next = 0u64;
    for r in &runs {
        if r.first_packet != next {
            total.error(
                next as usize,
                format!(
                    "packets {}–{} were not decoded while encoding",
                    next + 1,
                    r.first_packet
                ),
            );
            return total;
        }
        next = r.first_packet + r.packets;
    }
    if next != n as u64 {
        total.error(
            next.min(n as u64) as usize,
            format!("the file has {n} audio packets, {next} were decoded while encoding"),
        );
        return total;
    }
    let size_sum =
        |r: std::ops::Range<usize>| -> u64 { table.sizes[r].iter().map(|&x| x as u64).sum() };
    let mut buf = Vec::new();
    for r in runs {
        let range = r.first_packet as usize..(r.first_packet + r.packets) as usize;
        let mut h = blake3::Hasher::new();
        let mut read_error = None;
        let first = chunks.partition_point(|c| c.first_sample + c.sample_count <= range.start);
        'chunks: for chunk in &chunks[first..] {
            if chunk.first_sample >= range.end {
                break;
            }
            let lo = chunk.first_sample.max(range.start);
            let hi = (chunk.first_sample + chunk.sample_count).min(range.end);
            let offset = chunk.offset + size_sum(chunk.first_sample..lo);
            // Chunks are small (the writers put about a second of audio in each).
            buf.resize(size_sum(lo..hi) as usize, 0);
            if let Err(e) = file.read_exact_at(&mut buf, offset) {
                read_error = Some((lo, e));
                break 'chunks;
            }
            let mut pos = 0usize;
            for i in lo..hi {
                let size = table.sizes[i] as usize;
                digest_packet(&mut h, &buf[pos..pos + size]);
                pos += size;
            }
        }
        let mut stats = r.stats.clone();
        if let Some((at, e)) = read_error {
            stats.error(at, format!("read error: {e}"));
        } else if *h.finalize().as_bytes() != r.digest {
            // The packets in the file are not the ones that were decoded.
            stats.errors += r.packets;
            stats.first_error = Some(format!(
                "packets {}–{}: the file's bytes differ from the packets decoded while \
                 encoding (BLAKE3 digest)",
                range.start + 1,
                range.end
            ));
        }
        total.merge(stats);
    }
    total
}
