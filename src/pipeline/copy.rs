//! Lossless copy: a book whose parts are all AAC-LC in MP4 at one rate and channel count gets
//! its parts' AAC packets copied into the M4B, not re-encoded. Only a short window around each
//! join between two parts is decoded and encoded again.
//!
//! **Why there are windows at all.** Every part carries its encoder's priming (1024 samples
//! from FFmpeg, 2112 from Apple's and FDK's encoders) and padding to a whole frame. Copying
//! packets back to back would play each part's priming and padding as a gap of up to ~70 ms
//! (and a click), and every later chapter would start that much late: the drift users see
//! from copying tools. So the end of part k-1 and the start of part k are decoded, laid on the
//! book's timeline, and the few frames around the join are encoded by a fresh encoder that
//! was first fed [`LEAD_IN_FRAMES`] of the real audio before them (the same splice the
//! multi-core encoder uses between its segments; its quality is measured the same way).
//!
//! **The one thing that is not exact, and why it cannot be.** One AAC stream decodes in
//! frames of 1024 samples on one grid. A copied packet keeps its place on its own part's grid,
//! so part k's audio can only start where its packets land on the book's grid: at a position
//! congruent to `P_k - E` modulo 1024 (`P_k` its priming, `E` the book's, which is part 1's).
//! Its exact position, the sum of the earlier parts' exact lengths, is in general not such a
//! position. So each part is placed at the grid position nearest to its exact one, at most 512
//! samples (11.6 ms at 44.1 kHz) away, never accumulating from part to part. Between two
//! parts the window then holds up to 1023 samples of silence more, or overlaps the two parts'
//! edges by that much (mixed, so no audio is dropped). Chapters start where each part's audio
//! really starts, so they are exact on the file written; the book's length differs from the
//! sum of the parts' lengths by the last part's offset (at most 512 samples). An edit list per
//! join could hide the difference for players that honour multi-entry edit lists, which many
//! do not; the offsets are reported instead (`--audio encode` gives the exact sum).
use super::encode_segments::{encode_segment, SegmentJob, LEAD_IN_FRAMES, LEAD_OUT_FRAMES};
use super::{ChapterBuilder, Failure, MuxMsg, PipelineOutcome};
use crate::av::encode::{EncodedPacket, StreamParams, FRAME_SAMPLES};
use crate::av::input::open_input;
use crate::av::mux::M4bMuxer;
use crate::error::{Error, Result};
use crate::model::{Book, InputFormat, InputFormats, TargetFormat};
use crate::options::{AacProfile, AudioMode, ConvertOptions, EncoderChoice, EncoderSettings};
use crate::progress::{CancelToken, ProgressSink};
use crossbeam_channel::bounded;
use ffmpeg_next as ff;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

const F: u64 = FRAME_SAMPLES as u64;

/// Shortest part copied: the window before it needs the lead-in from the part before, and the
/// windows at its two ends must not meet (≈ 3.3 s at 44.1 kHz).
pub const MIN_PART_FRAMES: u64 = LEAD_IN_FRAMES + 16;

/// What the conversion does with the audio, and why.
#[derive(Debug, Clone)]
pub enum AudioChoice {
    Copy(CopyPlan),
    Encode(String),
}

/// One part as copied.
#[derive(Debug, Clone)]
pub struct CopyPart {
    pub path: PathBuf,
    /// The part's priming: its first packet's decoded samples before its audio.
    pub priming: u64,
    /// Its exact length (the container's).
    pub length: u64,
    /// Where its first sample lands on the book's timeline.
    pub start: u64,
    /// Its first packet's frame on the book's grid (`(E + start - priming) / 1024`).
    pub first_frame: u64,
}

/// A copy that was found possible: the parts, placed, and the stream they make.
#[derive(Debug, Clone)]
pub struct CopyPlan {
    pub parts: Vec<CopyPart>,
    /// The output stream: the first part's AudioSpecificConfig and priming.
    pub params: StreamParams,
    /// The book's length as written.
    pub total: u64,
    /// What the report says.
    pub why: String,
}

