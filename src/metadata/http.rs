//! Blocking HTTP for the providers (ureq): timeouts, retries, a polite rate limit per host,
//! the User-Agent and the cache. ureq does none of the retry or pacing policy, so it is here.
use super::cache::Cache;
use super::provider_error;
use crate::error::Result;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How requests are made.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpOptions {
    /// Timeout of one request (connect, send, the whole answer). Default 20 s.
    pub timeout: Duration,
    /// Attempts after the first, on a 5xx answer, a 408/429, a timeout or a broken
    /// connection. Default 3.
    pub retries: u32,
    /// First wait before a retry; doubled each time (±20 % jitter). Default 1 s.
    pub backoff: Duration,
    /// Least time between two requests to one host. Default 250 ms.
    pub min_interval: Duration,
    /// Longest `Retry-After` waited for; a longer one fails at once. Default 120 s.
    pub max_retry_after: Duration,
    /// The User-Agent header. Default `aiom4b/<version> (+https://github.com/…)`.
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(20),
            retries: 3,
            backoff: Duration::from_secs(1),
            min_interval: Duration::from_millis(250),
            max_retry_after: Duration::from_secs(120),
            user_agent: format!("aiom4b/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A blocking HTTP client shared by the providers (safe to share between threads).
pub struct HttpClient {
    agent: ureq::Agent,
    opts: HttpOptions,
    cache: Option<Cache>,
    last: Mutex<HashMap<String, Instant>>,
    requests: AtomicU64,
}

/// The body of an answer, or "not found" (404/410).
pub(crate) enum Fetched {
    Body(Vec<u8>),
    NotFound,
}

impl HttpClient {
    /// A client with these options and, when given, a cache.
    pub fn new(opts: HttpOptions, cache: Option<Cache>) -> HttpClient {
        let agent = ureq::AgentBuilder::new()
            .timeout(opts.timeout)
            .user_agent(&opts.user_agent)
            .build();
        HttpClient {
            agent,
            opts,
            cache,
            last: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
        }
    }

    /// Requests sent so far (every attempt, retries included; cache hits are none).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Waits until `min_interval` has passed since the last request to the URL's host.
    fn pace(&self, url: &str) {
        let host = host(url).to_string();
        let wait = {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let at = last
                .get(&host)
                .map_or(now, |t| (*t + self.opts.min_interval).max(now));
            last.insert(host, at);
            at - now
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.opts.backoff.saturating_mul(1 << attempt.min(10));
        base.mul_f64(0.8 + 0.4 * fastrand::f64())
    }

    /// GETs `url` (from the cache when fresh there). `provider` and `what` name the request
    /// in errors. Bodies larger than `limit` bytes are refused. The answer is cached only
    /// when `keep(body)` accepts it.
    pub(crate) fn get(
        &self,
        provider: &str,
        what: &str,
        url: &str,
        limit: u64,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<Fetched> {
        if let Some(body) = self.cache.as_ref().and_then(|c| c.get(url)) {
            if keep(&body) {
                tracing::debug!(url, "metadata cache hit");
                return Ok(Fetched::Body(body));
            }
        }
        let err = |reason: String| provider_error(provider, what, reason);
        let mut attempt = 0u32;
        loop {
            self.pace(url);
            self.requests.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(url, attempt, "metadata request");
            let failure = match self.agent.get(url).call() {
                Ok(resp) => {
                    let mut body = Vec::new();
                    match resp.into_reader().take(limit + 1).read_to_end(&mut body) {
                        Ok(_) if body.len() as u64 > limit => {
                            return Err(err(format!(
                                "the answer is larger than {limit} bytes; that is not a \
                                 metadata answer ({url})"
                            )))
                        }
                        Ok(_) => {
                            if keep(&body) {
                                if let Some(c) = &self.cache {
                                    c.put(url, &body);
                                }
                            }
                            return Ok(Fetched::Body(body));
                        }
                        Err(e) => format!("the answer broke off: {e}"),
                    }
                }
                Err(ureq::Error::Status(404 | 410, _)) => return Ok(Fetched::NotFound),
                Err(ureq::Error::Status(429, resp)) => {
                    let wait = retry_after(resp.header("Retry-After"))
                        .unwrap_or_else(|| self.backoff(attempt));
                    if wait > self.opts.max_retry_after {
                        return Err(err(format!(
                            "rate limited (HTTP 429): the server asks to wait {} s; try again \
                             later",
                            wait.as_secs()
                        )));
                    }
                    if attempt >= self.opts.retries {
                        return Err(err(format!(
                            "rate limited (HTTP 429) {} times in a row; try again later",
                            attempt + 1
                        )));
                    }
                    tracing::info!(url, wait_secs = wait.as_secs_f64(), "rate limited; waiting");
                    std::thread::sleep(wait);
                    attempt += 1;
                    continue;
                }
                Err(ureq::Error::Status(code, _)) if code >= 500 || code == 408 => {
                    format!("the server answered HTTP {code}")
                }
                Err(ureq::Error::Status(code, resp)) => {
                    let text = resp.into_string().unwrap_or_default();
                    let text: String = text.chars().take(200).collect();
                    return Err(err(format!(
                        "the server refused the request (HTTP {code}: {}); check the ASIN, \
                         region and query",
                        text.trim()
                    )));
                }
                Err(ureq::Error::Transport(t)) => {
                    // ureq's Display repeats the URL; the kind, message and cause are enough.
                    let mut s = t.kind().to_string();
                    if let Some(m) = t.message() {
                        s.push_str(": ");
                        s.push_str(m);
                    }
                    if let Some(src) = std::error::Error::source(&t) {
                        s.push_str(": ");
                        s.push_str(&src.to_string());
                    }
                    let timed_out = std::error::Error::source(&t)
                        .and_then(|e| e.downcast_ref::<std::io::Error>())
                        .is_some_and(|e| {
                            matches!(
                                e.kind(),
                                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                            )
                        })
                        || s.to_ascii_lowercase().contains("timed out");
                    if timed_out {
                        format!(
                            "no answer from {} within {} s ({s})",
                            host(url),
                            self.opts.timeout.as_secs_f64()
                        )
                    } else {
                        format!("cannot reach {} ({s})", host(url))
                    }
                }
            };
            if attempt >= self.opts.retries {
                return Err(err(format!(
                    "{failure}, after {} attempt(s); check the network connection or try again \
                     later (everything else in aiom4b works offline)",
                    attempt + 1
                )));
            }
            let wait = self.backoff(attempt);
            tracing::info!(%failure, wait_secs = wait.as_secs_f64(), "retrying");
            std::thread::sleep(wait);
            attempt += 1;
        }
    }

    /// GETs `url` as bytes of at most `limit` (a cover image), cached when `keep` accepts
    /// them. 404 is an error saying so.
    pub fn get_bytes(
        &self,
        provider: &str,
        what: &str,
        url: &str,
        limit: u64,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<u8>> {
        match self.get(provider, what, url, limit, keep)? {
            Fetched::Body(b) => Ok(b),
            Fetched::NotFound => Err(provider_error(
                provider,
                what,
                format!("{url} is not there (HTTP 404)"),
            )),
        }
    }

    /// GETs `url` as JSON of type `T` (cached when it parses); `None` for 404.
    pub(crate) fn get_json<T: DeserializeOwned>(
        &self,
        provider: &str,
        what: &str,
        url: &str,
    ) -> Result<Option<T>> {
        let parses = |b: &[u8]| serde_json::from_slice::<T>(b).is_ok();
        match self.get(provider, what, url, 16 << 20, parses)? {
            Fetched::NotFound => Ok(None),
            Fetched::Body(b) => serde_json::from_slice::<T>(&b).map(Some).map_err(|e| {
                provider_error(
                    provider,
                    what,
                    format!(
                        "the answer is not the JSON expected ({e}); the service may have \
                         changed or be failing: try again later, and report it if it stays"
                    ),
                )
            }),
        }
    }
}

/// The host (and port) of a URL.
fn host(url: &str) -> &str {
    url.split_once("://")
        .map_or(url, |(_, r)| r)
        .split('/')
        .next()
        .unwrap_or_default()
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(v: Option<&str>) -> Option<Duration> {
    let v = v?.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after(Some(" 3 ")), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(Some("soon")), None);
        assert_eq!(retry_after(None), None);
    }
}
