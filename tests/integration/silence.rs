//! Chapters from pauses and snapping, on generated speech whose pauses are known to the sample.
//!
//! The book: sentences spoken by espeak-ng (its own leading and trailing silence trimmed),
//! separated by chapter pauses of known lengths — digital silence, or −50 dBFS noise — and cut
//! into MP3 files at places that are not pauses (one cut inside a pause), so pauses cross file
//! boundaries. A chapter made from a pause starts `CHAPTER_LEAD_SECS` before the speech
//! resumes; the truth is that point, from the composed PCM, and the tolerance is 50 ms.
use crate::common::{assert_exit, json, run, stderr, stdout};
use aiom4b::silence::{self, SilenceOptions, CHAPTER_LEAD_SECS};
use aiom4b::Tags;
use aiom4b::{plan, ChapterMode, ConvertOptions, ConvertReport, Converter, Limits, PlanOptions};
use aiom4b_testkit::fixtures::RateControl;
use aiom4b_testkit::mp3_writer::{Mp3Settings, Mp3Writer};
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) const RATE: u32 = 44_100;
/// How far a found chapter mark may be from the truth (the 50 ms).
const TOLERANCE_SECS: f64 = 0.050;

const TEXTS: [&str; 5] = [
    "The river ran under the old bridges. The captain counted the stars and thought of home.",
    "Winter came early that year. The village gathered wood for the long nights ahead.",
    "She opened the letter slowly. She read each line twice, then folded it away again.",
    "Morning light fell across the table. Nobody spoke. The kettle began to sing.",
    "At last the ship came home. The harbour bells rang out over the water.",
];

/// Spoken `text` at 44.1 kHz mono, without espeak-ng's own silence at either end.
fn speech(text: &str, dir: &Path) -> Vec<f32> {
    let wav = dir.join("speech.wav");
    let st = Command::new("espeak-ng")
        .args(["-s", "170", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng runs (apt-get install espeak-ng)");
    assert!(st.success());
    let bytes = std::fs::read(&wav).unwrap();
    // RIFF chunks: find "fmt " (rate) and "data".
    let (mut rate, mut data) = (0u32, &[][..]);
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..(at + 8 + len).min(bytes.len())];
        if id == b"fmt " {
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
        } else if id == b"data" {
            data = body;
        }
        at += 8 + len + (len & 1);
    }
    assert_eq!(rate, 22_050, "espeak-ng writes 22.05 kHz");
    let s: Vec<f32> = data
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
        .collect();
    // Trim what is below -50 dBFS at either end: espeak's silence, not speech.
    let loud = |x: &f32| x.abs() > 0.003;
    let a = s.iter().position(loud).unwrap();
    let b = s.iter().rposition(loud).unwrap() + 1;
    let s = &s[a..b];
    // 22.05 → 44.1 kHz, linear: the detector only looks at loudness.
    let mut out = Vec::with_capacity(s.len() * 2);
    for i in 0..s.len() {
        let next = s.get(i + 1).copied().unwrap_or(0.0);
        out.push(s[i]);
        out.push((s[i] + next) / 2.0);
    }
    out
}

/// White noise at `db` dBFS RMS (a fixed seed).
fn noise(n: usize, db: f64, seed: &mut u32) -> Vec<f32> {
    let rms = 10f64.powf(db / 20.0);
    (0..n)
        .map(|_| {
            *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let u = (*seed >> 8) as f64 / (1u32 << 24) as f64 * 2.0 - 1.0;
            (u * rms * 3f64.sqrt()) as f32
        })
        .collect()
}

/// A generated book and the truth about it.
pub(crate) struct Book {
    pub(crate) dir: PathBuf,
    /// The chapter pauses, `[start, end)` in samples at [`RATE`].
    pub(crate) pauses: Vec<(u64, u64)>,
    /// Where each file starts on the book's timeline.
    file_starts: Vec<u64>,
    pub(crate) total: u64,
}

impl Book {
    /// Where a chapter made from pause `k` starts.
    pub(crate) fn mark(&self, k: usize) -> u64 {
        let (a, b) = self.pauses[k];
        let lead = (CHAPTER_LEAD_SECS * RATE as f64).round() as u64;
        (a + (b - a) / 2).max(b - lead)
    }
}

