//! The web page of `aiom4b serve`: three static files compiled into the binary (`index.html`,
//! `app.css`, `app.js`: plain HTML, CSS and ES-module JavaScript, no build step), the login
//! form that turns the service's bearer token into a cookie, and the cookie's CSRF check.
//!
//! ```text
//!  request ─▶ cookie_auth (cookie → Authorization, CSRF + Origin checks on mutations)
//!     ├─ /, /assets/*, /login, /logout, /session, /thumb/* ─▶ this module (the page shell needs no token)
//!     └─ everything else ─▶ the API router (its own token check, audit, limits)
//! ```
//!
//! The page reads and writes only through `/api/v1` (JSON and Server-Sent Events), so it can
//! do nothing the API does not allow. Assets are served with an `ETag` (BLAKE3 of the bytes)
//! and `Cache-Control: no-cache`: a browser revalidates with one 304 and never runs a stale
//! script after an upgrade. Every response of this module carries a Content-Security-Policy
//! that allows scripts and styles from this origin only: no inline script, no inline style.
use crate::serve::api::Shared;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::OnceLock;
use subtle::ConstantTimeEq;

/// The cookie holding the bearer token (HttpOnly: scripts never see it).
const TOKEN_COOKIE: &str = "aiom4b_token";
/// The double-submit CSRF cookie: readable by the page's script, which echoes it in
/// [`CSRF_HEADER`]; another site can neither read it nor set the header.
const CSRF_COOKIE: &str = "aiom4b_csrf";
const CSRF_HEADER: &str = "x-csrf-token";
/// How long a login lasts.
const COOKIE_MAX_AGE_SECS: u64 = 30 * 24 * 3600;

/// Scripts, styles, images and connections from this origin only; images also as `data:`
/// (none used today, but a cover preview of an upload would be one); no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("assets/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("assets/app.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("assets/icon.svg"),
    },
];
const INDEX: &[u8] = include_bytes!("assets/index.html");
/// Shown for a book without a cover, so the page never asks for an image that is missing
/// (a 404 would be a failed request in the browser's console).
const NO_COVER: &[u8] = include_bytes!("assets/no-cover.svg");

/// The ETag of some bytes, computed once per asset.
fn etag(bytes: &'static [u8]) -> HeaderValue {
    static TAGS: OnceLock<std::sync::Mutex<Vec<(usize, HeaderValue)>>> = OnceLock::new();
    let tags = TAGS.get_or_init(Default::default);
    let mut tags = tags.lock().unwrap_or_else(|p| p.into_inner());
    let key = bytes.as_ptr() as usize;
    if let Some((_, v)) = tags.iter().find(|(k, _)| *k == key) {
        return v.clone();
    }
    let v = HeaderValue::from_str(&format!("\"{}\"", &blake3::hash(bytes).to_hex()[..16]))
        .expect("hex is a header value");
    tags.push((key, v.clone()));
    v
}

fn secure_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: with it Chromium sends `Origin: null` on the login form's POST,
    // which the same-origin check must refuse.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// A static file with its ETag; 304 when the browser has it.
fn static_file(headers: &HeaderMap, content_type: &'static str, bytes: &'static [u8]) -> Response {
    let tag = etag(bytes);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == tag.as_bytes());
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
    };
    r.headers_mut().insert(header::ETAG, tag);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure_headers(&mut r);
    r
}

async fn index(headers: HeaderMap) -> Response {
    static_file(&headers, "text/html; charset=utf-8", INDEX)
}

