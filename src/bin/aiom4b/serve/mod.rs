//! `aiom4b serve`: the conversion service. One process serves the REST API (`/api/v1`) and
//! runs the job queue, on the library's [`aiom4b::workflow::JobRunner`] and the same SQLite
//! store as the CLI.
//!
//! ```text
//!  accept loop (connection cap, header-read timeout) ─▶ hyper ─▶ axum router
//!     layers: [cors] ─▶ metrics ─▶ audit ─▶ body size ─▶ timeout ─▶ token ─▶ handlers
//!  handlers ─▶ queue (pending jobs in the store) ─▶ worker threads ─▶ JobRunner::run_queued
//!  runner's JobEvents ─▶ EventHub (ring + broadcast) ─▶ SSE streams
//! ```
//!
//! Async is only at the edge: conversions run on the queue's plain threads. A signal
//! (SIGTERM, SIGINT, SIGHUP) goes through the CLI's signal thread, which stops every job of
//! the workflow; the server sees that, stops accepting, hands the running jobs back to the
//! queue (their `.part` removed, `pending` again, the stopped attempt not counted), and exits
//! 0. Pending jobs, and those handed back, run at the next start.
pub mod api;
mod confine;
mod covers;
mod download;
mod events;
pub mod health_check;
mod layers;
mod logs;
mod matching;
mod metrics;
mod openapi;
mod plan_cache;
mod queue;
mod relay;
mod stream;
pub mod worker;

use anyhow::{bail, Context as _, Result};
use api::AppState;
use axum::routing::get;
use axum::Router;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi as _;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Largest request body: a convert request for many books is a few KiB.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// How long running jobs get to end cleanly after a signal before the process exits anyway.
pub(super) const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on [default: API_HOST, 127.0.0.1]. A non-loopback address needs a
    /// token (API_TOKEN, or --generate-token).
    #[arg(long)]
    pub host: Option<String>,
    /// Port [default: API_PORT, 8000]; 0 picks a free one (printed on stdout).
    #[arg(long)]
    pub port: Option<u16>,
    /// Pending jobs accepted before POST /convert answers 429.
    #[arg(long, env = "MAX_PENDING_JOBS", default_value_t = 100)]
    pub max_pending: usize,
    /// Most simultaneous connections; more wait to be accepted.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 256)]
    pub max_connections: usize,
    /// Seconds a client has to send its request head (against slowloris).
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,
    /// Milliseconds a request has to produce its response head (a download or an event stream
    /// that has started goes on); beyond it 503.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,
    /// When API_TOKEN is not set: create DATA_DIR/api_token (mode 0600) and print it once.
    #[arg(long)]
    pub generate_token: bool,
    /// Run no jobs here: only the API, with `aiom4b worker` processes (on this or other hosts,
    /// sharing DATABASE_URL) running the queue.
    #[arg(long)]
    pub no_worker: bool,
    #[command(flatten)]
    pub queue: QueueArgs,
}

/// The queue's settings, shared by `serve` and `worker`.
#[derive(clap::Args, Debug, Clone)]
pub struct QueueArgs {
    /// Seconds a claimed job's lease lasts without renewal (it is renewed every second or so):
    /// a worker that dies has its job run again this long after it stopped.
    #[arg(long, env = "LEASE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lease_secs: u64,
}

impl QueueArgs {
    pub fn lease(&self) -> aiom4b::workflow::LeaseTerms {
        aiom4b::workflow::LeaseTerms::new(Duration::from_secs(self.lease_secs))
    }
}

/// The token: API_TOKEN, else the token file, else (with --generate-token) a new one.
fn token(cfg: &aiom4b::workflow::Config, a: &ServeArgs, loopback: bool) -> Result<Option<String>> {
    if let Ok(t) = std::env::var("API_TOKEN") {
        let t = t.trim().to_owned();
        if t.len() < 16 {
            bail!("API_TOKEN is shorter than 16 characters; use a long random token");
        }
        return Ok(Some(t));
    }
    let file = cfg.data_dir.join("api_token");
    if let Ok(t) = std::fs::read_to_string(&file) {
        return Ok(Some(t.trim().to_owned()));
    }
    if a.generate_token {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .context("reading /dev/urandom for a token")?;
        let t: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .with_context(|| format!("creating {}", file.display()))?;
        writeln!(f, "{t}")?;
        println!(
            "API token (saved in {}, shown only now): {t}",
            file.display()
        );
        return Ok(Some(t));
    }
    if !loopback {
        bail!(
            "refusing to listen on a non-loopback address without a token: set API_TOKEN, or \
             start once with --generate-token"
        );
    }
    Ok(None)
}

