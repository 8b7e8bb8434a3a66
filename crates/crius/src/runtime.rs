//! The runtime facade: what the gRPC services, the streaming server and the stats call. It holds the
//! shared context (`shared::Shared`), the pod service (`pod::Pods`) and the container service
//! (`container::Containers`), forwards the operations that touch one of them, and does itself the
//! work that spans both: StopPodSandbox stops the pod's containers first, RemovePodSandbox removes
//! them, PodSandboxStatus lists them, start-up recovery orders pods before containers, and the pod
//! lifecycle events carry the pod's containers.
//!
//! Module dependencies run one way: `runtime` → `container` → `pod` → `shared`; `pod` never names
//! `container` (a unit test below checks the sources). `recovery` (the real machine behind both
//! services' recovery traits) sits beside the facade; `events` only streams what the services send.
//!
//! Where this differs from the sketch in DESIGN.md, and why: the store is not behind a trait (a redb
//! file in a temporary dir needs no root, so the unit tests use the real one); the seams are
//! `crate::seams` (OCI runtime and monitor, pod network, image store, in the shared context) and
//! `pod::platform` (namespaces and /dev/shm, owned by the pod service because its types are the pod's);
//! a pod's events that carry its containers (RunPodSandbox's CREATED/STARTED, StopPodSandbox's
//! STOPPED) are sent by the facade, the pod service sending only those of a pod without containers.

use std::sync::Arc;

use cri_api::v1 as cri;
use tokio::sync::broadcast;

use crate::config::Config;
use crate::container::{Containers, Ctr};
use crate::error::{Error, Result};
use crate::pod::{Pod, Pods, Ran};
pub use crate::shared::{btree, info_map, labels_match, new_id, now_ns, remove_state_dir, Shared};

pub const RUNTIME_NAME: &str = "crius";
pub const RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");
pub const CRI_VERSION: &str = "v1";

pub struct Runtime {
    shared: Arc<Shared>,
    /// The pod service: the pod table and pod operations.
    pub pods: Arc<Pods>,
    /// The container service: the container table and container operations (reads `pods`).
    pub containers: Arc<Containers>,
}

impl std::ops::Deref for Runtime {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Runtime {
    pub async fn new(cfg: Config) -> anyhow::Result<Arc<Runtime>> {
        let rt = Arc::new(Runtime::with_shared(Arc::new(Shared::new(cfg).await?)));
        rt.recover().await?;
        if rt.handlers.default_is_deferred() {
            // The default handler is a sandbox handler (gVisor): its trials are needed by the first
            // Status and pod anyway, so they start now, in the background.
            let bg = rt.clone();
            tokio::spawn(async move {
                bg.handlers.ready().await;
            });
        }
        Ok(rt)
    }

    /// The services over a shared context (no recovery).
    pub fn with_shared(shared: Arc<Shared>) -> Runtime {
        Runtime::with_pods(Pods::new(shared))
    }

    /// The services over a pod service (one with a test double of its platform in unit tests).
    pub fn with_pods(pods: Pods) -> Runtime {
        let pods = Arc::new(pods);
        let containers = Arc::new(Containers::new(pods.clone()));
        Runtime {
            shared: pods.shared().clone(),
            pods,
            containers,
        }
    }

    /// Finds a pod by full id or unique prefix.
    pub fn pod(&self, id: &str) -> Result<Arc<Pod>> {
        self.pods.pod(id)
    }

    /// Finds a container by full id or unique prefix.
    pub fn container(&self, id: &str) -> Result<Arc<Ctr>> {
        self.containers.container(id)
    }

    pub fn all_pods(&self) -> Vec<Arc<Pod>> {
        self.pods.all_pods()
    }

