//! The web page in a real browser: Debian's Chromium, headless, driven through chromedriver
//! (WebDriver, with `fantoccini`), against the real `aiom4b serve --port 0` with its own
//! DATA_DIR and SOURCE_DIR and real conversions.
//!
//! These tests fail (they never skip) when `chromium` or `chromedriver` is missing:
//! `scripts/setup.sh` installs both. One browser at a time (a lock), as the CI machine has two
//! cores and a conversion runs beside the browser. Every page visited is checked for console
//! errors and failed requests. The main scenario writes the screenshots in
//! `docs/screenshots/` that the README shows.
use crate::cli_workflow::Env;
use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest wait for anything in the page (a short book converts in well under a second; the
/// long books of the cancel and reload scenarios take several).
const DEADLINE: Duration = Duration::from_secs(90);
const CHROMIUM: &str = "/usr/bin/chromium";
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

/// One browser at a time.
static BROWSER: Mutex<()> = Mutex::new(());

/// The service under test: the real binary, its address read from its first line.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(env: &Env, vars: &[(&str, &str)]) -> Server {
        let (child, base) = crate::serve::spawn_serve(env, vars, &[], Stdio::null());
        Server { child, base }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver on a free loopback port, and Chromium through it.
struct Browser {
    driver: Child,
    client: Option<Client>,
    downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `POST /session/{id}/se/log`: chromedriver's console log of the page (the entries since the
/// last call). Not in the W3C protocol; chromedriver keeps it for exactly this use.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }
    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(r#"{"type":"browser"}"#.to_owned()),
        )
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    async fn start() -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: the browser tests need Debian's chromium (scripts/setup.sh)"
        );
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is missing: install chromium-driver (scripts/setup.sh)");
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-dev-shm-usage",
                    // chromedriver talks to the browser over a pipe, not a DevTools port on
                    // "localhost": a minimal root (debootstrap minbase) has no /etc/hosts, and
                    // there the port mode fails with "unable to connect to renderer".
                    "--remote-debugging-pipe",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                ],
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                },
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let url = format!("http://127.0.0.1:{port}");
        let t = Instant::now();
        let client = loop {
            let mut b =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            match b.capabilities(caps.clone()).connect(&url).await {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        t.elapsed() < Duration::from_secs(20),
                        "chromedriver/chromium did not start: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        Browser {
            driver,
            client: Some(client),
            downloads,
            _profile: profile,
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }

    async fn goto(&self, url: &str) {
        self.c().goto(url).await.unwrap();
    }

    /// Waits until `css` matches an element for which `ok` holds.
    async fn wait_el<F, Fut>(&self, css: &str, ok: F) -> Element
    where
        F: Fn(Element) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let t = Instant::now();
        loop {
            if let Ok(e) = self.c().find(Locator::Css(css)).await {
                if ok(e.clone()).await {
                    return e;
                }
            }
            if t.elapsed() > DEADLINE {
                let text = self
                    .c()
                    .execute("return document.body.innerText", vec![])
                    .await
                    .unwrap_or_default();
                let log = self.c().issue_cmd(BrowserLog).await.unwrap_or_default();
                panic!("waited in vain for {css}; the page says: {text}\nconsole: {log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn find(&self, css: &str) -> Element {
        self.wait_el(css, |_| async { true }).await
    }

    /// Finds `css` and clicks it. The page re-renders a view when fresh data arrives (a job
    /// page when its verification comes in), so the element found can be replaced before the
    /// click reaches it; WebDriver then answers "stale element" and nothing was clicked, so
    /// the element is found again.
    async fn click(&self, css: &str) {
        let t = Instant::now();
        loop {
            match self.find(css).await.click().await {
                Ok(()) => return,
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::StaleElementReference
                        && t.elapsed() < DEADLINE =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
    }

    async fn js(&self, script: &str) -> Value {
        self.c().execute(script, vec![]).await.unwrap()
    }

    /// The job page's bar value (0–100) and how many SSE events the page has handled.
    async fn progress(&self) -> (f64, u64) {
        let v = self
            .js(
                "const p = document.querySelector('#job-progress progress'); \
                 const panel = document.querySelector('#job-progress'); \
                 return [p ? p.value : -1, panel ? Number(panel.dataset.events || 0) : 0];",
            )
            .await;
        (v[0].as_f64().unwrap_or(-1.0), v[1].as_u64().unwrap_or(0))
    }

    /// Console errors and failed requests of the current page; panics on any.
    async fn assert_clean(&self, page: &str) {
        let log = self.c().issue_cmd(BrowserLog).await.unwrap();
        let errors: Vec<&Value> = log
            .as_array()
            .map(|a| a.iter().filter(|e| e["level"] == "SEVERE").collect())
            .unwrap_or_default();
        assert!(errors.is_empty(), "console errors on {page}: {errors:?}");
        let failed = self
            .js("return performance.getEntriesByType('resource') \
                 .filter(e => e.responseStatus >= 400).map(e => e.name + ' ' + e.responseStatus);")
            .await;
        assert_eq!(failed, json!([]), "failed requests on {page}");
    }

    async fn screenshot(&self, name: &str) {
        self.screenshot_at(name, "").await;
    }

    /// A screenshot scrolled to the element `css` matches (the top of the view for "").
    async fn screenshot_at(&self, name: &str, css: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let scroll = format!(
            "document.activeElement && document.activeElement.blur(); \
             const el = {css:?} && document.querySelector({css:?}); \
             if (el) el.scrollIntoView({{block: 'center'}}); else window.scrollTo(0, 0);"
        );
        for (label, (w, h)) in [("desktop", DESKTOP), ("phone", PHONE)] {
            self.c().set_window_size(w, h).await.unwrap();
            // Without the focus ring of the field last typed in.
            self.js(&scroll).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let png = self.c().screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}-{label}.png")), png).unwrap();
        }
        self.c()
            .set_window_size(DESKTOP.0, DESKTOP.1)
            .await
            .unwrap();
    }
}

fn run<F: std::future::Future<Output = ()>>(f: F) {
    let _one = BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f);
}

/// A `<progress>` element's value (WebDriver's property command answers a number).
async fn bar_value(e: &Element) -> Option<f64> {
    e.clone()
        .client()
        .execute(
            "return arguments[0].value",
            vec![serde_json::to_value(e).ok()?],
        )
        .await
        .ok()?
        .as_f64()
}

async fn value_is(e: Element, want: f64) -> bool {
    bar_value(&e).await == Some(want)
}

async fn text_is(e: Element, want: &'static str) -> bool {
    e.text().await.is_ok_and(|t| t == want)
}

/// Library → book → rename chapter 2 and set the narrator → convert → the bar reaches 100 %
/// through SSE → download → the file has the edited title and narrator. Screenshots of every
/// view at desktop and phone width on the way.
#[test]
fn web_page_convert_with_edits_download_and_screenshots() {
    let env = Env::new();
    env.book("Jane Doe/The Book", 3, 20.0);
    env.book("Someone Else/Another Book", 2, 2.0);
    let server = Server::start(&env, &[]);
    run(async {
        let b = Browser::start().await;
        b.goto(&format!("{}/", server.base)).await;
        // The library lists both books, with durations once their plans are read.
        // (By selector, not by element: the list is drawn again as plans arrive.)
        text_when(&b, "li.book[data-path='Jane Doe/The Book'] .meta", |t| {
            t.contains("1:00") && t.contains("3 MP3")
        })
        .await;
        b.find("li.book[data-path='Someone Else/Another Book']")
            .await;
        b.screenshot("library").await;
        b.assert_clean("the library").await;

        b.click("li.book[data-path='Jane Doe/The Book'] a.name")
            .await;
        let ch2 = b.find("input[data-chapter='2']").await;
        ch2.clear().await.unwrap();
        ch2.send_keys("The Middle, Renamed").await.unwrap();
        let narrator = b.find("#meta-narrator").await;
        narrator.clear().await.unwrap();
        narrator.send_keys("Nora Narrator").await.unwrap();
        b.screenshot("book").await;
        b.assert_clean("the book").await;
        b.click("#convert").await;

        // The job page: the bar ends at 100 % and the page has handled SSE events.
        b.wait_el("#job-progress progress", |e| value_is(e, 100.0))
            .await;
        b.wait_el("#job-status-text", |e| text_is(e, "completed"))
            .await;
        let (_, events) = b.progress().await;
        assert!(events > 0, "no Server-Sent Event reached the page");
        // The check of the written file shows the edited chapter.
        let chapters = b
            .wait_el("#verify-chapters", |e| async move {
                e.text()
                    .await
                    .is_ok_and(|t| t.contains("The Middle, Renamed"))
            })
            .await;
        assert!(chapters
            .text()
            .await
            .unwrap()
            .contains("The Middle, Renamed"));
        b.screenshot("job").await;
        b.assert_clean("the job").await;

        // Download through the browser, then read the file back with the project's verify.
        b.click("#download").await;
        let t = Instant::now();
        let file = loop {
            let done: Vec<PathBuf> = std::fs::read_dir(b.downloads.path())
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "m4b"))
                .collect();
            if let Some(f) = done.into_iter().next() {
                break f;
            }
            assert!(t.elapsed() < DEADLINE, "the download did not arrive");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let out = Command::new(env!("CARGO_BIN_EXE_aiom4b"))
            .args(["verify", "--json"])
            .arg(&file)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "verify --json: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        let text = report.to_string();
        assert!(text.contains("The Middle, Renamed"), "{text}");
        assert!(text.contains("Nora Narrator"), "{text}");

        b.click("a[data-nav='jobs']").await;
        b.find("#jobs-table tr[data-job]").await;
        b.screenshot("jobs").await;
        b.assert_clean("the jobs").await;
        b.click("a[data-nav='backups']").await;
        b.find("#stats .chart svg").await;
        b.screenshot("backups-stats").await;
        b.assert_clean("backups and stats").await;
        b.close().await;
    });
}

/// A long book: reload while it converts and the bar goes on from where it was; then cancel.
#[test]
fn web_page_reload_during_a_job_and_cancel() {
    let env = Env::new();
    env.book("Long/Book", 10, 150.0);
    let server = Server::start(&env, &[]);
    run(async {
        let b = Browser::start().await;
        b.goto(&format!("{}/#/book/Long%2FBook", server.base)).await;
        b.click("#convert").await;
        // The log panel, opened with the job, takes the lines written while it runs (on its
        // Server-Sent Events; the panel is not rebuilt meanwhile).
        b.find("#job-log").await;
        b.js("window.firstLogPanel = document.querySelector('#job-log')")
            .await;
        let t = Instant::now();
        loop {
            let v = b
                .js("const p = document.querySelector('#job-log'); \
                     return [p === window.firstLogPanel, \
                       [...document.querySelectorAll('#job-log-lines .msg')].some(m => m.textContent === 'engine: Convert')]")
                .await;
            assert_eq!(v[0], json!(true), "the log panel was rebuilt");
            if v[1] == json!(true) {
                // Still running: the line came while the job ran, not from its end.
                let (bar, _) = b.progress().await;
                assert!(bar < 100.0, "{bar}");
                break;
            }
            assert!(t.elapsed() < DEADLINE, "no log line while the job ran: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let bar = "#job-progress progress";
        b.wait_el(bar, |e| async move {
            bar_value(&e).await.is_some_and(|v| v > 0.0 && v < 100.0)
        })
        .await;
        let (before, _) = b.progress().await;
        b.c().refresh().await.unwrap();
        // After the reload: the bar starts at least where it was and moves on by SSE.
        b.wait_el(bar, move |e| async move {
            bar_value(&e).await.is_some_and(|v| v > before)
        })
        .await;
        let t = Instant::now();
        loop {
            let (v, events) = b.progress().await;
            if events > 0 && v > before {
                break;
            }
            assert!(
                t.elapsed() < DEADLINE,
                "no progress by SSE after the reload"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        b.assert_clean("the job during a reload").await;
        b.click("#cancel").await;
        b.wait_el("#job-status-text", |e| text_is(e, "cancelled"))
            .await;
        b.find("#retry").await;
        b.assert_clean("the cancelled job").await;
        b.close().await;
    });
}

/// Paths that try to leave the page's files or SOURCE_DIR show an error page or an error in
/// the page, never a file.
#[test]
fn web_page_traversal_attempts_show_an_error() {
    let env = Env::new();
    env.book("Author/Book", 1, 1.0);
    let server = Server::start(&env, &[]);
    run(async {
        let b = Browser::start().await;
        for path in [
            "/assets/%2e%2e/%2e%2e/Cargo.toml",
            "/assets/..%2f..%2fetc%2fpasswd",
            "/etc/passwd",
            "/thumb/..%2F..%2Fetc",
        ] {
            b.goto(&format!("{}{path}", server.base)).await;
            let body = b.js("return document.body.innerText").await;
            let body = body.as_str().unwrap_or_default();
            assert!(!body.contains("root:"), "{path} served a file: {body}");
            assert!(!body.contains("[package]"), "{path} served a file: {body}");
            if !path.starts_with("/thumb/") {
                b.find("#error-page").await;
            }
        }
        // In the page: the API refuses the folder and the page says so with the remedy.
        b.goto(&format!("{}/#/book/..%2F..%2Fetc", server.base))
            .await;
        let err = b.find(".error-box").await;
        let text = err.text().await.unwrap();
        assert!(text.contains("What to do"), "{text}");
        b.close().await;
    });
}

/// With a token, the page asks for it once (a login form, no refused requests), keeps it in
/// an HttpOnly cookie, and its mutations carry the CSRF header: "convert selected" works.
#[test]
fn web_page_login_with_the_token_and_convert_selected() {
    let env = Env::new();
    env.book("A/One", 1, 1.0);
    env.book("B/Two", 1, 1.0);
    let token = "a-long-enough-test-token-0123456789";
    let server = Server::start(&env, &[("API_TOKEN", token)]);
    run(async {
        let b = Browser::start().await;
        b.goto(&format!("{}/", server.base)).await;
        b.wait_el("#login-view", |e| async move {
            e.is_displayed().await.unwrap_or(false)
        })
        .await;
        b.assert_clean("the login form").await;
        b.screenshot("login").await;
        // The token cookie is invisible to scripts.
        let cookies = b.js("return document.cookie").await;
        assert!(!cookies.as_str().unwrap_or_default().contains(token));
        b.find("#token").await.send_keys(token).await.unwrap();
        b.click("#login-view button[type=submit]").await;
        b.find("li.book[data-path='A/One']").await;
        let cookies = b.js("return document.cookie").await;
        assert!(
            !cookies.as_str().unwrap_or_default().contains(token),
            "the token cookie must be HttpOnly"
        );
        for p in ["A/One", "B/Two"] {
            b.find(&format!("li.book[data-path='{p}'] input[type=checkbox]"))
                .await
                .click()
                .await
                .unwrap();
        }
        b.click("#convert-selected").await;
        b.find("#jobs-table tr[data-job]").await;
        // Both jobs end completed.
        let t = Instant::now();
        loop {
            b.click("a[data-nav='jobs']").await;
            let done = b
                .js("return [...document.querySelectorAll('#jobs-table tr[data-job] td.status-completed')].length")
                .await;
            if done.as_u64() == Some(2) {
                break;
            }
            assert!(t.elapsed() < DEADLINE, "the selected books did not convert");
            tokio::time::sleep(Duration::from_millis(300)).await;
            b.c().refresh().await.unwrap();
        }
        b.assert_clean("the jobs after login").await;
        // A mutation without the CSRF header is refused even with the cookie.
        let status = b
            .js("return fetch('/api/v1/jobs/clear?older_than=7d', {method: 'POST'}).then(r => r.status)")
            .await;
        assert_eq!(status, json!(403));
        b.close().await;
    });
}

// ---------------------------------------------------------------------------------------------
// Cover choice: the API behind the book view's cover picker, then the picker in the browser.

/// `method base+path` with an optional raw body; status, body bytes and content type.
fn http(
    base: &str,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> (u16, Vec<u8>, String) {
    let agent = ureq::AgentBuilder::new()
        .timeout_read(Duration::from_secs(60))
        .build();
    let r = agent.request(method, &format!("{base}{path}"));
    let res = match body {
        Some((ct, bytes)) => r.set("Content-Type", ct).send_bytes(bytes),
        None => r.call(),
    };
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    let ct = resp.content_type().to_owned();
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut data).unwrap();
    (status, data, ct)
}

fn http_json(base: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let raw = body.map(|b| b.to_string());
    let (st, data, _) = http(
        base,
        method,
        path,
        raw.as_deref().map(|b| ("application/json", b.as_bytes())),
    );
    (
        st,
        serde_json::from_slice(&data).unwrap_or_else(|_| Value::String(text_of(&data))),
    )
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Waits for a job to end; returns it.
fn finished_job(base: &str, id: &str) -> Value {
    let t = Instant::now();
    loop {
        let (st, j) = http_json(base, "GET", &format!("/api/v1/jobs/{id}"), None);
        assert_eq!(st, 200, "{j}");
        if ["completed", "failed", "cancelled"].contains(&j["status"].as_str().unwrap_or("")) {
            return j;
        }
        assert!(t.elapsed() < DEADLINE, "job {id} did not finish: {j}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The written book of a completed job.
fn output_of(env: &Env, job: &Value) -> PathBuf {
    assert_eq!(job["status"], "completed", "{job}");
    env.output_dir()
        .join(job["output_name"].as_str().expect("an output name"))
}

/// The cover of an M4B as two readers see it: the bytes of the `covr` item read by mp4ameta
/// (not the writer), and the project's own `verify` summary (format, size, in `covr`).
fn m4b_cover(path: &Path) -> Option<Vec<u8>> {
    let summary = aiom4b::verify::summarize(path).unwrap();
    let tag = mp4ameta::Tag::read_with_path(path, &mp4ameta::ReadConfig::DEFAULT).unwrap();
    let bytes = tag.artwork().map(|a| a.data.to_vec());
    match (&summary.cover, &bytes) {
        (Some(c), Some(b)) => {
            assert!(c.in_covr, "{c:?}");
            assert_eq!(c.bytes, b.len() as u64, "verify and mp4ameta disagree");
        }
        (None, None) => {}
        (c, b) => panic!(
            "verify sees {c:?}, mp4ameta {:?} bytes",
            b.as_ref().map(Vec::len)
        ),
    }
    bytes
}

/// A book folder with two images the plan could take (it picks `cover.jpg`), one that only
/// has an image's name, a text file, and a symlink to an image outside.
fn book_with_images(env: &Env, name: &str) -> (PathBuf, Vec<u8>, Vec<u8>) {
    use aiom4b_testkit::fixtures::{test_jpeg, test_png};
    let dir = env.book(name, 2, 1.0);
    let cover = test_jpeg(64, 64);
    let back = test_jpeg(40, 30);
    assert_ne!(cover, back);
    std::fs::write(dir.join("cover.jpg"), &cover).unwrap();
    std::fs::write(dir.join("back.jpg"), &back).unwrap();
    std::fs::write(dir.join("fake.png"), b"not an image at all").unwrap();
    std::fs::write(dir.join("notes.txt"), b"notes").unwrap();
    let outside = env.source().join("..").join("outside.png");
    std::fs::write(&outside, test_png(8, 8)).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("link.png")).unwrap();
    (dir, cover, back)
}

#[test]
fn cover_api_lists_serves_and_uploads_images_and_convert_takes_the_choice() {
    use aiom4b_testkit::fixtures::test_png;
    let env = Env::new();
    let (_, cover, back) = book_with_images(&env, "Author/Book");
    let server = Server::start(&env, &[("BACKUP_ENABLED", "false")]);
    let base = server.base.clone();
    let folder = "/api/v1/folders/Author%2FBook";

    // The list: the two real images by content, sorted, with the plan's pick; not the fake
    // one, the text, or the symlink.
    let (st, list) = http_json(&base, "GET", &format!("{folder}/images"), None);
    assert_eq!(st, 200, "{list}");
    let names: Vec<&str> = list["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["back.jpg", "cover.jpg"], "{list}");
    assert_eq!(list["images"][0]["picked"], false);
    assert_eq!(list["images"][1]["picked"], true);
    assert_eq!(list["images"][0]["type"], "image/jpeg");
    assert_eq!(list["images"][0]["width"], 40);
    assert_eq!(list["images"][0]["height"], 30);
    assert_eq!(list["images"][0]["size_bytes"], back.len());
    assert_eq!(
        list["planned"],
        json!({ "kind": "folder", "name": "cover.jpg" })
    );

    // One image, its bytes and type; everything else refused.
    let (st, data, ct) = http(&base, "GET", &format!("{folder}/images/back.jpg"), None);
    assert_eq!((st, ct.as_str()), (200, "image/jpeg"));
    assert_eq!(data, back);
    for (name, want) in [
        ("fake.png", 415),
        ("notes.txt", 415),
        ("link.png", 404),
        ("missing.jpg", 404),
        ("..%2F..%2Foutside.png", 403),
        (".hidden.jpg", 403),
    ] {
        let (st, body, _) = http(&base, "GET", &format!("{folder}/images/{name}"), None);
        assert_eq!(st, want, "{name}: {}", text_of(&body));
        assert!(!body.starts_with(b"\x89PNG"), "{name} served an image");
    }
    let (st, _, _) = http(&base, "GET", "/api/v1/folders/..%2F/images", None);
    assert_eq!(st, 403);

    // Uploads: by content, not by name or declared type; too large at once; stored by content.
    let (st, e) = http_json(&base, "POST", "/api/v1/covers", None);
    assert_eq!(st, 415, "{e}");
    let (st, body, _) = http(
        &base,
        "POST",
        "/api/v1/covers",
        Some(("image/jpeg", b"<html>not a jpeg</html>")),
    );
    assert_eq!(st, 415, "{}", text_of(&body));
    // Announced too large: refused before a byte of the body is read.
    let mut tcp = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    use std::io::{Read as _, Write as _};
    write!(
        tcp,
        "POST /api/v1/covers HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n",
        10 * 1024 * 1024 + 1
    )
    .unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
    drop(tcp);
    // Larger than the 256 KiB every other request may send: uploads have their own limit.
    let mut padded = test_png(10, 10);
    padded.resize(3 << 20, 0);
    let (st, body, _) = http(
        &base,
        "POST",
        "/api/v1/covers",
        Some(("image/png", &padded)),
    );
    assert_eq!(st, 201, "{}", text_of(&body));
    let png = test_png(50, 50);
    let (st, body, _) = http(&base, "POST", "/api/v1/covers", Some(("image/jpeg", &png)));
    assert_eq!(st, 201, "{}", text_of(&body));
    let up: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(up["type"], "image/png");
    assert_eq!(
        (up["width"].clone(), up["height"].clone()),
        (json!(50), json!(50))
    );
    let id = up["id"].as_str().unwrap().to_owned();
    let stored = env.data().join("uploads").join(format!("{id}.png"));
    assert_eq!(std::fs::read(&stored).unwrap(), png);
    let (st, again, _) = http(
        &base,
        "POST",
        "/api/v1/covers",
        Some(("application/octet-stream", &png)),
    );
    assert_eq!(st, 201);
    assert_eq!(
        serde_json::from_slice::<Value>(&again).unwrap()["id"],
        json!(id)
    );
    let (st, data, ct) = http(&base, "GET", &format!("/api/v1/covers/{id}"), None);
    assert_eq!((st, ct.as_str(), data == png), (200, "image/png", true));
    for bad in ["0123", "..%2Fapi_token", &"g".repeat(64)] {
        let (st, _, _) = http(&base, "GET", &format!("/api/v1/covers/{bad}"), None);
        assert_eq!(st, 404, "{bad}");
    }

    // Convert: a bad choice refuses the request; each good one is what the book gets.
    let entry = |cover: Value| json!({ "folders": [{ "path": "Author/Book", "cover": cover }] });
    for (cover, want) in [
        (json!({ "kind": "folder", "name": "../outside.png" }), 403),
        (json!({ "kind": "folder", "name": "fake.png" }), 415),
        (json!({ "kind": "folder", "name": "link.png" }), 404),
        (json!({ "kind": "upload", "id": "f".repeat(64) }), 404),
        (json!({ "kind": "elsewhere" }), 422),
    ] {
        let (st, e) = http_json(&base, "POST", "/api/v1/convert", Some(entry(cover.clone())));
        assert_eq!(st, want, "{cover}: {e}");
    }
    let mut outputs = Vec::new();
    for (cover, want) in [
        (
            json!({ "kind": "folder", "name": "back.jpg" }),
            Some(back.clone()),
        ),
        (json!({ "kind": "upload", "id": id }), Some(png.clone())),
        (json!({ "kind": "none" }), None),
        (Value::Null, Some(cover.clone())),
    ] {
        let mut body = entry(cover.clone());
        if cover.is_null() {
            body["folders"][0].as_object_mut().unwrap().remove("cover");
        }
        // Each book under a name of its own, so the next does not overwrite it.
        body["folders"][0]["output_name"] = json!(format!("Book {}", outputs.len()));
        let (st, r) = http_json(&base, "POST", "/api/v1/convert", Some(body));
        assert_eq!(st, 201, "{cover}: {r}");
        let job = finished_job(&base, r["jobs"][0]["id"].as_str().unwrap());
        let out = output_of(&env, &job);
        assert_eq!(m4b_cover(&out), want, "cover of the book for {cover}");
        outputs.push(out);
    }
}

/// The job id of the job page the browser shows.
async fn shown_job(b: &Browser) -> String {
    let hash = b.js("return location.hash").await;
    hash.as_str()
        .and_then(|h| h.strip_prefix("#/jobs/"))
        .unwrap_or_else(|| panic!("not a job page: {hash}"))
        .to_owned()
}

/// Sets the book view's output name (each conversion of a test gets its own file).
async fn output_name(b: &Browser, name: &str) {
    let out = b.find("#output-name").await;
    out.clear().await.unwrap();
    out.send_keys(name).await.unwrap();
}

/// The book view's cover picker: the plan's pick is chosen first; choosing the folder's other
/// image puts exactly that image in the book; an image uploaded through the file input (with
/// its preview) is chosen at once and ends in the next book.
#[test]
fn web_page_cover_choice_and_upload_end_in_the_book() {
    let env = Env::new();
    let (_, _, back) = book_with_images(&env, "Author/Book");
    let upload = env.source().join("..").join("my cover.png");
    let png = aiom4b_testkit::fixtures::test_png(60, 45);
    std::fs::write(&upload, &png).unwrap();
    // chromedriver takes only canonical paths for a file input.
    let upload = upload.canonicalize().unwrap();
    let server = Server::start(&env, &[("BACKUP_ENABLED", "false")]);
    let base = server.base.clone();
    run(async {
        let b = Browser::start().await;
        b.goto(&format!("{base}/#/book/Author%2FBook")).await;
        b.find("input[data-cover='folder:cover.jpg']:checked").await;
        for key in ["folder:back.jpg", "none"] {
            b.find(&format!("input[data-cover='{key}']")).await;
        }
        // Every choice is a labelled radio button.
        let unlabelled = b
            .js(
                "return [...document.querySelectorAll('input[name=cover]')] \
                 .filter(i => !i.labels.length || !i.labels[0].textContent.trim()).length",
            )
            .await;
        assert_eq!(unlabelled, json!(0));
        b.click("input[data-cover='folder:back.jpg']").await;
        let src = b.find("#cover-preview").await.attr("src").await.unwrap();
        assert!(src.unwrap_or_default().ends_with("/images/back.jpg"));
        b.screenshot_at("book-cover", "#cover-list").await;
        b.assert_clean("the book's cover picker").await;
        output_name(&b, "With Back").await;
        b.click("#convert").await;
        b.wait_el("#job-status-text", |e| text_is(e, "completed"))
            .await;
        let job = finished_job(&base, &shown_job(&b).await);
        assert_eq!(m4b_cover(&output_of(&env, &job)), Some(back.clone()));

        // Upload: the file input takes a path; the choice appears, chosen, with the preview.
        b.goto(&format!("{base}/#/book/Author%2FBook")).await;
        b.find("#cover-file")
            .await
            .send_keys(upload.to_str().unwrap())
            .await
            .unwrap();
        b.find("input[data-cover^='upload:']:checked").await;
        b.wait_el("#cover-status", |e| async move {
            e.text().await.is_ok_and(|t| t.contains("uploaded"))
        })
        .await;
        let src = b.find("#cover-preview").await.attr("src").await.unwrap();
        assert!(src.unwrap_or_default().contains("/api/v1/covers/"));
        b.assert_clean("the book after an upload").await;
        output_name(&b, "With Upload").await;
        b.click("#convert").await;
        b.wait_el("#job-status-text", |e| text_is(e, "completed"))
            .await;
        let job = finished_job(&base, &shown_job(&b).await);
        assert_eq!(m4b_cover(&output_of(&env, &job)), Some(png.clone()));
        b.close().await;
    });
}

/// "Split into parts" on the book view: the job's page lists every part with its own download
/// link, and each link serves that part's bytes.
#[test]
fn web_page_split_at_lists_the_parts_with_their_links() {
    let env = Env::new();
    env.book("Author/Book", 3, 2.0);
    let server = Server::start(&env, &[("BACKUP_ENABLED", "false")]);
    let base = server.base.clone();
    run(async {
        let b = Browser::start().await;
        b.goto(&format!("{base}/#/book/Author%2FBook")).await;
        output_name(&b, "Cut").await;
        b.find("#split-at").await.send_keys("3s").await.unwrap();
        b.click("#convert").await;
        b.wait_el("#job-status-text", |e| text_is(e, "completed"))
            .await;
        b.find("#parts").await;
        let links = b
            .js("return [...document.querySelectorAll('#parts a')].map(a => [a.textContent, a.getAttribute('href')])")
            .await;
        let id = shown_job(&b).await;
        let want: Vec<Value> = (1..=3)
            .map(|k| {
                json!([
                    format!("Cut - Part {k} of 3.m4b"),
                    format!("/api/v1/download/{id}?part={k}")
                ])
            })
            .collect();
        assert_eq!(links, json!(want));
        b.assert_clean("a split book's job page").await;
        b.close().await;
        for k in 1..=3 {
            let (st, body, _) = http(
                &base,
                "GET",
                &format!("/api/v1/download/{id}?part={k}"),
                None,
            );
            assert_eq!(st, 200);
            let file = env.output_dir().join(format!("Cut - Part {k} of 3.m4b"));
            assert!(body == std::fs::read(&file).unwrap(), "part {k}");
        }
    });
}

/// The chapter titles of the book view's table, top to bottom.
async fn table_titles(b: &Browser) -> Value {
    b.js("return [...document.querySelectorAll('#chapters input[data-chapter]')].map(i => i.value)")
        .await
}

/// File order by drag and drop (the browser's drag events on the rows, as a drag with the
/// mouse fires them) and by the ↑/↓ buttons: the table follows, and so do the converted
/// book's chapters.
#[test]
fn web_page_file_order_by_drag_and_drop_and_buttons() {
    let env = Env::new();
    env.book("Author/Ordered", 3, 1.0);
    let server = Server::start(&env, &[("BACKUP_ENABLED", "false")]);
    let base = server.base.clone();
    run(async {
        let b = Browser::start().await;
        b.goto(&format!("{base}/#/book/Author%2FOrdered")).await;
        b.find("#chapters tr[data-file]").await;
        let before = table_titles(&b).await;
        let titles: Vec<String> = before
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(titles.len(), 3, "{before}");
        // Drag the third row onto the first.
        b.js("const rows = document.querySelectorAll('#chapters tr'); \
              const dt = new DataTransfer(); \
              const ev = (el, type) => el.dispatchEvent(new DragEvent(type, \
                  { bubbles: true, cancelable: true, dataTransfer: dt })); \
              ev(rows[2], 'dragstart'); ev(rows[0], 'dragenter'); ev(rows[0], 'dragover'); \
              ev(rows[0], 'drop'); ev(rows[2], 'dragend');")
            .await;
        let want = json!([titles[2], titles[0], titles[1]]);
        assert_eq!(table_titles(&b).await, want);
        // Screen readers hear where the file went (the line is visually hidden).
        let said = b
            .js("return document.querySelector('#order-status').textContent")
            .await;
        assert!(
            said.as_str()
                .unwrap_or_default()
                .contains("is now file 1 of 3"),
            "{said}"
        );
        // Then with the keyboard: focus "down" of the (now) second row and press Enter.
        let down = b
            .find("#chapters tr:nth-child(2) button[aria-label$=' down']")
            .await;
        down.send_keys("\u{E007}").await.unwrap();
        let want = json!([titles[2], titles[1], titles[0]]);
        assert_eq!(table_titles(&b).await, want);
        // The start times follow the new order: the first row starts at 0:00.
        let starts = b
            .js("return [...document.querySelectorAll('#chapters tr td:nth-child(2)')].map(t => t.textContent)")
            .await;
        assert_eq!(starts, json!(["0:00", "0:01", "0:02"]));
        b.assert_clean("the book after reordering").await;
        b.click("#convert").await;
        b.wait_el("#job-status-text", |e| text_is(e, "completed"))
            .await;
        let id = shown_job(&b).await;
        let job = finished_job(&base, &id);
        assert_job_log_shown(&b, &base, &id).await;
        b.screenshot_at("job-log", "#job-log").await;
        b.assert_clean("the job with its log").await;
        let out = output_of(&env, &job);
        let summary = aiom4b::verify::summarize(&out).unwrap();
        let chapters: Vec<&str> = summary
            .chapter_track
            .as_ref()
            .expect("a chapter track")
            .chapters
            .iter()
            .map(|c| c.title.as_str())
            .collect();
        assert_eq!(
            json!(chapters),
            want,
            "the book's chapters follow the order"
        );
        b.close().await;
    });
}

/// Text of an element once it satisfies `ok`, for waits on changing text.
async fn text_when<F: Fn(&str) -> bool>(b: &Browser, css: &str, ok: F) -> String {
    let t = Instant::now();
    loop {
        let text = b
            .js(&format!(
                "const e = document.querySelector({css:?}); return e ? e.textContent : null"
            ))
            .await;
        if let Some(s) = text.as_str() {
            if ok(s) {
                return s.to_owned();
            }
        }
        assert!(t.elapsed() < DEADLINE, "{css} stayed {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn job_rows(b: &Browser) -> u64 {
    b.js("return document.querySelectorAll('#jobs-table tr[data-job]').length")
        .await
        .as_u64()
        .unwrap()
}

/// The backups view after a conversion (backups are on by default): the backup is listed,
/// verifies intact, and restores into a new folder that holds the same files and shows up in
/// the library.
#[test]
fn web_page_backups_list_verify_and_restore() {
    let env = Env::new();
    let dir = env.book("Author/Book", 2, 1.0);
    let server = Server::start(&env, &[]);
    let base = server.base.clone();
    let (st, r) = http_json(
        &base,
        "POST",
        "/api/v1/convert",
        Some(json!({ "folders": [{ "path": "Author/Book" }] })),
    );
    assert_eq!(st, 201, "{r}");
    let job = finished_job(&base, r["jobs"][0]["id"].as_str().unwrap());
    assert_eq!(job["status"], "completed", "{job}");
    run(async {
        let b = Browser::start().await;
        b.goto(&format!("{base}/#/backups")).await;
        b.find("#backups tr[data-backup]").await;
        let rows = b
            .js("return document.querySelectorAll('#backups tr[data-backup]').length")
            .await;
        assert_eq!(rows, json!(1));
        text_when(&b, "#backups tr[data-backup] td.state", |t| t == "complete").await;
        b.assert_clean("the backups").await;

        b.click("#backups button.verify").await;
        let state = text_when(&b, "#backups tr[data-backup] td.state", |t| t != "complete").await;
        assert!(state.starts_with("intact ("), "{state}");
        assert!(!state.starts_with("intact (0 "), "{state}");

        let to = b.find("#backups input.restore-to").await;
        to.clear().await.unwrap();
        to.send_keys("Author/Book (restored)").await.unwrap();
        b.click("#backups button.restore").await;
        // The new folder is the restored book folder.
        text_when(&b, "#backups tr[data-backup] td.state", |t| {
            t == "restored 2 files to Author/Book (restored)"
        })
        .await;
        b.assert_clean("the backups after verify and restore").await;
        let restored = env.source().join("Author/Book (restored)");
        let files = |d: &Path| -> Vec<(String, String)> {
            let mut v: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "mp3"))
                .map(|p| {
                    let name = p.file_name().unwrap().to_string_lossy().into_owned();
                    (
                        name,
                        blake3::hash(&std::fs::read(&p).unwrap())
                            .to_hex()
                            .to_string(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        let original = files(&dir);
        assert_eq!(original.len(), 2);
        assert_eq!(files(&restored), original);
        // The library lists the new folder.
        b.goto(&format!("{base}/#/")).await;
        b.find("li.book[data-path='Author/Book (restored)']").await;
        b.close().await;
    });
}

/// The jobs view with 25 finished jobs (put in the store directly: no conversion needed):
/// two pages of 20, the status filter, the text search, and clearing the jobs older than
/// 30 days (the three completed ones, from 40 days ago).
#[test]
fn web_page_jobs_filter_search_pages_and_clear_old() {
    use aiom4b::workflow::jobs::{JobFailure, JobStore as _, SqliteStore};
    use aiom4b::workflow::{ErrorCategory, Job, JobStatus};
    let env = Env::new();
    std::fs::create_dir_all(env.data()).unwrap();
    {
        let store = SqliteStore::open(&env.data().join("aiom4b.db")).unwrap();
        let now = chrono::Utc::now();
        let old = now - chrono::Duration::days(40);
        for i in 0..25 {
            let (folder, when) = if i < 3 {
                (format!("Old/Book {i}"), old)
            } else {
                (format!("Bad/Book {i}"), now - chrono::Duration::minutes(i))
            };
            let mut j = Job::new(vec![env.source().join(folder)], json!({}));
            j.created_at = when;
            j.started_at = Some(when);
            j.finished_at = Some(when);
            if i < 3 {
                j.status = JobStatus::Completed;
                j.progress_percent = 100.0;
            } else {
                j.status = JobStatus::Failed;
                j.error = Some(JobFailure {
                    category: ErrorCategory::Input,
                    message: "no MP3 files".into(),
                    remedy: "put the book's MP3s in the folder".into(),
                });
            }
            store.insert(&j).unwrap();
        }
    }
    let server = Server::start(&env, &[]);
    let base = server.base.clone();
    run(async {
        let b = Browser::start().await;
        b.goto(&format!("{base}/#/jobs")).await;
        text_when(&b, "#page-info", |t| t == "Page 1 of 2 · 25 jobs").await;
        assert_eq!(job_rows(&b).await, 20);
        b.assert_clean("the jobs, page 1").await;
        b.click("#next-page").await;
        text_when(&b, "#page-info", |t| t == "Page 2 of 2 · 25 jobs").await;
        assert_eq!(job_rows(&b).await, 5);
        assert_eq!(
            b.js("return document.querySelector('#next-page').disabled")
                .await,
            json!(true)
        );

        // The status filter starts again at page 1.
        b.click("#job-status option[value='completed']").await;
        text_when(&b, "#page-info", |t| t == "Page 1 of 1 · 3 jobs").await;
        let completed = b
            .js("return [...document.querySelectorAll('#jobs-table tr[data-job] td:nth-child(2)')].map(t => t.textContent)")
            .await;
        assert_eq!(completed, json!(["completed", "completed", "completed"]));
        b.click("#job-status option[value='']").await;
        text_when(&b, "#page-info", |t| t.ends_with("· 25 jobs")).await;

        // Text search over folders.
        b.find("#job-text").await.send_keys("Book 7").await.unwrap();
        text_when(&b, "#page-info", |t| t == "Page 1 of 1 · 1 jobs").await;
        let row = b.find("#jobs-table tr[data-job] td a").await;
        assert_eq!(row.text().await.unwrap(), "Book 7");
        b.find("#job-text").await.clear().await.unwrap();
        // `clear` fires no input event; an emptied field is typed into like a person would.
        b.find("#job-text")
            .await
            .send_keys(" \u{E003}")
            .await
            .unwrap();
        text_when(&b, "#page-info", |t| t.ends_with("· 25 jobs")).await;

        // Clear the jobs older than 30 days: the three old ones go.
        b.click("#clear-age option[value='30d']").await;
        b.click("#clear-jobs").await;
        let said = text_when(&b, "#flash", |_| true).await;
        assert_eq!(said, "3 finished jobs older than 30d cleared.");
        text_when(&b, "#page-info", |t| t == "Page 1 of 2 · 22 jobs").await;
        b.assert_clean("the jobs after clearing").await;
        b.close().await;
    });
}

/// The job page's log panel shows exactly the job's log lines as the API gives them (level,
/// target, message), in order, in a monospace list.
async fn assert_job_log_shown(b: &Browser, base: &str, id: &str) {
    let t = Instant::now();
    let (api, shown) = loop {
        let (st, page) = http_json(
            base,
            "GET",
            &format!("/api/v1/jobs/{id}/log?limit=1000"),
            None,
        );
        assert_eq!(st, 200, "{page}");
        let api: Vec<String> = page["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                format!(
                    "{} {} {}",
                    l["level"].as_str().unwrap(),
                    l["target"].as_str().unwrap(),
                    l["message"].as_str().unwrap()
                )
            })
            .collect();
        let shown = b
            .js(
                "return [...document.querySelectorAll('#job-log-lines li')].map(li => \
                 [li.querySelector('.level').textContent, li.querySelector('.target').textContent, \
                  li.querySelector('.msg').textContent].join(' '))",
            )
            .await;
        let shown: Vec<String> = serde_json::from_value(shown).unwrap();
        if !api.is_empty() && shown == api {
            break (api, shown);
        }
        assert!(
            t.elapsed() < DEADLINE,
            "the log panel shows {shown:?}, the API {api:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(api, shown);
    let font = b
        .js("return getComputedStyle(document.querySelector('#job-log-lines')).fontFamily")
        .await;
    assert!(
        font.as_str().unwrap_or_default().contains("monospace"),
        "{font}"
    );
    let info = b
        .js("return document.querySelectorAll('#job-log-lines li.level-info').length")
        .await;
    assert!(info.as_u64().unwrap_or(0) > 0, "no INFO line: {shown:?}");
}

/// A finished job's page → "Tag from Audible…" → search → the Kramer edition ranked first →
/// a dry run lists the changes → write → the page shows the fitted chapters and the new
/// narrator, and the file carries Audible's tags (recorded provider answers on a local server).
#[test]
fn web_page_tags_a_finished_book_from_audible() {
    use crate::metadata::{ffprobe, spoken_book, SpokenBook, ASIN};
    use crate::silence::RATE;
    let env = Env::new();
    let SpokenBook {
        book,
        truth,
        server: providers,
        ..
    } = spoken_book(&env);
    let audible = format!("{}/{{tld}}", providers.base);
    let server = Server::start(
        &env,
        &[
            ("BACKUP_ENABLED", "false"),
            ("AIOM4B_AUDNEXUS_URL", &providers.base),
            ("AIOM4B_AUDIBLE_URL", &audible),
        ],
    );
    let base = server.base.clone();
    let (st, created) = http_json(
        &base,
        "POST",
        "/api/v1/convert",
        Some(json!({"folders": [{"path": "book"}]})),
    );
    assert_eq!(st, 201, "{created}");
    let id = created["jobs"][0]["id"].as_str().unwrap().to_owned();
    let job = finished_job(&base, &id);
    let out = output_of(&env, &job);
    run(async {
        let b = Browser::start().await;
        b.goto(&format!("{base}/#/jobs/{id}")).await;
        b.find("#verify-chapters").await;
        b.click("#match-open").await;
        b.find("#match-dialog[open]").await;
        b.find("#match-query")
            .await
            .send_keys("The Final Empire")
            .await
            .unwrap();
        b.click("#match-search").await;
        let first = b.find("#match-candidates li .use").await;
        assert_eq!(
            first.attr("data-asin").await.unwrap().as_deref(),
            Some(ASIN)
        );
        let shown = b.find("#match-candidates li").await.text().await.unwrap();
        assert!(
            shown.contains("Michael Kramer") && shown.contains("match "),
            "{shown}"
        );
        b.screenshot_at("match", "#match-dialog").await;
        first.click().await.unwrap();
        let apply = b
            .wait_el("#match-apply", |e| async move {
                e.is_enabled().await.unwrap_or(false)
            })
            .await;
        let changes = b.find("#match-changes").await.text().await.unwrap();
        assert!(changes.contains("The Final Empire"), "{changes}");
        // The dry run wrote nothing.
        assert_ne!(ffprobe(&out)["format"]["tags"]["ASIN"], ASIN);
        apply.click().await.unwrap();
        let done = b.find("#match-done").await.text().await.unwrap();
        assert!(
            done.contains(&format!("{} chapters fitted", truth.len() + 1)),
            "{done}"
        );
        b.click("#match-close").await;
        // The job page reads the book back: Audible's narrator and chapter titles.
        b.wait_el("#verify .meta", |e| async move {
            e.text()
                .await
                .is_ok_and(|t| t.contains("narrator Michael Kramer"))
        })
        .await;
        let titles = b
            .js("return [...document.querySelectorAll('#verify-chapters li')].map(l => l.textContent)")
            .await;
        assert_eq!(
            titles.as_array().unwrap().len(),
            truth.len() + 1,
            "{titles}"
        );
        assert!(
            titles[0].as_str().unwrap().ends_with("Opening Credits"),
            "{titles}"
        );
        b.assert_clean("the job page after tagging").await;
        b.close().await;
    });
    let tags = &ffprobe(&out)["format"]["tags"];
    assert_eq!(tags["ASIN"], ASIN);
    assert_eq!(tags["title"], "The Final Empire");
    let s = aiom4b::verify::summarize(&out).unwrap();
    assert!((s.duration_secs - book.total as f64 / RATE as f64).abs() < 0.05);
}

/// A book of AAC parts: the book view names the files' format and offers to keep their AAC
/// (the default); the job page says the audio was copied. Choosing the 128 kb/s format instead
/// re-encodes, and the job page says so and why.
#[test]
fn web_page_offers_to_keep_aac_parts_and_says_how_the_audio_was_made() {
    let env = Env::new();
    crate::serve::aac_book(&env, "Author/Aac");
    let server = Server::start(&env, &[("BACKUP_ENABLED", "false")]);
    let base = server.base.clone();
    run(async {
        let b = Browser::start().await;
        let starts = |prefix: &'static str| {
            move |e: Element| async move { e.text().await.is_ok_and(|t| t.starts_with(prefix)) }
        };
        for (choice, name, says) in [
            (
                "keep",
                "Kept",
                "Copied, not re-encoded — every part is AAC-LC",
            ),
            ("default", "Encoded", "Encoded — encoding was asked for"),
        ] {
            b.goto(&format!("{base}/#/book/Author%2FAac")).await;
            b.wait_el("#plan-summary", starts("3 files (M4A AAC) · "))
                .await;
            let offered = b
                .js("const s = document.querySelector('#preset'); return [s.value, [...s.options].map(o => o.value)]")
                .await;
            assert_eq!(
                offered,
                json!(["keep", ["keep", "default", "speech", "source"]])
            );
            b.js(&format!(
                "document.querySelector('#preset').value = '{choice}'; return null"
            ))
            .await;
            output_name(&b, name).await;
            b.click("#convert").await;
            b.wait_el("#job-status-text", |e| text_is(e, "completed"))
                .await;
            b.wait_el("#audio-path", starts(says)).await;
        }
        b.assert_clean("an AAC book's views").await;
        b.close().await;
    });
    assert!(env.output_dir().join("Kept.m4b").is_file());
    assert!(env.output_dir().join("Encoded.m4b").is_file());
}
