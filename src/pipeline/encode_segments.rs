//! Multi-core AAC encoding with seamless splices, from PCM in book order.
//!
//! This is the in-order multi-core path: for books whose files do not decode as indexed
//! (damage, a rate change inside a file), raw ADTS AAC and long single files that are not MP3
//! (see `encode_ranges::prepare`), and books with a rate ratio swresample does not
//! convert exactly (their sample clock is only known once decoded). The
//! usual path, [`encode_ranges`](super::encode_ranges), lets every worker decode its own range
//! and so can use much longer segments; both share [`SegmentEncoder`] and the join arithmetic
//! below.
//!
//! The output timeline (after decoding and resampling) is cut into segments of a fixed number
//! of AAC frames ([`auto_segment_frames`]: as long as the memory budget allows), aligned to the 1024-sample frame grid and independent of file
//! or chapter boundaries. Each segment is encoded by its own encoder instance on a worker
//! thread, fed [`LEAD_IN_FRAMES`] frames of the real audio before it and [`LEAD_OUT_FRAMES`]
//! after it; only the packets that belong to the segment are kept. The muxer thread receives
//! the kept packets in order and writes one continuous AAC stream with one edit list, exactly as
//! the single encoder does.
//!
//! Packet numbering (global): with frame size `F` and encoder priming `D`, packet `j` has pts
//! `j·F − D`. For the native encoder (`F` = `D` = 1024) packet `j`'s MDCT window spans input
//! frames `j-1` and `j`, and decoding it yields the samples of frame `j-1` (packet 0 is the
//! priming, hidden by the edit list). A segment owning packets `[P, Q)` therefore needs input
//! from `⌈D/F⌉` frames before `P` to `Q`, plus look-ahead for the encoder's window-switching
//! decision, plus lead-in so that its psychoacoustic and rate-control state has settled by
//! packet `P`: it is fed frames `[P − ⌈D/F⌉ − LEAD_IN, Q + LEAD_OUT)`. Because both neighbours encode the shared
//! overlap from the same real audio, the MDCT aliasing cancels across the join and only the
//! quantization noise differs — which is what the splice-quality test measures.
//!
//! **Threads and bounds.** The segmenter (this stage's thread) receives PCM in book order, cuts
//! segment jobs and hands them to `workers` plain encoder threads through a bounded channel.
//! A token channel with [`tokens`] slots limits segments in flight (dispatched but not yet
//! written): the segmenter takes a token per job, the muxer returns it after writing that
//! segment. PCM is thus at most `(tokens + 1) × (segment + lead-in + lead-out) × 1024 ×
//! channels × 4 B` (the segments in flight and the segmenter's FIFO), held under
//! [`PCM_BUDGET_BYTES`] by the choice of segment length, independent of book length.
//!
//! **No deadlock.** The segmenter waits for a token only while `tokens` segments are in
//! flight; the lowest of them has been dispatched (dispatch is in order) and an encoder worker,
//! which never waits on anything but its input, will finish it; the muxer then writes it and
//! returns a token. Workers never wait on the muxer (results go to an unbounded channel whose
//! size the tokens bound).
use super::{
    track_done, ChapterBuilder, DecodeMsg, Failure, PipelineJob, PipelineOutcome, SegmentMsg,
};
use crate::av::encode::{open_encoder, AudioEncoder, EncodedPacket};
use crate::av::mux::MuxChapter;
use crate::error::{Error, Result};
use crate::options::EncoderSettings;
use crate::progress::{CancelToken, ProgressSink};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

/// Fewest frames per segment (≈ 23.8 s at 44.1 kHz), whatever the core count.
pub const MIN_SEGMENT_FRAMES: u64 = 1024;
/// Most frames per segment (≈ 3.2 min at 44.1 kHz).
pub const MAX_SEGMENT_FRAMES: u64 = 8192;
/// PCM the segmented encoder may hold: segments in flight ([`tokens`]) plus the segmenter's
/// FIFO (about one more segment).
pub const PCM_BUDGET_BYTES: u64 = 120 << 20;

