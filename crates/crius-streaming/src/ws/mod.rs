//! WebSocket streaming (`*.channel.k8s.io`): the channel-prefixed message codec, the server
//! handshake, and the exec/attach and port-forward sessions.
//!
//! Every message carries one channel: binary protocols prefix the payload with the channel
//! byte, the base64 protocols send text whose first character is `'0' + channel` followed by
//! the base64 payload.

pub mod frame;
pub mod tunnel;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Response};
use http_body_util::Full;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::budget::{Budget, Chunk};
use crate::remotecommand::{ResizeDecoder, Session};
use crate::status;
use crate::Backend;
use frame::{Message, MessageReader};

pub const V5_BINARY: &str = "v5.channel.k8s.io";
pub const V4_BINARY: &str = "v4.channel.k8s.io";
pub const V4_BASE64: &str = "v4.base64.channel.k8s.io";
pub const V1_BINARY: &str = "channel.k8s.io";
pub const V1_BASE64: &str = "base64.channel.k8s.io";
pub const PORTFORWARD: &str = "portforward.k8s.io";

/// Server preference does not matter (the client's order wins); this is the supported set.
pub const REMOTECOMMAND_PROTOCOLS: &[&str] =
    &[V5_BINARY, V4_BINARY, V4_BASE64, V1_BINARY, V1_BASE64];
/// Port forwarding: the channel protocols, and SPDY tunnelled through binary messages (what
/// client-go, i.e. kubectl and crictl 1.31+, use with the WebSocket transport).
pub const PORTFORWARD_PROTOCOLS: &[&str] =
    &[tunnel::SPDY_PORTFORWARD, V4_BINARY, V4_BASE64, PORTFORWARD];

/// Ports one WebSocket port-forward session may name (two channels each, numbered in a byte).
pub const MAX_PORTS: usize = 64;

pub const CHANNEL_STDIN: u8 = 0;
pub const CHANNEL_STDOUT: u8 = 1;
pub const CHANNEL_STDERR: u8 = 2;
pub const CHANNEL_ERROR: u8 = 3;
pub const CHANNEL_RESIZE: u8 = 4;
/// v5: a message on this channel whose payload is a channel number half-closes that channel.
pub const CHANNEL_CLOSE: u8 = 255;

/// Largest payload put into one message; keeps latency low and frames small.
const CHUNK: usize = 32 * 1024;

/// Messages from the client queued towards a slow consumer before the reader stops reading.
const INBOUND_QUEUE: usize = 32;

/// Encodes a channel message as `(opcode, payload)`.
pub fn encode_channel(channel: u8, data: &[u8], base64: bool) -> (u8, Vec<u8>) {
    if base64 {
        let mut out = Vec::with_capacity(1 + data.len().div_ceil(3) * 4);
        out.push(b'0'.wrapping_add(channel));
        out.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(data)
                .as_bytes(),
        );
        (frame::OP_TEXT, out)
    } else {
        let mut out = Vec::with_capacity(1 + data.len());
        out.push(channel);
        out.extend_from_slice(data);
        (frame::OP_BINARY, out)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelError {
    #[error("empty websocket message carries no channel")]
    Empty,
    #[error("invalid base64 in channel message: {0}")]
    Base64(String),
}

/// Splits a received text/binary message into channel and payload.
pub fn decode_channel(payload: &[u8], base64: bool) -> Result<(u8, Vec<u8>), ChannelError> {
    let (&first, rest) = payload.split_first().ok_or(ChannelError::Empty)?;
    if base64 {
        let data = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|e| ChannelError::Base64(e.to_string()))?;
        Ok((first.wrapping_sub(b'0'), data))
    } else {
        Ok((first, rest.to_vec()))
    }
}

pub(crate) fn handshake_response(
    key: &str,
    protocol: Option<&'static str>,
) -> Result<Response<Full<Bytes>>, String> {
    let accept = HeaderValue::from_str(&frame::accept_key(key))
        .map_err(|e| format!("building Sec-WebSocket-Accept: {e}"))?;
    let mut resp = Response::new(Full::new(Bytes::new()));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert("sec-websocket-accept", accept);
    if let Some(p) = protocol {
        h.insert("sec-websocket-protocol", HeaderValue::from_static(p));
    }
    Ok(resp)
}

