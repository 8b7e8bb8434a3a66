//! The Kubernetes streaming server of crius: the HTTP endpoint that the CRI `Exec`, `Attach` and
//! `PortForward` RPCs hand out URLs to, and that kubectl/crictl then talk to with the kubelet's
//! streaming protocols (WebSocket `*.channel.k8s.io` and SPDY/3.1 `remotecommand`/`portforward`).
//!
//! The crate owns the wire protocols, the single-use URL tokens and the byte pumping; it knows
//! nothing about containers. The daemon supplies a [`Backend`] that runs the process (or dials
//! the port inside the pod's network namespace) and gets plain async byte streams.
//!
//! [`client`] holds independent protocol clients used by the tests here and by the daemon's
//! end-to-end tests.
//!
//! Wiring it into the daemon:
//! ```no_run
//! # use std::sync::Arc;
//! # use crius_streaming::*;
//! # async fn wire(backend: Arc<dyn Backend>) -> Result<(), StreamError> {
//! let server = Server::start(Config::default(), backend).await?;
//! // In the CRI Exec handler, after validating the request:
//! let url = server.exec_url(ExecRequest {
//!     container_id: "4f2a…".into(),
//!     cmd: vec!["sh".into()],
//!     tty: true,
//!     stdin: true,
//!     stdout: true,
//!     stderr: false,
//! });
//! // ExecResponse { url }
//! # let _ = url; Ok(()) }
//! ```
//!
//! Protocols served: WebSocket `v5.channel.k8s.io`, `v4.channel.k8s.io`,
//! `v4.base64.channel.k8s.io`, `channel.k8s.io`, `base64.channel.k8s.io` (exec/attach) and
//! `v4.channel.k8s.io`/`v4.base64.channel.k8s.io`/`portforward.k8s.io` (port forward), and
//! `SPDY/3.1+portforward.k8s.io` (SPDY port forwarding tunnelled in WebSocket binary messages,
//! what kubectl and crictl use with the WebSocket transport since Kubernetes 1.31);
//! SPDY/3.1 with `v4`/`v3`/`v2.channel.k8s.io`/`channel.k8s.io` and `portforward.k8s.io`.
//!
//! Limits (clients are untrusted): at most [`Config::max_sessions`] upgraded sessions (503
//! beyond, the URL stays usable); a session idle for [`Config::idle_timeout`] is closed; each
//! session buffers at most 4 MiB received from its client and not yet consumed (then reading
//! stops: TCP backpressure, or FLOW_CONTROL_ERROR for a SPDY peer that ignores its windows);
//! a SPDY connection has at most [`spdy::MAX_STREAMS`] streams open (advertised in SETTINGS;
//! more are refused), so at most half as many port-forward connections; WebSocket messages are
//! at most 2 MiB and a WebSocket port forward names at most 64 ports. A port-forward connection
//! the client half-closed is closed 5 s later if the pod has not finished (client-go forgets
//! such streams without a reset, so nothing else tells the server the client left).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

mod budget;
pub mod client;
mod remotecommand;
mod server;
pub mod spdy;
mod status;
mod token;
pub mod ws;

pub use status::ExitStatus;

/// Server settings. Construct with `Config { address, ..Default::default() }` so that fields
/// added later keep compiling.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen. Default `127.0.0.1:0` (an ephemeral loopback port): the URLs handed to
    /// the kubelet carry the bound port, so nothing needs to be reserved up front.
    pub address: SocketAddr,
    /// How long an issued URL stays valid. Default 60 s, like the kubelet's streaming server:
    /// long enough for a slow client to connect, short enough that a leaked URL is useless.
    pub token_ttl: Duration,
    /// How long the SPDY server waits for the client to open all the streams it needs
    /// (stdin/stdout/stderr/error/resize, or a port-forward data/error pair). Default 30 s,
    /// the kubelet's `streamCreationTimeout`.
    pub stream_creation_timeout: Duration,
    /// The URL prefix put into the URLs handed out (e.g. `http://10.0.0.5:10010` when listening
    /// on `0.0.0.0`). Default: `http://<bound address>`.
    pub base_url: Option<String>,
    /// A session whose client connection carries no byte either way for this long is closed.
    /// Default 4 h, the kubelet's `streamingConnectionIdleTimeout`.
    pub idle_timeout: Duration,
    /// Upgraded sessions served at once; further upgrades are refused with 503 (the URL stays
    /// usable). Default 128. With at most 4 MiB buffered per session this bounds the memory
    /// clients can make the server hold.
    pub max_sessions: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            token_ttl: Duration::from_secs(60),
            stream_creation_timeout: Duration::from_secs(30),
            base_url: None,
            idle_timeout: Duration::from_secs(4 * 3600),
            max_sessions: 128,
        }
    }
}

