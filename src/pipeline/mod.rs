//! The engine's threads: the conversion of one book. Two shapes, both ending in one muxer
//! thread:
//!
//! **Ranges** (more than one thread, the usual case; [`encode_ranges`]): the files are indexed
//! (demuxed, not decoded) so the sample clock is known up front, resampled files included
//! (their exact resampled lengths follow from the index); each encoder worker decodes (and
//! resamples) its own segment's range of the book and streams its packets to the muxer, which
//! writes them in order.
//!
//! ```text
//!  index (rayon) ─▶ segments on the frame grid ─▶ worker k: decode files from the right packet
//!                                                  → fresh encoder (lead-in, lead-out) ─┐
//!                                                  worker k+1: …                       ─┼─▶ muxer
//! ```
//!
//! **In order** (`--jobs 1`, books whose files do not decode as indexed, raw ADTS AAC (no
//! stated length), a long file that is not MP3 that the workers would decode over and over,
//! and books with a rate swresample does not convert exactly, which no MP3 rate is): a decode pool feeding, through bounded channels in book order, an AAC encoder
//! stage (one encoder, or streamed segments) that feeds one muxer thread. The rest of this
//! page is about this shape; [`encode_ranges`] explains its own bounds.
//!
//! ```text
//!  rayon pool (decode_threads)          encoder thread                muxer thread
//!  worker: claim track i (in order) ─┐
//!    decode + resample → tx[i] ──────┼─▶ rx[0], rx[1], … in order ──▶ packets ──▶ M4bMuxer
//!  worker: claim track i+1 ──────────┘   1024-sample frames, clock     (write, chapters, trailer)
//! ```
//!
//! **Why it cannot deadlock.** Workers claim tracks in increasing order from one atomic counter
//! and each works on one track at a time. The encoder only ever waits on the lowest track it has
//! not finished, `i`. Track `i` was claimed before every other unfinished track, so it is held by
//! a worker that is running or blocked only on `tx[i]` — which the encoder is draining. The
//! muxer waits only on the encoder. Every failure drops its channel ends, which turns the
//! neighbours' blocking calls into errors, so no stage waits on a stage that has stopped; a
//! decoder that stops on cancellation also closes the channels of the tracks nobody has taken,
//! one of which the encoder may be waiting on.
//!
//! **What bounds memory.** Each track channel holds at most [`CHUNKS_PER_TRACK`] chunks of
//! about [`CHUNK_SAMPLES`] samples, and at most `decode_threads` tracks are in flight, so PCM in
//! flight is at most `decode_threads × (CHUNKS_PER_TRACK + 1) × CHUNK_SAMPLES × channels × 4 B`
//! (≈ 1.3 MB for 2 threads, stereo). The packet channel holds at most [`PACKET_BATCHES`] batches.
//! Nothing depends on the length of the book.
//!
//! **Root cause wins.** The first stage that fails for its own reason records its error and
//! raises the stop flag; stages that then fail only because a neighbour went away stay quiet.
//!
//! # Where else threads live, and why
//!
//! This module is where the heavy, long-running threads are (decode, encode, mux: every one
//! named, scoped to the conversion, joined before [`run`]'s caller gets its result). Other
//! threads exist elsewhere, each short-lived or tiny, each named:
//!
//! * **Probing and planning** (`probe::probe_all`, `plan`'s truncation check) read many small
//!   file headers with `par_iter` on rayon's *global* pool, which rayon starts on first use
//!   and keeps for the process. Nothing there blocks on a channel, so the pool cannot starve;
//!   the engine's decode pool is a separate, per-conversion pool.
//! * **Verification** (`verify/decode.rs`, `verify-decode-N`): a few scoped threads decode
//!   contiguous ranges of the written file's packets; they end before `summarize` returns.
//! * **The workflow**: `workflow/batch.rs` runs up to `concurrency` books at once on scoped
//!   `aiom4b-book-N` threads (each book then uses this module); `workflow/mod.rs` starts one
//!   `aiom4b-watchdog` per job with a time limit, which sleeps on a condition variable and
//!   raises the cancel flag (joined when the job ends); `workflow/logfile.rs` has one
//!   non-blocking writer thread so logging never waits on the disk (it lives as long as the
//!   log file's guard).
//! * **The CLI** (`bin/aiom4b/signals.rs`): one `aiom4b-signals` thread turns SIGINT, SIGTERM
//!   and SIGHUP into cancellation; the library installs no handler.
//!
//! `contained.rs` starts no thread; it marks, per thread, calls into other libraries whose
//! panics are caught and reported, so the CLI's panic hook stays quiet for them.
pub(crate) mod copy;
mod encode_ranges;
mod encode_segments;
mod encode_single;