/// Frames per segment for `workers` encoders and `channels` channels of `frame` samples.
///
/// Every segment restarts an encoder, and that is not free: FFmpeg's encoder works harder from
/// a fresh state (its rate control and bit reservoir converge slowly), and the lead-in is
/// encoded twice. Measured on speech, CPU relative to one continuous encoder: 1024-frame
/// segments 1.215×, 2048 1.122×, 4096 1.083× (with the 128-frame lead-in). So segments are as
/// long as the PCM budget allows — 4096 frames for 2 stereo workers — and never shorter than
/// [`MIN_SEGMENT_FRAMES`], which bounds memory at ~`(workers + 2)` × 8.4 MB on many cores.
pub fn auto_segment_frames(workers: usize, channels: u16, frame: usize) -> u64 {
    let frame_bytes = (frame * channels.max(1) as usize * 4) as u64;
    let in_flight = tokens(workers) as u64 + 1;
    let fit = PCM_BUDGET_BYTES / (in_flight * frame_bytes);
    // A multiple of 256 frames: round figures in the logs, nothing more.
    (fit / 256 * 256).clamp(MIN_SEGMENT_FRAMES, MAX_SEGMENT_FRAMES)
}

/// Frames of real audio encoded before a segment and thrown away, so that the fresh encoder's
/// state has converged by the segment's first kept packet. FFmpeg's native encoder carries
/// slow state: the rate control moves λ by at most ±10 % per frame, and the psychoacoustic
/// model's perceptual-entropy range forgets with a 1/512 slope.
///
/// Measured on speech-like material with `aiom4b_testkit::quality::splice_report` (10 min;
/// for the measurement only, segments of 256 frames, giving 100 joins, 49 of them in speech):
/// with 8 or 64 frames, 64 kb/s mono twoloop had 2–3 joins 19–22 dB worse than the single
/// encoder (a starved first packet after a short-window run: an audible glitch), and the fast
/// coder showed a +2 dB convergence transient over the 4 blocks after each join; from 128
/// frames on, no join was more than 5 dB worse and joins scored the same as mid-segment control
/// positions (mean of the worst block per join +0.97 dB at joins and at controls, mono
/// twoloop). 128 frames cost 12.5 % extra encoding per 1024-frame segment.
pub const LEAD_IN_FRAMES: u64 = 128;
/// Frames after a segment: covers the encoder's look-ahead for window switching. The native
/// encoder emits packet `j` one frame after receiving frame `j`; FDK (AAC-LC and HE-AAC) emits
/// it on receiving frame `j`, its look-ahead being part of its larger priming (2048/4096
/// samples), which the lead-in covers. So every kept packet is complete before the lead-out
/// ends and none comes from a flush (checked by the FDK splice test).
pub const LEAD_OUT_FRAMES: u64 = 2;

/// Segments allowed in flight (dispatched, not yet written): one per worker being encoded and
/// one queued, so that a worker finishing early finds the next segment ready. More would only
/// hold memory (see [`PCM_BUDGET_BYTES`]).
pub fn tokens(workers: usize) -> usize {
    workers + 1
}

/// One segment's work: the PCM of global frames `[first_frame, first_frame + len)` and which
/// global packets to keep.
pub(crate) struct SegmentJob {
    pub index: u64,
    pub first_frame: u64,
    pub planes: Vec<Vec<f32>>,
    /// Global packets `[keep_from, keep_to)` are kept; `keep_to = None` for the last segment.
    pub keep_from: u64,
    pub keep_to: Option<u64>,
}

/// A fresh encoder for one segment: takes the segment's input (lead-in, segment, lead-out) in
/// pieces of any size, encodes it in frames, and keeps only the packets that belong to the
/// segment, with global timestamps. Both multi-core stages use it.
pub(crate) struct SegmentEncoder {
    enc: Box<dyn AudioEncoder>,
    frame: usize,
    priming: i64,
    /// Global sample of the first input sample.
    offset: i64,
    keep_from: u64,
    keep_to: Option<u64>,
    /// The partial frame not yet encoded.
    acc: Vec<Vec<f32>>,
    raw: Vec<EncodedPacket>,
}

