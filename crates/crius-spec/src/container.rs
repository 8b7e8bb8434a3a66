//! Assembly of the OCI spec of a container (`container_spec`) and of a pod's pause process
//! (`pause_spec`), and the sandbox-level validation the daemon runs before RunPodSandbox.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use cri_api::v1::{
    security_profile::ProfileType, ContainerConfig, LinuxContainerConfig,
    LinuxContainerSecurityContext, NamespaceMode, PodSandboxConfig, SecurityProfile,
    SupplementalGroupsPolicy,
};
use oci_spec::runtime::{
    LinuxCapabilities, LinuxDevice, LinuxSeccomp, Mount, Process, Root, Spec, User,
};

use crate::caps::{compute_caps, oci_caps, CapRequest, CapSets};
use crate::devices::{allow_all_rule, cri_devices, default_device_rules, host_devices};
use crate::mounts::{
    cri_mounts, default_mounts, merge, pod_file_mounts, RootfsPropagation, Shm,
    DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS,
};
use crate::namespaces::{container_namespaces, validate_sysctls};
use crate::resources::clamp_oom;
use crate::seccomp::{default_seccomp_profile_for, load_profile, localhost_profile_path};
use crate::{
    annotations as ann, linux_resources, oom_score_adj, resolve_user, HostInfo, PodContext,
    SpecError, SpecInput,
};

/// The PATH a container gets when neither the image nor the request sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// OOM score the pause process asks for (containerd's value); clamped like any other.
pub const SANDBOX_OOM_SCORE_ADJ: i32 = -998;

/// Name of the AppArmor profile used for RuntimeDefault on AppArmor hosts. crius does not load
/// it: the daemon (or the host's packaging) must.
pub const DEFAULT_APPARMOR_PROFILE: &str = "crius-default";

