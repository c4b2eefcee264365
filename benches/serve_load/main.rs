//! Load on `aiom4b serve` (issue 11): while two conversions run, 50 concurrent clients send
//! `GET /jobs` and `GET /jobs/{id}` on loopback; reports throughput and p50/p99 latency, and
//! the conversions' speed against the same two conversions with no load, in the same run.
//!
//! ```sh
//! cargo bench --bench serve_load
//! ```
//!
//! The two books (44.1 kHz stereo, 10 × 60 s each) are generated in a temporary folder. The
//! service runs with MAX_CONCURRENT_JOBS=2 (one core per conversion on a 2-core machine).
//! `AIOM4B_LOAD=burst` (default) sends [`MIN_REQUESTS`] requests, two seconds into the
//! conversions; `AIOM4B_LOAD=sustained` keeps the clients sending until both conversions end.
//! A JSON line goes to `benches/results/serve-load-<date>.jsonl` (or `AIOM4B_BENCH_RESULTS`).
use aiom4b_testkit::fixtures::{write_book, Mp3Spec};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 50;
const MIN_REQUESTS: usize = 2_000;

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(root: &std::path::Path, data: &str) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aiom4b"))
        .args(["serve", "--port", "0"])
        .env("DATA_DIR", root.join(data))
        .env("SOURCE_DIR", root.join("source"))
        .env("MAX_CONCURRENT_JOBS", "2")
        .env("BACKUP_ENABLED", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting aiom4b serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("address line");
    Server {
        child,
        base: format!("{addr}/api/v1"),
    }
}

fn get(agent: &ureq::Agent, url: &str) -> Result<Value, String> {
    agent
        .get(url)
        .call()
        .map_err(|e| e.to_string())?
        .into_json()
        .map_err(|e| e.to_string())
}

/// Starts both books, waits for both to end; returns each job's conversion seconds (started to
/// finished, from the job records) and audio seconds.
fn convert_both(s: &Server, agent: &ureq::Agent, done: &AtomicBool) -> Vec<(f64, f64)> {
    let body: Value = agent
        .post(&format!("{}/convert", s.base))
        .send_json(json!({ "folders": [{ "path": "A" }, { "path": "B" }] }))
        .unwrap()
        .into_json()
        .unwrap();
    let ids: Vec<String> = body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    let mut out = Vec::new();
    for id in &ids {
        loop {
            let j = get(agent, &format!("{}/jobs/{id}", s.base)).unwrap();
            match j["status"].as_str().unwrap() {
                "completed" => {
                    let t = |k: &str| {
                        chrono::DateTime::parse_from_rfc3339(j[k].as_str().unwrap()).unwrap()
                    };
                    let secs = (t("finished_at") - t("started_at")).num_milliseconds() as f64 / 1e3;
                    out.push((secs, j["audio_duration_secs"].as_f64().unwrap()));
                    break;
                }
                "failed" | "cancelled" => panic!("job ended {j}"),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
    done.store(true, Ordering::SeqCst);
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    // `burst` (default): the issue's 2,000 requests while both conversions run. `sustained`:
    // clients send until both conversions end (what a page polling hard would do).
    let mode = std::env::var("AIOM4B_LOAD").unwrap_or_else(|_| "burst".into());
    let sustained = mode == "sustained";
    let tmp = tempfile::tempdir().unwrap();
    let spec = Mp3Spec::default();
    for name in ["A", "B"] {
        write_book(tmp.path().join("source").join(name), 10, 60.0, &spec).unwrap();
    }
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .max_idle_connections_per_host(CLIENTS)
        .build();

    // Alone.
    let alone = {
        let s = start(tmp.path(), "data-alone");
        convert_both(&s, &agent, &AtomicBool::new(false))
    };

    // Under load.
    let s = start(tmp.path(), "data-load");
    let done = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let base = s.base.clone();
    let (loaded, load_secs) = std::thread::scope(|scope| {
        let conv = scope.spawn(|| convert_both(&s, &agent, &done));
        // Wait until both jobs exist, so that /jobs/{id} has ids to ask for.
        let ids: Vec<String> = loop {
            let list = get(&agent, &format!("{base}/jobs")).unwrap();
            let ids: Vec<String> = list["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned())
                .collect();
            if ids.len() == 2 {
                break ids;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Into the conversions, not at their start (planning), so the requests meet encoding.
        std::thread::sleep(Duration::from_secs(2));
        let t_load = Instant::now();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (agent, base, ids) = (agent.clone(), base.clone(), ids.clone());
                let (done, sent, failed, latencies) = (
                    done.clone(),
                    sent.clone(),
                    failed.clone(),
                    latencies.clone(),
                );
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    let mut i = c;
                    loop {
                        let claimed = sent.fetch_add(1, Ordering::SeqCst);
                        let more = if sustained {
                            !done.load(Ordering::SeqCst) || claimed < MIN_REQUESTS
                        } else {
                            claimed < MIN_REQUESTS
                        };
                        if !more {
                            break;
                        }
                        let url = if i % 2 == 0 {
                            format!("{base}/jobs")
                        } else {
                            format!("{base}/jobs/{}", ids[i % ids.len()])
                        };
                        let t = Instant::now();
                        if get(&agent, &url).is_err() {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                        mine.push(t.elapsed().as_secs_f64() * 1e3);
                        i += 1;
                    }
                    latencies.lock().unwrap().extend(mine);
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        let load_secs = t_load.elapsed().as_secs_f64();
        if !sustained {
            eprintln!(
                "{MIN_REQUESTS} requests sent in {load_secs:.2} s; waiting for the conversions"
            );
        }
        (conv.join().unwrap(), load_secs)
    });
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_by(f64::total_cmp);
    let n = lat.len();
    let rate = |v: &[(f64, f64)]| v.iter().map(|(s, a)| a / s).sum::<f64>() / v.len() as f64;
    let (rt_alone, rt_loaded) = (rate(&alone), rate(&loaded));
    let result = json!({
        "bench": "serve_load",
        "mode": mode,
        "date": chrono::Local::now().to_rfc3339(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "clients": CLIENTS,
        "requests": n,
        "failed": failed.load(Ordering::SeqCst),
        "load_secs": load_secs,
        "throughput_rps": n as f64 / load_secs,
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
        "max_ms": lat.last().copied().unwrap_or(0.0),
        "conversions_alone_realtime": rt_alone,
        "conversions_loaded_realtime": rt_loaded,
        "conversion_speed_ratio": rt_loaded / rt_alone,
        "alone": alone,
        "loaded": loaded,
    });
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
    let path = std::env::var("AIOM4B_BENCH_RESULTS").unwrap_or_else(|_| {
        format!(
            "{}/benches/results/serve-load-{}.jsonl",
            env!("CARGO_MANIFEST_DIR"),
            chrono::Local::now().format("%Y-%m-%d")
        )
    });
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    writeln!(f, "{result}").unwrap();
    eprintln!("written to {path}");
}
