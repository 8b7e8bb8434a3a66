//! Mutating RPCs run as their own tasks.
//!
//! tonic drops a handler's future when the client gives up (deadline, cancel, connection gone). A
//! lifecycle operation dropped half-way would leave its object locked in Creating with nobody to
//! finish or undo it. So each mutating RPC body is spawned: it runs to completion (or rolls itself
//! back) whatever the client does, and a retry finds its result.

use std::future::Future;

use tonic::Status;

use crate::error::Error;

/// Runs `op` to completion in its own task and returns its result, if anybody still waits for it.
pub async fn detached<T: Send + 'static>(
    rpc: &'static str,
    op: impl Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Status> {
    match tokio::spawn(crate::metrics::trace::carry(op)).await {
        Ok(r) => r.map_err(Status::from),
        Err(e) => Err(Status::internal(format!("{rpc} task failed: {e}"))),
    }
}
