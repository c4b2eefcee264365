//! Book metadata from Audible through the service: `GET /match` ranks Audible's candidates
//! for a source folder or a job's book, `POST /jobs/{id}/tag` writes one of them into the
//! job's book in place — the library's [`Providers`] and [`metadata::apply_book`], as
//! `aiom4b match` and `aiom4b tag` use them.
//!
//! Both ask the network (answers cached in DATA_DIR/cache/metadata) and a tag decodes the
//! book to fit Audible's chapters to its pauses, so they are exempt from the per-request
//! timeout (the HTTP client has its own timeouts; a tag is bounded by the book's length), and
//! at most [`MAX_METADATA_REQUESTS`] run at once: more are `429 busy` with `Retry-After`.
use super::api::{blocking, get_job, parse_id, plan_folder, ApiError, ApiResult, Shared};
use aiom4b::metadata::rank::{Candidate, LocalBook};
use aiom4b::metadata::{
    self, AppliedMetadata, ApplyOptions, BookMeta, MetadataProvider, Providers, Region, SearchQuery,
};
use aiom4b::workflow::jobs::JobLogLine;
use aiom4b::workflow::JobStatus;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Metadata requests (`/match`, `/jobs/{id}/tag`) served at once.
pub const MAX_METADATA_REQUESTS: usize = 2;

/// The service's providers and the bound on requests using them.
pub struct MetadataState {
    pub providers: Arc<Providers>,
    permits: Arc<tokio::sync::Semaphore>,
    /// Tags are written one at a time (two edits of one file must not interleave).
    tagging: Arc<tokio::sync::Mutex<()>>,
}

impl MetadataState {
    pub fn new(data_dir: &std::path::Path) -> Self {
        MetadataState {
            providers: Arc::new(Providers::new(data_dir)),
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_METADATA_REQUESTS)),
            tagging: Default::default(),
        }
    }

    fn permit(&self) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            busy(format!(
                "{MAX_METADATA_REQUESTS} metadata requests are already running"
            ))
        })
    }

    fn tag_permit(&self) -> ApiResult<tokio::sync::OwnedMutexGuard<()>> {
        self.tagging
            .clone()
            .try_lock_owned()
            .map_err(|_| busy("a book is being tagged".into()))
    }
}

fn busy(message: String) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "busy",
        message,
        "try again in a moment",
    );
    e.retry_after = Some(2);
    e
}

/// A provider that did not answer usefully: the service's upstream failed.
fn upstream(e: aiom4b::Error) -> ApiError {
    match e {
        // Both providers say "no such ASIN" for a 404 (src/metadata/audnexus.rs, audible.rs).
        aiom4b::Error::Metadata { ref reason, .. } if reason.contains("no such ASIN") => {
            ApiError::not_found(
                "asin_not_found",
                e.to_string(),
                "check the ASIN with GET /api/v1/match",
            )
        }
        aiom4b::Error::Metadata { .. } => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "metadata_unavailable",
            e.to_string(),
            "try again later; the service needs to reach Audible's catalog and Audnexus \
             (api.audible.*, api.audnex.us)",
        ),
        other => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "cannot_read_book",
            other.to_string(),
            "check the book with GET /api/v1/jobs/{id}/verify",
        ),
    }
}

fn region(r: Option<&str>) -> ApiResult<Region> {
    match r.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(Region::default()),
        Some(r) => r
            .parse()
            .map_err(|e: aiom4b::Error| ApiError::bad_request(e.to_string(), "give ?region=us")),
    }
}