/// Browsers ask for it on pages without an icon link (an error page of the API, say).
async fn favicon(headers: HeaderMap) -> Response {
    static_file(&headers, "image/svg+xml", include_bytes!("assets/icon.svg"))
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => static_file(&headers, a.content_type, a.bytes),
        None => error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such file on this page.",
            "Go back to the library.",
        ),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A small HTML page for errors a browser navigates to (an unknown path, a traversal attempt,
/// a failed login): what happened and what to do, with the page's stylesheet, no script.
pub fn error_page(status: StatusCode, title: &str, message: &str, remedy: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{t} · aiom4b</title><link rel=\"stylesheet\" href=\"/assets/app.css\">\
         <link rel=\"icon\" href=\"/assets/icon.svg\"></head>\
         <body><main class=\"error-page\" id=\"error-page\"><h1>{t}</h1><p>{m}</p>\
         <p class=\"remedy\">{r}</p><p><a href=\"/\">Open the library</a></p></main></body></html>",
        t = escape(title),
        m = escape(message),
        r = escape(remedy)
    );
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure_headers(&mut r);
    r
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The request comes from this origin, as far as the browser tells: `Sec-Fetch-Site` is
/// `same-origin`/`none` or absent, and `Origin`, when sent, names the `Host` it was sent to.
/// Non-browser clients send neither and pass; they need the token anyway.
fn same_origin(headers: &HeaderMap) -> bool {
    let site_ok = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| matches!(v, "same-origin" | "none"));
    let origin_ok = match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (None, _) => true,
        (Some(o), Some(h)) => o
            .split_once("://")
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(h)),
        (Some(_), None) => false,
    };
    site_ok && origin_ok
}

fn forbidden(message: &str) -> Response {
    crate::serve::api::ApiError::forbidden(
        "csrf",
        message.to_owned(),
        "reload the page and try again; requests from other sites are refused",
    )
    .into_response()
}

/// Outermost layer. A mutating request from another site is refused (that holds without a
/// token too: a loopback service is open to the machine's user, not to every web page that
/// user visits). A request with the login cookie and no `Authorization` header gets the
/// cookie's token as its bearer token, for a mutation only when its `X-CSRF-Token` header
/// equals the CSRF cookie.
pub async fn cookie_auth(mut req: Request, next: Next) -> Response {
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if mutating && !same_origin(req.headers()) {
        return forbidden("a request from another site");
    }
    if req.headers().get(header::AUTHORIZATION).is_none() {
        if let Some(token) = cookie(req.headers(), TOKEN_COOKIE) {
            if mutating && req.uri().path() != "/logout" {
                let want = cookie(req.headers(), CSRF_COOKIE).unwrap_or_default();
                let given = req
                    .headers()
                    .get(CSRF_HEADER)
                    .map(|v| v.as_bytes().to_vec())
                    .unwrap_or_default();
                if want.is_empty() || !bool::from(want.as_bytes().ct_eq(&given)) {
                    return forbidden("the CSRF token is missing or wrong");
                }
            }
            if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
                req.headers_mut().insert(header::AUTHORIZATION, v);
            }
        }
    }
    next.run(req).await
}

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    // Without /dev/urandom the CSRF token is still unguessable enough from fastrand's seed
    // mixed with the time; with it (always on Linux) this line changes nothing.
    let salt = fastrand::u128(..)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
    bytes
        .iter()
        .zip(salt.to_le_bytes())
        .map(|(a, b)| format!("{:02x}", a ^ b))
        .collect()
}

fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_str(to).expect("ascii"));
    r
}

