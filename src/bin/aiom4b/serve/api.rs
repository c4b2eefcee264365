//! The handlers of `/api/v1`, the one error type they return ([`ApiError`], rendered as
//! `{"error":{"code","message","remedy"}}`), and the JSON views of jobs.
//!
//! Blocking work (the store, scanning and planning folders, verifying a file, backups) runs on
//! tokio's blocking pool, never on the threads that serve connections.
use super::confine::SourceRoot;
use super::events::EventHub;
use super::queue::{self, Cancelled, Queue, ServiceRequest};
use aiom4b::workflow::jobs::JobFailure;
use aiom4b::workflow::{BookEngine, Job, JobFilter, JobStatus, Workflow};
use aiom4b::BookMetadata;
use aiom4b::{ChapterTitles, PlanOptions, Preset, ScanOptions, TargetSpec};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// How long an `Idempotency-Key` is remembered.
const IDEMPOTENCY_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Folders in one `POST /convert`.
const MAX_FOLDERS_PER_REQUEST: usize = 100;

pub struct AppState {
    pub wf: Arc<Workflow>,
    pub root: SourceRoot,
    pub queue: Arc<Queue>,
    pub hub: Arc<EventHub>,
    pub token: Option<String>,
    pub prometheus: metrics_exporter_prometheus::PrometheusHandle,
    /// Folder plans, kept while their folders do not change.
    pub plans: super::plan_cache::PlanCache,
    /// Held by a `POST /convert` with an `Idempotency-Key` from looking the key up to
    /// recording it, so that two requests with one key cannot both create jobs. The keys
    /// themselves are in the job store (they survive a restart).
    pub idempotency: tokio::sync::Mutex<()>,
    /// Audible/Audnexus for `/match` and `/jobs/{id}/tag`.
    pub metadata: super::matching::MetadataState,
}

pub type Shared = Arc<AppState>;

// ---------------------------------------------------------------------------------------------
// Errors

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub remedy: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            remedy: remedy.into(),
            retry_after: None,
        }
    }
    pub fn forbidden(code: &'static str, message: String, remedy: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message, remedy)
    }
    pub fn not_found(code: &'static str, message: String, remedy: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message, remedy)
    }
    pub fn bad_request(message: impl Into<String>, remedy: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message, remedy)
    }
    pub fn conflict(message: impl Into<String>, remedy: &str) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message, remedy)
    }
    fn job_not_found(id: &str) -> Self {
        Self::not_found(
            "job_not_found",
            format!("no job {id}"),
            "list the jobs with GET /api/v1/jobs",
        )
    }
}

/// Every error's body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable (`job_not_found`, `queue_full`, …).
    pub code: String,
    pub message: String,
    /// What to do next.
    pub remedy: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
                remedy: self.remedy,
            },
        };
        let mut r = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        r
    }
}

impl From<aiom4b::workflow::Error> for ApiError {
    fn from(e: aiom4b::workflow::Error) -> Self {
        use aiom4b::workflow::Error as E;
        let (status, code) = match &e {
            E::JobNotFound(_) => (StatusCode::NOT_FOUND, "job_not_found"),
            E::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            E::SourceMissing(_) => (StatusCode::NOT_FOUND, "folder_not_found"),
            _ if e.category() == aiom4b::workflow::ErrorCategory::Input => {
                (StatusCode::UNPROCESSABLE_ENTITY, "input_error")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string(), e.remedy())
    }
}

impl From<aiom4b::workflow::jobs::StoreError> for ApiError {
    fn from(e: aiom4b::workflow::jobs::StoreError) -> Self {
        let status = if e.is_transient() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        let mut err = ApiError::new(status, "store_error", e.to_string(), e.remedy());
        if e.is_transient() {
            err.retry_after = Some(1);
        }
        err
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<aiom4b::workflow::Error>() {
            Ok(e) => e.into(),
            Err(e) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("{e:#}"),
                "see the service's log",
            ),
        }
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// A body the extractor refused: too large (413), not JSON (415), malformed (400/422).
pub(super) fn rejected(status: StatusCode, message: String, remedy: &str) -> ApiError {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "not_json",
        _ => "bad_request",
    };
    ApiError::new(status, code, message, remedy)
}

/// Runs blocking work off the connection threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("a worker task failed: {e}"),
            "see the service's log",
        )
    })?
}

// ---------------------------------------------------------------------------------------------
// Views

/// How a job's audio was made ([`aiom4b::AudioUsed`]).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = AudioUsed)]
pub struct AudioView {
    /// The parts' AAC packets were copied; only the joins between parts were re-encoded.
    pub copied: bool,
    /// The copy's facts, or why the audio was encoded.
    pub why: String,
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Job)]
pub struct JobView {
    pub id: Uuid,
    #[schema(value_type = super::openapi::JobStatusName)]
    pub status: JobStatus,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub progress_percent: f64,
    #[schema(value_type = Vec<String>)]
    pub source_folders: Vec<std::path::PathBuf>,
    pub output_name: Option<String>,
    pub input_bytes: Option<u64>,
    pub output_bytes: Option<u64>,
    pub audio_duration_secs: Option<f64>,
    /// How the audio was made, once the conversion succeeded: the parts' AAC copied (only the
    /// joins re-encoded) or encoded, and why.
    pub audio: Option<AudioView>,
    pub attempts: u32,
    /// Why the job failed: category, message, remedy.
    #[schema(value_type = Option<Object>)]
    pub error: Option<JobFailure>,
    /// `/api/v1/download/{id}` once the book is written (the first part of a split book).
    pub download_url: Option<String>,
    /// A book written in parts (`split_at`): each part's file name and download URL, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartView>,
    /// The instance (`host:pid:start`) that runs or ran the job; none while it waits.
    pub instance_id: Option<String>,
}

