//! Exact sample positions in an MP3 file without decoding it, and decoding from any of them.
//!
//! The multi-core encoder gives every worker its own stretch of the book to decode and encode
//! (`pipeline::encode_ranges`), so each worker must know, before anything is decoded, where on
//! the book's one sample clock its stretch begins. MP3 makes that cheap: every packet decodes to
//! a fixed number of samples (1152, or 576 for MPEG-2/2.5), and the gapless trimming is
//! carried as skip-samples side data that the demuxer attaches and the decoder applies.
//! [`index_mp3`] demuxes a file (no decoding: about 15× cheaper than decoding it) and replays
//! libavcodec's trimming rules packet by packet, giving each packet's exact output length.
//!
//! [`decode_from`] then decodes from any sample of the file: it demuxes from the start, sends
//! the decoder only the packets from a few before the wanted one (the bit reservoir and the
//! filter bank need a few frames to fill), and checks that every packet from the wanted one on
//! decodes to exactly the length the index predicted. A damaged frame, a sample-rate change
//! or anything else that would move the clock is reported as a [`RangeError::Mismatch`], and
//! the caller falls back to decoding the book in order.
use super::decode::{rate_period, resample_start, Resampler};
use super::input::{open_mp3, Mp3Input};
use crate::error::{Error, Result};
use ff::ffi;
use ffmpeg_next as ff;
use std::path::Path;

/// Packets decoded and thrown away before the first wanted one: the layer III bit reservoir
/// reaches back at most 511 bytes (at most ~20 frames at the lowest bitrates, 2–4 at audiobook
/// bitrates), the IMDCT overlap and the synthesis filter one frame.
pub const PREROLL_PACKETS: usize = 24;

/// Each packet's exact output length, at the file's own rate.
///
/// Stored as runs of packets with the same length, not one start per packet: every MP3 packet
/// decodes to the same 1152 (or 576) samples except the few the gapless trimming shortens at
/// the file's ends, so a file is three or four runs however long it is. (One `u64` per packet
/// was 1.1 MB per hour of 44.1 kHz audio, held for the whole conversion: the one part of its
/// peak memory that grew with the book's length.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackIndex {
    runs: Vec<Run>,
    packets: usize,
    total: u64,
    pub rate: u32,
}

/// Packets `first..` (up to the next run's first) each decode to `len` samples; the first of
/// them starts at output sample `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    first: usize,
    start: u64,
    len: u32,
}

impl TrackIndex {
    /// An index with no packets yet, at `rate`.
    pub fn new(rate: u32) -> Self {
        TrackIndex {
            runs: Vec::new(),
            packets: 0,
            total: 0,
            rate,
        }
    }
    /// Appends the next packet, `len` output samples long.
    pub fn push(&mut self, len: u32) {
        match self.runs.last() {
            Some(r) if r.len == len => {}
            _ => self.runs.push(Run {
                first: self.packets,
                start: self.total,
                len,
            }),
        }
        self.packets += 1;
        self.total += len as u64;
    }
    /// Output samples of the whole file (after gapless trimming).
    pub fn total(&self) -> u64 {
        self.total
    }
    /// Packets in the file.
    pub fn packets(&self) -> usize {
        self.packets
    }
    /// The run holding packet `q` (for `q < packets`).
    fn run_of(&self, q: usize) -> &Run {
        &self.runs[self.runs.partition_point(|r| r.first <= q) - 1]
    }
    /// Packet `q`'s first output sample; `start(packets())` is the total.
    pub fn start(&self, q: usize) -> u64 {
        if q >= self.packets {
            return self.total;
        }
        let r = self.run_of(q);
        r.start + (q - r.first) as u64 * r.len as u64
    }
    /// The packet whose output holds sample `o` (for `o < total`; `packets()` beyond).
    pub fn packet_at(&self, o: u64) -> usize {
        if o >= self.total {
            return self.packets;
        }
        // The last run starting at or before `o`. Packets trimmed to nothing form runs of
        // length 0 that share their start with the next run, which is the one picked: its
        // packet holds the sample. That run's length is not 0 (the total lies beyond `o`).
        let r = &self.runs[self.runs.partition_point(|r| r.start <= o) - 1];
        r.first + ((o - r.start) / r.len.max(1) as u64) as usize
    }
    fn expected(&self, q: usize) -> u64 {
        self.run_of(q).len as u64
    }
}

