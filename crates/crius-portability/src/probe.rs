//! The live probes: one per KEP of the dataset. Each drives the endpoint over the CRI, checks the
//! effect inside a real container (or the RPC's answer where the effect is the answer), and records
//! what it made in the [`Ledger`] so the runner can remove it whatever happens.
//!
//! A probe returns `Err(text)` when its own set-up failed (pull, baseline pod, exec): the verdict is
//! then `inconclusive`, never a refusal of the feature.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cri_api::v1 as cri;

use crate::cleanup::{mount_tmpfs, Ledger, Made, RUN_LABEL};
use crate::client::Cri;
use crate::verdict::{Outcome, Verdict};

/// The CRI version this checker speaks (the proto it was built from).
pub const CHECKER_CRI_API: &str = "v0.36";

/// What each probe does, by KEP; every KEP of the dataset must have one (unit-tested).
pub const PROBES: &[(u32, &str)] = &[
    (24, "apparmor: RuntimeDefault confines (or, on a host without AppArmor, a Localhost profile is refused)"),
    (127, "pod with userns_options POD: /proc/self/uid_map shows the requested mapping"),
    (135, "seccomp Localhost profile denying mkdir: mkdir fails with EPERM"),
    (688, "pod with linux.overhead and linux.resources is accepted (informational for runc-like runtimes)"),
    (1287, "UpdateContainerResources 64Mi -> 128Mi: the container's cgroup and ContainerStatus.resources follow"),
    (1981, "pod with windows.security_context.host_process on a Linux runtime must be refused"),
    (2008, "CheckpointContainer writes a checkpoint archive"),
    (2371, "ListPodSandboxStats/ContainerStats carry cpu and memory; ListMetricDescriptors/ListPodSandboxMetrics answer"),
    (2400, "memory 64Mi + memory_swap_limit 128Mi: the container's cgroup swap limit"),
    (2763, "add_ambient_capabilities NET_BIND_SERVICE for uid 1000: CapAmb is non-zero"),
    (3386, "GetContainerEvents streams created/started/stopped/deleted for a container"),
    (3503, "pod with windows namespace_options on a Linux runtime must be refused"),
    (3619, "supplemental_groups_policy Strict: id -G holds only the primary and requested groups"),
    (3857, "recursive_read_only bind of a dir with a tmpfs submount: writing into the submount fails"),
    (4009, "CDI_devices naming a CDI spec written for the probe: its env edit is inside"),
    (4033, "RuntimeConfig's cgroup driver, against the container's cgroup path"),
    (4191, "ImageFsInfo reports container_filesystems"),
    (4205, "ContainerStats carries cpu.psi and memory.psi"),
    (4216, "PullImage with an unknown runtime_handler is refused, with another real handler accepted"),
    (4381, "CDI_devices naming a CDI spec written for the probe: its env edit is inside"),
    (4639, "image volume (and image_sub_path) mounted read-only with the image's files"),
    (4885, "windows affinity_cpus on a Linux runtime must be refused"),
    (4960, "stop_signal SIGUSR1 reaches the process (trap exits 42) and is reported"),
    (5365, "ContainerStatus.mounts[].image.image_ref of an image volume equals the pulled image_ref"),
    (5419, "UpdatePodSandboxResources on a pod with pod-level resources"),
    (5607, "host-network pod with userns_options POD: /proc/self/uid_map is not the identity"),
    (5823, "CheckpointPod / RestorePod (raw call: newer than this checker's CRI)"),
    (5825, "StreamPodSandboxes/StreamContainers/StreamImages return what the List* RPCs return"),
    (5855, "Mount.mount_options: newer than this checker's CRI"),
];

/// Options a run may need beyond the socket and the image.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// cgroup_parent for the probe pods ("" = the runtime's default).
    pub cgroup_parent: String,
    /// Where to write the probe's CDI spec (a directory the runtime reads).
    pub cdi_dir: PathBuf,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            cgroup_parent: String::new(),
            cdi_dir: PathBuf::from("/var/run/cdi"),
        }
    }
}

pub struct Ctx {
    pub cri: Cri,
    pub image: String,
    pub image_ref: String,
    pub status: cri::StatusResponse,
    pub scratch: PathBuf,
    pub ledger: Arc<Ledger>,
    pub run_id: String,
    pub opts: ProbeOptions,
    /// A host-network pod the container probes share.
    pub base: Option<(String, cri::PodSandboxConfig)>,
    /// Whether a plain pod-network pod can be made at all (baseline for pod-level probes).
    pub pod_network: Result<(), String>,
    /// The image was already on the endpoint before the run (so it is not removed after).
    pub image_was_present: bool,
    seq: AtomicU32,
    step: Mutex<String>,
}

type Probe = Result<Outcome, String>;

const MI: i64 = 1 << 20;

fn setup<T>(what: &str, r: Result<T, tonic::Status>) -> Result<T, String> {
    r.map_err(|s| format!("{what}: {:?}: {}", s.code(), s.message()))
}

impl Ctx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cri: Cri,
        image: String,
        image_ref: String,
        status: cri::StatusResponse,
        scratch: PathBuf,
        ledger: Arc<Ledger>,
        run_id: String,
        opts: ProbeOptions,
        image_was_present: bool,
    ) -> Ctx {
        Ctx {
            cri,
            image,
            image_ref,
            status,
            scratch,
            ledger,
            run_id,
            opts,
            base: None,
            pod_network: Ok(()),
            image_was_present,
            seq: AtomicU32::new(0),
            step: Mutex::new(String::new()),
        }
    }

    pub fn step(&self, s: impl Into<String>) {
        if let Ok(mut g) = self.step.lock() {
            *g = s.into();
        }
    }

    pub fn last_step(&self) -> String {
        self.step.lock().map(|g| g.clone()).unwrap_or_default()
    }

    fn unique(&self, name: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{name}-{}-{n}", self.run_id)
    }

    pub fn pod_config(&self, name: &str, host_network: bool) -> cri::PodSandboxConfig {
        let name = self.unique(name);
        let network = if host_network {
            cri::NamespaceMode::Node
        } else {
            cri::NamespaceMode::Pod
        } as i32;
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.clone(),
                uid: format!("uid-{name}"),
                namespace: "crius-portability".into(),
                attempt: 0,
            }),
            log_directory: self.scratch.join("logs").join(&name).display().to_string(),
            labels: [(RUN_LABEL.to_string(), self.run_id.clone())].into(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.opts.cgroup_parent.clone(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// RunPodSandbox; the pod is recorded for removal.
    pub async fn run_pod(&self, cfg: &cri::PodSandboxConfig) -> Result<String, tonic::Status> {
        self.step("RunPodSandbox");
        let id = self
            .cri
            .rt
            .clone()
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(cfg.clone()),
                runtime_handler: String::new(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id;
        self.ledger.record(Made::Pod(id.clone()));
        Ok(id)
    }

    pub fn ctr_config(&self, name: &str, cmd: &[&str]) -> cri::ContainerConfig {
        let name = self.unique(name);
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.clone(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: self.image_ref.clone(),
                user_specified_image: self.image.clone(),
                ..Default::default()
            }),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            linux: Some(cri::LinuxContainerConfig::default()),
            ..Default::default()
        }
    }

    /// CreateContainer in `pod` (the base pod when None); the container is recorded for removal.
    pub async fn create_in(
        &self,
        pod: Option<(&str, &cri::PodSandboxConfig)>,
        cfg: cri::ContainerConfig,
    ) -> Result<Result<String, tonic::Status>, String> {
        let (pod_id, pod_cfg) = match pod {
            Some((id, c)) => (id.to_string(), c.clone()),
            None => match &self.base {
                Some((id, c)) => (id.clone(), c.clone()),
                None => return Err("no base pod".into()),
            },
        };
        self.step("CreateContainer");
        let r = self
            .cri
            .rt
            .clone()
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod_id,
                config: Some(cfg),
                sandbox_config: Some(pod_cfg),
            })
            .await
            .map(|r| r.into_inner().container_id);
        if let Ok(id) = &r {
            self.ledger.record(Made::Container(id.clone()));
        }
        Ok(r)
    }

    pub async fn start(&self, id: &str) -> Result<(), tonic::Status> {
        self.step("StartContainer");
        self.cri
            .rt
            .clone()
            .start_container(cri::StartContainerRequest {
                container_id: id.to_string(),
            })
            .await
            .map(|_| ())
    }

    /// Create + start in the base pod; `Ok(Err(status))` when the runtime refused either.
    pub async fn run_ctr(
        &self,
        cfg: cri::ContainerConfig,
    ) -> Result<Result<String, tonic::Status>, String> {
        self.run_ctr_in(None, cfg).await
    }

    pub async fn run_ctr_in(
        &self,
        pod: Option<(&str, &cri::PodSandboxConfig)>,
        cfg: cri::ContainerConfig,
    ) -> Result<Result<String, tonic::Status>, String> {
        let id = match self.create_in(pod, cfg).await? {
            Ok(id) => id,
            Err(s) => return Ok(Err(s)),
        };
        match self.start(&id).await {
            Ok(()) => Ok(Ok(id)),
            Err(s) => Ok(Err(s)),
        }
    }

    /// `sh -c script` in the container; (exit code, stdout, stderr).
    pub async fn sh(&self, id: &str, script: &str) -> Result<(i32, String, String), String> {
        self.step(format!("ExecSync {script}"));
        let r = self
            .cri
            .rt
            .clone()
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.to_string(),
                cmd: vec!["sh".into(), "-c".into(), script.into()],
                timeout: 10,
            })
            .await
            .map_err(|s| format!("ExecSync {script:?}: {:?}: {}", s.code(), s.message()))?
            .into_inner();
        Ok((
            r.exit_code,
            String::from_utf8_lossy(&r.stdout).trim().to_string(),
            String::from_utf8_lossy(&r.stderr).trim().to_string(),
        ))
    }

    pub async fn ctr_status(&self, id: &str) -> Result<cri::ContainerStatus, String> {
        self.step("ContainerStatus");
        let r = self
            .cri
            .rt
            .clone()
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await;
        setup("ContainerStatus", r)?
            .into_inner()
            .status
            .ok_or_else(|| "ContainerStatus without status".to_string())
    }

    /// The default runtime handler's advertised features (None: the endpoint reports no handlers).
    pub fn handler_features(&self) -> Option<cri::RuntimeHandlerFeatures> {
        let hs = &self.status.runtime_handlers;
        hs.iter()
            .find(|h| h.name.is_empty())
            .or_else(|| hs.first())
            .map(|h| h.features.unwrap_or_default())
    }

    pub fn runtime_features(&self) -> Option<cri::RuntimeFeatures> {
        self.status.features
    }

    fn with_security(
        cfg: &mut cri::ContainerConfig,
        f: impl FnOnce(&mut cri::LinuxContainerSecurityContext),
    ) {
        let linux = cfg.linux.get_or_insert_with(Default::default);
        let sc = linux.security_context.get_or_insert_with(Default::default);
        f(sc);
    }

    fn with_resources(cfg: &mut cri::ContainerConfig, r: cri::LinuxContainerResources) {
        let linux = cfg.linux.get_or_insert_with(Default::default);
        linux.resources = Some(r);
    }
}

