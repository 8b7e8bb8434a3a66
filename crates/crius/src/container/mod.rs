//! Containers: create (image → rootfs → OCI spec → monitor + `runtime create`), start, stop, remove,
//! status, list, exec-sync, resource updates, log reopening, exit collection and recovery.

pub mod image_volume;

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex as SyncMutex, RwLock};
use std::time::Duration;

use cri_api::v1 as cri;
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::{io_err, Error, Result};
use crate::pod::Attempt;
use crate::pod::Pods;
use crate::shared::{info_map, labels_match, new_id, now_ns, remove_state_dir, Shared};
use crate::store::CONTAINERS;

pub(crate) mod events;
pub mod recovery;
pub mod state;
mod target_ns;
pub use state::{CtrEvent, Transition};

/// How long `runtime create` (through the monitor) may take.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// ExecSync output cap per stream, like the kubelet's (16 MiB).
pub const MAX_EXEC_OUTPUT: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CtrState {
    Creating,
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    #[serde(with = "crate::hexbytes")]
    pub config: Vec<u8>,
    pub handler: String,
    pub state: CtrState,
    pub image_id: String,
    /// What the client asked for (tag or digest reference), for ContainerStatus.image.
    pub image_name: String,
    /// repo digest of the image if known, else its id (ContainerStatus.image_ref).
    pub image_ref: String,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub pid: i32,
    pub monitor_pid: i32,
    pub log_path: Option<PathBuf>,
    pub stop_signal: i32,
    #[serde(with = "crate::hexbytes")]
    pub resources: Vec<u8>,
    pub uid: i64,
    pub gid: i64,
    pub gids: Vec<i64>,
    /// Images mounted as volumes (Mount.image), for ContainerStatus.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_volumes: Vec<image_volume::MountedImage>,
}

impl ContainerRecord {
    /// The stored config, or DataLoss naming the record when it does not decode.
    pub fn try_config(&self) -> Result<cri::ContainerConfig> {
        cri::ContainerConfig::decode(self.config.as_slice()).map_err(|e| {
            Error::DataLoss(format!(
                "stored record of container {} is corrupt: its config does not decode: {e}",
                self.id
            ))
        })
    }

    /// The config of a record in memory; see `SandboxRecord::config` for why the fallback is
    /// unreachable and logged.
    pub fn config(&self) -> cri::ContainerConfig {
        self.try_config().unwrap_or_else(|e| {
            tracing::error!("{e}");
            cri::ContainerConfig::default()
        })
    }
}

pub struct Ctr {
    pub id: String,
    pub sandbox_id: String,
    pub rec: SyncMutex<ContainerRecord>,
    pub op: tokio::sync::Mutex<()>,
    pub name_key: String,
    /// Flips to true once the exit has been collected.
    pub exited: watch::Sender<bool>,
    /// Orders the store commits of this container's record (see `update`).
    pub commit: tokio::sync::Mutex<()>,
    /// The runtime's state of the exited container is gone (deleted after the exit was collected):
    /// RemoveContainer need not run the runtime again. In memory only: after a restart it deletes.
    pub runtime_deleted: std::sync::atomic::AtomicBool,
    /// Held by StartContainer from `runtime start` until its STARTED event is out, and by the exit
    /// collector around its STOPPED event: a container that exits at once is never reported stopped
    /// before started. (Not the op lock: StopContainer holds that while it waits for the exit.)
    pub event_order: tokio::sync::Mutex<()>,
}

impl Ctr {
    pub fn record(&self) -> ContainerRecord {
        self.rec.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Changes the record and commits it: the record mutex is held only for the change; the commit
    /// runs on a blocking thread under the container's commit lock, which keeps commits in the order
    /// of the changes. A container no longer in the table (forgotten) is not written back.
    async fn update(&self, rt: &Containers, f: impl FnOnce(&mut ContainerRecord)) -> Result<()> {
        let _c = self.commit.lock().await;
        let snapshot = {
            let mut r = self.rec.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut r);
            r.clone()
        };
        self.commit_locked(rt, snapshot).await
    }

    async fn commit_locked(&self, rt: &Containers, snapshot: ContainerRecord) -> Result<()> {
        if rt.container(&self.id).is_err() {
            return Ok(());
        }
        rt.store
            .put_async(CONTAINERS, self.id.clone(), snapshot)
            .await?;
        Ok(())
    }

    /// Applies a state-machine event: on a transition the state changes and `f` fills in the rest of
    /// the record, both committed together; a stale event changes nothing; an invalid one is an
    /// error naming the container, its state and the event.
    async fn apply(
        &self,
        rt: &Containers,
        ev: CtrEvent,
        f: impl FnOnce(&mut ContainerRecord),
    ) -> Result<Transition> {
        let _c = self.commit.lock().await;
        let (t, snapshot) = {
            let mut r = self.rec.lock().unwrap_or_else(|p| p.into_inner());
            let t = r.state.next(ev);
            match t {
                Transition::To(s) => {
                    r.state = s;
                    f(&mut r);
                }
                Transition::Stale => {}
                Transition::Invalid => {
                    return Err(Error::Internal(format!(
                        "container {}: event {ev:?} cannot happen in state {:?}",
                        r.id, r.state
                    )))
                }
            }
            (t, r.clone())
        };
        if let Transition::To(_) = t {
            self.commit_locked(rt, snapshot).await?;
        }
        Ok(t)
    }
}

/// Spec generation errors keep their type (and field name); `Error::code` maps them.
pub fn spec_err(e: crius_spec::SpecError) -> Error {
    e.into()
}

fn oci_err(e: crius_oci::OciError) -> Error {
    e.into()
}

/// The log path: `<log_directory>/<log_path>`, with `log_path` relative and free of `..`.
fn log_path(
    sandbox: &cri::PodSandboxConfig,
    cfg: &cri::ContainerConfig,
) -> Result<Option<PathBuf>> {
    if cfg.log_path.is_empty() {
        return Ok(None);
    }
    let rel = Path::new(&cfg.log_path);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(Error::invalid(
            "config.log_path",
            format!("{:?} must be a relative path without '..'", cfg.log_path),
        ));
    }
    if sandbox.log_directory.is_empty() {
        return Err(Error::invalid(
            "config.log_path",
            "is set but the pod has no log_directory",
        ));
    }
    Ok(Some(Path::new(&sandbox.log_directory).join(rel)))
}

fn reason_for(exit: &crius_oci::ExitInfo) -> &'static str {
    if exit.oom_killed {
        "OOMKilled"
    } else if exit.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// The container table and the container operations. Containers read pods (`pods`: the sandbox a
/// container joins, its namespaces and files); pods never call containers.
pub struct Containers {
    shared: Arc<Shared>,
    /// The pod table, read only: the pod a container is created in.
    pub pods: Arc<Pods>,
    table: RwLock<HashMap<String, Arc<Ctr>>>,
    /// Reserved container names (`<pod id>/<name>_<attempt>`).
    names: crate::shared::Names,
}