impl CopyPlan {
    /// The encoder of the join windows: the native AAC-LC encoder at the parts' format and
    /// bitrate.
    fn window_settings(&self, coder: crate::options::AacCoder) -> EncoderSettings {
        let ch = self.params.channels.max(1) as u64;
        EncoderSettings {
            target: TargetFormat {
                sample_rate: self.params.sample_rate,
                channels: self.params.channels,
                bitrate_bps: self.params.bitrate_bps.clamp(8_000 * ch, 320_000),
            },
            encoder: EncoderChoice::Native,
            coder,
            profile: AacProfile::Lc,
        }
    }
}

/// What one part's container says.
struct PartFacts {
    priming: u64,
    length: u64,
    rate: u32,
    channels: u16,
    profile: i32,
    bitrate: u64,
    extradata: Vec<u8>,
}

/// FFmpeg's profile number of AAC-LC (`AV_PROFILE_AAC_LOW`).
const PROFILE_AAC_LOW: i32 = 1;

fn part_facts(path: &Path) -> Result<PartFacts> {
    let mut input = open_input(path, InputFormats::of(&[InputFormat::M4a]))?;
    let length = input.length.ok_or_else(|| Error::NotAudio {
        path: path.to_path_buf(),
        reason: "its MP4 states no length".into(),
    })?;
    let index = input.audio_index;
    let st = input
        .ctx
        .stream(index)
        .ok_or_else(|| Error::Internal("no stream".into()))?;
    let par = st.parameters();
    // SAFETY: plain field reads of valid codec parameters; the extradata buffer is owned by
    // them and copied before they go away.
    let (rate, channels, profile, bitrate, extradata) = unsafe {
        let p = par.as_ptr();
        let extra = if (*p).extradata.is_null() || (*p).extradata_size <= 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts((*p).extradata, (*p).extradata_size as usize).to_vec()
        };
        (
            (*p).sample_rate.max(0) as u32,
            (*p).ch_layout.nb_channels.max(0) as u16,
            (*p).profile,
            (*p).bit_rate.max(0) as u64,
            extra,
        )
    };
    let id = par.id();
    if id != ff::codec::Id::AAC {
        return Err(Error::NotAudio {
            path: path.to_path_buf(),
            reason: format!("its audio is {id:?}, not AAC"),
        });
    }
    // The first packet's timestamp is minus the priming (FFmpeg applies the edit list to the
    // timestamps and keeps the priming packets, marked to be discarded).
    let mut priming = None;
    for (s, p) in input.ctx.packets() {
        if s.index() == index {
            priming = Some((-p.pts().unwrap_or(0)).max(0) as u64);
            break;
        }
    }
    let priming = priming.ok_or_else(|| Error::NotAudio {
        path: path.to_path_buf(),
        reason: "it has no audio packets".into(),
    })?;
    Ok(PartFacts {
        priming,
        length,
        rate,
        channels,
        profile,
        bitrate,
        extradata,
    })
}

/// Decides whether `book` is copied or encoded under `opts`. `--audio copy` on a book that
/// cannot be copied is an error that says why; `auto` encodes and says why.
pub fn decide(book: &Book, opts: &ConvertOptions) -> Result<AudioChoice> {
    let verdict = copy_plan(book, opts)?;
    match (opts.audio, verdict) {
        (AudioMode::Copy, Err(why)) => Err(Error::Options(format!(
            "--audio copy is not possible: {why}; use --audio auto or encode"
        ))),
        (_, Err(why)) => Ok(AudioChoice::Encode(why)),
        (_, Ok(plan)) => Ok(AudioChoice::Copy(plan)),
    }
}

