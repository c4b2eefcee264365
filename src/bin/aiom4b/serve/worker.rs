//! `aiom4b worker`: a process that only runs jobs from the shared job store — the same queue
//! as `aiom4b serve` (see `queue.rs`), without the HTTP API. Any number of them, on any hosts
//! that reach the store (`DATABASE_URL`) and mount the shared folders, convert a library in
//! parallel. Optionally it serves its own Prometheus `/metrics`.
use super::confine::SourceRoot;
use super::events::EventHub;
use super::queue::{Queue, QueueSettings};
use super::{is_loopback, QueueArgs, SHUTDOWN_GRACE};
use anyhow::{bail, Context as _, Result};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Jobs at once [default: MAX_CONCURRENT_JOBS].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: Option<u16>,
    /// Engine threads per job [default: an equal share of the cores].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
    /// Serve this instance's Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9101).
    /// A non-loopback address needs API_TOKEN, sent as `Authorization: Bearer …`.
    #[arg(long, env = "WORKER_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    #[command(flatten)]
    pub queue: QueueArgs,
}

struct MetricsState {
    wf: Arc<aiom4b::workflow::Workflow>,
    queue: Arc<Queue>,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
    token: Option<String>,
}

/// `aiom4b worker`.
pub fn run(cfg: &aiom4b::workflow::Config, a: WorkerArgs) -> Result<u8> {
    if cfg.database_url.is_empty() {
        tracing::warn!("DATABASE_URL is not set: this worker shares only the local SQLite job store (DATA_DIR) with processes on this host");
    }
    let wf = Arc::new(crate::workflow_cmds::open(cfg)?);
    // Stopping a worker (SIGTERM from `docker stop`, a rolling restart) hands its jobs back to
    // the queue for the other workers instead of cancelling them.
    wf.release_on_stop();
    crate::signals::watch(&wf);
    let root = SourceRoot::new(&cfg.source_dir)
        .with_context(|| format!("SOURCE_DIR {}", cfg.source_dir.display()))?;
    let prometheus = super::metrics::install()?;
    let workers = a
        .concurrency
        .map(usize::from)
        .unwrap_or(cfg.max_concurrent_jobs)
        .max(1);
    let settings = QueueSettings {
        workers,
        engine_threads: a.jobs.map(usize::from),
        lease: a.queue.lease(),
    };
    // Nobody subscribes to a worker's events; the hub still numbers them for its log.
    let hub = Arc::new(EventHub::new());
    let queue = Queue::new(wf.clone(), hub, root, usize::MAX, settings);

    let rt = tokio::runtime::Builder::new_current_thread()
        .thread_name("aiom4b-metrics")
        .enable_all()
        .build()?;
    let metrics_server = match &a.metrics_addr {
        Some(addr) => {
            let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
            let token = std::env::var("API_TOKEN").ok().map(|t| t.trim().to_owned());
            if !is_loopback(host.trim_matches(['[', ']'])) && token.is_none() {
                bail!("--metrics-addr {addr} is not a loopback address: set API_TOKEN to guard it");
            }
            let listener = rt
                .block_on(tokio::net::TcpListener::bind(addr))
                .with_context(|| format!("listening on {addr}"))?;
            let local = listener.local_addr()?;
            let state = Arc::new(MetricsState {
                wf: wf.clone(),
                queue: queue.clone(),
                prometheus,
                token,
            });
            let app = axum::Router::new()
                .route("/metrics", axum::routing::get(metrics))
                .with_state(state);
            println!("metrics on http://{local}/metrics");
            Some(
                std::thread::Builder::new()
                    .name("aiom4b-metrics".into())
                    .spawn(move || {
                        rt.block_on(async {
                            let _ = axum::serve(listener, app).await;
                        })
                    })?,
            )
        }
        None => None,
    };
    drop(metrics_server);

    let handles = queue.start();
    let instance = wf.owner().instance_id();
    println!("worker {instance} ready: {workers} job(s) at once");
    std::io::stdout().flush()?;
    tracing::info!(target: "aiom4b::audit", action = "worker.start", instance_id = %instance, workers, "worker started");
    // Until a signal: the first one stops the running jobs, hands them back to the queue and
    // ends the loop; a second one exits at once (their leases then run out).
    while !wf.is_cancelled() {
        std::thread::sleep(Duration::from_millis(100));
    }
    queue.stop();
    Queue::join(handles, SHUTDOWN_GRACE);
    tracing::info!(target: "aiom4b::audit", action = "worker.stop", instance_id = %instance, "worker stopped");
    eprintln!("aiom4b: worker stopped");
    Ok(0)
}

async fn metrics(State(s): State<Arc<MetricsState>>, headers: HeaderMap) -> Response {
    if let Some(t) = &s.token {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| {
            use subtle::ConstantTimeEq as _;
            g.as_bytes().ct_eq(t.as_bytes()).into()
        });
        if !ok {
            return (StatusCode::UNAUTHORIZED, "a valid bearer token is needed\n").into_response();
        }
    }
    let s2 = s.clone();
    let _ = tokio::task::spawn_blocking(move || super::metrics::refresh(&s2.wf, &s2.queue)).await;
    super::metrics::render(&s.prometheus)
}
