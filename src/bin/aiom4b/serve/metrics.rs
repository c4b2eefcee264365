//! `GET /metrics`: Prometheus text from the `metrics` facade. Counters and histograms are
//! recorded where things happen (requests in `layers.rs`, jobs as they finish here); the
//! job-count gauges, queue lengths and process figures are refreshed at each scrape from the
//! store, the queue and `/proc`, so they are right even for jobs run by the CLI in the same
//! DATA_DIR.
use super::api::Shared;
use super::queue::Queue;
use aiom4b::workflow::{Job, JobStatus, Workflow};
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::time::Duration;

/// Installs the process-wide recorder.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    Ok(PrometheusBuilder::new()
        .set_buckets(&[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
        ])?
        .install_recorder()?)
}

/// Records a job that ran in this process.
pub fn job_finished(job: &Job, elapsed: Duration) {
    let status = job.status.as_str();
    metrics::counter!("aiom4b_jobs_ended_total", "status" => status).increment(1);
    if job.status == JobStatus::Completed {
        metrics::histogram!("aiom4b_conversion_seconds").record(elapsed.as_secs_f64());
        if let Some(a) = job.audio_duration_secs {
            metrics::counter!("aiom4b_audio_seconds_converted_total").increment(a as u64);
            if elapsed.as_secs_f64() > 0.0 {
                metrics::gauge!("aiom4b_last_realtime_factor").set(a / elapsed.as_secs_f64());
            }
        }
        metrics::counter!("aiom4b_bytes_in_total").increment(job.input_bytes.unwrap_or(0));
        metrics::counter!("aiom4b_bytes_out_total").increment(job.output_bytes.unwrap_or(0));
    }
    if let Some(e) = &job.error {
        metrics::counter!("aiom4b_job_failures_total", "category" => e.category.to_string())
            .increment(1);
    }
}

#[utoipa::path(get, path = "/metrics", tag = "service", summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(s): State<Shared>) -> Response {
    let s2 = s.clone();
    let _ = tokio::task::spawn_blocking(move || refresh(&s2.wf, &s2.queue)).await;
    render(&s.prometheus)
}

/// The Prometheus text, with its content type.
pub fn render(prometheus: &PrometheusHandle) -> Response {
    let mut r = prometheus.render().into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Sets the gauges that are read at each scrape: job counts and the queue (both for the whole
/// store, whichever instance ran the jobs), this process's running jobs and figures. Blocking.
pub fn refresh(wf: &Workflow, queue: &Queue) {
    if let Ok(st) = wf.store().stats() {
        for (status, n) in [
            ("pending", st.pending),
            ("processing", st.processing),
            ("completed", st.completed),
            ("failed", st.failed),
            ("cancelled", st.cancelled),
        ] {
            metrics::gauge!("aiom4b_jobs", "status" => status).set(n as f64);
        }
        if let Some(r) = st.realtime_factor {
            metrics::gauge!("aiom4b_realtime_factor").set(r);
        }
        for (category, n) in &st.failures_by_category {
            metrics::gauge!("aiom4b_jobs_failed_by_category", "category" => category.to_string())
                .set(*n as f64);
        }
    }
    if let Ok(q) = wf.store().queue_stats() {
        metrics::gauge!("aiom4b_queue_length").set(q.waiting as f64);
        metrics::gauge!("aiom4b_queue_leased").set(q.leased as f64);
        metrics::gauge!("aiom4b_queue_expired_leases").set(q.expired as f64);
    }
    metrics::gauge!("aiom4b_queue_running").set(queue.running() as f64);
    if let Some((rss, cpu)) = process_figures() {
        metrics::gauge!("process_resident_memory_bytes").set(rss);
        metrics::gauge!("process_cpu_seconds_total").set(cpu);
    }
}

/// Resident memory (bytes) and CPU time (seconds) of this process, from /proc/self/stat.
fn process_figures() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, rss 24 (1-based, pid first).
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let rss_pages = f.get(21)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let (hz, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK) as f64,
            libc::sysconf(libc::_SC_PAGESIZE) as f64,
        )
    };
    Some((rss_pages * page, ticks / hz.max(1.0)))
}
