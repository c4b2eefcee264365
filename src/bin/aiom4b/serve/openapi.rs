//! `GET /api/v1/openapi.json` (OpenAPI 3.1) and `GET /docs`, a page that lists it.
//!
//! The document is derived from the code: every handler carries a `#[utoipa::path]`
//! annotation, the request and response types derive `ToSchema`, and the router of `/api/v1`
//! is built with utoipa-axum's `OpenApiRouter::routes(routes!(…))` (see `super::api_router`),
//! which registers a handler with axum and its operation in the document in one step: a route
//! cannot be served without being documented. Library types that carry no schema derive (the
//! library does not depend on an OpenAPI crate: the plan, backup and verify reports) appear as
//! free-form objects. schemathesis (`.ci/run`) checks that the server keeps to the document.
use super::api::{ErrorBody, JobView};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "aiom4b",
        description = "Convert MP3 audiobook folders under SOURCE_DIR into M4B: jobs, live progress, downloads, backups. \
                       Errors are `{\"error\":{\"code\",\"message\",\"remedy\"}}`."
    ),
    servers((url = "/api/v1")),
    // A bearer token when the service has one; none on a loopback bind without a token.
    security(("bearer" = []), ()),
    components(schemas(ErrorBody))
)]
pub struct ApiDoc;

/// What every operation shares: the bearer scheme, and the two errors any route can answer
/// (no valid token: 401; the per-request timeout or a busy store: 503). Applied to the
/// finished document (after the router has added the paths), see [`finish`].
struct Common;

/// The document of the router's operations, completed with what they all share.
pub fn finish(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    Common.modify(&mut doc);
    doc
}

impl Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let error = |desc: &str| -> RefOr<utoipa::openapi::Response> {
            ResponseBuilder::new()
                .description(desc)
                .content(
                    "application/json",
                    utoipa::openapi::content::ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .into()
        };
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.delete,
                &mut item.put,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let r = &mut op.responses.responses;
                r.entry("401".into())
                    .or_insert_with(|| error("no valid bearer token"));
                r.entry("503".into())
                    .or_insert_with(|| error("timed out, or the store is busy (Retry-After)"));
            }
        }
    }
}

/// The document as served, made once when the router is built.
#[derive(Clone)]
pub struct Document(pub Arc<utoipa::openapi::OpenApi>);

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    summary = "this document",
    responses((status = 200, description = "the OpenAPI document", body = Object))
)]
pub async fn document(Extension(doc): Extension<Document>) -> Response {
    axum::Json(&*doc.0).into_response()
}

/// A plain page that lists the operations (no script, no CDN: it works offline).
pub async fn docs(Extension(doc): Extension<Document>) -> Html<String> {
    let mut rows = String::new();
    for (path, item) in &doc.0.paths.paths {
        for (method, op) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("DELETE", &item.delete),
        ] {
            if let Some(op) = op {
                rows.push_str(&format!(
                    "<tr><td><code>{method}</code></td><td><code>/api/v1{}</code></td><td>{}</td></tr>\n",
                    html_escape(path),
                    html_escape(op.summary.as_deref().unwrap_or(""))
                ));
            }
        }
    }
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>aiom4b API</title>\
         <style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td{{padding:.2em .6em}}</style>\
         <h1>aiom4b API</h1><p>The machine-readable description: \
         <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>. Errors are \
         <code>{{\"error\":{{\"code\",\"message\",\"remedy\"}}}}</code>.</p>\
         <table>{rows}</table>"
    ))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

// ---------------------------------------------------------------------------------------------
// Schemas of bodies that the handlers build as JSON values (documentation only).

/// A job's state.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum JobStatusName {
    Pending,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum PresetName {
    Default,
    Speech,
    Source,
}

/// `auto` copies the parts' AAC when every part allows it (AAC-LC in MP4 at the output's rate
/// and channels, no bitrate or preset asked for) and encodes otherwise; `copy` fails the request's
/// job instead of encoding; `encode` always encodes.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum AudioModeName {
    Auto,
    Copy,
    Encode,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ChapterTitlesName {
    Auto,
    Tags,
    Filenames,
}

/// `GET /jobs`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JobsPage {
    jobs: Vec<JobView>,
    total: u64,
    page: u64,
    per_page: u64,
}

/// `POST /convert`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CreatedJobs {
    jobs: Vec<JobView>,
}

/// `POST /jobs/{id}/retry`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Retried {
    job: JobView,
    retry_of: uuid::Uuid,
}

/// `POST /jobs/clear`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Cleared {
    archived: u64,
    older_than: String,
}

/// A book folder under SOURCE_DIR.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FolderView {
    /// Relative to SOURCE_DIR.
    path: String,
    mp3_count: u64,
    size_bytes: u64,
    /// Disc sub-folders holding MP3s.
    disc_folders: u64,
    last_modified: Option<chrono::DateTime<chrono::Local>>,
    /// The newest job of this folder.
    job: Option<JobView>,
}

/// `GET /folders`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Folders {
    folders: Vec<FolderView>,
}

/// `GET /health`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Health {
    status: String,
    version: String,
}

/// `GET /jobs/{id}/verify`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VerifyReport {
    ok: bool,
    problems: Vec<String>,
    #[schema(value_type = Object)]
    summary: serde_json::Value,
}

/// `GET /backups`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Backups {
    #[schema(value_type = Vec<Object>)]
    backups: Vec<serde_json::Value>,
}

/// Bytes of a file (an image, the book).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct Binary(Vec<u8>);
