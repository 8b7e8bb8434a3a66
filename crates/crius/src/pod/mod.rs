//! Pod sandboxes: name reservation, namespaces, network, pod files; run, stop, remove, status, list, and
//! recovery after a restart.
//!
//! A pod is written to the store as `Creating` before any work, so that a crash half-way leaves a record
//! that recovery undoes; it becomes `Ready` only when every step succeeded.

pub mod files;
pub mod inputs;
pub mod namespaces;
pub mod pause;
pub mod platform;
pub mod recovery;
pub mod resources;
pub mod sandbox;
pub mod state;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as SyncMutex, RwLock};
use std::time::Duration;

use cri_api::v1 as cri;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, Error, Result};
use crate::shared::{info_map, labels_match, new_id, now_ns, remove_state_dir, Shared};
use crate::store::SANDBOXES;
use namespaces::Pins;
pub use state::{PodEvent, PodTransition};

/// The outcome of one attempt at a create whose name may be held by an earlier attempt.
pub(crate) enum Attempt {
    /// The object's id: created now, or the earlier attempt's for the same request.
    Done(String),
    /// The earlier attempt rolled back; try again.
    Again,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodState {
    Creating,
    Ready,
    NotReady,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    /// The PodSandboxConfig as the client sent it (protobuf bytes, hex).
    #[serde(with = "crate::hexbytes")]
    pub config: Vec<u8>,
    pub runtime_handler: String,
    pub state: PodState,
    pub created_at: i64,
    pub pins: Pins,
    /// Host pid of the pause process (pods that share one PID namespace).
    pub pause_pid: Option<i32>,
    pub ips: Vec<String>,
    /// Whether CNI ADD succeeded and DEL has not yet.
    pub network_up: bool,
    pub shm: Option<PathBuf>,
    pub hostname_file: Option<PathBuf>,
    pub hosts_file: Option<PathBuf>,
    pub resolv_file: Option<PathBuf>,
    pub cgroup_parent: String,
    /// LinuxContainerResources of the last UpdatePodSandboxResources (protobuf; empty: as configured).
    #[serde(default, with = "crate::hexbytes")]
    pub resources: Vec<u8>,
    #[serde(default, with = "crate::hexbytes")]
    pub overhead: Vec<u8>,
}

impl SandboxRecord {
    /// The stored config, or DataLoss naming the record when it does not decode.
    pub fn try_config(&self) -> Result<cri::PodSandboxConfig> {
        cri::PodSandboxConfig::decode(self.config.as_slice()).map_err(|e| {
            Error::DataLoss(format!(
                "stored record of pod {} is corrupt: its config does not decode: {e}",
                self.id
            ))
        })
    }

    /// The config of a record in memory. Every one was decoded once already (from the request, or by
    /// `try_config` when recovery loaded it), so the fallback is unreachable short of memory
    /// corruption; it is logged, never silent.
    pub fn config(&self) -> cri::PodSandboxConfig {
        self.try_config().unwrap_or_else(|e| {
            tracing::error!("{e}");
            cri::PodSandboxConfig::default()
        })
    }
}

pub struct Pod {
    pub id: String,
    pub rec: SyncMutex<SandboxRecord>,
    /// Serialises lifecycle operations on this pod (run/stop/remove).
    pub op: tokio::sync::Mutex<()>,
    /// Reservation key of the pod's name.
    pub name_key: String,
    /// Orders the store commits of this pod's record (see `update`).
    pub commit: tokio::sync::Mutex<()>,
}

impl Pod {
    pub fn record(&self) -> SandboxRecord {
        self.rec.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Changes the record and commits it. The record mutex is held only for the change; the commit
    /// runs on a blocking thread under the pod's commit lock, which keeps commits in the order of the
    /// changes. A pod no longer in the table (forgotten) is not written back.
    async fn update(&self, rt: &Pods, f: impl FnOnce(&mut SandboxRecord)) -> Result<()> {
        let _c = self.commit.lock().await;
        let snapshot = {
            let mut r = self.rec.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut r);
            r.clone()
        };
        self.commit_locked(rt, snapshot).await
    }

    async fn commit_locked(&self, rt: &Pods, snapshot: SandboxRecord) -> Result<()> {
        if rt.pod(&self.id).is_err() {
            return Ok(());
        }
        rt.store
            .put_async(SANDBOXES, self.id.clone(), snapshot)
            .await?;
        Ok(())
    }

