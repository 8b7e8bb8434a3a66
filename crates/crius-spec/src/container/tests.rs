use std::path::Path;

use cri_api::v1::{
    Capability, CdiDevice, ContainerMetadata, Device, ImageSpec, Int64Value, KeyValue,
    LinuxContainerResources, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount as CriMount,
    NamespaceOption, PodSandboxMetadata, SeLinuxOption, UserNamespace, WindowsContainerConfig,
};
use oci_spec::runtime::{LinuxNamespaceType, LinuxSeccompAction};

use super::*;
use crate::caps::tests::bounding;
use crate::user::tests::rootfs;
use crate::{HandlerCaps, ImageDefaults};

struct Fixture {
    rootfs: tempfile::TempDir,
    config: ContainerConfig,
    sandbox: PodSandboxConfig,
    image: ImageDefaults,
    pod: PodContext,
    host: HostInfo,
    target: Option<PathBuf>,
    profiles: PathBuf,
    handler: HandlerCaps,
}

fn fixture() -> Fixture {
    Fixture {
        rootfs: rootfs(),
        config: ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: "sha256:abc".into(),
                user_specified_image: "docker.io/library/busybox:latest".into(),
                ..Default::default()
            }),
            linux: Some(LinuxContainerConfig {
                resources: None,
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Pod as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        },
        sandbox: PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "uid-1".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            ..Default::default()
        },
        image: ImageDefaults {
            entrypoint: vec!["/bin/entry".into()],
            cmd: vec!["serve".into(), "--port=80".into()],
            env: vec!["PATH=/img/bin".into(), "IMG=1".into(), "MODE=image".into()],
            ..Default::default()
        },
        pod: PodContext {
            sandbox_id: "sb1".into(),
            hostname: "web-0".into(),
            net_ns: Some("/run/crius/ns/net-sb1".into()),
            ipc_ns: Some("/run/crius/ns/ipc-sb1".into()),
            uts_ns: Some("/run/crius/ns/uts-sb1".into()),
            shm: Some("/run/crius/sb1/shm".into()),
            hosts: Some("/run/crius/sb1/hosts".into()),
            resolv_conf: Some("/run/crius/sb1/resolv.conf".into()),
            hostname_file: Some("/run/crius/sb1/hostname".into()),
            cgroup_parent: "/kubepods/besteffort/poduid-1".into(),
            ..Default::default()
        },
        host: HostInfo {
            bounding_caps: bounding(),
            seccomp: true,
            ..Default::default()
        },
        target: None,
        profiles: PathBuf::from("/nonexistent-profiles"),
        handler: HandlerCaps::default(),
    }
}

impl Fixture {
    fn spec(&self) -> Result<Spec, SpecError> {
        container_spec(&SpecInput {
            container_id: "c1",
            config: &self.config,
            sandbox: &self.sandbox,
            image: &self.image,
            rootfs: self.rootfs.path(),
            pod: &self.pod,
            host: &self.host,
            target_pid_ns: self.target.clone(),
            seccomp_profile_root: &self.profiles,
            handler: self.handler,
        })
    }

    fn sc(&mut self) -> &mut LinuxContainerSecurityContext {
        self.config
            .linux
            .get_or_insert_with(Default::default)
            .security_context
            .get_or_insert_with(Default::default)
    }

    fn privileged_sandbox(&mut self) {
        self.sandbox.linux = Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                privileged: true,
                ..Default::default()
            }),
            ..Default::default()
        });
    }
}

fn process(s: &Spec) -> &Process {
    s.process().as_ref().unwrap()
}

fn linux(s: &Spec) -> &oci_spec::runtime::Linux {
    s.linux().as_ref().unwrap()
}

fn env(s: &Spec) -> Vec<String> {
    process(s).env().clone().unwrap()
}

fn mount<'a>(s: &'a Spec, dest: &str) -> Option<&'a Mount> {
    s.mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new(dest))
}

fn expect_field(r: Result<Spec, SpecError>, field: &str) -> SpecError {
    match r {
        Err(e) => {
            assert_eq!(e.field(), Some(field), "{e}");
            assert!(e.to_string().contains(field), "{e}");
            e
        }
        Ok(_) => panic!("expected an error naming {field}"),
    }
}

#[test]
fn args_from_image() {
    let f = fixture();
    let s = f.spec().unwrap();
    assert_eq!(
        process(&s).args().clone().unwrap(),
        vec!["/bin/entry", "serve", "--port=80"]
    );
}

#[test]
fn args_override_cmd_keep_entrypoint() {
    let mut f = fixture();
    f.config.args = vec!["debug".into()];
    let s = f.spec().unwrap();
    assert_eq!(
        process(&s).args().clone().unwrap(),
        vec!["/bin/entry", "debug"]
    );
}