impl SegmentEncoder {
    /// An encoder whose first input sample is global frame `first_frame`'s first, keeping
    /// global packets `[keep_from, keep_to)` (`keep_to = None` for the last segment).
    pub(crate) fn new(
        settings: &EncoderSettings,
        first_frame: u64,
        keep_from: u64,
        keep_to: Option<u64>,
    ) -> Result<Self> {
        let enc = open_encoder(settings)?;
        let params = enc.params();
        let frame = params.frame_samples;
        let channels = settings.target.channels.max(1) as usize;
        Ok(SegmentEncoder {
            enc,
            frame,
            priming: params.priming_samples,
            offset: (first_frame * frame as u64) as i64,
            keep_from,
            keep_to,
            acc: (0..channels).map(|_| Vec::with_capacity(frame)).collect(),
            raw: Vec::with_capacity(8),
        })
    }

    /// Feeds planar samples; kept packets are appended to `kept`.
    pub(crate) fn push(&mut self, planes: &[&[f32]], kept: &mut Vec<EncodedPacket>) -> Result<()> {
        let n = planes.first().map_or(0, |p| p.len());
        let mut pos = 0;
        while pos < n {
            let have = self.acc[0].len();
            if have == 0 && n - pos >= self.frame {
                // Whole frames straight from the input, without a copy.
                let refs: Vec<&[f32]> = planes.iter().map(|p| &p[pos..pos + self.frame]).collect();
                self.enc.encode(&refs, &mut self.raw)?;
                pos += self.frame;
            } else {
                let take = (self.frame - have).min(n - pos);
                for (a, p) in self.acc.iter_mut().zip(planes) {
                    a.extend_from_slice(&p[pos..pos + take]);
                }
                pos += take;
                if self.acc[0].len() == self.frame {
                    let refs: Vec<&[f32]> = self.acc.iter().map(|v| v.as_slice()).collect();
                    self.enc.encode(&refs, &mut self.raw)?;
                    for a in self.acc.iter_mut() {
                        a.clear();
                    }
                }
            }
            self.keep(kept);
        }
        Ok(())
    }

    /// Encodes the last partial frame and flushes the encoder.
    pub(crate) fn finish(mut self, kept: &mut Vec<EncodedPacket>) -> Result<()> {
        if !self.acc[0].is_empty() {
            let refs: Vec<&[f32]> = self.acc.iter().map(|v| v.as_slice()).collect();
            self.enc.encode(&refs, &mut self.raw)?;
        }
        self.enc.finish(&mut self.raw)?;
        self.keep(kept);
        Ok(())
    }

    fn keep(&mut self, kept: &mut Vec<EncodedPacket>) {
        let frame = self.frame as i64;
        for mut p in self.raw.drain(..) {
            p.pts += self.offset;
            // Global packet index: packet j starts at pts j·frame − priming.
            let global = (p.pts + self.priming).div_euclid(frame);
            let keep =
                global >= self.keep_from as i64 && self.keep_to.is_none_or(|to| global < to as i64);
            if keep {
                if self.keep_to.is_some() {
                    // Inside the stream every packet is a full frame; the local encoder may
                    // have shortened the last one of its lead-out, which is never kept anyway.
                    p.duration = frame;
                }
                kept.push(p);
            }
        }
    }
}

/// Encodes one segment job with a fresh encoder; packets get global timestamps.
pub(crate) fn encode_segment(
    settings: &EncoderSettings,
    job: &SegmentJob,
) -> Result<Vec<EncodedPacket>> {
    let mut se = SegmentEncoder::new(settings, job.first_frame, job.keep_from, job.keep_to)?;
    let mut kept = Vec::new();
    let planes: Vec<&[f32]> = job.planes.iter().map(|p| p.as_slice()).collect();
    se.push(&planes, &mut kept)?;
    se.finish(&mut kept)?;
    Ok(kept)
}

