//! The input phase (issue 2) end to end: order, hostile names, bad files, mixed formats, tags
//! and covers, symlink loops and FIFOs — seen through `plan::inspect` and `aiom4b probe`
//! (and `aiom4b convert` where the claim is "probe AND convert work").
use crate::common::*;
use aiom4b::plan::{self, Inspection};
use aiom4b::{CoverSource, FindingKind, Picture, Severity, Tags};
use aiom4b::{Limits, Order, PlanOptions, ScanOptions};
use aiom4b_testkit::fixtures::{
    test_jpeg, test_png, write_hostile, write_mp3, Length, Mp3Spec, Signal,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A scan over a symlink loop or next to a FIFO must finish in well under this; a hang does not.
const NO_HANG_DEADLINE: Duration = Duration::from_secs(60);

fn inspect(folders: &[PathBuf], order: Order) -> Inspection {
    let mut scan = ScanOptions::default();
    scan.order = order;
    plan::inspect(folders, &scan, &Limits::default(), &PlanOptions::default()).unwrap()
}

/// Relative paths of the planned tracks, as `/`-joined strings.
fn planned_order(ins: &Inspection) -> Vec<String> {
    let book = ins.book.as_ref().unwrap_or_else(|| {
        panic!("no book; findings: {:#?}", ins.findings);
    });
    book.tracks
        .iter()
        .map(|t| t.rel_path.to_string_lossy().into_owned())
        .collect()
}

/// The same list from `aiom4b probe --json`.
fn json_order(doc: &Value) -> Vec<String> {
    doc["book"]["tracks"]
        .as_array()
        .unwrap_or_else(|| panic!("no tracks in {doc:#}"))
        .iter()
        .map(|t| t["rel_path"].as_str().unwrap().to_string())
        .collect()
}

fn probe_json(folder: &Path, extra: &[&str]) -> Value {
    let mut args: Vec<std::ffi::OsString> = vec!["probe".into(), "--json".into()];
    args.extend(extra.iter().map(Into::into));
    args.push(folder.into());
    let out = run(args);
    assert_exit(&out, 0);
    json(&out)
}

#[test]
fn natural_order_puts_2_before_10_and_disc_folders_in_number_order() {
    let tmp = tempfile::tempdir().unwrap();
    // CD1/CD2/CD10 with 1, 2, 10 inside: code-point order would give CD1, CD10, CD2 and 1, 10, 2.
    let cds = tmp.path().join("cds");
    for rel in [
        "CD1/1.mp3",
        "CD1/2.mp3",
        "CD1/10.mp3",
        "CD2/1.mp3",
        "CD10/1.mp3",
    ] {
        let p = cds.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        small_mp3(&p);
    }
    // "Disc 2" vs "Disc 10", and spellings mixed in one book.
    let discs = tmp.path().join("discs");
    for rel in [
        "Disc 10/01.mp3",
        "Disc 2/01.mp3",
        "Disc 1/01.mp3",
        "Disc 1/02.mp3",
    ] {
        let p = discs.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        small_mp3(&p);
    }
    let mixed = tmp.path().join("mixed");
    for rel in ["CD10/a.mp3", "cd 2/a.mp3", "Disk 1/a.mp3"] {
        let p = mixed.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        small_mp3(&p);
    }

    let want_cds = [
        "CD1/1.mp3",
        "CD1/2.mp3",
        "CD1/10.mp3",
        "CD2/1.mp3",
        "CD10/1.mp3",
    ];
    let want_discs = [
        "Disc 1/01.mp3",
        "Disc 1/02.mp3",
        "Disc 2/01.mp3",
        "Disc 10/01.mp3",
    ];
    let want_mixed = ["Disk 1/a.mp3", "cd 2/a.mp3", "CD10/a.mp3"];
    for (folder, want) in [
        (&cds, &want_cds[..]),
        (&discs, &want_discs[..]),
        (&mixed, &want_mixed[..]),
    ] {
        let ins = inspect(std::slice::from_ref(folder), Order::Natural);
        assert_eq!(planned_order(&ins), want, "inspect {}", folder.display());
        let doc = probe_json(folder, &[]);
        assert_eq!(json_order(&doc), want, "probe --json {}", folder.display());
    }

    // Two folders are concatenated in the order given, each ordered on its own.
    let ins = inspect(&[discs.clone(), cds.clone()], Order::Natural);
    let want: Vec<&str> = want_discs.iter().chain(&want_cds).copied().collect();
    assert_eq!(planned_order(&ins), want);
}

#[test]
fn order_tags_and_order_alpha_are_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    std::fs::create_dir_all(&book).unwrap();
    // Natural 1, 2, 10; code points 1, 10, 2; disc/track tags 10 (1/1), 2 (1/2), 1 (2/1).
    for (name, disc, track) in [("1.mp3", 2, 1), ("2.mp3", 1, 2), ("10.mp3", 1, 1)] {
        let mut spec = sine_spec(440.0, 6615, 22_050, 1, false);
        spec.tags = Tags {
            title: Some(format!("disc {disc} track {track}")),
            album: Some("Tagged".into()),
            disc: Some(disc),
            track: Some(track),
            ..Tags::default()
        };
        write_mp3(book.join(name), &spec).unwrap();
    }
    let folders = [book.clone()];
    for (order, flag, want, by_tags) in [
        (
            Order::Natural,
            "natural",
            ["1.mp3", "2.mp3", "10.mp3"],
            false,
        ),
        (Order::Alpha, "alpha", ["1.mp3", "10.mp3", "2.mp3"], false),
        (Order::Tags, "tags", ["10.mp3", "2.mp3", "1.mp3"], true),
    ] {
        let ins = inspect(&folders, order);
        assert_eq!(planned_order(&ins), want, "{order:?}");
        assert_eq!(ins.ordered_by_tags, by_tags, "{order:?}");
        let doc = probe_json(&book, &["--order", flag]);
        assert_eq!(json_order(&doc), want, "--order {flag}");
        assert_eq!(doc["ordered_by_tags"], by_tags, "--order {flag}");
    }

    // With a track number missing, --order tags falls back to natural order instead of
    // guessing.
    let mut spec = sine_spec(440.0, 6615, 22_050, 1, false);
    spec.tags.album = Some("Tagged".into());
    write_mp3(book.join("3.mp3"), &spec).unwrap();
    let ins = inspect(&folders, Order::Tags);
    assert!(!ins.ordered_by_tags);
    assert_eq!(
        planned_order(&ins),
        ["1.mp3", "2.mp3", "3.mp3", "10.mp3"],
        "fallback order"
    );
}