/// Why a ranged decode stopped.
#[derive(Debug)]
pub enum RangeError {
    /// The file does not decode the way its index says (damage, a rate change, …).
    Mismatch(String),
    /// A real error (cancellation, or the sink's own error).
    Other(Error),
}

impl From<Error> for RangeError {
    fn from(e: Error) -> Self {
        RangeError::Other(e)
    }
}

/// Reads the skip-samples side data: (samples to skip at the start, padding at the end).
fn skip_side_data(packet: &ff::Packet) -> Option<(u32, u32)> {
    packet
        .side_data()
        .find(|s| s.kind() == ff::codec::packet::side_data::Type::SkipSamples)
        .and_then(|s| {
            let d = s.data();
            (d.len() >= 10).then(|| {
                (
                    u32::from_le_bytes([d[0], d[1], d[2], d[3]]),
                    u32::from_le_bytes([d[4], d[5], d[6], d[7]]),
                )
            })
        })
}

/// Samples per packet as the decoder will produce them (before trimming).
fn packet_samples(packet: &ff::Packet, tb: ff::Rational, rate: u32, frame_size: u32) -> u64 {
    let d = packet.duration();
    if d > 0 && tb.numerator() > 0 {
        let r = d as i128 * tb.numerator() as i128 * rate as i128;
        let den = tb.denominator() as i128;
        ((r + den / 2) / den) as u64
    } else {
        frame_size as u64
    }
}

/// libavcodec's trimming state (`decode.c`: skip_samples carries across frames; the discard
/// padding applies to the packet's own frame, and only when it fits in it).
#[derive(Default)]
struct Trim {
    skip: u64,
}

impl Trim {
    fn apply(&mut self, n: u64, side: Option<(u32, u32)>) -> u64 {
        let mut discard = 0u64;
        if let Some((s, d)) = side {
            self.skip = s as u64;
            discard = d as u64;
        }
        let mut n = n;
        if self.skip > 0 {
            if n <= self.skip {
                self.skip -= n;
                return 0;
            }
            n -= self.skip;
            self.skip = 0;
        }
        if discard > 0 && discard <= n {
            n -= discard;
        }
        n
    }
}

fn stream_facts(input: &Mp3Input) -> Result<(ff::Rational, u32, usize, u32)> {
    let stream = input
        .ctx
        .stream(input.audio_index)
        .ok_or_else(|| Error::NotMp3 {
            path: input.path.clone(),
            reason: "audio stream vanished".into(),
        })?;
    let tb = stream.time_base();
    let par = stream.parameters();
    // SAFETY: `par` wraps the stream's valid AVCodecParameters for the duration of this call.
    let (rate, channels, frame_size) = unsafe {
        let p = par.as_ptr();
        (
            (*p).sample_rate.max(0) as u32,
            (*p).ch_layout.nb_channels.max(0) as usize,
            (*p).frame_size.max(0) as u32,
        )
    };
    Ok((tb, rate, channels, frame_size))
}

/// Demuxes `path` and returns each packet's exact output length. Fails on read errors and
/// on files whose packets do not say how long they are.
pub fn index_mp3(path: &Path) -> Result<TrackIndex> {
    let mut input = open_mp3(path)?;
    let (tb, rate, channels, frame_size) = stream_facts(&input)?;
    if rate == 0 || channels == 0 {
        return Err(Error::NotMp3 {
            path: path.to_path_buf(),
            reason: "no sample rate or channel count".into(),
        });
    }
    let mut index = TrackIndex::new(rate);
    let mut trim = Trim::default();
    loop {
        let mut packet = ff::Packet::empty();
        match packet.read(&mut input.ctx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(e) => return Err(Error::av(Some(path), "read".to_string(), e)),
        }
        if packet.stream() != input.audio_index {
            continue;
        }
        let n = packet_samples(&packet, tb, rate, frame_size);
        if n == 0 {
            return Err(Error::NotMp3 {
                path: path.to_path_buf(),
                reason: "a packet without a duration".into(),
            });
        }
        let len = trim.apply(n, skip_side_data(&packet));
        // A packet longer than 2^32 samples is not an MP3 packet (at most 1152).
        let len = u32::try_from(len).map_err(|_| Error::NotMp3 {
            path: path.to_path_buf(),
            reason: format!("a packet of {len} samples"),
        })?;
        index.push(len);
    }
    Ok(index)
}

