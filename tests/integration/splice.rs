//! Multi-core segmented encoding (issue 4) against the single-encoder reference: the same
//! speech-like book converted with `-j1` and `-j2`, both decoded back by FFmpeg, compared
//! block by block with the source PCM by `quality::splice_report`. The bar: the blocks at
//! segment joins are no worse than the rest of the file (mean excess ≤ 0.5 dB, no join worse
//! than the 99th percentile of non-join blocks), and both files have the same packets and length.
use crate::common::*;
use aiom4b::__internals::decode::decode_file;
use aiom4b::__internals::input::open_input;
use aiom4b_testkit::fixtures::{write_mp3, Length, Mp3Spec, RateControl, Signal};
use aiom4b_testkit::m4b_reader::decode_m4b;
use aiom4b_testkit::quality::{splice_report, SpliceReport};
use std::path::{Path, PathBuf};

/// AAC frame length of the native encoder (segments are whole frames).
const FRAME: u64 = 1024;
/// Joins needed for the comparison to mean something: the issue asks for at least five.
const MIN_JOINS: usize = 5;
/// Joins that must fall on audible blocks: speech has pauses, and a join in a pause cannot be
/// judged, so a book must not pass with nothing measured. The seeds below put 6 of the 6 joins
/// in speech (found by scanning seeds; this assertion keeps it so if the generator changes).
const MIN_JUDGED_JOINS: usize = 5;
/// Segment length for these tests: much shorter than the default (up to 32,768 frames) so a short book has
/// several joins; the quality at a join depends on the lead-in, not on the segment length.
const SEGMENT_FRAMES: u64 = 1024;
/// Seed of the first file's speech (the second gets the next one).
const SEED: u64 = 29;

/// Writes the book: two speech-like files (the file boundary lies inside a segment, so the
/// decoder hand-over and the segment joins are different places), 6 full segments and a bit.
fn speech_book(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let segment_secs = (SEGMENT_FRAMES * FRAME) as f64 / 44_100.0;
    let total = segment_secs * 6.0 + 7.0;
    let first = (total * 0.45).round();
    [(1, first), (2, total - first)]
        .into_iter()
        .map(|(i, secs)| {
            let spec = Mp3Spec {
                length: Length::Secs(secs),
                sample_rate: 44_100,
                channels: 2,
                rate_control: RateControl::Cbr {
                    bitrate_bps: 192_000,
                },
                signal: Signal::SpeechLike { seed: SEED - 1 + i },
                ..Mp3Spec::default()
            };
            let p = dir.join(format!("{i:02}.mp3"));
            write_mp3(&p, &spec).unwrap();
            p
        })
        .collect()
}

/// The source as the encoder sees it: every file decoded and converted to the output format by
/// the engine's decoder, concatenated.
pub fn source_pcm(paths: &[PathBuf], rate: u32, channels: usize) -> Vec<Vec<f32>> {
    let mut planes = vec![Vec::new(); channels];
    for p in paths {
        decode_file(
            open_input(p, aiom4b::InputFormats::all()).unwrap(),
            rate,
            channels,
            1 << 16,
            &|| false,
            &mut |c| {
                for (d, s) in planes.iter_mut().zip(&c.planes) {
                    d.extend_from_slice(s);
                }
                Ok(())
            },
        )
        .unwrap();
    }
    planes
}

fn check_splices(channels: u16, bitrate: &str, coder: &str) -> SpliceReport {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    let paths = speech_book(&book);
    let mut outputs = Vec::new();
    for jobs in ["-j1", "-j2"] {
        let output = tmp.path().join(format!("{jobs}.m4b"));
        let out = run([
            "convert",
            "--json",
            jobs,
            "--segment-frames",
            "1024",
            "--channels",
            &channels.to_string(),
            "--bitrate",
            bitrate,
            "--aac-coder",
            coder,
            "-o",
            output.to_str().unwrap(),
            book.to_str().unwrap(),
        ]);
        assert_exit(&out, 0);
        outputs.push((output, json(&out)));
    }
    let (single_path, single_report) = &outputs[0];
    let (seg_path, seg_report) = &outputs[1];
    assert_eq!(seg_report["threads"], 2);
    assert_eq!(
        single_report["packets"], seg_report["packets"],
        "the same AAC frames"
    );
    assert_eq!(single_report["total_samples"], seg_report["total_samples"]);
    let (s1, s2) = (
        aiom4b::verify::summarize(single_path).unwrap(),
        aiom4b::verify::summarize(seg_path).unwrap(),
    );
    assert_eq!(s1.length.packets, s2.length.packets);
    assert_eq!(s1.decoded_samples, s2.decoded_samples);
    assert!(s2.inconsistencies.is_empty(), "{:?}", s2.inconsistencies);

    let (rate, single) = decode_m4b(single_path).unwrap();
    let (_, segmented) = decode_m4b(seg_path).unwrap();
    assert_eq!(rate, 44_100);
    assert_eq!(single.len(), usize::from(channels));
    assert_eq!(single[0].len(), segmented[0].len(), "decoded lengths");
    let source = source_pcm(&paths, rate, usize::from(channels));
    let total = source[0].len() as u64;
    let joins: Vec<u64> = (1..)
        .map(|k| k * SEGMENT_FRAMES * FRAME)
        .take_while(|j| *j < total)
        .collect();
    assert!(joins.len() >= MIN_JOINS, "{} joins", joins.len());
    let r = splice_report(&source, &single, &segmented, &joins);
    eprintln!(
        "splice {channels} ch {bitrate} {coder}: {}",
        serde_json::to_string(&r).unwrap()
    );
    assert!(
        r.joins - r.silent_joins >= MIN_JUDGED_JOINS,
        "too few audible joins: {r:?}"
    );
    assert!(r.passes, "{channels} ch {bitrate} {coder}: {r:#?}");
    r
}

#[test]
fn segmented_stereo_128k_twoloop_splices_are_inaudible() {
    check_splices(2, "128k", "twoloop");
}

#[test]
fn segmented_stereo_128k_fast_splices_are_inaudible() {
    check_splices(2, "128k", "fast");
}

#[test]
fn segmented_mono_64k_twoloop_splices_are_inaudible() {
    check_splices(1, "64k", "twoloop");
}

#[test]
fn segmented_mono_64k_fast_splices_are_inaudible() {
    check_splices(1, "64k", "fast");
}