impl std::ops::Deref for Containers {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Containers {
    pub fn new(pods: Arc<Pods>) -> Containers {
        Containers {
            shared: pods.shared().clone(),
            pods,
            table: RwLock::new(HashMap::new()),
            names: Default::default(),
        }
    }

    /// Finds a container by full id or unique prefix.
    pub fn container(&self, id: &str) -> Result<Arc<Ctr>> {
        let ctrs = self
            .table
            .read()
            .map_err(|_| Error::Internal("container table lock poisoned".into()))?;
        crate::shared::lookup(&ctrs, id, "container")
    }

    pub fn all_containers(&self) -> Vec<Arc<Ctr>> {
        self.table
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The containers of pod `pod_id`.
    pub fn of_pod(&self, pod_id: &str) -> Vec<Arc<Ctr>> {
        self.all_containers()
            .into_iter()
            .filter(|c| c.sandbox_id == pod_id)
            .collect()
    }

    /// CreateContainer.
    pub async fn create_container(
        self: &Arc<Self>,
        pod_id: &str,
        cfg: cri::ContainerConfig,
        sandbox_cfg: Option<cri::PodSandboxConfig>,
    ) -> Result<String> {
        let pod = self.pods.pod(pod_id)?;
        let prec = pod.record();
        if !prec.state.can_create_container() {
            return Err(Error::FailedPrecondition(format!(
                "pod {} is not ready",
                pod.id
            )));
        }
        // The pod's own config is authoritative; the request's copy may be absent.
        let sandbox = if prec.config.is_empty() {
            sandbox_cfg.unwrap_or_default()
        } else {
            prec.config()
        };
        let meta = cfg
            .metadata
            .clone()
            .ok_or_else(|| Error::invalid("config.metadata", "is required"))?;
        if meta.name.is_empty() {
            return Err(Error::invalid("config.metadata.name", "must not be empty"));
        }
        let image_name = cfg
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image_name.is_empty() {
            return Err(Error::invalid("config.image.image", "must not be empty"));
        }
        // Fail fast on unknown CDI devices and unusable image mounts, before any work.
        self.cdi.resolve(&cfg)?;
        image_volume::validate(self, &cfg)?;
        if cfg.windows.is_some() {
            return Err(Error::unimplemented(
                "config.windows",
                "crius runs Linux containers only",
            ));
        }
        let log_path = log_path(&sandbox, &cfg)?;
        let image = self
            .rootfs
            .get(&image_name)
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found("image", image_name.clone()))?;
        self.handlers.ready_for(&prec.runtime_handler).await;
        let handler = self.handlers.get(&prec.runtime_handler)?;
        crate::handler_features::check_container(
            &prec.runtime_handler,
            self.handlers.features_of(&prec.runtime_handler)?,
            &cfg,
        )?;

        let key = format!("{}/{}_{}", pod.id, meta.name, meta.attempt);
        loop {
            let id = new_id();
            let rec = ContainerRecord {
                id: id.clone(),
                sandbox_id: pod.id.clone(),
                config: cfg.encode_to_vec(),
                handler: prec.runtime_handler.clone(),
                state: CtrState::Creating,
                image_id: image.id.clone(),
                image_name: image_name.clone(),
                image_ref: image
                    .repo_digests
                    .first()
                    .cloned()
                    .unwrap_or_else(|| image.id.clone()),
                created_at: now_ns(),
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                reason: String::new(),
                message: String::new(),
                pid: 0,
                monitor_pid: 0,
                log_path: log_path.clone(),
                stop_signal: libc::SIGTERM,
                resources: cfg
                    .linux
                    .as_ref()
                    .and_then(|l| l.resources.clone())
                    .unwrap_or_default()
                    .encode_to_vec(),
                uid: 0,
                gid: 0,
                gids: vec![],
                image_volumes: vec![],
            };
            let (tx, _) = watch::channel(false);
            let ctr = Arc::new(Ctr {
                id: id.clone(),
                sandbox_id: pod.id.clone(),
                rec: SyncMutex::new(rec.clone()),
                op: tokio::sync::Mutex::new(()),
                name_key: key.clone(),
                exited: tx,
                commit: tokio::sync::Mutex::new(()),
                runtime_deleted: Default::default(),
                event_order: Default::default(),
            });
            // In the table and locked before the name is reserved: a concurrent retry that finds the
            // reservation finds the container and waits for this attempt.
            let guard = ctr.op.lock().await;
            self.table
                .write()
                .map_err(|_| Error::Internal("container table lock poisoned".into()))?
                .insert(id.clone(), ctr.clone());
            if let Err(owner) = self.names.reserve(&key, &id) {
                if let Ok(mut m) = self.table.write() {
                    m.remove(&id);
                }
                drop(guard);
                match self
                    .existing_container_for_retry(&key, &owner, &cfg)
                    .await?
                {
                    Attempt::Done(id) => return Ok(id),
                    Attempt::Again => {
                        // The earlier attempt is being undone; its name is released after that.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                }
            }
            if let Err(e) = self.store.put_async(CONTAINERS, id.clone(), rec).await {
                self.forget_container(&ctr).await;
                return Err(e.into());
            }
            crate::crash::point("container.create.recorded");

            let res = self
                .setup_container(&ctr, &handler, &cfg, &sandbox, &prec, &image, log_path)
                .await;
            // The runtime has joined (or failed to join) a TARGET PID namespace: drop its pin.
            target_ns::release(&self.container_dir(&id));
            return match res {
                Ok(()) => {
                    crate::crash::point("container.create.created");
                    drop(guard);
                    self.emit_event(&ctr, cri::ContainerEventType::ContainerCreatedEvent);
                    Ok(id)
                }
                Err(e) => {
                    tracing::warn!("container {id}: CreateContainer failed, undoing: {e}");
                    let _ = self.oci.delete(&handler, &id, true).await;
                    let rootfs = self.container_dir(&id).join("rootfs");
                    let images = self.rootfs.clone();
                    let cid = id.clone();
                    // The rootfs snapshot may already be mounted.
                    let _ =
                        tokio::task::spawn_blocking(move || images.remove_rootfs(&cid, &rootfs))
                            .await;
                    self.forget_container(&ctr).await;
                    drop(guard);
                    Err(e)
                }
            };
        }
    }

    /// A retry of a CreateContainer whose first attempt holds the name: waits for that attempt and
    /// returns its container when it is the same request and still Created, so a client timeout never
    /// wedges the name. If the first attempt failed and rolled back, the caller tries again.
    async fn existing_container_for_retry(
        &self,
        key: &str,
        owner: &str,
        cfg: &cri::ContainerConfig,
    ) -> Result<Attempt> {
        let ctr = match self.container(owner) {
            Ok(c) => c,
            Err(Error::NotFound { .. }) => return Ok(Attempt::Again),
            Err(e) => return Err(e),
        };
        let _g = tokio::time::timeout(Duration::from_secs(240), ctr.op.lock())
            .await
            .map_err(|_| {
                Error::AlreadyExists(format!(
                    "container name {key} is reserved by container {owner}, still being created"
                ))
            })?;
        if self.container(owner).is_err() {
            return Ok(Attempt::Again);
        }
        let rec = ctr.record();
        if rec.state == CtrState::Created && rec.config() == *cfg {
            return Ok(Attempt::Done(owner.to_string()));
        }
        Err(Error::AlreadyExists(format!(
            "container name {key} is already used by container {owner} (state {:?})",
            rec.state
        )))
    }

    #[allow(clippy::too_many_arguments)]
    async fn setup_container(
        self: &Arc<Self>,
        ctr: &Arc<Ctr>,
        handler: &Arc<crius_oci::Handler>,
        cfg: &cri::ContainerConfig,
        sandbox: &cri::PodSandboxConfig,
        prec: &crate::pod::SandboxRecord,
        image: &crius_image::Image,
        log_path: Option<PathBuf>,
    ) -> Result<()> {
        let dir = self.container_dir(&ctr.id);
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create container dir", &dir, e))?;
        let userns = crate::pod::userns_of(prec)?;
        if userns.is_some() {
            crate::userns::ensure_traversable(&self.cfg.state, &dir)?;
        }
        {
            let images = self.rootfs.clone();
            let (image_id, cid, rootfs) = (image.id.clone(), ctr.id.clone(), rootfs.clone());
            let scratch = self.cfg.root.join("idmap").join(&ctr.id);
            let userns = userns.clone();
            tokio::task::spawn_blocking(move || match userns {
                None => images.prepare_rootfs(&image_id, &cid, &rootfs, None),
                Some(u) => {
                    let layers = crate::idmap::LayerMapper {
                        userns: u.pin.clone(),
                        scratch,
                    };
                    let map = |l: &[PathBuf]| layers.map(l);
                    let release = |m: &[PathBuf]| layers.release(m);
                    let mapper = crius_image::LowerMapper {
                        owner: u.root(),
                        map: &map,
                        release: &release,
                    };
                    images.prepare_rootfs(&image_id, &cid, &rootfs, Some(&mapper))
                }
            })
            .await
            .map_err(|e| Error::internal("rootfs task", e))?
            .map_err(Error::from)?;
        }
        crate::crash::point("container.create.rootfs_prepared");
        create_missing_mount_sources(cfg)?;
        // Image volumes become read-only binds and CDI devices are applied after spec generation, so the
        // spec generator sees neither.
        let (mut spec_cfg, volumes) = {
            let (rt, cid, dir, cfg) = (self.clone(), ctr.id.clone(), dir.clone(), cfg.clone());
            tokio::task::spawn_blocking(move || image_volume::mount_all(&rt, &cid, &dir, &cfg))
                .await
                .map_err(|e| Error::internal("image volume task", e))??
        };
        spec_cfg.cdi_devices.clear();
        let cdi = self.cdi.resolve(cfg)?;
        let mut spec =
            self.container_spec(ctr, &spec_cfg, sandbox, prec, image, &rootfs, handler)?;
        if self.cgroup_driver == crate::cgroups::systemd::Driver::Systemd {
            let path = crate::cgroups::systemd::cgroups_path(&prec.cgroup_parent, &ctr.id)
                .map_err(|e| Error::invalid("linux.cgroup_parent", e))?;
            if let Some(linux) = spec.linux_mut() {
                linux.set_cgroups_path(Some(PathBuf::from(path)));
            }
        }
        self.apparmor.check(
            spec.process()
                .as_ref()
                .and_then(|p| p.apparmor_profile().as_deref()),
        )?;
        if self.selinux_labels.is_some() {
            spec = self.apply_selinux(spec, &prec.id, sandbox, cfg).await?;
        }
        image_volume::harden(&mut spec, &dir);
        crate::cdi::apply(&mut spec, &cdi)?;
        if handler.kind == crius_oci::HandlerKind::Sandbox {
            crate::pod::sandbox::annotate(&mut spec, &prec.id);
            let pod_pid = cfg
                .linux
                .as_ref()
                .and_then(|l| l.security_context.as_ref())
                .and_then(|s| s.namespace_options.as_ref())
                .is_some_and(|n| n.pid == cri::NamespaceMode::Pod as i32);
            if pod_pid {
                crate::pod::sandbox::share_pid_namespace(&mut spec);
            }
            let all_caps = cfg
                .linux
                .as_ref()
                .and_then(|l| l.security_context.as_ref())
                .and_then(|s| s.capabilities.as_ref())
                .is_some_and(|c| {
                    c.add_capabilities
                        .iter()
                        .any(|a| a.eq_ignore_ascii_case("ALL"))
                });
            if all_caps {
                crate::pod::sandbox::drop_unknown_caps(&mut spec);
            }
        }
        // Mounts the handler cannot make (rro, idmapped binds) are prepared host-side and released
        // once the runtime has its own copies.
        let (spec, prepared) = {
            let (d, native, u) = (dir.clone(), crate::oci::native_of(handler), userns.clone());
            tokio::task::spawn_blocking(move || {
                let mut spec = spec;
                crate::idmap::prepare_spec_mounts(&mut spec, &d, native, u.as_ref())
                    .map(|p| (spec, p))
            })
            .await
            .map_err(|e| Error::internal("mount preparation task", e))?
            .map_err(|e| Error::FailedPrecondition(format!("config.mounts: {e}")))?
        };
        let res = self
            .create_with_spec(
                ctr, handler, cfg, sandbox, prec, image, &dir, spec, log_path, volumes,
            )
            .await;
        // runsc mounts a joining container's binds at `start` (its gofer starts then): the prepared
        // copies stay until StartContainer (or RemoveContainer) releases them.
        if handler.kind != crius_oci::HandlerKind::Sandbox || res.is_err() {
            crate::idmap::release(&prepared);
        }
        res
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_with_spec(
        self: &Arc<Self>,
        ctr: &Arc<Ctr>,
        handler: &Arc<crius_oci::Handler>,
        cfg: &cri::ContainerConfig,
        sandbox: &cri::PodSandboxConfig,
        prec: &crate::pod::SandboxRecord,
        image: &crius_image::Image,
        dir: &Path,
        spec: oci_spec::runtime::Spec,
        log_path: Option<PathBuf>,
        volumes: Vec<image_volume::MountedImage>,
    ) -> Result<()> {
        let dir = dir.to_path_buf();
        let stop_signal = crius_spec::stop_signal(&image_defaults(image), cfg).map_err(spec_err)?;
        let user = spec
            .process()
            .as_ref()
            .map(|p| p.user().clone())
            .unwrap_or_default();
        let spec_path = dir.join("config.json");
        let json = serde_json::to_vec_pretty(&spec)
            .map_err(|e| Error::internal("serialise OCI spec", e))?;
        crate::perms::write_private(&spec_path, &json)
            .map_err(|e| io_err("write OCI spec", &spec_path, e))?;
        crate::crash::point("container.create.spec_written");

        // The monitor creates the log's parent dirs itself, beneath the pod's log directory and
        // without following symlinks a writer of that directory may have planted.
        let log_dir = log_path
            .as_ref()
            .map(|_| PathBuf::from(&sandbox.log_directory));
        let oom_file = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .map(|p| {
                oom_file(
                    &crate::cgroups::systemd::fs_path(&p.to_string_lossy()),
                    self.host.cgroup_v2,
                )
            });
        let mcfg = crius_oci::MonitorConfig {
            monitor_binary: self.cfg.monitor_binary(),
            id: ctr.id.clone(),
            bundle: dir.clone(),
            state_dir: dir.clone(),
            log_path,
            log_dir,
            tty: cfg.tty,
            stdin: cfg.stdin,
            stdin_once: cfg.stdin_once,
            oom_file,
            create_timeout: CREATE_TIMEOUT,
            join_cgroups: self.monitor_cgroups.clone(),
            start_by_monitor: handler.kind == crius_oci::HandlerKind::Sandbox,
        };
        let mon =
            crate::metrics::trace::child("OCI create", vec![], self.oci.create(handler, &mcfg))
                .await
                .map_err(oci_err)?;
        crate::crash::point("container.create.monitor_spawned");
        // The pause must have outlived the join, or the path may have named another namespace.
        crate::pod::pause::still_alive(&prec.id, prec.pause_pid)?;
        ctr.apply(self, CtrEvent::Created, |r| {
            r.pid = mon.container_pid;
            r.monitor_pid = mon.monitor_pid;
            r.stop_signal = stop_signal;
            r.image_volumes = volumes;
            r.uid = user.uid() as i64;
            r.gid = user.gid() as i64;
            r.gids = user
                .additional_gids()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(i64::from)
                .collect();
        })
        .await?;
        self.watch_exit(ctr.clone());
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn container_spec(
        &self,
        ctr: &Ctr,
        cfg: &cri::ContainerConfig,
        sandbox: &cri::PodSandboxConfig,
        prec: &crate::pod::SandboxRecord,
        image: &crius_image::Image,
        rootfs: &Path,
        handler: &crius_oci::Handler,
    ) -> Result<oci_spec::runtime::Spec> {
        let ns = cfg
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default();
        let target_pid_ns = if ns.pid == cri::NamespaceMode::Target as i32 {
            let target = self.container(&ns.target_id).map_err(|_| {
                Error::invalid(
                    "config.linux.security_context.namespace_options.target_id",
                    format!("no container {:?}", ns.target_id),
                )
            })?;
            let t = target.record();
            if t.sandbox_id != ctr.sandbox_id || t.state != CtrState::Running {
                return Err(Error::invalid(
                    "config.linux.security_context.namespace_options.target_id",
                    format!("container {} must be running in the same pod", ns.target_id),
                ));
            }
            // Resolved through a pidfd and pinned: a bare /proc/<pid> could name a process that
            // reused the pid of an exited target.
            Some(target_ns::pin(
                &self.container_dir(&ctr.id),
                &ns.target_id,
                t.pid,
            )?)
        } else {
            None
        };
        let pod_ctx = crius_spec::PodContext {
            sandbox_id: prec.id.clone(),
            hostname: std::fs::read_to_string(prec.hostname_file.clone().unwrap_or_default())
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            net_ns: prec.pins.net.clone(),
            ipc_ns: prec.pins.ipc.clone(),
            uts_ns: prec.pins.uts.clone(),
            pid_ns: if handler.kind == crius_oci::HandlerKind::Sandbox {
                // The pod's PID namespace is its gVisor sandbox's (no host pause): the spec's
                // pid entry is dropped for runsc (pod::sandbox::share_pid_namespace).
                (crate::pod::sandbox::pod_shares_pid(sandbox))
                    .then(|| crate::pod::sandbox::dir(&self.pod_dir(&prec.id)))
            } else {
                crate::pod::pause::pid_ns(&self.pod_dir(&prec.id), &prec.id, prec.pause_pid)?
            },
            host_pid: sandbox
                .linux
                .as_ref()
                .and_then(|l| l.security_context.as_ref())
                .and_then(|s| s.namespace_options.as_ref())
                .map(|n| n.pid == cri::NamespaceMode::Node as i32)
                .unwrap_or(false),
            resolv_conf: prec.resolv_file.clone(),
            hosts: prec.hosts_file.clone(),
            hostname_file: prec.hostname_file.clone(),
            shm: prec.shm.clone(),
            cgroup_parent: prec.cgroup_parent.clone(),
            sysctls: sandbox
                .linux
                .as_ref()
                .map(|l| {
                    l.sysctls
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            userns: crate::pod::userns_of(prec)?.map(|u| crius_spec::UsernsContext {
                path: u.pin,
                map: crius_spec::PodUserns {
                    uids: u.uids,
                    gids: u.gids,
                },
            }),
        };
        // What the spec may ask for: the handler does it, or crius prepares it (crate::idmap).
        let caps = crius_spec::HandlerCaps {
            rro: self.handlers.rro(handler),
            idmap: crate::oci::native_of(handler).idmap || self.handlers.userns_ok(&handler.name),
            plain_rootfs_propagation: crate::oci::plain_rootfs_propagation(handler),
        };
        let defaults = image_defaults(image);
        let input = crius_spec::SpecInput {
            container_id: &ctr.id,
            config: cfg,
            sandbox,
            image: &defaults,
            rootfs,
            pod: &pod_ctx,
            host: &self.host,
            target_pid_ns,
            seccomp_profile_root: Path::new("/"),
            handler: caps,
        };
        let ambient = cfg
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.capabilities.as_ref())
            .map(|c| !c.add_ambient_capabilities.is_empty())
            .unwrap_or(false);
        if ambient && !self.gates.enabled("AmbientCapabilities") {
            return Err(Error::unimplemented(
                "config.linux.security_context.capabilities.add_ambient_capabilities",
                "alpha feature AmbientCapabilities is off (enable it with feature_gates.AmbientCapabilities = true)",
            ));
        }
        crius_spec::container_spec(&input).map_err(spec_err)
    }

    /// `selinux = true`: the pod's MCS level (chosen at its first container), the container's process
    /// and mount labels in the spec, and the relabel of mounts that ask for it (see `selinux_labels`).
    async fn apply_selinux(
        self: &Arc<Self>,
        spec: oci_spec::runtime::Spec,
        pod_id: &str,
        sandbox: &cri::PodSandboxConfig,
        cfg: &cri::ContainerConfig,
    ) -> Result<oci_spec::runtime::Spec> {
        let pod_opt = sandbox
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.selinux_options.clone());
        let ctr_opt = cfg
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.selinux_options.clone());
        let (rt, mounts, pod_id) = (self.clone(), cfg.mounts.clone(), pod_id.to_string());
        tokio::task::spawn_blocking(move || {
            let Some(l) = rt.selinux_labels.as_ref() else {
                return Ok(spec);
            };
            let mut spec = spec;
            let level = l
                .pod_level(&rt.pod_dir(&pod_id), pod_opt.as_ref())
                .map_err(|e| Error::Internal(format!("pod {pod_id}: SELinux level: {e}")))?;
            l.apply(
                &mut spec,
                &level,
                pod_opt.as_ref(),
                ctr_opt.as_ref(),
                &mounts,
            )
            .map_err(|e| Error::invalid("mounts", e))?;
            Ok(spec)
        })
        .await
        .map_err(|e| Error::internal("SELinux label task", e))?
    }

    /// Moves the container's init back into its scope where systemd migrated it out (see
    /// `cgroups::placement`); before `runtime start`, so the container's process never runs outside.
    /// A container that cannot be put back is not started: it would run outside its device rules.
    fn keep_in_scope(&self, id: &str, pid: i32) -> Result<()> {
        let spec = self.container_dir(id).join("config.json");
        let path = std::fs::read(&spec)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["linux"]["cgroupsPath"].as_str().map(str::to_string));
        let Some(path) = path else {
            return Err(Error::Internal(format!(
                "container {id}: no linux.cgroupsPath in {}",
                spec.display()
            )));
        };
        let want = crate::cgroups::systemd::fs_path(&path);
        match crate::cgroups::placement::restore(pid, &want) {
            Ok(moved) if moved.is_empty() => Ok(()),
            Ok(moved) => {
                tracing::warn!(
                    "container {id}: systemd had moved its init out of {}; moved back into {moved:?}",
                    want.display()
                );
                Ok(())
            }
            Err(e) => Err(Error::Internal(format!(
                "container {id}: keep its init in {}: {e}",
                want.display()
            ))),
        }
    }

    /// StartContainer.
    pub async fn start_container(self: &Arc<Self>, id: &str) -> Result<()> {
        let ctr = self.container(id)?;
        let _g = ctr.op.lock().await;
        let rec = ctr.record();
        if !rec.state.can_start() {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {:?}, not created",
                ctr.id, rec.state
            )));
        }
        let handler = self.handlers.existing(&rec.handler)?;
        let _events = ctr.event_order.lock().await;
        // Stamped before `runtime start`: the process cannot run earlier, and a process that exits at
        // once must not look as if it finished before it started.
        let started_at = now_ns();
        if self.cgroup_driver == crate::cgroups::systemd::Driver::Systemd
            && !self.host.cgroup_v2
            && rec.pid > 0
        {
            self.keep_in_scope(&ctr.id, rec.pid)?;
        }
        if handler.kind == crius_oci::HandlerKind::Sandbox {
            // The monitor runs `runsc start`: that is where runsc takes the container's stdio.
            let dir = self.container_dir(&ctr.id);
            crate::metrics::trace::child("OCI start", vec![], self.oci.start_via_monitor(&dir))
                .await
                .map_err(oci_err)?;
            // The container's gofer bound the prepared (rro, idmapped) copies into its own mount
            // namespace during `runsc start`: the host-side copies would only pin the sources'
            // submounts (a caller unmounting one of them and removing its directory gets EBUSY).
            let d = dir.clone();
            let _ =
                tokio::task::spawn_blocking(move || crate::idmap::release_prepared_in(&d)).await;
        } else {
            crate::metrics::trace::child("OCI start", vec![], self.oci.start(&handler, &ctr.id))
                .await
                .map_err(oci_err)?;
        }
        crate::crash::point("container.start.runtime_started");
        match ctr
            .apply(self, CtrEvent::Started, |r| r.started_at = started_at)
            .await?
        {
            Transition::To(_) => {}
            // It ran and its exit was collected before we got here: the exit stands, with its code;
            // only the start time is filled in.
            _ => {
                ctr.update(self, |r| {
                    if r.started_at == 0 {
                        r.started_at = started_at.min(r.finished_at);
                    }
                })
                .await?
            }
        }
        crate::crash::point("container.start.recorded");
        self.emit_event(&ctr, cri::ContainerEventType::ContainerStartedEvent);
        Ok(())
    }