/// The copy plan, or why there is none (`Ok(Err(reason))`); `Err` for files that fail to open.
fn copy_plan(book: &Book, opts: &ConvertOptions) -> Result<std::result::Result<CopyPlan, String>> {
    if opts.audio == AudioMode::Encode {
        return Ok(Err("encoding was asked for".into()));
    }
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    for t in &book.tracks {
        if t.info.format != InputFormat::M4a || t.info.codec != "aac" {
            return Ok(Err(format!(
                "{} is {}, and only AAC in MP4 is copied",
                name(&t.info.path),
                t.info.format.label()
            )));
        }
    }
    if opts.profile != AacProfile::Lc {
        return Ok(Err(format!(
            "{:?} was asked for and the parts are AAC-LC",
            opts.profile
        )));
    }
    if opts.needs_pauses() {
        return Ok(Err(
            "finding pauses (silence chapters, snapping) needs the decoded audio".into(),
        ));
    }
    let facts: Vec<Result<PartFacts>> = book
        .tracks
        .par_iter()
        .map(|t| part_facts(&t.info.path))
        .collect();
    let mut parts = Vec::with_capacity(facts.len());
    for f in facts {
        parts.push(f?);
    }
    let first = &parts[0];
    for (t, p) in book.tracks.iter().zip(&parts) {
        let n = name(&t.info.path);
        if p.profile != PROFILE_AAC_LOW {
            return Ok(Err(format!(
                "{n} is not AAC-LC (HE-AAC parts are re-encoded)"
            )));
        }
        if (p.rate, p.channels) != (first.rate, first.channels) {
            return Ok(Err(format!(
                "{n} is {} Hz {} ch and {} is {} Hz {} ch",
                p.rate,
                p.channels,
                name(&book.tracks[0].info.path),
                first.rate,
                first.channels
            )));
        }
        if p.length < MIN_PART_FRAMES * F {
            return Ok(Err(format!(
                "{n} is shorter than {:.1} s, too short to join without re-encoding",
                (MIN_PART_FRAMES * F) as f64 / p.rate.max(1) as f64
            )));
        }
    }
    if (book.target.sample_rate, book.target.channels) != (first.rate, first.channels) {
        return Ok(Err(format!(
            "the output is {} Hz {} ch and the parts are {} Hz {} ch",
            book.target.sample_rate, book.target.channels, first.rate, first.channels
        )));
    }
    // The book's priming is the first part's; every part lands on the grid nearest its exact
    // place (see the module's page).
    let e = first.priming;
    let mut placed = Vec::with_capacity(parts.len());
    let mut exact = 0u64;
    for (t, p) in book.tracks.iter().zip(&parts) {
        let r = (p.priming as i64 - e as i64 - exact as i64).rem_euclid(F as i64) as u64;
        let start = if r <= F / 2 {
            exact + r
        } else {
            (exact + r).saturating_sub(F)
        };
        let first_frame = (e + start)
            .checked_sub(p.priming)
            .filter(|v| v % F == 0)
            .map(|v| v / F)
            .ok_or_else(|| Error::Internal("copy: a part is off the frame grid".into()))?;
        placed.push(CopyPart {
            path: t.info.path.clone(),
            priming: p.priming,
            length: p.length,
            start,
            first_frame,
        });
        exact += p.length;
    }
    let last = placed.last().expect("a book has tracks");
    let total = last.start + last.length;
    let bitrate = if first.bitrate > 0 {
        first.bitrate
    } else {
        book.tracks[0].info.bitrate_bps
    };
    let params = StreamParams {
        sample_rate: first.rate,
        channels: first.channels,
        bitrate_bps: bitrate,
        frame_samples: FRAME_SAMPLES,
        priming_samples: e as i64,
        extradata: first.extradata.clone(),
        media_timescale: first.rate,
    };
    let offset = total as i64 - exact as i64;
    let why = if parts.len() == 1 {
        "one AAC-LC part: its packets are copied".to_string()
    } else {
        format!(
            "every part is AAC-LC at {} Hz {} ch: packets copied, the {} join(s) re-encoded over a few frames each; the book is {:+} samples against the parts' sum",
            first.rate,
            first.channels,
            parts.len() - 1,
            offset
        )
    };
    Ok(Ok(CopyPlan {
        parts: placed,
        params,
        total,
        why,
    }))
}

/// Where a part's packets go: copied `[copy_from, copy_to)` (part-local packet indices), and
/// the packets kept for the windows at its start and end.
struct PartSpan {
    copy_from: u64,
    copy_to: u64,
    /// Packets from here on are kept for the window after this part.
    tail_from: u64,
    /// Packets before this are kept for the window before this part.
    head_to: u64,
}

