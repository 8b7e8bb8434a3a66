//! The HTTP/1.1 front door: listener, routing of `/exec|attach|portforward/<token>`, protocol
//! negotiation and the 101 upgrade, after which the connection is handed to the WebSocket or
//! SPDY session code.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

use crate::remotecommand::{Options, Session, Target};
use crate::token::{self, Cache, Kind, Pending};
use crate::{spdy, ws, Backend, Config, StreamError};

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Shared {
    pub(crate) local_addr: SocketAddr,
    pub(crate) tokens: Cache,
    pub(crate) base_url: Option<String>,
    backend: Arc<dyn Backend>,
    stream_creation_timeout: Duration,
    idle_timeout: Duration,
    max_sessions: usize,
    sessions: AtomicUsize,
}

pub(crate) async fn start(
    cfg: Config,
    backend: Arc<dyn Backend>,
) -> Result<Arc<Shared>, StreamError> {
    let listener = TcpListener::bind(cfg.address)
        .await
        .map_err(|source| StreamError::Bind {
            address: cfg.address,
            source,
        })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| StreamError::LocalAddr {
            address: cfg.address,
            source,
        })?;
    let shared = Arc::new(Shared {
        local_addr,
        tokens: Cache::new(cfg.token_ttl),
        base_url: cfg.base_url.clone(),
        backend,
        stream_creation_timeout: cfg.stream_creation_timeout,
        idle_timeout: cfg.idle_timeout,
        max_sessions: cfg.max_sessions,
        sessions: AtomicUsize::new(0),
    });
    let accept_shared = shared.clone();
    tokio::spawn(async move { accept_loop(listener, accept_shared).await });
    Ok(shared)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends are transient; back off instead of spinning.
                tracing::warn!(error = %e, "streaming server accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Interactive traffic: small frames must not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let conn_info = Arc::new(ConnInfo {
            // A second descriptor of the socket, only ever used to shut it down when the
            // session goes idle; it is closed with the session.
            socket: tcp
                .as_fd()
                .try_clone_to_owned()
                .ok()
                .map(std::net::TcpStream::from),
            activity: Activity::default(),
        });
        let tcp = ActiveIo {
            io: tcp,
            activity: conn_info.activity.clone(),
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                let conn_info = conn_info.clone();
                async move { Ok::<_, Infallible>(route(shared, conn_info, req)) }
            });
            // A client that never finishes its request headers must not hold a connection
            // (and a task) forever.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "streaming connection ended with error");
            }
        });
    }
}

fn plain(status: StatusCode, msg: impl Into<String>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(msg.into())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Which upgrade the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    WebSocket,
    Spdy,
}

fn header_tokens<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

fn requested_upgrade(headers: &HeaderMap) -> Option<Upgrade> {
    let connection_upgrade =
        header_tokens(headers, CONNECTION.as_str()).any(|t| t.eq_ignore_ascii_case("upgrade"));
    if !connection_upgrade {
        return None;
    }
    let mut kinds = header_tokens(headers, UPGRADE.as_str());
    kinds.find_map(|t| {
        if t.eq_ignore_ascii_case("websocket") {
            Some(Upgrade::WebSocket)
        } else if t.eq_ignore_ascii_case(spdy::UPGRADE_TOKEN) {
            Some(Upgrade::Spdy)
        } else {
            None
        }
    })
}