/// Runs the probe of `kep`.
pub async fn run(kep: u32, ctx: &Ctx) -> Outcome {
    let r = match kep {
        24 => apparmor(ctx).await,
        127 => userns(ctx, false).await,
        135 => seccomp(ctx).await,
        688 => pod_overhead(ctx).await,
        1287 => update_resources(ctx).await,
        1981 => windows_pod(ctx, true).await,
        2008 => checkpoint(ctx).await,
        2371 => stats(ctx).await,
        2400 => swap(ctx).await,
        2763 => ambient(ctx).await,
        3386 => events(ctx).await,
        3503 => windows_pod(ctx, false).await,
        3619 => supplemental_groups(ctx).await,
        3857 => rro(ctx).await,
        4009 | 4381 => cdi(ctx).await,
        4033 => cgroup_driver(ctx).await,
        4191 => image_fs(ctx).await,
        4205 => psi(ctx).await,
        4216 => image_per_handler(ctx).await,
        4639 => image_volume(ctx).await,
        4885 => windows_affinity(ctx).await,
        4960 => stop_signal(ctx).await,
        5365 => image_volume_digest(ctx).await,
        5419 => pod_resources_probe(ctx).await,
        5607 => userns(ctx, true).await,
        5823 => pod_checkpoint(ctx).await,
        5825 => list_streaming(ctx).await,
        5855 => Ok(Outcome::new(
            Verdict::NotInCriVersion,
            format!(
                "Mount.mount_options and RuntimeFeatures.mount_options are newer than cri-api {CHECKER_CRI_API}, \
                 which this checker speaks; a runtime must advertise RuntimeFeatures.mount_options before a kubelet sends them"
            ),
        )),
        _ => Ok(Outcome::inconclusive("no probe for this KEP")),
    };
    r.unwrap_or_else(Outcome::inconclusive)
}

/// A container that just sleeps, with `edit` applied to its config.
fn sleeper(ctx: &Ctx, name: &str) -> cri::ContainerConfig {
    ctx.ctr_config(name, &["sleep", "3600"])
}

fn uid_map_tokens(s: &str) -> Vec<Vec<u64>> {
    s.lines()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|t| t.parse().ok())
                .collect()
        })
        .collect()
}

// ---- KEP-127 / KEP-5607: user namespaces ---------------------------------------------------------

const USERNS_HOST_ID: u32 = 65536 * 8;

async fn userns(ctx: &Ctx, host_network: bool) -> Probe {
    let advertised = if host_network {
        ctx.runtime_features()
            .map(|f| f.user_namespaces_host_network)
    } else {
        ctx.handler_features().map(|f| f.user_namespaces)
    };
    if !host_network {
        if let Err(e) = &ctx.pod_network {
            return Err(format!(
                "a plain pod-network pod fails on this endpoint: {e}"
            ));
        }
    }
    let mut pod = ctx.pod_config("userns", host_network);
    let map = cri::IdMapping {
        host_id: USERNS_HOST_ID,
        container_id: 0,
        length: 65536,
    };
    if let Some(l) = pod.linux.as_mut() {
        if let Some(sc) = l.security_context.as_mut() {
            if let Some(ns) = sc.namespace_options.as_mut() {
                ns.userns_options = Some(cri::UserNamespace {
                    mode: cri::NamespaceMode::Pod as i32,
                    uids: vec![map],
                    gids: vec![map],
                });
            }
        }
    }
    let what = if host_network {
        "host-network pod with userns_options"
    } else {
        "pod with userns_options"
    };
    let pod_id = match ctx.run_pod(&pod).await {
        Ok(id) => id,
        Err(s) => return Ok(Outcome::refused(what, &s, advertised)),
    };
    let id = match ctx
        .run_ctr_in(Some((&pod_id, &pod)), sleeper(ctx, "userns"))
        .await?
    {
        Ok(id) => id,
        Err(s) => {
            return Ok(Outcome::refused(
                &format!("container in {what}"),
                &s,
                advertised,
            ))
        }
    };
    let (_, out, _) = ctx.sh(&id, "cat /proc/self/uid_map").await?;
    let rows = uid_map_tokens(&out);
    let want = vec![vec![0, USERNS_HOST_ID as u64, 65536]];
    if rows == want {
        return Ok(Outcome::works(format!("uid_map: {out}")).with_advertised(advertised));
    }
    let identity = rows.len() == 1 && rows[0].first() == Some(&0) && rows[0].get(1) == Some(&0);
    Ok(Outcome::effect_absent(
        format!(
            "{what} accepted but uid_map is {} ({out:?}), want \"0 {USERNS_HOST_ID} 65536\"",
            if identity {
                "the host's identity map"
            } else {
                "not the requested map"
            }
        ),
        advertised,
    ))
}

// ---- KEP-3857: recursive read-only mounts -------------------------------------------------------

