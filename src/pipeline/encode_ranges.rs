//! Multi-core encoding with long segments: every worker decodes its own stretch of the book.
//!
//! Restarting an encoder is not free (see [`LEAD_IN_FRAMES`](super::LEAD_IN_FRAMES): about 0.1 CPU-second per
//! restart for FFmpeg's twoloop coder at 128 kb/s stereo, half of it the lead-in, half the
//! fresh rate control working harder), so the fewer segments the better. The streamed
//! segmenter (`encode_segments`) cannot make them long: it decodes the book in order, so
//! every segment's PCM waits in memory until an encoder takes it. Here nothing waits:
//!
//! 1. **Index** every MP3 ([`index_mp3`]: demuxing only, about 15× cheaper than decoding) to
//!    learn each packet's exact output length, so the book's sample clock is known before
//!    anything is decoded: file `i` starts at `track_starts[i]`. Other formats state their
//!    exact length in their container (FLAC, WAV, Ogg, AAC/ALAC in MP4; not raw ADTS) and are
//!    taken whole ([`Source::Whole`]): a worker seeks to its stretch where the format allows
//!    it exactly (FLAC, WAV, ALAC, AAC-LC at the book's rate), else decodes the file from its
//!    start, as the in-order path does, and drops what precedes its stretch. A file at another rate than
//!    the output's counts with its exact resampled length ([`resampled_len`]: swresample's count
//!    is a function of the input length alone, worked out in microseconds from the index).
//! 2. **Plan** segments of up to [`RANGE_MAX_FRAMES`] AAC frames on the global frame grid, as
//!    many as a multiple of the worker count so that the workers finish together.
//! 3. Each **worker** takes the next segment, finds the file and packet where its lead-in
//!    starts, decodes from there ([`decode_from`], a few packets of pre-roll before it),
//!    through as many files as the segment spans, into a fresh [`SegmentEncoder`], and streams
//!    the kept packets to the muxer as they come. A resampled file is decoded and resampled
//!    ([`decode_resampled_from`]) by a fresh resampler started on the rate ratio's period with
//!    at least 1024 input samples of real audio before the wanted one, its first outputs
//!    thrown away: the samples kept are bit for bit those of the in-order path's file-long
//!    resampler (see `av::decode`), so a segment may start anywhere in a resampled file, and
//!    joins and chapters fall where they would in a book that needs no resampling.
//! 4. The **muxer** writes the lowest unfinished segment's packets as they arrive and holds
//!    the later ones (a token bound limits how many segments are in flight, so this is at most
//!    `tokens` segments of packets: ≈ 12 MB each at 128 kb/s, independent of book length).
//! 5. **Verification while encoding** (with `PipelineJob::verify`): before a worker hands a
//!    batch of kept packets to the muxer it decodes them with the verifier's independent
//!    decoder ([`PacketCheck`]) and digests them; each segment's [`VerifiedRun`] goes to the
//!    final check, which then matches the written file's packets against the digests instead
//!    of decoding the file again. The decode costs the same CPU as before, but it runs on the
//!    workers while the other workers encode, not as a serial pass after the trailer.
//!
//! Every stage's time is measured as it runs (`StageTimes` in the report: decode, lead-in,
//! encode, verify-decode, start-up and hand-offs per worker, the muxer's writing and waiting).
//!
//! Every packet a worker decodes past its pre-roll is checked against the index; the first one
//! that decodes differently (damage, a rate change) stops the run as a *re-plan*, and the
//! caller converts the book again with the in-order path, which judges damage the usual way.
//! A resampled file must also end exactly at its predicted length (checked after the
//! resampler's flush). Only a rate pair swresample does not convert exactly (its reduced output
//! side above 1024 phases; no MP3 rate to an AAC rate up to 48 kHz is one) sends a book to the
//! in-order path from the start.
use super::encode_segments::{tokens, SegmentEncoder, LEAD_OUT_FRAMES};
use super::{
    judge_track, mux_segments, AddOnDrop, ChapterBuilder, Failure, PipelineJob, PipelineOutcome,
    SegmentMsg, WorkerClock,
};
use crate::av::decode::{
    decode_file_while, decode_seeking, resampled_len, seek_preroll, DecodeStats,
};
use crate::av::encode::EncodedPacket;
use crate::av::mux::{M4bMuxer, MuxChapter};
use crate::av::packets::{
    decode_from, decode_resampled_from, index_mp3, OpenTrack, RangeError, TrackIndex,
};
use crate::convert::StageTimes;
use crate::error::{Error, Result};
use crate::progress::{CancelToken, ProgressSink};
use crate::silence::RangePauses;
use crate::verify::{PacketCheck, VerifiedRun};
use crossbeam_channel::{bounded, Sender};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Frames of real audio each segment's encoder is fed before its first kept packet (≈ 12 s at
/// 44.1 kHz). The in-order path's 128 ([`LEAD_IN_FRAMES`](super::LEAD_IN_FRAMES)) is as
/// short as its short segments allow; here segments are minutes long and a longer lead-in is
/// nearly free, while FFmpeg's encoder keeps slow state (the psychoacoustic model's
/// perceptual-entropy range forgets with a 1/512 slope). Measured on the bench's 10-minute
/// book with 100 forced joins (`aiom4b_testkit::quality::splice_report`, joins' mean excess
/// over non-join pairs): lead-in 64 frames +0.78 dB, 128 +0.67, 512 +0.40, 1024 +0.22; CPU on the 1-hour
/// book at -j2: 128 and 512 the same (68.4 / 68.2 s), 1024 +2 %.
pub const RANGE_LEAD_IN_FRAMES: u64 = 512;
/// Longest segment (≈ 10.3 min at 44.1 kHz): 0.1 s of restart per 18 s of encoding. About
/// what a 1-hour book gets at `-j2` anyway (6 segments of 25.8k frames), so that a segment
/// finished ahead of its turn, whose packets the muxer holds (≈ 10 MB at 128 kb/s), is the
/// same size in a 30-hour book as in a 1-hour one: peak memory stays flat in book length
/// (issue 18). Measured (FDK, -j2): 30-hour book 83.6 MiB at 32,768 frames, 74.0 / 75.2 at
/// 26,624 (1-hour book unchanged, 62.7 / 73.3 MiB); the extra restarts
/// cost 0.4 % of the encoding's CPU in books over about 1.2 hours, none below.
pub const RANGE_MAX_FRAMES: u64 = 26_624;
/// Encoded packets the muxer may hold for segments finished ahead of their turn (sizing the
/// segments on many cores).
pub const PACKET_BUDGET_BYTES: u64 = 48 << 20;
/// Kept packets per message to the muxer.
const BATCH: usize = 128;

