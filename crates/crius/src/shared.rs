//! The context every service shares: configuration, the store, runtime handlers, the image store, the
//! pod network, host facts, name reservations and the event channel. Pods (`pod::Pods`) and containers
//! (`container::Containers`) each own their table and operations on top of it; the facade
//! (`runtime::Runtime`) holds the operations that span both. Dependencies run one way:
//! `runtime` → `container` → `pod` → `shared` (see DESIGN.md, "Structure").

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex as SyncMutex;

use cri_api::v1 as cri;
use tokio::sync::broadcast;

use crate::config::Config;
use crate::error::{io_err, Error, Result};
use crate::features::Gates;
use crate::oci::{Handlers, LazyHandlers};
use crate::store::Store;

pub struct Shared {
    pub cfg: Config,
    pub gates: Gates,
    pub store: Store,
    pub handlers: LazyHandlers,
    pub images: crius_image::ImageStore,
    pub cni: crius_network::Cni,
    /// Seams (`crate::seams`): the OCI runtime and monitor, the pod network and the image store as
    /// the pod and container lifecycles use them. Real ones in the daemon, doubles in unit tests.
    pub oci: std::sync::Arc<dyn crate::seams::Oci>,
    pub net: std::sync::Arc<dyn crate::seams::PodNet>,
    pub rootfs: std::sync::Arc<dyn crate::seams::Images>,
    pub host: crius_spec::HostInfo,
    /// AppArmor: the default profile and the check of the profiles containers name.
    pub apparmor: crate::apparmor::AppArmor,
    /// Cgroups crius made for monitors and pause processes, out of the daemon's own cgroup.
    pub monitor_cgroups: Vec<PathBuf>,
    /// The cgroup driver in effect (`cgroup_driver`, `auto` resolved at start).
    pub cgroup_driver: crate::cgroups::systemd::Driver,
    /// What happens to SELinux fields (`selinux`).
    pub selinux: crate::selinux::Mode,
    /// Whether the host has SELinux, whatever `selinux` says.
    pub host_selinux: bool,
    /// The labeller when `selinux = true` (and the host has SELinux).
    pub selinux_labels: Option<crate::selinux_labels::Labeller>,
    pub(crate) events: broadcast::Sender<cri::ContainerEventResponse>,
    pub streaming: std::sync::OnceLock<crius_streaming::Server>,
    /// CRIU as probed at start (why CheckpointContainer is unavailable).
    pub criu: crate::criu::Criu,
    /// CDI specs from `cdi_spec_dirs`, re-read when they change.
    pub cdi: crate::cdi::Cdi,
}

/// Nanoseconds since the Unix epoch, as the CRI timestamps are.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A fresh 64-hex id.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

impl Shared {
    pub async fn new(cfg: Config) -> anyhow::Result<Shared> {
        crate::perms::harden(&cfg)?;
        // Opening the stores reads (and may repair) their files: on the blocking pool, not a worker.
        let store = {
            let path = cfg.root.join("crius.redb");
            tokio::task::spawn_blocking(move || -> anyhow::Result<Store> {
                let store = Store::open(&path)?;
                crate::perms::tighten(&path, crate::perms::PRIVATE_FILE_MODE)?;
                Ok(store)
            })
            .await??
        };
        let images = {
            let opts = crius_image::StoreOptions {
                root: cfg.root.join("images"),
                hosts_dir: cfg.registry_config_dir.clone(),
                stall_timeout: std::time::Duration::from_secs(cfg.pull_stall_timeout_secs),
                limits: crius_image::UnpackLimits {
                    max_layer_unpacked_bytes: cfg.max_layer_unpacked_bytes,
                    max_layer_entries: cfg.max_layer_entries,
                },
            };
            tokio::task::spawn_blocking(move || crius_image::ImageStore::open(opts)).await??
        };
        let cni = crius_network::Cni::with_backend(
            crius_network::CniConfig {
                conf_dir: cfg.cni_conf_dir.clone(),
                bin_dirs: cfg.cni_bin_dir.clone(),
                cache_dir: cfg.root.join("cni-cache"),
            },
            cfg.network_backend,
            cfg.native_network.to_native()?,
        );
        let handlers = Handlers::probe(&cfg).await;
        let criu = {
            let bin = cfg.criu_path.clone();
            tokio::task::spawn_blocking(move || crate::criu::probe(&bin)).await?
        };
        tracing::info!("checkpointing: {}", criu.reason());
        let (events, _) = broadcast::channel(cfg.container_events_buffer.max(1));
        let apparmor =
            crate::apparmor::AppArmor::new(Box::new(crate::apparmor::RealHost::default()));
        apparmor.start();
        let mut host =
            crius_spec::HostInfo::probe().map_err(|e| anyhow::anyhow!("probing the host: {e}"))?;
        host.apparmor = apparmor.enabled();
        let host_selinux = host.selinux;
        let selinux =
            crate::selinux::mode(cfg.selinux, host_selinux).map_err(|e| anyhow::anyhow!(e))?;
        // Ignored: crius-spec sees a host without SELinux and skips the labels.
        host.selinux = selinux == crate::selinux::Mode::Enforced;
        let (monitor_cgroups, problems) =
            crate::cgroups::lifetime::setup(Path::new("/proc/self/mountinfo"));
        for p in problems {
            tracing::warn!("monitors stay in the daemon's cgroup here: {p}");
        }
        Ok(Shared {
            gates: Gates::new(cfg.feature_gates.clone())
                .with_detail("ContainerCheckpoint", criu.reason())
                .with_host(host.cgroup_v2),
            cdi: crate::cdi::Cdi::new(cfg.cdi_spec_dirs.clone()),
            criu,
            host,
            apparmor,
            monitor_cgroups,
            cgroup_driver: crate::cgroups::systemd::detect(cfg.cgroup_driver),
            selinux,
            host_selinux,
            selinux_labels: match selinux {
                crate::selinux::Mode::Enforced => {
                    Some(crate::selinux_labels::Labeller::load().map_err(|e| anyhow::anyhow!(e))?)
                }
                crate::selinux::Mode::Ignored => None,
            },
            cfg,
            store,
            handlers,
            oci: std::sync::Arc::new(crate::seams::RealOci),
            net: std::sync::Arc::new(crate::seams::RealNet(cni.clone())),
            rootfs: std::sync::Arc::new(crate::seams::RealImages(images.clone())),
            images,
            cni,
            events,
            streaming: std::sync::OnceLock::new(),
        })
    }

