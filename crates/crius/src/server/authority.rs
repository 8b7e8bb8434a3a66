//! Rewrites the HTTP/2 `:authority` of requests arriving on the CRI unix socket to `localhost`.
//!
//! Older gRPC-Go clients (crictl/critest up to 1.26, kubelets of that age) dial a unix socket and send
//! the socket *path* as `:authority`. The HTTP/2 server under tonic rejects such a request as a protocol
//! error before any handler runs, so those clients could not talk to crius at all. Over a unix socket
//! the authority means nothing, so every literal `:authority` in a client's header blocks is replaced
//! with `localhost` on the way in; everything else passes through byte for byte.
//!
//! HPACK stays consistent: a rewritten literal-with-indexing enters *both* dynamic tables as
//! `:authority: localhost` (the server's is the only one that matters for decoding), later indexed
//! references name the same slot, and a smaller entry can only make the server evict later, which
//! never changes the index of an entry the client still references.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

const PREFACE_LEN: usize = 24;
const FRAME_HEADERS: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The default SETTINGS_MAX_FRAME_SIZE; a rewrite never grows a frame past it.
const MAX_FRAME: usize = 16384;
const NEW_AUTHORITY: &[u8] = b"localhost";

/// Decodes an HPACK prefix integer (RFC 7541 §5.1) at `buf[*pos]` with an `n`-bit prefix.
fn read_int(buf: &[u8], pos: &mut usize, n: u8) -> Option<usize> {
    let mask = (1u16 << n) as usize - 1;
    let first = *buf.get(*pos)? as usize & mask;
    *pos += 1;
    if first < mask {
        return Some(first);
    }
    let mut value = mask;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos)? as usize;
        *pos += 1;
        value = value.checked_add((b & 0x7f).checked_shl(shift)?)?;
        if b & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// Skips a string literal; returns (huffman, bytes range).
fn read_str(buf: &[u8], pos: &mut usize) -> Option<(bool, std::ops::Range<usize>)> {
    let huffman = *buf.get(*pos)? & 0x80 != 0;
    let len = read_int(buf, pos, 7)?;
    let start = *pos;
    let end = start.checked_add(len)?;
    if end > buf.len() {
        return None;
    }
    *pos = end;
    Some((huffman, start..end))
}

/// Returns the header block with every literal `:authority` value replaced, or None if the block does
/// not parse (it is then passed on untouched, and the server judges it).
pub fn rewrite_block(block: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len());
    let mut pos = 0;
    while pos < block.len() {
        let start = pos;
        let b = block[pos];
        if b & 0x80 != 0 {
            read_int(block, &mut pos, 7)?;
            out.extend_from_slice(&block[start..pos]);
            continue;
        }
        if b & 0xe0 == 0x20 {
            read_int(block, &mut pos, 5)?;
            out.extend_from_slice(&block[start..pos]);
            continue;
        }
        // A literal: with incremental indexing (01), or without / never indexed (0000 / 0001).
        let prefix = if b & 0xc0 == 0x40 { 6 } else { 4 };
        let index = read_int(block, &mut pos, prefix)?;
        let mut is_authority = index == 1;
        if index == 0 {
            let (huffman, name) = read_str(block, &mut pos)?;
            is_authority = !huffman && &block[name] == b":authority";
        }
        let name_end = pos;
        read_str(block, &mut pos)?;
        out.extend_from_slice(&block[start..name_end]);
        if is_authority {
            out.push(NEW_AUTHORITY.len() as u8);
            out.extend_from_slice(NEW_AUTHORITY);
        } else {
            out.extend_from_slice(&block[name_end..pos]);
        }
    }
    Some(out)
}

/// Rewrites one complete frame (9-byte header + payload) into `out`.
fn rewrite_frame(frame: &[u8], out: &mut Vec<u8>) {
    let (ty, flags) = (frame[3], frame[4]);
    if ty != FRAME_HEADERS || flags & FLAG_END_HEADERS == 0 {
        out.extend_from_slice(frame);
        return;
    }
    let payload = &frame[9..];
    let mut pos = 0;
    let mut pad = 0;
    if flags & FLAG_PADDED != 0 {
        let Some(&p) = payload.first() else {
            out.extend_from_slice(frame);
            return;
        };
        pad = p as usize;
        pos = 1;
    }
    let prio = if flags & FLAG_PRIORITY != 0 { 5 } else { 0 };
    if pos + prio + pad > payload.len() {
        out.extend_from_slice(frame);
        return;
    }
    let block = &payload[pos + prio..payload.len() - pad];
    let Some(new_block) = rewrite_block(block) else {
        out.extend_from_slice(frame);
        return;
    };
    let len = prio + new_block.len();
    if new_block == block || len > MAX_FRAME {
        out.extend_from_slice(frame);
        return;
    }
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(ty);
    // Padding is dropped with its flag; the rest of the frame header stays.
    out.push(flags & !FLAG_PADDED);
    out.extend_from_slice(&frame[5..9]);
    out.extend_from_slice(&payload[pos..pos + prio]);
    out.extend_from_slice(&new_block);
}

/// The accepted unix stream with the inbound direction filtered through [`rewrite_frame`].
pub struct AuthorityFix {
    inner: UnixStream,
    raw: Vec<u8>,
    ready: Vec<u8>,
    ready_pos: usize,
    preface_done: bool,
    eof: bool,
}

