//! `aiom4b chapters export` and `chapters import`: a book's chapter list out in every format and
//! back in, read with ffprobe (libavformat) as the independent reader.
use crate::common::{assert_exit, digest_tree, ffprobe, run, run_tool, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::Command;

const RATE: u64 = 44_100;

/// Starts (ms) and titles of the book made by [`ffmpeg_book`].
const CHAPTERS: [(u64, &str); 4] = [
    (0, "Opening Credits"),
    (2_345, "Chapter 1: \"The Storm\" = wind; #1"),
    (5_000, "Épilogue — 終わり"),
    (8_765, "Credits"),
];

/// A 10.5 s AAC book with [`CHAPTERS`], made by the ffmpeg CLI (not by aiom4b).
fn ffmpeg_book(dir: &Path) -> PathBuf {
    let meta = dir.join("meta.txt");
    let mut text = String::from(";FFMETADATA1\ntitle=Made by ffmpeg\n");
    for (i, (start, title)) in CHAPTERS.iter().enumerate() {
        let end = CHAPTERS.get(i + 1).map(|c| c.0).unwrap_or(10_500);
        let escaped = title
            .replace('\\', "\\\\")
            .replace('=', "\\=")
            .replace(';', "\\;")
            .replace('#', "\\#");
        text.push_str(&format!(
            "[CHAPTER]\nTIMEBASE=1/1000\nSTART={start}\nEND={end}\ntitle={escaped}\n"
        ));
    }
    std::fs::write(&meta, text).unwrap();
    let book = dir.join("book.m4b");
    let out = run_tool(
        Command::new("ffmpeg")
            .args(["-v", "error", "-f", "lavfi", "-i"])
            .arg("sine=frequency=440:sample_rate=44100:duration=10.5")
            .arg("-i")
            .arg(&meta)
            .args(["-map_metadata", "1", "-c:a", "aac", "-b:a", "64k"])
            .arg(&book),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    book
}

/// (start in ms, title) of every chapter as ffprobe reads it.
fn probe_chapters(book: &Path) -> Vec<(u64, String)> {
    ffprobe(book)["chapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let start: f64 = c["start_time"].as_str().unwrap().parse().unwrap();
            let title = c["tags"]["title"].as_str().unwrap_or("").to_string();
            ((start * 1000.0).round() as u64, title)
        })
        .collect()
}

fn expected() -> Vec<(u64, String)> {
    CHAPTERS.iter().map(|(s, t)| (*s, t.to_string())).collect()
}

#[test]
fn every_format_exports_and_imports_back_the_same_chapters() {
    let dir = tempfile::tempdir().unwrap();
    let book = ffmpeg_book(dir.path());
    assert_eq!(probe_chapters(&book), expected(), "the fixture itself");

    for (format, tolerance_ms) in [("txt", 1), ("json", 1), ("cue", 7), ("ffmetadata", 1)] {
        let out = run([
            "chapters".as_ref(),
            "export".as_ref(),
            book.as_os_str(),
            "--format".as_ref(),
            format.as_ref(),
        ]);
        assert_exit(&out, 0);
        let text = stdout(&out);
        for (_, title) in CHAPTERS {
            let shown = match format {
                "cue" | "json" => title.replace('"', "\\\""),
                "ffmetadata" => title
                    .replace('=', "\\=")
                    .replace(';', "\\;")
                    .replace('#', "\\#"),
                _ => title.to_string(),
            };
            assert!(
                text.contains(&shown),
                "{format}: {title:?} missing in\n{text}"
            );
        }
        let list = dir.path().join(format!("list.{format}"));
        std::fs::write(&list, &text).unwrap();

        // Into a copy whose chapters are different (all renamed and moved).
        let copy = dir.path().join(format!("copy-{format}.m4b"));
        std::fs::copy(&book, &copy).unwrap();
        let other = dir.path().join("other.txt");
        std::fs::write(&other, "0 A\n1 B\n").unwrap();
        assert_exit(
            &run([
                "chapters".as_ref(),
                "import".as_ref(),
                copy.as_os_str(),
                other.as_os_str(),
            ]),
            0,
        );
        assert_eq!(
            probe_chapters(&copy),
            vec![(0, "A".to_string()), (1000, "B".to_string())]
        );
        let out = run([
            "chapters".as_ref(),
            "import".as_ref(),
            copy.as_os_str(),
            list.as_os_str(),
        ]);
        assert_exit(&out, 0);
        let back = probe_chapters(&copy);
        assert_eq!(back.len(), CHAPTERS.len(), "{format}");
        for ((s, t), (es, et)) in back.iter().zip(expected()) {
            assert_eq!(t, &et, "{format}");
            assert!(
                s.abs_diff(es) <= tolerance_ms,
                "{format}: {s} ms vs {es} ms"
            );
        }
    }
}

#[test]
fn json_export_is_exact_to_the_sample_and_says_where_each_chapter_ends() {
    let dir = tempfile::tempdir().unwrap();
    let book = ffmpeg_book(dir.path());
    let out = run([
        "chapters".as_ref(),
        "export".as_ref(),
        book.as_os_str(),
        "-f".as_ref(),
        "json".as_ref(),
    ]);
    assert_exit(&out, 0);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["sample_rate"], RATE);
    let chapters = doc["chapters"].as_array().unwrap();
    assert_eq!(chapters.len(), CHAPTERS.len());
    for (i, c) in chapters.iter().enumerate() {
        let start = c["start_samples"].as_u64().unwrap();
        // The chapter track stores milliseconds: the sample nearest to the stored time.
        assert!(
            start.abs_diff(CHAPTERS[i].0 * RATE / 1000) <= RATE / 1000,
            "{c}"
        );
        let end = c["end_samples"].as_u64().unwrap();
        match chapters.get(i + 1) {
            Some(next) => assert_eq!(end, next["start_samples"].as_u64().unwrap()),
            None => assert_eq!(end, doc["total_samples"].as_u64().unwrap()),
        }
    }
    // 10.5 s of audio, exactly (ffmpeg's encoder priming hidden by its edit list).
    let total = doc["total_samples"].as_u64().unwrap();
    assert!(total.abs_diff(RATE * 21 / 2) <= 1024, "{total}");
}

