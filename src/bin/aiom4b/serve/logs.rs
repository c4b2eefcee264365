//! `GET /jobs/{id}/log`: a job's own log lines (captured by `crate::joblog` into the store),
//! read in pages: `?after=SEQ&limit=N`, oldest first; `next` continues after the last line.
use super::api::{blocking, get_job, parse_id, ApiError, ApiResult, ErrorBody, Shared};
use aiom4b::workflow::jobs::JobLogLine;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

/// Lines in one answer unless `limit` says otherwise, and at most.
const DEFAULT_LIMIT: usize = 200;
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Only lines after this `seq` (0: from the start).
    #[serde(default)]
    #[param(minimum = 0)]
    after: i64,
    /// Lines at most (default 200).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogPage {
    #[schema(value_type = Vec<LogLine>)]
    lines: Vec<JobLogLine>,
    /// Pass as `after` to get the lines written since.
    next: i64,
}

/// One log line of the job (the library's `JobLogLine`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct LogLine {
    /// Increasing within the job.
    seq: i64,
    job_id: uuid::Uuid,
    time: chrono::DateTime<chrono::Utc>,
    /// ERROR, WARN or INFO.
    level: String,
    target: String,
    message: String,
    #[schema(value_type = Object)]
    fields: serde_json::Value,
}

#[utoipa::path(get, path = "/jobs/{id}/log", tag = "jobs", summary = "the job's log lines, oldest first (?after=SEQ continues)",
    params(("id" = String, Path, description = "a job id (UUID)"), LogQuery),
    responses((status = 200, description = "lines", body = LogPage), (status = 400, description = "error", body = ErrorBody), (status = 404, description = "error", body = ErrorBody), (status = 500, description = "error", body = ErrorBody)))]
pub async fn job_log(
    State(s): State<Shared>,
    Path(id): Path<String>,
    q: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<LogPage>> {
    let Query(q) = q.map_err(|e| {
        ApiError::bad_request(e.body_text(), "use ?after=SEQ&limit=N (N at most 1000)")
    })?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if q.after < 0 || limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(
            format!("after={} limit={limit} is out of range", q.after),
            "use after >= 0 and 1 <= limit <= 1000",
        ));
    }
    let id = parse_id(&id)?;
    blocking(move || {
        get_job(&s.wf, id)?;
        let lines = s.wf.store().job_log(id, q.after, limit)?;
        let next = lines.last().map_or(q.after, |l| l.seq);
        Ok(Json(LogPage { lines, next }))
    })
    .await
}
