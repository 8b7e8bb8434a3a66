//! A byte stream tunnelled through WebSocket binary messages, as client-go does for port
//! forwarding since the WebSocket transition (subprotocol `SPDY/3.1+portforward.k8s.io`): the
//! SPDY/3.1 byte stream is cut into binary messages in whatever sizes the writer produces, and the
//! reader concatenates their payloads. There is no channel byte and no HTTP inside the tunnel.
//!
//! [`spawn`] turns an upgraded WebSocket connection into a plain byte stream ([`Tunnel`]): two
//! pump tasks move payloads between the WebSocket and in-memory pipes, answer pings and carry
//! the close handshake. The pipes are bounded, so a slow consumer stops the reader (TCP
//! backpressure) instead of growing a buffer.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rand::RngCore as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::frame::{self, Message, MessageReader};

/// What client-go puts in front of the SPDY protocol name when it tunnels SPDY over WebSocket.
pub const SPDY_PREFIX: &str = "SPDY/3.1+";
/// The one tunnelled protocol clients use (port forwarding).
pub const SPDY_PORTFORWARD: &str = "SPDY/3.1+portforward.k8s.io";

/// Bytes buffered between the WebSocket and the tunnelled protocol in each direction.
const DUPLEX_CAPACITY: usize = 64 * 1024;
/// Largest payload put into one outgoing binary message.
const CHUNK: usize = 32 * 1024;

/// Which end of the WebSocket we are: clients mask their frames, servers must not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// The pump tasks of one tunnel.
pub struct Pumps {
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Pumps {
    /// After the tunnelled session has dropped its end: lets the writer send the close frame and
    /// half-close (bounded), then waits (bounded) for the peer to close too, so unread input does
    /// not turn our close into a RST that destroys data the peer has not read yet.
    pub async fn finish(self) {
        let Pumps {
            mut reader,
            mut writer,
        } = self;
        if tokio::time::timeout(Duration::from_secs(5), &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
        if tokio::time::timeout(Duration::from_secs(2), &mut reader)
            .await
            .is_err()
        {
            reader.abort();
        }
    }

    /// Stops both pumps at once (the peer is gone or misbehaved).
    pub fn abort(&self) {
        self.reader.abort();
        self.writer.abort();
    }
}

enum Control {
    Pong(Vec<u8>),
    Close(u16),
}

fn mask(role: Role) -> Option<[u8; 4]> {
    match role {
        Role::Server => None,
        Role::Client => {
            let mut m = [0u8; 4];
            rand::rng().fill_bytes(&mut m);
            Some(m)
        }
    }
}

/// The tunnelled byte stream: reads what the peer sent, writes what goes to the peer. The two
/// directions are separate in-memory pipes, so dropping (or shutting down) the write side sends
/// a normal close even while the read side is still held, and dropping the read side makes
/// the reader discard the peer's data instead of blocking.
pub struct Tunnel {
    pub rd: DuplexStream,
    pub wr: DuplexStream,
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.rd).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.wr).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.wr).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.wr).poll_shutdown(cx)
    }
}

/// Starts tunnelling over an upgraded WebSocket connection (`rd` must yield whatever arrived
/// right after the handshake first). EOF on [`Tunnel::rd`] means the peer closed the WebSocket.
pub fn spawn<R, W>(rd: R, wr: W, role: Role) -> (Tunnel, Pumps)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (our_rd, to_inner) = tokio::io::duplex(DUPLEX_CAPACITY);
    let (our_wr, from_inner) = tokio::io::duplex(DUPLEX_CAPACITY);
    let (ctl_tx, ctl_rx) = mpsc::channel::<Control>(8);
    let reader = tokio::spawn(read_pump(rd, to_inner, ctl_tx));
    let writer = tokio::spawn(write_pump(wr, from_inner, ctl_rx, role));
    (
        Tunnel {
            rd: our_rd,
            wr: our_wr,
        },
        Pumps { reader, writer },
    )
}

/// WebSocket → tunnel: binary payloads are written in order; pings are answered; a close is
/// echoed and ends the stream (EOF for the tunnelled protocol). A text message is a protocol
/// error (client-go refuses them too) and closes with 1003. Once the tunnelled side stopped
/// reading, the peer's data is drained and dropped until it closes (bounded by
/// [`Pumps::finish`]), so our close does not turn into a RST.
async fn read_pump<R, W>(rd: R, to_inner: W, ctl: mpsc::Sender<Control>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut to_inner = Some(to_inner);
    let mut msgs = MessageReader::new(rd);
    loop {
        match msgs.next().await {
            Ok(Some(Message::Binary(p))) => {
                let Some(w) = to_inner.as_mut() else { continue };
                if !p.is_empty() && w.write_all(&p).await.is_err() {
                    to_inner = None;
                }
            }
            Ok(Some(Message::Ping(p))) => {
                let _ = ctl.send(Control::Pong(p)).await;
            }
            Ok(Some(Message::Pong(_))) => {}
            Ok(Some(Message::Close(_))) => {
                let _ = ctl.send(Control::Close(1000)).await;
                break;
            }
            Ok(Some(Message::Text(_))) => {
                tracing::debug!("text message in a SPDY tunnel; closing");
                let _ = ctl.send(Control::Close(1003)).await;
                break;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "websocket tunnel read failed");
                let _ = ctl.send(Control::Close(1002)).await;
                break;
            }
        }
    }
    if let Some(mut w) = to_inner {
        let _ = w.shutdown().await;
    }
}

