//! `aiom4b verify` and `verify::summarize` on hostile files (issue 10, item 13): a timescale
//! of 0 in `mvhd` or `mdhd`, garbage in `mdat`, a FIFO, a folder and a device. Each is a clear
//! error (or a list of problems) naming the file, within a deadline, with exit 1 — and nothing
//! from the other readers on stderr: no panic message, no log lines from Symphonia with paths
//! into the cargo registry. The M4B is one aiom4b writes from generated MP3s.
use crate::common::*;
use aiom4b::{plan, verify, CancelToken, ConvertOptions, Converter, NoProgress, PlanOptions};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A verify that is refused at once takes milliseconds; a FIFO that blocks never returns.
const REFUSE_DEADLINE: Duration = Duration::from_secs(30);

/// A two-chapter book (so there is a chapter track with its own `mdhd`), 0.6 s long.
fn good_m4b(dir: &Path) -> PathBuf {
    let book = dir.join("book");
    std::fs::create_dir_all(&book).unwrap();
    small_mp3(&book.join("01 - One.mp3"));
    small_mp3(&book.join("02 - Two.mp3"));
    let output = dir.join("good.m4b");
    let b = plan::plan(&[book], &Default::default(), &Default::default(), &{
        let mut o = PlanOptions::default();
        o.output = Some(output.clone());
        o
    })
    .unwrap();
    Converter::new(ConvertOptions::default())
        .convert(&b, &NoProgress, &CancelToken::new())
        .unwrap();
    output
}

/// (offset, size) of the first box at `path` (e.g. `["moov", "trak", "mdia", "mdhd"]`),
/// taking the `nth` match of the last component.
fn find_box(file: &[u8], path: &[&str], nth: usize) -> (usize, usize) {
    fn walk(
        buf: &[u8],
        base: usize,
        path: &[&str],
        nth: &mut usize,
        out: &mut Option<(usize, usize)>,
    ) {
        let mut at = 0;
        while at + 8 <= buf.len() && out.is_none() {
            let size = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            let kind = std::str::from_utf8(&buf[at + 4..at + 8]).unwrap_or("");
            assert!(size >= 8 && at + size <= buf.len(), "box walk lost at {at}");
            if kind == path[0] {
                if path.len() == 1 {
                    if *nth == 0 {
                        *out = Some((base + at, size));
                    } else {
                        *nth -= 1;
                    }
                } else {
                    walk(&buf[at + 8..at + size], base + at + 8, &path[1..], nth, out);
                }
            }
            at += size;
        }
    }
    let mut n = nth;
    let mut out = None;
    walk(file, 0, path, &mut n, &mut out);
    out.unwrap_or_else(|| panic!("no box {path:?} #{nth}"))
}

/// A copy of `good` with the timescale of the given `mvhd`/`mdhd` set to 0.
fn zero_timescale(good: &[u8], path: &[&str], nth: usize) -> Vec<u8> {
    let (at, _) = find_box(good, path, nth);
    let version = good[at + 8];
    // Header, version+flags, then creation and modification times (4 or 8 bytes each).
    let ts = at + 12 + if version == 1 { 16 } else { 8 };
    let mut b = good.to_vec();
    assert_ne!(
        b[ts..ts + 4],
        [0; 4],
        "the fixture's timescale is not 0 already"
    );
    b[ts..ts + 4].copy_from_slice(&[0; 4]);
    b
}

/// A copy of `good` whose `mdat` payload is deterministic noise.
fn garbage_mdat(good: &[u8]) -> Vec<u8> {
    let (at, size) = find_box(good, &["mdat"], 0);
    let mut b = good.to_vec();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for byte in &mut b[at + 8..at + size] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = (x >> 56) as u8;
    }
    b
}

