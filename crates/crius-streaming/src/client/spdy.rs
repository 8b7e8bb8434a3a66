//! SPDY/3.1 client for remotecommand (exec/attach) and port forwarding, in the manner of
//! client-go: the client opens every stream (SYN_STREAM with a `streamType` header) and waits
//! for the server's SYN_REPLY before opening the next.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rand::RngCore as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};

use super::{upgrade, ClientError, ExecIo, ExecOutput, ExitStatus};
use crate::spdy::frame::{self, Frame, HeaderCompressor, HeaderDecompressor, Setting};
use crate::spdy::{
    HEADER_PORT, HEADER_REQUEST_ID, HEADER_STREAM_TYPE, STREAM_DATA, STREAM_ERROR, STREAM_RESIZE,
    STREAM_STDERR, STREAM_STDIN, STREAM_STDOUT,
};
use crate::ws::frame as ws_frame;
use crate::ws::tunnel;

const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

struct StreamSlot {
    reply: Option<oneshot::Sender<bool>>,
    data: Option<mpsc::UnboundedSender<Vec<u8>>>,
}

struct Inner {
    addr: String,
    writer: tokio::sync::Mutex<(Box<dyn AsyncWrite + Send + Unpin>, HeaderCompressor)>,
    streams: Mutex<HashMap<u32, StreamSlot>>,
    next_id: AtomicU32,
    /// Return window for every DATA frame as soon as it arrives.
    auto_window: AtomicBool,
    /// Whether our own sending honours the server's windows (flow-controlled mode).
    flow_control: bool,
    send: Mutex<SendWindows>,
    window_changed: tokio::sync::Notify,
}

/// The server's grants to us: per stream and for the whole session (SPDY/3.1).
struct SendWindows {
    session: i64,
    streams: HashMap<u32, i64>,
    closed: bool,
}

impl Inner {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<u32, StreamSlot>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, SendWindows> {
        self.send.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes up to `want` bytes of window for `id`, waiting for WINDOW_UPDATEs if needed.
    async fn reserve(&self, id: u32, want: usize) -> Result<usize, ClientError> {
        if !self.flow_control {
            return Ok(want);
        }
        loop {
            let changed = self.window_changed.notified();
            {
                let mut w = self.windows();
                if w.closed {
                    return Err(ClientError::Protocol("connection closed".into()));
                }
                let session = w.session;
                let Some(stream) = w.streams.get_mut(&id) else {
                    return Err(ClientError::Protocol(format!("stream {id} was reset")));
                };
                let avail = (*stream).min(session);
                if avail > 0 {
                    let n = want.min(avail as usize);
                    *stream -= n as i64;
                    w.session -= n as i64;
                    return Ok(n);
                }
            }
            changed.await;
        }
    }

    async fn write(&self, f: &Frame) -> Result<(), ClientError> {
        let mut w = self.writer.lock().await;
        let (wr, comp) = &mut *w;
        let bytes = frame::encode(f, comp).map_err(|e| ClientError::Protocol(e.to_string()))?;
        wr.write_all(&bytes)
            .await
            .map_err(|source| ClientError::Io {
                addr: self.addr.clone(),
                source,
            })
    }
}

/// A connected SPDY client. The connection is half-closed (and then closed once the server
/// hangs up) when the client and every stream it opened have been dropped.
pub struct SpdyClient {
    inner: Arc<Inner>,
    /// The `X-Stream-Protocol-Version` the server chose.
    pub protocol: Option<String>,
}

/// One client-opened stream.
pub struct SpdyStream {
    pub id: u32,
    inner: Arc<Inner>,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl SpdyStream {
    /// Sends `data`; in flow-controlled mode it waits for window as needed.
    pub async fn write(&self, data: &[u8]) -> Result<(), ClientError> {
        let mut off = 0;
        while off < data.len() {
            let want = (data.len() - off).min(16 * 1024);
            let n = self.inner.reserve(self.id, want).await?;
            self.inner
                .write(&Frame::Data {
                    stream_id: self.id,
                    flags: 0,
                    data: data[off..off + n].to_vec(),
                })
                .await?;
            off += n;
        }
        Ok(())
    }

    /// Sends `data` as one DATA frame, whatever its size and the windows (for tests of how
    /// the server copes with large frames and clients that ignore flow control).
    pub async fn write_frame(&self, data: &[u8]) -> Result<(), ClientError> {
        self.inner
            .write(&Frame::Data {
                stream_id: self.id,
                flags: 0,
                data: data.to_vec(),
            })
            .await
    }

    /// Half-closes our side (FIN).
    pub async fn close(&self) -> Result<(), ClientError> {
        self.inner
            .write(&Frame::Data {
                stream_id: self.id,
                flags: frame::FLAG_FIN,
                data: Vec::new(),
            })
            .await
    }

    /// Aborts the stream (RST_STREAM CANCEL).
    pub async fn reset(&self) -> Result<(), ClientError> {
        self.inner
            .write(&Frame::RstStream {
                stream_id: self.id,
                status: frame::RST_CANCEL,
            })
            .await
    }

    /// The next chunk, or `None` once the server half-closed or reset the stream.
    pub async fn read(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }

    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = self.rx.recv().await {
            out.extend_from_slice(&c);
        }
        out
    }
}

impl SpdyClient {
    /// Connects and upgrades to SPDY/3.1 offering `protocols` (in preference order). With
    /// `flow_control` the client announces its window and returns WINDOW_UPDATEs, which makes
    /// the server enforce send windows; without it the client behaves like Go's spdystream.
    pub async fn connect(
        url: &str,
        protocols: &[&str],
        flow_control: bool,
    ) -> Result<SpdyClient, ClientError> {
        let mut headers = vec![
            ("Connection", "Upgrade".to_string()),
            ("Upgrade", crate::spdy::UPGRADE_TOKEN.to_string()),
        ];
        for p in protocols {
            headers.push(("X-Stream-Protocol-Version", (*p).to_string()));
        }
        let up = upgrade(url, &headers).await?;
        let protocol = up.header(crate::spdy::PROTOCOL_HEADER).map(str::to_string);
        let addr = up.addr.clone();
        let (rd, wr) = up.tcp.into_split();
        Self::start(
            Cursor::new(up.leftover).chain(rd),
            Box::new(wr),
            addr,
            protocol,
            flow_control,
        )
        .await
    }

