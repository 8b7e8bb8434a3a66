//! SPDY/3.1 streaming (kubectl's classic transport): frame codec, the server session for
//! remotecommand (exec/attach) and port forwarding.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response};
use http_body_util::Full;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

pub mod frame;
mod session;
pub use session::MAX_STREAMS;

use crate::remotecommand::{ResizeDecoder, Session};
use crate::{status, Backend};
use session::NewStream;

pub const UPGRADE_TOKEN: &str = "SPDY/3.1";
pub const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
pub const ACCEPTED_PROTOCOLS_HEADER: &str = "x-accepted-stream-protocol-versions";

pub const REMOTECOMMAND_V4: &str = "v4.channel.k8s.io";
pub const REMOTECOMMAND_V3: &str = "v3.channel.k8s.io";
pub const REMOTECOMMAND_V2: &str = "v2.channel.k8s.io";
pub const REMOTECOMMAND_V1: &str = "channel.k8s.io";
pub const PORTFORWARD_V1: &str = "portforward.k8s.io";

pub const REMOTECOMMAND_PROTOCOLS: &[&str] = &[
    REMOTECOMMAND_V4,
    REMOTECOMMAND_V3,
    REMOTECOMMAND_V2,
    REMOTECOMMAND_V1,
];
pub const PORTFORWARD_PROTOCOLS: &[&str] = &[PORTFORWARD_V1];

pub(crate) fn handshake_response(
    protocol: Option<&'static str>,
) -> Result<Response<Full<Bytes>>, String> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        http::header::UPGRADE,
        HeaderValue::from_static(UPGRADE_TOKEN),
    );
    if let Some(p) = protocol {
        h.insert(PROTOCOL_HEADER, HeaderValue::from_static(p));
    }
    Ok(resp)
}

fn version_of(protocol: Option<&str>) -> u8 {
    match protocol {
        Some(REMOTECOMMAND_V4) => 4,
        Some(REMOTECOMMAND_V3) => 3,
        Some(REMOTECOMMAND_V2) => 2,
        // No negotiation at all: the kubelet falls back to v1 as well.
        _ => 1,
    }
}

/// Copies received stream data into `dst`, returning window as it is consumed; dropping `dst`
/// at the end delivers EOF.
fn spawn_inbound_pump<W>(
    conn: Arc<session::Conn>,
    id: u32,
    mut data: mpsc::Receiver<crate::budget::Chunk>,
    mut dst: W,
) -> JoinHandle<()>
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut open = true;
        while let Some(chunk) = data.recv().await {
            if open && dst.write_all(&chunk).await.is_err() {
                // The consumer went away; keep granting window so the peer is not stalled.
                open = false;
            }
            conn.consumed(id, chunk.len()).await;
        }
        let _ = dst.shutdown().await;
    })
}

/// Copies `src` to stream `id` and half-closes the stream at EOF.
fn spawn_outbound_pump<R>(conn: Arc<session::Conn>, id: u32, mut src: R) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match src.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if conn.send_data(id, &buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = conn.send_fin(id).await;
    })
}

#[derive(Default)]
struct Expected {
    error: Option<NewStream>,
    stdin: Option<NewStream>,
    stdout: Option<NewStream>,
    stderr: Option<NewStream>,
    resize: Option<NewStream>,
}

impl Expected {
    fn count(&self) -> usize {
        [
            self.error.is_some(),
            self.stdin.is_some(),
            self.stdout.is_some(),
            self.stderr.is_some(),
            self.resize.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }
}

/// Serves one exec/attach over an upgraded SPDY connection.
pub(crate) async fn serve_remotecommand<IO>(
    io: IO,
    protocol: Option<&'static str>,
    session: Session,
    timeout: Duration,
) where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let version = version_of(protocol);
    let resize_supported = version >= 3;
    let mut running = session::start(io);
    let conn = running.conn.clone();
    let (pipes, streams) = session.pipes(resize_supported);