/// Five spoken chapters with pauses of 2.0, 2.5, 3.0 and 2.0 s; the second pause is −50 dBFS
/// noise, the others digital silence; with `floor`, −50 dBFS noise under everything. Three
/// files, cut in speech and in the third pause.
pub(crate) fn make_book(root: &Path, floor: bool) -> Book {
    let dir = root.join("book");
    std::fs::create_dir_all(&dir).unwrap();
    let pause_secs = [2.0, 2.5, 3.0, 2.0];
    let mut seed = 7u32;
    let mut pcm: Vec<f32> = Vec::new();
    let mut pauses = Vec::new();
    for (i, text) in TEXTS.iter().enumerate() {
        pcm.extend(speech(text, root));
        if let Some(&secs) = pause_secs.get(i) {
            let n = (secs * RATE as f64) as usize;
            let start = pcm.len() as u64;
            if i == 1 {
                pcm.extend(noise(n, -50.0, &mut seed));
            } else {
                pcm.extend(std::iter::repeat_n(0.0, n));
            }
            pauses.push((start, pcm.len() as u64));
        }
    }
    if floor {
        let floor = noise(pcm.len(), -50.0, &mut seed);
        for (x, n) in pcm.iter_mut().zip(floor) {
            *x += n;
        }
    }
    let total = pcm.len() as u64;
    // Cuts: in the middle of the second chapter's speech, and inside the third pause.
    let cut1 = (pauses[0].1 + pauses[1].0) / 2;
    let cut2 = pauses[2].0 + 30_000;
    let file_starts = vec![0, cut1, cut2];
    let bounds = [0, cut1, cut2, total];
    for k in 0..3 {
        let settings = Mp3Settings {
            sample_rate: RATE,
            channels: 1,
            rate_control: RateControl::Cbr {
                bitrate_bps: 96_000,
            },
        };
        let tags = Tags {
            title: Some(format!("Part {}", k + 1)),
            ..Tags::default()
        };
        let path = dir.join(format!("{:02}.mp3", k + 1));
        let mut w = Mp3Writer::create(&path, &settings, &tags, None).unwrap();
        w.write_interleaved(&pcm[bounds[k] as usize..bounds[k + 1] as usize])
            .unwrap();
        w.finish().unwrap();
    }
    Book {
        dir,
        pauses,
        file_starts,
        total,
    }
}

fn test_silence() -> SilenceOptions {
    let mut o = SilenceOptions::default();
    // The generated chapters are 5–8 s long.
    o.min_chapter_secs = 3.0;
    o.max_chapter_secs = 0.0;
    o
}

pub(crate) fn convert(
    book: &Book,
    out: &Path,
    options: ConvertOptions,
    rate: Option<u32>,
) -> ConvertReport {
    let mut po = PlanOptions::default();
    po.output = Some(out.to_path_buf());
    po.target.sample_rate = rate;
    let planned = plan::plan(
        std::slice::from_ref(&book.dir),
        &aiom4b::ScanOptions::default(),
        &Limits::default(),
        &po,
    )
    .unwrap();
    Converter::new(options)
        .convert(&planned, &aiom4b::NoProgress, &aiom4b::CancelToken::new())
        .unwrap()
}

/// Asserts that `starts` (samples at `rate`) are 0 and the truth's marks, each within 50 ms.
#[track_caller]
fn assert_marks(book: &Book, starts: &[u64], rate: u32, what: &str) {
    let at = |s: u64, r: u32| s as f64 / r as f64;
    let truth: Vec<f64> = std::iter::once(0.0)
        .chain((0..book.pauses.len()).map(|k| at(book.mark(k), RATE)))
        .collect();
    let got: Vec<f64> = starts.iter().map(|&s| at(s, rate)).collect();
    assert_eq!(
        got.len(),
        truth.len(),
        "{what}: one chapter per chapter pause, none at sentence pauses: got {got:.3?}, truth {truth:.3?}"
    );
    for (g, t) in got.iter().zip(&truth) {
        assert!(
            (g - t).abs() <= TOLERANCE_SECS,
            "{what}: mark at {g:.3} s, truth {t:.3} s (all: {got:.3?} vs {truth:.3?})"
        );
    }
}