/// The files a completed job wrote (its parts, or its one book), each still a regular file.
fn job_files(s: &Shared, id: uuid::Uuid) -> ApiResult<(aiom4b::workflow::jobs::Job, Vec<PathBuf>)> {
    let job = get_job(&s.wf, id)?;
    let files: Vec<PathBuf> = if job.output_parts.is_empty() {
        job.output_path.iter().cloned().collect()
    } else {
        job.output_parts.clone()
    };
    if job.status != JobStatus::Completed || files.is_empty() {
        return Err(ApiError::conflict(
            format!("job {id} has no book (it is {})", job.status),
            "wait until the job is completed",
        ));
    }
    if let Some(gone) = files.iter().find(|p| !p.is_file()) {
        return Err(ApiError::conflict(
            format!("job {id}'s book {} is no longer there", gone.display()),
            "convert the folder again",
        ));
    }
    Ok((job, files))
}

/// `GET /match`'s query: one of `folder` and `job`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MatchQuery {
    /// A book folder relative to SOURCE_DIR (`Author/Book`): matched by its plan (tags,
    /// folder name, exact length).
    pub folder: Option<String>,
    /// A completed job (UUID): matched by its book's tags and exact length.
    pub job: Option<String>,
    /// Search for these words instead of the book's title.
    pub query: Option<String>,
    /// Search for this author instead of the book's.
    pub author: Option<String>,
    /// Audible marketplace: us (default), uk, de, fr, ca, au, in, it, es, jp.
    pub region: Option<String>,
    /// At most this many candidates (1–50, default 10).
    #[param(minimum = 1, maximum = 50)]
    pub limit: Option<u16>,
}

/// `GET /match`: the book's own facts and the ranked candidates.
#[derive(Debug, Serialize, ToSchema)]
pub struct MatchView {
    /// What the book says about itself (title, author, narrator, exact duration).
    #[schema(value_type = Object)]
    local: LocalBook,
    #[schema(value_type = String)]
    region: Region,
    /// The catalog searched.
    provider: String,
    /// Best first; `score` 0–1 with its `parts`, `book` the provider's description.
    #[schema(value_type = Vec<Object>)]
    candidates: Vec<Candidate>,
}

#[utoipa::path(get, path = "/match", tag = "metadata", summary = "Audible's candidates for a folder or a job's book, ranked",
    params(MatchQuery),
    responses((status = 200, description = "candidates, best first", body = MatchView),
        (status = 400, description = "error", body = super::api::ErrorBody), (status = 403, description = "error", body = super::api::ErrorBody),
        (status = 404, description = "error", body = super::api::ErrorBody), (status = 409, description = "error", body = super::api::ErrorBody),
        (status = 422, description = "error", body = super::api::ErrorBody), (status = 429, description = "error", body = super::api::ErrorBody),
        (status = 500, description = "error", body = super::api::ErrorBody), (status = 502, description = "a provider failed", body = super::api::ErrorBody)))]
