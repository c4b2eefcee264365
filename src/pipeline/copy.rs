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
use super::encode_segments::{encode_segment, LEAD_IN_FRAMES, LEAD_OUT_FRAMES};
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
    let kept = encode_segment(&settings, first_frame, &planes, from, Some(to))?;
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
/// the end), and its codec parameters (an owned copy). A tail (`from` > 0) is reached by
/// seeking, not by demuxing the whole part ([`seek_to_packet`]); where the demuxer's index
/// cannot vouch for the packet it lands on, the part is read from its start.
fn read_packets(
    path: &Path,
    from: u64,
    to: Option<u64>,
) -> Result<(Vec<Vec<u8>>, ff::codec::Parameters)> {
    if from > 0 {
        let mut input = open_input(path, InputFormats::of(&[InputFormat::M4a]))?;
        if let Some(positions) = seek_to_packet(&mut input, from) {
            if let Some(read) = read_from(&mut input, from, to, Some(&positions))? {
                return Ok(read);
            }
        }
        tracing::debug!(path = %path.display(), from, "copy: no exact seek, reading the part from its start");
    }
    let mut input = open_input(path, InputFormats::of(&[InputFormat::M4a]))?;
    let read = read_from(&mut input, 0, to, None)?;
    let (all, params) = read.ok_or_else(|| Error::Internal("copy: reading a part".into()))?;
    let skip = (from as usize).min(all.len());
    Ok((all.into_iter().skip(skip).collect(), params))
}

/// Reads `input`'s audio packets `first..to`. Without `positions`, `input` stands at packet
/// `first`. With them (the index's byte position of every packet, after a seek) it stands
/// at `first` or a few packets before it (libavformat's seek may land a packet early, on the
/// edit list's account): the first packet read is found among the positions, the ones before
/// `first` are skipped, and each packet must sit where the index says, or `None` is returned
/// (the caller reads the part from its start).
#[allow(clippy::type_complexity)]
fn read_from(
    input: &mut crate::av::input::AudioInput,
    first: u64,
    to: Option<u64>,
    positions: Option<&[i64]>,
) -> Result<Option<(Vec<Vec<u8>>, ff::codec::Parameters)>> {
    /// How far before the wanted packet a seek may land.
    const SEEK_SLACK: u64 = 16;
    let index = input.audio_index;
    let params = input
        .ctx
        .stream(index)
        .map(|s| s.parameters().clone())
        .ok_or_else(|| Error::Internal("copy: no stream".into()))?;
    let mut out = Vec::new();
    let mut j: Option<u64> = positions.is_none().then_some(first);
    for (st, pkt) in input.ctx.packets() {
        if st.index() != index {
            continue;
        }
        let at = match (j, positions) {
            (Some(at), _) => at,
            (None, Some(pos)) => {
                // The first packet after the seek: which one is it?
                let p = pkt.position() as i64;
                match (first.saturating_sub(SEEK_SLACK)..=first).find(|&m| pos[m as usize] == p) {
                    Some(m) => m,
                    None => return Ok(None),
                }
            }
            (None, None) => unreachable!("j starts known without positions"),
        };
        if to.is_some_and(|t| at >= t) {
            j = Some(at);
            break;
        }
        if let Some(pos) = positions {
            if pos.get(at as usize) != Some(&(pkt.position() as i64)) {
                return Ok(None);
            }
        }
        if at >= first {
            out.push(pkt.data().unwrap_or_default().to_vec());
        }
        j = Some(at + 1);
    }
    let j = j.unwrap_or(0);
    let want = to.unwrap_or(first);
    if j < want || positions.is_some_and(|p| to.is_none() && j as usize != p.len()) {
        if positions.is_some() {
            return Ok(None);
        }
        return Err(Error::NotAudio {
            path: input.path.clone(),
            reason: format!("it has {j} AAC packets, fewer than its stated length needs ({want})"),
        });
    }
    Ok(Some((out, params)))
}

