//! What a node operator sees: the printed default config is a config the daemon accepts, the log has no
//! colour codes off a terminal and can be JSON, `crictl info` gets JSON objects, a bare streaming IP works.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cri_api::v1 as cri;

fn crius() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crius"))
}

#[tokio::test]
async fn the_default_config_starts_the_daemon_unchanged() {
    let out = crius().args(["config", "default"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("crius-e2e-defcfg-")
        .tempdir_in("/tmp")
        .unwrap();
    let file = dir.path().join("crius.toml");
    std::fs::write(&file, &text).unwrap();
    // Only the directories move (flags); the file is used as printed.
    let state = dir.path().join("state");
    let net = dir.path().join("net.d");
    std::fs::create_dir_all(&net).unwrap();
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut child = crius()
        .arg("daemon")
        .arg("--config")
        .arg(&file)
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--state")
        .arg(&state)
        .arg("--cni-conf-dir")
        .arg(&net)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let sock = state.join("crius.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    let version = loop {
        if let Ok(ch) = crius::client::connect(&sock).await {
            let mut rt = cri::runtime_service_client::RuntimeServiceClient::new(ch);
            if let Ok(v) = rt.version(cri::VersionRequest::default()).await {
                break v.into_inner();
            }
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "daemon exited ({st}) with the printed default config:\n{}\n{text}",
                std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "daemon did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(version.runtime_name, "crius");
    // SAFETY: kill(2) on the pid of the child this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn text_logs_carry_no_colour_codes_off_a_terminal() {
    let d = common::Daemon::start().await;
    let log = d.log();
    assert!(log.contains("serving the CRI"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escape in a log file:\n{log}");
    d.shutdown().await;
}

#[tokio::test]
async fn json_logs_and_a_bare_streaming_ip() {
    let mut d = common::Daemon::start_with(common::Options {
        extra_config: "log_format = \"json\"\nstreaming_address = \"127.0.0.1\"\n".into(),
        ..Default::default()
    })
    .await;
    let info =
        d.rt.status(cri::StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner()
            .info;
    let streaming: serde_json::Value = serde_json::from_str(&info["streamingServer"]).unwrap();
    let url = streaming["url"].as_str().unwrap().to_string();
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    assert!(url.starts_with("http://127.0.0.1:") && port != 0, "{url}");
    let log = d.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
    }
    assert!(lines.iter().any(|l| l.contains("serving the CRI")), "{log}");
    d.shutdown().await;
}

/// crictl (cri-tools 1.36, unpacked by scripts/critest.sh) shows info values that are JSON objects as
/// objects and anything else as a string.
#[tokio::test]
async fn crictl_info_shows_json_objects() {
    let crictl = common::test_dir().join("cri-tools/crictl");
    if !crictl.exists() {
        eprintln!(
            "SKIPPED: {} absent (scripts/critest.sh unpacks it)",
            crictl.display()
        );
        return;
    }
    let d = common::Daemon::start().await;
    let out = Command::new(&crictl)
        .arg("--runtime-endpoint")
        .arg(format!("unix://{}", d.socket.display()))
        .arg("info")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (k, v) in info.as_object().unwrap() {
        assert!(v.is_object(), "crictl info key {k} is not an object: {v}");
    }
    // An empty CNI conf dir: crius' native network (network_backend = auto).
    assert_eq!(info["cni"]["config"]["source"], "Native", "{info}");
    assert_eq!(
        info["cni"]["config"]["plugins"][0], "crius-native",
        "{info}"
    );
    assert_eq!(info["cni"]["native"]["bridge"], "crius0", "{info}");
    assert!(
        info["criusFeatures"]["CRIListStreaming"].is_object(),
        "{info}"
    );
    d.shutdown().await;
}

fn pid_alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

/// The test's stand-in for a service unit: its cgroups, and on a failed test the processes that would
/// otherwise outlive it.
struct Unit {
    cgroups: Vec<std::path::PathBuf>,
    leftovers: Vec<i64>,
}

impl Drop for Unit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for pid in &self.leftovers {
                // SAFETY: kill(2) on the container and pause pids this test started.
                unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
            }
        }
        for u in &self.cgroups {
            let _ = std::fs::remove_dir(u);
        }
    }
}

/// A service manager stops a service by killing every process of its cgroup. The test puts the daemon
/// into fresh cgroups of its own (in each hierarchy that decides service membership: name=systemd v1,
/// cgroup v2), kills every member, and the containers and pause process must live on; a restarted daemon
/// recovers them.
#[tokio::test]
async fn containers_survive_killing_the_daemons_cgroup() {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let hierarchies = crius::cgroups::lifetime::membership_hierarchies(&mountinfo);
    if hierarchies.is_empty() {
        eprintln!("SKIPPED: no name=systemd or cgroup2 hierarchy mounted");
        return;
    }
    let mut d = common::Daemon::start().await;
    let mut guard = Unit {
        cgroups: Vec::new(),
        leftovers: Vec::new(),
    };
    let unit: Vec<_> = hierarchies
        .iter()
        .map(|h| h.join(format!("crius-e2e-unit-{}", std::process::id())))
        .collect();
    for u in &unit {
        guard.cgroups.push(u.clone());
        std::fs::create_dir(u).unwrap_or_else(|e| panic!("mkdir {}: {e}", u.display()));
        std::fs::write(u.join("cgroup.procs"), d.pid().to_string())
            .unwrap_or_else(|e| panic!("move daemon into {}: {e}", u.display()));
    }
    d.pull(&common::image("busybox:latest")).await;
    let mut pod_cfg = common::pod_config("unit", true, &d.dir.join("logs/unit"));
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
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", d.log()))
        .into_inner()
        .pod_sandbox_id;
    let ctr = d.run(&pod, &pod_cfg, "c", &["sleep", "3600"]).await;
    let ctr_pid = d.pid_of(&ctr).await;
    let pod_info =
        d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    let pause_pid = serde_json::from_str::<serde_json::Value>(&pod_info["info"]).unwrap()["pid"]
        .as_i64()
        .unwrap();
    guard.leftovers = vec![ctr_pid, pause_pid];
    assert!(pause_pid > 0 && pid_alive(pause_pid) && pid_alive(ctr_pid));

    // systemctl stop with KillMode=control-group: SIGKILL to every member until none is left.
    for _ in 0..100 {
        let mut members = Vec::new();
        for u in &unit {
            let procs = std::fs::read_to_string(u.join("cgroup.procs")).unwrap();
            members.extend(procs.lines().filter_map(|l| l.parse::<i32>().ok()));
        }
        if members.is_empty() {
            break;
        }
        for pid in members {
            // SAFETY: kill(2) on members of the cgroups this test made and filled with its daemon.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.kill9(); // reaps the daemon
    for u in &unit {
        let left = std::fs::read_to_string(u.join("cgroup.procs")).unwrap();
        assert!(left.trim().is_empty(), "{}: {left}", u.display());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        pid_alive(ctr_pid),
        "the container died with the daemon's cgroup"
    );
    assert!(
        pid_alive(pause_pid),
        "the pause process died with the daemon's cgroup"
    );

    d.spawn().await;
    assert_eq!(
        d.status(&ctr).await.state,
        cri::ContainerState::ContainerRunning as i32
    );
    let out = d.exec(&ctr, &["echo", "alive"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "alive");
    let ready =
        d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .state;
    assert_eq!(ready, cri::PodSandboxState::SandboxReady as i32);
    d.cleanup().await;
    d.shutdown().await;
}

async fn cni_info(d: &mut common::Daemon) -> serde_json::Value {
    let info =
        d.rt.status(cri::StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner()
            .info;
    serde_json::from_str(&info["cni"]).unwrap()
}

async fn wait_log(d: &common::Daemon, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = d.log();
        if log.contains(needle) {
            return log;
        }
        assert!(Instant::now() < deadline, "{needle:?} not logged:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hup(d: &common::Daemon) {
    // SAFETY: kill(2) on the daemon this test started.
    assert_eq!(unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) }, 0);
}

/// SIGHUP applies the log format and the CNI conf dir at once, names keys that need a restart, and a
/// bad file changes nothing.
#[tokio::test]
async fn sighup_reloads_the_config() {
    let mut d = common::Daemon::start().await;
    let original = std::fs::read_to_string(&d.config).unwrap();
    assert_eq!(cni_info(&mut d).await["config"]["name"], "crius");

    let net = d.dir.join("net-reloaded");
    std::fs::create_dir_all(&net).unwrap();
    std::fs::write(
        net.join("10-reloaded.conflist"),
        r#"{"cniVersion": "1.0.0", "name": "reloaded", "plugins": [{"type": "bridge", "bridge": "crius-rl0",
           "isGateway": true, "ipMasq": false, "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.213.0.0/24"}]]}}]}"#,
    )
    .unwrap();
    let mut lines: Vec<String> = original
        .lines()
        .filter(|l| {
            !l.starts_with("cni_conf_dir")
                && !l.starts_with("root =")
                && !l.starts_with("registry_config_dir")
        })
        .map(String::from)
        .collect();
    lines.push(format!("cni_conf_dir = \"{}\"", net.display()));
    lines.push("log_format = \"json\"".into());
    // Registry hosts that send the test registry to a closed port: pulls must fail.
    let empty_hosts = d.dir.join("certs-closed.d");
    let host_dir = empty_hosts.join(common::registry());
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(
        host_dir.join("hosts.toml"),
        "server = \"http://127.0.0.1:9\"\n[host.\"http://127.0.0.1:9\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
    )
    .unwrap();
    lines.push(format!(
        "registry_config_dir = \"{}\"",
        empty_hosts.display()
    ));
    // A key that cannot change live.
    lines.push(format!("root = \"{}\"", d.dir.join("root2").display()));
    std::fs::write(&d.config, lines.join("\n") + "\n").unwrap();
    hup(&d);
    wait_log(&d, "config reloaded").await;
    let cni = cni_info(&mut d).await;
    assert_eq!(cni["config"]["name"], "reloaded", "{cni}");
    let log = d.log();
    assert!(
        log.contains("config key `root` changed: it takes effect only after a restart"),
        "{log}"
    );
    let json_line = log
        .lines()
        .find(|l| l.contains("config reloaded"))
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&json_line)
        .unwrap_or_else(|e| panic!("log_format not applied ({e}): {json_line}"));
    assert!(
        v["applied"].as_str().unwrap().contains("cni_conf_dir"),
        "{v}"
    );
    let pull = d
        .img
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: common::image("busybox:latest"),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    assert!(pull.is_err(), "pull used the old registry hosts dir");

    // A bad file: the error names the key, nothing changes, the daemon keeps serving.
    std::fs::write(
        &d.config,
        original.replace(
            "log_level = \"info\"",
            "log_level = \"info\"\ncni_conf_dirr = \"/x\"",
        ),
    )
    .unwrap();
    hup(&d);
    let log = wait_log(&d, "config reload refused").await;
    assert!(log.contains("cni_conf_dirr"), "{log}");
    assert_eq!(cni_info(&mut d).await["config"]["name"], "reloaded");
    d.shutdown().await;
}