/// How a worker reads its stretch of one file.
enum Source {
    /// An MP3, indexed packet by packet: a worker starts decoding a few packets before the
    /// sample it needs ([`decode_from`]).
    Indexed(TrackIndex),
    /// Any other format, whose container states its exact length (`len` samples at `rate`;
    /// the decoder is stopped there, see [`decode_file`](crate::av::decode::decode_file)). A
    /// worker decodes it from its start exactly as the in-order path does and drops what
    /// comes before its stretch ([`decode_whole`]): no index needed, and the samples are the
    /// in-order path's. Decoding these formats costs a few percent of encoding them; what is
    /// decoded twice this way is capped ([`prepare`]). A file that can be sought exactly
    /// (`seeks`: its pre-roll in packets; FLAC, WAV, ALAC and AAC-LC in MP4 at the book's rate,
    /// see [`seek_preroll`]) is decoded from a seek to the packet holding the first sample
    /// wanted instead ([`decode_seeking`]), with the same samples: nothing is decoded twice.
    Whole {
        rate: u32,
        len: u64,
        seeks: Option<u32>,
    },
}

impl Source {
    fn rate(&self) -> u32 {
        match self {
            Source::Indexed(i) => i.rate,
            Source::Whole { rate, .. } => *rate,
        }
    }
    /// Samples at the file's own rate.
    fn total(&self) -> u64 {
        match self {
            Source::Indexed(i) => i.total(),
            Source::Whole { len, .. } => *len,
        }
    }
}

/// The book's clock and its segments, worked out before decoding.
pub(super) struct RangePlan {
    sources: Vec<Source>,
    /// `track_starts[i]`: file `i`'s first sample on the book's clock; the last entry is the
    /// total.
    track_starts: Vec<u64>,
    /// `(P, Q)`: global packets `[P, Q)`; `Q = None` for the last segment.
    segments: Vec<(u64, Option<u64>)>,
    /// Wall time of indexing and of placing the joins.
    index_time: Duration,
    joins_time: Duration,
}

