//! The inputs the fuzzers found problems with (`fuzz/regressions/<target>/`, see
//! docs/fuzzing.md), run through the public entry points of what each target fuzzes, so that
//! `cargo test` keeps them fixed without the nightly toolchain.
use aiom4b::__internals::write_extra_items;
use aiom4b::chapters::{parse_chapters_text, timed_to_samples};
use aiom4b::verify::{check, summarize, Expectations};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The regression inputs of one fuzz target; there must be some, or the test proves nothing.
fn regressions(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("list the regression folder").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    files
}

/// The tag patcher (the `mp4box` target's `moov` rewrite): on every regression input it either
/// refuses, or writes items that verify then reads back. Before the fix, a box of size 0 ("to
/// the end of its container") swallowed the new items and the patch reported success.
#[test]
fn tag_patcher_never_hides_what_it_writes() {
    let tmp = tempfile::tempdir().unwrap();
    for input in regressions("mp4box") {
        let copy = tmp.path().join(input.file_name().unwrap());
        std::fs::copy(&input, &copy).unwrap();
        match write_extra_items(&copy, Some("The Narrator"), Some("The Series"), Some("2")) {
            Ok(()) => {
                let after = summarize(&copy).unwrap_or_else(|e| {
                    panic!("{}: patched, then unreadable: {e}", input.display())
                });
                assert_eq!(
                    after.tags.narrator.as_deref(),
                    Some("The Narrator"),
                    "{}: the narrator was written where verify does not find it",
                    input.display()
                );
            }
            Err(e) => {
                // Refused: the file is untouched.
                assert_eq!(
                    std::fs::read(&copy).unwrap(),
                    std::fs::read(&input).unwrap()
                );
                eprintln!("{}: refused: {e}", input.display());
            }
        }
    }
}

/// The chapters file parser (target `chapters`: 4 bytes rate, 8 bytes book length in samples,
/// little endian, then the text): accepted chapters start at 0 and strictly increase in
/// samples. Before the fix, two starts less than a sample apart made an empty chapter.
#[test]
fn chapters_never_start_on_the_same_sample() {
    for input in regressions("chapters") {
        let data = std::fs::read(&input).unwrap();
        let (head, text) = data.split_at(12);
        let rate = u32::from_le_bytes(head[..4].try_into().unwrap()) % 200_000 + 1;
        let total = u64::from_le_bytes(head[4..].try_into().unwrap());
        let Ok(timed) = parse_chapters_text(&String::from_utf8_lossy(text)) else {
            continue;
        };
        if let Ok((chapters, _)) = timed_to_samples(&timed, rate, total, &input) {
            assert_eq!(chapters[0].start_samples, 0);
            assert!(
                chapters
                    .windows(2)
                    .all(|w| w[0].start_samples < w[1].start_samples),
                "{}: {chapters:?}",
                input.display()
            );
        }
    }
}

/// `aiom4b verify` on each input that made another reader panic: the process ends normally
/// (a summary, or a finding with exit 1), never with a panic exit (101) or an abort.
fn run_verify(input: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aiom4b"))
        .arg("verify")
        .arg(input)
        .output()
        .expect("run aiom4b verify");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `verify` on the inputs that made Symphonia's AAC decoder panic (index out of bounds on a
/// damaged bitstream): the library returns a summary or an error, `check` copes with it, and
/// the command ends with 0 or 1.
#[test]
fn verify_returns_on_inputs_that_made_other_readers_panic() {
    for input in regressions("verify") {
        if let Ok(s) = summarize(&input) {
            let _ = check(&s, &Expectations::new(44_100, 2));
        }
        let (code, stderr) = run_verify(&input);
        assert!(
            matches!(code, Some(0 | 1)),
            "{}: exit {code:?}\n{stderr}",
            input.display()
        );
    }
}

/// Issue 10, item 13: a panic inside the other reader is caught (per packet), and the
/// program's panic hook keeps its "thread … panicked at …/symphonia-codec-aac…" off stderr.
#[test]
fn verify_prints_no_panic_of_another_reader() {
    for input in regressions("verify") {
        let (_, stderr) = run_verify(&input);
        assert!(
            !stderr.contains("panicked"),
            "{}: {stderr}",
            input.display()
        );
    }
}

/// The `inputs` target's findings: an MP4 whose seek to its middle lands past every packet was
/// reported as decoded to its end at sample 0. A seek that reads not one packet now vouches for
/// nothing (the ranged worker decodes from the start instead); every stretch decoded from a
/// seek ends where it says, also in a file cut short before the stretch (which then ends
/// before its stated length: the worker re-plans in order).
#[test]
fn a_seek_into_an_input_vouches_only_for_what_it_read() {
    use aiom4b::__internals::{decode, input};
    for path in regressions("inputs") {
        let _ = aiom4b::probe::probe_file(&path);
        let open = || input::open_input(&path, aiom4b::InputFormats::all());
        let Ok(probe) = open() else { continue };
        // The file's own rate: the seek is only for files at the book's rate.
        for rate in [
            8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000,
        ] {
            let Some(preroll) = decode::seek_preroll(&probe, rate) else {
                continue;
            };
            let mut delivered = 0u64;
            let from = 6615;
            let got =
                decode::decode_seeking(open().unwrap(), from, preroll, 2, &|| false, &mut |p| {
                    delivered += p[0].len() as u64;
                    Ok(true)
                })
                .unwrap();
            if let Some(got) = got {
                assert!(
                    delivered <= got.end.saturating_sub(from),
                    "{}: {got:?}",
                    path.display()
                );
                if got.damaged == 0 && got.whole {
                    assert_eq!(
                        delivered,
                        got.end.saturating_sub(from),
                        "{}: {got:?}",
                        path.display()
                    );
                }
            }
        }
    }
}