pub(super) fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The routes of `/api/v1`, each registered together with its operation in the OpenAPI
/// document (utoipa-axum): nothing is served here that the document does not describe.
fn api_router() -> OpenApiRouter<api::Shared> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(api::health))
        .routes(routes!(api::ready))
        .routes(routes!(api::stats))
        .routes(routes!(metrics::metrics))
        .routes(routes!(openapi::document))
        .routes(routes!(api::folders))
        .routes(routes!(api::plan))
        .routes(routes!(api::cover))
        .routes(routes!(api::convert))
        .routes(routes!(api::list_jobs))
        .routes(routes!(api::clear_jobs))
        .routes(routes!(api::get_job_h, api::delete_job))
        .routes(routes!(api::cancel_job))
        .routes(routes!(api::retry_job))
        .routes(routes!(stream::job_events))
        .routes(routes!(api::verify_job))
        .routes(routes!(stream::all_events))
        .routes(routes!(download::download))
        .routes(routes!(api::backups))
        .routes(routes!(api::verify_backup))
        .routes(routes!(api::restore_backup))
        .routes(routes!(logs::job_log))
        .routes(routes!(covers::list_images))
        .routes(routes!(covers::image))
        .routes(routes!(covers::upload))
        .routes(routes!(covers::uploaded))
        .routes(routes!(matching::find))
        .routes(routes!(matching::tag))
}

/// Browsers on these origins may call the API (`CORS_ORIGINS`); none configured: no layer,
/// so no CORS header is ever sent.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{header, HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([
                header::RETRY_AFTER,
                header::CONTENT_DISPOSITION,
                header::ETAG,
                header::LOCATION,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