impl From<&Job> for JobView {
    fn from(j: &Job) -> Self {
        let done = j.status == JobStatus::Completed && j.output_path.is_some();
        JobView {
            id: j.id,
            status: j.status,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            progress_percent: j.progress_percent,
            source_folders: j.source_folders.clone(),
            output_name: j
                .output_path
                .as_ref()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned()),
            input_bytes: j.input_bytes,
            output_bytes: j.output_bytes,
            audio_duration_secs: j.audio_duration_secs,
            audio: j.audio.as_ref().map(|a| AudioView {
                copied: a.copied,
                why: a.why.clone(),
            }),
            attempts: j.attempts,
            error: j.error.clone(),
            download_url: done.then(|| format!("/api/v1/download/{}", j.id)),
            parts: j
                .output_parts
                .iter()
                .enumerate()
                .filter(|_| done)
                .map(|(k, p)| PartView {
                    name: p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    download_url: format!("/api/v1/download/{}?part={}", j.id, k + 1),
                })
                .collect(),
            instance_id: j.owner.as_ref().map(|o| o.instance_id()),
        }
    }
}

/// One part of a book written in parts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartView {
    /// The part's file name.
    pub name: String,
    /// `/api/v1/download/{id}?part=k`.
    pub download_url: String,
}

/// `split_at` of a request: `None`, or a limit a book can be cut by (400 otherwise).
fn split_at(v: Option<&str>) -> ApiResult<Option<aiom4b::SplitAt>> {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let limit = aiom4b::SplitAt::parse(v).map_err(|e| {
        ApiError::bad_request(
            format!("split_at: {e}"),
            "give a duration such as \"20h\" or a size such as \"4GB\"",
        )
    })?;
    limit.validate().map_err(|e| {
        ApiError::bad_request(
            format!("split_at: {e}"),
            "give a duration of at least 1 s or a size of at least 64 KiB",
        )
    })?;
    Ok(Some(limit))
}

/// The file of part `part` (1-based) of a completed job, or its only output when `part` is
/// `None`; `None` when there is no such file on record.
pub(super) fn job_output(job: &Job, part: Option<usize>) -> Option<std::path::PathBuf> {
    if job.status != JobStatus::Completed {
        return None;
    }
    match part {
        None => job.output_path.clone(),
        Some(k) => k
            .checked_sub(1)
            .and_then(|i| job.output_parts.get(i))
            .cloned(),
    }
}

pub(super) fn parse_id(id: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| ApiError::job_not_found(id))
}

pub(super) fn get_job(wf: &Workflow, id: Uuid) -> ApiResult<Job> {
    wf.store()
        .get(id)?
        .ok_or_else(|| ApiError::job_not_found(&id.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Service

#[utoipa::path(get, path = "/health", tag = "service", summary = "liveness (no token needed)", security(()),
    responses((status = 200, description = "alive", body = super::openapi::Health)))]
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "version": crate::version_line() }))
}

/// Ready when the store answers and its folder takes a write, the disk has room, and an AAC
/// encoder is compiled in.
#[utoipa::path(get, path = "/ready", tag = "service", summary = "readiness: store writable, disk space, encoder (no token needed)", security(()),
    responses((status = 200, description = "ready", body = Object), (status = 503, description = "not ready", body = Object)))]
pub async fn ready(State(s): State<Shared>) -> Response {
    let r = blocking(move || {
        let data = s.wf.config().data_dir.clone();
        let store = s.wf.store().stats().map(|_| ()).map_err(|e| e.to_string());
        let probe = data.join(format!(".ready-{}", std::process::id()));
        let writable = std::fs::write(&probe, b"ok")
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| e.to_string());
        let free = free_bytes(&data);
        let disk_ok = free.is_some_and(|b| b >= MIN_FREE_BYTES);
        let encoder = !aiom4b::COMPILED_ENCODERS.is_empty();
        let ok = store.is_ok() && writable.is_ok() && disk_ok && encoder;
        Ok((
            ok,
            json!({
                "ready": ok,
                "store": store.err().unwrap_or_else(|| "ok".into()),
                "data_dir_writable": writable.err().unwrap_or_else(|| "ok".into()),
                "free_bytes": free,
                "min_free_bytes": MIN_FREE_BYTES,
                "encoder": aiom4b::COMPILED_ENCODERS,
            }),
        ))
    })
    .await;
    match r {
        Ok((true, body)) => (StatusCode::OK, Json(body)).into_response(),
        Ok((false, body)) => (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Below this much free space in DATA_DIR the service is not ready.
const MIN_FREE_BYTES: u64 = 512 << 20;

fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

#[utoipa::path(get, path = "/stats", tag = "service", summary = "success rate, times, sizes, realtime factor",
    responses((status = 200, description = "stats", body = Object), (status = 500, description = "error", body = ErrorBody)))]