impl RangePlan {
    fn total(&self) -> u64 {
        self.track_starts.last().copied().unwrap_or(0)
    }
    /// Samples decoded only to be dropped: a stretch that starts inside a file taken whole
    /// ([`Source::Whole`]) decodes that file from its start, once for its segment's lead-in
    /// and once more for the search of a quiet join near it (see [`quiet_joins`]). A book of
    /// many files wastes at most about a file per segment; a book of one long file would
    /// decode it over and over, and goes in order instead.
    fn decoded_again(&self, job: &PipelineJob<'_>) -> u64 {
        let f = job.stream.frame_samples.max(1) as u64;
        let pf = (job.stream.priming_samples.max(0) as u64).div_ceil(f);
        let wasted = |at: u64| -> u64 {
            let t = self
                .track_starts
                .partition_point(|&s| s <= at)
                .saturating_sub(1);
            match self.sources.get(t) {
                Some(Source::Whole { seeks: None, .. }) => at - self.track_starts[t],
                _ => 0,
            }
        };
        let searches = if job.segment_frames == 0 { 2 } else { 1 };
        self.segments
            .iter()
            .skip(1)
            .map(|&(p, _)| searches * wasted(p.saturating_sub(pf + RANGE_LEAD_IN_FRAMES) * f))
            .sum()
    }
    /// Each file's length on the book's clock (after resampling).
    fn lengths(&self) -> Vec<u64> {
        self.track_starts.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

/// How a ranged run ended, other than with a finished file.
pub(super) enum RangeFailure {
    /// The input does not decode as indexed: convert again in order (the muxer is spent).
    Replan(String),
    Fail(Error),
}

/// Indexes the book and plans its segments, or says why the book needs the in-order path.
pub(super) fn prepare(
    job: &PipelineJob<'_>,
    pool: &rayon::ThreadPool,
) -> std::result::Result<RangePlan, String> {
    let rate = job.target.sample_rate;
    // MP3 is indexed packet by packet; other formats are taken whole at the length their
    // container states. Without one (raw ADTS AAC) the clock is only known once decoded.
    if let Some(t) = job
        .tracks
        .iter()
        .find(|t| t.format != crate::model::InputFormat::Mp3 && t.exact_source_samples.is_none())
    {
        return Err(format!(
            "{} is {} without a stated length; its length is only known once decoded",
            t.path.display(),
            t.format.label()
        ));
    }
    let t0 = std::time::Instant::now();
    let indexes: Vec<Result<Source>> = pool.install(|| {
        job.tracks
            .par_iter()
            .map(|t| match (t.format, t.exact_source_samples) {
                (crate::model::InputFormat::Mp3, _) => index_mp3(&t.path).map(Source::Indexed),
                (format, Some(len)) => Ok(Source::Whole {
                    rate: t.source_rate,
                    len,
                    seeks: crate::av::input::open_input(
                        &t.path,
                        crate::model::InputFormats::of(&[format]),
                    )
                    .ok()
                    .and_then(|input| seek_preroll(&input, rate)),
                }),
                (_, None) => unreachable!("checked above"),
            })
            .collect()
    });
    tracing::debug!(
        files = job.tracks.len(),
        ms = t0.elapsed().as_millis() as u64,
        "indexed"
    );
    let mut out = Vec::with_capacity(indexes.len());
    let mut starts = Vec::with_capacity(indexes.len() + 1);
    starts.push(0u64);
    for (i, r) in indexes.into_iter().enumerate() {
        let idx = r.map_err(|e| format!("indexing failed: {e}"))?;
        let path = &job.tracks[i].path;
        // The file's length on the book's clock: resampled files' exactly as `decode_file`
        // resamples them.
        let len = match resampled_len(idx.rate(), rate, idx.total()) {
            Ok(Some(n)) => n,
            Ok(None) => {
                return Err(format!(
                    "{}: {} Hz to {rate} Hz is not a ratio swresample converts exactly",
                    path.display(),
                    idx.rate()
                ))
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        // A file shorter than its header announces is reported by the in-order path.
        let stats = DecodeStats {
            output_samples: len,
            source_samples: idx.total(),
            ..Default::default()
        };
        if !matches!(judge_track(job, i, &stats), Ok(None)) {
            return Err(format!("{}: shorter than its header says", path.display()));
        }
        starts.push(starts[i] + len);
        out.push(idx);
    }
    let total = *starts.last().unwrap_or(&0);
    if total == 0 {
        return Err("the book has no audio".into());
    }
    let mut plan = RangePlan {
        sources: out,
        track_starts: starts,
        segments: plan_segments(job, total),
        index_time: t0.elapsed(),
        joins_time: Duration::ZERO,
    };
    let again = plan.decoded_again(job);
    if again > total {
        return Err(format!(
            "its segments would decode {:.0} s of audio a second time to reach their starts in long files; in book order instead",
            again as f64 / rate.max(1) as f64
        ));
    }
    if job.segment_frames == 0 {
        // A length given by the caller (the splice tests) means joins on that exact grid.
        let t0 = std::time::Instant::now();
        quiet_joins(job, &mut plan, pool)?;
        plan.joins_time = t0.elapsed();
        tracing::debug!(
            joins = plan.segments.len().saturating_sub(1),
            ms = t0.elapsed().as_millis() as u64,
            "joins placed"
        );
    }
    Ok(plan)
}

/// Cuts `total` samples into segments on the frame grid.
fn plan_segments(job: &PipelineJob<'_>, total: u64) -> Vec<(u64, Option<u64>)> {
    let f = job.stream.frame_samples.max(1) as u64;
    let total_frames = total.div_ceil(f);
    let workers = job.threads.max(1) as u64;
    let len = if job.segment_frames > 0 {
        job.segment_frames
    } else {
        // The nominal size of a frame (FFmpeg's and FDK's AAC rate controls keep close to it).
        let frame_bytes =
            (job.target.bitrate_bps * f / job.target.sample_rate.max(1) as u64 / 8).max(1);
        let fit = PACKET_BUDGET_BYTES / (tokens(workers as usize) as u64 * frame_bytes);
        let max_len = fit.clamp(super::encode_segments::MIN_SEGMENT_FRAMES, RANGE_MAX_FRAMES);
        // As few segments as the length limit allows, a multiple of the workers.
        let count = total_frames.div_ceil(max_len).div_ceil(workers) * workers;
        total_frames
            .div_ceil(count)
            .max(super::encode_segments::MIN_SEGMENT_FRAMES)
    };
    let mut segments = Vec::new();
    let mut p = 0u64;
    loop {
        let q = p + len;
        // The last segment runs to the end; one that would leave less than its lead-out
        // behind takes the rest too.
        if q + LEAD_OUT_FRAMES >= total_frames {
            segments.push((p, None));
            return segments;
        }
        segments.push((p, Some(q)));
        p = q;
    }
}

/// Runs the plan: `workers` encoder threads, this thread dispatching, one muxer thread.
pub(super) fn run(
    job: &PipelineJob<'_>,
    plan: &RangePlan,
    muxer: M4bMuxer,
    chapters: &mut Option<ChapterBuilder>,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> std::result::Result<PipelineOutcome, RangeFailure> {
    let workers = job.threads.max(1);
    let failure = Failure::new();
    let replan: Mutex<Option<String>> = Mutex::new(None);
    let done_samples = AtomicU64::new(0);
    let total = plan.total();
    let span = tracing::Span::current();
    let built: Mutex<Vec<MuxChapter>> = Mutex::new(Vec::new());
    // Each segment's pauses, found by the worker that decoded it (merged before the chapters).
    let silences: Mutex<Vec<RangePauses>> = Mutex::new(Vec::new());
    // What each segment's packets decoded to in the independent decoder, and where the time went.
    let verified: Mutex<Vec<VerifiedRun>> = Mutex::new(Vec::new());
    let stages: Mutex<StageTimes> = Mutex::new(StageTimes::default());
    let t_run = Instant::now();
    tracing::debug!(
        segments = plan.segments.len(),
        workers,
        resampled = plan
            .sources
            .iter()
            .filter(|i| i.rate() != job.target.sample_rate)
            .count(),
        "multi-core encoding, each worker decoding its own range"
    );

    let result = std::thread::scope(|s| -> Result<u64> {
        let super::encode_segments::Channels {
            msg_tx,
            msg_rx,
            tok_tx,
            tok_rx,
            end_tx,
            end_rx,
        } = super::encode_segments::channels(workers);
        let (job_tx, job_rx) = bounded::<u64>(workers);
        let (failure, replan, span, done_samples, built, silences) =
            (&failure, &replan, &span, &done_samples, &built, &silences);
        let (verified, stages) = (&verified, &stages);
        let segments = plan.segments.len() as u64;
        let mux = std::thread::Builder::new()
            .name("aiom4b-mux".into())
            .spawn_scoped(s, move || {
                let _span = span.enter();
                mux_segments(muxer, msg_rx, end_rx, tok_tx, cancel, failure, Some(stages))
            })
            .map_err(|e| Error::Internal(format!("muxer thread: {e}")))?;
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (job_rx, msg_tx) = (job_rx.clone(), msg_tx.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("aiom4b-encode-{w}"))
                    .spawn_scoped(s, move || {
                        let _span = span.enter();
                        let cpu0 = super::thread_cpu_secs();
                        let mut clock = WorkerClock::default();
                        // Adds this worker's times to the run's when it ends, however it ends.
                        let _add = AddOnDrop(&mut clock, stages, cpu0);
                        let clock = &mut *_add.0;
                        // The file this worker read last stays open for its next range.
                        let mut open: Option<(usize, OpenTrack)> = None;
                        let shared = Shared {
                            tx: &msg_tx,
                            done_samples,
                            progress,
                            silences,
                            verified,
                        };
                        let mut waited = Instant::now();
                        for k in job_rx.iter() {
                            clock.handoff += waited.elapsed();
                            if cancel.is_cancelled() || failure.stopped() {
                                return;
                            }
                            let stop = || cancel.is_cancelled() || failure.stopped();
                            let r = encode_range(job, plan, k, &shared, &stop, &mut open, clock);
                            waited = Instant::now();
                            match r {
                                Ok(()) => {}
                                Err(RangeError::Mismatch(why)) => {
                                    replan
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .get_or_insert(why);
                                    failure.stop();
                                    return;
                                }
                                Err(RangeError::Other(Error::Cancelled)) => return,
                                Err(RangeError::Other(e)) => {
                                    failure.fail(e);
                                    return;
                                }
                            }
                        }
                    })
                    .map_err(|e| Error::Internal(format!("encoder thread: {e}")))?,
            );
        }
        drop((job_rx, msg_tx));
        // Dispatch in order, one token per segment in flight.
        for k in 0..segments {
            if cancel.is_cancelled() || failure.stopped() {
                break;
            }
            if tok_rx.recv().is_err() || job_tx.send(k).is_err() {
                break;
            }
        }
        drop(job_tx);
        for h in handles {
            h.join()
                .map_err(|_| Error::Internal("an encoder thread".into()))?;
        }
        if !failure.stopped() && !cancel.is_cancelled() {
            // Every segment is encoded and every packet decoded as indexed: the clock is
            // exact, and the chapters can be placed on it.
            let lengths = plan.lengths();
            let build = chapters.take().expect("the chapter builder is used once");
            let ranges = std::mem::take(&mut *silences.lock().unwrap_or_else(|p| p.into_inner()));
            let pauses = super::pauses(job, ranges);
            match build(&lengths, total, &pauses) {
                Ok(ch) => {
                    *built.lock().unwrap_or_else(|p| p.into_inner()) = ch.clone();
                    let _ = end_tx.send((segments, ch));
                }
                Err(e) => failure.fail(e),
            }
        }
        drop(end_tx);
        mux.join()
            .map_err(|_| Error::Internal("the muxer thread".into()))?
    });
    if let Some(why) = replan.lock().unwrap_or_else(|p| p.into_inner()).take() {
        if !cancel.is_cancelled() && failure.first_is_none() {
            return Err(RangeFailure::Replan(why));
        }
    }
    if let Some(first) = failure.take() {
        return Err(RangeFailure::Fail(first));
    }
    if cancel.is_cancelled() {
        return Err(RangeFailure::Fail(Error::Cancelled));
    }
    let packets = result.map_err(RangeFailure::Fail)?;
    let mut stages = stages.into_inner().unwrap_or_else(|p| p.into_inner());
    stages.index_secs = plan.index_time.as_secs_f64();
    stages.joins_secs = plan.joins_time.as_secs_f64();
    stages.encode_run_secs = t_run.elapsed().as_secs_f64();
    stages.segments = plan.segments.len() as u64;
    let verified = job
        .verify
        .then(|| verified.into_inner().unwrap_or_else(|p| p.into_inner()));
    let track_samples = plan.lengths();
    for (i, (t, &n)) in job.tracks.iter().zip(&track_samples).enumerate() {
        progress.file_decoded(i, &t.path, n);
    }
    progress.encoded(total, total);
    Ok(PipelineOutcome {
        track_samples,
        total_samples: total,
        packets,
        chapters: built.into_inner().unwrap_or_else(|p| p.into_inner()),
        joins: plan
            .segments
            .iter()
            .filter_map(|s| s.1)
            .map(|q| q * job.stream.frame_samples as u64)
            .collect(),
        damaged: Vec::new(),
        findings: Vec::new(),
        stages,
        verified,
    })
}

/// What every worker shares: the muxer's channel, progress, and where segments' pauses and
/// verification results go.
struct Shared<'a> {
    tx: &'a Sender<SegmentMsg>,
    done_samples: &'a AtomicU64,
    progress: &'a dyn ProgressSink,
    silences: &'a Mutex<Vec<RangePauses>>,
    verified: &'a Mutex<Vec<VerifiedRun>>,
}

/// A segment's kept packets on their way out: checked by the independent decoder (when
/// verifying), then sent to the muxer in batches.
struct Outbox<'a> {
    k: u64,
    total: u64,
    kept: Vec<EncodedPacket>,
    check: Option<PacketCheck>,
    shared: &'a Shared<'a>,
}

impl Outbox<'_> {
    /// Sends the kept packets once there are at least `min` (and any).
    fn send(&mut self, min: usize, clock: &mut WorkerClock) -> Result<()> {
        if self.kept.len() < min || self.kept.is_empty() {
            return Ok(());
        }
        if let Some(check) = self.check.as_mut() {
            let t = Instant::now();
            for p in &self.kept {
                check.packet(&p.data);
            }
            clock.verify += t.elapsed();
        }
        let n: u64 = self.kept.iter().map(|p| p.duration.max(0) as u64).sum();
        let done = self.shared.done_samples.fetch_add(n, Ordering::Relaxed) + n;
        let batch = std::mem::replace(&mut self.kept, Vec::with_capacity(BATCH + 8));
        let t = Instant::now();
        self.shared
            .tx
            .send(SegmentMsg::Packets(self.k, batch))
            .map_err(|_| Error::Cancelled)?;
        clock.handoff += t.elapsed();
        self.shared
            .progress
            .encoded(done.min(self.total), self.total);
        Ok(())
    }
}

