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
//! **Threads and bounds.** The segmenter (this stage's thread) receives PCM in book order and
//! streams it to `workers` plain encoder threads: a segment is handed to the next free worker
//! (a bounded job channel) when its input begins, and its samples follow on a channel of its
//! own as they are decoded, so a worker encodes while the decoder is still producing its
//! segment. Only what has been sent and not yet encoded is held, and that is bounded by a
//! budget of quanta ([`PCM_BUDGET_BYTES`], ~32 MiB: about one segment for 2 workers, since the
//! decoder needs to be only `workers − 1` segments ahead): the segmenter takes a quantum per
//! [`QUANTUM_SAMPLES`] samples it sends, the worker gives it back once it has encoded them.
//! The segmenter itself keeps only the overlap with the next segment's lead-in. A segment's
//! last 2 frames (the lead-out) are held back until the book is known to go on past them;
//! else it is the last segment and is told so ([`Piece::Last`]) before them. A token channel
//! with [`tokens`] slots still limits segments in flight (started, not yet written), so the
//! packets waiting at the muxer are bounded too. Before streaming, whole segments waited as
//! PCM: four 3840-frame segments, ~124 MiB (a 1-hour book of one Opus file peaked at
//! 182 MiB; streamed, 85 MiB, medians of 3).
//!
//! **No deadlock.** The segmenter waits on three things. (1) A segment token: tokens come back
//! as the muxer writes segments in order, and the oldest segment in flight has all its input
//! (input is sent in order) or is the one being fed, so a worker finishes it. (2) A job slot:
//! workers take jobs whenever they are free. (3) A budget quantum: quanta are held only by
//! pieces waiting on segment channels; the segments before the one being fed have all their
//! input and end, freeing their workers, who take the next job and drain it, so quanta come
//! back. The budget always holds the `workers − 1` segments this needs. A worker that fails,
//! or sees the conversion stopping, still takes every piece of every segment it is given and
//! gives the quanta back (so the segmenter is never left waiting on them), and tells the
//! muxer (`SegmentMsg::Stopped`), which may be waiting for that segment's packets. The workers
//! hold the only senders of quanta and of packets, so when they end every wait on them ends.
//! Workers never wait on the muxer (packets go to an unbounded channel, bounded by the
//! tokens).
use super::{
    thread_cpu_secs, track_done, AddOnDrop, ChapterBuilder, DecodeMsg, Failure, PipelineJob,
    PipelineOutcome, SegmentMsg, WorkerClock,
};
use crate::av::encode::{open_encoder, AudioEncoder, EncodedPacket};
use crate::av::mux::MuxChapter;
use crate::convert::StageTimes;
use crate::error::{Error, Result};
use crate::options::EncoderSettings;
use crate::progress::{CancelToken, ProgressSink};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use std::cell::Cell;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Fewest frames per segment (≈ 23.8 s at 44.1 kHz), whatever the core count.
pub const MIN_SEGMENT_FRAMES: u64 = 1024;
/// Most frames per segment (≈ 3.2 min at 44.1 kHz).
pub const MAX_SEGMENT_FRAMES: u64 = 8192;
/// PCM the segmented encoder may hold between the segmenter and the workers (sent, not yet
/// encoded), whatever the book's length; more on many cores, where it is
/// `(workers − 1)` segments (see [`auto_segment_frames`]).
pub const PCM_BUDGET_BYTES: u64 = 32 << 20;

