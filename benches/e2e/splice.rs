//! Splice quality and exactness on a 10-minute, 20-file book: the segmented (-jN) encoding
//! against the single encoder (-j1) with [`quality::splice_report`], and every output's decoded
//! length and chapter starts against the decoded inputs — the ffmpeg CLI's output included,
//! whose concat demuxer is known to add gaps at file joins.
//!
//! Two lengths per output: the *timeline* (presentation length from the sample table and the
//! edit list, read by the crate's independent reader [`verify::summarize`]) — what a player's
//! clock, seeking and chapter marks follow — and the *decoded* samples (FFmpeg's decoder via
//! [`decode_m4b`], edit list applied). FFmpeg 5.1's mov demuxer does not trim the last AAC
//! frame to its `stts` duration, so "decoded" comes out up to one frame (< 1024 samples) long
//! for a file whose timeline is exact. The concat demuxer's gaps show in the timeline: they
//! stretch packet durations while the decoder still emits back-to-back samples.
use crate::corpus::{Corpus, CHANNELS, SAMPLE_RATE};
use crate::{Bench, Tool, SPLICE_10M};
use aiom4b::__internals::{decode, input};
use aiom4b::verify;
use aiom4b_testkit::m4b_reader::decode_m4b;
use aiom4b_testkit::quality;
use serde_json::json;