    let wanted = 1
        + usize::from(pipes.stdin.is_some())
        + usize::from(pipes.stdout.is_some())
        + usize::from(pipes.stderr.is_some())
        + usize::from(pipes.resize.is_some());
    let mut got = Expected::default();
    let deadline = tokio::time::Instant::now() + timeout;
    while got.count() < wanted {
        let s = match tokio::time::timeout_at(deadline, running.streams.recv()).await {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(_) => {
                tracing::debug!(
                    wanted,
                    got = got.count(),
                    "timed out waiting for SPDY streams"
                );
                session::finish(running).await;
                return;
            }
        };
        let kind = s.header(HEADER_STREAM_TYPE).unwrap_or_default().to_string();
        let slot = match kind.as_str() {
            STREAM_ERROR => &mut got.error,
            STREAM_STDIN if pipes.stdin.is_some() => &mut got.stdin,
            STREAM_STDOUT if pipes.stdout.is_some() => &mut got.stdout,
            STREAM_STDERR if pipes.stderr.is_some() => &mut got.stderr,
            STREAM_RESIZE if pipes.resize.is_some() => &mut got.resize,
            _ => {
                conn.reset(s.id, frame::RST_REFUSED_STREAM).await;
                continue;
            }
        };
        if slot.is_some() {
            conn.reset(s.id, frame::RST_PROTOCOL_ERROR).await;
            continue;
        }
        *slot = Some(s);
    }

    let mut tasks = Vec::new();
    if let (Some(s), Some(pipe)) = (got.stdin.take(), pipes.stdin) {
        tasks.push(spawn_inbound_pump(conn.clone(), s.id, s.data, pipe));
    }
    let mut outputs = Vec::new();
    if let (Some(s), Some(pipe)) = (got.stdout.take(), pipes.stdout) {
        outputs.push(spawn_outbound_pump(conn.clone(), s.id, pipe));
    }
    if let (Some(s), Some(pipe)) = (got.stderr.take(), pipes.stderr) {
        outputs.push(spawn_outbound_pump(conn.clone(), s.id, pipe));
    }
    if let (Some(s), Some(tx)) = (got.resize.take(), pipes.resize) {
        let conn = conn.clone();
        let mut data = s.data;
        tasks.push(tokio::spawn(async move {
            let mut dec = ResizeDecoder::default();
            while let Some(chunk) = data.recv().await {
                conn.consumed(s.id, chunk.len()).await;
                for size in dec.push(&chunk) {
                    if tx.send(size).await.is_err() {
                        return;
                    }
                }
            }
        }));
    }
    let error_id = got.error.as_ref().map(|s| s.id);

    let outcome = {
        let reader = &mut running.reader;
        let client_gone = async move {
            let _ = reader.await;
        };
        session.run(streams, client_gone).await
    };
    match outcome {
        Some(outcome) => {
            for o in outputs {
                let _ = tokio::time::timeout(Duration::from_secs(5), o).await;
            }
            if let Some(id) = error_id {
                if let Some(bytes) = status::encode(&outcome, session.cmd(), version >= 4) {
                    let _ = conn.send_data(id, &bytes).await;
                }
                let _ = conn.send_fin(id).await;
            }
            for t in &tasks {
                t.abort();
            }
            session::finish(running).await;
        }
        None => {
            for t in outputs.iter().chain(tasks.iter()) {
                t.abort();
            }
            running.writer.abort();
        }
    }
}

struct PendingPair {
    data: Option<NewStream>,
    error: Option<NewStream>,
    since: tokio::time::Instant,
}