#[test]
fn probe_prints_the_plan_titles_durations_format_and_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("The Book");
    std::fs::create_dir_all(&book).unwrap();
    let files = [
        (
            "01 - Opening.mp3",
            44_100,
            2,
            false,
            44_100 + 333,
            "Opening",
        ),
        (
            "02 - The Storm.mp3",
            44_100,
            2,
            true,
            2 * 44_100 + 1,
            "The Storm",
        ),
        ("03 - Home.mp3", 44_100, 2, false, 30_000, "Home"),
    ];
    for (name, rate, ch, vbr, samples, title) in files {
        let mut spec = sine_spec(440.0, samples, rate, ch, vbr);
        spec.tags = Tags {
            title: Some(title.into()),
            album: Some("Große Reise".into()),
            artist: Some("Ann Author".into()),
            composer: Some("Ned Narrator".into()),
            genre: Some("Audiobook".into()),
            year: Some("2021".into()),
            ..Tags::default()
        };
        write_mp3(book.join(name), &spec).unwrap();
    }
    let before = digest_tree(tmp.path());
    let out_path = tmp.path().join("out").join("plan.m4b");
    let doc = probe_json(&book, &["-o", out_path.to_str().unwrap()]);

    let b = &doc["book"];
    let tracks = b["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 3);
    let mut total = 0.0;
    for (t, (name, rate, ch, vbr, samples, title)) in tracks.iter().zip(files) {
        assert_eq!(t["rel_path"], name);
        assert_eq!(t["chapter_title"], title);
        let info = &t["info"];
        assert_eq!(info["sample_rate"], rate);
        assert_eq!(info["channels"], ch);
        assert_eq!(info["vbr"], vbr, "{name}");
        // The LAME header gives the exact gapless length: the plan's durations are exact.
        assert_eq!(info["exact_samples"], samples, "{name}");
        let secs = info["duration"]["secs"].as_f64().unwrap()
            + info["duration"]["nanos"].as_f64().unwrap() * 1e-9;
        let want = samples as f64 / f64::from(rate);
        assert!((secs - want).abs() < 1e-6, "{name}: {secs} s, want {want}");
        total += secs;
        assert_eq!(t["needs_resample"], false);
        assert_eq!(t["needs_remix"], false);
    }
    assert!(total > 3.0);
    let m = &b["metadata"];
    assert_eq!(m["title"], "Große Reise");
    assert_eq!(m["album"], "Große Reise");
    assert_eq!(m["author"], "Ann Author");
    assert_eq!(m["narrator"], "Ned Narrator");
    assert_eq!(m["genre"], "Audiobook");
    assert_eq!(m["year"], "2021");
    assert_eq!(b["target"]["sample_rate"], 44_100);
    assert_eq!(b["target"]["channels"], 2);
    assert_eq!(b["target"]["bitrate_bps"], 128_000);
    assert_eq!(b["output_path"], out_path.to_str().unwrap());
    assert!(doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["severity"] != "error"));

    // The human-readable plan lists the same titles, and probing wrote nothing anywhere.
    let out = run([std::ffi::OsStr::new("probe"), book.as_os_str()]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    for (_, _, _, _, _, title) in files {
        assert!(text.contains(title), "{title} missing from:\n{text}");
    }
    assert_eq!(digest_tree(tmp.path()), before, "probe changed the folder");
    assert!(!out_path.exists() && !out_path.parent().unwrap().exists());
}