/// The segmenter: PCM in book order → segment jobs for the encoder workers.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    job: &PipelineJob<'_>,
    rxs: Vec<Receiver<DecodeMsg>>,
    end_tx: Sender<(u64, Vec<MuxChapter>)>,
    chapters: ChapterBuilder,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
    failure: &Failure,
    workers: usize,
    result_tx: Sender<SegmentMsg>,
    token_rx: Receiver<()>,
) -> Result<PipelineOutcome> {
    // This runs on the encoder thread, inside the caller's span; the workers log inside it too.
    let span = tracing::Span::current();
    let r = std::thread::scope(|s| -> Result<PipelineOutcome> {
        let (job_tx, job_rx) = bounded::<SegmentJob>(workers);
        let span = &span;
        for w in 0..workers {
            let job_rx = job_rx.clone();
            let result_tx = result_tx.clone();
            let settings = job.encoder;
            std::thread::Builder::new()
                .name(format!("aiom4b-encode-{w}"))
                .spawn_scoped(s, move || {
                    let _span = span.enter();
                    for sj in job_rx.iter() {
                        if cancel.is_cancelled() || failure.stopped() {
                            return;
                        }
                        match encode_segment(&settings, &sj) {
                            Ok(packets) => {
                                let sent = result_tx
                                    .send(SegmentMsg::Packets(sj.index, packets))
                                    .and_then(|()| result_tx.send(SegmentMsg::Done(sj.index)));
                                if sent.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                failure.fail(e);
                                return;
                            }
                        }
                    }
                })
                .map_err(|e| Error::Internal(format!("encoder thread: {e}")))?;
        }
        drop(job_rx);
        drop(result_tx);
        segmenter(
            job, rxs, &end_tx, chapters, progress, cancel, failure, job_tx, token_rx,
        )
    });
    match r {
        Ok(o) => Ok(o),
        Err(Error::Cancelled) => Err(Error::Cancelled),
        Err(e) => {
            failure.fail(e);
            Err(Error::Cancelled)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn segmenter(
    job: &PipelineJob<'_>,
    rxs: Vec<Receiver<DecodeMsg>>,
    end_tx: &Sender<(u64, Vec<MuxChapter>)>,
    chapters: ChapterBuilder,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
    failure: &Failure,
    job_tx: Sender<SegmentJob>,
    token_rx: Receiver<()>,
) -> Result<PipelineOutcome> {
    let channels = job.target.channels as usize;
    let f = job.stream.frame_samples as u64;
    let seg = if job.segment_frames == 0 {
        auto_segment_frames(
            job.threads.max(1),
            job.target.channels,
            job.stream.frame_samples,
        )
    } else {
        job.segment_frames
    };
    tracing::debug!(
        segment_frames = seg,
        workers = job.threads,
        "segmented encoding"
    );
    // Frames the priming spans: packet j's input starts that many frames before frame j.
    let pf = (job.stream.priming_samples.max(0) as u64).div_ceil(f);
    // `buf` holds the timeline from global frame `base_frame` (the current segment's first
    // input frame) on. It is allocated once per segment at its final size and handed to the
    // job as it is: no copy of the segment, no growth by doubling. Only the overlap with the
    // next segment (its lead-in) is copied into the next buffer.
    let cap =
        ((seg + pf + LEAD_IN_FRAMES + LEAD_OUT_FRAMES) * f) as usize + super::CHUNK_SAMPLES + 4096;
    let fresh = || -> Vec<Vec<f32>> { (0..channels).map(|_| Vec::with_capacity(cap)).collect() };
    let mut buf = fresh();
    let mut base_frame = 0u64;
    let mut clock = 0u64;
    let mut next_segment = 0u64;
    let mut outcome = PipelineOutcome::default();
    let mut silence = super::detector(job, 0, None);

    let dispatch = |sj: SegmentJob| -> Result<()> {
        token_rx.recv().map_err(|_| Error::Cancelled)?;
        job_tx.send(sj).map_err(|_| Error::Cancelled)
    };

    for (i, rx) in rxs.iter().enumerate() {
        let start = clock;
        loop {
            if cancel.is_cancelled() || failure.stopped() {
                return Err(Error::Cancelled);
            }
            match rx.recv().map_err(|_| Error::Cancelled)? {
                DecodeMsg::Pcm(chunk) => {
                    if let Some(d) = silence.as_mut() {
                        let planes: Vec<&[f32]> = chunk.planes.iter().map(Vec::as_slice).collect();
                        d.push_planar(clock, &planes);
                    }
                    clock += chunk.len() as u64;
                    for (d, src) in buf.iter_mut().zip(&chunk.planes) {
                        d.extend_from_slice(src);
                    }
                    // Cut every segment whose input (through its lead-out) is complete.
                    loop {
                        let p = next_segment * seg;
                        let q = p + seg;
                        let a = p.saturating_sub(pf + LEAD_IN_FRAMES);
                        let b = q + LEAD_OUT_FRAMES;
                        // Only cut when audio extends beyond b: then this cannot be the last
                        // segment, whose extent depends on where the book ends.
                        if clock <= b * f {
                            break;
                        }
                        debug_assert_eq!(a, base_frame);
                        // The next segment starts at its own lead-in (priming frames included,
                        // the same formula as `a`): copy from there into its buffer.
                        let next_a = ((next_segment + 1) * seg).saturating_sub(pf + LEAD_IN_FRAMES);
                        let from = ((next_a - base_frame) * f) as usize;
                        let mut next = fresh();
                        for (n, o) in next.iter_mut().zip(&buf) {
                            n.extend_from_slice(&o[from..]);
                        }
                        let mut planes = std::mem::replace(&mut buf, next);
                        for pl in planes.iter_mut() {
                            pl.truncate(((b - base_frame) * f) as usize);
                        }
                        base_frame = next_a;
                        dispatch(SegmentJob {
                            index: next_segment,
                            first_frame: a,
                            planes,
                            keep_from: p,
                            keep_to: Some(q),
                        })?;
                        next_segment += 1;
                        progress.encoded(p * f, job.estimated_total.max(clock));
                    }
                }
                DecodeMsg::End(result) => {
                    track_done(job, i, *result, clock - start, &mut outcome, progress)?;
                    break;
                }
            }
        }
    }
    // The last segment: from its lead-in to the very end; it keeps every packet from its start,
    // including the encoder's flush, whose final packet carries the true remaining duration.
    let p = next_segment * seg;
    let a = p.saturating_sub(pf + LEAD_IN_FRAMES);
    if clock > 0 {
        debug_assert_eq!(a, base_frame);
        dispatch(SegmentJob {
            index: next_segment,
            first_frame: a,
            planes: std::mem::take(&mut buf),
            keep_from: p,
            keep_to: None,
        })?;
        next_segment += 1;
    }
    drop(job_tx);
    outcome.joins = (1..next_segment).map(|k| k * seg * f).collect();
    outcome.total_samples = clock;
    let pauses = super::pauses(job, silence.map(|d| d.finish()).into_iter().collect());
    let ch = chapters(&outcome.track_samples, clock, &pauses)?;
    outcome.chapters = ch.clone();
    end_tx
        .send((next_segment, ch))
        .map_err(|_| Error::Cancelled)?;
    Ok(outcome)
}

/// Channels between a multi-core encoder stage and the muxer ([`super::mux_segments`]): the
/// workers' packets (unbounded; the tokens bound them), the tokens, already [`tokens`] of them,
/// and the end message (segment count and chapters).
pub(super) struct Channels {
    pub msg_tx: Sender<SegmentMsg>,
    pub msg_rx: Receiver<SegmentMsg>,
    pub tok_tx: Sender<()>,
    pub tok_rx: Receiver<()>,
    pub end_tx: Sender<(u64, Vec<MuxChapter>)>,
    pub end_rx: Receiver<(u64, Vec<MuxChapter>)>,
}

pub(super) fn channels(workers: usize) -> Channels {
    let (msg_tx, msg_rx) = unbounded();
    let n = tokens(workers);
    let (tok_tx, tok_rx) = bounded(n);
    for _ in 0..n {
        let _ = tok_tx.send(());
    }
    let (end_tx, end_rx) = bounded(1);
    Channels {
        msg_tx,
        msg_rx,
        tok_tx,
        tok_rx,
        end_tx,
        end_rx,
    }
}