#[test]
fn command_overrides_entrypoint_and_drops_cmd() {
    let mut f = fixture();
    f.config.command = vec!["/bin/sh".into()];
    let s = f.spec().unwrap();
    assert_eq!(process(&s).args().clone().unwrap(), vec!["/bin/sh"]);
    f.config.args = vec!["-c".into(), "true".into()];
    let s = f.spec().unwrap();
    assert_eq!(
        process(&s).args().clone().unwrap(),
        vec!["/bin/sh", "-c", "true"]
    );
}

#[test]
fn no_command_at_all_is_invalid() {
    let mut f = fixture();
    f.image.entrypoint.clear();
    f.image.cmd.clear();
    let err = expect_field(f.spec(), "command");
    assert!(matches!(err, SpecError::Invalid { .. }));
    // Args alone are a command.
    f.config.args = vec!["/bin/true".into()];
    assert_eq!(
        process(&f.spec().unwrap()).args().clone().unwrap(),
        vec!["/bin/true"]
    );
}

#[test]
fn env_merge() {
    let mut f = fixture();
    f.config.envs = vec![
        KeyValue {
            key: "MODE".into(),
            value: "cri".into(),
        },
        KeyValue {
            key: "NEW".into(),
            value: "a=b".into(),
        },
    ];
    let e = env(&f.spec().unwrap());
    assert_eq!(
        e,
        vec![
            "HOSTNAME=web-0",
            "PATH=/img/bin",
            "IMG=1",
            "MODE=cri",
            "NEW=a=b"
        ]
    );
    f.image.env.clear();
    f.config.envs.clear();
    let e = env(&f.spec().unwrap());
    assert_eq!(
        e,
        vec!["HOSTNAME=web-0".to_string(), format!("PATH={DEFAULT_PATH}")]
    );
}

#[test]
fn cwd_and_terminal() {
    let mut f = fixture();
    assert_eq!(process(&f.spec().unwrap()).cwd(), Path::new("/"));
    f.image.working_dir = "/srv".into();
    assert_eq!(process(&f.spec().unwrap()).cwd(), Path::new("/srv"));
    f.config.working_dir = "/work".into();
    f.config.tty = true;
    let s = f.spec().unwrap();
    assert_eq!(process(&s).cwd(), Path::new("/work"));
    assert_eq!(process(&s).terminal(), Some(true));
    f.config.working_dir = "work".into();
    expect_field(f.spec(), "working_dir");
}

#[test]
fn user_from_image_and_security_context() {
    let mut f = fixture();
    f.image.user = "alice".into();
    let s = f.spec().unwrap();
    let u = process(&s).user();
    assert_eq!((u.uid(), u.gid()), (1000, 1000));
    assert_eq!(u.additional_gids().clone().unwrap(), vec![10, 100, 1000]);

    f.sc().run_as_user = Some(Int64Value { value: 1001 });
    let s = f.spec().unwrap();
    let u = process(&s).user();
    assert_eq!((u.uid(), u.gid()), (1001, 100));

    f.sc().run_as_group = Some(Int64Value { value: 5000 });
    f.sc().supplemental_groups = vec![7, 100];
    let s = f.spec().unwrap();
    let u = process(&s).user();
    assert_eq!((u.uid(), u.gid()), (1001, 5000));
    assert_eq!(
        u.additional_gids().clone().unwrap(),
        vec![7, 10, 29, 100, 5000],
        "sorted, as the kernel keeps them"
    );

    f.sc().supplemental_groups_policy = SupplementalGroupsPolicy::Strict as i32;
    let s = f.spec().unwrap();
    assert_eq!(
        process(&s).user().additional_gids().clone().unwrap(),
        vec![7, 100, 5000]
    );
}

