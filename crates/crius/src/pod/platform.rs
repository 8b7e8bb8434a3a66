//! The pod's host resources that need root: its namespaces (pinned on bind mounts) and its /dev/shm
//! (a tmpfs). A seam, so that the pod lifecycle is unit-tested without root (`crate::lifecycle_tests`);
//! the daemon always uses `RealPlatform`. The pod cgroup needs no seam for the tests: crius makes it only
//! under its own default parent (`resources::owns`), and the pause process runs only for pods that
//! share a PID namespace, which the tests do not ask for.

use std::path::{Path, PathBuf};

use super::namespaces::Pins;
use crate::error::Result;

pub trait PodPlatform: Send + Sync {
    /// Pins new network+UTS (`own_net`) and IPC (`own_ipc`) namespaces under `dir`, inside a new user
    /// namespace when `userns` is given (blocking: forks).
    fn pin_namespaces(
        &self,
        dir: &Path,
        own_net: bool,
        own_ipc: bool,
        hostname: &str,
        userns: Option<&crius_spec::PodUserns>,
    ) -> Result<Pins>;
    /// Releases the pins (idempotent).
    fn unpin(&self, pins: &Pins);
    /// Mounts the pod's /dev/shm under `dir` and returns its path.
    fn mount_shm(&self, dir: &Path) -> Result<PathBuf>;
    /// Unmounts it (idempotent).
    fn unmount_shm(&self, shm: &Path);
}

/// The host as it is.
pub struct RealPlatform;

impl PodPlatform for RealPlatform {
    fn pin_namespaces(
        &self,
        dir: &Path,
        own_net: bool,
        own_ipc: bool,
        hostname: &str,
        userns: Option<&crius_spec::PodUserns>,
    ) -> Result<Pins> {
        match userns {
            None => super::namespaces::pin(dir, own_net, own_ipc, own_net, hostname),
            Some(u) => {
                let mut want = Vec::new();
                if own_net {
                    want.extend(["net", "uts"]);
                }
                if own_ipc {
                    want.push("ipc");
                }
                let pinned = crate::userns::pin_pod(dir, u, &want, hostname)?;
                let get = |k: &str| {
                    pinned
                        .iter()
                        .find(|(kind, _)| kind == k)
                        .map(|(_, p)| p.clone())
                };
                Ok(Pins {
                    net: get("net"),
                    ipc: get("ipc"),
                    uts: get("uts"),
                    user: get("user"),
                })
            }
        }
    }

    fn unpin(&self, pins: &Pins) {
        super::namespaces::unpin(pins)
    }

    fn mount_shm(&self, dir: &Path) -> Result<PathBuf> {
        super::files::mount_shm(dir)
    }

    fn unmount_shm(&self, shm: &Path) {
        super::files::unmount(shm)
    }
}