    /// Applies a state-machine event (see `state`); an invalid one is an error naming the pod.
    async fn apply(&self, rt: &Pods, ev: PodEvent) -> Result<PodTransition> {
        let _c = self.commit.lock().await;
        let (t, snapshot) = {
            let mut r = self.rec.lock().unwrap_or_else(|p| p.into_inner());
            let t = r.state.next(ev);
            match t {
                PodTransition::To(s) => r.state = s,
                PodTransition::Stale => {}
                PodTransition::Invalid => {
                    return Err(Error::Internal(format!(
                        "pod {}: event {ev:?} cannot happen in state {:?}",
                        r.id, r.state
                    )))
                }
            }
            (t, r.clone())
        };
        if let PodTransition::To(_) = t {
            self.commit_locked(rt, snapshot).await?;
        }
        Ok(t)
    }
}

/// The pod table and the pod operations. It reads the shared context and never the containers: work
/// that spans both (StopPodSandbox and RemovePodSandbox stop and remove a pod's containers first;
/// PodSandboxStatus lists them; start-up recovery orders pods before containers) is the facade's,
/// `runtime::Runtime`.
pub struct Pods {
    shared: Arc<Shared>,
    table: RwLock<HashMap<String, Arc<Pod>>>,
    /// Namespaces and /dev/shm (a seam: the real ones need root).
    platform: Arc<dyn platform::PodPlatform>,
    /// Reserved pod names.
    names: crate::shared::Names,
}

impl std::ops::Deref for Pods {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// What one RunPodSandbox did.
pub enum Ran {
    /// Made the pod now: the caller announces it (CREATED, STARTED).
    Created(String),
    /// A retry of a request that made this pod earlier.
    Existing(String),
}

impl Ran {
    pub fn id(&self) -> &str {
        match self {
            Ran::Created(id) | Ran::Existing(id) => id,
        }
    }
}

fn name_key(cfg: &cri::PodSandboxConfig) -> Result<String> {
    let m = cfg
        .metadata
        .as_ref()
        .ok_or_else(|| Error::invalid("config.metadata", "is required"))?;
    for (field, v) in [
        ("name", &m.name),
        ("namespace", &m.namespace),
        ("uid", &m.uid),
    ] {
        if v.is_empty() {
            return Err(Error::invalid(
                format!("config.metadata.{field}"),
                "must not be empty",
            ));
        }
    }
    Ok(format!(
        "{}_{}_{}_{}",
        m.name, m.namespace, m.uid, m.attempt
    ))
}

fn ns_options(cfg: &cri::PodSandboxConfig) -> cri::NamespaceOption {
    cfg.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

/// The pod's own user namespace (pin and mappings), if it has one.
pub fn userns_of(rec: &SandboxRecord) -> Result<Option<crate::idmap::PodUserns>> {
    let Some(pin) = rec.pins.user.clone() else {
        return Ok(None);
    };
    let map = crius_spec::pod_userns(&ns_options(&rec.config()))
        .map_err(Error::from)?
        .ok_or_else(|| {
            Error::Internal(format!(
                "pod {} has a user namespace pin but no userns_options",
                rec.id
            ))
        })?;
    Ok(Some(crate::idmap::PodUserns {
        pin,
        uids: map.uids,
        gids: map.gids,
    }))
}

fn host_network(cfg: &cri::PodSandboxConfig) -> bool {
    ns_options(cfg).network == cri::NamespaceMode::Node as i32
}

/// Fields of a PodSandboxConfig crius refuses rather than ignores.
fn validate(rt: &Shared, cfg: &cri::PodSandboxConfig) -> Result<()> {
    if cfg.windows.is_some() {
        return Err(Error::unimplemented(
            "config.windows",
            "crius runs Linux pods only",
        ));
    }
    let ns = ns_options(cfg);
    if ns.network == cri::NamespaceMode::Target as i32
        || ns.ipc == cri::NamespaceMode::Target as i32
    {
        return Err(Error::invalid(
            "config.linux.security_context.namespace_options",
            "TARGET mode applies to containers' pid namespace only",
        ));
    }
    if ns.pid == cri::NamespaceMode::Target as i32 {
        return Err(Error::invalid(
            "config.linux.security_context.namespace_options.pid",
            "TARGET mode is for containers, not pods",
        ));
    }
    inputs::validate_hostname("config.hostname", &cfg.hostname)?;
    if let Some(m) = &cfg.metadata {
        inputs::validate_metadata(m)?;
    }
    if let Some(dir) = Some(&cfg.log_directory).filter(|d| !d.is_empty()) {
        if !std::path::Path::new(dir).is_absolute() {
            return Err(Error::invalid(
                "config.log_directory",
                format!("{dir:?} is not an absolute path"),
            ));
        }
    }
    crius_spec::validate_sandbox_config(cfg, &rt.host).map_err(Error::from)?;
    Ok(())
}

impl Pods {
    pub fn new(shared: Arc<Shared>) -> Pods {
        Pods::with_platform(shared, Arc::new(platform::RealPlatform))
    }

    /// The pod service over `platform` (a double in unit tests).
    pub fn with_platform(shared: Arc<Shared>, platform: Arc<dyn platform::PodPlatform>) -> Pods {
        Pods {
            shared,
            table: RwLock::new(HashMap::new()),
            platform,
            names: Default::default(),
        }
    }

    /// The shared context.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Finds a pod by full id or unique prefix.
    pub fn pod(&self, id: &str) -> Result<Arc<Pod>> {
        let pods = self
            .table
            .read()
            .map_err(|_| Error::Internal("pod table lock poisoned".into()))?;
        crate::shared::lookup(&pods, id, "pod sandbox")
    }

    pub fn all_pods(&self) -> Vec<Arc<Pod>> {
        self.table
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// RunPodSandbox. The pod's CREATED and STARTED events are the caller's to send (`Ran::Created`).
    pub async fn run_pod(
        self: &Arc<Self>,
        cfg: cri::PodSandboxConfig,
        handler: &str,
    ) -> Result<Ran> {
        let key = name_key(&cfg)?;
        validate(self, &cfg)?;
        let handler_name = if handler.is_empty() {
            self.handlers.default.clone()
        } else {
            handler.to_string()
        };
        self.handlers.ready_for(&handler_name).await;
        self.handlers.get(&handler_name)?;
        crate::handler_features::check_pod(
            &handler_name,
            self.handlers.features_of(&handler_name)?,
            &cfg,
        )?;
        if crius_spec::pod_userns(&ns_options(&cfg))
            .map_err(Error::from)?
            .is_some()
            && !self.handlers.userns_ok(&handler_name)
        {
            return Err(Error::unimplemented(
                "config.linux.security_context.namespace_options.userns_options",
                format!(
                    "runtime handler {handler_name:?} cannot run pods with a user namespace on this node: {}",
                    self.handlers.userns_reason(&handler_name)
                ),
            ));
        }
        if !host_network(&cfg) {
            // Off the workers: it scans the conf dir and may run the plugins' VERSION probe.
            let net = self.net.clone();
            let status = tokio::task::spawn_blocking(move || net.status())
                .await
                .map_err(|e| Error::internal("CNI status task", e))?;
            if let Err(e) = status {
                return Err(Error::FailedPrecondition(format!(
                    "pod network is not ready: {e}"
                )));
            }
        }

        loop {
            match self.try_run_pod(&key, &cfg, &handler_name).await? {
                (Attempt::Done(id), true) => return Ok(Ran::Created(id)),
                (Attempt::Done(id), false) => return Ok(Ran::Existing(id)),
                // The earlier attempt is being undone; its name is released once that is done.
                (Attempt::Again, _) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// One attempt at RunPodSandbox: creates the pod (true), or finds the attempt that holds its name.
    async fn try_run_pod(
        self: &Arc<Self>,
        key: &str,
        cfg: &cri::PodSandboxConfig,
        handler_name: &str,
    ) -> Result<(Attempt, bool)> {
        let id = new_id();
        let cgroup_parent = cfg
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| match self.cgroup_driver {
                crate::cgroups::systemd::Driver::Systemd => "system.slice".to_string(),
                crate::cgroups::systemd::Driver::Cgroupfs => {
                    resources::default_parent(&id, self.host.cgroup_v2)
                }
            });
        if self.cgroup_driver == crate::cgroups::systemd::Driver::Systemd {
            crate::cgroups::systemd::cgroups_path(&cgroup_parent, &id)
                .map_err(|e| Error::invalid("linux.cgroup_parent", e))?;
        }
        let rec = SandboxRecord {
            id: id.clone(),
            config: cfg.encode_to_vec(),
            runtime_handler: handler_name.to_string(),
            state: PodState::Creating,
            created_at: now_ns(),
            pins: Pins::default(),
            pause_pid: None,
            ips: vec![],
            network_up: false,
            shm: None,
            hostname_file: None,
            hosts_file: None,
            resolv_file: None,
            cgroup_parent,
            resources: vec![],
            overhead: vec![],
        };
        let pod = Arc::new(Pod {
            id: id.clone(),
            rec: SyncMutex::new(rec.clone()),
            op: tokio::sync::Mutex::new(()),
            commit: tokio::sync::Mutex::new(()),
            name_key: key.to_string(),
        });
        // The pod is in the table, locked, before its name is reserved: a concurrent retry that finds
        // the reservation always finds the pod and waits on its lock.
        let guard = pod.op.lock().await;
        self.table
            .write()
            .map_err(|_| Error::Internal("pod table lock poisoned".into()))?
            .insert(id.clone(), pod.clone());
        if let Err(owner) = self.names.reserve(key, &id) {
            if let Ok(mut pods) = self.table.write() {
                pods.remove(&id);
            }
            drop(guard);
            return Ok((self.existing_pod_for_retry(key, &owner, cfg).await?, false));
        }
        if let Err(e) = self.store.put_async(SANDBOXES, id.clone(), rec).await {
            self.forget_pod(&pod).await;
            return Err(e.into());
        }
        crate::crash::point("pod.run.recorded");

        match self.setup_pod(&pod, cfg).await {
            Ok(()) => {
                pod.apply(self, PodEvent::SetUp).await?;
                crate::crash::point("pod.run.ready");
                drop(guard);
                Ok((Attempt::Done(id), true))
            }
            Err(e) => {
                tracing::warn!("pod {id}: RunPodSandbox failed, undoing: {e}");
                self.teardown_pod(&pod, &[]).await;
                self.forget_pod(&pod).await;
                drop(guard);
                Err(e)
            }
        }
    }

    /// A retry of a RunPodSandbox whose first attempt holds the name: wait for that attempt and return
    /// its pod when it is the same request, so a client timeout never wedges the name. If the first
    /// attempt failed and rolled back, the caller tries again.
    async fn existing_pod_for_retry(
        &self,
        key: &str,
        owner: &str,
        cfg: &cri::PodSandboxConfig,
    ) -> Result<Attempt> {
        let pod = match self.pod(owner) {
            Ok(p) => p,
            // Removed between our reservation attempt and now: the name may be free.
            Err(Error::NotFound { .. }) => return Ok(Attempt::Again),
            Err(e) => return Err(e),
        };
        // Waits while the first attempt is still working.
        let _g = tokio::time::timeout(Duration::from_secs(240), pod.op.lock())
            .await
            .map_err(|_| {
                Error::AlreadyExists(format!(
                    "pod name {key} is reserved by pod {owner}, still being created"
                ))
            })?;
        if self.pod(owner).is_err() {
            // The first attempt failed and was undone (or the pod was removed): start afresh.
            return Ok(Attempt::Again);
        }
        let rec = pod.record();
        if rec.state == PodState::Ready && rec.config() == *cfg {
            return Ok(Attempt::Done(owner.to_string()));
        }
        Err(Error::AlreadyExists(format!(
            "pod name {key} is already used by pod {owner} (state {:?}); remove it first",
            rec.state
        )))
    }

    async fn setup_pod(
        self: &Arc<Self>,
        pod: &Arc<Pod>,
        cfg: &cri::PodSandboxConfig,
    ) -> Result<()> {
        let dir = self.pod_dir(&pod.id);
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create pod dir", &dir, e))?;
        {
            let (rec, cfg) = (pod.record(), cfg.clone());
            tokio::task::spawn_blocking(move || resources::create(&rec, &cfg))
                .await
                .map_err(|e| Error::internal("pod cgroup task", e))??;
        }
        crate::crash::point("pod.run.cgroup_created");
        let ns = ns_options(cfg);
        let host_net = ns.network == cri::NamespaceMode::Node as i32;
        let host_ipc = ns.ipc == cri::NamespaceMode::Node as i32;
        // Like containerd: no hostname in the request means the node's.
        let hostname = if cfg.hostname.is_empty() {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().to_string())
                .unwrap_or_default()
        } else {
            cfg.hostname.clone()
        };
        let userns = crius_spec::pod_userns(&ns).map_err(Error::from)?;
        if userns.is_some() {
            crate::userns::ensure_traversable(&self.cfg.state, &dir)?;
        }
        let pins = {
            let (platform, dir) = (self.platform.clone(), dir.clone());
            let (hostname, userns) = (hostname.clone(), userns.clone());
            tokio::task::spawn_blocking(move || {
                platform.pin_namespaces(&dir, !host_net, !host_ipc, &hostname, userns.as_ref())
            })
            .await
            .map_err(|e| Error::internal("namespace task", e))??
        };
        crate::crash::point("pod.run.namespaces_pinned");
        pod.update(self, |r| r.pins = pins.clone()).await?;

        // In a sandbox runtime (gVisor) the pod's PID namespace is its sandbox's: no host pause.
        let sandboxed = self
            .handlers
            .get(&pod.record().runtime_handler)
            .is_ok_and(|h| h.kind == crius_oci::HandlerKind::Sandbox);
        if ns.pid == cri::NamespaceMode::Pod as i32 && !sandboxed {
            let pid_file = dir.join("pause.pid");
            // In a pod with its own user namespace pause keeps its credentials: it entered that
            // namespace with no mapped uid (host root is never mapped), so it holds no capability in
            // the namespace it serves and cannot change identity there.
            let identity = if pins.user.is_some() {
                None
            } else {
                Some(pause::identity(cfg))
            };
            // In the pod's own cgroup where crius owns it (v1); the membership hierarchies
            // (name=systemd, v2) keep it in crius.monitors, out of the daemon's unit.
            let mut join = {
                let rec = pod.record();
                tokio::task::spawn_blocking(move || resources::pause_cgroups(&rec))
                    .await
                    .map_err(|e| Error::internal("pod cgroup task", e))??
            };
            join.extend(self.monitor_cgroups.iter().cloned());
            let pid = namespaces::spawn_pause(
                &self.cfg.pause_binary(),
                &pid_file,
                identity,
                pins.user.as_deref(),
                &join,
            )
            .await?;
            crate::crash::point("pod.run.pause_spawned");
            pod.update(self, |r| r.pause_pid = Some(pid)).await?;
            let p = pause::open(pid, &pid_file)?;
            pause::pin_pid_ns(&p, &pause::pin_path(&dir))?;
            crate::crash::point("pod.run.pid_ns_pinned");
            pause::watch(self, pod, p);
        }

        let mut ips = vec![];
        if let Some(netns) = &pins.net {
            // Written before ADD: if the daemon dies during ADD, recovery still runs DEL.
            pod.update(self, |r| r.network_up = true).await?;
            crate::crash::point("pod.run.network_marked");
            let net = pod_network(&pod.id, cfg, netns.clone())?;
            let status = crate::metrics::cni("ADD", self.net.setup(&net))
                .await
                .map_err(|e| Error::network(pod.id.clone(), e))?;
            ips = status.ips.iter().map(|ip| ip.to_string()).collect();
            crate::crash::point("pod.run.network_added");
            pod.update(self, |r| r.ips = ips.clone()).await?;
        }

        let hostname_file = files::write_hostname(&dir, &hostname)?;
        let hosts_file = files::write_hosts(&dir, &hostname, host_net, &ips)?;
        let resolv_file = files::write_resolv_conf(&dir, cfg.dns_config.as_ref())?;
        let shm = if host_ipc {
            None
        } else {
            Some(self.platform.mount_shm(&dir)?)
        };
        if let Some(u) = &userns {
            let mut own: Vec<&std::path::Path> = vec![&hostname_file, &hosts_file, &resolv_file];
            own.extend(shm.as_deref());
            crate::userns::chown_pod_files(u, &own)?;
        }
        crate::crash::point("pod.run.files_written");
        pod.update(self, |r| {
            r.hostname_file = Some(hostname_file);
            r.hosts_file = Some(hosts_file);
            r.resolv_file = Some(resolv_file);
            r.shm = shm;
        })
        .await?;
        let handler = self.handlers.get(&pod.record().runtime_handler)?;
        if handler.kind == crius_oci::HandlerKind::Sandbox {
            sandbox::start(self, &pod.record(), &handler, &hostname).await?;
        }
        Ok(())
    }

    /// Releases everything a pod holds except its record: network, pause, namespaces, mounts. Safe to call
    /// on a half-made pod and more than once. `containers`: the ids of the pod's containers still known
    /// (a sandbox runtime deletes them before its sandbox).
    pub(crate) async fn teardown_pod(&self, pod: &Pod, containers: &[String]) {
        let rec = pod.record();
        // A sandbox runtime's sandbox goes first: it lives in the pod's network namespace.
        if let Ok(h) = self.handlers.existing(&rec.runtime_handler) {
            if h.kind == crius_oci::HandlerKind::Sandbox {
                sandbox::stop(self, &rec.id, &h, containers).await;
            }
        }
        if rec.network_up {
            let cfg = rec.config();
            let netns = rec.pins.net.clone().unwrap_or_default();
            match pod_network(&rec.id, &cfg, netns) {
                Ok(net) => match crate::metrics::cni("DEL", self.net.teardown(&net)).await {
                    Ok(()) => {
                        crate::crash::point("pod.stop.network_released");
                        let _ = pod.update(self, |r| r.network_up = false).await;
                    }
                    Err(e) => tracing::warn!(
                        "pod {}: CNI DEL failed (retried on remove and restart): {e}",
                        rec.id
                    ),
                },
                Err(e) => tracing::warn!("pod {}: {e}", rec.id),
            }
        }
        // A pause spawned just before a crash has no recorded pid yet: its pid file names it
        // (`kill_pause` checks that the process is that pod's pause before killing).
        let pause_pid = rec
            .pause_pid
            .or_else(|| pause::pid_from_file(&self.pod_dir(&rec.id)));
        if let Some(pid) = pause_pid {
            kill_pause(pid, &self.pod_dir(&rec.id)).await;
            crate::crash::point("pod.stop.pause_killed");
            let _ = pod.update(self, |r| r.pause_pid = None).await;
        }
        if let Some(shm) = &rec.shm {
            self.platform.unmount_shm(shm);
        }
        // Pins go last: CNI DEL needs the netns while it still exists.
        if !pod.record().network_up {
            self.platform.unpin(&rec.pins);
        }
    }

    /// Removes the pod's state dir (unmounting what is below), its record and its name. Out of the
    /// table first, so that no later update writes the record back.
    pub(crate) async fn forget_pod(&self, pod: &Pod) {
        resources::release(&pod.record());
        if let Ok(mut pods) = self.table.write() {
            pods.remove(&pod.id);
        }
        let dir = self.pod_dir(&pod.id);
        match tokio::task::spawn_blocking(move || remove_state_dir(&dir)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("pod {}: {e}", pod.id),
            Err(e) => tracing::warn!("pod {}: state dir task: {e}", pod.id),
        }
        crate::crash::point("pod.remove.state_dir_removed");
        let _c = pod.commit.lock().await;
        if let Err(e) = self.store.delete_async(SANDBOXES, pod.id.clone()).await {
            tracing::warn!("pod {}: {e}", pod.id);
        }
        self.names.release(&pod.name_key, &pod.id);
    }

    /// StopPodSandbox's part after the pod's containers are stopped (by the facade, under the pod's
    /// operation lock, which the caller holds): releases the network and the pod's processes and
    /// records it NotReady. Returns whether it was Ready (the caller then sends STOPPED).
    pub async fn stop_locked(&self, pod: &Arc<Pod>, containers: &[String]) -> Result<bool> {
        self.teardown_pod(pod, containers).await;
        if pod.record().network_up {
            return Err(Error::Unavailable(format!(
                "pod {}: releasing the network failed; it is retried on the next stop/remove",
                pod.id
            )));
        }
        let was_ready = pod.record().state == PodState::Ready;
        pod.apply(self, PodEvent::Stopped).await?;
        crate::crash::point("pod.stop.recorded");
        Ok(was_ready)
    }

    /// RemovePodSandbox's part after the pod's containers are removed (by the facade, under the pod's
    /// operation lock, which the caller holds): releases the pod's resources and forgets its record
    /// and name, sending STOPPED (if it was still Ready) and DELETED.
    pub async fn remove_locked(&self, pod: &Arc<Pod>, containers: &[String]) -> Result<()> {
        self.teardown_pod(pod, containers).await;
        if pod.record().network_up {
            return Err(Error::Unavailable(format!(
                "pod {}: CNI DEL failed; RemovePodSandbox must be retried",
                pod.id
            )));
        }
        if pod.record().state == PodState::Ready {
            // Removed without a stop first: it stopped all the same.
            pod.apply(self, PodEvent::Stopped).await?;
            self.pod_event(&pod.id, cri::ContainerEventType::ContainerStoppedEvent);
        }
        let last = self.pod_status_of(&pod.record());
        if let Some(l) = &self.selinux_labels {
            l.release(&self.pod_dir(&pod.id));
        }
        self.forget_pod(pod).await;
        // Its containers are gone (removed first): the pod's last status alone.
        self.emit(crate::shared::event(
            &pod.id,
            cri::ContainerEventType::ContainerDeletedEvent,
            Some(last),
            vec![],
        ));
        Ok(())
    }

    /// A lifecycle event of a pod that has no containers (just made, or its containers removed):
    /// its status alone.
    pub(crate) fn pod_event(&self, pod_id: &str, kind: cri::ContainerEventType) {
        let status = self
            .pod(pod_id)
            .ok()
            .map(|p| self.pod_status_of(&p.record()));
        self.emit(crate::shared::event(pod_id, kind, status, vec![]));
    }

    pub(crate) fn pod_status_of(&self, rec: &SandboxRecord) -> cri::PodSandboxStatus {
        let cfg = rec.config();
        let mut ips = rec.ips.iter();
        cri::PodSandboxStatus {
            id: rec.id.clone(),
            metadata: cfg.metadata.clone(),
            state: match rec.state {
                PodState::Ready => cri::PodSandboxState::SandboxReady as i32,
                _ => cri::PodSandboxState::SandboxNotready as i32,
            },
            created_at: rec.created_at,
            network: Some(cri::PodSandboxNetworkStatus {
                ip: ips.next().cloned().unwrap_or_default(),
                additional_ips: ips.map(|ip| cri::PodIp { ip: ip.clone() }).collect(),
            }),
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace {
                    options: Some(ns_options(&cfg)),
                }),
            }),
            labels: cfg.labels.clone(),
            annotations: cfg.annotations.clone(),
            runtime_handler: rec.runtime_handler.clone(),
        }
    }

    /// PodSandboxStatus without `containers_statuses` (the facade adds them).
    pub fn pod_status(&self, id: &str, verbose: bool) -> Result<cri::PodSandboxStatusResponse> {
        let pod = self.pod(id)?;
        let rec = pod.record();
        let status = self.pod_status_of(&rec);
        let info = if verbose {
            info_map(serde_json::json!({
                "pid": rec.pause_pid.unwrap_or(0),
                "runtimeHandler": rec.runtime_handler,
                "namespaces": rec.pins,
                "cgroupParent": rec.cgroup_parent,
                "podResources": resources::report(&rec),
                "config": pod_config_json(&rec.config()),
            }))
        } else {
            HashMap::new()
        };
        Ok(cri::PodSandboxStatusResponse {
            status: Some(status),
            info,
            containers_statuses: vec![],
            timestamp: now_ns(),
        })
    }

    /// ListPodSandbox.
    pub fn list_pods(&self, filter: Option<&cri::PodSandboxFilter>) -> Vec<cri::PodSandbox> {
        let mut out: Vec<cri::PodSandbox> = self
            .all_pods()
            .into_iter()
            .map(|p| p.record())
            .filter(|r| r.state.listed())
            .map(|r| {
                let s = self.pod_status_of(&r);
                cri::PodSandbox {
                    id: s.id,
                    metadata: s.metadata,
                    state: s.state,
                    created_at: s.created_at,
                    labels: s.labels,
                    annotations: s.annotations,
                    runtime_handler: s.runtime_handler,
                }
            })
            .filter(|p| match filter {
                None => true,
                Some(f) => {
                    (f.id.is_empty() || p.id.starts_with(&f.id))
                        && f.state.as_ref().map(|s| s.state == p.state).unwrap_or(true)
                        && labels_match(&p.labels, &f.label_selector)
                }
            })
            .collect();
        out.sort_by_key(|p| p.created_at);
        out
    }
}

fn pod_config_json(cfg: &cri::PodSandboxConfig) -> serde_json::Value {
    let m = cfg.metadata.clone().unwrap_or_default();
    serde_json::json!({
        "metadata": {"name": m.name, "namespace": m.namespace, "uid": m.uid, "attempt": m.attempt},
        "hostname": cfg.hostname,
        "log_directory": cfg.log_directory,
        "labels": cfg.labels,
        "annotations": cfg.annotations,
    })
}

/// The CNI view of a pod.
pub fn pod_network(
    id: &str,
    cfg: &cri::PodSandboxConfig,
    netns: PathBuf,
) -> Result<crius_network::PodNetwork> {
    let m = cfg.metadata.clone().unwrap_or_default();
    let annotations = cfg
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let bandwidth = crius_network::bandwidth_from_annotations(&annotations)
        .map_err(|e| Error::invalid("config.annotations", e.to_string()))?;
    let mut port_mappings = vec![];
    for (i, p) in cfg.port_mappings.iter().enumerate() {
        if p.host_port == 0 {
            continue;
        }
        let port = |v: i32, field: &str| {
            u16::try_from(v).ok().filter(|p| *p > 0).ok_or_else(|| {
                Error::invalid(
                    format!("config.port_mappings[{i}].{field}"),
                    format!("{v} is not a port"),
                )
            })
        };
        port_mappings.push(crius_network::PortMapping {
            host_port: port(p.host_port, "host_port")?,
            container_port: port(p.container_port, "container_port")?,
            protocol: match cri::Protocol::try_from(p.protocol) {
                Ok(cri::Protocol::Udp) => "udp",
                Ok(cri::Protocol::Sctp) => "sctp",
                _ => "tcp",
            }
            .to_string(),
            host_ip: p.host_ip.clone(),
        });
    }
    Ok(crius_network::PodNetwork {
        id: id.to_string(),
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        netns,
        port_mappings,
        bandwidth,
        dns: cfg.dns_config.as_ref().map(|d| crius_network::Dns {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        }),
        annotations,
    })
}

async fn kill_pause(pid: i32, pod_dir: &std::path::Path) {
    let pod_id = pod_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    namespaces::unpin_path(&pause::pin_path(pod_dir));
    if let Some(p) = pause::take(&pod_id) {
        // Through the pidfd: never a process that inherited the number.
        let _ = p.signal(libc::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(5), p.exited()).await;
        return;
    }
    // The pid may have been reused after a reboot: only kill it if its cmdline is our pause binary.
    let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            String::from_utf8_lossy(&c)
                .contains(&pod_dir.join("pause.pid").to_string_lossy().to_string())
        })
        .unwrap_or(false);
    if ours {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = tokio::time::timeout(Duration::from_secs(5), crius_oci::wait_pid_exit(pid)).await;
    }
}