/// What the writer task sends.
enum Out {
    Channel(u8, Vec<u8>),
    Pong(Vec<u8>),
    Close(u16),
}

/// Owns the write half: encodes and writes messages in order until the queue closes or a
/// `Close` was written.
fn spawn_writer<W: AsyncWrite + Unpin + Send + 'static>(
    mut wr: W,
    mut rx: mpsc::Receiver<Out>,
    base64: bool,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            let (bytes, last) = match out {
                Out::Channel(ch, data) => {
                    let (op, payload) = encode_channel(ch, &data, base64);
                    (frame::encode(true, op, &payload, None), false)
                }
                Out::Pong(p) => (frame::encode(true, frame::OP_PONG, &p, None), false),
                Out::Close(code) => (
                    frame::encode(true, frame::OP_CLOSE, &code.to_be_bytes(), None),
                    true,
                ),
            };
            if let Err(e) = wr.write_all(&bytes).await {
                tracing::debug!(error = %e, "websocket write failed");
                return;
            }
            if last {
                break;
            }
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    })
}

/// Copies `src` into `channel` messages until EOF.
fn spawn_output_pump<R: AsyncRead + Unpin + Send + 'static>(
    mut src: R,
    channel: u8,
    tx: mpsc::Sender<Out>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match src.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .send(Out::Channel(channel, buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    })
}

/// Waits (bounded) for the client to answer our close and hang up. Closing a socket with
/// unread input makes the kernel send RST, which can destroy output the client has not read
/// yet, such as the exit status.
async fn linger(mut reader: JoinHandle<()>) {
    if tokio::time::timeout(Duration::from_secs(2), &mut reader)
        .await
        .is_err()
    {
        reader.abort();
    }
}

fn is_base64(protocol: Option<&str>) -> bool {
    protocol.is_some_and(|p| p.contains("base64"))
}