/// Frames either side of a join's window that may be re-encoded too, so the hand-over from
/// the copied packets to the re-encoded ones (and back) happens where it decodes best.
///
/// A frame at the hand-over decodes from one packet of each encoder, overlapped: its MDCT
/// aliasing only cancels as far as the two encoded the same signal with matching windows.
/// Where the part's encoder switched to short windows (a transient) and the window's encoder
/// did not, that frame is audibly worse (measured: 11.5 dB SNR against 33 dB one frame
/// earlier). So the window is encoded `SLACK_FRAMES` wider on both sides, every possible
/// hand-over is decoded, and the one with the least error against the book's samples is kept
/// (counting the re-encoded frames it adds).
const SLACK_FRAMES: u64 = 8;

/// The join window between parts `k-1` and `k`: book frames `[w0, w1)` at least are re-encoded
/// (see [`SLACK_FRAMES`]) by an encoder first fed `lead` frames before them.
struct Window {
    w0: u64,
    w1: u64,
    lead: u64,
}

fn spans(plan: &CopyPlan) -> (Vec<PartSpan>, Vec<Window>) {
    let n = plan.parts.len();
    let e = plan.params.priming_samples as u64;
    let mut spans = Vec::with_capacity(n);
    let mut windows = Vec::with_capacity(n.saturating_sub(1));
    for (k, p) in plan.parts.iter().enumerate() {
        let end = p.priming + p.length;
        let copy_from = if k == 0 { 0 } else { p.priming.div_ceil(F) + 1 };
        let copy_to = if k + 1 == n {
            end.div_ceil(F)
        } else {
            end / F - 1
        };
        spans.push(PartSpan {
            copy_from,
            copy_to,
            tail_from: u64::MAX,
            head_to: 0,
        });
    }
    for k in 1..n {
        let (a, b) = (&plan.parts[k - 1], &plan.parts[k]);
        let w0 = a.first_frame + spans[k - 1].copy_to;
        let w1 = b.first_frame + spans[k].copy_from;
        let lead = LEAD_IN_FRAMES.min(w0 - SLACK_FRAMES - 1);
        // PCM from book sample q0 (the encoder's first input sample) to q1.
        let q0 = ((w0 - SLACK_FRAMES - lead) * F).saturating_sub(e);
        let q1 = (w1 + SLACK_FRAMES + LEAD_OUT_FRAMES) * F + F - e;
        // Part k-1 from its sample q0 - start (raw + priming), with two packets to settle
        // the decoder.
        let raw_lo = (q0.saturating_sub(a.start)) + a.priming;
        spans[k - 1].tail_from = (raw_lo / F).saturating_sub(2);
        // Part k up to sample q1 - start.
        let raw_hi = (q1 - b.start) + b.priming;
        spans[k].head_to = raw_hi.div_ceil(F) + 1;
        windows.push(Window { w0, w1, lead });
    }
    (spans, windows)
}

/// Decodes `packets` (consecutive, the first being the part's packet `first`) and returns the
/// part's samples `[from, to)` (part time: raw samples less the part's `priming`), planar.
fn decode_span(
    path: &Path,
    params: &ff::codec::Parameters,
    packets: &[Vec<u8>],
    first: u64,
    (priming, from, to): (u64, u64, u64),
    channels: usize,
) -> Result<Vec<Vec<f32>>> {
    let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
    let raw = decode_raw(path, params, &refs, channels)?;
    let got = raw[0].len() as u64;
    // raw[0] is the part's raw sample first·F; part sample s is raw s + priming.
    let base = first * F;
    let lo = (from + priming)
        .checked_sub(base)
        .ok_or_else(|| Error::Internal("copy: decoded too little before a join".into()))?;
    let hi = to + priming - base;
    if hi > got {
        return Err(Error::Internal(format!(
            "copy: {} ends before a join's window",
            path.display()
        )));
    }
    Ok(raw
        .into_iter()
        .map(|r| r[lo as usize..hi as usize].to_vec())
        .collect())
}