fn set_cookies(r: &mut Response, token: &str, csrf: &str, max_age: u64) {
    for c in [
        format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"),
        format!("{CSRF_COOKIE}={csrf}; Path=/; SameSite=Strict; Max-Age={max_age}"),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

/// `POST /login` (a form: `token=…`): a right token becomes the login cookie, then back to
/// the page; a wrong one goes back to the form with a message. No JavaScript needed.
async fn login(State(s): State<Shared>, body: String) -> Response {
    let given = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| percent_decode(v))
        .unwrap_or_default();
    let given = given.trim();
    let ok = match &s.token {
        Some(t) => bool::from(given.as_bytes().ct_eq(t.as_bytes())),
        // Without a token there is nothing to log in to; the page is open.
        None => true,
    };
    if !ok {
        tracing::warn!(target: "aiom4b::audit", action = "web.login", result = "refused", "login with a wrong token");
        return see_other("/?login=failed#/login");
    }
    tracing::info!(target: "aiom4b::audit", action = "web.login", result = "ok", "login");
    let mut r = see_other("/");
    if s.token.is_some() {
        set_cookies(&mut r, given, &random_hex(), COOKIE_MAX_AGE_SECS);
    } else {
        set_cookies(&mut r, "", &random_hex(), COOKIE_MAX_AGE_SECS);
    }
    r
}

async fn logout() -> Response {
    let mut r = see_other("/#/login");
    set_cookies(&mut r, "", "", 0);
    r
}

/// `GET /session`: whether the service wants a token and whether this request has a valid
/// one (from the login cookie, put in by [`cookie_auth`]). The page asks this first, so a
/// visitor who must log in sees the form without a refused request in the browser's console.
async fn session(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let authorized = match &s.token {
        None => true,
        Some(t) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|g| bool::from(g.trim().as_bytes().ct_eq(t.as_bytes()))),
    };
    let mut r = axum::Json(serde_json::json!({
        "token_required": s.token.is_some(),
        "authorized": authorized,
    }))
    .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn percent_decode(s: &str) -> String {
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let pair = (b[i] == b'%')
            .then(|| Some((hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?)))
            .flatten();
        match (b[i], pair) {
            (_, Some((hi, lo))) => {
                out.push(hi << 4 | lo);
                i += 2;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /thumb/{path}`: the folder's cover through the API (same token, same confinement),
/// or a neutral placeholder when it has none.
async fn thumb(State(api): State<Router>, Path(path): Path<String>, req: Request) -> Response {
    use tower_service::Service as _;
    let enc = encode_segment(&path);
    let mut inner = Request::new(Body::empty());
    *inner.headers_mut() = req.headers().clone();
    *inner.uri_mut() = match format!("/api/v1/folders/{enc}/cover").parse() {
        Ok(u) => u,
        Err(_) => return placeholder(),
    };
    // No extensions: the outer router's path parameters would confuse the inner one's.
    let mut api = api;
    let r = match api.call(inner).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    if r.status() == StatusCode::NOT_FOUND || r.status() == StatusCode::UNPROCESSABLE_ENTITY {
        return placeholder();
    }
    r
}

fn placeholder() -> Response {
    let mut r = ([(header::CONTENT_TYPE, "image/svg+xml")], NO_COVER).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The API's answer to a browser navigating to something that is neither the page nor an API
/// route (`/etc/passwd`, `/assets/%2e%2e/...` that the router decoded): an HTML error page
/// instead of the API's JSON.
async fn fallback(State(api): State<Router>, req: Request) -> Response {
    use tower_service::Service as _;
    let path = req.uri().path().to_owned();
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let mut api = api;
    let r = match api.call(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let api_path = path.starts_with("/api/") || path == "/docs" || path == "/metrics";
    if wants_html && !api_path && r.status() == StatusCode::NOT_FOUND {
        return error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "This address is not part of aiom4b's page, and files are never served by their \
             path.",
            "Open the library and pick a book from the list.",
        );
    }
    r
}

/// The page's routes in front of the API router `api`, and the cookie layer around both.
pub fn with_page(api: Router, state: Shared) -> Router {
    let page = Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{*name}", get(asset))
        .route("/favicon.ico", get(favicon))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/session", get(session))
        .with_state(state);
    let api_routes = Router::new()
        .route("/thumb/{path}", get(thumb))
        .fallback(fallback)
        .with_state(api);
    page.merge(api_routes)
        .layer(axum::middleware::from_fn(cookie_auth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_checks() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h));
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8000"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8000"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn form_values_decode() {
        assert_eq!(percent_decode("a%2Fb+c%zz"), "a/b c%zz");
        assert_eq!(encode_segment("A/B c"), "A%2FB%20c");
    }
}