/// Decodes the corpus with the crate's own MP3 path (what the encoder is fed): the PCM and
/// each file's length in samples.
fn decode_sources(corpus: &Corpus) -> (Vec<Vec<f32>>, Vec<u64>) {
    let mut planes = vec![Vec::new(); usize::from(CHANNELS)];
    let mut lengths = Vec::new();
    for f in &corpus.files {
        let inp = input::open_mp3(f).unwrap_or_else(|e| panic!("{e}"));
        let stats = decode::decode_file(
            inp,
            SAMPLE_RATE,
            usize::from(CHANNELS),
            1 << 16,
            &|| false,
            &mut |chunk| {
                for (d, s) in planes.iter_mut().zip(&chunk.planes) {
                    d.extend_from_slice(s);
                }
                Ok(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        lengths.push(stats.output_samples);
    }
    (planes, lengths)
}

fn ms(samples: i64) -> f64 {
    samples as f64 * 1000.0 / f64::from(SAMPLE_RATE)
}

/// Largest |read − expected| over chapter starts, in samples; `None` without chapters.
fn max_drift(read: &[u64], expected: &[u64]) -> Option<i64> {
    if read.is_empty() {
        return None;
    }
    if read.len() != expected.len() {
        return Some(i64::MAX);
    }
    read.iter()
        .zip(expected)
        .map(|(r, e)| (*r as i64 - *e as i64).abs())
        .max()
}

/// Segment length for the splice section: the default would give this 10-minute book a single
/// join (segments are up to 26,624 frames). 256-frame segments give it 100 joins on the grid,
/// in speech or not: the per-block excess is heavy-tailed (p99 ≈ 10 dB between any two
/// encoder runs), so fewer joins make the mean mostly noise (25 joins: ±1 dB run to run).
const SPLICE_SEGMENT_FRAMES: u64 = 256;

pub fn splice(b: &mut Bench) {
    let corpus = b.corpus(&SPLICE_10M);
    // The segmented encoder runs whenever more than one thread is asked for; on a one-core
    // machine -j2 still exercises it.
    let n = b.cores.max(2);
    let mut tools = vec![Tool::Aiom4b { jobs: 1 }, Tool::Aiom4b { jobs: n }];
    if b.ffmpeg.is_some() {
        tools.push(Tool::Ffmpeg);
    }
    let outputs: Vec<_> = tools
        .iter()
        .map(|t| {
            let c = b.convert_with(
                *t,
                &corpus,
                &["--segment-frames", &SPLICE_SEGMENT_FRAMES.to_string()],
            );
            b.record_run("splice", &corpus, *t, 0, &c);
            c
        })
        .collect();

    let (source, lengths) = decode_sources(&corpus);
    let sum: u64 = lengths.iter().sum();
    let spec_total = (corpus.audio_secs * f64::from(SAMPLE_RATE)).round() as u64;
    let expected_starts: Vec<u64> = lengths
        .iter()
        .scan(0u64, |at, n| {
            let s = *at;
            *at += n;
            Some(s)
        })
        .collect();
    b.rec.section(format!(
        "splice/exactness: {} files, {:.0} min; inputs decode to {sum} samples (spec {spec_total})",
        corpus.files.len(),
        corpus.audio_secs / 60.0
    ));

    let mut decoded = Vec::new();
    for (tool, conv) in tools.iter().zip(&outputs) {
        let (rate, planes) = decode_m4b(&conv.output).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rate, SAMPLE_RATE, "{} output rate", tool.label());
        let ffmpeg_len = planes.first().map_or(0, |p| p.len() as u64);
        let summary = verify::summarize(&conv.output).unwrap_or_else(|e| panic!("{e}"));
        let chpl: Vec<u64> = summary
            .chpl
            .as_ref()
            .map(|c| c.chapters.iter().map(|m| m.start_samples).collect())
            .unwrap_or_default();
        let qt: Vec<u64> = summary
            .chapter_track
            .as_ref()
            .map(|c| c.chapters.iter().map(|m| m.start_samples).collect())
            .unwrap_or_default();
        let diff = ffmpeg_len as i64 - sum as i64;
        let diff_indep = summary.decoded_samples as i64 - sum as i64;
        let drift_chpl = max_drift(&chpl, &expected_starts);
        let drift_qt = max_drift(&qt, &expected_starts);
        b.rec.emit(
            "exactness",
            json!({
                "section": "splice",
                "corpus": corpus.name,
                "variant": tool.label(),
                "inputs_decoded_samples": sum,
                "inputs_spec_samples": spec_total,
                "output_samples_ffmpeg_decoder": ffmpeg_len,
                "output_samples_independent_reader": summary.decoded_samples,
                "decoded_diff_samples": diff,
                "decoded_diff_ms": ms(diff),
                "timeline_diff_samples": diff_indep,
                "timeline_diff_ms": ms(diff_indep),
                "chapters": qt.len().max(chpl.len()),
                "max_chapter_drift_chpl_samples": drift_chpl,
                "max_chapter_drift_qt_samples": drift_qt,
            }),
        );
        let chapters = match (drift_chpl, drift_qt) {
            (None, None) => "no chapters".to_string(),
            (c, q) => format!(
                "chapter drift ≤ {} / {} samples (chpl / QuickTime track)",
                c.map_or("-".into(), |d| d.to_string()),
                q.map_or("-".into(), |d| d.to_string())
            ),
        };
        b.rec.row(
            format!("{} timeline − inputs", tool.label()),
            format!("{diff_indep:+} samples ({:+.1} ms)", ms(diff_indep)),
            &chapters,
        );
        b.rec.row(
            format!("{} decoded − inputs", tool.label()),
            format!("{diff:+} samples ({:+.1} ms)", ms(diff)),
            "",
        );
        if matches!(tool, Tool::Aiom4b { .. }) {
            decoded.push(planes);
        }
        let _ = std::fs::remove_file(&conv.output);
    }

    // Segment joins on the output timeline (AAC LC: 1024-sample frames).
    let seg = SPLICE_SEGMENT_FRAMES * 1024;
    let joins: Vec<u64> = (1..).map(|k| k * seg).take_while(|j| *j < sum).collect();
    let r = quality::splice_report(&source, &decoded[0], &decoded[1], &joins);
    b.rec.emit(
        "splice",
        json!({
            "section": "splice",
            "corpus": corpus.name,
            "single": tools[0].label(),
            "segmented": tools[1].label(),
            "report": r,
        }),
    );
    b.rec.row(
        format!("joins (-j{n} vs -j1)"),
        format!("{} ({} silent)", r.joins, r.silent_joins),
        "",
    );
    // Each join is judged by the worse of its two blocks, so it is held against adjacent
    // pairs of non-join blocks judged the same way (see `quality::splice_report`).
    b.rec.row(
        "join excess: mean over pairs' mean",
        format!(
            "{:+.3} dB ({:+.3} vs {:+.3})",
            r.mean_join_excess_db - r.mean_other_pair_excess_db,
            r.mean_join_excess_db,
            r.mean_other_pair_excess_db
        ),
        &format!(
            "≤ {} dB — {}",
            quality::MAX_MEAN_JOIN_EXCESS_DB,
            if r.mean_join_excess_db - r.mean_other_pair_excess_db
                <= quality::MAX_MEAN_JOIN_EXCESS_DB
            {
                "met"
            } else {
                "MISSED"
            }
        ),
    );
    // With n audible joins, even joins no different from anywhere else exceed the pairs' p99
    // with probability 1 − 0.99ⁿ (43 % for 57): read this row with that in mind.
    b.rec.row(
        "worst join vs pairs' p99",
        format!(
            "{:+.3} vs {:+.3} dB",
            r.worst_join_excess_db, r.p99_other_pair_excess_db
        ),
        &format!(
            "{} (joins no different from the rest miss it {:.0} % of the time)",
            if r.worst_join_excess_db <= r.p99_other_pair_excess_db {
                "met"
            } else {
                "MISSED"
            },
            100.0 * (1.0 - 0.99f64.powi((r.joins - r.silent_joins) as i32))
        ),
    );
    b.rec.row(
        "non-join excess mean / p99 (single blocks)",
        format!(
            "{:+.3} / {:+.3} dB",
            r.mean_other_excess_db, r.p99_other_excess_db
        ),
        "",
    );
    b.rec.row(
        "median block SNR segmented / single",
        format!(
            "{:.2} / {:.2} dB",
            r.median_snr_segmented_db, r.median_snr_single_db
        ),
        "",
    );
}
