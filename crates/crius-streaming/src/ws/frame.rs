//! RFC 6455 framing: frame encode/decode (masking, 7/16/64-bit lengths), message reassembly
//! from fragments, and the `Sec-WebSocket-Accept` computation. Used by both the server session
//! and the client; it has no notion of which side it runs on beyond the mask it is given.

use base64::Engine as _;
use sha1::{Digest as _, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest frame or reassembled message accepted. Channel traffic is chunked far below this;
/// the limit only stops a peer from making us allocate without bound.
pub const MAX_MESSAGE: usize = 2 * 1024 * 1024;

const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("websocket frame of {0} bytes exceeds the {MAX_MESSAGE} byte limit")]
    TooLarge(u64),
    #[error("reserved websocket bits set (no extension was negotiated)")]
    Reserved,
    #[error("invalid websocket control frame: {0}")]
    Control(&'static str),
    #[error("unexpected websocket continuation frame")]
    Continuation,
    #[error("unknown websocket opcode {0:#x}")]
    Opcode(u8),
    #[error("reading websocket frame: {0}")]
    Io(#[from] std::io::Error),
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Encodes one frame. Clients must pass a mask, servers must not (RFC 6455 §5.1).
pub fn encode(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0F));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// One decoded frame, already unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

/// Decodes one frame from the front of `buf`. Returns `Ok(None)` when more bytes are needed,
/// otherwise the frame and how many bytes it used.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    if buf[0] & 0x70 != 0 {
        return Err(FrameError::Reserved);
    }
    let opcode = buf[0] & 0x0F;
    let masked = buf[1] & 0x80 != 0;
    let mut pos = 2;
    let len = match buf[1] & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            pos = 4;
            u16::from_be_bytes([buf[2], buf[3]]) as u64
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            pos = 10;
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            u64::from_be_bytes(b)
        }
        n => n as u64,
    };
    if len > MAX_MESSAGE as u64 {
        return Err(FrameError::TooLarge(len));
    }
    if opcode >= 0x8 {
        if !fin {
            return Err(FrameError::Control("fragmented"));
        }
        if len > 125 {
            return Err(FrameError::Control("payload over 125 bytes"));
        }
    }
    let mask = if masked {
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        let m = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        Some(m)
    } else {
        None
    };
    let len = len as usize;
    if buf.len() < pos + len {
        return Ok(None);
    }
    let mut payload = buf[pos..pos + len].to_vec();
    if let Some(m) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    Ok(Some((
        Frame {
            fin,
            opcode,
            masked,
            payload,
        },
        pos + len,
    )))
}

/// A complete message after reassembly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// Close with the status code, if the peer sent one.
    Close(Option<u16>),
}

/// Reads frames from a byte stream and reassembles fragmented messages; control frames
/// interleaved with fragments are returned as they come.
pub struct MessageReader<R> {
    io: R,
    buf: Vec<u8>,
    partial: Option<(u8, Vec<u8>)>,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    pub fn new(io: R) -> Self {
        MessageReader {
            io,
            buf: Vec::with_capacity(16 * 1024),
            partial: None,
        }
    }