fn silence_options(jobs: usize, segment_frames: u64) -> ConvertOptions {
    let mut o = ConvertOptions::default();
    o.jobs = jobs;
    o.segment_frames = segment_frames;
    o.chapters = ChapterMode::Silence;
    o.silence = test_silence();
    o
}

#[test]
fn silence_chapters_on_the_ranged_path_with_many_ranges() {
    let tmp = tempfile::tempdir().unwrap();
    let book = make_book(tmp.path(), false);
    let out = tmp.path().join("out.m4b");
    // 64 frames ≈ 1.5 s per range: several boundaries fall inside the pauses.
    let r = convert(&book, &out, silence_options(2, 64), None);
    assert!(r.joins.len() > 10, "ranges: {:?}", r.joins);
    assert_eq!(r.total_samples, book.total);
    let starts: Vec<u64> = r.chapters.iter().map(|c| c.start_samples).collect();
    assert_marks(&book, &starts, r.sample_rate, "ranged");
    assert_eq!(r.chapters[2].title, "Chapter 3");
    // What the file says (an independent reader).
    let s = aiom4b::verify::summarize(&out).unwrap();
    let written: Vec<u64> = s
        .chapter_track
        .as_ref()
        .unwrap()
        .chapters
        .iter()
        .map(|m| m.start_samples)
        .collect();
    assert_marks(&book, &written, s.sample_rate, "ranged, read back");
}

#[test]
fn silence_chapters_in_order_over_a_noise_floor() {
    let tmp = tempfile::tempdir().unwrap();
    let book = make_book(tmp.path(), true);
    let out = tmp.path().join("out.m4b");
    let r = convert(&book, &out, silence_options(1, 0), None);
    assert!(r.joins.is_empty(), "one encoder");
    let starts: Vec<u64> = r.chapters.iter().map(|c| c.start_samples).collect();
    assert_marks(&book, &starts, r.sample_rate, "in order, -50 dB floor");
}

#[test]
fn silence_chapters_after_resampling_are_on_the_output_timeline() {
    let tmp = tempfile::tempdir().unwrap();
    let book = make_book(tmp.path(), false);
    let out = tmp.path().join("out.m4b");
    // 48 kHz: the in-order segmented path, positions counted after the resampler.
    let r = convert(&book, &out, silence_options(2, 0), Some(48_000));
    assert_eq!(r.sample_rate, 48_000);
    let starts: Vec<u64> = r.chapters.iter().map(|c| c.start_samples).collect();
    assert_marks(&book, &starts, 48_000, "resampled");
}