async fn rro(ctx: &Ctx) -> Probe {
    let advertised = ctx.handler_features().map(|f| f.recursive_read_only_mounts);
    let dir = ctx.scratch.join("rro");
    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub).map_err(|e| format!("mkdir {}: {e}", sub.display()))?;
    ctx.ledger.record(Made::Mount(sub.clone()));
    mount_tmpfs(&sub).map_err(|e| format!("mount tmpfs on {}: {e}", sub.display()))?;
    let mut cfg = sleeper(ctx, "rro");
    cfg.mounts = vec![cri::Mount {
        container_path: "/crius-rro".into(),
        host_path: dir.display().to_string(),
        readonly: true,
        recursive_read_only: true,
        propagation: cri::MountPropagation::PropagationPrivate as i32,
        ..Default::default()
    }];
    let id = match ctx.run_ctr(cfg).await? {
        Ok(id) => id,
        Err(s) => {
            return Ok(Outcome::refused(
                "recursive_read_only mount",
                &s,
                advertised,
            ))
        }
    };
    let (_, out, _) = ctx
        .sh(
            &id,
            "touch /crius-rro/x 2>/dev/null && echo TOP_WRITABLE; \
             touch /crius-rro/sub/x 2>&1 && echo SUB_WRITABLE; \
             grep -q ' /crius-rro/sub ' /proc/self/mountinfo && echo SUB_MOUNTED",
        )
        .await?;
    if !out.contains("SUB_MOUNTED") {
        return Err(format!(
            "the tmpfs submount is not visible in the container: {out}"
        ));
    }
    if out.contains("SUB_WRITABLE") || out.contains("TOP_WRITABLE") {
        return Ok(Outcome::effect_absent(
            format!("recursive_read_only mount accepted but the submount is writable: {out}"),
            advertised,
        ));
    }
    Ok(
        Outcome::works(format!("writing into the submount fails: {out}"))
            .with_advertised(advertised),
    )
}

// ---- KEP-3619: supplemental groups policy -------------------------------------------------------

/// A user of the image that /etc/group lists as member of a group other than its primary one:
/// (uid, primary gid, extra gid). Without one, Strict and Merge cannot be told apart.
pub fn user_with_extra_group(passwd: &str, group: &str) -> Option<(i64, i64, i64)> {
    let users: Vec<(String, i64, i64)> = passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((
                f.first()?.to_string(),
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
            ))
        })
        .collect();
    for l in group.lines() {
        let f: Vec<&str> = l.split(':').collect();
        let (Some(gid), Some(members)) = (f.get(2).and_then(|g| g.parse::<i64>().ok()), f.get(3))
        else {
            continue;
        };
        for m in members.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            if let Some((_, uid, primary)) = users.iter().find(|u| u.0 == m) {
                if *primary != gid {
                    return Some((*uid, *primary, gid));
                }
            }
        }
    }
    None
}

async fn supplemental_groups(ctx: &Ctx) -> Probe {
    let advertised = ctx.runtime_features().map(|f| f.supplemental_groups_policy);
    // Find a user with an extra group in the image's /etc/group (uid 0 with none when absent).
    let reader = match ctx.run_ctr(sleeper(ctx, "groups-read")).await? {
        Ok(id) => id,
        Err(s) => return Err(format!("container: {:?}: {}", s.code(), s.message())),
    };
    let (_, passwd, _) = ctx.sh(&reader, "cat /etc/passwd").await?;
    let (_, group, _) = ctx.sh(&reader, "cat /etc/group").await?;
    let found = user_with_extra_group(&passwd, &group);
    let (uid, gid, extra) = found.unwrap_or((0, 0, -1));
    let groups = |policy: cri::SupplementalGroupsPolicy| {
        let mut cfg = sleeper(ctx, "groups");
        Ctx::with_security(&mut cfg, |sc| {
            sc.run_as_user = Some(cri::Int64Value { value: uid });
            sc.run_as_group = Some(cri::Int64Value { value: gid });
            sc.supplemental_groups = vec![60];
            sc.supplemental_groups_policy = policy as i32;
        });
        cfg
    };
    let merge = match ctx
        .run_ctr(groups(cri::SupplementalGroupsPolicy::Merge))
        .await?
    {
        Ok(id) => id,
        Err(s) => {
            return Err(format!(
                "baseline (Merge) container: {:?}: {}",
                s.code(),
                s.message()
            ))
        }
    };
    let (_, merged, _) = ctx.sh(&merge, "id -G").await?;
    let strict = match ctx
        .run_ctr(groups(cri::SupplementalGroupsPolicy::Strict))
        .await?
    {
        Ok(id) => id,
        Err(s) => {
            return Ok(Outcome::refused(
                "supplemental_groups_policy Strict",
                &s,
                advertised,
            ))
        }
    };
    let (_, got, _) = ctx.sh(&strict, "id -G").await?;
    let set: BTreeSet<String> = got.split_whitespace().map(String::from).collect();
    let want: BTreeSet<String> = [gid.to_string(), "60".to_string()].into();
    let reported = ctx
        .ctr_status(&strict)
        .await?
        .user
        .and_then(|u| u.linux)
        .map(|l| l.supplemental_groups)
        .unwrap_or_default();
    if set != want {
        return Ok(Outcome::effect_absent(
            format!(
                "Strict accepted but id -G is {got:?} for uid {uid} (Merge gives {merged:?}), want {:?}",
                want.iter().cloned().collect::<Vec<_>>().join(" ")
            ),
            advertised,
        ));
    }
    let mut ev = format!(
        "uid {uid}: Strict id -G {got:?}, Merge {merged:?}; ContainerStatus.user groups {reported:?}"
    );
    if found.is_none() {
        ev.push_str(" (the image's /etc/group gives no user an extra group, so Strict and Merge look alike)");
    } else if !merged.split_whitespace().any(|g| g == extra.to_string()) {
        ev.push_str(&format!(" (Merge lacks the image's group {extra})"));
    }
    if !reported.contains(&60) || (extra >= 0 && reported.contains(&extra)) {
        return Ok(Outcome::new(
            Verdict::AdvertisedButBroken,
            format!("{ev}; ContainerStatus.user does not report the Strict groups"),
        ));
    }
    Ok(Outcome::works(ev).with_advertised(advertised))
}

// ---- KEP-4639 / KEP-5365: image volumes ---------------------------------------------------------

fn image_mount(ctx: &Ctx, path: &str, sub: &str) -> cri::Mount {
    cri::Mount {
        container_path: path.into(),
        readonly: true,
        image: Some(cri::ImageSpec {
            image: ctx.image_ref.clone(),
            ..Default::default()
        }),
        image_sub_path: sub.into(),
        ..Default::default()
    }
}

async fn image_volume(ctx: &Ctx) -> Probe {
    let mut cfg = sleeper(ctx, "imgvol");
    cfg.mounts = vec![
        image_mount(ctx, "/crius-vol", ""),
        image_mount(ctx, "/crius-sub", "bin"),
    ];
    let id = match ctx.run_ctr(cfg).await? {
        Ok(id) => id,
        Err(s) => return Ok(Outcome::refused("image volume mount", &s, None)),
    };
    let (_, out, _) = ctx
        .sh(
            &id,
            "set -- $(ls /bin); f=$1; echo FILE=$f; \
             [ -n \"$f\" ] && [ -e \"/crius-vol/bin/$f\" ] && echo VOL_OK; \
             [ -n \"$f\" ] && [ -e \"/crius-sub/$f\" ] && echo SUB_OK; \
             touch /crius-vol/crius-probe 2>/dev/null && echo WRITABLE",
        )
        .await?;
    if !out.contains("VOL_OK") || !out.contains("SUB_OK") {
        return Ok(Outcome::effect_absent(
            format!("image mounts accepted but the image's files are not there: {out}"),
            None,
        ));
    }
    if out.contains("WRITABLE") {
        return Ok(Outcome::effect_absent(
            format!("image volume is writable: {out}"),
            None,
        ));
    }
    Ok(Outcome::works(format!(
        "the image's /bin is under /crius-vol and (image_sub_path bin) /crius-sub, read-only: {out}"
    )))
}

async fn image_volume_digest(ctx: &Ctx) -> Probe {
    let mut cfg = sleeper(ctx, "imgref");
    cfg.mounts = vec![image_mount(ctx, "/crius-vol", "")];
    let id = match ctx.run_ctr(cfg).await? {
        Ok(id) => id,
        Err(s) => return Ok(Outcome::refused("image volume mount", &s, None)),
    };
    let st = ctx.ctr_status(&id).await?;
    let m = st.mounts.iter().find(|m| m.container_path == "/crius-vol");
    let got = m
        .and_then(|m| m.image.as_ref())
        .map(|i| i.image_ref.clone())
        .unwrap_or_default();
    if got.is_empty() {
        return Ok(Outcome::new(
            Verdict::FailsFast,
            "ContainerStatus.mounts[].image.image_ref not reported (empty)",
        ));
    }
    if got != ctx.image_ref {
        return Ok(Outcome::new(
            Verdict::AdvertisedButBroken,
            format!(
                "image_ref reported as {got:?}, pulled as {:?}",
                ctx.image_ref
            ),
        ));
    }
    Ok(Outcome::works(format!("image_ref {got}")))
}

