//! E2E: the per-handler feature model — each configured handler's kind and probed features reported in
//! Status (RuntimeHandlerFeatures and verbose `runtimeHandlers`) and by `crius features --handlers`,
//! and enforced: a pod asking its handler for what it cannot do fails fast with FailedPrecondition
//! naming the handler and the field, leaving nothing behind.

mod common;

use common::*;
use cri_api::v1 as cri;
use tonic::Code;

const RUNSC: &str = "/usr/bin/runsc";

pub fn require_runsc() {
    assert!(
        std::path::Path::new(RUNSC).is_file(),
        "{RUNSC} is missing: these tests need gVisor (Debian package `runsc`, installed by scripts/install-deps.sh)"
    );
}

/// Verbose Status once every handler's trials have run: Status starts a sandbox handler's deferred
/// trials but answers after a bounded wait, reporting it "not yet probed" meanwhile.
async fn handlers_info(d: &mut Daemon) -> (serde_json::Value, Vec<cri::RuntimeHandler>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let s =
            d.rt.status(cri::StatusRequest { verbose: true })
                .await
                .expect("Status")
                .into_inner();
        let raw = &s.info["runtimeHandlers"];
        if !raw.contains("have not run yet") || std::time::Instant::now() > deadline {
            let v = serde_json::from_str(raw).expect("runtimeHandlers is JSON");
            return (v, s.runtime_handlers);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn supported(v: &serde_json::Value, handler: &str, feature: &str) -> bool {
    v[handler]["handlerFeatures"][feature]["supported"]
        .as_bool()
        .unwrap_or_else(|| panic!("no handlerFeatures.{feature} for {handler}: {v:#}"))
}

async fn run_pod_on(
    d: &mut Daemon,
    handler: &str,
    cfg: cri::PodSandboxConfig,
) -> Result<String, tonic::Status> {
    d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(cfg),
        runtime_handler: handler.to_string(),
    })
    .await
    .map(|r| r.into_inner().pod_sandbox_id)
}

fn with_ns(
    mut cfg: cri::PodSandboxConfig,
    f: impl FnOnce(&mut cri::NamespaceOption),
) -> cri::PodSandboxConfig {
    let ns = cfg
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap();
    f(ns);
    cfg
}

