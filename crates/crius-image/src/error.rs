//! The error type of the image store: every variant names the image, blob or path it concerns.
//!
//! Suggested gRPC mapping for the daemon: `InvalidReference` → InvalidArgument, `NotFound` → NotFound,
//! `Unauthorized` → Unauthenticated, `Forbidden` → PermissionDenied, `Ambiguous` → InvalidArgument,
//! `DigestMismatch` → DataLoss (the bytes we got are not the bytes that were named),
//! `UnsafeLayerEntry` → InvalidArgument (the image itself is malformed/hostile),
//! `LayerLimit`/`NoSpace` → ResourceExhausted, `Timeout` → DeadlineExceeded,
//! `Registry`/`Unsupported` → Unavailable/FailedPrecondition, `Io`/`Db`/`Mount` → Internal.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("image {reference:?} not found")]
    NotFound { reference: String },
    #[error("image reference {reference:?} is ambiguous: it matches {matches} images")]
    Ambiguous { reference: String, matches: usize },
    #[error("registry {registry} refused the credentials: {detail}")]
    Unauthorized { registry: String, detail: String },
    #[error("registry {registry} denied access: {detail}")]
    Forbidden { registry: String, detail: String },
    #[error("registry {registry}: {detail}")]
    Registry { registry: String, detail: String },
    #[error("content {what} digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("layer {layer}: unsafe entry {entry:?}: {reason}")]
    UnsafeLayerEntry {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("layer {layer}: cannot unpack entry {entry:?}: {reason}")]
    Unpack {
        layer: String,
        entry: String,
        reason: String,
    },
    /// A layer inflates past a configured limit (decompression bomb); nothing of it is kept.
    #[error("{layer}: {what} exceeds the limit of {limit} (config key `{key}`)")]
    LayerLimit {
        layer: String,
        what: &'static str,
        limit: u64,
        key: &'static str,
    },
    /// The filesystem holding the store ran out of space or quota; nothing of the layer is kept.
    #[error("{what}: no space left: {detail}")]
    NoSpace { what: String, detail: String },
    #[error("timed out: {what} made no progress for {secs}s")]
    Timeout { what: String, secs: u64 },
    #[error("unsupported content in {what}: {detail}")]
    Unsupported { what: String, detail: String },
    #[error("invalid registry configuration {path}: {detail}")]
    HostsConfig { path: PathBuf, detail: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mount of {target}: {detail}")]
    Mount { target: PathBuf, detail: String },
    #[error("image metadata database {path}: {detail}")]
    Db { path: PathBuf, detail: String },
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if is_no_space(&source) {
            return ImageError::NoSpace {
                what: path.display().to_string(),
                detail: source.to_string(),
            };
        }
        ImageError::Io { path, source }
    }
}

/// ENOSPC or EDQUOT: the disk (or the quota) is full.
pub(crate) fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Attaches a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, path: impl Into<PathBuf>) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, path: impl Into<PathBuf>) -> Result<T, ImageError> {
        self.map_err(|e| ImageError::io(path, e))
    }
}