/// `cgroup_driver = "systemd"`: RuntimeConfig answers SYSTEMD (the kubelet takes its driver from it)
/// and a cgroupfs-style parent is refused at once, naming the field. (Containers under a real systemd:
/// tests/systemd_node.rs.)
#[tokio::test]
async fn systemd_driver_is_reported_and_cgroupfs_parents_refused() {
    let mut d = common::Daemon::start_with(common::Options {
        extra_config: "cgroup_driver = \"systemd\"\n".into(),
        ..Default::default()
    })
    .await;
    let rc =
        d.rt.runtime_config(cri::RuntimeConfigRequest {})
            .await
            .unwrap()
            .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        cri::CgroupDriver::Systemd as i32
    );
    let cfg = common::pod_config("sd", true, &d.dir.join("logs/sd"));
    let err =
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(
        err.message().contains("linux.cgroup_parent") && err.message().contains("slice"),
        "{err}"
    );
    d.shutdown().await;

    // cgroupfs forced: reported as such.
    let mut d = common::Daemon::start_with(common::Options {
        extra_config: "cgroup_driver = \"cgroupfs\"\n".into(),
        ..Default::default()
    })
    .await;
    let rc =
        d.rt.runtime_config(cri::RuntimeConfigRequest {})
            .await
            .unwrap()
            .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        cri::CgroupDriver::Cgroupfs as i32
    );
    d.shutdown().await;
}

