//! `GET /jobs/{id}/log`: a job's own log lines (captured by `crate::joblog` into the store),
//! read in pages: `?after=SEQ&limit=N`, oldest first; `next` continues after the last line.
use super::api::{blocking, get_job, parse_id, ApiError, ApiResult, Shared};
use aiom4b::workflow::jobs::JobLogLine;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

/// Lines in one answer unless `limit` says otherwise, and at most.
const DEFAULT_LIMIT: usize = 200;
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Only lines after this `seq` (0: from the start).
    #[serde(default)]
    after: i64,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct LogPage {
    lines: Vec<JobLogLine>,
    /// Pass as `after` to get the lines written since.
    next: i64,
}

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