// ---- KEP-3386: container events ------------------------------------------------------------------

async fn events(ctx: &Ctx) -> Probe {
    ctx.step("GetContainerEvents");
    let opened = tokio::time::timeout(
        Duration::from_secs(5),
        ctx.cri
            .rt
            .clone()
            .get_container_events(cri::GetEventsRequest {}),
    )
    .await;
    let mut stream = match opened {
        Err(_) => {
            return Ok(Outcome::new(
                Verdict::Hang,
                "GetContainerEvents did not answer in 5s",
            ))
        }
        Ok(Err(s)) => return Ok(Outcome::refused("GetContainerEvents", &s, None)),
        Ok(Ok(r)) => r.into_inner(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            match stream.message().await {
                Ok(Some(ev)) => {
                    if tx.send(Ok(ev)).is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(s) => {
                    let _ = tx.send(Err(s));
                    break;
                }
            }
        }
    });
    struct Abort(tokio::task::JoinHandle<()>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _reader = Abort(reader);
    // A stream that ends at once is the documented "not supported" answer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut seen: Vec<cri::ContainerEventResponse> = Vec::new();
    let mut closed = false;
    loop {
        match rx.try_recv() {
            Ok(Ok(ev)) => seen.push(ev),
            Ok(Err(s)) => return Ok(Outcome::refused("GetContainerEvents stream", &s, None)),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                closed = true;
                break;
            }
        }
    }
    if closed {
        return Ok(Outcome::new(
            Verdict::FailsFast,
            "GetContainerEvents stream closed at once (the kubelet falls back to relisting)",
        ));
    }
    let id = match ctx.run_ctr(sleeper(ctx, "events")).await? {
        Ok(id) => id,
        Err(s) => return Err(format!("container: {:?}: {}", s.code(), s.message())),
    };
    ctx.step("StopContainer");
    setup(
        "StopContainer",
        ctx.cri
            .rt
            .clone()
            .stop_container(cri::StopContainerRequest {
                container_id: id.clone(),
                timeout: 0,
            })
            .await,
    )?;
    ctx.step("RemoveContainer");
    setup(
        "RemoveContainer",
        ctx.cri
            .rt
            .clone()
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await,
    )?;
    use cri::ContainerEventType as T;
    let want = [
        T::ContainerCreatedEvent,
        T::ContainerStartedEvent,
        T::ContainerStoppedEvent,
        T::ContainerDeletedEvent,
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    ctx.step("waiting for container events");
    loop {
        let have: BTreeSet<i32> = seen
            .iter()
            .filter(|e| e.container_id == id)
            .map(|e| e.container_event_type)
            .collect();
        if want.iter().all(|t| have.contains(&(*t as i32))) {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(Ok(ev))) => seen.push(ev),
            Ok(Some(Err(_))) | Ok(None) | Err(_) => break,
        }
    }
    let mine: Vec<_> = seen.iter().filter(|e| e.container_id == id).collect();
    let names: Vec<String> = mine
        .iter()
        .map(|e| {
            T::try_from(e.container_event_type)
                .map(|t| t.as_str_name().to_string())
                .unwrap_or_else(|_| e.container_event_type.to_string())
        })
        .collect();
    if mine.is_empty() {
        return Ok(Outcome::effect_absent(
            "GetContainerEvents open but no event for a created/started/stopped/removed container in 5s",
            None,
        ));
    }
    let missing: Vec<_> = want
        .iter()
        .filter(|t| !mine.iter().any(|e| e.container_event_type == **t as i32))
        .map(|t| t.as_str_name())
        .collect();
    if !missing.is_empty() {
        return Ok(Outcome::new(
            Verdict::AdvertisedButBroken,
            format!("events {names:?}, missing {missing:?}"),
        ));
    }
    if mine.iter().any(|e| e.pod_sandbox_status.is_none()) {
        return Ok(Outcome::new(
            Verdict::AdvertisedButBroken,
            format!("events {names:?}, but some lack pod_sandbox_status"),
        ));
    }
    Ok(Outcome::works(format!(
        "events {names:?}, each with pod_sandbox_status"
    )))
}

// ---- KEP-2371 / KEP-4205: stats, metrics, PSI ---------------------------------------------------

async fn busy_container(ctx: &Ctx, name: &str) -> Result<String, String> {
    let cfg = ctx.ctr_config(
        name,
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 3600",
        ],
    );
    match ctx.run_ctr(cfg).await? {
        Ok(id) => Ok(id),
        Err(s) => Err(format!("container: {:?}: {}", s.code(), s.message())),
    }
}

async fn container_stats(
    ctx: &Ctx,
    id: &str,
) -> Result<Result<cri::ContainerStats, tonic::Status>, String> {
    ctx.step("ContainerStats");
    let r = ctx
        .cri
        .rt
        .clone()
        .container_stats(cri::ContainerStatsRequest {
            container_id: id.to_string(),
        })
        .await;
    Ok(match r {
        Ok(r) => r
            .into_inner()
            .stats
            .ok_or_else(|| tonic::Status::internal("ContainerStats answered without stats")),
        Err(s) => Err(s),
    })
}

async fn stats(ctx: &Ctx) -> Probe {
    let id = busy_container(ctx, "stats").await?;
    let Some((pod, _)) = &ctx.base else {
        return Err("no base pod".into());
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut notes = Vec::new();
    ctx.step("ListPodSandboxStats");
    let r = ctx
        .cri
        .rt
        .clone()
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
            filter: Some(cri::PodSandboxStatsFilter {
                id: pod.clone(),
                ..Default::default()
            }),
        })
        .await;
    let list = match r {
        Ok(r) => r.into_inner().stats,
        Err(s) => return Ok(Outcome::refused("ListPodSandboxStats", &s, None)),
    };
    let Some(ps) = list
        .iter()
        .find(|s| s.attributes.as_ref().map(|a| &a.id) == Some(pod))
    else {
        return Ok(Outcome::effect_absent(
            format!(
                "ListPodSandboxStats has no entry for the probe's pod ({} entries)",
                list.len()
            ),
            None,
        ));
    };
    let linux = ps.linux.clone().unwrap_or_default();
    let pod_cpu = linux
        .cpu
        .and_then(|c| c.usage_core_nano_seconds)
        .map(|v| v.value)
        .unwrap_or(0);
    let pod_mem = linux
        .memory
        .and_then(|m| m.working_set_bytes)
        .map(|v| v.value)
        .unwrap_or(0);
    let in_pod = linux
        .containers
        .iter()
        .any(|c| c.attributes.as_ref().map(|a| a.id.as_str()) == Some(id.as_str()));
    let cs = match container_stats(ctx, &id).await? {
        Ok(s) => s,
        Err(s) => return Ok(Outcome::refused("ContainerStats", &s, None)),
    };
    let c_cpu = cs
        .cpu
        .and_then(|c| c.usage_core_nano_seconds)
        .map(|v| v.value)
        .unwrap_or(0);
    let c_mem = cs
        .memory
        .and_then(|m| m.working_set_bytes)
        .map(|v| v.value)
        .unwrap_or(0);
    if pod_cpu == 0 || pod_mem == 0 || c_cpu == 0 || c_mem == 0 || !in_pod {
        return Ok(Outcome::effect_absent(
            format!(
                "stats answered but empty: pod cpu {pod_cpu} ns, pod working set {pod_mem} B, \
                 container cpu {c_cpu} ns, working set {c_mem} B, container listed in pod stats: {in_pod}"
            ),
            None,
        ));
    }
    notes.push(format!(
        "pod cpu {pod_cpu} ns / working set {pod_mem} B; container cpu {c_cpu} ns / working set {c_mem} B"
    ));
    ctx.step("ListMetricDescriptors");
    match ctx
        .cri
        .rt
        .clone()
        .list_metric_descriptors(cri::ListMetricDescriptorsRequest {})
        .await
    {
        Ok(r) if !r.get_ref().descriptors.is_empty() => notes.push(format!(
            "{} metric descriptors",
            r.get_ref().descriptors.len()
        )),
        Ok(_) => {
            return Ok(Outcome::effect_absent(
                format!(
                    "{}; ListMetricDescriptors answered an empty list",
                    notes.join("; ")
                ),
                None,
            ))
        }
        Err(s) => {
            let mut o = Outcome::refused("ListMetricDescriptors", &s, None);
            o.evidence = format!("stats work ({}), but {}", notes.join("; "), o.evidence);
            return Ok(o);
        }
    }
    ctx.step("ListPodSandboxMetrics");
    match ctx
        .cri
        .rt
        .clone()
        .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
        .await
    {
        Ok(r) => {
            let m = r.into_inner().pod_metrics;
            match m.iter().find(|p| &p.pod_sandbox_id == pod) {
                Some(p) if !p.metrics.is_empty() || !p.container_metrics.is_empty() => {
                    notes.push(format!(
                        "pod metrics: {} pod-level, {} containers",
                        p.metrics.len(),
                        p.container_metrics.len()
                    ))
                }
                _ => {
                    return Ok(Outcome::effect_absent(
                        format!(
                            "{}; ListPodSandboxMetrics has no metrics for the probe's pod",
                            notes.join("; ")
                        ),
                        None,
                    ))
                }
            }
        }
        Err(s) => {
            let mut o = Outcome::refused("ListPodSandboxMetrics", &s, None);
            o.evidence = format!("stats work ({}), but {}", notes.join("; "), o.evidence);
            return Ok(o);
        }
    }
    Ok(Outcome::works(notes.join("; ")))
}