    /// Spawns the task that collects the container's exit from its monitor.
    pub(crate) fn watch_exit(self: &Arc<Self>, ctr: Arc<Ctr>) {
        let rt = self.clone();
        tokio::spawn(async move {
            let pid = ctr.record().monitor_pid;
            if let Err(e) = rt.oci.wait_monitor(pid).await {
                tracing::warn!("container {}: waiting for monitor {pid}: {e}", ctr.id);
            }
            rt.collect_exit(&ctr).await;
        });
    }

    async fn collect_exit(self: &Arc<Self>, ctr: &Arc<Ctr>) {
        let exit = self.oci.read_exit(&self.container_dir(&ctr.id));
        let update = |r: &mut ContainerRecord| match &exit {
            Ok(Some(x)) => {
                r.exit_code = x.exit_code;
                r.finished_at = x.finished_at_ns;
                r.reason = reason_for(x).to_string();
            }
            Ok(None) => {
                r.exit_code = 255;
                r.finished_at = now_ns();
                r.reason = "Unknown".into();
                r.message =
                    "the container's monitor exited without recording an exit status".into();
            }
            Err(e) => {
                r.exit_code = 255;
                r.finished_at = now_ns();
                r.reason = "Unknown".into();
                r.message = e.to_string();
            }
        };
        if self.container(&ctr.id).is_err() {
            // Removed meanwhile: nothing to record (and no record to bring back).
            let _ = ctr.exited.send(true);
            return;
        }
        match ctr.apply(self, CtrEvent::Exited, update).await {
            Ok(Transition::To(_)) => {}
            Ok(_) => {
                // Collected already (recovery and the watcher both looked).
                let _ = ctr.exited.send(true);
                return;
            }
            Err(e) => tracing::warn!("container {}: record exit: {e}", ctr.id),
        }
        crate::crash::point("container.exit.recorded");
        let rec = ctr.record();
        crate::metrics::get().container_exited(&rec.reason);
        // The event goes out before waiters (StopContainer, StopPodSandbox) are released, so a pod's
        // STOPPED event always follows its containers'; and after a StartContainer still returning
        // has sent its STARTED event.
        {
            let _events = ctr.event_order.lock().await;
            self.emit_event(ctr, cri::ContainerEventType::ContainerStoppedEvent);
        }
        // Waiters (StopContainer, which holds the op lock) learn of the exit next ...
        let _ = ctr.exited.send(true);
        // ... then the runtime's state goes, serialized with the container's operations so that it
        // never pulls the state from under a `runtime start` that is still returning.
        let _g = ctr.op.lock().await;
        if self.container(&ctr.id).is_err() {
            // RemoveContainer got the lock first and deleted everything.
            return;
        }
        if let Ok(h) = self.handlers.existing(&rec.handler) {
            // Frees the runtime's state and the cgroup; the rootfs stays until RemoveContainer.
            match self.oci.delete(&h, &ctr.id, true).await {
                Ok(()) => ctr
                    .runtime_deleted
                    .store(true, std::sync::atomic::Ordering::SeqCst),
                Err(e) => tracing::warn!("container {}: runtime delete after exit: {e}", ctr.id),
            }
        }
    }