    /// Connects over WebSocket and runs SPDY inside it, as client-go's tunnelling dialer does
    /// (kubectl and crictl with the WebSocket transport): offers `SPDY/3.1+<p>` for each of
    /// `protocols`; `protocol` is the chosen one without the prefix.
    pub async fn connect_tunneled(
        url: &str,
        protocols: &[&str],
        flow_control: bool,
    ) -> Result<SpdyClient, ClientError> {
        let mut key = [0u8; 16];
        rand::rng().fill_bytes(&mut key);
        let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key);
        let offered: Vec<String> = protocols
            .iter()
            .map(|p| format!("{}{p}", tunnel::SPDY_PREFIX))
            .collect();
        let headers = vec![
            ("Connection", "Upgrade".to_string()),
            ("Upgrade", "websocket".to_string()),
            ("Sec-WebSocket-Version", "13".to_string()),
            ("Sec-WebSocket-Key", key.clone()),
            ("Sec-WebSocket-Protocol", offered.join(", ")),
        ];
        let up = upgrade(url, &headers).await?;
        if up.header("sec-websocket-accept") != Some(ws_frame::accept_key(&key).as_str()) {
            return Err(ClientError::Protocol(
                "missing or wrong Sec-WebSocket-Accept".into(),
            ));
        }
        let chosen = up.header("sec-websocket-protocol").map(str::to_string);
        let protocol = match chosen {
            Some(p) if offered.contains(&p) => {
                p.strip_prefix(tunnel::SPDY_PREFIX).map(str::to_string)
            }
            other => {
                return Err(ClientError::Protocol(format!(
                    "server selected {other:?}, not one of the offered {offered:?}"
                )))
            }
        };
        let addr = up.addr.clone();
        let (rd, wr) = up.tcp.into_split();
        // The pumps end on their own when either side closes; the SPDY client owns the pipes.
        let (t, _pumps) =
            tunnel::spawn(Cursor::new(up.leftover).chain(rd), wr, tunnel::Role::Client);
        Self::start(t.rd, Box::new(t.wr), addr, protocol, flow_control).await
    }

