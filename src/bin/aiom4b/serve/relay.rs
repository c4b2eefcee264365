//! Events of jobs that other processes run (`aiom4b worker` on this or other hosts, or the
//! CLI on the same DATA_DIR): those processes' events do not reach this one's hub, so a thread
//! reads the store once a second and publishes, for each such job, `progress` when its stored
//! progress moves and `finished` (made from the record) when it ends. The web page's bars and
//! a client's `GET /jobs/{id}/events` then work whichever host runs the job.
use super::api::JobView;
use super::events::EventHub;
use super::queue::Queue;
use aiom4b::workflow::{JobFilter, JobStatus, Workflow};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How often the store is read.
const EVERY: Duration = Duration::from_secs(1);

/// Starts the relay thread; it ends when the workflow is cancelled (the service stops).
pub fn start(wf: Arc<Workflow>, hub: Arc<EventHub>, queue: Arc<Queue>) {
    let spawned = std::thread::Builder::new()
        .name("aiom4b-relay".into())
        .spawn(move || {
            // The jobs followed, with the progress last published.
            let mut followed: HashMap<Uuid, f64> = HashMap::new();
            while !wf.is_cancelled() {
                if let Err(e) = tick(&wf, &hub, &queue, &mut followed) {
                    tracing::debug!(error = %e, "reading jobs for the event relay failed");
                }
                std::thread::sleep(EVERY);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "the event relay did not start: jobs run by other processes show no live progress");
    }
}

fn tick(
    wf: &Workflow,
    hub: &EventHub,
    queue: &Queue,
    followed: &mut HashMap<Uuid, f64>,
) -> anyhow::Result<()> {
    let mut active = HashMap::new();
    for status in [JobStatus::Pending, JobStatus::Processing] {
        for job in wf.store().list(&JobFilter {
            status: Some(status),
            limit: Some(1000),
            ..Default::default()
        })? {
            active.insert(job.id, job);
        }
    }
    // Ours: the hub has their events already.
    active.retain(|id, _| !queue.is_running(*id) && hub.final_seq(*id).is_none());
    for (id, job) in &active {
        let last = followed.entry(*id).or_insert(-1.0);
        if job.status == JobStatus::Processing && job.progress_percent != *last {
            *last = job.progress_percent;
            hub.publish(
                *id,
                "progress",
                serde_json::json!({
                    "fraction": (job.progress_percent / 100.0).clamp(0.0, 1.0),
                    "encoded_secs": null,
                    "realtime_factor": null,
                    "eta_secs": null,
                }),
            );
        }
    }
    let gone: Vec<Uuid> = followed
        .keys()
        .filter(|id| !active.contains_key(id))
        .copied()
        .collect();
    for id in gone {
        followed.remove(&id);
        if queue.is_running(id) || hub.final_seq(id).is_some() {
            continue;
        }
        if let Some(job) = wf.store().get(id)? {
            if matches!(
                job.status,
                JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
            ) {
                hub.publish(
                    id,
                    "finished",
                    serde_json::json!({ "job": JobView::from(&job), "warnings": [] }),
                );
            }
        }
    }
    Ok(())
}