/// `selinux = false` (default): Status says labels are ignored, and a container whose mount asks for
/// `selinux_relabel` and whose context carries SELinux options runs. `selinux = true` needs SELinux on the
/// host, else the daemon does not start and names the key.
#[tokio::test]
async fn selinux_off_ignores_labels_and_on_needs_the_host() {
    let host_selinux = std::path::Path::new("/sys/fs/selinux/enforce").exists();
    let mut d = common::Daemon::start().await;
    let info =
        d.rt.status(cri::StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner()
            .info;
    let se: serde_json::Value = serde_json::from_str(&info["selinux"]).unwrap();
    assert_eq!(se["enabled"], false, "{se}");
    assert!(se["note"].as_str().unwrap().contains("ignored"), "{se}");
    d.pull(&common::image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("se", true).await;
    let vol = d.dir.join("se-vol");
    std::fs::create_dir_all(&vol).unwrap();
    let mut cfg = common::container_config("c", &common::image("busybox:latest"), &["sleep", "30"]);
    cfg.mounts.push(cri::Mount {
        container_path: "/vol".into(),
        host_path: vol.display().to_string(),
        selinux_relabel: true,
        ..Default::default()
    });
    cfg.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .selinux_options = Some(cri::SeLinuxOption {
        user: "system_u".into(),
        role: "system_r".into(),
        r#type: "container_t".into(),
        level: "s0:c1,c2".into(),
    });
    let id = d
        .create(&pod, &pod_cfg, cfg)
        .await
        .unwrap_or_else(|e| panic!("labels must be ignored with selinux = false: {e}"));
    d.start_ctr(&id).await;
    d.shutdown().await;

    if host_selinux {
        eprintln!("SKIPPED (selinux = true part): this host has SELinux");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("crius-e2e-selinux-")
        .tempdir_in("/tmp")
        .unwrap();
    let file = dir.path().join("crius.toml");
    std::fs::write(&file, "selinux = true\n").unwrap();
    let out = crius()
        .arg("daemon")
        .arg("--config")
        .arg(&file)
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--state")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`selinux`"), "{err}");
}

/// Whether `runtime` can run a container here, tried by the test itself (not through crius): a
/// bundle whose rootfs binds the host's /usr, `<runtime> run` of /bin/true in its own top-level cgroup.
fn runtime_runs_a_container(runtime: &str) -> bool {
    let Some(bin) = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .map(|d| std::path::Path::new(d).join(runtime))
    .find(|p| p.is_file()) else {
        return false;
    };
    let dir = tempfile::Builder::new()
        .prefix("crius-e2e-trial-")
        .tempdir_in("/tmp")
        .unwrap();
    let rootfs = dir.path().join("rootfs");
    let mut mounts = vec![
        serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        serde_json::json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}),
    ];
    std::fs::create_dir_all(rootfs.join("dev")).unwrap();
    for top in ["proc", "usr", "bin", "sbin", "lib", "lib64"] {
        let host = std::path::Path::new("/").join(top);
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&host).unwrap(), rootfs.join(top))
                .unwrap();
        } else {
            std::fs::create_dir_all(rootfs.join(top)).unwrap();
            if top != "proc" {
                mounts.push(
                    serde_json::json!({"destination": format!("/{top}"), "type": "bind",
                    "source": host, "options": ["rbind", "ro"]}),
                );
            }
        }
    }
    let id = format!("crius-e2e-trial-{}-{runtime}", std::process::id());
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["/bin/true"], "cwd": "/",
                    "env": ["PATH=/usr/bin:/bin"]},
        "root": {"path": "rootfs", "readonly": true},
        "mounts": mounts,
        "linux": {"cgroupsPath": format!("/{id}"),
                  "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]}
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let root = dir.path().join("state");
    let ok = Command::new(&bin)
        .arg("--root")
        .arg(&root)
        .args(["run", "--bundle"])
        .arg(dir.path())
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let _ = Command::new(&bin)
        .arg("--root")
        .arg(&root)
        .args(["delete", "--force", &id])
        .stderr(Stdio::null())
        .status();
    ok
}