/// Encodes segment `k`: decodes its input range from the files, feeds a fresh encoder, and
/// streams the kept packets to the muxer (each checked by the independent decoder first, when
/// verifying).
fn encode_range(
    job: &PipelineJob<'_>,
    plan: &RangePlan,
    k: u64,
    shared: &Shared<'_>,
    stop: &dyn Fn() -> bool,
    open: &mut Option<(usize, OpenTrack)>,
    clock: &mut WorkerClock,
) -> std::result::Result<(), RangeError> {
    let t0 = Instant::now();
    let (p, q) = plan.segments[k as usize];
    let f = job.stream.frame_samples as u64;
    let total = plan.total();
    // Frames the priming spans: packet j's input starts that many frames before frame j.
    let pf = (job.stream.priming_samples.max(0) as u64).div_ceil(f);
    let a = p.saturating_sub(pf + RANGE_LEAD_IN_FRAMES);
    let start = a * f;
    let end = match q {
        Some(q) => ((q + LEAD_OUT_FRAMES) * f).min(total),
        None => total,
    };
    let mut enc = SegmentEncoder::new(&job.encoder, a, p, q)?;
    let mut out = Outbox {
        k,
        total,
        kept: Vec::with_capacity(BATCH + 8),
        // The segment's first kept packet is global packet `p`: the muxer writes them all, in
        // order, so it is also the file's packet `p`.
        check: job
            .verify
            .then(|| PacketCheck::new(&job.stream.extradata, p)),
        shared,
    };
    clock.startup += t0.elapsed();
    // This segment's own stretch of the timeline, `[p, q)` frames: the segments tile the book,
    // and the lead-out decoded past `q` completes the last window.
    let mut silence = super::detector(job, p * f, q.map(|q| q * f));
    let mut pos = start;
    let mut any_kept = false;
    // Time spent in the sink (everything but decoding), to tell decoding apart.
    let mut in_sink = Duration::ZERO;
    let t_timeline = Instant::now();
    decode_timeline(job, plan, start, end, stop, open, &mut |planes| {
        let t_sink = Instant::now();
        if let Some(d) = silence.as_mut() {
            d.push_planar(pos, planes);
            clock.silence += t_sink.elapsed();
        }
        pos += planes[0].len() as u64;
        let t = Instant::now();
        enc.push(planes, &mut out.kept)?;
        if any_kept {
            clock.encode += t.elapsed();
        } else {
            // Until the first kept packet, the encoder works on the lead-in.
            clock.lead_in += t.elapsed();
            any_kept = !out.kept.is_empty();
        }
        let r = out.send(BATCH, clock);
        in_sink += t_sink.elapsed();
        r
    })?;
    clock.decode += t_timeline.elapsed().saturating_sub(in_sink);
    if let Some(d) = silence {
        let t = Instant::now();
        shared
            .silences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(d.finish());
        clock.silence += t.elapsed();
    }
    let t = Instant::now();
    enc.finish(&mut out.kept)?;
    clock.encode += t.elapsed();
    out.send(1, clock)?;
    if let Some(check) = out.check.take() {
        shared
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(check.finish());
    }
    shared
        .tx
        .send(SegmentMsg::Done(k))
        .map_err(|_| RangeError::Other(Error::Cancelled))?;
    Ok(())
}

