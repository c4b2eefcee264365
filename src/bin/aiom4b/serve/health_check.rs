//! `aiom4b health`: asks a running `aiom4b serve` for `GET /api/v1/health` and exits 0 when it answers
//! 200 with `"status": "ok"`. The container's HEALTHCHECK and a system service's watchdog use
//! it: `debian:*-slim` and distroless images have no curl or wget.
use anyhow::{anyhow, bail, Context as _, Result};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct HealthArgs {
    /// Address of the service [default: API_HOST:API_PORT, with 0.0.0.0 or :: asked on loopback].
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout_secs: u64,
}

/// The address to ask: the one given, else where this configuration's `serve` listens. A
/// wildcard listener is reached on loopback.
fn target(cfg: &aiom4b::workflow::Config, a: &HealthArgs) -> Result<SocketAddr> {
    if let Some(s) = &a.addr {
        return s.parse().with_context(|| {
            format!("--addr {s:?} is not an IP address and port (127.0.0.1:8000)")
        });
    }
    let ip: IpAddr = match cfg.api_host.as_str() {
        "localhost" => Ipv4Addr::LOCALHOST.into(),
        h => h.parse().with_context(|| {
            format!("API_HOST {h:?} is not an IP address: pass --addr HOST:PORT")
        })?,
    };
    let ip = match ip {
        IpAddr::V4(v) if v.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(v) if v.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    Ok(SocketAddr::new(ip, cfg.api_port))
}

pub fn run(cfg: &aiom4b::workflow::Config, a: HealthArgs) -> Result<u8> {
    let addr = target(cfg, &a)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let timeout = Duration::from_secs(a.timeout_secs);
    let body = rt
        .block_on(async { tokio::time::timeout(timeout, get_health(addr)).await })
        .map_err(|_| anyhow!("http://{addr}/api/v1/health did not answer within {timeout:?}"))??;
    println!("{body}");
    Ok(0)
}

async fn get_health(addr: SocketAddr) -> Result<String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to aiom4b serve at {addr}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get("/api/v1/health")
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let res = send.send_request(req).await?;
    let status = res.status();
    let bytes = res.into_body().collect().await?.to_bytes();
    let body = String::from_utf8_lossy(&bytes).trim().to_string();
    if !status.is_success() {
        bail!("http://{addr}/api/v1/health answered {status}: {body}");
    }
    let ok = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .is_some_and(|v| v["status"] == "ok");
    if !ok {
        bail!("http://{addr}/api/v1/health answered 200 but not {{\"status\":\"ok\"}}: {body}");
    }
    Ok(body)
}