/// Picks the first protocol the client lists that the server supports (the client states its
/// preference order, as in the kubelet). `None` inside `Ok` means the client listed none.
fn negotiate(client: Vec<String>, server: &[&'static str]) -> Result<Option<&'static str>, ()> {
    if client.is_empty() {
        return Ok(None);
    }
    client
        .iter()
        .find_map(|c| server.iter().find(|s| **s == c.as_str()).copied())
        .map(Some)
        .ok_or(())
}

fn route(
    shared: Arc<Shared>,
    conn_info: Arc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let kind = match parts.next() {
        Some("exec") => Kind::Exec,
        Some("attach") => Kind::Attach,
        Some("portforward") => Kind::PortForward,
        _ => return plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    let token = match parts.next() {
        Some(t) if !t.is_empty() && !t.contains('/') => t.to_string(),
        _ => return plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    if req.method() != Method::GET && req.method() != Method::POST {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("method {} not allowed; use GET or POST\n", req.method()),
        );
    }
    let Some(upgrade) = requested_upgrade(req.headers()) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "streaming requires a WebSocket or SPDY/3.1 upgrade\n",
        );
    };

    // Negotiate before consuming the token so that a client retrying with other protocol
    // versions (as client-go does on 403) still has a usable URL.
    let remotecommand = kind != Kind::PortForward;
    let negotiated = match upgrade {
        Upgrade::WebSocket => {
            if req
                .headers()
                .get("sec-websocket-version")
                .and_then(|v| v.to_str().ok())
                != Some("13")
            {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "Sec-WebSocket-Version 13 is required\n",
                );
            }
            let Some(key) = req
                .headers()
                .get("sec-websocket-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
            else {
                return plain(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is required\n");
            };
            let offered: Vec<String> =
                header_tokens(req.headers(), "sec-websocket-protocol").collect();
            let supported = if remotecommand {
                ws::REMOTECOMMAND_PROTOCOLS
            } else {
                ws::PORTFORWARD_PROTOCOLS
            };
            match negotiate(offered, supported) {
                Ok(p) => Negotiated::WebSocket { key, protocol: p },
                Err(()) => {
                    return plain(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "none of the requested WebSocket subprotocols is supported; supported: {}\n",
                            supported.join(", ")
                        ),
                    )
                }
            }
        }
        Upgrade::Spdy => {
            let offered: Vec<String> =
                header_tokens(req.headers(), spdy::PROTOCOL_HEADER).collect();
            let supported = if remotecommand {
                spdy::REMOTECOMMAND_PROTOCOLS
            } else {
                spdy::PORTFORWARD_PROTOCOLS
            };
            match negotiate(offered, supported) {
                Ok(p) => Negotiated::Spdy { protocol: p },
                Err(()) => {
                    let mut resp = plain(
                        StatusCode::FORBIDDEN,
                        "unable to upgrade: unable to negotiate protocol\n",
                    );
                    if let Ok(v) = HeaderValue::from_str(&supported.join(", ")) {
                        resp.headers_mut()
                            .insert(spdy::ACCEPTED_PROTOCOLS_HEADER, v);
                    }
                    return resp;
                }
            }
        }
    };

    // Counted from here until the session ends; refused before the token is used up.
    let Some(guard) = SessionGuard::acquire(&shared) else {
        tracing::warn!(
            max = shared.max_sessions,
            "refusing a streaming session: too many sessions"
        );
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many streaming sessions (at most {}); retry later\n",
                shared.max_sessions
            ),
        );
    };

    let Some(pending) = shared.tokens.take(&token, kind) else {
        return plain(
            StatusCode::NOT_FOUND,
            "unknown or expired streaming token\n",
        );
    };

    // Port forward over WebSocket names its ports in the query string.
    let query_ports = match query_ports(req.uri().query()) {
        Ok(p) => p,
        Err(msg) => return plain(StatusCode::BAD_REQUEST, msg),
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    let response = match &negotiated {
        Negotiated::WebSocket { key, protocol } => ws::handshake_response(key, *protocol),
        Negotiated::Spdy { protocol } => spdy::handshake_response(*protocol),
    };
    let mut response = match response {
        Ok(r) => r,
        Err(msg) => return plain(StatusCode::INTERNAL_SERVER_ERROR, msg),
    };

    let job = match (pending, negotiated) {
        (Pending::PortForward(pf), Negotiated::WebSocket { protocol, .. })
            if protocol.is_some_and(|p| p.starts_with(ws::tunnel::SPDY_PREFIX)) =>
        {
            // SPDY inside the WebSocket: ports are named per stream, as with plain SPDY.
            Job::TunneledSpdyPortForward {
                pod: pf.pod_sandbox_id,
            }
        }
        (Pending::PortForward(pf), Negotiated::WebSocket { protocol, .. }) => {
            let ports = if query_ports.is_empty() {
                let mut ports = Vec::new();
                for p in &pf.ports {
                    match u16::try_from(*p) {
                        Ok(p) if p > 0 => ports.push(p),
                        _ => return plain(StatusCode::BAD_REQUEST, format!("invalid port {p}\n")),
                    }
                }
                ports
            } else {
                query_ports
            };
            if ports.is_empty() {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "port forward over WebSocket needs at least one port\n",
                );
            }
            // Two channels per port, numbered in one byte.
            if ports.len() > ws::MAX_PORTS {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "port forward over WebSocket takes at most {} ports, got {}\n",
                        ws::MAX_PORTS,
                        ports.len()
                    ),
                );
            }
            Job::WsPortForward {
                protocol,
                pod: pf.pod_sandbox_id,
                ports,
            }
        }
        (Pending::PortForward(pf), Negotiated::Spdy { .. }) => Job::SpdyPortForward {
            pod: pf.pod_sandbox_id,
        },
        (pending, negotiated) => {
            let session = match session_for(pending, shared.backend.clone()) {
                Some(s) => s,
                None => return plain(StatusCode::NOT_FOUND, "not found\n"),
            };
            match negotiated {
                Negotiated::WebSocket { protocol, .. } => Job::WsRemote { protocol, session },
                Negotiated::Spdy { protocol } => Job::SpdyRemote { protocol, session },
            }
        }
    };

    let backend = shared.backend.clone();
    let timeout = shared.stream_creation_timeout;
    let idle_timeout = shared.idle_timeout;
    tokio::spawn(async move {
        let _guard = guard;
        let watchdog = tokio::spawn(close_when_idle(conn_info, idle_timeout));
        serve_upgraded(on_upgrade, job, backend, timeout).await;
        watchdog.abort();
    });
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response
}