/// File names that break shells, URL parsers and option parsers.
fn hostile_names() -> Vec<String> {
    vec![
        "Kapitel ü – 日本語 🎧.mp3".into(),
        "it's \"quoted\".mp3".into(),
        "$HOME $(id) `id`.mp3".into(),
        "new\nline.mp3".into(),
        // 255 bytes, the longest name Linux file systems allow: 125 × "ü" (2 bytes) + "x.mp3".
        format!("{}x.mp3", "ü".repeat(125)),
        "concat:x.mp3".into(),
        "-rf.mp3".into(),
        "file:x.mp3".into(),
    ]
}

#[test]
fn hostile_file_names_probe_and_convert() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    std::fs::create_dir_all(&book).unwrap();
    let names = hostile_names();
    assert_eq!(names[4].len(), 255);
    for (i, name) in names.iter().enumerate() {
        // Each file its own pitch, so a mix-up between files would show in the audio.
        let spec = sine_spec(300.0 + 50.0 * i as f64, 11_025, 22_050, 1, false);
        write_mp3(book.join(name), &spec).unwrap();
    }
    // A decoy that `concat:`/`file:` parsing would reach instead of the real files.
    std::fs::write(tmp.path().join("x.mp3"), b"decoy: not audio").unwrap();

    let doc = probe_json(&book, &[]);
    let mut found = json_order(&doc);
    found.sort();
    let mut want = names.clone();
    want.sort();
    assert_eq!(found, want);
    let titles: Vec<String> = doc["book"]["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["chapter_title"].as_str().unwrap().to_string())
        .collect();
    assert!(
        titles.iter().all(|t| !t.contains(['\n', '\r'])),
        "{titles:?}"
    );
    assert!(titles.contains(&"concat:x".to_string()), "{titles:?}");
    assert!(titles.contains(&"-rf".to_string()), "{titles:?}");

    let out_dir = tmp.path().join("out");
    let output = out_dir.join("book.m4b");
    let out = run([
        "convert".as_ref(),
        "--quiet".as_ref(),
        "-j2".as_ref(),
        "-o".as_ref(),
        output.as_os_str(),
        book.as_os_str(),
    ]);
    assert_exit(&out, 0);
    let s = aiom4b::verify::summarize(&output).unwrap();
    let marks = &s.chapter_track.as_ref().expect("chapter track").chapters;
    let got: Vec<&str> = marks.iter().map(|c| c.title.as_str()).collect();
    assert_eq!(got, titles, "chapter titles follow the plan");
    // 8 files × 0.5 s at 44.1 kHz (converted from 22.05 kHz).
    let want_len = names.len() as u64 * 22_050;
    assert!(
        s.decoded_samples.abs_diff(want_len) <= AAC_FRAME,
        "{} samples, want {want_len}",
        s.decoded_samples
    );
    assert_eq!(entries(&out_dir), ["book.m4b"]);
}

