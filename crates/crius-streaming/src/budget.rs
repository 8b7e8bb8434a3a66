//! Per-session bound on the bytes received from a client and not yet consumed (written to the
//! process or the pod). Every queued chunk holds permits of its session's semaphore until it is
//! dropped, so however many streams or channels a client opens, what it can make us buffer is
//! [`SESSION_BUFFER`] bytes per session.

use std::ops::Deref;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes a session may have queued towards its consumers.
pub const SESSION_BUFFER: usize = 4 * 1024 * 1024;

/// Received bytes, charged to their session until dropped.
pub(crate) struct Chunk {
    data: Vec<u8>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("len", &self.data.len())
            .finish()
    }
}

#[derive(Clone)]
pub(crate) struct Budget(Arc<Semaphore>);

impl Budget {
    pub(crate) fn new() -> Budget {
        Budget(Arc::new(Semaphore::new(SESSION_BUFFER)))
    }

    fn permits(len: usize) -> u32 {
        // A single chunk larger than the whole budget would wait forever; frame and message
        // limits keep chunks far below it, and it is clamped to be safe.
        len.min(SESSION_BUFFER) as u32
    }

    /// Waits until `data` fits in the budget (the caller stops reading meanwhile: backpressure).
    pub(crate) async fn charge(&self, data: Vec<u8>) -> Chunk {
        let permit = self
            .0
            .clone()
            .acquire_many_owned(Self::permits(data.len()))
            .await
            .ok();
        Chunk {
            data,
            _permit: permit,
        }
    }

    /// Charges `data` only if it fits now.
    pub(crate) fn try_charge(&self, data: Vec<u8>) -> Result<Chunk, Vec<u8>> {
        match self
            .0
            .clone()
            .try_acquire_many_owned(Self::permits(data.len()))
        {
            Ok(p) => Ok(Chunk {
                data,
                _permit: Some(p),
            }),
            Err(_) => Err(data),
        }
    }

    /// Bytes currently free.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.0.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_hold_their_bytes_until_dropped() {
        let b = Budget::new();
        let c1 = b.charge(vec![0; 3 * 1024 * 1024]).await;
        assert_eq!(b.available(), SESSION_BUFFER - 3 * 1024 * 1024);
        // Does not fit now.
        let big = match b.try_charge(vec![0; 2 * 1024 * 1024]) {
            Ok(_) => panic!("over budget"),
            Err(v) => v,
        };
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.charge(big).await.len() }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "waits for room");
        drop(c1);
        assert_eq!(waiting.await.ok(), Some(2 * 1024 * 1024));
        assert_eq!(b.available(), SESSION_BUFFER);
    }
}
