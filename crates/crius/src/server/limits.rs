//! Bounds on what one client of the CRI socket can make the daemon hold: connections, concurrent
//! calls per connection, header sizes, and the size of an ExecSync answer. The socket is root-only,
//! so these are about a buggy or runaway client (a kubelet stuck in a retry loop), not an attacker.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

/// Concurrent calls (HTTP/2 streams) per connection.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// Largest header block a client may send (metadata is small; the kubelet sends < 1 KiB).
pub const MAX_HEADER_LIST: u32 = 64 * 1024;
/// Room left in one message for protobuf framing around ExecSync's two byte fields.
const EXEC_SYNC_FRAMING: usize = 16 * 1024;

/// How many bytes of output one ExecSync response may carry (stdout and stderr together).
pub fn exec_sync_budget() -> usize {
    super::MAX_MESSAGE - EXEC_SYNC_FRAMING
}

/// Truncates stdout and stderr so that together they fit `budget`: a stream smaller than half keeps
/// everything and leaves the rest to the other; otherwise each gets half.
pub fn fit_exec_output(stdout: &mut Vec<u8>, stderr: &mut Vec<u8>, budget: usize) {
    if stdout.len() + stderr.len() <= budget {
        return;
    }
    let half = budget / 2;
    if stdout.len() <= half {
        stderr.truncate(budget - stdout.len());
    } else if stderr.len() <= half {
        stdout.truncate(budget - stderr.len());
    } else {
        stdout.truncate(half);
        stderr.truncate(budget - half);
    }
}

/// A connection that holds one of the `max_grpc_connections` permits until it is dropped.
pub struct Limited<T> {
    inner: T,
    _permit: OwnedSemaphorePermit,
}

impl<T> Limited<T> {
    pub fn new(inner: T, permit: OwnedSemaphorePermit) -> Self {
        Limited {
            inner,
            _permit: permit,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Limited<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Limited<T> {
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

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for Limited<T> {
    type ConnectInfo = T::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(o: usize, e: usize, budget: usize) -> (usize, usize) {
        let (mut a, mut b) = (vec![1u8; o], vec![2u8; e]);
        fit_exec_output(&mut a, &mut b, budget);
        assert!(a.len() + b.len() <= budget);
        (a.len(), b.len())
    }

    #[test]
    fn exec_output_fits_the_budget_and_favours_nobody() {
        assert_eq!(fit(10, 10, 100), (10, 10));
        assert_eq!(fit(10, 500, 100), (10, 90));
        assert_eq!(fit(500, 10, 100), (90, 10));
        assert_eq!(fit(500, 500, 100), (50, 50));
        assert_eq!(fit(500, 500, 101), (50, 51));
        assert_eq!(fit(100, 0, 100), (100, 0));
        let b = exec_sync_budget();
        assert_eq!(fit(16 << 20, 16 << 20, b), (b / 2, b - b / 2));
    }
}