/// A validated CRI `ExecRequest`, ready to be turned into a URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    pub container_id: String,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// A validated CRI `AttachRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachRequest {
    pub container_id: String,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// A validated CRI `PortForwardRequest`. `ports` is used for WebSocket clients that do not name
/// ports in the query string; SPDY clients name the port per stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortForwardRequest {
    pub pod_sandbox_id: String,
    pub ports: Vec<i32>,
}

/// A terminal size as sent by the client on the resize channel/stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TermSize {
    pub width: u16,
    pub height: u16,
}

/// Readable side handed to the backend (the client's stdin).
pub type StreamReader = Pin<Box<dyn AsyncRead + Send>>;
/// Writable side handed to the backend (towards the client's stdout/stderr).
pub type StreamWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// The client's streams, as requested in the CRI request. A stream the client did not ask for
/// is `None`.
///
/// - `stdin` reaches EOF when the client closes its stdin (SPDY FIN, WebSocket v5 close
///   channel) or disconnects.
/// - Everything written to `stdout`/`stderr` is delivered to the client before the exit status,
///   provided the backend drops (or shuts down) the writers by the time its future completes.
/// - `resize` yields the sizes the client sends; only present with `tty` (and a protocol that
///   has resizing). Drain it or drop it: a full, undrained queue stalls the connection's reader.
///   For a tty `exec` the server waits (up to 200 ms) for the client's first size before calling
///   the backend, so it is usually already queued: apply it with `try_recv` before starting the
///   process, or the process may see a 0x0 terminal.
pub struct Streams {
    pub stdin: Option<StreamReader>,
    pub stdout: Option<StreamWriter>,
    pub stderr: Option<StreamWriter>,
    pub resize: Option<tokio::sync::mpsc::Receiver<TermSize>>,
    pub tty: bool,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .field("tty", &self.tty)
            .finish()
    }
}

/// What the streaming server needs from the runtime.
///
/// # Cancellation contract
/// When the client goes away (connection closed, protocol error, idle), the server first
/// delivers EOF on `stdin` and then **drops the future** returned by `exec`/`attach`. A backend
/// must therefore tie the lifetime of what it started to that future: `exec` must kill the
/// exec'd process when its future is dropped (e.g. keep the child in a guard whose `Drop`
/// kills it, `tokio::process::Command::kill_on_drop`), so no process outlives its client.
/// `attach` must only detach (the container keeps running).
///
/// Errors are plain strings because they travel to the client as the status message.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Runs `cmd` in the container wired to `streams`; returns the exit code once the process
    /// has exited (and its output has been written).
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        streams: Streams,
    ) -> Result<i32, String>;

    /// Connects `streams` to the container's main process until it exits or the client leaves.
    async fn attach(&self, container_id: &str, streams: Streams) -> Result<(), String>;

    /// Opens a TCP connection to `port` inside the pod's network namespace. The server pumps
    /// bytes both ways and half-closes each direction as the peers do.
    async fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream, String>;
}

/// Errors of starting the server. Per-connection failures are logged and answered on the wire,
/// never surfaced here.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("binding the streaming server to {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the local address of the streaming server bound to {address}: {source}")]
    LocalAddr {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The running streaming server. Cheap to clone; all clones issue URLs for the same listener.
#[derive(Clone)]
pub struct Server {
    inner: Arc<server::Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.inner.local_addr)
            .finish()
    }
}

impl Server {
    /// Binds `cfg.address` and serves connections on a background task until the runtime shuts
    /// down.
    pub async fn start(cfg: Config, backend: Arc<dyn Backend>) -> Result<Server, StreamError> {
        let inner = server::start(cfg, backend).await?;
        Ok(Server { inner })
    }

    /// The address actually bound (the port is resolved when `Config::address` used port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// `Config::base_url` or `http://host:port`, without a trailing slash.
    pub fn base_url(&self) -> String {
        match &self.inner.base_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.inner.local_addr),
        }
    }

    /// Registers a single-use token for `req` and returns `<base>/exec/<token>`.
    pub fn exec_url(&self, req: ExecRequest) -> String {
        let token = self.inner.tokens.insert(token::Pending::Exec(req));
        format!("{}/exec/{token}", self.base_url())
    }

    /// Registers a single-use token for `req` and returns `<base>/attach/<token>`.
    pub fn attach_url(&self, req: AttachRequest) -> String {
        let token = self.inner.tokens.insert(token::Pending::Attach(req));
        format!("{}/attach/{token}", self.base_url())
    }

    /// Registers a single-use token for `req` and returns `<base>/portforward/<token>`.
    pub fn port_forward_url(&self, req: PortForwardRequest) -> String {
        let token = self.inner.tokens.insert(token::Pending::PortForward(req));
        format!("{}/portforward/{token}", self.base_url())
    }
}
