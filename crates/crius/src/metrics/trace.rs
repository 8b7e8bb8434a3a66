//! Optional trace export (`tracing_endpoint`, off by default): one server span per CRI call, with child
//! spans for the CNI ADD/DEL and registry pull it made, sent as OTLP/HTTP JSON to a collector.
//!
//! The exporter is hand-rolled (the OpenTelemetry crates are heavy to build here): spans queue in a
//! bounded channel (a full queue drops spans, counted, rather than slowing a call) and a task posts them
//! in batches. A W3C `traceparent` in the call's gRPC metadata (the kubelet sends one when its tracing is
//! on) makes the call's span a child of the kubelet's; without one each call starts a trace.
//!
//! The layer reads the request message to name the pod and container the call is about (the CRI
//! requests carry at most a few KiB, and none of the CRI calls streams requests), and the first
//! response message of RunPodSandbox and CreateContainer for the id they created. The span ends when
//! the response body ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use cri_api::v1 as cri;
use futures::future::{Either, MapOk};
use futures::TryFutureExt;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::body::Body;
use tonic::codegen::http;

use crate::runtime::now_ns;

/// Spans waiting for the exporter at most; past it new spans are dropped.
const QUEUE: usize = 4096;
/// Spans per POST at most.
const BATCH: usize = 512;
/// How long the exporter gathers a batch after its first span.
const LINGER: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct SpanData {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    /// OTLP SpanKind: 1 internal, 2 server.
    pub kind: u8,
    pub start_ns: i64,
    pub end_ns: i64,
    pub attrs: Vec<(&'static str, Attr)>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
}

struct Exporter {
    tx: tokio::sync::mpsc::Sender<SpanData>,
    dropped: AtomicU64,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

/// Where spans go: `http://host:port/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host_port: String,
    pub path: String,
}

/// Parses `tracing_endpoint`: plain `http://host:port[/path]` (path default `/v1/traces`, the OTLP/HTTP
/// traces path). TLS is not spoken: point it at a local collector.
pub fn parse_endpoint(url: &str) -> Result<Endpoint, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("must start with http:// (crius speaks OTLP/HTTP without TLS)")?;
    let (hp, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/v1/traces"),
    };
    let port_ok = hp
        .rsplit_once(':')
        .map(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        .unwrap_or(false);
    if !port_ok {
        return Err(format!("{hp:?} is not host:port"));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the path must not hold spaces or control characters".into());
    }
    Ok(Endpoint {
        host_port: hp.to_string(),
        path: path.to_string(),
    })
}

/// Starts the exporter. Call once, inside the runtime, before serving.
pub fn init(url: &str) -> anyhow::Result<()> {
    let ep = parse_endpoint(url).map_err(|e| anyhow::anyhow!("tracing_endpoint {url:?}: {e}"))?;
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
    EXPORTER
        .set(Exporter {
            tx,
            dropped: AtomicU64::new(0),
        })
        .map_err(|_| anyhow::anyhow!("the trace exporter is already running"))?;
    tokio::spawn(export_loop(ep, rx));
    tracing::info!("exporting traces (OTLP/HTTP JSON) to {url}");
    Ok(())
}

pub fn enabled() -> bool {
    EXPORTER.get().is_some()
}

fn submit(span: SpanData) {
    if let Some(e) = EXPORTER.get() {
        if e.tx.try_send(span).is_err() {
            let n = e.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!("trace export queue full: {n} spans dropped so far");
            }
        }
    }
}

async fn export_loop(ep: Endpoint, mut rx: tokio::sync::mpsc::Receiver<SpanData>) {
    let mut failures = 0u64;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                _ => break,
            }
        }
        let body = encode(&batch).to_string();
        match tokio::time::timeout(Duration::from_secs(10), post(&ep, &body)).await {
            Ok(Ok(())) => failures = 0,
            Ok(Err(e)) => {
                failures += 1;
                if failures.is_power_of_two() {
                    tracing::warn!(
                        "exporting {} spans to http://{}{}: {e} ({failures} failed batches in a row)",
                        batch.len(),
                        ep.host_port,
                        ep.path
                    );
                }
            }
            Err(_) => {
                failures += 1;
                if failures.is_power_of_two() {
                    tracing::warn!(
                        "exporting spans to http://{}{}: no answer in 10s",
                        ep.host_port,
                        ep.path
                    );
                }
            }
        }
    }
}