#[test]
fn chapters_detect_reads_an_m4b_and_proposes_the_pauses() {
    let tmp = tempfile::tempdir().unwrap();
    let book = make_book(tmp.path(), false);
    let out = tmp.path().join("out.m4b");
    let mut o = ConvertOptions::default();
    o.jobs = 2;
    convert(&book, &out, o, None);

    // The library: one decode of the M4B, positions on the presentation timeline.
    let found = silence::detect_file(&out, &test_silence()).unwrap();
    assert_eq!(found.sample_rate, RATE);
    assert!(found.total_samples.abs_diff(book.total) < 1024);
    let ch =
        silence::chapters_from_pauses(&found.pauses, found.total_samples, RATE, &test_silence());
    let starts: Vec<u64> = ch.iter().map(|c| c.start_samples).collect();
    assert_marks(&book, &starts, RATE, "detect_file");
    // Sentence pauses are found too (they split overlong stretches), but are no chapters.
    assert!(
        found.pauses.len() > book.pauses.len(),
        "sentence pauses: {:?}",
        found.pauses
    );

    // The command: chapters-file lines that `--chapters-file` reads back.
    let o = run([
        "chapters".as_ref(),
        "detect".as_ref(),
        out.as_os_str(),
        "--min-chapter".as_ref(),
        "3s".as_ref(),
        "--max-chapter".as_ref(),
        "0".as_ref(),
    ]);
    assert_exit(&o, 0);
    let file = tmp.path().join("chapters.txt");
    std::fs::write(&file, stdout(&o)).unwrap();
    let parsed = aiom4b::chapters::parse_chapters_file(&file).unwrap();
    let (list, _) = aiom4b::chapters::timed_to_samples(&parsed, RATE, book.total, &file).unwrap();
    let starts: Vec<u64> = list.iter().map(|c| c.start_samples).collect();
    assert_marks(&book, &starts, RATE, "chapters detect");
    assert_eq!(list[4].title, "Chapter 5");

    let o = run([
        "chapters".as_ref(),
        "detect".as_ref(),
        out.as_os_str(),
        "--json".as_ref(),
        "--min-chapter".as_ref(),
        "3s".as_ref(),
        "--silence-db".as_ref(),
        "-35dB".as_ref(),
    ]);
    assert_exit(&o, 0);
    let doc = json(&o);
    assert_eq!(doc["chapters"].as_array().unwrap().len(), 5, "{doc:#}");
    let long: Vec<&serde_json::Value> = doc["pauses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["chapter_pause"] == true)
        .collect();
    assert_eq!(long.len(), 4, "{doc:#}");
    for (p, &(a, b)) in long.iter().zip(&book.pauses) {
        let secs = |s: u64| s as f64 / RATE as f64;
        let (s, e) = (
            p["start_secs"].as_f64().unwrap(),
            p["end_secs"].as_f64().unwrap(),
        );
        // The end (speech resumes) is what places chapters: 50 ms. The start may be earlier:
        // a word's fading tail drops under -35 dB before its last sample above -50 dB (the
        // truth's trim level), by ~70 ms with espeak-ng; never later.
        assert!(
            (e - secs(b)).abs() <= TOLERANCE_SECS
                && s <= secs(a) + TOLERANCE_SECS
                && s >= secs(a) - 0.15,
            "pause {s:.3}..{e:.3} s, truth {:.3}..{:.3}",
            secs(a),
            secs(b)
        );
    }

    // Shortest and longest chapter on the same pauses. A shortest chapter longer than the
    // gaps between some pauses drops the shorter pauses near longer ones.
    let mut o = test_silence();
    o.min_chapter_secs = 12.0;
    let ch = silence::chapters_from_pauses(&found.pauses, found.total_samples, RATE, &o);
    assert!(ch.len() < 5, "{ch:?}");
    for w in ch.windows(2) {
        assert!(w[1].start_samples - w[0].start_samples >= 12 * RATE as u64);
    }
    // Every chapter starts at a chapter pause's mark.
    for c in &ch[1..] {
        assert!(
            (0..4).any(
                |k| c.start_samples.abs_diff(book.mark(k)) as f64 / RATE as f64 <= TOLERANCE_SECS
            ),
            "{ch:?}"
        );
    }
    // A longest chapter shorter than the chapters splits them at sentence pauses.
    let mut o = test_silence();
    o.min_chapter_secs = 1.5;
    o.max_chapter_secs = 4.0;
    let ch = silence::chapters_from_pauses(&found.pauses, found.total_samples, RATE, &o);
    assert!(ch.len() > 5, "{ch:?}");
    let sentence_marks = ch[1..]
        .iter()
        .filter(|c| (0..4).all(|k| c.start_samples.abs_diff(book.mark(k)) > RATE as u64 / 10))
        .count();
    assert!(sentence_marks > 0, "{ch:?}");
    for c in &ch[1..] {
        assert!(
            found.pauses.iter().any(|p| c.start_samples == p.mark(RATE)),
            "every split is at a pause: {ch:?}"
        );
    }
}

#[test]
fn snapping_moves_file_and_chapters_file_marks_onto_pauses() {
    let tmp = tempfile::tempdir().unwrap();
    let book = make_book(tmp.path(), false);
    let secs = |s: u64| s as f64 / RATE as f64;

    // Per-file marks, ranged path: the second file starts in speech, more than 2 s from a
    // pause? It starts midway between pauses 0 and 1, so it finds none in ±1 s; the third
    // starts inside pause 2 and snaps onto its mark.
    let out = tmp.path().join("files.m4b");
    let mut o = ConvertOptions::default();
    o.jobs = 2;
    o.segment_frames = 64;
    o.silence = test_silence();
    o.snap_to_silence = Some(1.0);
    let r = convert(&book, &out, o, None);
    assert_eq!(r.snapped.len(), 3, "{:?}", r.snapped);
    assert!(r.snapped[0].found && r.snapped[0].moved_by == 0);
    assert!(!r.snapped[1].found, "{:?}", r.snapped);
    assert_eq!(r.chapters[1].start_samples, book.file_starts[1]);
    assert!(r.snapped[2].found, "{:?}", r.snapped);
    assert!(
        (secs(r.chapters[2].start_samples) - secs(book.mark(2))).abs() <= TOLERANCE_SECS,
        "{:?}",
        r.chapters
    );
    assert!(r
        .findings
        .iter()
        .any(|f| f.message.contains("no pause in the snap window")));

    // A chapters file from "another edition": marks about a second off, one far from any
    // pause; through the command line, with the report in --json and on stderr.
    let truth: Vec<f64> = (0..4).map(|k| secs(book.mark(k))).collect();
    let lines = format!(
        "00:00:00.000 Opening\n{} Two\n{} Three\n{} Four\n{} Five\n{} Nowhere\n",
        aiom4b::chapters::format_millis(((truth[0] + 0.9) * 1000.0) as u64),
        aiom4b::chapters::format_millis(((truth[1] - 1.1) * 1000.0) as u64),
        aiom4b::chapters::format_millis(((truth[2] + 1.3) * 1000.0) as u64),
        aiom4b::chapters::format_millis(((truth[3] - 0.7) * 1000.0) as u64),
        aiom4b::chapters::format_millis(((truth[3] + 3.5) * 1000.0) as u64),
    );
    let file = tmp.path().join("edition.txt");
    std::fs::write(&file, lines).unwrap();
    let out = tmp.path().join("snapped.m4b");
    let data = tmp.path().join("data");
    let o = run([
        "convert".as_ref(),
        "--json".as_ref(),
        "--no-backup".as_ref(),
        "-j".as_ref(),
        "1".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--chapters-file".as_ref(),
        file.as_os_str(),
        "--snap-to-silence".as_ref(),
        "2s".as_ref(),
        "--min-chapter".as_ref(),
        "3s".as_ref(),
        book.dir.as_os_str(),
    ]);
    assert_exit(&o, 0);
    let doc = json(&o);
    let snapped = doc["snapped"].as_array().unwrap();
    assert_eq!(snapped.len(), 6, "{doc:#}");
    for (k, t) in truth.iter().enumerate() {
        let s = &snapped[k + 1];
        assert_eq!(s["found"], true, "{s}");
        let at = s["chapter"]["start_samples"].as_u64().unwrap();
        assert!((secs(at) - t).abs() <= TOLERANCE_SECS, "{s} vs {t}");
        assert!(
            s["moved_by"].as_i64().unwrap().abs() > RATE as i64 / 2,
            "{s}"
        );
    }
    assert_eq!(snapped[5]["found"], false, "{doc:#}");
    assert_eq!(snapped[5]["moved_by"], 0);
    assert!(
        stderr(&o).contains("\"Nowhere\"") && stderr(&o).contains("no pause in the snap window"),
        "{}",
        stderr(&o)
    );
    let chapters = doc["chapters"].as_array().unwrap();
    assert_eq!(chapters[2]["title"], "Three");
    assert!(
        (secs(chapters[2]["start_samples"].as_u64().unwrap()) - truth[1]).abs() <= TOLERANCE_SECS
    );
}

#[test]
fn bad_silence_flags_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let m4b = tmp.path().join("missing.m4b");
    let o = run([
        "chapters".as_ref(),
        "detect".as_ref(),
        m4b.as_os_str(),
        "--min-chapter".as_ref(),
        "60s".as_ref(),
        "--max-chapter".as_ref(),
        "90s".as_ref(),
    ]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("--max-chapter"), "{}", stderr(&o));
    let o = run([
        "chapters".as_ref(),
        "detect".as_ref(),
        m4b.as_os_str(),
        "--silence-db".as_ref(),
        "loud".as_ref(),
    ]);
    assert_exit(&o, 2);
}