#[test]
fn every_bad_file_is_named_with_its_own_reason_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    let hostile = tmp.path().join("hostile");
    std::fs::create_dir_all(&book).unwrap();
    small_mp3(&book.join("01 - good.mp3"));
    // The six kinds that can be told apart without decoding the whole file.
    let want: [(&str, FindingKind, &str); 6] = [
        ("empty", FindingKind::EmptyFile, "empty"),
        ("id3_only", FindingKind::NotMp3, "only an ID3 tag"),
        ("text", FindingKind::NotMp3, "text file"),
        ("random", FindingKind::NotMp3, "no MPEG audio frames"),
        ("png", FindingKind::NotMp3, "PNG image"),
        ("m3u", FindingKind::NotMp3, "M3U playlist"),
    ];
    let mut bad: Vec<(PathBuf, FindingKind, &str)> = Vec::new();
    for (path, kind) in write_hostile(&hostile).unwrap() {
        if let Some((_, k, phrase)) = want.iter().find(|w| w.0 == kind) {
            let dest = book.join(path.file_name().unwrap());
            std::fs::rename(&path, &dest).unwrap();
            bad.push((dest, *k, phrase));
        }
    }
    assert_eq!(bad.len(), want.len());
    let before = digest_tree(&book);

    // The library: one error finding per bad file, each naming it, all at once.
    let ins = inspect(std::slice::from_ref(&book), Order::Natural);
    assert!(ins.book.is_none());
    let errors: Vec<_> = ins.errors().collect();
    assert_eq!(errors.len(), bad.len(), "{errors:#?}");
    for (path, kind, phrase) in &bad {
        let f = errors
            .iter()
            .find(|f| f.path.as_deref() == Some(path.as_path()))
            .unwrap_or_else(|| panic!("no finding for {}: {errors:#?}", path.display()));
        assert_eq!(f.kind, *kind, "{}", path.display());
        assert!(
            f.message.contains(phrase),
            "{}: {:?} does not say {phrase:?}",
            path.display(),
            f.message
        );
        assert!(f.remedy.is_some(), "{}: no remedy", path.display());
    }

    let mut messages: Vec<&str> = errors.iter().map(|f| f.message.as_str()).collect();
    messages.sort();
    messages.dedup();
    assert_eq!(messages.len(), bad.len(), "each kind its own message");

    // `aiom4b probe`: exit 1, every file named, in the table and in the JSON.
    let out = run([std::ffi::OsStr::new("probe"), book.as_os_str()]);
    assert_exit(&out, 1);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    for (path, _, _) in &bad {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(all.contains(name), "{name} missing from:\n{all}");
    }
    let out = run([
        std::ffi::OsStr::new("probe"),
        "--json".as_ref(),
        book.as_os_str(),
    ]);
    assert_exit(&out, 1);
    let doc = json(&out);
    assert!(doc["book"].is_null());
    let errors = findings_where(&doc, "severity", "error");
    assert_eq!(errors.len(), bad.len(), "{doc:#}");

    // `aiom4b convert`: exit 1, every file named in one message, nothing written.
    let out_dir = tmp.path().join("out");
    let output = out_dir.join("book.m4b");
    let out = run([
        "convert".as_ref(),
        "-o".as_ref(),
        output.as_os_str(),
        book.as_os_str(),
    ]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("6 problem(s)"), "{err}");
    for (path, _, phrase) in &bad {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            err.lines().any(|l| l.contains(name) && l.contains(phrase)),
            "no line names {name} with {phrase:?}:\n{err}"
        );
    }
    assert!(entries(&out_dir).is_empty(), "{:?}", entries(&out_dir));
    assert_eq!(digest_tree(&book), before);
}