/// One HTTP/1.1 POST, `Connection: close`; any 2xx is success.
async fn post(ep: &Endpoint, body: &str) -> Result<(), String> {
    let mut s = tokio::net::TcpStream::connect(&ep.host_port)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        ep.path,
        ep.host_port,
        body.len()
    );
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    s.write_all(body.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut resp = Vec::new();
    let mut buf = [0u8; 1024];
    // The status line is all that is needed.
    while !resp.windows(2).any(|w| w == b"\r\n") && resp.len() < 8192 {
        let n = s.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        resp.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&resp);
    let code = line.split_whitespace().nth(1).unwrap_or("");
    if code.starts_with('2') {
        Ok(())
    } else {
        Err(format!(
            "collector answered {:?}",
            line.lines().next().unwrap_or("")
        ))
    }
}

/// The OTLP/JSON ExportTraceServiceRequest for `spans` (ids in hex, times as decimal strings).
pub fn encode(spans: &[SpanData]) -> serde_json::Value {
    let attr = |k: &str, v: &Attr| match v {
        Attr::Str(s) => serde_json::json!({"key": k, "value": {"stringValue": s}}),
        Attr::Int(i) => serde_json::json!({"key": k, "value": {"intValue": i.to_string()}}),
    };
    let spans: Vec<serde_json::Value> = spans
        .iter()
        .map(|s| {
            let mut v = serde_json::json!({
                "traceId": hex::encode(s.trace_id),
                "spanId": hex::encode(s.span_id),
                "name": s.name,
                "kind": s.kind,
                "startTimeUnixNano": s.start_ns.to_string(),
                "endTimeUnixNano": s.end_ns.to_string(),
                "attributes": s.attrs.iter().map(|(k, v)| attr(k, v)).collect::<Vec<_>>(),
                "status": match &s.error {
                    None => serde_json::json!({"code": 0}),
                    Some(m) => serde_json::json!({"code": 2, "message": m}),
                },
            });
            if let Some(p) = s.parent {
                v["parentSpanId"] = serde_json::Value::String(hex::encode(p));
            }
            v
        })
        .collect();
    serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                attr("service.name", &Attr::Str("crius".into())),
                attr("service.version", &Attr::Str(crate::runtime::RUNTIME_VERSION.into())),
            ]},
            "scopeSpans": [{"scope": {"name": "crius"}, "spans": spans}],
        }]
    })
}

