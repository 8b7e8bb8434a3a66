//! The protocol-independent half of exec/attach: what the client asked for, the pipes handed to
//! the backend, running the backend under the client's lifetime, and decoding resize events.
//! The WebSocket and SPDY sessions only move bytes between these pipes and their frames.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

use crate::status::Outcome;
use crate::{Backend, Streams, TermSize};

/// Capacity of each in-memory pipe between a protocol session and the backend. 64 KiB matches
/// the SPDY initial window so one full window can be absorbed without blocking the reader.
pub(crate) const PIPE_CAPACITY: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) stdin: bool,
    pub(crate) stdout: bool,
    pub(crate) stderr: bool,
    pub(crate) tty: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Target {
    Exec {
        container_id: String,
        cmd: Vec<String>,
    },
    Attach {
        container_id: String,
    },
}

pub(crate) struct Session {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) target: Target,
    pub(crate) opts: Options,
}

/// The session side of the pipes handed to the backend.
pub(crate) struct Pipes {
    /// Write the client's stdin here; drop it to signal EOF.
    pub(crate) stdin: Option<DuplexStream>,
    /// Read what the backend wrote to stdout; EOF once the backend dropped its writer.
    pub(crate) stdout: Option<DuplexStream>,
    pub(crate) stderr: Option<DuplexStream>,
    /// Send resize events here.
    pub(crate) resize: Option<mpsc::Sender<TermSize>>,
}

impl Session {
    pub(crate) fn cmd(&self) -> &[String] {
        match &self.target {
            Target::Exec { cmd, .. } => cmd,
            Target::Attach { .. } => &[],
        }
    }

    /// Creates the pipes for the streams the client asked for. Resize is offered only with a
    /// TTY, like the kubelet.
    pub(crate) fn pipes(&self, resize_supported: bool) -> (Pipes, Streams) {
        let mut pipes = Pipes {
            stdin: None,
            stdout: None,
            stderr: None,
            resize: None,
        };
        let mut streams = Streams {
            stdin: None,
            stdout: None,
            stderr: None,
            resize: None,
            tty: self.opts.tty,
        };
        if self.opts.stdin {
            let (ours, theirs) = tokio::io::duplex(PIPE_CAPACITY);
            pipes.stdin = Some(ours);
            streams.stdin = Some(Box::pin(theirs));
        }
        if self.opts.stdout {
            let (ours, theirs) = tokio::io::duplex(PIPE_CAPACITY);
            pipes.stdout = Some(ours);
            streams.stdout = Some(Box::pin(theirs));
        }
        // With a TTY stderr is merged into the terminal; the CRI forbids asking for both.
        if self.opts.stderr && !self.opts.tty {
            let (ours, theirs) = tokio::io::duplex(PIPE_CAPACITY);
            pipes.stderr = Some(ours);
            streams.stderr = Some(Box::pin(theirs));
        }
        if self.opts.tty && resize_supported {
            let (tx, rx) = mpsc::channel(16);
            pipes.resize = Some(tx);
            streams.resize = Some(rx);
        }
        (pipes, streams)
    }

    /// Runs the backend until it finishes or `client_gone` resolves; in the latter case the
    /// backend future is dropped (which, by the `Backend` contract, kills an exec'd process) and
    /// `None` is returned.
    pub(crate) async fn run(
        &self,
        mut streams: Streams,
        client_gone: impl Future<Output = ()>,
    ) -> Option<Outcome> {
        if let Target::Exec { .. } = self.target {
            streams.resize = initial_size_first(streams.resize.take()).await;
        }
        let backend = self.backend.clone();
        let work = async move {
            match &self.target {
                Target::Exec { container_id, cmd } => {
                    match backend.exec(container_id, cmd, streams).await {
                        Ok(code) => Outcome::Exited(code),
                        Err(msg) => {
                            Outcome::Failed(format!("error executing command in container: {msg}"))
                        }
                    }
                }
                Target::Attach { container_id } => {
                    match backend.attach(container_id, streams).await {
                        Ok(()) => Outcome::Detached,
                        Err(msg) => Outcome::Failed(format!("error attaching to container: {msg}")),
                    }
                }
            }
        };
        tokio::select! {
            outcome = work => Some(outcome),
            () = client_gone => None,
        }
    }
}

/// How long an exec with a terminal waits for the client's first size before starting.
/// Clients send their terminal size right after opening the streams; starting the process
/// first would let it see a 0x0 terminal (`stty size` prints `0 0`, editors draw wrongly).
const INITIAL_SIZE_GRACE: Duration = Duration::from_millis(200);

/// Waits (bounded) for the first resize event and hands the backend a receiver that yields it
/// first, so the backend can size the terminal before the process starts reading it.
async fn initial_size_first(
    rx: Option<mpsc::Receiver<TermSize>>,
) -> Option<mpsc::Receiver<TermSize>> {
    let mut rx = rx?;
    let first = match tokio::time::timeout(INITIAL_SIZE_GRACE, rx.recv()).await {
        Ok(Some(size)) => size,
        // The client closed the resize stream or is slow: carry on without a size.
        Ok(None) | Err(_) => return Some(rx),
    };
    let (tx, out) = mpsc::channel(16);
    let _ = tx.try_send(first);
    tokio::spawn(async move {
        while let Some(size) = rx.recv().await {
            if tx.send(size).await.is_err() {
                return;
            }
        }
    });
    Some(out)
}

#[derive(Deserialize)]
struct WireSize {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

/// Incremental decoder for the resize stream: a sequence of `{"Width":w,"Height":h}` objects
/// that may arrive split across frames.
#[derive(Default)]
pub(crate) struct ResizeDecoder {
    buf: Vec<u8>,
}

impl ResizeDecoder {
    /// Feeds bytes and returns every complete size. Garbage is dropped so a broken client cannot
    /// make the buffer grow without bound.
    pub(crate) fn push(&mut self, data: &[u8]) -> Vec<TermSize> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut consumed = 0;
        {
            let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<WireSize>();
            loop {
                match it.next() {
                    Some(Ok(s)) => {
                        out.push(TermSize {
                            width: s.width,
                            height: s.height,
                        });
                        consumed = it.byte_offset();
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "dropping undecodable resize data");
                        consumed = self.buf.len();
                        break;
                    }
                    None => {
                        consumed = self.buf.len();
                        break;
                    }
                }
            }
        }
        self.buf.drain(..consumed);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_split_and_concatenated() {
        let mut d = ResizeDecoder::default();
        assert!(d.push(br#"{"Width":80,"#).is_empty());
        assert_eq!(
            d.push(b"\"Height\":24}\n{\"Width\":100,\"Height\":50}"),
            vec![
                TermSize {
                    width: 80,
                    height: 24
                },
                TermSize {
                    width: 100,
                    height: 50
                }
            ]
        );
        assert!(d.push(b"junk").is_empty());
        assert_eq!(
            d.push(br#"{"Width":1,"Height":2}"#),
            vec![TermSize {
                width: 1,
                height: 2
            }]
        );
    }
}