async fn pod_count(d: &mut Daemon) -> usize {
    d.rt.list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_features_are_reported_and_enforced() {
    require_runsc();
    // A second gVisor handler with gVisor's `--network=none` and without `--oci-seccomp`: no host
    // network, and runsc ignores seccomp filters — the probes must see both.
    let mut d = Daemon::start_with(Options {
        extra_config: format!(
            "[runtimes.gvisor-bare]\npath = \"{RUNSC}\"\nargs = [\"--network=none\"]\n"
        ),
        ..Default::default()
    })
    .await;
    let (v, handlers) = handlers_info(&mut d).await;
    assert_eq!(v["runc"]["type"], "oci", "{v:#}");
    assert_eq!(v["runsc"]["type"], "sandbox", "{v:#}");
    assert_eq!(v["gvisor-bare"]["type"], "sandbox", "{v:#}");
    for h in ["runc", "runsc", "gvisor-bare"] {
        assert_eq!(v[h]["available"], true, "{h}: {v:#}");
    }
    assert!(supported(&v, "runc", "hostPID") && supported(&v, "runc", "privileged"));
    assert!(!supported(&v, "runsc", "hostPID") && !supported(&v, "runsc", "idmappedMounts"));
    assert!(
        supported(&v, "runsc", "seccomp"),
        "runsc has --oci-seccomp: {v:#}"
    );
    assert!(supported(&v, "runsc", "hostNetwork"));
    assert!(!supported(&v, "gvisor-bare", "seccomp"), "{v:#}");
    assert!(!supported(&v, "gvisor-bare", "hostNetwork"), "{v:#}");
    // The CRI discovery fields say what the feature record says.
    for h in &handlers {
        let name = if h.name.is_empty() {
            "runc"
        } else {
            h.name.as_str()
        };
        let f = h.features.unwrap();
        assert_eq!(
            f.user_namespaces,
            supported(&v, name, "userNamespaces"),
            "{name}"
        );
        assert_eq!(
            f.recursive_read_only_mounts,
            supported(&v, name, "recursiveReadOnlyMounts"),
            "{name}"
        );
    }

    let base = |name: &str| pod_config(name, false, &std::env::temp_dir().join("crius-e2e-logs"));
    // Host PID on gVisor: refused before any work, naming handler and field.
    let r = run_pod_on(
        &mut d,
        "runsc",
        with_ns(base("gv-hostpid"), |n| {
            n.pid = cri::NamespaceMode::Node as i32
        }),
    )
    .await;
    let (c, msg) = code(r);
    assert_eq!(c, Code::FailedPrecondition, "{msg}");
    assert!(
        msg.contains("\"runsc\"") && msg.contains("namespace_options.pid"),
        "{msg}"
    );
    // Host network on a gVisor handler without --network=host.
    let r = run_pod_on(
        &mut d,
        "gvisor-bare",
        with_ns(base("gv-hostnet"), |n| {
            n.network = cri::NamespaceMode::Node as i32
        }),
    )
    .await;
    let (c, msg) = code(r);
    assert_eq!(c, Code::FailedPrecondition, "{msg}");
    assert!(
        msg.contains("\"gvisor-bare\"") && msg.contains("namespace_options.network"),
        "{msg}"
    );
    // A seccomp profile on a handler that would ignore it.
    let mut cfg = base("gv-seccomp");
    cfg.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .seccomp = Some(cri::SecurityProfile::default());
    let (c, msg) = code(run_pod_on(&mut d, "gvisor-bare", cfg).await);
    assert_eq!(c, Code::FailedPrecondition, "{msg}");
    assert!(
        msg.contains("\"gvisor-bare\"") && msg.contains("seccomp"),
        "{msg}"
    );
    // A pod user namespace: refused exactly where the handler's trial failed.
    let userns = with_ns(base("gv-userns"), |n| {
        n.userns_options = Some(cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: vec![cri::IdMapping {
                container_id: 0,
                host_id: 3_000_000,
                length: 65536,
            }],
            gids: vec![cri::IdMapping {
                container_id: 0,
                host_id: 3_000_000,
                length: 65536,
            }],
        })
    });
    let r = run_pod_on(&mut d, "runsc", userns).await;
    if supported(&v, "runsc", "userNamespaces") {
        let id = r.expect("runsc advertises user namespaces, so the pod must run");
        d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
            .await
            .unwrap();
    } else {
        let (c, msg) = code(r);
        assert_eq!(c, Code::FailedPrecondition, "{msg}");
        assert!(
            msg.contains("\"runsc\"") && msg.contains("userns_options"),
            "{msg}"
        );
    }
    assert_eq!(
        pod_count(&mut d).await,
        0,
        "a refused pod left something behind"
    );

    // `crius features --handlers` prints the daemon's matrix.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crius"))
        .args(["features", "--handlers", "--socket"])
        .arg(&d.socket)
        .output()
        .expect("run crius features --handlers");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header = text.lines().next().unwrap_or_default();
    for h in ["runc", "runsc", "gvisor-bare"] {
        assert!(header.contains(h), "{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("hostPID")), "{text}");
    assert!(text.contains("runsc hostPID: gVisor"), "{text}");
    assert!(text.contains("gvisor-bare seccomp:"), "{text}");
    d.shutdown().await;
}

/// Kills whatever gVisor sandboxes a failed test left behind (the harness's Drop handles runc only).
struct RunscLeftovers(std::path::PathBuf);

impl Drop for RunscLeftovers {
    fn drop(&mut self) {
        let root = self.0.join("state/runtime/runsc");
        let Ok(out) = std::process::Command::new(RUNSC)
            .arg("--root")
            .arg(&root)
            .args(["list", "-quiet"])
            .output()
        else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            for args in [
                vec!["kill", "--all", id, "9"],
                vec!["delete", "--force", id],
            ] {
                let _ = std::process::Command::new(RUNSC)
                    .arg("--root")
                    .arg(&root)
                    .args(args)
                    .status();
            }
        }
        // A sandbox runsc could not delete (its control server gone) still has processes: they
        // name this test's runtime root on their command line.
        let _ = std::process::Command::new("pkill")
            .arg("-9")
            .arg("-f")
            .arg("--")
            .arg(format!("--root={}", root.display()))
            .status();
    }
}

fn runsc_ids(d: &Daemon) -> Vec<String> {
    let out = std::process::Command::new(RUNSC)
        .arg("--root")
        .arg(d.dir.join("state/runtime/runsc"))
        .args(["list", "-quiet"])
        .output()
        .expect("runsc list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn text(r: &cri::ExecSyncResponse) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    )
}

async fn wait_log(path: &std::path::Path, want: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(want) {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never showed {want:?}: {log}",
            path.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// GET / from the server through an exec in `id`. Retried a few times: under gVisor's host network
/// busybox's httpd now and then closes a connection without answering (the same EAGAIN trouble that
/// breaks busybox wget there), which is no fault of the pod's network.
async fn fetch(d: &mut Daemon, id: &str, get: &[&str]) -> cri::ExecSyncResponse {
    let mut last = String::new();
    for _ in 0..5 {
        let r = d.exec(id, get, 10).await.expect("exec GET");
        if text(&r).contains("hello-from-server") {
            return r;
        }
        last = format!("exit {}: {:?}", r.exit_code, text(&r));
    }
    panic!("no answer from the server over the pod's localhost in 5 tries; last {last}");
}

/// A gVisor pod: one sandbox for the pod, two containers joined to it sharing the pod's CNI network
/// (one serves on localhost, the other fetches from it), exec into each, logs, exit codes, stop,
/// refusal of what gVisor cannot do, recovery after `kill -9` of the daemon, and nothing left after
/// the pod is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runsc_pod_runs_two_containers_in_one_sandbox() {
    require_runsc();
    let mut d = Daemon::start().await;
    let _leftovers = RunscLeftovers(d.dir.clone());
    d.pull(&image("busybox:latest")).await;
    let logs = d.dir.join("logs").join("gv");
    let pod_cfg = pod_config("gv", false, &logs);
    let t = std::time::Instant::now();
    let pod = run_pod_on(&mut d, "runsc", pod_cfg.clone())
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox on runsc: {e}\n{}", d.log()));
    eprintln!("runsc RunPodSandbox: {:?}", t.elapsed());
    let ps =
        d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(ps.runtime_handler, "runsc");
    let pod_ip = ps.network.unwrap().ip;
    assert!(!pod_ip.is_empty(), "a CNI pod has an IP");

    let server = d
        .run(
            &pod,
            &pod_cfg,
            "server",
            &[
                "sh",
                "-c",
                "mkdir -p /www && echo hello-from-server > /www/index.html && httpd -f -p 127.0.0.1:8080 -h /www",
            ],
        )
        .await;
    let client = d
        .run(
            &pod,
            &pod_cfg,
            "client",
            &[
                "sh",
                "-c",
                // busybox wget fails on gVisor's host network ("error getting response: Resource
                // temporarily unavailable", also under plain `runsc run`); nc works (its stdin stays open
                // a moment: busybox nc may stop reading once stdin ends).
                "i=0; until (printf 'GET / HTTP/1.0\\r\\n\\r\\n'; sleep 1) | nc 127.0.0.1 8080 | grep hello; do i=$((i+1)); [ $i -gt 100 ] && exit 9; sleep 0.1; done; echo fetched; exec sleep 3600",
            ],
        )
        .await;
    // localhost inside the pod is shared: the client's log has the server's page.
    wait_log(&logs.join("client/0.log"), "hello-from-server").await;
    // Both run in gVisor, in one sandbox: runsc reports the same sandbox process for both.
    let (ps, pc) = (d.pid_of(&server).await, d.pid_of(&client).await);
    assert!(
        ps > 0 && ps == pc,
        "one sandbox per pod: pids {ps} and {pc}"
    );
    for id in [&server, &client] {
        let r = d.exec(id, &["dmesg"], 10).await.expect("exec dmesg");
        assert!(text(&r).contains("gVisor"), "not in gVisor: {}", text(&r));
    }
    let r = d
        .exec(&server, &["cat", "/www/index.html"], 10)
        .await
        .unwrap();
    assert_eq!(text(&r).trim(), "hello-from-server");
    let get = [
        "sh",
        "-c",
        "(printf 'GET / HTTP/1.0\\r\\n\\r\\n'; sleep 1) | nc 127.0.0.1 8080",
    ];
    let r = fetch(&mut d, &client, &get).await;
    assert_eq!(r.exit_code, 0, "{}", text(&r));
    let r = d.exec(&client, &["sh", "-c", "exit 3"], 10).await.unwrap();
    assert_eq!(r.exit_code, 3, "exec exit codes come through");
    // A timed-out exec is killed inside the sandbox (its pid there means nothing on the host).
    let (c, msg) = code(d.exec(&client, &["sleep", "31"], 1).await);
    assert_eq!(c, Code::DeadlineExceeded, "{msg}");
    let r = d.exec(&client, &["ps"], 10).await.unwrap();
    assert!(
        !text(&r).contains("sleep 31"),
        "the timed-out exec lives on: {}",
        text(&r)
    );
    let r = d.exec(&client, &["ip", "addr"], 10).await.unwrap();
    assert!(
        text(&r).contains(&pod_ip),
        "the pod's address inside gVisor: {}",
        text(&r)
    );

    // Exit codes and logs of a container that ends by itself.
    let done = d
        .run(&pod, &pod_cfg, "done", &["sh", "-c", "echo bye; exit 7"])
        .await;
    let s = d.wait_exit(&done, std::time::Duration::from_secs(20)).await;
    assert_eq!(s.exit_code, 7, "{s:?}");
    wait_log(&logs.join("done/0.log"), "stdout F bye").await;

    // What gVisor cannot do is refused before anything is made.
    let mut idm = container_config("idmapped", &image("busybox:latest"), &["true"]);
    idm.mounts.push(cri::Mount {
        container_path: "/data".into(),
        host_path: d.dir.display().to_string(),
        uid_mappings: vec![cri::IdMapping {
            container_id: 0,
            host_id: 3_000_000,
            length: 65536,
        }],
        gid_mappings: vec![cri::IdMapping {
            container_id: 0,
            host_id: 3_000_000,
            length: 65536,
        }],
        ..Default::default()
    });
    let (c, msg) = code(d.create(&pod, &pod_cfg, idm).await);
    assert_eq!(c, Code::FailedPrecondition, "{msg}");
    assert!(
        msg.contains("\"runsc\"") && msg.contains("mounts[0]"),
        "{msg}"
    );
    let mut sysctl_pod = pod_config("gv-sysctl", false, &logs);
    sysctl_pod.linux.as_mut().unwrap().sysctls =
        std::collections::HashMap::from([("kernel.shm_rmid_forced".to_string(), "1".to_string())]);
    let (c, msg) = code(run_pod_on(&mut d, "runsc", sysctl_pod).await);
    assert_eq!(c, Code::FailedPrecondition, "{msg}");
    assert!(
        msg.contains("\"runsc\"") && msg.contains("sysctls"),
        "{msg}"
    );
    let mut privileged = container_config("priv", &image("busybox:latest"), &["true"]);
    privileged.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let (c, msg) = code(d.create(&pod, &pod_cfg, privileged).await);
    assert_eq!(c, Code::FailedPrecondition, "{msg}");
    assert!(
        msg.contains("\"runsc\"") && msg.contains("privileged"),
        "{msg}"
    );
    let n =
        d.rt.list_containers(cri::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers
            .len();
    assert_eq!(n, 3, "refused containers left nothing behind");

    // The daemon dies; the sandbox and its containers do not, and the new daemon takes them back.
    d.kill9();
    d.spawn().await;
    let s = d.status(&server).await;
    assert_eq!(
        s.state,
        cri::ContainerState::ContainerRunning as i32,
        "{s:?}"
    );
    fetch(&mut d, &client, &get).await;

    // Stop: the client's sleep is pid 1 of its container, which ignores SIGTERM; SIGKILL after 1s.
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: client.clone(),
        timeout: 1,
    })
    .await
    .unwrap();
    let s = d.status(&client).await;
    assert_eq!(
        s.state,
        cri::ContainerState::ContainerExited as i32,
        "{s:?}"
    );
    assert_ne!(s.exit_code, 0, "{s:?}");
    // The server still runs: stopping one container leaves the sandbox.
    assert_eq!(
        d.status(&server).await.state,
        cri::ContainerState::ContainerRunning as i32
    );

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
    assert!(
        runsc_ids(&d).is_empty(),
        "runsc still knows {:?}",
        runsc_ids(&d)
    );
    d.shutdown().await;
}

/// Lifecycle latencies of a gVisor pod with one container, per CRI call (printed as p50 and max;
/// bounded loosely so that a hang fails). `CRIUS_RUNSC_LATENCY_RUNS=N` (default 3) for figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runsc_lifecycle_latency() {
    require_runsc();
    let runs: usize = std::env::var("CRIUS_RUNSC_LATENCY_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let mut d = Daemon::start().await;
    let _leftovers = RunscLeftovers(d.dir.clone());
    d.pull(&image("busybox:latest")).await;
    const CALLS: [&str; 7] = [
        "RunPodSandbox",
        "CreateContainer",
        "StartContainer",
        "ExecSync",
        "StopContainer",
        "StopPodSandbox",
        "RemovePodSandbox",
    ];
    let mut took: Vec<Vec<std::time::Duration>> = vec![Vec::new(); CALLS.len()];
    for i in 0..runs {
        let name = format!("lat{i}");
        let pod_cfg = pod_config(&name, false, &d.dir.join("logs").join(&name));
        let t0 = std::time::Instant::now();
        let mut t = std::time::Instant::now();
        let mut lap = |k: usize, took: &mut Vec<Vec<std::time::Duration>>| {
            took[k].push(t.elapsed());
            t = std::time::Instant::now();
        };
        let pod = run_pod_on(&mut d, "runsc", pod_cfg.clone()).await.unwrap();
        lap(0, &mut took);
        let id = d
            .create(
                &pod,
                &pod_cfg,
                container_config("c", &image("busybox:latest"), &["sleep", "3600"]),
            )
            .await
            .unwrap();
        lap(1, &mut took);
        d.start_ctr(&id).await;
        lap(2, &mut took);
        let r = d.exec(&id, &["true"], 10).await.unwrap();
        assert_eq!(r.exit_code, 0);
        lap(3, &mut took);
        d.rt.stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
        lap(4, &mut took);
        d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        lap(5, &mut took);
        d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        lap(6, &mut took);
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "pod lifecycle took {:?}",
            t0.elapsed()
        );
    }
    for (call, mut v) in CALLS.iter().zip(took) {
        v.sort();
        eprintln!(
            "runsc {call:<17} p50 {:>8.1} ms  max {:>8.1} ms  ({runs} runs)",
            v[v.len() / 2].as_secs_f64() * 1000.0,
            v[v.len() - 1].as_secs_f64() * 1000.0
        );
    }
    assert!(
        runsc_ids(&d).is_empty(),
        "runsc still knows {:?}",
        runsc_ids(&d)
    );
    d.shutdown().await;
}

/// shareProcessNamespace on gVisor: the pod's containers share the sandbox's root PID namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runsc_pod_shares_one_pid_namespace() {
    require_runsc();
    let mut d = Daemon::start().await;
    let _leftovers = RunscLeftovers(d.dir.clone());
    d.pull(&image("busybox:latest")).await;
    let pod_cfg = with_ns(pod_config("gvpid", false, &d.dir.join("logs/gvpid")), |n| {
        n.pid = cri::NamespaceMode::Pod as i32
    });
    let pod = run_pod_on(&mut d, "runsc", pod_cfg.clone())
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox with a shared PID namespace: {e}"));
    let mut ids = Vec::new();
    for (name, secs) in [("a", "3601"), ("b", "3602")] {
        let mut c = container_config(name, &image("busybox:latest"), &["sleep", secs]);
        c.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Pod as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let id = d.create(&pod, &pod_cfg, c).await.unwrap();
        d.start_ctr(&id).await;
        ids.push(id);
    }
    let r = d.exec(&ids[1], &["ps"], 10).await.unwrap();
    let ps = text(&r);
    assert!(
        ps.contains("sleep 3601") && ps.contains("sleep 3602"),
        "{ps}"
    );

    // Supplementary groups come out in the kernel's (sorted) order, as under runc: gVisor keeps
    // the order of the spec's additionalGids, so crius writes them sorted.
    let mut c = container_config("groups", &image("busybox:latest"), &["sleep", "3604"]);
    c.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            run_as_user: Some(cri::Int64Value { value: 1000 }),
            run_as_group: Some(cri::Int64Value { value: 1000 }),
            supplemental_groups: vec![50000, 1234],
            ..Default::default()
        }),
        ..Default::default()
    });
    let groups = d.create(&pod, &pod_cfg, c).await.unwrap();
    d.start_ctr(&groups).await;
    let r = d.exec(&groups, &["id", "-G"], 10).await.unwrap();
    let ids: Vec<u32> = text(&r)
        .split_whitespace()
        .map(|g| {
            g.parse()
                .unwrap_or_else(|e| panic!("{g}: {e}: {}", text(&r)))
        })
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]) && [1000, 1234, 50000].iter().all(|g| ids.contains(g)),
        "id -G: {ids:?}"
    );

    // A recursively read-only volume (crius' host-side copy) stays mounted until runsc's `start`,
    // which is when runsc mounts a joining container's binds; then crius lets its copy go, so the
    // host may unmount and remove what was below the volume while the container runs (critest's
    // RRO spec does), and the container keeps its read-only view.
    let vol = d.dir.join("rro-vol");
    std::fs::create_dir_all(vol.join("sub")).unwrap();
    std::fs::write(vol.join("top"), "top-file").unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(vol.join("sub"))
        .status()
        .unwrap();
    assert!(st.success(), "mount a tmpfs under the volume");
    let mut c = container_config("rro", &image("busybox:latest"), &["sleep", "3603"]);
    c.mounts.push(cri::Mount {
        container_path: "/vol".into(),
        host_path: vol.display().to_string(),
        readonly: true,
        recursive_read_only: true,
        ..Default::default()
    });
    let rro = d.create(&pod, &pod_cfg, c).await.unwrap();
    d.start_ctr(&rro).await;
    let r = d.exec(&rro, &["touch", "/vol/sub/f"], 10).await.unwrap();
    assert_ne!(
        r.exit_code,
        0,
        "a recursively read-only volume is read-only below: {}",
        text(&r)
    );
    let st = std::process::Command::new("umount")
        .arg("-l")
        .arg(vol.join("sub"))
        .status()
        .unwrap();
    assert!(st.success(), "unmount the tmpfs under the volume");
    std::fs::remove_dir(vol.join("sub")).unwrap_or_else(|e| {
        panic!("crius still pins the volume's submount after StartContainer: rmdir: {e}")
    });
    let r = d.exec(&rro, &["cat", "/vol/top"], 10).await.unwrap();
    assert_eq!(
        text(&r),
        "top-file",
        "the running container still has its volume"
    );
    let r = d.exec(&rro, &["touch", "/vol/f"], 10).await.unwrap();
    assert_ne!(r.exit_code, 0, "still read-only: {}", text(&r));
    d.rt.remove_container(cri::RemoveContainerRequest { container_id: rro })
        .await
        .unwrap();
    d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    assert!(
        runsc_ids(&d).is_empty(),
        "runsc still knows {:?}",
        runsc_ids(&d)
    );
    d.shutdown().await;
}