/// Decodes the book's timeline `[start, end)` (output samples) from the files, as indexed, into
/// `sink`. Every packet past the pre-roll is checked against the index.
fn decode_timeline(
    job: &PipelineJob<'_>,
    plan: &RangePlan,
    start: u64,
    end: u64,
    stop: &dyn Fn() -> bool,
    open: &mut Option<(usize, OpenTrack)>,
    sink: &mut dyn FnMut(&[&[f32]]) -> Result<()>,
) -> std::result::Result<(), RangeError> {
    let (sources, track_starts) = (&plan.sources, &plan.track_starts);
    let (channels, rate) = (job.target.channels.max(1) as usize, job.target.sample_rate);
    let mut pos = start;
    let mut track = track_starts
        .partition_point(|&s| s <= start)
        .saturating_sub(1);
    while pos < end {
        if track >= sources.len() {
            return Err(RangeError::Mismatch(format!(
                "the book ran out of input at sample {pos} of {end}"
            )));
        }
        let path = &job.tracks[track].path;
        let from = pos - track_starts[track];
        let mut take = |planes: &[&[f32]]| {
            let want = (end - pos).min(planes[0].len() as u64) as usize;
            let cut: Vec<&[f32]> = planes.iter().map(|p| &p[..want]).collect();
            sink(&cut)?;
            pos += want as u64;
            Ok(pos < end)
        };
        let len = track_starts[track + 1] - track_starts[track];
        match &sources[track] {
            Source::Indexed(index) => {
                // The file this worker read last, if it is this one, else this one opened.
                if open.as_ref().is_none_or(|(t, _)| *t != track) {
                    let file =
                        OpenTrack::open(path).map_err(|e| RangeError::Mismatch(e.to_string()))?;
                    *open = Some((track, file));
                }
                let file = &mut open.as_mut().expect("opened above").1;
                if index.rate == rate {
                    decode_from(file, index, from, channels, stop, &mut take)?;
                } else {
                    decode_resampled_from(file, index, rate, len, from, channels, stop, &mut take)?;
                }
            }
            Source::Whole { seeks, .. } => {
                let format = job.tracks[track].format;
                let how = (rate, channels, *seeks);
                decode_whole(path, format, how, from, len, stop, &mut take)?;
            }
        }
        if pos < end {
            // The file ended: it must have ended exactly where the index said.
            if pos != track_starts[track + 1] {
                return Err(RangeError::Mismatch(format!(
                    "{} ended at sample {pos}, indexed to end at {}",
                    path.display(),
                    track_starts[track + 1]
                )));
            }
            track += 1;
        }
    }
    Ok(())
}

