//! WebSocket client for `*.channel.k8s.io` exec/attach and port forwarding.

use std::io::Cursor;

use rand::RngCore as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, Chain};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::{upgrade, ClientError, ExecIo, ExecOutput, ExitStatus};
use crate::ws::frame::{self, Message, MessageReader};
use crate::ws::{decode_channel, encode_channel};

type Reader = MessageReader<Chain<Cursor<Vec<u8>>, OwnedReadHalf>>;

/// Receiving half of a WebSocket streaming connection.
pub struct WsReceiver {
    rd: Reader,
    base64: bool,
    addr: String,
}

/// Sending half; frames are masked as RFC 6455 requires of clients.
pub struct WsSender {
    wr: OwnedWriteHalf,
    base64: bool,
    addr: String,
}

/// A connected client.
pub struct WsClient {
    pub tx: WsSender,
    pub rx: WsReceiver,
    /// The subprotocol the server selected (`None` if it selected none).
    pub protocol: Option<String>,
}

impl WsClient {
    /// Connects and upgrades, offering `protocols` in preference order.
    pub async fn connect(url: &str, protocols: &[&str]) -> Result<WsClient, ClientError> {
        let mut key = [0u8; 16];
        rand::rng().fill_bytes(&mut key);
        let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key);
        let mut headers = vec![
            ("Connection", "Upgrade".to_string()),
            ("Upgrade", "websocket".to_string()),
            ("Sec-WebSocket-Version", "13".to_string()),
            ("Sec-WebSocket-Key", key.clone()),
        ];
        if !protocols.is_empty() {
            headers.push(("Sec-WebSocket-Protocol", protocols.join(", ")));
        }
        let up = upgrade(url, &headers).await?;
        if up.header("sec-websocket-accept") != Some(frame::accept_key(&key).as_str()) {
            return Err(ClientError::Protocol(
                "missing or wrong Sec-WebSocket-Accept".into(),
            ));
        }
        let protocol = up.header("sec-websocket-protocol").map(str::to_string);
        if let Some(p) = &protocol {
            if !protocols.contains(&p.as_str()) {
                return Err(ClientError::Protocol(format!(
                    "server selected unoffered subprotocol {p}"
                )));
            }
        }
        let base64 = protocol.as_deref().is_some_and(|p| p.contains("base64"));
        let addr = up.addr.clone();
        let (rd, wr) = up.tcp.into_split();
        Ok(WsClient {
            tx: WsSender {
                wr,
                base64,
                addr: addr.clone(),
            },
            rx: WsReceiver {
                rd: MessageReader::new(Cursor::new(up.leftover).chain(rd)),
                base64,
                addr,
            },
            protocol,
        })
    }

    /// True when the error channel carries a v4 `Status` (v4 and v5 protocols).
    pub fn v4_status(&self) -> bool {
        self.protocol
            .as_deref()
            .is_some_and(|p| p.starts_with("v4.") || p.starts_with("v5."))
    }
}

impl WsSender {
    async fn write_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<(), ClientError> {
        let mut mask = [0u8; 4];
        rand::rng().fill_bytes(&mut mask);
        let bytes = frame::encode(true, opcode, payload, Some(mask));
        self.wr
            .write_all(&bytes)
            .await
            .map_err(|source| ClientError::Io {
                addr: self.addr.clone(),
                source,
            })
    }

    /// Sends `data` on `channel`.
    pub async fn send(&mut self, channel: u8, data: &[u8]) -> Result<(), ClientError> {
        let (op, payload) = encode_channel(channel, data, self.base64);
        self.write_frame(op, &payload).await
    }

    /// v5: half-closes `channel` (e.g. stdin).
    pub async fn close_channel(&mut self, channel: u8) -> Result<(), ClientError> {
        self.write_frame(frame::OP_BINARY, &[crate::ws::CHANNEL_CLOSE, channel])
            .await
    }

