//! The daemon's error type and its mapping onto gRPC status codes.
//!
//! Every variant's message names the object (pod, container, image, field) and the cause, because that
//! message is what `crictl` prints and what the kubelet logs.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{what} is not supported by crius: {reason}")]
    Unimplemented { what: String, reason: String },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    DataLoss(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Internal(String),

    // Typed errors of the library crates, kept whole (source chain intact) and mapped to a code by
    // `code()` variant by variant.
    // (Boxed: they are large, and Result<_, Error> is returned everywhere.)
    #[error(transparent)]
    Oci(Box<crius_oci::OciError>),
    #[error(transparent)]
    Image(Box<crius_image::ImageError>),
    #[error("pod {pod}: {source}")]
    Network {
        pod: String,
        #[source]
        source: Box<crius_network::NetworkError>,
    },
    #[error(transparent)]
    Spec(Box<crius_spec::SpecError>),
    #[error(transparent)]
    Store(Box<crate::store::StoreError>),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
    pub fn unimplemented(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Unimplemented {
            what: what.into(),
            reason: reason.into(),
        }
    }
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Error {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }
    pub fn internal(context: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
        Error::Internal(format!("{context}: {e}"))
    }
}

macro_rules! boxed_from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                Error::$v(Box::new(e))
            }
        }
    )*};
}
boxed_from!(
    crius_oci::OciError => Oci,
    crius_image::ImageError => Image,
    crius_spec::SpecError => Spec,
    crate::store::StoreError => Store
);

impl Error {
    /// A CNI failure of pod `pod`.
    pub fn network(pod: impl Into<String>, source: crius_network::NetworkError) -> Error {
        Error::Network {
            pod: pod.into(),
            source: Box::new(source),
        }
    }
}

/// A full disk or quota is the caller's resource running out, not a crius bug.
fn io_code(e: &std::io::Error) -> Code {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Code::ResourceExhausted,
        _ => Code::Internal,
    }
}