async fn serve_upgraded(
    on_upgrade: hyper::upgrade::OnUpgrade,
    job: Job,
    backend: Arc<dyn Backend>,
    timeout: Duration,
) {
    {
        let upgraded = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::debug!(error = %e, "streaming upgrade failed");
                return;
            }
        };
        match job {
            Job::WsRemote { protocol, session } => {
                ws::serve_remotecommand(upgraded, protocol, session).await
            }
            Job::WsPortForward {
                protocol,
                pod,
                ports,
            } => ws::serve_port_forward(upgraded, protocol, backend, pod, ports).await,
            Job::SpdyRemote { protocol, session } => {
                spdy::serve_remotecommand(upgraded, protocol, session, timeout).await
            }
            Job::SpdyPortForward { pod } => {
                spdy::serve_port_forward(upgraded, backend, pod, timeout).await
            }
            Job::TunneledSpdyPortForward { pod } => {
                let (rd, wr) = tokio::io::split(upgraded);
                let (stream, pumps) = ws::tunnel::spawn(rd, wr, ws::tunnel::Role::Server);
                spdy::serve_port_forward(stream, backend, pod, timeout).await;
                pumps.finish().await;
            }
        }
    }
}

/// One accepted connection: when it last carried a byte, and a way to shut it down.
struct ConnInfo {
    socket: Option<std::net::TcpStream>,
    activity: Activity,
}

/// Milliseconds since `origin` at the last byte read or written.
#[derive(Clone)]
struct Activity {
    origin: tokio::time::Instant,
    last_ms: Arc<AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            origin: tokio::time::Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> tokio::time::Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Shuts the connection down once it has been idle for `timeout`: the session then sees its
/// client leave and cleans up as it would for a client that hung up.
async fn close_when_idle(conn: Arc<ConnInfo>, timeout: Duration) {
    loop {
        let deadline = conn.activity.last() + timeout;
        if tokio::time::Instant::now() >= deadline {
            tracing::info!(?timeout, "closing an idle streaming session");
            if let Some(s) = &conn.socket {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// The client connection, recording activity on every byte moved.
struct ActiveIo<T> {
    io: T,
    activity: Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for ActiveIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActiveIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A slot among `max_sessions`, released on drop.
struct SessionGuard(Arc<Shared>);

impl SessionGuard {
    fn acquire(shared: &Arc<Shared>) -> Option<SessionGuard> {
        let before = shared.sessions.fetch_add(1, Ordering::SeqCst);
        if before >= shared.max_sessions {
            shared.sessions.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(SessionGuard(shared.clone()))
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::SeqCst);
    }
}

enum Negotiated {
    WebSocket {
        key: String,
        protocol: Option<&'static str>,
    },
    Spdy {
        protocol: Option<&'static str>,
    },
}

enum Job {
    WsRemote {
        protocol: Option<&'static str>,
        session: Session,
    },
    WsPortForward {
        protocol: Option<&'static str>,
        pod: String,
        ports: Vec<u16>,
    },
    SpdyRemote {
        protocol: Option<&'static str>,
        session: Session,
    },
    SpdyPortForward {
        pod: String,
    },
    /// `SPDY/3.1+portforward.k8s.io`: SPDY carried in WebSocket binary messages.
    TunneledSpdyPortForward {
        pod: String,
    },
}

fn session_for(pending: token::Pending, backend: Arc<dyn Backend>) -> Option<Session> {
    match pending {
        Pending::Exec(e) => Some(Session {
            backend,
            target: Target::Exec {
                container_id: e.container_id,
                cmd: e.cmd,
            },
            opts: Options {
                stdin: e.stdin,
                stdout: e.stdout,
                stderr: e.stderr,
                tty: e.tty,
            },
        }),
        Pending::Attach(a) => Some(Session {
            backend,
            target: Target::Attach {
                container_id: a.container_id,
            },
            opts: Options {
                stdin: a.stdin,
                stdout: a.stdout,
                stderr: a.stderr,
                tty: a.tty,
            },
        }),
        Pending::PortForward(_) => None,
    }
}

/// Parses repeated `port=N` query parameters (other parameters are ignored, as the kubelet does).
fn query_ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        let Some(value) = pair.strip_prefix("port=") else {
            continue;
        };
        for v in value.split(',') {
            match v.trim().parse::<u16>() {
                Ok(p) if p > 0 => ports.push(p),
                _ => return Err(format!("invalid port {v:?}\n")),
            }
        }
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_client_order() {
        let server = &["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"];
        let got = negotiate(
            vec!["v4.channel.k8s.io".into(), "v5.channel.k8s.io".into()],
            server,
        );
        assert_eq!(got, Ok(Some("v4.channel.k8s.io")));
        assert_eq!(negotiate(vec!["nope".into()], server), Err(()));
        assert_eq!(negotiate(vec![], server), Ok(None));
    }

    #[test]
    fn ports_from_query() {
        assert_eq!(
            query_ports(Some("port=8080&port=9090")),
            Ok(vec![8080, 9090])
        );
        assert_eq!(query_ports(Some("x=1")), Ok(vec![]));
        assert!(query_ports(Some("port=0")).is_err());
        assert!(query_ports(Some("port=70000")).is_err());
    }
}