pub async fn stats(State(s): State<Shared>) -> ApiResult<Json<serde_json::Value>> {
    let st = blocking(move || Ok(s.wf.store().stats()?)).await?;
    Ok(Json(json!(st)))
}

// ---------------------------------------------------------------------------------------------
// Folders

#[utoipa::path(get, path = "/folders", tag = "folders", summary = "book folders under SOURCE_DIR",
    responses((status = 200, description = "folders", body = super::openapi::Folders), (status = 500, description = "error", body = ErrorBody)))]
pub async fn folders(State(s): State<Shared>) -> ApiResult<Json<serde_json::Value>> {
    blocking(move || {
        let books = aiom4b::workflow::folders::discover_books(s.root.path())?;
        let mut out = Vec::with_capacity(books.len());
        for b in books {
            let canonical = std::fs::canonicalize(&b.path).unwrap_or(b.path.clone());
            // Symlinked book folders that lead outside are not listed.
            if !canonical.starts_with(s.root.path()) {
                continue;
            }
            let job =
                s.wf.store()
                    .list(&JobFilter {
                        source_folder: Some(canonical.clone()),
                        limit: Some(1),
                        ..Default::default()
                    })?
                    .into_iter()
                    .next();
            out.push(json!({
                "path": b.name,
                "mp3_count": b.mp3_count,
                "size_bytes": b.total_bytes,
                "disc_folders": b.disc_folders,
                "last_modified": b.last_modified,
                "job": job.as_ref().map(JobView::from),
            }));
        }
        Ok(Json(json!({ "folders": out })))
    })
    .await
}

fn plan_options(s: &AppState, o: &ConvertOptionsIn, meta: BookMetadata) -> ApiResult<PlanOptions> {
    let cfg = s.wf.config();
    let mut p = PlanOptions::default();
    p.chapter_titles = match o.chapter_titles.as_deref() {
        None | Some("auto") => ChapterTitles::Auto,
        Some("tags") => ChapterTitles::Tags,
        Some("filenames") => ChapterTitles::Filenames,
        Some(x) => {
            return Err(ApiError::bad_request(
                format!("unknown chapter_titles {x:?}"),
                "use auto, tags or filenames",
            ))
        }
    };
    p.overrides = meta;
    p.data_dir = Some(cfg.data_dir.clone());
    let mut t = TargetSpec::default();
    t.preset = match o.preset.as_deref() {
        None | Some("default") => Preset::Default,
        Some("speech") => Preset::Speech,
        Some("source") => Preset::Source,
        Some(x) => {
            return Err(ApiError::bad_request(
                format!("unknown preset {x:?}"),
                "use default, speech or source",
            ))
        }
    };
    t.sample_rate = o.sample_rate;
    t.channels = o.channels;
    t.bitrate_bps = o.bitrate;
    p.target = t;
    p.allow_damaged = o.allow_damaged;
    Ok(p)
}

fn scan_options(s: &AppState) -> ScanOptions {
    let mut o = ScanOptions::default();
    o.exclude = s.wf.config().protected_dirs();
    o.inputs = s.wf.config().allowed_inputs;
    o
}

/// The folder's plan with the default options, from the cache while the folder is unchanged.
pub(super) fn plan_folder(
    s: &AppState,
    folder: std::path::PathBuf,
) -> ApiResult<Arc<aiom4b::Book>> {
    let opts = plan_options(s, &ConvertOptionsIn::default(), BookMetadata::default())?;
    let scan = scan_options(s);
    let limits = s.wf.config().limits();
    s.plans
        .plan(&folder, &scan, || {
            aiom4b::plan::plan(std::slice::from_ref(&folder), &scan, &limits, &opts)
                .map_err(|e| e.to_string())
        })
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "cannot_plan",
                e.as_str(),
                "check the folder's files; `aiom4b probe` shows the details",
            )
        })
}

#[utoipa::path(get, path = "/folders/{path}/plan", tag = "folders", summary = "the conversion plan of a folder (path URL-encoded as one segment)",
    params(("path" = String, Path, description = "a book folder relative to SOURCE_DIR, URL-encoded as one segment (`Author%2FBook`)")),
    responses((status = 200, description = "the plan: order, chapters, metadata, cover, findings, output name", body = Object), (status = 400, description = "error", body = ErrorBody), (status = 403, description = "error", body = ErrorBody), (status = 404, description = "error", body = ErrorBody), (status = 422, description = "error", body = ErrorBody), (status = 500, description = "error", body = ErrorBody)))]
pub async fn plan(
    State(s): State<Shared>,
    Path(path): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let folder = s.root.resolve(&path)?;
    blocking(move || {
        let book = plan_folder(&s, folder)?;
        Ok(Json(json!(&*book)))
    })
    .await
}