async fn psi(ctx: &Ctx) -> Probe {
    let id = busy_container(ctx, "psi").await?;
    let cs = match container_stats(ctx, &id).await? {
        Ok(s) => s,
        Err(s) => return Err(format!("ContainerStats: {:?}: {}", s.code(), s.message())),
    };
    let cpu = cs.cpu.as_ref().and_then(|c| c.psi.as_ref()).is_some();
    let mem = cs.memory.as_ref().and_then(|m| m.psi.as_ref()).is_some();
    let io = cs.io.as_ref().and_then(|i| i.psi.as_ref()).is_some();
    match (cpu, mem) {
        (true, true) => Ok(Outcome::works(format!(
            "cpu.psi and memory.psi reported{}",
            if io {
                ", io.psi too"
            } else {
                "; io.psi absent"
            }
        ))),
        (false, false) => Ok(Outcome::new(
            Verdict::FailsFast,
            "ContainerStats carries no PSI (the documented discovery: psi fields nil)",
        )),
        _ => Ok(Outcome::new(
            Verdict::AdvertisedButBroken,
            format!("PSI partly reported: cpu {cpu}, memory {mem}, io {io}"),
        )),
    }
}

// ---- KEP-2008 / KEP-5823: checkpoints ------------------------------------------------------------

async fn checkpoint(ctx: &Ctx) -> Probe {
    let id = match ctx.run_ctr(sleeper(ctx, "checkpoint")).await? {
        Ok(id) => id,
        Err(s) => return Err(format!("container: {:?}: {}", s.code(), s.message())),
    };
    let location = ctx.scratch.join("checkpoint.tar");
    ctx.ledger.record(Made::File(location.clone()));
    ctx.step("CheckpointContainer");
    let r = ctx
        .cri
        .rt
        .clone()
        .checkpoint_container(cri::CheckpointContainerRequest {
            container_id: id,
            location: location.display().to_string(),
            timeout: 20,
        })
        .await;
    if let Err(s) = r {
        return Ok(Outcome::refused("CheckpointContainer", &s, None));
    }
    let bytes = std::fs::read(&location).unwrap_or_default();
    let tar = bytes.len() > 262 && &bytes[257..262] == b"ustar";
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    if tar || gz {
        Ok(Outcome::works(format!(
            "checkpoint archive of {} bytes ({})",
            bytes.len(),
            if tar { "tar" } else { "gzip" }
        )))
    } else {
        Ok(Outcome::effect_absent(
            format!(
                "CheckpointContainer answered OK but {} is {}",
                location.display(),
                if bytes.is_empty() {
                    "missing or empty".to_string()
                } else {
                    format!("not an archive ({} bytes)", bytes.len())
                }
            ),
            None,
        ))
    }
}

async fn pod_checkpoint(ctx: &Ctx) -> Probe {
    let mut answers = Vec::new();
    for m in ["CheckpointPod", "RestorePod"] {
        ctx.step(m);
        match ctx.cri.raw_empty_call(m).await {
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                answers.push((m, true, format!("{m}: Unimplemented: {}", s.message())))
            }
            Err(s) => answers.push((m, false, format!("{m}: {:?}: {}", s.code(), s.message()))),
            Ok(()) => answers.push((m, false, format!("{m}: OK to an empty request"))),
        }
    }
    let text = answers
        .iter()
        .map(|a| a.2.clone())
        .collect::<Vec<_>>()
        .join("; ");
    if answers.iter().all(|a| a.1) {
        Ok(Outcome::new(Verdict::FailsFast, text))
    } else {
        Ok(Outcome::new(
            Verdict::NotInCriVersion,
            format!("the endpoint knows the RPCs ({text}); they are newer than cri-api {CHECKER_CRI_API}, so this checker cannot exercise them"),
        ))
    }
}

// ---- KEP-4033: cgroup driver ---------------------------------------------------------------------

async fn cgroup_driver(ctx: &Ctx) -> Probe {
    ctx.step("RuntimeConfig");
    let r = ctx
        .cri
        .rt
        .clone()
        .runtime_config(cri::RuntimeConfigRequest {})
        .await;
    let resp = match r {
        Ok(r) => r.into_inner(),
        Err(s) => return Ok(Outcome::refused("RuntimeConfig", &s, None)),
    };
    let Some(linux) = resp.linux else {
        return Ok(Outcome::new(
            Verdict::AdvertisedButBroken,
            "RuntimeConfig answered without linux.cgroup_driver",
        ));
    };
    let driver = cri::CgroupDriver::try_from(linux.cgroup_driver)
        .map(|d| d.as_str_name().to_string())
        .unwrap_or_else(|_| linux.cgroup_driver.to_string());
    let id = match ctx.run_ctr(sleeper(ctx, "cgroup")).await? {
        Ok(id) => id,
        Err(s) => return Err(format!("container: {:?}: {}", s.code(), s.message())),
    };
    let (_, out, _) = ctx.sh(&id, "cat /proc/self/cgroup").await?;
    let paths: Vec<&str> = out
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .filter(|p| *p != "/")
        .collect();
    if paths.is_empty() {
        return Ok(Outcome::works(format!(
            "cgroup driver {driver}; the container's cgroup paths are namespaced (\"/\"), so only the answer is checked"
        )));
    }
    let slice = paths.iter().any(|p| p.contains(".slice"));
    let consistent = match driver.as_str() {
        "SYSTEMD" => slice,
        "CGROUPFS" => !slice,
        _ => false,
    };
    let sample = paths.first().copied().unwrap_or_default();
    if consistent {
        Ok(Outcome::works(format!(
            "cgroup driver {driver}; container cgroup {sample}"
        )))
    } else {
        Ok(Outcome::new(
            Verdict::AdvertisedButBroken,
            format!("cgroup driver {driver} but the container's cgroup is {sample}"),
        ))
    }
}

// ---- KEP-4191: split image filesystem ------------------------------------------------------------

async fn image_fs(ctx: &Ctx) -> Probe {
    ctx.step("ImageFsInfo");
    let r = ctx
        .cri
        .img
        .clone()
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await;
    let r = match r {
        Ok(r) => r.into_inner(),
        Err(s) => return Ok(Outcome::refused("ImageFsInfo", &s, None)),
    };
    let mp = |v: &[cri::FilesystemUsage]| -> Vec<String> {
        v.iter()
            .map(|f| {
                f.fs_id
                    .as_ref()
                    .map(|i| i.mountpoint.clone())
                    .unwrap_or_default()
            })
            .collect()
    };
    let images = mp(&r.image_filesystems);
    let ctrs = mp(&r.container_filesystems);
    if ctrs.is_empty() {
        return Ok(Outcome::new(
            Verdict::FailsFast,
            format!("container_filesystems empty (documented: image and container storage are one); image filesystems {images:?}"),
        ));
    }
    if ctrs.iter().any(|m| m.is_empty()) {
        return Ok(Outcome::new(
            Verdict::AdvertisedButBroken,
            format!("container_filesystems without mountpoint: {ctrs:?}"),
        ));
    }
    Ok(Outcome::works(format!(
        "image filesystems {images:?}, container filesystems {ctrs:?}"
    )))
}