    pub fn pod_dir(&self, id: &str) -> PathBuf {
        self.cfg.state.join("pods").join(id)
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.cfg.state.join("containers").join(id)
    }

    pub(crate) fn emit(&self, ev: cri::ContainerEventResponse) {
        // No receivers is the normal case when no kubelet listens for events.
        let _ = self.events.send(ev);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<cri::ContainerEventResponse> {
        self.events.subscribe()
    }
}

/// Name reservations of one service: reservation key → owner id. A key is held from the first step of
/// a create until the object is removed, so a retried create finds the first attempt instead of racing
/// it. Pods and containers each own theirs.
#[derive(Default)]
pub struct Names(SyncMutex<HashMap<String, String>>);

impl Names {
    /// Reserves `key` for `id`; if it is held by another id, returns that id.
    pub(crate) fn reserve(&self, key: &str, id: &str) -> std::result::Result<(), String> {
        let mut names = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match names.get(key) {
            Some(owner) if owner != id => Err(owner.clone()),
            _ => {
                names.insert(key.to_string(), id.to_string());
                Ok(())
            }
        }
    }

    pub(crate) fn release(&self, key: &str, id: &str) {
        let mut names = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if names.get(key).map(|o| o == id).unwrap_or(false) {
            names.remove(key);
        }
    }
}

/// A container event (about a container, or a pod's own with the pod id as `container_id`).
pub(crate) fn event(
    id: &str,
    kind: cri::ContainerEventType,
    status: Option<cri::PodSandboxStatus>,
    containers: Vec<cri::ContainerStatus>,
) -> cri::ContainerEventResponse {
    cri::ContainerEventResponse {
        container_id: id.to_string(),
        container_event_type: kind as i32,
        created_at: now_ns(),
        pod_sandbox_status: status,
        containers_statuses: containers,
    }
}

/// Finds an entry of a table by full id or unique prefix.
pub(crate) fn lookup<T: Clone>(
    map: &HashMap<String, T>,
    id: &str,
    kind: &'static str,
) -> Result<T> {
    if id.is_empty() {
        return Err(Error::invalid(format!("{kind} id"), "must not be empty"));
    }
    if let Some(v) = map.get(id) {
        return Ok(v.clone());
    }
    let mut found = map.iter().filter(|(k, _)| k.starts_with(id));
    match (found.next(), found.next()) {
        (Some((_, v)), None) => Ok(v.clone()),
        (Some(_), Some(_)) => Err(Error::invalid(
            format!("{kind} id"),
            format!("prefix {id:?} matches more than one {kind}"),
        )),
        _ => Err(Error::not_found(kind, id)),
    }
}

/// Removes a state dir after unmounting anything still mounted below it (pins, shm, rootfs).
pub fn remove_state_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
        let mut below: Vec<PathBuf> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|p| PathBuf::from(p.replace("\\040", " ")))
            .filter(|p| p.starts_with(dir))
            .collect();
        below.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for m in below {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    std::fs::remove_dir_all(dir).map_err(|e| io_err("remove state dir", dir, e))
}

/// Label selector match used by the List calls.
pub fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The runtime's verbose info map: one JSON value under key "info", like containerd.
pub fn info_map(value: serde_json::Value) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert("info".to_string(), value.to_string());
    m
}

pub fn btree(m: &HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}
