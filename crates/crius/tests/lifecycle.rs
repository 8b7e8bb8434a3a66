//! E2E: the pod and container lifecycle over gRPC against the real daemon, runc and a pulled image.

mod common;

use std::time::Duration;

use common::*;
use cri_api::v1 as cri;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_logs_exec_stop_remove() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("life", true).await;
    let ctr = d
        .run(
            &pod,
            &pod_cfg,
            "main",
            &[
                "sh",
                "-c",
                "echo hello-out; echo hello-err >&2; exec sleep 300",
            ],
        )
        .await;
    let s = d.status(&ctr).await;
    assert_eq!(
        s.state,
        cri::ContainerState::ContainerRunning as i32,
        "{s:?}"
    );
    assert!(s.started_at > 0 && s.created_at > 0);

    // Logs: CRI format, both streams, full lines.
    let log = std::path::PathBuf::from(&s.log_path);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        if t.contains("hello-err") && t.contains("hello-out") {
            break t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "log {} incomplete: {t:?}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for line in text.lines() {
        let parts: Vec<&str> = line.splitn(4, ' ').collect();
        assert_eq!(parts.len(), 4, "bad CRI log line {line:?}");
        assert!(
            parts[0].ends_with('Z') && parts[0].contains('T'),
            "timestamp {line:?}"
        );
        assert!(parts[1] == "stdout" || parts[1] == "stderr", "{line:?}");
        assert_eq!(parts[2], "F", "{line:?}");
    }
    assert!(
        text.lines().any(|l| l.contains(" stdout F hello-out")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains(" stderr F hello-err")),
        "{text}"
    );

    // ExecSync: output and exit codes.
    let r = d
        .exec(
            &ctr,
            &["sh", "-c", "echo exec-out; echo exec-err >&2; exit 5"],
            10,
        )
        .await
        .unwrap();
    assert_eq!(r.exit_code, 5);
    assert_eq!(r.stdout, b"exec-out\n");
    assert_eq!(r.stderr, b"exec-err\n");
    let r = d.exec(&ctr, &["hostname"], 10).await.unwrap();
    assert_eq!(r.exit_code, 0);

    // Verbose status carries the pid, which is a live process.
    let info = d.verbose_info(&ctr).await;
    let pid = info["pid"].as_i64().unwrap();
    assert!(
        pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "{info}"
    );

    // Prefix lookups work like containerd's.
    let s2 = d.status(&ctr[..12]).await;
    assert_eq!(s2.id, ctr);

    // List with filters.
    let list =
        d.rt.list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod.clone(),
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
                label_selector: [("ctr".to_string(), "main".to_string())].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(list.len(), 1);

    // Stop: sh as pid 1 ignores SIGTERM without a handler, so the timeout then SIGKILL path runs.
    let t0 = std::time::Instant::now();
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: ctr.clone(),
        timeout: 1,
    })
    .await
    .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10));
    let s = d.status(&ctr).await;
    assert_eq!(s.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(s.exit_code, 137, "{s:?}");
    assert!(s.finished_at >= s.started_at);

    // Idempotent stop and remove, also for unknown ids.
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: ctr.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    d.rt.remove_container(cri::RemoveContainerRequest {
        container_id: ctr.clone(),
    })
    .await
    .unwrap();
    d.rt.remove_container(cri::RemoveContainerRequest {
        container_id: ctr.clone(),
    })
    .await
    .unwrap();
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: "f".repeat(64),
        timeout: 0,
    })
    .await
    .unwrap();
    let (c, _) = code(
        d.rt.container_status(cri::ContainerStatusRequest {
            container_id: ctr.clone(),
            verbose: false,
        })
        .await,
    );
    assert_eq!(c, Code::NotFound);

    d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    let st =
        d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        st.status.unwrap().state,
        cri::PodSandboxState::SandboxNotready as i32
    );
    d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    let (c, _) = code(
        d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod,
            verbose: false,
        })
        .await,
    );
    assert_eq!(c, Code::NotFound);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_and_reason_are_reported() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("exits", true).await;
    let three = d
        .run(&pod, &pod_cfg, "three", &["sh", "-c", "exit 3"])
        .await;
    let zero = d.run(&pod, &pod_cfg, "zero", &["true"]).await;
    let s = d.wait_exit(&three, Duration::from_secs(20)).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"), "{s:?}");
    let s = d.wait_exit(&zero, Duration::from_secs(20)).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"), "{s:?}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_kill_is_reported() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("oom", true).await;
    let mut cfg = container_config(
        "hog",
        &image("busybox:latest"),
        &["sh", "-c", "x=1; while :; do x=$x$x$x$x; done"],
    );
    cfg.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 16 * 1024 * 1024,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = d.create(&pod, &pod_cfg, cfg).await.unwrap();
    d.start_ctr(&id).await;
    let s = d.wait_exit(&id, Duration::from_secs(60)).await;
    assert_eq!(s.reason, "OOMKilled", "{s:?}");
    assert_eq!(s.exit_code, 137, "{s:?}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_timeout() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("timeout", true).await;
    let ctr = d.run(&pod, &pod_cfg, "main", &["sleep", "300"]).await;
    let t0 = std::time::Instant::now();
    let (c, msg) = code(d.exec(&ctr, &["sleep", "30"], 1).await);
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "timeout not enforced: {:?}",
        t0.elapsed()
    );
    assert_eq!(c, Code::DeadlineExceeded, "{msg}");
    // The timed-out process is gone from the container.
    let r = d
        .exec(&ctr, &["ps", "-o", "pid,stat,args"], 10)
        .await
        .unwrap();
    let ps = String::from_utf8_lossy(&r.stdout).to_string();
    // A killed exec is reparented to the container's pid 1 (`sleep`, which never reaps): a zombie
    // is dead, so only live processes count.
    let sleeps: Vec<&str> = ps
        .lines()
        .filter(|l| l.contains("sleep") && l.split_whitespace().nth(1) != Some("Z"))
        .collect();
    assert_eq!(sleeps.len(), 1, "only the main sleep should remain:\n{ps}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_object_and_field() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("errors", true).await;

    // Unknown ids.
    let (c, m) = code(
        d.rt.start_container(cri::StartContainerRequest {
            container_id: "0".repeat(64),
        })
        .await,
    );
    assert_eq!(c, Code::NotFound, "{m}");
    let (c, _) = code(
        d.create(
            &"0".repeat(64),
            &pod_cfg,
            container_config("x", &image("busybox:latest"), &["true"]),
        )
        .await,
    );
    assert_eq!(c, Code::NotFound);

    // A log path escaping the pod's log dir.
    let mut cfg = container_config("esc", &image("busybox:latest"), &["true"]);
    cfg.log_path = "../../etc/evil.log".into();
    let (c, m) = code(d.create(&pod, &pod_cfg, cfg).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("log_path"), "{m}");

    // An image that is not there.
    let (c, m) = code(
        d.create(
            &pod,
            &pod_cfg,
            container_config("noimg", &image("does-not-exist:1"), &["true"]),
        )
        .await,
    );
    assert_eq!(c, Code::NotFound, "{m}");
    assert!(m.contains("does-not-exist"), "{m}");

    // Missing metadata.
    let (c, m) = code(
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cri::PodSandboxConfig::default()),
            runtime_handler: String::new(),
        })
        .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("metadata"), "{m}");

    // Unknown and unavailable runtime handlers fail fast, naming the handler.
    let mut other = pod_config("handler", true, &d.dir.join("logs"));
    let (c, m) = code(
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(other.clone()),
            runtime_handler: "kata".into(),
        })
        .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("kata"), "{m}");
    other.metadata.as_mut().unwrap().name = "handler2".into();
    let r =
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(other),
            runtime_handler: "crun".into(),
        })
        .await;
    if let Err(e) = r {
        // crun 1.8.1 refuses this host's hybrid cgroups: the reason must be said, not guessed.
        assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
        assert!(e.message().contains("crun"), "{e}");
    }

    // A user namespace without the mappings the kubelet sends is refused, not ignored
    // (crates/crius/tests/userns.rs drives working ones).
    let mut userns = pod_config("userns", true, &d.dir.join("logs"));
    userns
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .userns_options = Some(cri::UserNamespace {
        mode: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    });
    let (c, m) = code(
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(userns),
            runtime_handler: String::new(),
        })
        .await,
    );
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.contains("userns_options"), "{m}");

    // Starting twice is a precondition failure.
    let ctr = d.run(&pod, &pod_cfg, "twice", &["sleep", "60"]).await;
    let (c, _) = code(
        d.rt.start_container(cri::StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await,
    );
    assert_eq!(c, Code::FailedPrecondition);

    // Unimplemented RPCs say which.
    let (c, m) = code(
        d.rt.checkpoint_container(cri::CheckpointContainerRequest::default())
            .await,
    );
    assert_eq!(c, Code::Unimplemented);
    assert!(m.contains("CheckpointContainer"), "{m}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_run_pod_sandbox_returns_the_same_pod() {
    let mut d = Daemon::start().await;
    let cfg = pod_config("retry", true, &d.dir.join("logs"));
    let req = cri::RunPodSandboxRequest {
        config: Some(cfg.clone()),
        runtime_handler: String::new(),
    };
    let (mut c1, mut c2) = (d.rt.clone(), d.rt.clone());
    let (a, b) = tokio::join!(
        c1.run_pod_sandbox(req.clone()),
        c2.run_pod_sandbox(req.clone())
    );
    let (a, b) = (
        a.unwrap().into_inner().pod_sandbox_id,
        b.unwrap().into_inner().pod_sandbox_id,
    );
    assert_eq!(a, b, "a retry must find the first attempt's pod");
    let pods =
        d.rt.list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
    assert_eq!(pods.len(), 1);
    // After removal the name is free again.
    d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: a.clone(),
    })
    .await
    .unwrap();
    d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: a.clone(),
    })
    .await
    .unwrap();
    let c =
        d.rt.run_pod_sandbox(req)
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
    assert_ne!(a, c);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_version_runtime_config_and_gates() {
    let mut d = Daemon::start().await;
    let v =
        d.rt.version(cri::VersionRequest::default())
            .await
            .unwrap()
            .into_inner();
    assert_eq!(
        (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
        ("crius", "v1")
    );
    let s =
        d.rt.status(cri::StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner();
    let conds = s.status.unwrap().conditions;
    let ready = conds.iter().find(|c| c.r#type == "RuntimeReady").unwrap();
    assert!(ready.status, "{ready:?}");
    assert!(conds.iter().any(|c| c.r#type == "NetworkReady"));
    assert!(
        s.runtime_handlers.iter().any(|h| h.name.is_empty()),
        "default handler listed as \"\""
    );
    assert!(s.runtime_handlers.iter().any(|h| h.name == "runc"));
    let features: serde_json::Value = serde_json::from_str(&s.info["criusFeatures"]).unwrap();
    let ls = &features["CRIListStreaming"];
    assert!(
        ls["maturity"] == "alpha" && ls["enabled"] == false,
        "{features}"
    );
    for (k, v) in &s.info {
        let v: serde_json::Value = serde_json::from_str(v).unwrap_or_default();
        assert!(v.is_object(), "info key {k} is not a JSON object: {v}");
    }
    let handlers: serde_json::Value = serde_json::from_str(&s.info["runtimeHandlers"]).unwrap();
    assert_eq!(handlers["runc"]["available"], true, "{handlers}");
    let rc =
        d.rt.runtime_config(cri::RuntimeConfigRequest {})
            .await
            .unwrap()
            .into_inner();
    // cgroup_driver = "auto" (the default): systemd exactly when systemd is PID 1.
    let pid1 = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    let expected = if pid1.trim() == "systemd" {
        cri::CgroupDriver::Systemd
    } else {
        cri::CgroupDriver::Cgroupfs
    };
    assert_eq!(rc.linux.unwrap().cgroup_driver, expected as i32);
    // Alpha list streaming is off by default, and says so.
    let (c, m) = code(
        d.rt.stream_pod_sandboxes(cri::StreamPodSandboxesRequest::default())
            .await,
    );
    assert_eq!(c, Code::Unimplemented);
    assert!(m.contains("CRIListStreaming"), "{m}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_streaming_with_the_gate_on() {
    use futures::StreamExt;
    let mut d = Daemon::start_with(Options {
        extra_config: "[feature_gates]\nCRIListStreaming = true\n".into(),
        ..Default::default()
    })
    .await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("stream", true).await;
    let ctr = d.run(&pod, &pod_cfg, "c", &["sleep", "60"]).await;
    let mut s =
        d.rt.stream_pod_sandboxes(cri::StreamPodSandboxesRequest::default())
            .await
            .unwrap()
            .into_inner();
    let mut pods = vec![];
    while let Some(m) = s.next().await {
        pods.extend(m.unwrap().pod_sandboxes);
    }
    assert_eq!(
        pods.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        vec![pod.clone()]
    );
    let mut s =
        d.rt.stream_containers(cri::StreamContainersRequest::default())
            .await
            .unwrap()
            .into_inner();
    let mut ctrs = vec![];
    while let Some(m) = s.next().await {
        ctrs.extend(m.unwrap().containers);
    }
    assert_eq!(
        ctrs.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        vec![ctr]
    );
    d.shutdown().await;
}