// ---- KEP-4216: image pull per runtime class ------------------------------------------------------

async fn image_per_handler(ctx: &Ctx) -> Probe {
    let pull = |handler: &str| {
        let mut img = ctx.cri.img.clone();
        let req = cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: ctx.image.clone(),
                runtime_handler: handler.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        };
        async move { img.pull_image(req).await.map(|r| r.into_inner().image_ref) }
    };
    ctx.step("PullImage with an unknown runtime_handler");
    let unknown = "crius-portability-no-such-handler";
    if pull(unknown).await.is_ok() {
        return Ok(Outcome::effect_absent(
            format!("PullImage with runtime_handler {unknown:?} (no such handler) was accepted"),
            None,
        ));
    }
    // The default handler is listed as "" and usually under its own name too, which cannot be
    // told apart from the others: with two or more named handlers at least one is not the
    // default, so pulls for all of them show whether pulls are per handler.
    let named: Vec<String> = ctx
        .status
        .runtime_handlers
        .iter()
        .map(|h| h.name.clone())
        .filter(|n| !n.is_empty())
        .collect();
    if named.len() < 2 {
        return Err(format!(
            "needs two named runtime handlers to show per-handler pulls; the endpoint lists {named:?}"
        ));
    }
    let mut ok = Vec::new();
    for h in &named {
        ctx.step(format!("PullImage with runtime_handler {h}"));
        match pull(h).await {
            Ok(_) => ok.push(h.clone()),
            Err(s) => {
                let mut o = Outcome::refused(
                    &format!("PullImage with runtime_handler {h:?} (a listed handler)"),
                    &s,
                    None,
                );
                if !ok.is_empty() {
                    o.evidence.push_str(&format!(" (accepted for {ok:?})"));
                }
                return Ok(o);
            }
        }
    }
    Ok(Outcome::works(format!(
        "unknown handler refused; pulls for every listed handler {ok:?} accepted"
    )))
}

// ---- KEP-4960: stop signals ------------------------------------------------------------------------

async fn stop_signal(ctx: &Ctx) -> Probe {
    let mut cfg = ctx.ctr_config(
        "stopsig",
        &[
            "sh",
            "-c",
            "trap 'exit 42' USR1; echo ready; while :; do sleep 1; done",
        ],
    );
    cfg.stop_signal = cri::Signal::Sigusr1 as i32;
    let id = match ctx.run_ctr(cfg).await? {
        Ok(id) => id,
        Err(s) => return Ok(Outcome::refused("stop_signal SIGUSR1", &s, None)),
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reported = ctx.ctr_status(&id).await?.stop_signal;
    ctx.step("StopContainer");
    let t0 = Instant::now();
    setup(
        "StopContainer",
        ctx.cri
            .rt
            .clone()
            .stop_container(cri::StopContainerRequest {
                container_id: id.clone(),
                timeout: 6,
            })
            .await,
    )?;
    let took = t0.elapsed();
    let st = ctx.ctr_status(&id).await?;
    let name = cri::Signal::try_from(reported)
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_else(|_| reported.to_string());
    if st.exit_code != 42 {
        return Ok(Outcome::effect_absent(
            format!(
                "stop_signal accepted but the process did not get SIGUSR1: exit code {} after {took:.1?}; status stop_signal {name}",
                st.exit_code
            ),
            None,
        ));
    }
    if reported != cri::Signal::Sigusr1 as i32 {
        return Ok(Outcome::new(
            Verdict::AdvertisedButBroken,
            format!("SIGUSR1 delivered (exit 42) but ContainerStatus.stop_signal is {name}"),
        ));
    }
    Ok(Outcome::works(format!(
        "exit 42 from the USR1 trap after {took:.1?}; ContainerStatus.stop_signal {name}"
    )))
}

// ---- KEP-2400: swap limit; KEP-1287: in-place resize ---------------------------------------------

const CGROUP_MEM: &str = "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null";

async fn swap(ctx: &Ctx) -> Probe {
    let mut cfg = sleeper(ctx, "swap");
    Ctx::with_resources(
        &mut cfg,
        cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 * MI,
            memory_swap_limit_in_bytes: 128 * MI,
            ..Default::default()
        },
    );
    let id = match ctx.run_ctr(cfg).await? {
        Ok(id) => id,
        Err(s) => return Ok(Outcome::refused("memory_swap_limit_in_bytes", &s, None)),
    };
    let (_, out, _) = ctx
        .sh(
            &id,
            "if [ -f /sys/fs/cgroup/memory.swap.max ]; then echo v2 $(cat /sys/fs/cgroup/memory.swap.max); \
             elif [ -f /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes ]; then echo v1 $(cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes); \
             else echo none; fi",
        )
        .await?;
    let mut it = out.split_whitespace();
    let (kind, val) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
    let want = match kind {
        "v2" => 64 * MI,  // memory.swap.max = swap only
        "v1" => 128 * MI, // memsw = memory + swap
        _ => {
            return Err(format!(
                "the container sees no swap accounting file (host without swap accounting?): {out}"
            ))
        }
    };
    if val == want.to_string() {
        Ok(Outcome::works(format!("cgroup {kind} swap limit {val}")))
    } else {
        Ok(Outcome::effect_absent(
            format!("memory_swap_limit_in_bytes accepted but the cgroup {kind} swap limit is {val}, want {want}"),
            None,
        ))
    }
}

async fn update_resources(ctx: &Ctx) -> Probe {
    let mut cfg = sleeper(ctx, "resize");
    Ctx::with_resources(
        &mut cfg,
        cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 * MI,
            ..Default::default()
        },
    );
    let id = match ctx.run_ctr(cfg).await? {
        Ok(id) => id,
        Err(s) => {
            return Err(format!(
                "container with a memory limit: {:?}: {}",
                s.code(),
                s.message()
            ))
        }
    };
    ctx.step("UpdateContainerResources");
    let r = ctx
        .cri
        .rt
        .clone()
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 128 * MI,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    if let Err(s) = r {
        return Ok(Outcome::refused("UpdateContainerResources", &s, None));
    }
    let (_, limit, _) = ctx.sh(&id, CGROUP_MEM).await?;
    let reported = ctx
        .ctr_status(&id)
        .await?
        .resources
        .and_then(|r| r.linux)
        .map(|l| l.memory_limit_in_bytes);
    let want = (128 * MI).to_string();
    if limit != want {
        return Ok(Outcome::effect_absent(
            format!(
                "UpdateContainerResources accepted but the cgroup limit is {limit:?}, want {want}"
            ),
            None,
        ));
    }
    if reported != Some(128 * MI) {
        return Ok(Outcome::new(
            Verdict::AdvertisedButBroken,
            format!(
                "cgroup limit follows ({limit}) but ContainerStatus.resources reports {reported:?}"
            ),
        ));
    }
    Ok(Outcome::works(format!(
        "cgroup limit {limit} and ContainerStatus.resources memory {}",
        128 * MI
    )))
}

// ---- KEP-5419: pod-level resize; KEP-688: pod overhead ---------------------------------------------

fn pod_limits(mem: i64) -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        memory_limit_in_bytes: mem,
        cpu_shares: 256,
        ..Default::default()
    }
}

async fn pod_overhead(ctx: &Ctx) -> Probe {
    let mut pod = ctx.pod_config("overhead", true);
    if let Some(l) = pod.linux.as_mut() {
        l.overhead = Some(pod_limits(32 * MI));
        l.resources = Some(pod_limits(256 * MI));
    }
    match ctx.run_pod(&pod).await {
        Ok(_) => Ok(Outcome::works(
            "pod with overhead and resources accepted (informational for runtimes that do not size a VM; the kubelet sizes the pod cgroup)",
        )),
        Err(s) => Ok(Outcome::refused("pod with linux.overhead/resources", &s, None)),
    }
}

