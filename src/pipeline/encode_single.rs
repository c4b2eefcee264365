//! The single-encoder stage: one continuous AAC encoder on one thread. It is the reference
//! path (`--jobs 1`) and the baseline the segmented encoder is measured against.
use super::{
    thread_cpu_secs, track_done, AddOnDrop, ChapterBuilder, DecodeMsg, Failure, MuxMsg,
    PipelineJob, PipelineOutcome, WorkerClock,
};
use crate::av::encode::{open_encoder, EncodedPacket};
use crate::convert::StageTimes;
use crate::error::{Error, Result};
use crate::progress::{CancelToken, ProgressSink};
use crossbeam_channel::{Receiver, Sender};
use std::sync::Mutex;
use std::time::Instant;

/// Packets per batch sent to the muxer (~1.2 s of audio): amortizes channel overhead.
const BATCH_PACKETS: usize = 50;

#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    job: &PipelineJob<'_>,
    rxs: Vec<Receiver<DecodeMsg>>,
    mux_tx: Sender<MuxMsg>,
    chapters: ChapterBuilder,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
    failure: &Failure,
    stages: &Mutex<StageTimes>,
) -> Result<PipelineOutcome> {
    let cpu0 = thread_cpu_secs();
    let mut clock = WorkerClock::default();
    let add = AddOnDrop(&mut clock, stages, cpu0);
    let r = run_inner(
        job, rxs, &mux_tx, chapters, progress, cancel, failure, add.0,
    );
    drop(add);
    stages.lock().unwrap_or_else(|p| p.into_inner()).segments = 1;
    match r {
        Ok(o) => Ok(o),
        Err(Error::Cancelled) => Err(Error::Cancelled),
        Err(e) => {
            failure.fail(e);
            Err(Error::Cancelled)
        }
    }
}

/// The encoder's work; `clock` gets its time: encoding (with opening the encoder and its
/// flush), pauses, and waiting for PCM or to hand packets on.
#[allow(clippy::too_many_arguments)]
fn run_inner(
    job: &PipelineJob<'_>,
    rxs: Vec<Receiver<DecodeMsg>>,
    mux_tx: &Sender<MuxMsg>,
    chapters: ChapterBuilder,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
    failure: &Failure,
    times: &mut WorkerClock,
) -> Result<PipelineOutcome> {
    let channels = job.target.channels as usize;
    let t = Instant::now();
    let mut enc = open_encoder(&job.encoder)?;
    times.startup += t.elapsed();
    let frame = enc.params().frame_samples;
    let mut fifo = Fifo::new(channels);
    let mut batch: Vec<EncodedPacket> = Vec::with_capacity(BATCH_PACKETS + 4);
    let mut outcome = PipelineOutcome::default();
    let mut clock = 0u64; // output samples received, the one clock
    let mut encoded = 0u64;
    let mut total_estimate = job.estimated_total;
    let mut silence = super::detector(job, 0, None);
    let send = |batch: &mut Vec<EncodedPacket>, times: &mut WorkerClock| -> Result<()> {
        let full = std::mem::replace(batch, Vec::with_capacity(BATCH_PACKETS + 4));
        let t = Instant::now();
        let r = mux_tx
            .send(MuxMsg::Packets(full))
            .map_err(|_| Error::Cancelled);
        times.handoff += t.elapsed();
        r
    };

    for (i, rx) in rxs.iter().enumerate() {
        let start = clock;
        loop {
            if cancel.is_cancelled() || failure.stopped() {
                return Err(Error::Cancelled);
            }
            let t = Instant::now();
            let msg = rx.recv().map_err(|_| Error::Cancelled)?;
            times.handoff += t.elapsed();
            match msg {
                DecodeMsg::Pcm(chunk) => {
                    if let Some(d) = silence.as_mut() {
                        let t = Instant::now();
                        let planes: Vec<&[f32]> = chunk.planes.iter().map(Vec::as_slice).collect();
                        d.push_planar(clock, &planes);
                        times.silence += t.elapsed();
                    }
                    clock += chunk.len() as u64;
                    fifo.push(&chunk.planes);
                    while fifo.len() >= frame {
                        let t = Instant::now();
                        enc.encode(&fifo.front(frame), &mut batch)?;
                        times.encode += t.elapsed();
                        fifo.consume(frame);
                        encoded += frame as u64;
                        if batch.len() >= BATCH_PACKETS {
                            send(&mut batch, times)?;
                            progress.encoded(encoded, total_estimate.max(clock));
                        }
                    }
                }
                DecodeMsg::End(result) => {
                    track_done(job, i, *result, clock - start, &mut outcome, progress)?;
                    break;
                }
            }
        }
    }
    total_estimate = clock;
    // The last, partial frame: the encoder accepts a short final frame and gives its packet the
    // true duration, so the file ends exactly at the last input sample.
    let t = Instant::now();
    if !fifo.is_empty() {
        let n = fifo.len();
        enc.encode(&fifo.front(n), &mut batch)?;
        fifo.consume(n);
        encoded += n as u64;
    }
    enc.finish(&mut batch)?;
    times.encode += t.elapsed();
    send(&mut batch, times)?;
    progress.encoded(encoded, total_estimate);
    outcome.total_samples = clock;
    let pauses = super::pauses(job, silence.map(|d| d.finish()).into_iter().collect());
    let ch = chapters(&outcome.track_samples, clock, &pauses)?;
    outcome.chapters = ch.clone();
    mux_tx
        .send(MuxMsg::Finish(ch))
        .map_err(|_| Error::Cancelled)?;
    Ok(outcome)
}

/// A planar sample FIFO with a read offset (compacted now and then, never per frame).
pub(crate) struct Fifo {
    planes: Vec<Vec<f32>>,
    pos: usize,
}

impl Fifo {
    pub(crate) fn new(channels: usize) -> Self {
        Fifo {
            planes: vec![Vec::new(); channels],
            pos: 0,
        }
    }
    pub(crate) fn len(&self) -> usize {
        self.planes[0].len() - self.pos
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub(crate) fn push(&mut self, planes: &[Vec<f32>]) {
        if self.pos > 1 << 16 {
            for p in self.planes.iter_mut() {
                p.drain(..self.pos);
            }
            self.pos = 0;
        }
        for (d, s) in self.planes.iter_mut().zip(planes) {
            d.extend_from_slice(s);
        }
    }
    pub(crate) fn front(&self, n: usize) -> Vec<&[f32]> {
        self.planes
            .iter()
            .map(|p| &p[self.pos..self.pos + n])
            .collect()
    }
    pub(crate) fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}
