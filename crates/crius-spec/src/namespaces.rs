//! Namespace plan of a container or pause process (`linux.namespaces`) and the sysctl rules
//! that depend on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cri_api::v1::{NamespaceMode, NamespaceOption};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use crate::{HostInfo, PodContext, SpecError};

/// Which namespaces the process has of its own (or the pod's) versus the host's.
#[derive(Debug, Clone, Default)]
pub(crate) struct NsPlan {
    pub namespaces: Vec<LinuxNamespace>,
    pub private_net: bool,
    pub private_ipc: bool,
    /// The IPC namespace is the pod's (so the pod's /dev/shm belongs with it).
    pub ipc_from_pod: bool,
    pub private_uts: bool,
}

fn ns(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ);
    n.set_path(path);
    n
}

fn mode(field: &str, value: i32) -> Result<NamespaceMode, SpecError> {
    NamespaceMode::try_from(value)
        .map_err(|_| SpecError::invalid(field, format!("unknown namespace mode {value}")))
}

/// A container's namespaces. Network, IPC and UTS follow the pod (the pod context says
/// whether it has its own); PID follows the request.
pub(crate) fn container_namespaces(
    opts: Option<&NamespaceOption>,
    pod: &PodContext,
    host: &HostInfo,
    target_pid_ns: Option<&Path>,
) -> Result<NsPlan, SpecError> {
    let default = NamespaceOption {
        // The kubelet's default for pid is CONTAINER; a missing option means the same.
        pid: NamespaceMode::Container as i32,
        ..Default::default()
    };
    let opts = opts.unwrap_or(&default);
    crate::userns::check_container_userns(opts, pod.userns.as_ref().map(|u| &u.map))?;
    let mut plan = NsPlan::default();
    let mut out = vec![ns(LinuxNamespaceType::Mount, None)];
    if let Some(u) = &pod.userns {
        out.push(ns(LinuxNamespaceType::User, Some(u.path.clone())));
    }

    const NET: &str = "security_context.namespace_options.network";
    match mode(NET, opts.network)? {
        NamespaceMode::Pod => {
            if let Some(p) = &pod.net_ns {
                out.push(ns(LinuxNamespaceType::Network, Some(p.clone())));
                plan.private_net = true;
            }
        }
        NamespaceMode::Node => {}
        NamespaceMode::Container => {
            return Err(SpecError::unsupported(
                NET,
                "a container-private network namespace is not implemented",
            ))
        }
        NamespaceMode::Target => {
            return Err(SpecError::invalid(NET, "TARGET is only valid for pid"))
        }
    }

    const IPC: &str = "security_context.namespace_options.ipc";
    match mode(IPC, opts.ipc)? {
        NamespaceMode::Pod => {
            if let Some(p) = &pod.ipc_ns {
                out.push(ns(LinuxNamespaceType::Ipc, Some(p.clone())));
                plan.private_ipc = true;
                plan.ipc_from_pod = true;
            }
        }
        NamespaceMode::Node => {}
        NamespaceMode::Container => {
            out.push(ns(LinuxNamespaceType::Ipc, None));
            plan.private_ipc = true;
        }
        NamespaceMode::Target => {
            return Err(SpecError::invalid(IPC, "TARGET is only valid for pid"))
        }
    }

    const PID: &str = "security_context.namespace_options.pid";
    match mode(PID, opts.pid)? {
        NamespaceMode::Pod => {
            let p = pod.pid_ns.as_ref().ok_or_else(|| {
                SpecError::invalid(PID, "the pod was not created with a shared pid namespace")
            })?;
            out.push(ns(LinuxNamespaceType::Pid, Some(p.clone())));
        }
        NamespaceMode::Node => {}
        NamespaceMode::Container => out.push(ns(LinuxNamespaceType::Pid, None)),
        NamespaceMode::Target => {
            let p = target_pid_ns.ok_or_else(|| {
                SpecError::invalid(
                    "security_context.namespace_options.target_id",
                    format!("target container {:?} has no pid namespace", opts.target_id),
                )
            })?;
            out.push(ns(LinuxNamespaceType::Pid, Some(p.to_path_buf())));
        }
    }

    if let Some(p) = &pod.uts_ns {
        out.push(ns(LinuxNamespaceType::Uts, Some(p.clone())));
        plan.private_uts = true;
    }
    // Only cgroup v2 gives a useful cgroup namespace (a v1 one hides nothing worth hiding
    // and breaks tools reading /proc/self/cgroup on hybrid hosts).
    if host.cgroup_v2 {
        out.push(ns(LinuxNamespaceType::Cgroup, None));
    }
    plan.namespaces = out;
    Ok(plan)
}

