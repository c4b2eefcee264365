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
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        for (label, (w, h)) in [("desktop", DESKTOP), ("phone", PHONE)] {
            self.c().set_window_size(w, h).await.unwrap();
            // The top of the view, without the focus ring of the field last typed in.
            self.js(
                "document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);",
            )
            .await;
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
        let row = b
            .wait_el(
                "li.book[data-path='Jane Doe/The Book'] .meta",
                |e| async move { e.text().await.is_ok_and(|t| t.contains("1:00")) },
            )
            .await;
        assert!(row.text().await.unwrap().contains("3 MP3"));
        b.find("li.book[data-path='Someone Else/Another Book']")
            .await;
        b.screenshot("library").await;
        b.assert_clean("the library").await;

        b.find("li.book[data-path='Jane Doe/The Book'] a.name")
            .await
            .click()
            .await
            .unwrap();
        let ch2 = b.find("input[data-chapter='2']").await;
        ch2.clear().await.unwrap();
        ch2.send_keys("The Middle, Renamed").await.unwrap();
        let narrator = b.find("#meta-narrator").await;
        narrator.clear().await.unwrap();
        narrator.send_keys("Nora Narrator").await.unwrap();
        b.screenshot("book").await;
        b.assert_clean("the book").await;
        b.find("#convert").await.click().await.unwrap();

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
        b.find("#download").await.click().await.unwrap();
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

        b.find("a[data-nav='jobs']").await.click().await.unwrap();
        b.find("#jobs-table tr[data-job]").await;
        b.screenshot("jobs").await;
        b.assert_clean("the jobs").await;
        b.find("a[data-nav='backups']").await.click().await.unwrap();
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
        b.find("#convert").await.click().await.unwrap();
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
        b.find("#cancel").await.click().await.unwrap();
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
        b.find("#login-view button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
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
        b.find("#convert-selected").await.click().await.unwrap();
        b.find("#jobs-table tr[data-job]").await;
        // Both jobs end completed.
        let t = Instant::now();
        loop {
            b.find("a[data-nav='jobs']").await.click().await.unwrap();
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