    /// StopContainer. Idempotent; unknown ids are success.
    pub async fn stop_container(self: &Arc<Self>, id: &str, timeout: i64) -> Result<()> {
        let ctr = match self.container(id) {
            Ok(c) => c,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_container_inner(&ctr, timeout).await
    }

    pub(crate) async fn stop_container_inner(
        self: &Arc<Self>,
        ctr: &Arc<Ctr>,
        timeout: i64,
    ) -> Result<()> {
        let _g = ctr.op.lock().await;
        let rec = ctr.record();
        if !rec.state.can_kill() || self.container(&ctr.id).is_err() {
            return Ok(());
        }
        let handler = self.handlers.existing(&rec.handler)?;
        let mut exited = ctr.exited.subscribe();
        if rec.state == CtrState::Running && timeout > 0 {
            if let Err(e) = self
                .oci
                .kill(&handler, &ctr.id, rec.stop_signal, false)
                .await
            {
                tracing::warn!("container {}: stop signal {}: {e}", ctr.id, rec.stop_signal);
            }
            let wait =
                tokio::time::timeout(Duration::from_secs(timeout as u64), exited.wait_for(|x| *x))
                    .await;
            if wait.is_ok() {
                return Ok(());
            }
        }
        if rec.state == CtrState::Created && handler.kind == crius_oci::HandlerKind::Sandbox {
            // Nothing runs yet inside the sandbox: delete it and tell its monitor.
            self.oci
                .delete(&handler, &ctr.id, true)
                .await
                .map_err(oci_err)?;
            if let Err(e) = self.oci.abandon(&self.container_dir(&ctr.id)).await {
                tracing::warn!("container {}: monitor: {e}", ctr.id);
            }
        } else {
            self.oci
                .kill(&handler, &ctr.id, libc::SIGKILL, true)
                .await
                .map_err(oci_err)?;
            crate::crash::point("container.stop.signalled");
            if rec.state == CtrState::Created {
                // A created container's init waits on the exec fifo; delete releases it.
                self.oci
                    .delete(&handler, &ctr.id, true)
                    .await
                    .map_err(oci_err)?;
            }
        }
        tokio::time::timeout(Duration::from_secs(30), exited.wait_for(|x| *x))
            .await
            .map_err(|_| {
                Error::DeadlineExceeded(format!(
                    "container {} did not exit 30s after SIGKILL",
                    ctr.id
                ))
            })?
            .map_err(|_| Error::Internal(format!("container {}: exit watcher gone", ctr.id)))?;
        Ok(())
    }

    /// RemoveContainer. Idempotent; a running container is killed first.
    pub async fn remove_container(self: &Arc<Self>, id: &str) -> Result<()> {
        let ctr = match self.container(id) {
            Ok(c) => c,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.remove_container_inner(&ctr).await
    }

    pub(crate) async fn remove_container_inner(self: &Arc<Self>, ctr: &Arc<Ctr>) -> Result<()> {
        self.stop_container_inner(ctr, 0).await?;
        let _g = ctr.op.lock().await;
        if self.container(&ctr.id).is_err() {
            // A concurrent RemoveContainer finished first.
            return Ok(());
        }
        let rec = ctr.record();
        // Deleted after the exit already (under this lock): one runtime exec fewer.
        if !ctr
            .runtime_deleted
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            if let Ok(h) = self.handlers.existing(&rec.handler) {
                self.oci.delete(&h, &ctr.id, true).await.map_err(oci_err)?;
            }
        }
        crate::crash::point("container.remove.runtime_deleted");
        let rootfs = self.container_dir(&ctr.id).join("rootfs");
        let images = self.rootfs.clone();
        let cid = ctr.id.clone();
        tokio::task::spawn_blocking(move || images.remove_rootfs(&cid, &rootfs))
            .await
            .map_err(|e| Error::internal("rootfs task", e))?
            .map_err(Error::from)?;
        crate::crash::point("container.remove.rootfs_removed");
        self.forget_container(ctr).await;
        self.emit_event(ctr, cri::ContainerEventType::ContainerDeletedEvent);
        Ok(())
    }

    /// Removes the container's state dir, record and name. Out of the table first, so that no later
    /// update writes the record back.
    async fn forget_container(&self, ctr: &Ctr) {
        if let Ok(mut m) = self.table.write() {
            m.remove(&ctr.id);
        }
        let dir = self.container_dir(&ctr.id);
        image_volume::release(self, &ctr.id, &dir);
        match tokio::task::spawn_blocking(move || remove_state_dir(&dir)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("container {}: {e}", ctr.id),
            Err(e) => tracing::warn!("container {}: state dir task: {e}", ctr.id),
        }
        crate::crash::point("container.remove.state_dir_removed");
        let _c = ctr.commit.lock().await;
        if let Err(e) = self.store.delete_async(CONTAINERS, ctr.id.clone()).await {
            tracing::warn!("container {}: {e}", ctr.id);
        }
        self.names.release(&ctr.name_key, &ctr.id);
    }

    pub(crate) fn container_status_of(&self, rec: &ContainerRecord) -> cri::ContainerStatus {
        let cfg = rec.config();
        let state = match rec.state {
            CtrState::Created => cri::ContainerState::ContainerCreated,
            CtrState::Running => cri::ContainerState::ContainerRunning,
            CtrState::Exited => cri::ContainerState::ContainerExited,
            CtrState::Creating | CtrState::Unknown => cri::ContainerState::ContainerUnknown,
        } as i32;
        let mounts = image_volume::report(cfg.mounts.clone(), &rec.image_volumes);
        cri::ContainerStatus {
            id: rec.id.clone(),
            metadata: cfg.metadata.clone(),
            state,
            created_at: rec.created_at,
            started_at: rec.started_at,
            finished_at: rec.finished_at,
            exit_code: rec.exit_code,
            image: Some(cri::ImageSpec {
                image: rec.image_name.clone(),
                annotations: cfg
                    .image
                    .as_ref()
                    .map(|i| i.annotations.clone())
                    .unwrap_or_default(),
                user_specified_image: cfg
                    .image
                    .as_ref()
                    .map(|i| i.user_specified_image.clone())
                    .unwrap_or_default(),
                runtime_handler: String::new(),
                image_ref: String::new(),
            }),
            image_ref: rec.image_ref.clone(),
            reason: rec.reason.clone(),
            message: rec.message.clone(),
            labels: cfg.labels.clone(),
            annotations: cfg.annotations.clone(),
            mounts,
            log_path: rec
                .log_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            resources: Some(cri::ContainerResources {
                linux: cri::LinuxContainerResources::decode(rec.resources.as_slice()).ok(),
                windows: None,
            }),
            image_id: rec.image_id.clone(),
            user: Some(cri::ContainerUser {
                linux: Some(cri::LinuxContainerUser {
                    uid: rec.uid,
                    gid: rec.gid,
                    supplemental_groups: rec.gids.clone(),
                }),
            }),
            stop_signal: cri_signal(rec.stop_signal),
        }
    }

    /// ContainerStatus.
    pub fn container_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<cri::ContainerStatusResponse> {
        let ctr = self.container(id)?;
        let rec = ctr.record();
        let info = if verbose {
            let spec: serde_json::Value =
                std::fs::read(self.container_dir(&rec.id).join("config.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or(serde_json::Value::Null);
            info_map(serde_json::json!({
                "sandboxID": rec.sandbox_id,
                "pid": rec.pid,
                "monitorPid": rec.monitor_pid,
                "runtimeHandler": rec.handler,
                "runtimeSpec": spec,
            }))
        } else {
            HashMap::new()
        };
        Ok(cri::ContainerStatusResponse {
            status: Some(self.container_status_of(&rec)),
            info,
        })
    }

    /// ListContainers.
    pub fn list_containers(&self, filter: Option<&cri::ContainerFilter>) -> Vec<cri::Container> {
        let mut out: Vec<cri::Container> = self
            .all_containers()
            .into_iter()
            .map(|c| c.record())
            .filter(|r| r.state.listed())
            .map(|r| {
                let s = self.container_status_of(&r);
                cri::Container {
                    id: s.id,
                    pod_sandbox_id: r.sandbox_id.clone(),
                    metadata: s.metadata,
                    image: s.image,
                    image_ref: s.image_ref,
                    state: s.state,
                    created_at: s.created_at,
                    labels: s.labels,
                    annotations: s.annotations,
                    image_id: s.image_id,
                }
            })
            .filter(|c| match filter {
                None => true,
                Some(f) => {
                    (f.id.is_empty() || c.id.starts_with(&f.id))
                        && (f.pod_sandbox_id.is_empty()
                            || c.pod_sandbox_id.starts_with(&f.pod_sandbox_id))
                        && f.state.as_ref().map(|s| s.state == c.state).unwrap_or(true)
                        && labels_match(&c.labels, &f.label_selector)
                }
            })
            .collect();
        out.sort_by_key(|c| c.created_at);
        out
    }

    fn running(&self, id: &str) -> Result<(Arc<Ctr>, ContainerRecord)> {
        let ctr = self.container(id)?;
        let rec = ctr.record();
        if !rec.state.can_exec() {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running (state {:?})",
                ctr.id, rec.state
            )));
        }
        Ok((ctr, rec))
    }

