//! Scale-out (issue 14): 1, 2 and 3 `aiom4b worker` processes (each `--concurrency 1 --jobs 1`)
//! on one PostgreSQL queue of 12 ten-minute books, fed by an API-only `aiom4b serve
//! --no-worker`. Reports books per hour and the queue's overhead per job, as medians.
//!
//! ```sh
//! cargo bench --bench scale_out                      # 1, 2, 3 workers (~10 min on 2 cores)
//! AIOM4B_SCALE_WORKERS=1,2 cargo bench --bench scale_out
//! AIOM4B_SCALE_FILE_SECS=3 AIOM4B_BENCH_RESULTS=/tmp/x.jsonl cargo bench --bench scale_out  # a quick try
//! ```
//!
//! The book (44.1 kHz stereo, CBR 128 kb/s, speech-like, 10 × 60 s) is generated once by the
//! test kit and hard-linked under 12 folder names: each conversion decodes and encodes the
//! whole book, only generation time is saved. PostgreSQL is the test kit's
//! (`aiom4b_testkit::postgres::fresh_database`: `AIOM4B_TEST_DATABASE_URL`, or a throw-away
//! server from Debian's `postgresql`), with a fresh database per run. Backups are off (they
//! would measure the disk, not the queue).
//!
//! Figures, from the job records, the jobs' own log lines and the JSON log files (one host writes
//! them all, so one clock):
//! - **books per hour**: 12 ÷ (last `finished_at` − first `created_at`) — the whole queue,
//!   submitted in one request while every worker already waits.
//! - **finish → next claim** per worker: from one job's `finished_at` to the claim of the same
//!   worker's next job (its `claimed` line in the JSON log files under `DATA_DIR/logs/`).
//! - **claim → start**: from that claim to the job's `job started` line (reading the job's
//!   options, checking its folders, removing an earlier attempt's files, the part file).
//! - **finish → next start**: the two together, the queue's whole overhead between two jobs
//!   of one worker.
//! - **first pickup**: `created_at` → the first `job started` of each worker (a NOTIFY wakes
//!   idle workers; polling is the fallback).
//!
//! Lines go to `benches/results/scale-out-<date>.jsonl` (or `AIOM4B_BENCH_RESULTS`) and a table
//! to the `.md` beside it. Nothing asserts a timing; the issue's targets are printed as
//! met/MISSED.
use aiom4b_testkit::fixtures::{write_book, Mp3Spec, Signal};
use chrono::{DateTime, FixedOffset};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BOOKS: usize = 12;
/// The issue's target for the queue's overhead per job.
const OVERHEAD_TARGET_MS: f64 = 50.0;

