//! Pods on a sandbox handler (gVisor's runsc): one sandbox per pod, as gVisor's own CRI integration
//! expects. RunPodSandbox starts the sandbox with a root container (id = the pod's id, a process that
//! only holds it) in the pod's network namespace; every container of the pod joins that sandbox
//! through the annotations containerd sends runsc (`io.kubernetes.cri.container-type` = sandbox |
//! container, `io.kubernetes.cri.sandbox-id`). The root container has its own monitor (state dir
//! `<pod dir>/sandbox`), which reaps the sandbox process when it ends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crius_oci::Handler;

use crate::error::{io_err, Error, Result};
use crate::pod::SandboxRecord;
use crate::shared::Shared;

pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// The container runtimes' default capability set, given to the holder of the sandbox.
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The root container's bundle and monitor state.
pub fn dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("sandbox")
}

/// Whether the pod's sandbox is still there (its root container's monitor runs).
pub fn alive(pod_dir: &Path) -> bool {
    crius_oci::monitor_alive(&dir(pod_dir)).is_some()
}

/// The annotations that make a container join the pod's sandbox.
pub fn annotate(spec: &mut oci_spec::runtime::Spec, pod_id: &str) {
    let mut a = spec.annotations().clone().unwrap_or_default();
    a.insert(CONTAINER_TYPE.into(), "container".into());
    a.insert(SANDBOX_ID.into(), pod_id.into());
    spec.set_annotations(Some(a));
}

/// Whether the pod shares one PID namespace among its containers.
pub fn pod_shares_pid(cfg: &cri_api::v1::PodSandboxConfig) -> bool {
    cfg.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .is_some_and(|n| n.pid == cri_api::v1::NamespaceMode::Pod as i32)
}

/// A container in the pod's PID namespace: inside a gVisor sandbox that is the root container's,
/// which runsc gives a container whose spec names no PID namespace (the holder is its pid 1).
pub fn share_pid_namespace(spec: &mut oci_spec::runtime::Spec) {
    if let Some(linux) = spec.linux_mut() {
        if let Some(ns) = linux.namespaces_mut() {
            ns.retain(|n| n.typ() != oci_spec::runtime::LinuxNamespaceType::Pid);
        }
    }
}

/// Capabilities of this host's kernel that runsc 20221219 does not know (its start fails on them).
const UNKNOWN_TO_GVISOR: &[oci_spec::runtime::Capability] = &[
    oci_spec::runtime::Capability::Perfmon,
    oci_spec::runtime::Capability::Bpf,
    oci_spec::runtime::Capability::CheckpointRestore,
];

/// `add_capabilities: [ALL]` means every capability the runtime has: the host's list minus what
/// gVisor does not implement.
pub fn drop_unknown_caps(spec: &mut oci_spec::runtime::Spec) {
    let Some(process) = spec.process_mut() else {
        return;
    };
    let Some(mut caps) = process.capabilities().clone() else {
        return;
    };
    let strip = |set: &Option<oci_spec::runtime::Capabilities>| {
        set.clone().map(|mut s| {
            for c in UNKNOWN_TO_GVISOR {
                s.remove(c);
            }
            s
        })
    };
    caps.set_bounding(strip(caps.bounding()));
    caps.set_effective(strip(caps.effective()));
    caps.set_permitted(strip(caps.permitted()));
    caps.set_inheritable(strip(caps.inheritable()));
    caps.set_ambient(strip(caps.ambient()));
    process.set_capabilities(Some(caps));
}

