//! CRI → OCI translation: turns a CRI `ContainerConfig` (plus its pod, image defaults and host
//! facts) into an OCI runtime `Spec`, and translates resources, users and stop signals.
//!
//! Pure library: the only files it reads are `/etc/passwd` and `/etc/group` inside a given
//! rootfs (resolved without leaving it), localhost seccomp profiles, and `stat` of device
//! paths named by the request. It never mounts, creates or writes anything.
//!
//! # CRI field coverage (`ContainerConfig`)
//!
//! | field | where |
//! |---|---|
//! | `metadata.name` | annotation `io.kubernetes.cri.container-name` |
//! | `image.image` / `user_specified_image` | annotation `io.kubernetes.cri.image-name` |
//! | `image.annotations`, `image.runtime_handler`, `image.image_ref` | daemon (image resolution) |
//! | `command`, `args` | `process.args`, merged with image entrypoint/cmd like the kubelet/containerd |
//! | `working_dir` | `process.cwd` (else image WorkingDir, else `/`) |
//! | `envs` | `process.env` (override image env by key) |
//! | `mounts[i]` | `mounts` (see [`mounts`]): `selinux_relabel` ignored without SELinux (the daemon relabels with it); `recursive_read_only` needs [`HandlerCaps::rro`]; `uidMappings`/`gidMappings` need [`HandlerCaps::idmap`]; `image`/`image_sub_path` → Unsupported here (the daemon mounts image volumes and passes them as read-only binds) |
//! | `devices[i]` | `linux.devices` + device cgroup rules |
//! | `labels`, `annotations` | daemon (stored, reported); not put in the OCI spec |
//! | `log_path`, `stdin`, `stdin_once` | daemon / monitor |
//! | `tty` | `process.terminal` |
//! | `linux.resources` | [`linux_resources`], [`oom_score_adj`] |
//! | `linux.security_context` | see below |
//! | `windows` | Unsupported when set |
//! | `CDI_devices` | Unsupported when non-empty (the daemon resolves CDI devices and edits the spec itself) |
//! | `stop_signal` | [`stop_signal`] (daemon uses it on StopContainer) |
//!
//! # `LinuxContainerSecurityContext`
//!
//! | field | where |
//! |---|---|
//! | `capabilities` | [`caps`]: add/drop/ambient, `ALL`, bounding-set rule |
//! | `privileged` | caps = bounding set, all host devices, `/sys` rw, no masked/readonly paths, seccomp/apparmor unconfined; needs the sandbox to be privileged |
//! | `namespace_options` | `linux.namespaces`: network POD/NODE (CONTAINER → Unsupported), ipc POD/NODE/CONTAINER, pid POD/NODE/CONTAINER/TARGET; `userns_options`: POD joins the pod's user namespace (see `userns`), NODE none, CONTAINER → Unsupported, TARGET → Invalid. UTS follows the pod (no CRI field); mount ns always new; cgroup ns new on v2 only |
//! | `selinux_options` | ignored when the host has no SELinux or the daemon runs with `selinux = false` (as containerd); otherwise checked for form here and applied by the daemon (process and mount labels) |
//! | `run_as_user`, `run_as_group`, `run_as_username` | `process.user` via [`resolve_user`]; the name wins over the uid; a group without a user is Invalid |
//! | `readonly_rootfs` | `root.readonly` (+ `/etc/hosts` etc. mounted ro) |
//! | `supplemental_groups`, `supplemental_groups_policy` | `process.user.additionalGids` (Merge / Strict) |
//! | `no_new_privs` | `process.noNewPrivileges` |
//! | `masked_paths`, `readonly_paths` | `linux.maskedPaths` / `linux.readonlyPaths` (containerd defaults if empty; empty when privileged) |
//! | `seccomp`, `seccomp_profile_path` (deprecated) | `linux.seccomp` ([`seccomp`]) |
//! | `apparmor`, `apparmor_profile` (deprecated) | `process.apparmorProfile`; without AppArmor: Unconfined/RuntimeDefault skipped, Localhost → Unsupported; with AppArmor RuntimeDefault is [`DEFAULT_APPARMOR_PROFILE`], which the daemon must have loaded |
//!
//! # `LinuxContainerResources` ([`linux_resources`])
//!
//! `cpu_period`, `cpu_quota` (-1 = unlimited), `cpu_shares`, `cpuset_cpus`, `cpuset_mems`,
//! `memory_limit_in_bytes`, `memory_swap_limit_in_bytes` (-1 = unlimited; must be ≥ the limit),
//! `hugepage_limits` (`2MB`, `1GB`, ...), `unified` (cgroup v2 only) → `linux.resources`;
//! `oom_score_adj` → `process.oomScoreAdj` via [`oom_score_adj`]. Zero means unset.
//!
//! # `PodSandboxConfig` ([`validate_sandbox_config`], [`pause_spec`])
//!
//! | field | where |
//! |---|---|
//! | `metadata` | annotations `io.kubernetes.cri.sandbox-{name,namespace,uid}` |
//! | `hostname` | daemon → [`PodContext::hostname`] → `hostname` / `HOSTNAME` |
//! | `log_directory`, `dns_config`, `port_mappings`, `labels`, `annotations` | daemon |
//! | `linux.cgroup_parent` | daemon → [`PodContext::cgroup_parent`] → `cgroupsPath` (`..` refused) |
//! | `linux.sysctls` | daemon → [`PodContext::sysctls`]; validated against the pod's namespaces |
//! | `linux.overhead`, `linux.resources` | validated like container resources (the daemon sizes the pod cgroup) |
//! | `linux.security_context.namespace_options` | network/ipc: POD or NODE; pid: POD, CONTAINER or NODE (TARGET invalid); userns POD with one uid and one gid range mapping container id 0 (`pod_userns`) |
//! | `linux.security_context.run_as_user`, `run_as_group`, `supplemental_groups` | pause process user (numeric; no rootfs lookup) |
//! | `linux.security_context.privileged` | pause caps/devices; allows privileged containers |
//! | `linux.security_context.seccomp`, `seccomp_profile_path`, `apparmor` | pause process profiles |
//! | `linux.security_context.selinux_options` | as for containers |
//! | `linux.security_context.readonly_rootfs` | the pause rootfs is always read-only |
//! | `linux.security_context.supplemental_groups_policy` | validated; pause has no passwd to merge from |
//! | `windows` | Unsupported when set |
//!
//! # Choices worth knowing
//! - Rlimits: none are set; the container inherits the runtime's (and thus the daemon's)
//!   limits, as containerd's CRI plugin does.
//! - cgroupsPath: `<cgroup_parent>/crius-<id>` (cgroupfs style); an empty parent becomes `/crius`.
//! - OOM score: lowered requests are clamped to the daemon's own score without
//!   CAP_SYS_RESOURCE (see [`oom_score_adj`]).
//! - SELinux relabel on a host without SELinux is skipped, as CRI-O and containerd do: there
//!   is no label to apply, and failing would break every kubelet-made pod on such hosts.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