/// Kind of namespace a namespaced sysctl belongs to; `None` for host-global sysctls.
fn sysctl_namespace(key: &str) -> Option<&'static str> {
    let k = key.replace('/', ".");
    if k.starts_with("net.") {
        Some("net")
    } else if k.starts_with("kernel.shm")
        || k.starts_with("kernel.msg")
        || k == "kernel.sem"
        || k.starts_with("fs.mqueue.")
    {
        Some("ipc")
    } else if k == "kernel.domainname" || k == "kernel.hostname" {
        Some("uts")
    } else {
        None
    }
}

/// Only namespaced sysctls are allowed, and only when the process has the namespace they
/// live in: otherwise they would change the host.
pub(crate) fn validate_sysctls(
    sysctls: &BTreeMap<String, String>,
    private_net: bool,
    private_ipc: bool,
    private_uts: bool,
) -> Result<(), SpecError> {
    for key in sysctls.keys() {
        let field = format!("sysctls[{key}]");
        match sysctl_namespace(key) {
            Some("net") if !private_net => {
                return Err(SpecError::invalid(
                    field,
                    "net.* sysctls need the pod's own network namespace (not host network)",
                ))
            }
            Some("ipc") if !private_ipc => {
                return Err(SpecError::invalid(
                    field,
                    "IPC sysctls need a private IPC namespace (not host IPC)",
                ))
            }
            Some("uts") if !private_uts => {
                return Err(SpecError::invalid(
                    field,
                    "UTS sysctls need a private UTS namespace",
                ))
            }
            Some(_) => {}
            None => {
                return Err(SpecError::invalid(
                    field,
                    "not a namespaced sysctl; it would change the whole host",
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_api::v1::UserNamespace;

    fn pod() -> PodContext {
        PodContext {
            net_ns: Some("/run/crius/ns/net".into()),
            ipc_ns: Some("/run/crius/ns/ipc".into()),
            uts_ns: Some("/run/crius/ns/uts".into()),
            ..Default::default()
        }
    }

    fn find(plan: &NsPlan, t: LinuxNamespaceType) -> Option<&LinuxNamespace> {
        plan.namespaces.iter().find(|n| n.typ() == t)
    }

    fn opts(network: NamespaceMode, pid: NamespaceMode, ipc: NamespaceMode) -> NamespaceOption {
        NamespaceOption {
            network: network as i32,
            pid: pid as i32,
            ipc: ipc as i32,
            ..Default::default()
        }
    }

    #[test]
    fn pod_mode_joins_pod_namespaces() {
        let o = opts(
            NamespaceMode::Pod,
            NamespaceMode::Container,
            NamespaceMode::Pod,
        );
        let plan = container_namespaces(Some(&o), &pod(), &HostInfo::default(), None).unwrap();
        assert_eq!(
            find(&plan, LinuxNamespaceType::Network)
                .unwrap()
                .path()
                .as_deref(),
            Some(Path::new("/run/crius/ns/net"))
        );
        assert!(find(&plan, LinuxNamespaceType::Ipc)
            .unwrap()
            .path()
            .is_some());
        assert!(find(&plan, LinuxNamespaceType::Uts)
            .unwrap()
            .path()
            .is_some());
        assert!(find(&plan, LinuxNamespaceType::Pid)
            .unwrap()
            .path()
            .is_none());
        assert!(find(&plan, LinuxNamespaceType::Mount).is_some());
        assert!(find(&plan, LinuxNamespaceType::Cgroup).is_none());
        assert!(plan.private_net && plan.private_ipc && plan.private_uts);
    }

    #[test]
    fn node_mode_is_host() {
        let o = opts(
            NamespaceMode::Node,
            NamespaceMode::Node,
            NamespaceMode::Node,
        );
        let host_pod = PodContext::default();
        let v2 = HostInfo {
            cgroup_v2: true,
            ..Default::default()
        };
        let plan = container_namespaces(Some(&o), &host_pod, &v2, None).unwrap();
        for t in [
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Uts,
        ] {
            assert!(find(&plan, t).is_none(), "{t:?}");
        }
        assert!(find(&plan, LinuxNamespaceType::Cgroup).is_some());
        assert!(!plan.private_net);
    }

    #[test]
    fn shared_and_target_pid() {
        let o = opts(NamespaceMode::Pod, NamespaceMode::Pod, NamespaceMode::Pod);
        let err = container_namespaces(Some(&o), &pod(), &HostInfo::default(), None).unwrap_err();
        assert_eq!(err.field(), Some("security_context.namespace_options.pid"));
        let mut p = pod();
        p.pid_ns = Some("/proc/42/ns/pid".into());
        let plan = container_namespaces(Some(&o), &p, &HostInfo::default(), None).unwrap();
        assert_eq!(
            find(&plan, LinuxNamespaceType::Pid)
                .unwrap()
                .path()
                .as_deref(),
            Some(Path::new("/proc/42/ns/pid"))
        );
        let mut o = opts(
            NamespaceMode::Pod,
            NamespaceMode::Target,
            NamespaceMode::Pod,
        );
        o.target_id = "abc".into();
        let err = container_namespaces(Some(&o), &pod(), &HostInfo::default(), None).unwrap_err();
        assert_eq!(
            err.field(),
            Some("security_context.namespace_options.target_id")
        );
        let plan = container_namespaces(
            Some(&o),
            &pod(),
            &HostInfo::default(),
            Some(Path::new("/proc/7/ns/pid")),
        )
        .unwrap();
        assert_eq!(
            find(&plan, LinuxNamespaceType::Pid)
                .unwrap()
                .path()
                .as_deref(),
            Some(Path::new("/proc/7/ns/pid"))
        );
    }

    #[test]
    fn invalid_and_unsupported_modes() {
        let o = opts(
            NamespaceMode::Target,
            NamespaceMode::Container,
            NamespaceMode::Pod,
        );
        let err = container_namespaces(Some(&o), &pod(), &HostInfo::default(), None).unwrap_err();
        assert!(matches!(err, SpecError::Invalid { .. }));
        assert_eq!(
            err.field(),
            Some("security_context.namespace_options.network")
        );
        let o = opts(
            NamespaceMode::Container,
            NamespaceMode::Container,
            NamespaceMode::Pod,
        );
        let err = container_namespaces(Some(&o), &pod(), &HostInfo::default(), None).unwrap_err();
        assert!(matches!(err, SpecError::Unsupported { .. }));
        let mut o = opts(
            NamespaceMode::Pod,
            NamespaceMode::Container,
            NamespaceMode::Pod,
        );
        o.userns_options = Some(UserNamespace {
            mode: NamespaceMode::Pod as i32,
            ..Default::default()
        });
        let err = container_namespaces(Some(&o), &pod(), &HostInfo::default(), None).unwrap_err();
        assert!(
            matches!(&err, SpecError::Invalid { field, .. } if field == "security_context.namespace_options.userns_options")
        );
        o.userns_options = Some(UserNamespace {
            mode: NamespaceMode::Node as i32,
            ..Default::default()
        });
        container_namespaces(Some(&o), &pod(), &HostInfo::default(), None).unwrap();
    }

    #[test]
    fn sysctl_rules() {
        let s = |k: &str| BTreeMap::from([(k.to_string(), "1".to_string())]);
        validate_sysctls(&s("net.ipv4.ip_forward"), true, false, false).unwrap();
        validate_sysctls(&s("net/ipv4/ip_forward"), true, false, false).unwrap();
        let err = validate_sysctls(&s("net.ipv4.ip_forward"), false, true, true).unwrap_err();
        assert_eq!(err.field(), Some("sysctls[net.ipv4.ip_forward]"));
        for k in [
            "kernel.shmmax",
            "kernel.msgmax",
            "kernel.sem",
            "fs.mqueue.msg_max",
        ] {
            validate_sysctls(&s(k), false, true, false).unwrap();
            assert!(validate_sysctls(&s(k), true, false, true).is_err(), "{k}");
        }
        let err = validate_sysctls(&s("vm.swappiness"), true, true, true).unwrap_err();
        assert_eq!(err.field(), Some("sysctls[vm.swappiness]"));
        validate_sysctls(&s("kernel.domainname"), false, false, true).unwrap();
    }
}