/// Decoded edges of the two parts around a join.
struct Edge {
    /// Part k-1's samples from `tail_start` (part time) to its end.
    tail: Vec<Vec<f32>>,
    tail_start: u64,
    /// Part k's samples from its start.
    head: Vec<Vec<f32>>,
}

/// A join as written: book frames `[w0, w1)` are the re-encoded `packets`; part `k-1` is
/// copied up to `w0`, part `k` from `w1`.
struct JoinCut {
    packets: Vec<EncodedPacket>,
    w0: u64,
    w1: u64,
}

/// A fresh decoder's output for `packets`, planar: 1024 samples per packet, the first
/// packet's without the overlap of the one before it.
fn decode_raw(
    path: &Path,
    params: &ff::codec::Parameters,
    packets: &[&[u8]],
    channels: usize,
) -> Result<Vec<Vec<f32>>> {
    let ctx = ff::codec::context::Context::from_parameters(params.clone())
        .map_err(|e| Error::av(Some(path), "set up the AAC decoder", e))?;
    let mut dec = ctx
        .decoder()
        .audio()
        .map_err(|e| Error::av(Some(path), "open the AAC decoder", e))?;
    let mut raw: Vec<Vec<f32>> = vec![Vec::new(); channels];
    let mut frame = ff::frame::Audio::empty();
    let mut take = |dec: &mut ff::decoder::Audio, raw: &mut Vec<Vec<f32>>| -> Result<()> {
        while dec.receive_frame(&mut frame).is_ok() {
            if frame.format() != ff::format::Sample::F32(ff::format::sample::Type::Planar)
                || frame.planes() < channels
            {
                return Err(Error::Internal(format!(
                    "copy: {} decodes to {:?}, not planar f32",
                    path.display(),
                    frame.format()
                )));
            }
            let n = frame.samples();
            for (c, r) in raw.iter_mut().enumerate() {
                r.extend_from_slice(&frame.plane::<f32>(c)[..n]);
            }
        }
        Ok(())
    };
    for data in packets {
        let pkt = ff::Packet::copy(data);
        dec.send_packet(&pkt)
            .map_err(|e| Error::av(Some(path), "decode AAC near a join", e))?;
        take(&mut dec, &mut raw)?;
    }
    let _ = dec.send_eof();
    take(&mut dec, &mut raw)?;
    if raw[0].len() != packets.len() * FRAME_SAMPLES {
        return Err(Error::Internal(format!(
            "copy: {} packets of {} decoded to {} samples",
            packets.len(),
            path.display(),
            raw[0].len()
        )));
    }
    Ok(raw)
}

/// The two parts' original packets around a join, by book frame.
struct Originals<'a> {
    tail: &'a [Vec<u8>],
    /// The book frame of `tail[0]`.
    tail_frame: u64,
    head: &'a [Vec<u8>],
    /// The book frame of `head[0]` (the part's first packet).
    head_frame: u64,
}

impl Originals<'_> {
    fn at(&self, n: u64) -> Option<&[u8]> {
        if n >= self.head_frame {
            self.head.get((n - self.head_frame) as usize)
        } else {
            n.checked_sub(self.tail_frame)
                .and_then(|i| self.tail.get(i as usize))
        }
        .map(Vec::as_slice)
    }
}

