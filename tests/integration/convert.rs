//! The conversion (issue 3) end to end through `aiom4b convert`: chapter arithmetic on a
//! 300-file book, pitch and length across mixed inputs, tags and cover, damaged inputs, a full
//! disk, Ctrl-C, chapter options, `--overwrite`, hostile output names, `aiom4b verify`, and
//! gaplessness. Outputs are read back by `verify::summarize` (box walker + Symphonia), by
//! FFmpeg's decoder for the audio itself, and by `ffprobe`.
use crate::common::*;
use aiom4b::verify::{summarize, M4bSummary};
use aiom4b::{Picture, Tags};
use aiom4b_testkit::fixtures::{test_jpeg, write_hostile, write_mp3, Length, Mp3Spec, Signal};
use aiom4b_testkit::m4b_reader::decode_m4b;
use serde_json::Value;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// Chapter marks stored by the muxer: the QuickTime chapter track counts in milliseconds, so a
/// mark read back may be off by up to one tick (44.1 samples at 44.1 kHz) plus rounding.
fn ms_tick(rate: u32) -> u64 {
    u64::from(rate).div_ceil(1000) + 1
}

/// `aiom4b convert --json --quiet -o OUTPUT [extra…] FOLDER`, expecting success; returns the
/// report.
pub(crate) fn convert_ok(folder: &Path, output: &Path, extra: &[&str]) -> Value {
    let out = convert(folder, output, extra);
    assert_exit(&out, 0);
    json(&out)
}

fn convert(folder: &Path, output: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<OsString> = vec![
        "convert".into(),
        "--json".into(),
        "-o".into(),
        output.into(),
    ];
    args.extend(extra.iter().map(Into::into));
    args.push(folder.into());
    run(args)
}

pub(crate) fn report_starts(report: &Value) -> Vec<u64> {
    report["chapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["start_samples"].as_u64().unwrap())
        .collect()
}

fn track_starts(s: &M4bSummary) -> Vec<u64> {
    s.chapter_track
        .as_ref()
        .expect("a QuickTime chapter track")
        .chapters
        .iter()
        .map(|c| c.start_samples)
        .collect()
}

/// Asserts that `got[i]` is within `tol` of `want[i]` for every i (and that the lengths agree).
#[track_caller]
fn assert_close(got: &[u64], want: &[u64], tol: u64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: count");
    let worst = got
        .iter()
        .zip(want)
        .enumerate()
        .max_by_key(|(_, (g, w))| g.abs_diff(**w))
        .map(|(i, (g, w))| (i, *g, *w));
    if let Some((i, g, w)) = worst {
        assert!(
            g.abs_diff(w) <= tol,
            "{what}: entry {i} is {g}, want {w} ± {tol}"
        );
    }
}

#[test]
fn three_hundred_chapters_land_on_the_decoded_sample_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    std::fs::create_dir_all(&book).unwrap();
    const FILES: usize = 300;
    const RATE: u32 = 22_050;
    let mut paths = Vec::new();
    for i in 0..FILES {
        // 0.5–1 s, never a whole number of MP3 (576) or AAC (1024) frames, so every chapter
        // start falls inside a frame and rounding errors would accumulate visibly.
        let samples = 11_025 + (i as u64 * 7_919) % 11_025;
        let mut spec = sine_spec(440.0 + i as f64, samples, RATE, 1, i % 3 == 0);
        spec.tags.title = Some(format!("Teil {}", i + 1));
        let p = book.join(format!("{:03}.mp3", i + 1));
        write_mp3(&p, &spec).unwrap();
        paths.push(p);
    }
    let (want_starts, want_total) = cumulative_starts(&paths, RATE);
    let output = tmp.path().join("300.m4b");
    // `--preset source` keeps 22.05 kHz mono: no resampling, so the clock is sample-exact.
    let report = convert_ok(&book, &output, &["--preset", "source"]);

    assert_eq!(report["sample_rate"], RATE);
    assert_eq!(report["channels"], 1);
    // The engine's own clock is the decoded length, exactly.
    assert_eq!(report_starts(&report), want_starts, "report chapter starts");
    assert_eq!(report["total_samples"], want_total);
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "chpl_truncated" && f["severity"] == "warning"),
        "no chpl warning in {:#}",
        report["findings"]
    );

    let s = summarize(&output).unwrap();
    assert!(s.inconsistencies.is_empty(), "{:?}", s.inconsistencies);
    assert_eq!((s.sample_rate, s.channels), (RATE, 1));
    assert!(
        s.decoded_samples.abs_diff(want_total) <= AAC_FRAME,
        "length {} vs {want_total}",
        s.decoded_samples
    );
    let track = s.chapter_track.as_ref().unwrap();
    assert_eq!(
        track.chapters.len(),
        FILES,
        "every chapter in the chapter track"
    );
    assert_close(&track_starts(&s), &want_starts, AAC_FRAME, "chapter track");
    for (i, c) in track.chapters.iter().enumerate() {
        assert_eq!(c.title, format!("Teil {}", i + 1));
    }
    let chpl = s.chpl.as_ref().expect("a chpl box");
    assert_eq!(chpl.version, 1, "VLC reads only chpl version 1");
    assert_eq!(chpl.declared_count, 255);
    assert_eq!(chpl.chapters.len(), aiom4b::chapters::CHPL_MAX_CHAPTERS);
    let chpl_starts: Vec<u64> = chpl.chapters.iter().map(|c| c.start_samples).collect();
    assert_close(&chpl_starts, &want_starts[..255], AAC_FRAME, "chpl");
}