/// Tunnel → WebSocket, plus the control frames the reader asks for. Ends after a close frame was
/// written: on EOF of the tunnelled side (normal close 1000) or when the reader asks.
async fn write_pump<R, W>(
    mut wr: W,
    mut from_inner: R,
    mut ctl: mpsc::Receiver<Control>,
    role: Role,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    let mut ctl_open = true;
    loop {
        let (bytes, last) = tokio::select! {
            c = ctl.recv(), if ctl_open => match c {
                Some(Control::Pong(p)) => (frame::encode(true, frame::OP_PONG, &p, mask(role)), false),
                Some(Control::Close(code)) => {
                    (frame::encode(true, frame::OP_CLOSE, &code.to_be_bytes(), mask(role)), true)
                }
                None => {
                    ctl_open = false;
                    continue;
                }
            },
            r = from_inner.read(&mut buf) => match r {
                Ok(0) | Err(_) => (frame::encode(true, frame::OP_CLOSE, &1000u16.to_be_bytes(), mask(role)), true),
                Ok(n) => (frame::encode(true, frame::OP_BINARY, &buf[..n], mask(role)), false),
            },
        };
        if let Err(e) = wr.write_all(&bytes).await {
            tracing::debug!(error = %e, "websocket tunnel write failed");
            return;
        }
        if last {
            break;
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer speaking raw WebSocket frames (as a client: masked) to a server-side tunnel.
    #[tokio::test]
    async fn payloads_cross_in_both_directions_and_close_is_echoed() {
        let (server_io, mut peer) = tokio::io::duplex(1 << 16);
        let (rd, wr) = tokio::io::split(server_io);
        let (mut stream, pumps) = spawn(rd, wr, Role::Server);

        // Two binary messages (one fragmented) arrive as one byte stream; a ping is answered.
        let m = Some([9, 8, 7, 6]);
        let mut wire = frame::encode(true, frame::OP_BINARY, b"abc", m);
        wire.extend(frame::encode(false, frame::OP_BINARY, b"de", m));
        wire.extend(frame::encode(true, frame::OP_PING, b"p", m));
        wire.extend(frame::encode(true, frame::OP_CONTINUATION, b"f", m));
        assert!(peer.write_all(&wire).await.is_ok());
        let mut got = [0u8; 6];
        assert!(stream.read_exact(&mut got).await.is_ok());
        assert_eq!(&got, b"abcdef");

        // Bytes written to the stream leave as unmasked binary messages.
        assert!(stream.write_all(b"xyz").await.is_ok());
        let mut msgs = MessageReader::new(&mut peer);
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match msgs.next().await {
                Ok(Some(m)) => seen.push(m),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(seen.contains(&Message::Pong(b"p".to_vec())), "{seen:?}");
        assert!(seen.contains(&Message::Binary(b"xyz".to_vec())), "{seen:?}");

        // The peer closes: the tunnelled side sees EOF and the close is echoed.
        drop(msgs);
        let close = frame::encode(true, frame::OP_CLOSE, &1000u16.to_be_bytes(), m);
        assert!(peer.write_all(&close).await.is_ok());
        let mut rest = Vec::new();
        assert!(stream.read_to_end(&mut rest).await.is_ok());
        assert!(rest.is_empty());
        let mut msgs = MessageReader::new(&mut peer);
        assert_eq!(
            msgs.next().await.ok().flatten(),
            Some(Message::Close(Some(1000)))
        );
        drop(stream);
        pumps.finish().await;
    }

    #[tokio::test]
    async fn dropping_the_stream_sends_a_normal_close_and_text_is_refused() {
        let (server_io, peer) = tokio::io::duplex(1 << 16);
        let (rd, wr) = tokio::io::split(server_io);
        let (stream, pumps) = spawn(rd, wr, Role::Server);
        drop(stream);
        let mut msgs = MessageReader::new(peer);
        assert_eq!(
            msgs.next().await.ok().flatten(),
            Some(Message::Close(Some(1000)))
        );
        pumps.abort();

        let (server_io, mut peer) = tokio::io::duplex(1 << 16);
        let (rd, wr) = tokio::io::split(server_io);
        let (mut stream, _pumps) = spawn(rd, wr, Role::Server);
        let wire = frame::encode(true, frame::OP_TEXT, b"nope", Some([1, 2, 3, 4]));
        assert!(peer.write_all(&wire).await.is_ok());
        let mut rest = Vec::new();
        assert!(stream.read_to_end(&mut rest).await.is_ok());
        assert!(rest.is_empty(), "text carries no tunnel bytes");
        let mut msgs = MessageReader::new(peer);
        assert_eq!(
            msgs.next().await.ok().flatten(),
            Some(Message::Close(Some(1003)))
        );
    }

    #[tokio::test]
    async fn client_role_masks_its_frames() {
        let (client_io, mut peer) = tokio::io::duplex(1 << 16);
        let (rd, wr) = tokio::io::split(client_io);
        let (mut stream, _pumps) = spawn(rd, wr, Role::Client);
        assert!(stream.write_all(b"hello").await.is_ok());
        let mut head = [0u8; 2];
        assert!(peer.read_exact(&mut head).await.is_ok());
        assert_eq!(head[0], 0x80 | frame::OP_BINARY);
        assert_eq!(head[1], 0x80 | 5, "mask bit set, 5 bytes");
    }
}
