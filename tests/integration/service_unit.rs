//! The systemd units in docs/ (`aiom4b.service`, `aiom4b-worker.service`): systemd's own checker
//! accepts them without a warning, its offline security review rates their sandbox, and the
//! command line and environment they give the binary start the real service, which then stops
//! on systemd's stop signal (SIGTERM) with success.
//!
//! No systemd runs as PID 1 here, so the units are not started by systemd itself;
//! `systemd-analyze verify` and `security --offline` need no running manager. What a stop does
//! to a running job is tested in `serve.rs` (SIGTERM mid-job) and `scaleout.rs` (a worker
//! hands its job back).
use crate::common::{aiom4b, run_tool, stderr, WORKFLOW_VARS};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Where the units expect the binary (docs/deploy.md installs it there).
const INSTALLED_BINARY: &str = "/usr/local/bin/aiom4b";

/// serve's and worker's SHUTDOWN_GRACE (src/bin/aiom4b/serve/mod.rs): how long running jobs get
/// to stop after SIGTERM. The unit's TimeoutStopSec must be longer, or systemd kills the
/// process while it is still cleaning up.
const SHUTDOWN_GRACE_SECS: u64 = 20;

/// Longest wait for the service to start or stop (hang detection, not a speed check).
const DEADLINE: Duration = Duration::from_secs(60);

fn unit_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name)
}

/// The values of `key=` in the unit, in order (comments are skipped: they start the line).
fn values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
        .collect()
}

#[track_caller]
fn value(unit: &str, key: &str) -> String {
    let v = values(unit, key);
    assert_eq!(v.len(), 1, "{key}= should be set once: {v:?}");
    v[0].clone()
}

/// The unit with ExecStart pointing at the binary built for the tests (systemd-analyze checks
/// that the program exists and is executable), written into `dir`.
fn with_built_binary(name: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(unit_path(name)).unwrap();
    let exec = value(&text, "ExecStart");
    assert!(
        exec.starts_with(&format!("{INSTALLED_BINARY} ")),
        "{name}: ExecStart={exec}"
    );
    let built = env!("CARGO_BIN_EXE_aiom4b");
    let text = text.replace(
        &format!("ExecStart={INSTALLED_BINARY} "),
        &format!("ExecStart={built} "),
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[track_caller]
fn check_unit(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let unit = with_built_binary(name, dir.path());
    // --man=no: the Documentation= man pages are installed by `aiom4b man --dir`, not here.
    // systemd-analyze exits 0 after warnings (an unknown key, a bad value are "ignoring"), so
    // stderr must be empty.
    let out = run_tool(
        std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&unit),
    );
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify {name}: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    // The offline review scores the sandbox from 0 (locked down) to 10 (none); 2.0 and below is
    // what systemd calls OK. The threshold is given in tenths.
    let out = run_tool(
        std::process::Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
            .arg(&unit),
    );
    assert!(
        out.status.success(),
        "systemd-analyze security {name}: exposure above 2.0: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );

    let text = std::fs::read_to_string(unit_path(name)).unwrap();
    for (key, want) in [
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("KillSignal", "SIGTERM"),
        ("User", "aiom4b"),
        ("StateDirectory", "aiom4b"),
    ] {
        assert_eq!(value(&text, key), want, "{name}: {key}=");
    }
    // DATA_DIR is the state directory, the one writable place under ProtectSystem=strict.
    let env = environment(&text);
    assert!(
        env.contains(&("DATA_DIR".into(), "/var/lib/aiom4b".into())),
        "{name}: {env:?}"
    );
    let stop = value(&text, "TimeoutStopSec");
    let secs: u64 = stop.trim_end_matches('s').parse().unwrap();
    assert!(
        secs > SHUTDOWN_GRACE_SECS,
        "{name}: TimeoutStopSec={stop} leaves no time for the {SHUTDOWN_GRACE_SECS} s grace"
    );
}

/// The unit's `Environment=KEY=VALUE` lines.
fn environment(unit: &str) -> Vec<(String, String)> {
    values(unit, "Environment")
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("KEY=VALUE");
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn the_serve_unit_passes_systemd_analyze_verify_and_security() {
    check_unit("aiom4b.service");
}

#[test]
fn the_worker_unit_passes_systemd_analyze_verify_and_security() {
    check_unit("aiom4b-worker.service");
}

/// Runs the unit's ExecStart command line with the unit's environment, its folders moved into
/// a temporary one (DATA_DIR = the working directory = the state directory, created first as
/// systemd's StateDirectory= does; SOURCE_DIR), waits for the line saying it is up, sends
/// SIGTERM as `systemctl stop` does, and returns the exit code and stderr.
fn start_and_stop(name: &str, ready: &str, extra_args: &[&str]) -> (Option<i32>, String) {
    let text = std::fs::read_to_string(unit_path(name)).unwrap();
    let exec = value(&text, "ExecStart");
    // systemd would split a quoted argument differently; the units have none.
    assert!(!exec.contains(['"', '\'', '\\', '$', '%']), "{exec}");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(argv[0], INSTALLED_BINARY);

    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("var/lib/aiom4b");
    let source = tmp.path().join("srv/audiobooks");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&source).unwrap();
    assert_eq!(value(&text, "WorkingDirectory"), "/var/lib/aiom4b");

    let mut cmd = aiom4b();
    for var in WORKFLOW_VARS {
        cmd.env_remove(var);
    }
    cmd.env_remove("SOURCE_DIR").env_remove("DATABASE_URL");
    for (k, v) in environment(&text) {
        let v = match k.as_str() {
            "DATA_DIR" => state.to_string_lossy().into_owned(),
            "SOURCE_DIR" => source.to_string_lossy().into_owned(),
            _ => v,
        };
        cmd.env(k, v);
    }
    cmd.current_dir(&state)
        .args(&argv[1..])
        .args(extra_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start aiom4b");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with(&ready) {
                let _ = tx.send(());
            }
        }
    });
    let mut err_pipe = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    if rx.recv_timeout(DEADLINE).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{name}: `{exec}` did not start:\n{}",
            err.join().unwrap_or_default()
        );
    }
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("{name}: did not stop on SIGTERM within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // It ran in its state directory: the database and logs are there.
    assert!(state.join("aiom4b.db").exists(), "{name}: no database");
    (status.code(), err.join().unwrap())
}

#[test]
fn the_serve_unit_command_line_starts_the_service_and_sigterm_stops_it_with_success() {
    // --port 0: a free port instead of 8000, which another program may hold.
    let (code, err) = start_and_stop("aiom4b.service", "listening on http://", &["--port", "0"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("service stopped"), "{err}");
}

#[test]
fn the_worker_unit_command_line_starts_a_worker_and_sigterm_stops_it_with_success() {
    let (code, err) = start_and_stop("aiom4b-worker.service", "worker ", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("worker stopped"), "{err}");
}