#[test]
fn mixed_rates_channels_and_vbr_keep_length_and_pitch() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    std::fs::create_dir_all(&book).unwrap();
    // (rate, channels, vbr, tone): every combination the issue names, each with its own pitch.
    let inputs: [(u32, u16, bool, f64); 5] = [
        (22_050, 1, false, 440.0),
        (44_100, 2, true, 523.25),
        (48_000, 2, false, 659.25),
        (48_000, 1, true, 784.0),
        (22_050, 2, true, 987.77),
    ];
    let mut paths = Vec::new();
    for (i, (rate, ch, vbr, freq)) in inputs.iter().enumerate() {
        // 1.5 s plus an odd remainder.
        let samples = u64::from(*rate) * 3 / 2 + 101 * i as u64;
        let p = book.join(format!("{:02}.mp3", i + 1));
        write_mp3(&p, &sine_spec(*freq, samples, *rate, *ch, *vbr)).unwrap();
        paths.push(p);
    }
    const OUT_RATE: u32 = 44_100;
    let (want_starts, want_total) = cumulative_starts(&paths, OUT_RATE);
    for jobs in ["-j1", "-j2"] {
        let output = tmp.path().join(format!("mixed{jobs}.m4b"));
        let report = convert_ok(&book, &output, &[jobs]);
        assert_close(
            &report_starts(&report),
            &want_starts,
            RESAMPLE_SLACK * inputs.len() as u64,
            "report chapter starts",
        );
        let s = summarize(&output).unwrap();
        assert_eq!((s.sample_rate, s.channels), (OUT_RATE, 2));
        assert!(
            s.decoded_samples.abs_diff(want_total) <= AAC_FRAME,
            "{jobs}: length {} vs {want_total}",
            s.decoded_samples
        );
        assert_close(&track_starts(&s), &want_starts, AAC_FRAME, "chapter track");

        // The pitch of every chapter, on both channels, from FFmpeg's own AAC decoder.
        let (rate, planes) = decode_m4b(&output).unwrap();
        assert_eq!(rate, OUT_RATE);
        assert_eq!(planes.len(), 2);
        for (i, (_, _, _, freq)) in inputs.iter().enumerate() {
            let end = want_starts.get(i + 1).copied().unwrap_or(want_total);
            // Skip 50 ms at both ends: the tone's onset and the next file's.
            let margin = u64::from(OUT_RATE) / 20;
            let (a, b) = ((want_starts[i] + margin) as usize, (end - margin) as usize);
            for (c, plane) in planes.iter().enumerate() {
                let got = frequency(&plane[a..b], OUT_RATE);
                assert!(
                    (got / freq - 1.0).abs() < FREQUENCY_TOLERANCE,
                    "{jobs}: chapter {} channel {c}: {got:.2} Hz, want {freq}",
                    i + 1
                );
            }
        }
    }
}