/// Moves `input` to its audio packet `n` through the demuxer's own index (the MP4 sample
/// table, one entry per AAC packet) and returns every entry's byte position, so that
/// [`read_from`] can check each packet it reads is the one it counts. `None` where the index
/// is not one entry per packet or the seek fails; nothing is assumed then.
///
/// By hand because ffmpeg-next has no binding for the stream index
/// (`avformat_index_get_entry`); the seek is libavformat's own `av_seek_frame`.
fn seek_to_packet(input: &mut crate::av::input::AudioInput, n: u64) -> Option<Vec<i64>> {
    use ff::ffi;
    let index = input.audio_index;
    let ctx = unsafe { input.ctx.as_mut_ptr() };
    // SAFETY: `ctx` is the open input's format context and `index` one of its streams; the
    // index entries are read before anything else touches the context.
    let (positions, target) = unsafe {
        let st = *(*ctx).streams.add(index);
        let count = ffi::avformat_index_get_entries_count(st);
        if count <= 0 || n >= count as u64 {
            return None;
        }
        let mut positions = Vec::with_capacity(count as usize);
        let mut last_ts = i64::MIN;
        for i in 0..count {
            let e = ffi::avformat_index_get_entry(st, i);
            if e.is_null() || (*e).timestamp <= last_ts {
                // Not one increasing entry per packet: the count would not be the packet's.
                return None;
            }
            last_ts = (*e).timestamp;
            positions.push((*e).pos);
        }
        let e = ffi::avformat_index_get_entry(st, n as i32);
        (positions, (*e).timestamp)
    };
    // SAFETY: as above; av_seek_frame is given a stream index and a timestamp in its time base.
    let r =
        unsafe { ffi::av_seek_frame(ctx, index as i32, target, ffi::AVSEEK_FLAG_BACKWARD as _) };
    (r >= 0).then_some(positions)
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

/// Copies the book. The join windows are encoded by `threads` join threads, in book order
/// (each reads the end of one part and the start of the next, decodes them and encodes a few
/// frames), while this thread reads the parts' packets in order and hands them, with the
/// windows between them, to the muxer thread. Only a part's last few packets wait for the
/// window after it (where the hand-over falls is chosen by that window's encoding), so the
/// copying overlaps the joins' encoding instead of following it.
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
    // Join `i` (the window between parts i and i+1) arrives on its own channel, so the copy
    // takes them in book order whichever thread finished first.
    let (cut_txs, cut_rxs): (Vec<_>, Vec<_>) = windows
        .iter()
        .map(|_| bounded::<Result<JoinCut>>(1))
        .unzip();
    let next_window = std::sync::atomic::AtomicUsize::new(0);
    // When the last join was done (from t0), for the report's stage times.
    let joins_done = std::sync::Mutex::new(std::time::Duration::ZERO);
    // Set when the copy stops early: the join threads then take no further window.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let failure = Failure::new();
    let span = tracing::Span::current();
    // The muxer's times (the only stage timed here besides the joins).
    let mux_times = std::sync::Mutex::new(crate::convert::StageTimes::default());
    let outcome = std::thread::scope(|s| -> Result<PipelineOutcome> {
        let (mux_tx, mux_rx) = bounded::<MuxMsg>(super::PACKET_BATCHES);
        let (failure_ref, span_ref, mux_times) = (&failure, &span, &mux_times);
        let mux = std::thread::Builder::new()
            .name("aiom4b-mux".into())
            .spawn_scoped(s, move || {
                let _span = span_ref.enter();
                super::mux_loop(muxer, mux_rx, cancel, failure_ref, mux_times)
            })
            .map_err(|e| Error::Internal(format!("muxer thread: {e}")))?;
        let workers = threads.max(1).min(windows.len());
        for t in 0..workers {
            let (windows, spans, cut_txs) = (&windows, &spans, &cut_txs);
            let (next_window, joins_done, stop) = (&next_window, &joins_done, &stop);
            std::thread::Builder::new()
                .name(format!("aiom4b-join-{t}"))
                .spawn_scoped(s, move || {
                    let _span = span_ref.enter();
                    loop {
                        let i = next_window.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= windows.len() || stop.load(std::sync::atomic::Ordering::Relaxed) {
                            return;
                        }
                        let cut = if cancel.is_cancelled() {
                            Err(Error::Cancelled)
                        } else {
                            // A panic would leave the copy waiting for this window forever.
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                join_window(plan, spans, i + 1, &windows[i], coder)
                            }))
                            .unwrap_or_else(|_| {
                                Err(Error::Internal(format!("copy: join {} panicked", i + 1)))
                            })
                        };
                        {
                            let mut done = joins_done.lock().unwrap_or_else(|p| p.into_inner());
                            *done = (*done).max(t0.elapsed());
                        }
                        // One message on a channel of one: never blocks. (The receivers live as
                        // long as this scope, so a send only fails if that changes.)
                        if cut_txs[i].send(cut).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| Error::Internal(format!("join thread: {e}")))?;
        }
        // Join `i`, once its thread has encoded it.
        let take_cut = |i: usize| -> Result<JoinCut> {
            cut_rxs[i]
                .recv()
                .map_err(|_| Error::Internal(format!("copy: join {} was never encoded", i + 1)))?
        };
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
            let mut written = 0u64;
            // The window before the part being copied (its packets go first, its `w1` says
            // where the part's copying starts).
            let mut before: Option<JoinCut> = None;
            for (k, part) in plan.parts.iter().enumerate() {
                if cancel.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                let mut batch: Vec<EncodedPacket> = Vec::with_capacity(256);
                let copy_from = match before.take() {
                    Some(mut cut) => {
                        batch.append(&mut cut.packets);
                        out.joins.push(cut.w0 * F - e);
                        cut.w1 - part.first_frame
                    }
                    None => spans[k].copy_from,
                };
                // Where the copying ends: the last part's end, or the hand-over the window
                // after it chose, which is at least this far in (`encode_window`'s first
                // candidate), so the copying only waits for that window from there on.
                let mut copy_to = (k + 1 == n).then_some(spans[k].copy_to);
                let sure_to = windows
                    .get(k)
                    .map_or(u64::MAX, |w| w.w0 - SLACK_FRAMES + 1 - part.first_frame);
                let mut after: Option<JoinCut> = None;
                let wait_for_window = |after: &mut Option<JoinCut>| -> Result<u64> {
                    let cut = take_cut(k)?;
                    let to = cut.w0 - part.first_frame;
                    *after = Some(cut);
                    Ok(to)
                };
                let mut input = open_input(&part.path, InputFormats::of(&[InputFormat::M4a]))?;
                let index = input.audio_index;
                let mut j = 0u64;
                for (st, pkt) in input.ctx.packets() {
                    if st.index() != index {
                        continue;
                    }
                    if copy_to.is_none() && j >= sure_to {
                        copy_to = Some(wait_for_window(&mut after)?);
                    }
                    if copy_to.is_some_and(|to| j >= to) {
                        break;
                    }
                    if j >= copy_from {
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
                let copy_to = match copy_to {
                    Some(to) => to,
                    None => wait_for_window(&mut after)?,
                };
                if j < copy_to {
                    return Err(Error::NotAudio {
                        path: part.path.clone(),
                        reason: format!(
                            "it has {j} AAC packets, fewer than its stated length needs ({copy_to})"
                        ),
                    });
                }
                before = after;
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
        let produced = produce().map(|mut out| {
            out.stages.joins_secs = joins_done
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_secs_f64();
            out
        });
        if produced.is_err() {
            // The muxer stops at its next message, or when the channel closes; the join
            // threads take no further window.
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            failure.stop();
        }
        drop(mux_tx);
        let muxed = mux
            .join()
            .map_err(|_| Error::Internal("the muxer thread".into()))?;
        match (produced, muxed) {
            (Ok(mut o), Ok(packets)) => {
                o.packets = packets;
                let m = mux_times.lock().unwrap_or_else(|p| p.into_inner());
                o.stages.mux_wait_secs = m.mux_wait_secs;
                o.stages.mux_write_secs = m.mux_write_secs;
                o.stages.mux_cpu_secs = m.mux_cpu_secs;
                progress.encoded(o.total_samples, o.total_samples);
                Ok(o)
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    });
    // Root cause wins: a muxer that failed on its own recorded why.
    super::settle(&failure, cancel, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiom4b_testkit::audio_writer::{delay_mp4_start, write_audio, AudioKind, AudioSpec};

    /// A join's tail is read by seeking, and what the seek gives is exactly the packets a read
    /// from the start gives from there: for parts whose priming is a whole frame and parts
    /// whose is not (the demuxer's seek then lands a packet early), with a chapter track's
    /// samples between the audio's.
    #[test]
    fn a_parts_tail_read_by_seeking_is_the_same_packets_as_read_from_the_start() {
        crate::av::init();
        let dir = tempfile::tempdir().unwrap();
        for extra in [0u32, 928, 1088] {
            let path = dir.path().join(format!("part-{extra}.m4a"));
            let n = 3 * 44_100 + 555;
            let mut spec = AudioSpec::sine(AudioKind::M4aAac, 44_100, 2, n);
            spec.chapters = vec![(0, "A".into()), (n / 2, "B".into())];
            write_audio(&path, &spec).unwrap();
            if extra > 0 {
                delay_mp4_start(&path, extra);
            }
            let mut input = open_input(&path, InputFormats::of(&[InputFormat::M4a])).unwrap();
            let (all, _) = read_from(&mut input, 0, None, None).unwrap().unwrap();
            assert!(all.len() > 100, "{} packets", all.len());
            for from in [1, 2, 17, all.len() as u64 - 40, all.len() as u64 - 1] {
                let mut input = open_input(&path, InputFormats::of(&[InputFormat::M4a])).unwrap();
                let positions = seek_to_packet(&mut input, from)
                    .unwrap_or_else(|| panic!("priming +{extra}: no seek to packet {from}"));
                let (tail, _) = read_from(&mut input, from, None, Some(&positions))
                    .unwrap()
                    .unwrap_or_else(|| panic!("priming +{extra}: the seek to {from} was refused"));
                assert!(
                    tail == all[from as usize..],
                    "priming +{extra}: the packets from {from} differ"
                );
                let (via, _) = read_packets(&path, from, None).unwrap();
                assert!(via == all[from as usize..]);
            }
            // Past the end there is nothing to seek to.
            let mut input = open_input(&path, InputFormats::of(&[InputFormat::M4a])).unwrap();
            assert!(seek_to_packet(&mut input, all.len() as u64).is_none());
        }
    }

    /// Where the index does not vouch for a packet (a position that is not the packet read
    /// there), the seek is refused and the part is read from its start instead.
    #[test]
    fn a_seek_that_lands_elsewhere_than_the_index_says_is_refused() {
        crate::av::init();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part.m4a");
        let spec = AudioSpec::sine(AudioKind::M4aAac, 44_100, 1, 2 * 44_100);
        write_audio(&path, &spec).unwrap();
        let mut input = open_input(&path, InputFormats::of(&[InputFormat::M4a])).unwrap();
        let mut positions = seek_to_packet(&mut input, 30).unwrap();
        positions[31] += 1;
        assert!(read_from(&mut input, 30, None, Some(&positions))
            .unwrap()
            .is_none());
    }
}