/// The join's packets: the two parts' decoded edges laid on the book's timeline (silence
/// between them, or their overlap mixed), encoded from `lead` frames before, with the
/// hand-overs to and from the copied packets where they decode best ([`SLACK_FRAMES`]).
fn encode_window(
    plan: &CopyPlan,
    k: usize,
    w: &Window,
    edge: &Edge,
    originals: &Originals<'_>,
    (coder, params): (crate::options::AacCoder, &ff::codec::Parameters),
) -> Result<JoinCut> {
    let e = plan.params.priming_samples as u64;
    let (a, b) = (&plan.parts[k - 1], &plan.parts[k]);
    let channels = plan.params.channels.max(1) as usize;
    let (from, to) = (w.w0 - SLACK_FRAMES, w.w1 + SLACK_FRAMES);
    let first_frame = from - 1 - w.lead;
    // The encoder's input sample t is book sample t + F - E (its packet n then decodes to
    // the book's frame n: the native encoder's priming is one frame).
    let q0 = (first_frame * F + F) as i64 - e as i64;
    let q1 = ((to + LEAD_OUT_FRAMES) * F + F) as i64 - e as i64;
    let len = (q1 - q0) as usize;
    let mut planes = vec![vec![0f32; len]; channels];
    let mut lay = |src: &[Vec<f32>], start: i64| {
        for (c, plane) in planes.iter_mut().enumerate() {
            let s = &src[c.min(src.len() - 1)];
            for (i, v) in s.iter().enumerate() {
                let at = start + i as i64 - q0;
                if (0..len as i64).contains(&at) {
                    let x = &mut plane[at as usize];
                    *x = (*x + v).clamp(-1.0, 1.0);
                }
            }
        }
    };
    lay(&edge.tail, (a.start + edge.tail_start) as i64);
    lay(&edge.head, b.start as i64);
    let settings = plan.window_settings(coder);
    let job = SegmentJob {
        index: k as u64,
        first_frame,
        planes,
        keep_from: from,
        keep_to: Some(to),
    };
    let kept = encode_segment(&settings, &job)?;
    let planes = job.planes;
    if kept.len() as u64 != to - from {
        return Err(Error::Internal(format!(
            "copy: the window of join {k} gave {} packets, not {}",
            kept.len(),
            to - from
        )));
    }
    let re = |n: u64| kept[(n - from) as usize].data.as_slice();
    let original = |n: u64| {
        originals
            .at(n)
            .ok_or_else(|| Error::Internal(format!("copy: no original packet for frame {n}")))
    };
    // Squared error of decoded frame `n` (`pcm`, 1024 samples per channel from `at`) against
    // the samples the book must have there.
    let error = |pcm: &[Vec<f32>], at: usize, n: u64| -> f64 {
        let r0 = ((n * F) as i64 - e as i64 - q0) as usize;
        let mut sum = 0f64;
        for (c, p) in pcm.iter().enumerate() {
            for i in 0..FRAME_SAMPLES {
                let d = (p[at + i] - planes[c][r0 + i]) as f64;
                sum += d * d;
            }
        }
        sum
    };
    let path = &b.path;
    // Frames decoded from two re-encoded packets.
    let all: Vec<&[u8]> = (from..to).map(re).collect();
    let run = decode_raw(path, params, &all, channels)?;
    let re_err = |n: u64| error(&run, ((n - from) as usize) * FRAME_SAMPLES, n);
    // Into the window: frame c from the original c-1 and the re-encoded c.
    let mut best0 = (f64::INFINITY, w.w0);
    for c in from + 1..=w.w0 {
        let pcm = decode_raw(path, params, &[original(c - 1)?, re(c)], channels)?;
        let cost = error(&pcm, FRAME_SAMPLES, c) + (c + 1..=w.w0).map(re_err).sum::<f64>();
        if cost < best0.0 {
            best0 = (cost, c);
        }
    }
    // Out of it: frame c from the re-encoded c-1 and the original c.
    let mut best1 = (f64::INFINITY, w.w1);
    for c in w.w1..to {
        let pcm = decode_raw(path, params, &[re(c - 1), original(c)?], channels)?;
        let cost = error(&pcm, FRAME_SAMPLES, c) + (w.w1..c).map(re_err).sum::<f64>();
        if cost < best1.0 {
            best1 = (cost, c);
        }
    }
    let (w0, w1) = (best0.1, best1.1);
    let packets = kept
        .into_iter()
        .enumerate()
        .map(|(i, mut p)| {
            let n = from + i as u64;
            p.pts = (n * F) as i64 - e as i64;
            p.duration = F as i64;
            (n, p)
        })
        .filter(|(n, _)| (w0..w1).contains(n))
        .map(|(_, p)| p)
        .collect();
    Ok(JoinCut { packets, w0, w1 })
}