use crate::av::decode::{self, DecodeStats, PcmChunk};
use crate::av::encode::{EncodedPacket, StreamParams};
use crate::av::input;
use crate::av::mux::{M4bMuxer, MuxChapter};
use crate::convert::StageTimes;
use crate::error::{Error, Result};
use crate::model::{Finding, FindingKind, Severity, TargetFormat};
use crate::options::EncoderSettings;
use crate::progress::{CancelToken, ProgressSink};
use crate::silence::{Pause, RangePauses, SilenceDetector, SilenceOptions};
use crate::verify::VerifiedRun;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Samples per PCM chunk sent from a decoder (≈ 0.37 s at 44.1 kHz): large enough that channel
/// overhead is negligible, small enough that memory stays tiny.
pub const CHUNK_SAMPLES: usize = 16_384;
/// Chunks buffered per track channel: lets a decoder run ahead of the encoder a little.
pub const CHUNKS_PER_TRACK: usize = 4;
/// Packet batches buffered between the encoder stage and the muxer.
pub const PACKET_BATCHES: usize = 64;

/// One input file for the pipeline.
#[derive(Debug, Clone)]
pub struct TrackJob {
    pub path: PathBuf,
    /// Exact gapless length at the file's own rate, when the header knew it (to detect truncation).
    pub exact_source_samples: Option<u64>,
    /// The file's own sample rate.
    pub source_rate: u32,
    /// What the file is (validated by the plan); it is opened as that and nothing else.
    pub format: crate::model::InputFormat,
}

/// Everything the pipeline needs besides the muxer.
pub struct PipelineJob<'a> {
    pub tracks: &'a [TrackJob],
    pub target: TargetFormat,
    pub encoder: EncoderSettings,
    /// The encoder's stream parameters (frame size and priming drive the segment arithmetic).
    pub stream: StreamParams,
    /// Worker threads (decode pool size; the encoder and muxer threads come on top and spend
    /// most of their time waiting or encoding).
    pub threads: usize,
    pub allow_damaged: bool,
    /// Frames per segment of the multi-core encoder (0: sized automatically).
    pub segment_frames: u64,
    /// Decode every packet with the verifier's independent decoder as it is encoded
    /// ([`crate::verify::PacketCheck`]), so that the final check need not decode the file.
    pub verify: bool,
    /// The plan's estimate of the total output samples (for progress until decoding is done).
    pub estimated_total: u64,
    /// Find the pauses on the decoded PCM (chapters from silence, snapping): every path feeds
    /// a [`SilenceDetector`] with the output timeline, and the chapter builder gets the pauses.
    pub silence: Option<SilenceOptions>,
}

/// A detector on `job`'s output timeline over `[lo, hi)`, when pauses are asked for.
pub(crate) fn detector(job: &PipelineJob<'_>, lo: u64, hi: Option<u64>) -> Option<SilenceDetector> {
    job.silence
        .as_ref()
        .map(|o| SilenceDetector::for_range(o, job.target.sample_rate, lo, hi))
}

/// The book's pauses from its detectors' ranges (empty when none were asked for).
pub(crate) fn pauses(job: &PipelineJob<'_>, ranges: Vec<RangePauses>) -> Vec<Pause> {
    match &job.silence {
        Some(o) => {
            let keep = (crate::silence::SHORTEST_PAUSE_SECS.min(o.min_pause_secs)
                * job.target.sample_rate as f64)
                .round() as u64;
            crate::silence::merge_ranges(ranges, keep)
        }
        None => Vec::new(),
    }
}