/// Serves one exec/attach over an upgraded WebSocket connection.
pub(crate) async fn serve_remotecommand<IO>(
    io: IO,
    protocol: Option<&'static str>,
    session: Session,
) where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let base64 = is_base64(protocol);
    let v4_status = matches!(protocol, Some(V4_BINARY | V4_BASE64 | V5_BINARY));
    let v5 = protocol == Some(V5_BINARY);
    let (rd, wr) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::channel::<Out>(64);
    let writer = spawn_writer(wr, out_rx, base64);

    let (pipes, streams) = session.pipes(true);
    // The kubelet announces the session with one empty message on the lowest channel it will
    // write to; clients wait for it before sending stdin.
    let first = if pipes.stdout.is_some() {
        CHANNEL_STDOUT
    } else if pipes.stderr.is_some() {
        CHANNEL_STDERR
    } else {
        CHANNEL_ERROR
    };
    let _ = out_tx.send(Out::Channel(first, Vec::new())).await;

    let mut pumps = Vec::new();
    if let Some(stdout) = pipes.stdout {
        pumps.push(spawn_output_pump(stdout, CHANNEL_STDOUT, out_tx.clone()));
    }
    if let Some(stderr) = pipes.stderr {
        pumps.push(spawn_output_pump(stderr, CHANNEL_STDERR, out_tx.clone()));
    }

    // stdin is written from its own task behind a short queue: a backend that is slow to read
    // stdin stalls the reader only once the queue is full. That backpressure is the only flow
    // control WebSocket has; without it a client could make us buffer without bound.
    let (stdin_tx, stdin_task) = match pipes.stdin {
        Some(mut pipe) => {
            let (tx, mut rx) = mpsc::channel::<Chunk>(INBOUND_QUEUE);
            let task = tokio::spawn(async move {
                while let Some(data) = rx.recv().await {
                    if pipe.write_all(&data).await.is_err() {
                        // The backend stopped reading stdin; drain and discard.
                        continue;
                    }
                }
                let _ = pipe.shutdown().await;
            });
            (Some(tx), Some(task))
        }
        None => (None, None),
    };
    let resize_tx = pipes.resize;
    let reader_out = out_tx.clone();
    let budget = Budget::new();
    let mut reader = tokio::spawn(async move {
        let mut stdin_tx = stdin_tx;
        let mut resize = ResizeDecoder::default();
        let mut msgs = MessageReader::new(rd);
        loop {
            let msg = match msgs.next().await {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "websocket read failed");
                    return;
                }
            };
            let payload = match msg {
                Message::Text(p) | Message::Binary(p) => p,
                Message::Ping(p) => {
                    let _ = reader_out.send(Out::Pong(p)).await;
                    continue;
                }
                Message::Pong(_) => continue,
                Message::Close(_) => {
                    let _ = reader_out.send(Out::Close(1000)).await;
                    return;
                }
            };
            let (channel, data) = match decode_channel(&payload, base64) {
                Ok(cd) => cd,
                Err(ChannelError::Empty) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "dropping websocket message");
                    continue;
                }
            };
            match channel {
                CHANNEL_STDIN => {
                    if let Some(tx) = &stdin_tx {
                        let _ = tx.send(budget.charge(data).await).await;
                    }
                }
                CHANNEL_RESIZE => {
                    if let Some(tx) = &resize_tx {
                        for size in resize.push(&data) {
                            let _ = tx.send(size).await;
                        }
                    }
                }
                CHANNEL_CLOSE if v5 && data.first() == Some(&CHANNEL_STDIN) => {
                    stdin_tx = None;
                }
                _ => {}
            }
        }
    });

    let client_gone = async {
        let _ = (&mut reader).await;
    };
    let outcome = session.run(streams, client_gone).await;
    match outcome {
        Some(outcome) => {
            // Deliver the tail of the output before the status: the client stops reading
            // output channels once it has the status.
            for p in pumps {
                let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
            }
            if let Some(bytes) = status::encode(&outcome, session.cmd(), v4_status) {
                let _ = out_tx.send(Out::Channel(CHANNEL_ERROR, bytes)).await;
            }
            let _ = out_tx.send(Out::Close(1000)).await;
            drop(out_tx);
            let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
            linger(reader).await;
        }
        None => {
            for p in pumps {
                p.abort();
            }
            drop(out_tx);
            writer.abort();
        }
    }
    if let Some(t) = stdin_task {
        t.abort();
    }
}

/// Serves port forwarding over WebSocket: for the i-th port, channel `2i` carries data both
/// ways and `2i+1` carries errors; each begins with the port number (u16 little endian), as
/// the kubelet sends it. The connection ends when every forwarded connection has ended.
pub(crate) async fn serve_port_forward<IO>(
    io: IO,
    protocol: Option<&'static str>,
    backend: Arc<dyn Backend>,
    pod: String,
    ports: Vec<u16>,
) where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let base64 = is_base64(protocol);
    let (rd, wr) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::channel::<Out>(64);
    let writer = spawn_writer(wr, out_rx, base64);

    let mut inbound = Vec::new();
    let mut forwards = Vec::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let data_ch = (2 * i) as u8;
        let err_ch = data_ch.wrapping_add(1);
        let _ = out_tx
            .send(Out::Channel(data_ch, port.to_le_bytes().to_vec()))
            .await;
        let _ = out_tx
            .send(Out::Channel(err_ch, port.to_le_bytes().to_vec()))
            .await;
        let (tx, rx) = mpsc::channel::<Chunk>(INBOUND_QUEUE);
        inbound.push(tx);
        let backend = backend.clone();
        let pod = pod.clone();
        let out = out_tx.clone();
        forwards.push(tokio::spawn(async move {
            forward_one(backend, pod, port, data_ch, err_ch, rx, out).await
        }));
    }

    let reader_out = out_tx.clone();
    let budget = Budget::new();
    let mut reader = tokio::spawn(async move {
        let mut msgs = MessageReader::new(rd);
        loop {
            let payload = match msgs.next().await {
                Ok(Some(Message::Text(p) | Message::Binary(p))) => p,
                Ok(Some(Message::Ping(p))) => {
                    let _ = reader_out.send(Out::Pong(p)).await;
                    continue;
                }
                Ok(Some(Message::Pong(_))) => continue,
                Ok(Some(Message::Close(_))) => {
                    let _ = reader_out.send(Out::Close(1000)).await;
                    return;
                }
                Ok(None) | Err(_) => return,
            };
            let Ok((channel, data)) = decode_channel(&payload, base64) else {
                continue;
            };
            // Only even (data) channels carry client bytes; error channels are write-only.
            if channel % 2 == 0 {
                if let Some(tx) = inbound.get(channel as usize / 2) {
                    let _ = tx.send(budget.charge(data).await).await;
                }
            }
        }
    });

    let aborts: Vec<_> = forwards.iter().map(JoinHandle::abort_handle).collect();
    let all_done = futures::future::join_all(forwards);
    tokio::select! {
        _ = all_done => {
            let _ = out_tx.send(Out::Close(1000)).await;
            drop(out_tx);
            let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
            linger(reader).await;
        }
        _ = &mut reader => {
            // The client left: aborting the forwards closes the pod-side connections (a
            // dropped JoinHandle would leave them running until the pod spoke).
            for a in aborts {
                a.abort();
            }
            drop(out_tx);
            writer.abort();
        }
    }
}