/// An open file and how many of its audio packets have been read: a worker keeps it between
/// ranges, so a long file split into many segments is demuxed about once per worker instead of
/// once per segment from its start.
pub struct OpenTrack {
    input: Mp3Input,
    read: usize,
}

impl OpenTrack {
    pub fn open(path: &Path) -> Result<Self> {
        Ok(OpenTrack {
            input: open_mp3(path)?,
            read: 0,
        })
    }
}

/// Decodes `track` from output sample `from` (per its `index`) to the end or until `sink`
/// returns `false`, remixed to `out_channels`. Every packet from the one holding `from` on must
/// decode to exactly its indexed length at the indexed rate, or this fails with
/// [`RangeError::Mismatch`]. Packets before the pre-roll are read without decoding; if `track`
/// has already read past them, the file is opened again.
pub fn decode_from(
    track: &mut OpenTrack,
    index: &TrackIndex,
    from: u64,
    out_channels: usize,
    cancelled: &dyn Fn() -> bool,
    sink: &mut dyn FnMut(&[&[f32]]) -> Result<bool>,
) -> std::result::Result<(), RangeError> {
    let mut scratch: Vec<Vec<f32>> = vec![Vec::with_capacity(1152); out_channels];
    decode_source(track, index, from, cancelled, &mut |planes| {
        for s in scratch.iter_mut() {
            s.clear();
        }
        super::decode::remix_into(planes, &mut scratch);
        let refs: Vec<&[f32]> = scratch.iter().map(|v| v.as_slice()).collect();
        sink(&refs)
    })
    .map(|_| ())
}

/// [`decode_from`] for a file at another rate than the output's: decodes `track` and resamples
/// it to `out_rate` exactly as [`decode_file`](super::decode::decode_file) does (one resampler
/// for the whole file, flushed at its end), from output sample `from` of the resampled file to
/// its end or until `sink` returns `false`, remixed to `out_channels` after resampling.
/// `out_total` is the file's resampled length
/// ([`resampled_len`](super::decode::resampled_len) of `index.total()`).
///
/// From the middle of a file, a fresh resampler starts at an input sample on the rate ratio's
/// period, at least [`RESAMPLE_PREROLL`](super::decode::RESAMPLE_PREROLL) samples before the one under `from`, and the outputs
/// before `from` are thrown away: the ones kept are bit for bit the file-long resampler's (see
/// `av::decode`'s module docs). Near the file's start it starts at the start, like
/// `decode_file`. Reaching the end, the resampler is flushed and the file must have resampled
/// to exactly `out_total` samples, or this fails with [`RangeError::Mismatch`], as it does for
/// anything [`decode_from`] finds different from the index, or a channel count that changes.
#[allow(clippy::too_many_arguments)]
pub fn decode_resampled_from(
    track: &mut OpenTrack,
    index: &TrackIndex,
    out_rate: u32,
    out_total: u64,
    from: u64,
    out_channels: usize,
    cancelled: &dyn Fn() -> bool,
    sink: &mut dyn FnMut(&[&[f32]]) -> Result<bool>,
) -> std::result::Result<(), RangeError> {
    let path = track.input.path.clone();
    let mismatch = |why: String| RangeError::Mismatch(format!("{}: {why}", path.display()));
    if from >= out_total {
        return Ok(());
    }
    let Some((p, q)) = rate_period(index.rate, out_rate) else {
        return Err(mismatch(format!(
            "{} Hz to {out_rate} Hz is not a ratio swresample converts exactly",
            index.rate
        )));
    };
    // The resampler's first output is the file's output `first_out`.
    let (start, first_out) = resample_start((p, q), from);
    let av = |what: &str, e: ff::Error| RangeError::Other(Error::av(Some(&path), what, e));
    let mut resampler: Option<Resampler> = None;
    let mut scratch: Vec<Vec<f32>> = vec![Vec::with_capacity(2 * 1152); out_channels];
    // The file's output sample the next resampled one is.
    let mut pos = first_out;
    let mut emit = |planes: &[Vec<f32>], pos: &mut u64| -> Result<bool> {
        let n = planes.first().map_or(0, |p| p.len()) as u64;
        let skip = from.saturating_sub(*pos).min(n) as usize;
        *pos += n;
        if skip as u64 == n {
            return Ok(true);
        }
        for s in scratch.iter_mut() {
            s.clear();
        }
        let cut: Vec<&[f32]> = planes.iter().map(|p| &p[skip..]).collect();
        super::decode::remix_into(&cut, &mut scratch);
        let refs: Vec<&[f32]> = scratch.iter().map(|v| v.as_slice()).collect();
        sink(&refs)
    };
    let mut changed = None;
    let reached_end = decode_source(track, index, start, cancelled, &mut |planes| {
        let rs = match &mut resampler {
            Some(rs) if rs.channels == planes.len() => rs,
            Some(rs) => {
                changed = Some((rs.channels, planes.len()));
                return Ok(false);
            }
            None => resampler.insert(
                Resampler::new(index.rate, out_rate, planes.len())
                    .map_err(|e| Error::av(Some(&path), "set up the resampler", e))?,
            ),
        };
        let out = rs
            .convert(planes)
            .map_err(|e| Error::av(Some(&path), "resample", e))?;
        emit(&out, &mut pos)
    })?;
    if let Some((was, now)) = changed {
        return Err(mismatch(format!(
            "the channel count changes from {was} to {now} in the middle"
        )));
    }
    if !reached_end {
        return Ok(());
    }
    if let Some(mut rs) = resampler {
        let tail = rs.flush().map_err(|e| av("flush the resampler", e))?;
        if !emit(&tail, &mut pos)? {
            return Ok(());
        }
    }
    if pos != out_total {
        return Err(mismatch(format!(
            "resampled to {pos} samples at {out_rate} Hz, {out_total} expected"
        )));
    }
    Ok(())
}

