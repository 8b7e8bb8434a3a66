//! SPDY/3.1 wire format: control and data frames, name/value header blocks and their zlib
//! compression against the SPDY/3 dictionary. Each direction of a connection owns one
//! [`HeaderCompressor`] or [`HeaderDecompressor`]: the zlib stream spans all header blocks of
//! the connection, so blocks must be (de)compressed in wire order.

use std::sync::LazyLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

pub const VERSION: u16 = 3;

pub const TYPE_SYN_STREAM: u16 = 1;
pub const TYPE_SYN_REPLY: u16 = 2;
pub const TYPE_RST_STREAM: u16 = 3;
pub const TYPE_SETTINGS: u16 = 4;
pub const TYPE_PING: u16 = 6;
pub const TYPE_GOAWAY: u16 = 7;
pub const TYPE_HEADERS: u16 = 8;
pub const TYPE_WINDOW_UPDATE: u16 = 9;

pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

pub const SETTINGS_MAX_CONCURRENT_STREAMS: u32 = 4;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_INVALID_STREAM: u32 = 2;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;
pub const RST_FLOW_CONTROL_ERROR: u32 = 7;

/// The initial per-stream and per-session flow-control window of SPDY/3.1.
pub const INITIAL_WINDOW: u32 = 64 * 1024;

/// Largest frame payload accepted (the 24-bit length allows 16 MiB; nobody needs that here and
/// the limit bounds what a peer can make us buffer).
pub const MAX_FRAME_PAYLOAD: usize = 1 << 20;
/// Largest decompressed header block accepted.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Header names in SPDY are lowercase; a name may carry several values joined by NUL.
pub type Headers = Vec<(String, String)>;

/// Looks a header up case-insensitively (Go peers send canonical `Streamtype`-style names in
/// some versions; the wire form should be lowercase but be lenient).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        slot: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Vec<u8>,
    },
    /// A control frame type this implementation does not know; the spec says to ignore it.
    Unknown {
        frame_type: u16,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("SPDY frame payload of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("malformed SPDY {0} frame")]
    Malformed(&'static str),
    #[error("SPDY header block: {0}")]
    HeaderBlock(String),
}

const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information",
    "204 No Content",
    "301 Moved Permanently",
    "400 Bad Request",
    "401 Unauthorized",
    "403 Forbidden",
    "404 Not Found",
    "500 Internal Server Error",
    "501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec",
    " 00:00:00",
    " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
    "text/plain,text/javascript,public",
    "private",
    "max-age=",
    "gzip,deflate,sdch",
    "charset=utf-8",
    "charset=iso-8859-1,utf-,*,enq=0.",
);

/// The SPDY/3 header compression dictionary (draft 3 §2.6.10.1): length-prefixed common header
/// words followed by common value fragments.
pub static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut d = Vec::with_capacity(1423);
    for w in DICTIONARY_WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    d
});