#[test]
fn tags_narrator_description_series_and_cover_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    std::fs::create_dir_all(&book).unwrap();
    let jpeg = test_jpeg(120, 90);
    for i in 1..=2u32 {
        let spec = Mp3Spec {
            length: Length::Secs(1.0),
            tags: Tags {
                title: Some(format!("Kapitel {i}")),
                album: Some("Die Reise".into()),
                artist: Some("Anna Autorin".into()),
                composer: Some("Tag Narrator".into()),
                genre: Some("Hörbuch".into()),
                year: Some("2019".into()),
                track: Some(i),
                ..Tags::default()
            },
            cover: (i == 1).then(|| Picture {
                mime: "image/jpeg".into(),
                data: jpeg.clone(),
                width: Some(120),
                height: Some(90),
            }),
            ..Mp3Spec::default()
        };
        write_mp3(book.join(format!("0{i}.mp3")), &spec).unwrap();
    }
    let output = tmp.path().join("tagged.m4b");
    let description = "Eine lange Beschreibung – mit Umlauten äöü und \"Anführungszeichen\".";
    convert_ok(
        &book,
        &output,
        &[
            "--narrator",
            "Nora Sprecherin",
            "--description",
            description,
            "--series",
            "Reisen",
            "--series-part",
            "2",
        ],
    );
    let s = summarize(&output).unwrap();
    assert!(s.inconsistencies.is_empty(), "{:?}", s.inconsistencies);
    assert_eq!(s.major_brand, "M4B ");
    assert_eq!(s.codec, "aac");
    let t = &s.tags;
    assert_eq!(t.title.as_deref(), Some("Die Reise"));
    assert_eq!(t.album.as_deref(), Some("Die Reise"));
    assert_eq!(t.artist.as_deref(), Some("Anna Autorin"));
    assert_eq!(t.narrator.as_deref(), Some("Nora Sprecherin"), "©nrt");
    assert_eq!(t.composer.as_deref(), Some("Nora Sprecherin"));
    assert_eq!(t.genre.as_deref(), Some("Hörbuch"));
    assert_eq!(t.date.as_deref(), Some("2019"));
    assert_eq!(t.description.as_deref(), Some(description));
    assert_eq!(t.long_description.as_deref(), Some(description));
    assert_eq!(t.media_type, Some(2), "stik = audiobook");
    assert_eq!(t.series.as_deref(), Some("Reisen"));
    assert_eq!(t.series_part.as_deref(), Some("2"));
    assert!(t
        .encoder
        .as_deref()
        .is_some_and(|e| e.starts_with("aiom4b")));
    let cover = s.cover.as_ref().expect("cover");
    assert_eq!(cover.format, "jpeg");
    assert_eq!(cover.bytes, jpeg.len() as u64);
    assert!(cover.in_covr);
    let titles: Vec<&str> = s
        .chapter_track
        .as_ref()
        .unwrap()
        .chapters
        .iter()
        .map(|c| c.title.as_str())
        .collect();
    assert_eq!(titles, ["Kapitel 1", "Kapitel 2"]);

    // libavformat's view of the same file.
    let p = ffprobe(&output);
    let tags = &p["format"]["tags"];
    assert_eq!(tags["title"], "Die Reise", "{p:#}");
    assert_eq!(tags["artist"], "Anna Autorin");
    assert_eq!(tags["composer"], "Nora Sprecherin");
    assert_eq!(tags["genre"], "Hörbuch");
    assert_eq!(tags["description"], description);
    assert_eq!(tags["media_type"], "2");
    assert_eq!(tags["major_brand"], "M4B ");
    let streams = p["streams"].as_array().unwrap();
    let audio = streams.iter().find(|s| s["codec_type"] == "audio").unwrap();
    assert_eq!(audio["codec_name"], "aac");
    assert_eq!(audio["sample_rate"], "44100");
    assert_eq!(audio["channels"], 2);
    assert!(
        streams
            .iter()
            .any(|s| s["codec_name"] == "mjpeg" && s["disposition"]["attached_pic"] == 1),
        "no attached cover in {p:#}"
    );
    let chapters = p["chapters"].as_array().unwrap();
    assert_eq!(chapters.len(), 2);
    assert_eq!(chapters[1]["tags"]["title"], "Kapitel 2");
}