async fn pod_resources_probe(ctx: &Ctx) -> Probe {
    let mut pod = ctx.pod_config("podresize", true);
    if let Some(l) = pod.linux.as_mut() {
        l.resources = Some(pod_limits(256 * MI));
    }
    let id = match ctx.run_pod(&pod).await {
        Ok(id) => id,
        Err(s) => {
            return Err(format!(
                "pod with linux.resources: {:?}: {}",
                s.code(),
                s.message()
            ))
        }
    };
    ctx.step("UpdatePodSandboxResources");
    let r = ctx
        .cri
        .rt
        .clone()
        .update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: id,
            overhead: None,
            resources: Some(pod_limits(512 * MI)),
        })
        .await;
    match r {
        Ok(_) => Ok(Outcome::works(
            "UpdatePodSandboxResources accepted (a best-effort notification: the kubelet resizes the pod cgroup itself)",
        )),
        Err(s) => Ok(Outcome::refused("UpdatePodSandboxResources", &s, None)),
    }
}

// ---- Windows-only features on a Linux runtime ------------------------------------------------------

async fn windows_pod(ctx: &Ctx, host_process: bool) -> Probe {
    let mut pod = ctx.pod_config("windows", true);
    pod.windows = Some(cri::WindowsPodSandboxConfig {
        security_context: Some(cri::WindowsSandboxSecurityContext {
            host_process,
            namespace_options: if host_process {
                None
            } else {
                Some(cri::WindowsNamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                })
            },
            ..Default::default()
        }),
    });
    let what = if host_process {
        "windows.security_context.host_process"
    } else {
        "windows.security_context.namespace_options"
    };
    match ctx.run_pod(&pod).await {
        Ok(_) => Ok(Outcome::effect_absent(
            format!("a Linux runtime accepted a pod with {what}"),
            None,
        )),
        Err(s) => Ok(Outcome::refused(what, &s, None)),
    }
}

async fn windows_affinity(ctx: &Ctx) -> Probe {
    let mut cfg = sleeper(ctx, "affinity");
    cfg.windows = Some(cri::WindowsContainerConfig {
        resources: Some(cri::WindowsContainerResources {
            affinity_cpus: vec![cri::WindowsCpuGroupAffinity {
                cpu_mask: 1,
                cpu_group: 0,
            }],
            ..Default::default()
        }),
        security_context: None,
    });
    match ctx.create_in(None, cfg).await? {
        Ok(_) => Ok(Outcome::effect_absent(
            "a Linux runtime accepted a container with windows.resources.affinity_cpus",
            None,
        )),
        Err(s) => Ok(Outcome::refused(
            "windows.resources.affinity_cpus",
            &s,
            None,
        )),
    }
}

// ---- KEP-2763: ambient capabilities ----------------------------------------------------------------

async fn ambient(ctx: &Ctx) -> Probe {
    let mut cfg = sleeper(ctx, "ambient");
    Ctx::with_security(&mut cfg, |sc| {
        sc.run_as_user = Some(cri::Int64Value { value: 1000 });
        sc.capabilities = Some(cri::Capability {
            add_capabilities: vec!["NET_BIND_SERVICE".into()],
            add_ambient_capabilities: vec!["NET_BIND_SERVICE".into()],
            ..Default::default()
        });
    });
    let id = match ctx.run_ctr(cfg).await? {
        Ok(id) => id,
        Err(s) => return Ok(Outcome::refused("add_ambient_capabilities", &s, None)),
    };
    let (_, out, _) = ctx.sh(&id, "grep CapAmb /proc/self/status").await?;
    let hex = out.split_whitespace().nth(1).unwrap_or("");
    let bits = u64::from_str_radix(hex, 16).unwrap_or(0);
    // CAP_NET_BIND_SERVICE is capability 10.
    if bits & (1 << 10) != 0 {
        Ok(Outcome::works(format!(
            "{out} (NET_BIND_SERVICE ambient for uid 1000)"
        )))
    } else {
        Ok(Outcome::effect_absent(
            format!("add_ambient_capabilities accepted but {out:?}"),
            None,
        ))
    }
}

// ---- KEP-135: seccomp; KEP-24: AppArmor ----------------------------------------------------------

async fn seccomp(ctx: &Ctx) -> Probe {
    let profile = ctx.scratch.join("deny-mkdir.json");
    ctx.ledger.record(Made::File(profile.clone()));
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    )
    .map_err(|e| format!("write {}: {e}", profile.display()))?;
    let mut rd = sleeper(ctx, "seccomp-default");
    Ctx::with_security(&mut rd, |sc| {
        sc.seccomp = Some(cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        })
    });
    if let Err(s) = ctx.run_ctr(rd).await? {
        return Ok(Outcome::refused("seccomp RuntimeDefault", &s, None));
    }
    let mut cfg = sleeper(ctx, "seccomp");
    Ctx::with_security(&mut cfg, |sc| {
        sc.seccomp = Some(cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::Localhost as i32,
            localhost_ref: profile.display().to_string(),
        })
    });
    let id = match ctx.run_ctr(cfg).await? {
        Ok(id) => id,
        Err(s) => return Ok(Outcome::refused("seccomp Localhost profile", &s, None)),
    };
    let (_, out, _) = ctx
        .sh(
            &id,
            "mkdir /tmp/crius-seccomp-probe 2>&1 && echo MADE || echo DENIED",
        )
        .await?;
    if out.contains("MADE") {
        Ok(Outcome::effect_absent(
            format!("Localhost profile denying mkdir accepted, but mkdir worked: {out}"),
            None,
        ))
    } else {
        Ok(Outcome::works(format!(
            "RuntimeDefault accepted; the Localhost profile denies mkdir: {out}"
        )))
    }
}

fn host_has_apparmor() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false)
}

async fn apparmor(ctx: &Ctx) -> Probe {
    let prof = |t: cri::security_profile::ProfileType, r: &str| {
        let mut cfg = sleeper(ctx, "apparmor");
        let r = r.to_string();
        Ctx::with_security(&mut cfg, move |sc| {
            sc.apparmor = Some(cri::SecurityProfile {
                profile_type: t as i32,
                localhost_ref: r,
            })
        });
        cfg
    };
    use cri::security_profile::ProfileType as P;
    let rd = match ctx.run_ctr(prof(P::RuntimeDefault, "")).await? {
        Ok(id) => id,
        Err(s) => return Ok(Outcome::refused("apparmor RuntimeDefault", &s, None)),
    };
    let missing = "crius-portability-no-such-profile";
    let loc = ctx.run_ctr(prof(P::Localhost, missing)).await?;
    if loc.is_ok() {
        return Ok(Outcome::effect_absent(
            format!("apparmor Localhost {missing:?} (not loaded) was accepted"),
            None,
        ));
    }
    if !host_has_apparmor() {
        return Ok(Outcome::works(
            "host without AppArmor: RuntimeDefault accepted (runs unconfined) and a Localhost profile is refused",
        ));
    }
    let (_, out, _) = ctx
        .sh(
            &rd,
            "cat /proc/self/attr/apparmor/current 2>/dev/null || cat /proc/self/attr/current",
        )
        .await?;
    if out.trim() == "unconfined" || out.is_empty() {
        Ok(Outcome::effect_absent(
            format!("apparmor RuntimeDefault accepted but the process is {out:?}"),
            None,
        ))
    } else {
        Ok(Outcome::works(format!(
            "RuntimeDefault confines ({out}); an unloaded Localhost profile is refused"
        )))
    }
}

// ---- KEP-4381 / KEP-4009: CDI --------------------------------------------------------------------

