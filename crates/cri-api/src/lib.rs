//! The CRI v1 API: message types plus tonic server and client stubs for
//! `runtime.v1.RuntimeService` and `runtime.v1.ImageService`.

#![allow(clippy::all, missing_docs)]

/// Package `runtime.v1`.
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

pub use v1::*;
