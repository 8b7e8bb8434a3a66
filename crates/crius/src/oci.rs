//! The runtime handler table (RuntimeClass handler name → OCI runtime), probed at start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crius_oci::{Handler, HandlerStatus};

use crate::config::Config;
use crate::error::{Error, Result};

pub struct Handlers {
    pub default: String,
    pub by_name: BTreeMap<String, Arc<Handler>>,
}

/// Resolves a bare binary name like the shell would, plus the sbin dirs a root daemon expects.
pub fn find_binary(p: &Path) -> PathBuf {
    if p.is_absolute() || p.components().count() > 1 {
        return p.to_path_buf();
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let extra = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ];
    for dir in path.split(':').filter(|d| !d.is_empty()).chain(extra) {
        let cand = Path::new(dir).join(p);
        if cand.is_file() {
            return cand;
        }
    }
    p.to_path_buf()
}

impl Handlers {
    pub async fn probe(cfg: &Config) -> Handlers {
        let probes = cfg.runtimes.iter().map(|(name, entry)| {
            let bin = find_binary(&entry.path);
            let root = cfg.runtime_root(name);
            let systemd = crate::cgroups::systemd::detect(cfg.cgroup_driver)
                == crate::cgroups::systemd::Driver::Systemd;
            async move {
                let mut h = Handler::probe(name, &bin, &root).await;
                h.systemd_cgroup = systemd;
                (name.clone(), h)
            }
        });
        let mut by_name = BTreeMap::new();
        for (name, h) in futures::future::join_all(probes).await {
            match &h.status {
                HandlerStatus::Available { version } => {
                    tracing::info!("runtime handler {name}: {} ({version})", h.binary.display())
                }
                HandlerStatus::Unavailable { reason } => {
                    tracing::warn!("runtime handler {name} unavailable: {reason}")
                }
            }
            by_name.insert(name, Arc::new(h));
        }
        Handlers {
            default: cfg.default_runtime.clone(),
            by_name,
        }
    }

    /// The handler a request names (empty = the default), failing fast when it is unknown or cannot run.
    pub fn get(&self, name: &str) -> Result<Arc<Handler>> {
        let name = if name.is_empty() {
            self.default.as_str()
        } else {
            name
        };
        let h = self.by_name.get(name).ok_or_else(|| {
            Error::invalid(
                "runtime_handler",
                format!(
                    "no runtime handler named {name:?} is configured (configured: {})",
                    self.by_name.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        match &h.status {
            HandlerStatus::Available { .. } => Ok(h.clone()),
            HandlerStatus::Unavailable { reason } => Err(Error::FailedPrecondition(format!(
                "runtime handler {name:?} ({}) is unavailable on this node: {reason}",
                h.binary.display()
            ))),
        }
    }

    /// The handler by name without the availability check (for stop/remove of existing containers).
    pub fn existing(&self, name: &str) -> Result<Arc<Handler>> {
        self.by_name.get(name).cloned().ok_or_else(|| {
            Error::Internal(format!("runtime handler {name:?} is no longer configured"))
        })
    }
}