#[test]
fn mixed_formats_are_reported_and_each_file_is_planned_for_conversion() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    std::fs::create_dir_all(&book).unwrap();
    write_mp3(
        book.join("1.mp3"),
        &sine_spec(440.0, 11_025, 22_050, 1, false),
    )
    .unwrap();
    write_mp3(
        book.join("2.mp3"),
        &sine_spec(440.0, 22_050, 44_100, 2, true),
    )
    .unwrap();
    write_mp3(
        book.join("3.mp3"),
        &sine_spec(440.0, 24_000, 48_000, 2, false),
    )
    .unwrap();
    let ins = inspect(std::slice::from_ref(&book), Order::Natural);
    let mixed: Vec<_> = ins
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::MixedFormats)
        .collect();
    assert_eq!(mixed.len(), 1, "{:#?}", ins.findings);
    assert_eq!(mixed[0].severity, Severity::Info);
    for part in ["22050", "44100", "48000"] {
        assert!(mixed[0].message.contains(part), "{}", mixed[0].message);
    }
    let b = ins.book.as_ref().unwrap();
    let flags: Vec<(bool, bool, bool)> = b
        .tracks
        .iter()
        .map(|t| (t.needs_resample, t.needs_remix, t.info.vbr))
        .collect();
    assert_eq!(
        flags,
        [
            (true, true, false),
            (false, false, true),
            (true, false, false)
        ]
    );

    let doc = probe_json(&book, &[]);
    assert!(
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "mixed_formats"),
        "{doc:#}"
    );
}

fn picture(data: Vec<u8>) -> Picture {
    let (mime, width, height) = aiom4b::probe::image_facts(&data).unwrap();
    Picture {
        mime: mime.into(),
        data,
        width,
        height,
    }
}