pub mod caps;
mod container;
pub mod devices;
mod host;
pub mod mounts;
mod namespaces;
mod resources;
pub mod seccomp;
mod signal;
mod user;
mod userns;

pub use container::{
    container_spec, pause_spec, validate_sandbox_config, DEFAULT_APPARMOR_PROFILE, DEFAULT_PATH,
    SANDBOX_OOM_SCORE_ADJ,
};
pub use host::{cap_names_from_mask, CAP_NAMES};
pub use resources::{linux_resources, oom_score_adj};
pub use seccomp::default_seccomp_profile;
pub use signal::{parse_signal, stop_signal, SIGTERM};
pub use user::{read_rootfs_file, resolve_in_rootfs, resolve_user, ResolvedUser};
pub use userns::{pod_userns, IdMap, PodUserns};

/// Annotation keys set on every spec (same names as containerd's CRI plugin, so tools that
/// read them keep working).
pub mod annotations {
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
    pub const TYPE_CONTAINER: &str = "container";
    pub const TYPE_SANDBOX: &str = "sandbox";
}

/// What the image config contributes to a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    pub user: String,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub stop_signal: String,
}

/// Pod-level state the daemon prepared when it ran the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodContext {
    pub sandbox_id: String,
    pub hostname: String,
    /// None => host network.
    pub net_ns: Option<PathBuf>,
    /// None => host IPC.
    pub ipc_ns: Option<PathBuf>,
    /// None => host UTS (host network pods).
    pub uts_ns: Option<PathBuf>,
    /// Some => join the pod's pid namespace (POD mode: the pause process's ns).
    pub pid_ns: Option<PathBuf>,
    pub host_pid: bool,
    pub resolv_conf: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    pub hostname_file: Option<PathBuf>,
    /// The pod's /dev/shm (a tmpfs mounted by the daemon); None with host IPC.
    pub shm: Option<PathBuf>,
    /// From `LinuxPodSandboxConfig.cgroup_parent` (cgroupfs path).
    pub cgroup_parent: String,
    /// Pod-level sysctls; they apply to every container of the pod.
    pub sysctls: BTreeMap<String, String>,
    /// The pod's own user namespace (userns_options POD): every container joins it.
    pub userns: Option<UsernsContext>,
}