/// Samples per chunk a [`Source::Whole`] file is decoded in (kept small: nothing waits in it).
const WHOLE_CHUNK_SAMPLES: usize = 4096;

/// Stretches starting this early in a file are decoded from its start, not sought.
const SEEK_FROM_SAMPLES: u64 = 8192;

/// Decodes `path` (a [`Source::Whole`] file of `len` samples on the book's clock) from its
/// sample `from` and hands the samples to `take` until it returns `false`: from a seek when
/// `seeks` ([`decode_seeking`]), else from its start as the in-order path does, dropping its
/// first `from` samples. The file must decode without damage, and when decoded to its end, to
/// exactly `len` samples; otherwise the book goes in order, which judges it.
fn decode_whole(
    path: &std::path::Path,
    format: crate::model::InputFormat,
    (rate, channels, seeks): (u32, usize, Option<u32>),
    from: u64,
    len: u64,
    stop: &dyn Fn() -> bool,
    take: &mut dyn FnMut(&[&[f32]]) -> Result<bool>,
) -> std::result::Result<(), RangeError> {
    let open = || {
        crate::av::input::open_input(path, crate::model::InputFormats::of(&[format]))
            .map_err(|e| RangeError::Mismatch(e.to_string()))
    };
    // Near the start (within the pre-roll and the priming) a seek saves nothing.
    if let Some(preroll) = seeks.filter(|_| from >= SEEK_FROM_SAMPLES) {
        if let Some(got) = decode_seeking(open()?, from, preroll, channels, stop, take)? {
            if got.damaged > 0 {
                return Err(RangeError::Mismatch(format!(
                    "{}: {} damaged packet(s) ({})",
                    path.display(),
                    got.damaged,
                    got.first_error.unwrap_or_default()
                )));
            }
            if got.whole && got.end != len {
                return Err(RangeError::Mismatch(format!(
                    "{} decoded to {} samples, its container says {len}",
                    path.display(),
                    got.end
                )));
            }
            return Ok(());
        }
        tracing::debug!(path = %path.display(), from, "no exact seek; decoding the file from its start");
    }
    let input = open()?;
    let mut at = 0u64;
    let (stats, whole) = decode_file_while(
        input,
        rate,
        channels,
        WHOLE_CHUNK_SAMPLES,
        stop,
        &mut |chunk| {
            let lo = at;
            at += chunk.len() as u64;
            if at <= from {
                return Ok(true);
            }
            let skip = (from.saturating_sub(lo)) as usize;
            let planes: Vec<&[f32]> = chunk.planes.iter().map(|p| &p[skip..]).collect();
            take(&planes)
        },
    )?;
    if stats.damaged_frames > 0 {
        return Err(RangeError::Mismatch(format!(
            "{}: {} damaged frame(s) ({})",
            path.display(),
            stats.damaged_frames,
            stats.first_error.unwrap_or_default()
        )));
    }
    if whole && stats.output_samples != len {
        return Err(RangeError::Mismatch(format!(
            "{} decoded to {} samples, its container says {len}",
            path.display(),
            stats.output_samples
        )));
    }
    Ok(())
}