/// Builds the final chapter list from each track's decoded length, the total and the pauses
/// found (empty unless [`PipelineJob::silence`] asked for them).
pub type ChapterBuilder = Box<dyn FnOnce(&[u64], u64, &[Pause]) -> Result<Vec<MuxChapter>> + Send>;

/// What the pipeline produced.
#[derive(Debug, Clone, Default)]
pub struct PipelineOutcome {
    /// Output samples per track (the one clock).
    pub track_samples: Vec<u64>,
    pub total_samples: u64,
    pub packets: u64,
    pub chapters: Vec<MuxChapter>,
    /// Where independently encoded segments meet, in output samples (the first sample of the
    /// frame where the next segment's first packet starts); empty with one encoder.
    pub joins: Vec<u64>,
    /// Per-track damage, when accepted with `allow_damaged`.
    pub damaged: Vec<(usize, DecodeStats)>,
    /// The findings raised while converting (one per accepted damaged track), exactly as sent
    /// to the progress sink, so a report says what the user was told.
    pub findings: Vec<Finding>,
    /// Where the time went.
    pub stages: StageTimes,
    /// With [`PipelineJob::verify`] on the ranged path: what the independent decoder found in
    /// each segment's packets while encoding, for the final check to match against the file.
    /// `None` when the packets were not checked as they were encoded.
    pub verified: Option<Vec<VerifiedRun>>,
}

/// The calling thread's CPU time (user + system) in seconds, where the kernel tells it.
pub(crate) fn thread_cpu_secs() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// One worker's time, by what it was doing.
#[derive(Default)]
pub(crate) struct WorkerClock {
    pub(crate) startup: std::time::Duration,
    pub(crate) decode: std::time::Duration,
    pub(crate) lead_in: std::time::Duration,
    pub(crate) encode: std::time::Duration,
    pub(crate) verify: std::time::Duration,
    pub(crate) silence: std::time::Duration,
    pub(crate) handoff: std::time::Duration,
}

/// Adds a worker's clock (and its thread's CPU time since `.2`) to the run's on drop.
pub(crate) struct AddOnDrop<'a>(&'a mut WorkerClock, &'a Mutex<StageTimes>, f64);

impl Drop for AddOnDrop<'_> {
    fn drop(&mut self) {
        let c = &self.0;
        let mut s = self.1.lock().unwrap_or_else(|p| p.into_inner());
        s.startup_secs += c.startup.as_secs_f64();
        s.decode_secs += c.decode.as_secs_f64();
        s.lead_in_secs += c.lead_in.as_secs_f64();
        s.encode_secs += c.encode.as_secs_f64();
        s.verify_decode_secs += c.verify.as_secs_f64();
        s.silence_secs += c.silence.as_secs_f64();
        s.handoff_secs += c.handoff.as_secs_f64();
        s.worker_cpu_secs += thread_cpu_secs() - self.2;
    }
}

/// Test hook (feature `internals`): packets to damage on their way from the encoders to the
/// muxer, so that a test can prove the final check notices. Keyed by the output's folder, so
/// tests running in parallel do not see each other's.
#[cfg(feature = "internals")]
pub mod tamper {
    use crate::av::encode::EncodedPacket;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    static TAMPER: Mutex<Vec<(PathBuf, u64)>> = Mutex::new(Vec::new());
    /// Set once anything is registered: until then the muxer pays one atomic load per packet.
    static ARMED: AtomicBool = AtomicBool::new(false);

    /// Flips a bit of packet `index` (0-based, in the order written) of every file the muxer
    /// writes in `dir`, just before it is written.
    pub fn corrupt_packet_in(dir: &Path, index: u64) {
        TAMPER
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((dir.to_path_buf(), index));
        ARMED.store(true, Ordering::SeqCst);
    }

    /// The packet to write instead of `p`, when a test asked for packet `index` of `path`.
    pub(crate) fn apply(path: &Path, index: u64, p: &EncodedPacket) -> Option<EncodedPacket> {
        if !ARMED.load(Ordering::Relaxed) {
            return None;
        }
        let t = TAMPER.lock().unwrap_or_else(|p| p.into_inner());
        let hit = t
            .iter()
            .any(|(dir, i)| *i == index && path.parent() == Some(dir.as_path()));
        hit.then(|| {
            let mut p = p.clone();
            // The packet's last byte: it stays a packet of the same size, so only its
            // contents tell (the sample table alone would not).
            if let Some(b) = p.data.last_mut() {
                *b ^= 0x10;
            }
            p
        })
    }
}

