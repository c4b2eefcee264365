//! Scale-out on one machine (issue 14): several `aiom4b worker` processes share one PostgreSQL
//! job store and one DATA_DIR/SOURCE_DIR, fed by an API-only `aiom4b serve --no-worker`.
//!
//! Every test has its own database on a real PostgreSQL
//! ([`aiom4b_testkit::postgres::fresh_database`]: CI's server, or a throw-away one; never
//! skipped; the restart test has a server of its own, `PrivateServer`), real worker processes of the binary and real MP3 books from the test kit. Jobs are
//! followed through the API (`GET /jobs/{id}`: status, `attempts`, `instance_id`; `GET
//! /jobs/{id}/log`: the lines every run of the job logged, whichever worker ran it) and the
//! files in the output folder. Every process a test starts is killed by [`Cluster`]'s `Drop`,
//! also when an assertion fails. Waits have generous deadlines and say what they waited for;
//! nothing asserts a duration.
use crate::cli_workflow::{hidden, m4b_files, Env};
use crate::serve::spawn_serve;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for one state of one job (a short book converts in well under a second, the
/// long one in a few seconds; the machine may be busy with other tests).
const DEADLINE: Duration = Duration::from_secs(90);

/// How long a cancel from the API may take to stop the job on its worker. The worker learns it
/// at its next lease renewal (at most every second); this is many times that.
const CANCEL_DEADLINE: Duration = Duration::from_secs(10);

/// The lease of the tests that kill or pause a worker: short, so that the job moves on soon.
const SHORT_LEASE: &str = "2";

/// A book that is still converting when the test acts on it: 8 minutes of audio (22.05 kHz
/// mono; a few seconds of conversion on one core).
fn long_book(env: &Env, name: &str) {
    env.book(name, 8, 60.0);
}

/// A book that converts in a fraction of a second: one 2-second file.
fn short_book(env: &Env, name: &str) {
    env.book(name, 1, 2.0);
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped yet.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// One `aiom4b worker` process.
struct Worker {
    child: Option<Child>,
    /// What it printed on its `worker <instance_id> ready` line.
    instance_id: String,
    /// Its stderr (its log), for the messages of failing assertions.
    log: PathBuf,
}

impl Worker {
    fn pid(&self) -> u32 {
        self.child.as_ref().expect("the worker runs").id()
    }

    /// Sends `sig` and waits for the exit; its exit code (`None`: killed by a signal).
    fn stop(&mut self, sig: i32) -> Option<i32> {
        signal(self.pid(), sig);
        let mut child = self.child.take().unwrap();
        let t = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if t.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "worker {} did not exit within 20 s of signal {sig}; its log:\n{}",
                    self.instance_id,
                    tail(&self.log)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Still running (not exited)?
    fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }
}

/// The last 40 lines of a log file.
fn tail(path: &PathBuf) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// An API-only service, N workers and the database they share. Dropping it kills them all.
struct Cluster {
    url: String,
    lease_secs: String,
    api: Option<Child>,
    base: String,
    agent: ureq::Agent,
    workers: Vec<Worker>,
    /// The API server's stderr.
    api_log: PathBuf,
    /// Last, so that the temporary folder goes after the processes that use it.
    env: Env,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let children = self
            .workers
            .iter_mut()
            .filter_map(|w| w.child.take())
            .chain(self.api.take());
        for mut c in children {
            // SIGKILL ends a stopped (SIGSTOP) process too.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Cluster {
    /// `serve --no-worker` and `workers` workers (`--concurrency 1 --jobs 1`) on a fresh
    /// database, with `lease_secs` as LEASE_SECS; returns once every worker said it is ready.
    fn start(env: Env, workers: usize, lease_secs: &str) -> Cluster {
        let url = aiom4b_testkit::postgres::fresh_database();
        Cluster::start_on(env, url, workers, lease_secs)
    }

    /// [`Cluster::start`] on the database of `url`.
    fn start_on(env: Env, url: String, workers: usize, lease_secs: &str) -> Cluster {
        let api_log = env.data().parent().unwrap().join("serve.log");
        let (api, addr) = spawn_serve(
            &env,
            &[("DATABASE_URL", url.as_str()), ("LEASE_SECS", lease_secs)],
            &["--no-worker"],
            Stdio::from(std::fs::File::create(&api_log).unwrap()),
        );
        let mut c = Cluster {
            url,
            lease_secs: lease_secs.to_owned(),
            api: Some(api),
            base: format!("{addr}/api/v1"),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(5))
                .timeout_read(Duration::from_secs(30))
                .build(),
            workers: Vec::new(),
            api_log,
            env,
        };
        for _ in 0..workers {
            c.add_worker();
        }
        c
    }

    /// Starts one more worker and waits for its `worker <instance_id> ready` line.
    fn add_worker(&mut self) -> usize {
        let n = self.workers.len();
        let log = self
            .env
            .data()
            .parent()
            .unwrap()
            .join(format!("worker-{n}.log"));
        let mut cmd = self.env.command(&[
            "worker",
            "--concurrency",
            "1",
            "--jobs",
            "1",
            "--lease-secs",
            &self.lease_secs,
        ]);
        cmd.env("DATABASE_URL", &self.url)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = cmd.spawn().expect("starting aiom4b worker");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Read to the end, so that a full pipe never blocks the worker.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // `worker <instance_id> ready: N job(s) at once`
                if let Some((id, _)) = line
                    .strip_prefix("worker ")
                    .and_then(|r| r.split_once(" ready"))
                {
                    let _ = tx.send(id.to_owned());
                }
            }
        });
        let instance_id = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(id) => id,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "worker {n} printed no `worker <id> ready` line within 30 s; its log:\n{}",
                    tail(&log)
                );
            }
        };
        assert!(
            instance_id.contains(&format!(":{}:", child.id())),
            "the instance id {instance_id:?} names the worker's pid {}",
            child.id()
        );
        self.workers.push(Worker {
            child: Some(child),
            instance_id,
            log,
        });
        n
    }

    /// Every worker's latest log lines, for failure messages.
    fn logs(&self) -> String {
        let workers: String = self
            .workers
            .iter()
            .map(|w| format!("--- worker {} ---\n{}\n", w.instance_id, tail(&w.log)))
            .collect();
        format!(
            "--- serve --no-worker ---\n{}\n{workers}",
            tail(&self.api_log)
        )
    }

    fn worker_of(&self, instance_id: &str) -> usize {
        self.workers
            .iter()
            .position(|w| w.instance_id == instance_id)
            .unwrap_or_else(|| {
                panic!(
                    "instance {instance_id:?} is none of the workers {:?}",
                    self.workers
                        .iter()
                        .map(|w| &w.instance_id)
                        .collect::<Vec<_>>()
                )
            })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let r = self.agent.request(method, &format!("{}{path}", self.base));
        let res = match body {
            Some(b) => r.send_json(b),
            None => r.call(),
        };
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: transport error: {e}\n{}", self.logs()),
        };
        let status = resp.status();
        let text = resp.into_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// One job per book folder (output named after the folder), in this order.
    fn convert(&self, books: &[&str]) -> Vec<String> {
        let folders: Vec<Value> = books
            .iter()
            .map(|b| json!({ "path": b, "output_name": b }))
            .collect();
        let (st, body) = self.call("POST", "/convert", Some(json!({ "folders": folders })));
        assert_eq!(st, 201, "{body}");
        body["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn job(&self, id: &str) -> Value {
        let (st, body) = self.call("GET", &format!("/jobs/{id}"), None);
        assert_eq!(st, 200, "{body}");
        body
    }

    /// Polls job `id` until `done` holds; panics after `deadline` saying `what` did not
    /// happen, with the job and the workers' logs.
    fn wait_job(
        &self,
        id: &str,
        what: &str,
        deadline: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let t = Instant::now();
        loop {
            let j = self.job(id);
            if done(&j) {
                return j;
            }
            assert!(
                t.elapsed() < deadline,
                "{what}: not within {deadline:?}; job {id} is {j}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the job has ended (completed, failed or cancelled).
    fn wait_end(&self, id: &str) -> Value {
        self.wait_job(id, "the job ends", DEADLINE, |j| {
            matches!(
                j["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            )
        })
    }

    /// Waits until the job converts (processing, with some progress recorded) and returns it;
    /// fails if it ends first (then the book is too short for the test).
    fn wait_converting(&self, id: &str) -> Value {
        self.wait_job(id, "the job converts", DEADLINE, |j| {
            let status = j["status"].as_str().unwrap();
            assert!(
                matches!(status, "pending" | "processing"),
                "job {id} ended ({status}) before the test could act on it mid-conversion: {j}"
            );
            status == "processing" && j["progress_percent"].as_f64().unwrap() > 0.0
        })
    }

    /// Every log line of job `id` (all pages).
    fn log(&self, id: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0i64;
        loop {
            let (st, page) = self.call("GET", &format!("/jobs/{id}/log?after={after}"), None);
            assert_eq!(st, 200, "{page}");
            let lines = page["lines"].as_array().unwrap();
            if lines.is_empty() {
                return out;
            }
            out.extend(lines.iter().cloned());
            after = page["next"].as_i64().unwrap();
        }
    }

    /// The job's log once it holds a line whose message starts with `message` (lines reach
    /// the store shortly after the record changes).
    fn wait_log_line(&self, id: &str, message: &str) -> Vec<Value> {
        let t = Instant::now();
        loop {
            let lines = self.log(id);
            if lines.iter().any(|l| starts_with(l, message)) {
                return lines;
            }
            assert!(
                t.elapsed() < DEADLINE,
                "job {id}'s log has no line {message:?} within {DEADLINE:?}: {}\n{}",
                messages(&lines).join(" | "),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn output_dir(&self) -> PathBuf {
        self.env.output_dir()
    }

    /// Waits until the output folder holds no hidden file (`.part`, its siblings): a worker
    /// that stops a job removes them right after recording it.
    fn wait_no_temporaries(&self, why: &str) {
        let t = Instant::now();
        loop {
            let left = hidden(&self.output_dir());
            if left.is_empty() {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{why}: temporaries left in the output folder after 30 s: {left:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `aiom4b verify` accepts every `.m4b` in the output folder; their names, sorted.
    fn verified_outputs(&self) -> Vec<String> {
        m4b_files(&self.output_dir())
            .iter()
            .map(|p| {
                let out = self.env.run(&["verify", p.to_str().unwrap()]);
                assert!(
                    out.status.success(),
                    "{} does not verify: {}",
                    p.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                p.file_name().unwrap().to_string_lossy().into_owned()
            })
            .collect()
    }
}

fn starts_with(line: &Value, message: &str) -> bool {
    line["message"]
        .as_str()
        .is_some_and(|m| m.starts_with(message))
}

fn messages(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l["message"].as_str().unwrap_or(""))
        .collect()
}

/// Lines of the job's story (target `aiom4b::jobs`) starting with `message`; the audit trail
/// (`aiom4b::audit`) repeats some of them ("job completed").
fn count(lines: &[Value], message: &str) -> usize {
    lines
        .iter()
        .filter(|l| l["target"] == "aiom4b::jobs" && starts_with(l, message))
        .count()
}

/// The queue test: 3 workers, 30 books. Every job runs once (one `job started` in its
/// log, `attempts` 1), on one of the workers, and the work is shared; 30 valid outputs, no
/// temporaries; SIGTERM stops a worker cleanly.
#[test]
fn three_workers_convert_thirty_books_each_exactly_once() {
    let env = Env::new();
    let names: Vec<String> = (1..=30).map(|i| format!("Book {i:02}")).collect();
    for n in &names {
        short_book(&env, n);
    }
    let mut c = Cluster::start(env, 3, "30");
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let ids = c.convert(&refs);
    assert_eq!(ids.len(), 30);

    let mut per_worker: BTreeMap<String, usize> = BTreeMap::new();
    for id in &ids {
        let j = c.wait_end(id);
        assert_eq!(j["status"], "completed", "{j}\n{}", c.logs());
        assert_eq!(j["attempts"], 1, "run once: {j}");
        let instance = j["instance_id"]
            .as_str()
            .unwrap_or_else(|| panic!("a finished job names the instance that ran it: {j}"));
        c.worker_of(instance);
        *per_worker.entry(instance.to_owned()).or_default() += 1;
    }
    // Each job's own log: one start (no second run, by any process), and it ended completed.
    for id in &ids {
        let lines = c.wait_log_line(id, "job completed");
        assert_eq!(
            count(&lines, "job started"),
            1,
            "job {id} ran once: {:?}",
            messages(&lines)
        );
        assert_eq!(count(&lines, "job completed"), 1, "{:?}", messages(&lines));
    }
    assert!(
        per_worker.len() > 1,
        "the jobs were shared between the workers: {per_worker:?}"
    );
    assert_eq!(per_worker.values().sum::<usize>(), 30);

    let mut want: Vec<String> = names.iter().map(|n| format!("{n}.m4b")).collect();
    want.sort();
    assert_eq!(
        c.verified_outputs(),
        want,
        "one output per book, no duplicate"
    );
    assert!(
        hidden(&c.output_dir()).is_empty(),
        "{:?}",
        hidden(&c.output_dir())
    );

    // An idle worker stops at once on SIGTERM, with success.
    for w in &mut c.workers {
        let log = w.log.clone();
        assert_eq!(w.stop(libc::SIGTERM), Some(0), "{}", tail(&log));
    }
}

/// kill -9 of the worker converting a job: after its lease expires another worker runs the
/// job again (`attempts` 2) and publishes it once; the dead attempt's `.part` is removed.
#[test]
fn a_job_of_a_killed_worker_runs_again_elsewhere_after_its_lease() {
    let env = Env::new();
    long_book(&env, "Long");
    let mut c = Cluster::start(env, 2, SHORT_LEASE);
    let id = c.convert(&["Long"]).remove(0);
    let j = c.wait_converting(&id);
    let first = j["instance_id"].as_str().unwrap().to_owned();
    let victim = c.worker_of(&first);
    // Its part file exists: the attempt has written some of the book.
    assert!(
        hidden(&c.output_dir()).iter().any(|n| n.ends_with(".part")),
        "{:?}",
        hidden(&c.output_dir())
    );
    assert_eq!(c.workers[victim].stop(libc::SIGKILL), None);

    let j = c.wait_end(&id);
    assert_eq!(j["status"], "completed", "{j}\n{}", c.logs());
    assert_eq!(
        j["attempts"], 2,
        "the killed attempt and the one that completed: {j}"
    );
    let second = j["instance_id"].as_str().unwrap();
    assert_ne!(second, first, "another worker ran it: {j}");
    c.worker_of(second);
    assert_eq!(
        c.verified_outputs(),
        ["Long.m4b"],
        "one output, no duplicate"
    );
    c.wait_no_temporaries("after the rerun");
    let lines = c.wait_log_line(&id, "job completed");
    assert_eq!(count(&lines, "job completed"), 1, "{:?}", messages(&lines));
    assert!(
        count(&lines, "job started") >= 1,
        "the rerun logged its start: {:?}",
        messages(&lines)
    );
    // The job's own log says which instance ran the attempt (the killed one's line, written
    // at most a second after it happened, may have died with it).
    let claims = |who: &str| count(&lines, &format!("claimed from the queue by {who}"));
    assert_eq!(claims(second), 1, "{:?}", messages(&lines));
    assert!(claims(&first) <= 1, "{:?}", messages(&lines));
}

/// SIGTERM to the worker converting a job (a `docker stop`, a rolling restart): it stops the
/// conversion, removes its part file, hands the job back to the queue and exits 0; another
/// worker claims it at once (no lease to wait for) and completes it, the stopped attempt not
/// counted.
#[test]
fn a_stopped_worker_hands_its_job_back_to_the_queue() {
    let env = Env::new();
    long_book(&env, "Long");
    // A long lease: only the hand-back can make the job move on quickly.
    let mut c = Cluster::start(env, 2, "600");
    let id = c.convert(&["Long"]).remove(0);
    let j = c.wait_converting(&id);
    let first = j["instance_id"].as_str().unwrap().to_owned();
    let stopped = c.worker_of(&first);
    assert_eq!(c.workers[stopped].stop(libc::SIGTERM), Some(0));

    let j = c.wait_end(&id);
    assert_eq!(j["status"], "completed", "{j}\n{}", c.logs());
    assert_eq!(j["attempts"], 1, "the stopped attempt is not counted: {j}");
    let second = j["instance_id"].as_str().unwrap();
    assert_ne!(second, first, "another worker ran it: {j}");
    assert_eq!(c.verified_outputs(), ["Long.m4b"]);
    c.wait_no_temporaries("after the hand-back");
    let lines = c.wait_log_line(&id, "job completed");
    assert_eq!(
        count(&lines, "released back to the queue"),
        1,
        "{:?}",
        messages(&lines)
    );
    assert_eq!(count(&lines, "job completed"), 1, "{:?}", messages(&lines));
}

/// The API runs no jobs, yet a client following a job's events (the web page's progress bar)
/// gets them: the API relays the stored progress of a job another process converts, and its
/// end, and the stream ends with `finished`.
#[test]
fn the_api_relays_the_events_of_a_job_a_worker_runs() {
    use std::io::BufRead as _;
    let env = Env::new();
    // 20 minutes of audio: several seconds of conversion, several of the relay's 1 s reads.
    env.book("Long", 20, 60.0);
    let c = Cluster::start(env, 1, "30");
    let id = c.convert(&["Long"]).remove(0);
    let response = c
        .agent
        .get(&format!("{}/jobs/{id}/events", c.base))
        .call()
        .unwrap();
    let mut events: Vec<(String, Value)> = Vec::new();
    let mut name = String::new();
    for line in std::io::BufReader::new(response.into_reader()).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("event: ") {
            name = n.to_owned();
        } else if let Some(d) = line.strip_prefix("data: ") {
            events.push((name.clone(), serde_json::from_str(d).unwrap()));
        }
    }
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.last(), Some(&"finished"), "{names:?}");
    assert!(names.contains(&"progress"), "relayed progress: {names:?}");
    let (_, last) = events.last().unwrap();
    assert_eq!(last["data"]["job"]["status"], "completed", "{last}");
    let fractions: Vec<f64> = events
        .iter()
        .filter(|(n, _)| n == "progress")
        .map(|(_, d)| d["data"]["fraction"].as_f64().unwrap())
        .collect();
    assert!(
        fractions.windows(2).all(|w| w[0] <= w[1])
            && fractions.iter().all(|f| (0.0..=1.0).contains(f)),
        "{fractions:?}"
    );
}

/// SIGSTOP of the worker converting a job, past its lease: another worker takes the job over
/// and completes it. Woken up (SIGCONT), the paused worker finds it lost the lease and publishes
/// nothing (the fence), removes its own `.part`, and then goes on taking jobs.
#[test]
fn a_worker_paused_past_its_lease_publishes_nothing_and_carries_on() {
    let env = Env::new();
    long_book(&env, "Long");
    short_book(&env, "After");
    let mut c = Cluster::start(env, 2, SHORT_LEASE);
    let id = c.convert(&["Long"]).remove(0);
    let j = c.wait_converting(&id);
    let paused_id = j["instance_id"].as_str().unwrap().to_owned();
    let paused = c.worker_of(&paused_id);
    let other = 1 - paused;
    signal(c.workers[paused].pid(), libc::SIGSTOP);

    // The other worker takes it over once the lease has expired, and completes it.
    let j = c.wait_job(&id, "the other worker takes the job over", DEADLINE, |j| {
        j["instance_id"] != paused_id.as_str() && !j["instance_id"].is_null()
    });
    assert_eq!(j["instance_id"], c.workers[other].instance_id.as_str());
    let j = c.wait_end(&id);
    assert_eq!(j["status"], "completed", "{j}\n{}", c.logs());
    assert_eq!(j["attempts"], 2, "{j}");

    signal(c.workers[paused].pid(), libc::SIGCONT);
    // It notices at its next renewal (or at the fence before publishing) and says so in the
    // job's log; its part file goes.
    c.wait_log_line(&id, "lost the job's lease");
    c.wait_no_temporaries("after the paused worker woke up");
    let j = c.job(&id);
    assert_eq!(
        j["status"], "completed",
        "the record is the other worker's: {j}"
    );
    assert_eq!(j["instance_id"], c.workers[other].instance_id.as_str());
    assert_eq!(c.verified_outputs(), ["Long.m4b"], "published once");
    assert!(c.workers[paused].running(), "{}", c.logs());

    // It carries on: with the other worker gone, it runs the next job.
    let log = c.workers[other].log.clone();
    assert_eq!(
        c.workers[other].stop(libc::SIGTERM),
        Some(0),
        "{}",
        tail(&log)
    );
    let next = c.convert(&["After"]).remove(0);
    let j = c.wait_end(&next);
    assert_eq!(j["status"], "completed", "{j}\n{}", c.logs());
    assert_eq!(j["instance_id"], paused_id.as_str(), "{j}");
    assert_eq!(c.verified_outputs(), ["After.m4b", "Long.m4b"]);
    let log = c.workers[paused].log.clone();
    assert_eq!(
        c.workers[paused].stop(libc::SIGTERM),
        Some(0),
        "{}",
        tail(&log)
    );
}

/// A cancel through the API reaches the worker converting the job (another process) within
/// seconds: the job ends cancelled, nothing is published, no temporaries stay, and the worker
/// runs the next job.
#[test]
fn a_cancel_from_the_api_stops_the_job_on_its_worker() {
    let env = Env::new();
    long_book(&env, "Long");
    short_book(&env, "Next");
    let c = Cluster::start(env, 1, "30");
    let id = c.convert(&["Long"]).remove(0);
    c.wait_converting(&id);
    let (st, body) = c.call("POST", &format!("/jobs/{id}/cancel"), Some(json!({})));
    assert!(st == 202 || st == 200, "{st} {body}");
    let j = c.wait_job(
        &id,
        "the cancel reaches the worker and the job ends",
        CANCEL_DEADLINE,
        |j| {
            matches!(
                j["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            )
        },
    );
    assert_eq!(j["status"], "cancelled", "{j}\n{}", c.logs());
    c.wait_no_temporaries("after the cancel");
    assert!(m4b_files(&c.output_dir()).is_empty());
    let lines = c.wait_log_line(&id, "job cancelled");
    assert!(
        count(&lines, "cancel requested") >= 1,
        "the worker logged the request: {:?}",
        messages(&lines)
    );

    let next = c.convert(&["Next"]).remove(0);
    let j = c.wait_end(&next);
    assert_eq!(j["status"], "completed", "{j}\n{}", c.logs());
    assert_eq!(j["instance_id"], c.workers[0].instance_id.as_str());
    assert_eq!(c.verified_outputs(), ["Next.m4b"]);
}

/// A PostgreSQL restart while workers convert: the store retries through the outage (shorter
/// than the lease), and afterwards every job has completed exactly once — none lost, none run
/// twice — with one output each and no temporaries.
#[test]
fn a_postgresql_restart_during_a_run_loses_no_job_and_runs_none_twice() {
    let env = Env::new();
    let names: Vec<String> = (1..=8).map(|i| format!("Book {i}")).collect();
    for n in &names {
        // About a second of conversion each: some run while the server is down.
        env.book(n, 3, 40.0);
    }
    short_book(&env, "After");
    let mut pg = aiom4b_testkit::postgres::PrivateServer::start();
    let url = pg.fresh_database();
    let c = Cluster::start_on(env, url, 2, "30");
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let ids = c.convert(&refs);
    c.wait_converting(&ids[0]);
    pg.stop();
    // Long enough for every worker to hit the outage (renewals every second, progress, claims).
    std::thread::sleep(Duration::from_secs(3));
    pg.start_again();

    for id in &ids {
        let j = c.wait_end(id);
        assert_eq!(j["status"], "completed", "{j}\n{}", c.logs());
        assert_eq!(j["attempts"], 1, "run once: {j}\n{}", c.logs());
    }
    let mut want: Vec<String> = names.iter().map(|n| format!("{n}.m4b")).collect();
    want.sort();
    assert_eq!(
        c.verified_outputs(),
        want,
        "one output per book, no duplicate"
    );
    c.wait_no_temporaries("after the restart");
    // Both workers and the API still run and still take work.
    let next = c.convert(&["After"]).remove(0);
    let j = c.wait_end(&next);
    assert_eq!(j["status"], "completed", "{j}\n{}", c.logs());
}