    /// The next message, or `None` on a clean EOF between frames.
    pub async fn next(&mut self) -> Result<Option<Message>, FrameError> {
        loop {
            if let Some((frame, used)) = decode(&self.buf)? {
                self.buf.drain(..used);
                if let Some(msg) = self.assemble(frame)? {
                    return Ok(Some(msg));
                }
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.io.read(&mut chunk).await?;
            if n == 0 {
                if self.buf.is_empty() && self.partial.is_none() {
                    return Ok(None);
                }
                return Err(FrameError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed inside a websocket frame",
                )));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn assemble(&mut self, frame: Frame) -> Result<Option<Message>, FrameError> {
        match frame.opcode {
            OP_PING => Ok(Some(Message::Ping(frame.payload))),
            OP_PONG => Ok(Some(Message::Pong(frame.payload))),
            OP_CLOSE => {
                let code = (frame.payload.len() >= 2)
                    .then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                Ok(Some(Message::Close(code)))
            }
            OP_TEXT | OP_BINARY => {
                if self.partial.is_some() {
                    return Err(FrameError::Continuation);
                }
                if frame.fin {
                    return Ok(Some(finish(frame.opcode, frame.payload)));
                }
                self.partial = Some((frame.opcode, frame.payload));
                Ok(None)
            }
            OP_CONTINUATION => {
                let Some((op, mut data)) = self.partial.take() else {
                    return Err(FrameError::Continuation);
                };
                data.extend_from_slice(&frame.payload);
                if data.len() > MAX_MESSAGE {
                    return Err(FrameError::TooLarge(data.len() as u64));
                }
                if frame.fin {
                    return Ok(Some(finish(op, data)));
                }
                self.partial = Some((op, data));
                Ok(None)
            }
            other => Err(FrameError::Opcode(other)),
        }
    }
}

fn finish(opcode: u8, data: Vec<u8>) -> Message {
    if opcode == OP_TEXT {
        Message::Text(data)
    } else {
        Message::Binary(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    // Vectors from RFC 6455 §5.7.
    #[test]
    fn rfc_unmasked_text() {
        let bytes = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(encode(true, OP_TEXT, b"Hello", None), bytes);
        let (f, used) = decode(&bytes)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no frame"));
        assert_eq!(used, 7);
        assert_eq!((f.fin, f.opcode, f.masked), (true, OP_TEXT, false));
        assert_eq!(f.payload, b"Hello");
    }

    #[test]
    fn rfc_masked_text() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(encode(true, OP_TEXT, b"Hello", Some(MASK)), bytes);
        let (f, _) = decode(&bytes)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no frame"));
        assert!(f.masked);
        assert_eq!(f.payload, b"Hello");
    }

    #[test]
    fn rfc_ping_and_masked_pong() {
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(encode(true, OP_PING, b"Hello", None), ping);
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(encode(true, OP_PONG, b"Hello", Some(MASK)), pong);
    }

    #[test]
    fn rfc_extended_lengths() {
        let data = vec![0xAB; 256];
        let enc = encode(true, OP_BINARY, &data, None);
        assert_eq!(&enc[..4], &[0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(enc.len(), 4 + 256);
        let big = vec![0xCD; 65536];
        let enc = encode(true, OP_BINARY, &big, None);
        assert_eq!(&enc[..10], &[0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
        let (f, used) = decode(&enc)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no frame"));
        assert_eq!(used, enc.len());
        assert_eq!(f.payload.len(), 65536);
    }

    #[test]
    fn partial_input_needs_more() {
        let bytes = encode(true, OP_BINARY, &[1, 2, 3], Some(MASK));
        for cut in 0..bytes.len() {
            assert!(matches!(decode(&bytes[..cut]), Ok(None)), "cut at {cut}");
        }
    }

    #[test]
    fn rejects_bad_frames() {
        assert!(matches!(decode(&[0xC1, 0x00]), Err(FrameError::Reserved)));
        assert!(matches!(decode(&[0x09, 0x00]), Err(FrameError::Control(_))));
        assert!(matches!(
            decode(&[0x89, 0x7E, 0, 200]),
            Err(FrameError::Control(_))
        ));
    }

    #[test]
    fn rfc_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[tokio::test]
    async fn reassembles_fragments_around_control_frames() {
        // RFC 6455 §5.7 fragmented "Hello" with a ping in the middle.
        let mut wire = vec![0x01, 0x03, 0x48, 0x65, 0x6c];
        wire.extend_from_slice(&encode(true, OP_PING, b"p", Some(MASK)));
        wire.extend_from_slice(&[0x80, 0x02, 0x6c, 0x6f]);
        let mut r = MessageReader::new(&wire[..]);
        assert_eq!(
            r.next().await.ok().flatten(),
            Some(Message::Ping(b"p".to_vec()))
        );
        assert_eq!(
            r.next().await.ok().flatten(),
            Some(Message::Text(b"Hello".to_vec()))
        );
        assert!(matches!(r.next().await, Ok(None)));
    }
}