#[utoipa::path(get, path = "/folders/{path}/cover", tag = "folders", summary = "the folder's cover image",
    params(("path" = String, Path, description = "a book folder relative to SOURCE_DIR, URL-encoded as one segment (`Author%2FBook`)")),
    responses((status = 200, description = "the image", content((super::openapi::Binary = "image/jpeg"), (super::openapi::Binary = "image/png"))), (status = 400, description = "error", body = ErrorBody), (status = 403, description = "error", body = ErrorBody), (status = 404, description = "error", body = ErrorBody), (status = 422, description = "error", body = ErrorBody), (status = 500, description = "error", body = ErrorBody)))]
pub async fn cover(State(s): State<Shared>, Path(path): Path<String>) -> ApiResult<Response> {
    let folder = s.root.resolve(&path)?;
    blocking(move || {
        let book = plan_folder(&s, folder)?;
        let Some(cover) = &book.cover else {
            return Err(ApiError::not_found(
                "no_cover",
                format!("{path:?} has no cover"),
                "put a cover.jpg in the folder or embed one in the MP3s",
            ));
        };
        let mut r = cover.picture.data.clone().into_response();
        if let Ok(v) = HeaderValue::from_str(&cover.picture.mime) {
            r.headers_mut().insert("content-type", v);
        }
        Ok(r)
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Convert

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvertOptionsIn {
    #[schema(value_type = Option<super::openapi::PresetName>)]
    preset: Option<String>,
    bitrate: Option<u64>,
    sample_rate: Option<u32>,
    channels: Option<u16>,
    #[schema(value_type = Option<super::openapi::ChapterTitlesName>)]
    chapter_titles: Option<String>,
    #[serde(default)]
    allow_damaged: bool,
    /// Publish the book as parts (cut at chapter boundaries, no second encode) when it is
    /// longer or larger than this: a duration (`20h`, `11h30m`) or a size (`4GB`, `3.9GiB`).
    #[schema(example = "20h")]
    split_at: Option<String>,
    /// Copy the parts' AAC instead of re-encoding it (default `auto`; a `bitrate` or a
    /// `preset` other than `default` asks for encoding).
    #[schema(value_type = Option<super::openapi::AudioModeName>)]
    audio: Option<String>,
}

/// The request's audio mode: `auto` unless it says otherwise; a bitrate or preset asks for a
/// format, so `auto` encodes then (as the CLI does) and `copy` is refused.
fn audio_mode(o: &ConvertOptionsIn) -> Result<aiom4b::AudioMode, ApiError> {
    let mode = match o.audio.as_deref() {
        None => aiom4b::AudioMode::Auto,
        Some(a) => aiom4b::AudioMode::parse(a).map_err(|e| {
            ApiError::bad_request(
                format!("options.audio: {e}"),
                "send \"auto\", \"copy\" or \"encode\"",
            )
        })?,
    };
    let format_asked = o.bitrate.is_some() || o.preset.as_deref().is_some_and(|p| p != "default");
    Ok(match mode {
        aiom4b::AudioMode::Copy if format_asked => {
            return Err(ApiError::bad_request(
                "options.audio is \"copy\", which keeps the parts' own AAC, but a bitrate or preset asks for re-encoding",
                "drop bitrate and preset to copy, or send audio \"encode\"",
            ))
        }
        aiom4b::AudioMode::Auto if format_asked => aiom4b::AudioMode::Encode,
        m => m,
    })
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FolderIn {
    /// One folder, relative to SOURCE_DIR …
    path: Option<String>,
    /// … or several folders that make one book, in order.
    paths: Option<Vec<String>>,
    output_name: Option<String>,
    /// Tags to set (title, author, narrator, …), over what the files say.
    #[serde(default)]
    #[schema(value_type = Object)]
    metadata: BookMetadata,
    #[serde(default)]
    options: ConvertOptionsIn,
    /// The files in this order (paths relative to the folder, as the plan's `rel_path`):
    /// what a person set when reviewing the plan (the web page). Empty: the natural order.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    order: Vec<std::path::PathBuf>,
    /// Chapter titles in the final order; an empty string keeps the planned title.
    #[serde(default)]
    chapters: Vec<String>,
    /// A folder image, an upload, or no cover; absent: the plan's choice (serve/covers.rs).
    #[serde(default)]
    cover: Option<super::covers::CoverChoice>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvertIn {
    #[schema(min_items = 1, max_items = 100)]
    folders: Vec<FolderIn>,
}

#[utoipa::path(post, path = "/convert", tag = "jobs", summary = "create one pending job per entry",
    params(("Idempotency-Key" = Option<String>, Header, description = "the same key and body within 24 h (also across a restart) returns the first request's jobs (200); the same key with another body is 422 idempotency_key_reused")),
    request_body = ConvertIn,
    responses(
        (status = 201, description = "created", body = super::openapi::CreatedJobs),
        (status = 200, description = "the jobs of an earlier request with the same Idempotency-Key", body = super::openapi::CreatedJobs),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 400, description = "error", body = ErrorBody), (status = 403, description = "error", body = ErrorBody), (status = 404, description = "error", body = ErrorBody), (status = 415, description = "error", body = ErrorBody), (status = 422, description = "error", body = ErrorBody), (status = 429, description = "error", body = ErrorBody), (status = 500, description = "error", body = ErrorBody)))]
pub async fn convert(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Result<Json<ConvertIn>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body.map_err(|e| {
        rejected(
            e.status(),
            e.body_text(),
            "send {\"folders\": [{\"path\": \"Author/Book\"}]}",
        )
    })?;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Held until the key is recorded (see AppState::idempotency).
    let _one_at_a_time = match &key {
        Some(_) => Some(s.idempotency.lock().await),
        None => None,
    };
    let keyed = match key {
        None => None,
        Some(k) => {
            if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_LEN {
                return Err(ApiError::bad_request(
                    format!("an Idempotency-Key has 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"),
                    "send a UUID as the key",
                ));
            }
            // Who (a token's id, never the token) and what: the same key from another
            // caller is another key; from the same caller with another body, an error.
            let caller = match &s.token {
                Some(_) => headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(|t| format!("token:{}", super::layers::token_id(t.trim())))
                    .unwrap_or_else(|| "anonymous".into()),
                None => "anonymous".into(),
            };
            let hash = blake3::hash(&serde_json::to_vec(&body).expect("a request serializes"))
                .to_hex()
                .to_string();
            let (s2, k2, c2) = (s.clone(), k.clone(), caller.clone());
            let since = chrono::Utc::now() - IDEMPOTENCY_TTL;
            let earlier =
                blocking(move || Ok(s2.wf.store().find_idempotency_key(&k2, &c2, since)?)).await?;
            if let Some(earlier) = earlier {
                if earlier.body_hash != hash {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "idempotency_key_reused",
                        format!(
                            "Idempotency-Key {k:?} was used at {} for a different request",
                            earlier.created_at
                        ),
                        "use a new key for a new request; resend the same body to get its jobs",
                    ));
                }
                let s2 = s.clone();
                let jobs = blocking(move || {
                    let mut jobs = Vec::new();
                    for id in earlier.job_ids {
                        // A job deleted since is no longer shown.
                        if let Some(j) = s2.wf.store().get(id)? {
                            jobs.push(JobView::from(&j));
                        }
                    }
                    Ok(jobs)
                })
                .await?;
                return Ok((StatusCode::OK, Json(json!({ "jobs": jobs }))).into_response());
            }
            Some((k, caller, hash))
        }
    };
    if body.folders.is_empty() || body.folders.len() > MAX_FOLDERS_PER_REQUEST {
        return Err(ApiError::bad_request(
            format!(
                "{} folders; between 1 and {MAX_FOLDERS_PER_REQUEST} per request",
                body.folders.len()
            ),
            "send one entry per book",
        ));
    }
    // Everything is checked before any job exists: one bad folder refuses the whole request.
    let mut requests = Vec::new();
    for f in &body.folders {
        let rels: Vec<&String> = match (&f.path, &f.paths) {
            (Some(p), None) => vec![p],
            (None, Some(ps)) if !ps.is_empty() => ps.iter().collect(),
            _ => {
                return Err(ApiError::bad_request(
                    "each entry needs `path` or a non-empty `paths`, not both",
                    "send {\"path\": \"Author/Book\"}",
                ))
            }
        };
        let mut folders = Vec::new();
        for r in rels {
            folders.push(s.root.resolve(r)?);
        }
        let mut plan = plan_options(&s, &f.options, f.metadata.clone())?;
        plan.track_order = f.order.clone();
        plan.chapter_title_overrides = f.chapters.clone();
        if let Some(c) = &f.cover {
            super::covers::apply(&s, &folders[0], c, &mut plan)?;
        }
        let engine = BookEngine::new(scan_options(&s), s.wf.config().limits(), plan, {
            let mut c = aiom4b::ConvertOptions::default();
            c.allow_damaged = f.options.allow_damaged;
            c.split_at = split_at(f.options.split_at.as_deref())?;
            c.audio = audio_mode(&f.options)?;
            c
        });
        let output_name = f
            .output_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        if let Some(n) = output_name {
            if n.contains('/') || n.contains('\0') {
                return Err(ApiError::bad_request(
                    "output_name is a file name, not a path",
                    "give a name such as \"Author - Title\"",
                ));
            }
        }
        let service = ServiceRequest {
            output_name: output_name.map(str::to_owned),
        };
        let request = queue::job_request(
            &s.wf,
            folders,
            &queue::job_options(&engine, &service),
            &service,
        );
        s.wf.preflight(&request)?;
        requests.push(request);
    }
    let s2 = s.clone();
    let jobs = blocking(move || {
        // The store counts the queue (it may be shared with other instances): off the runtime.
        if !s2.queue.has_room(requests.len()) {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                format!(
                    "the queue holds its maximum of {} pending jobs",
                    s2.queue.max_pending
                ),
                "wait for running jobs to finish and send the request again",
            );
            e.retry_after = Some(30);
            return Err(e);
        }
        let mut jobs = Vec::new();
        for r in requests {
            jobs.push(JobView::from(&s2.queue.submit(r)?));
        }
        Ok(jobs)
    })
    .await?;
    if let Some((key, caller, body_hash)) = keyed {
        let now = chrono::Utc::now();
        let record = aiom4b::workflow::IdempotencyRecord {
            key,
            caller,
            body_hash,
            job_ids: jobs.iter().map(|j| j.id).collect(),
            created_at: now,
        };
        let s2 = s.clone();
        blocking(move || {
            Ok(s2
                .wf
                .store()
                .record_idempotency_key(&record, now - IDEMPOTENCY_TTL)?)
        })
        .await?;
    }
    Ok((StatusCode::CREATED, Json(json!({ "jobs": jobs }))).into_response())
}