#[test]
fn damaged_inputs_fail_cleanly_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let hostile = write_hostile(tmp.path().join("hostile")).unwrap();
    for kind in ["truncated", "corrupt_middle"] {
        let damaged = &hostile.iter().find(|(_, k)| *k == kind).unwrap().0;
        let book = tmp.path().join(kind);
        std::fs::create_dir_all(&book).unwrap();
        let good = sine_spec(440.0, 88_200 + 17, 44_100, 2, false);
        write_mp3(book.join("01 - before.mp3"), &good).unwrap();
        let bad = book.join("02 - damaged.mp3");
        std::fs::copy(damaged, &bad).unwrap();
        write_mp3(book.join("03 - after.mp3"), &good).unwrap();
        let before = digest_tree(&book);
        let out_dir = tmp.path().join(format!("{kind}-out"));
        let output = out_dir.join("book.m4b");

        for jobs in ["-j1", "-j2"] {
            let out = convert(&book, &output, &[jobs]);
            assert_exit(&out, 1);
            let err = stderr(&out);
            assert!(
                err.contains("02 - damaged.mp3") && err.contains("--allow-damaged"),
                "{kind} {jobs}: the message must name the file and the way out:\n{err}"
            );
            // Truncation is called so; damage in the middle is not.
            assert_eq!(
                err.contains("truncated"),
                kind == "truncated",
                "{kind} {jobs}: wrong diagnosis:\n{err}"
            );
            assert!(!output.exists(), "{kind} {jobs}: output written");
            assert_no_part(&out_dir);
        }

        let report = convert_ok(&book, &output, &["--allow-damaged"]);
        let findings = findings_where(&report, "kind", "damaged");
        assert_eq!(findings.len(), 1, "{kind}: {findings:#?}");
        assert!(
            findings[0]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("02 - damaged.mp3")),
            "{kind}: {findings:#?}"
        );
        let message = findings[0]["message"].as_str().unwrap();
        // Damage in the middle is found by the decoder and counted in frames; a truncation
        // already by the plan (issue 10, item 12), which says how much audio is missing.
        assert!(
            !message.starts_with("0 ")
                && message.contains(if kind == "truncated" {
                    "s of audio missing"
                } else {
                    "damaged frame"
                }),
            "{kind}: {message}"
        );
        assert_eq!(
            message.contains("truncated"),
            kind == "truncated",
            "{message}"
        );
        // Chapter 3 starts where the audio that actually decoded from file 2 ends, not where
        // its header promised (the Xing header still claims the full 4 s).
        let first = symphonia_length(&book.join("01 - before.mp3")).samples;
        let decoded = engine_decoded_samples(&bad, 44_100, 2);
        let promised = 4 * 44_100;
        let starts = report_starts(&report);
        assert_eq!(starts, [0, first, first + decoded], "{kind}");
        assert!(
            decoded + AAC_FRAME < promised,
            "{kind}: decoded {decoded} of {promised} — the fixture is not damaged enough to tell"
        );
        let s = summarize(&output).unwrap();
        assert_close(&track_starts(&s), &starts, ms_tick(44_100), "chapter track");
        let total = report["total_samples"].as_u64().unwrap();
        assert_eq!(total, 2 * first + decoded);
        assert!(s.decoded_samples.abs_diff(total) <= AAC_FRAME);
        assert_eq!(digest_tree(&book), before, "{kind}: sources changed");
        assert_eq!(entries(&out_dir), ["book.m4b"]);
    }
}