async fn cdi(ctx: &Ctx) -> Probe {
    let dir = &ctx.opts.cdi_dir;
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        ctx.ledger.record(Made::Dir(dir.clone()));
    }
    let n = ctx.seq.fetch_add(1, Ordering::Relaxed);
    let class = format!("probe{}x{n}", ctx.run_id);
    let kind = format!("crius-portability.example/{class}");
    let token = format!("{}-{n}", ctx.run_id);
    let spec = dir.join(format!("crius-portability-{class}.json"));
    ctx.ledger.record(Made::File(spec.clone()));
    let text = serde_json::json!({
        "cdiVersion": "0.6.0",
        "kind": kind,
        "devices": [{"name": "dev0", "containerEdits": {"env": [format!("CRIUS_PORTABILITY_CDI={token}")]}}],
    });
    std::fs::write(&spec, text.to_string())
        .map_err(|e| format!("write {}: {e}", spec.display()))?;
    let mut cfg = sleeper(ctx, "cdi");
    cfg.cdi_devices = vec![cri::CdiDevice {
        name: format!("{kind}=dev0"),
    }];
    let id = match ctx.run_ctr(cfg).await? {
        Ok(id) => id,
        Err(s) => return Ok(Outcome::refused("CDI_devices", &s, None)),
    };
    let (_, out, _) = ctx
        .sh(
            &id,
            "cat /proc/1/environ | tr '\\0' '\\n' | grep CRIUS_PORTABILITY_CDI",
        )
        .await?;
    if out.contains(&token) {
        Ok(Outcome::works(format!(
            "the CDI spec's env edit is inside: {out}"
        )))
    } else {
        Ok(Outcome::effect_absent(
            format!("CDI_devices {kind}=dev0 accepted but its env edit is not in the container (spec in {})", dir.display()),
            None,
        ))
    }
}

// ---- KEP-5825: list streaming --------------------------------------------------------------------

async fn list_streaming(ctx: &Ctx) -> Probe {
    let mut rt = ctx.cri.rt.clone();
    let mut img = ctx.cri.img.clone();
    let mut notes = Vec::new();

    async fn drain<T>(
        s: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>,
    ) -> Result<Vec<T>, tonic::Status> {
        let mut s = s?.into_inner();
        let mut out = Vec::new();
        while let Some(m) = s.message().await? {
            out.push(m);
        }
        Ok(out)
    }
    // Lists may change while we look (other clients): the streamed set must lie between the
    // intersection and the union of a unary list before and after.
    fn judge(
        name: &str,
        before: BTreeSet<String>,
        streamed: BTreeSet<String>,
        after: BTreeSet<String>,
    ) -> Result<String, String> {
        let lo: BTreeSet<_> = before.intersection(&after).cloned().collect();
        let hi: BTreeSet<_> = before.union(&after).cloned().collect();
        if lo.is_subset(&streamed) && streamed.is_subset(&hi) {
            Ok(format!("{name}: {} items as listed", streamed.len()))
        } else {
            Err(format!(
                "{name} streamed {} items, unary lists {}/{}",
                streamed.len(),
                before.len(),
                after.len()
            ))
        }
    }

    ctx.step("StreamPodSandboxes");
    let list = |rt: &mut cri::runtime_service_client::RuntimeServiceClient<_>| {
        let mut rt = rt.clone();
        async move {
            rt.list_pod_sandbox(cri::ListPodSandboxRequest::default())
                .await
                .map(|r| {
                    r.into_inner()
                        .items
                        .into_iter()
                        .map(|p| p.id)
                        .collect::<BTreeSet<_>>()
                })
        }
    };
    let before = setup("ListPodSandbox", list(&mut rt).await)?;
    let streamed = match drain(
        rt.stream_pod_sandboxes(cri::StreamPodSandboxesRequest::default())
            .await,
    )
    .await
    {
        Ok(v) => v
            .into_iter()
            .flat_map(|m| m.pod_sandboxes)
            .map(|p| p.id)
            .collect(),
        Err(s) => return Ok(Outcome::refused("StreamPodSandboxes", &s, None)),
    };
    let after = setup("ListPodSandbox", list(&mut rt).await)?;
    let mut bad = Vec::new();
    match judge("StreamPodSandboxes", before, streamed, after) {
        Ok(n) => notes.push(n),
        Err(e) => bad.push(e),
    }

    ctx.step("StreamContainers");
    let listc = |rt: &mut cri::runtime_service_client::RuntimeServiceClient<_>| {
        let mut rt = rt.clone();
        async move {
            rt.list_containers(cri::ListContainersRequest::default())
                .await
                .map(|r| {
                    r.into_inner()
                        .containers
                        .into_iter()
                        .map(|c| c.id)
                        .collect::<BTreeSet<_>>()
                })
        }
    };
    let before = setup("ListContainers", listc(&mut rt).await)?;
    let streamed = match drain(
        rt.stream_containers(cri::StreamContainersRequest::default())
            .await,
    )
    .await
    {
        Ok(v) => v
            .into_iter()
            .flat_map(|m| m.containers)
            .map(|c| c.id)
            .collect(),
        Err(s) => return Ok(Outcome::refused("StreamContainers", &s, None)),
    };
    let after = setup("ListContainers", listc(&mut rt).await)?;
    match judge("StreamContainers", before, streamed, after) {
        Ok(n) => notes.push(n),
        Err(e) => bad.push(e),
    }

    ctx.step("StreamImages");
    let before: BTreeSet<String> = setup(
        "ListImages",
        img.list_images(cri::ListImagesRequest::default()).await,
    )?
    .into_inner()
    .images
    .into_iter()
    .map(|i| i.id)
    .collect();
    let streamed = match drain(img.stream_images(cri::StreamImagesRequest::default()).await).await {
        Ok(v) => v.into_iter().flat_map(|m| m.images).map(|i| i.id).collect(),
        Err(s) => return Ok(Outcome::refused("StreamImages", &s, None)),
    };
    let after: BTreeSet<String> = setup(
        "ListImages",
        img.list_images(cri::ListImagesRequest::default()).await,
    )?
    .into_inner()
    .images
    .into_iter()
    .map(|i| i.id)
    .collect();
    match judge("StreamImages", before, streamed, after) {
        Ok(n) => notes.push(n),
        Err(e) => bad.push(e),
    }
    if !bad.is_empty() {
        return Ok(Outcome::new(
            Verdict::AdvertisedButBroken,
            format!("{}; ok: {}", bad.join("; "), notes.join("; ")),
        ));
    }
    // The other Stream* RPCs are reported, not judged (the KEP's probe names the three above).
    let mut extra = Vec::new();
    let r = drain(
        rt.stream_container_stats(cri::StreamContainerStatsRequest::default())
            .await,
    )
    .await;
    extra.push(format!(
        "StreamContainerStats {}",
        if r.is_ok() { "ok" } else { "refused" }
    ));
    let r = drain(
        rt.stream_pod_sandbox_stats(cri::StreamPodSandboxStatsRequest::default())
            .await,
    )
    .await;
    extra.push(format!(
        "StreamPodSandboxStats {}",
        if r.is_ok() { "ok" } else { "refused" }
    ));
    let r = drain(
        rt.stream_pod_sandbox_metrics(cri::StreamPodSandboxMetricsRequest::default())
            .await,
    )
    .await;
    extra.push(format!(
        "StreamPodSandboxMetrics {}",
        if r.is_ok() { "ok" } else { "refused" }
    ));
    Ok(Outcome::works(format!(
        "{}; also {}",
        notes.join("; "),
        extra.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dataset_kep_has_a_probe() {
        let d = crate::dataset::Dataset::embedded().unwrap();
        for f in &d.features {
            assert!(
                PROBES.iter().any(|(k, _)| *k == f.kep),
                "KEP-{} has no probe",
                f.kep
            );
        }
        let mut keps: Vec<_> = PROBES.iter().map(|p| p.0).collect();
        keps.dedup();
        assert_eq!(keps.len(), PROBES.len(), "PROBES sorted, no duplicates");
    }

    #[test]
    fn picks_a_user_with_an_extra_group() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\ncrius:x:1000:1000::/home/crius:/bin/sh\n";
        let group = "root:x:0:\nwheel:x:10:root\nextra:x:2000:crius\n";
        // root is in wheel (10), which is not its primary group: first match wins.
        assert_eq!(user_with_extra_group(passwd, group), Some((0, 0, 10)));
        let group = "root:x:0:root\ncrius:x:1000:crius\nextra:x:2000:ghost,crius\n";
        assert_eq!(
            user_with_extra_group(passwd, group),
            Some((1000, 1000, 2000))
        );
        assert_eq!(user_with_extra_group(passwd, "root:x:0:\n"), None);
    }

    #[test]
    fn uid_map_parsing() {
        assert_eq!(
            uid_map_tokens("         0     524288      65536\n"),
            vec![vec![0, 524288, 65536]]
        );
    }
}
