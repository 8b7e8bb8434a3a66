//! The one error type of this crate: every variant names the container and the runtime binary
//! involved, and carries the runtime's own error text when there is one.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The runtime ran and reported failure.
    #[error("{binary} {op} {id}: {stderr} (exit code {exit_code:?})")]
    Runtime {
        op: &'static str,
        id: String,
        binary: PathBuf,
        exit_code: Option<i32>,
        stderr: String,
    },

    /// `create` (through the monitor) failed; nothing was left behind.
    #[error("creating container {id} with {binary}: {stderr}")]
    Create {
        id: String,
        binary: PathBuf,
        stderr: String,
    },

    /// An exec'd process could not be started (as opposed to running and failing).
    #[error("exec in container {id} with {binary}: {stderr}")]
    Exec {
        id: String,
        binary: PathBuf,
        stderr: String,
    },

    #[error("{binary} {op} {id}: timed out after {after:?}")]
    Timeout {
        op: &'static str,
        id: String,
        binary: PathBuf,
        after: Duration,
    },

    #[error("runtime handler {handler} ({binary}) is unavailable: {reason}")]
    Unavailable {
        handler: String,
        binary: PathBuf,
        reason: String,
    },

    #[error("{what} {path}: {source}")]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The monitor or runtime answered something this crate does not understand.
    #[error("container {id}: {what}")]
    Protocol { id: String, what: String },
}

impl OciError {
    pub(crate) fn io(what: impl Into<String>, path: impl Into<PathBuf>, source: io::Error) -> Self {
        OciError::Io {
            what: what.into(),
            path: path.into(),
            source,
        }
    }
}
