//! Protocol clients for streaming URLs (WebSocket and SPDY/3.1), used by this crate's tests and
//! by the daemon's end-to-end tests. They are separate state machines from the server sessions
//! (own handshake, own connection handling, own stream bookkeeping) and share only the frame
//! codecs, which are pinned by byte-vector unit tests.

pub mod spdy;
pub mod ws;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use crate::status::ExitStatus;
use crate::TermSize;

/// How long a client waits for the HTTP upgrade answer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid streaming URL {0:?}: only http://host:port/path is supported")]
    Url(String),
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("streaming I/O with {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The server answered without upgrading.
    #[error("server refused the upgrade with HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

/// What a one-shot exec/attach produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
}

/// What a one-shot exec/attach sends and which streams it opens (must match the CRI request
/// the URL was issued for).
#[derive(Debug, Clone, Default)]
pub struct ExecIo {
    /// Bytes written to stdin; `None` opens no stdin stream.
    pub stdin: Option<Vec<u8>>,
    /// Half-close stdin after writing it (SPDY FIN / WebSocket v5 close channel).
    pub close_stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    /// Sent before stdin (then a short pause so the backend applies it first).
    pub resize: Option<TermSize>,
}

pub(crate) struct Target {
    pub(crate) addr: String,
    pub(crate) path_and_query: String,
}

pub(crate) fn parse_url(url: &str) -> Result<Target, ClientError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::Url(url.to_string()))?;
    let (addr, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if addr.is_empty() {
        return Err(ClientError::Url(url.to_string()));
    }
    Ok(Target {
        addr: addr.to_string(),
        path_and_query: path.to_string(),
    })
}

/// An upgraded connection plus whatever the server sent right after its 101 headers.
pub(crate) struct Upgraded {
    pub(crate) tcp: TcpStream,
    pub(crate) leftover: Vec<u8>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) addr: String,
}

impl Upgraded {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends a GET with `extra` headers and expects `101 Switching Protocols`.
pub(crate) async fn upgrade(url: &str, extra: &[(&str, String)]) -> Result<Upgraded, ClientError> {
    let target = parse_url(url)?;
    let addr = target.addr.clone();
    let io_err = |source| ClientError::Io {
        addr: addr.clone(),
        source,
    };
    let mut tcp =
        TcpStream::connect(&target.addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: target.addr.clone(),
                source,
            })?;
    let _ = tcp.set_nodelay(true);
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n",
        target.path_and_query, target.addr
    );
    for (n, v) in extra {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.map_err(io_err)?;

    let mut buf = Vec::with_capacity(1024);
    let header_end = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(i + 4);
            }
            if buf.len() > 64 * 1024 {
                return Err(ClientError::Protocol("oversized response headers".into()));
            }
            let n = tcp.read(&mut chunk).await.map_err(io_err)?;
            if n == 0 {
                return Err(ClientError::Protocol(
                    "connection closed before the response headers".into(),
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .map_err(|_| ClientError::Timeout("waiting for the upgrade response"))??;

    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Protocol(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut leftover = buf[header_end..].to_vec();
    if status != 101 {
        // Read a short body for the error message, bounded in time and size.
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
            .min(4096);
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let mut chunk = [0u8; 1024];
            while leftover.len() < len {
                match tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => leftover.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        return Err(ClientError::Refused {
            status,
            body: String::from_utf8_lossy(&leftover).trim().to_string(),
        });
    }
    Ok(Upgraded {
        tcp,
        leftover,
        headers,
        addr: target.addr,
    })
}

/// Plain GET without upgrade; returns the status code. For tests of the refusal paths.
pub async fn plain_get(url: &str, extra: &[(&str, String)]) -> Result<u16, ClientError> {
    match upgrade(url, extra).await {
        Ok(_) => Ok(101),
        Err(ClientError::Refused { status, .. }) => Ok(status),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        let t = parse_url("http://127.0.0.1:1234/exec/abc?x=1").ok();
        assert_eq!(
            t.map(|t| (t.addr, t.path_and_query)),
            Some(("127.0.0.1:1234".to_string(), "/exec/abc?x=1".to_string()))
        );
        assert!(parse_url("https://x/").is_err());
        assert!(parse_url("http:///x").is_err());
    }
}