/// Samples the engine's own decoder (FFmpeg, gapless, at the output format) gets from `path`.
fn engine_decoded_samples(path: &Path, rate: u32, channels: usize) -> u64 {
    let input = aiom4b::__internals::input::open_mp3(path).unwrap();
    let stats = aiom4b::__internals::decode::decode_file(
        input,
        rate,
        channels,
        16_384,
        &|| false,
        &mut |_| Ok(()),
    )
    .unwrap();
    stats.output_samples
}

/// A book of 3 × 10 s of noise (~160 KB of MP3 each, ~480 KB of AAC at 128 kb/s), converted
/// to `output` by a child whose files cannot grow beyond 256 KiB: the output hits the limit
/// while the copies in the backup, the database, its WAL and the log stay below it (a full
/// disk for this process alone, see `limit_file_size`). Returns the program's output and its
/// `DATA_DIR`.
fn convert_onto_a_full_disk(tmp: &Path, output: &Path, extra: &[&str]) -> (Output, PathBuf) {
    let data = tmp.join("data");
    let mut cmd = aiom4b();
    cmd.env("DATA_DIR", &data)
        .args(["convert", "-q", "-o"])
        .arg(output)
        .args(extra)
        .arg(tmp.join("book"));
    limit_file_size(&mut cmd, 256 * 1024);
    (run_cmd(cmd), data)
}

fn noise_book(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 1..=3 {
        let spec = Mp3Spec {
            length: Length::Secs(10.0),
            signal: Signal::Noise {
                amplitude: 0.5,
                seed: i,
            },
            ..Mp3Spec::default()
        };
        write_mp3(dir.join(format!("{i:02}.mp3")), &spec).unwrap();
    }
}

/// The job records of `data`, newest first.
fn jobs_in(data: &Path) -> Vec<Value> {
    let mut cmd = aiom4b();
    cmd.env("DATA_DIR", data).args(["jobs", "list", "--json"]);
    let out = run_cmd(cmd);
    assert_exit(&out, 0);
    json(&out).as_array().unwrap().clone()
}

#[test]
fn a_full_disk_fails_the_job_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    noise_book(&book);
    let before = digest_tree(&book);
    let disk = tmp.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let output = disk.join("book.m4b");
    for (n, jobs) in ["-j1", "-j2"].into_iter().enumerate() {
        let (out, data) = convert_onto_a_full_disk(tmp.path(), &output, &[jobs]);
        assert_exit(&out, 1);
        let err = stderr(&out);
        assert!(err.contains("book.m4b"), "{jobs}: name the output:\n{err}");
        assert!(entries(&disk).is_empty(), "{jobs}: {:?}", entries(&disk));
        assert_eq!(digest_tree(&book), before, "{jobs}: sources changed");
        let jobs_now = jobs_in(&data);
        assert_eq!(jobs_now.len(), n + 1);
        assert_eq!(jobs_now[0]["status"], "failed", "{jobs}: {:#}", jobs_now[0]);
        assert!(
            entries(&data.join("output")).is_empty(),
            "{jobs}: {:?}",
            entries(&data.join("output"))
        );
    }
}

/// What the user is told about a full disk: an output problem at the output's place ("disk
/// full at …"), not a processing error to report.
#[test]
fn full_disk_is_an_output_error() {
    let tmp = tempfile::tempdir().unwrap();
    noise_book(&tmp.path().join("book"));
    let output = tmp.path().join("book.m4b");
    let (out, data) = convert_onto_a_full_disk(tmp.path(), &output, &["--no-backup"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("(output error)"), "{err}");
    assert!(err.contains("disk full at"), "{err}");
    let job = &jobs_in(&data)[0];
    assert_eq!(job["error"]["category"], "output", "{job:#}");
}

#[test]
fn ctrl_c_exits_130_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    std::fs::create_dir_all(&book).unwrap();
    // ~150 s of audio: several seconds of single-threaded encoding, ample time to interrupt.
    for i in 1..=3 {
        let spec = Mp3Spec {
            length: Length::Secs(50.0),
            ..sine_spec(220.0 * i as f64, 0, 44_100, 2, false)
        };
        write_mp3(book.join(format!("{i:02}.mp3")), &spec).unwrap();
    }
    let before = digest_tree(&book);
    let out_dir = tmp.path().join("out");
    let output = out_dir.join("book.m4b");
    let mut cmd = aiom4b();
    cmd.args(["convert", "-j1", "-o"])
        .arg(&output)
        .arg(&book)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    // Interrupt once the conversion is under way: the `.part` exists only after the Ctrl-C
    // handler is installed, so the signal cannot hit the default handler.
    let t0 = Instant::now();
    while !entries(&out_dir).iter().any(|n| n.ends_with(".part")) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the conversion never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    // From Rust, not the `kill` program: procps is not on a minimal system.
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let out = wait_with_deadline(child, CLI_DEADLINE);
    assert_exit(&out, 130);
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    assert!(entries(&out_dir).is_empty(), "{:?}", entries(&out_dir));
    assert_eq!(digest_tree(&book), before);
}