impl Error {
    /// The gRPC code of this error. Every variant of every library error is listed (no catch-all),
    /// so a new variant cannot silently become Internal.
    pub fn code(&self) -> Code {
        use crate::store::StoreError as St;
        use crius_image::ImageError as I;
        use crius_network::NetworkError as N;
        use crius_oci::OciError as O;
        use crius_spec::SpecError as S;
        match self {
            Error::NotFound { .. } => Code::NotFound,
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::Unimplemented { .. } => Code::Unimplemented,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::DataLoss(_) => Code::DataLoss,
            Error::Unavailable(_) => Code::Unavailable,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Internal(_) => Code::Internal,
            Error::Io { source, .. } => io_code(source),
            Error::Oci(e) => match &**e {
                O::Runtime { .. } | O::Create { .. } | O::Exec { .. } | O::Protocol { .. } => {
                    Code::Internal
                }
                O::Timeout { .. } => Code::DeadlineExceeded,
                O::Unavailable { .. } => Code::FailedPrecondition,
                O::Io { source, .. } => io_code(source),
            },
            Error::Image(e) => match &**e {
                I::InvalidReference { .. } => Code::InvalidArgument,
                I::NotFound { .. } => Code::NotFound,
                // The client must name the image more precisely.
                I::Ambiguous { .. } => Code::InvalidArgument,
                I::Unauthorized { .. } => Code::Unauthenticated,
                I::Forbidden { .. } => Code::PermissionDenied,
                // The registry failed or could not be reached: worth a retry.
                I::Registry { .. } => Code::Unavailable,
                I::DigestMismatch { .. } => Code::DataLoss,
                I::UnsafeLayerEntry { .. } => Code::InvalidArgument,
                I::Unpack { .. } | I::Mount { .. } | I::Db { .. } => Code::Internal,
                I::Timeout { .. } => Code::DeadlineExceeded,
                // A layer over the unpack limits, or the disk filled while unpacking.
                I::LayerLimit { .. } | I::NoSpace { .. } => Code::ResourceExhausted,
                I::Unsupported { .. } => Code::Unimplemented,
                // The node's registry configuration is broken.
                I::HostsConfig { .. } => Code::FailedPrecondition,
                I::Io { source, .. } => io_code(source),
            },
            Error::Network { source, .. } => match &**source {
                // The node's network configuration is missing or broken.
                N::NoConfig { .. }
                | N::InvalidConfig { .. }
                | N::PluginNotFound { .. }
                | N::IncompatiblePlugin { .. }
                | N::NotSetUp { .. } => Code::FailedPrecondition,
                // A plugin failed at its job (no address left, a bridge busy): worth a retry.
                N::Plugin { .. } => Code::Unavailable,
                N::Timeout { .. } => Code::DeadlineExceeded,
                N::BadResult { .. } => Code::Internal,
                N::InvalidPodId { .. } | N::InvalidAnnotation { .. } => Code::InvalidArgument,
                N::Netlink { source, .. } => io_code(source),
                N::AddressesExhausted { .. } => Code::ResourceExhausted,
                N::HostPortTaken { .. } => Code::FailedPrecondition,
                N::Io { source, .. } => io_code(source),
            },
            Error::Spec(e) => match &**e {
                S::Invalid { .. } | S::User { .. } => Code::InvalidArgument,
                S::Unsupported { .. } => Code::Unimplemented,
                S::Io { source, .. } => io_code(source),
            },
            Error::Store(e) => match &**e {
                St::Db { .. } => Code::Internal,
                St::Corrupt { .. } => Code::DataLoss,
                St::Schema { .. } => Code::FailedPrecondition,
            },
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

/// Adds context to an I/O error: `io_err("create pod dir", &path, e)`; the error is kept as the
/// source, so a full disk maps to ResourceExhausted.
pub fn io_err(what: &str, path: &std::path::Path, e: std::io::Error) -> Error {
    Error::Io {
        what: what.to_string(),
        path: path.to_path_buf(),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    fn enospc() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::ENOSPC)
    }

    #[test]
    fn library_errors_map_to_the_right_codes() {
        let table: Vec<(Error, Code)> = vec![
            (
                crius_image::ImageError::Ambiguous {
                    reference: "busy".into(),
                    matches: 2,
                }
                .into(),
                Code::InvalidArgument,
            ),
            (
                crius_image::ImageError::Registry {
                    registry: "r".into(),
                    detail: "502".into(),
                }
                .into(),
                Code::Unavailable,
            ),
            (
                crius_image::ImageError::Io {
                    path: "/x".into(),
                    source: enospc(),
                }
                .into(),
                Code::ResourceExhausted,
            ),
            (
                crius_oci::OciError::Timeout {
                    op: "start",
                    id: "c".into(),
                    binary: "/usr/sbin/runc".into(),
                    after: Duration::from_secs(1),
                }
                .into(),
                Code::DeadlineExceeded,
            ),
            (
                Error::network(
                    "p",
                    crius_network::NetworkError::Plugin {
                        plugin: "bridge".into(),
                        command: "ADD".into(),
                        code: 11,
                        msg: "busy".into(),
                        details: String::new(),
                    },
                ),
                Code::Unavailable,
            ),
            (
                Error::network(
                    "p",
                    crius_network::NetworkError::NoConfig {
                        dir: "/etc/cni/net.d".into(),
                        reason: "empty".into(),
                    },
                ),
                Code::FailedPrecondition,
            ),
            (
                crius_spec::SpecError::Io {
                    path: "/etc/passwd".into(),
                    source: std::io::Error::from_raw_os_error(libc::EIO),
                }
                .into(),
                Code::Internal,
            ),
            (
                crius_spec::SpecError::Invalid {
                    field: "f".into(),
                    reason: "r".into(),
                }
                .into(),
                Code::InvalidArgument,
            ),
            (
                crate::store::StoreError::Schema {
                    path: PathBuf::from("/db"),
                    found: "9".into(),
                }
                .into(),
                Code::FailedPrecondition,
            ),
            (
                io_err("write spec", Path::new("/x"), enospc()),
                Code::ResourceExhausted,
            ),
            (
                io_err(
                    "write spec",
                    Path::new("/x"),
                    std::io::Error::from_raw_os_error(libc::EACCES),
                ),
                Code::Internal,
            ),
        ];
        for (e, want) in table {
            let msg = e.to_string();
            let st = Status::from(e);
            assert_eq!(st.code(), want, "{msg}");
            assert_eq!(st.message(), msg);
        }
    }

    #[test]
    fn messages_keep_the_object_and_the_cause() {
        let e = Error::network(
            "abc",
            crius_network::NetworkError::Timeout {
                plugin: "bridge".into(),
                command: "ADD".into(),
                after: Duration::from_secs(3),
            },
        );
        let m = e.to_string();
        assert!(
            m.contains("pod abc") && m.contains("bridge ADD timed out"),
            "{m}"
        );
        assert!(std::error::Error::source(&e).is_some());
        let e = io_err("create pod dir", Path::new("/run/x"), enospc());
        assert!(e.to_string().starts_with("create pod dir /run/x: "), "{e}");
    }
}