/// `default_runtime = "auto"` (the default): crun when it can run containers here, else runc; the
/// choice is reported and pods that name no handler run on it.
#[tokio::test]
async fn auto_default_runtime_takes_crun_when_it_works_else_runc() {
    let expected = if runtime_runs_a_container("crun") {
        "crun"
    } else {
        "runc"
    };
    let mut d = common::Daemon::start().await;
    let info =
        d.rt.status(cri::StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner()
            .info;
    let choice: serde_json::Value = serde_json::from_str(&info["defaultRuntime"]).unwrap();
    assert_eq!(choice["configured"], "auto", "{choice}");
    assert_eq!(choice["chosen"], expected, "{choice}\n{}", d.log());
    if expected == "runc" {
        assert!(
            choice["why"].as_str().unwrap().contains("crun"),
            "the fallback says why crun was passed over: {choice}"
        );
    }
    // A pod without a handler runs on the chosen one: its container is in that runtime's state.
    let image = common::image("busybox:latest");
    d.pull(&image).await;
    let (pod, cfg) = d.run_pod("auto-default", true).await;
    let ctr = d.run(&pod, &cfg, "c", &["sleep", "30"]).await;
    let root = d.dir.join("state/runtime").join(expected);
    let out = Command::new(expected)
        .arg("--root")
        .arg(&root)
        .args(["state", &ctr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{expected} has no container {ctr}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.cleanup().await;
    d.shutdown().await;
}