pub async fn find(
    State(s): State<Shared>,
    q: Result<Query<MatchQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<MatchView>> {
    let Query(q) =
        q.map_err(|e| ApiError::bad_request(e.body_text(), "give ?folder=Author/Book or ?job=ID"))?;
    let region = region(q.region.as_deref())?;
    let limit = q.limit.unwrap_or(10);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::bad_request(
            format!("limit {limit} is not 1–50"),
            "give ?limit=10",
        ));
    }
    let folder = match (&q.folder, &q.job) {
        (Some(f), None) => Some(s.root.resolve(f)?),
        (None, Some(_)) => None,
        _ => {
            return Err(ApiError::bad_request(
                "give one of folder and job",
                "?folder=Author/Book (before converting) or ?job=ID (a completed job's book)",
            ))
        }
    };
    let job = q.job.as_deref().map(parse_id).transpose()?;
    let _permit = s.metadata.permit()?;
    blocking(move || {
        let mut local = match (folder, job) {
            (Some(folder), _) => LocalBook::from_book(&*plan_folder(&s, folder)?),
            (None, Some(id)) => {
                let (_, files) = job_files(&s, id)?;
                // A book in parts: the first part's tags, the parts' lengths added up.
                let mut local = None::<LocalBook>;
                for f in &files {
                    let sum = aiom4b::verify::summarize(f).map_err(upstream)?;
                    let one = LocalBook::from_summary(&sum);
                    local = Some(match local {
                        None => one,
                        Some(mut l) => {
                            l.duration_secs = Some(
                                l.duration_secs.unwrap_or(0.0) + one.duration_secs.unwrap_or(0.0),
                            );
                            l
                        }
                    });
                }
                local.expect("a completed job has a file")
            }
            (None, None) => unreachable!("checked above"),
        };
        let keywords = q.query.clone().filter(|k| !k.trim().is_empty());
        let author = q.author.clone().filter(|a| !a.trim().is_empty());
        let query = SearchQuery {
            title: if keywords.is_some() {
                None
            } else {
                local.title.clone()
            },
            author: author.clone().or_else(|| local.author.clone()),
            keywords: keywords.clone(),
            limit: limit as usize,
        };
        if query.title.is_none() && query.keywords.is_none() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_title",
                "the book has no title to search for",
                "give ?query=title words",
            ));
        }
        if local.title.is_none() {
            local.title = keywords;
        }
        if author.is_some() {
            local.author = author;
        }
        let providers = s.metadata.providers.clone();
        let candidates = providers.search(&local, &query, region).map_err(upstream)?;
        Ok(Json(MatchView {
            local,
            region,
            provider: providers.audible().name().into(),
            candidates,
        }))
    })
    .await
}

/// `POST /jobs/{id}/tag`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagIn {
    /// The Audible product id, e.g. `B002UZMLXM` (from `GET /match`).
    #[schema(min_length = 10, max_length = 10)]
    asin: String,
    /// Audible marketplace: us (default), uk, de, fr, ca, au, in, it, es, jp.
    #[serde(default)]
    region: Option<String>,
    /// Write Audible's cover (default true).
    #[serde(default)]
    cover: Option<bool>,
    /// Write Audible's chapters fitted to this audio (default true; a book in parts keeps
    /// its chapters).
    #[serde(default)]
    chapters: Option<bool>,
    /// Report what would change; write nothing.
    #[serde(default)]
    dry_run: bool,
}

/// What a tag did to one file.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaggedFile {
    /// The file's name.
    name: String,
    /// One line per change (`title: "…" → "…"`).
    changes: Vec<String>,
    /// Audible's cover was written.
    cover: bool,
    /// Audible's chapters as fitted to this audio (each mark's move and confidence), when
    /// written.
    #[schema(value_type = Option<Object>)]
    chapter_fit: Option<aiom4b::metadata::fit::ChapterFit>,
    /// What could not be applied.
    warnings: Vec<String>,
}

/// `POST /jobs/{id}/tag`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagView {
    asin: String,
    #[schema(value_type = String)]
    region: Region,
    dry_run: bool,
    /// The book as Audnexus describes it.
    #[schema(value_type = Object)]
    book: BookMeta,
    /// Each file of the job's book (one, or its parts in order).
    files: Vec<TaggedFile>,
    /// What could not be had from the providers (cover, chapter list).
    warnings: Vec<String>,
}

#[utoipa::path(post, path = "/jobs/{id}/tag", tag = "metadata", summary = "write a book's Audible metadata, cover and fitted chapters into the job's M4B",
    params(("id" = String, Path, description = "a completed job (UUID)")),
    request_body = TagIn,
    responses((status = 200, description = "what changed in each file", body = TagView),
        (status = 400, description = "error", body = super::api::ErrorBody), (status = 404, description = "error", body = super::api::ErrorBody),
        (status = 409, description = "error", body = super::api::ErrorBody), (status = 413, description = "error", body = super::api::ErrorBody),
        (status = 415, description = "error", body = super::api::ErrorBody), (status = 422, description = "error", body = super::api::ErrorBody),
        (status = 429, description = "error", body = super::api::ErrorBody), (status = 500, description = "error", body = super::api::ErrorBody),
        (status = 502, description = "a provider failed", body = super::api::ErrorBody)))]
