//! The server side of one SPDY/3.1 connection: a reader task that decodes frames and routes
//! stream data, a writer task that owns the outbound compression context (so header blocks are
//! compressed in wire order), and flow-control bookkeeping.
//!
//! Flow control: we advertise the default 64 KiB windows and send WINDOW_UPDATE (per stream and
//! for the session) as the backend/pod consumes data. For sending we honour the peer's windows
//! only once the peer has shown it does flow control (a SETTINGS initial window or any
//! WINDOW_UPDATE): Go's spdystream, which kubectl uses, never grants window, so enforcing the
//! window against it would stall every stream after 64 KiB.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::frame::{self, Frame, HeaderCompressor, HeaderDecompressor, Headers, Setting};
use crate::budget::{Budget, Chunk};

/// Largest DATA payload we send in one frame.
const MAX_DATA: usize = 32 * 1024;

/// DATA frames queued per stream towards its consumer before backpressure (or, for a peer that
/// does flow control and so should never get here, a FLOW_CONTROL_ERROR reset).
const INBOUND_QUEUE: usize = 256;

/// Streams a client may have open at once (advertised in SETTINGS_MAX_CONCURRENT_STREAMS);
/// more are refused with RST_STREAM REFUSED_STREAM. A port-forward connection takes two.
pub const MAX_STREAMS: usize = 128;

pub(crate) enum WriterMsg {
    Frame(Frame),
    /// Flush, half-close the socket and stop.
    Close,
}

/// A stream the client opened.
pub(crate) struct NewStream {
    pub(crate) id: u32,
    pub(crate) headers: Headers,
    /// Data the client sends on it; ends on FIN, RST_STREAM or connection loss.
    pub(crate) data: mpsc::Receiver<Chunk>,
}

impl NewStream {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        frame::header(&self.headers, name)
    }
}

struct Entry {
    inbound: Option<mpsc::Sender<Chunk>>,
    send_window: i64,
    unacked: u32,
    local_fin: bool,
}

struct State {
    streams: HashMap<u32, Entry>,
    last_peer_stream: u32,
    peer_initial_window: i64,
    session_send_window: i64,
    session_unacked: u32,
    enforce: bool,
    closed: bool,
}

pub(crate) struct Conn {
    out: mpsc::Sender<WriterMsg>,
    /// Bounds what the client can make us buffer across all its streams.
    budget: Budget,
    state: Mutex<State>,
    window: Notify,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Bookkeeping only; a panic mid-update cannot corrupt memory, so keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send(&self, f: Frame) -> io::Result<()> {
        self.out
            .send(WriterMsg::Frame(f))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "SPDY connection closed"))
    }

    /// Takes up to `want` bytes of send window for `id`, waiting if the peer enforces flow
    /// control and has none left.
    async fn reserve(&self, id: u32, want: usize) -> io::Result<usize> {
        loop {
            let notified = self.window.notified();
            {
                let mut st = self.lock();
                if st.closed {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "SPDY connection closed",
                    ));
                }
                let enforce = st.enforce;
                let session = st.session_send_window;
                let Some(e) = st.streams.get_mut(&id) else {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        format!("SPDY stream {id} is gone"),
                    ));
                };
                let want = want.min(MAX_DATA);
                if !enforce {
                    return Ok(want);
                }
                let avail = e.send_window.min(session);
                if avail > 0 {
                    let n = want.min(avail as usize);
                    e.send_window -= n as i64;
                    st.session_send_window -= n as i64;
                    return Ok(n);
                }
            }
            notified.await;
        }
    }

    /// Sends `data` on stream `id`, split to fit frames and windows.
    pub(crate) async fn send_data(&self, id: u32, data: &[u8]) -> io::Result<()> {
        let mut off = 0;
        while off < data.len() {
            let n = self.reserve(id, data.len() - off).await?;
            self.send(Frame::Data {
                stream_id: id,
                flags: 0,
                data: data[off..off + n].to_vec(),
            })
            .await?;
            off += n;
        }
        Ok(())
    }

    /// Half-closes our side of stream `id`.
    pub(crate) async fn send_fin(&self, id: u32) -> io::Result<()> {
        {
            let mut st = self.lock();
            match st.streams.get_mut(&id) {
                Some(e) if !e.local_fin => e.local_fin = true,
                _ => return Ok(()),
            }
            Self::maybe_forget(&mut st, id);
        }
        self.send(Frame::Data {
            stream_id: id,
            flags: frame::FLAG_FIN,
            data: Vec::new(),
        })
        .await
    }

    /// Aborts stream `id`.
    pub(crate) async fn reset(&self, id: u32, status: u32) {
        {
            let mut st = self.lock();
            if let Some(mut e) = st.streams.remove(&id) {
                e.inbound = None;
            }
        }
        let _ = self
            .send(Frame::RstStream {
                stream_id: id,
                status,
            })
            .await;
    }

    /// Records that `n` received bytes of stream `id` were consumed and grants the window back
    /// once half of it has been used, so a flow-controlled peer never stalls.
    pub(crate) async fn consumed(&self, id: u32, n: usize) {
        let mut updates = Vec::new();
        {
            let mut st = self.lock();
            let threshold = frame::INITIAL_WINDOW / 2;
            if let Some(e) = st.streams.get_mut(&id) {
                e.unacked = e.unacked.saturating_add(n as u32);
                if e.unacked >= threshold {
                    updates.push((id, e.unacked));
                    e.unacked = 0;
                }
            }
            st.session_unacked = st.session_unacked.saturating_add(n as u32);
            if st.session_unacked >= threshold {
                updates.push((0, st.session_unacked));
                st.session_unacked = 0;
            }
        }
        for (stream_id, delta) in updates {
            let _ = self.send(Frame::WindowUpdate { stream_id, delta }).await;
        }
    }

    fn maybe_forget(st: &mut State, id: u32) {
        if let Some(e) = st.streams.get(&id) {
            if e.local_fin && e.inbound.is_none() {
                st.streams.remove(&id);
            }
        }
    }

    /// Sends GOAWAY and asks the writer to flush and half-close the socket.
    pub(crate) async fn go_away(&self) {
        let last = self.lock().last_peer_stream;
        let _ = self
            .send(Frame::GoAway {
                last_good_stream_id: last,
                status: 0,
            })
            .await;
        let _ = self.out.send(WriterMsg::Close).await;
    }
}