/// Serves port forwarding over an upgraded SPDY connection: the client opens an error and a
/// data stream per forwarded connection, paired by `requestID`, with the port in `port`.
pub(crate) async fn serve_port_forward<IO>(
    io: IO,
    backend: Arc<dyn Backend>,
    pod: String,
    timeout: Duration,
) where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut running = session::start(io);
    let conn = running.conn.clone();
    let mut pending: HashMap<String, PendingPair> = HashMap::new();
    // Dropping the set aborts every forward, closing the pod-side connections.
    let mut forwards = JoinSet::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(1).min(timeout));
    loop {
        tokio::select! {
            s = running.streams.recv() => {
                let Some(s) = s else { break };
                let kind = s.header(HEADER_STREAM_TYPE).unwrap_or_default().to_string();
                // Old clients send no requestID: the kubelet pairs an error stream with the data
                // stream opened right after it (ids differ by 2).
                let request_id = match (s.header(HEADER_REQUEST_ID), kind.as_str()) {
                    (Some(r), _) => r.to_string(),
                    (None, STREAM_ERROR) => s.id.to_string(),
                    (None, _) => s.id.saturating_sub(2).to_string(),
                };
                let entry = pending.entry(request_id.clone()).or_insert_with(|| PendingPair {
                    data: None,
                    error: None,
                    since: tokio::time::Instant::now(),
                });
                let slot = match kind.as_str() {
                    STREAM_DATA => &mut entry.data,
                    STREAM_ERROR => &mut entry.error,
                    _ => {
                        conn.reset(s.id, frame::RST_REFUSED_STREAM).await;
                        continue;
                    }
                };
                if slot.is_some() {
                    conn.reset(s.id, frame::RST_PROTOCOL_ERROR).await;
                    continue;
                }
                *slot = Some(s);
                if entry.data.is_some() && entry.error.is_some() {
                    if let Some(PendingPair { data: Some(data), error: Some(error), .. }) =
                        pending.remove(&request_id)
                    {
                        forwards.spawn(forward_pair(conn.clone(), backend.clone(), pod.clone(), data, error));
                    }
                }
            }
            _ = sweep.tick() => {
                let now = tokio::time::Instant::now();
                let expired: Vec<String> = pending
                    .iter()
                    .filter(|(_, p)| now.duration_since(p.since) >= timeout)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in expired {
                    if let Some(p) = pending.remove(&k) {
                        if let Some(e) = p.error {
                            let msg = format!("timed out waiting for the data stream of request {k}");
                            let _ = conn.send_data(e.id, msg.as_bytes()).await;
                            let _ = conn.send_fin(e.id).await;
                        }
                        if let Some(d) = p.data {
                            conn.reset(d.id, frame::RST_CANCEL).await;
                        }
                    }
                }
            }
            Some(_) = forwards.join_next(), if !forwards.is_empty() => {}
        }
    }
    // The reader ended: the client is gone.
    forwards.abort_all();
    running.writer.abort();
}

async fn forward_pair(
    conn: Arc<session::Conn>,
    backend: Arc<dyn Backend>,
    pod: String,
    data: NewStream,
    error: NewStream,
) {
    let fail = |msg: String| {
        let conn = conn.clone();
        async move {
            let _ = conn.send_data(error.id, msg.as_bytes()).await;
            let _ = conn.send_fin(error.id).await;
            let _ = conn.send_fin(data.id).await;
        }
    };
    let port = match data.header(HEADER_PORT).map(|p| p.trim().parse::<u16>()) {
        Some(Ok(p)) if p > 0 => p,
        _ => {
            let raw = data.header(HEADER_PORT).unwrap_or_default().to_string();
            fail(format!("invalid port {raw:?} in port forward request")).await;
            return;
        }
    };
    let tcp = match backend.port_forward(&pod, port).await {
        Ok(t) => t,
        Err(e) => {
            fail(format!("error forwarding port {port} to pod {pod}: {e}")).await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let (tcp_rd, tcp_wr) = tcp.into_split();
    let mut to_pod = spawn_inbound_pump(conn.clone(), data.id, data.data, tcp_wr);
    let mut from_pod = spawn_outbound_pump(conn.clone(), data.id, tcp_rd);
    tokio::select! {
        _ = &mut from_pod => {
            // The pod closed its side. client-go answers our FIN by resetting the stream (or
            // has half-closed it already), which ends `to_pod`.
            let _ = to_pod.await;
        }
        _ = &mut to_pod => {
            // The client half-closed (or reset) the stream. client-go half-closes when its
            // local connection ends and then forgets the stream without a reset, so from here
            // on nothing tells a client that waits for the rest of the answer from one that has
            // left: the pod gets a grace period to finish, then its connection is closed (as
            // containerd does, after one second).
            if tokio::time::timeout(CLOSE_GRACE, &mut from_pod).await.is_err() {
                from_pod.abort();
                let _ = from_pod.await;
                let _ = conn.send_fin(data.id).await;
            }
        }
    }
    let _ = conn.send_fin(error.id).await;
}

/// How long a pod may keep sending on a forwarded connection after the client half-closed it.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

pub const HEADER_STREAM_TYPE: &str = "streamtype";
pub const HEADER_PORT: &str = "port";
pub const HEADER_REQUEST_ID: &str = "requestid";
pub const STREAM_ERROR: &str = "error";
pub const STREAM_STDIN: &str = "stdin";
pub const STREAM_STDOUT: &str = "stdout";
pub const STREAM_STDERR: &str = "stderr";
pub const STREAM_RESIZE: &str = "resize";
pub const STREAM_DATA: &str = "data";
