//! Resampled books on the multi-core path (issue 18, part 2): a 22.05 kHz mono book and a book
//! mixing 44.1 and 48 kHz files, converted by the ranged path (every worker decoding and
//! resampling its own stretch; the `-v` log says so), against the in-order conversion (`-j1`).
//!
//! What must be equal: the length, the packets, every chapter start (each file's exact
//! resampled length, known before decoding), and the PCM each encoder is fed (bit for bit: the
//! range tests in `ranges.rs` check the ranged decoder against the in-order one). What cannot be
//! equal: the AAC itself, because the ranged path runs several encoders; their joins are held to
//! the splice bar of `splice.rs`, as for books that need no resampling.
use crate::common::*;
use crate::convert::report_starts;
use crate::splice::source_pcm;
use aiom4b_testkit::fixtures::{write_mp3, Length, Mp3Spec, RateControl, Signal};
use aiom4b_testkit::m4b_reader::decode_m4b;
use aiom4b_testkit::quality::splice_report;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The `-v` log line of the ranged path, with how many files it resamples.
const RANGED: &str = "multi-core encoding, each worker decoding its own range";
/// The in-order path's log lines (chosen up front, or after a re-plan).
const IN_ORDER: [&str; 2] = [
    "encoding streamed segments in book order",
    "converting again in book order",
];
/// Pink noise for the splice comparison: every join falls on audible blocks (speech would
/// leave some in pauses, unjudged), as in the FDK splice test.
fn noise(seed: u64) -> Signal {
    Signal::Noise {
        amplitude: 0.5,
        seed,
    }
}

fn speech(seed: u64) -> Signal {
    Signal::SpeechLike { seed }
}

/// One file of a book.
struct File {
    name: &'static str,
    rate: u32,
    channels: u16,
    secs: f64,
    signal: Signal,
}

fn write_book(dir: &Path, files: &[File]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    files
        .iter()
        .map(|f| {
            let p = dir.join(f.name);
            write_mp3(
                &p,
                &Mp3Spec {
                    length: Length::Secs(f.secs),
                    sample_rate: f.rate,
                    channels: f.channels,
                    rate_control: RateControl::Cbr {
                        bitrate_bps: if f.rate < 32_000 { 48_000 } else { 128_000 },
                    },
                    signal: f.signal.clone(),
                    ..Mp3Spec::default()
                },
            )
            .unwrap();
            p
        })
        .collect()
}

/// Converts `book` with `-v --json` and the given arguments: the report and the log.
fn convert(book: &Path, out: &Path, args: &[&str]) -> (Value, String) {
    let mut all = vec!["convert", "-v", "--json", "-o", out.to_str().unwrap()];
    all.extend_from_slice(args);
    all.push(book.to_str().unwrap());
    let o = run(all);
    assert_exit(&o, 0);
    (json(&o), stderr(&o))
}

/// The log says the ranged path converted the book, resampling `resampled` files, and never
/// fell back to the in-order one.
fn assert_ranged(log: &str, resampled: usize) {
    let line = log
        .lines()
        .find(|l| l.contains(RANGED))
        .unwrap_or_else(|| panic!("the ranged path was not taken:\n{log}"));
    assert!(
        line.contains(&format!("resampled={resampled}")),
        "{resampled} resampled files expected: {line}"
    );
    for l in IN_ORDER {
        assert!(!log.contains(l), "the in-order path ran ({l}):\n{log}");
    }
}