#[test]
fn run_as_username() {
    let mut f = fixture();
    f.sc().run_as_username = "bob".into();
    let s = f.spec().unwrap();
    assert_eq!(process(&s).user().uid(), 1001);
    f.sc().run_as_user = Some(Int64Value { value: 1000 });
    assert_eq!(
        process(&f.spec().unwrap()).user().uid(),
        1001,
        "the name wins"
    );
    f.sc().run_as_username = "mallory".into();
    match f.spec() {
        Err(SpecError::User { user, .. }) => assert_eq!(user, "mallory"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_user_fields() {
    let mut f = fixture();
    f.sc().run_as_group = Some(Int64Value { value: 5 });
    expect_field(f.spec(), "security_context.run_as_group");
    f.sc().run_as_user = Some(Int64Value { value: -1 });
    expect_field(f.spec(), "security_context.run_as_user");
    f.sc().run_as_user = Some(Int64Value { value: 1 });
    f.sc().supplemental_groups = vec![1 << 40];
    expect_field(f.spec(), "security_context.supplemental_groups[0]");
}

#[test]
fn default_caps_and_additions() {
    let mut f = fixture();
    let s = f.spec().unwrap();
    let caps = process(&s).capabilities().as_ref().unwrap();
    assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
    assert!(caps.inheritable().as_ref().unwrap().is_empty());
    f.sc().capabilities = Some(Capability {
        add_capabilities: vec!["NET_ADMIN".into()],
        drop_capabilities: vec!["CAP_KILL".into()],
        add_ambient_capabilities: vec![],
    });
    let s = f.spec().unwrap();
    let caps = process(&s).capabilities().as_ref().unwrap();
    let b = caps.bounding().as_ref().unwrap();
    assert!(b.contains(&oci_spec::runtime::Capability::NetAdmin));
    assert!(!b.contains(&oci_spec::runtime::Capability::Kill));
    f.sc().capabilities = Some(Capability {
        add_capabilities: vec!["WARP_DRIVE".into()],
        ..Default::default()
    });
    expect_field(
        f.spec(),
        "security_context.capabilities.add_capabilities[0]",
    );
}

#[test]
fn privileged_needs_privileged_sandbox() {
    let mut f = fixture();
    f.sc().privileged = true;
    let err = expect_field(f.spec(), "security_context.privileged");
    assert!(matches!(err, SpecError::Invalid { .. }));
}

#[test]
fn privileged_container() {
    let mut f = fixture();
    f.privileged_sandbox();
    f.sc().privileged = true;
    f.sc().seccomp = Some(SecurityProfile::default()); // RuntimeDefault, ignored when privileged
    let s = f.spec().unwrap();
    let caps = process(&s).capabilities().as_ref().unwrap();
    assert_eq!(caps.bounding().as_ref().unwrap().len(), bounding().len());
    let l = linux(&s);
    assert!(l.masked_paths().as_ref().unwrap().is_empty());
    assert!(l.readonly_paths().as_ref().unwrap().is_empty());
    assert!(l.seccomp().is_none());
    let sys = mount(&s, "/sys").unwrap();
    assert!(sys.options().as_ref().unwrap().contains(&"rw".to_string()));
    let rules = l.resources().as_ref().unwrap().devices().as_ref().unwrap();
    assert_eq!(rules.len(), 1);
    assert!(rules[0].allow() && rules[0].major().is_none());
    assert!(l
        .devices()
        .as_ref()
        .unwrap()
        .iter()
        .any(|d| d.path() == Path::new("/dev/null")));
}

#[test]
fn unprivileged_defaults() {
    let f = fixture();
    let s = f.spec().unwrap();
    let l = linux(&s);
    assert_eq!(
        l.masked_paths().as_ref().unwrap().len(),
        DEFAULT_MASKED_PATHS.len()
    );
    assert_eq!(
        l.readonly_paths().as_ref().unwrap().len(),
        DEFAULT_READONLY_PATHS.len()
    );
    let rules = l.resources().as_ref().unwrap().devices().as_ref().unwrap();
    assert!(!rules[0].allow());
    assert!(l.devices().as_ref().unwrap().is_empty());
    // Absent, not `false`: youki 0.7.0 reads a present `false` as set (see container.rs).
    assert_eq!(process(&s).no_new_privileges(), None);
    let json = serde_json::to_value(&s).unwrap();
    assert!(
        json["process"].get("noNewPrivileges").is_none(),
        "noNewPrivileges written for no_new_privs=false: {}",
        json["process"]
    );
    assert_eq!(s.root().as_ref().unwrap().readonly(), Some(false));
    assert_eq!(s.root().as_ref().unwrap().path(), f.rootfs.path());
    assert!(process(&s).rlimits().is_none());
    assert!(process(&s).oom_score_adj().is_none());
    assert!(l.seccomp().is_none(), "absent seccomp is unconfined");
}

#[test]
fn masked_and_readonly_from_context() {
    let mut f = fixture();
    f.sc().masked_paths = vec!["/proc/x".into()];
    f.sc().readonly_paths = vec!["/proc/y".into()];
    f.sc().no_new_privs = true;
    f.sc().readonly_rootfs = true;
    let s = f.spec().unwrap();
    let l = linux(&s);
    assert_eq!(l.masked_paths().clone().unwrap(), vec!["/proc/x"]);
    assert_eq!(l.readonly_paths().clone().unwrap(), vec!["/proc/y"]);
    assert_eq!(process(&s).no_new_privileges(), Some(true));
    assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
    let hosts = mount(&s, "/etc/hosts").unwrap();
    assert!(hosts
        .options()
        .as_ref()
        .unwrap()
        .contains(&"ro".to_string()));
}

#[test]
fn mounts_pod_files_and_cri() {
    let mut f = fixture();
    f.config.mounts = vec![
        CriMount {
            container_path: "/data/sub".into(),
            host_path: "/srv/sub".into(),
            ..Default::default()
        },
        CriMount {
            container_path: "/data".into(),
            host_path: "/srv/data".into(),
            readonly: true,
            ..Default::default()
        },
        CriMount {
            container_path: "/etc/hosts".into(),
            host_path: "/var/lib/kubelet/pods/x/etc-hosts".into(),
            ..Default::default()
        },
    ];
    let s = f.spec().unwrap();
    let ms = s.mounts().as_ref().unwrap();
    let pos = |d: &str| {
        ms.iter()
            .position(|m| m.destination() == Path::new(d))
            .unwrap()
    };
    assert!(pos("/data") < pos("/data/sub"), "parents first");
    assert_eq!(
        mount(&s, "/etc/hosts").unwrap().source().as_deref(),
        Some(Path::new("/var/lib/kubelet/pods/x/etc-hosts"))
    );
    assert_eq!(
        ms.iter()
            .filter(|m| m.destination() == Path::new("/etc/hosts"))
            .count(),
        1
    );
    assert!(mount(&s, "/etc/resolv.conf").is_some());
    assert!(mount(&s, "/etc/hostname").is_some());
    assert_eq!(
        mount(&s, "/dev/shm").unwrap().source().as_deref(),
        Some(Path::new("/run/crius/sb1/shm"))
    );
    assert!(linux(&s).rootfs_propagation().is_none());

    f.config.mounts = vec![CriMount {
        container_path: "/x".into(),
        host_path: "/a/../b".into(),
        ..Default::default()
    }];
    expect_field(f.spec(), "mounts[0].host_path");
}

#[test]
fn bidirectional_mount_makes_rootfs_shared() {
    let mut f = fixture();
    f.config.mounts = vec![CriMount {
        container_path: "/x".into(),
        host_path: "/y".into(),
        propagation: cri_api::v1::MountPropagation::PropagationBidirectional as i32,
        ..Default::default()
    }];
    let s = f.spec().unwrap();
    assert_eq!(linux(&s).rootfs_propagation().as_deref(), Some("rshared"));
    // A handler that takes only the plain (recursively applied) values gets those.
    f.handler.plain_rootfs_propagation = true;
    let s = f.spec().unwrap();
    assert_eq!(linux(&s).rootfs_propagation().as_deref(), Some("shared"));
    f.config.mounts[0].propagation =
        cri_api::v1::MountPropagation::PropagationHostToContainer as i32;
    let s = f.spec().unwrap();
    assert_eq!(linux(&s).rootfs_propagation().as_deref(), Some("slave"));
    f.handler.plain_rootfs_propagation = false;
    let s = f.spec().unwrap();
    assert_eq!(linux(&s).rootfs_propagation().as_deref(), Some("rslave"));
}

#[test]
fn host_ipc_uses_host_shm() {
    let mut f = fixture();
    f.pod.ipc_ns = None;
    f.pod.shm = None;
    let s = f.spec().unwrap();
    assert_eq!(
        mount(&s, "/dev/shm").unwrap().source().as_deref(),
        Some(Path::new("/dev/shm"))
    );
    assert!(linux(&s)
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .all(|n| n.typ() != LinuxNamespaceType::Ipc));
}

#[test]
fn private_ipc_gets_private_shm() {
    let mut f = fixture();
    f.sc().namespace_options.as_mut().unwrap().ipc = NamespaceMode::Container as i32;
    let s = f.spec().unwrap();
    assert_eq!(
        mount(&s, "/dev/shm").unwrap().typ().as_deref(),
        Some("tmpfs")
    );
    assert!(linux(&s)
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Ipc && n.path().is_none()));
}

#[test]
fn devices_in_spec() {
    let mut f = fixture();
    f.config.devices = vec![Device {
        container_path: "/dev/fast-null".into(),
        host_path: "/dev/null".into(),
        permissions: "rw".into(),
    }];
    let s = f.spec().unwrap();
    let l = linux(&s);
    let d = &l.devices().as_ref().unwrap()[0];
    assert_eq!(d.path(), Path::new("/dev/fast-null"));
    let rules = l.resources().as_ref().unwrap().devices().as_ref().unwrap();
    let last = rules.last().unwrap();
    assert_eq!((last.major(), last.minor()), (Some(1), Some(3)));
    assert_eq!(last.access().as_deref(), Some("rw"));
    f.config.devices[0].host_path = "/dev/does-not-exist".into();
    expect_field(f.spec(), "devices[0].host_path");
}

#[test]
fn namespaces_hostname_and_cgroups() {
    let f = fixture();
    let s = f.spec().unwrap();
    let ns = linux(&s).namespaces().clone().unwrap();
    let path = |t| {
        ns.iter()
            .find(|n| n.typ() == t)
            .and_then(|n| n.path().clone())
    };
    assert_eq!(
        path(LinuxNamespaceType::Network),
        Some("/run/crius/ns/net-sb1".into())
    );
    assert_eq!(
        path(LinuxNamespaceType::Uts),
        Some("/run/crius/ns/uts-sb1".into())
    );
    assert_eq!(s.hostname().as_deref(), Some("web-0"));
    assert_eq!(
        linux(&s).cgroups_path().as_deref(),
        Some(Path::new("/kubepods/besteffort/poduid-1/crius-c1"))
    );
}

#[test]
fn host_network_pod() {
    let mut f = fixture();
    f.pod.net_ns = None;
    f.pod.uts_ns = None;
    f.pod.cgroup_parent = String::new();
    f.sc().namespace_options = Some(NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    });
    let s = f.spec().unwrap();
    assert!(s.hostname().is_none());
    assert!(env(&s).contains(&"HOSTNAME=web-0".to_string()));
    assert_eq!(
        linux(&s).cgroups_path().as_deref(),
        Some(Path::new("/crius/crius-c1"))
    );
    f.pod.sysctls = [("net.core.somaxconn".to_string(), "1024".to_string())].into();
    expect_field(f.spec(), "sysctls[net.core.somaxconn]");
}

#[test]
fn sysctls_in_spec() {
    let mut f = fixture();
    f.pod.sysctls = [
        ("net.core.somaxconn".to_string(), "1024".to_string()),
        ("kernel.shmmax".to_string(), "65536".to_string()),
    ]
    .into();
    let s = f.spec().unwrap();
    let sys = linux(&s).sysctl().clone().unwrap();
    assert_eq!(sys.get("net.core.somaxconn").unwrap(), "1024");
    f.pod.sysctls = [("kernel.panic".to_string(), "1".to_string())].into();
    expect_field(f.spec(), "sysctls[kernel.panic]");
}

#[test]
fn target_pid_namespace() {
    let mut f = fixture();
    f.sc().namespace_options = Some(NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Target as i32,
        ipc: NamespaceMode::Pod as i32,
        target_id: "c0".into(),
        userns_options: None,
    });
    expect_field(f.spec(), "security_context.namespace_options.target_id");
    f.target = Some("/proc/99/ns/pid".into());
    let s = f.spec().unwrap();
    assert!(linux(&s)
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Pid
            && n.path().as_deref() == Some(Path::new("/proc/99/ns/pid"))));
    f.sc().namespace_options.as_mut().unwrap().userns_options = Some(UserNamespace {
        mode: NamespaceMode::Pod as i32,
        ..Default::default()
    });
    // POD in a pod that has no user namespace.
    let err = expect_field(
        f.spec(),
        "security_context.namespace_options.userns_options",
    );
    assert!(matches!(err, SpecError::Invalid { .. }));
}