/// Frames on each side of a planned join searched for a quieter place (≈ 6 s at 44.1 kHz).
pub const JOIN_SEARCH_FRAMES: u64 = 256;

/// Moves every join of `segments` to the quietest frame within [`JOIN_SEARCH_FRAMES`] of it.
///
/// A join is where one encoder's last packet overlaps the next encoder's first, so the block
/// there carries two encoders' quantization choices; in a speech pause nothing of that can be
/// heard (nor measured). Audiobooks pause every few seconds, so a window of ±6 s nearly always
/// holds one. Decoding the windows costs ~10 ms of CPU per join. The two frames whose
/// samples the join's decoded block depends on (`Q − 1` and `Q`) are scored by their energy.
fn quiet_joins(
    job: &PipelineJob<'_>,
    plan: &mut RangePlan,
    pool: &rayon::ThreadPool,
) -> std::result::Result<(), String> {
    let f = job.stream.frame_samples.max(1) as u64;
    let total = plan.total();
    let joins: Vec<u64> = plan.segments.iter().filter_map(|s| s.1).collect();
    let moved: Vec<std::result::Result<u64, RangeError>> = pool.install(|| {
        joins
            .par_iter()
            .enumerate()
            .map(|(i, &q)| {
                // Keep every segment at least half its planned length.
                let prev = if i == 0 { 0 } else { joins[i - 1] };
                let next = joins.get(i + 1).copied().unwrap_or(total.div_ceil(f));
                // A third of each neighbouring segment at most: moved joins never cross.
                let reach = JOIN_SEARCH_FRAMES
                    .min((q - prev) / 3)
                    .min(next.saturating_sub(q) / 3);
                let total_frames = total.div_ceil(f);
                let lo = (q - reach).max(2);
                let hi = q + reach;
                // Frames `first ..` are decoded; energy[i] is frame `first + i`'s.
                let first = lo - 2;
                let (start, end) = (first * f, ((hi + 1) * f).min(total));
                let mut energy: Vec<f64> = Vec::with_capacity((hi - first + 2) as usize);
                let mut acc = 0.0f64;
                let mut in_frame = 0u64;
                decode_timeline(job, plan, start, end, &|| false, &mut None, &mut |p| {
                    for k in 0..p[0].len() {
                        acc += p.iter().map(|c| (c[k] as f64) * (c[k] as f64)).sum::<f64>();
                        in_frame += 1;
                        if in_frame == f {
                            energy.push(acc);
                            acc = 0.0;
                            in_frame = 0;
                        }
                    }
                    Ok(())
                })?;
                // A join at frame c: packet c−1 (the old encoder's last) and packet c (the new
                // one's first) overlap on frame c−1; score it with its neighbours.
                let score = |c: u64| {
                    let i = (c - first) as usize;
                    energy[i - 2] + energy[i - 1] + energy[i]
                };
                let best = (lo..=hi)
                    .filter(|&c| {
                        ((c - first) as usize) < energy.len() && c + LEAD_OUT_FRAMES < total_frames
                    })
                    .min_by(|&x, &y| {
                        // Ties (digital silence) go to the planned place.
                        score(x)
                            .total_cmp(&score(y))
                            .then(x.abs_diff(q).cmp(&y.abs_diff(q)))
                    })
                    .unwrap_or(q);
                Ok(best)
            })
            .collect()
    });
    let mut at = 0;
    for (k, seg) in plan.segments.iter_mut().enumerate() {
        if k > 0 {
            seg.0 = at;
        }
        if seg.1.is_some() {
            let q = match &moved[k] {
                Ok(q) => *q,
                Err(RangeError::Mismatch(why)) => return Err(why.clone()),
                Err(RangeError::Other(e)) => return Err(e.to_string()),
            };
            seg.1 = Some(q);
            at = q;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{InputFormat, InputFormats};
    use aiom4b_testkit::audio_writer::{write_audio, AudioKind, AudioSpec};
    use aiom4b_testkit::fixtures::Signal;
    use std::path::Path;

    /// The in-order path's samples of `path`: `decode_file` from start to end.
    fn in_order(path: &Path, format: InputFormat, rate: u32, channels: usize) -> Vec<Vec<f32>> {
        let input = crate::av::input::open_input(path, InputFormats::of(&[format])).unwrap();
        let mut out = vec![Vec::new(); channels];
        crate::av::decode::decode_file(input, rate, channels, 1000, &|| false, &mut |c| {
            for (o, p) in out.iter_mut().zip(&c.planes) {
                o.extend_from_slice(p);
            }
            Ok(())
        })
        .unwrap();
        out
    }

    /// `decode_whole` from `from`, taking at most `want` samples.
    fn stretch(
        path: &Path,
        format: InputFormat,
        (rate, channels, seeks): (u32, usize, Option<u32>),
        from: u64,
        len: u64,
        want: usize,
    ) -> std::result::Result<Vec<Vec<f32>>, RangeError> {
        let mut out = vec![Vec::new(); channels];
        decode_whole(
            path,
            format,
            (rate, channels, seeks),
            from,
            len,
            &|| false,
            &mut |planes| {
                let n = (want - out[0].len()).min(planes[0].len());
                for (o, p) in out.iter_mut().zip(planes) {
                    o.extend_from_slice(&p[..n]);
                }
                Ok(out[0].len() < want)
            },
        )?;
        Ok(out)
    }

    /// A file that is not MP3 gives a worker, from any sample and for any stretch, exactly the
    /// samples the in-order path decodes there (resampled too; FLAC, WAV, ALAC and AAC-LC at
    /// the book's rate from a seek), and a file that does not decode to the length its
    /// container states is sent back to the in-order path.
    #[test]
    fn a_whole_file_decodes_from_any_sample_as_in_order() {
        crate::av::init();
        let tmp = tempfile::tempdir().unwrap();
        // (kind, its rate, the book's rate, channels of the file, of the book, its pre-roll
        // when sought)
        let cases = [
            (
                AudioKind::Flac,
                InputFormat::Flac,
                44_100,
                44_100,
                2,
                2,
                Some(0),
            ),
            (
                AudioKind::Flac,
                InputFormat::Flac,
                22_050,
                44_100,
                1,
                1,
                None,
            ),
            (
                AudioKind::Wav,
                InputFormat::Wav,
                44_100,
                44_100,
                1,
                2,
                Some(0),
            ),
            (
                AudioKind::Opus,
                InputFormat::Opus,
                48_000,
                44_100,
                2,
                1,
                None,
            ),
            (
                AudioKind::Vorbis,
                InputFormat::Vorbis,
                22_050,
                44_100,
                1,
                2,
                None,
            ),
            (
                AudioKind::M4aAac,
                InputFormat::M4a,
                44_100,
                44_100,
                2,
                2,
                Some(2),
            ),
            (
                AudioKind::M4aAac,
                InputFormat::M4a,
                22_050,
                44_100,
                1,
                1,
                None,
            ),
            (
                AudioKind::M4aAlac,
                InputFormat::M4a,
                44_100,
                44_100,
                2,
                2,
                Some(0),
            ),
        ];
        for (kind, format, rate, out_rate, ch, out_ch, preroll) in cases {
            let path = tmp.path().join(format!("part-{rate}.{}", kind.extension()));
            let mut spec = AudioSpec::sine(kind, rate, ch, u64::from(rate) * 3 + 777);
            spec.signal = Signal::SpeechLike { seed: 3 };
            write_audio(&path, &spec).unwrap();
            let input = crate::av::input::open_input(&path, InputFormats::of(&[format]));
            let seeks = crate::av::decode::seek_preroll(&input.unwrap(), out_rate);
            assert_eq!(seeks, preroll, "{kind:?} at {rate} Hz");
            let whole = in_order(&path, format, out_rate, out_ch);
            let len = whole[0].len() as u64;
            assert!(len > u64::from(out_rate) * 3, "{kind:?}: {len}");
            for from in [0, 1, 4097, 8191, 8192, 8193, 10_000, len / 2 + 3, len - 1] {
                for want in [1usize, 1000, 50_000, usize::MAX / 2] {
                    let got = stretch(&path, format, (out_rate, out_ch, seeks), from, len, want)
                        .unwrap_or_else(|e| {
                            panic!(
                                "{kind:?} from {from}: {}",
                                match e {
                                    RangeError::Mismatch(w) => w,
                                    RangeError::Other(e) => e.to_string(),
                                }
                            )
                        });
                    let to = (from as usize).saturating_add(want).min(len as usize);
                    for c in 0..out_ch {
                        assert!(
                            got[c] == whole[c][from as usize..to],
                            "{kind:?}: channel {c} from {from}, {want} samples"
                        );
                    }
                }
            }
            // Decoded to its end, the file must be as long as the plan says.
            for from in [0, len / 3] {
                let off = stretch(
                    &path,
                    format,
                    (out_rate, out_ch, seeks),
                    from,
                    len + 1,
                    usize::MAX / 2,
                );
                assert!(
                    matches!(off, Err(RangeError::Mismatch(ref why)) if why.contains("its container says")),
                    "{kind:?}: a length off by one is a re-plan"
                );
            }
            if let Some(preroll) = seeks {
                // The seek itself was used, not the decode from the start.
                let input = crate::av::input::open_input(&path, InputFormats::of(&[format]));
                let got = crate::av::decode::decode_seeking(
                    input.unwrap(),
                    len / 2 + 3,
                    preroll,
                    out_ch,
                    &|| false,
                    &mut |_| Ok(true),
                )
                .unwrap()
                .unwrap_or_else(|| panic!("{kind:?}: no exact seek"));
                assert!(got.whole && got.end == len && got.damaged == 0, "{got:?}");
            }
        }
    }

    /// A FLAC damaged in the middle is sent back to the in-order path (which judges damage)
    /// whether a worker seeks past the damage or decodes through it.
    #[test]
    fn a_damaged_flac_is_sent_back_in_order() {
        crate::av::init();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("part.flac");
        let mut spec = AudioSpec::sine(AudioKind::Flac, 44_100, 2, 44_100 * 4);
        spec.signal = Signal::SpeechLike { seed: 5 };
        let len = write_audio(&path, &spec).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 64] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, bytes).unwrap();
        for seeks in [Some(0), None] {
            let r = stretch(
                &path,
                InputFormat::Flac,
                (44_100, 2, seeks),
                1000,
                len,
                usize::MAX / 2,
            );
            assert!(
                matches!(r, Err(RangeError::Mismatch(_))),
                "seeks {seeks:?}: damage must be a re-plan"
            );
        }
    }
}
