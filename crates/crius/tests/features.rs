//! E2E: container features beyond the basic lifecycle — image defaults (user, env, workdir, stop
//! signal), resource updates, log reopening, container events, shared PID namespaces, security.

mod common;

use std::time::{Duration, Instant};

use common::*;
use cri_api::v1 as cri;
use tonic::Code;

fn empty_command(name: &str, image: &str) -> cri::ContainerConfig {
    let mut c = container_config(name, image, &[]);
    c.command.clear();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_user_env_workdir_and_stop_signal() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox-user:latest")).await;
    d.pull(&image("stopsignal:latest")).await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("imgdefaults", true).await;

    let mut cfg = empty_command("user", &image("busybox-user:latest"));
    cfg.envs = vec![cri::KeyValue {
        key: "EXTRA".into(),
        value: "1".into(),
    }];
    let id = d.create(&pod, &pod_cfg, cfg).await.unwrap();
    d.start_ctr(&id).await;
    let r = d
        .exec(
            &id,
            &["sh", "-c", "id -u; id -g; id -G; pwd; echo $FOO$EXTRA"],
            10,
        )
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout).to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000", "{out}");
    assert_eq!(lines[1], "1000", "{out}");
    assert!(
        lines[2].split(' ').any(|g| g == "2000"),
        "supplementary group from /etc/group: {out}"
    );
    assert_eq!(lines[3], "/home/crius", "{out}");
    assert_eq!(lines[4], "bar1", "{out}");
    let s = d.status(&id).await;
    let u = s.user.unwrap().linux.unwrap();
    assert_eq!((u.uid, u.gid), (1000, 1000));
    assert!(u.supplemental_groups.contains(&2000), "{u:?}");

    // The image's STOPSIGNAL is used by StopContainer and reported.
    let stop = d
        .create(
            &pod,
            &pod_cfg,
            empty_command("stopper", &image("stopsignal:latest")),
        )
        .await
        .unwrap();
    d.start_ctr(&stop).await;
    assert_eq!(
        d.status(&stop).await.stop_signal,
        cri::Signal::Sigusr1 as i32
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: stop.clone(),
        timeout: 20,
    })
    .await
    .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "the USR1 trap should end it at once"
    );
    let s = d.status(&stop).await;
    assert_eq!(s.exit_code, 42, "{s:?}");

    // The request's stop signal wins over the image's (ContainerStopSignals).
    let mut cfg = empty_command("stop-term", &image("stopsignal:latest"));
    cfg.stop_signal = cri::Signal::Sigkill as i32;
    let k = d.create(&pod, &pod_cfg, cfg).await.unwrap();
    d.start_ctr(&k).await;
    assert_eq!(d.status(&k).await.stop_signal, cri::Signal::Sigkill as i32);
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: k.clone(),
        timeout: 20,
    })
    .await
    .unwrap();
    assert_eq!(d.status(&k).await.exit_code, 137);

    // run_as_user overrides the image user; an unknown user name fails naming it.
    let mut cfg = container_config("root", &image("busybox-user:latest"), &["sleep", "60"]);
    cfg.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            run_as_user: Some(cri::Int64Value { value: 0 }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let root = d.create(&pod, &pod_cfg, cfg).await.unwrap();
    d.start_ctr(&root).await;
    let r = d.exec(&root, &["id", "-u"], 10).await.unwrap();
    assert_eq!(r.stdout, b"0\n");
    let mut cfg = container_config("ghost", &image("busybox:latest"), &["true"]);
    cfg.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            run_as_username: "ghost".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let (c, m) = code(d.create(&pod, &pod_cfg, cfg).await);
    assert_ne!(c, Code::Ok);
    assert!(m.contains("ghost"), "{m}");
    d.shutdown().await;
}