/// gVisor's runsc (20221219) filters a container's own processes but starts those of `runsc exec`
/// without the container's filter. The `execSeccomp` row says what the seccomp trial finds (run here
/// against the same binary and flags), `crius features --handlers` shows it, and ExecSync into a
/// container with a filter is refused naming the handler and the field — until
/// `allow_unfiltered_exec = true` in `[runtimes.runsc]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runsc_exec_into_a_filtered_container_is_refused_unless_allowed() {
    require_runsc();
    let mut d = Daemon::start().await;
    let _leftovers = RunscLeftovers(d.dir.clone());
    let (v, _) = handlers_info(&mut d).await;
    let scratch = tempfile::tempdir().unwrap();
    let args: Vec<String> = crius::config::RUNSC_DEFAULT_ARGS
        .iter()
        .map(|a| a.to_string())
        .collect();
    let h = crius_oci::Handler::probe_with(
        "runsc",
        std::path::Path::new(RUNSC),
        &scratch.path().join("runsc"),
        args.clone(),
        crius_oci::HandlerKind::Sandbox,
    )
    .await;
    let trial = crius_oci::trial_seccomp_full(&h, std::time::Duration::from_secs(15)).await;
    assert_eq!(trial.init, Ok(()), "{trial:?}");
    assert_eq!(
        supported(&v, "runsc", "execSeccomp"),
        trial.exec.is_ok(),
        "crius reports {v:#}, the trial found {trial:?}"
    );
    assert!(
        trial.exec.is_err(),
        "runsc exec runs processes unfiltered: {trial:?}"
    );
    assert!(supported(&v, "runc", "execSeccomp"), "{v:#}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crius"))
        .args(["features", "--handlers", "--socket"])
        .arg(&d.socket)
        .output()
        .expect("run crius features --handlers");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("execSeccomp")), "{text}");
    assert!(text.contains("runsc execSeccomp: "), "{text}");

    d.pull(&image("busybox:latest")).await;
    let pod_cfg = pod_config("gv-exec-seccomp", false, &d.dir.join("logs/gv"));
    let pod = run_pod_on(&mut d, "runsc", pod_cfg.clone())
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox on runsc: {e}\n{}", d.log()));
    let mut cfg = container_config("filtered", &image("busybox:latest"), &["sleep", "300"]);
    cfg.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            seccomp: Some(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let filtered = d
        .create(&pod, &pod_cfg, cfg)
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", d.log()));
    d.start_ctr(&filtered).await;
    let (c, msg) = code(d.exec(&filtered, &["echo", "hi"], 10).await);
    assert_eq!(c, Code::FailedPrecondition, "{msg}");
    assert!(
        msg.contains("\"runsc\"") && msg.contains("linux.security_context.seccomp"),
        "{msg}"
    );
    assert!(msg.contains("allow_unfiltered_exec"), "{msg}");
    // After a restart the first request is this ExecSync: runsc's deferred trials (or their kept
    // findings) decide it, not a "not probed" guess.
    d.kill9();
    d.spawn().await;
    let (c, again) = code(d.exec(&filtered, &["echo", "hi"], 10).await);
    assert_eq!(
        (c, again.as_str()),
        (Code::FailedPrecondition, msg.as_str())
    );

    // Allowed by the operator: the same container execs after a restart.
    let mut config = std::fs::read_to_string(&d.config).unwrap();
    config.push_str(&format!(
        "\n[runtimes.runsc]\npath = \"{RUNSC}\"\nargs = {args:?}\nallow_unfiltered_exec = true\n"
    ));
    std::fs::write(&d.config, config).unwrap();
    d.kill9();
    d.spawn().await;
    let r = d
        .exec(&filtered, &["echo", "allowed"], 10)
        .await
        .unwrap_or_else(|e| panic!("ExecSync with allow_unfiltered_exec: {e}\n{}", d.log()));
    assert_eq!((r.exit_code, r.stdout.as_slice()), (0, &b"allowed\n"[..]));
    d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    assert_eq!(runsc_ids(&d), Vec::<String>::new(), "runsc state left");
    d.shutdown().await;
}