/// A part's audio packets from index `from` to `to` (part-local, `to` exclusive; `None`: to
/// the end), and its codec parameters (an owned copy).
fn read_packets(
    path: &Path,
    from: u64,
    to: Option<u64>,
) -> Result<(Vec<Vec<u8>>, ff::codec::Parameters)> {
    let mut input = open_input(path, InputFormats::of(&[InputFormat::M4a]))?;
    let index = input.audio_index;
    let params = input
        .ctx
        .stream(index)
        .map(|s| s.parameters().clone())
        .ok_or_else(|| Error::Internal("copy: no stream".into()))?;
    let mut out = Vec::new();
    let mut j = 0u64;
    for (st, pkt) in input.ctx.packets() {
        if st.index() != index {
            continue;
        }
        if to.is_some_and(|t| j >= t) {
            break;
        }
        if j >= from {
            out.push(pkt.data().unwrap_or_default().to_vec());
        }
        j += 1;
    }
    let want = to.map_or(from, |t| t);
    if j < want {
        return Err(Error::NotAudio {
            path: path.to_path_buf(),
            reason: format!("it has {j} AAC packets, fewer than its stated length needs ({want})"),
        });
    }
    Ok((out, params))
}

/// The window of join `k` (between parts `k-1` and `k`), from the two parts' files.
fn join_window(
    plan: &CopyPlan,
    spans: &[PartSpan],
    k: usize,
    w: &Window,
    coder: crate::options::AacCoder,
) -> Result<JoinCut> {
    let e = plan.params.priming_samples as u64;
    let channels = plan.params.channels.max(1) as usize;
    let (prev, part) = (&plan.parts[k - 1], &plan.parts[k]);
    let tail_first = spans[k - 1].tail_from;
    let (tail, tail_params) = read_packets(&prev.path, tail_first, None)?;
    let (head, head_params) = read_packets(&part.path, 0, Some(spans[k].head_to))?;
    let tail_start = ((w.w0 - SLACK_FRAMES - w.lead) * F)
        .saturating_sub(e)
        .saturating_sub(prev.start);
    let head_end =
        ((w.w1 + SLACK_FRAMES + LEAD_OUT_FRAMES) * F + F - e - part.start).min(part.length);
    let edge = Edge {
        tail: decode_span(
            &prev.path,
            &tail_params,
            &tail,
            tail_first,
            (prev.priming, tail_start, prev.length),
            channels,
        )?,
        tail_start,
        head: decode_span(
            &part.path,
            &head_params,
            &head,
            0,
            (part.priming, 0, head_end),
            channels,
        )?,
    };
    let originals = Originals {
        tail: &tail,
        tail_frame: prev.first_frame + tail_first,
        head: &head,
        head_frame: part.first_frame,
    };
    encode_window(plan, k, w, &edge, &originals, (coder, &head_params))
}