/// Frames per segment for `workers` encoders and `channels` channels of `frame` samples.
///
/// Every segment restarts an encoder, and that is not free: FFmpeg's encoder works harder from
/// a fresh state (its rate control and bit reservoir converge slowly), and the lead-in is
/// encoded twice. Measured on speech, CPU relative to one continuous encoder: 1024-frame
/// segments 1.215×, 2048 1.122×, 4096 1.083× (with the 128-frame lead-in). So segments are as
/// long as the PCM budget allows. Segments are streamed to their workers, so the decoder need
/// only run `workers − 1` segments ahead of the oldest one being encoded: 4096 frames for 2
/// stereo workers. Never shorter than [`MIN_SEGMENT_FRAMES`], which bounds memory at
/// ~`(workers − 1)` × 8.4 MB on many cores.
pub fn auto_segment_frames(workers: usize, channels: u16, frame: usize) -> u64 {
    let frame_bytes = (frame * channels.max(1) as usize * 4) as u64;
    let ahead = workers.max(2) as u64 - 1;
    let fit = PCM_BUDGET_BYTES / (ahead * frame_bytes);
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

/// Encodes the PCM of global frames from `first_frame` on with a fresh encoder, keeping global
/// packets `[keep_from, keep_to)` (`None`: every packet from `keep_from`, the flush included);
/// packets get global timestamps.
pub(crate) fn encode_segment(
    settings: &EncoderSettings,
    first_frame: u64,
    planes: &[Vec<f32>],
    keep_from: u64,
    keep_to: Option<u64>,
) -> Result<Vec<EncodedPacket>> {
    let mut se = SegmentEncoder::new(settings, first_frame, keep_from, keep_to)?;
    let mut kept = Vec::new();
    let planes: Vec<&[f32]> = planes.iter().map(|p| p.as_slice()).collect();
    se.push(&planes, &mut kept)?;
    se.finish(&mut kept)?;
    Ok(kept)
}

/// One piece of a streamed segment's input, in order.
pub(crate) enum Piece {
    /// Planar samples, and the budget quanta they hold (given back once encoded).
    Pcm(Vec<Vec<f32>>, usize),
    /// The segment ends the book: keep every packet from here on, the encoder's flush included
    /// (sent before the samples past the segment's planned end).
    Last,
    /// No more input: finish, hand over the packets and say the segment is done.
    End,
}

/// A segment whose input is streamed to its worker as it is decoded.
pub(crate) struct StreamJob {
    pub index: u64,
    pub first_frame: u64,
    pub keep_from: u64,
    /// Provisional end: [`Piece::Last`] lifts it.
    pub keep_to: u64,
    pub input: Receiver<Piece>,
}

/// Samples per channel a budget quantum stands for.
pub const QUANTUM_SAMPLES: usize = 4096;

fn quanta(samples: usize) -> usize {
    samples.div_ceil(QUANTUM_SAMPLES).max(1)
}

/// Budget quanta for `workers` encoders of `seg`-frame segments, `channels` × `frame` samples.
fn budget_quanta(workers: usize, seg: u64, channels: u16, frame: usize) -> usize {
    let quantum_bytes = (QUANTUM_SAMPLES * channels.max(1) as usize * 4) as u64;
    let frame_bytes = (frame * channels.max(1) as usize * 4) as u64;
    let ahead = (workers.max(2) - 1) as u64 * (seg + LEAD_IN_FRAMES + 8) * frame_bytes;
    (PCM_BUDGET_BYTES.max(ahead) / quantum_bytes) as usize
}

/// Returns `n` budget quanta (the segmenter may be gone: nothing to return them to then).
fn give_back(credits: &Sender<()>, n: usize) {
    for _ in 0..n {
        let _ = credits.send(());
    }
}

/// Encodes one streamed segment: pieces as they come, packets to the muxer as they are made.
/// Every piece taken gives its quanta back. `Err(Cancelled)` when the input stopped before
/// its end (the segmenter gave up) or the conversion is stopping.
///
/// `times` gets the worker's time: opening the encoder, encoding the lead-in (pieces wholly
/// before the first kept frame's input) and the rest, and waiting for pieces.
fn stream_segment(
    settings: &EncoderSettings,
    sj: &StreamJob,
    credits: &Sender<()>,
    results: &Sender<SegmentMsg>,
    stop: &dyn Fn() -> bool,
    times: &mut WorkerClock,
) -> Result<()> {
    let t = Instant::now();
    let mut se = SegmentEncoder::new(settings, sj.first_frame, sj.keep_from, Some(sj.keep_to))?;
    times.startup += t.elapsed();
    // Input samples into the segment, and where the input of its first kept packet begins
    // (the priming's worth of samples before that packet's place on the timeline).
    let mut fed = 0u64;
    let lead_in = (sj.keep_from.saturating_sub(sj.first_frame) * se.frame as u64)
        .saturating_sub(se.priming.max(0) as u64);
    let mut kept = Vec::new();
    let mut waited = Instant::now();
    for piece in sj.input.iter() {
        times.handoff += waited.elapsed();
        match piece {
            Piece::Pcm(planes, n) => {
                let t = Instant::now();
                let r = if stop() {
                    Err(Error::Cancelled)
                } else {
                    let refs: Vec<&[f32]> = planes.iter().map(Vec::as_slice).collect();
                    se.push(&refs, &mut kept)
                };
                fed += planes.first().map_or(0, |p| p.len() as u64);
                *if fed <= lead_in {
                    &mut times.lead_in
                } else {
                    &mut times.encode
                } += t.elapsed();
                drop(planes);
                give_back(credits, n);
                r?;
                if !kept.is_empty() {
                    results
                        .send(SegmentMsg::Packets(sj.index, std::mem::take(&mut kept)))
                        .map_err(|_| Error::Cancelled)?;
                }
            }
            Piece::Last => se.keep_to = None,
            Piece::End => {
                let t = Instant::now();
                se.finish(&mut kept)?;
                times.encode += t.elapsed();
                return results
                    .send(SegmentMsg::Packets(sj.index, kept))
                    .and_then(|()| results.send(SegmentMsg::Done(sj.index)))
                    .map_err(|_| Error::Cancelled);
            }
        }
        waited = Instant::now();
    }
    Err(Error::Cancelled)
}

/// The segmenter: PCM in book order, streamed to the encoder workers segment by segment.
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
    stages: &Mutex<StageTimes>,
) -> Result<PipelineOutcome> {
    // This runs on the encoder thread, inside the caller's span; the workers log inside it too.
    let span = tracing::Span::current();
    let seg = if job.segment_frames == 0 {
        auto_segment_frames(workers, job.target.channels, job.stream.frame_samples)
    } else {
        job.segment_frames
    };
    let budget = budget_quanta(workers, seg, job.target.channels, job.stream.frame_samples);
    let r = std::thread::scope(|s| -> Result<PipelineOutcome> {
        let (job_tx, job_rx) = bounded::<StreamJob>(workers);
        // The PCM budget: one token per quantum of samples sent to a worker and not yet
        // encoded. The workers hold the only senders, so when they are gone the segmenter's
        // wait for a quantum ends too.
        let (credit_tx, credit_rx) = bounded::<()>(budget);
        for _ in 0..budget {
            let _ = credit_tx.send(());
        }
        let span = &span;
        for w in 0..workers {
            let job_rx = job_rx.clone();
            let result_tx = result_tx.clone();
            let credit_tx = credit_tx.clone();
            let settings = job.encoder;
            std::thread::Builder::new()
                .name(format!("aiom4b-encode-{w}"))
                .spawn_scoped(s, move || {
                    let _span = span.enter();
                    let cpu0 = thread_cpu_secs();
                    let mut times = WorkerClock::default();
                    // Adds this worker's times to the run's when it ends, however it ends.
                    let _add = AddOnDrop(&mut times, stages, cpu0);
                    let times = &mut *_add.0;
                    let stop = || cancel.is_cancelled() || failure.stopped();
                    // A worker never leaves a segment's input behind: once the conversion is
                    // stopping it takes every piece it is given and gives its quanta back, so
                    // the segmenter never waits on a budget nobody returns, and it tells the
                    // muxer, which may be waiting for this segment's packets.
                    let mut waited = Instant::now();
                    for sj in job_rx.iter() {
                        times.handoff += waited.elapsed();
                        let r = if stop() {
                            Err(Error::Cancelled)
                        } else {
                            let (c, r) = (&credit_tx, &result_tx);
                            stream_segment(&settings, &sj, c, r, &stop, times)
                        };
                        if let Err(e) = r {
                            if !matches!(e, Error::Cancelled) {
                                failure.fail(e);
                            }
                            for piece in sj.input.iter() {
                                if let Piece::Pcm(_, n) = piece {
                                    give_back(&credit_tx, n);
                                }
                            }
                            let _ = result_tx.send(SegmentMsg::Stopped);
                        }
                        waited = Instant::now();
                    }
                })
                .map_err(|e| Error::Internal(format!("encoder thread: {e}")))?;
        }
        drop((job_rx, result_tx, credit_tx));
        tracing::debug!(
            segment_frames = seg,
            workers,
            budget_mib = (budget * QUANTUM_SAMPLES * job.target.channels.max(1) as usize * 4)
                as f64
                / (1 << 20) as f64,
            "segmented encoding, streamed"
        );
        let links = Links {
            job_tx,
            token_rx,
            credit_rx,
        };
        // The segmenter's own time (a cell, because its `send` and `open` closures wait too).
        let cpu0 = thread_cpu_secs();
        let waits = Cell::new(Duration::ZERO);
        let mut silence_time = Duration::ZERO;
        let waiting = |t: Instant| waits.set(waits.get() + t.elapsed());
        let r = segmenter(
            job,
            seg,
            rxs,
            &end_tx,
            chapters,
            progress,
            cancel,
            failure,
            links,
            &waiting,
            &mut silence_time,
        );
        let mut s = stages.lock().unwrap_or_else(|p| p.into_inner());
        s.handoff_secs += waits.get().as_secs_f64();
        s.silence_secs += silence_time.as_secs_f64();
        s.worker_cpu_secs += thread_cpu_secs() - cpu0;
        if let Ok(o) = &r {
            s.segments = o.joins.len() as u64 + 1;
        }
        r
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

/// The segmenter's ends of its channels: jobs to the workers, segment tokens from the muxer,
/// budget quanta from the workers.
struct Links {
    job_tx: Sender<StreamJob>,
    token_rx: Receiver<()>,
    credit_rx: Receiver<()>,
}

/// The timeline's samples from global sample `start` on, kept until every segment that needs
/// them has been sent them.
struct Held {
    start: u64,
    planes: Vec<Vec<f32>>,
    /// Samples at the front already dropped (compacted away once they are half the buffer).
    dead: usize,
}

impl Held {
    fn end(&self) -> u64 {
        self.start + (self.planes[0].len() - self.dead) as u64
    }
    fn push(&mut self, chunk: &[Vec<f32>]) {
        for (h, c) in self.planes.iter_mut().zip(chunk) {
            h.extend_from_slice(c);
        }
    }
    /// Copies of samples `[from, to)`.
    fn slice(&self, from: u64, to: u64) -> Vec<Vec<f32>> {
        let (a, b) = (
            self.dead + (from - self.start) as usize,
            self.dead + (to - self.start) as usize,
        );
        self.planes.iter().map(|p| p[a..b].to_vec()).collect()
    }
    /// Forgets the samples before `from`.
    fn forget_before(&mut self, from: u64) {
        let n = from.saturating_sub(self.start).min(self.end() - self.start) as usize;
        self.dead += n;
        self.start += n as u64;
        let len = self.planes[0].len();
        if self.dead > 0 && self.dead * 2 >= len {
            for p in self.planes.iter_mut() {
                p.drain(..self.dead);
            }
            self.dead = 0;
        }
    }
}

/// The segment being streamed: global frames, and the samples sent to it so far.
struct Open {
    index: u64,
    p: u64,
    q: u64,
    tx: Sender<Piece>,
    sent: u64,
}

/// Streams the book's PCM to the workers segment by segment. `waiting(t)` adds the time since
/// `t` to the segmenter's waits (for PCM, budget quanta and segment tokens), `silence_time`
/// gets the time spent finding pauses.
#[allow(clippy::too_many_arguments)]
fn segmenter(
    job: &PipelineJob<'_>,
    seg: u64,
    rxs: Vec<Receiver<DecodeMsg>>,
    end_tx: &Sender<(u64, Vec<MuxChapter>)>,
    chapters: ChapterBuilder,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
    failure: &Failure,
    links: Links,
    waiting: &dyn Fn(Instant),
    silence_time: &mut Duration,
) -> Result<PipelineOutcome> {
    let channels = job.target.channels as usize;
    let f = job.stream.frame_samples as u64;
    // Frames the priming spans: packet j's input starts that many frames before frame j.
    let pf = (job.stream.priming_samples.max(0) as u64).div_ceil(f);
    // Segment k keeps packets [k·seg, (k+1)·seg) and is fed frames [a_k, (k+1)·seg + lead-out):
    // its lead-in (priming frames included) before, the encoder's look-ahead after.
    let first_input = |k: u64| (k * seg).saturating_sub(pf + LEAD_IN_FRAMES);
    let mut held = Held {
        start: 0,
        planes: vec![Vec::new(); channels],
        dead: 0,
    };
    let mut clock = 0u64;
    let mut next_segment = 0u64;
    let mut cur: Option<Open> = None;
    let mut outcome = PipelineOutcome::default();
    let mut silence = super::detector(job, 0, None);

    // Sends the held samples from `o.sent` to `to`, in pieces, each against its quanta.
    let send = |o: &mut Open, held: &Held, to: u64| -> Result<()> {
        while o.sent < to {
            let end = to.min(o.sent + super::CHUNK_SAMPLES as u64);
            let n = quanta((end - o.sent) as usize);
            let t = Instant::now();
            for _ in 0..n {
                links.credit_rx.recv().map_err(|_| Error::Cancelled)?;
            }
            waiting(t);
            o.tx.send(Piece::Pcm(held.slice(o.sent, end), n))
                .map_err(|_| Error::Cancelled)?;
            o.sent = end;
        }
        Ok(())
    };
    // Starts segment `k` on the next free worker, once a segment token says the muxer is not
    // too far behind.
    let open = |k: u64| -> Result<Open> {
        let t = Instant::now();
        links.token_rx.recv().map_err(|_| Error::Cancelled)?;
        waiting(t);
        let (tx, input) = unbounded();
        let a = first_input(k);
        links
            .job_tx
            .send(StreamJob {
                index: k,
                first_frame: a,
                keep_from: k * seg,
                keep_to: (k + 1) * seg,
                input,
            })
            .map_err(|_| Error::Cancelled)?;
        Ok(Open {
            index: k,
            p: k * seg,
            q: (k + 1) * seg,
            tx,
            sent: a * f,
        })
    };

    for (i, rx) in rxs.iter().enumerate() {
        let start = clock;
        loop {
            if cancel.is_cancelled() || failure.stopped() {
                return Err(Error::Cancelled);
            }
            let t = Instant::now();
            let msg = rx.recv().map_err(|_| Error::Cancelled)?;
            waiting(t);
            match msg {
                DecodeMsg::Pcm(chunk) => {
                    if let Some(d) = silence.as_mut() {
                        let t = Instant::now();
                        let planes: Vec<&[f32]> = chunk.planes.iter().map(Vec::as_slice).collect();
                        d.push_planar(clock, &planes);
                        *silence_time += t.elapsed();
                    }
                    clock += chunk.len() as u64;
                    held.push(&chunk.planes);
                    drop(chunk);
                    loop {
                        if cur.is_none() {
                            cur = Some(open(next_segment)?);
                            next_segment += 1;
                        }
                        let o = cur.as_mut().expect("a segment is open");
                        // Up to the segment's planned end at once; its lead-out only once the
                        // book goes on past it (else this is the last segment, which takes
                        // everything to the book's end).
                        send(o, &held, clock.min(o.q * f))?;
                        let b = (o.q + LEAD_OUT_FRAMES) * f;
                        if clock <= b {
                            break;
                        }
                        send(o, &held, b)?;
                        o.tx.send(Piece::End).map_err(|_| Error::Cancelled)?;
                        progress.encoded(o.p * f, job.estimated_total.max(clock));
                        cur = None;
                    }
                    // Keep what the open segment has not been sent and the next one's input.
                    let sent = cur.as_ref().map_or(clock, |o| o.sent);
                    held.forget_before(sent.min(first_input(next_segment) * f));
                }
                DecodeMsg::End(result) => {
                    track_done(job, i, *result, clock - start, &mut outcome, progress)?;
                    break;
                }
            }
        }
    }
    // The last segment: everything to the very end, the encoder's flush included, whose final
    // packet carries the true remaining duration.
    if let Some(mut o) = cur.take() {
        o.tx.send(Piece::Last).map_err(|_| Error::Cancelled)?;
        send(&mut o, &held, clock)?;
        o.tx.send(Piece::End).map_err(|_| Error::Cancelled)?;
        debug_assert_eq!(o.index + 1, next_segment);
    }
    drop(links);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Segments are as long as the budget allows with the decoder one segment ahead per extra
    /// worker, and the budget always holds that much (no wait for quanta nobody can return).
    #[test]
    fn segments_fill_the_budget_and_the_budget_holds_them() {
        assert_eq!(auto_segment_frames(2, 2, 1024), 4096);
        assert_eq!(auto_segment_frames(2, 1, 1024), MAX_SEGMENT_FRAMES);
        assert_eq!(auto_segment_frames(4, 2, 1024), 1280);
        assert_eq!(auto_segment_frames(16, 2, 1024), MIN_SEGMENT_FRAMES);
        for workers in [2, 3, 4, 8, 16, 64] {
            for channels in [1, 2] {
                let seg = auto_segment_frames(workers, channels, 1024);
                let budget = budget_quanta(workers, seg, channels, 1024);
                let quantum_bytes = QUANTUM_SAMPLES * channels as usize * 4;
                let segment_bytes =
                    (seg as usize + LEAD_IN_FRAMES as usize) * 1024 * channels as usize * 4;
                assert!(budget * quantum_bytes >= (workers - 1) * segment_bytes);
                // Two cores: the whole of it within the 32 MiB budget plus a lead-in.
                if workers == 2 {
                    assert!(budget * quantum_bytes <= (PCM_BUDGET_BYTES as usize) + (2 << 20));
                }
            }
        }
        assert_eq!(quanta(1), 1);
        assert_eq!(quanta(QUANTUM_SAMPLES), 1);
        assert_eq!(quanta(QUANTUM_SAMPLES + 1), 2);
        assert_eq!(quanta(super::super::CHUNK_SAMPLES), 4);
    }
}