fn two_file_book(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (1..=2)
        .map(|i| {
            let p = dir.join(format!("0{i} - Part {i}.mp3"));
            write_mp3(&p, &sine_spec(440.0, 3 * 44_100, 44_100, 2, false)).unwrap();
            p
        })
        .collect()
}

#[test]
fn chapters_file_and_no_chapters() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    two_file_book(&book);
    let chapters = tmp.path().join("chapters.txt");
    std::fs::write(
        &chapters,
        "# chapters of the test book\n\
         00:00:00.000 Opening Credits\n\
         \n\
         00:00:01.250 Kapitel 1: Der Sturm\n\
         0:00:04 Chapter 2\n\
         5.5 Epilog\n",
    )
    .unwrap();
    let output = tmp.path().join("file-chapters.m4b");
    let report = convert_ok(
        &book,
        &output,
        &["--chapters-file", chapters.to_str().unwrap()],
    );
    let want = [0, 55_125, 176_400, 242_550];
    assert_eq!(report_starts(&report), want);
    let s = summarize(&output).unwrap();
    assert_close(&track_starts(&s), &want, ms_tick(44_100), "chapter track");
    let titles: Vec<&str> = s
        .chapter_track
        .as_ref()
        .unwrap()
        .chapters
        .iter()
        .map(|c| c.title.as_str())
        .collect();
    assert_eq!(
        titles,
        [
            "Opening Credits",
            "Kapitel 1: Der Sturm",
            "Chapter 2",
            "Epilog"
        ]
    );

    // A chapter after the end of the book: an error naming the file and line, no output.
    let late = tmp.path().join("late.txt");
    std::fs::write(&late, "00:00:00 A\n00:00:07 B\n").unwrap();
    let bad_out = tmp.path().join("late.m4b");
    let out = convert(
        &book,
        &bad_out,
        &["--chapters-file", late.to_str().unwrap()],
    );
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("late.txt:2"), "{}", stderr(&out));
    assert!(!bad_out.exists());
    assert_no_part(tmp.path());

    // --no-chapters: neither a chapter track nor a chpl; the audio is all there.
    let output = tmp.path().join("none.m4b");
    let report = convert_ok(&book, &output, &["--no-chapters"]);
    assert!(report["chapters"].as_array().unwrap().is_empty());
    let s = summarize(&output).unwrap();
    assert!(s.chapter_track.is_none(), "{:?}", s.chapter_track);
    assert!(s.chpl.as_ref().is_none_or(|c| c.chapters.is_empty()));
    assert!(s.decoded_samples.abs_diff(6 * 44_100) <= AAC_FRAME);

    // The two cannot be combined: a usage error.
    let out = convert(
        &book,
        &output,
        &[
            "--no-chapters",
            "--chapters-file",
            chapters.to_str().unwrap(),
        ],
    );
    assert_exit(&out, 2);
}

