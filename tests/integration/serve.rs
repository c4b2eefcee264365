//! `aiom4b serve` over HTTP: the real binary on `127.0.0.1:0` (or `0.0.0.0:0` for the token
//! tests) with its own DATA_DIR and SOURCE_DIR, a real HTTP client, real conversions.
//!
//! Long books (minutes of audio) make a job that is still running when the test acts on it
//! (cancel, SIGTERM, a queue that stays busy); every wait has a deadline.
use crate::cli_workflow::{hidden, m4b_files, Env};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for anything (a conversion of a short book takes well under a second).
const DEADLINE: Duration = Duration::from_secs(60);

/// Starts `aiom4b serve --port 0 ARGS` with `vars` and returns the child and the address it
/// prints on its first line (`listening on http://…`); panics, with its stderr when piped, if
/// it does not start. Shared with the browser tests (`web.rs`).
pub(crate) fn spawn_serve(
    env: &Env,
    vars: &[(&str, &str)],
    args: &[&str],
    stderr: Stdio,
) -> (Child, String) {
    let mut cmd = env.command(&["serve", "--port", "0"]);
    cmd.args(args).stdout(Stdio::piped()).stderr(stderr);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("starting aiom4b serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(addr) => (child, addr),
        Err(_) => {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the server did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

pub(crate) struct Server {
    child: Option<Child>,
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
}

impl Server {
    pub(crate) fn start(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> Server {
        let (child, addr) = spawn_serve(env, vars, args, Stdio::piped());
        // 0.0.0.0 is where it listens; loopback is where the tests reach it.
        let base = addr.replace("0.0.0.0", "127.0.0.1") + "/api/v1";
        let token = vars
            .iter()
            .find(|(k, _)| *k == "API_TOKEN")
            .map(|(_, v)| (*v).to_owned());
        Server {
            child: Some(child),
            base,
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(5))
                .timeout_read(Duration::from_secs(30))
                .build(),
            token,
        }
    }

    pub(crate) fn req(&self, method: &str, path: &str) -> ureq::Request {
        let r = self.agent.request(method, &format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.set("Authorization", &format!("Bearer {t}")),
            None => r,
        }
    }

    /// Status and JSON body (errors included).
    pub(crate) fn call(&self, r: ureq::Request, body: Option<Value>) -> (u16, Value) {
        let res = match body {
            Some(b) => r.send_json(b),
            None => r.call(),
        };
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("transport error: {e}"),
        };
        let status = resp.status();
        let text = resp.into_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub(crate) fn get(&self, path: &str) -> (u16, Value) {
        self.call(self.req("GET", path), None)
    }

    pub(crate) fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(self.req("POST", path), Some(body))
    }

    pub(crate) fn convert(&self, paths: &[&str]) -> Vec<String> {
        let folders: Vec<Value> = paths.iter().map(|p| json!({ "path": p })).collect();
        let (st, body) = self.post("/convert", json!({ "folders": folders }));
        assert_eq!(st, 201, "{body}");
        body["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect()
    }

    pub(crate) fn job(&self, id: &str) -> Value {
        let (st, body) = self.get(&format!("/jobs/{id}"));
        assert_eq!(st, 200, "{body}");
        body
    }

    /// Polls until the job's status is one of `want`.
    pub(crate) fn wait_status(&self, id: &str, want: &[&str]) -> Value {
        let t = Instant::now();
        loop {
            let j = self.job(id);
            if want.contains(&j["status"].as_str().unwrap()) {
                return j;
            }
            assert!(t.elapsed() < DEADLINE, "job {id} stayed {}", j["status"]);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The events of a job's stream until it ends: (id, event, data).
    fn events(&self, id: &str, last_event_id: Option<&str>) -> Vec<(String, String, Value)> {
        let mut r = self.req("GET", &format!("/jobs/{id}/events"));
        if let Some(l) = last_event_id {
            r = r.set("Last-Event-ID", l);
        }
        let resp = r.call().unwrap();
        assert_eq!(
            resp.header("content-type").unwrap_or(""),
            "text/event-stream"
        );
        read_events(resp.into_reader())
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Sends `sig` and waits for the exit; returns the code and stderr.
    fn stop(&mut self, sig: i32) -> (Option<i32>, String) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.pid(), sig) };
        let mut child = self.child.take().unwrap();
        let t = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (status.code(), err);
            }
            if t.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                panic!("the server did not stop within 15 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn read_events(reader: impl Read) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
    for line in BufReader::new(reader).lines() {
        let line = line.unwrap();
        if line.is_empty() {
            if !event.is_empty() {
                let v: Value = serde_json::from_str(&data).unwrap();
                let done = event == "finished";
                out.push((id.clone(), event.clone(), v));
                if done {
                    break;
                }
            }
            event.clear();
            data.clear();
            continue;
        }
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    out
}

fn get_bytes(s: &Server, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>, ureq::Response) {
    let mut r = s.req("GET", path);
    for (k, v) in headers {
        r = r.set(k, v);
    }
    let resp = match r.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let status = resp.status();
    let headers_only = resp_clone_headers(&resp);
    let mut body = Vec::new();
    resp.into_reader().read_to_end(&mut body).unwrap();
    (status, body, headers_only)
}

/// A response carrying only the original's headers (ureq's response is consumed by reading).
fn resp_clone_headers(resp: &ureq::Response) -> ureq::Response {
    let mut text = format!("HTTP/1.1 {} X\r\n", resp.status());
    for name in resp.headers_names() {
        if let Some(v) = resp.header(&name) {
            text.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    text.push_str("\r\n");
    text.parse().unwrap()
}

#[test]
fn full_cycle_folders_plan_convert_events_download_verify_delete() {
    let env = Env::new();
    env.book("Author/Book", 3, 2.0);
    let s = Server::start(&env, &[], &[]);

    let (st, body) = s.get("/health");
    assert_eq!((st, body["status"].as_str()), (200, Some("ok")));
    let (st, body) = s.get("/ready");
    assert_eq!(st, 200, "{body}");

    let (st, body) = s.get("/folders");
    assert_eq!(st, 200);
    let folder = &body["folders"][0];
    assert_eq!(folder["path"], "Author/Book");
    assert_eq!(folder["mp3_count"], 3);
    assert!(folder["job"].is_null());

    let (st, plan) = s.get("/folders/Author%2FBook/plan");
    assert_eq!(st, 200, "{plan}");
    assert_eq!(plan["tracks"].as_array().unwrap().len(), 3);

    // The same Idempotency-Key twice makes one job.
    let req = json!({ "folders": [{ "path": "Author/Book", "output_name": "My Book" }] });
    let (st, first) = s.call(
        s.req("POST", "/convert").set("Idempotency-Key", "k-1"),
        Some(req.clone()),
    );
    assert_eq!(st, 201, "{first}");
    let (st, again) = s.call(
        s.req("POST", "/convert").set("Idempotency-Key", "k-1"),
        Some(req),
    );
    assert_eq!(st, 200);
    assert_eq!(first["jobs"][0]["id"], again["jobs"][0]["id"]);
    let id = first["jobs"][0]["id"].as_str().unwrap().to_owned();

    let events = s.events(&id, None);
    let names: Vec<&str> = events.iter().map(|(_, e, _)| e.as_str()).collect();
    assert_eq!(names.last(), Some(&"finished"), "{names:?}");
    assert!(
        names.contains(&"started") && names.contains(&"progress"),
        "{names:?}"
    );
    let (_, _, last) = events.last().unwrap();
    assert_eq!(last["data"]["job"]["status"], "completed", "{last}");
    let fractions: Vec<f64> = events
        .iter()
        .filter(|(_, e, _)| e == "progress")
        .map(|(_, _, d)| d["data"]["fraction"].as_f64().unwrap())
        .collect();
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{fractions:?}");
    assert_eq!(*fractions.last().unwrap(), 1.0);

    // A reconnect with Last-Event-ID gets only what came after it.
    let (mid_id, _, _) = &events[events.len() / 2];
    let rest = s.events(&id, Some(mid_id));
    let n: u64 = mid_id.parse().unwrap();
    assert!(rest.iter().all(|(i, _, _)| i.parse::<u64>().unwrap() > n));
    assert_eq!(rest.last().unwrap().1, "finished");

    let job = s.job(&id);
    assert_eq!(job["status"], "completed");
    assert_eq!(job["output_name"], "My Book.m4b");
    let (st, _) = s.get("/folders");
    assert_eq!(st, 200);
    let (_, body) = s.get("/folders");
    assert_eq!(body["folders"][0]["job"]["id"], id.as_str());

    // Download: whole, ranges, conditional.
    let (st, book, h) = get_bytes(&s, &format!("/download/{id}"), &[]);
    assert_eq!(st, 200);
    assert_eq!(h.header("content-type"), Some("audio/mp4"));
    let disposition = h.header("content-disposition").unwrap().to_owned();
    assert!(disposition.contains("My Book.m4b"), "{disposition}");
    assert!(h.header("last-modified").is_some());
    let etag = h.header("etag").unwrap().to_owned();
    let on_disk = std::fs::read(env.output_dir().join("My Book.m4b")).unwrap();
    assert_eq!(book, on_disk);
    let (st, part, h) = get_bytes(&s, &format!("/download/{id}"), &[("Range", "bytes=0-99")]);
    assert_eq!(st, 206);
    assert_eq!(part, &book[..100]);
    let total = book.len();
    assert_eq!(
        h.header("content-range"),
        Some(format!("bytes 0-99/{total}").as_str())
    );
    let (st, tail, _) = get_bytes(&s, &format!("/download/{id}"), &[("Range", "bytes=-10")]);
    assert_eq!((st, tail.as_slice()), (206, &book[total - 10..]));
    let (st, _, h) = get_bytes(
        &s,
        &format!("/download/{id}"),
        &[("Range", &format!("bytes={total}-"))],
    );
    assert_eq!(st, 416);
    assert_eq!(
        h.header("content-range"),
        Some(format!("bytes */{total}").as_str())
    );
    let (st, body, _) = get_bytes(&s, &format!("/download/{id}"), &[("If-None-Match", &etag)]);
    assert_eq!((st, body.len()), (304, 0));

    // The bytes as downloaded pass the independent check of the CLI.
    let copy = env.data().join("downloaded.m4b");
    std::fs::write(&copy, &book).unwrap();
    let out = env.run(&["verify", copy.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (st, report) = s.get(&format!("/jobs/{id}/verify"));
    assert_eq!((st, &report["ok"]), (200, &json!(true)), "{report}");

    let (st, list) = s.get("/jobs?status=completed&page=1&per_page=10");
    assert_eq!((st, list["total"].as_u64()), (200, Some(1)));
    let (st, stats) = s.get("/stats");
    assert_eq!((st, stats["completed"].as_u64()), (200, Some(1)));
    let metrics = s
        .req("GET", "/metrics")
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    for name in [
        "aiom4b_http_requests_total",
        "aiom4b_jobs{status=\"completed\"} 1",
        "aiom4b_queue_length",
        "aiom4b_conversion_seconds",
        "process_resident_memory_bytes",
    ] {
        assert!(metrics.contains(name), "{name} missing in\n{metrics}");
    }
    let (st, doc) = s.get("/openapi.json");
    assert_eq!((st, doc["openapi"].as_str()), (200, Some("3.1.0")));
    // Derived from the router: the operations this test used are all in it, with the token.
    for (path, method) in [
        ("/folders/{path}/plan", "get"),
        ("/convert", "post"),
        ("/jobs/{id}/events", "get"),
        ("/download/{id}", "get"),
        ("/jobs/{id}", "delete"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op["responses"]["401"].is_object(), "{method} {path}: {op}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // Delete: the record and, when asked, the file.
    let (st, _) = s.call(
        s.req("DELETE", &format!("/jobs/{id}?delete_output=true")),
        None,
    );
    assert_eq!(st, 204);
    assert!(m4b_files(&env.output_dir()).is_empty());
    let (st, body) = s.get(&format!("/jobs/{id}"));
    assert_eq!(st, 404);
    assert_eq!(body["error"]["code"], "job_not_found");
    assert!(body["error"]["remedy"].is_string());
    let (st, _, _) = get_bytes(&s, &format!("/download/{id}"), &[]);
    assert_eq!(st, 404);

    // Every mutating request is an audit line in DATA_DIR/logs (written by a log thread).
    let deleted = format!("DELETE /api/v1/jobs/{id}");
    let t = Instant::now();
    loop {
        let logs: String = std::fs::read_dir(env.data().join("logs"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        let audited = |what: &str| {
            logs.lines()
                .any(|l| l.contains("http.request") && l.contains(what))
        };
        if audited(&deleted) && audited("POST /api/v1/convert") {
            assert!(logs.contains("anonymous@127.0.0.1"), "who is recorded");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no audit lines in\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_book_split_at_a_limit_lists_its_parts_and_serves_each() {
    let env = Env::new();
    env.book("Author/Book", 3, 2.0);
    let s = Server::start(&env, &[], &[]);
    // A limit that is no limit: 400 with the error shape, no job.
    let (st, body) = s.post(
        "/convert",
        json!({ "folders": [{ "path": "Author/Book", "options": { "split_at": "soon" } }] }),
    );
    assert_eq!(st, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("split_at"),
        "{body}"
    );
    // Three chapters of 2 s under a 3 s limit: three parts.
    let (st, body) = s.post(
        "/convert",
        json!({ "folders": [{ "path": "Author/Book", "output_name": "Cut",
                              "options": { "split_at": "3s" } }] }),
    );
    assert_eq!(st, 201, "{body}");
    let id = body["jobs"][0]["id"].as_str().unwrap().to_owned();
    let job = s.wait_status(&id, &["completed", "failed"]);
    assert_eq!(job["status"], "completed", "{job}");
    let parts = job["parts"].as_array().unwrap_or_else(|| panic!("{job}"));
    let names: Vec<&str> = parts.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "Cut - Part 1 of 3.m4b",
            "Cut - Part 2 of 3.m4b",
            "Cut - Part 3 of 3.m4b"
        ]
    );
    assert_eq!(job["output_name"], "Cut - Part 1 of 3.m4b");
    let files = m4b_files(&env.output_dir());
    assert_eq!(files.len(), 3, "{files:?}");
    let mut total = 0;
    for (k, p) in parts.iter().enumerate() {
        let url = p["download_url"].as_str().unwrap();
        assert_eq!(url, format!("/api/v1/download/{id}?part={}", k + 1));
        let (st, bytes, h) = get_bytes(&s, url.strip_prefix("/api/v1").unwrap(), &[]);
        assert_eq!(st, 200, "{url}");
        let on_disk = std::fs::read(env.output_dir().join(names[k])).unwrap();
        assert!(bytes == on_disk, "{url}: the part's bytes");
        assert!(
            h.header("content-disposition")
                .unwrap()
                .contains(&format!("Part {} of 3", k + 1)),
            "{url}"
        );
        total += on_disk.len() as u64;
        let (st, v) = s.get(&format!("/jobs/{id}/verify?part={}", k + 1));
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["ok"], true, "{v}");
    }
    assert_eq!(job["output_bytes"].as_u64(), Some(total));
    for bad in ["0", "4", "x"] {
        let (st, _, _) = get_bytes(&s, &format!("/download/{id}?part={bad}"), &[]);
        assert!(st == 404 || st == 400, "part={bad}: {st}");
    }
    // Deleting the job with its output removes every part.
    let (st, _) = s.call(
        s.req("DELETE", &format!("/jobs/{id}?delete_output=true")),
        None,
    );
    assert_eq!(st, 204);
    assert!(m4b_files(&env.output_dir()).is_empty());
    assert!(hidden(&env.output_dir()).is_empty());
}

/// A book long enough that its conversion is still running when the test acts.
fn long_book(env: &Env, name: &str) {
    env.book(name, 8, 120.0);
}

#[test]
fn cancel_mid_run_leaves_nothing() {
    let env = Env::new();
    long_book(&env, "Long");
    let s = Server::start(&env, &[], &[]);
    let id = s.convert(&["Long"]).remove(0);
    // The stream shows progress before the cancel: the job is in the middle.
    let resp = s.req("GET", &format!("/jobs/{id}/events")).call().unwrap();
    let mut lines = BufReader::new(resp.into_reader()).lines();
    let t = Instant::now();
    while let Some(Ok(line)) = lines.next() {
        if line == "event: progress" {
            break;
        }
        assert!(t.elapsed() < DEADLINE);
    }
    let (st, body) = s.post(&format!("/jobs/{id}/cancel"), json!({}));
    assert!(st == 202 || st == 200, "{st} {body}");
    let job = s.wait_status(&id, &["cancelled", "completed", "failed"]);
    assert_eq!(job["status"], "cancelled", "{job}");
    assert!(m4b_files(&env.output_dir()).is_empty());
    assert!(
        hidden(&env.output_dir()).is_empty(),
        "{:?}",
        hidden(&env.output_dir())
    );
    // Cancelling again is a conflict, not an error of the server.
    let (st, body) = s.post(&format!("/jobs/{id}/cancel"), json!({}));
    assert_eq!(st, 409, "{body}");
}

#[test]
fn sigterm_mid_job_hands_it_back_and_it_runs_after_a_restart_with_the_pending_ones() {
    let env = Env::new();
    long_book(&env, "Long");
    env.book("Short", 2, 1.0);
    let one = [("MAX_CONCURRENT_JOBS", "1")];
    let mut s = Server::start(&env, &one, &[]);
    let ids = s.convert(&["Long", "Short"]);
    s.wait_status(&ids[0], &["processing"]);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let (code, err) = s.stop(libc::SIGTERM);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        hidden(&env.output_dir()).is_empty(),
        "{:?}",
        hidden(&env.output_dir())
    );

    let s = Server::start(&env, &one, &[]);
    // The stopped job is back in the queue, not cancelled, its stopped attempt not counted;
    // both run after the restart, the handed-back one first (it is the older).
    let back = s.job(&ids[0]);
    assert!(
        back["status"] == "pending" || back["status"] == "processing",
        "{back}"
    );
    let long = s.wait_status(&ids[0], &["completed", "failed", "cancelled"]);
    assert_eq!(long["status"], "completed", "{long}");
    assert_eq!(long["attempts"], 1, "{long}");
    let short = s.wait_status(&ids[1], &["completed", "failed", "cancelled"]);
    assert_eq!(short["status"], "completed", "{short}");
    assert!(env
        .output_dir()
        .join(long["output_name"].as_str().unwrap())
        .is_file());
    assert!(hidden(&env.output_dir()).is_empty());
}

#[test]
fn every_traversal_form_is_refused() {
    let env = Env::new();
    env.book("Inside", 1, 1.0);
    let outside = env.data().parent().unwrap().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let secret_book = outside.join("Secret");
    std::fs::create_dir_all(&secret_book).unwrap();
    std::fs::copy(
        env.source()
            .join("Inside")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
        secret_book.join("01.mp3"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&secret_book, env.source().join("Link")).unwrap();
    let s = Server::start(&env, &[], &[]);

    for path in [
        "..%2Foutside%2FSecret",
        "%2e%2e%2Foutside%2FSecret",
        "Inside%2F..%2F..%2Foutside",
        "%2Fetc",
        "Inside%00",
        "Link",
    ] {
        let (st, body) = s.get(&format!("/folders/{path}/plan"));
        assert_eq!(st, 403, "{path}: {body}");
        assert_eq!(body["error"]["code"], "path_outside_source", "{path}");
    }
    // `..` as its own segment never reaches a handler with a path outside either.
    let (st, _) = s.get("/folders/../plan");
    assert!(st == 404 || st == 403, "{st}");
    for path in [
        "../outside/Secret",
        "/etc",
        "Link",
        "Inside/../../outside/Secret",
        "a\u{0}b",
    ] {
        let (st, body) = s.post("/convert", json!({ "folders": [{ "path": path }] }));
        assert_eq!(st, 403, "{path}: {body}");
    }
    let (_, body) = s.get("/folders");
    let listed: Vec<&str> = body["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["Inside"], "a link out is not listed");

    // Swapped after the check: planned as a real folder, then replaced by a link out.
    env.book("Swap", 1, 1.0);
    let (st, _) = s.get("/folders/Swap/plan");
    assert_eq!(st, 200);
    std::fs::remove_dir_all(env.source().join("Swap")).unwrap();
    std::os::unix::fs::symlink(&secret_book, env.source().join("Swap")).unwrap();
    let (st, _) = s.post("/convert", json!({ "folders": [{ "path": "Swap" }] }));
    assert_eq!(st, 403);
    let (st, _) = s.get("/jobs");
    assert_eq!(st, 200);
    let (_, list) = s.get("/jobs");
    assert_eq!(list["total"], 0, "no job was created: {list}");
}

#[test]
fn a_folder_swapped_for_a_link_while_its_job_waits_is_not_read() {
    let env = Env::new();
    long_book(&env, "Long");
    env.book("Swap", 1, 1.0);
    let outside = env.data().parent().unwrap().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    env.book("Other", 1, 1.0);
    std::fs::rename(env.source().join("Other"), outside.join("Other")).unwrap();
    let s = Server::start(&env, &[("MAX_CONCURRENT_JOBS", "1")], &[]);
    let ids = s.convert(&["Long", "Swap"]);
    s.wait_status(&ids[0], &["processing"]);
    // Accepted and pending; now the folder becomes a link out of SOURCE_DIR.
    std::fs::remove_dir_all(env.source().join("Swap")).unwrap();
    std::os::unix::fs::symlink(outside.join("Other"), env.source().join("Swap")).unwrap();
    s.post(&format!("/jobs/{}/cancel", ids[0]), json!({}));
    let job = s.wait_status(&ids[1], &["failed", "completed", "cancelled"]);
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]["message"].as_str().unwrap().contains("link"),
        "{job}"
    );
    assert!(m4b_files(&env.output_dir()).is_empty());
}

#[test]
fn a_non_loopback_bind_needs_a_token_and_every_request_must_carry_it() {
    let env = Env::new();
    let out = env
        .command(&["serve", "--host", "0.0.0.0", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("token"), "{err}");

    let token = "0123456789abcdef0123456789abcdef";
    let s = Server::start(&env, &[("API_TOKEN", token)], &["--host", "0.0.0.0"]);
    let bare = |path: &str, auth: Option<&str>| {
        let mut r = s.agent.get(&format!("{}{path}", s.base));
        if let Some(a) = auth {
            r = r.set("Authorization", a);
        }
        match r.call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(c, _)) => c,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(bare("/jobs", None), 401);
    assert_eq!(bare("/jobs", Some("Bearer wrong-token")), 401);
    assert_eq!(bare("/jobs", Some(&format!("Bearer {token}x"))), 401);
    assert_eq!(bare("/jobs", Some(&format!("Bearer {token}"))), 200);
    assert_eq!(bare("/health", None), 200, "probes need no token");
    let (st, _) = s.get("/folders");
    assert_eq!(st, 200);
    drop(s);

    // --generate-token: a 0600 file, printed once, used on the next start too.
    let env = Env::new();
    let mut cmd = env.command(&[
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        "--generate-token",
    ]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("API token"), "{first}");
    let _ = child.kill();
    let _ = child.wait();
    let file = env.data().join("api_token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(first.ends_with(saved.trim()));
}

#[test]
fn the_queue_cap_answers_429_with_retry_after() {
    let env = Env::new();
    long_book(&env, "Long");
    env.book("A", 1, 1.0);
    env.book("B", 1, 1.0);
    let s = Server::start(
        &env,
        &[("MAX_CONCURRENT_JOBS", "1"), ("MAX_PENDING_JOBS", "1")],
        &[],
    );
    let long = s.convert(&["Long"]).remove(0);
    s.wait_status(&long, &["processing"]);
    s.convert(&["A"]);
    let resp = s
        .req("POST", "/convert")
        .send_json(json!({ "folders": [{ "path": "B" }] }));
    match resp {
        Err(ureq::Error::Status(429, r)) => {
            assert!(r.header("retry-after").is_some());
            let body: Value = r.into_json().unwrap();
            assert_eq!(body["error"]["code"], "queue_full");
        }
        other => panic!("expected 429, got {other:?}"),
    }
    let (st, _) = s.post(&format!("/jobs/{long}/cancel"), json!({}));
    assert!(st == 200 || st == 202);
}

#[test]
fn bad_requests_get_the_error_shape() {
    let env = Env::new();
    let s = Server::start(&env, &[], &[]);
    for (st_want, method, path, body) in [
        (400, "POST", "/convert", Some(json!({ "folders": [] }))),
        (422, "POST", "/convert", Some(json!({ "nope": 1 }))),
        (404, "GET", "/jobs/not-a-uuid", None),
        (404, "GET", "/nothing", None),
        (400, "GET", "/jobs?status=weird", None),
        (400, "POST", "/jobs/clear?older_than=soon", Some(json!({}))),
    ] {
        let (st, b) = s.call(s.req(method, path), body);
        assert_eq!(st, st_want, "{method} {path}: {b}");
        for k in ["code", "message", "remedy"] {
            assert!(b["error"][k].is_string(), "{method} {path}: {b}");
        }
    }
    // A body over the limit is refused from its Content-Length, before it is read (a raw
    // request: an HTTP client still writing the body may see the early close as an error).
    let addr = s
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1");
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    use std::io::Write as _;
    write!(
        tcp,
        "POST /api/v1/convert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        400 * 1024
    )
    .unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
}

#[test]
fn a_client_that_never_finishes_its_request_head_is_dropped() {
    let env = Env::new();
    let s = Server::start(&env, &[("HEADER_READ_TIMEOUT_SECS", "1")], &[]);
    let addr = s
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1");
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    use std::io::Write as _;
    slow.write_all(b"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    // The server answers 408 or just closes; either way the connection ends, within seconds.
    let _ = slow.read_to_end(&mut buf);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "held for {:?}",
        t.elapsed()
    );
    let head = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || head.starts_with("HTTP/1.1 408"), "{head}");
    // Others are served meanwhile and after.
    let (st, _) = s.get("/health");
    assert_eq!(st, 200);
}

/// A job's own log lines, from the service's job and from a job the CLI ran on the same
/// DATA_DIR: the job's story in order, pages that continue, gone with the job.
#[test]
fn a_jobs_log_lines_are_served_in_pages_whichever_process_ran_it() {
    let env = Env::new();
    env.book("Author/Book", 2, 2.0);
    let bad = env.bad_book("Broken");
    let s = Server::start(&env, &[("BACKUP_ENABLED", "true")], &[]);
    let id = s.convert(&["Author/Book"]).remove(0);
    s.wait_status(&id, &["completed"]);

    // The job's last line reaches the store just after its record says completed.
    let t = Instant::now();
    let page = loop {
        let (st, page) = s.get(&format!("/jobs/{id}/log"));
        assert_eq!(st, 200, "{page}");
        if page["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"] == "job completed")
        {
            break page;
        }
        assert!(t.elapsed() < DEADLINE, "no final line: {page}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines = page["lines"].as_array().unwrap();
    let messages: Vec<&str> = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    let at = |m: &str| {
        messages
            .iter()
            .position(|x| x.starts_with(m))
            .unwrap_or_else(|| panic!("no line {m:?} in {messages:?}"))
    };
    assert!(at("job started") < at("step: backup"), "{messages:?}");
    assert!(at("backed up") < at("step: convert"), "{messages:?}");
    assert!(at("step: publish") < at("job completed"), "{messages:?}");
    assert!(lines.iter().all(|l| l["job_id"] == id.as_str()));
    let seqs: Vec<i64> = lines.iter().map(|l| l["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(page["next"], *seqs.last().unwrap());
    let done = lines
        .iter()
        .find(|l| l["message"] == "job completed")
        .unwrap();
    assert!(
        done["fields"]["output"].as_str().unwrap().ends_with(".m4b"),
        "{done}"
    );

    // Pages: two lines after the first, then nothing after the last.
    let (st, p) = s.get(&format!("/jobs/{id}/log?after={}&limit=2", seqs[0]));
    assert_eq!(st, 200);
    let got: Vec<i64> = p["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(got, seqs[1..3]);
    assert_eq!(p["next"], seqs[2]);
    let (_, p) = s.get(&format!("/jobs/{id}/log?after={}", seqs.last().unwrap()));
    assert_eq!(p["lines"], json!([]));
    assert_eq!(p["next"], *seqs.last().unwrap());
    let (st, e) = s.get(&format!("/jobs/{id}/log?limit=0"));
    assert_eq!(st, 400, "{e}");
    assert!(e["error"]["remedy"].as_str().unwrap().contains("limit"));

    // A job the CLI ran (and failed) on the same DATA_DIR: its lines say why.
    let out = env.run(&["convert", bad.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    let (_, jobs) = s.get("/jobs?status=failed");
    let failed = jobs["jobs"][0]["id"].as_str().unwrap().to_owned();
    let (st, p) = s.get(&format!("/jobs/{failed}/log"));
    assert_eq!(st, 200);
    let last = p["lines"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["level"], "ERROR", "{p}");
    assert!(
        last["message"].as_str().unwrap().starts_with("job failed"),
        "{last}"
    );

    // Deleting the job deletes its lines; an unknown job is a 404.
    let (st, _) = s.call(s.req("DELETE", &format!("/jobs/{id}")), None);
    assert_eq!(st, 204);
    let (st, e) = s.get(&format!("/jobs/{id}/log"));
    assert_eq!(st, 404, "{e}");
}

/// Plans are kept while the folder is unchanged (the page asks for plan, cover and thumbnail
/// of each folder) and made anew as soon as a file is added, replaced or removed.
#[test]
fn folder_plans_are_cached_until_the_folder_changes() {
    let env = Env::new();
    let folder = env.book("Author/Book", 2, 1.0);
    let s = Server::start(&env, &[], &[]);
    let hits = || -> u64 {
        let text = s
            .agent
            .get(&s.base.replace("/api/v1", "/metrics"))
            .call()
            .unwrap();
        let text = text.into_string().unwrap();
        text.lines()
            .find(|l| l.starts_with("aiom4b_plan_cache_requests_total{result=\"hit\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0, |v| v.parse().unwrap())
    };
    let tracks = || {
        let (st, plan) = s.get("/folders/Author%2FBook/plan");
        assert_eq!(st, 200, "{plan}");
        plan["tracks"].as_array().unwrap().len()
    };
    assert_eq!(tracks(), 2);
    let (st, _) = s.get("/folders/Author%2FBook/cover");
    assert_eq!(st, 404, "no cover yet");
    assert_eq!(hits(), 1, "the cover came from the plan just made");
    assert_eq!(tracks(), 2);
    assert_eq!(hits(), 2);

    // A third file: the next plan has it.
    std::fs::copy(
        folder.join("01 - Chapter 1.mp3"),
        folder.join("03 - Chapter 3.mp3"),
    )
    .unwrap();
    assert_eq!(tracks(), 3);
    assert_eq!(hits(), 2, "made anew, not from the cache");
    // A cover appears: served at once.
    let png = aiom4b_testkit::fixtures::test_png(16, 16);
    std::fs::write(folder.join("cover.png"), &png).unwrap();
    let (st, body, h) = get_bytes(&s, "/folders/Author%2FBook/cover", &[]);
    assert_eq!(st, 200);
    assert_eq!(h.header("content-type"), Some("image/png"));
    assert_eq!(body, png);
    // Removed: gone from the plan.
    std::fs::remove_file(folder.join("03 - Chapter 3.mp3")).unwrap();
    assert_eq!(tracks(), 2);
}

/// `host:port` of the server, for raw TCP clients.
fn tcp_addr(s: &Server) -> String {
    s.base
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1")
        .to_owned()
}

/// The files below `dir` (relative path → bytes).
fn tree(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn a_folders_cover_is_served_as_its_bytes_and_a_folder_without_one_is_404() {
    let env = Env::new();
    let covered = env.book("Author/Covered", 2, 1.0);
    let jpeg = aiom4b_testkit::fixtures::test_jpeg(64, 48);
    std::fs::write(covered.join("cover.jpg"), &jpeg).unwrap();
    env.book("Author/Bare", 2, 1.0);
    let s = Server::start(&env, &[], &[]);

    let (st, body, head) = get_bytes(&s, "/folders/Author%2FCovered/cover", &[]);
    assert_eq!(st, 200);
    assert_eq!(head.header("content-type"), Some("image/jpeg"));
    assert!(
        body == jpeg,
        "the served cover is not the folder's cover.jpg"
    );

    let (st, body) = s.get("/folders/Author%2FBare/cover");
    assert_eq!(st, 404, "{body}");
    assert_eq!(body["error"]["code"], "no_cover");
    assert!(body["error"]["remedy"].as_str().unwrap().contains("cover"));
}

#[test]
fn backups_are_listed_verified_and_restored_only_into_a_new_folder() {
    let env = Env::new();
    let src = env.book("Author/Book", 3, 1.0);
    let original = tree(&src);
    let s = Server::start(&env, &[("BACKUP_ENABLED", "true")], &[]);
    let id = s.convert(&["Author/Book"]).remove(0);
    s.wait_status(&id, &["completed"]);

    let (st, body) = s.get("/backups");
    assert_eq!(st, 200, "{body}");
    let backups = body["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "{body}");
    assert_eq!(backups[0]["job"], id.as_str());
    let name = backups[0]["name"].as_str().unwrap().to_owned();
    let enc = name.replace(' ', "%20");

    let (st, report) = s.call(s.req("POST", &format!("/backups/{enc}/verify")), None);
    assert_eq!(st, 200, "{report}");
    assert_eq!(report["problems"], json!([]), "{report}");
    assert_eq!(report["files_checked"], 3, "{report}");

    // Restored into a new folder: the same files, byte for byte.
    let (st, body) = s.post(
        &format!("/backups/{enc}/restore"),
        json!({ "to": "Author/Book (restored)" }),
    );
    assert_eq!(st, 201, "{body}");
    let restored = tree(&env.source().join("Author/Book (restored)"));
    assert_eq!(
        restored.keys().collect::<Vec<_>>(),
        original.keys().collect::<Vec<_>>()
    );
    assert!(restored == original, "restored bytes differ");

    // Never over an existing folder, never outside SOURCE_DIR.
    let (st, body) = s.post(
        &format!("/backups/{enc}/restore"),
        json!({ "to": "Author/Book (restored)" }),
    );
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    for to in ["../outside", "/tmp/outside", "Author/../../outside"] {
        let (st, body) = s.post(&format!("/backups/{enc}/restore"), json!({ "to": to }));
        assert_eq!(st, 403, "{to}: {body}");
    }
    assert!(!env.source().parent().unwrap().join("outside").exists());
    // A name that is a path is not a backup name.
    for bad in ["..", "..%2F..%2Fetc", "%2E%2E", "x%2F..%2F.."] {
        let (st, body) = s.call(s.req("POST", &format!("/backups/{bad}/verify")), None);
        assert!(st == 403 || st == 404, "{bad}: {st} {body}");
        assert!(body["error"]["code"].is_string(), "{bad}: {body}");
        let (st, _) = s.post(
            &format!("/backups/{bad}/restore"),
            json!({ "to": "Author/Elsewhere" }),
        );
        assert!(st == 403 || st == 404, "{bad}: {st}");
    }
    assert!(!env.source().join("Author/Elsewhere").exists());

    // A damaged backup is reported.
    let backup_dir = std::path::PathBuf::from(backups[0]["path"].as_str().unwrap());
    let (victim, _) = tree(&backup_dir)
        .into_iter()
        .find(|(p, _)| p.extension().is_some_and(|e| e == "mp3"))
        .expect("an MP3 in the backup");
    std::fs::write(backup_dir.join(&victim), b"not the file any more").unwrap();
    let (st, report) = s.call(s.req("POST", &format!("/backups/{enc}/verify")), None);
    assert_eq!(st, 200, "{report}");
    let problems = report["problems"].as_array().unwrap();
    assert!(!problems.is_empty(), "damage not detected: {report}");
}

/// Reads the never-ending `/events` stream until `done` says so (every wait has a deadline:
/// a keep-alive comes at least every 15 s).
fn read_global_events(
    s: &Server,
    last_event_id: Option<&str>,
    mut done: impl FnMut(&[(String, String, Value)]) -> bool,
) -> Vec<(String, String, Value)> {
    let mut r = s.req("GET", "/events");
    if let Some(l) = last_event_id {
        r = r.set("Last-Event-ID", l);
    }
    let resp = r.call().unwrap();
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let t = Instant::now();
    let mut out = Vec::new();
    let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
    for line in BufReader::new(resp.into_reader()).lines() {
        assert!(t.elapsed() < DEADLINE, "events so far: {out:?}");
        let line = line.unwrap();
        if line.is_empty() {
            if !event.is_empty() {
                out.push((
                    id.clone(),
                    event.clone(),
                    serde_json::from_str(&data).unwrap(),
                ));
                if done(&out) {
                    return out;
                }
            }
            event.clear();
            data.clear();
        } else if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    panic!("the stream ended: {out:?}");
}

#[test]
fn the_global_stream_carries_every_jobs_events_and_resumes_after_last_event_id() {
    let env = Env::new();
    env.book("A", 2, 1.0);
    env.book("B", 2, 1.0);
    let s = Server::start(&env, &[("MAX_CONCURRENT_JOBS", "2")], &[]);
    let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    // Listening before the jobs exist: the stream must show both from their start.
    let all = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            read_global_events(&s, None, |evs| {
                let ids = ids.lock().unwrap();
                ids.len() == 2
                    && ids.iter().all(|id| {
                        evs.iter()
                            .any(|(_, e, d)| e == "finished" && d["job_id"] == id.as_str())
                    })
            })
        });
        std::thread::sleep(Duration::from_millis(300));
        let mut made = s.convert(&["A"]);
        made.extend(s.convert(&["B"]));
        *ids.lock().unwrap() = made;
        reader.join().unwrap()
    });
    let ids = ids.lock().unwrap().clone();
    for id in &ids {
        let names: Vec<&str> = all
            .iter()
            .filter(|(_, _, d)| d["job_id"] == id.as_str())
            .map(|(_, e, _)| e.as_str())
            .collect();
        assert_eq!(names.first(), Some(&"started"), "{id}: {names:?}");
        assert_eq!(names.last(), Some(&"finished"), "{id}: {names:?}");
    }
    let seqs: Vec<u64> = all.iter().map(|(i, _, _)| i.parse().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // Reconnecting after the third event: exactly the rest, in order, none twice.
    let cut = &all[2].0;
    let rest: Vec<&str> = all[3..].iter().map(|(i, _, _)| i.as_str()).collect();
    let again = read_global_events(&s, Some(cut), |evs| evs.len() >= rest.len());
    let again_ids: Vec<&str> = again.iter().map(|(i, _, _)| i.as_str()).collect();
    assert_eq!(again_ids, rest);
}

#[test]
fn connections_beyond_the_cap_wait_until_one_closes() {
    use std::io::Write as _;
    let env = Env::new();
    let s = Server::start(&env, &[("MAX_CONNECTIONS", "2")], &[]);
    let addr = tcp_addr(&s);
    // Two idle connections take the two places (nothing else has connected yet).
    let first = std::net::TcpStream::connect(&addr).unwrap();
    let _second = std::net::TcpStream::connect(&addr).unwrap();
    // The third is in the kernel's backlog: its request gets no answer while the cap holds.
    let mut third = std::net::TcpStream::connect(&addr).unwrap();
    third
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 12];
    match third.read(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("the third connection was served beyond the cap: {other:?} {buf:?}"),
    }
    // One place frees: the waiting connection is accepted and answered.
    drop(first);
    third.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut head = [0u8; 12];
    third.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
}

#[test]
fn a_request_that_outlasts_the_request_timeout_gets_503() {
    let env = Env::new();
    // 1 ms: planning a folder of 120 MP3s (each opened and probed, some 0.3 ms apiece) takes
    // far longer; three files were not always enough. A health check does not wait.
    env.book("Author/Book", 120, 0.2);
    let s = Server::start(&env, &[("REQUEST_TIMEOUT_MS", "1")], &[]);
    let (st, body) = s.get("/folders/Author%2FBook/plan");
    assert_eq!(st, 503, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    let (st, _) = s.get("/health");
    assert_eq!(st, 200);
}

/// The CORS headers of a request from `origin` (a preflight when `preflight`).
fn cors_headers(
    s: &Server,
    origin: &str,
    preflight: bool,
) -> (u16, Option<String>, Option<String>) {
    let r = if preflight {
        s.agent
            .request("OPTIONS", &format!("{}/jobs", s.base))
            .set("Origin", origin)
            .set("Access-Control-Request-Method", "POST")
            .set(
                "Access-Control-Request-Headers",
                "authorization,idempotency-key,content-type",
            )
    } else {
        s.req("GET", "/jobs").set("Origin", origin)
    };
    let resp = match r.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    (
        resp.status(),
        resp.header("access-control-allow-origin")
            .map(str::to_owned),
        resp.header("access-control-allow-headers")
            .map(str::to_owned),
    )
}

#[test]
fn no_cors_headers_unless_configured_then_only_for_those_origins() {
    let env = Env::new();
    let s = Server::start(&env, &[], &[]);
    for preflight in [true, false] {
        let (_, allow, _) = cors_headers(&s, "http://app.example:8080", preflight);
        assert_eq!(
            allow, None,
            "CORS without configuration (preflight {preflight})"
        );
    }
    drop(s);

    let token = "cors-test-token-0123456789";
    let s = Server::start(
        &env,
        &[
            (
                "CORS_ORIGINS",
                "http://app.example:8080, https://other.example",
            ),
            ("API_TOKEN", token),
        ],
        &[],
    );
    // A preflight carries no token and is answered anyway.
    let (st, allow, headers) = cors_headers(&s, "http://app.example:8080", true);
    assert!((200..300).contains(&st), "{st}");
    assert_eq!(allow.as_deref(), Some("http://app.example:8080"));
    let headers = headers.unwrap_or_default().to_lowercase();
    for h in [
        "authorization",
        "content-type",
        "idempotency-key",
        "last-event-id",
    ] {
        assert!(headers.contains(h), "{h} not allowed: {headers}");
    }
    let (st, allow, _) = cors_headers(&s, "https://other.example", false);
    assert_eq!((st, allow.as_deref()), (200, Some("https://other.example")));
    // A foreign origin gets nothing that lets its page read the answer.
    for preflight in [true, false] {
        let (_, allow, _) = cors_headers(&s, "https://evil.example", preflight);
        assert_eq!(
            allow, None,
            "foreign origin allowed (preflight {preflight})"
        );
    }
}

/// `GET /jobs/{id}/events` with a `Last-Event-ID`: the status and the events.
fn events_after(s: &Server, id: &str, last: &str) -> (u16, Vec<(String, String, Value)>) {
    let resp = s
        .req("GET", &format!("/jobs/{id}/events"))
        .set("Last-Event-ID", last)
        .call()
        .unwrap();
    let st = resp.status();
    (st, read_events(resp.into_reader()))
}

#[test]
fn a_reconnect_after_a_jobs_final_event_gets_204_so_an_event_source_stops() {
    let env = Env::new();
    env.book("Author/Book", 2, 1.0);
    let mut s = Server::start(&env, &[], &[]);
    let id = s.convert(&["Author/Book"]).remove(0);
    let events = s.events(&id, None);
    let (final_id, name, _) = events.last().unwrap().clone();
    assert_eq!(name, "finished");
    // At the final event: nothing more.
    let (st, evs) = events_after(&s, &id, &final_id);
    assert_eq!(st, 204, "{evs:?}");
    assert!(evs.is_empty());
    // Before it: the rest, ending with it.
    let before = &events[events.len() - 2].0;
    let (st, evs) = events_after(&s, &id, before);
    assert_eq!(st, 200);
    assert_eq!(evs.last().map(|e| e.0.as_str()), Some(final_id.as_str()));

    // After a restart the job ended in another process: the first connection gets the end
    // made from the record, the reconnect with its id gets 204.
    let (code, _) = s.stop(libc::SIGTERM);
    assert_eq!(code, Some(0));
    let s = Server::start(&env, &[], &[]);
    let evs = s.events(&id, Some(&final_id));
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].1, "finished");
    assert_eq!(evs[0].2["data"]["job"]["status"], "completed");
    let (st, _) = events_after(&s, &id, &evs[0].0);
    assert_eq!(st, 204);
}

#[test]
fn an_idempotency_key_survives_a_restart_and_refuses_another_body() {
    let env = Env::new();
    env.book("A", 1, 1.0);
    env.book("B", 1, 1.0);
    let token = "idempotency-token-0123456789";
    let vars = [("API_TOKEN", token), ("MAX_CONCURRENT_JOBS", "1")];
    let keyed = |s: &Server, key: &str, folder: &str| {
        s.call(
            s.req("POST", "/convert").set("Idempotency-Key", key),
            Some(json!({ "folders": [{ "path": folder }] })),
        )
    };
    let mut s = Server::start(&env, &vars, &[]);
    let (st, first) = keyed(&s, "key-1", "A");
    assert_eq!(st, 201, "{first}");
    let id = first["jobs"][0]["id"].as_str().unwrap().to_owned();
    s.wait_status(&id, &["completed"]);
    let (code, _) = s.stop(libc::SIGTERM);
    assert_eq!(code, Some(0));

    let s = Server::start(&env, &vars, &[]);
    // The same key and body: the same job, not a new one.
    let (st, again) = keyed(&s, "key-1", "A");
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["jobs"][0]["id"], id.as_str());
    assert_eq!(again["jobs"][0]["status"], "completed");
    // The same key with another body: refused, nothing created.
    let (st, body) = keyed(&s, "key-1", "B");
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
    let (_, jobs) = s.get("/jobs");
    assert_eq!(jobs["total"], 1, "{jobs}");
    // Another key is another request.
    let (st, _) = keyed(&s, "key-2", "B");
    assert_eq!(st, 201);
}

/// The `http.request` audit lines in DATA_DIR/logs: (who, what, status, result).
fn audit_lines(env: &Env) -> Vec<(String, String, u64, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(env.data().join("logs")) else {
        return out;
    };
    for f in dir {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap_or_default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let fields = &v["fields"];
            if v["target"] == "aiom4b::audit" && fields["action"] == "http.request" {
                out.push((
                    fields["who"].as_str().unwrap_or("").to_owned(),
                    fields["what"].as_str().unwrap_or("").to_owned(),
                    fields["status"].as_u64().unwrap_or(0),
                    fields["result"].as_str().unwrap_or("").to_owned(),
                ));
            }
        }
    }
    out
}

#[test]
fn every_mutating_request_reaches_the_audit_log_with_who_what_and_result() {
    use std::io::Write as _;
    let env = Env::new();
    env.book("A", 1, 1.0);
    let token = "audit-token-0123456789abcdef";
    let token_id = &blake3::hash(token.as_bytes()).to_hex()[..8];
    let s = Server::start(&env, &[("API_TOKEN", token)], &[]);
    let id = s.convert(&["A"]).remove(0);
    s.wait_status(&id, &["completed"]);
    let (st, _) = s.post("/jobs/clear?older_than=30d", json!({}));
    assert_eq!(st, 200);
    let (st, _) = s.call(s.req("DELETE", "/jobs/not-a-job"), None);
    assert_eq!(st, 404);
    let (st, _) = s.call(s.req("DELETE", &format!("/jobs/{id}")), None);
    assert_eq!(st, 204);
    // Without the token, and too large (refused before the token is looked at).
    let st = match s.agent.post(&format!("{}/jobs/clear", s.base)).call() {
        Err(ureq::Error::Status(c, _)) => c,
        other => panic!("{other:?}"),
    };
    assert_eq!(st, 401);
    let mut tcp = std::net::TcpStream::connect(tcp_addr(&s)).unwrap();
    tcp.write_all(
        b"POST /api/v1/convert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");

    let authed = format!("token:{token_id}@127.0.0.1:");
    let want: Vec<(&str, String, u64, &str)> = vec![
        (authed.as_str(), "POST /api/v1/convert".into(), 201, "ok"),
        (authed.as_str(), "POST /api/v1/jobs/clear".into(), 200, "ok"),
        (
            authed.as_str(),
            "DELETE /api/v1/jobs/not-a-job".into(),
            404,
            "refused",
        ),
        (
            authed.as_str(),
            format!("DELETE /api/v1/jobs/{id}"),
            204,
            "ok",
        ),
        (
            "unauthenticated@127.0.0.1:",
            "POST /api/v1/jobs/clear".into(),
            401,
            "refused",
        ),
        (
            "unauthenticated@127.0.0.1:",
            "POST /api/v1/convert".into(),
            413,
            "refused",
        ),
    ];
    // The log is written by a background thread: wait for the lines, with a deadline.
    let t = Instant::now();
    loop {
        let lines = audit_lines(&env);
        let missing: Vec<_> = want
            .iter()
            .filter(|(who, what, status, result)| {
                !lines.iter().any(|(w, wh, st, r)| {
                    w.starts_with(who) && wh == what && st == status && r == result
                })
            })
            .collect();
        if missing.is_empty() {
            // Reads are not audited.
            assert!(lines
                .iter()
                .all(|(_, what, _, _)| !what.starts_with("GET ")));
            break;
        }
        assert!(t.elapsed() < DEADLINE, "missing {missing:?} in {lines:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `aiom4b health` (the container's HEALTHCHECK): exit 0 with the service's answer while it
/// runs, behind a token-guarded wildcard listener too (reached on loopback through API_HOST
/// and API_PORT, as in the image); exit 1 saying why once it is gone.
#[test]
fn health_command_answers_for_a_running_service_and_fails_for_a_stopped_one() {
    let env = Env::new();
    let token = "0123456789abcdef0123456789abcdef";
    let mut s = Server::start(&env, &[("API_TOKEN", token)], &["--host", "0.0.0.0"]);
    let addr = tcp_addr(&s);
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let health = |vars: &[(&str, &str)], args: &[&str]| {
        let mut c = env.command(&["health"]);
        c.args(args);
        for (k, v) in vars {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let out = health(&[("API_HOST", "0.0.0.0"), ("API_PORT", &port)], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["status"], "ok", "{v}");
    // Asked with --addr from another configuration, it creates nothing there (no DATA_DIR,
    // no database, no logs).
    let fresh = Env::new();
    let out = fresh
        .command(&["health", "--addr", &addr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !fresh.data().exists(),
        "health created {}",
        fresh.data().display()
    );

    // A port with something else on it: not a 200 with {"status":"ok"}.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_addr = other.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in other.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut conn, &mut buf);
            let _ = std::io::Write::write_all(
                &mut conn,
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy",
            );
        }
    });
    let out = health(&[], &["--addr", &other_addr]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("503"), "{err}");

    s.stop(libc::SIGTERM);
    let out = health(&[], &["--addr", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect"), "{err}");
}

/// Three AAC-LC parts in M4A under SOURCE_DIR, 4 s each, stereo 44.1 kHz.
pub(crate) fn aac_book(env: &Env, name: &str) {
    use aiom4b_testkit::audio_writer::{write_audio, AudioKind, AudioSpec};
    let dir = env.source().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..3u64 {
        let mut spec = AudioSpec::sine(AudioKind::M4aAac, 44_100, 2, 44_100 * 4 + 777 * i);
        spec.tags.album = Some("Kept".into());
        spec.tags.title = Some(format!("Part {}", i + 1));
        write_audio(dir.join(format!("{:02} Part.m4a", i + 1)), &spec).unwrap();
    }
}

#[test]
fn the_api_copies_aac_parts_when_asked_and_the_job_says_how_its_audio_was_made() {
    let env = Env::new();
    aac_book(&env, "Author/Aac");
    env.book("Author/Mp3", 2, 2.0);
    let s = Server::start(&env, &[], &[]);
    let convert = |path: &str, options: Value| {
        s.post(
            "/convert",
            json!({ "folders": [{ "path": path, "options": options }] }),
        )
    };
    // Copy with a format asked for, or an unknown mode: 400 with the error shape, no job.
    for (options, says) in [
        (
            json!({ "audio": "copy", "bitrate": 96000 }),
            "bitrate or preset",
        ),
        (
            json!({ "audio": "copy", "preset": "speech" }),
            "bitrate or preset",
        ),
        (json!({ "audio": "lossless" }), "options.audio"),
    ] {
        let (st, body) = convert("Author/Aac", options.clone());
        assert_eq!(st, 400, "{options}: {body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{options}: {msg}");
        assert!(body["error"]["remedy"].is_string(), "{body}");
    }
    assert_eq!(s.get("/jobs").1["jobs"].as_array().unwrap().len(), 0);
    let finished = |options: Value| {
        let (st, body) = convert("Author/Aac", options);
        assert_eq!(st, 201, "{body}");
        let id = body["jobs"][0]["id"].as_str().unwrap().to_owned();
        assert!(
            body["jobs"][0]["audio"].is_null(),
            "not known before it ran"
        );
        s.wait_status(&id, &["completed", "failed"])
    };
    // Copied: by default and when asked; the job says so, and why.
    for options in [json!({}), json!({ "audio": "copy" })] {
        let job = finished(options.clone());
        assert_eq!(job["status"], "completed", "{options}: {job}");
        assert_eq!(job["audio"]["copied"], true, "{options}: {job}");
        let why = job["audio"]["why"].as_str().unwrap();
        assert!(why.contains("AAC-LC"), "{why}");
    }
    // Encoded when asked for, or when a bitrate asks for a format; the reason is given.
    for (options, says) in [
        (json!({ "audio": "encode" }), "encoding was asked for"),
        (json!({ "bitrate": 64000 }), "encoding was asked for"),
    ] {
        let job = finished(options.clone());
        assert_eq!(job["status"], "completed", "{options}: {job}");
        assert_eq!(job["audio"]["copied"], false, "{options}: {job}");
        let why = job["audio"]["why"].as_str().unwrap();
        assert!(why.contains(says), "{options}: {why}");
    }
    // An MP3 book cannot be copied: `copy` fails its job with the reason, and nothing is
    // written; `auto` encodes it.
    let before = m4b_files(&env.output_dir()).len();
    let (st, body) = convert("Author/Mp3", json!({ "audio": "copy" }));
    assert_eq!(st, 201, "{body}");
    let id = body["jobs"][0]["id"].as_str().unwrap().to_owned();
    let job = s.wait_status(&id, &["completed", "failed"]);
    assert_eq!(job["status"], "failed", "{job}");
    let msg = job["error"]["message"].as_str().unwrap();
    assert!(msg.contains("--audio copy is not possible"), "{msg}");
    assert!(job["audio"].is_null(), "{job}");
    assert_eq!(m4b_files(&env.output_dir()).len(), before);
    assert!(hidden(&env.output_dir()).is_empty());
    let (_, body) = convert("Author/Mp3", json!({}));
    let id = body["jobs"][0]["id"].as_str().unwrap().to_owned();
    let job = s.wait_status(&id, &["completed", "failed"]);
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["audio"]["copied"], false, "{job}");
}