/// Trace id and parent span id from a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); `None` for a
/// missing, malformed or all-zero one.
pub fn parse_traceparent(v: &str) -> Option<([u8; 16], [u8; 8])> {
    let mut it = v.trim().split('-');
    let (ver, tid, pid, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    if ver.len() != 2 || ver == "ff" || flags.len() != 2 || (ver == "00" && it.next().is_some()) {
        return None;
    }
    u8::from_str_radix(ver, 16).ok()?;
    u8::from_str_radix(flags, 16).ok()?;
    let mut t = [0u8; 16];
    let mut p = [0u8; 8];
    if tid.len() != 32 || pid.len() != 16 || tid.chars().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    hex::decode_to_slice(tid, &mut t).ok()?;
    hex::decode_to_slice(pid, &mut p).ok()?;
    if t == [0; 16] || p == [0; 8] {
        return None;
    }
    Some((t, p))
}

/// The span a call's work belongs to, visible to the code that runs for it (child spans).
#[derive(Clone)]
struct Current {
    trace_id: [u8; 16],
    span_id: [u8; 8],
}

tokio::task_local! {
    static CURRENT: Current;
}

/// Wraps `f` so that it runs under the current call's span wherever it is polled: a task spawned for
/// a call (`server::task::detached`) keeps the call's trace, so its child spans are not lost.
pub fn carry<F: Future>(f: F) -> impl Future<Output = F::Output> {
    let cur = CURRENT.try_with(|c| c.clone()).ok();
    async move {
        match cur {
            Some(c) => CURRENT.scope(c, f).await,
            None => f.await,
        }
    }
}

/// Runs `f` as a child span `name` of the current call's span (when traces are exported and a call is
/// being traced); `f`'s error marks the span failed.
pub async fn child<T, E: std::fmt::Display>(
    name: &str,
    attrs: Vec<(&'static str, Attr)>,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let Ok(cur) = CURRENT.try_with(|c| c.clone()) else {
        return f.await;
    };
    let start_ns = now_ns();
    let r = f.await;
    submit(SpanData {
        trace_id: cur.trace_id,
        span_id: rand::random(),
        parent: Some(cur.span_id),
        name: name.to_string(),
        kind: 1,
        start_ns,
        end_ns: now_ns(),
        attrs,
        error: r.as_ref().err().map(|e| e.to_string()),
    });
    r
}

/// Attributes naming what a call is about, read from its request message.
pub fn request_attrs(method: &str, msg: &[u8]) -> Vec<(&'static str, Attr)> {
    let s = |v: &str| Attr::Str(v.to_string());
    let pod = |id: &str| vec![("crius.pod_sandbox_id", s(id))];
    let ctr = |id: &str| vec![("container.id", s(id))];
    macro_rules! dec {
        ($t:ty) => {
            match <$t>::decode(msg) {
                Ok(m) => m,
                Err(_) => return vec![],
            }
        };
    }
    match method {
        "RunPodSandbox" => {
            let r = dec!(cri::RunPodSandboxRequest);
            let md = r.config.and_then(|c| c.metadata).unwrap_or_default();
            vec![
                ("k8s.pod.name", s(&md.name)),
                ("k8s.namespace.name", s(&md.namespace)),
                ("k8s.pod.uid", s(&md.uid)),
                ("crius.runtime_handler", s(&r.runtime_handler)),
            ]
        }
        "StopPodSandbox" => pod(&dec!(cri::StopPodSandboxRequest).pod_sandbox_id),
        "RemovePodSandbox" => pod(&dec!(cri::RemovePodSandboxRequest).pod_sandbox_id),
        "PodSandboxStatus" => pod(&dec!(cri::PodSandboxStatusRequest).pod_sandbox_id),
        "PodSandboxStats" => pod(&dec!(cri::PodSandboxStatsRequest).pod_sandbox_id),
        "PortForward" => pod(&dec!(cri::PortForwardRequest).pod_sandbox_id),
        "CreateContainer" => {
            let r = dec!(cri::CreateContainerRequest);
            let name = r
                .config
                .and_then(|c| c.metadata)
                .map(|m| m.name)
                .unwrap_or_default();
            vec![
                ("crius.pod_sandbox_id", s(&r.pod_sandbox_id)),
                ("k8s.container.name", s(&name)),
            ]
        }
        "StartContainer" => ctr(&dec!(cri::StartContainerRequest).container_id),
        "StopContainer" => ctr(&dec!(cri::StopContainerRequest).container_id),
        "RemoveContainer" => ctr(&dec!(cri::RemoveContainerRequest).container_id),
        "ContainerStatus" => ctr(&dec!(cri::ContainerStatusRequest).container_id),
        "ContainerStats" => ctr(&dec!(cri::ContainerStatsRequest).container_id),
        "UpdateContainerResources" => ctr(&dec!(cri::UpdateContainerResourcesRequest).container_id),
        "ReopenContainerLog" => ctr(&dec!(cri::ReopenContainerLogRequest).container_id),
        "ExecSync" => ctr(&dec!(cri::ExecSyncRequest).container_id),
        "Exec" => ctr(&dec!(cri::ExecRequest).container_id),
        "Attach" => ctr(&dec!(cri::AttachRequest).container_id),
        "PullImage" => {
            let r = dec!(cri::PullImageRequest);
            vec![(
                "container.image.name",
                s(&r.image.unwrap_or_default().image),
            )]
        }
        "ImageStatus" => {
            let r = dec!(cri::ImageStatusRequest);
            vec![(
                "container.image.name",
                s(&r.image.unwrap_or_default().image),
            )]
        }
        "RemoveImage" => {
            let r = dec!(cri::RemoveImageRequest);
            vec![(
                "container.image.name",
                s(&r.image.unwrap_or_default().image),
            )]
        }
        _ => vec![],
    }
}

/// The id a call created, from its response message.
fn response_attrs(method: &str, msg: &[u8]) -> Vec<(&'static str, Attr)> {
    match method {
        "RunPodSandbox" => cri::RunPodSandboxResponse::decode(msg)
            .map(|r| vec![("crius.pod_sandbox_id", Attr::Str(r.pod_sandbox_id))])
            .unwrap_or_default(),
        "CreateContainer" => cri::CreateContainerResponse::decode(msg)
            .map(|r| vec![("container.id", Attr::Str(r.container_id))])
            .unwrap_or_default(),
        _ => vec![],
    }
}

/// The message of a complete unary gRPC body (5-byte prefix: compression flag, big-endian length).
fn grpc_message(body: &[u8]) -> Option<&[u8]> {
    if body.len() < 5 || body[0] != 0 {
        return None;
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    body.get(5..5 + len)
}

/// The tower layer: a server span per call when traces are exported, nothing otherwise.
#[derive(Clone, Copy, Debug)]
pub struct TraceLayer {
    enabled: bool,
}

impl TraceLayer {
    pub fn new(enabled: bool) -> Self {
        TraceLayer { enabled }
    }
}

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Traced<S>;
    fn layer(&self, inner: S) -> Traced<S> {
        Traced {
            inner,
            enabled: self.enabled,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Traced<S> {
    inner: S,
    enabled: bool,
}

impl<S> tower::Service<http::Request<Body>> for Traced<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<TracedBody>;
    type Error = S::Error;
    type Future = Either<
        MapOk<S::Future, fn(http::Response<Body>) -> http::Response<TracedBody>>,
        Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if !self.enabled || !enabled() {
            return Either::Left(self.inner.call(req).map_ok(untraced as fn(_) -> _));
        }
        // The service that was polled ready serves this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Either::Right(Box::pin(async move {
            let start_ns = now_ns();
            let path = req.uri().path().to_owned();
            let (service, method) = super::split_path(&path);
            let (service, method) = (service.to_string(), method.to_string());
            let parent = req
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_traceparent);
            let (trace_id, parent) = match parent {
                Some((t, p)) => (t, Some(p)),
                None => (rand::random::<[u8; 16]>(), None),
            };
            let span_id: [u8; 8] = rand::random();
            let (parts, body) = req.into_parts();
            let bytes = match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) => {
                    let st = tonic::Status::internal(format!("reading the request: {e}"));
                    return Ok(st.into_http::<Body>().map(|b| TracedBody {
                        inner: b,
                        span: None,
                    }));
                }
            };
            let mut attrs = vec![
                ("rpc.system", Attr::Str("grpc".into())),
                ("rpc.service", Attr::Str(service.clone())),
                ("rpc.method", Attr::Str(method.clone())),
            ];
            if let Some(msg) = grpc_message(&bytes) {
                attrs.extend(request_attrs(&method, msg));
            }
            let req = http::Request::from_parts(parts, Body::new(http_body_util::Full::new(bytes)));
            let cur = Current { trace_id, span_id };
            let res = CURRENT.scope(cur, inner.call(req)).await?;
            let code = super::grpc::status_of(res.headers());
            let span = Pending {
                data: SpanData {
                    trace_id,
                    span_id,
                    parent,
                    name: format!("{service}/{method}"),
                    kind: 2,
                    start_ns,
                    end_ns: 0,
                    attrs,
                    error: None,
                },
                method,
                code: (code != tonic::Code::Ok).then_some(code),
                message: res
                    .headers()
                    .get("grpc-message")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                first: Vec::new(),
                decoded: false,
            };
            Ok(res.map(|b| TracedBody {
                inner: b,
                span: Some(Box::new(span)),
            }))
        }))
    }
}

