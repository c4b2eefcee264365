//! `aiom4b split` (issue 17): a converted book (and one made by the ffmpeg CLI) split by
//! parts, by chapter, by duration and by size. The proof of "no re-encoding, exact timeline":
//! the parts, decoded by FFmpeg's decoder (which honours edit lists) and joined, equal the
//! original's decoded audio byte for byte; every part's packets are a run of the source's
//! packets, byte for byte; each part's length (our independent reader) is its chapters' span
//! exactly; chapters, tags, cover and "Part k of n" read back with ffprobe.
//!
//! Sample-exact holds for streams without perceptual noise substitution (PNS): a decoder
//! fills PNS bands from a noise generator that runs on from the start of the file, so a part
//! that starts mid-book draws different (equally valid) noise there. FFmpeg's encoder uses PNS
//! on noise-like bands, so the books here are tones (converted) and speech-like audio encoded
//! by the ffmpeg CLI with `-aac_pns 0`; `pns_books_split_with_the_same_length_and_packets`
//! checks what still holds with PNS.
use crate::common::*;
use aiom4b::verify::summarize;
use aiom4b::{Picture, Tags};
use aiom4b_testkit::fixtures::{test_jpeg, write_mp3, Length, Mp3Spec, Signal};
use serde_json::Value;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Chapter lengths in samples at 44.1 kHz: whole periods of the 100 Hz tone (441 samples), so
/// the book is one continuous tone without a click at any boundary (a click is coded as noise,
/// see the module docs), and odd, so that every cut falls inside an AAC frame (no sum of them
/// is a multiple of 1024).
const CHAPTER_SAMPLES: [u64; 6] = [
    201 * 441,
    139 * 441,
    295 * 441,
    102 * 441,
    227 * 441,
    159 * 441,
];

/// Converts a 6-chapter book (speech-like audio, all tags, a cover) to `dir/book.m4b`.
fn converted_book(dir: &Path, extra: &[&str]) -> PathBuf {
    let src = source_book(dir);
    let out = dir.join("book.m4b");
    assert_exit(&convert_to(&src, &out, extra), 0);
    out
}

/// Writes the 6 MP3s of [`converted_book`] to `dir/src`.
fn source_book(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for (i, &n) in CHAPTER_SAMPLES.iter().enumerate() {
        let spec = Mp3Spec {
            length: Length::Samples(n),
            signal: Signal::Sine {
                freq_hz: 100.0,
                amplitude: 0.5,
            },
            tags: Tags {
                title: Some(format!("Kapitel {}", i + 1)),
                album: Some("Die Reise".into()),
                artist: Some("Anna Autorin".into()),
                genre: Some("Hörbuch".into()),
                year: Some("2019".into()),
                track: Some(i as u32 + 1),
                ..Tags::default()
            },
            cover: (i == 0).then(|| Picture {
                mime: "image/jpeg".into(),
                data: test_jpeg(64, 48),
                width: Some(64),
                height: Some(48),
            }),
            ..Mp3Spec::default()
        };
        write_mp3(src.join(format!("{:02}.mp3", i + 1)), &spec).unwrap();
    }
    src
}

/// `aiom4b convert -o out` of the book in `src` with all tags, plus `extra`.
fn convert_to(src: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<OsString> = vec!["convert".into(), "--quiet".into(), "-o".into(), out.into()];
    for a in [
        "--narrator",
        "Nora Sprecherin",
        "--description",
        "Eine Beschreibung.",
        "--comment",
        "Ein Kommentar",
        "--series",
        "Reisen",
        "--series-part",
        "2",
    ]
    .iter()
    .chain(extra)
    {
        args.push(a.into());
    }
    args.push(src.into());
    run(args)
}

