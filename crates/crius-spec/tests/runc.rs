//! Runs specs built by crius-spec with the real runc and a busybox rootfs, and checks from
//! inside the container that the spec meant what it said (user, groups, caps, seccomp, OOM
//! score, memory limit, read-only rootfs, cwd, env, hostname, pid 1).
//!
//! Needs root, /usr/sbin/runc and /bin/busybox (a static busybox). Set CRIUS_SKIP_RUNC_TESTS=1
//! to skip on machines without them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cri_api::v1::{
    security_profile::ProfileType, ContainerConfig, ContainerMetadata, Device, Int64Value,
    KeyValue, LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    Mount as CriMount, NamespaceMode, NamespaceOption, PodSandboxConfig, SecurityProfile,
};
use crius_spec::{
    cap_names_from_mask, caps::DEFAULT_CAPS, container_spec, HandlerCaps, HostInfo, ImageDefaults,
    PodContext, SpecInput,
};

const RUNC: &str = "/usr/sbin/runc";
const BUSYBOX: &str = "/bin/busybox";

fn skip() -> bool {
    if std::env::var_os("CRIUS_SKIP_RUNC_TESTS").is_some() {
        eprintln!("CRIUS_SKIP_RUNC_TESTS set: skipping");
        return true;
    }
    false
}

struct Bundle {
    dir: tempfile::TempDir,
    id: String,
    runc_root: PathBuf,
}

impl Bundle {
    fn new(tag: &str) -> Bundle {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "mnt", "data"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("mkdir rootfs");
        }
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox");
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).expect("symlink sh");
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:app:/home/app:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(
            rootfs.join("etc/group"),
            "root:x:0:\napp:x:1234:\nextra:x:4321:app\n",
        )
        .expect("group");
        let runc_root = dir.path().join("runc-root");
        let id = format!("crius-spec-{tag}-{}", std::process::id());
        Bundle { dir, id, runc_root }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// `runc run` in the foreground; stdout of the container is returned.
    fn run(&self, spec: &oci_spec::runtime::Spec) -> (bool, String, String) {
        let text = serde_json::to_string_pretty(spec).expect("spec json");
        std::fs::write(self.dir.path().join("config.json"), text).expect("config.json");
        let mut child = Command::new(RUNC)
            .arg("--root")
            .arg(&self.runc_root)
            .args(["run", "--bundle"])
            .arg(self.dir.path())
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn runc");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if child.try_wait().expect("wait runc").is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("runc output");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = Command::new(RUNC)
            .arg("--root")
            .arg(&self.runc_root)
            .args(["delete", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // The cgroup parent is per test: remove it from every v1 hierarchy (best effort).
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir(e.path().join(&self.id));
            }
        }
    }
}

fn value<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in output:\n{out}"))
        .trim()
}