/// The processes of one run; killed when dropped (also on a panic).
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn aiom4b(root: &Path, data: &Path, url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aiom4b"));
    c.args(args)
        .current_dir(root)
        .env("DATA_DIR", data)
        .env("SOURCE_DIR", root.join("source"))
        .env("DATABASE_URL", url)
        .env("BACKUP_ENABLED", "false")
        .env_remove("MAX_CONCURRENT_JOBS")
        .env_remove("USE_ALL_CPUS")
        .env_remove("RUST_LOG")
        // The claim times are read from the JSON log files, which LOG_FORMAT=json turns off.
        .env_remove("LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    c
}

/// Spawns `cmd` and returns it with the first stdout line that starts with `prefix` (the rest
/// of stdout is drained on a thread).
fn spawn_until(mut cmd: Command, prefix: &'static str, log: &Path) -> (Child, String) {
    cmd.stderr(std::fs::File::create(log).unwrap());
    let mut child = cmd.spawn().expect("starting aiom4b");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix(prefix) {
                let _ = tx.send(rest.to_owned());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(rest) => (child, rest),
        Err(_) => {
            let _ = child.kill();
            panic!(
                "no {prefix:?} line within 60 s; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        }
    }
}

fn get(agent: &ureq::Agent, url: &str) -> Value {
    agent.get(url).call().unwrap().into_json().unwrap()
}

fn time(v: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}"))).unwrap()
}

fn ms(a: DateTime<FixedOffset>, b: DateTime<FixedOffset>) -> f64 {
    (b - a).num_microseconds().unwrap() as f64 / 1e3
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The job's log lines, all pages.
fn job_log(agent: &ureq::Agent, base: &str, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0i64;
    loop {
        let page = get(agent, &format!("{base}/jobs/{id}/log?after={after}"));
        let lines = page["lines"].as_array().unwrap();
        if lines.is_empty() {
            return out;
        }
        out.extend(lines.iter().cloned());
        after = page["next"].as_i64().unwrap();
    }
}

/// The time of the job's first line whose message starts with `message`.
fn line_time(lines: &[Value], message: &str) -> Option<DateTime<FixedOffset>> {
    lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
        .map(|l| time(&l["time"]))
}

/// When each job was claimed: the workers' `claimed` lines (target `aiom4b::jobs`, with the
/// job's `job_id`; logged right after the claim, outside the job's own log) in the JSON log
/// files under `DATA_DIR/logs/`. A job claimed twice keeps its last claim.
fn claims(data: &Path) -> std::collections::HashMap<String, DateTime<FixedOffset>> {
    let mut out = std::collections::HashMap::new();
    let Ok(rd) = std::fs::read_dir(data.join("logs")) else {
        return out;
    };
    for e in rd.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            // tracing-subscriber's JSON keeps an event's fields under `fields`; a flattened
            // format has them at the top.
            let field = |k: &str| v["fields"].get(k).or_else(|| v.get(k)).cloned();
            if field("message").as_ref().and_then(Value::as_str) != Some("claimed") {
                continue;
            }
            let (Some(Value::String(id)), Some(ts)) = (field("job_id"), v.get("timestamp")) else {
                continue;
            };
            if let Ok(t) = DateTime::parse_from_rfc3339(ts.as_str().unwrap_or("")) {
                let e = out.entry(id).or_insert(t);
                *e = (*e).max(t);
            }
        }
    }
    out
}

/// One run with `n` workers; the run's summary and one raw line per job.
fn run(root: &Path, n: usize) -> (Value, Vec<Value>) {
    let url = aiom4b_testkit::postgres::fresh_database();
    let data = root.join(format!("data-{n}"));
    std::fs::create_dir_all(&data).unwrap();
    let mut procs = Procs(Vec::new());
    let (api, addr) = spawn_until(
        aiom4b(root, &data, &url, &["serve", "--port", "0", "--no-worker"]),
        "listening on ",
        &data.join("serve.stderr"),
    );
    procs.0.push(api);
    let base = format!("{addr}/api/v1");
    let mut instances = Vec::new();
    for w in 0..n {
        let (child, id) = spawn_until(
            aiom4b(
                root,
                &data,
                &url,
                &["worker", "--concurrency", "1", "--jobs", "1"],
            ),
            "worker ",
            &data.join(format!("worker-{w}.stderr")),
        );
        procs.0.push(child);
        // `worker <instance_id> ready: N job(s) at once`
        instances.push(
            id.split_once(" ready")
                .map_or(id.as_str(), |(i, _)| i)
                .to_owned(),
        );
    }
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let folders: Vec<Value> = (1..=BOOKS)
        .map(|i| json!({ "path": format!("Book {i:02}"), "output_name": format!("Book {i:02}") }))
        .collect();
    let t0 = Instant::now();
    let body: Value = agent
        .post(&format!("{base}/convert"))
        .send_json(json!({ "folders": folders }))
        .unwrap()
        .into_json()
        .unwrap();
    let ids: Vec<String> = body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), BOOKS, "{body}");
    let mut jobs = Vec::new();
    for id in &ids {
        loop {
            let j = get(&agent, &format!("{base}/jobs/{id}"));
            match j["status"].as_str().unwrap() {
                "completed" => {
                    jobs.push(j);
                    break;
                }
                "failed" | "cancelled" => panic!("job ended {j}"),
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
    let observed_s = t0.elapsed().as_secs_f64();
    let load = loadavg();
    // The last lines of a job reach the store just after its record: wait for them.
    let logs: Vec<Vec<Value>> = ids
        .iter()
        .map(|id| {
            let t = Instant::now();
            loop {
                let lines = job_log(&agent, &base, id);
                if line_time(&lines, "job completed").is_some()
                    || t.elapsed() > Duration::from_secs(10)
                {
                    break lines;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .collect();
    for c in procs.0.iter().skip(1) {
        // SAFETY: kill on our own child's pid: SIGTERM, a clean stop of an idle worker.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    }
    drop(procs);

    let claimed = claims(&data);
    let created = jobs.iter().map(|j| time(&j["created_at"])).min().unwrap();
    let finished = jobs.iter().map(|j| time(&j["finished_at"])).max().unwrap();
    let wall_s = ms(created, finished) / 1e3;
    let mut raw = Vec::new();
    // (worker, start line, finished_at) per job, for the gaps between one worker's jobs.
    let mut per_worker: std::collections::BTreeMap<String, Vec<_>> = Default::default();
    let mut claim_to_start = Vec::new();
    let mut convert_s = Vec::new();
    let mut job_s = Vec::new();
    for (j, lines) in jobs.iter().zip(&logs) {
        let instance = j["instance_id"].as_str().unwrap_or("?").to_owned();
        let started_line = line_time(lines, "job started");
        let claimed_line = j["id"].as_str().and_then(|id| claimed.get(id)).copied();
        let (started_at, finished_at) = (time(&j["started_at"]), time(&j["finished_at"]));
        if let (Some(c), Some(s)) = (claimed_line, started_line) {
            claim_to_start.push(ms(c, s));
        }
        convert_s.push(ms(started_at, finished_at) / 1e3);
        if let Some(s) = started_line {
            job_s.push(ms(s, finished_at) / 1e3);
            per_worker
                .entry(instance.clone())
                .or_default()
                .push((s, finished_at, claimed_line));
        }
        raw.push(json!({
            "type": "job",
            "workers": n,
            "id": j["id"],
            "instance_id": instance,
            "attempts": j["attempts"],
            "created_at": j["created_at"],
            "claimed": claimed_line.map(|t| t.to_rfc3339()),
            "started_line": started_line.map(|t| t.to_rfc3339()),
            "started_at": j["started_at"],
            "finished_at": j["finished_at"],
            "audio_duration_secs": j["audio_duration_secs"],
        }));
    }
    let mut gaps = Vec::new();
    let mut finish_to_claim = Vec::new();
    let mut first_pickup = Vec::new();
    for runs in per_worker.values_mut() {
        runs.sort_by_key(|r| r.0);
        first_pickup.push(ms(created, runs[0].0));
        for w in runs.windows(2) {
            gaps.push(ms(w[0].1, w[1].0));
            if let Some(c) = w[1].2 {
                finish_to_claim.push(ms(w[0].1, c));
            }
        }
    }
    let jobs_per_worker: Vec<usize> = per_worker.values().map(Vec::len).collect();
    let summary = json!({
        "type": "summary",
        "workers": n,
        "books": BOOKS,
        "wall_s": wall_s,
        "observed_wall_s": observed_s,
        "books_per_hour": BOOKS as f64 * 3600.0 / wall_s,
        "jobs_per_worker": jobs_per_worker,
        "instances": instances,
        "median_finish_to_next_start_ms": median(&gaps),
        "max_finish_to_next_start_ms": gaps.iter().copied().fold(None, |m: Option<f64>, g| Some(m.map_or(g, |m| m.max(g)))),
        "finish_to_next_start_ms": gaps,
        "median_claim_to_start_ms": median(&claim_to_start),
        "median_finish_to_next_claim_ms": median(&finish_to_claim),
        "median_first_pickup_ms": median(&first_pickup),
        "median_convert_s": median(&convert_s),
        "median_job_s": median(&job_s),
        "loadavg_1m": load,
    });
    eprintln!("{n} worker(s): {summary}");
    (summary, raw)
}

fn git_revision() -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let rev = run(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "?".into());
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{rev}-dirty")
    } else {
        rev
    }
}

fn fmt(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "–".to_owned(), |x| format!("{x:.digits$}"))
}

fn main() {
    let counts: Vec<usize> = std::env::var("AIOM4B_SCALE_WORKERS")
        .unwrap_or_else(|_| "1,2,3".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("AIOM4B_SCALE_WORKERS: numbers, comma-separated")
        })
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let t = Instant::now();
    let spec = Mp3Spec {
        signal: Signal::SpeechLike { seed: 14 },
        ..Mp3Spec::default()
    };
    let first = root.join("source").join("Book 01");
    // Seconds per file (10 files per book); shorter only to try the benchmark out quickly.
    let file_secs: f64 = std::env::var("AIOM4B_SCALE_FILE_SECS")
        .ok()
        .map(|s| s.parse().expect("AIOM4B_SCALE_FILE_SECS: seconds"))
        .unwrap_or(60.0);
    let files = write_book(&first, 10, file_secs, &spec).unwrap();
    for i in 2..=BOOKS {
        let dir = root.join("source").join(format!("Book {i:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in &files {
            let to = dir.join(f.file_name().unwrap());
            std::fs::hard_link(f, &to)
                .or_else(|_| std::fs::copy(f, &to).map(|_| ()))
                .unwrap();
        }
    }
    eprintln!(
        "corpus: {BOOKS} books of 10 × {file_secs} s in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Taken before this run appends to the (tracked) results files, which would read as -dirty.
    let revision = git_revision();
    let run_id = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut lines = vec![json!({
        "type": "env",
        "bench": "scale_out",
        "run_id": run_id,
        "cores": cores,
        "git_revision": revision,
        "books": BOOKS,
        "book": format!("44.1 kHz stereo CBR 128 kb/s speech-like, 10 × {file_secs} s, hard-linked under {BOOKS} names"),
        "worker_args": "--concurrency 1 --jobs 1",
        "backups": false,
    })];
    let mut summaries: Vec<Value> = Vec::new();
    for &n in &counts {
        let (summary, raw) = run(root, n);
        lines.extend(raw);
        summaries.push(summary);
    }
    let one = summaries
        .iter()
        .find(|s| s["workers"] == 1)
        .and_then(|s| s["books_per_hour"].as_f64());
    for s in &mut summaries {
        let n = s["workers"].as_u64().unwrap() as usize;
        if let Some(one) = one {
            let speedup = s["books_per_hour"].as_f64().unwrap() / one;
            s["speedup_vs_1"] = json!(speedup);
            // Linear up to the cores: n workers on min(n, cores) cores.
            s["efficiency_vs_cores"] = json!(speedup / n.min(cores) as f64);
        }
    }
    for s in &summaries {
        let mut s = s.clone();
        s["run_id"] = json!(run_id);
        lines.push(s);
    }
    for l in &mut lines {
        l["run_id"] = json!(run_id);
    }

    let date = chrono::Utc::now().format("%Y-%m-%d");
    let path = std::env::var("AIOM4B_BENCH_RESULTS").unwrap_or_else(|_| {
        format!(
            "{}/benches/results/scale-out-{date}.jsonl",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    for l in &lines {
        writeln!(f, "{l}").unwrap();
    }

    let mut md = format!(
        "\n## Run {run_id} (`{}`, {cores} cores)\n\n\
         {BOOKS} books of 10 × {file_secs} s (44.1 kHz stereo), each worker `--concurrency 1 --jobs 1`, \
         one PostgreSQL, `serve --no-worker`; backups off. Medians over the jobs of the run.\n\n\
         | workers | wall | books/hour | speedup | efficiency (÷ min(n, cores)) | jobs per worker | finish → next claim | claim → start | finish → next start | first pickup | convert | load (1 min) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        revision
    );
    for s in &summaries {
        md.push_str(&format!(
            "| {} | {} s | {} | {} | {} | {:?} | {} ms | {} ms | {} ms | {} ms | {} s | {} |\n",
            s["workers"],
            fmt(&s["wall_s"], 1),
            fmt(&s["books_per_hour"], 1),
            fmt(&s["speedup_vs_1"], 2),
            fmt(&s["efficiency_vs_cores"], 2),
            s["jobs_per_worker"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect::<Vec<_>>(),
            fmt(&s["median_finish_to_next_claim_ms"], 1),
            fmt(&s["median_claim_to_start_ms"], 1),
            fmt(&s["median_finish_to_next_start_ms"], 1),
            fmt(&s["median_first_pickup_ms"], 1),
            fmt(&s["median_convert_s"], 1),
            fmt(&s["loadavg_1m"], 2),
        ));
    }
    let worst = summaries
        .iter()
        .filter_map(|s| s["median_finish_to_next_start_ms"].as_f64())
        .fold(0.0f64, f64::max);
    md.push_str(&format!(
        "\nQueue overhead per job (largest median finish → next start): {worst:.1} ms — target < {OVERHEAD_TARGET_MS} ms: {}.\n",
        if worst < OVERHEAD_TARGET_MS { "met" } else { "MISSED" }
    ));
    print!("{md}");
    let md_path = Path::new(&path).with_extension("md");
    let new = !md_path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&md_path)
        .unwrap();
    if new {
        writeln!(
            f,
            "# Scale-out benchmark\n\nWritten by `cargo bench --bench scale_out` (see \
             [`../README.md`](../README.md)); raw lines in `{}`.",
            PathBuf::from(&path).file_name().unwrap().to_string_lossy()
        )
        .unwrap();
    }
    f.write_all(md.as_bytes()).unwrap();
    eprintln!("written to {path} and {}", md_path.display());
}