#[test]
fn export_never_replaces_a_file_and_import_of_a_bad_list_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let book = ffmpeg_book(dir.path());
    let taken = dir.path().join("taken.txt");
    std::fs::write(&taken, "mine").unwrap();
    let out = run([
        "chapters".as_ref(),
        "export".as_ref(),
        book.as_os_str(),
        "-o".as_ref(),
        taken.as_os_str(),
    ]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("never replaced"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "mine");

    let before = digest_tree(dir.path());
    let bad = dir.path().join("bad.cue");
    std::fs::write(
        &bad,
        "FILE \"b\" MP4\n  TRACK 01 AUDIO\n    INDEX 01 00:00:00\n  TRACK 02 AUDIO\n    INDEX 01 00:03:99\n",
    )
    .unwrap();
    let out = run([
        "chapters".as_ref(),
        "import".as_ref(),
        book.as_os_str(),
        bad.as_os_str(),
    ]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("bad.cue:5") && err.contains("MM:SS:FF"),
        "{err}"
    );
    let mut after = digest_tree(dir.path());
    after.remove(Path::new("bad.cue"));
    assert_eq!(before, after, "the book changed although the import failed");

    // A list that runs past the end of the book is refused too.
    let late = dir.path().join("late.txt");
    std::fs::write(&late, "0 A\n00:00:30 B\n").unwrap();
    let out = run([
        "chapters".as_ref(),
        "import".as_ref(),
        book.as_os_str(),
        late.as_os_str(),
    ]);
    assert_exit(&out, 1);
    assert_eq!(probe_chapters(&book), expected());
}

#[test]
fn import_snaps_marks_to_the_pauses_and_says_which_found_none() {
    let dir = tempfile::tempdir().unwrap();
    // A tone with one 2 s pause (4 s to 6 s), made by the ffmpeg CLI.
    let book = dir.path().join("pause.m4b");
    let out = run_tool(
        Command::new("ffmpeg")
            .args(["-v", "error", "-f", "lavfi", "-i"])
            .arg("aevalsrc=if(between(t\\,4\\,6)\\,0\\,0.3*sin(2*PI*440*t)):s=44100:d=10")
            .args(["-c:a", "aac", "-b:a", "64k"])
            .arg(&book),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = dir.path().join("publisher.txt");
    std::fs::write(&list, "0 Opening\n00:00:03.200 Middle\n00:00:08.000 End\n").unwrap();
    let out = run([
        "chapters".as_ref(),
        "import".as_ref(),
        book.as_os_str(),
        list.as_os_str(),
        "--snap-to-silence".as_ref(),
        "1.5s".as_ref(),
    ]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("snapped \"Middle\""), "{text}");
    assert!(
        text.contains("\"End\"") && text.contains("no pause"),
        "{text}"
    );
    let marks = probe_chapters(&book);
    assert_eq!(marks.len(), 3);
    assert!((4_000..6_000).contains(&marks[1].0), "{marks:?}");
    assert_eq!(marks[2].0, 8_000, "a mark without a pause stays");
}