#[test]
fn pod_user_namespace_is_joined_with_its_mappings() {
    let mut f = fixture();
    let map = crate::IdMap {
        container_id: 0,
        host_id: 100000,
        length: 65536,
    };
    f.pod.userns = Some(crate::UsernsContext {
        path: "/run/crius/pods/p/user".into(),
        map: crate::PodUserns {
            uids: vec![map],
            gids: vec![map],
        },
    });
    let s = f.spec().unwrap();
    let l = linux(&s);
    assert!(l
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User
            && n.path().as_deref() == Some(Path::new("/run/crius/pods/p/user"))));
    let u = &l.uid_mappings().as_ref().unwrap()[0];
    assert_eq!(
        (u.container_id(), u.host_id(), u.size()),
        (0, 100000, 65536)
    );
    assert_eq!(l.gid_mappings().as_ref().unwrap().len(), 1);
    f.sc().privileged = true;
    assert!(f.spec().is_err());
}

#[test]
fn resources_and_oom() {
    let mut f = fixture();
    f.host.current_oom_score_adj = 0;
    f.config.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        cpu_shares: 2,
        memory_limit_in_bytes: 1 << 30,
        oom_score_adj: -10,
        ..Default::default()
    });
    let s = f.spec().unwrap();
    let r = linux(&s).resources().as_ref().unwrap();
    assert_eq!(r.memory().as_ref().unwrap().limit(), Some(1 << 30));
    assert_eq!(r.cpu().as_ref().unwrap().shares(), Some(2));
    assert!(!r.devices().as_ref().unwrap().is_empty());
    assert_eq!(process(&s).oom_score_adj(), Some(0), "clamped to current");
    f.host.has_cap_sys_resource = true;
    assert_eq!(process(&f.spec().unwrap()).oom_score_adj(), Some(-10));
    f.config.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        unified: [("memory.max".to_string(), "1".to_string())].into(),
        ..Default::default()
    });
    expect_field(f.spec(), "resources.unified");
}

