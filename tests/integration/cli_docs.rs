//! `aiom4b completions` and `aiom4b man`: each script is checked by its own shell (`bash -n`,
//! `zsh -n`, `fish --no-execute`), bash and fish really complete from it, and every page renders
//! in groff without a warning and names every subcommand. The shells and groff are programs the
//! tests run, not optional extras: a missing one fails the test and names the package
//! (scripts/setup.sh installs them).
use crate::common::{aiom4b, assert_exit, run, run_cmd, run_tool, stderr, stdout};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

/// The subcommands as `aiom4b --help` lists them (clap's help, not the generators' reading of
/// the definitions), without `help`.
fn subcommands(args: &[&str]) -> Vec<String> {
    let out = run(args.iter().chain(&["--help"]));
    assert_exit(&out, 0);
    let help = stdout(&out);
    let list: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A name starts in column 2; wrapped descriptions are indented further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|n| n != "help")
        .collect();
    assert!(!list.is_empty(), "no commands in --help:\n{help}");
    list
}

/// Writes the completion script for `shell` into `dir` and returns its path.
fn script(dir: &Path, shell: &str, name: &str) -> std::path::PathBuf {
    let out = run(["completions", shell]);
    assert_exit(&out, 0);
    assert!(
        out.stdout.len() > 1000,
        "{shell} script too short:\n{}",
        stdout(&out)
    );
    let path = dir.join(name);
    fs::write(&path, &out.stdout).unwrap();
    path
}

/// Runs a shell's syntax check and fails with its diagnostics.
#[track_caller]
fn assert_syntax_ok(cmd: &mut Command, what: &str) {
    let out = run_tool(cmd);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{what}: {:?}\n{}",
        out.status,
        stderr(&out)
    );
}

/// What bash's programmable completion offers for the command line `words` (the last word is
/// the one being completed): the script is sourced in a real bash, the function it registered
/// for `aiom4b` (read back from `complete -p`) is called the way readline calls it, with
/// COMP_WORDS/COMP_CWORD/COMP_LINE/COMP_POINT set and (command, word, previous word) as
/// arguments, and COMPREPLY is printed.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    const DRIVER: &str = r#"
source "$1" || exit 3
spec=$(complete -p aiom4b) || { echo "the script registered no completion for aiom4b" >&2; exit 4; }
fn=$(sed -n 's/.*-F \([^ ]*\).*/\1/p' <<<"$spec")
shift
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
prev=""; [ $# -ge 2 ] && prev="${COMP_WORDS[COMP_CWORD-1]}"
"$fn" aiom4b "${COMP_WORDS[COMP_CWORD]}" "$prev"
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let out = run_tool(
        Command::new("bash")
            .args(["--norc", "--noprofile", "-c", DRIVER, "driver"])
            .arg(script)
            .args(words),
    );
    assert!(
        out.status.success(),
        "bash completion of {words:?} failed: {:?}\n{}",
        out.status,
        stderr(&out)
    );
    stdout(&out).lines().map(str::to_string).collect()
}

#[test]
fn the_bash_script_parses_and_completes_subcommands_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = script(dir.path(), "bash", "aiom4b.bash");
    assert_syntax_ok(Command::new("bash").arg("-n").arg(&path), "bash -n");

    let offered = bash_complete(&path, &["aiom4b", "con"]);
    assert_eq!(offered, ["convert", "config"], "aiom4b con<TAB>");
    let offered = bash_complete(&path, &["aiom4b", "convert", "--pre"]);
    assert_eq!(offered, ["--preset"], "aiom4b convert --pre<TAB>");
    // Nested subcommands and an option's values.
    let offered = bash_complete(&path, &["aiom4b", "jobs", "l"]);
    assert_eq!(offered, ["list", "log"], "aiom4b jobs l<TAB>");
    let offered = bash_complete(&path, &["aiom4b", "convert", "--preset", ""]);
    assert_eq!(
        offered,
        ["default", "speech", "source"],
        "aiom4b convert --preset <TAB>"
    );
    // Every subcommand is offered after `aiom4b `. (clap_complete's scripts also offer hidden
    // flags, such as the test-only --segment-frames: its generators do not filter them.)
    let offered: BTreeSet<String> = bash_complete(&path, &["aiom4b", ""]).into_iter().collect();
    for name in subcommands(&[]) {
        assert!(offered.contains(&name), "{name} not offered: {offered:?}");
    }
}

#[test]
fn the_zsh_script_parses_and_is_a_completion_function_for_aiom4b() {
    let dir = tempfile::tempdir().unwrap();
    let path = script(dir.path(), "zsh", "_aiom4b");
    // -f: no start-up files of the machine's user.
    assert_syntax_ok(Command::new("zsh").args(["-f", "-n"]).arg(&path), "zsh -n");
    let text = fs::read_to_string(&path).unwrap();
    // compinit autoloads a file of fpath named _aiom4b for `aiom4b` by this first line.
    assert_eq!(text.lines().next(), Some("#compdef aiom4b"));
    assert!(text.contains("--preset"), "no --preset in the zsh script");
}