#[test]
fn overwrite_is_refused_unless_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    two_file_book(&book);
    let output = tmp.path().join("book.m4b");
    convert_ok(&book, &output, &["--title", "First"]);
    let first = std::fs::read(&output).unwrap();

    let out = convert(&book, &output, &["--title", "Second"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("already exists") && stderr(&out).contains("--overwrite"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(&output).unwrap(),
        first,
        "refused, yet changed"
    );

    convert_ok(&book, &output, &["--title", "Second", "--overwrite"]);
    let s = summarize(&output).unwrap();
    assert_eq!(s.tags.title.as_deref(), Some("Second"));
    assert_eq!(entries(tmp.path()), ["book", "book.m4b"]);
}

#[test]
fn hostile_output_names_and_the_verify_command() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    two_file_book(&book);
    let out_dir = tmp.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    // A decoy for `concat:`/`file:` URL parsing.
    std::fs::write(tmp.path().join("y.m4b"), b"decoy").unwrap();
    for name in [
        "-rf.m4b",
        "concat:y.m4b",
        "file:y.m4b",
        "it's \"$(id)\" `x`.m4b",
        "new\nline – ü 🎧.m4b",
    ] {
        let output = out_dir.join(name);
        convert_ok(&book, &output, &["--quiet"]);
        assert!(output.is_file(), "{name:?} not written where asked");

        let out = run(["verify".as_ref(), "--json".as_ref(), output.as_os_str()]);
        assert_exit(&out, 0);
        let doc = json(&out);
        assert_eq!(doc["ok"], true, "{doc:#}");
        let sum = &doc["summary"];
        assert_eq!(sum["codec"], "aac");
        assert_eq!(sum["sample_rate"], 44_100);
        assert_eq!(sum["channels"], 2);
        assert_eq!(sum["major_brand"], "M4B ");
        assert_eq!(
            sum["chapter_track"]["chapters"].as_array().unwrap().len(),
            2
        );
    }
    assert_eq!(std::fs::read(tmp.path().join("y.m4b")).unwrap(), b"decoy");
    assert_eq!(entries(&out_dir).len(), 5);

    // verify on something that is not an M4B: exit 1, the file named.
    let mp3 = book.join("01 - Part 1.mp3");
    let out = run(["verify".as_ref(), mp3.as_os_str()]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("01 - Part 1.mp3"), "{}", stderr(&out));
}

#[test]
fn output_is_gapless_to_the_sample_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    std::fs::create_dir_all(&book).unwrap();
    // Lengths that are no multiple of any frame size, at the output rate and at two others.
    let files: [(u32, u64); 6] = [
        (44_100, 44_100 + 1),
        (44_100, 1_151),
        (44_100, 3 * 44_100 - 7),
        (48_000, 48_000 + 333),
        (22_050, 22_050 + 577),
        (44_100, 2_049),
    ];
    let mut paths = Vec::new();
    for (i, (rate, samples)) in files.iter().enumerate() {
        let spec = Mp3Spec {
            length: Length::Samples(*samples),
            sample_rate: *rate,
            channels: 2,
            signal: Signal::Noise {
                amplitude: 0.3,
                seed: i as u64,
            },
            ..Mp3Spec::default()
        };
        let p = book.join(format!("{:02}.mp3", i + 1));
        write_mp3(&p, &spec).unwrap();
        paths.push(p);
    }
    let (starts, total) = cumulative_starts(&paths, 44_100);
    for jobs in ["-j1", "-j2"] {
        let output = tmp.path().join(format!("gapless{jobs}.m4b"));
        let report = convert_ok(&book, &output, &[jobs]);
        let slack = RESAMPLE_SLACK * 2; // two resampled files
        assert!(
            report["total_samples"].as_u64().unwrap().abs_diff(total) <= slack,
            "{jobs}: engine clock {} vs {total}",
            report["total_samples"]
        );
        assert_close(&report_starts(&report), &starts, slack, "report starts");
        let s = summarize(&output).unwrap();
        assert!(s.inconsistencies.is_empty(), "{:?}", s.inconsistencies);
        assert!(
            s.decoded_samples.abs_diff(total) <= AAC_FRAME,
            "{jobs}: presentation length {} vs {total}",
            s.decoded_samples
        );
        let (_, planes) = decode_m4b(&output).unwrap();
        let decoded = planes[0].len() as u64;
        assert!(
            decoded.abs_diff(total) <= AAC_FRAME,
            "{jobs}: FFmpeg decodes {decoded} samples, want {total}"
        );
    }
}
