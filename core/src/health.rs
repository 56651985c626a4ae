//! `/metrics`, `/healthz` and `/readyz`: served on a TCP address (`--metrics-addr`, what the
//! chart's httpGet probes and Prometheus ask) and/or a Unix socket (`--health-socket`, what
//! `aml-operator probe` asks from inside the pod: the chart's exec probes, which need no port).

use axum::{Router, routing::get};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::warn;

/// The three endpoints; `/readyz` answers 200 once `ready` is set (every controller's cache
/// synced, or a healthy standby), 503 before.
pub fn router(ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/metrics", get(|| async { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render()) }))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(Ordering::Relaxed) {
                        (axum::http::StatusCode::OK, "ok")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
                    }
                }
            }),
        )
}

/// Where [`serve`] could not listen.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {0}")]
pub struct ListenError(String, #[source] std::io::Error);

/// Serves [`router`] on `addr` (TCP) and on `socket` (Unix), each when given, in the background.
/// A socket file left by an earlier run of the process (a container restarted in the same pod)
/// is replaced.
pub async fn serve(addr: Option<&str>, socket: Option<&Path>, ready: Arc<AtomicBool>) -> Result<(), ListenError> {
    if let Some(addr) = addr {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| ListenError(addr.to_string(), e))?;
        let app = router(ready.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                warn!(error = %e, "health server stopped");
            }
        });
    }
    if let Some(path) = socket {
        let named = || path.display().to_string();
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ListenError(named(), e)),
        }
        let listener = tokio::net::UnixListener::bind(path).map_err(|e| ListenError(named(), e))?;
        let app = router(ready);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                warn!(error = %e, "health socket stopped");
            }
        });
    }
    Ok(())
}

/// Flags of `aml-operator probe`.
#[derive(clap::Args, Debug, Clone)]
pub struct ProbeArgs {
    /// The running operator's `--health-socket`.
    #[arg(long, default_value = "/run/aml-operator/health.sock")]
    pub socket: PathBuf,
    /// What to ask: /healthz (liveness) or /readyz (readiness).
    #[arg(default_value = "/readyz", value_parser = ["/healthz", "/readyz"])]
    pub path: String,
    /// Give up (and fail) after this many seconds.
    #[arg(long, default_value_t = 3)]
    pub timeout_seconds: u64,
}

/// `aml-operator probe`: one HTTP GET of `path` over the socket. `Ok` with the body when the
/// answer is 200; `Err` saying what happened otherwise (the kubelet shows it in the probe's event).
/// Synchronous and without a runtime: the kubelet starts it every probe period.
pub fn probe(args: &ProbeArgs) -> Result<String, String> {
    let socket = args.socket.display();
    let timeout = Some(Duration::from_secs(args.timeout_seconds.max(1)));
    let mut stream = UnixStream::connect(&args.socket).map_err(|e| format!("cannot connect to {socket}: {e} (is the operator running with --health-socket={socket}?)"))?;
    stream.set_read_timeout(timeout).and_then(|()| stream.set_write_timeout(timeout)).map_err(|e| format!("{socket}: {e}"))?;
    write!(stream, "GET {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", args.path).map_err(|e| format!("{socket}: {e}"))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| format!("{socket}: no answer to GET {}: {e}", args.path))?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default();
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(body.trim().to_string()),
        _ => Err(format!("GET {}: {status}: {}", args.path, body.trim())),
    }
}