    /// The process template for exec: the container's own process (env, user, cwd, caps) with new args.
    pub fn exec_process(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
    ) -> Result<(Arc<crius_oci::Handler>, String, oci_spec::runtime::Process)> {
        if cmd.is_empty() {
            return Err(Error::invalid("cmd", "must not be empty"));
        }
        let (ctr, rec) = self.running(id)?;
        let path = self.container_dir(&ctr.id).join("config.json");
        let bytes = std::fs::read(&path).map_err(|e| io_err("read OCI spec", &path, e))?;
        let spec: oci_spec::runtime::Spec = serde_json::from_slice(&bytes)
            .map_err(|e| Error::internal(format!("parse {}", path.display()), e))?;
        let mut process = spec.process().clone().unwrap_or_default();
        process.set_args(Some(cmd.to_vec()));
        process.set_terminal(Some(tty));
        process.set_console_size(None);
        let handler = self.handlers.existing(&rec.handler)?;
        Ok((handler, ctr.id.clone(), process))
    }

    /// Whether container `id`'s handler can apply its seccomp filter to exec'd processes (or the
    /// configuration allows them unfiltered); see `handler_features::check_exec`.
    pub async fn check_exec_seccomp(&self, id: &str) -> Result<()> {
        let rec = self.container(id)?.record();
        self.check_exec_seccomp_of(&rec.handler, &rec.try_config()?)
            .await
    }