impl AuthorityFix {
    pub fn new(inner: UnixStream) -> AuthorityFix {
        AuthorityFix {
            inner,
            raw: Vec::new(),
            ready: Vec::new(),
            ready_pos: 0,
            preface_done: false,
            eof: false,
        }
    }

    /// Moves every complete unit (preface, frames) from `raw` to `ready`.
    fn process(&mut self) {
        if !self.preface_done {
            if self.raw.len() < PREFACE_LEN {
                return;
            }
            self.ready.extend(self.raw.drain(..PREFACE_LEN));
            self.preface_done = true;
        }
        let mut pos = 0;
        while self.raw.len() - pos >= 9 {
            let len = u32::from_be_bytes([0, self.raw[pos], self.raw[pos + 1], self.raw[pos + 2]])
                as usize;
            if self.raw.len() - pos < 9 + len {
                break;
            }
            rewrite_frame(&self.raw[pos..pos + 9 + len], &mut self.ready);
            pos += 9 + len;
        }
        self.raw.drain(..pos);
    }
}

impl AsyncRead for AuthorityFix {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ready_pos < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_pos);
                buf.put_slice(&this.ready[this.ready_pos..this.ready_pos + n]);
                this.ready_pos += n;
                if this.ready_pos == this.ready.len() {
                    this.ready.clear();
                    this.ready_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // Whatever incomplete bytes remain go out as they are; the server sees the truncation.
                if !this.raw.is_empty() {
                    this.ready.append(&mut this.raw);
                    continue;
                }
                return Poll::Ready(Ok(()));
            }
            let mut tmp = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut tmp);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.raw.extend_from_slice(rb.filled());
                        this.process();
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for AuthorityFix {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for AuthorityFix {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A HEADERS block as gRPC-Go writes it: `:method POST` (indexed 3), `:scheme http` (indexed 6),
    /// `:path` literal with indexing (name index 4), `:authority` literal with indexing (name index 1),
    /// then `content-type` literal with a literal name, then an indexed dynamic entry (62).
    fn block(authority: &[u8]) -> Vec<u8> {
        let mut b = vec![0x83, 0x86, 0x44, 5];
        b.extend_from_slice(b"/a/Bc");
        b.push(0x41);
        b.push(authority.len() as u8);
        b.extend_from_slice(authority);
        b.push(0x40);
        b.push(12);
        b.extend_from_slice(b"content-type");
        b.push(16);
        b.extend_from_slice(b"application/grpc");
        b.push(0xbe);
        b
    }

    #[test]
    fn literal_authority_is_replaced_and_the_rest_kept() {
        let got = rewrite_block(&block(b"/run/crius/crius.sock")).unwrap();
        assert_eq!(got, block(b"localhost"));
    }

    #[test]
    fn huffman_value_and_never_indexed_forms() {
        // Never-indexed literal (0001xxxx) with name index 1 and a Huffman-flagged value of 3 bytes.
        let b = vec![0x11, 0x83, 0xaa, 0xbb, 0xcc];
        let got = rewrite_block(&b).unwrap();
        let mut want = vec![0x11, 9];
        want.extend_from_slice(b"localhost");
        assert_eq!(got, want);
        // A literal name ":authority" without indexing (0000 0000).
        let mut b = vec![0x00, 10];
        b.extend_from_slice(b":authority");
        b.push(4);
        b.extend_from_slice(b"/x/y");
        let got = rewrite_block(&b).unwrap();
        assert!(got.ends_with(b"\x09localhost"), "{got:?}");
    }

    #[test]
    fn multi_byte_integers_and_table_size_updates_parse() {
        // Size update to 4096 (001 11111 + 0xe1 0x1f), then an indexed field with index 200 (1111111 + 73).
        let b = vec![0x3f, 0xe1, 0x1f, 0xff, 0x49];
        assert_eq!(rewrite_block(&b).unwrap(), b);
        // Truncated input does not parse.
        assert!(rewrite_block(&[0x41, 10, b'a']).is_none());
    }

    #[test]
    fn frames_are_rewritten_with_their_length_and_padding_dropped() {
        let blk = block(b"/run/crius/crius.sock");
        let mut payload = vec![3u8];
        payload.extend_from_slice(&blk);
        payload.extend_from_slice(&[0, 0, 0]);
        let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        frame.extend_from_slice(&[FRAME_HEADERS, FLAG_END_HEADERS | FLAG_PADDED, 0, 0, 0, 1]);
        frame.extend_from_slice(&payload);
        let mut out = Vec::new();
        rewrite_frame(&frame, &mut out);
        let want_block = block(b"localhost");
        assert_eq!(
            u32::from_be_bytes([0, out[0], out[1], out[2]]) as usize,
            want_block.len()
        );
        assert_eq!(out[3], FRAME_HEADERS);
        assert_eq!(out[4], FLAG_END_HEADERS);
        assert_eq!(&out[5..9], &[0, 0, 0, 1]);
        assert_eq!(&out[9..], &want_block[..]);
        // DATA frames pass untouched.
        let data = [0, 0, 2, 0, 0, 0, 0, 0, 1, 7, 7];
        let mut out = Vec::new();
        rewrite_frame(&data, &mut out);
        assert_eq!(out, data);
    }
}