#[test]
fn seccomp_profiles() {
    let mut f = fixture();
    f.sc().seccomp = Some(SecurityProfile {
        profile_type: ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    let s = f.spec().unwrap();
    let sec = linux(&s).seccomp().as_ref().unwrap();
    assert_eq!(sec.default_action(), LinuxSeccompAction::ScmpActErrno);

    // Without seccomp in the kernel RuntimeDefault is skipped, Localhost is refused.
    f.host.seccomp = false;
    assert!(linux(&f.spec().unwrap()).seccomp().is_none());
    f.sc().seccomp = Some(SecurityProfile {
        profile_type: ProfileType::Localhost as i32,
        localhost_ref: "/x.json".into(),
    });
    let err = expect_field(f.spec(), "security_context.seccomp");
    assert!(matches!(err, SpecError::Unsupported { .. }));
    f.host.seccomp = true;

    // Localhost: absolute path, must exist and parse.
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("audit.json");
    std::fs::write(
        &good,
        r#"{"defaultAction":"SCMP_ACT_LOG","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    f.sc().seccomp = Some(SecurityProfile {
        profile_type: ProfileType::Localhost as i32,
        localhost_ref: good.to_string_lossy().into_owned(),
    });
    let s = f.spec().unwrap();
    assert_eq!(
        linux(&s).seccomp().as_ref().unwrap().default_action(),
        LinuxSeccompAction::ScmpActLog
    );
    f.sc().seccomp.as_mut().unwrap().localhost_ref = dir
        .path()
        .join("missing.json")
        .to_string_lossy()
        .into_owned();
    let err = expect_field(f.spec(), "security_context.seccomp");
    assert!(matches!(err, SpecError::Invalid { .. }));
    std::fs::write(dir.path().join("bad.json"), "{nope").unwrap();
    f.sc().seccomp.as_mut().unwrap().localhost_ref =
        dir.path().join("bad.json").to_string_lossy().into_owned();
    expect_field(f.spec(), "security_context.seccomp");

    // The structured reference must be absolute, even when the file exists under the root.
    f.profiles = dir.path().to_path_buf();
    f.sc().seccomp.as_mut().unwrap().localhost_ref = "audit.json".into();
    let err = expect_field(f.spec(), "security_context.seccomp");
    assert!(err.to_string().contains("absolute"), "{err}");

    // Unconfined.
    f.sc().seccomp = Some(SecurityProfile {
        profile_type: ProfileType::Unconfined as i32,
        localhost_ref: String::new(),
    });
    assert!(linux(&f.spec().unwrap()).seccomp().is_none());
}

#[test]
#[allow(deprecated)]
fn seccomp_deprecated_path() {
    let mut f = fixture();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.json"),
        r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#,
    )
    .unwrap();
    f.profiles = dir.path().to_path_buf();
    for (path, some) in [
        ("runtime/default", true),
        ("docker/default", true),
        ("unconfined", false),
        ("localhost/p.json", true),
    ] {
        f.sc().seccomp_profile_path = path.into();
        assert_eq!(
            linux(&f.spec().unwrap()).seccomp().is_some(),
            some,
            "{path}"
        );
    }
    f.sc().seccomp_profile_path = "localhost/../p.json".into();
    expect_field(f.spec(), "security_context.seccomp");
    f.sc().seccomp_profile_path = "bogus".into();
    expect_field(f.spec(), "security_context.seccomp_profile_path");
    // The structured field wins.
    f.sc().seccomp = Some(SecurityProfile {
        profile_type: ProfileType::Unconfined as i32,
        localhost_ref: String::new(),
    });
    assert!(linux(&f.spec().unwrap()).seccomp().is_none());
}