/// Builds the OCI spec for CreateContainer. See the crate docs for the field coverage.
pub fn container_spec(input: &SpecInput) -> Result<Spec, SpecError> {
    let cfg = input.config;
    let default_linux = LinuxContainerConfig::default();
    let linux = cfg.linux.as_ref().unwrap_or(&default_linux);
    let default_sc = LinuxContainerSecurityContext::default();
    let sc = linux.security_context.as_ref().unwrap_or(&default_sc);
    let host = input.host;
    let pod = input.pod;

    reject_unimplemented(cfg, sc, host)?;

    let sandbox_privileged = input
        .sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.privileged);
    if sc.privileged && !sandbox_privileged {
        return Err(SpecError::invalid(
            "security_context.privileged",
            "a privileged container needs a privileged sandbox",
        ));
    }
    let privileged = sc.privileged;
    if privileged && pod.userns.is_some() {
        return Err(SpecError::invalid(
            "security_context.privileged",
            "a privileged container cannot run in a pod with its own user namespace",
        ));
    }

    // Process.
    let args = merge_args(cfg, input.image)?;
    let env = merge_env(&pod.hostname, &input.image.env, cfg);
    let cwd = working_dir(cfg, input.image)?;
    let user = container_user(input.rootfs, sc, &input.image.user)?;

    let empty: Vec<String> = Vec::new();
    let capability = sc.capabilities.as_ref();
    let cap_sets = compute_caps(
        &CapRequest {
            add: capability.map(|c| &c.add_capabilities).unwrap_or(&empty),
            drop: capability.map(|c| &c.drop_capabilities).unwrap_or(&empty),
            ambient: capability
                .map(|c| &c.add_ambient_capabilities)
                .unwrap_or(&empty),
            privileged,
        },
        &host.bounding_caps,
    )?;

    let mut process = Process::default();
    process.set_terminal(Some(cfg.tty));
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(cwd);
    process.set_user(user);
    process.set_capabilities(Some(oci_caps(&cap_sets)));
    // Only `true` is written: `false` is the OCI default, and youki 0.7.0 takes a present
    // `noNewPrivileges` (even `false`) as set, so it loads the seccomp filter after dropping
    // capabilities without no_new_privs, which the kernel refuses ("failed to load seccomp context").
    process.set_no_new_privileges(sc.no_new_privs.then_some(true));
    // Rlimits are inherited from the runtime (see the crate docs).
    process.set_rlimits(None);
    process.set_apparmor_profile(apparmor_profile(sc, host, privileged)?);
    process.set_selinux_label(None);

    // Namespaces and what depends on them.
    let plan = container_namespaces(
        sc.namespace_options.as_ref(),
        pod,
        host,
        input.target_pid_ns.as_deref(),
    )?;
    validate_sysctls(
        &pod.sysctls,
        plan.private_net,
        plan.private_ipc,
        plan.private_uts,
    )?;

    // Mounts.
    // The pod's /dev/shm goes with the pod's IPC namespace; a container-private IPC
    // namespace gets a private tmpfs, host IPC the host's /dev/shm.
    let shm = match (&pod.shm, plan.private_ipc, plan.ipc_from_pod) {
        (_, false, _) => Shm::Host,
        (Some(p), true, true) => Shm::Pod(p),
        _ => Shm::Private,
    };
    let mut base = default_mounts(privileged, shm);
    base.extend(pod_file_mounts(pod, &cfg.mounts, sc.readonly_rootfs));
    let (mut cri, propagation) = cri_mounts(&cfg.mounts, input.handler, host)?;
    // Parents before children, whatever order the kubelet used.
    cri.sort_by_key(|m| m.destination().components().count());
    let mounts = merge(base, cri);

    // Devices.
    let (mut nodes, cri_rules) = cri_devices(&cfg.devices)?;
    let mut rules = if privileged {
        let mut all = host_devices()?;
        all.retain(|d| !nodes.iter().any(|n: &LinuxDevice| n.path() == d.path()));
        nodes.extend(all);
        allow_all_rule()
    } else {
        default_device_rules()
    };
    rules.extend(cri_rules);

    // Resources.
    let (mut resources, oom) = match &linux.resources {
        Some(r) => (linux_resources(r, host)?, Some(oom_score_adj(r, host)?)),
        None => (oci_spec::runtime::LinuxResources::default(), None),
    };
    resources.set_devices(Some(rules));
    process.set_oom_score_adj(oom);

    let seccomp = container_seccomp(sc, host, privileged, &cap_sets, input.seccomp_profile_root)?;

    let mut oci_linux = oci_spec::runtime::Linux::default();
    let (uid_maps, gid_maps) = match &pod.userns {
        Some(u) => (
            Some(crate::userns::oci_maps(&u.map.uids)),
            Some(crate::userns::oci_maps(&u.map.gids)),
        ),
        None => (None, None),
    };
    oci_linux.set_uid_mappings(uid_maps);
    oci_linux.set_gid_mappings(gid_maps);
    oci_linux.set_namespaces(Some(plan.namespaces));
    oci_linux.set_devices(Some(nodes));
    oci_linux.set_resources(Some(resources));
    oci_linux.set_cgroups_path(Some(cgroups_path(&pod.cgroup_parent, input.container_id)?));
    oci_linux.set_seccomp(seccomp);
    let plain = input.handler.plain_rootfs_propagation;
    oci_linux.set_rootfs_propagation(match propagation {
        RootfsPropagation::Private => None,
        RootfsPropagation::Slave if plain => Some("slave".into()),
        RootfsPropagation::Slave => Some("rslave".into()),
        RootfsPropagation::Shared if plain => Some("shared".into()),
        RootfsPropagation::Shared => Some("rshared".into()),
    });
    let (masked, readonly) = if privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            or_default(&sc.masked_paths, &DEFAULT_MASKED_PATHS),
            or_default(&sc.readonly_paths, &DEFAULT_READONLY_PATHS),
        )
    };
    oci_linux.set_masked_paths(Some(masked));
    oci_linux.set_readonly_paths(Some(readonly));
    oci_linux.set_sysctl(sysctl_map(&pod.sysctls));
    oci_linux.set_mount_label(None);

    let mut annotations = sandbox_annotations(input.sandbox, &pod.sandbox_id);
    annotations.insert(ann::CONTAINER_TYPE.into(), ann::TYPE_CONTAINER.into());
    if let Some(m) = &cfg.metadata {
        annotations.insert(ann::CONTAINER_NAME.into(), m.name.clone());
    }
    if let Some(img) = &cfg.image {
        let name = if img.user_specified_image.is_empty() {
            &img.image
        } else {
            &img.user_specified_image
        };
        annotations.insert(ann::IMAGE_NAME.into(), name.clone());
    }

    let mut root = Root::default();
    root.set_path(input.rootfs.to_path_buf());
    root.set_readonly(Some(sc.readonly_rootfs));

    let mut spec = Spec::default();
    spec.set_root(Some(root));
    spec.set_mounts(Some(mounts));
    spec.set_process(Some(process));
    // The hostname can only be set inside a UTS namespace; host-UTS pods keep the node's.
    spec.set_hostname(plan.private_uts.then(|| pod.hostname.clone()));
    spec.set_annotations(Some(annotations));
    spec.set_linux(Some(oci_linux));
    spec.set_hooks(None);
    Ok(spec)
}