#[test]
fn tags_and_covers_are_read_from_files_folder_and_option() {
    let tmp = tempfile::tempdir().unwrap();
    let tags = Tags {
        title: Some("Kapitel 1: Ankunft".into()),
        album: Some("Die Reise".into()),
        artist: Some("Anna Autorin".into()),
        album_artist: Some("Anna Autorin".into()),
        composer: Some("Nora Sprecherin".into()),
        genre: Some("Hörbuch".into()),
        year: Some("2019".into()),
        track: Some(1),
        track_total: Some(2),
        disc: Some(1),
        disc_total: Some(1),
        comment: Some("Ein Kommentar".into()),
    };
    // Embedded front cover (in the second file only), no folder image.
    let embedded = tmp.path().join("embedded");
    std::fs::create_dir_all(&embedded).unwrap();
    let jpeg = test_jpeg(40, 30);
    for (i, cover) in [None, Some(picture(jpeg.clone()))].into_iter().enumerate() {
        let spec = Mp3Spec {
            length: Length::Samples(6615),
            sample_rate: 22_050,
            channels: 1,
            tags: Tags {
                track: Some(i as u32 + 1),
                ..tags.clone()
            },
            cover,
            signal: Signal::Silence,
            ..Mp3Spec::default()
        };
        write_mp3(embedded.join(format!("0{}.mp3", i + 1)), &spec).unwrap();
    }
    let ins = inspect(std::slice::from_ref(&embedded), Order::Natural);
    let b = ins.book.as_ref().unwrap();
    assert_eq!(b.tracks[0].info.tags, tags, "every tag read back");
    assert_eq!(b.tracks[1].info.picture_count, 1);
    let cover = b.cover.as_ref().expect("embedded cover found");
    assert_eq!(
        cover.source,
        CoverSource::Embedded {
            path: embedded.join("02.mp3")
        }
    );
    assert_eq!(cover.picture.data, jpeg);
    assert_eq!(
        (cover.picture.width, cover.picture.height),
        (Some(40), Some(30))
    );
    assert_eq!(b.metadata.narrator.as_deref(), Some("Nora Sprecherin"));
    assert_eq!(b.metadata.description.as_deref(), Some("Ein Kommentar"));

    // cover.jpg in the folder when no file embeds one.
    let folder = tmp.path().join("folder");
    std::fs::create_dir_all(&folder).unwrap();
    small_mp3(&folder.join("01.mp3"));
    std::fs::write(folder.join("cover.jpg"), test_jpeg(64, 64)).unwrap();
    let doc = probe_json(&folder, &[]);
    assert_eq!(doc["book"]["cover"]["source"]["kind"], "file", "{doc:#}");
    assert_eq!(
        doc["book"]["cover"]["source"]["path"],
        folder.join("cover.jpg").to_str().unwrap()
    );
    assert_eq!(doc["book"]["cover"]["picture"]["width"], 64);

    // --cover wins over both.
    let png = tmp.path().join("override.png");
    std::fs::write(&png, test_png(50, 20)).unwrap();
    std::fs::copy(embedded.join("02.mp3"), folder.join("02.mp3")).unwrap();
    let doc = probe_json(&folder, &["--cover", png.to_str().unwrap()]);
    let c = &doc["book"]["cover"];
    assert_eq!(c["source"]["kind"], "file", "{doc:#}");
    assert_eq!(c["source"]["path"], png.to_str().unwrap());
    assert_eq!(c["picture"]["mime"], "image/png");
    assert_eq!(c["picture"]["width"], 50);
    assert_eq!(c["picture"]["height"], 20);

    // A --cover that is not an image is an error naming it (exit 1, not a silent default).
    let not_image = tmp.path().join("notes.jpg");
    std::fs::write(&not_image, "not an image").unwrap();
    let out = run([
        "probe".as_ref(),
        "--cover".as_ref(),
        not_image.as_os_str(),
        folder.as_os_str(),
    ]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("notes.jpg"), "{}", stderr(&out));
}

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfifo {} failed", path.display());
}

#[test]
fn symlink_loops_and_fifos_do_not_hang_probe_or_convert() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    std::fs::create_dir_all(book.join("sub")).unwrap();
    small_mp3(&book.join("01.mp3"));
    small_mp3(&book.join("sub").join("02.mp3"));
    std::os::unix::fs::symlink(".", book.join("loop")).unwrap();
    std::os::unix::fs::symlink("..", book.join("sub").join("up")).unwrap();
    std::os::unix::fs::symlink(&book, book.join("sub").join("abs")).unwrap();
    // Opening any of these for reading would block until a writer appears.
    mkfifo(&book.join("03.mp3"));
    mkfifo(&book.join("cover.jpg"));

    let folders = vec![book.clone()];
    let ins = within(NO_HANG_DEADLINE, move || inspect(&folders, Order::Natural));
    assert_eq!(planned_order(&ins), ["01.mp3", "sub/02.mp3"]);
    let fifo = ins
        .findings
        .iter()
        .find(|f| f.path.as_deref() == Some(book.join("03.mp3").as_path()))
        .unwrap_or_else(|| panic!("FIFO not reported: {:#?}", ins.findings));
    assert_eq!(fifo.kind, FindingKind::SkippedEntry);
    assert!(ins.book.as_ref().unwrap().cover.is_none());

    // The CLI under a deadline (`run` kills and fails after CLI_DEADLINE).
    let doc = probe_json(&book, &[]);
    assert_eq!(json_order(&doc), ["01.mp3", "sub/02.mp3"]);
    let output = tmp.path().join("out.m4b");
    let out = run([
        "convert".as_ref(),
        "--quiet".as_ref(),
        "-o".as_ref(),
        output.as_os_str(),
        book.as_os_str(),
    ]);
    assert_exit(&out, 0);
    let s = aiom4b::verify::summarize(&output).unwrap();
    assert_eq!(s.chapter_track.unwrap().chapters.len(), 2);
}

