//! crius under a real systemd. The test boots a "systemd node" (scripts/systemd-node.sh: Debian 12's
//! systemd as PID 1 in new PID, mount, UTS, IPC and cgroup namespaces, the way kind node images run, on
//! the rootfs cached by scripts/build-systemd-node.sh), installs the packaged crius.service in it and runs
//! the daemon there with the systemd cgroup driver, then drives it over gRPC through a socket bind-mounted
//! out of the node. It checks what only a real systemd can show: containers become scopes in the pod's
//! slice (systemd's own view and the cgroup files), stats and updates use the unit's cgroup, and
//! `systemctl restart` / `systemctl kill` of the service leave containers running and recovered.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cri_api::v1 as cri;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(name)
}

/// A running node; dropping it kills everything in it and removes its cgroups, mounts and dir.
struct Node {
    dir: PathBuf,
}

impl Node {
    fn boot(dir: &Path, selinux_marker: bool) -> Node {
        let st = Command::new(script("build-systemd-node.sh"))
            .status()
            .expect("run scripts/build-systemd-node.sh");
        assert!(st.success(), "scripts/build-systemd-node.sh failed");
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_crius")).parent().unwrap();
        let out = Command::new(script("systemd-node.sh"))
            .env(
                "CRIUS_NODE_SELINUX_MARKER",
                if selinux_marker { "1" } else { "" },
            )
            .arg("start")
            .arg(dir)
            .arg(bin_dir)
            .output()
            .expect("run scripts/systemd-node.sh");
        let node = Node {
            dir: dir.to_path_buf(),
        };
        assert!(
            out.status.success(),
            "node start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        node
    }

    /// Runs `sh -c cmd` inside the node: (success, stdout + stderr).
    fn sh(&self, cmd: &str) -> (bool, String) {
        let out = Command::new(script("systemd-node.sh"))
            .arg("exec")
            .arg(&self.dir)
            .args(["sh", "-c", cmd])
            .output()
            .expect("run scripts/systemd-node.sh exec");
        let mut text = String::from_utf8_lossy(&out.stdout).to_string();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    fn must(&self, cmd: &str) -> String {
        let (ok, text) = self.sh(cmd);
        assert!(ok, "in the node: {cmd}: {text}");
        text
    }

    /// The host path of the node's `/crius-out`.
    fn out(&self) -> PathBuf {
        self.dir.join("out")
    }

    fn journal(&self, unit: &str) -> String {
        self.sh(&format!("journalctl -u {unit} --no-pager -n 60")).1
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::env::var_os("CRIUS_SYSTEMD_NODE_KEEP").is_some() && std::thread::panicking() {
            eprintln!(
                "systemd node kept for inspection: scripts/systemd-node.sh exec|stop {}",
                self.dir.display()
            );
            return;
        }
        let st = Command::new(script("systemd-node.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
        if !matches!(st, Ok(s) if s.success()) && !std::thread::panicking() {
            panic!("systemd node teardown failed: {st:?}");
        }
    }
}

fn config(driver: &str) -> String {
    format!(
        "root = \"/var/lib/crius/root\"\nstate = \"/run/crius\"\nlisten = \"/crius-out/crius.sock\"\n\
         registry_config_dir = \"/etc/crius/certs.d\"\ncni_conf_dir = \"/etc/cni/net.d\"\n\
         cni_bin_dir = [\"/usr/lib/cni\"]\nlog_level = \"info\"\n{driver}\n"
    )
}

/// The node's view of a process' cgroup in `hierarchy` (`name=systemd`, `memory`, ...).
fn cgroup_of(node: &Node, pid: i64, hierarchy: &str) -> String {
    let text = node.must(&format!("cat /proc/{pid}/cgroup"));
    text.lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctl, path) = (parts.next()?, parts.next()?, parts.next()?);
            (ctl == hierarchy).then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {hierarchy} line in /proc/{pid}/cgroup: {text}"))
}

/// Every hierarchy the node mounts places the process in `path` (the kill, stats and update paths all
/// depend on it: runc finds a container's processes through its devices cgroup, for one).
fn assert_in(node: &Node, pid: i64, path: &str, when: &str) {
    for h in [
        "name=systemd",
        "memory",
        "pids",
        "cpu",
        "cpuacct",
        "cpuset",
        "blkio",
        "devices",
        "freezer",
        "",
    ] {
        assert_eq!(
            cgroup_of(node, pid, h),
            path,
            "{h} cgroup of pid {pid} {when}"
        );
    }
}

fn main_pid(node: &Node) -> i64 {
    node.must("systemctl show -p MainPID --value crius")
        .trim()
        .parse()
        .expect("MainPID")
}

async fn wait_active(node: &Node, old_pid: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, _) = node.sh("systemctl is-active --quiet crius");
        let pid = main_pid(node);
        if ok && pid > 0 && pid != old_pid {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "crius.service not active again: {}",
            node.journal("crius")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn attach(node: &Node) -> common::Daemon {
    let _ = std::fs::remove_file(node.out().join("crius.sock"));
    common::Daemon::attach(
        node.out(),
        node.out().join("crius.sock"),
        node.out().join("crius.toml"),
    )
    .await
}

/// Waits for the node's boot, then installs the packaged crius.service (unchanged; the binaries come
/// from the build, bind-mounted at /opt/crius/bin) with `config` and starts it.
fn install_crius(node: &Node, config_keys: &str) {
    let state = node.must("systemctl is-system-running --wait || true");
    assert!(
        ["running", "degraded"].contains(&state.trim()),
        "the node's systemd did not finish booting: {state}\n{}",
        node.sh("systemctl --failed --no-pager").1
    );
    assert_eq!(node.must("cat /proc/1/comm").trim(), "systemd");
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/crius.service"),
    )
    .unwrap();
    std::fs::write(node.out().join("crius.service"), unit).unwrap();
    std::fs::write(node.out().join("crius.toml"), config(config_keys)).unwrap();
    let reg = common::registry();
    std::fs::write(
        node.out().join("hosts.toml"),
        format!("server = \"http://{reg}\"\n\n[host.\"http://{reg}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
    )
    .unwrap();
    node.must(&format!(
        "set -e; ln -sf /opt/crius/bin/crius /usr/bin/crius; mkdir -p /etc/crius/certs.d/{reg} /etc/cni/net.d; \
         cp /crius-out/hosts.toml /etc/crius/certs.d/{reg}/hosts.toml; cp /crius-out/crius.toml /etc/crius/crius.toml; \
         cp /crius-out/crius.service /etc/systemd/system/crius.service; systemctl daemon-reload; \
         systemctl enable --now crius"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crius_runs_under_a_real_systemd() {
    let t0 = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("crius-sdnode-")
        .tempdir_in("/tmp")
        .unwrap()
        .keep();
    let node = Node::boot(&dir, false);
    install_crius(&node, "cgroup_driver = \"systemd\"");
    eprintln!("node booted, crius installed in {:?}", t0.elapsed());
    let pid0 = wait_active(&node, 0).await;
    let mut d = attach(&node).await;

    let rc =
        d.rt.runtime_config(cri::RuntimeConfigRequest {})
            .await
            .unwrap()
            .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        cri::CgroupDriver::Systemd as i32
    );
    d.pull(&common::image("busybox:latest")).await;

    // A pod as the kubelet's systemd driver names it: the slice of a burstable pod.
    // The kubelet's naming: the pod's uid with '-' as '_' in the slice name.
    let uid = format!("{:08x}-aaaa-bbbb", std::process::id());
    let slice = format!("kubepods-burstable-pod{}.slice", uid.replace('-', "_"));
    let mut pod_cfg = common::pod_config("sd", true, Path::new("/var/log/pods/sd"));
    pod_cfg.metadata.as_mut().unwrap().uid = uid.clone();
    pod_cfg.linux.as_mut().unwrap().cgroup_parent = slice.clone();
    // A shared PID namespace, so the pod has a pause process that must survive the service too.
    pod_cfg
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .pid = cri::NamespaceMode::Pod as i32;
    let pod =
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", node.journal("crius")))
        .into_inner()
        .pod_sandbox_id;
    let cfg = common::container_config("c", &common::image("busybox:latest"), &["sleep", "3600"]);
    let ctr = d
        .create(&pod, &pod_cfg, cfg)
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", node.journal("crius")));
    d.start_ctr(&ctr).await;
    let pid = d.pid_of(&ctr).await;
    let pod_info =
        d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    let pause = serde_json::from_str::<serde_json::Value>(&pod_info["info"]).unwrap()["pid"]
        .as_i64()
        .unwrap_or(0);
    assert!(pause > 0, "no pause process: {pod_info:?}");

    // The container is the scope crius-<id>.scope in the pod's slice: in the cgroup files and for systemd.
    let scope = format!("crius-{ctr}.scope");
    let path = format!("/kubepods.slice/kubepods-burstable.slice/{slice}/{scope}");
    assert_in(&node, pid, &path, "after start");
    // The scope's device rules apply to what runs in the container (an exec joins the scope's cgroups;
    // the init's own placement is what assert_in checks): a block device it may mknod cannot be opened.
    let r = d
        .exec(
            &ctr,
            &["sh", "-c", "mknod /tmp/blk b 7 0 && head -c 1 /tmp/blk"],
            10,
        )
        .await
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        r.exit_code != 0 && out.contains("Operation not permitted"),
        "device access inside the scope: {out}"
    );
    assert_eq!(
        node.must(&format!("systemctl is-active {scope}")).trim(),
        "active"
    );
    assert_eq!(
        node.must(&format!("systemctl show -p Slice --value {scope}"))
            .trim(),
        slice
    );
    let status = node.must(&format!("systemctl status --no-pager {scope} || true"));
    assert!(status.contains(&format!("{pid} ")), "{status}");

    // Stats come from the unit's cgroup.
    let stats =
        d.rt.container_stats(cri::ContainerStatsRequest {
            container_id: ctr.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("ContainerStats: {e}\n{}", node.journal("crius")))
        .into_inner()
        .stats
        .unwrap();
    let usage = node.must(&format!(
        "cat /sys/fs/cgroup/memory{path}/memory.usage_in_bytes"
    ));
    let mem = stats.memory.unwrap();
    let got = mem.usage_bytes.unwrap().value;
    assert!(got > 0, "memory usage from the scope: {mem:?}");
    let want: u64 = usage.trim().parse().unwrap();
    assert!(
        got.abs_diff(want) < 4 << 20,
        "ContainerStats memory {got} vs the scope's memory.usage_in_bytes {want}"
    );

    // Pod stats come from the pod's slice.
    let pstats =
        d.rt.pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("PodSandboxStats: {e}\n{}", node.journal("crius")))
        .into_inner()
        .stats
        .unwrap();
    let slice_path = path.trim_end_matches(&format!("/{scope}")).to_string();
    let slice_usage: u64 = node
        .must(&format!(
            "cat /sys/fs/cgroup/memory{slice_path}/memory.usage_in_bytes"
        ))
        .trim()
        .parse()
        .unwrap();
    let pod_mem = pstats
        .linux
        .and_then(|l| l.memory)
        .and_then(|m| m.usage_bytes)
        .map(|v| v.value)
        .unwrap_or(0);
    assert!(
        pod_mem > 0 && pod_mem.abs_diff(slice_usage) < 4 << 20,
        "PodSandboxStats memory {pod_mem} vs the slice's memory.usage_in_bytes {slice_usage}"
    );

    // Updates land in the unit's cgroup (runc --systemd-cgroup sets them through systemd).
    d.rt.update_container_resources(cri::UpdateContainerResourcesRequest {
        container_id: ctr.clone(),
        linux: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 96 << 20,
            cpu_period: 100_000,
            cpu_quota: 50_000,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("UpdateContainerResources: {e}\n{}", node.journal("crius")));
    assert_eq!(
        node.must(&format!(
            "cat /sys/fs/cgroup/memory{path}/memory.limit_in_bytes"
        ))
        .trim(),
        (96u64 << 20).to_string()
    );
    assert_eq!(
        node.must(&format!("cat /sys/fs/cgroup/cpu{path}/cpu.cfs_quota_us"))
            .trim(),
        "50000"
    );
    assert_in(&node, pid, &path, "after UpdateContainerResources");

    // `systemctl restart crius`: KillMode=process signals the daemon only; the container runs on and
    // the new daemon recovers it.
    node.must("systemctl restart crius");
    let pid1 = wait_active(&node, pid0).await;
    drop(d);
    let mut d = attach(&node).await;
    node.must(&format!("kill -0 {pid} && kill -0 {pause}"));
    let s = d.status(&ctr).await;
    assert_eq!(s.state, cri::ContainerState::ContainerRunning as i32);
    assert_eq!(d.pid_of(&ctr).await, pid);
    assert_in(&node, pid, &path, "after systemctl restart crius");
    let r = d.exec(&ctr, &["echo", "after-restart"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "after-restart");

    // Every process of the service's cgroup killed (systemctl kill, as KillMode=control-group would):
    // the container, its monitor and the pod live outside it; Restart=always brings crius back.
    node.must("systemctl kill --signal=KILL crius");
    let members = node.must("systemctl show -p ControlGroup --value crius");
    let pid2 = wait_active(&node, pid1).await;
    drop(d);
    let mut d = attach(&node).await;
    node.must(&format!("kill -0 {pid} && kill -0 {pause}"));
    assert_eq!(
        d.status(&ctr).await.state,
        cri::ContainerState::ContainerRunning as i32,
        "after killing {members}"
    );
    assert_in(&node, pid, &path, "after systemctl kill crius");

    // `auto` picks systemd because systemd is PID 1 here.
    std::fs::write(
        node.out().join("crius.toml"),
        config("cgroup_driver = \"auto\""),
    )
    .unwrap();
    node.must("cp /crius-out/crius.toml /etc/crius/crius.toml && systemctl restart crius");
    wait_active(&node, pid2).await;
    drop(d);
    let mut d = attach(&node).await;
    let rc =
        d.rt.runtime_config(cri::RuntimeConfigRequest {})
            .await
            .unwrap()
            .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        cri::CgroupDriver::Systemd as i32
    );
    let ctr2 = d.run(&pod, &pod_cfg, "c2", &["sleep", "3600"]).await;
    let pid_c2 = d.pid_of(&ctr2).await;
    assert_in(&node, pid, &path, "after a second container started");
    assert_eq!(
        cgroup_of(&node, pid_c2, "name=systemd"),
        format!("/kubepods.slice/kubepods-burstable.slice/{slice}/crius-{ctr2}.scope")
    );

    // Removing the pod removes its scopes.
    d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    for id in [&ctr, &ctr2] {
        let (active, _) = node.sh(&format!("systemctl is-active --quiet crius-{id}.scope"));
        assert!(!active, "scope of {id} still active after RemovePodSandbox");
    }
    // For the record: whether systemd migrated an init out of its scope this time (crius moved it back).
    let moved = node
        .sh("journalctl -u crius --no-pager -o cat | grep 'moved back' || true")
        .1;
    eprintln!("crius' repairs of container placement:\n{moved}");
    drop(d);
    drop(node);
    eprintln!("systemd node test took {:?}", t0.elapsed());
}

/// The MCS level crius recorded for a pod (inside the node).
fn pod_level(node: &Node, pod: &str) -> String {
    node.must(&format!("cat /run/crius/pods/{pod}/selinux-level"))
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// `selinux = true`, as far as a kernel without SELinux allows. The node has an `/sys/fs/selinux/enforce`
/// marker but no selinuxfs: crius' probe sees an SELinux host and labels; the real runc sees none and
/// refuses a spec that carries labels ("selinux label is specified in config, but selinux is disabled"),
/// which is what this test relies on to show the labels reached the runtime. What runs for real: the
/// daemon's level per pod (recorded, shared by its containers, distinct between pods, kept across a
/// restart), the `security.selinux` relabel of a `selinux_relabel` volume (real xattrs on ext4) and not
/// of the others. No container runs labelled and no label is enforced anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selinux_labels_reach_the_runtime_and_the_volumes() {
    let dir = tempfile::Builder::new()
        .prefix("crius-sdnode-")
        .tempdir_in("/tmp")
        .unwrap()
        .keep();
    let node = Node::boot(&dir, true);
    install_crius(&node, "cgroup_driver = \"systemd\"\nselinux = true");
    let pid0 = wait_active(&node, 0).await;
    let mut d = attach(&node).await;
    let info =
        d.rt.status(cri::StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner()
            .info;
    let se: serde_json::Value = serde_json::from_str(&info["selinux"]).unwrap();
    assert_eq!(se["enabled"], true, "{se}");
    d.pull(&common::image("busybox:latest")).await;

    // Volumes on the node's /var/lib/crius, which is the host's ext4 (DIR/crius-root): xattrs readable
    // from here.
    node.must(
        "mkdir -p /var/lib/crius/vol/relabel/sub /var/lib/crius/vol/plain && \
         touch /var/lib/crius/vol/relabel/sub/f",
    );
    let host_vol = dir.join("crius-root/vol");
    let mut pods = Vec::new();
    for name in ["sea", "seb"] {
        let uid = format!("{name}{:08x}", std::process::id());
        let log_dir = Path::new("/var/log/pods").join(name);
        let mut cfg = common::pod_config(name, true, &log_dir);
        cfg.linux.as_mut().unwrap().cgroup_parent = format!("kubepods-besteffort-pod{uid}.slice");
        let id =
            d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(cfg.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", node.journal("crius")))
            .into_inner()
            .pod_sandbox_id;
        pods.push((id, cfg));
    }
    let img = common::image("busybox:latest");
    let mut with_volume = common::container_config("v", &img, &["sleep", "3600"]);
    with_volume.mounts = vec![
        cri::Mount {
            container_path: "/relabel".into(),
            host_path: "/var/lib/crius/vol/relabel".into(),
            selinux_relabel: true,
            ..Default::default()
        },
        cri::Mount {
            container_path: "/plain".into(),
            host_path: "/var/lib/crius/vol/plain".into(),
            ..Default::default()
        },
    ];
    let refused = |r: Result<String, tonic::Status>| {
        let e = r.expect_err("runc without SELinux must refuse a labelled spec");
        assert!(
            e.message().contains("selinux label is specified"),
            "not runc's refusal of the labels: {e}"
        );
    };
    refused(d.create(&pods[0].0, &pods[0].1, with_volume).await);
    let la = pod_level(&node, &pods[0].0);
    assert!(
        la.starts_with("s0:c") && la.contains(",c"),
        "pod level {la:?}"
    );
    // The relabelled volume carries the pod's mount label throughout; the other is untouched.
    let mount_label = format!("system_u:object_r:container_file_t:{la}");
    for p in ["relabel", "relabel/sub", "relabel/sub/f"] {
        assert_eq!(
            crius::selinux_labels::get_label(&host_vol.join(p)).unwrap(),
            Some(mount_label.clone()),
            "{p}"
        );
    }
    assert_eq!(
        crius::selinux_labels::get_label(&host_vol.join("plain")).unwrap(),
        None
    );
    let plain = || common::container_config("p", &img, &["sleep", "3600"]);
    refused(d.create(&pods[0].0, &pods[0].1, plain()).await);
    assert_eq!(pod_level(&node, &pods[0].0), la, "one level per pod");
    refused(d.create(&pods[1].0, &pods[1].1, plain()).await);
    let lb = pod_level(&node, &pods[1].0);
    assert_ne!(lb, la, "pods get distinct levels");

    // A restarted daemon keeps each pod's level.
    node.must("systemctl restart crius");
    wait_active(&node, pid0).await;
    drop(d);
    let mut d = attach(&node).await;
    refused(d.create(&pods[1].0, &pods[1].1, plain()).await);
    assert_eq!(
        pod_level(&node, &pods[1].0),
        lb,
        "the pod's level survives a restart"
    );
    d.cleanup().await;
    drop(d);
    drop(node);
}