#[test]
fn seccomp_default_follows_caps() {
    let mut f = fixture();
    f.sc().seccomp = Some(SecurityProfile::default());
    f.sc().capabilities = Some(Capability {
        add_capabilities: vec!["SYS_ADMIN".into()],
        ..Default::default()
    });
    let s = f.spec().unwrap();
    let names: Vec<String> = linux(&s)
        .seccomp()
        .as_ref()
        .unwrap()
        .syscalls()
        .as_ref()
        .unwrap()
        .iter()
        .filter(|r| r.args().is_none() && r.action() == LinuxSeccompAction::ScmpActAllow)
        .flat_map(|r| r.names().clone())
        .collect();
    assert!(names.contains(&"mount".to_string()));
}

#[test]
#[allow(deprecated)]
fn apparmor_profiles() {
    let mut f = fixture();
    // No AppArmor on the host.
    for t in [ProfileType::RuntimeDefault, ProfileType::Unconfined] {
        f.sc().apparmor = Some(SecurityProfile {
            profile_type: t as i32,
            localhost_ref: String::new(),
        });
        assert!(process(&f.spec().unwrap()).apparmor_profile().is_none());
    }
    f.sc().apparmor = Some(SecurityProfile {
        profile_type: ProfileType::Localhost as i32,
        localhost_ref: "my-profile".into(),
    });
    let err = expect_field(f.spec(), "security_context.apparmor");
    assert!(matches!(err, SpecError::Unsupported { .. }));
    // AppArmor host.
    f.host.apparmor = true;
    assert_eq!(
        process(&f.spec().unwrap()).apparmor_profile().as_deref(),
        Some("my-profile")
    );
    f.sc().apparmor = None;
    assert_eq!(
        process(&f.spec().unwrap()).apparmor_profile().as_deref(),
        Some(DEFAULT_APPARMOR_PROFILE)
    );
    f.sc().apparmor_profile = "unconfined".into();
    assert!(process(&f.spec().unwrap()).apparmor_profile().is_none());
    f.sc().apparmor_profile = "weird".into();
    expect_field(f.spec(), "security_context.apparmor_profile");
}