/// Decodes `track` from sample `from` (per its `index`) at its own rate and channel count,
/// for [`decode_from`] and [`decode_resampled_from`]. `Ok(true)` when the file's end was
/// reached, `Ok(false)` when `sink` said stop.
fn decode_source(
    track: &mut OpenTrack,
    index: &TrackIndex,
    from: u64,
    cancelled: &dyn Fn() -> bool,
    sink: &mut dyn FnMut(&[&[f32]]) -> Result<bool>,
) -> std::result::Result<bool, RangeError> {
    let path = track.input.path.clone();
    let mismatch = |why: String| RangeError::Mismatch(format!("{}: {why}", path.display()));
    if from >= index.total() {
        return Ok(true);
    }
    let wanted = index.packet_at(from);
    // Start at the file's beginning when the wanted packet is near it: the encoder delay's
    // skip can span the first two packets, and starting there keeps its trimming intact.
    let first = if wanted <= PREROLL_PACKETS + 2 {
        0
    } else {
        wanted - PREROLL_PACKETS
    };
    if track.read > first {
        *track = OpenTrack::open(&path).map_err(|e| mismatch(e.to_string()))?;
    }
    let input = &mut track.input;
    let (tb, _, _, _) = stream_facts(input)?;
    let stream = input.ctx.stream(input.audio_index).ok_or_else(|| {
        RangeError::Other(Error::NotMp3 {
            path: path.clone(),
            reason: "audio stream vanished".into(),
        })
    })?;
    let mut decoder = super::decode::open_decoder(stream.parameters(), tb)
        .map_err(|(what, e)| Error::av(Some(&path), what.to_string(), e))?;
    let mut frame = ff::frame::Audio::empty();
    loop {
        if cancelled() {
            return Err(RangeError::Other(Error::Cancelled));
        }
        let mut packet = ff::Packet::empty();
        match packet.read(&mut input.ctx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(e) => return Err(mismatch(format!("read error: {e}"))),
        }
        if packet.stream() != input.audio_index {
            continue;
        }
        let this = track.read;
        track.read += 1;
        if this < first {
            continue;
        }
        if this >= index.packets() {
            return Err(mismatch("more packets than indexed".into()));
        }
        let checked = this >= wanted;
        match decoder.send_packet(&packet) {
            Ok(()) => {}
            Err(ff::Error::Other { errno }) if errno == ffi::EAGAIN => {}
            Err(e) if checked => return Err(mismatch(format!("packet {this}: {e}"))),
            Err(_) => continue,
        }
        // MP3 decoding has no delay: what comes out now belongs to this packet.
        let mut got = 0u64;
        loop {
            match decoder.receive_frame(&mut frame) {
                Ok(()) => {}
                Err(ff::Error::Other { errno }) if errno == ffi::EAGAIN => break,
                Err(ff::Error::Eof) => break,
                Err(e) if checked => return Err(mismatch(format!("packet {this}: {e}"))),
                Err(_) => break,
            }
            let n = frame.samples();
            if !checked || n == 0 {
                continue;
            }
            if frame.rate() != index.rate
                || frame.is_corrupt()
                || frame.has_decode_errors()
                || frame.format() != ff::format::Sample::F32(ff::format::sample::Type::Planar)
            {
                return Err(mismatch(format!(
                    "packet {this} decodes differently (damaged or changed format)"
                )));
            }
            // Where this frame's samples sit in the file, and how many of them are wanted.
            let at = index.start(this) + got;
            got += n as u64;
            let skip = from.saturating_sub(at).min(n as u64) as usize;
            if skip == n {
                continue;
            }
            let in_ch = frame.channels() as usize;
            let planes: Vec<&[f32]> = (0..in_ch)
                .map(|c| &frame.plane::<f32>(c)[skip..n])
                .collect();
            if !sink(&planes)? {
                return Ok(false);
            }
        }
        if checked && got != index.expected(this) {
            return Err(mismatch(format!(
                "packet {this} decoded to {got} samples, {} expected",
                index.expected(this)
            )));
        }
    }
    // No delay to flush for MP3; a packet the index has but the file no longer gives is a
    // mismatch (the file changed since it was indexed).
    if track.read != index.packets() {
        return Err(mismatch(format!(
            "{} packets read, {} indexed",
            track.read,
            index.packets()
        )));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::TrackIndex;

    /// The index as it was before runs: one start per packet and the total.
    fn naive(lens: &[u32]) -> Vec<u64> {
        let mut starts = vec![0u64];
        for &l in lens {
            starts.push(starts.last().unwrap() + l as u64);
        }
        starts
    }

    fn index_of(lens: &[u32]) -> TrackIndex {
        let mut idx = TrackIndex::new(44_100);
        for &l in lens {
            idx.push(l);
        }
        idx
    }

    #[test]
    fn runs_answer_like_one_start_per_packet() {
        // Gapless trimming's shapes: a first packet cut, packets trimmed to nothing at the
        // start (a skip spanning two packets) and the end, a cut last packet, 576-sample
        // MPEG-2 packets after a change, and an empty file.
        let cases: Vec<Vec<u32>> = vec![
            vec![],
            vec![0],
            vec![1152; 5],
            [vec![47], vec![1152; 9], vec![300]].concat(),
            [vec![0, 0, 500], vec![1152; 6], vec![0, 0]].concat(),
            [vec![1152; 4], vec![576; 3], vec![0], vec![576; 2], vec![12]].concat(),
        ];
        for lens in &cases {
            let idx = index_of(lens);
            let starts = naive(lens);
            assert_eq!(idx.packets(), lens.len(), "{lens:?}");
            assert_eq!(idx.total(), *starts.last().unwrap(), "{lens:?}");
            for (q, &start) in starts.iter().enumerate() {
                assert_eq!(idx.start(q), start, "start({q}) of {lens:?}");
            }
            for (q, &l) in lens.iter().enumerate() {
                assert_eq!(idx.expected(q), l as u64, "expected({q}) of {lens:?}");
            }
            for o in 0..idx.total() + 3 {
                let want = starts.partition_point(|&s| s <= o).saturating_sub(1);
                assert_eq!(idx.packet_at(o), want, "packet_at({o}) of {lens:?}");
            }
        }
    }

    /// Memory flat in book length: a 30-hour file (4.1 million packets) is indexed in as many
    /// runs as a 1-minute one.
    #[test]
    fn index_memory_does_not_grow_with_the_file() {
        let held = |packets: usize| {
            let mut idx = TrackIndex::new(44_100);
            idx.push(47);
            for _ in 0..packets {
                idx.push(1152);
            }
            idx.push(300);
            idx.push(0);
            assert_eq!(idx.total(), 47 + 1152 * packets as u64 + 300);
            (idx.runs.len(), idx.runs.capacity())
        };
        let minute = held(60 * 44_100 / 1152);
        let thirty_hours = held(30 * 3600 * 44_100 / 1152);
        assert_eq!(minute.0, 4);
        assert_eq!(thirty_hours, minute);
    }
}
