//! Client side of the monitor's attach socket (`<state>/attach.sock`).
//!
//! Frames, both directions: `u8 kind | u32 big-endian length | payload`.
//! Monitor → client: [`FrameKind::Stdout`] (1), [`FrameKind::Stderr`] (2).
//! Client → monitor: [`FrameKind::Stdin`] (0; an empty payload means "my stdin ended"),
//! [`FrameKind::Resize`] (3; `u16 BE width, u16 BE height`).
//! The monitor closes the connection when the container's output has ended.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::OciError;

/// Largest frame accepted from the monitor (it sends at most one read's worth, 16 KiB).
pub const MAX_FRAME: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
    Resize = 3,
}

impl FrameKind {
    pub fn from_u8(b: u8) -> Option<FrameKind> {
        Some(match b {
            0 => FrameKind::Stdin,
            1 => FrameKind::Stdout,
            2 => FrameKind::Stderr,
            3 => FrameKind::Resize,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub data: Vec<u8>,
}

/// Encodes one frame.
pub fn encode_frame(kind: FrameKind, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + data.len());
    v.push(kind as u8);
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// The payload of a resize frame.
pub fn resize_payload(width: u16, height: u16) -> [u8; 4] {
    let (w, h) = (width.to_be_bytes(), height.to_be_bytes());
    [w[0], w[1], h[0], h[1]]
}

fn proto(what: String) -> OciError {
    OciError::Protocol {
        id: String::new(),
        what,
    }
}

/// Reading half: the container's output.
pub struct AttachReader {
    inner: OwnedReadHalf,
}

impl AttachReader {
    /// The next output frame; None once the monitor closed the stream (the container is gone).
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, OciError> {
        let mut head = [0u8; 5];
        match self.inner.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(proto(format!("attach read: {e}"))),
        }
        let kind = FrameKind::from_u8(head[0])
            .ok_or_else(|| proto(format!("attach: unknown frame kind {}", head[0])))?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return Err(proto(format!("attach: frame of {len} bytes")));
        }
        let mut data = vec![0u8; len];
        self.inner
            .read_exact(&mut data)
            .await
            .map_err(|e| proto(format!("attach read: {e}")))?;
        Ok(Some(Frame { kind, data }))
    }
}

/// Writing half: stdin and terminal size.
pub struct AttachWriter {
    inner: OwnedWriteHalf,
}

impl AttachWriter {
    pub async fn write_stdin(&mut self, data: &[u8]) -> Result<(), OciError> {
        // An empty stdin frame means EOF; never send one by accident.
        if data.is_empty() {
            return Ok(());
        }
        self.send(FrameKind::Stdin, data).await
    }

    /// Tells the monitor our stdin ended (closes the container's stdin with stdin_once).
    pub async fn close_stdin(&mut self) -> Result<(), OciError> {
        self.send(FrameKind::Stdin, &[]).await
    }

    pub async fn resize(&mut self, width: u16, height: u16) -> Result<(), OciError> {
        self.send(FrameKind::Resize, &resize_payload(width, height))
            .await
    }

    async fn send(&mut self, kind: FrameKind, data: &[u8]) -> Result<(), OciError> {
        self.inner
            .write_all(&encode_frame(kind, data))
            .await
            .map_err(|e| proto(format!("attach write: {e}")))
    }
}

/// One attach session with a container's monitor.
pub struct AttachStream {
    pub reader: AttachReader,
    pub writer: AttachWriter,
}

impl AttachStream {
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, OciError> {
        self.reader.read_frame().await
    }
    pub async fn write_stdin(&mut self, data: &[u8]) -> Result<(), OciError> {
        self.writer.write_stdin(data).await
    }
    pub async fn close_stdin(&mut self) -> Result<(), OciError> {
        self.writer.close_stdin().await
    }
    pub async fn resize(&mut self, width: u16, height: u16) -> Result<(), OciError> {
        self.writer.resize(width, height).await
    }
    pub fn into_split(self) -> (AttachReader, AttachWriter) {
        (self.reader, self.writer)
    }
}

/// Connects to the monitor of the container whose state dir this is.
pub async fn attach(state_dir: &Path) -> Result<AttachStream, OciError> {
    let path = state_dir.join("attach.sock");
    let s: UnixStream = crate::monitor::connect(&path)
        .await
        .map_err(|e| OciError::io("attach to", &path, e))?;
    let (r, w) = s.into_split();
    Ok(AttachStream {
        reader: AttachReader { inner: r },
        writer: AttachWriter { inner: w },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout() {
        assert_eq!(
            encode_frame(FrameKind::Stdout, b"hi"),
            vec![1, 0, 0, 0, 2, b'h', b'i']
        );
        assert_eq!(encode_frame(FrameKind::Stdin, b""), vec![0, 0, 0, 0, 0]);
        assert_eq!(resize_payload(80, 24), [0, 80, 0, 24]);
        assert_eq!(FrameKind::from_u8(3), Some(FrameKind::Resize));
        assert_eq!(FrameKind::from_u8(9), None);
    }
}
