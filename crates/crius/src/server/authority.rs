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

mod rewrite;

pub use rewrite::rewrite_block;
use rewrite::FrameFilter;
#[cfg(test)]
use rewrite::{rewrite_frame, FLAG_END_HEADERS, FLAG_PADDED, FRAME_HEADERS};

/// The accepted unix stream with the inbound direction filtered through [`rewrite::rewrite_frame`].
pub struct AuthorityFix {
    inner: UnixStream,
    filter: FrameFilter,
    ready: Vec<u8>,
    ready_pos: usize,
    eof: bool,
}

impl AuthorityFix {
    pub fn new(inner: UnixStream) -> AuthorityFix {
        AuthorityFix {
            inner,
            filter: FrameFilter::default(),
            ready: Vec::new(),
            ready_pos: 0,
            eof: false,
        }
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
                this.filter.finish(&mut this.ready);
                if !this.ready.is_empty() {
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
                        this.filter.push(rb.filled(), &mut this.ready);
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
