//! The error type of pod networking; each variant's text is what an operator sees in NetworkReady or a
//! failed RunPodSandbox, so it names the file, plugin or pod involved.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// No usable network configuration: the directory has files but none is valid.
    #[error("no valid CNI network configuration in {}: {reason}", dir.display())]
    NoConfig { dir: PathBuf, reason: String },

    /// A configuration file (or cached configuration) that cannot be used.
    #[error("invalid CNI configuration {}: {reason}", path.display())]
    InvalidConfig { path: PathBuf, reason: String },

    /// A plugin named by the configuration is not in any bin dir.
    #[error("CNI plugin {plugin:?} not found in {}", display_dirs(searched))]
    PluginNotFound {
        plugin: String,
        searched: Vec<PathBuf>,
    },

    /// A plugin ran and failed (CNI error object on stdout, or a non-zero exit).
    #[error(
        "CNI plugin {plugin} {command} failed (code {code}): {msg}{}",
        details_suffix(details)
    )]
    Plugin {
        plugin: String,
        command: String,
        /// The CNI error code; 0 when the plugin printed no error object.
        code: u64,
        msg: String,
        details: String,
    },

    /// A plugin that does not speak the configuration's CNI version.
    #[error("CNI plugin {plugin} ({}) does not support cniVersion {version} (it supports {})", path.display(), supported.join(", "))]
    IncompatiblePlugin {
        plugin: String,
        path: PathBuf,
        version: String,
        supported: Vec<String>,
    },

    /// A plugin did not finish in time and was killed.
    #[error("CNI plugin {plugin} {command} timed out after {after:?}")]
    Timeout {
        plugin: String,
        command: String,
        after: Duration,
    },

    /// A plugin printed something that is not a CNI result.
    #[error("CNI plugin {plugin} {command} printed an unusable result: {reason}")]
    BadResult {
        plugin: String,
        command: String,
        reason: String,
    },

    /// A pod id that cannot name a cache file or a CNI container id.
    #[error("invalid pod id {id:?}: {reason}")]
    InvalidPodId { id: String, reason: String },

    /// CHECK of a pod that has no completed ADD in the cache.
    #[error("pod {id} has no network set up (no completed CNI ADD in the cache)")]
    NotSetUp { id: String },

    /// A pod annotation (bandwidth) that cannot be used.
    #[error("invalid annotation {key}={value:?}: {reason}")]
    InvalidAnnotation {
        key: String,
        value: String,
        reason: String,
    },

    /// A netlink request of the native network failed (what it was doing, the kernel's errno).
    #[error("native network: {op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: std::io::Error,
    },

    /// The native network's subnet has no free address.
    #[error("native network: no free address left in {subnet} (reservations in {})", dir.display())]
    AddressesExhausted { subnet: String, dir: PathBuf },

    /// A hostPort of the pod is mapped to another pod already.
    #[error("native network: host port(s) {ports} already mapped to another pod")]
    HostPortTaken { ports: String },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl NetworkError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NetworkError::Io {
            path: path.into(),
            source,
        }
    }
}

fn display_dirs(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "(no bin dirs configured)".to_string();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}
