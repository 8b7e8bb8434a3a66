//! Seams: the boundaries the pod and container services cross to the outside world, as traits, in the
//! style of youki's `Syscall` trait. The daemon always uses the real ones (`RealOci`, `RealNet`,
//! `RealImages`: thin forwards to crius-oci, crius-network and crius-image); the unit tests of the
//! lifecycle (`crate::lifecycle_tests`) drive the real service code through test doubles, without
//! root. Only the calls the lifecycle makes go through them: everything else (exec, update, stats,
//! image pulls) uses the real types directly.

use std::path::Path;

use async_trait::async_trait;
use crius_image::{Image, ImageError, LowerMapper};
use crius_network::{NetworkError, NetworkStatus, PodNetwork, PodNetworkStatus};
use crius_oci::{ContainerState, ExitInfo, Handler, MonitorConfig, MonitorHandle, OciError};

/// The OCI runtime and the container's monitor, as the container lifecycle uses them.
#[async_trait]
pub trait Oci: Send + Sync {
    /// Spawns the container's monitor, which runs the handler's `create` and reports the pids.
    async fn create(&self, h: &Handler, cfg: &MonitorConfig) -> Result<MonitorHandle, OciError>;
    /// `runtime start`.
    async fn start(&self, h: &Handler, id: &str) -> Result<(), OciError>;
    /// Asks the monitor to run `runtime start` (sandbox handlers: runsc takes stdio there).
    async fn start_via_monitor(&self, state_dir: &Path) -> Result<(), OciError>;
    /// `runtime kill`.
    async fn kill(&self, h: &Handler, id: &str, signal: i32, all: bool) -> Result<(), OciError>;
    /// `runtime delete`.
    async fn delete(&self, h: &Handler, id: &str, force: bool) -> Result<(), OciError>;
    /// `runtime state` (None: the runtime does not know the container).
    async fn state(&self, h: &Handler, id: &str) -> Result<Option<ContainerState>, OciError>;
    /// Waits for the monitor `pid` to exit (it exits after the container, having written the exit).
    async fn wait_monitor(&self, pid: i32) -> Result<(), OciError>;
    /// The monitor's record of the container's exit.
    fn read_exit(&self, state_dir: &Path) -> Result<Option<ExitInfo>, OciError>;
    /// Tells the monitor of a container deleted before it ran to exit.
    async fn abandon(&self, state_dir: &Path) -> Result<(), OciError>;
    /// The monitor's pid if it still runs.
    fn monitor_alive(&self, state_dir: &Path) -> Option<i32>;
}

/// The real OCI runtime (crius-oci).
pub struct RealOci;

#[async_trait]
impl Oci for RealOci {
    async fn create(&self, h: &Handler, cfg: &MonitorConfig) -> Result<MonitorHandle, OciError> {
        crius_oci::spawn_monitor(h, cfg).await
    }
    async fn start(&self, h: &Handler, id: &str) -> Result<(), OciError> {
        h.start(id).await
    }
    async fn start_via_monitor(&self, state_dir: &Path) -> Result<(), OciError> {
        crius_oci::start_via_monitor(state_dir).await
    }
    async fn kill(&self, h: &Handler, id: &str, signal: i32, all: bool) -> Result<(), OciError> {
        h.kill(id, signal, all).await
    }
    async fn delete(&self, h: &Handler, id: &str, force: bool) -> Result<(), OciError> {
        h.delete(id, force).await
    }
    async fn state(&self, h: &Handler, id: &str) -> Result<Option<ContainerState>, OciError> {
        h.state(id).await
    }
    async fn wait_monitor(&self, pid: i32) -> Result<(), OciError> {
        crius_oci::wait_pid_exit(pid).await
    }
    fn read_exit(&self, state_dir: &Path) -> Result<Option<ExitInfo>, OciError> {
        crius_oci::read_exit(state_dir)
    }
    async fn abandon(&self, state_dir: &Path) -> Result<(), OciError> {
        crius_oci::abandon(state_dir).await
    }
    fn monitor_alive(&self, state_dir: &Path) -> Option<i32> {
        crius_oci::monitor_alive(state_dir)
    }
}

/// The pod network (CNI or the native backend), as the pod lifecycle uses it.
#[async_trait]
pub trait PodNet: Send + Sync {
    /// Whether the network is ready for pods (blocking: scans the conf dir, may exec plugins).
    fn status(&self) -> Result<NetworkStatus, NetworkError>;
    /// ADD.
    async fn setup(&self, pod: &PodNetwork) -> Result<PodNetworkStatus, NetworkError>;
    /// DEL.
    async fn teardown(&self, pod: &PodNetwork) -> Result<(), NetworkError>;
    /// Pods with a cached ADD result (for orphan DELs at start-up).
    fn cached_pods(&self) -> Vec<String>;
}

/// The real pod network.
pub struct RealNet(pub crius_network::Cni);

#[async_trait]
impl PodNet for RealNet {
    fn status(&self) -> Result<NetworkStatus, NetworkError> {
        self.0.status()
    }
    async fn setup(&self, pod: &PodNetwork) -> Result<PodNetworkStatus, NetworkError> {
        self.0.setup(pod).await
    }
    async fn teardown(&self, pod: &PodNetwork) -> Result<(), NetworkError> {
        self.0.teardown(pod).await
    }
    fn cached_pods(&self) -> Vec<String> {
        self.0.cached_pods()
    }
}

/// The image store as container create and remove use it: the image lookup and the rootfs.
pub trait Images: Send + Sync {
    fn get(&self, reference_or_id: &str) -> Result<Option<Image>, ImageError>;
    /// Mounts the container's rootfs (lower layers mapped by `mapper` for a user namespace).
    fn prepare_rootfs(
        &self,
        image_id: &str,
        container_id: &str,
        target: &Path,
        mapper: Option<&LowerMapper>,
    ) -> Result<(), ImageError>;
    fn remove_rootfs(&self, container_id: &str, target: &Path) -> Result<(), ImageError>;
    /// Containers with a rootfs snapshot.
    fn list_rootfs(&self) -> Result<Vec<String>, ImageError>;
}

/// The real image store.
pub struct RealImages(pub crius_image::ImageStore);

impl Images for RealImages {
    fn get(&self, reference_or_id: &str) -> Result<Option<Image>, ImageError> {
        self.0.get(reference_or_id)
    }
    fn prepare_rootfs(
        &self,
        image_id: &str,
        container_id: &str,
        target: &Path,
        mapper: Option<&LowerMapper>,
    ) -> Result<(), ImageError> {
        self.0
            .prepare_rootfs_mapped(image_id, container_id, target, mapper)
    }
    fn remove_rootfs(&self, container_id: &str, target: &Path) -> Result<(), ImageError> {
        self.0.remove_rootfs(container_id, target)
    }
    fn list_rootfs(&self) -> Result<Vec<String>, ImageError> {
        self.0.list_rootfs()
    }
}