    /// ExecSync.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse> {
        self.check_exec_seccomp(id).await?;
        let (handler, cid, process) = self.exec_process(id, cmd, false)?;
        let timeout = (timeout > 0).then(|| Duration::from_secs(timeout as u64));
        let out = match handler
            .exec_sync(&cid, &process, timeout, MAX_EXEC_OUTPUT)
            .await
        {
            Ok(out) => out,
            Err(e) => {
                // The container may have exited between our state check and the runtime's: that is
                // the caller's precondition failing, not an internal error.
                let running =
                    matches!(handler.state(&cid).await, Ok(Some(s)) if s.status == "running");
                if !running {
                    return Err(Error::FailedPrecondition(format!(
                        "container {cid} is not running: {e}"
                    )));
                }
                return Err(oci_err(e));
            }
        };
        if out.timed_out {
            return Err(Error::DeadlineExceeded(format!(
                "command {cmd:?} in container {cid} timed out after {}s",
                timeout.map(|t| t.as_secs()).unwrap_or(0)
            )));
        }
        let (mut stdout, mut stderr) = (out.stdout, out.stderr);
        // Each stream was capped alone; together they must still fit one gRPC message.
        crate::server::limits::fit_exec_output(
            &mut stdout,
            &mut stderr,
            crate::server::limits::exec_sync_budget(),
        );
        Ok(cri::ExecSyncResponse {
            stdout,
            stderr,
            exit_code: out.exit_code,
        })
    }

    /// UpdateContainerResources.
    pub async fn update_resources(
        &self,
        id: &str,
        linux: Option<cri::LinuxContainerResources>,
        has_windows: bool,
    ) -> Result<()> {
        if has_windows {
            return Err(Error::unimplemented(
                "windows",
                "crius runs Linux containers only",
            ));
        }
        let ctr = self.container(id)?;
        let _g = ctr.op.lock().await;
        let rec = ctr.record();
        let Some(linux) = linux else { return Ok(()) };
        self.handlers.ready_for(&rec.handler).await;
        if let Some(f) = self.handlers.features.get(&rec.handler) {
            crate::handler_features::check_update(&rec.handler, f)?;
        }
        let res = crius_spec::linux_resources(&linux, &self.host).map_err(spec_err)?;
        if rec.state.can_update() {
            let handler = self.handlers.existing(&rec.handler)?;
            handler.update(&ctr.id, &res).await.map_err(oci_err)?;
        } else {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running (state {:?})",
                ctr.id, rec.state
            )));
        }
        ctr.update(self, |r| r.resources = linux.encode_to_vec())
            .await?;
        Ok(())
    }

    /// ReopenContainerLog.
    pub async fn reopen_log(&self, id: &str) -> Result<()> {
        let (ctr, _) = self.running(id)?;
        crius_oci::reopen_log(&self.container_dir(&ctr.id))
            .await
            .map_err(oci_err)
    }

    fn emit_event(&self, ctr: &Ctr, kind: cri::ContainerEventType) {
        // The whole pod goes with the event (see `events`).
        self.container_event(&ctr.id, &ctr.sandbox_id, kind);
    }
}