fn memory_limit_file(pid: i64) -> Option<std::path::PathBuf> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in cg.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        if ctrls.split(',').any(|c| c == "memory") {
            return Some(
                std::path::Path::new("/sys/fs/cgroup/memory")
                    .join(path.trim_start_matches('/'))
                    .join("memory.limit_in_bytes"),
            );
        }
        if ctrls.is_empty() && std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            return Some(
                std::path::Path::new("/sys/fs/cgroup")
                    .join(path.trim_start_matches('/'))
                    .join("memory.max"),
            );
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_resources_and_reopen_log() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("update", true).await;
    let mut cfg = container_config(
        "c",
        &image("busybox:latest"),
        &[
            "sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
        ],
    );
    cfg.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_shares: 512,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = d.create(&pod, &pod_cfg, cfg).await.unwrap();
    d.start_ctr(&id).await;
    let pid = d.pid_of(&id).await;
    let file = memory_limit_file(pid).expect("memory cgroup of the container");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        (64u64 << 20).to_string()
    );

    d.rt.update_container_resources(cri::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 128 << 20,
            cpu_shares: 512,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        (128u64 << 20).to_string()
    );
    let s = d.status(&id).await;
    assert_eq!(
        s.resources.unwrap().linux.unwrap().memory_limit_in_bytes,
        128 << 20,
        "ContainerStatus.resources follows updates"
    );

    // Log rotation: rename the file, reopen, new lines land in a new file at the old path.
    let log = std::path::PathBuf::from(&s.log_path);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    d.rt.reopen_container_log(cri::ReopenContainerLogRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        if t.contains(" stdout F tick ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new lines after reopen: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("tick 0"));

    // Reopen on a stopped container is a precondition failure.
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    let (c, _) = code(
        d.rt.reopen_container_log(cri::ReopenContainerLogRequest { container_id: id })
            .await,
    );
    assert_eq!(c, Code::FailedPrecondition);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_events_with_the_gate() {
    use futures::StreamExt;
    let mut d = Daemon::start_with(Options {
        extra_config: "[feature_gates]\nEventedPLEG = true\n".into(),
        ..Default::default()
    })
    .await;
    d.pull(&image("busybox:latest")).await;
    // Subscribing returns at once (headers first), before any event exists.
    let mut events = tokio::time::timeout(
        Duration::from_secs(5),
        d.rt.get_container_events(cri::GetEventsRequest {}),
    )
    .await
    .expect("GetContainerEvents answers at once")
    .unwrap()
    .into_inner();
    let (pod, pod_cfg) = d.run_pod("events", true).await;
    let id = d.run(&pod, &pod_cfg, "c", &["sh", "-c", "exit 4"]).await;
    d.wait_exit(&id, Duration::from_secs(10)).await;
    d.rt.remove_container(cri::RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    let mut seen = vec![];
    while seen.len() < 4 {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap();
        if ev.container_id == id {
            assert!(ev.pod_sandbox_status.is_some());
            seen.push(ev.container_event_type);
        }
    }
    use cri::ContainerEventType as E;
    assert_eq!(
        seen,
        vec![
            E::ContainerCreatedEvent as i32,
            E::ContainerStartedEvent as i32,
            E::ContainerStoppedEvent as i32,
            E::ContainerDeletedEvent as i32
        ]
    );
    drop(events);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_pid_namespace_and_security_context() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let mut cfg = pod_config("sharedpid", true, &d.dir.join("logs/sharedpid"));
    cfg.linux
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
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    // Like the kubelet with shareProcessNamespace: each container asks for the pod's pid namespace.
    let shared = |name: &str, args: &[&str]| {
        let mut c = container_config(name, &image("busybox:latest"), args);
        c.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    };
    let a = d
        .create(&pod, &cfg, shared("a", &["sleep", "301"]))
        .await
        .unwrap();
    d.start_ctr(&a).await;
    let b = d
        .create(&pod, &cfg, shared("b", &["sleep", "302"]))
        .await
        .unwrap();
    d.start_ctr(&b).await;
    let r = d.exec(&b, &["ps", "-o", "pid,args"], 10).await.unwrap();
    let ps = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(
        ps.contains("sleep 301") && ps.contains("sleep 302"),
        "containers of the pod see each other:\n{ps}"
    );
    assert!(
        !ps.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("sleep")),
        "pid 1 is the pod's pause:\n{ps}"
    );

    // Read-only rootfs, dropped capability, no_new_privs, masked paths.
    let mut sc = container_config("locked", &image("busybox:latest"), &["sleep", "300"]);
    sc.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            readonly_rootfs: true,
            no_new_privs: true,
            capabilities: Some(cri::Capability {
                drop_capabilities: vec!["CHOWN".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let l = d.create(&pod, &cfg, sc).await.unwrap();
    d.start_ctr(&l).await;
    let r = d
        .exec(&l, &["sh", "-c", "touch /x 2>&1; echo rc=$?"], 10)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&r.stdout).contains("rc=1"), "{r:?}");
    let r = d
        .exec(
            &l,
            &[
                "sh",
                "-c",
                "grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status",
            ],
            10,
        )
        .await
        .unwrap();
    let st = String::from_utf8_lossy(&r.stdout).to_string();
    let bnd = st
        .lines()
        .find(|l| l.starts_with("CapBnd"))
        .and_then(|l| u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).ok())
        .unwrap();
    assert_eq!(bnd & 1, 0, "CAP_CHOWN dropped: {st}");
    assert!(st.contains("NoNewPrivs:\t1"), "{st}");
    // Masked paths are covered by a bind of /dev/null (char device 1:3).
    let r = d
        .exec(&l, &["stat", "-c", "%t:%T", "/proc/keys"], 10)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        "1:3",
        "/proc/keys is masked: {r:?}"
    );

    // An unknown capability name is refused, naming it.
    let mut bad = container_config("badcap", &image("busybox:latest"), &["true"]);
    bad.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                add_capabilities: vec!["CAP_MAKE_COFFEE".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let (c, m) = code(d.create(&pod, &cfg, bad).await);
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.contains("CAP_MAKE_COFFEE"), "{m}");
    let _ = a;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_and_devices() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("mounts", true).await;
    let host = d.dir.join("hostdata");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("hello.txt"), "from-host\n").unwrap();
    let missing = d.dir.join("created-by-crius");
    let mut cfg = container_config("m", &image("busybox:latest"), &["sleep", "300"]);
    cfg.mounts = vec![
        cri::Mount {
            container_path: "/data".into(),
            host_path: host.display().to_string(),
            readonly: true,
            ..Default::default()
        },
        cri::Mount {
            container_path: "/scratch".into(),
            host_path: missing.display().to_string(),
            ..Default::default()
        },
    ];
    cfg.devices = vec![cri::Device {
        container_path: "/dev/mynull".into(),
        host_path: "/dev/null".into(),
        permissions: "rwm".into(),
    }];
    let id = d.create(&pod, &pod_cfg, cfg).await.unwrap();
    d.start_ctr(&id).await;
    assert!(
        missing.is_dir(),
        "a missing bind source is created as a directory"
    );
    let r = d.exec(&id, &["cat", "/data/hello.txt"], 10).await.unwrap();
    assert_eq!(r.stdout, b"from-host\n");
    let r = d
        .exec(&id, &["sh", "-c", "touch /data/x 2>/dev/null; echo $?"], 10)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        "1",
        "read-only mount"
    );
    let r = d
        .exec(
            &id,
            &["sh", "-c", "echo hi > /scratch/f && cat /scratch/f"],
            10,
        )
        .await
        .unwrap();
    assert_eq!(r.stdout, b"hi\n");
    assert_eq!(std::fs::read_to_string(missing.join("f")).unwrap(), "hi\n");
    let r = d
        .exec(&id, &["sh", "-c", "echo x > /dev/mynull && echo ok"], 10)
        .await
        .unwrap();
    assert_eq!(r.stdout, b"ok\n", "{r:?}");
    let s = d.status(&id).await;
    assert_eq!(
        s.mounts.len(),
        2,
        "ContainerStatus.mounts lists the CRI mounts"
    );

    let mut bad = container_config("bad", &image("busybox:latest"), &["true"]);
    bad.mounts = vec![cri::Mount {
        container_path: "/x".into(),
        host_path: "/tmp/../etc".into(),
        ..Default::default()
    }];
    let (c, m) = code(d.create(&pod, &pod_cfg, bad).await);
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.contains("host_path"), "{m}");
    let mut bad = container_config("baddev", &image("busybox:latest"), &["true"]);
    bad.devices = vec![cri::Device {
        container_path: "/dev/x".into(),
        host_path: "/dev/does-not-exist".into(),
        permissions: "rwm".into(),
    }];
    let (c, m) = code(d.create(&pod, &pod_cfg, bad).await);
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.contains("/dev/does-not-exist"), "{m}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seccomp_sysctls_and_oom_score_adj() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let mut pod_cfg = pod_config("seccomp", true, &d.dir.join("logs/seccomp"));
    pod_cfg.linux.as_mut().unwrap().sysctls =
        [("kernel.shm_rmid_forced".to_string(), "1".to_string())].into();
    let pod =
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let with = |name: &str,
                sc: cri::LinuxContainerSecurityContext,
                res: Option<cri::LinuxContainerResources>| {
        let mut c = container_config(name, &image("busybox:latest"), &["sleep", "300"]);
        c.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(sc),
            resources: res,
        });
        c
    };
    let profile =
        |t: cri::security_profile::ProfileType, r: &str| cri::LinuxContainerSecurityContext {
            seccomp: Some(cri::SecurityProfile {
                profile_type: t as i32,
                localhost_ref: r.into(),
            }),
            ..Default::default()
        };
    use cri::security_profile::ProfileType as P;
    let def = d
        .create(
            &pod,
            &pod_cfg,
            with("default", profile(P::RuntimeDefault, ""), None),
        )
        .await
        .unwrap();
    d.start_ctr(&def).await;
    let unc = d
        .create(
            &pod,
            &pod_cfg,
            with("unconfined", profile(P::Unconfined, ""), None),
        )
        .await
        .unwrap();
    d.start_ctr(&unc).await;
    let seccomp_mode = |r: cri::ExecSyncResponse| {
        String::from_utf8_lossy(&r.stdout)
            .lines()
            .find(|l| l.starts_with("Seccomp:"))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
    };
    let r = d
        .exec(&def, &["cat", "/proc/self/status"], 10)
        .await
        .unwrap();
    assert_eq!(
        seccomp_mode(r).as_deref(),
        Some("2"),
        "RuntimeDefault installs a filter"
    );
    let r = d
        .exec(&unc, &["cat", "/proc/self/status"], 10)
        .await
        .unwrap();
    assert_eq!(seccomp_mode(r).as_deref(), Some("0"), "Unconfined has none");
    // The default profile refuses what a container has no business doing.
    let r = d.exec(&def, &["unshare", "-U", "true"], 10).await.unwrap();
    assert_ne!(r.exit_code, 0, "unshare -U under RuntimeDefault: {r:?}");

    let (c, m) = code(
        d.create(
            &pod,
            &pod_cfg,
            with(
                "localhost",
                profile(P::Localhost, "/nonexistent/profile.json"),
                None,
            ),
        )
        .await,
    );
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.contains("/nonexistent/profile.json"), "{m}");

    // Pod sysctls reach the containers (IPC-namespaced, so they do not touch the host).
    let r = d
        .exec(&def, &["cat", "/proc/sys/kernel/shm_rmid_forced"], 10)
        .await
        .unwrap();
    assert_eq!(r.stdout, b"1\n");

    // oom_score_adj below the daemon's own cannot be granted without CAP_SYS_RESOURCE: it is raised to
    // the daemon's value instead of failing the container.
    let own: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let res = cri::LinuxContainerResources {
        oom_score_adj: -999,
        ..Default::default()
    };
    let o = d
        .create(
            &pod,
            &pod_cfg,
            with(
                "oom",
                cri::LinuxContainerSecurityContext::default(),
                Some(res),
            ),
        )
        .await
        .unwrap();
    d.start_ctr(&o).await;
    let r = d
        .exec(&o, &["cat", "/proc/self/oom_score_adj"], 10)
        .await
        .unwrap();
    let got: i32 = String::from_utf8_lossy(&r.stdout).trim().parse().unwrap();
    assert!(
        got >= own.min(0) && got <= 1000,
        "oom_score_adj {got} (daemon {own})"
    );
    let res = cri::LinuxContainerResources {
        oom_score_adj: 500,
        ..Default::default()
    };
    let o2 = d
        .create(
            &pod,
            &pod_cfg,
            with(
                "oom500",
                cri::LinuxContainerSecurityContext::default(),
                Some(res),
            ),
        )
        .await
        .unwrap();
    d.start_ctr(&o2).await;
    let r = d
        .exec(&o2, &["cat", "/proc/self/oom_score_adj"], 10)
        .await
        .unwrap();
    assert_eq!(r.stdout, b"500\n");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_hostname_defaults_and_limits() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    // No hostname (crictl, critest): the node's, as containerd does; a long pod name is fine.
    let long = "a-pod-name-that-is-much-longer-than-sixty-four-characters-to-check-the-default";
    let mut cfg = pod_config(long, false, &d.dir.join("logs/long"));
    cfg.hostname.clear();
    let pod =
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .pod_sandbox_id;
    let c = d.run(&pod, &cfg, "c", &["sleep", "60"]).await;
    let r = d.exec(&c, &["hostname"], 10).await.unwrap();
    let node = nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), node);
    // A hostname the kernel cannot hold is refused up front, naming the field.
    let mut bad = pod_config("badhost", true, &d.dir.join("logs/badhost"));
    bad.hostname = "h".repeat(65);
    let (c, m) = code(
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(bad),
            runtime_handler: String::new(),
        })
        .await,
    );
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.contains("config.hostname"), "{m}");
    d.shutdown().await;
}