/// Fields crius does not implement: fail fast naming them instead of ignoring them.
fn reject_unimplemented(
    cfg: &ContainerConfig,
    sc: &LinuxContainerSecurityContext,
    host: &HostInfo,
) -> Result<(), SpecError> {
    if cfg.windows.is_some() {
        return Err(SpecError::unsupported(
            "windows",
            "Windows container config on a Linux runtime",
        ));
    }
    if !cfg.cdi_devices.is_empty() {
        return Err(SpecError::unsupported(
            "CDI_devices",
            "CDI device injection is not implemented",
        ));
    }
    check_selinux(
        "security_context.selinux_options",
        sc.selinux_options.as_ref(),
        host,
    )?;
    if sc.run_as_group.is_some() && sc.run_as_user.is_none() && sc.run_as_username.is_empty() {
        return Err(SpecError::invalid(
            "security_context.run_as_group",
            "run_as_group is set without run_as_user or run_as_username",
        ));
    }
    Ok(())
}

/// Without SELinux on the host (or with the daemon's `selinux = false`, which hides it from
/// [`HostInfo::selinux`]) a label has nothing to apply to and is ignored, as containerd does. With it,
/// the daemon applies the labels after spec generation (crius::selinux_labels); here only their form
/// is checked: user, role and type are single names, the level has no blanks.
fn check_selinux(
    field: &str,
    opt: Option<&cri_api::v1::SeLinuxOption>,
    host: &HostInfo,
) -> Result<(), SpecError> {
    let Some(o) = opt.filter(|_| host.selinux) else {
        return Ok(());
    };
    for (name, v) in [("user", &o.user), ("role", &o.role), ("type", &o.r#type)] {
        if v.contains(':') || v.contains(char::is_whitespace) {
            return Err(SpecError::invalid(
                format!("{field}.{name}"),
                format!("{v:?} is not an SELinux {name}"),
            ));
        }
    }
    if o.level.contains(char::is_whitespace) {
        return Err(SpecError::invalid(
            format!("{field}.level"),
            format!("{:?} is not an SELinux level", o.level),
        ));
    }
    Ok(())
}

/// Kubernetes semantics: `command` replaces the image entrypoint and drops the image cmd;
/// `args` replace the image cmd.
fn merge_args(
    cfg: &ContainerConfig,
    image: &crate::ImageDefaults,
) -> Result<Vec<String>, SpecError> {
    let args = if !cfg.command.is_empty() {
        cfg.command
            .iter()
            .chain(&cfg.args)
            .cloned()
            .collect::<Vec<_>>()
    } else {
        let tail = if cfg.args.is_empty() {
            &image.cmd
        } else {
            &cfg.args
        };
        image.entrypoint.iter().chain(tail).cloned().collect()
    };
    if args.is_empty() {
        return Err(SpecError::invalid(
            "command",
            "no command: neither the request nor the image sets an entrypoint, cmd, command or args",
        ));
    }
    Ok(args)
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map(|(k, _)| k).unwrap_or(entry)
}

/// HOSTNAME first (so the image or the request may override it), then the image env, then the
/// CRI envs replacing same-named entries in place; PATH is added when nobody set it.
fn merge_env(hostname: &str, image_env: &[String], cfg: &ContainerConfig) -> Vec<String> {
    let mut env: Vec<String> = Vec::with_capacity(image_env.len() + cfg.envs.len() + 2);
    let mut put = |entry: String| {
        let key = env_key(&entry).to_string();
        match env.iter().position(|e| env_key(e) == key) {
            Some(i) => env[i] = entry,
            None => env.push(entry),
        }
    };
    put(format!("HOSTNAME={hostname}"));
    for e in image_env {
        put(e.clone());
    }
    for kv in &cfg.envs {
        put(format!("{}={}", kv.key, kv.value));
    }
    if !env.iter().any(|e| env_key(e) == "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    env
}

fn working_dir(cfg: &ContainerConfig, image: &crate::ImageDefaults) -> Result<PathBuf, SpecError> {
    if !cfg.working_dir.is_empty() {
        if !cfg.working_dir.starts_with('/') {
            return Err(SpecError::invalid(
                "working_dir",
                format!("{:?} must be absolute", cfg.working_dir),
            ));
        }
        return Ok(PathBuf::from(&cfg.working_dir));
    }
    if !image.working_dir.is_empty() {
        // Docker resolves a relative WorkingDir against /.
        return Ok(Path::new("/").join(&image.working_dir));
    }
    Ok(PathBuf::from("/"))
}

fn int64_id(field: &str, v: i64) -> Result<u32, SpecError> {
    u32::try_from(v).map_err(|_| SpecError::invalid(field, format!("{v} is not a valid id")))
}

/// The process identity: run_as_username, else run_as_user, else the image USER; run_as_group
/// overrides the primary group; supplemental groups per `supplemental_groups_policy`.
fn container_user(
    rootfs: &Path,
    sc: &LinuxContainerSecurityContext,
    image_user: &str,
) -> Result<User, SpecError> {
    // A user name wins over a uid when both are given (the CRI contract, as containerd reads it).
    let spec = if !sc.run_as_username.is_empty() {
        if sc.run_as_username.contains(':') {
            return Err(SpecError::invalid(
                "security_context.run_as_username",
                format!("{:?} must be a plain user name", sc.run_as_username),
            ));
        }
        sc.run_as_username.clone()
    } else if let Some(u) = &sc.run_as_user {
        int64_id("security_context.run_as_user", u.value)?.to_string()
    } else {
        image_user.to_string()
    };
    let resolved = resolve_user(rootfs, &spec)?;
    let gid = match &sc.run_as_group {
        Some(g) => int64_id("security_context.run_as_group", g.value)?,
        None => resolved.gid,
    };
    let policy =
        SupplementalGroupsPolicy::try_from(sc.supplemental_groups_policy).map_err(|_| {
            SpecError::invalid(
                "security_context.supplemental_groups_policy",
                format!("unknown value {}", sc.supplemental_groups_policy),
            )
        })?;
    let mut gids = vec![gid];
    if policy == SupplementalGroupsPolicy::Merge {
        // additional_gids[0] is the passwd primary group, replaced by run_as_group if given.
        gids.extend(resolved.additional_gids.iter().skip(1));
    }
    for (i, g) in sc.supplemental_groups.iter().enumerate() {
        gids.push(int64_id(
            &format!("security_context.supplemental_groups[{i}]"),
            *g,
        )?);
    }
    // Sorted and deduplicated, as the kernel's setgroups(2) keeps them (getgroups returns them
    // sorted): a runtime under its own kernel (gVisor) keeps the order it is given.
    gids.sort_unstable();
    gids.dedup();

    let mut user = User::default();
    user.set_uid(resolved.uid);
    user.set_gid(gid);
    user.set_additional_gids(Some(gids));
    Ok(user)
}

enum Profile {
    RuntimeDefault,
    Unconfined,
    /// The structured `localhost_ref`.
    Localhost(String),
    /// The deprecated `localhost/<path>` string form.
    LegacyLocalhost(String),
}

/// The structured field wins over the deprecated string; both absent yields `absent`.
fn pick_profile(
    field: &str,
    structured: Option<&SecurityProfile>,
    legacy_field: &str,
    legacy: &str,
    absent: Profile,
    legacy_default_names: &[&str],
) -> Result<Profile, SpecError> {
    if let Some(p) = structured {
        return match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => Ok(Profile::RuntimeDefault),
            Ok(ProfileType::Unconfined) => Ok(Profile::Unconfined),
            Ok(ProfileType::Localhost) => Ok(Profile::Localhost(p.localhost_ref.clone())),
            Err(_) => Err(SpecError::invalid(
                field,
                format!("unknown profile type {}", p.profile_type),
            )),
        };
    }
    if legacy.is_empty() {
        return Ok(absent);
    }
    if legacy_default_names.contains(&legacy) {
        return Ok(Profile::RuntimeDefault);
    }
    if legacy == "unconfined" {
        return Ok(Profile::Unconfined);
    }
    if let Some(path) = legacy.strip_prefix("localhost/") {
        return Ok(Profile::LegacyLocalhost(path.to_string()));
    }
    Err(SpecError::invalid(
        legacy_field,
        format!("unknown profile {legacy:?}"),
    ))
}

fn seccomp_for(
    field: &str,
    profile: Profile,
    host: &HostInfo,
    caps: &BTreeSet<String>,
    profile_root: &Path,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    match profile {
        Profile::Unconfined => Ok(None),
        // What containerd does when the kernel has no seccomp: run without it.
        Profile::RuntimeDefault if !host.seccomp => Ok(None),
        Profile::RuntimeDefault => Ok(Some(default_seccomp_profile_for(host, caps))),
        Profile::Localhost(_) | Profile::LegacyLocalhost(_) if !host.seccomp => Err(
            SpecError::unsupported(field, "the host kernel has no seccomp support"),
        ),
        Profile::Localhost(r) => {
            let path = localhost_profile_path(field, &r, None)?;
            load_profile(field, &path, caps).map(Some)
        }
        Profile::LegacyLocalhost(r) => {
            let path = localhost_profile_path(field, &r, Some(profile_root))?;
            load_profile(field, &path, caps).map(Some)
        }
    }
}

// The deprecated string fields are still sent by older kubelets and crictl.
#[allow(deprecated)]
fn container_seccomp(
    sc: &LinuxContainerSecurityContext,
    host: &HostInfo,
    privileged: bool,
    caps: &CapSets,
    profile_root: &Path,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    const F: &str = "security_context.seccomp";
    let profile = pick_profile(
        F,
        sc.seccomp.as_ref(),
        "security_context.seccomp_profile_path",
        &sc.seccomp_profile_path,
        // An absent profile is unconfined, as in containerd (the kubelet sends RuntimeDefault
        // explicitly when SeccompDefault is on).
        Profile::Unconfined,
        &["runtime/default", "docker/default"],
    )?;
    // Privileged containers are never filtered (kubelet and containerd agree).
    if privileged {
        return Ok(None);
    }
    seccomp_for(F, profile, host, &caps.main, profile_root)
}

// The deprecated string fields are still sent by older kubelets and crictl.
#[allow(deprecated)]
fn apparmor_profile(
    sc: &LinuxContainerSecurityContext,
    host: &HostInfo,
    privileged: bool,
) -> Result<Option<String>, SpecError> {
    const F: &str = "security_context.apparmor";
    let profile = pick_profile(
        F,
        sc.apparmor.as_ref(),
        "security_context.apparmor_profile",
        &sc.apparmor_profile,
        Profile::RuntimeDefault,
        &["runtime/default"],
    )?;
    apparmor_for(F, profile, host, privileged)
}

fn apparmor_for(
    field: &str,
    profile: Profile,
    host: &HostInfo,
    privileged: bool,
) -> Result<Option<String>, SpecError> {
    match profile {
        Profile::Unconfined => Ok(None),
        Profile::RuntimeDefault if !host.apparmor || privileged => Ok(None),
        Profile::RuntimeDefault => Ok(Some(DEFAULT_APPARMOR_PROFILE.into())),
        Profile::LegacyLocalhost(name) => {
            apparmor_for(field, Profile::Localhost(name), host, privileged)
        }
        Profile::Localhost(_) if !host.apparmor => Err(SpecError::unsupported(
            field,
            "AppArmor is not enabled on this host",
        )),
        Profile::Localhost(name) if name.is_empty() => {
            Err(SpecError::invalid(field, "localhost profile needs a name"))
        }
        // Some clients repeat the legacy prefix in the structured field.
        Profile::Localhost(name) => Ok(Some(
            name.strip_prefix("localhost/").unwrap_or(&name).to_string(),
        )),
    }
}

fn or_default(given: &[String], default: &[&str]) -> Vec<String> {
    if given.is_empty() {
        default.iter().map(|s| s.to_string()).collect()
    } else {
        given.to_vec()
    }
}

fn sysctl_map(s: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!s.is_empty()).then(|| s.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// `<cgroup_parent>/crius-<id>`, cgroupfs style; an empty parent is `/crius`.
fn cgroups_path(parent: &str, id: &str) -> Result<PathBuf, SpecError> {
    let parent = parent.trim_end_matches('/');
    let parent = if parent.is_empty() { "/crius" } else { parent };
    if parent.split('/').any(|c| c == "..") {
        return Err(SpecError::invalid(
            "linux.cgroup_parent",
            format!("{parent:?} must not contain '..'"),
        ));
    }
    if id.is_empty() || id.contains('/') {
        return Err(SpecError::invalid(
            "container_id",
            format!("{id:?} is not a valid id"),
        ));
    }
    let parent = if parent.starts_with('/') {
        parent.to_string()
    } else {
        format!("/{parent}")
    };
    Ok(PathBuf::from(format!("{parent}/crius-{id}")))
}

fn sandbox_annotations(sandbox: &PodSandboxConfig, sandbox_id: &str) -> HashMap<String, String> {
    let mut a = HashMap::new();
    a.insert(ann::SANDBOX_ID.into(), sandbox_id.to_string());
    if let Some(m) = &sandbox.metadata {
        a.insert(ann::SANDBOX_NAME.into(), m.name.clone());
        a.insert(ann::SANDBOX_NAMESPACE.into(), m.namespace.clone());
        a.insert(ann::SANDBOX_UID.into(), m.uid.clone());
    }
    a
}

/// The spec of the pause process that holds a pod's shared PID namespace: pid 1 of the pod,
/// no capabilities, read-only rootfs, the pod's network/IPC/UTS namespaces.
// The deprecated string fields are still sent by older kubelets and crictl.
#[allow(deprecated)]
pub fn pause_spec(
    pod: &PodContext,
    sandbox: &PodSandboxConfig,
    host: &HostInfo,
    rootfs: &Path,
    pause_args: Vec<String>,
) -> Result<Spec, SpecError> {
    validate_sandbox_config(sandbox, host)?;
    if pause_args.is_empty() {
        return Err(SpecError::invalid(
            "pause_args",
            "the pause command is empty",
        ));
    }
    let linux = sandbox.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    let privileged = sc.privileged;

    let mut user = User::default();
    user.set_uid(match &sc.run_as_user {
        Some(u) => int64_id("linux.security_context.run_as_user", u.value)?,
        None => 0,
    });
    let gid = match &sc.run_as_group {
        Some(g) => int64_id("linux.security_context.run_as_group", g.value)?,
        None => 0,
    };
    user.set_gid(gid);
    let mut gids = vec![gid];
    for (i, g) in sc.supplemental_groups.iter().enumerate() {
        let g = int64_id(
            &format!("linux.security_context.supplemental_groups[{i}]"),
            *g,
        )?;
        gids.push(g);
    }
    gids.sort_unstable();
    gids.dedup();
    user.set_additional_gids(Some(gids));

    let mut process = Process::default();
    process.set_terminal(Some(false));
    process.set_args(Some(pause_args));
    process.set_env(Some(vec![format!("PATH={DEFAULT_PATH}")]));
    process.set_cwd(PathBuf::from("/"));
    process.set_user(user);
    let caps = if privileged {
        oci_caps(&compute_caps(
            &CapRequest {
                add: &[],
                drop: &[],
                ambient: &[],
                privileged: true,
            },
            &host.bounding_caps,
        )?)
    } else {
        // pause only sleeps and reaps children: it needs no privilege at all.
        oci_caps(&CapSets::default())
    };
    process.set_capabilities(Some::<LinuxCapabilities>(caps));
    process.set_no_new_privileges(Some(true));
    process.set_rlimits(None);
    process.set_oom_score_adj(Some(clamp_oom(SANDBOX_OOM_SCORE_ADJ, host)));
    let apparmor = pick_profile(
        "linux.security_context.apparmor",
        sc.apparmor.as_ref(),
        "linux.security_context.apparmor",
        "",
        Profile::RuntimeDefault,
        &[],
    )?;
    process.set_apparmor_profile(apparmor_for(
        "linux.security_context.apparmor",
        apparmor,
        host,
        privileged,
    )?);

    // The pause process creates the pod's pid namespace (unless the pod uses the host's).
    let opts = cri_api::v1::NamespaceOption {
        network: NamespaceMode::Pod as i32,
        ipc: NamespaceMode::Pod as i32,
        pid: if pod.host_pid {
            NamespaceMode::Node
        } else {
            NamespaceMode::Container
        } as i32,
        ..Default::default()
    };
    let plan = container_namespaces(Some(&opts), pod, host, None)?;
    validate_sysctls(
        &pod.sysctls,
        plan.private_net,
        plan.private_ipc,
        plan.private_uts,
    )?;
    let shm = match (&pod.shm, plan.private_ipc) {
        (_, false) => Shm::Host,
        (Some(p), true) => Shm::Pod(p),
        (None, true) => Shm::Private,
    };
    let mounts = default_mounts(privileged, shm);

    let seccomp = if privileged {
        None
    } else {
        let profile = pick_profile(
            "linux.security_context.seccomp",
            sc.seccomp.as_ref(),
            "linux.security_context.seccomp_profile_path",
            &sc.seccomp_profile_path,
            Profile::Unconfined,
            &["runtime/default", "docker/default"],
        )?;
        // pause_spec has no profile root: a relative legacy `localhost/` path is read from /.
        seccomp_for(
            "linux.security_context.seccomp",
            profile,
            host,
            &BTreeSet::new(),
            Path::new("/"),
        )?
    };

    let mut resources = oci_spec::runtime::LinuxResources::default();
    resources.set_devices(Some(if privileged {
        allow_all_rule()
    } else {
        default_device_rules()
    }));

    let mut oci_linux = oci_spec::runtime::Linux::default();
    oci_linux.set_uid_mappings(None);
    oci_linux.set_gid_mappings(None);
    oci_linux.set_namespaces(Some(plan.namespaces));
    oci_linux.set_devices(None);
    oci_linux.set_resources(Some(resources));
    oci_linux.set_cgroups_path(Some(cgroups_path(&pod.cgroup_parent, &pod.sandbox_id)?));
    oci_linux.set_seccomp(seccomp);
    oci_linux.set_rootfs_propagation(None);
    let (masked, readonly) = if privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            or_default(&[], &DEFAULT_MASKED_PATHS),
            or_default(&[], &DEFAULT_READONLY_PATHS),
        )
    };
    oci_linux.set_masked_paths(Some(masked));
    oci_linux.set_readonly_paths(Some(readonly));
    oci_linux.set_sysctl(sysctl_map(&pod.sysctls));
    oci_linux.set_mount_label(None);

    let mut annotations = sandbox_annotations(sandbox, &pod.sandbox_id);
    annotations.insert(ann::CONTAINER_TYPE.into(), ann::TYPE_SANDBOX.into());

    let mut root = Root::default();
    root.set_path(rootfs.to_path_buf());
    root.set_readonly(Some(true));

    let mut spec = Spec::default();
    spec.set_root(Some(root));
    spec.set_mounts(Some::<Vec<Mount>>(mounts));
    spec.set_process(Some(process));
    spec.set_hostname(plan.private_uts.then(|| pod.hostname.clone()));
    spec.set_annotations(Some(annotations));
    spec.set_linux(Some(oci_linux));
    spec.set_hooks(None);
    Ok(spec)
}

