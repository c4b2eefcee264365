//! The `aiom4b` program end to end: conversions as jobs on real generated MP3s, checked through
//! the program's own commands (`jobs list --json`, `status --json`) and the files it leaves.
//!
//! Every test runs the binary in its own temporary directory with `DATA_DIR` and `SOURCE_DIR`
//! pointing into it, and with the workflow's variables removed, so a developer's environment
//! or `config/aiom4b.toml` can't leak in.
use aiom4b_testkit::age_keys::age_key;
use aiom4b_testkit::fixtures::{write_book, Mp3Spec};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::WORKFLOW_VARS;

/// A temporary home for one test: `data/` and `source/` below it.
pub(crate) struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    pub(crate) fn new() -> Env {
        Env {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    pub(crate) fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }
    pub(crate) fn source(&self) -> PathBuf {
        self.tmp.path().join("source")
    }
    pub(crate) fn output_dir(&self) -> PathBuf {
        self.data().join("output")
    }

    /// A book of `files` generated MP3s of `secs` each in `source/name` (mono 22.05 kHz keeps
    /// them quick to write and to convert).
    pub(crate) fn book(&self, name: &str, files: usize, secs: f64) -> PathBuf {
        let dir = self.source().join(name);
        let spec = Mp3Spec {
            sample_rate: 22_050,
            channels: 1,
            ..Mp3Spec::default()
        };
        write_book(&dir, files, secs, &spec).unwrap();
        dir
    }

    /// A folder whose only "MP3" is not one.
    pub(crate) fn bad_book(&self, name: &str) -> PathBuf {
        let dir = self.source().join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("01 - Chapter 1.mp3"), vec![0x5a; 4096]).unwrap();
        dir
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_aiom4b"));
        c.args(args)
            .current_dir(self.tmp.path())
            .env("DATA_DIR", self.data())
            .env("SOURCE_DIR", self.source())
            .stdin(Stdio::null());
        for v in WORKFLOW_VARS {
            c.env_remove(v);
        }
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and parses stdout as JSON; panics with stderr when it isn't.
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: {e}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    pub(crate) fn jobs(&self) -> Vec<Value> {
        match self.json(&["jobs", "list", "--json"]) {
            Value::Array(jobs) => jobs,
            other => panic!("not a list: {other}"),
        }
    }
}

pub(crate) fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Names in `dir` starting with a dot (`.part` files, staging folders).
pub(crate) fn hidden(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn m4b_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "m4b"))
        .collect();
    v.sort();
    v
}

/// `{title}_{YYYYMMDD_HHMMSS}.m4b`.
fn has_generated_name(path: &Path, title: &str) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    let Some(rest) = name
        .strip_prefix(&format!("{title}_"))
        .and_then(|r| r.strip_suffix(".m4b"))
    else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() == 15
        && b[8] == b'_'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 8 || c.is_ascii_digit())
}

