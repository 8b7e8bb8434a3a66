//! crius: a Kubernetes CRI runtime. The daemon library: configuration, the runtime (pods, containers,
//! images, network), the gRPC services and the streaming server glue. The binary is `main.rs`.

pub mod apparmor;
pub mod cdi;
pub mod cgroups;
pub mod client;
pub mod config;
pub mod container;
pub mod crash;
pub mod criu;
pub mod daemon;
pub mod default_config;
pub mod error;
pub mod events;
pub mod features;
pub mod handler_cache;
pub mod handler_features;
pub mod hexbytes;
pub mod idmap;
pub mod image;
#[cfg(test)]
mod lifecycle_tests;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod oci;
pub mod perms;
pub mod pod;
pub mod recovery;
pub mod reload;
pub mod runtime;
pub mod seams;
pub mod selinux;
pub mod selinux_labels;
pub mod server;
pub mod shared;
pub mod stats;
pub mod status;
pub mod store;
pub mod streaming;
pub mod userns;