    pub fn all_containers(&self) -> Vec<Arc<Ctr>> {
        self.containers.all_containers()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<cri::ContainerEventResponse> {
        self.events.subscribe()
    }

    /// RunPodSandbox.
    pub async fn run_pod(&self, cfg: cri::PodSandboxConfig, handler: &str) -> Result<String> {
        match self.pods.run_pod(cfg, handler).await? {
            Ran::Created(id) => {
                let c = &self.containers;
                c.sandbox_event(&id, cri::ContainerEventType::ContainerCreatedEvent);
                c.sandbox_event(&id, cri::ContainerEventType::ContainerStartedEvent);
                Ok(id)
            }
            Ran::Existing(id) => Ok(id),
        }
    }

    /// StopPodSandbox: stops every container, then releases the network and the pod's processes.
    /// Idempotent; an unknown id is success, as the CRI asks.
    pub async fn stop_pod(&self, id: &str) -> Result<()> {
        let pod = match self.pods.pod(id) {
            Ok(p) => p,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let _g = pod.op.lock().await;
        if self.pods.pod(&pod.id).is_err() {
            // Its creation was undone, or a concurrent RemovePodSandbox finished first.
            return Ok(());
        }
        for c in self.containers.of_pod(&pod.id) {
            self.containers.stop_container_inner(&c, 0).await?;
        }
        crate::crash::point("pod.stop.containers_stopped");
        let ids = self.container_ids(&pod.id);
        if self.pods.stop_locked(&pod, &ids).await? {
            self.containers
                .sandbox_event(&pod.id, cri::ContainerEventType::ContainerStoppedEvent);
        }
        Ok(())
    }

    /// RemovePodSandbox: removes containers, the pod's resources and its record. Idempotent.
    pub async fn remove_pod(&self, id: &str) -> Result<()> {
        let pod = match self.pods.pod(id) {
            Ok(p) => p,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let _g = pod.op.lock().await;
        if self.pods.pod(&pod.id).is_err() {
            // Its creation was undone, or a concurrent RemovePodSandbox finished first.
            return Ok(());
        }
        for c in self.containers.of_pod(&pod.id) {
            self.containers.remove_container_inner(&c).await?;
        }
        crate::crash::point("pod.remove.containers_removed");
        let ids = self.container_ids(&pod.id);
        self.pods.remove_locked(&pod, &ids).await
    }

    /// The ids of the pod's containers (a sandbox runtime's teardown deletes them first).
    fn container_ids(&self, pod_id: &str) -> Vec<String> {
        self.containers
            .of_pod(pod_id)
            .iter()
            .map(|c| c.id.clone())
            .collect()
    }

    /// PodSandboxStatus: the pod's and its containers'.
    pub fn pod_status(&self, id: &str, verbose: bool) -> Result<cri::PodSandboxStatusResponse> {
        let mut resp = self.pods.pod_status(id, verbose)?;
        let pod_id = resp
            .status
            .as_ref()
            .map(|s| s.id.clone())
            .unwrap_or_default();
        resp.containers_statuses = self
            .containers
            .of_pod(&pod_id)
            .into_iter()
            .map(|c| self.containers.container_status_of(&c.record()))
            .collect();
        Ok(resp)
    }

    /// ListPodSandbox.
    pub fn list_pods(&self, filter: Option<&cri::PodSandboxFilter>) -> Vec<cri::PodSandbox> {
        self.pods.list_pods(filter)
    }

    /// UpdatePodSandboxResources.
    pub async fn update_pod_resources(
        &self,
        id: &str,
        overhead: Option<cri::LinuxContainerResources>,
        resources: Option<cri::LinuxContainerResources>,
    ) -> Result<()> {
        self.pods
            .update_pod_resources(id, overhead, resources)
            .await
    }

    /// CreateContainer.
    pub async fn create_container(
        &self,
        pod_id: &str,
        cfg: cri::ContainerConfig,
        sandbox_cfg: Option<cri::PodSandboxConfig>,
    ) -> Result<String> {
        self.containers
            .create_container(pod_id, cfg, sandbox_cfg)
            .await
    }

    /// StartContainer.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        self.containers.start_container(id).await
    }

    /// StopContainer.
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        self.containers.stop_container(id, timeout).await
    }

    /// RemoveContainer.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        self.containers.remove_container(id).await
    }

    /// ContainerStatus.
    pub fn container_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<cri::ContainerStatusResponse> {
        self.containers.container_status(id, verbose)
    }

    /// ListContainers.
    pub fn list_containers(&self, filter: Option<&cri::ContainerFilter>) -> Vec<cri::Container> {
        self.containers.list_containers(filter)
    }