/// Serialises a name/value block (uncompressed).
pub fn encode_header_block(headers: &Headers) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (n, v) in headers {
        let n = n.to_ascii_lowercase();
        b.extend_from_slice(&(n.len() as u32).to_be_bytes());
        b.extend_from_slice(n.as_bytes());
        b.extend_from_slice(&(v.len() as u32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    b
}

/// Parses a name/value block (uncompressed).
pub fn decode_header_block(b: &[u8]) -> Result<Headers, FrameError> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], FrameError> {
        if b.len() < n {
            return Err(FrameError::HeaderBlock("truncated".into()));
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    fn u32_of(b: &mut &[u8]) -> Result<usize, FrameError> {
        let s = take(b, 4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
    }
    let mut b = b;
    let count = u32_of(&mut b)?;
    let mut out = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let nl = u32_of(&mut b)?;
        let name = String::from_utf8_lossy(take(&mut b, nl)?).to_ascii_lowercase();
        let vl = u32_of(&mut b)?;
        let value = String::from_utf8_lossy(take(&mut b, vl)?).into_owned();
        out.push((name, value));
    }
    Ok(out)
}

/// Compresses header blocks for one direction of a connection.
pub struct HeaderCompressor {
    z: Compress,
}

impl HeaderCompressor {
    pub fn new() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        // A fresh deflate stream always accepts a dictionary; nothing to recover from.
        let _ = z.set_dictionary(&DICTIONARY);
        HeaderCompressor { z }
    }

    /// Compresses one block, ending with a sync flush so the peer can decode it on its own.
    pub fn compress(&mut self, block: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(block.len() + 64);
        let start_in = self.z.total_in();
        loop {
            let consumed = (self.z.total_in() - start_in) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let before = (self.z.total_in(), self.z.total_out());
            self.z
                .compress_vec(&block[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| FrameError::HeaderBlock(format!("compress: {e}")))?;
            if (self.z.total_in(), self.z.total_out()) == before {
                // Nothing left to flush: done if all input is in, stuck otherwise.
                if (self.z.total_in() - start_in) as usize == block.len() {
                    return Ok(out);
                }
                return Err(FrameError::HeaderBlock(
                    "compressor made no progress".into(),
                ));
            }
            let consumed = (self.z.total_in() - start_in) as usize;
            // Done once all input is in and deflate had spare room (the flush completed).
            if consumed == block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

impl Default for HeaderCompressor {
    fn default() -> Self {
        Self::new()
    }
}

/// Decompresses header blocks for one direction of a connection.
pub struct HeaderDecompressor {
    z: Decompress,
}

impl HeaderDecompressor {
    pub fn new() -> Self {
        HeaderDecompressor {
            z: Decompress::new(true),
        }
    }

    pub fn decompress(&mut self, input: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let start_in = self.z.total_in();
        loop {
            let consumed = (self.z.total_in() - start_in) as usize;
            if out.capacity() - out.len() < 256 {
                out.reserve(1024);
            }
            let before = (self.z.total_in(), self.z.total_out());
            match self
                .z
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::Ok | Status::BufError | Status::StreamEnd) => {
                    // A peer that ends the zlib stream or sends trailing garbage must not spin
                    // us forever.
                    if (self.z.total_in(), self.z.total_out()) == before {
                        if (self.z.total_in() - start_in) as usize == input.len() {
                            return Ok(out);
                        }
                        return Err(FrameError::HeaderBlock(
                            "decompressor made no progress".into(),
                        ));
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(&DICTIONARY)
                        .map_err(|e| FrameError::HeaderBlock(format!("dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(FrameError::HeaderBlock(format!("decompress: {e}"))),
            }
            if out.len() > MAX_HEADER_BLOCK {
                return Err(FrameError::HeaderBlock("too large".into()));
            }
            let consumed = (self.z.total_in() - start_in) as usize;
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

fn control(out: &mut Vec<u8>, frame_type: u16, flags: u8, payload: &[u8]) {
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&frame_type.to_be_bytes());
    let len = payload.len() as u32;
    out.push(flags);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(payload);
}

/// Encodes `frame`, compressing its header block (if any) with `comp`.
pub fn encode(frame: &Frame, comp: &mut HeaderCompressor) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    match frame {
        Frame::SynStream {
            stream_id,
            associated_to,
            priority,
            slot,
            flags,
            headers,
        } => {
            let mut p = Vec::new();
            p.extend_from_slice(&(stream_id & 0x7FFF_FFFF).to_be_bytes());
            p.extend_from_slice(&(associated_to & 0x7FFF_FFFF).to_be_bytes());
            p.push((priority & 0x07) << 5);
            p.push(*slot);
            p.extend_from_slice(&comp.compress(&encode_header_block(headers))?);
            control(&mut out, TYPE_SYN_STREAM, *flags, &p);
        }
        Frame::SynReply {
            stream_id,
            flags,
            headers,
        }
        | Frame::Headers {
            stream_id,
            flags,
            headers,
        } => {
            let t = if matches!(frame, Frame::SynReply { .. }) {
                TYPE_SYN_REPLY
            } else {
                TYPE_HEADERS
            };
            let mut p = Vec::new();
            p.extend_from_slice(&(stream_id & 0x7FFF_FFFF).to_be_bytes());
            p.extend_from_slice(&comp.compress(&encode_header_block(headers))?);
            control(&mut out, t, *flags, &p);
        }
        Frame::RstStream { stream_id, status } => {
            let mut p = (stream_id & 0x7FFF_FFFF).to_be_bytes().to_vec();
            p.extend_from_slice(&status.to_be_bytes());
            control(&mut out, TYPE_RST_STREAM, 0, &p);
        }
        Frame::Settings { flags, entries } => {
            let mut p = (entries.len() as u32).to_be_bytes().to_vec();
            for e in entries {
                p.push(e.flags);
                p.extend_from_slice(&e.id.to_be_bytes()[1..]);
                p.extend_from_slice(&e.value.to_be_bytes());
            }
            control(&mut out, TYPE_SETTINGS, *flags, &p);
        }
        Frame::Ping { id } => control(&mut out, TYPE_PING, 0, &id.to_be_bytes()),
        Frame::GoAway {
            last_good_stream_id,
            status,
        } => {
            let mut p = (last_good_stream_id & 0x7FFF_FFFF).to_be_bytes().to_vec();
            p.extend_from_slice(&status.to_be_bytes());
            control(&mut out, TYPE_GOAWAY, 0, &p);
        }
        Frame::WindowUpdate { stream_id, delta } => {
            let mut p = (stream_id & 0x7FFF_FFFF).to_be_bytes().to_vec();
            p.extend_from_slice(&(delta & 0x7FFF_FFFF).to_be_bytes());
            control(&mut out, TYPE_WINDOW_UPDATE, 0, &p);
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            if data.len() > 0xFF_FFFF {
                return Err(FrameError::TooLarge(data.len()));
            }
            out.extend_from_slice(&(stream_id & 0x7FFF_FFFF).to_be_bytes());
            out.push(*flags);
            out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(data);
        }
        Frame::Unknown { frame_type } => control(&mut out, *frame_type, 0, &[]),
    }
    Ok(out)
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes one frame from the front of `buf`: `Ok(None)` if incomplete, else the frame and the
/// bytes used. Header blocks are decompressed with `decomp`, so frames must be decoded in order.
pub fn decode(
    buf: &[u8],
    decomp: &mut HeaderDecompressor,
) -> Result<Option<(Frame, usize)>, FrameError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let flags = buf[4];
    let len = (be32(buf, 4) & 0x00FF_FFFF) as usize;
    if len > MAX_FRAME_PAYLOAD {
        return Err(FrameError::TooLarge(len));
    }
    if buf.len() < 8 + len {
        return Ok(None);
    }
    let p = &buf[8..8 + len];
    let used = 8 + len;
    if buf[0] & 0x80 == 0 {
        let frame = Frame::Data {
            stream_id: be32(buf, 0) & 0x7FFF_FFFF,
            flags,
            data: p.to_vec(),
        };
        return Ok(Some((frame, used)));
    }
    let version = u16::from_be_bytes([buf[0], buf[1]]) & 0x7FFF;
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let frame_type = u16::from_be_bytes([buf[2], buf[3]]);
    let need = |n: usize, what: &'static str| {
        if p.len() < n {
            Err(FrameError::Malformed(what))
        } else {
            Ok(())
        }
    };
    let frame = match frame_type {
        TYPE_SYN_STREAM => {
            need(10, "SYN_STREAM")?;
            let headers = decode_header_block(&decomp.decompress(&p[10..])?)?;
            Frame::SynStream {
                stream_id: be32(p, 0) & 0x7FFF_FFFF,
                associated_to: be32(p, 4) & 0x7FFF_FFFF,
                priority: p[8] >> 5,
                slot: p[9],
                flags,
                headers,
            }
        }
        TYPE_SYN_REPLY | TYPE_HEADERS => {
            need(4, "SYN_REPLY/HEADERS")?;
            let stream_id = be32(p, 0) & 0x7FFF_FFFF;
            let headers = decode_header_block(&decomp.decompress(&p[4..])?)?;
            if frame_type == TYPE_SYN_REPLY {
                Frame::SynReply {
                    stream_id,
                    flags,
                    headers,
                }
            } else {
                Frame::Headers {
                    stream_id,
                    flags,
                    headers,
                }
            }
        }
        TYPE_RST_STREAM => {
            need(8, "RST_STREAM")?;
            Frame::RstStream {
                stream_id: be32(p, 0) & 0x7FFF_FFFF,
                status: be32(p, 4),
            }
        }
        TYPE_SETTINGS => {
            need(4, "SETTINGS")?;
            let n = be32(p, 0) as usize;
            if p.len() < 4 + n.saturating_mul(8) {
                return Err(FrameError::Malformed("SETTINGS"));
            }
            let entries = (0..n)
                .map(|i| {
                    let at = 4 + i * 8;
                    Setting {
                        flags: p[at],
                        id: be32(p, at) & 0x00FF_FFFF,
                        value: be32(p, at + 4),
                    }
                })
                .collect();
            Frame::Settings { flags, entries }
        }
        TYPE_PING => {
            need(4, "PING")?;
            Frame::Ping { id: be32(p, 0) }
        }
        TYPE_GOAWAY => {
            need(4, "GOAWAY")?;
            Frame::GoAway {
                last_good_stream_id: be32(p, 0) & 0x7FFF_FFFF,
                // SPDY/2-style 4-byte GOAWAY has no status; treat as OK.
                status: if p.len() >= 8 { be32(p, 4) } else { 0 },
            }
        }
        TYPE_WINDOW_UPDATE => {
            need(8, "WINDOW_UPDATE")?;
            Frame::WindowUpdate {
                stream_id: be32(p, 0) & 0x7FFF_FFFF,
                delta: be32(p, 4) & 0x7FFF_FFFF,
            }
        }
        other => Frame::Unknown { frame_type: other },
    };
    Ok(Some((frame, used)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};

    fn enc(f: &Frame) -> Vec<u8> {
        encode(f, &mut HeaderCompressor::new()).unwrap_or_else(|e| panic!("encode: {e}"))
    }

    fn dec(b: &[u8]) -> Frame {
        let (f, used) = decode(b, &mut HeaderDecompressor::new())
            .unwrap_or_else(|e| panic!("decode: {e}"))
            .unwrap_or_else(|| panic!("incomplete"));
        assert_eq!(used, b.len());
        f
    }

    #[test]
    fn dictionary_matches_the_published_bytes() {
        // Length and digest of the dictionary as used by moby/spdystream (Go peers).
        assert_eq!(DICTIONARY.len(), 1423);
        assert!(DICTIONARY.starts_with(b"\x00\x00\x00\x07options\x00\x00\x00\x04head"));
        assert!(DICTIONARY.ends_with(b",*,enq=0."));
        let digest = Sha256::digest(&*DICTIONARY);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"
        );
    }

    #[test]
    fn ping() {
        let b = [
            0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01,
        ];
        assert_eq!(enc(&Frame::Ping { id: 1 }), b);
        assert_eq!(dec(&b), Frame::Ping { id: 1 });
    }

    #[test]
    fn rst_stream() {
        let b = [
            0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00,
            0x00, 0x05,
        ];
        let f = Frame::RstStream {
            stream_id: 3,
            status: RST_CANCEL,
        };
        assert_eq!(enc(&f), b);
        assert_eq!(dec(&b), f);
    }

    #[test]
    fn goaway() {
        let b = [
            0x80, 0x03, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00,
            0x00, 0x00,
        ];
        let f = Frame::GoAway {
            last_good_stream_id: 7,
            status: 0,
        };
        assert_eq!(enc(&f), b);
        assert_eq!(dec(&b), f);
    }

    #[test]
    fn window_update() {
        let b = [
            0x80, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
            0x80, 0x00,
        ];
        let f = Frame::WindowUpdate {
            stream_id: 1,
            delta: 0x8000,
        };
        assert_eq!(enc(&f), b);
        assert_eq!(dec(&b), f);
    }

    #[test]
    fn settings() {
        // One entry: flags 0, id 7 (INITIAL_WINDOW_SIZE) = 65536; MAX_CONCURRENT_STREAMS
        // persisted (flag 1) = 100.
        let b = [
            0x80, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00,
            0x00, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x64,
        ];
        let f = Frame::Settings {
            flags: 0,
            entries: vec![
                Setting {
                    flags: 0,
                    id: SETTINGS_INITIAL_WINDOW_SIZE,
                    value: 65536,
                },
                Setting {
                    flags: 1,
                    id: SETTINGS_MAX_CONCURRENT_STREAMS,
                    value: 100,
                },
            ],
        };
        assert_eq!(enc(&f), b);
        assert_eq!(dec(&b), f);
    }

    #[test]
    fn data() {
        let b = [0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x02, b'h', b'i'];
        let f = Frame::Data {
            stream_id: 1,
            flags: FLAG_FIN,
            data: b"hi".to_vec(),
        };
        assert_eq!(enc(&f), b);
        assert_eq!(dec(&b), f);
        // Incomplete input asks for more.
        for cut in 0..b.len() {
            assert!(matches!(
                decode(&b[..cut], &mut HeaderDecompressor::new()),
                Ok(None)
            ));
        }
    }

    #[test]
    fn header_block_by_hand() {
        let mut expected = vec![0, 0, 0, 1, 0, 0, 0, 10];
        expected.extend_from_slice(b"streamtype");
        expected.extend_from_slice(&[0, 0, 0, 5]);
        expected.extend_from_slice(b"error");
        let h: Headers = vec![("streamType".into(), "error".into())];
        assert_eq!(encode_header_block(&h), expected);
        assert_eq!(
            decode_header_block(&expected).ok(),
            Some(vec![("streamtype".to_string(), "error".to_string())])
        );
    }

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in data {
            a = (a + x as u32) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn syn_stream_with_compressed_headers() {
        let headers: Headers = vec![
            ("streamtype".into(), "data".into()),
            ("port".into(), "8080".into()),
            ("requestid".into(), "0".into()),
        ];
        let f = Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags: 0,
            headers: headers.clone(),
        };
        let b = enc(&f);
        // Fixed part, by hand: control bit + version 3, type 1, flags 0, 24-bit length,
        // stream id 1, associated 0, priority/unused 0, slot 0.
        assert_eq!(&b[..4], &[0x80, 0x03, 0x00, 0x01]);
        assert_eq!(b[4], 0);
        let len = u32::from_be_bytes([0, b[5], b[6], b[7]]) as usize;
        assert_eq!(len, b.len() - 8);
        assert_eq!(&b[8..18], &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        // The zlib header declares a preset dictionary (FDICT) whose Adler-32 is the SPDY
        // dictionary's.
        let z = &b[18..];
        assert_eq!(z[0] & 0x0F, 8, "deflate method");
        assert_eq!(
            (u16::from(z[0]) << 8 | u16::from(z[1])) % 31,
            0,
            "header check"
        );
        assert_ne!(z[1] & 0x20, 0, "FDICT");
        assert_eq!(be32(z, 2), adler32(&DICTIONARY));
        // Decompress with an independent zlib stream primed with the dictionary.
        let mut d = Decompress::new(true);
        let mut out = Vec::with_capacity(4096);
        let r = d.decompress_vec(z, &mut out, FlushDecompress::Sync);
        assert!(matches!(&r, Err(e) if e.needs_dictionary() == Some(adler32(&DICTIONARY))));
        assert!(d.set_dictionary(&DICTIONARY).is_ok());
        let used = d.total_in() as usize;
        assert!(d
            .decompress_vec(&z[used..], &mut out, FlushDecompress::Sync)
            .is_ok());
        assert_eq!(out, encode_header_block(&headers));
        // And the frame decodes back.
        assert_eq!(dec(&b), f);
    }

    #[test]
    fn syn_reply_and_headers_fixed_parts() {
        let mut c = HeaderCompressor::new();
        let reply = encode(
            &Frame::SynReply {
                stream_id: 5,
                flags: FLAG_FIN,
                headers: vec![],
            },
            &mut c,
        )
        .unwrap_or_default();
        // Control bit + version 3, type 2, FIN, 24-bit length, stream id 5, header block.
        assert_eq!(&reply[..5], &[0x80, 0x03, 0x00, 0x02, 0x01]);
        assert_eq!(
            u32::from_be_bytes([0, reply[5], reply[6], reply[7]]) as usize,
            reply.len() - 8
        );
        assert_eq!(&reply[8..12], &[0, 0, 0, 5]);
        let headers = encode(
            &Frame::Headers {
                stream_id: 0x7FFF_FFFF,
                flags: 0,
                headers: vec![("a".into(), "b\0c".into())],
            },
            &mut c,
        )
        .unwrap_or_default();
        assert_eq!(&headers[..5], &[0x80, 0x03, 0x00, 0x08, 0x00]);
        assert_eq!(&headers[8..12], &[0x7F, 0xFF, 0xFF, 0xFF]);
        // Both decode in order through one decompressor; NUL-joined values survive.
        let mut d = HeaderDecompressor::new();
        let mut wire = reply.clone();
        wire.extend_from_slice(&headers);
        let (f1, used) = decode(&wire, &mut d)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("reply"));
        let (f2, _) = decode(&wire[used..], &mut d)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("headers"));
        assert!(matches!(
            f1,
            Frame::SynReply {
                stream_id: 5,
                flags: FLAG_FIN,
                ..
            }
        ));
        assert_eq!(
            f2,
            Frame::Headers {
                stream_id: 0x7FFF_FFFF,
                flags: 0,
                headers: vec![("a".into(), "b\0c".into())],
            }
        );
    }

    #[test]
    fn shared_context_across_frames() {
        let mut c = HeaderCompressor::new();
        let mut d = HeaderDecompressor::new();
        let frames = vec![
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![],
            },
            Frame::Headers {
                stream_id: 3,
                flags: FLAG_FIN,
                headers: vec![("streamtype".into(), "stdout".into())],
            },
            Frame::SynStream {
                stream_id: 5,
                associated_to: 0,
                priority: 7,
                slot: 0,
                flags: FLAG_FIN | FLAG_UNIDIRECTIONAL,
                headers: vec![("streamtype".into(), "stdout".into())],
            },
        ];
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend(encode(f, &mut c).unwrap_or_default());
        }
        let mut got = Vec::new();
        let mut at = 0;
        while let Ok(Some((f, used))) = decode(&wire[at..], &mut d) {
            got.push(f);
            at += used;
        }
        assert_eq!(got, frames);
        // A second stream repeating headers compresses smaller thanks to the shared window.
        let first = encode(&frames[2], &mut HeaderCompressor::new()).unwrap_or_default();
        let again = encode(&frames[2], &mut c).unwrap_or_default();
        assert!(
            again.len() < first.len(),
            "{} < {}",
            again.len(),
            first.len()
        );
    }

    #[test]
    fn garbage_header_block_is_an_error_not_a_hang() {
        let mut d = HeaderDecompressor::new();
        assert!(d.decompress(b"\x78\xbb\xff\xff\xff\xff garbage").is_err());
        // A header block after a completed zlib stream: no progress is possible.
        let mut c = Compress::new(Compression::default(), true);
        let mut z = Vec::with_capacity(256);
        let _ = c.compress_vec(&[0, 0, 0, 0], &mut z, FlushCompress::Finish);
        z.extend_from_slice(b"trailing");
        let mut d = HeaderDecompressor::new();
        assert!(d.decompress(&z).is_err());
    }

    #[test]
    fn rejects_other_versions_and_ignores_unknown_types() {
        let b = [0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1];
        assert!(matches!(
            decode(&b, &mut HeaderDecompressor::new()),
            Err(FrameError::Version(2))
        ));
        let b = [0x80, 0x03, 0x00, 0x0A, 0x00, 0x00, 0x00, 0x00];
        assert_eq!(dec(&b), Frame::Unknown { frame_type: 10 });
    }
}
