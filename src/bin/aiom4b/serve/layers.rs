//! What every request goes through, outermost first: metrics (route, status, latency), the
//! audit line of every mutating request, the body size, the per-request timeout, and the
//! bearer token.
//!
//! The timeout bounds producing the response's head; a download or an event stream that has
//! started goes on as long as the client reads it.
use super::api::{ApiError, Shared};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The peer's address, put into every request by the connection loop.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

pub async fn metrics_layer(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let t = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("aiom4b_http_requests_total", &labels).increment(1);
    metrics::histogram!("aiom4b_http_request_duration_seconds", &labels[..2])
        .record(t.elapsed().as_secs_f64());
    resp
}

/// Refuses a body announced larger than its route allows at once, from its Content-Length,
/// instead of reading up to the limit first: [`super::MAX_BODY_BYTES`], or
/// [`super::covers::MAX_UPLOAD_BYTES`] for a cover upload. `DefaultBodyLimit` (and the upload
/// handler's own read limit) still bound a chunked body as it is read.
pub async fn body_size_layer(req: Request, next: Next) -> Response {
    let announced = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let upload = super::covers::is_upload(&req);
    let max = if upload {
        super::covers::MAX_UPLOAD_BYTES
    } else {
        super::MAX_BODY_BYTES
    };
    if announced.is_some_and(|n| n > max as u64) {
        let error = if upload {
            super::covers::too_large()
        } else {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is larger than {max} bytes"),
                "send fewer folders per request",
            )
        };
        return error.into_response();
    }
    next.run(req).await
}

/// A request that has produced no response after `limit` gets 503 (`--request-timeout-ms`).
/// Metadata requests are exempt (see `matching`): their work could not be stopped by the
/// timeout (a tag would go on writing after the client was told it failed), the HTTP client
/// bounds the network, and at most two run at once.
pub async fn timeout_layer(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    if is_metadata_route(req.uri().path()) {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!("the request took longer than {} ms", limit.as_millis()),
                "try again later",
            );
            e.retry_after = Some(1);
            e.into_response()
        }
    }
}

fn is_metadata_route(path: &str) -> bool {
    path == "/api/v1/match"
        || (path.starts_with("/api/v1/jobs/")
            && path.ends_with("/tag")
            && path.matches('/').count() == 5)
}

/// Health and readiness answer without a token (probes from Docker/Kubernetes).
fn is_open_route(path: &str) -> bool {
    matches!(path, "/api/v1/health" | "/api/v1/ready")
}

/// Who made the request, for the audit line: the token's id (a short hash, never the token)
/// or "anonymous", and the peer address.
#[derive(Debug, Clone)]
struct Who(String);

pub async fn auth_layer(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<Peer>()
        .map(|p| p.0.to_string())
        .unwrap_or_else(|| "unknown".into());
    let who = match &s.token {
        None => format!("anonymous@{peer}"),
        Some(token) => {
            let given = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            let ok = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(token.as_bytes())));
            if !ok && !is_open_route(req.uri().path()) {
                tracing::warn!(target: "aiom4b::audit", action = "http.auth", peer = %peer, path = %req.uri().path(), result = "refused", "request without a valid token");
                let mut r = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    if given.is_some() {
                        "the bearer token is wrong"
                    } else {
                        "a bearer token is required"
                    },
                    "send Authorization: Bearer <API_TOKEN>",
                )
                .into_response();
                r.headers_mut()
                    .insert("www-authenticate", "Bearer".parse().expect("ascii"));
                return r;
            }
            format!("token:{}@{peer}", token_id(token))
        }
    };
    // On the response too: the audit layer runs outside this one (so that it also sees the
    // requests refused before here: too large, timed out) and reads it there.
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(Who(who));
    resp
}

/// A short, stable id of a token for logs: the first 8 hex digits of its BLAKE3 hash (the
/// token itself never reaches a log).
pub fn token_id(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex()[..8].to_string()
}

/// One audit line per mutating request, whatever became of it: who (the token's id, or
/// `anonymous` without a configured token, or `unauthenticated` when refused before the token
/// was checked or for a wrong one; with the peer address), what (method and path), and the
/// result (status, and ok/refused/failed).
pub async fn audit_layer(req: Request, next: Next) -> Response {
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !mutating {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<Peer>()
        .map(|p| p.0.to_string())
        .unwrap_or_else(|| "unknown".into());
    let what = format!("{} {}", req.method(), req.uri().path());
    let resp = next.run(req).await;
    let who = resp
        .extensions()
        .get::<Who>()
        .map(|w| w.0.clone())
        .unwrap_or_else(|| format!("unauthenticated@{peer}"));
    let status = resp.status();
    let result = if status.is_server_error() {
        "failed"
    } else if status.is_client_error() {
        "refused"
    } else {
        "ok"
    };
    tracing::info!(
        target: "aiom4b::audit",
        action = "http.request",
        who = %who,
        what = %what,
        status = status.as_u16(),
        result,
        "api request"
    );
    resp
}