// ---------------------------------------------------------------------------------------------
// Jobs

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    #[param(value_type = Option<super::openapi::JobStatusName>)]
    status: Option<String>,
    text: Option<String>,
    created_after: Option<chrono::DateTime<chrono::Utc>>,
    created_before: Option<chrono::DateTime<chrono::Utc>>,
    #[param(minimum = 1)]
    page: Option<usize>,
    #[param(minimum = 1, maximum = 500)]
    per_page: Option<usize>,
}

#[utoipa::path(get, path = "/jobs", tag = "jobs", summary = "jobs, newest first",
    params(JobsQuery),
    responses((status = 200, description = "a page of jobs", body = super::openapi::JobsPage), (status = 400, description = "error", body = ErrorBody), (status = 500, description = "error", body = ErrorBody)))]
pub async fn list_jobs(
    State(s): State<Shared>,
    q: Result<Query<JobsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) =
        q.map_err(|e| ApiError::bad_request(e.body_text(), "see /api/v1/openapi.json"))?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(x) => Some(JobStatus::parse(x).ok_or_else(|| {
            ApiError::bad_request(
                format!("unknown status {x:?}"),
                "use pending, processing, completed, failed or cancelled",
            )
        })?),
    };
    let page = q.page.unwrap_or(1).max(1);
    let per_page = q.per_page.unwrap_or(50).clamp(1, 500);
    blocking(move || {
        let mut jobs = s.wf.store().list(&JobFilter {
            status,
            ..Default::default()
        })?;
        let text = q.text.as_deref().map(str::to_lowercase);
        jobs.retain(|j| {
            q.created_after.is_none_or(|t| j.created_at >= t)
                && q.created_before.is_none_or(|t| j.created_at < t)
                && text.as_deref().is_none_or(|t| {
                    j.source_folders
                        .iter()
                        .chain(j.output_path.iter())
                        .chain(j.output_parts.iter())
                        .any(|p| p.to_string_lossy().to_lowercase().contains(t))
                        || j.id.to_string().starts_with(t)
                })
        });
        let total = jobs.len();
        let items: Vec<JobView> = jobs
            .iter()
            .skip((page - 1).saturating_mul(per_page))
            .take(per_page)
            .map(JobView::from)
            .collect();
        Ok(Json(
            json!({ "jobs": items, "total": total, "page": page, "per_page": per_page }),
        ))
    })
    .await
}