    /// The process template for exec (see `Containers::exec_process`).
    pub fn exec_process(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
    ) -> Result<(Arc<crius_oci::Handler>, String, oci_spec::runtime::Process)> {
        self.containers.exec_process(id, cmd, tty)
    }

    /// Whether exec into container `id` honours its seccomp filter (see `Containers::check_exec_seccomp`).
    pub async fn check_exec_seccomp(&self, id: &str) -> Result<()> {
        self.containers.check_exec_seccomp(id).await
    }

    /// ExecSync.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse> {
        self.containers.exec_sync(id, cmd, timeout).await
    }

    /// UpdateContainerResources.
    pub async fn update_resources(
        &self,
        id: &str,
        linux: Option<cri::LinuxContainerResources>,
        has_windows: bool,
    ) -> Result<()> {
        self.containers
            .update_resources(id, linux, has_windows)
            .await
    }

    /// ReopenContainerLog.
    pub async fn reopen_log(&self, id: &str) -> Result<()> {
        self.containers.reopen_log(id).await
    }

    /// Brings the in-memory tables back from the store and reconciles them with the machine: half-made
    /// objects are undone, exits that happened while the daemon was down are collected, orphans removed.
    /// Pods first: a container's recovery asks whether its pod is known.
    async fn recover(&self) -> anyhow::Result<()> {
        let host = crate::recovery::Host {
            shared: &self.shared,
        };
        self.recover_with(&host).await
    }

    /// Recovery with the machine seen through `m` (the real one in `recover`, a double in unit tests).
    pub(crate) async fn recover_with<M>(&self, m: &M) -> anyhow::Result<()>
    where
        M: crate::pod::recovery::Machine + crate::container::recovery::Machine,
    {
        crate::pod::recover(&self.pods, m).await?;
        crate::container::recover(&self.containers, m).await?;
        self.remove_orphan_dirs();
        Ok(())
    }

    /// State dirs with no record behind them are leftovers of a crash between mkdir and the first write.
    fn remove_orphan_dirs(&self) {
        let pods: Vec<String> = self.all_pods().iter().map(|p| p.id.clone()).collect();
        let ctrs: Vec<String> = self.all_containers().iter().map(|c| c.id.clone()).collect();
        for (sub, known) in [("pods", &pods), ("containers", &ctrs)] {
            let dir = self.cfg.state.join(sub);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !known.contains(&name) {
                    tracing::info!("removing orphaned {sub} state dir {}", e.path().display());
                    if let Err(err) = remove_state_dir(&e.path()) {
                        tracing::warn!("{err}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Lines of code (comments dropped) under `src/<dir>` that name one of `banned`.
    fn naming(dir: &str, banned: &[&str]) -> (usize, Vec<String>) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(dir);
        let (mut files, mut found) = (0, vec![]);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if banned.iter().any(|b| code.contains(b)) {
                    found.push(format!("{}:{}: {line}", path.display(), n + 1));
                }
            }
        }
        (files, found)
    }

    /// The direction of dependency: the pod service names neither the container service nor the
    /// facade nor what builds on them (containers read pods; work spanning both is the facade's).
    #[test]
    fn pod_never_names_containers_or_the_facade() {
        let banned = [
            "crate::container",
            "crate::runtime",
            "crate::events",
            "crate::image::",
            "crate::stats",
            "crate::streaming",
            "crate::status",
            "super::super::container",
        ];
        let (files, found) = naming("pod", &banned);
        assert!(files >= 8, "only {files} files under src/pod");
        assert!(found.is_empty(), "{}", found.join("\n"));
    }

    /// Containers read pods and the shared context, never the facade.
    #[test]
    fn containers_never_name_the_facade() {
        let banned = [
            "crate::runtime",
            "crate::image::",
            "crate::stats",
            "crate::streaming",
            "crate::status",
        ];
        let (files, found) = naming("container", &banned);
        assert!(files >= 5, "only {files} files under src/container");
        assert!(found.is_empty(), "{}", found.join("\n"));
    }

    /// The checker itself finds what it looks for (a test that cannot fail is a defect).
    #[test]
    fn the_checker_sees_a_use() {
        let (_, found) = naming("pod", &["use super::"]);
        assert!(!found.is_empty());
    }
}