#[test]
fn selinux_options() {
    let mut f = fixture();
    f.sc().selinux_options = Some(SeLinuxOption {
        level: "s0:c1,c2".into(),
        ..Default::default()
    });
    f.spec().unwrap();
    f.host.selinux = true;
    // Applied by the daemon; here only the form is checked.
    f.spec().unwrap();
    f.sc().selinux_options = Some(SeLinuxOption {
        r#type: "container_t:s0".into(),
        ..Default::default()
    });
    let err = expect_field(f.spec(), "security_context.selinux_options.type");
    assert!(matches!(err, SpecError::Invalid { .. }));
    f.sc().selinux_options = Some(SeLinuxOption {
        level: "s0 c1".into(),
        ..Default::default()
    });
    expect_field(f.spec(), "security_context.selinux_options.level");
}

#[test]
fn unimplemented_fields_are_named() {
    let mut f = fixture();
    f.config.cdi_devices = vec![CdiDevice {
        name: "vendor.com/gpu=0".into(),
    }];
    expect_field(f.spec(), "CDI_devices");
    f.config.cdi_devices.clear();
    f.config.windows = Some(WindowsContainerConfig::default());
    expect_field(f.spec(), "windows");
}

#[test]
fn annotations() {
    let f = fixture();
    let s = f.spec().unwrap();
    let a = s.annotations().as_ref().unwrap();
    assert_eq!(a[ann::CONTAINER_TYPE], "container");
    assert_eq!(a[ann::SANDBOX_ID], "sb1");
    assert_eq!(a[ann::CONTAINER_NAME], "app");
    assert_eq!(a[ann::IMAGE_NAME], "docker.io/library/busybox:latest");
    assert_eq!(a[ann::SANDBOX_NAME], "web");
    assert_eq!(a[ann::SANDBOX_NAMESPACE], "default");
}

#[test]
fn spec_round_trips_as_json() {
    let f = fixture();
    let s = f.spec().unwrap();
    let text = serde_json::to_string(&s).unwrap();
    let back: Spec = serde_json::from_str(&text).unwrap();
    assert_eq!(back, s);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["process"]["user"]["uid"], 0);
    assert!(v["linux"]["cgroupsPath"].is_string());
}

fn pod_sandbox(f: &Fixture) -> Result<Spec, SpecError> {
    pause_spec(
        &f.pod,
        &f.sandbox,
        &f.host,
        Path::new("/run/crius/pause"),
        vec!["/pause".into()],
    )
}

#[test]
fn pause_spec_basics() {
    let mut f = fixture();
    f.host.current_oom_score_adj = -500;
    let s = pod_sandbox(&f).unwrap();
    let p = process(&s);
    assert_eq!(p.args().clone().unwrap(), vec!["/pause"]);
    assert!(p
        .capabilities()
        .as_ref()
        .unwrap()
        .bounding()
        .as_ref()
        .unwrap()
        .is_empty());
    assert_eq!(p.oom_score_adj(), Some(-500));
    assert_eq!(p.no_new_privileges(), Some(true));
    assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
    let ns = linux(&s).namespaces().clone().unwrap();
    let pid = ns
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Pid)
        .unwrap();
    assert!(
        pid.path().is_none(),
        "pause creates the pod's pid namespace"
    );
    assert!(ns
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_some()));
    assert_eq!(
        linux(&s).cgroups_path().as_deref(),
        Some(Path::new("/kubepods/besteffort/poduid-1/crius-sb1"))
    );
    assert_eq!(
        s.annotations().as_ref().unwrap()[ann::CONTAINER_TYPE],
        "sandbox"
    );
    f.host.has_cap_sys_resource = true;
    assert_eq!(
        process(&pod_sandbox(&f).unwrap()).oom_score_adj(),
        Some(SANDBOX_OOM_SCORE_ADJ)
    );
    let err = pause_spec(&f.pod, &f.sandbox, &f.host, Path::new("/r"), vec![]).unwrap_err();
    assert_eq!(err.field(), Some("pause_args"));
}

#[test]
fn pause_spec_user_and_seccomp() {
    let mut f = fixture();
    f.sandbox.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            run_as_user: Some(Int64Value { value: 65535 }),
            run_as_group: Some(Int64Value { value: 65534 }),
            seccomp: Some(SecurityProfile::default()),
            ..Default::default()
        }),
        ..Default::default()
    });
    let s = pod_sandbox(&f).unwrap();
    let u = process(&s).user();
    assert_eq!((u.uid(), u.gid()), (65535, 65534));
    assert!(linux(&s).seccomp().is_some());
}