fn untraced(r: http::Response<Body>) -> http::Response<TracedBody> {
    r.map(|b| TracedBody {
        inner: b,
        span: None,
    })
}

/// A call's span until its response body ends.
struct Pending {
    data: SpanData,
    method: String,
    code: Option<tonic::Code>,
    message: Option<String>,
    /// The start of the first response message, for the id a create call returns.
    first: Vec<u8>,
    decoded: bool,
}

impl Pending {
    fn finish(mut self: Box<Self>) {
        self.data.end_ns = now_ns();
        let code = self.code.unwrap_or(tonic::Code::Ok);
        self.data
            .attrs
            .push(("rpc.grpc.status_code", Attr::Int(code as i64)));
        if code != tonic::Code::Ok {
            self.data.error = Some(format!(
                "{code:?}: {}",
                self.message.as_deref().unwrap_or("")
            ));
        }
        submit(self.data);
    }
}

/// The response body, ending the call's span when it ends (or is dropped).
pub struct TracedBody {
    inner: Body,
    span: Option<Box<Pending>>,
}

/// An empty body outside any span (error answers made before the traced service ran).
impl Default for TracedBody {
    fn default() -> Self {
        TracedBody {
            inner: Body::default(),
            span: None,
        }
    }
}

impl Drop for TracedBody {
    fn drop(&mut self) {
        if let Some(s) = self.span.take() {
            s.finish();
        }
    }
}

