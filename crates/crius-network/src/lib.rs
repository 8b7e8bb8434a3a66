//! Pod networking for crius through CNI plugins: choosing the network configuration, running the
//! plugins (ADD/CHECK/DEL) with the CNI exec protocol, and keeping a persistent per-pod result cache so
//! that teardown works after a daemon restart or a configuration change.
//!
//! When the conf dir holds no configuration, [`Backend::Auto`] (the daemon's default) wires pods
//! with crius' native network instead (see `native`): the same bridge, subnet and hostPort behaviour
//! as the embedded conflist, done over netlink and nftables messages with no plugin process, and
//! recorded in the same per-pod cache so teardown, retries and restarts work the same way.
//!
//! The daemon owns the network namespace (it creates and pins it, and removes the pin after
//! [`Cni::teardown`]); this crate only ever receives its path.
//!
//! ```no_run
//! # async fn demo() -> Result<(), crius_network::NetworkError> {
//! use crius_network::{bandwidth_from_annotations, Cni, CniConfig, PodNetwork};
//! let cni = Cni::new(CniConfig {
//!     conf_dir: "/etc/cni/net.d".into(),
//!     bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
//!     cache_dir: "/var/lib/crius/cni-cache".into(),
//! });
//! // CRI Status: NetworkReady = cni.status().is_ok(), the error text is the reason.
//! let _ready = cni.status();
//! // Startup: pods with a cache entry but no live sandbox get their DEL retried.
//! for id in cni.cached_pods() {
//!     let _ = cni.teardown(&PodNetwork { id, ..Default::default() }).await;
//! }
//! // RunPodSandbox, after the netns is pinned:
//! let annotations = Default::default();
//! let pod = PodNetwork {
//!     id: "0123abcd".into(),
//!     name: "web".into(),
//!     namespace: "default".into(),
//!     uid: "4f0c…".into(),
//!     netns: "/var/lib/crius/pods/0123abcd/netns".into(),
//!     bandwidth: bandwidth_from_annotations(&annotations)?,
//!     annotations,
//!     ..Default::default()
//! };
//! let status = cni.setup(&pod).await?; // status.ips[0] is the primary pod IP
//! # let _ = status;
//! // StopPodSandbox (idempotent, works after restarts and config changes), then unpin the netns:
//! cni.teardown(&pod).await?;
//! # Ok(()) }
//! ```

mod bandwidth;
mod cache;
mod cni;
mod config;
mod error;
mod exec;
pub mod leakcheck;
mod native;
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
pub use native::ipam::Subnet;
pub use native::NativeConfig;

/// Which network pods get (the daemon's `network_backend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The conf dir's CNI configuration when it holds one, else the native network.
    #[default]
    Auto,
    /// Always CNI: the conf dir, or the embedded conflist when it is empty.
    Cni,
    /// Always the native network (netlink and nftables, no plugins), whatever the conf dir holds.
    Native,
}
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PodNetworkStatus {
    /// Pod IPs: IPv4 before IPv6 (kubelet takes the first as the primary), plugin order otherwise.
    pub ips: Vec<IpAddr>,
    /// Interface names inside the pod's namespace.
    pub interfaces: Vec<String>,
    /// The final CNI result of the chain, as the last plugin printed it.
    pub raw_result: serde_json::Value,
}
