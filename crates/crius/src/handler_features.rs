//! Per-handler features: what each configured runtime handler can honour on this node, worked out at
//! start from the handler's kind, its `features` document, its flags and trial containers; reported
//! (CRI `RuntimeHandlerFeatures`, verbose Status key `runtimeHandlers.<name>.handlerFeatures`,
//! `crius features --handlers`) and enforced before any work at RunPodSandbox, CreateContainer and
//! UpdateContainerResources: a field the pod's handler cannot honour is refused with
//! FailedPrecondition naming the handler, the field and why.

use cri_api::v1 as cri;
use crius_oci::{Handler, HandlerKind};
use serde::Serialize;

use crate::error::{Error, Result};

/// Whether a handler honours one feature, and by whom (or why not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Support {
    pub supported: bool,
    /// Who makes it work (`handler`, `crius …`), or why it cannot.
    pub how: String,
}

impl Support {
    pub fn yes(how: impl Into<String>) -> Support {
        Support {
            supported: true,
            how: how.into(),
        }
    }
    pub fn no(why: impl Into<String>) -> Support {
        Support {
            supported: false,
            how: why.into(),
        }
    }
    fn from_trial(r: Option<&std::result::Result<(), String>>, how: &str) -> Support {
        match r {
            Some(Ok(())) => Support::yes(how),
            Some(Err(e)) => Support::no(e.clone()),
            None => Support::no("not probed: the handler is unavailable"),
        }
    }
}

/// The feature set of one handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HandlerFeatures {
    pub kind: HandlerKind,
    pub recursive_read_only_mounts: Support,
    pub idmapped_mounts: Support,
    pub user_namespaces: Support,
    pub seccomp: Support,
    /// The container's seccomp filter on processes started by exec (ExecSync, Exec).
    pub exec_seccomp: Support,
    pub host_network: Support,
    #[serde(rename = "hostPID")]
    pub host_pid: Support,
    #[serde(rename = "hostIPC")]
    pub host_ipc: Support,
    /// One PID namespace shared by the pod's containers (`namespace_options.pid = POD`).
    #[serde(rename = "podPIDNamespace")]
    pub pod_pid_namespace: Support,
    /// A container in another container's PID namespace (`pid = TARGET`, ephemeral containers).
    #[serde(rename = "targetPIDNamespace")]
    pub target_pid_namespace: Support,
    pub privileged: Support,
    /// Host device nodes (`devices`, CDI devices).
    pub devices: Support,
    pub update_resources: Support,
    /// A container's own CPU/memory limits (`linux.resources`), enforced on its processes.
    pub container_limits: Support,
    /// Namespaced sysctls of the pod (`linux.sysctls`).
    pub sysctls: Support,
    pub exec: Support,
    pub attach: Support,
    pub port_forward: Support,
    pub stats: Support,
}

/// What the start-up probes found for one handler.
#[derive(Debug, Clone, Default)]
pub struct Probes<'a> {
    /// crius' host-side recursive read-only mounts.
    pub host_rro: Option<&'a std::result::Result<(), String>>,
    /// The user-namespace trial container.
    pub userns: Option<&'a std::result::Result<(), String>>,
    /// The seccomp trial container.
    pub seccomp: Option<&'a std::result::Result<(), String>>,
    /// The process the seccomp trial started in its container by `<runtime> exec`.
    pub exec_seccomp: Option<&'a std::result::Result<(), String>>,
}

const GVISOR_KERNEL: &str = "gVisor runs the pod under its own kernel";