/// `aiom4b ARGS`, killed and failed after [`REFUSE_DEADLINE`].
fn run_quick(tmp: &Path, args: &[&OsStr]) -> std::process::Output {
    let mut cmd = aiom4b();
    cmd.env("DATA_DIR", tmp.join("data"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    wait_with_deadline(cmd.spawn().unwrap(), REFUSE_DEADLINE)
}

/// Nothing but aiom4b's own words on stderr.
#[track_caller]
fn assert_clean_stderr(o: &std::process::Output) {
    let err = stderr(o);
    for bad in [
        "panicked",
        ".cargo",
        "registry",
        "check failed",
        "RUST_BACKTRACE",
    ] {
        assert!(!err.contains(bad), "stderr has {bad:?}:\n{err}");
    }
    assert!(
        err.lines().count() <= 3,
        "stderr is not one clear error:\n{err}"
    );
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfifo {} failed", path.display());
}

#[test]
fn zero_timescales_are_clear_errors_before_other_readers_see_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read(good_m4b(tmp.path())).unwrap();
    let cases = [
        (
            "mvhd0.m4b",
            zero_timescale(&good, &["moov", "mvhd"], 0),
            "mvhd",
        ),
        (
            "audio-mdhd0.m4b",
            zero_timescale(&good, &["moov", "trak", "mdia", "mdhd"], 0),
            "mdhd",
        ),
        (
            "chapters-mdhd0.m4b",
            zero_timescale(&good, &["moov", "trak", "mdia", "mdhd"], 1),
            "mdhd",
        ),
    ];
    for (name, bytes, what) in cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();

        // The library: an error naming the file and the box, not a summary built on a panic.
        let e = verify::summarize(&path).expect_err(name).to_string();
        assert!(
            e.contains(name) && e.contains("timescale") && e.contains(what),
            "{name}: {e}"
        );

        // The program: exit 1, that error on stderr and nothing else.
        let out = run_quick(tmp.path(), &["verify".as_ref(), path.as_ref()]);
        assert_exit(&out, 1);
        assert_clean_stderr(&out);
        let err = stderr(&out);
        assert!(
            err.contains(name) && err.contains("timescale"),
            "{name}: {err}"
        );
    }
}

#[test]
fn garbage_audio_is_listed_as_problems_without_library_log_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read(good_m4b(tmp.path())).unwrap();
    let path = tmp.path().join("garbage.m4b");
    std::fs::write(&path, garbage_mdat(&good)).unwrap();

    let s = verify::summarize(&path).unwrap();
    assert!(s.length.decode_errors > 0, "{:?}", s.length);

    for json in [false, true] {
        let mut args: Vec<&OsStr> = vec!["verify".as_ref()];
        if json {
            args.push("--json".as_ref());
        }
        args.push(path.as_ref());
        let out = run_quick(tmp.path(), &args);
        assert_exit(&out, 1);
        assert_clean_stderr(&out);
        if json {
            let doc = crate::common::json(&out);
            assert_eq!(doc["ok"], false);
            let problems = doc["problems"].as_array().unwrap();
            assert!(
                problems
                    .iter()
                    .any(|p| p.as_str().unwrap().contains("failed to decode")),
                "{problems:#?}"
            );
        } else {
            let text = stdout(&out);
            assert!(text.contains("failed to decode"), "{text}");
            // Problems are sentences, not a library's Debug dump.
            assert!(!text.contains("Error {"), "{text}");
        }
    }
}

#[test]
fn fifos_folders_and_devices_are_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("pipe.m4b");
    mkfifo(&fifo);
    let folder = tmp.path().join("folder.m4b");
    std::fs::create_dir(&folder).unwrap();
    let cases: [(&Path, &str); 3] = [
        (&fifo, "FIFO"),
        (&folder, "folder"),
        (Path::new("/dev/zero"), "device"),
    ];
    for (path, kind) in cases {
        let p = path.to_path_buf();
        let e = within(REFUSE_DEADLINE, move || verify::summarize(&p))
            .expect_err(kind)
            .to_string();
        assert!(
            e.contains(&*path.to_string_lossy())
                && e.contains(kind)
                && e.contains("not a regular file"),
            "{e}"
        );

        let out = run_quick(tmp.path(), &["verify".as_ref(), path.as_ref()]);
        assert_exit(&out, 1);
        assert_clean_stderr(&out);
        let err = stderr(&out);
        assert!(
            err.contains("not a regular file") && err.contains(kind),
            "{err}"
        );
    }
}

#[test]
fn probing_a_fifo_directly_names_it() {
    // The scan skips FIFOs; a library caller may still hand one to probe_file, which must not
    // call it an empty file (a FIFO reports 0 bytes) nor block on it.
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("01.mp3");
    mkfifo(&fifo);
    let p = fifo.clone();
    let e = within(REFUSE_DEADLINE, move || aiom4b::probe::probe_file(&p))
        .expect_err("a FIFO is not an MP3")
        .to_string();
    assert!(
        e.contains("01.mp3") && e.contains("FIFO") && e.contains("not a regular file"),
        "{e}"
    );
}

#[test]
fn a_fifo_as_cover_is_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let book = tmp.path().join("book");
    std::fs::create_dir_all(&book).unwrap();
    small_mp3(&book.join("01.mp3"));
    let fifo = tmp.path().join("cover.jpg");
    mkfifo(&fifo);
    let out = run_quick(
        tmp.path(),
        &[
            "probe".as_ref(),
            "--cover".as_ref(),
            fifo.as_ref(),
            book.as_ref(),
        ],
    );
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("cover.jpg") && err.contains("FIFO") && err.contains("not a regular file"),
        "{err}"
    );
}
