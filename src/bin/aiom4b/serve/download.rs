//! `GET /download/{job_id}`: the M4B a completed job of this store wrote, streamed from disk
//! (never read into memory), with `Range` (one range), `ETag`/`If-None-Match`,
//! `Last-Modified` and a sanitized `Content-Disposition`. Only a path recorded as a job's
//! output is ever served, and only while it is a regular file in the output folder.
use super::api::{ApiError, Shared};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::os::unix::fs::MetadataExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Read size of the streamed body.
const CHUNK: usize = 64 * 1024;

/// `?part=k`: part k (from 1) of a book written in parts.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PartQuery {
    /// Part k (from 1) of a book written in parts (the job's `parts`); absent: the book, or
    /// its first part.
    #[param(minimum = 1)]
    pub part: Option<usize>,
}

#[utoipa::path(get, path = "/download/{id}", tag = "jobs", summary = "the M4B of a completed job (Range, ETag)",
    params(("id" = String, Path, description = "a job id (UUID)"), PartQuery),
    responses(
        (status = 200, description = "the book", body = super::openapi::Binary, content_type = "audio/mp4"),
        (status = 206, description = "a range of the book", body = super::openapi::Binary, content_type = "audio/mp4"),
        (status = 304, description = "not modified (If-None-Match)"),
        (status = 400, description = "error", body = super::api::ErrorBody),
        (status = 404, description = "error", body = super::api::ErrorBody),
        (status = 416, description = "error", body = super::api::ErrorBody),
        (status = 500, description = "error", body = super::api::ErrorBody)))]
pub async fn download(
    State(s): State<Shared>,
    Path(id): Path<String>,
    q: Result<Query<PartQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError::bad_request(
            e.body_text(),
            "give ?part=k with k from 1 (the job's parts)",
        )
    })?;
    let not_found = || {
        ApiError::not_found(
            "no_download",
            format!("job {id} has no book to download"),
            "wait until the job is completed (GET /api/v1/jobs/{id})",
        )
    };
    let uuid = uuid::Uuid::parse_str(&id).map_err(|_| not_found())?;
    let s2 = s.clone();
    let job = tokio::task::spawn_blocking(move || s2.wf.store().get(uuid))
        .await
        .map_err(|_| not_found())??
        .ok_or_else(not_found)?;
    let path = super::api::job_output(&job, q.part).ok_or_else(not_found)?;
    // Opened without following a final symlink: a file replaced by a link is not served.
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .await
        .map_err(|_| not_found())?;
    let meta = file.metadata().await.map_err(|_| not_found())?;
    if !meta.is_file() {
        return Err(not_found());
    }
    let len = meta.len();
    let mtime = meta.modified().ok();
    let etag = format!(
        "\"{:x}-{:x}-{:x}\"",
        meta.ino(),
        len,
        meta.mtime_nsec() ^ meta.mtime()
    );
    if headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok((StatusCode::NOT_MODIFIED, [("etag", etag)]).into_response());
    }
    let range = match headers.get("range").and_then(|v| v.to_str().ok()) {
        // A Range whose If-Range does not match is served whole.
        Some(r) if if_range_matches(&headers, &etag) => match parse_range(r, len) {
            Some(r) => Some(r),
            None => {
                let mut resp = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "bad_range",
                    format!("cannot serve {r:?} of {len} bytes"),
                    "ask for one range inside the file, e.g. bytes=0-1023",
                )
                .into_response();
                resp.headers_mut().insert(
                    "content-range",
                    HeaderValue::from_str(&format!("bytes */{len}")).expect("ascii"),
                );
                return Ok(resp);
            }
        },
        _ => None,
    };
    let (start, end) = range.unwrap_or((0, len.saturating_sub(1)));
    let count = if len == 0 { 0 } else { end - start + 1 };
    let mut file = file;
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|_| not_found())?;
    let reader = file.take(count);
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(reader, CHUNK));

    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "book.m4b".into());
    let mut resp = Response::new(body);
    *resp.status_mut() = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("audio/mp4"));
    h.insert("accept-ranges", HeaderValue::from_static("bytes"));
    h.insert("content-length", HeaderValue::from(count));
    h.insert("etag", HeaderValue::from_str(&etag).expect("ascii"));
    if let Some(t) = mtime {
        let t: chrono::DateTime<chrono::Utc> = t.into();
        let v = t.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        h.insert("last-modified", HeaderValue::from_str(&v).expect("ascii"));
    }
    h.insert(
        "content-disposition",
        HeaderValue::from_str(&content_disposition(&name)).expect("ascii"),
    );
    if range.is_some() {
        h.insert(
            "content-range",
            HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")).expect("ascii"),
        );
    }
    Ok(resp)
}

fn if_range_matches(headers: &HeaderMap, etag: &str) -> bool {
    match headers.get("if-range").and_then(|v| v.to_str().ok()) {
        None => true,
        Some(v) => v.trim() == etag,
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` of a file of `len` bytes: the inclusive range, or
/// `None` when it cannot be served (several ranges are not supported).
fn parse_range(header: &str, len: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            len - 1
        } else {
            b.parse::<u64>().ok()?.min(len - 1)
        };
        (start, end)
    };
    (start <= end && start < len).then_some((start, end))
}

/// An ASCII fallback name and the exact one in RFC 5987 form.
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