impl HandlerFeatures {
    pub fn compute(h: &Handler, p: &Probes) -> HandlerFeatures {
        let native = crate::oci::native_of(h);
        let rro = if native.rro {
            Support::yes("handler (rro mount option)")
        } else {
            match p.host_rro {
                Some(Ok(())) => Support::yes("crius (host-side mount_setattr, bound read-only)"),
                Some(Err(e)) => Support::no(e.clone()),
                None => Support::no("not probed"),
            }
        };
        let userns = Support::from_trial(p.userns, "user-namespace trial container passed");
        let seccomp = Support::from_trial(p.seccomp, "seccomp trial container passed");
        let exec_seccomp = Support::from_trial(
            p.exec_seccomp,
            "a process started by exec in the seccomp trial container was filtered",
        );
        match h.kind {
            HandlerKind::Oci => {
                let idmap = if native.idmap {
                    Support::yes("handler (idmapped mounts)")
                } else if userns.supported {
                    Support::yes("crius (host-side idmapped mounts)")
                } else {
                    Support::no(format!("needs user namespaces: {}", userns.how))
                };
                HandlerFeatures {
                    kind: h.kind,
                    recursive_read_only_mounts: rro,
                    idmapped_mounts: idmap,
                    user_namespaces: userns,
                    seccomp,
                    exec_seccomp,
                    host_network: Support::yes("host namespace"),
                    host_pid: Support::yes("host namespace"),
                    host_ipc: Support::yes("host namespace"),
                    pod_pid_namespace: Support::yes("crius pause process"),
                    target_pid_namespace: Support::yes("joins /proc/<pid>/ns/pid"),
                    privileged: Support::yes("handler"),
                    devices: Support::yes("handler"),
                    update_resources: Support::yes("<runtime> update"),
                    container_limits: Support::yes("the container's cgroup"),
                    sysctls: Support::yes("handler (linux.sysctl)"),
                    exec: Support::yes("<runtime> exec"),
                    attach: Support::yes("crius-monitor"),
                    port_forward: Support::yes("crius (pod network namespace)"),
                    stats: Support::yes("host cgroups"),
                }
            }
            HandlerKind::Sandbox => {
                let host_net = h.global_args.iter().any(|a| a == "--network=host");
                HandlerFeatures {
                    kind: h.kind,
                    recursive_read_only_mounts: rro,
                    idmapped_mounts: Support::no(format!(
                        "{GVISOR_KERNEL}, which has no idmapped mounts"
                    )),
                    user_namespaces: userns,
                    seccomp,
                    exec_seccomp,
                    host_network: if host_net {
                        Support::yes("--network=host: the sandbox uses the host kernel's network stack")
                    } else {
                        Support::no("the handler's args lack --network=host")
                    },
                    host_pid: Support::no(format!(
                        "{GVISOR_KERNEL}: host processes are not visible inside"
                    )),
                    host_ipc: Support::no(format!(
                        "{GVISOR_KERNEL}, which implements System V IPC and POSIX message queues itself"
                    )),
                    pod_pid_namespace: Support::yes(
                        "the sandbox's root PID namespace (the pod's holder process is pid 1)",
                    ),
                    target_pid_namespace: Support::no(
                        "crius does not yet join a container to another's PID namespace inside a gVisor sandbox",
                    ),
                    privileged: Support::no(format!(
                        "{GVISOR_KERNEL}: a privileged container gets no host devices or host capabilities"
                    )),
                    devices: Support::no(format!("{GVISOR_KERNEL}: host device nodes are not passed in")),
                    update_resources: Support::no(
                        "runsc has no `update` command: resources are fixed at create",
                    ),
                    container_limits: Support::no(
                        "not enforced per container (accepted, not refused): every container runs inside the pod's one sandbox process, whose host cgroup is the pod's; a container's own cgroup holds only its gofer",
                    ),
                    sysctls: Support::no(format!(
                        "{GVISOR_KERNEL}, whose /proc/sys is its own: runsc does not apply the spec's linux.sysctl"
                    )),
                    exec: Support::yes("runsc exec"),
                    attach: Support::yes("crius-monitor"),
                    port_forward: Support::yes(
                        "crius (pod network namespace; the sandbox uses it with --network=host)",
                    ),
                    stats: Support::no(
                        "partly: the pod's sandbox runs in its own host cgroup (with gVisor's kernel), but a container's cgroup holds only its gofer, so ContainerStats CPU/memory are not the container's processes'",
                    ),
                }
            }
        }
    }