/// A running server-side connection.
pub(crate) struct Running {
    pub(crate) conn: Arc<Conn>,
    pub(crate) streams: mpsc::Receiver<NewStream>,
    pub(crate) reader: JoinHandle<()>,
    pub(crate) writer: JoinHandle<()>,
}

pub(crate) fn start<IO>(io: IO) -> Running
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::channel(256);
    // The first frame we send tells the client how many streams it may open.
    let _ = out_tx.try_send(WriterMsg::Frame(Frame::Settings {
        flags: 0,
        entries: vec![Setting {
            flags: 0,
            id: frame::SETTINGS_MAX_CONCURRENT_STREAMS,
            value: MAX_STREAMS as u32,
        }],
    }));
    let conn = Arc::new(Conn {
        out: out_tx,
        budget: Budget::new(),
        state: Mutex::new(State {
            streams: HashMap::new(),
            last_peer_stream: 0,
            peer_initial_window: frame::INITIAL_WINDOW as i64,
            session_send_window: frame::INITIAL_WINDOW as i64,
            session_unacked: 0,
            enforce: false,
            closed: false,
        }),
        window: Notify::new(),
    });
    let writer = tokio::spawn(write_loop(wr, out_rx));
    let (new_tx, new_rx) = mpsc::channel(64);
    let reader = tokio::spawn(read_loop(rd, conn.clone(), new_tx));
    Running {
        conn,
        streams: new_rx,
        reader,
        writer,
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<WriterMsg>) {
    let mut comp = HeaderCompressor::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let Some(first) = rx.recv().await else { break };
        let mut msg = Some(first);
        let mut close = false;
        // Coalesce whatever is queued into one write.
        while let Some(m) = msg.take() {
            match m {
                WriterMsg::Frame(f) => match frame::encode(&f, &mut comp) {
                    Ok(b) => buf.extend_from_slice(&b),
                    Err(e) => tracing::warn!(error = %e, "dropping unencodable SPDY frame"),
                },
                WriterMsg::Close => {
                    close = true;
                    break;
                }
            }
            if buf.len() < 256 * 1024 {
                msg = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            if let Err(e) = wr.write_all(&buf).await {
                tracing::debug!(error = %e, "SPDY write failed");
                return;
            }
            buf.clear();
        }
        if close {
            break;
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

async fn read_loop<R: AsyncRead + Send>(
    mut rd: ReadHalf<R>,
    conn: Arc<Conn>,
    new_streams: mpsc::Sender<NewStream>,
) {
    let mut decomp = HeaderDecompressor::new();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    'outer: loop {
        loop {
            let (f, used) = match frame::decode(&buf, &mut decomp) {
                Ok(Some(fu)) => fu,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY protocol error; closing");
                    let last = conn.lock().last_peer_stream;
                    let _ = conn
                        .send(Frame::GoAway {
                            last_good_stream_id: last,
                            status: 1,
                        })
                        .await;
                    break 'outer;
                }
            };
            buf.drain(..used);
            if !handle(&conn, f, &new_streams).await {
                break 'outer;
            }
        }
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    // Every stream sees EOF; writers fail fast from now on.
    let mut st = conn.lock();
    st.closed = true;
    for e in st.streams.values_mut() {
        e.inbound = None;
    }
    drop(st);
    conn.window.notify_waiters();
}

/// Applies one received frame; `false` ends the connection.
async fn handle(conn: &Arc<Conn>, f: Frame, new_streams: &mpsc::Sender<NewStream>) -> bool {
    match f {
        Frame::SynStream {
            stream_id,
            flags,
            headers,
            ..
        } => {
            let (valid, full) = {
                let mut st = conn.lock();
                let valid = stream_id % 2 == 1 && stream_id > st.last_peer_stream;
                if valid {
                    st.last_peer_stream = stream_id;
                }
                (valid, st.streams.len() >= MAX_STREAMS)
            };
            if !valid || full {
                if full {
                    tracing::debug!(stream_id, "refusing a SPDY stream over the limit");
                }
                let _ = conn
                    .send(Frame::RstStream {
                        stream_id,
                        status: if valid {
                            frame::RST_REFUSED_STREAM
                        } else {
                            frame::RST_PROTOCOL_ERROR
                        },
                    })
                    .await;
                return true;
            }
            let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
            {
                let mut st = conn.lock();
                let window = st.peer_initial_window;
                st.streams.insert(
                    stream_id,
                    Entry {
                        inbound: (flags & frame::FLAG_FIN == 0).then_some(tx),
                        send_window: window,
                        unacked: 0,
                        local_fin: flags & frame::FLAG_UNIDIRECTIONAL != 0,
                    },
                );
            }
            // Accept every stream at once: client-go waits for the reply before it opens the
            // next one, and the session decides later what to do with it.
            let _ = conn
                .send(Frame::SynReply {
                    stream_id,
                    flags: 0,
                    headers: Vec::new(),
                })
                .await;
            if new_streams
                .send(NewStream {
                    id: stream_id,
                    headers,
                    data: rx,
                })
                .await
                .is_err()
            {
                return false;
            }
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            let (tx, enforce) = {
                let st = conn.lock();
                let tx = st.streams.get(&stream_id).and_then(|e| e.inbound.clone());
                (tx, st.enforce)
            };
            if let (Some(tx), false) = (tx, data.is_empty()) {
                if enforce {
                    // A flow-controlled peer stays within the windows we grant as data is
                    // consumed (64 KiB for the whole session), so running out of budget or
                    // queue means it ignored them.
                    let queued = match conn.budget.try_charge(data) {
                        Ok(chunk) => tx.try_send(chunk).is_ok(),
                        Err(_) => false,
                    };
                    if !queued {
                        conn.reset(stream_id, frame::RST_FLOW_CONTROL_ERROR).await;
                        return true;
                    }
                } else {
                    // Peers without flow control (Go's spdystream, i.e. kubectl) get TCP
                    // backpressure instead: stop reading until the consumers catch up, as the
                    // kubelet does. Blocking cannot deadlock on window updates here because such
                    // peers never send them.
                    let chunk = conn.budget.charge(data).await;
                    let _ = tx.send(chunk).await;
                }
            }
            if flags & frame::FLAG_FIN != 0 {
                let mut st = conn.lock();
                if let Some(e) = st.streams.get_mut(&stream_id) {
                    e.inbound = None;
                }
                Conn::maybe_forget(&mut st, stream_id);
            }
        }
        Frame::RstStream { stream_id, .. } => {
            // Forgetting the stream ends its reader (EOF) and fails its writer; a long-lived
            // port-forward session resets a stream per finished connection, so keeping reset
            // entries would leak.
            let mut st = conn.lock();
            st.streams.remove(&stream_id);
            drop(st);
            conn.window.notify_waiters();
        }
        Frame::Settings { entries, .. } => {
            let mut st = conn.lock();
            for s in entries {
                if s.id == frame::SETTINGS_INITIAL_WINDOW_SIZE {
                    let delta = s.value as i64 - st.peer_initial_window;
                    st.peer_initial_window = s.value as i64;
                    st.enforce = true;
                    for e in st.streams.values_mut() {
                        e.send_window += delta;
                    }
                }
            }
            drop(st);
            conn.window.notify_waiters();
        }
        Frame::WindowUpdate { stream_id, delta } => {
            let mut st = conn.lock();
            st.enforce = true;
            if stream_id == 0 {
                st.session_send_window += delta as i64;
            } else if let Some(e) = st.streams.get_mut(&stream_id) {
                e.send_window += delta as i64;
            }
            drop(st);
            conn.window.notify_waiters();
        }
        Frame::Ping { id } => {
            // Client pings are odd; answer them. Our own pings (even) need no action.
            if id % 2 == 1 {
                let _ = conn.send(Frame::Ping { id }).await;
            }
        }
        Frame::GoAway { .. } => return false,
        Frame::SynReply { .. } | Frame::Headers { .. } | Frame::Unknown { .. } => {}
    }
    true
}

/// After the session is over: let the writer flush and half-close, then read until the client
/// closes (bounded), so unread client bytes do not turn our close into a RST that could destroy
/// output the client has not read yet.
pub(crate) async fn finish(running: Running) {
    running.conn.go_away().await;
    let Running {
        conn,
        streams,
        reader,
        writer,
    } = running;
    drop(streams);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    let mut reader = reader;
    if tokio::time::timeout(Duration::from_secs(2), &mut reader)
        .await
        .is_err()
    {
        reader.abort();
    }
    drop(conn);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a server connection over an in-memory pipe with hand-made client frames.
    struct Peer {
        io: tokio::io::DuplexStream,
        comp: HeaderCompressor,
        decomp: HeaderDecompressor,
        buf: Vec<u8>,
    }

    impl Peer {
        async fn send(&mut self, f: Frame) {
            let b = frame::encode(&f, &mut self.comp).unwrap_or_default();
            assert!(self.io.write_all(&b).await.is_ok());
        }

        async fn recv(&mut self) -> Option<Frame> {
            loop {
                if let Ok(Some((f, used))) = frame::decode(&self.buf, &mut self.decomp) {
                    self.buf.drain(..used);
                    return Some(f);
                }
                let mut chunk = [0u8; 4096];
                let n = tokio::time::timeout(Duration::from_secs(5), self.io.read(&mut chunk))
                    .await
                    .ok()?
                    .ok()?;
                if n == 0 {
                    return None;
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }
    }

    fn syn(id: u32, flags: u8) -> Frame {
        Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags,
            headers: vec![("streamtype".into(), "data".into())],
        }
    }

    /// A session and its peer, past the server's opening SETTINGS.
    async fn setup() -> (Running, Peer) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let running = start(ours);
        let mut peer = Peer {
            io: theirs,
            comp: HeaderCompressor::new(),
            decomp: HeaderDecompressor::new(),
            buf: Vec::new(),
        };
        assert_eq!(
            peer.recv().await,
            Some(Frame::Settings {
                flags: 0,
                entries: vec![Setting {
                    flags: 0,
                    id: frame::SETTINGS_MAX_CONCURRENT_STREAMS,
                    value: MAX_STREAMS as u32,
                }],
            })
        );
        (running, peer)
    }

    #[tokio::test]
    async fn streams_over_the_advertised_limit_are_refused() {
        let (mut running, mut peer) = setup().await;
        let mut held = Vec::new();
        for i in 0..MAX_STREAMS as u32 {
            peer.send(syn(2 * i + 1, 0)).await;
            assert!(matches!(peer.recv().await, Some(Frame::SynReply { .. })));
            held.push(running.streams.recv().await);
        }
        let over = 2 * MAX_STREAMS as u32 + 1;
        peer.send(syn(over, 0)).await;
        assert_eq!(
            peer.recv().await,
            Some(Frame::RstStream {
                stream_id: over,
                status: frame::RST_REFUSED_STREAM
            })
        );
        // Once one is finished (reset by the client), a new one is accepted.
        peer.send(Frame::RstStream {
            stream_id: 1,
            status: frame::RST_CANCEL,
        })
        .await;
        peer.send(syn(over + 2, 0)).await;
        assert!(matches!(
            peer.recv().await,
            Some(Frame::SynReply { stream_id, .. }) if stream_id == over + 2
        ));
    }

    #[tokio::test]
    async fn a_flow_controlled_peer_ignoring_windows_is_reset_not_buffered() {
        let (mut running, mut peer) = setup().await;
        peer.send(Frame::WindowUpdate {
            stream_id: 0,
            delta: 1,
        })
        .await;
        peer.send(syn(1, 0)).await;
        let _ = peer.recv().await;
        let unread = running.streams.recv().await;
        // Far past any window we granted, into a stream nobody reads.
        let mut reset = false;
        for _ in 0..8 {
            peer.send(Frame::Data {
                stream_id: 1,
                flags: 0,
                data: vec![7; 1 << 20],
            })
            .await;
        }
        peer.send(Frame::Ping { id: 11 }).await;
        while let Some(f) = peer.recv().await {
            match f {
                Frame::RstStream {
                    stream_id: 1,
                    status,
                } => {
                    assert_eq!(status, frame::RST_FLOW_CONTROL_ERROR);
                    reset = true;
                }
                Frame::Ping { id: 11 } => break,
                _ => {}
            }
        }
        assert!(reset, "no FLOW_CONTROL_ERROR");
        // What was queued is charged to the session until the stream is dropped.
        assert!(running.conn.budget.available() < crate::budget::SESSION_BUFFER);
        drop(unread);
        assert_eq!(
            running.conn.budget.available(),
            crate::budget::SESSION_BUFFER
        );
    }

    #[tokio::test]
    async fn stream_lifecycle_ping_and_reset_cleanup() {
        let (mut running, mut peer) = setup().await;
        peer.send(syn(1, 0)).await;
        assert_eq!(
            peer.recv().await,
            Some(Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![]
            })
        );
        let mut s = match running.streams.recv().await {
            Some(s) => s,
            None => panic!("no stream"),
        };
        assert_eq!(s.header("streamType"), Some("data"));
        peer.send(Frame::Data {
            stream_id: 1,
            flags: frame::FLAG_FIN,
            data: b"abc".to_vec(),
        })
        .await;
        assert_eq!(
            s.data.recv().await.map(|c| c.to_vec()),
            Some(b"abc".to_vec())
        );
        assert!(s.data.recv().await.is_none(), "FIN ends the inbound side");

        // Client pings (odd) are echoed.
        peer.send(Frame::Ping { id: 7 }).await;
        assert_eq!(peer.recv().await, Some(Frame::Ping { id: 7 }));

        // Our FIN after theirs forgets the stream.
        assert!(running.conn.send_fin(1).await.is_ok());
        assert_eq!(
            peer.recv().await,
            Some(Frame::Data {
                stream_id: 1,
                flags: frame::FLAG_FIN,
                data: vec![]
            })
        );
        assert!(running.conn.lock().streams.is_empty());

        // A reset stream is forgotten at once and can no longer be written.
        peer.send(syn(3, 0)).await;
        let _ = peer.recv().await;
        let _s3 = running.streams.recv().await;
        peer.send(Frame::RstStream {
            stream_id: 3,
            status: frame::RST_CANCEL,
        })
        .await;
        // Let the reader process the RST (the echo of a ping orders us after it).
        peer.send(Frame::Ping { id: 9 }).await;
        assert_eq!(peer.recv().await, Some(Frame::Ping { id: 9 }));
        assert!(running.conn.lock().streams.is_empty());
        assert!(running.conn.send_data(3, b"x").await.is_err());

        // Stream ids must be odd and increasing.
        peer.send(syn(2, 0)).await;
        assert_eq!(
            peer.recv().await,
            Some(Frame::RstStream {
                stream_id: 2,
                status: frame::RST_PROTOCOL_ERROR
            })
        );
    }

    #[tokio::test]
    async fn window_updates_follow_consumption() {
        let (mut running, mut peer) = setup().await;
        peer.send(syn(1, 0)).await;
        let _ = peer.recv().await;
        let s = running.streams.recv().await;
        let id = s.as_ref().map(|s| s.id).unwrap_or(0);
        // Nothing is granted until half a window has been consumed.
        running.conn.consumed(id, 10_000).await;
        running.conn.consumed(id, 30_000).await;
        assert_eq!(
            peer.recv().await,
            Some(Frame::WindowUpdate {
                stream_id: 1,
                delta: 40_000
            })
        );
        assert_eq!(
            peer.recv().await,
            Some(Frame::WindowUpdate {
                stream_id: 0,
                delta: 40_000
            })
        );
    }

    #[tokio::test]
    async fn connection_loss_ends_every_stream() {
        let (mut running, mut peer) = setup().await;
        peer.send(syn(1, 0)).await;
        let _ = peer.recv().await;
        let mut s = match running.streams.recv().await {
            Some(s) => s,
            None => panic!("no stream"),
        };
        drop(peer);
        assert!(s.data.recv().await.is_none());
        assert!(running.conn.send_data(1, b"x").await.is_err());
    }
}