    async fn start<R>(
        rd: R,
        wr: Box<dyn AsyncWrite + Send + Unpin>,
        addr: String,
        protocol: Option<String>,
        flow_control: bool,
    ) -> Result<SpdyClient, ClientError>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let inner = Arc::new(Inner {
            addr,
            writer: tokio::sync::Mutex::new((wr, HeaderCompressor::new())),
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(1),
            auto_window: AtomicBool::new(flow_control),
            flow_control,
            send: Mutex::new(SendWindows {
                session: frame::INITIAL_WINDOW as i64,
                streams: HashMap::new(),
                closed: false,
            }),
            window_changed: tokio::sync::Notify::new(),
        });
        if flow_control {
            inner
                .write(&Frame::Settings {
                    flags: 0,
                    entries: vec![Setting {
                        flags: 0,
                        id: frame::SETTINGS_INITIAL_WINDOW_SIZE,
                        value: frame::INITIAL_WINDOW,
                    }],
                })
                .await?;
        }
        // The reader only holds a weak reference so that dropping the last handle drops the
        // write half, which tells the server we are gone.
        tokio::spawn(read_loop(rd, Arc::downgrade(&inner)));
        Ok(SpdyClient { inner, protocol })
    }

    /// Turns the automatic WINDOW_UPDATEs of a flow-controlled client off or on, so tests can
    /// watch the server run out of window.
    pub fn set_auto_window_update(&self, on: bool) {
        self.inner.auto_window.store(on, Ordering::SeqCst);
    }

    /// Grants `delta` bytes of window on `stream_id` (0 is the session).
    pub async fn window_update(&self, stream_id: u32, delta: u32) -> Result<(), ClientError> {
        self.inner
            .write(&Frame::WindowUpdate { stream_id, delta })
            .await
    }

    /// Opens a stream with `headers` and waits for the server to accept it.
    pub async fn open(&self, headers: &[(&str, &str)]) -> Result<SpdyStream, ClientError> {
        let id = self.inner.next_id.fetch_add(2, Ordering::SeqCst);
        let (reply_tx, reply_rx) = oneshot::channel();
        let (data_tx, data_rx) = mpsc::unbounded_channel();
        self.inner
            .windows()
            .streams
            .insert(id, i64::from(frame::INITIAL_WINDOW));
        self.inner.slots().insert(
            id,
            StreamSlot {
                reply: Some(reply_tx),
                data: Some(data_tx),
            },
        );
        self.inner
            .write(&Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                slot: 0,
                flags: 0,
                headers: headers
                    .iter()
                    .map(|(n, v)| ((*n).to_string(), (*v).to_string()))
                    .collect(),
            })
            .await?;
        match tokio::time::timeout(REPLY_TIMEOUT, reply_rx).await {
            Ok(Ok(true)) => Ok(SpdyStream {
                id,
                inner: self.inner.clone(),
                rx: data_rx,
            }),
            Ok(Ok(false)) => Err(ClientError::Protocol(format!("stream {id} was reset"))),
            Ok(Err(_)) => Err(ClientError::Protocol(format!(
                "connection closed before stream {id} was accepted"
            ))),
            Err(_) => Err(ClientError::Timeout("waiting for SYN_REPLY")),
        }
    }

    /// Opens the error and data stream of one port-forward connection, as kubectl does (the
    /// error stream first, half-closed at once since the client never writes to it).
    pub async fn port_forward_streams(
        &self,
        port: u16,
        request_id: u32,
    ) -> Result<(SpdyStream, SpdyStream), ClientError> {
        let port = port.to_string();
        let rid = request_id.to_string();
        let error = self
            .open(&[
                (HEADER_STREAM_TYPE, STREAM_ERROR),
                (HEADER_PORT, &port),
                (HEADER_REQUEST_ID, &rid),
            ])
            .await?;
        error.close().await?;
        let data = self
            .open(&[
                (HEADER_STREAM_TYPE, STREAM_DATA),
                (HEADER_PORT, &port),
                (HEADER_REQUEST_ID, &rid),
            ])
            .await?;
        Ok((data, error))
    }
}