#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs", summary = "one job",
    params(("id" = String, Path, description = "a job id (UUID)")),
    responses((status = 200, description = "the job", body = JobView), (status = 404, description = "error", body = ErrorBody), (status = 500, description = "error", body = ErrorBody)))]
pub async fn get_job_h(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let id = parse_id(&id)?;
    blocking(move || Ok(Json(JobView::from(&get_job(&s.wf, id)?)))).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    #[serde(default)]
    delete_output: bool,
}

#[utoipa::path(delete, path = "/jobs/{id}", tag = "jobs", summary = "delete a finished job's record (and with delete_output=true its file)",
    params(("id" = String, Path, description = "a job id (UUID)"), DeleteQuery),
    responses((status = 204, description = "deleted"), (status = 400, description = "error", body = ErrorBody), (status = 404, description = "error", body = ErrorBody), (status = 409, description = "error", body = ErrorBody), (status = 500, description = "error", body = ErrorBody)))]
pub async fn delete_job(
    State(s): State<Shared>,
    Path(id): Path<String>,
    q: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<StatusCode> {
    let Query(q) =
        q.map_err(|e| ApiError::bad_request(e.body_text(), "use ?delete_output=true"))?;
    let id = parse_id(&id)?;
    blocking(move || {
        let job = get_job(&s.wf, id)?;
        if !matches!(
            job.status,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        ) {
            return Err(ApiError::conflict(
                format!("job {id} is {}", job.status),
                "cancel it first (POST /api/v1/jobs/{id}/cancel)",
            ));
        }
        if q.delete_output {
            for out in job.output_path.iter().chain(&job.output_parts) {
                match std::fs::remove_file(out) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "delete_failed",
                            format!("{}: {e}", out.display()),
                            "check the output folder's permissions",
                        ))
                    }
                }
            }
        }
        s.wf.store().delete_finished(id)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

#[utoipa::path(post, path = "/jobs/{id}/cancel", tag = "jobs", summary = "cancel a pending or running job",
    params(("id" = String, Path, description = "a job id (UUID)")),
    responses((status = 200, description = "cancelled (it was pending)", body = JobView), (status = 202, description = "cancelling (it was running)", body = JobView), (status = 404, description = "error", body = ErrorBody), (status = 409, description = "error", body = ErrorBody), (status = 500, description = "error", body = ErrorBody)))]