fn router(state: api::Shared, request_timeout: Duration) -> Router {
    let (v1, doc) = api_router().split_for_parts();
    let doc = openapi::Document(Arc::new(openapi::finish(doc)));
    let app = Router::new()
        .nest("/api/v1", v1)
        .route("/docs", get(openapi::docs))
        .route("/metrics", get(metrics::metrics))
        .layer(axum::Extension(doc))
        .fallback(|| async {
            api::ApiError::not_found(
                "not_found",
                "no such endpoint".into(),
                "see /api/v1/openapi.json",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            layers::auth_layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            request_timeout,
            layers::timeout_layer,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // MAX_BODY_BYTES, and covers::MAX_UPLOAD_BYTES for cover uploads.
        .layer(axum::middleware::from_fn(layers::body_size_layer))
        .layer(axum::middleware::from_fn(layers::audit_layer))
        .layer(axum::middleware::from_fn(layers::metrics_layer));
    // Outermost: a preflight is answered before the token is asked for.
    let app = match cors(&state.wf.config().cors_origins) {
        Some(c) => app.layer(c),
        None => app,
    };
    app.with_state(state)
}

/// `aiom4b serve`.
pub fn run(cfg: &aiom4b::workflow::Config, a: ServeArgs) -> Result<u8> {
    let host = a.host.clone().unwrap_or_else(|| cfg.api_host.clone());
    let port = a.port.unwrap_or(cfg.api_port);
    let loopback = is_loopback(&host);
    let wf = Arc::new(crate::workflow_cmds::open(cfg)?);
    let token = token(cfg, &a, loopback)?;
    // Stopping the service (`systemctl stop`, `docker stop`, an upgrade's restart) hands its
    // running jobs back to the queue: they run again after the restart (or on another
    // instance sharing the store) instead of ending as cancelled. A job someone cancelled
    // ends as cancelled.
    wf.release_on_stop();
    crate::signals::watch(&wf);
    let root = confine::SourceRoot::new(&cfg.source_dir)
        .with_context(|| format!("SOURCE_DIR {}", cfg.source_dir.display()))?;
    let prometheus = metrics::install()?;
    let hub = Arc::new(events::EventHub::new());
    let settings = queue::QueueSettings {
        workers: if a.no_worker {
            0
        } else {
            cfg.max_concurrent_jobs.max(1)
        },
        engine_threads: None,
        lease: a.queue.lease(),
    };
    let queue = queue::Queue::new(
        wf.clone(),
        hub.clone(),
        root.clone(),
        a.max_pending,
        settings,
    );
    let workers = queue.start();
    relay::start(wf.clone(), hub.clone(), queue.clone());
    let state = Arc::new(AppState {
        wf: wf.clone(),
        root,
        queue: queue.clone(),
        hub,
        token,
        prometheus,
        plans: Default::default(),
        idempotency: Default::default(),
        metadata: matching::MetadataState::new(&wf.config().data_dir),
    });
    // The web page (src/bin/aiom4b/web/) in front of the API, with its login cookie.
    let app = crate::web::with_page(
        router(state.clone(), Duration::from_millis(a.request_timeout_ms)),
        state,
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("aiom4b-http")
        .enable_all()
        .build()?;
    let addr = format!("{host}:{port}");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let local = listener.local_addr()?;
        println!("listening on http://{local}");
        std::io::stdout().flush()?;
        tracing::info!(target: "aiom4b::audit", action = "serve.start", addr = %local, "service started");
        let limits = ConnLimits {
            max_connections: a.max_connections.max(1),
            header_timeout: Duration::from_secs(a.header_timeout_secs),
        };
        serve(listener, app, limits, wf.clone()).await;
        anyhow::Ok(())
    })?;

    // Stopped: no new jobs; the running ones were stopped by the signal and are handed back.
    queue.stop();
    wf.cancel_all();
    queue::Queue::join(workers, SHUTDOWN_GRACE);
    rt.shutdown_timeout(Duration::from_secs(1));
    tracing::info!(target: "aiom4b::audit", action = "serve.stop", "service stopped");
    eprintln!("aiom4b: service stopped");
    Ok(0)
}

struct ConnLimits {
    max_connections: usize,
    header_timeout: Duration,
}

/// The accept loop: at most `max_connections` at once (more wait in the kernel's backlog),
/// each with a header-read timeout. Returns when the workflow is cancelled (a signal).
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnLimits,
    wf: Arc<aiom4b::workflow::Workflow>,
) {
    let ConnLimits {
        max_connections,
        header_timeout,
    } = limits;
    use hyper_util::rt::{TokioIo, TokioTimer};
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let stopped = async {
        while !wf.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::pin!(stopped);
    loop {
        let permit = tokio::select! {
            _ = &mut stopped => return,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut stopped => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(layers::Peer(peer));
                    let app = app.clone();
                    async move {
                        use tower_service::Service as _;
                        let mut app = app;
                        app.call(req.map(axum::body::Body::new)).await
                    }
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, peer = %peer, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The router is built from the same `routes!` as the document, so every served route is
    /// documented by construction; this pins the list and what every operation must say.
    #[test]
    fn the_document_describes_every_route_with_its_auth() {
        let doc = openapi::finish(api_router().into_openapi());
        let mut ops = Vec::new();
        for (path, item) in &doc.paths.paths {
            for (m, op) in [
                ("get", &item.get),
                ("post", &item.post),
                ("delete", &item.delete),
            ] {
                let Some(op) = op else { continue };
                ops.push(format!("{m} {path}"));
                let codes = &op.responses.responses;
                assert!(
                    codes.contains_key("401") && codes.contains_key("503"),
                    "{path}"
                );
                assert!(
                    codes.keys().any(|c| c.starts_with('2')),
                    "{m} {path} documents no success"
                );
            }
        }
        assert_eq!(ops.len(), 29, "{ops:#?}");
        for op in [
            "get /match",
            "post /jobs/{id}/tag",
            "get /jobs/{id}",
            "delete /jobs/{id}",
            "get /folders/{path}/cover",
            "get /jobs/{id}/log",
            "get /folders/{path}/images",
            "get /folders/{path}/images/{name}",
            "post /covers",
            "get /covers/{id}",
        ] {
            assert!(ops.iter().any(|o| o == op), "{op} missing: {ops:#?}");
        }
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            json["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(json["servers"][0]["url"], "/api/v1");
    }
}