/// Copies the book. First the join windows, in parallel (each reads the end of one part and
/// the start of the next, decodes them and encodes a few frames: they are small, and held
/// until their turn); then one thread reads the parts' packets in order and hands them, with
/// the windows between them, to the muxer thread.
pub(crate) fn run(
    plan: &CopyPlan,
    (coder, threads): (crate::options::AacCoder, usize),
    muxer: M4bMuxer,
    chapters: ChapterBuilder,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<PipelineOutcome> {
    let (spans, windows) = spans(plan);
    let e = plan.params.priming_samples as u64;
    let n = plan.parts.len();
    let t0 = std::time::Instant::now();
    // The conversion's own pool, `-j` threads, as the encoding paths have.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("aiom4b-join-{i}"))
        .build()
        .map_err(|e| Error::Internal(format!("join pool: {e}")))?;
    let encoded: Vec<Result<JoinCut>> = pool.install(|| {
        windows
            .par_iter()
            .enumerate()
            .map(|(i, w)| {
                if cancel.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                join_window(plan, &spans, i + 1, w, coder)
            })
            .collect()
    });
    let mut joined = Vec::with_capacity(encoded.len());
    for w in encoded {
        joined.push(w?);
    }
    // Each part is copied between the hand-overs its joins chose.
    let mut spans = spans;
    for (i, cut) in joined.iter().enumerate() {
        spans[i].copy_to = cut.w0 - plan.parts[i].first_frame;
        spans[i + 1].copy_from = cut.w1 - plan.parts[i + 1].first_frame;
    }
    let joins_secs = t0.elapsed().as_secs_f64();
    let failure = Failure::new();
    let span = tracing::Span::current();
    let outcome = std::thread::scope(|s| -> Result<PipelineOutcome> {
        let (mux_tx, mux_rx) = bounded::<MuxMsg>(super::PACKET_BATCHES);
        let failure_ref = &failure;
        let span_ref = &span;
        let mux = std::thread::Builder::new()
            .name("aiom4b-mux".into())
            .spawn_scoped(s, move || {
                let _span = span_ref.enter();
                super::mux_loop(muxer, mux_rx, cancel, failure_ref)
            })
            .map_err(|e| Error::Internal(format!("muxer thread: {e}")))?;
        let send = |batch: &mut Vec<EncodedPacket>| -> Result<()> {
            if batch.is_empty() {
                return Ok(());
            }
            mux_tx
                .send(MuxMsg::Packets(std::mem::take(batch)))
                .map_err(|_| Error::Cancelled)
        };
        let produce = || -> Result<PipelineOutcome> {
            let mut out = PipelineOutcome::default();
            out.stages.joins_secs = joins_secs;
            let mut written = 0u64;
            for (k, part) in plan.parts.iter().enumerate() {
                if cancel.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                let sp = &spans[k];
                let mut batch: Vec<EncodedPacket> = Vec::with_capacity(256);
                if k > 0 {
                    let cut = &mut joined[k - 1];
                    batch.append(&mut cut.packets);
                    out.joins.push(cut.w0 * F - e);
                }
                let mut input = open_input(&part.path, InputFormats::of(&[InputFormat::M4a]))?;
                let index = input.audio_index;
                let mut j = 0u64;
                for (st, pkt) in input.ctx.packets() {
                    if st.index() != index {
                        continue;
                    }
                    if j >= sp.copy_to {
                        break;
                    }
                    if j >= sp.copy_from {
                        batch.push(EncodedPacket {
                            data: pkt.data().unwrap_or_default().to_vec(),
                            pts: ((part.first_frame + j) * F) as i64 - e as i64,
                            duration: F as i64,
                        });
                        if batch.len() >= 256 {
                            written += batch.len() as u64 * F;
                            send(&mut batch)?;
                            progress.encoded(written.min(plan.total), plan.total);
                            if cancel.is_cancelled() {
                                return Err(Error::Cancelled);
                            }
                        }
                    }
                    j += 1;
                }
                if j < sp.copy_to {
                    return Err(Error::NotAudio {
                        path: part.path.clone(),
                        reason: format!(
                            "it has {j} AAC packets, fewer than its stated length needs ({})",
                            sp.copy_to
                        ),
                    });
                }
                if k + 1 == n {
                    // The last packet ends the book exactly.
                    if let Some(last) = batch.last_mut() {
                        last.duration = plan.total as i64 - last.pts;
                    }
                }
                written += batch.len() as u64 * F;
                send(&mut batch)?;
                progress.encoded(written.min(plan.total), plan.total);
                let len = match plan.parts.get(k + 1) {
                    Some(next) => next.start - part.start,
                    None => part.length,
                };
                out.track_samples.push(len);
                progress.file_decoded(k, &part.path, len);
            }
            out.total_samples = plan.total;
            let chapters = chapters(&out.track_samples, out.total_samples, &[])?;
            mux_tx
                .send(MuxMsg::Finish(chapters.clone()))
                .map_err(|_| Error::Cancelled)?;
            out.chapters = chapters;
            Ok(out)
        };
        let produced = produce();
        if produced.is_err() {
            // The muxer stops at its next message, or when the channel closes.
            failure.stop();
        }
        drop(mux_tx);
        let muxed = mux
            .join()
            .map_err(|_| Error::Internal("the muxer thread".into()))?;
        match (produced, muxed) {
            (Ok(mut o), Ok(packets)) => {
                o.packets = packets;
                progress.encoded(o.total_samples, o.total_samples);
                Ok(o)
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    });
    // Root cause wins: a muxer that failed on its own recorded why.
    super::settle(&failure, cancel, outcome)
}
