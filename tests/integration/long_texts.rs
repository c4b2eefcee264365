//! Very long titles and tags (issue 10, item 7): an ID3 title or a chapters-file line of
//! tens of kilobytes converts, cut to `MAX_TITLE_BYTES` on a character boundary with one
//! warning, instead of failing verification and flooding stderr with the text.
use crate::common::*;
use aiom4b::{Tags, MAX_LONG_TEXT_BYTES, MAX_TITLE_BYTES};
use aiom4b_testkit::fixtures::write_mp3;
use serde_json::Value;
use std::path::Path;

/// More than a QuickTime text sample's 16-bit length field can say, in 2-byte characters so a
/// cut at the wrong byte would split one.
fn long_text(prefix: &str) -> String {
    format!("{prefix}{}", "é".repeat(35_000))
}

/// Stderr of a run that printed the text even once would be tens of kilobytes.
const QUIET_STDERR_BYTES: usize = 4096;

fn book_with_titles(dir: &Path, titles: [&str; 2], comment: Option<&str>) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, title) in titles.iter().enumerate() {
        let mut spec = sine_spec(440.0, 6615, 22_050, 1, false);
        spec.tags = Tags {
            title: Some(title.to_string()),
            album: Some("Long Texts".into()),
            comment: comment.map(str::to_string),
            ..Tags::default()
        };
        write_mp3(dir.join(format!("{:02}.mp3", i + 1)), &spec).unwrap();
    }
}

/// `aiom4b ARGS` with `DATA_DIR` inside the test's folder.
fn run_in(tmp: &Path, args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut cmd = aiom4b();
    cmd.env("DATA_DIR", tmp.join("data")).args(args);
    run_cmd(cmd)
}

fn findings_of_kind<'a>(doc: &'a Value, kind: &str) -> Vec<&'a Value> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .collect()
}

fn chapter_titles(output: &Path) -> Vec<String> {
    let s = aiom4b::verify::summarize(output).unwrap();
    s.chapter_track
        .expect("a chapter track")
        .chapters
        .into_iter()
        .map(|c| c.title)
        .collect()
}

#[test]
fn a_70_kb_id3_title_and_a_20_kb_comment_are_cut_with_one_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    let title = long_text("Long ");
    let comment = "c".repeat(MAX_LONG_TEXT_BYTES + 4000);
    book_with_titles(&book, [&title, "Second"], Some(&comment));

    // probe shows the cut before anything is converted.
    let out = run_in(
        tmp.path(),
        &["probe".as_ref(), "--json".as_ref(), book.as_ref()],
    );
    assert_exit(&out, 0);
    assert!(out.stderr.len() < QUIET_STDERR_BYTES, "{}", stderr(&out));
    let doc = json(&out);
    let cut = findings_of_kind(&doc, "text_shortened");
    assert_eq!(cut.len(), 1, "{:#}", doc["findings"]);
    assert_eq!(cut[0]["severity"], "warning");
    let message = cut[0]["message"].as_str().unwrap();
    assert!(
        message.contains("01.mp3") && message.contains("description"),
        "{message}"
    );
    let planned = doc["book"]["tracks"][0]["chapter_title"].as_str().unwrap();
    assert!(planned.len() <= MAX_TITLE_BYTES && planned.len() > MAX_TITLE_BYTES - 4);
    assert!(title.starts_with(planned));

    let output = tmp.path().join("out").join("book.m4b");
    let out = run_in(
        tmp.path(),
        &[
            "convert".as_ref(),
            "--json".as_ref(),
            "-o".as_ref(),
            output.as_ref(),
            book.as_ref(),
        ],
    );
    assert_exit(&out, 0);
    assert!(
        out.stderr.len() < QUIET_STDERR_BYTES,
        "{} bytes on stderr",
        out.stderr.len()
    );
    let report = json(&out);
    assert_eq!(findings_of_kind(&report, "text_shortened").len(), 1);

    let titles = chapter_titles(&output);
    assert_eq!(titles.len(), 2);
    assert_eq!(
        titles[0], planned,
        "the chapter track holds the planned cut"
    );
    assert_eq!(titles[1], "Second");
    let s = aiom4b::verify::summarize(&output).unwrap();
    let description = s.tags.long_description.as_deref().unwrap();
    assert_eq!(description.len(), MAX_LONG_TEXT_BYTES);
    assert!(comment.starts_with(description));

    let out = run(["verify".as_ref(), output.as_os_str()]);
    assert_exit(&out, 0);
}

#[test]
fn a_70_kb_line_in_a_chapters_file_is_cut_with_one_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    book_with_titles(&book, ["One", "Two"], None);
    let title = long_text("Chapter ");
    let chapters = tmp.path().join("chapters.txt");
    std::fs::write(
        &chapters,
        format!("00:00:00.000 {title}\n00:00:00.300 {title}\n"),
    )
    .unwrap();

    let output = tmp.path().join("out").join("book.m4b");
    let out = run_in(
        tmp.path(),
        &[
            "convert".as_ref(),
            "--json".as_ref(),
            "--chapters-file".as_ref(),
            chapters.as_ref(),
            "-o".as_ref(),
            output.as_ref(),
            book.as_ref(),
        ],
    );
    assert_exit(&out, 0);
    assert!(
        out.stderr.len() < QUIET_STDERR_BYTES,
        "{} bytes on stderr",
        out.stderr.len()
    );
    let report = json(&out);
    let cut: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["message"]
                .as_str()
                .is_some_and(|m| m.contains("chapter title(s)"))
        })
        .collect();
    assert_eq!(cut.len(), 1, "{:#}", report["findings"]);

    let titles = chapter_titles(&output);
    assert_eq!(titles.len(), 2);
    for t in &titles {
        assert!(
            t.len() <= MAX_TITLE_BYTES && t.len() > MAX_TITLE_BYTES - 4,
            "{}",
            t.len()
        );
        assert!(title.starts_with(t.as_str()));
    }
}
