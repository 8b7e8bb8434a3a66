//! Pod networking for crius through CNI plugins: choosing the network configuration, running the
//! plugins (ADD/CHECK/DEL) with the CNI exec protocol, and keeping a persistent per-pod result cache so
//! that teardown works after a daemon restart or a configuration change.
//!
//! The daemon owns the network namespace (it creates and pins it, and removes the pin after
//! [`Cni::teardown`]); this crate only ever receives its path.

mod bandwidth;
mod cache;
mod cni;
mod config;
mod error;
mod exec;
pub mod leakcheck;
mod netns;
mod result;
mod runtime_config;
mod version;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

pub use bandwidth::{bandwidth_from_annotations, parse_quantity};
pub use cni::{Cni, DEFAULT_PLUGIN_TIMEOUT};
pub use config::{ConfigSource, NetworkList, EMBEDDED_DEFAULT_CONFLIST};
pub use error::NetworkError;
pub use runtime_config::cni_args;

/// Where crius finds CNI configuration and plugins, and where it keeps its per-pod result cache.
#[derive(Debug, Clone)]
pub struct CniConfig {
    /// Directory of `.conflist` / `.conf` / `.json` files, e.g. `/etc/cni/net.d`.
    pub conf_dir: PathBuf,
    /// Plugin binary directories, searched in order, e.g. `/opt/cni/bin`, `/usr/lib/cni`.
    pub bin_dirs: Vec<PathBuf>,
    /// Per-pod result cache (`<root>/cni-cache`); must survive daemon restarts.
    pub cache_dir: PathBuf,
}

/// What [`Cni::status`] found usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkStatus {
    pub source: ConfigSource,
    /// The network name of the configuration list.
    pub name: String,
    pub cni_version: String,
    /// Plugin types in chain order.
    pub plugins: Vec<String>,
}

/// One pod as the network sees it.
#[derive(Debug, Clone, Default)]
pub struct PodNetwork {
    /// Pod sandbox id; becomes CNI_CONTAINERID and names the cache entry.
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// Path of the pinned network namespace.
    pub netns: PathBuf,
    pub port_mappings: Vec<PortMapping>,
    pub bandwidth: Option<Bandwidth>,
    pub dns: Option<Dns>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp` (lower case; other spellings are normalised).
    pub protocol: String,
    /// Empty means all host addresses.
    pub host_ip: String,
}

/// Traffic shaping in bits per second (rates) and bits (bursts), as the CNI bandwidth plugin expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bandwidth {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// The outcome of a CNI ADD, as reported to the CRI.
#[derive(Debug, Clone, PartialEq)]
pub struct PodNetworkStatus {
    /// Pod IPs: IPv4 before IPv6 (kubelet takes the first as the primary), plugin order otherwise.
    pub ips: Vec<IpAddr>,
    /// Interface names inside the pod's namespace.
    pub interfaces: Vec<String>,
    /// The final CNI result of the chain, as the last plugin printed it.
    pub raw_result: serde_json::Value,
}