    /// The features as rows: (name, CRI field it governs, support).
    pub fn rows(&self) -> Vec<(&'static str, &Support)> {
        vec![
            ("recursiveReadOnlyMounts", &self.recursive_read_only_mounts),
            ("idmappedMounts", &self.idmapped_mounts),
            ("userNamespaces", &self.user_namespaces),
            ("seccomp", &self.seccomp),
            ("execSeccomp", &self.exec_seccomp),
            ("hostNetwork", &self.host_network),
            ("hostPID", &self.host_pid),
            ("hostIPC", &self.host_ipc),
            ("podPIDNamespace", &self.pod_pid_namespace),
            ("targetPIDNamespace", &self.target_pid_namespace),
            ("privileged", &self.privileged),
            ("devices", &self.devices),
            ("updateResources", &self.update_resources),
            ("containerLimits", &self.container_limits),
            ("sysctls", &self.sysctls),
            ("exec", &self.exec),
            ("attach", &self.attach),
            ("portForward", &self.port_forward),
            ("stats", &self.stats),
        ]
    }
}

fn refuse(handler: &str, field: &str, s: &Support) -> Result<()> {
    if s.supported {
        return Ok(());
    }
    Err(Error::FailedPrecondition(format!(
        "runtime handler {handler:?} cannot honour {field}: {}",
        s.how
    )))
}

fn mode(m: i32) -> Option<cri::NamespaceMode> {
    cri::NamespaceMode::try_from(m).ok()
}

/// Whether a security context asks for a seccomp filter (mirrors crius-spec: an absent profile is
/// unconfined; privileged containers are never filtered).
#[allow(deprecated)]
fn wants_seccomp(profile: Option<&cri::SecurityProfile>, legacy: &str, privileged: bool) -> bool {
    if privileged {
        return false;
    }
    match profile {
        Some(p) => p.profile_type != cri::security_profile::ProfileType::Unconfined as i32,
        None => !legacy.is_empty() && legacy != "unconfined",
    }
}

fn check_namespaces(
    handler: &str,
    f: &HandlerFeatures,
    prefix: &str,
    ns: &cri::NamespaceOption,
) -> Result<()> {
    if mode(ns.network) == Some(cri::NamespaceMode::Node) {
        refuse(
            handler,
            &format!("{prefix}.namespace_options.network (NODE)"),
            &f.host_network,
        )?;
    }
    match mode(ns.pid) {
        Some(cri::NamespaceMode::Node) => refuse(
            handler,
            &format!("{prefix}.namespace_options.pid (NODE)"),
            &f.host_pid,
        )?,
        Some(cri::NamespaceMode::Pod) => refuse(
            handler,
            &format!("{prefix}.namespace_options.pid (POD)"),
            &f.pod_pid_namespace,
        )?,
        Some(cri::NamespaceMode::Target) => refuse(
            handler,
            &format!("{prefix}.namespace_options.pid (TARGET)"),
            &f.target_pid_namespace,
        )?,
        _ => {}
    }
    if mode(ns.ipc) == Some(cri::NamespaceMode::Node) {
        refuse(
            handler,
            &format!("{prefix}.namespace_options.ipc (NODE)"),
            &f.host_ipc,
        )?;
    }
    if ns
        .userns_options
        .as_ref()
        .is_some_and(|u| mode(u.mode) == Some(cri::NamespaceMode::Pod))
    {
        refuse(
            handler,
            &format!("{prefix}.namespace_options.userns_options"),
            &f.user_namespaces,
        )?;
    }
    Ok(())
}