/// Checks a RunPodSandbox config for what crius must reject: invalid namespace modes at pod
/// level, unimplemented features (user namespaces, SELinux labels on SELinux hosts, AppArmor
/// localhost profiles without AppArmor, Windows config), sysctls that would touch the host,
/// unusable ids and resources. Fields that only the daemon uses (DNS, ports, log directory)
/// are not checked here.
// The deprecated string fields are still sent by older kubelets and crictl.
#[allow(deprecated)]
pub fn validate_sandbox_config(cfg: &PodSandboxConfig, host: &HostInfo) -> Result<(), SpecError> {
    if cfg.windows.is_some() {
        return Err(SpecError::unsupported(
            "windows",
            "Windows sandbox config on a Linux runtime",
        ));
    }
    let Some(linux) = &cfg.linux else {
        return Ok(());
    };
    let default_sc = cri_api::v1::LinuxSandboxSecurityContext::default();
    let sc = linux.security_context.as_ref().unwrap_or(&default_sc);
    const P: &str = "linux.security_context";

    let opts = sc.namespace_options.clone().unwrap_or_default();
    let m = |field: &str, v: i32| {
        NamespaceMode::try_from(v).map_err(|_| {
            SpecError::invalid(
                format!("{P}.namespace_options.{field}"),
                format!("unknown namespace mode {v}"),
            )
        })
    };
    let network = m("network", opts.network)?;
    let pid = m("pid", opts.pid)?;
    let ipc = m("ipc", opts.ipc)?;
    for (field, mode) in [("network", network), ("ipc", ipc)] {
        if !matches!(mode, NamespaceMode::Pod | NamespaceMode::Node) {
            return Err(SpecError::invalid(
                format!("{P}.namespace_options.{field}"),
                format!("{} is not valid for a pod", mode.as_str_name()),
            ));
        }
    }
    if pid == NamespaceMode::Target {
        return Err(SpecError::invalid(
            format!("{P}.namespace_options.pid"),
            "TARGET is only valid for containers",
        ));
    }
    let userns = crate::userns::pod_userns(&opts)
        .map_err(|e| prefix(e, "linux.security_context.namespace_options"))?;
    if userns.is_some() && sc.privileged {
        return Err(SpecError::invalid(
            format!("{P}.privileged"),
            "a privileged pod cannot have its own user namespace",
        ));
    }

    if sc.run_as_group.is_some() && sc.run_as_user.is_none() {
        return Err(SpecError::invalid(
            format!("{P}.run_as_group"),
            "run_as_group is set without run_as_user",
        ));
    }
    if let Some(u) = &sc.run_as_user {
        int64_id(&format!("{P}.run_as_user"), u.value)?;
    }
    if let Some(g) = &sc.run_as_group {
        int64_id(&format!("{P}.run_as_group"), g.value)?;
    }
    for (i, g) in sc.supplemental_groups.iter().enumerate() {
        int64_id(&format!("{P}.supplemental_groups[{i}]"), *g)?;
    }
    SupplementalGroupsPolicy::try_from(sc.supplemental_groups_policy).map_err(|_| {
        SpecError::invalid(
            format!("{P}.supplemental_groups_policy"),
            format!("unknown value {}", sc.supplemental_groups_policy),
        )
    })?;
    check_selinux(
        &format!("{P}.selinux_options"),
        sc.selinux_options.as_ref(),
        host,
    )?;

    let seccomp = pick_profile(
        &format!("{P}.seccomp"),
        sc.seccomp.as_ref(),
        &format!("{P}.seccomp_profile_path"),
        &sc.seccomp_profile_path,
        Profile::Unconfined,
        &["runtime/default", "docker/default"],
    )?;
    if let Profile::Localhost(r) | Profile::LegacyLocalhost(r) = seccomp {
        if !host.seccomp {
            return Err(SpecError::unsupported(
                format!("{P}.seccomp"),
                "the host kernel has no seccomp support",
            ));
        }
        localhost_profile_path(&format!("{P}.seccomp"), &r, None)?;
    }
    let apparmor = pick_profile(
        &format!("{P}.apparmor"),
        sc.apparmor.as_ref(),
        &format!("{P}.apparmor"),
        "",
        Profile::RuntimeDefault,
        &[],
    )?;
    apparmor_for(&format!("{P}.apparmor"), apparmor, host, sc.privileged)?;

    let sysctls: BTreeMap<String, String> = linux
        .sysctls
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    validate_sysctls(
        &sysctls,
        network == NamespaceMode::Pod,
        ipc == NamespaceMode::Pod,
        // A pod gets its own UTS namespace unless it uses the host network.
        network == NamespaceMode::Pod,
    )
    .map_err(|e| prefix(e, "linux"))?;

    if linux.cgroup_parent.split('/').any(|c| c == "..") {
        return Err(SpecError::invalid(
            "linux.cgroup_parent",
            format!("{:?} must not contain '..'", linux.cgroup_parent),
        ));
    }
    for (name, r) in [
        ("overhead", &linux.overhead),
        ("resources", &linux.resources),
    ] {
        if let Some(r) = r {
            linux_resources(r, host).map_err(|e| prefix(e, &format!("linux.{name}")))?;
        }
    }
    Ok(())
}

fn prefix(e: SpecError, p: &str) -> SpecError {
    match e {
        SpecError::Invalid { field, reason } => SpecError::Invalid {
            field: format!("{p}.{}", field.trim_start_matches("resources.")),
            reason,
        },
        SpecError::Unsupported { field, reason } => SpecError::Unsupported {
            field: format!("{p}.{}", field.trim_start_matches("resources.")),
            reason,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests;