pub async fn cancel_job(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    blocking(move || {
        let job = get_job(&s.wf, id)?;
        match s.queue.cancel(id)? {
            Cancelled::Pending(job) => Ok(Json(JobView::from(&*job)).into_response()),
            Cancelled::Running => Ok((
                StatusCode::ACCEPTED,
                Json(JobView::from(&get_job(&s.wf, id)?)),
            )
                .into_response()),
            Cancelled::NotActive => Err(ApiError::conflict(
                format!("job {id} is {} and not running in this service", job.status),
                "only pending or running jobs can be cancelled",
            )),
        }
    })
    .await
}

#[utoipa::path(post, path = "/jobs/{id}/retry", tag = "jobs", summary = "run a failed or cancelled job again, as a new job",
    params(("id" = String, Path, description = "a job id (UUID)")),
    responses((status = 201, description = "the new job", body = super::openapi::Retried), (status = 403, description = "error", body = ErrorBody), (status = 404, description = "error", body = ErrorBody), (status = 409, description = "error", body = ErrorBody), (status = 429, description = "error", body = ErrorBody), (status = 500, description = "error", body = ErrorBody)))]
pub async fn retry_job(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    blocking(move || {
        let job = get_job(&s.wf, id)?;
        if !matches!(job.status, JobStatus::Failed | JobStatus::Cancelled) {
            return Err(ApiError::conflict(
                format!("job {id} is {}", job.status),
                "only failed or cancelled jobs can be retried",
            ));
        }
        for f in &job.source_folders {
            s.root.recheck(f)?;
        }
        if !s.queue.has_room(1) {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                "the queue is full",
                "wait for running jobs to finish and retry again",
            );
            e.retry_after = Some(30);
            return Err(e);
        }
        let service: ServiceRequest = job
            .options
            .get("service")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let request = queue::job_request(&s.wf, job.source_folders.clone(), &job.options, &service);
        let new = s.queue.submit(request)?;
        Ok((
            StatusCode::CREATED,
            Json(json!({ "job": JobView::from(&new), "retry_of": id })),
        )
            .into_response())
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ClearQuery {
    /// An age such as 7d, 12h or 2w (default 7d).
    #[param(example = "7d")]
    older_than: Option<String>,
}

#[utoipa::path(post, path = "/jobs/clear", tag = "jobs", summary = "archive finished jobs older than an age",
    params(ClearQuery),
    responses((status = 200, description = "archived", body = super::openapi::Cleared), (status = 400, description = "error", body = ErrorBody), (status = 500, description = "error", body = ErrorBody)))]
pub async fn clear_jobs(
    State(s): State<Shared>,
    q: Result<Query<ClearQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text(), "use ?older_than=7d"))?;
    let text = q.older_than.unwrap_or_else(|| "7d".into());
    let age = aiom4b::workflow::config::parse_age(&text)
        .map_err(|e| ApiError::bad_request(e, "use an age such as 7d, 12h or 2w"))?;
    blocking(move || {
        let n =
            s.wf.store()
                .archive_finished(aiom4b::workflow::config::cutoff(chrono::Utc::now(), age))?;
        Ok(Json(json!({ "archived": n, "older_than": text })))
    })
    .await
}

#[utoipa::path(get, path = "/jobs/{id}/verify", tag = "jobs", summary = "the independent check of the job's output",
    params(("id" = String, Path, description = "a job id (UUID)"), super::download::PartQuery),
    responses((status = 200, description = "report", body = super::openapi::VerifyReport), (status = 400, description = "error", body = ErrorBody), (status = 404, description = "error", body = ErrorBody), (status = 409, description = "error", body = ErrorBody), (status = 422, description = "error", body = ErrorBody), (status = 500, description = "error", body = ErrorBody)))]
pub async fn verify_job(
    State(s): State<Shared>,
    Path(id): Path<String>,
    q: Result<Query<super::download::PartQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = q.map_err(|e| {
        ApiError::bad_request(
            e.body_text(),
            "give ?part=k with k from 1 (the job's parts)",
        )
    })?;
    let id = parse_id(&id)?;
    blocking(move || {
        let job = get_job(&s.wf, id)?;
        let out = match job_output(&job, q.part) {
            Some(p) if p.is_file() => p,
            _ => {
                return Err(ApiError::conflict(
                    format!("job {id} has no output to verify"),
                    "wait until the job is completed",
                ))
            }
        };
        let summary = aiom4b::verify::summarize(&out).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unreadable_output",
                e.to_string(),
                "convert the book again",
            )
        })?;
        let mut exp = aiom4b::verify::Expectations::new(summary.sample_rate, summary.channels);
        exp.cover = summary.cover.is_some();
        exp.profile = None;
        let mut problems = aiom4b::verify::check(&summary, &exp);
        if summary.major_brand != "M4B " {
            problems.push(format!("brand is {:?}", summary.major_brand));
        }
        Ok(Json(
            json!({ "ok": problems.is_empty(), "problems": problems, "summary": summary }),
        ))
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Backups