/// Like containerd: a bind mount whose host path does not exist gets an empty directory there. Only
/// absolute paths free of `..` are touched (spec generation rejects the others with the field named).
fn create_missing_mount_sources(cfg: &cri::ContainerConfig) -> Result<()> {
    for m in &cfg.mounts {
        let p = Path::new(&m.host_path);
        if m.host_path.is_empty()
            || !p.is_absolute()
            || p.components().any(|c| matches!(c, Component::ParentDir))
        {
            continue;
        }
        if std::fs::symlink_metadata(p).is_err() {
            std::fs::create_dir_all(p).map_err(|e| io_err("create mount source", p, e))?;
        }
    }
    Ok(())
}

/// A signal number as the CRI's Signal enum (whose names match the kernel's).
pub fn cri_signal(sig: i32) -> i32 {
    let name = match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str(),
        Err(_) => return cri::Signal::RuntimeDefault as i32,
    };
    cri::Signal::from_str_name(name)
        .map(|s| s as i32)
        .unwrap_or(cri::Signal::RuntimeDefault as i32)
}

fn oom_file(cgroups_path: &Path, v2: bool) -> PathBuf {
    let rel = cgroups_path.strip_prefix("/").unwrap_or(cgroups_path);
    if v2 {
        Path::new("/sys/fs/cgroup").join(rel).join("memory.events")
    } else {
        Path::new("/sys/fs/cgroup/memory")
            .join(rel)
            .join("memory.oom_control")
    }
}