/// Loads pods from the store and reconciles them: half-made pods are undone and removed; Ready pods whose
/// namespaces vanished (a reboot) become NotReady; pods whose CNI DEL failed get it retried.
pub(crate) async fn recover(rt: &Arc<Pods>, m: &dyn recovery::Machine) -> anyhow::Result<()> {
    let records: Vec<SandboxRecord> = rt.store.list(SANDBOXES)?;
    for rec in records {
        let cfg = rec.try_config()?;
        let key = name_key(&cfg).unwrap_or_else(|_| rec.id.clone());
        let pod = Arc::new(Pod {
            id: rec.id.clone(),
            rec: SyncMutex::new(rec.clone()),
            op: tokio::sync::Mutex::new(()),
            commit: tokio::sync::Mutex::new(()),
            name_key: key.clone(),
        });
        let _ = rt.names.reserve(&key, &rec.id);
        if let Some(l) = &rt.selinux_labels {
            l.recover(&rt.pod_dir(&rec.id));
        }
        if let Ok(mut pods) = rt.table.write() {
            pods.insert(rec.id.clone(), pod.clone());
        }
        use recovery::PodPlan;
        match recovery::plan_pod(&rec, m) {
            PodPlan::Undo => {
                tracing::info!(
                    "pod {}: was being created when crius stopped; undoing it",
                    rec.id
                );
                rt.teardown_pod(&pod, &[]).await;
                rt.forget_pod(&pod).await;
            }
            PodPlan::Keep { watch_pause } => {
                if let (true, Some(pid)) = (watch_pause, rec.pause_pid) {
                    match pause::open(pid, &rt.pod_dir(&rec.id).join("pause.pid")) {
                        Ok(p) => pause::watch(rt, &pod, p),
                        Err(e) => tracing::warn!("pod {}: pause: {e}", rec.id),
                    }
                }
            }
            PodPlan::Lost => {
                tracing::warn!(
                    "pod {}: namespaces are gone (reboot?); marking it NotReady",
                    rec.id
                );
                rt.teardown_pod(&pod, &[]).await;
                pod.apply(rt, PodEvent::Lost).await?;
            }
            PodPlan::ReleaseNetwork => rt.teardown_pod(&pod, &[]).await,
            PodPlan::Nothing => {}
        }
    }
    // CNI results cached for pods crius no longer knows, or whose network is down: their DEL never
    // happened or never finished (a native teardown's second half runs in the background).
    let known: Vec<String> = rt
        .all_pods()
        .iter()
        .filter(|p| p.record().network_up)
        .map(|p| p.id.clone())
        .collect();
    for orphan in rt
        .net
        .cached_pods()
        .into_iter()
        .filter(|id| !known.contains(id))
    {
        tracing::info!("pod {orphan}: releasing orphaned network");
        let net = crius_network::PodNetwork {
            id: orphan.clone(),
            name: String::new(),
            namespace: String::new(),
            uid: String::new(),
            netns: PathBuf::new(),
            port_mappings: vec![],
            bandwidth: None,
            dns: None,
            annotations: Default::default(),
        };
        if let Err(e) = rt.net.teardown(&net).await {
            tracing::warn!("pod {orphan}: CNI DEL of orphan failed: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_stored_config_is_an_error_naming_the_record() {
        let rec = SandboxRecord {
            id: "feedbeef".into(),
            config: vec![0xff, 0xff, 0xff],
            runtime_handler: "runc".into(),
            state: PodState::Ready,
            created_at: 0,
            pins: Pins::default(),
            pause_pid: None,
            ips: vec![],
            network_up: false,
            shm: None,
            hostname_file: None,
            hosts_file: None,
            resolv_file: None,
            cgroup_parent: String::new(),
            resources: vec![],
            overhead: vec![],
        };
        let e = rec.try_config().unwrap_err();
        assert_eq!(e.code(), tonic::Code::DataLoss);
        assert!(e.to_string().contains("pod feedbeef"), "{e}");
        let good = cri::PodSandboxConfig {
            hostname: "h".into(),
            ..Default::default()
        };
        let rec = SandboxRecord {
            config: good.encode_to_vec(),
            ..rec
        };
        assert_eq!(rec.try_config().unwrap(), good);
    }
}