async fn read_loop<R: AsyncRead + Unpin>(mut rd: R, weak: Weak<Inner>) {
    let mut decomp = HeaderDecompressor::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    'outer: loop {
        loop {
            let (f, used) = match frame::decode(&buf, &mut decomp) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "client: SPDY decode failed");
                    break 'outer;
                }
            };
            buf.drain(..used);
            let Some(inner) = weak.upgrade() else {
                break 'outer;
            };
            match f {
                Frame::SynReply { stream_id, .. } => {
                    if let Some(tx) = inner
                        .slots()
                        .get_mut(&stream_id)
                        .and_then(|s| s.reply.take())
                    {
                        let _ = tx.send(true);
                    }
                }
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    let len = data.len() as u32;
                    {
                        let mut slots = inner.slots();
                        if let Some(s) = slots.get_mut(&stream_id) {
                            if let Some(tx) = &s.data {
                                if !data.is_empty() {
                                    let _ = tx.send(data);
                                }
                            }
                            if flags & frame::FLAG_FIN != 0 {
                                s.data = None;
                            }
                        }
                    }
                    if inner.auto_window.load(Ordering::SeqCst) && len > 0 {
                        for stream_id in [stream_id, 0] {
                            let _ = inner
                                .write(&Frame::WindowUpdate {
                                    stream_id,
                                    delta: len,
                                })
                                .await;
                        }
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    if let Some(mut s) = inner.slots().remove(&stream_id) {
                        if let Some(tx) = s.reply.take() {
                            let _ = tx.send(false);
                        }
                    }
                    inner.windows().streams.remove(&stream_id);
                    inner.window_changed.notify_waiters();
                }
                Frame::WindowUpdate { stream_id, delta } => {
                    {
                        let mut w = inner.windows();
                        if stream_id == 0 {
                            w.session += i64::from(delta);
                        } else if let Some(s) = w.streams.get_mut(&stream_id) {
                            *s += i64::from(delta);
                        }
                    }
                    inner.window_changed.notify_waiters();
                }
                Frame::Ping { id } if id % 2 == 0 => {
                    let _ = inner.write(&Frame::Ping { id }).await;
                }
                // The server is done; streams already half-closed stay readable until EOF.
                Frame::GoAway { .. } => {}
                _ => {}
            }
        }
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    if let Some(inner) = weak.upgrade() {
        inner.slots().clear();
        inner.windows().closed = true;
        inner.window_changed.notify_waiters();
    }
}

/// Runs one exec/attach over SPDY to completion: opens the streams client-go would open for
/// `io`, sends resize and stdin, collects stdout/stderr and decodes the error stream.
pub async fn exec(
    url: &str,
    protocols: &[&str],
    io: ExecIo,
    flow_control: bool,
) -> Result<ExecOutput, ClientError> {
    let client = SpdyClient::connect(url, protocols, flow_control).await?;
    let version = client.protocol.clone().unwrap_or_default();
    let v4 = version == crate::spdy::REMOTECOMMAND_V4;
    let resize_ok = v4 || version == crate::spdy::REMOTECOMMAND_V3;

    let mut error = client.open(&[(HEADER_STREAM_TYPE, STREAM_ERROR)]).await?;
    let stdin = match io.stdin {
        Some(_) => Some(client.open(&[(HEADER_STREAM_TYPE, STREAM_STDIN)]).await?),
        None => None,
    };
    let stdout = match io.stdout {
        true => Some(client.open(&[(HEADER_STREAM_TYPE, STREAM_STDOUT)]).await?),
        false => None,
    };
    let stderr = match io.stderr && !io.tty {
        true => Some(client.open(&[(HEADER_STREAM_TYPE, STREAM_STDERR)]).await?),
        false => None,
    };
    let resize = match io.tty && resize_ok {
        true => Some(client.open(&[(HEADER_STREAM_TYPE, STREAM_RESIZE)]).await?),
        false => None,
    };

    // Write and read at once so a server that pushes back on stdin cannot deadlock us.
    let send = async {
        if let (Some(r), Some(size)) = (&resize, io.resize) {
            let json = format!("{{\"Width\":{},\"Height\":{}}}\n", size.width, size.height);
            r.write(json.as_bytes()).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let (Some(s), Some(data)) = (&stdin, &io.stdin) {
            s.write(data).await?;
            if io.close_stdin {
                s.close().await?;
            }
        }
        Ok::<_, ClientError>(())
    };
    let read_out = async {
        match stdout {
            Some(mut s) => s.read_to_end().await,
            None => Vec::new(),
        }
    };
    let read_err = async {
        match stderr {
            Some(mut s) => s.read_to_end().await,
            None => Vec::new(),
        }
    };
    let (sent, out, err) = tokio::join!(send, read_out, read_err);
    if let Err(e) = sent {
        tracing::debug!(error = %e, "stdin not fully delivered");
    }
    let status_bytes = error.read_to_end().await;
    drop(resize);
    drop(stdin);
    Ok(ExecOutput {
        stdout: out,
        stderr: err,
        status: ExitStatus::decode(&status_bytes, v4),
    })
}

/// Forwards one connection to `port`: writes `payload`, half-closes, and returns what the pod
/// sent until it closed. Text on the error stream is returned as an error.
pub async fn port_forward_once(
    client: &SpdyClient,
    port: u16,
    request_id: u32,
    payload: &[u8],
) -> Result<Vec<u8>, ClientError> {
    let (mut data, mut error) = client.port_forward_streams(port, request_id).await?;
    data.write(payload).await?;
    data.close().await?;
    let (got, err) = tokio::join!(data.read_to_end(), error.read_to_end());
    if !err.is_empty() {
        return Err(ClientError::Protocol(
            String::from_utf8_lossy(&err).into_owned(),
        ));
    }
    Ok(got)
}