fn joins(report: &Value) -> Vec<u64> {
    report["joins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// Converts the book in order and on the ranged path (segments of 1024 frames, so joins fall
/// mid-file, and inside resampled files), and checks everything that must match; with
/// `judge_joins`, the joins against the splice bar too.
fn check_book(files: &[File], channels: u16, bitrate: &str, resampled: usize, judge_joins: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    let paths = write_book(&book, files);
    check_ranged_book(&book, &paths, channels, bitrate, resampled, judge_joins);
}

/// [`check_book`] for a book already written in `book` (its files `paths`, in book order, of
/// any format), converted at 44.1 kHz.
pub fn check_ranged_book(
    book: &Path,
    paths: &[PathBuf],
    channels: u16,
    bitrate: &str,
    resampled: usize,
    judge_joins: bool,
) {
    let tmp = tempfile::tempdir().unwrap();
    let common = [
        "--channels",
        &channels.to_string(),
        "--bitrate",
        bitrate,
        "--sample-rate",
        "44100",
    ];
    let (single_path, multi_path) = (tmp.path().join("j1.m4b"), tmp.path().join("j2.m4b"));
    let (single, log1) = convert(book, &single_path, &[&["-j1"][..], &common].concat());
    let (multi, log2) = convert(
        book,
        &multi_path,
        &[&["-j2", "--segment-frames", "1024"][..], &common].concat(),
    );
    assert!(!log1.contains(RANGED), "-j1 is the in-order reference");
    assert_ranged(&log2, resampled);
    assert_eq!(multi["sample_rate"], 44_100);

    // The clock: each file's exact resampled length, as the in-order decode gives it.
    let mut want_starts = vec![0u64];
    for p in &paths[..paths.len() - 1] {
        let n = source_pcm(std::slice::from_ref(p), 44_100, usize::from(channels))[0].len();
        want_starts.push(want_starts.last().unwrap() + n as u64);
    }
    assert_eq!(
        report_starts(&single),
        want_starts,
        "in order: chapter starts"
    );
    assert_eq!(report_starts(&multi), want_starts, "ranged: chapter starts");
    assert_eq!(multi["total_samples"], single["total_samples"]);
    assert_eq!(multi["packets"], single["packets"]);

    // The files as written.
    let (s1, s2) = (
        aiom4b::verify::summarize(&single_path).unwrap(),
        aiom4b::verify::summarize(&multi_path).unwrap(),
    );
    assert_eq!(s1.decoded_samples, s2.decoded_samples);
    assert!(s2.inconsistencies.is_empty(), "{:?}", s2.inconsistencies);
    let (rate, a) = decode_m4b(&single_path).unwrap();
    let (_, b) = decode_m4b(&multi_path).unwrap();
    assert_eq!(rate, 44_100);
    assert_eq!(a[0].len(), b[0].len(), "decoded lengths");

    // The joins: on the caller's grid, and no worse than the rest of the file.
    let source = source_pcm(paths, 44_100, usize::from(channels));
    assert_eq!(
        source[0].len() as u64,
        multi["total_samples"].as_u64().unwrap()
    );
    let js = joins(&multi);
    // Enough joins to judge (and at least two to check the grid).
    assert!(js.len() >= if judge_joins { 5 } else { 2 }, "{js:?}");
    assert!(js
        .iter()
        .enumerate()
        .all(|(k, &j)| j == (k as u64 + 1) * 1024 * AAC_FRAME));
    let r = splice_report(&source, &a, &b, &js);
    eprintln!("resampled splice: {}", serde_json::to_string(&r).unwrap());
    // Away from the joins the two encodings hear the same PCM: a sample out of place would
    // cost the ranged one far more than a decibel everywhere.
    assert!(
        r.mean_other_excess_db < 1.0,
        "the ranged encoding as a whole: {r:#?}"
    );
    if judge_joins {
        assert_eq!(r.silent_joins, 0, "every join is judged: {r:?}");
        assert!(r.passes, "{r:#?}");
    }
}

#[test]
fn a_22khz_mono_book_converts_on_the_multi_core_path_exactly() {
    let base = 81;
    check_book(
        &[
            File {
                name: "01.mp3",
                rate: 22_050,
                channels: 1,
                secs: 71.3,
                signal: noise(base),
            },
            File {
                name: "02.mp3",
                rate: 22_050,
                channels: 1,
                secs: 82.9,
                signal: noise(base + 1),
            },
        ],
        1,
        "64k",
        2,
        true,
    );
}

/// The mixed book's exactness (path, length, packets, chapters). Its joins are not held to the
/// splice bar: in this layout the native encoder's joins miss it whether the middle file is at
/// 48 or at 44.1 kHz (nothing resampled), measured on pink noise at 128k stereo (join excess
/// over adjacent pairs 0.59 dB resampled, 0.85 dB not) and at 64k mono (1.37 dB resampled), and
/// on speech (seed 91: 1.26 dB resampled, 1.68 dB not), so the bar would not tell a resampling
/// fault from the encoder's own join cost. The encoders' input is what resampling decides, and
/// `ranges.rs` checks it bit for bit; the 22.05 kHz book above is held to the bar.
#[test]
fn a_book_mixing_44khz_and_48khz_converts_on_the_multi_core_path_exactly() {
    let base = 91;
    check_book(
        &[
            File {
                name: "01.mp3",
                rate: 44_100,
                channels: 2,
                secs: 47.7,
                signal: noise(base),
            },
            File {
                name: "02.mp3",
                rate: 48_000,
                channels: 2,
                secs: 61.31,
                signal: noise(base + 1),
            },
            File {
                name: "03.mp3",
                rate: 44_100,
                channels: 2,
                secs: 43.2,
                signal: noise(base + 2),
            },
        ],
        2,
        "128k",
        1,
        false,
    );
}

/// Without a caller-given grid, a resampled book's join moves into a nearby pause like any
/// book's (`ranges.rs`: `joins_move_into_a_nearby_pause_and_are_reported`), on the frame grid.
#[test]
fn a_resampled_books_join_moves_into_a_nearby_pause() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    let paths = write_book(
        &book,
        &[
            File {
                name: "01.mp3",
                rate: 22_050,
                channels: 1,
                secs: 20.0,
                signal: speech(41),
            },
            File {
                name: "02.mp3",
                rate: 22_050,
                channels: 1,
                secs: 1.5,
                signal: Signal::Silence,
            },
            File {
                name: "03.mp3",
                rate: 22_050,
                channels: 1,
                secs: 24.0,
                signal: speech(42),
            },
        ],
    );
    let (multi, log) = convert(&book, &tmp.path().join("j2.m4b"), &["-j2"]);
    assert_ranged(&log, 3);
    let (single, _) = convert(&book, &tmp.path().join("j1.m4b"), &["-j1"]);
    let js = joins(&multi);
    assert_eq!(js.len(), 1, "{multi:#}");
    let j = js[0];
    assert_eq!(j % AAC_FRAME, 0, "joins are on the frame grid");
    // The pause on the output clock (22.05 kHz to 44.1 kHz: exactly twice the input's).
    let pause = 20 * 44_100..(21.5 * 44_100.0) as u64;
    assert!(
        pause.contains(&(j - 2 * AAC_FRAME)) && pause.contains(&(j + AAC_FRAME)),
        "join at {j} is not inside the pause {pause:?}"
    );
    assert_eq!(multi["total_samples"], 2 * (45.5 * 22_050.0) as u64);
    assert_eq!(multi["total_samples"], single["total_samples"]);
    assert_eq!(multi["packets"], single["packets"]);
    assert_eq!(report_starts(&multi), report_starts(&single));
    assert_eq!(report_starts(&multi), [0, 40 * 22_050, 43 * 22_050]);
    drop(paths);
}
