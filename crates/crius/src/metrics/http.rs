//! The metrics endpoint: `GET /metrics` on `metrics_address`, plain HTTP/1.1 (scrapers speak it; put TLS
//! in front if the address is not loopback). Any other path is 404, any other method 405.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::runtime::Runtime;

/// What the exposition is: OpenMetrics text, which Prometheus negotiates and parses.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` and serves until the daemon exits. Returns the bound address (port 0 = ephemeral).
pub async fn start(rt: &Arc<Runtime>, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics_address {addr}: bind"))?;
    let local = listener
        .local_addr()
        .with_context(|| format!("metrics_address {addr}: local address"))?;
    let rt = Arc::downgrade(rt);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning, keep serving afterwards.
                    tracing::warn!("metrics endpoint: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let rt = rt.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(rt.clone(), req));
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await
                {
                    tracing::debug!("metrics endpoint: connection: {e}");
                }
            });
        }
    });
    tracing::info!("serving Prometheus metrics on http://{local}/metrics");
    Ok(local)
}

fn reply(status: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
}

async fn handle(
    rt: Weak<Runtime>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.uri().path() != "/metrics" {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "crius serves its metrics at /metrics\n".into(),
        ));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET\n".into(),
        ));
    }
    let Some(rt) = rt.upgrade() else {
        return Ok(reply(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "crius is shutting down\n".into(),
        ));
    };
    // The scrape reads /proc and takes the runtime's table locks briefly: off the async workers.
    match tokio::task::spawn_blocking(move || super::get().render(&rt)).await {
        Ok(body) => Ok(reply(StatusCode::OK, CONTENT_TYPE, body)),
        Err(e) => Ok(reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT,
            format!("rendering metrics failed: {e}\n"),
        )),
    }
}