fn bundle(rt: &Shared, rec: &SandboxRecord, hostname: &str) -> Result<serde_json::Value> {
    let d = dir(&rt.pod_dir(&rec.id));
    let rootfs = d.join("rootfs");
    let mk = |p: &Path| std::fs::create_dir_all(p).map_err(|e| io_err("create", p, e));
    mk(&rootfs.join("proc"))?;
    mk(&rootfs.join("dev"))?;
    let mut mounts = vec![
        serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        serde_json::json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
    ];
    // The holder process is the host's `sleep`: bind what it needs read-only.
    for top in ["usr", "bin", "lib", "lib64"] {
        let host = Path::new("/").join(top);
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        let at = rootfs.join(top);
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&host).map_err(|e| io_err("read link", &host, e))?;
            if std::fs::symlink_metadata(&at).is_err() {
                std::os::unix::fs::symlink(&target, &at).map_err(|e| io_err("symlink", &at, e))?;
            }
        } else if meta.is_dir() {
            mk(&at)?;
            mounts.push(
                serde_json::json!({"destination": format!("/{top}"), "type": "bind",
                "source": host, "options": ["rbind", "ro", "nosuid", "nodev"]}),
            );
        }
    }
    let mut namespaces = vec![
        serde_json::json!({"type": "pid"}),
        serde_json::json!({"type": "ipc"}),
        serde_json::json!({"type": "uts"}),
        serde_json::json!({"type": "mount"}),
    ];
    if let Some(net) = &rec.pins.net {
        namespaces.push(serde_json::json!({"type": "network", "path": net}));
    }
    let cgroups_path = if rt.cgroup_driver == crate::cgroups::systemd::Driver::Systemd {
        crate::cgroups::systemd::cgroups_path(&rec.cgroup_parent, &rec.id)
            .map_err(|e| Error::invalid("linux.cgroup_parent", e))?
    } else {
        let parent = rec.cgroup_parent.trim_end_matches('/');
        let parent = if parent.is_empty() { "/crius" } else { parent };
        format!("{parent}/crius-{}", rec.id)
    };
    Ok(serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            // runsc gives the sandbox process the host capabilities of its root container, and
            // with --network=host binding a port below 1024 happens on the host: the default set.
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/sleep", "infinity"],
            "env": ["PATH=/usr/bin:/bin"],
            "cwd": "/",
            "noNewPrivileges": true,
            "capabilities": {"bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS, "permitted": DEFAULT_CAPS}
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": hostname,
        "mounts": mounts,
        "annotations": {CONTAINER_TYPE: "sandbox", SANDBOX_ID: rec.id},
        "linux": {"cgroupsPath": cgroups_path, "namespaces": namespaces}
    }))
}

/// Starts the pod's sandbox (its root container). On error the caller's teardown runs [`stop`].
pub async fn start(
    rt: &Shared,
    rec: &SandboxRecord,
    handler: &Handler,
    hostname: &str,
) -> Result<()> {
    let d = dir(&rt.pod_dir(&rec.id));
    std::fs::create_dir_all(&d).map_err(|e| io_err("create sandbox dir", &d, e))?;
    let spec = bundle(rt, rec, hostname)?;
    let path = d.join("config.json");
    let json = serde_json::to_vec_pretty(&spec)
        .map_err(|e| Error::internal("serialise sandbox spec", e))?;
    crate::perms::write_private(&path, &json)
        .map_err(|e| io_err("write sandbox spec", &path, e))?;
    let mcfg = crius_oci::MonitorConfig {
        monitor_binary: rt.cfg.monitor_binary(),
        id: rec.id.clone(),
        bundle: d.clone(),
        state_dir: d.clone(),
        log_path: None,
        log_dir: None,
        tty: false,
        stdin: false,
        stdin_once: false,
        oom_file: None,
        create_timeout: Duration::from_secs(60),
        join_cgroups: rt.monitor_cgroups.clone(),
        start_by_monitor: false,
    };
    crate::metrics::trace::child(
        "OCI create sandbox",
        vec![],
        crius_oci::spawn_monitor(handler, &mcfg),
    )
    .await
    .map_err(Error::from)?;
    crate::metrics::trace::child("OCI start sandbox", vec![], handler.start(&rec.id))
        .await
        .map_err(Error::from)
}

/// Ends the pod's sandbox and everything in it; idempotent.
/// `containers`: the ids of the pod's containers crius still knows (the caller's, from the container
/// table, which the pod service does not read).
pub async fn stop(rt: &Shared, pod_id: &str, handler: &Handler, containers: &[String]) {
    // The pod's containers leave runsc's state first: once the sandbox is gone runsc can no longer
    // delete them (it cannot reach the sandbox's control server).
    for c in containers {
        if let Err(e) = handler.delete(c, true).await {
            tracing::warn!("pod {pod_id}: delete container {c} before its sandbox: {e}");
        }
    }
    if let Err(e) = handler.kill(pod_id, libc::SIGKILL, true).await {
        tracing::warn!("pod {pod_id}: kill sandbox: {e}");
    }
    if let Err(e) = handler.delete(pod_id, true).await {
        tracing::warn!("pod {pod_id}: delete sandbox: {e}");
    }
    let d = dir(&rt.pod_dir(pod_id));
    if let Some(pid) = crius_oci::monitor_alive(&d) {
        if tokio::time::timeout(Duration::from_secs(10), crius_oci::wait_pid_exit(pid))
            .await
            .is_err()
        {
            tracing::warn!("pod {pod_id}: sandbox monitor {pid} still running 10s after delete");
        }
    }
}