pub async fn tag(
    State(s): State<Shared>,
    Path(id): Path<String>,
    body: Result<Json<TagIn>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<TagView>> {
    let Json(body) = body.map_err(|e| {
        super::api::rejected(e.status(), e.body_text(), "send {\"asin\": \"B002UZMLXM\"}")
    })?;
    let id = parse_id(&id)?;
    let asin = metadata::normalize_asin(&body.asin)
        .map_err(|e| ApiError::bad_request(e.to_string(), "give the 10-character ASIN"))?;
    let region = region(body.region.as_deref())?;
    let _one_tag = s.metadata.tag_permit()?;
    let _permit = s.metadata.permit()?;
    blocking(move || {
        let (mut job, files) = job_files(&s, id)?;
        let in_parts = files.len() > 1;
        let want_chapters = body.chapters.unwrap_or(true);
        let providers = s.metadata.providers.clone();
        let (resolved, mut warnings) = providers
            .resolve_asin(
                &asin,
                region,
                want_chapters && !in_parts,
                body.cover.unwrap_or(true),
            )
            .map_err(upstream)?;
        if in_parts && want_chapters {
            warnings.push(
                "the book is in parts: each part keeps its chapters (Audible's list is of the \
                 whole book)"
                    .into(),
            );
        }
        let opts = ApplyOptions {
            dry_run: body.dry_run,
            ..ApplyOptions::default()
        };
        let tags = metadata::tag_edits(&resolved.book);
        let mut out = Vec::new();
        for f in &files {
            let (applied, _) =
                metadata::apply_book(f, &resolved, tags.clone(), &opts).map_err(|e| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "cannot_tag",
                        e.to_string(),
                        "the file was left as it was; check it with GET /api/v1/jobs/{id}/verify",
                    )
                })?;
            let mut one = tagged(f, applied);
            // The parts of a book share one folder and its sidecars: rewritten once, after
            // the last part.
            if !body.dry_run && f == files.last().expect("a completed job has a file") {
                aiom4b::workflow::library::refresh_sidecars_noted(
                    f,
                    &mut one.changes,
                    &mut one.warnings,
                );
            }
            out.push(one);
        }
        if !body.dry_run {
            record(&s, &mut job, &files, &asin, &out);
        }
        Ok(Json(TagView {
            asin,
            region,
            dry_run: body.dry_run,
            book: resolved.book,
            files: out,
            warnings,
        }))
    })
    .await
}

fn tagged(f: &std::path::Path, a: AppliedMetadata) -> TaggedFile {
    TaggedFile {
        name: f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        changes: a.changes,
        cover: a.cover,
        chapter_fit: a.chapter_fit,
        warnings: a.warnings,
    }
}

/// The job's record after a tag: the book's new size, and a line in its log. Best effort:
/// the files are already written, so a store that cannot record it is only logged.
fn record(
    s: &Shared,
    job: &mut aiom4b::workflow::jobs::Job,
    files: &[PathBuf],
    asin: &str,
    out: &[TaggedFile],
) {
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    job.output_bytes = Some(bytes);
    let store = s.wf.store();
    if let Err(e) = store.update(job, JobStatus::Completed) {
        tracing::warn!(job = %job.id, error = %e, "the tagged book's size was not recorded");
    }
    let changes: usize = out.iter().map(|f| f.changes.len()).sum();
    let line = JobLogLine {
        seq: 0,
        job_id: job.id,
        time: chrono::Utc::now(),
        level: "INFO".into(),
        target: "aiom4b::metadata".into(),
        message: format!("tagged from Audible {asin}: {changes} changes"),
        fields: Default::default(),
    };
    if let Err(e) = store.append_log(&[line]) {
        tracing::warn!(job = %job.id, error = %e, "the tag was not logged in the job's log");
    }
    tracing::info!(job = %job.id, asin, changes, "book tagged from Audible");
}
