//! What the program tells the user when something is off: damaged backups are listed as
//! damaged, hostile file names and tags reach the terminal escaped, and a bad option value is
//! rejected the same way (exit 2, naming the option) from the command line, the environment
//! and the config file. End to end through the binary, with the helpers of `cli_workflow`.
use crate::cli_workflow::{code, m4b_files, text, Env};
use aiom4b::workflow::BackupStore;
use aiom4b_testkit::fixtures::{write_mp3, Mp3Spec};
use serde_json::Value;
use std::fs;
use std::process::Output;

// --- damaged backups ---------------------------------------------------------------------------

#[test]
fn damaged_backups_are_listed_and_verified_as_damaged() {
    let env = Env::new();
    let store = BackupStore::new(env.data().join("backup"));
    let intact = store.create(&env.book("Intact", 1, 0.5), None).unwrap();
    let empty = store.create(&env.book("Emptied", 1, 0.5), None).unwrap();
    let garbled = store.create(&env.book("Garbled", 2, 0.5), None).unwrap();
    fs::write(empty.path.join("metadata.txt"), b"").unwrap();
    fs::write(
        garbled.path.join("metadata.txt"),
        "# aiom4b backup\nversion: 1\n---\nfile\tnot-a-hash\tten\t01.mp3\n",
    )
    .unwrap();
    // A folder that is not a backup (no manifest, no backup name) is not aiom4b's business.
    fs::create_dir_all(store.dir().join("my notes")).unwrap();

    // The library lists all three, the two broken ones with the reason.
    let listed = store.list().unwrap();
    let names: Vec<&str> = listed.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for b in &listed {
        assert_eq!(b.damaged.is_some(), b.name != intact.name, "{b:?}");
    }
    let damaged_empty = listed.iter().find(|b| b.name == empty.name).unwrap();
    assert!(
        damaged_empty
            .damaged
            .as_deref()
            .unwrap()
            .contains("metadata.txt: empty"),
        "{damaged_empty:?}"
    );
    assert_eq!(damaged_empty.files, 1, "the files that are there");

    let out = env.run(&["backup", "list"]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let table = text(&out.stdout);
    for b in [&empty, &garbled] {
        let row = table
            .lines()
            .find(|l| l.starts_with(&b.name))
            .unwrap_or_else(|| panic!("{} not listed:\n{table}", b.name));
        assert!(row.contains("DAMAGED"), "{row}");
    }
    assert!(table.contains(&intact.name), "{table}");
    assert!(!table.contains("my notes"), "{table}");

    let out = env.run(&["backup", "list", "--json"]);
    assert_eq!(code(&out), 1);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 3, "{json:#}");
    let garbled_json = list.iter().find(|b| b["name"] == garbled.name).unwrap();
    assert!(
        garbled_json["damaged"]
            .as_str()
            .unwrap()
            .contains("malformed"),
        "{garbled_json:#}"
    );
    assert_eq!(garbled_json["source"], Value::Null);

    let out = env.run(&["backup", "verify"]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for b in [&empty, &garbled] {
        assert!(
            report.contains(&format!("DAMAGED {}", b.name)),
            "{}:\n{report}",
            b.name
        );
    }
    assert!(
        report.contains(&format!("ok      {}", intact.name)),
        "{report}"
    );

    // By name too, and a damaged backup is never restored.
    let out = env.run(&["backup", "verify", &empty.name]);
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    let restore_to = env.data().join("restored");
    let out = env.run(&[
        "backup",
        "restore",
        &garbled.name,
        "--to",
        restore_to.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    assert!(!restore_to.join("Garbled").exists());
}

#[test]
fn a_backup_whose_manifest_was_deleted_is_damaged_not_absent() {
    let env = Env::new();
    let store = BackupStore::new(env.data().join("backup"));
    let b = store.create(&env.book("Dune", 1, 0.5), None).unwrap();
    fs::remove_file(b.path.join("metadata.txt")).unwrap();
    let out = env.run(&["backup", "list"]);
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("metadata.txt: missing"),
        "{}",
        text(&out.stdout)
    );
    let out = env.run(&["backup", "verify"]);
    assert_eq!(code(&out), 1);
    assert!(text(&out.stdout).contains(&format!("DAMAGED {}", b.name)));
}

// --- terminal escapes --------------------------------------------------------------------------

/// A file name that recolours the terminal, sets its title and reverses what follows.
const HOSTILE_NAME: &str = "02\x1b[31mRED\x1b]0;pwned\x07\u{202e}.mp3";
/// Its escaped form: what a human sees instead.
const HOSTILE_SHOWN: &str = "02\\x1b[31mRED\\x1b]0;pwned\\x07\\u{202e}.mp3";
/// A tag with a right-to-left override and a screen clear.
const HOSTILE_TITLE: &str = "Evil\u{202e}eltit\x1b[2J";

/// Asserts that neither stream holds a raw ESC, BEL or U+202E.
#[track_caller]
fn assert_terminal_safe(out: &Output, what: &str) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let raw = bytes.iter().any(|&b| b == 0x1b || b == 0x07)
            || bytes.windows(3).any(|w| w == "\u{202e}".as_bytes());
        assert!(
            !raw,
            "{what}: raw control characters on {stream}:\n{}",
            text(bytes).escape_debug()
        );
    }
}