async fn forward_one(
    backend: Arc<dyn Backend>,
    pod: String,
    port: u16,
    data_ch: u8,
    err_ch: u8,
    mut inbound: mpsc::Receiver<Chunk>,
    out: mpsc::Sender<Out>,
) {
    let tcp = match backend.port_forward(&pod, port).await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {pod}: {e}");
            let _ = out.send(Out::Channel(err_ch, msg.into_bytes())).await;
            return;
        }
    };
    let (mut tcp_rd, mut tcp_wr) = tcp.into_split();
    let to_pod = tokio::spawn(async move {
        while let Some(data) = inbound.recv().await {
            if tcp_wr.write_all(&data).await.is_err() {
                return;
            }
        }
        let _ = tcp_wr.shutdown().await;
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        match tcp_rd.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if out
                    .send(Out::Channel(data_ch, buf[..n].to_vec()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Err(e) => {
                let msg = format!("error forwarding port {port} to pod {pod}: {e}");
                let _ = out.send(Out::Channel(err_ch, msg.into_bytes())).await;
                break;
            }
        }
    }
    to_pod.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_channel_prefix() {
        let (op, p) = encode_channel(CHANNEL_STDOUT, b"hi", false);
        assert_eq!(op, frame::OP_BINARY);
        assert_eq!(p, [0x01, b'h', b'i']);
        assert_eq!(decode_channel(&p, false), Ok((1, b"hi".to_vec())));
        // v5 close of stdin as a masked client frame, built by hand.
        let wire = frame::encode(true, frame::OP_BINARY, &[255, 0], Some([1, 2, 3, 4]));
        assert_eq!(wire, [0x82, 0x82, 1, 2, 3, 4, 255 ^ 1, 2]);
    }

    #[test]
    fn base64_channel_prefix() {
        let (op, p) = encode_channel(CHANNEL_STDERR, b"hello", true);
        assert_eq!(op, frame::OP_TEXT);
        assert_eq!(p, b"2aGVsbG8=");
        assert_eq!(decode_channel(b"0aGk=", true), Ok((0, b"hi".to_vec())));
        assert!(matches!(
            decode_channel(b"0!!", true),
            Err(ChannelError::Base64(_))
        ));
        assert_eq!(decode_channel(b"", false), Err(ChannelError::Empty));
    }

    #[test]
    fn masked_client_stdin_frame_decodes() {
        // "0" channel byte + "ls\n", masked with 0xA1B2C3D4: built byte by byte.
        let m = [0xA1, 0xB2, 0xC3, 0xD4];
        let payload = [0x00, b'l', b's', b'\n'];
        let mut wire = vec![0x82, 0x84];
        wire.extend_from_slice(&m);
        wire.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        let (f, _) = frame::decode(&wire)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no frame"));
        assert_eq!(decode_channel(&f.payload, false), Ok((0, b"ls\n".to_vec())));
    }
}