/// Every audio packet's payload, concatenated, edit list ignored (all packets).
fn raw_packets(path: &Path) -> Vec<u8> {
    let o = run_tool(
        Command::new("ffmpeg")
            .args(["-v", "error", "-ignore_editlist", "1", "-i"])
            .arg(path)
            .args(["-map", "0:a", "-c", "copy", "-f", "data", "-"]),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    o.stdout
}

/// FFmpeg's decoder hides the priming the edit list names, but not the end of the last frame
/// that the last packet's `stts` duration (and the edit's length) cut off: it outputs the whole
/// frame. So its decode must be the presentation length plus less than one frame, and is cut
/// to the presentation length before comparing.
fn trimmed(mut pcm: Vec<u8>, samples: u64, path: &Path) -> Vec<u8> {
    const FRAME: u64 = 1024;
    let bytes = samples * 2 * 4;
    let got = pcm.len() as u64;
    assert!(
        got >= bytes && got < bytes + FRAME * 2 * 4,
        "{}: ffmpeg decodes {} samples for a presentation length of {samples}",
        path.display(),
        got / 8
    );
    pcm.truncate(bytes as usize);
    pcm
}

fn split_ok(book: &Path, args: &[&str]) -> Value {
    let mut a: Vec<OsString> = vec!["split".into(), "--json".into(), book.into()];
    a.extend(args.iter().map(Into::into));
    let o = run(a);
    assert_exit(&o, 0);
    json(&o)
}

fn part_paths(report: &Value) -> Vec<PathBuf> {
    report["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| PathBuf::from(p["path"].as_str().unwrap()))
        .collect()
}

/// How far a converted book's parts may decode from the book: aiom4b's encoder (FFmpeg's, PNS
/// on) codes a few near-silent high bands of the tone as noise, whose generator state differs
/// in a part; measured 1.3e-5 at most, in two frames. A misplaced cut would differ by the
/// tone's amplitude (0.5). Books encoded without PNS are compared with 0.
const PNS_TOLERANCE: f32 = 1e-3;

/// The parts decode to the book sample for sample (within `tolerance`, see [`PNS_TOLERANCE`]);
/// each part's length is exactly its span; its packets are source packets, byte for byte.
fn assert_exact_split(book: &Path, report: &Value, tolerance: f32) {
    let total = summarize(book).unwrap().decoded_samples;
    let whole = trimmed(decoded(book), total, book);
    let source_packets = raw_packets(book);
    let mut joined = Vec::new();
    let mut next_start = 0u64;
    for (p, path) in report["parts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(part_paths(report))
    {
        let samples = p["samples"].as_u64().unwrap();
        assert_eq!(
            p["start_samples"].as_u64().unwrap(),
            next_start,
            "parts are contiguous"
        );
        next_start += samples;
        let s = summarize(&path).unwrap();
        assert!(
            s.inconsistencies.is_empty(),
            "{}: {:?}",
            path.display(),
            s.inconsistencies
        );
        assert_eq!(s.decoded_samples, samples, "{}: length", path.display());
        let d = decoded(&path);
        joined.extend_from_slice(&trimmed(d, samples, &path));
        let pk = raw_packets(&path);
        assert!(
            source_packets.windows(pk.len()).any(|w| w == pk.as_slice()),
            "{}: its packets are not a run of the source's packets",
            path.display()
        );
    }
    assert_eq!(
        next_start * 8,
        whole.len() as u64,
        "the parts cover the book"
    );
    assert_eq!(joined.len(), whole.len());
    let f32s = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let (a, b) = (f32s(&joined), f32s(&whole));
    let worst = a
        .iter()
        .zip(&b)
        .enumerate()
        .map(|(i, (x, y))| (i, (x - y).abs()))
        .fold((0, 0.0f32), |m, d| if d.1 > m.1 { d } else { m });
    assert!(
        worst.1 <= tolerance,
        "joined parts differ from the book by {} at sample {}",
        worst.1,
        worst.0 / 2
    );
}

fn tag<'a>(probe: &'a Value, key: &str) -> Option<&'a str> {
    probe["format"]["tags"][key].as_str()
}

#[test]
fn parts_join_to_the_book_sample_for_sample_with_tags_cover_and_chapters() {
    let tmp = tempfile::tempdir().unwrap();
    let book = converted_book(tmp.path(), &[]);
    let out = tmp.path().join("parts");
    let report = split_ok(&book, &["--parts", "3", "--out", out.to_str().unwrap()]);
    let paths = part_paths(&report);
    assert_eq!(paths.len(), 3);
    assert_exact_split(&book, &report, PNS_TOLERANCE);
    let src_chapters = ffprobe(&book)["chapters"].as_array().unwrap().clone();
    let mut seen = 0;
    for (k, path) in paths.iter().enumerate() {
        assert_eq!(
            path.file_name().unwrap().to_str().unwrap(),
            format!("Die Reise - Part {} of 3.m4b", k + 1)
        );
        let probe = ffprobe(path);
        assert_eq!(
            tag(&probe, "title"),
            Some(format!("Die Reise (Part {} of 3)", k + 1).as_str())
        );
        assert_eq!(tag(&probe, "track"), Some(format!("{}/3", k + 1).as_str()));
        assert_eq!(tag(&probe, "album"), Some("Die Reise"));
        assert_eq!(tag(&probe, "artist"), Some("Anna Autorin"));
        assert_eq!(tag(&probe, "genre"), Some("Hörbuch"));
        assert_eq!(tag(&probe, "date"), Some("2019"));
        assert_eq!(tag(&probe, "comment"), Some("Ein Kommentar"));
        assert_eq!(tag(&probe, "description"), Some("Eine Beschreibung."));
        assert_eq!(tag(&probe, "media_type"), Some("2"));
        let s = summarize(path).unwrap();
        assert_eq!(s.major_brand, "M4B ");
        assert_eq!(s.tags.narrator.as_deref(), Some("Nora Sprecherin"));
        assert_eq!(s.tags.series.as_deref(), Some("Reisen"));
        assert_eq!(s.tags.series_part.as_deref(), Some("2"));
        assert!(s.cover.as_ref().is_some_and(|c| c.in_covr), "cover");
        // Chapters: the source's, in order, offset to the part's start.
        let part_start: f64 =
            report["parts"][k]["start_samples"].as_u64().unwrap() as f64 / 44_100.0;
        for c in probe["chapters"].as_array().unwrap() {
            let src = &src_chapters[seen];
            assert_eq!(c["tags"]["title"], src["tags"]["title"]);
            let want: f64 =
                src["start_time"].as_str().unwrap().parse::<f64>().unwrap() - part_start;
            let got: f64 = c["start_time"].as_str().unwrap().parse().unwrap();
            assert!(
                (got - want).abs() < 0.002,
                "chapter {seen}: {got} vs {want}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, CHAPTER_SAMPLES.len(), "every chapter is in one part");
    assert_no_part(&out);
}

#[test]
fn by_chapter_max_duration_and_max_size() {
    let tmp = tempfile::tempdir().unwrap();
    let book = converted_book(tmp.path(), &[]);

    let by_chapter = tmp.path().join("chapters");
    let report = split_ok(
        &book,
        &["--by-chapter", "--out", by_chapter.to_str().unwrap()],
    );
    let names: Vec<String> = part_paths(&report)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let want: Vec<String> = (1..=6)
        .map(|i| format!("{i:02} - Kapitel {i}.m4a"))
        .collect();
    assert_eq!(names, want);
    assert_exact_split(&book, &report, PNS_TOLERANCE);
    let probe = ffprobe(&part_paths(&report)[2]);
    assert_eq!(tag(&probe, "title"), Some("Kapitel 3"));
    assert_eq!(tag(&probe, "track"), Some("3/6"));
    // An .m4a says so in its file type (the parts of --parts stay "M4B ").
    assert_eq!(probe["format"]["tags"]["major_brand"], "M4A ");
    assert_eq!(
        summarize(&part_paths(&report)[2]).unwrap().major_brand,
        "M4A "
    );

    // 4 s: chapters of 2.01, 1.39, 2.95, 1.02, 2.27, 1.59 s pack as two by two.
    let by_duration = tmp.path().join("duration");
    let report = split_ok(
        &book,
        &[
            "--max-duration",
            "4s",
            "--out",
            by_duration.to_str().unwrap(),
        ],
    );
    let counts: Vec<usize> = report["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["chapters"].as_array().unwrap().len())
        .collect();
    assert_eq!(counts, [2, 2, 2]);
    assert!(report["parts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["samples"].as_u64().unwrap() <= 4 * 44_100));
    assert_exact_split(&book, &report, PNS_TOLERANCE);

    // A size limit between one and two chapters' worth: every part stays under it.
    let size = std::fs::metadata(&book).unwrap().len();
    let limit = size / 3;
    let by_size = tmp.path().join("size");
    let report = split_ok(
        &book,
        &[
            "--max-size",
            &limit.to_string(),
            "--out",
            by_size.to_str().unwrap(),
        ],
    );
    let parts = part_paths(&report);
    assert!(parts.len() >= 3, "{report}");
    for p in &parts {
        assert!(
            std::fs::metadata(p).unwrap().len() <= limit,
            "{}",
            p.display()
        );
    }
    assert_exact_split(&book, &report, PNS_TOLERANCE);
}

#[test]
fn refuses_to_overwrite_and_refuses_books_without_chapters() {
    let tmp = tempfile::tempdir().unwrap();
    let book = converted_book(tmp.path(), &[]);
    split_ok(&book, &["--parts", "2"]);
    let before = digest_tree(tmp.path());
    let o = run([
        "split".as_ref(),
        book.as_os_str(),
        "--parts".as_ref(),
        "2".as_ref(),
    ]);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("Part 1 of 2"), "{}", stderr(&o));
    assert_eq!(digest_tree(tmp.path()), before, "nothing changed");

    let tmp2 = tempfile::tempdir().unwrap();
    let bare = converted_book(tmp2.path(), &["--no-chapters"]);
    let o = run([
        "split".as_ref(),
        bare.as_os_str(),
        "--parts".as_ref(),
        "2".as_ref(),
    ]);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("no chapters"), "{}", stderr(&o));
    assert_eq!(entries(tmp2.path()), ["book.m4b", "src"]);
}

#[test]
fn a_book_made_by_the_ffmpeg_cli_splits_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let speech = tmp.path().join("speech.mp3");
    let spec = Mp3Spec {
        length: Length::Secs(5.0),
        signal: Signal::SpeechLike { seed: 3 },
        ..Mp3Spec::default()
    };
    write_mp3(&speech, &spec).unwrap();
    let meta = tmp.path().join("chapters.txt");
    std::fs::write(
        &meta,
        ";FFMETADATA1\ntitle=CLI Book\nartist=Someone\n\
         [CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1234\ntitle=One\n\
         [CHAPTER]\nTIMEBASE=1/1000\nSTART=1234\nEND=2987\ntitle=Two\n\
         [CHAPTER]\nTIMEBASE=1/1000\nSTART=2987\nEND=5000\ntitle=Three\n",
    )
    .unwrap();
    let book = tmp.path().join("cli.m4b");
    let o = run_tool(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&speech)
            .arg("-i")
            .arg(&meta)
            .args(["-map", "0:a", "-map_metadata", "1", "-map_chapters", "1"])
            .args(["-c:a", "aac", "-aac_pns", "0", "-b:a", "96k", "-f", "ipod"])
            .arg(&book),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report = split_ok(&book, &["--parts", "2"]);
    let paths = part_paths(&report);
    assert_eq!(
        paths[0].file_name().unwrap().to_str().unwrap(),
        "CLI Book - Part 1 of 2.m4b"
    );
    assert_exact_split(&book, &report, 0.0);
    let chapters = ffprobe(&paths[1])["chapters"].as_array().unwrap().len();
    assert_eq!(
        chapters + ffprobe(&paths[0])["chapters"].as_array().unwrap().len(),
        3
    );
    let report = split_ok(
        &book,
        &[
            "--by-chapter",
            "--out",
            tmp.path().join("each").to_str().unwrap(),
        ],
    );
    assert_eq!(part_paths(&report).len(), 3);
    assert_exact_split(&book, &report, 0.0);
}

#[test]
fn convert_split_at_publishes_verified_parts_that_join_to_the_book() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_book(tmp.path());
    let whole = tmp.path().join("book.m4b");
    assert_exit(&convert_to(&src, &whole, &[]), 0);
    // The same book converted with a 5 s limit: chapters of 2.01, 1.39 | 2.95, 1.02 |
    // 2.27, 1.59 s make three parts, packet copies of the same encode.
    let dir = tmp.path().join("cut");
    std::fs::create_dir(&dir).unwrap();
    let target = dir.join("Die Reise.m4b");
    let o = convert_to(&src, &target, &["--json", "--split-at", "5s"]);
    assert_exit(&o, 0);
    let doc = json(&o);
    assert!(
        !target.exists(),
        "the whole book is not published beside its parts"
    );
    let paths: Vec<PathBuf> = doc["parts"]
        .as_array()
        .unwrap_or_else(|| panic!("no parts in {doc}"))
        .iter()
        .map(|p| PathBuf::from(p.as_str().unwrap()))
        .collect();
    let names: Vec<String> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        (1..=3)
            .map(|k| format!("Die Reise - Part {k} of 3.m4b"))
            .collect::<Vec<_>>()
    );
    assert_eq!(doc["output_path"], paths[0].to_string_lossy().as_ref());
    let sizes: u64 = paths
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(doc["size_bytes"].as_u64(), Some(sizes));
    // Nothing else in the folder: no temporary, no hidden file.
    let mut listed: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, names);
    // Each part: verified by the independent reader, its chapters, "Part k of 3".
    let mut start = 0u64;
    let mut parts = Vec::new();
    let mut titles = Vec::new();
    for (k, p) in paths.iter().enumerate() {
        assert_exit(&run([OsString::from("verify"), p.into()]), 0);
        let s = summarize(p).unwrap();
        parts.push(serde_json::json!({
            "path": p, "start_samples": start, "samples": s.decoded_samples,
        }));
        start += s.decoded_samples;
        let probe = ffprobe(p);
        assert_eq!(
            tag(&probe, "title"),
            Some(format!("Die Reise (Part {} of 3)", k + 1).as_str())
        );
        assert_eq!(tag(&probe, "track"), Some(format!("{}/3", k + 1).as_str()));
        assert_eq!(s.tags.narrator.as_deref(), Some("Nora Sprecherin"));
        assert!(s.cover.is_some(), "{}: cover", p.display());
        for c in probe["chapters"].as_array().unwrap() {
            titles.push(c["tags"]["title"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        titles,
        (1..=6).map(|i| format!("Kapitel {i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        [2, 2, 2],
        [0, 1, 2].map(|k| ffprobe(&paths[k])["chapters"].as_array().unwrap().len())
    );
    // Decoded and joined, the parts are the book.
    assert_exact_split(
        &whole,
        &serde_json::json!({ "parts": parts }),
        PNS_TOLERANCE,
    );

    // Over a limit the book fits in: one file, as without the option.
    let one = dir.join("One.m4b");
    let o = convert_to(&src, &one, &["--json", "--split-at", "1h"]);
    assert_exit(&o, 0);
    assert!(json(&o).get("parts").is_none());
    assert_eq!(summarize(&one).unwrap().decoded_samples, start);

    // A part's name that is taken: refused before anything is written, the file kept.
    let again = convert_to(&src, &target, &["--split-at", "5s"]);
    assert_exit(&again, 1);
    assert!(
        stderr(&again).contains("Die Reise - Part 1 of 3.m4b"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        summarize(&paths[1]).unwrap().decoded_samples,
        parts[1]["samples"].as_u64().unwrap()
    );
    assert_no_part(&dir);

    // A limit that is no limit is refused before converting.
    let bad = convert_to(&src, &dir.join("x.m4b"), &["--split-at", "20 parsecs"]);
    assert_exit(&bad, 2);
    assert!(stderr(&bad).contains("--split-at"), "{}", stderr(&bad));
}

#[test]
fn the_librarys_converter_splits_too() {
    use aiom4b::{
        plan, CancelToken, ConvertOptions, Converter, Limits, NoProgress, PlanOptions, ScanOptions,
        SplitAt,
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = source_book(tmp.path());
    let out = tmp.path().join("out").join("Lib.m4b");
    let book = plan::plan(&[src], &ScanOptions::default(), &Limits::default(), &{
        let mut o = PlanOptions::default();
        o.output = Some(out.clone());
        o
    })
    .unwrap();
    let mut opts = ConvertOptions::default();
    opts.split_at = Some(SplitAt::Duration(5.0));
    let report = Converter::new(opts)
        .convert(&book, &NoProgress, &CancelToken::new())
        .unwrap();
    assert_eq!(report.parts.len(), 3);
    assert_eq!(report.output_path, report.parts[0].path);
    assert!(!out.exists());
    let mut start = 0;
    for (k, p) in report.parts.iter().enumerate() {
        assert_eq!(
            p.path.file_name().unwrap().to_string_lossy(),
            format!("Lib - Part {} of 3.m4b", k + 1)
        );
        assert_eq!(p.start_samples, start);
        start += p.samples;
        assert_eq!(summarize(&p.path).unwrap().decoded_samples, p.samples);
    }
    assert_eq!(start, report.total_samples);
    assert_eq!(
        report.size_bytes,
        report.parts.iter().map(|p| p.bytes).sum::<u64>()
    );
    assert_no_part(out.parent().unwrap());
    assert_eq!(std::fs::read_dir(out.parent().unwrap()).unwrap().count(), 3);
}