/// A pod's pinned user namespace and its mappings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernsContext {
    /// The pinned `/proc/<pid>/ns/user`.
    pub path: PathBuf,
    pub map: PodUserns,
}

/// Facts about the host and the daemon process, probed once by the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// `CAP_CHOWN`, ... : the daemon's current bounding set.
    pub bounding_caps: Vec<String>,
    pub cgroup_v2: bool,
    pub has_cap_sys_resource: bool,
    pub seccomp: bool,
    pub current_oom_score_adj: i32,
    pub apparmor: bool,
    pub selinux: bool,
}

/// What a container's spec may ask of its runtime handler: what the handler does itself (its
/// `features` output) plus what the daemon prepares host-side for it (the daemon rewrites such
/// mounts into plain binds of prepared copies before the handler sees the spec).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandlerCaps {
    /// Recursive read-only mounts (`rro` mount option).
    pub rro: bool,
    /// ID-mapped mounts (`uidMappings`/`gidMappings` on a mount).
    pub idmap: bool,
    /// The handler takes `linux.rootfsPropagation` only as the runtime-spec's plain values
    /// (`shared`, `slave`, `private`, `unbindable`) and applies them recursively: youki 0.7.0
    /// refuses `rshared`/`rslave` ("unknown rootfs propagation"), which runc and crun need for
    /// the recursive form.
    pub plain_rootfs_propagation: bool,
}

/// Everything `container_spec` needs.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    pub container_id: &'a str,
    pub config: &'a cri_api::v1::ContainerConfig,
    pub sandbox: &'a cri_api::v1::PodSandboxConfig,
    pub image: &'a ImageDefaults,
    pub rootfs: &'a std::path::Path,
    pub pod: &'a PodContext,
    pub host: &'a HostInfo,
    /// For `NamespaceMode::TARGET`: `/proc/<target init pid>/ns/pid`.
    pub target_pid_ns: Option<PathBuf>,
    /// Base directory for relative localhost seccomp profiles.
    pub seccomp_profile_root: &'a std::path::Path,
    pub handler: HandlerCaps,
}

/// Why a CRI request cannot be turned into a spec. `field` is a CRI field path so the daemon
/// can pass the message to the kubelet as is: relative to `ContainerConfig` for container
/// fields (`mounts[2].host_path`, `CDI_devices`), to `ContainerConfig.linux` for
/// `security_context.*` and `resources.*`, and to `PodSandboxConfig` in
/// [`validate_sandbox_config`] (`linux.security_context.namespace_options.pid`).
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The request is wrong (gRPC InvalidArgument).
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The request is fine but crius or this host cannot do it (gRPC Unimplemented or
    /// FailedPrecondition).
    #[error("unsupported {field}: {reason}")]
    Unsupported { field: String, reason: String },
    /// The user or group cannot be resolved in the image.
    #[error("user {user:?}: {reason}")]
    User { user: String, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl SpecError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError::Unsupported {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The CRI field the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            SpecError::Invalid { field, .. } | SpecError::Unsupported { field, .. } => Some(field),
            _ => None,
        }
    }
}