/// RunPodSandbox: the pod-level fields its handler must honour.
#[allow(deprecated)]
pub fn check_pod(handler: &str, f: &HandlerFeatures, cfg: &cri::PodSandboxConfig) -> Result<()> {
    if cfg.linux.as_ref().is_some_and(|l| !l.sysctls.is_empty()) {
        refuse(handler, "config.linux.sysctls", &f.sysctls)?;
    }
    let Some(sc) = cfg.linux.as_ref().and_then(|l| l.security_context.as_ref()) else {
        return Ok(());
    };
    const P: &str = "config.linux.security_context";
    if let Some(ns) = &sc.namespace_options {
        check_namespaces(handler, f, P, ns)?;
    }
    // `privileged` on the pod only allows privileged containers in it; each one is refused at
    // CreateContainer where the handler cannot honour it.
    if wants_seccomp(sc.seccomp.as_ref(), &sc.seccomp_profile_path, sc.privileged) {
        refuse(handler, &format!("{P}.seccomp"), &f.seccomp)?;
    }
    Ok(())
}

/// CreateContainer: the container-level fields its pod's handler must honour.
#[allow(deprecated)]
pub fn check_container(
    handler: &str,
    f: &HandlerFeatures,
    cfg: &cri::ContainerConfig,
) -> Result<()> {
    const P: &str = "config.linux.security_context";
    if let Some(sc) = cfg.linux.as_ref().and_then(|l| l.security_context.as_ref()) {
        if let Some(ns) = &sc.namespace_options {
            // The pod's own modes were checked at RunPodSandbox; a container repeats them.
            check_namespaces(handler, f, P, ns)?;
        }
        if sc.privileged {
            refuse(handler, &format!("{P}.privileged"), &f.privileged)?;
        }
        if wants_seccomp(sc.seccomp.as_ref(), &sc.seccomp_profile_path, sc.privileged) {
            refuse(handler, &format!("{P}.seccomp"), &f.seccomp)?;
        }
    }
    for (i, m) in cfg.mounts.iter().enumerate() {
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            refuse(
                handler,
                &format!("config.mounts[{i}].uidMappings/gidMappings"),
                &f.idmapped_mounts,
            )?;
        }
        if m.recursive_read_only {
            refuse(
                handler,
                &format!("config.mounts[{i}].recursive_read_only"),
                &f.recursive_read_only_mounts,
            )?;
        }
    }
    if !cfg.devices.is_empty() {
        refuse(handler, "config.devices", &f.devices)?;
    }
    if !cfg.cdi_devices.is_empty() {
        refuse(handler, "config.CDI_devices", &f.devices)?;
    }
    Ok(())
}

/// UpdateContainerResources on a container of `handler`.
pub fn check_update(handler: &str, f: &HandlerFeatures) -> Result<()> {
    refuse(handler, "UpdateContainerResources", &f.update_resources)
}

/// ExecSync/Exec into a container of `handler` (`cfg` its CreateContainer config): refused when the
/// container has a seccomp filter and the handler starts exec'd processes without it, unless the
/// operator allowed that for the handler (`allow_unfiltered_exec` in `[runtimes.<handler>]`).
#[allow(deprecated)]
pub fn check_exec(
    handler: &str,
    f: &HandlerFeatures,
    allow_unfiltered: bool,
    cfg: &cri::ContainerConfig,
) -> Result<()> {
    let Some(sc) = cfg.linux.as_ref().and_then(|l| l.security_context.as_ref()) else {
        return Ok(());
    };
    if allow_unfiltered
        || f.exec_seccomp.supported
        || !wants_seccomp(sc.seccomp.as_ref(), &sc.seccomp_profile_path, sc.privileged)
    {
        return Ok(());
    }
    Err(Error::FailedPrecondition(format!(
        "runtime handler {handler:?} cannot honour the container's linux.security_context.seccomp for exec: {}; \
         set allow_unfiltered_exec = true in [runtimes.{handler}] to run exec'd processes without the filter",
        f.exec_seccomp.how
    )))
}

impl crate::shared::Shared {
    /// [`check_exec`] for a container on `handler` with config `cfg` (ExecSync, Exec), with its
    /// handler's features (probed first if its trials were deferred) and configuration.
    pub async fn check_exec_seccomp_of(
        &self,
        handler: &str,
        cfg: &cri::ContainerConfig,
    ) -> Result<()> {
        self.handlers.ready_for(handler).await;
        let name = if handler.is_empty() {
            self.handlers.default.as_str()
        } else {
            handler
        };
        let allow = self
            .cfg
            .runtimes
            .get(name)
            .is_some_and(|r| r.allow_unfiltered_exec);
        check_exec(name, self.handlers.features_of(name)?, allow, cfg)
    }
}