#[test]
fn the_fish_script_parses_and_completes_subcommands_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = script(dir.path(), "fish", "aiom4b.fish");
    assert_syntax_ok(
        Command::new("fish").arg("--no-execute").arg(&path),
        "fish --no-execute",
    );
    // fish writes its history and universal variables under HOME/XDG: keep them in the test's
    // folder, away from the user's.
    let complete = |line: &str| -> Vec<String> {
        let out = run_tool(
            Command::new("fish")
                .env("HOME", dir.path())
                .env("XDG_CONFIG_HOME", dir.path().join("config"))
                .env("XDG_DATA_HOME", dir.path().join("data"))
                .args(["-c", "source $argv[1]; and complete -C $argv[2]"])
                .arg(&path)
                .arg(line),
        );
        assert!(
            out.status.success(),
            "fish completion of {line:?} failed: {:?}\n{}",
            out.status,
            stderr(&out)
        );
        // "candidate<TAB>description" per line.
        stdout(&out)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(complete("aiom4b conv"), ["convert"]);
    assert_eq!(complete("aiom4b convert --pre"), ["--preset"]);
    assert_eq!(complete("aiom4b jobs l"), ["list", "log"]);
}

/// Renders a page with groff as `man` would (`-man -Tutf8`), with every warning on (`-ww`) and
/// no output (`-z`), and fails on any diagnostic. groff exits 0 after warnings, so stderr is
/// what tells.
#[track_caller]
fn assert_renders_cleanly(page: &Path) {
    let out = run_tool(
        Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(page),
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "groff on {}: {:?}\n{}",
        page.display(),
        out.status,
        stderr(&out)
    );
}

#[test]
fn the_man_page_renders_without_warnings_and_names_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(["man"]);
    assert_exit(&out, 0);
    let page = dir.path().join("aiom4b.1");
    fs::write(&page, &out.stdout).unwrap();
    assert_renders_cleanly(&page);

    let text = stdout(&out);
    assert!(text.starts_with(".ie") || text.starts_with(".TH"), "{text}");
    assert!(text.contains("\n.TH aiom4b 1 "), "no .TH line:\n{text}");
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH SUBCOMMANDS",
    ] {
        assert!(text.contains(section), "no {section}:\n{text}");
    }
    // Plain ASCII: non-ASCII characters are escaped for groff without preconv.
    assert!(text.is_ascii(), "raw non-ASCII in the page");
    for name in subcommands(&[]) {
        // Subcommand names are written with roff's escaped hyphen: aiom4b\-convert(1).
        assert!(
            text.contains(&format!("aiom4b\\-{name}(1)")),
            "{name} missing from the page:\n{text}"
        );
    }
}

#[test]
fn man_dir_writes_one_page_per_command_and_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    // A folder that does not exist yet, as /usr/local/share/man/man1 may not.
    let man1 = dir.path().join("share/man/man1");
    let mut cmd = aiom4b();
    cmd.args(["man", "--dir"]).arg(&man1);
    let out = run_cmd(cmd);
    assert_exit(&out, 0);

    let mut expected: BTreeSet<String> = BTreeSet::from(["aiom4b.1".to_string()]);
    for name in subcommands(&[]) {
        expected.insert(format!("aiom4b-{name}.1"));
    }
    for parent in ["jobs", "backup", "chapters"] {
        for name in subcommands(&[parent]) {
            expected.insert(format!("aiom4b-{parent}-{name}.1"));
        }
    }
    assert!(expected.contains("aiom4b-jobs-list.1"), "{expected:?}");
    let written: BTreeSet<String> = fs::read_dir(&man1)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written, expected);
    // stdout lists what was written, one path a line.
    let listed: BTreeSet<String> = stdout(&out)
        .lines()
        .map(|l| {
            let p = Path::new(l);
            assert_eq!(p.parent(), Some(man1.as_path()), "{l}");
            p.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    assert_eq!(listed, expected);
    for name in &written {
        let page = man1.join(name);
        assert_renders_cleanly(&page);
        let text = fs::read_to_string(&page).unwrap();
        let title = name.trim_end_matches(".1");
        assert!(
            text.contains(&format!("\n.TH {title} 1 ")),
            "{name}: wrong or no .TH line"
        );
    }
    // The nested page describes the nested command's own flags.
    let jobs_list = fs::read_to_string(man1.join("aiom4b-jobs-list.1")).unwrap();
    assert!(jobs_list.contains("\\-\\-archived"), "{jobs_list}");
}

/// Completions and man pages are generated from the clap definitions alone: a broken config
/// file (which every other command refuses, exit 2) does not stop them, and they create no
/// DATA_DIR, database or log.
#[test]
fn completions_and_man_need_no_configuration_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    fs::write(&config, "this is = = not toml\n").unwrap();
    let data = dir.path().join("data");
    let with_env = |args: &[&str]| {
        let mut cmd = aiom4b();
        cmd.current_dir(dir.path())
            .env("AIOM4B_CONFIG", &config)
            .env("DATA_DIR", &data)
            .args(args);
        run_cmd(cmd)
    };
    // The control: the broken file is really read by a command that loads the configuration.
    let control = with_env(&["config"]);
    assert_exit(&control, 2);

    for args in [
        &["completions", "bash"][..],
        &["completions", "zsh"],
        &["completions", "fish"],
        &["man"],
    ] {
        let out = with_env(args);
        assert_exit(&out, 0);
        assert!(out.stderr.is_empty(), "{args:?}: {}", stderr(&out));
    }
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["broken.toml"], "created besides the config file");
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = run(["completions", "tcsh"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("bash"), "{}", stderr(&out));
}