fn sandbox_with(sc: LinuxSandboxSecurityContext) -> PodSandboxConfig {
    PodSandboxConfig {
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(sc),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn sandbox_field(cfg: &PodSandboxConfig, host: &HostInfo) -> Option<String> {
    validate_sandbox_config(cfg, host)
        .err()
        .and_then(|e| e.field().map(String::from))
}

#[test]
fn sandbox_validation() {
    let host = HostInfo {
        seccomp: true,
        ..Default::default()
    };
    validate_sandbox_config(&PodSandboxConfig::default(), &host).unwrap();
    let ns = |network: NamespaceMode, pid: NamespaceMode, ipc: NamespaceMode| {
        sandbox_with(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                network: network as i32,
                pid: pid as i32,
                ipc: ipc as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
    };
    use NamespaceMode::*;
    validate_sandbox_config(&ns(Node, Node, Node), &host).unwrap();
    validate_sandbox_config(&ns(Pod, Pod, Pod), &host).unwrap();
    assert_eq!(
        sandbox_field(&ns(Pod, Target, Pod), &host).as_deref(),
        Some("linux.security_context.namespace_options.pid")
    );
    assert_eq!(
        sandbox_field(&ns(Container, Pod, Pod), &host).as_deref(),
        Some("linux.security_context.namespace_options.network")
    );
    assert_eq!(
        sandbox_field(&ns(Pod, Pod, Target), &host).as_deref(),
        Some("linux.security_context.namespace_options.ipc")
    );
    let userns = sandbox_with(LinuxSandboxSecurityContext {
        namespace_options: Some(NamespaceOption {
            userns_options: Some(UserNamespace {
                mode: Pod as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        sandbox_field(&userns, &host).as_deref(),
        Some("linux.security_context.namespace_options.userns_options.uids")
    );
    let group_only = sandbox_with(LinuxSandboxSecurityContext {
        run_as_group: Some(Int64Value { value: 1 }),
        ..Default::default()
    });
    assert_eq!(
        sandbox_field(&group_only, &host).as_deref(),
        Some("linux.security_context.run_as_group")
    );
    let bad_user = sandbox_with(LinuxSandboxSecurityContext {
        run_as_user: Some(Int64Value { value: -3 }),
        ..Default::default()
    });
    assert_eq!(
        sandbox_field(&bad_user, &host).as_deref(),
        Some("linux.security_context.run_as_user")
    );
}

#[test]
fn sandbox_validation_sysctls_and_profiles() {
    let host = HostInfo {
        seccomp: true,
        ..Default::default()
    };
    let mut cfg = sandbox_with(LinuxSandboxSecurityContext {
        namespace_options: Some(NamespaceOption {
            network: NamespaceMode::Node as i32,
            pid: NamespaceMode::Container as i32,
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let linux = cfg.linux.as_mut().unwrap();
    linux.sysctls = [("net.ipv4.ip_forward".to_string(), "1".to_string())].into();
    assert_eq!(
        sandbox_field(&cfg, &host).as_deref(),
        Some("linux.sysctls[net.ipv4.ip_forward]")
    );
    let linux = cfg.linux.as_mut().unwrap();
    linux.sysctls = [("kernel.msgmax".to_string(), "1".to_string())].into();
    validate_sandbox_config(&cfg, &host).unwrap();

    let apparmor = sandbox_with(LinuxSandboxSecurityContext {
        apparmor: Some(SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: "p".into(),
        }),
        ..Default::default()
    });
    assert_eq!(
        sandbox_field(&apparmor, &host).as_deref(),
        Some("linux.security_context.apparmor")
    );
    let selinux = sandbox_with(LinuxSandboxSecurityContext {
        selinux_options: Some(SeLinuxOption {
            r#type: "spc_t".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    validate_sandbox_config(&selinux, &host).unwrap();
    let se_host = HostInfo {
        selinux: true,
        ..host.clone()
    };
    validate_sandbox_config(&selinux, &se_host).unwrap();
    let bad_selinux = sandbox_with(LinuxSandboxSecurityContext {
        selinux_options: Some(SeLinuxOption {
            user: "a b".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    validate_sandbox_config(&bad_selinux, &host).unwrap();
    assert_eq!(
        sandbox_field(&bad_selinux, &se_host).as_deref(),
        Some("linux.security_context.selinux_options.user")
    );

    let mut res = PodSandboxConfig {
        linux: Some(LinuxPodSandboxConfig {
            resources: Some(LinuxContainerResources {
                unified: [("cpu.max".to_string(), "max".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        sandbox_field(&res, &host).as_deref(),
        Some("linux.resources.unified")
    );
    res.linux.as_mut().unwrap().resources = None;
    res.linux.as_mut().unwrap().cgroup_parent = "/kubepods/../../etc".into();
    assert_eq!(
        sandbox_field(&res, &host).as_deref(),
        Some("linux.cgroup_parent")
    );
    let win = PodSandboxConfig {
        windows: Some(Default::default()),
        ..Default::default()
    };
    assert_eq!(sandbox_field(&win, &host).as_deref(), Some("windows"));
}