#[utoipa::path(get, path = "/backups", tag = "backups", summary = "backups",
    responses((status = 200, description = "backups", body = super::openapi::Backups), (status = 500, description = "error", body = ErrorBody)))]
pub async fn backups(State(s): State<Shared>) -> ApiResult<Json<serde_json::Value>> {
    blocking(move || Ok(Json(json!({ "backups": s.wf.backups().list()? })))).await
}

fn backup_name(name: &str) -> ApiResult<&str> {
    if name.is_empty() || name.contains(['/', '\\', '\0']) || name.starts_with('.') {
        return Err(ApiError::forbidden(
            "bad_backup_name",
            format!("{name:?} is not a backup name"),
            "use a name from GET /api/v1/backups",
        ));
    }
    Ok(name)
}

#[utoipa::path(post, path = "/backups/{name}/verify", tag = "backups", summary = "check a backup's checksums",
    params(("name" = String, Path, description = "a backup name from GET /backups")),
    responses((status = 200, description = "report", body = Object), (status = 400, description = "error", body = ErrorBody), (status = 403, description = "error", body = ErrorBody), (status = 404, description = "error", body = ErrorBody), (status = 422, description = "error", body = ErrorBody), (status = 500, description = "error", body = ErrorBody)))]
pub async fn verify_backup(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    backup_name(&name)?;
    blocking(move || Ok(Json(json!(s.wf.backups().verify(&name)?)))).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreIn {
    /// A new folder under SOURCE_DIR, relative; it must not exist.
    to: String,
}

#[utoipa::path(post, path = "/backups/{name}/restore", tag = "backups", summary = "restore a backup into a new folder under SOURCE_DIR",
    params(("name" = String, Path, description = "a backup name from GET /backups")),
    request_body = RestoreIn,
    responses((status = 201, description = "restored", body = Object), (status = 400, description = "error", body = ErrorBody), (status = 403, description = "error", body = ErrorBody), (status = 404, description = "error", body = ErrorBody), (status = 409, description = "error", body = ErrorBody), (status = 415, description = "error", body = ErrorBody), (status = 422, description = "error", body = ErrorBody), (status = 500, description = "error", body = ErrorBody)))]
pub async fn restore_backup(
    State(s): State<Shared>,
    Path(name): Path<String>,
    body: Result<Json<RestoreIn>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Response> {
    backup_name(&name)?;
    let Json(body) = body.map_err(|e| {
        rejected(
            e.status(),
            e.body_text(),
            "send {\"to\": \"Author/Book (restored)\"}",
        )
    })?;
    // The target's parent must be inside SOURCE_DIR; the target itself must be new.
    let rel = std::path::Path::new(&body.to);
    let leaf = rel.file_name().map(|n| n.to_string_lossy().into_owned());
    let parent_rel = rel
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = if parent_rel.is_empty() {
        s.root.path().to_path_buf()
    } else {
        s.root.resolve(&parent_rel)?
    };
    let Some(leaf) = leaf.filter(|l| l != "." && l != ".." && !body.to.contains('\0')) else {
        return Err(ApiError::forbidden(
            "path_outside_source",
            format!("{:?} is not a folder path", body.to),
            "give a new folder path relative to SOURCE_DIR",
        ));
    };
    if rel.is_absolute() || body.to.split('/').any(|c| c == ".." || c == ".") {
        return Err(ApiError::forbidden(
            "path_outside_source",
            format!("{:?} leaves SOURCE_DIR", body.to),
            "give a new folder path relative to SOURCE_DIR",
        ));
    }
    let target = parent.join(leaf);
    if std::fs::symlink_metadata(&target).is_ok() {
        return Err(ApiError::conflict(
            format!("{:?} exists", body.to),
            "restore to a new folder; nothing is ever overwritten",
        ));
    }
    blocking(move || {
        // The library restores into `dir/{the original folder's name}`; `to` names the folder
        // itself. So: restore into a fresh hidden folder beside the target, then rename the
        // result onto the target without replacing anything that appeared there meanwhile.
        let stage = parent.join(format!(".aiom4b-restore-{}", Uuid::new_v4()));
        std::fs::create_dir(&stage).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "restore_failed",
                format!("{}: {e}", stage.display()),
                "check SOURCE_DIR's permissions",
            )
        })?;
        let result =
            s.wf.backups()
                .restore(&name, Some(&stage), false)
                .map_err(ApiError::from)
                .and_then(|mut report| {
                    use rustix::fs::{renameat_with, RenameFlags, CWD};
                    renameat_with(CWD, &report.target, CWD, &target, RenameFlags::NOREPLACE)
                        .map_err(|e| {
                            if e == rustix::io::Errno::EXIST {
                                ApiError::conflict(
                                    format!("{} appeared meanwhile", target.display()),
                                    "restore to a new folder; nothing is ever overwritten",
                                )
                            } else {
                                ApiError::new(
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    "restore_failed",
                                    format!("{}: {e}", target.display()),
                                    "check SOURCE_DIR's permissions",
                                )
                            }
                        })?;
                    report.target = target;
                    Ok(report)
                });
        let _ = std::fs::remove_dir_all(&stage);
        Ok((StatusCode::CREATED, Json(json!(result?))).into_response())
    })
    .await
}