/// gVisor's trial containers (each boots a sandbox) run when something first needs the handler, not
/// at daemon start: a daemon that never sees a runsc pod never pays for them. Status then waits for
/// them once and reports what they found (never a guess), and later calls answer from the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runsc_trials_run_at_first_need_not_at_start() {
    require_runsc();
    let t = std::time::Instant::now();
    let mut d = Daemon::start().await;
    let _leftovers = RunscLeftovers(d.dir.clone());
    eprintln!("daemon up (Version answers) in {:?}", t.elapsed());
    let probed = |d: &Daemon| {
        d.log()
            .matches("runtime handler runsc: probed on first use")
            .count()
    };
    assert!(
        d.log()
            .contains("runtime handler runsc: /usr/bin/runsc answers; trial containers deferred"),
        "{}",
        d.log()
    );
    // Requests that do not involve runsc do not run its trials.
    d.rt.list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .unwrap();
    assert_eq!(probed(&d), 0, "{}", d.log());
    assert!(
        !d.log()
            .contains("runtime handler runsc: no user namespaces")
            && !d
                .log()
                .contains("runtime handler runsc: user namespaces work"),
        "runsc's user-namespace trial ran before anything needed it:\n{}",
        d.log()
    );

    // The first Status starts them; Status reports their findings once they ran.
    let t = std::time::Instant::now();
    let (v, handlers) = handlers_info(&mut d).await;
    let first = t.elapsed();
    assert_eq!(probed(&d), 1, "{}", d.log());
    assert_eq!(v["runsc"]["available"], true, "{v:#}");
    assert!(supported(&v, "runsc", "seccomp"), "{v:#}");
    // runsc 20221219's gofer cannot join a user namespace by path: the reason is runsc's own words.
    let userns = &v["runsc"]["handlerFeatures"]["userNamespaces"];
    if userns["supported"] == false {
        let how = userns["how"].as_str().unwrap_or_default();
        assert!(
            !how.contains("not probed") && !how.contains("have not run yet"),
            "a guessed reason: {how}"
        );
    }
    let rh = handlers
        .iter()
        .find(|h| h.name == "runsc")
        .expect("runsc among RuntimeHandlers once probed");
    assert_eq!(
        rh.features.unwrap().user_namespaces,
        supported(&v, "runsc", "userNamespaces")
    );
    // Later calls answer from the result, without new trials.
    let t = std::time::Instant::now();
    handlers_info(&mut d).await;
    let second = t.elapsed();
    eprintln!("Status: first (with runsc trials) {first:?}, second {second:?}");
    assert_eq!(probed(&d), 1, "trials ran again:\n{}", d.log());

    // A restarted daemon (same root, same runsc, kernel and crius) answers its first Status from the
    // findings kept under its root, without booting gVisor again, and reports the same features.
    d.terminate();
    d.spawn().await;
    let t = std::time::Instant::now();
    let (again, _) = handlers_info(&mut d).await;
    eprintln!("Status after a restart: {:?}", t.elapsed());
    assert_eq!(
        probed(&d),
        1,
        "trials ran again after the restart:\n{}",
        d.log()
    );
    assert!(
        d.log()
            .contains("runtime handler runsc: trial results kept in"),
        "{}",
        d.log()
    );
    assert_eq!(
        again["runsc"]["handlerFeatures"], v["runsc"]["handlerFeatures"],
        "{again:#}"
    );
    assert_eq!(again["runsc"]["available"], true);
    d.shutdown().await;
}