    /// Sends a terminal size on the resize channel.
    pub async fn resize(&mut self, size: crate::TermSize) -> Result<(), ClientError> {
        let json = format!(r#"{{"Width":{},"Height":{}}}"#, size.width, size.height);
        self.send(crate::ws::CHANNEL_RESIZE, json.as_bytes()).await
    }

    /// Sends a close frame (normal closure).
    pub async fn close(&mut self) -> Result<(), ClientError> {
        self.write_frame(frame::OP_CLOSE, &1000u16.to_be_bytes())
            .await
    }
}

impl WsReceiver {
    /// The next channel message, or `None` once the server closed the connection.
    pub async fn recv(&mut self) -> Result<Option<(u8, Vec<u8>)>, ClientError> {
        loop {
            let msg = self.rd.next().await.map_err(|e| match e {
                frame::FrameError::Io(source) => ClientError::Io {
                    addr: self.addr.clone(),
                    source,
                },
                other => ClientError::Protocol(other.to_string()),
            })?;
            match msg {
                None | Some(Message::Close(_)) => return Ok(None),
                Some(Message::Ping(_) | Message::Pong(_)) => continue,
                Some(Message::Text(p) | Message::Binary(p)) => {
                    return decode_channel(&p, self.base64)
                        .map(Some)
                        .map_err(|e| ClientError::Protocol(e.to_string()))
                }
            }
        }
    }
}

/// Runs one exec/attach to completion: sends resize and stdin, then collects output and the
/// status until the server closes the connection.
pub async fn exec(url: &str, protocols: &[&str], io: ExecIo) -> Result<ExecOutput, ClientError> {
    let WsClient {
        mut tx,
        mut rx,
        protocol,
    } = WsClient::connect(url, protocols).await?;
    let v4 = protocol
        .as_deref()
        .is_some_and(|p| p.starts_with("v4.") || p.starts_with("v5."));
    let v5 = protocol.as_deref() == Some(crate::ws::V5_BINARY);
    // Send and receive at once: a server applies backpressure to stdin, so writing all of it
    // before reading could deadlock against a process that echoes.
    let send = async {
        if let Some(size) = io.resize {
            tx.resize(size).await?;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        if let Some(stdin) = &io.stdin {
            for chunk in stdin.chunks(32 * 1024) {
                tx.send(crate::ws::CHANNEL_STDIN, chunk).await?;
            }
            if io.close_stdin && v5 {
                tx.close_channel(crate::ws::CHANNEL_STDIN).await?;
            }
        }
        Ok::<_, ClientError>(())
    };
    let recv = async {
        let mut out = ExecOutput {
            stdout: Vec::new(),
            stderr: Vec::new(),
            status: ExitStatus::Success,
        };
        let mut error = Vec::new();
        while let Some((ch, data)) = rx.recv().await? {
            match ch {
                crate::ws::CHANNEL_STDOUT => out.stdout.extend_from_slice(&data),
                crate::ws::CHANNEL_STDERR => out.stderr.extend_from_slice(&data),
                crate::ws::CHANNEL_ERROR => error.extend_from_slice(&data),
                _ => {}
            }
        }
        out.status = ExitStatus::decode(&error, v4);
        Ok::<_, ClientError>(out)
    };
    let (sent, out) = tokio::join!(send, recv);
    let out = out?;
    // A process may exit without reading all of stdin; that is not a client error.
    if let Err(e) = sent {
        tracing::debug!(error = %e, "stdin not fully delivered");
    }
    let _ = tx.close().await;
    Ok(out)
}

/// Forwards one connection to the single port of `url` (whose query names it), sends
/// `payload`, and returns everything the pod sent until the server closed the session. Text
/// on the error channel is returned as an error.
pub async fn port_forward_once(
    url: &str,
    protocols: &[&str],
    payload: &[u8],
) -> Result<Vec<u8>, ClientError> {
    let WsClient { mut tx, mut rx, .. } = WsClient::connect(url, protocols).await?;
    tx.send(0, payload).await?;
    let mut data = Vec::new();
    let mut error = Vec::new();
    let mut seen = [false; 2];
    while let Some((ch, bytes)) = rx.recv().await? {
        let idx = ch as usize;
        if idx < 2 && !seen[idx] {
            // The first message on each channel is the port number, not payload.
            seen[idx] = true;
            continue;
        }
        match ch {
            0 => data.extend_from_slice(&bytes),
            1 => error.extend_from_slice(&bytes),
            _ => {}
        }
    }
    if !error.is_empty() {
        return Err(ClientError::Protocol(
            String::from_utf8_lossy(&error).into_owned(),
        ));
    }
    Ok(data)
}
