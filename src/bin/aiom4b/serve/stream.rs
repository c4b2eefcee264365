//! `GET /jobs/{id}/events` and `GET /events`: the hub's records as Server-Sent Events.
//!
//! A client that reconnects sends `Last-Event-ID` and first gets the records after it that are
//! still kept, then the live ones. A job's stream ends after its `finished` event; for a job
//! that had already ended before the client came (and whose events left the ring), the stream
//! is that one `finished` event, made from the job's record.
//!
//! A browser's `EventSource` reconnects whenever a stream ends; per the HTML standard it stops
//! only on a response that is not 200 `text/event-stream`. So a reconnect to an ended job's
//! stream whose `Last-Event-ID` is at or after the job's `finished` event gets 204 No Content:
//! the client has everything.
use super::api::{ApiError, JobView, Shared};
use super::events::Record;
use aiom4b::workflow::JobStatus;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse as _;
use futures_util::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

fn last_event_id(headers: &HeaderMap) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn to_event(r: &Record) -> Event {
    Event::default()
        .id(r.seq.to_string())
        .event(r.name)
        .data(r.data.clone())
}

type EventStream = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;

fn records(
    s: &Shared,
    after: u64,
    job: Option<Uuid>,
) -> (
    Vec<Arc<Record>>,
    impl Stream<Item = Arc<Record>> + Send + 'static,
) {
    let (missed, rx) = s.hub.subscribe(after, job);
    let last = missed.last().map(|r| r.seq).unwrap_or(after);
    let live = stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(r) => return Some((r, rx)),
                // A slow client lost records; it goes on with the newest (a reconnect with
                // Last-Event-ID gets the rest from the ring).
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .filter(move |r| {
        let keep = r.seq > last && job.is_none_or(|j| r.job == j);
        async move { keep }
    });
    (missed, live)
}

#[utoipa::path(get, path = "/jobs/{id}/events", tag = "events", summary = "the job's events (SSE); Last-Event-ID resumes",
    params(("id" = String, Path, description = "a job id (UUID)"),
           ("Last-Event-ID" = Option<String>, Header, description = "the id of the last event seen")),
    responses(
        (status = 200, description = "Server-Sent Events until the job's `finished` event", body = String, content_type = "text/event-stream"),
        (status = 204, description = "the job has ended and `Last-Event-ID` is at or after its `finished` event: nothing more will come (an EventSource stops reconnecting)"),
        (status = 404, description = "error", body = super::api::ErrorBody),
        (status = 500, description = "error", body = super::api::ErrorBody)))]
pub async fn job_events(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    let not_found = || {
        ApiError::not_found(
            "job_not_found",
            format!("no job {id}"),
            "list the jobs with GET /api/v1/jobs",
        )
    };
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let after = last_event_id(&headers);
    let (missed, live) = records(&s, after, Some(uuid));
    let s2 = s.clone();
    let job = tokio::task::spawn_blocking(move || s2.wf.store().get(uuid))
        .await
        .map_err(|_| not_found())??
        .ok_or_else(not_found)?;
    let ended = matches!(
        job.status,
        JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
    );
    let seen_final = match s.hub.final_seq(uuid) {
        Some(f) => after >= f,
        // Ended elsewhere (an earlier process, the CLI): the client's id is from this process,
        // so it was sent the `finished` event made from the record. A job still on a worker
        // here is not done even if the store says so: its final event is about to come.
        None => s.hub.issued_here(after) && !s.queue.is_running(uuid),
    };
    if ended && after > 0 && seen_final {
        return Ok(axum::http::StatusCode::NO_CONTENT.into_response());
    }
    let stream: EventStream = if missed.iter().any(|r| r.is_final()) || ended {
        // Everything is known: what was missed, and the end.
        let mut items: Vec<Event> = missed
            .iter()
            .take_while(|r| !r.is_final())
            .map(|r| to_event(r))
            .collect();
        match missed.iter().find(|r| r.is_final()) {
            Some(f) => items.push(to_event(f)),
            None => {
                let data = serde_json::json!({
                    "job_id": uuid,
                    "event": "finished",
                    "data": { "job": JobView::from(&job), "warnings": [] },
                });
                items.push(
                    Event::default()
                        .id(s.hub.last_seq().max(after).to_string())
                        .event("finished")
                        .data(data.to_string()),
                );
            }
        }
        Box::pin(stream::iter(items.into_iter().map(Ok)))
    } else {
        let replay = stream::iter(missed);
        let all = Box::pin(replay.chain(live));
        // Ends right after the job's final record: the next poll returns None at once instead
        // of waiting for another record of this job (which never comes), so the client sees
        // the end instead of keep-alives.
        let until_final = stream::unfold((all, false), |(mut all, done)| async move {
            if done {
                return None;
            }
            let r = all.next().await?;
            let fin = r.is_final();
            Some((Ok(to_event(&r)), (all, fin)))
        });
        Box::pin(until_final)
    };
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

#[utoipa::path(get, path = "/events", tag = "events", summary = "all jobs' events (SSE); Last-Event-ID resumes",
    params(("Last-Event-ID" = Option<String>, Header, description = "the id of the last event seen")),
    responses((status = 200, description = "Server-Sent Events, never ending", body = String, content_type = "text/event-stream")))]
pub async fn all_events(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> impl axum::response::IntoResponse {
    let (missed, live) = records(&s, last_event_id(&headers), None);
    let stream: EventStream = Box::pin(stream::iter(missed).chain(live).map(|r| Ok(to_event(&r))));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