/// Overwrites the encoder string of the LAME extension in the Xing/Info frame ("Lavc…",
/// "LAME…") so no reader trusts its delay and padding; the frame count stays.
fn unknown_lame_encoder(path: &Path) {
    use aiom4b_testkit::fixtures::{audio_start, FrameHeader};
    let mut b = std::fs::read(path).unwrap();
    let at = audio_start(&b) as usize;
    let len = FrameHeader::parse(&b[at..]).unwrap().len;
    let frame = &mut b[at..at + len];
    let i = frame
        .windows(4)
        .position(|w| w == b"LAME" || w == b"Lavc" || w == b"Lavf")
        .expect("the Info frame carries a LAME extension");
    frame[i..i + 4].copy_from_slice(b"XXXX");
    std::fs::write(path, b).unwrap();
}

/// Probe's `exact_samples` (Symphonia's reading of the Xing/LAME header) is the one clock the
/// plan trusts, so it must be what FFmpeg's decoder produces, or absent: exact with the LAME
/// header; the untrimmed frame count when the extension names an encoder neither reader
/// knows; none without the header (Symphonia's bitrate estimate is off for VBR). Measured
/// identical under Symphonia 0.5 and 0.6; this pins it across upgrades.
#[test]
fn probe_exact_length_is_ffmpegs_or_absent_for_every_header_variant() {
    use aiom4b::__internals::packets::index_mp3;
    use aiom4b_testkit::fixtures::RateControl;
    let tmp = tempfile::tempdir().unwrap();
    let cbr = |bitrate_bps| RateControl::Cbr { bitrate_bps };
    for (rate, channels, rc) in [
        (22_050, 1, cbr(64_000)),
        (44_100, 2, RateControl::Vbr { quality: 2 }),
        (48_000, 2, cbr(128_000)),
    ] {
        let samples = u64::from(rate) + 4321;
        let spec = Mp3Spec {
            length: Length::Samples(samples),
            sample_rate: rate,
            channels,
            rate_control: rc,
            signal: Signal::SpeechLike { seed: 2 },
            ..Mp3Spec::default()
        };
        for variant in ["lame", "unknown encoder", "no xing"] {
            let name = format!("{rate} Hz {channels} ch {rc:?}, {variant}");
            let path = tmp.path().join(format!("{rate}-{variant}.mp3"));
            write_mp3(&path, &spec).unwrap();
            match variant {
                "unknown encoder" => unknown_lame_encoder(&path),
                "no xing" => crate::ranges::strip_lame_header(&path),
                _ => {}
            }
            let ffmpeg = index_mp3(&path).unwrap().total();
            let exact = aiom4b::probe::probe_file(&path).unwrap().exact_samples;
            match variant {
                "lame" => assert_eq!((exact, ffmpeg), (Some(samples), samples), "{name}"),
                "unknown encoder" => {
                    assert!(ffmpeg > samples, "{name}: FFmpeg trimmed {ffmpeg}");
                    assert_eq!(exact, Some(ffmpeg), "{name}");
                }
                _ => assert_eq!(exact, None, "{name} (FFmpeg decodes {ffmpeg})"),
            }
        }
    }
}
