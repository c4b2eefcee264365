//! A file shorter than its LAME/Xing header says (issue 10, item 12): `probe` and the plan
//! report it as `convert` would — an error naming the file, exit 1, the finding in `--json` —
//! and with `allow_damaged` a warning and the length the file really has, not the header's.
use crate::common::*;
use aiom4b::{plan, FindingKind, Limits, PlanOptions, ScanOptions, Severity};
use aiom4b_testkit::fixtures::{write_hostile, write_mp3};
use std::path::{Path, PathBuf};

/// `01 - before.mp3` (2 s), `02 - truncated.mp3` (header: 4 s; about 60 % there),
/// `03 - after.mp3` (2 s); returns the folder and the truncated file.
fn book(dir: &Path) -> (PathBuf, PathBuf) {
    let hostile = write_hostile(dir.join("hostile")).unwrap();
    let truncated = &hostile.iter().find(|(_, k)| *k == "truncated").unwrap().0;
    let book = dir.join("book");
    std::fs::create_dir_all(&book).unwrap();
    let good = sine_spec(440.0, 88_200, 44_100, 2, false);
    write_mp3(book.join("01 - before.mp3"), &good).unwrap();
    let bad = book.join("02 - truncated.mp3");
    std::fs::copy(truncated, &bad).unwrap();
    write_mp3(book.join("03 - after.mp3"), &good).unwrap();
    (book, bad)
}

/// What FFmpeg's decoder, as the engine runs it, gets from `path` at 44.1 kHz stereo.
fn decoded_samples(path: &Path) -> u64 {
    let input = aiom4b::__internals::input::open_mp3(path).unwrap();
    aiom4b::__internals::decode::decode_file(input, 44_100, 2, 16_384, &|| false, &mut |_| Ok(()))
        .unwrap()
        .output_samples
}

fn inspect(book: &Path, allow_damaged: bool) -> plan::Inspection {
    plan::inspect(
        &[book.to_path_buf()],
        &ScanOptions::default(),
        &Limits::default(),
        &{
            let mut o = PlanOptions::default();
            o.allow_damaged = allow_damaged;
            o
        },
    )
    .unwrap()
}

#[test]
fn probe_reports_a_truncated_file_like_convert_does() {
    let tmp = tempfile::tempdir().unwrap();
    let (book, bad) = book(tmp.path());
    let name = "02 - truncated.mp3";

    // `aiom4b probe --json`: no plan, exit 1, the file named with the reason and the way out.
    let mut cmd = aiom4b();
    cmd.env("DATA_DIR", tmp.path().join("data")).args([
        "probe".as_ref(),
        "--json".as_ref(),
        book.as_os_str(),
    ]);
    let out = run_cmd(cmd);
    assert_exit(&out, 1);
    let doc = json(&out);
    assert!(doc["book"].is_null(), "{doc:#}");
    let errors = findings_where(&doc, "severity", "error");
    assert_eq!(errors.len(), 1, "{doc:#}");
    let f = errors[0];
    assert_eq!(f["kind"], "damaged");
    assert!(f["path"].as_str().unwrap().ends_with(name), "{f:#}");
    assert!(
        f["message"].as_str().unwrap().contains("truncated"),
        "{f:#}"
    );
    assert!(
        f["remedy"].as_str().unwrap().contains("--allow-damaged"),
        "{f:#}"
    );

    // The table says the same and exits alike.
    let mut cmd = aiom4b();
    cmd.env("DATA_DIR", tmp.path().join("data"))
        .args(["probe".as_ref(), book.as_os_str()]);
    let out = run_cmd(cmd);
    assert_exit(&out, 1);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        all.lines()
            .any(|l| l.contains(name) && l.contains("truncated")),
        "{all}"
    );

    // `convert` decides the same, for the same file.
    let output = tmp.path().join("out").join("book.m4b");
    let mut cmd = aiom4b();
    cmd.env("DATA_DIR", tmp.path().join("data")).args([
        "convert".as_ref(),
        "-o".as_ref(),
        output.as_os_str(),
        book.as_os_str(),
    ]);
    let out = run_cmd(cmd);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains(name) && err.contains("truncated") && err.contains("--allow-damaged"),
        "{err}"
    );
    assert!(!output.exists());

    // The library: an error finding without allow_damaged …
    let ins = inspect(&book, false);
    assert!(ins.book.is_none());
    let errors: Vec<_> = ins.errors().collect();
    assert_eq!(errors.len(), 1, "{:#?}", ins.findings);
    assert_eq!(errors[0].kind, FindingKind::Damaged);
    assert_eq!(errors[0].path.as_deref(), Some(bad.as_path()));

    // … a warning with it, and the length the file really has (the header says 4 s).
    let ins = inspect(&book, true);
    let warnings: Vec<_> = ins
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Damaged)
        .collect();
    assert_eq!(warnings.len(), 1, "{:#?}", ins.findings);
    assert_eq!(warnings[0].severity, Severity::Warning);
    let b = ins.book.expect("a plan when damage is accepted");
    let t = &b.tracks[1].info;
    assert_eq!(t.path, bad);
    let there = decoded_samples(&bad);
    let planned = t.exact_samples.unwrap();
    assert!(
        planned.abs_diff(there) <= 1152,
        "planned {planned}, decodes {there}"
    );
    assert!(
        t.duration_secs() < 3.0,
        "the plan still believes the header: {} s",
        t.duration_secs()
    );
}

#[test]
fn convert_allow_damaged_reports_a_truncated_file_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (book, _) = book(tmp.path());
    let output = tmp.path().join("out").join("book.m4b");
    let mut cmd = aiom4b();
    cmd.env("DATA_DIR", tmp.path().join("data")).args([
        "convert".as_ref(),
        "--json".as_ref(),
        "--allow-damaged".as_ref(),
        "-o".as_ref(),
        output.as_os_str(),
        book.as_os_str(),
    ]);
    let out = run_cmd(cmd);
    assert_exit(&out, 0);
    let report = json(&out);
    let damaged = findings_where(&report, "kind", "damaged");
    assert_eq!(damaged.len(), 1, "{:#}", report["findings"]);
    assert_eq!(damaged[0]["severity"], "warning");
    assert!(damaged[0]["message"]
        .as_str()
        .unwrap()
        .contains("truncated"));
}

#[test]
fn damage_inside_a_complete_file_is_not_called_truncated() {
    // corrupt-middle.mp3 has all its bytes, three frames of them noise: the demuxer finds
    // fewer frames than the header counts, but the end is there. Only decoding can tell which
    // frames are bad, and `convert` does (`convert::damaged_inputs_fail_cleanly_unless_allowed`);
    // the plan must not misname it.
    let tmp = tempfile::tempdir().unwrap();
    let hostile = write_hostile(tmp.path().join("hostile")).unwrap();
    let corrupt = &hostile
        .iter()
        .find(|(_, k)| *k == "corrupt_middle")
        .unwrap()
        .0;
    let book = tmp.path().join("book");
    std::fs::create_dir_all(&book).unwrap();
    std::fs::copy(corrupt, book.join("01.mp3")).unwrap();
    let ins = inspect(&book, false);
    assert!(
        ins.findings
            .iter()
            .all(|f| !f.message.contains("truncated")),
        "{:#?}",
        ins.findings
    );
    assert!(ins.book.is_some(), "{:#?}", ins.findings);
}