/// `crius features --handlers`: one row per feature, one column per handler; from the
/// `runtimeHandlers` object of a verbose Status (handler → {available, handlerFeatures | reason}).
pub fn render(handlers: &serde_json::Map<String, serde_json::Value>) -> String {
    let names: Vec<&String> = handlers.keys().collect();
    let mut out = format!("{:<26}", "FEATURE");
    for n in &names {
        out.push_str(&format!(" {:<10}", n));
    }
    out.push('\n');
    let mut kind = format!("{:<26}", "kind");
    for n in &names {
        let v = &handlers[*n];
        let k = v.get("type").and_then(|k| k.as_str()).unwrap_or("-");
        kind.push_str(&format!(" {:<10}", k));
    }
    out.push_str(&kind);
    out.push('\n');
    let keys = [
        "recursiveReadOnlyMounts",
        "idmappedMounts",
        "userNamespaces",
        "seccomp",
        "execSeccomp",
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "podPIDNamespace",
        "targetPIDNamespace",
        "privileged",
        "devices",
        "updateResources",
        "containerLimits",
        "sysctls",
        "exec",
        "attach",
        "portForward",
        "stats",
    ];
    let mut notes = String::new();
    for key in keys {
        let mut line = format!("{key:<26}");
        for n in &names {
            let v = &handlers[*n];
            let cell = match v.pointer(&format!("/handlerFeatures/{key}")) {
                Some(s) => {
                    let ok = s.get("supported").and_then(|b| b.as_bool()) == Some(true);
                    if !ok {
                        let why = s.get("how").and_then(|w| w.as_str()).unwrap_or_default();
                        notes.push_str(&format!("  {n} {key}: {why}\n"));
                    }
                    if ok {
                        "yes"
                    } else {
                        "no"
                    }
                }
                None => "-",
            };
            line.push_str(&format!(" {cell:<10}"));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for n in &names {
        let v = &handlers[*n];
        if v.get("available").and_then(|a| a.as_bool()) != Some(true) {
            let why = v.get("reason").and_then(|r| r.as_str()).unwrap_or_default();
            notes.push_str(&format!("  {n}: unavailable: {why}\n"));
        }
    }
    if !notes.is_empty() {
        out.push_str("\nwhy not:\n");
        out.push_str(&notes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn handler(kind: HandlerKind, args: &[&str]) -> Handler {
        Handler {
            name: "h".into(),
            binary: PathBuf::from("/usr/bin/x"),
            root: PathBuf::from("/run/x"),
            status: crius_oci::HandlerStatus::Available {
                version: "1".into(),
            },
            features: None,
            systemd_cgroup: false,
            global_args: args.iter().map(|a| a.to_string()).collect(),
            kind,
        }
    }

    fn gvisor() -> HandlerFeatures {
        let ok = Ok(());
        let no = Err("trial: user namespaces are not supported".to_string());
        HandlerFeatures::compute(
            &handler(HandlerKind::Sandbox, &["--network=host", "--oci-seccomp"]),
            &Probes {
                host_rro: Some(&ok),
                userns: Some(&no),
                seccomp: Some(&ok),
                exec_seccomp: Some(&ok),
            },
        )
    }

    /// Namespace options as the kubelet sends them (pid CONTAINER) with `ns`'s changes.
    fn ns(f: impl FnOnce(&mut cri::NamespaceOption)) -> cri::NamespaceOption {
        let mut n = cri::NamespaceOption {
            pid: cri::NamespaceMode::Container as i32,
            ..Default::default()
        };
        f(&mut n);
        n
    }

    fn pod_with(ns: cri::NamespaceOption) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(ns),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn gvisor_refuses_host_pid_and_userns_naming_handler_and_field() {
        let f = gvisor();
        let e = check_pod(
            "runsc",
            &f,
            &pod_with(cri::NamespaceOption {
                pid: cri::NamespaceMode::Node as i32,
                ..Default::default()
            }),
        )
        .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        let m = e.to_string();
        assert!(
            m.contains("\"runsc\"") && m.contains("namespace_options.pid"),
            "{m}"
        );
        let e = check_pod(
            "runsc",
            &f,
            &pod_with(ns(|n| {
                n.userns_options = Some(cri::UserNamespace {
                    mode: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                })
            })),
        )
        .unwrap_err();
        assert!(e.to_string().contains("userns_options"), "{e}");
        assert!(
            e.to_string().contains("user namespaces are not supported"),
            "{e}"
        );
        // Host network works with --network=host; a plain pod is fine.
        check_pod(
            "runsc",
            &f,
            &pod_with(ns(|n| n.network = cri::NamespaceMode::Node as i32)),
        )
        .unwrap();
        check_pod("runsc", &f, &cri::PodSandboxConfig::default()).unwrap();
    }

    #[test]
    fn gvisor_refuses_idmapped_mounts_devices_privileged_and_update() {
        let f = gvisor();
        let mut c = cri::ContainerConfig {
            mounts: vec![cri::Mount {
                container_path: "/a".into(),
                uid_mappings: vec![cri::IdMapping {
                    container_id: 0,
                    host_id: 1000,
                    length: 1,
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let e = check_container("runsc", &f, &c).unwrap_err();
        assert!(e.to_string().contains("mounts[0].uidMappings"), "{e}");
        c.mounts.clear();
        c.devices.push(cri::Device::default());
        assert!(check_container("runsc", &f, &c).is_err());
        c.devices.clear();
        c.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                privileged: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        let e = check_container("runsc", &f, &c).unwrap_err();
        assert!(e.to_string().contains("privileged"), "{e}");
        // Seccomp is honoured when the trial passed.
        c.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                seccomp: Some(cri::SecurityProfile::default()),
                ..Default::default()
            }),
            ..Default::default()
        });
        check_container("runsc", &f, &c).unwrap();
        assert!(check_update("runsc", &f).is_err());
    }

    #[test]
    fn seccomp_is_refused_where_the_trial_failed_but_unconfined_is_not() {
        let ok = Ok(());
        let no = Err("the runtime ran the trial container without its seccomp filter".to_string());
        let f = HandlerFeatures::compute(
            &handler(HandlerKind::Sandbox, &["--network=host"]),
            &Probes {
                host_rro: Some(&ok),
                userns: Some(&ok),
                seccomp: Some(&no),
                exec_seccomp: Some(&no),
            },
        );
        let sc = |p: cri::SecurityProfile| cri::ContainerConfig {
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    seccomp: Some(p),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = check_container("g", &f, &sc(cri::SecurityProfile::default())).unwrap_err();
        assert!(e.to_string().contains("seccomp"), "{e}");
        check_container(
            "g",
            &f,
            &sc(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::Unconfined as i32,
                ..Default::default()
            }),
        )
        .unwrap();
        check_container("g", &f, &cri::ContainerConfig::default()).unwrap();
    }

    #[test]
    fn oci_handlers_honour_host_namespaces_and_follow_the_userns_trial() {
        let ok = Ok(());
        let no = Err("no userns".to_string());
        let f = HandlerFeatures::compute(
            &handler(HandlerKind::Oci, &[]),
            &Probes {
                host_rro: Some(&ok),
                userns: Some(&no),
                seccomp: Some(&ok),
                exec_seccomp: Some(&ok),
            },
        );
        assert!(f.host_pid.supported && f.pod_pid_namespace.supported && f.privileged.supported);
        assert!(!f.user_namespaces.supported && !f.idmapped_mounts.supported);
        assert!(f.recursive_read_only_mounts.supported);
        check_pod(
            "runc",
            &f,
            &pod_with(cri::NamespaceOption {
                pid: cri::NamespaceMode::Node as i32,
                ipc: cri::NamespaceMode::Node as i32,
                network: cri::NamespaceMode::Node as i32,
                ..Default::default()
            }),
        )
        .unwrap();
    }

    #[test]
    #[allow(deprecated)]
    fn exec_is_refused_where_exec_runs_unfiltered_unless_allowed() {
        use cri::security_profile::ProfileType;
        let ok = Ok(());
        let unfiltered =
            Err("`youki exec` runs processes without the container's seccomp filter".to_string());
        let features = |exec: &std::result::Result<(), String>| {
            HandlerFeatures::compute(
                &handler(HandlerKind::Oci, &[]),
                &Probes {
                    host_rro: Some(&ok),
                    userns: Some(&ok),
                    seccomp: Some(&ok),
                    exec_seccomp: Some(exec),
                },
            )
        };
        let (filtered, bare) = (features(&ok), features(&unfiltered));
        let cfg =
            |profile: Option<ProfileType>, legacy: &str, privileged: bool| cri::ContainerConfig {
                linux: Some(cri::LinuxContainerConfig {
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        seccomp: profile.map(|t| cri::SecurityProfile {
                            profile_type: t as i32,
                            localhost_ref: "/p.json".into(),
                        }),
                        seccomp_profile_path: legacy.into(),
                        privileged,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
        // (config, handler's exec filtered, allow_unfiltered_exec, refused)
        let table = [
            (
                cfg(Some(ProfileType::RuntimeDefault), "", false),
                false,
                false,
                true,
            ),
            (
                cfg(Some(ProfileType::Localhost), "", false),
                false,
                false,
                true,
            ),
            (cfg(None, "runtime/default", false), false, false, true),
            (cfg(None, "localhost/p.json", false), false, false, true),
            (
                cfg(Some(ProfileType::RuntimeDefault), "", false),
                false,
                true,
                false,
            ),
            (
                cfg(Some(ProfileType::RuntimeDefault), "", false),
                true,
                false,
                false,
            ),
            (
                cfg(Some(ProfileType::Unconfined), "", false),
                false,
                false,
                false,
            ),
            (cfg(None, "unconfined", false), false, false, false),
            (cfg(None, "", false), false, false, false),
            (
                cfg(Some(ProfileType::RuntimeDefault), "", true),
                false,
                false,
                false,
            ),
            (cri::ContainerConfig::default(), false, false, false),
        ];
        for (i, (c, exec_filtered, allow, refused)) in table.iter().enumerate() {
            let f = if *exec_filtered { &filtered } else { &bare };
            match check_exec("youki", f, *allow, c) {
                Ok(()) => assert!(!refused, "row {i}: allowed"),
                Err(e) => {
                    assert!(refused, "row {i}: {e}");
                    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
                    let m = e.to_string();
                    assert!(m.contains("\"youki\""), "{m}");
                    assert!(m.contains("linux.security_context.seccomp"), "{m}");
                    assert!(m.contains("without the container's seccomp filter"), "{m}");
                    assert!(m.contains("allow_unfiltered_exec"), "{m}");
                }
            }
        }
        assert!(!bare.exec_seccomp.supported && filtered.exec_seccomp.supported);
        assert!(bare
            .rows()
            .iter()
            .any(|(k, s)| *k == "execSeccomp" && !s.supported));
    }

    #[test]
    fn render_lists_each_handler_as_a_column_and_says_why_not() {
        let f = gvisor();
        let mut m = serde_json::Map::new();
        m.insert(
            "runsc".into(),
            serde_json::json!({"available": true, "handlerFeatures": f}),
        );
        m.insert(
            "youki".into(),
            serde_json::json!({"available": false, "reason": "binary youki not found"}),
        );
        let t = render(&m);
        assert!(t.lines().next().unwrap().contains("runsc"), "{t}");
        assert!(t.contains("hostPID"), "{t}");
        assert!(t.contains("runsc hostPID: gVisor"), "{t}");
        assert!(
            t.contains("youki: unavailable: binary youki not found"),
            "{t}"
        );
    }
}
