//! The CRI v1 API: message types plus tonic server and client stubs for
//! `runtime.v1.RuntimeService` and `runtime.v1.ImageService`.

#![allow(clippy::all, missing_docs)]

/// Package `runtime.v1`.
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

pub use v1::*;

/// Package `crius.v1`: crius' own admin API (image import), served beside the CRI.
pub mod admin {
    tonic::include_proto!("crius.v1");
}