#[test]
fn unprivileged_container_under_runc() {
    if skip() {
        return;
    }
    let bundle = Bundle::new("unpriv");
    let host = HostInfo::probe().expect("probe host");
    let script = "\
        echo uid=$(busybox id -u); echo gid=$(busybox id -g); echo groups=$(busybox id -G); \
        echo cwd=$(pwd); echo foo=$FOO; echo host=$(busybox hostname); \
        echo pid=$$; \
        echo capbnd=$(busybox grep CapBnd /proc/self/status | busybox cut -f2); \
        echo seccomp=$(busybox grep '^Seccomp:' /proc/self/status | busybox cut -f2); \
        echo oom=$(busybox cat /proc/self/oom_score_adj); \
        echo mem=$(busybox cat /sys/fs/cgroup/memory/memory.limit_in_bytes); \
        if busybox touch /rootfile 2>/dev/null; then echo root=rw; else echo root=ro; fi; \
        if busybox touch /data/x 2>/dev/null; then echo data=rw; else echo data=ro; fi; \
        if busybox cat /proc/kcore >/dev/null 2>&1; then echo kcore=open; else echo kcore=masked; fi; \
        echo null=$(busybox stat -c %t:%T /dev/mynull); \
        if [ -c /dev/kmsg ]; then echo kmsg=yes; else echo kmsg=no; fi; \
        echo done";
    let data = tempfile::tempdir().expect("data dir");
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "probe".into(),
            attempt: 0,
        }),
        command: vec![
            "/bin/busybox".into(),
            "sh".into(),
            "-c".into(),
            script.into(),
        ],
        working_dir: "/tmp".into(),
        envs: vec![KeyValue {
            key: "FOO".into(),
            value: "bar baz".into(),
        }],
        mounts: vec![CriMount {
            container_path: "/data".into(),
            host_path: data.path().to_string_lossy().into_owned(),
            readonly: true,
            ..Default::default()
        }],
        devices: vec![Device {
            container_path: "/dev/mynull".into(),
            host_path: "/dev/null".into(),
            permissions: "rwm".into(),
        }],
        linux: Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                oom_score_adj: 500,
                ..Default::default()
            }),
            security_context: Some(LinuxContainerSecurityContext {
                run_as_username: "app".into(),
                supplemental_groups: vec![555],
                readonly_rootfs: true,
                no_new_privs: true,
                seccomp: Some(SecurityProfile {
                    profile_type: ProfileType::RuntimeDefault as i32,
                    localhost_ref: String::new(),
                }),
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let pod = PodContext {
        sandbox_id: "sb".into(),
        hostname: "probe-host".into(),
        // Host network and UTS keep the test off any real network; a private pid and IPC
        // namespace still come from the container's own options.
        cgroup_parent: format!("/{}", bundle.id),
        ..Default::default()
    };
    let image = ImageDefaults::default();
    let sandbox = PodSandboxConfig::default();
    let rootfs = bundle.rootfs();
    let input = SpecInput {
        container_id: "c",
        config: &config,
        sandbox: &sandbox,
        image: &image,
        rootfs: &rootfs,
        pod: &pod,
        host: &host,
        target_pid_ns: None,
        seccomp_profile_root: Path::new("/nonexistent"),
        handler: HandlerCaps::default(),
    };

    // Figure: cost of building a full spec (user lookup in the rootfs included).
    let n = 200;
    let start = Instant::now();
    for _ in 0..n {
        container_spec(&input).expect("container_spec");
    }
    eprintln!(
        "container_spec: {:.1} µs per call (debug build, {n} calls)",
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    );

    let spec = container_spec(&input).expect("container_spec");
    let (ok, out, err) = bundle.run(&spec);
    assert!(ok, "runc run failed:\nstdout:\n{out}\nstderr:\n{err}");
    assert_eq!(value(&out, "uid="), "1234");
    assert_eq!(value(&out, "gid="), "1234");
    let groups: BTreeSet<&str> = value(&out, "groups=").split_whitespace().collect();
    assert_eq!(groups, BTreeSet::from(["1234", "4321", "555"]));
    assert_eq!(value(&out, "cwd="), "/tmp");
    assert_eq!(value(&out, "foo="), "bar baz");
    assert_eq!(value(&out, "pid="), "1", "private pid namespace");
    // Seccomp mode 2 = filter installed.
    assert_eq!(value(&out, "seccomp="), "2");
    let bnd = u64::from_str_radix(value(&out, "capbnd="), 16).expect("CapBnd hex");
    let got: BTreeSet<String> = cap_names_from_mask(bnd).into_iter().collect();
    let want: BTreeSet<String> = DEFAULT_CAPS
        .iter()
        .map(|c| c.to_string())
        .filter(|c| host.bounding_caps.contains(c))
        .collect();
    assert_eq!(got, want);
    // Raising the score needs no privilege; it must be exactly what was asked.
    assert_eq!(value(&out, "oom="), "500");
    assert_eq!(value(&out, "mem="), (64u64 << 20).to_string());
    assert_eq!(value(&out, "root="), "ro");
    assert_eq!(value(&out, "data="), "ro");
    assert_eq!(value(&out, "kcore="), "masked");
    assert_eq!(value(&out, "null="), "1:3");
    assert_eq!(value(&out, "kmsg="), "no");
    assert_eq!(value(&out, "done"), "");
}

/// unshare(CLONE_NEWUSER) needs no capability, so only seccomp can refuse it: Unconfined
/// must allow it (the precondition that makes this test meaningful), RuntimeDefault must
/// refuse it, and RuntimeDefault with CAP_SYS_ADMIN added must allow it again.
#[test]
fn seccomp_runtime_default_filters_by_capability() {
    if skip() {
        return;
    }
    let bundle = Bundle::new("seccomp");
    let host = HostInfo::probe().expect("probe host");
    let script = "\
        if busybox unshare -U true 2>/dev/null; then echo unshare=allowed; else echo unshare=denied; fi; \
        echo uid=$(busybox id -u)";
    let run = |seccomp: ProfileType, add: &[&str]| {
        let config = ContainerConfig {
            command: vec![
                "/bin/busybox".into(),
                "sh".into(),
                "-c".into(),
                script.into(),
            ],
            linux: Some(LinuxContainerConfig {
                resources: None,
                security_context: Some(LinuxContainerSecurityContext {
                    run_as_user: Some(Int64Value { value: 0 }),
                    capabilities: Some(cri_api::v1::Capability {
                        add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                        ..Default::default()
                    }),
                    seccomp: Some(SecurityProfile {
                        profile_type: seccomp as i32,
                        localhost_ref: String::new(),
                    }),
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Node as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let pod = PodContext {
            sandbox_id: "sb".into(),
            hostname: "h".into(),
            cgroup_parent: format!("/{}", bundle.id),
            ..Default::default()
        };
        let rootfs = bundle.rootfs();
        let spec = container_spec(&SpecInput {
            container_id: "c",
            config: &config,
            sandbox: &PodSandboxConfig::default(),
            image: &ImageDefaults::default(),
            rootfs: &rootfs,
            pod: &pod,
            host: &host,
            target_pid_ns: None,
            seccomp_profile_root: Path::new("/nonexistent"),
            handler: HandlerCaps::default(),
        })
        .expect("container_spec");
        let (ok, out, err) = bundle.run(&spec);
        assert!(ok, "runc run failed:\nstdout:\n{out}\nstderr:\n{err}");
        assert_eq!(value(&out, "uid="), "0");
        value(&out, "unshare=").to_string()
    };
    assert_eq!(run(ProfileType::Unconfined, &[]), "allowed");
    assert_eq!(run(ProfileType::RuntimeDefault, &[]), "denied");
    assert_eq!(run(ProfileType::RuntimeDefault, &["SYS_ADMIN"]), "allowed");
}

/// The pause process spec: pid 1 of a new pid namespace, no capabilities at all, read-only
/// rootfs, OOM score clamped to what the daemon may set.
#[test]
fn pause_spec_under_runc() {
    if skip() {
        return;
    }
    let bundle = Bundle::new("pause");
    let host = HostInfo::probe().expect("probe host");
    let pod = PodContext {
        sandbox_id: "sb".into(),
        hostname: "h".into(),
        cgroup_parent: format!("/{}", bundle.id),
        ..Default::default()
    };
    let script = "echo pid=$$; \
        echo capbnd=$(busybox grep CapBnd /proc/self/status | busybox cut -f2); \
        echo nnp=$(busybox grep NoNewPrivs /proc/self/status | busybox cut -f2); \
        echo oom=$(busybox cat /proc/self/oom_score_adj); \
        if busybox touch /x 2>/dev/null; then echo root=rw; else echo root=ro; fi";
    let spec = crius_spec::pause_spec(
        &pod,
        &PodSandboxConfig::default(),
        &host,
        &bundle.rootfs(),
        vec![
            "/bin/busybox".into(),
            "sh".into(),
            "-c".into(),
            script.into(),
        ],
    )
    .expect("pause_spec");
    let (ok, out, err) = bundle.run(&spec);
    assert!(ok, "runc run failed:\nstdout:\n{out}\nstderr:\n{err}");
    assert_eq!(value(&out, "pid="), "1");
    assert_eq!(u64::from_str_radix(value(&out, "capbnd="), 16).unwrap(), 0);
    assert_eq!(value(&out, "nnp="), "1");
    let want = if host.has_cap_sys_resource {
        crius_spec::SANDBOX_OOM_SCORE_ADJ
    } else {
        crius_spec::SANDBOX_OOM_SCORE_ADJ.max(host.current_oom_score_adj)
    };
    assert_eq!(value(&out, "oom="), want.to_string());
    assert_eq!(value(&out, "root="), "ro");
}

/// A privileged container gets the daemon's bounding set, writable /sys and the host's
/// devices; runc must accept the (large) device list.
#[test]
fn privileged_container_under_runc() {
    if skip() {
        return;
    }
    let bundle = Bundle::new("priv");
    let host = HostInfo::probe().expect("probe host");
    let script = "\
        echo capbnd=$(busybox grep CapBnd /proc/self/status | busybox cut -f2); \
        echo sys=$(busybox awk '$2==\"/sys\" {print $4}' /proc/self/mounts | busybox cut -d, -f1); \
        if [ -c /dev/kmsg ]; then echo kmsg=yes; else echo kmsg=no; fi; \
        echo seccomp=$(busybox grep '^Seccomp:' /proc/self/status | busybox cut -f2)";
    let config = ContainerConfig {
        command: vec![
            "/bin/busybox".into(),
            "sh".into(),
            "-c".into(),
            script.into(),
        ],
        linux: Some(LinuxContainerConfig {
            resources: None,
            security_context: Some(LinuxContainerSecurityContext {
                privileged: true,
                seccomp: Some(SecurityProfile::default()),
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let sandbox = PodSandboxConfig {
        linux: Some(cri_api::v1::LinuxPodSandboxConfig {
            security_context: Some(cri_api::v1::LinuxSandboxSecurityContext {
                privileged: true,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = PodContext {
        sandbox_id: "sb".into(),
        hostname: "h".into(),
        cgroup_parent: format!("/{}", bundle.id),
        ..Default::default()
    };
    let rootfs = bundle.rootfs();
    let spec = container_spec(&SpecInput {
        container_id: "c",
        config: &config,
        sandbox: &sandbox,
        image: &ImageDefaults::default(),
        rootfs: &rootfs,
        pod: &pod,
        host: &host,
        target_pid_ns: None,
        seccomp_profile_root: Path::new("/nonexistent"),
        handler: HandlerCaps::default(),
    })
    .expect("container_spec");
    let (ok, out, err) = bundle.run(&spec);
    assert!(ok, "runc run failed:\nstdout:\n{out}\nstderr:\n{err}");
    let bnd = u64::from_str_radix(value(&out, "capbnd="), 16).expect("CapBnd hex");
    let got: BTreeSet<String> = cap_names_from_mask(bnd).into_iter().collect();
    let want: BTreeSet<String> = host.bounding_caps.iter().cloned().collect();
    assert_eq!(got, want);
    assert_eq!(value(&out, "sys="), "rw");
    // runc creates only the standard nodes itself; kmsg comes from the host device list.
    if Path::new("/dev/kmsg").exists() {
        assert_eq!(value(&out, "kmsg="), "yes");
    }
    assert_eq!(value(&out, "seccomp="), "0", "privileged is never filtered");
}

/// Stand-in for a pod: a process holding new net/IPC/UTS/pid namespaces (`unshare --fork`
/// makes its child pid 1 of the new pid namespace). Killed on drop.
struct PodNamespaces {
    holder: std::process::Child,
    pid1: u32,
}

impl PodNamespaces {
    fn new() -> PodNamespaces {
        let holder = Command::new("unshare")
            .args([
                "--net", "--ipc", "--uts", "--pid", "--fork", BUSYBOX, "sleep", "60",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare");
        let children = format!("/proc/{}/task/{}/children", holder.id(), holder.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid1 = loop {
            let text = std::fs::read_to_string(&children).unwrap_or_default();
            if let Some(p) = text.split_whitespace().next() {
                // The child exists; wait until it has exec'd sleep (its ns are final then).
                let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
                if comm.trim() == "busybox" {
                    break p.parse::<u32>().expect("pid");
                }
            }
            assert!(Instant::now() < deadline, "namespace holder did not start");
            std::thread::sleep(Duration::from_millis(10));
        };
        PodNamespaces { holder, pid1 }
    }

    fn ns(&self, kind: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{kind}", self.pid1))
    }
}

impl Drop for PodNamespaces {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) of the child process this test spawned.
        unsafe {
            libc::kill(self.pid1 as i32, libc::SIGKILL);
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A container joins the pod's network, IPC and UTS namespaces by path and a target
/// container's pid namespace; the hostname and the pod sysctls land in the pod's namespaces,
/// not on the host, and /dev/shm is the pod's.
#[test]
fn joins_pod_namespaces_under_runc() {
    if skip() {
        return;
    }
    let bundle = Bundle::new("podns");
    let pod_ns = PodNamespaces::new();
    let host = HostInfo::probe().expect("probe host");
    let shm = tempfile::tempdir().expect("shm dir");
    std::fs::write(shm.path().join("marker"), "from-pod").expect("marker");
    let host_somaxconn =
        std::fs::read_to_string("/proc/sys/net/core/somaxconn").expect("somaxconn");
    let host_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let wanted_somaxconn = if host_somaxconn.trim() == "1234" {
        "1235"
    } else {
        "1234"
    };

    let script = "\
        echo host=$(busybox hostname); \
        echo somaxconn=$(busybox cat /proc/sys/net/core/somaxconn); \
        echo shmmni=$(busybox cat /proc/sys/kernel/shmmni); \
        echo marker=$(busybox cat /dev/shm/marker); \
        echo pid=$$; \
        echo init=$(busybox cat /proc/1/comm); \
        echo ifaces=$(busybox ls /sys/class/net | busybox tr '\\n' ' ')";
    let config = ContainerConfig {
        command: vec![
            "/bin/busybox".into(),
            "sh".into(),
            "-c".into(),
            script.into(),
        ],
        linux: Some(LinuxContainerConfig {
            resources: None,
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Target as i32,
                    ipc: NamespaceMode::Pod as i32,
                    target_id: "other".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let pod = PodContext {
        sandbox_id: "sb".into(),
        hostname: "pod-host".into(),
        net_ns: Some(pod_ns.ns("net")),
        ipc_ns: Some(pod_ns.ns("ipc")),
        uts_ns: Some(pod_ns.ns("uts")),
        shm: Some(shm.path().to_path_buf()),
        cgroup_parent: format!("/{}", bundle.id),
        sysctls: [
            (
                "net.core.somaxconn".to_string(),
                wanted_somaxconn.to_string(),
            ),
            ("kernel.shmmni".to_string(), "1000".to_string()),
        ]
        .into(),
        ..Default::default()
    };
    let rootfs = bundle.rootfs();
    let spec = container_spec(&SpecInput {
        container_id: "c",
        config: &config,
        sandbox: &PodSandboxConfig::default(),
        image: &ImageDefaults::default(),
        rootfs: &rootfs,
        pod: &pod,
        host: &host,
        target_pid_ns: Some(pod_ns.ns("pid")),
        seccomp_profile_root: Path::new("/nonexistent"),
        handler: HandlerCaps::default(),
    })
    .expect("container_spec");
    let (ok, out, err) = bundle.run(&spec);
    assert!(ok, "runc run failed:\nstdout:\n{out}\nstderr:\n{err}");
    assert_eq!(value(&out, "host="), "pod-host");
    assert_eq!(value(&out, "somaxconn="), wanted_somaxconn);
    assert_eq!(value(&out, "shmmni="), "1000");
    assert_eq!(value(&out, "marker="), "from-pod");
    assert_ne!(
        value(&out, "pid="),
        "1",
        "joined the target's pid namespace"
    );
    assert_eq!(value(&out, "init="), "busybox", "the holder is pid 1");
    assert_eq!(value(&out, "ifaces="), "lo", "only the pod netns loopback");
    // Nothing leaked onto the host.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap(),
        host_somaxconn
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_hostname
    );
}

/// A localhost profile in the Docker format (archMap, includes/excludes) is converted and
/// enforced by runc: mkdir is refused with EACCES, everything else allowed.
#[test]
fn docker_format_localhost_profile_under_runc() {
    if skip() {
        return;
    }
    let bundle = Bundle::new("dockerprof");
    let host = HostInfo::probe().expect("probe host");
    let profiles = tempfile::tempdir().expect("profiles dir");
    let profile = profiles.path().join("no-mkdir.json");
    let (arch, subs): (&str, &[&str]) = match std::env::consts::ARCH {
        "x86_64" => ("SCMP_ARCH_X86_64", &["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
        "aarch64" => ("SCMP_ARCH_AARCH64", &["SCMP_ARCH_ARM"]),
        other => panic!("add the seccomp arch names of {other}"),
    };
    let text = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": arch, "subArchitectures": subs}],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "args": [], "comment": "", "includes": {}, "excludes": {}},
            // Only for a capability the container lacks: must be dropped by the conversion.
            {"names": ["getpid"], "action": "SCMP_ACT_KILL",
             "includes": {"caps": ["CAP_SYS_MODULE"]}}
        ]
    });
    std::fs::write(&profile, text.to_string()).expect("write profile");
    let script = "\
        if busybox mkdir /tmp/d 2>/tmp/err; then echo mkdir=ok; else echo mkdir=$(busybox cat /tmp/err); fi; \
        echo pid=$$";
    let config = ContainerConfig {
        command: vec![
            "/bin/busybox".into(),
            "sh".into(),
            "-c".into(),
            script.into(),
        ],
        linux: Some(LinuxContainerConfig {
            resources: None,
            security_context: Some(LinuxContainerSecurityContext {
                seccomp: Some(SecurityProfile {
                    profile_type: ProfileType::Localhost as i32,
                    localhost_ref: profile.to_string_lossy().into_owned(),
                }),
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        mounts: vec![CriMount {
            container_path: "/tmp".into(),
            host_path: profiles.path().to_string_lossy().into_owned(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let pod = PodContext {
        sandbox_id: "sb".into(),
        hostname: "h".into(),
        cgroup_parent: format!("/{}", bundle.id),
        ..Default::default()
    };
    let rootfs = bundle.rootfs();
    let spec = container_spec(&SpecInput {
        container_id: "c",
        config: &config,
        sandbox: &PodSandboxConfig::default(),
        image: &ImageDefaults::default(),
        rootfs: &rootfs,
        pod: &pod,
        host: &host,
        target_pid_ns: None,
        seccomp_profile_root: Path::new("/nonexistent"),
        handler: HandlerCaps::default(),
    })
    .expect("container_spec");
    let (ok, out, err) = bundle.run(&spec);
    assert!(ok, "runc run failed:\nstdout:\n{out}\nstderr:\n{err}");
    assert!(
        value(&out, "mkdir=").contains("Permission denied"),
        "mkdir must fail with EACCES (13):\n{out}"
    );
    assert_eq!(value(&out, "pid="), "1");
    assert!(!profiles.path().join("d").exists());
}