/// Shared failure state: the first real error, and a flag that tells every stage to stop.
pub(crate) struct Failure {
    first: Mutex<Option<Error>>,
    stop: AtomicBool,
}

impl Failure {
    fn new() -> Self {
        Failure {
            first: Mutex::new(None),
            stop: AtomicBool::new(false),
        }
    }
    /// Records `e` if it is the first real error, and stops everything.
    pub(crate) fn fail(&self, e: Error) {
        let mut g = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(e);
        }
        self.stop.store(true, Ordering::SeqCst);
    }
    /// Stops everything without recording an error (a re-plan, which is not a failure).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
    /// No real error has been recorded.
    pub(crate) fn first_is_none(&self) -> bool {
        self.first
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    fn take(&self) -> Option<Error> {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// A message from a decoder to the encoder stage, on the track's own channel.
pub(crate) enum DecodeMsg {
    Pcm(PcmChunk),
    End(Box<Result<DecodeStats>>),
}

/// A message to the muxer thread.
pub(crate) enum MuxMsg {
    Packets(Vec<EncodedPacket>),
    /// Everything is encoded: write these chapters and the trailer.
    Finish(Vec<MuxChapter>),
}

/// A message from a multi-core encoder worker to the muxer: packets of segment `k` (in order
/// within it; any number of batches), then that the segment is complete.
pub(crate) enum SegmentMsg {
    Packets(u64, Vec<EncodedPacket>),
    Done(u64),
    /// A worker gave up its segment because the conversion is stopping (the stop flag or the
    /// cancel token is set): wakes a muxer that may be waiting for that segment.
    Stopped,
}

/// Runs decode → encode → mux. On success the muxer has written the trailer and closed the
/// file; on failure the partial file is left for the caller to delete.
///
/// With more than one thread, the book is first indexed and encoded in long ranges, each worker
/// decoding (and resampling) its own ([`encode_ranges`]); a book whose files do not decode as
/// indexed, or with a rate ratio swresample does not convert exactly, goes through the in-order
/// path instead (`open_muxer` is then called a second time, to start the output afresh).
pub fn run(
    job: &PipelineJob<'_>,
    open_muxer: &dyn Fn() -> Result<M4bMuxer>,
    chapters: ChapterBuilder,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<PipelineOutcome> {
    let threads = job.threads.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("aiom4b-decode-{i}"))
        .build()
        .map_err(|e| Error::Internal(format!("decode pool: {e}")))?;
    let mut chapters = Some(chapters);
    if threads > 1 {
        match encode_ranges::prepare(job, &pool) {
            Ok(plan) => {
                match encode_ranges::run(job, &plan, open_muxer()?, &mut chapters, progress, cancel)
                {
                    Ok(outcome) => return Ok(outcome),
                    Err(encode_ranges::RangeFailure::Fail(e)) => return Err(e),
                    Err(encode_ranges::RangeFailure::Replan(why)) => tracing::info!(
                        reason = %why,
                        "the input does not decode as indexed; converting again in book order"
                    ),
                }
            }
            Err(why) => tracing::debug!(reason = %why, "encoding streamed segments in book order"),
        }
    }
    let chapters = chapters
        .take()
        .expect("the chapter builder is only used on success");
    run_in_order(job, open_muxer()?, chapters, progress, cancel, &pool)
}

/// The in-order pipeline: decoders → one encoder stage (single or segmented) → muxer.
fn run_in_order(
    job: &PipelineJob<'_>,
    muxer: M4bMuxer,
    chapters: ChapterBuilder,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
    pool: &rayon::ThreadPool,
) -> Result<PipelineOutcome> {
    let n = job.tracks.len();
    let failure = Failure::new();
    let threads = job.threads.max(1);
    // Where the time goes: every stage thread adds its clock here when it ends.
    let stages: Mutex<StageTimes> = Mutex::new(StageTimes::default());
    let t_run = std::time::Instant::now();

    let (txs, rxs): (Vec<Sender<DecodeMsg>>, Vec<Receiver<DecodeMsg>>) =
        (0..n).map(|_| bounded(CHUNKS_PER_TRACK)).unzip();
    let txs: Vec<Mutex<Option<Sender<DecodeMsg>>>> =
        txs.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let (mux_tx, mux_rx) = bounded::<MuxMsg>(PACKET_BATCHES);
    let next_track = AtomicUsize::new(0);
    // The caller's span (the workflow's `job` span with its `job_id`) is entered on every stage
    // thread, so their log lines say which job they belong to.
    let span = tracing::Span::current();

    let outcome = std::thread::scope(|s| -> Result<PipelineOutcome> {
        // Segmented (multi-core) encoding unless one thread is asked for: `--jobs 1` keeps the
        // single continuous encoder as the reference path.
        let segmented = threads > 1;
        let encode_segments::Channels {
            msg_tx: seg_tx,
            msg_rx: seg_rx,
            tok_tx,
            tok_rx,
            end_tx,
            end_rx,
        } = encode_segments::channels(threads);
        // The muxer: a plain named thread that owns the output.
        let (failure_ref, span_ref, stages_ref) = (&failure, &span, &stages);
        let mux_handle = std::thread::Builder::new()
            .name("aiom4b-mux".into())
            .spawn_scoped(s, move || {
                let _span = span_ref.enter();
                if segmented {
                    drop(mux_rx);
                    let stages = Some(stages_ref);
                    mux_segments(muxer, seg_rx, end_rx, tok_tx, cancel, failure_ref, stages)
                } else {
                    drop((seg_rx, end_rx, tok_tx));
                    mux_loop(muxer, mux_rx, cancel, failure_ref, stages_ref)
                }
            })
            .map_err(|e| Error::Internal(format!("muxer thread: {e}")))?;

        // The decoders: `threads` workers on our own rayon pool (not the global one), each
        // claiming the next track in order. `pool.scope` blocks, so it runs on a helper thread.
        let (txs_ref, next_ref, pool_ref, tracks, target) =
            (&txs, &next_track, pool, job.tracks, job.target);
        std::thread::Builder::new()
            .name("aiom4b-decoders".into())
            .spawn_scoped(s, move || {
                pool_ref.scope(|ps| {
                    for _ in 0..threads {
                        ps.spawn(move |_| {
                            let _span = span_ref.enter();
                            let shared = (txs_ref.as_slice(), next_ref, stages_ref);
                            decode_worker(tracks, shared, target, cancel, failure_ref)
                        });
                    }
                })
            })
            .map_err(|e| Error::Internal(format!("decoder thread: {e}")))?;

        // The encoder stage runs on this (scoped) thread of its own.
        let enc_failure = &failure;
        let enc = std::thread::Builder::new()
            .name("aiom4b-encode".into())
            .spawn_scoped(s, move || {
                let _span = span_ref.enter();
                if segmented {
                    drop(mux_tx);
                    encode_segments::run(
                        job,
                        rxs,
                        end_tx,
                        chapters,
                        progress,
                        cancel,
                        enc_failure,
                        threads,
                        seg_tx,
                        tok_rx,
                        stages_ref,
                    )
                } else {
                    drop((seg_tx, end_tx, tok_rx));
                    let (fail, st) = (enc_failure, stages_ref);
                    encode_single::run(job, rxs, mux_tx, chapters, progress, cancel, fail, st)
                }
            })
            .map_err(|e| Error::Internal(format!("encoder thread: {e}")))?;

        let enc_result = enc
            .join()
            .map_err(|_| Error::Internal("the encoder thread".into()))?;
        let mux_result = mux_handle
            .join()
            .map_err(|_| Error::Internal("the muxer thread".into()))?;
        match (enc_result, mux_result) {
            (Ok(mut outcome), Ok(packets)) => {
                outcome.packets = packets;
                let mut st = std::mem::take(&mut *stages.lock().unwrap_or_else(|p| p.into_inner()));
                st.encode_run_secs = t_run.elapsed().as_secs_f64();
                outcome.stages = st;
                // Every packet is written: the end of the encode stage for every path (the
                // segmented one reports segments as it hands them out, so a book shorter than
                // one segment reported nothing before).
                progress.encoded(outcome.total_samples, outcome.total_samples);
                Ok(outcome)
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    });
    settle(&failure, cancel, outcome)
}

/// A run's result once its threads are joined. Root cause wins: the first recorded failure
/// explains the others; then a cancellation.
pub(crate) fn settle(
    failure: &Failure,
    cancel: &CancelToken,
    outcome: Result<PipelineOutcome>,
) -> Result<PipelineOutcome> {
    if let Some(first) = failure.take() {
        return Err(first);
    }
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    outcome
}

/// The decoders' shared state on the in-order path: each track's channel (taken by the worker
/// that claims the track), the next track to claim, and the run's stage times.
type DecodeShared<'a> = (
    &'a [Mutex<Option<Sender<DecodeMsg>>>],
    &'a AtomicUsize,
    &'a Mutex<StageTimes>,
);

fn decode_worker(
    tracks: &[TrackJob],
    (txs, next_track, stages): DecodeShared<'_>,
    target: TargetFormat,
    cancel: &CancelToken,
    failure: &Failure,
) {
    let cpu0 = thread_cpu_secs();
    let mut clock = WorkerClock::default();
    // Adds this decoder's times to the run's when it ends, however it ends.
    let _add = AddOnDrop(&mut clock, stages, cpu0);
    let clock = &mut *_add.0;
    loop {
        let i = next_track.fetch_add(1, Ordering::SeqCst);
        if i >= tracks.len() {
            return;
        }
        if failure.stopped() || cancel.is_cancelled() {
            // Close every track channel no worker has taken yet, this one included. The
            // encoder may already be blocked on one of them (it checked the flags just before
            // the stop); with no sender left its `recv` fails and it stops. Without this it
            // would wait forever on a channel whose sender sits unused in `txs`.
            for tx in txs {
                tx.lock().unwrap_or_else(|p| p.into_inner()).take();
            }
            return;
        }
        let Some(tx) = txs[i].lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let stop = || cancel.is_cancelled() || failure.stopped();
        let allowed = crate::model::InputFormats::of(&[tracks[i].format]);
        let t = std::time::Instant::now();
        let mut waited = std::time::Duration::ZERO;
        let result = input::open_input(&tracks[i].path, allowed).and_then(|inp| {
            decode::decode_file(
                inp,
                target.sample_rate,
                target.channels as usize,
                CHUNK_SAMPLES,
                &stop,
                &mut |chunk| {
                    let w = std::time::Instant::now();
                    // A closed channel means the encoder stage has stopped; it reports why.
                    let r = tx.send(DecodeMsg::Pcm(chunk)).map_err(|_| Error::Cancelled);
                    waited += w.elapsed();
                    r
                },
            )
        });
        clock.decode += t.elapsed().saturating_sub(waited);
        let w = std::time::Instant::now();
        let sent = tx.send(DecodeMsg::End(Box::new(result)));
        clock.handoff += waited + w.elapsed();
        if sent.is_err() {
            return;
        }
    }
}

fn mux_loop(
    muxer: M4bMuxer,
    rx: Receiver<MuxMsg>,
    cancel: &CancelToken,
    failure: &Failure,
    stages: &Mutex<StageTimes>,
) -> Result<u64> {
    let cpu0 = thread_cpu_secs();
    let (mut wait, mut writing) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    let r = mux_loop_timed(muxer, rx, cancel, failure, &mut wait, &mut writing);
    let mut s = stages.lock().unwrap_or_else(|p| p.into_inner());
    s.mux_wait_secs += wait.as_secs_f64();
    s.mux_write_secs += writing.as_secs_f64();
    s.mux_cpu_secs += thread_cpu_secs() - cpu0;
    r
}

/// [`mux_loop`]'s work, adding up the time spent waiting for packets and writing them.
fn mux_loop_timed(
    mut muxer: M4bMuxer,
    rx: Receiver<MuxMsg>,
    cancel: &CancelToken,
    failure: &Failure,
    wait: &mut std::time::Duration,
    writing: &mut std::time::Duration,
) -> Result<u64> {
    let mut packets = 0u64;
    loop {
        let t = std::time::Instant::now();
        let Ok(msg) = rx.recv() else { break };
        *wait += t.elapsed();
        if cancel.is_cancelled() || failure.stopped() {
            return Err(Error::Cancelled);
        }
        let t = std::time::Instant::now();
        let written = match msg {
            MuxMsg::Packets(batch) => {
                packets += batch.len() as u64;
                batch.iter().try_for_each(|p| muxer.write(p))
            }
            MuxMsg::Finish(chapters) => {
                let r = muxer.finish(&chapters);
                *writing += t.elapsed();
                return r.map(|()| packets).map_err(|e| {
                    failure.fail(e);
                    Error::Cancelled
                });
            }
        };
        *writing += t.elapsed();
        if let Err(e) = written {
            failure.fail(e);
            return Err(Error::Cancelled);
        }
    }
    // The encoder stage went away without finishing: it has recorded why (or was cancelled).
    Err(Error::Cancelled)
}

/// The muxer of both multi-core stages: writes segments strictly in order, the lowest
/// unfinished segment's packets as they arrive and later ones held until their turn. Each
/// finished segment returns a token to the dispatcher, which bounds how many are in flight.
/// Once every worker is gone, `end` says how many segments there were and gives the chapters;
/// it is dropped unsent when something failed.
pub(crate) fn mux_segments(
    mut muxer: M4bMuxer,
    rx: Receiver<SegmentMsg>,
    end: Receiver<(u64, Vec<MuxChapter>)>,
    tokens: Sender<()>,
    cancel: &CancelToken,
    failure: &Failure,
    stages: Option<&Mutex<StageTimes>>,
) -> Result<u64> {
    let cpu0 = thread_cpu_secs();
    let (mut wait, mut writing) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    let mut next = 0u64;
    let mut packets = 0u64;
    // Segments ahead of their turn: their packets so far, and whether they are finished.
    let mut pending: std::collections::BTreeMap<u64, (Vec<EncodedPacket>, bool)> =
        Default::default();
    let mut write = |muxer: &mut M4bMuxer, batch: &[EncodedPacket]| -> Result<()> {
        let t = std::time::Instant::now();
        for p in batch {
            muxer.write(p)?;
        }
        packets += batch.len() as u64;
        writing += t.elapsed();
        Ok(())
    };
    let outcome = (|| -> Result<()> {
        loop {
            let t = std::time::Instant::now();
            let Ok(msg) = rx.recv() else { break };
            wait += t.elapsed();
            if cancel.is_cancelled() || failure.stopped() {
                return Err(Error::Cancelled);
            }
            let finished = match msg {
                SegmentMsg::Packets(i, batch) if i == next => {
                    write(&mut muxer, &batch)?;
                    false
                }
                SegmentMsg::Packets(i, batch) => {
                    pending.entry(i).or_default().0.extend(batch);
                    false
                }
                SegmentMsg::Done(i) if i == next => true,
                SegmentMsg::Done(i) => {
                    pending.entry(i).or_default().1 = true;
                    false
                }
                SegmentMsg::Stopped => return Err(Error::Cancelled),
            };
            if finished {
                // Move on, writing what the following segments have ready.
                loop {
                    next += 1;
                    let _ = tokens.send(());
                    match pending.remove(&next) {
                        Some((batch, done)) => {
                            write(&mut muxer, &batch)?;
                            if !done {
                                break;
                            }
                        }
                        None => break,
                    }
                }
            }
        }
        Ok(())
    })();
    let t = std::time::Instant::now();
    // Every worker is gone. The dispatcher may be waiting for a token that will never come
    // (the workers stopped early): closing the token channel releases it.
    drop(tokens);
    let result = match outcome {
        Err(e) => {
            if !e.is_cancelled() {
                failure.fail(e);
            }
            Err(Error::Cancelled)
        }
        Ok(()) => match end.recv() {
            Err(_) => Err(Error::Cancelled),
            Ok((segments, _)) if next != segments => Err(Error::Internal(format!(
                "muxer: {next} of {segments} segments written"
            ))),
            Ok((_, chapters)) => {
                wait += t.elapsed();
                let t = std::time::Instant::now();
                let r = muxer.finish(&chapters);
                writing += t.elapsed();
                r.map(|()| packets).map_err(|e| {
                    failure.fail(e);
                    Error::Cancelled
                })
            }
        },
    };
    if let Some(stages) = stages {
        let mut s = stages.lock().unwrap_or_else(|p| p.into_inner());
        s.mux_wait_secs += wait.as_secs_f64();
        s.mux_write_secs += writing.as_secs_f64();
        s.mux_cpu_secs += thread_cpu_secs() - cpu0;
    }
    result
}

/// Records a finished track (both encoder stages): judges its damage, adds its decoded length
/// to the clock's per-track list, and reports it.
pub(crate) fn track_done(
    job: &PipelineJob<'_>,
    index: usize,
    result: Result<DecodeStats>,
    samples: u64,
    outcome: &mut PipelineOutcome,
    progress: &dyn ProgressSink,
) -> Result<()> {
    let stats = result?;
    if let Some(f) = judge_track(job, index, &stats)? {
        progress.finding(&f);
        outcome.damaged.push((index, stats));
        outcome.findings.push(f);
    }
    outcome.track_samples.push(samples);
    progress.file_decoded(index, &job.tracks[index].path, samples);
    Ok(())
}

/// How many samples a file may fall short of its header's exact length before it counts as
/// truncated: one MP3 frame, because the header's count and the decoder's trimming may differ
/// by a partial frame on unusual encoders, never by more. The plan's truncation check
/// (`plan::inspect`) uses the same slack, so `probe` and `convert` judge a file alike.
pub(crate) const TRUNCATION_SLACK_SAMPLES: u64 = 1152;

/// Turns a finished track's decode statistics into a finding, or an error when damage is not
/// accepted. Also detects truncation against the header's exact length.
pub(crate) fn judge_track(
    job: &PipelineJob<'_>,
    index: usize,
    stats: &DecodeStats,
) -> Result<Option<Finding>> {
    let t = &job.tracks[index];
    let frames = stats.damaged_frames;
    let mut problems = Vec::new();
    if frames > 0 {
        let why = stats
            .first_error
            .as_deref()
            .unwrap_or("the decoder rejected them");
        problems.push(format!("{frames} damaged frame(s) ({why})"));
    }
    if let Some(expected) = t.exact_source_samples {
        if stats.source_samples + TRUNCATION_SLACK_SAMPLES < expected {
            let got = stats.source_samples;
            let missing_secs = (expected - got) as f64 / t.source_rate.max(1) as f64;
            let ogg = matches!(
                t.format,
                crate::model::InputFormat::Opus | crate::model::InputFormat::Vorbis
            );
            problems.push(if ogg {
                // An Ogg file's length is its last page's position, so a file cut short is
                // not this (the plan finds it by its end): the positions run ahead of the
                // packets somewhere inside.
                format!(
                    "the file's Ogg page positions announce {missing_secs:.2} s more audio than its packets hold ({got} of {expected} samples decode): a gap in its timeline, as files joined with ffmpeg's concat demuxer have, or pages lost inside the file"
                )
            } else {
                let shortfall = format!(
                    "{missing_secs:.2} s of audio missing, {got} of the {expected} samples its header announces decode"
                );
                // Frames the decoder rejected also shorten the file; only a shortfall without
                // them means the end is missing. A file damaged in the middle is not called
                // truncated.
                if frames == 0 {
                    format!("the file is truncated: {shortfall}")
                } else {
                    shortfall
                }
            });
        }
    }
    if problems.is_empty() {
        return Ok(None);
    }
    let reason = problems.join("; ");
    if !job.allow_damaged {
        return Err(Error::Damaged {
            path: t.path.clone(),
            errors: frames,
            reason,
        });
    }
    let kept = if frames > 0 {
        "the damaged frames are skipped"
    } else {
        "the audio that decodes is kept"
    };
    Ok(Some(
        Finding::new(
            Severity::Warning,
            FindingKind::Damaged,
            Some(t.path.clone()),
            format!("{reason}; {kept}, and chapter times follow it"),
        )
        .with_remedy("replace the file with a good copy"),
    ))
}