#[test]
fn probe_writes_nothing() {
    let env = Env::new();
    let book = env.book("Dune", 1, 1.0);
    let out = env.run(&["probe", book.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Fixture Book_"),
        "{}",
        text(&out.stdout)
    );
    assert!(!env.data().exists(), "probe must not create DATA_DIR");
}

#[test]
fn convert_is_a_job_with_backup_generated_name_and_listing() {
    let env = Env::new();
    let book = env.book("Dune", 2, 2.0);
    let out = env.run(&["convert", "--json", book.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "completed");

    let outputs = m4b_files(&env.output_dir());
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    let output = &outputs[0];
    assert!(has_generated_name(output, "Fixture Book"), "{output:?}");
    assert_eq!(report["output_path"], output.to_str().unwrap());
    assert_eq!(
        fs::metadata(output).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert!(hidden(&env.output_dir()).is_empty(), "one .part, published");

    let jobs = env.jobs();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job["id"], report["job_id"]);
    assert_eq!(job["status"], "completed");
    assert_eq!(job["progress_percent"], 100.0);
    assert_eq!(job["output_path"], output.to_str().unwrap());
    assert_eq!(
        job["output_bytes"].as_u64(),
        Some(fs::metadata(output).unwrap().len())
    );
    assert!(job["input_bytes"].as_u64().unwrap() > 0);
    assert!((job["audio_duration_secs"].as_f64().unwrap() - 4.0).abs() < 0.1);
    let backups = job["backup_paths"].as_array().unwrap();
    assert_eq!(backups.len(), 1);
    let backup = PathBuf::from(backups[0].as_str().unwrap());
    assert!(backup.starts_with(env.data().join("backup")));
    assert!(backup.join("01 - Chapter 1.mp3").is_file());
    let stages: Vec<&str> = job["stage_timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["stage"].as_str().unwrap())
        .collect();
    for s in [
        "prepare", "backup", "convert", "encode", "verify", "publish",
    ] {
        assert!(stages.contains(&s), "{s} missing from {stages:?}");
    }
    assert_eq!(job["options"]["convert"]["verify"], true);
    assert!(book.is_dir(), "sources are kept by default");

    // The output passes the independent check, and the log file knows the job.
    let out = env.run(&["verify", output.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    let id = job["id"].as_str().unwrap();
    let logs: String = fs::read_dir(env.data().join("logs"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(logs.contains(id), "no log line with the job id");

    // The job's own lines, by a prefix of its id: its story in order.
    let out = env.run(&["jobs", "log", &id[..8]]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let lines = text(&out.stdout);
    let at = |m: &str| {
        lines
            .find(m)
            .unwrap_or_else(|| panic!("no {m:?} in {lines}"))
    };
    assert!(at("job started") < at("step: backup"), "{lines}");
    assert!(at("step: convert") < at("job completed"), "{lines}");
    let out = env.run(&["jobs", "log", "--json", id]);
    let first: Value = serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["job_id"], id);
    assert_eq!(first["message"], "job started");
}

#[test]
fn a_bad_folder_fails_its_job_as_input_error_without_backup() {
    let env = Env::new();
    let bad = env.bad_book("Broken");
    let out = env.run(&["convert", bad.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("what to do:"), "{stderr}");

    let jobs = env.jobs();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"]["category"], "input");
    let remedy = job["error"]["remedy"].as_str().unwrap();
    assert!(remedy.contains("01 - Chapter 1.mp3"), "{remedy}");
    // Validation runs before the backup: nothing was copied for a book that can't be made.
    assert_eq!(job["backup_paths"].as_array().unwrap().len(), 0);
    assert!(m4b_files(&env.output_dir()).is_empty());
    assert!(hidden(&env.output_dir()).is_empty());

    // A folder that does not exist is an input error too.
    let out = env.run(&["convert", env.source().join("nope").to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert_eq!(env.jobs()[0]["error"]["category"], "input");
}

#[test]
fn batch_converts_good_books_and_reports_the_bad_one() {
    let env = Env::new();
    env.book("Alpha", 1, 1.5);
    env.book("Beta", 2, 1.0);
    env.bad_book("Gamma");
    let out = env
        .command(&["batch", env.source().to_str().unwrap()])
        .env("MAX_CONCURRENT_JOBS", "2")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 1, "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("2 converted, 0 skipped, 1 failed, 0 cancelled"),
        "{stdout}"
    );
    assert!(stdout.contains("FAILED"), "{stdout}");

    let jobs = env.jobs();
    let count = |s: &str| jobs.iter().filter(|j| j["status"] == s).count();
    assert_eq!((count("completed"), count("failed")), (2, 1));
    assert_eq!(m4b_files(&env.output_dir()).len(), 2);

    // Again: converted books are skipped, the bad one fails again.
    let out = env.run(&["batch", env.source().to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stdout).contains("0 converted, 2 skipped, 1 failed"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn delete_source_only_after_success() {
    let env = Env::new();
    let bad = env.bad_book("Broken");
    let out = env.run(&["convert", "--delete-source", bad.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(bad.is_dir(), "a failed job keeps its source");

    let good = env.book("Dune", 1, 1.5);
    let out = env.run(&["convert", "--delete-source", good.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(!good.exists(), "deleted after success");
    let job = &env.jobs()[0];
    assert_eq!(job["status"], "completed");
    let backup = PathBuf::from(job["backup_paths"][0].as_str().unwrap());
    assert!(
        backup.join("01 - Chapter 1.mp3").is_file(),
        "the backup stays"
    );
    assert_eq!(m4b_files(&env.output_dir()).len(), 1);
}

/// Starts a conversion long enough to be caught running (9 minutes of audio on one engine
/// thread: several seconds even on a fast machine), and waits until
/// its job's `.part` has data in it.
fn start_long_conversion(env: &Env) -> Child {
    let book = env.book("Long", 6, 90.0);
    let mut child = env
        .command(&["convert", "-q", "-j1", book.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let part = fs::read_dir(env.output_dir()).ok().and_then(|rd| {
            rd.filter_map(Result::ok).find(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with(".aiom4b-")
                    && n.ends_with(".part")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            })
        });
        if part.is_some() {
            return child;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the conversion ended before it could be interrupted: {status}");
        }
        assert!(Instant::now() < deadline, "no .part appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn kill_9_during_convert_is_marked_interrupted_by_the_next_status() {
    let env = Env::new();
    let mut child = start_long_conversion(&env);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap(); // reaped: its pid is gone

    let status = env.json(&["status", "--json"]);
    let job = &status["recent"][0];
    assert_eq!(job["status"], "failed", "{status}");
    assert_eq!(job["error"]["category"], "system");
    let message = job["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("interrupted"), "{message}");
    assert!(hidden(&env.output_dir()).is_empty(), "the .part is gone");
    assert!(m4b_files(&env.output_dir()).is_empty());
}

#[test]
fn ctrl_c_cancels_the_job_and_exits_130() {
    let env = Env::new();
    let mut child = start_long_conversion(&env);
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));

    let job = &env.jobs()[0];
    assert_eq!(job["status"], "cancelled");
    assert!(hidden(&env.output_dir()).is_empty(), "the .part is removed");
    assert!(m4b_files(&env.output_dir()).is_empty());
}

/// `LOG_FORMAT=json`: only JSON lines, each naming the instance (`host:pid:start`); the job's
/// lines name the job, and the stage from its first step on. `convert`'s stdout stays its
/// report (the lines go to stderr), and no log file is written.
#[test]
fn log_format_json_gives_collector_lines_with_instance_job_and_stage() {
    let env = Env::new();
    let book = env.book("Dune", 2, 1.0);
    let mut c = env.command(&["convert", "--json", book.to_str().unwrap()]);
    c.env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = report["job_id"].as_str().unwrap();

    let lines: Vec<Value> = text(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let instance = lines[0]["instance_id"].as_str().unwrap().to_string();
    assert_eq!(instance.split(':').nth(1), Some(pid.to_string().as_str()));
    assert!(lines.iter().all(|l| l["instance_id"] == instance.as_str()));
    let job: Vec<&Value> = lines.iter().filter(|l| l["job_id"] == id).collect();
    let stage_of = |message: &str| {
        job.iter()
            .find(|l| l["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no line {message:?} in {lines:#?}"))["stage"]
            .clone()
    };
    for step in ["validate", "prepare", "backup", "convert", "publish"] {
        assert_eq!(stage_of(&format!("step: {step}")), step);
    }
    assert_eq!(stage_of("engine: Convert"), "convert");
    // A line without a stage of its own carries the job's current one.
    let done = stage_of("job completed");
    assert!(done.is_string(), "{done}");
    let logs = env.data().join("logs");
    let files: Vec<_> = fs::read_dir(&logs).into_iter().flatten().collect();
    assert!(files.is_empty(), "{files:?}");

    // The same setting as a flag (`serve --log-format json` in a container), checked like
    // the others.
    let shown = text(&env.run(&["config", "--log-format", "json"]).stdout);
    let line = shown.lines().find(|l| l.starts_with("LOG_FORMAT")).unwrap();
    assert!(
        line.contains("json") && line.contains("command line"),
        "{line}"
    );
    let out = env.run(&["config", "--log-format", "xml"]);
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("--log-format"),
        "{}",
        text(&out.stderr)
    );
}

fn json_path(p: &Path) -> Value {
    Value::String(p.to_str().unwrap().into())
}

/// `DATABASE_URL=postgres://…`: the same workflow on a real PostgreSQL (a fresh database on the
/// test server): a job recorded, listed, its log kept, the password never shown.
#[test]
fn convert_keeps_its_jobs_in_postgresql_when_database_url_says_so() {
    let env = Env::new();
    let book = env.book("Dune", 2, 1.0);
    let url = aiom4b_testkit::postgres::fresh_database();
    let run = |args: &[&str]| {
        let mut c = env.command(args);
        c.env("DATABASE_URL", &url);
        c.output().unwrap()
    };
    let out = run(&["convert", "--json", book.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = report["job_id"].as_str().unwrap();

    let out = run(&["jobs", "list", "--json"]);
    let jobs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jobs[0]["id"], id);
    assert_eq!(jobs[0]["status"], "completed");
    // The shared store keeps paths relative to SOURCE_DIR/DATA_DIR (hosts may mount them at
    // other places); this host reads them back at its own.
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let row = db
        .query_one("SELECT source_folders::text, output_path FROM jobs", &[])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), r#"["$SOURCE_DIR/Dune"]"#);
    let stored: String = row.get(1);
    assert!(stored.starts_with("$DATA_DIR/output/"), "{stored}");
    let canonical = |p: PathBuf| fs::canonicalize(p).unwrap();
    assert_eq!(
        jobs[0]["source_folders"][0],
        json_path(&canonical(book.clone()))
    );
    let output = jobs[0]["output_path"].as_str().unwrap();
    assert!(
        Path::new(output).starts_with(canonical(env.output_dir())),
        "{output}"
    );
    assert!(Path::new(output).is_file(), "{output}");
    assert!(
        !env.data().join("aiom4b.db").exists(),
        "no SQLite store beside PostgreSQL"
    );
    // The SQLite store of the same DATA_DIR knows nothing of it.
    assert!(env.jobs().is_empty());
    let out = run(&["jobs", "log", &id[..8]]);
    assert!(
        text(&out.stdout).contains("job completed"),
        "{}",
        text(&out.stdout)
    );

    // `jobs cancel` reaches a job wherever it runs: a waiting one is cancelled at once, one a
    // worker holds is flagged for its next lease renewal, one a `convert` process runs itself
    // (no lease) is flagged for that process's cancel watch.
    use aiom4b::workflow::jobs::{Job, JobStore, PostgresStore};
    let store = PostgresStore::open(&url).unwrap();
    let new_job = || {
        let j = Job::new(vec![book.clone()], serde_json::json!({}));
        store.insert(&j).unwrap();
        j
    };
    let waiting = new_job();
    let out = run(&["jobs", "cancel", &waiting.id.to_string()[..8]]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("cancelled (it was waiting)"));
    let j = store.get(waiting.id).unwrap().unwrap();
    assert_eq!(j.status.as_str(), "cancelled");
    let out = run(&["jobs", "cancel", &waiting.id.to_string()]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("only pending or running jobs"),
        "{}",
        text(&out.stderr)
    );
    let held = new_job();
    let worker = aiom4b::workflow::process::ProcessIdentity::current();
    let claimed = store
        .claim_next(&worker, std::time::Duration::from_secs(600))
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, held.id);
    let out = run(&["jobs", "cancel", &held.id.to_string()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&worker.instance_id()),
        "{}",
        text(&out.stdout)
    );
    let renewal = store
        .renew_lease(
            held.id,
            claimed.lease.unwrap().token,
            std::time::Duration::from_secs(600),
        )
        .unwrap()
        .unwrap();
    assert!(renewal.cancel_requested, "the holder learns it");
    let mut own = Job::new(vec![book.clone()], serde_json::json!({}));
    own.owner = Some(worker);
    store.insert(&own).unwrap();
    let out = run(&["jobs", "cancel", &own.id.to_string()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("is asked to stop"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        store.cancel_requested(own.id).unwrap(),
        "its process reads it"
    );

    // A password in the URL is not printed by `config`.
    let mut c = env.command(&["config"]);
    c.env("DATABASE_URL", "postgres://u:hunter2@db.invalid/x");
    let shown = text(&c.output().unwrap().stdout);
    assert!(shown.contains("postgres://u:***@db.invalid/x"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    // An unreachable server is a clear error naming it, without the password.
    let mut c = env.command(&["jobs", "list"]);
    c.env("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/x");
    let out = c.output().unwrap();
    assert_ne!(code(&out), 0);
    let err = text(&out.stderr);
    assert!(err.contains("postgres://u:***@127.0.0.1:1/x"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// `aiom4b worker --metrics-addr`: the instance's own Prometheus text, with the queue-wide
/// gauges; a non-loopback address without API_TOKEN is refused before anything starts; SIGTERM
/// stops the worker with exit 0.
#[test]
fn a_worker_serves_its_metrics_and_stops_on_sigterm() {
    use std::io::BufRead as _;
    let env = Env::new();
    let out = env.run(&["worker", "--metrics-addr", "0.0.0.0:0"]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("set API_TOKEN"),
        "{}",
        text(&out.stderr)
    );

    let mut child = env
        .command(&[
            "worker",
            "--concurrency",
            "1",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("metrics on ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    let ready = lines.next().unwrap().unwrap();
    assert!(
        ready.starts_with("worker ") && ready.ends_with("ready: 1 job(s) at once"),
        "{ready}"
    );
    let body = ureq::get(&url).call().unwrap().into_string().unwrap();
    for gauge in [
        "aiom4b_queue_length 0",
        "aiom4b_queue_leased 0",
        "aiom4b_queue_expired_leases 0",
        "aiom4b_queue_running 0",
    ] {
        assert!(body.contains(gauge), "{gauge} in\n{body}");
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

// --- encrypted backups (BACKUP_ENCRYPT_TO, backup restore --identity) -------------------------

/// Every file under `dir` (logs, the job database, backups) as bytes, with its path.
fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().filter_map(Result::ok) {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if e.file_type().unwrap().is_file() {
                let bytes = fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out
}

/// Panics when `secret` (or its lowercase form, or its key part alone) is in `hay`.
fn assert_no_secret(hay: &[u8], secret: &str, what: &str) {
    let body = &secret["AGE-SECRET-KEY-1".len()..];
    for needle in [
        secret.to_string(),
        secret.to_lowercase(),
        body.to_string(),
        body.to_lowercase(),
    ] {
        assert!(
            !hay.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "the secret key appears in {what}"
        );
    }
}

#[test]
fn encrypted_backups_round_trip_through_the_cli_and_refuse_a_wrong_key() {
    let env = Env::new();
    let book = env.book("Dune", 2, 1.0);
    fs::create_dir_all(book.join("Extras").join("Maps")).unwrap();
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 777u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    fs::write(book.join("Extras").join("Maps").join("arrakis.bin"), &big).unwrap();
    let keys = env.tmp.path().join("keys");
    fs::create_dir_all(&keys).unwrap();
    let (right, other, wrong) = (
        age_key(&keys, "right.txt"),
        age_key(&keys, "other.txt"),
        age_key(&keys, "wrong.txt"),
    );
    let recipients = format!("{}, {}", right.public, other.public);
    let mut seen = Vec::<u8>::new();
    let mut run = |args: &[&str]| {
        let out = env
            .command(args)
            .env("BACKUP_ENCRYPT_TO", &recipients)
            .output()
            .unwrap();
        seen.extend_from_slice(&out.stdout);
        seen.extend_from_slice(&out.stderr);
        out
    };

    // The job encrypts its backup.
    let out = run(&["convert", "--json", book.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let jobs = env.jobs();
    let backup = PathBuf::from(jobs[0]["backup_paths"][0].as_str().unwrap());
    let name = backup.file_name().unwrap().to_str().unwrap().to_string();
    for rel in ["01 - Chapter 1.mp3", "Extras/Maps/arrakis.bin"] {
        let stored = fs::read(backup.join(rel)).unwrap();
        let plain = fs::read(book.join(rel)).unwrap();
        assert!(stored.starts_with(b"age-encryption.org/v1\n"), "{rel}");
        assert!(
            !stored.windows(256).any(|w| w == &plain[4096..4096 + 256]),
            "{rel}: plaintext in the backup"
        );
    }

    // Listed as encrypted, to whom; verified without any key.
    let out = run(&["backup", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        list[0]["encrypted_to"],
        serde_json::json!([right.public, other.public])
    );
    let out = run(&["backup", "list"]);
    let row = text(&out.stdout)
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap()
        .to_string();
    assert!(row.contains(" age "), "{row}");
    let out = run(&["backup", "verify", &name]);
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    let files = all_files(&book).len();
    assert!(
        text(&out.stdout).contains(&format!("ok      {name} ({files} files)")),
        "{}",
        text(&out.stdout)
    );

    // Without --identity: refused, saying what to pass; nothing written.
    let to = env.tmp.path().join("restored");
    let to_s = to.to_str().unwrap();
    let out = run(&["backup", "restore", &name, "--to", to_s]);
    assert_ne!(code(&out), 0);
    let err = text(&out.stderr);
    assert!(
        err.contains("is encrypted") && err.contains("--identity FILE"),
        "{err}"
    );
    assert!(!to.exists(), "nothing written");

    // A wrong identity: refused naming the recipients and the file; nothing written.
    let out = run(&[
        "backup",
        "restore",
        &name,
        "--to",
        to_s,
        "--identity",
        wrong.file.to_str().unwrap(),
    ]);
    assert_ne!(code(&out), 0);
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "was encrypted to {}, {}",
            right.public, other.public
        )) && err.contains("wrong.txt holds none of its keys"),
        "{err}"
    );
    assert!(!to.exists(), "nothing written");

    // The right one restores every file byte for byte.
    let out = run(&[
        "backup",
        "restore",
        &name,
        "--to",
        to_s,
        "-i",
        right.file.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("({files} files, decrypted)")),
        "{}",
        text(&out.stdout)
    );
    let restored = to.join("Dune");
    for (p, bytes) in all_files(&book) {
        let rel = p.strip_prefix(&book).unwrap();
        assert!(
            fs::read(restored.join(rel)).unwrap() == bytes,
            "{} differs",
            rel.display()
        );
    }
    assert_eq!(all_files(&restored).len(), all_files(&book).len());

    // A flipped byte of the ciphertext: verify names the file, still without a key.
    let victim = backup.join("Extras").join("Maps").join("arrakis.bin");
    let mut bytes = fs::read(&victim).unwrap();
    bytes[2 * 1024 * 1024] ^= 0x40;
    fs::write(&victim, &bytes).unwrap();
    let out = run(&["backup", "verify", &name]);
    assert_eq!(code(&out), 1);
    let report = text(&out.stdout);
    assert!(
        report.contains(&format!("DAMAGED {name}"))
            && report.contains("Extras/Maps/arrakis.bin: checksum mismatch"),
        "{report}"
    );

    // No secret key anywhere: not in any output, log, job record or backup file.
    for k in [&right, &other, &wrong] {
        assert_no_secret(&seen, &k.secret, "the program's output");
        for (p, bytes) in all_files(&env.data()) {
            assert_no_secret(&bytes, &k.secret, &p.display().to_string());
        }
    }
    assert!(
        !all_files(&env.data().join("logs")).is_empty(),
        "the logs were searched"
    );
}

#[test]
fn backup_encrypt_to_is_checked_when_the_configuration_is_loaded() {
    let env = Env::new();
    let k = age_key(env.tmp.path(), "k.txt");
    // A typo: exit 2, naming the setting.
    let out = env
        .command(&["config"])
        .env("BACKUP_ENCRYPT_TO", "age1notarecipient")
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("BACKUP_ENCRYPT_TO") && err.contains("not an age X25519 recipient"),
        "{err}"
    );
    // The secret key pasted instead of the public one: refused, and not repeated.
    let out = env
        .command(&["config"])
        .env("BACKUP_ENCRYPT_TO", &k.secret)
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("BACKUP_ENCRYPT_TO") && err.contains("secret key"),
        "{err}"
    );
    assert_no_secret(&out.stderr, &k.secret, "the error");
    assert_no_secret(&out.stdout, &k.secret, "the output");

    // From the config file, shown with where it came from.
    fs::create_dir_all(env.tmp.path().join("config")).unwrap();
    fs::write(
        env.tmp.path().join("config").join("aiom4b.toml"),
        format!("backup_encrypt_to = \"{}\"\n", k.public),
    )
    .unwrap();
    let settings = env.json(&["config", "--json"]);
    let row = settings
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["var"] == "BACKUP_ENCRYPT_TO")
        .unwrap_or_else(|| panic!("{settings:#}"))
        .clone();
    assert_eq!(row["value"], k.public.as_str());
    assert!(
        row["origin"].as_str().unwrap().starts_with("file "),
        "{row}"
    );
}

#[test]
fn an_identity_given_for_an_unencrypted_backup_is_noted_and_not_needed() {
    let env = Env::new();
    let book = env.book("Plain", 1, 0.5);
    let store = aiom4b::workflow::BackupStore::new(env.data().join("backup"));
    let b = store.create(&book, None).unwrap();
    let k = age_key(env.tmp.path(), "k.txt");
    let to = env.tmp.path().join("restored");
    let out = env.run(&[
        "backup",
        "restore",
        &b.name,
        "--to",
        to.to_str().unwrap(),
        "--identity",
        k.file.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!("note: backup {} is not encrypted", b.name)),
        "{said}"
    );
    assert!(to.join("Plain").is_dir());
    // A file that is not an identity file: refused by line number, its content not repeated.
    let bogus = env.tmp.path().join("bogus.txt");
    fs::write(&bogus, format!("# mine\n{}\n", &k.secret[..40])).unwrap();
    let out = env.run(&[
        "backup",
        "restore",
        &b.name,
        "--to",
        env.tmp.path().join("again").to_str().unwrap(),
        "--identity",
        bogus.to_str().unwrap(),
    ]);
    assert_ne!(code(&out), 0);
    let err = text(&out.stderr);
    assert!(
        err.contains("not an age identity file") && err.contains("line 2"),
        "{err}"
    );
    assert!(!err.contains(&k.secret[16..40]), "{err}");
}

/// A `convert` running in one terminal, cancelled from another (`aiom4b jobs cancel`, as the
/// service's cancel button does through the store): the conversion stops within about a second
/// of its watch, its part is removed, the job is `cancelled`, and the command says why.
#[test]
fn a_cli_conversion_stops_when_its_job_is_cancelled_from_another_process() {
    let env = Env::new();
    let dir = env.book("Long", 8, 120.0);
    let child = env
        .command(&["convert", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    let id = loop {
        let out = env.run(&["jobs", "list", "--json"]);
        let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let running = jobs.as_array().and_then(|a| {
            a.iter()
                .find(|j| j["status"] == "processing" && j["progress_percent"].as_f64() > Some(0.0))
                .map(|j| j["id"].as_str().unwrap().to_owned())
        });
        if let Some(id) = running {
            break id;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "no job started: {jobs}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let out = env.run(&["jobs", "cancel", &id]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("is asked to stop"),
        "{}",
        text(&out.stdout)
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("was cancelled from elsewhere"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(&["jobs", "list", "--json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let job = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id.as_str())
        .unwrap();
    assert_eq!(job["status"], "cancelled", "{job}");
    assert_eq!(m4b_files(&env.output_dir()), Vec::<PathBuf>::new());
    assert_eq!(hidden(&env.output_dir()), Vec::<String>::new());
}