impl HttpBody for TracedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Some(span) = self.span.as_mut() {
            match &r {
                Poll::Ready(Some(Ok(f))) => {
                    if let Some(d) = f.data_ref() {
                        if !span.decoded && span.first.len() < 64 * 1024 {
                            span.first.extend_from_slice(d);
                            if let Some(msg) = grpc_message(&span.first) {
                                let a = response_attrs(&span.method, msg);
                                span.data.attrs.extend(a);
                                span.decoded = true;
                                span.first = Vec::new();
                            }
                        }
                    }
                    if let Some(t) = f.trailers_ref() {
                        let code = super::grpc::status_of(t);
                        if code != tonic::Code::Ok {
                            span.code = Some(code);
                            span.message = t
                                .get("grpc-message")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    span.code = Some(tonic::Code::Internal);
                    span.message = Some(e.to_string());
                }
                Poll::Ready(None) | Poll::Pending => {}
            }
        }
        if matches!(r, Poll::Ready(None)) {
            if let Some(s) = self.span.take() {
                s.finish();
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parsing() {
        let (t, p) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex::encode(t), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(p), "00f067aa0ba902b7");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
        // A later version may append fields.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:4318").unwrap(),
            Endpoint {
                host_port: "127.0.0.1:4318".into(),
                path: "/v1/traces".into()
            }
        );
        assert_eq!(
            parse_endpoint("http://collector:4318/custom/traces")
                .unwrap()
                .path,
            "/custom/traces"
        );
        assert!(parse_endpoint("https://x:4318").is_err());
        assert!(parse_endpoint("http://nohost").is_err());
        assert!(parse_endpoint("http://x:4318/a b").is_err());
    }

    #[test]
    fn request_ids_and_otlp_json() {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: "p1".into(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "web".into(),
                    attempt: 0,
                }),
                ..Default::default()
            }),
            sandbox_config: None,
        };
        let mut framed = vec![0u8];
        let msg = req.encode_to_vec();
        framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        framed.extend_from_slice(&msg);
        let a = request_attrs("CreateContainer", grpc_message(&framed).unwrap());
        assert_eq!(
            a,
            vec![
                ("crius.pod_sandbox_id", Attr::Str("p1".into())),
                ("k8s.container.name", Attr::Str("web".into()))
            ]
        );
        assert!(request_attrs("CreateContainer", b"\xff\xff").is_empty());
        let span = SpanData {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent: Some([3; 8]),
            name: "runtime.v1.RuntimeService/CreateContainer".into(),
            kind: 2,
            start_ns: 10,
            end_ns: 20,
            attrs: a,
            error: Some("NotFound: x".into()),
        };
        let j = encode(&[span]);
        let s = &j["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "01010101010101010101010101010101");
        assert_eq!(s["parentSpanId"], "0303030303030303");
        assert_eq!(s["startTimeUnixNano"], "10");
        assert_eq!(s["status"]["code"], 2);
        assert_eq!(s["attributes"][0]["key"], "crius.pod_sandbox_id");
        assert_eq!(
            j["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "crius"
        );
    }
}