fn all_text(out: &Output) -> String {
    text(&out.stdout) + &text(&out.stderr)
}

#[test]
fn hostile_names_and_tags_are_escaped_on_the_terminal_and_exact_in_json() {
    let env = Env::new();
    // A good book: the hostile name on a real MP3 whose title tag is hostile too.
    let good = env.book("Good", 1, 0.5);
    let spec = Mp3Spec {
        sample_rate: 22_050,
        channels: 1,
        tags: aiom4b::Tags {
            title: Some(HOSTILE_TITLE.into()),
            album: Some(format!("Album{HOSTILE_TITLE}")),
            ..Default::default()
        },
        ..Mp3Spec::default()
    };
    write_mp3(good.join(HOSTILE_NAME), &spec).unwrap();
    let good_arg = good.to_str().unwrap();

    let out = env.run(&["probe", good_arg]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_terminal_safe(&out, "probe");
    let shown = all_text(&out);
    assert!(
        shown.contains(HOSTILE_SHOWN),
        "probe names the file:\n{shown}"
    );
    // (The library drops the control characters of tags; the bidi override is text and stays.)
    assert!(shown.contains("Evil\\u{202e}eltit"), "{shown}");

    let json = env.json(&["probe", "--json", good_arg]);
    let tracks = json["book"]["tracks"].as_array().unwrap();
    assert!(
        tracks.iter().any(|t| t["rel_path"] == HOSTILE_NAME
            && t["chapter_title"]
                .as_str()
                .is_some_and(|c| c.starts_with("Evil\u{202e}eltit"))),
        "JSON keeps the exact name and title: {json:#}"
    );

    let out = env.run(&["-v", "convert", "-o", "book.m4b", good_arg]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_terminal_safe(&out, "convert -v");
    let output = env.data().with_file_name("book.m4b");
    let out = env.run(&["verify", output.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", all_text(&out));
    assert_terminal_safe(&out, "verify");
    assert!(
        text(&out.stdout).contains("Evil\\u{202e}eltit"),
        "{}",
        text(&out.stdout)
    );

    // A bad book: the hostile name on a file that is not an MP3, so errors name it.
    let bad = env.source().join("Bad");
    fs::create_dir_all(&bad).unwrap();
    fs::write(bad.join(HOSTILE_NAME), vec![0x5a; 4096]).unwrap();
    let bad_arg = bad.to_str().unwrap();
    for args in [
        vec!["probe", bad_arg],
        vec!["convert", bad_arg],
        vec!["-v", "convert", "--no-backup", bad_arg],
        vec!["convert", "-o", "bad.m4b", bad_arg],
    ] {
        let out = env.run(&args);
        assert_eq!(code(&out), 1, "{args:?}: {}", all_text(&out));
        assert_terminal_safe(&out, &format!("{args:?}"));
        assert!(
            all_text(&out).contains(HOSTILE_SHOWN),
            "{args:?} names the file:\n{}",
            all_text(&out)
        );
    }
    let jobs = env.jobs();
    let failed: Vec<&Value> = jobs.iter().filter(|j| j["status"] == "failed").collect();
    assert_eq!(failed.len(), 3, "{jobs:#?}");
    assert!(
        failed.iter().all(|j| j["error"]["message"]
            .as_str()
            .unwrap()
            .contains(HOSTILE_NAME)),
        "the job records keep the exact name: {jobs:#?}"
    );
    let id = failed[0]["id"].as_str().unwrap();
    for args in [
        vec!["status"],
        vec!["status", id],
        vec!["jobs", "list"],
        vec!["jobs", "list", "--status", "failed"],
    ] {
        let out = env.run(&args);
        assert_eq!(code(&out), 0, "{args:?}: {}", all_text(&out));
        assert_terminal_safe(&out, &format!("{args:?}"));
        assert!(
            all_text(&out).contains("\\x1b[31mRED"),
            "{args:?} shows the name, escaped:\n{}",
            all_text(&out)
        );
    }
    assert_eq!(m4b_files(&env.output_dir()).len(), 0);
    assert!(output.is_file());
}

// --- option checks -----------------------------------------------------------------------------

/// Runs `args` with `var=value` in the environment.
fn run_with_env(env: &Env, args: &[&str], var: &str, value: &str) -> Output {
    env.command(args).env(var, value).output().unwrap()
}

#[test]
fn a_bad_option_value_is_a_usage_error_naming_it_from_every_source() {
    let env = Env::new();
    let book = env.book("Dune", 1, 0.5);
    let book_arg = book.to_str().unwrap();
    let config = env.data().with_file_name("bad.toml");
    let config_arg = config.to_str().unwrap();
    // (flag, variable, file key, bad value on the command line / in the environment, in TOML)
    let cases = [
        (
            "--name-template",
            "NAME_TEMPLATE",
            "name_template",
            "{bogus}",
            "\"{bogus}\"",
        ),
        (
            "--max-file-size-mb",
            "MAX_FILE_SIZE_MB",
            "max_file_size_mb",
            "0",
            "0",
        ),
        (
            "--max-total-size-mb",
            "MAX_TOTAL_SIZE_MB",
            "max_total_size_mb",
            "0",
            "0",
        ),
        (
            "--timeout",
            "PROCESSING_TIMEOUT_SECS",
            "processing_timeout_secs",
            "-1",
            "-1",
        ),
    ];
    for (flag, var, key, bad, toml_value) in cases {
        let from_cli = env.run(&["convert", &format!("{flag}={bad}"), book_arg]);
        fs::write(&config, format!("{key} = {toml_value}\n")).unwrap();
        let from_file = env.run(&["--config", config_arg, "convert", book_arg]);
        let from_env = run_with_env(&env, &["convert", book_arg], var, bad);
        for (source, out, name) in [
            ("command line", &from_cli, flag),
            ("environment", &from_env, var),
            ("config file", &from_file, key),
        ] {
            assert_eq!(code(out), 2, "{flag} from the {source}: {}", all_text(out));
            let err = text(&out.stderr);
            assert!(
                err.contains(&format!("invalid {name} = ")) && err.contains(var),
                "{flag} from the {source} names it:\n{err}"
            );
        }
    }
    // probe checks the limits the same way.
    let out = env.run(&["probe", "--max-file-size-mb", "0", book_arg]);
    assert_eq!(code(&out), 2, "{}", all_text(&out));
    assert!(text(&out.stderr).contains("--max-file-size-mb"));
    // Nothing was started: no job, no backup, not even the data folder.
    assert!(!env.data().exists(), "a usage error writes nothing");

    // Options of the commands themselves: usage errors too.
    for args in [
        vec!["jobs", "clear", "--older-than", "abc"],
        vec!["convert", "--sample-rate", "12345", book_arg],
        vec!["convert", "--bitrate", "500k", book_arg],
    ] {
        let out = env.run(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", all_text(&out));
        assert!(
            text(&out.stderr).contains(args[args.len() - 2]),
            "{args:?} names the option: {}",
            text(&out.stderr)
        );
    }

    // Good values given as flags take effect: they reach the workflow through the
    // configuration.
    let out = env.run(&[
        "convert",
        "--name-template",
        "{author} - {title}",
        "--max-file-size-mb",
        "1",
        "--timeout",
        "600",
        book_arg,
    ]);
    assert_eq!(code(&out), 0, "{}", all_text(&out));
    let outputs = m4b_files(&env.output_dir());
    assert_eq!(
        outputs
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        ["Fixture Author - Fixture Book.m4b"]
    );
    let out = env.run(&["jobs", "clear", "--older-than", "7d"]);
    assert_eq!(code(&out), 0, "{}", all_text(&out));
}

#[test]
fn a_chapters_file_that_starts_after_the_end_warns_everywhere() {
    let env = Env::new();
    let book = env.book("Short", 2, 1.0);
    let chapters = env.data().with_file_name("chapters.txt");
    fs::write(&chapters, "10:00:00.000 Epilogue\n").unwrap();
    let output = env.data().with_file_name("short.m4b");
    let out = env.run(&[
        "convert",
        "--json",
        "-o",
        output.to_str().unwrap(),
        "--chapters-file",
        chapters.to_str().unwrap(),
        book.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", all_text(&out));
    let what = "after the end of the book";
    assert!(
        text(&out.stderr).contains(what),
        "stderr: {}",
        text(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["severity"] == "warning" && f["message"].as_str().unwrap().contains(what)),
        "--json: {report:#}"
    );
    let logs: String = fs::read_dir(env.data().join("logs"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        logs.lines()
            .any(|l| l.contains(what) && l.contains("\"level\":\"WARN\"")),
        "log: {logs}"
    );
    // The book still gets its one chapter, from the start.
    let chapters = report["chapters"].as_array().unwrap();
    assert_eq!(chapters.len(), 1, "{report:#}");
    assert_eq!(chapters[0]["start_samples"], 0);
    assert_eq!(chapters[0]["title"], "Epilogue");
}