pub fn image_defaults(image: &crius_image::Image) -> crius_spec::ImageDefaults {
    crius_spec::ImageDefaults {
        user: image.config.user.clone(),
        env: image.config.env.clone(),
        entrypoint: image.config.entrypoint.clone(),
        cmd: image.config.cmd.clone(),
        working_dir: image.config.working_dir.clone(),
        stop_signal: image.config.stop_signal.clone(),
    }
}

/// A monitor that outlived the daemon may still be running the runtime's `create`; deleting before
/// the runtime knows the container would miss the init process that `create` is about to leave
/// behind. Waits (bounded by the create timeout) until the runtime knows it or the monitor is gone.
async fn settle_create(rt: &Arc<Containers>, ctr: &Arc<Ctr>) {
    let dir = rt.container_dir(&ctr.id);
    let Ok(h) = rt.handlers.existing(&ctr.record().handler) else {
        return;
    };
    let deadline = std::time::Instant::now() + CREATE_TIMEOUT;
    while rt.oci.monitor_alive(&dir).is_some() && std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = rt.oci.state(&h, &ctr.id).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A container recorded Created whose runtime says it runs: the daemon died between `runtime start`
/// and recording it. It is Running now (the start time is when crius learnt of it), so that a
/// retried StartContainer is refused as for any running container instead of failing in the runtime.
async fn started_while_down(rt: &Arc<Containers>, ctr: &Arc<Ctr>) {
    let Ok(h) = rt.handlers.existing(&ctr.record().handler) else {
        return;
    };
    if let Ok(Some(s)) = rt.oci.state(&h, &ctr.id).await {
        if s.status == "running" {
            tracing::info!(
                "container {}: started while crius was down; recording it Running",
                ctr.id
            );
            let now = now_ns();
            if let Err(e) = ctr
                .apply(rt, CtrEvent::Started, |r| r.started_at = now)
                .await
            {
                tracing::warn!("container {}: {e}", ctr.id);
            }
        }
    }
}

/// Loads containers and reconciles them with their monitors: running containers are watched again,
/// exits that happened while the daemon was down are read from the monitors' exit files, half-made
/// containers are removed.
pub(crate) async fn recover(rt: &Arc<Containers>, m: &dyn recovery::Machine) -> anyhow::Result<()> {
    let records: Vec<ContainerRecord> = rt.store.list(CONTAINERS)?;
    for rec in records {
        let cfg = rec.try_config()?;
        let meta = cfg.metadata.clone().unwrap_or_default();
        let key = format!("{}/{}_{}", rec.sandbox_id, meta.name, meta.attempt);
        let (tx, _) = watch::channel(matches!(rec.state, CtrState::Exited | CtrState::Unknown));
        let ctr = Arc::new(Ctr {
            id: rec.id.clone(),
            sandbox_id: rec.sandbox_id.clone(),
            rec: SyncMutex::new(rec.clone()),
            op: tokio::sync::Mutex::new(()),
            name_key: key.clone(),
            exited: tx,
            commit: tokio::sync::Mutex::new(()),
            runtime_deleted: Default::default(),
            event_order: Default::default(),
        });
        let _ = rt.names.reserve(&key, &rec.id);
        if let Ok(mut m) = rt.table.write() {
            m.insert(rec.id.clone(), ctr.clone());
        }
        use recovery::CtrPlan;
        let pod_known = rt.pods.pod(&rec.sandbox_id).is_ok();
        let dir = rt.container_dir(&rec.id);
        match recovery::plan_container(rec.state, pod_known, &dir, m) {
            CtrPlan::RemoveOrphan => {
                tracing::warn!(
                    "container {}: its pod {} is gone; removing it",
                    rec.id,
                    rec.sandbox_id
                );
                // Its exit must be seen for the stop inside the removal to finish: watched when its
                // monitor runs, collected now when the monitor is gone.
                if rec.state.can_kill() {
                    if m.monitor_alive(&dir) {
                        rt.watch_exit(ctr.clone());
                    } else {
                        rt.collect_exit(&ctr).await;
                    }
                }
                if let Err(e) = rt.remove_container_inner(&ctr).await {
                    tracing::warn!("container {}: removing it: {e}", rec.id);
                }
            }
            CtrPlan::Undo => {
                tracing::info!(
                    "container {}: was being created when crius stopped; undoing it",
                    rec.id
                );
                settle_create(rt, &ctr).await;
                let _ = rt.remove_container_inner(&ctr).await;
            }
            CtrPlan::Watch { check_started } => {
                if check_started {
                    started_while_down(rt, &ctr).await;
                }
                rt.watch_exit(ctr.clone());
            }
            CtrPlan::CollectExit => rt.collect_exit(&ctr).await,
            CtrPlan::Nothing => {}
        }
    }
    // Rootfs mounts whose container record is gone (a crash between mount and the first record write).
    let known: Vec<String> = rt.all_containers().iter().map(|c| c.id.clone()).collect();
    if let Ok(ids) = rt.rootfs.list_rootfs() {
        for id in ids.into_iter().filter(|id| !known.contains(id)) {
            let rootfs = rt.container_dir(&id).join("rootfs");
            if let Err(e) = rt.rootfs.remove_rootfs(&id, &rootfs) {
                tracing::warn!("container {id}: removing orphaned rootfs: {e}");
            }
        }
    }
    image_volume::recover(rt, &known);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_path_rejects_escapes() {
        let sb = cri::PodSandboxConfig {
            log_directory: "/var/log/pods/x".into(),
            ..Default::default()
        };
        let mut c = cri::ContainerConfig {
            log_path: "c/0.log".into(),
            ..Default::default()
        };
        assert_eq!(
            log_path(&sb, &c).unwrap(),
            Some(PathBuf::from("/var/log/pods/x/c/0.log"))
        );
        for bad in ["../etc/passwd", "/etc/passwd", "a/../../b"] {
            c.log_path = bad.into();
            let e = log_path(&sb, &c).unwrap_err().to_string();
            assert!(e.contains("config.log_path"), "{bad}: {e}");
        }
    }
}
