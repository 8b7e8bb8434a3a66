//! E2E: the CRI stats RPCs against real containers — CPU time and rate of a busy loop, memory of a
//! process holding a large buffer, the writable layer growing, filters, pod network counters after real
//! traffic on the CNI bridge, and the error and gating semantics.

mod common;

use std::time::{Duration, Instant};

use common::*;
use cri_api::v1 as cri;
use tonic::Code;

async fn ctr_stats(d: &mut Daemon, id: &str) -> cri::ContainerStats {
    d.rt.container_stats(cri::ContainerStatsRequest {
        container_id: id.to_string(),
    })
    .await
    .unwrap_or_else(|e| panic!("ContainerStats {id}: {e}\n{}", d.log()))
    .into_inner()
    .stats
    .expect("stats")
}

async fn pod_stats(d: &mut Daemon, id: &str) -> cri::PodSandboxStats {
    d.rt.pod_sandbox_stats(cri::PodSandboxStatsRequest {
        pod_sandbox_id: id.to_string(),
    })
    .await
    .unwrap_or_else(|e| panic!("PodSandboxStats {id}: {e}\n{}", d.log()))
    .into_inner()
    .stats
    .expect("stats")
}

async fn list_ctr_stats(d: &mut Daemon, filter: cri::ContainerStatsFilter) -> Vec<String> {
    let mut ids: Vec<String> =
        d.rt.list_container_stats(cri::ListContainerStatsRequest {
            filter: Some(filter),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .into_iter()
        .map(|s| s.attributes.unwrap().id)
        .collect();
    ids.sort();
    ids
}

fn v(x: &Option<cri::UInt64Value>) -> Option<u64> {
    x.as_ref().map(|v| v.value)
}

fn cpu_ns(s: &cri::ContainerStats) -> u64 {
    v(&s.cpu.as_ref().unwrap().usage_core_nano_seconds).expect("usage_core_nano_seconds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_and_memory_of_running_containers() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("statscpu", true).await;
    let burn = d
        .run(&pod, &pod_cfg, "burn", &["sh", "-c", "while :; do :; done"])
        .await;
    let mut cfg = container_config(
        "hog",
        &image("busybox:latest"),
        &[
            "awk",
            "BEGIN { s = sprintf(\"%20000000s\", \"\"); system(\"touch /tmp/ready; sleep 300\") }",
        ],
    );
    cfg.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 256 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let hog = d.create(&pod, &pod_cfg, cfg).await.unwrap();
    d.start_ctr(&hog).await;

    // CPU: the counter grows between two calls and the rate is a real share of a core.
    let first = ctr_stats(&mut d, &burn).await;
    let attrs = first.attributes.clone().unwrap();
    assert_eq!(attrs.id, burn);
    assert_eq!(attrs.metadata.unwrap().name, "burn");
    assert_eq!(attrs.labels.get("ctr").map(String::as_str), Some("burn"));
    let c1 = first.cpu.unwrap();
    assert!(c1.timestamp > 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = ctr_stats(&mut d, &burn).await;
    let c2 = second.cpu.unwrap();
    assert!(c2.timestamp > c1.timestamp);
    let (u1, u2) = (cpu_ns(&first), cpu_ns(&second));
    assert!(
        u2 > u1 + 100_000_000,
        "a busy loop used {} ms of CPU in 2 s",
        (u2 - u1) / 1_000_000
    );
    let cores = v(&c2.usage_nano_cores).expect("usage_nano_cores after a second sample");
    // On a shared 2-core machine the loop gets at least a tenth of a core, and never more than 2.
    assert!(
        (100_000_000..=2_100_000_000).contains(&cores),
        "usage_nano_cores {cores}"
    );
    eprintln!(
        "busy loop: {} ms CPU in 2 s, {:.2} cores",
        (u2 - u1) / 1_000_000,
        cores as f64 / 1e9
    );
    let m = second.memory.unwrap();
    assert!(m.timestamp > 0);
    assert!(v(&m.usage_bytes).unwrap() > 0);
    // No limit was set for this container.
    assert_eq!(m.available_bytes, None);

    // Memory: awk holds a 20 MB string while its child sleeps.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mem = loop {
        let s = ctr_stats(&mut d, &hog).await;
        let m = s.memory.unwrap();
        let ready = d
            .exec(&hog, &["test", "-e", "/tmp/ready"], 5)
            .await
            .map(|r| r.exit_code == 0)
            .unwrap_or(false);
        if ready && v(&m.working_set_bytes).unwrap_or(0) > 10_000_000 {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "working set never passed 10 MB (ready {ready}): {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ws = v(&mem.working_set_bytes).unwrap();
    let usage = v(&mem.usage_bytes).unwrap();
    assert!(usage >= ws, "{mem:?}");
    assert!(v(&mem.rss_bytes).unwrap() > 10_000_000, "{mem:?}");
    assert!(v(&mem.page_faults).unwrap() > 0, "{mem:?}");
    assert!(mem.major_page_faults.is_some(), "{mem:?}");
    assert_eq!(
        v(&mem.available_bytes),
        Some((256 << 20) - ws),
        "available = limit - working set: {mem:?}"
    );
    eprintln!(
        "20 MB awk string: working set {} MB, rss {} MB",
        ws >> 20,
        v(&mem.rss_bytes).unwrap() >> 20
    );

    // Streams are alpha and off by default.
    let (c, msg) = code(
        d.rt.stream_container_stats(cri::StreamContainerStatsRequest::default())
            .await,
    );
    assert_eq!(c, Code::Unimplemented);
    assert!(msg.contains("CRIListStreaming"), "{msg}");
    let (c, _) = code(
        d.rt.stream_pod_sandbox_stats(cri::StreamPodSandboxStatsRequest::default())
            .await,
    );
    assert_eq!(c, Code::Unimplemented);
    // The metrics RPCs are served (tests/cri_metrics.rs); their stream form is gated the same way.
    let (c, msg) = code(
        d.rt.stream_pod_sandbox_metrics(cri::StreamPodSandboxMetricsRequest::default())
            .await,
    );
    assert_eq!(c, Code::Unimplemented);
    assert!(msg.contains("CRIListStreaming"), "{msg}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writable_layer_filters_exited_and_unknown() {
    let mut d = Daemon::start_with(Options {
        extra_config: "[feature_gates]\nCRIListStreaming = true\n".into(),
        ..Default::default()
    })
    .await;
    d.pull(&image("busybox:latest")).await;
    let (pa, pa_cfg) = d.run_pod("statsa", true).await;
    let (pb, pb_cfg) = d.run_pod("statsb", true).await;
    let a1 = d.run(&pa, &pa_cfg, "a1", &["sleep", "300"]).await;
    let a2 = d.run(&pa, &pa_cfg, "a2", &["sleep", "300"]).await;
    let b1 = d.run(&pb, &pb_cfg, "b1", &["sleep", "300"]).await;

    // The writable layer grows by what the container writes into its rootfs.
    let before = ctr_stats(&mut d, &a1).await.writable_layer.unwrap();
    assert!(!before.fs_id.as_ref().unwrap().mountpoint.is_empty());
    let r = d
        .exec(
            &a1,
            &["dd", "if=/dev/zero", "of=/grown", "bs=1048576", "count=8"],
            30,
        )
        .await
        .unwrap();
    assert_eq!(r.exit_code, 0, "{}", String::from_utf8_lossy(&r.stderr));
    let after = ctr_stats(&mut d, &a1).await.writable_layer.unwrap();
    let (b0, b1_) = (
        v(&before.used_bytes).unwrap(),
        v(&after.used_bytes).unwrap(),
    );
    assert!(
        b1_ >= b0 + (8 << 20),
        "writable layer {b0} -> {b1_} bytes after writing 8 MiB"
    );
    assert!(v(&after.inodes_used).unwrap() > v(&before.inodes_used).unwrap());
    // Another container's layer did not move.
    let other = ctr_stats(&mut d, &a2).await.writable_layer.unwrap();
    assert!(v(&other.used_bytes).unwrap() < (1 << 20), "{other:?}");

    // Filters: none, id prefix, pod, labels, and all together.
    let mut all = vec![a1.clone(), a2.clone(), b1.clone()];
    all.sort();
    assert_eq!(list_ctr_stats(&mut d, Default::default()).await, all);
    let by_id = cri::ContainerStatsFilter {
        id: a2[..12].to_string(),
        ..Default::default()
    };
    assert_eq!(list_ctr_stats(&mut d, by_id).await, [a2.as_str()]);
    let by_pod = cri::ContainerStatsFilter {
        pod_sandbox_id: pa.clone(),
        ..Default::default()
    };
    let mut in_a = vec![a1.clone(), a2.clone()];
    in_a.sort();
    assert_eq!(list_ctr_stats(&mut d, by_pod).await, in_a);
    let by_label = cri::ContainerStatsFilter {
        label_selector: [("ctr".to_string(), "b1".to_string())].into(),
        ..Default::default()
    };
    assert_eq!(list_ctr_stats(&mut d, by_label).await, [b1.as_str()]);
    let nothing = cri::ContainerStatsFilter {
        pod_sandbox_id: pb.clone(),
        label_selector: [("ctr".to_string(), "a1".to_string())].into(),
        ..Default::default()
    };
    assert!(list_ctr_stats(&mut d, nothing).await.is_empty());

    // The stream (gate on here) carries the same set.
    let mut stream =
        d.rt.stream_container_stats(cri::StreamContainerStatsRequest {
            filter: Some(cri::ContainerStatsFilter {
                pod_sandbox_id: pa.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(page) = stream.message().await.unwrap() {
        streamed.extend(
            page.container_stats
                .into_iter()
                .map(|s| s.attributes.unwrap().id),
        );
    }
    streamed.sort();
    assert_eq!(streamed, in_a);

    // An exited container still has stats, without CPU or memory usage.
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: a2.clone(),
        timeout: 5,
    })
    .await
    .unwrap();
    let s = ctr_stats(&mut d, &a2).await;
    let cpu = s.cpu.unwrap();
    assert!(cpu.timestamp > 0);
    assert_eq!(cpu.usage_core_nano_seconds, None);
    assert_eq!(s.memory.unwrap().working_set_bytes, None);
    assert!(s.writable_layer.unwrap().used_bytes.is_some());

    // Unknown ids.
    let (c, _) = code(
        d.rt.container_stats(cri::ContainerStatsRequest {
            container_id: "0123456789abcdef".into(),
        })
        .await,
    );
    assert_eq!(c, Code::NotFound);
    let (c, _) = code(
        d.rt.pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: "0123456789abcdef".into(),
        })
        .await,
    );
    assert_eq!(c, Code::NotFound);
    let (c, _) = code(
        d.rt.container_stats(cri::ContainerStatsRequest {
            container_id: String::new(),
        })
        .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_stats_with_network_traffic() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("statsnet", false).await;
    let (other, _) = d.run_pod("statsother", true).await;
    let c = d
        .run(&pod, &pod_cfg, "pinger", &["sh", "-c", "sleep 300"])
        .await;

    let before = pod_stats(&mut d, &pod).await;
    let attrs = before.attributes.clone().unwrap();
    assert_eq!(attrs.id, pod);
    assert_eq!(attrs.metadata.unwrap().name, "statsnet");
    assert_eq!(
        attrs.labels.get("app").map(String::as_str),
        Some("statsnet")
    );
    let linux = before.linux.clone().unwrap();
    assert_eq!(linux.containers.len(), 1);
    assert_eq!(linux.containers[0].attributes.as_ref().unwrap().id, c);
    assert!(v(&linux.cpu.unwrap().usage_core_nano_seconds).is_some());
    assert!(v(&linux.memory.unwrap().working_set_bytes).unwrap() > 0);
    assert!(
        v(&linux.process.unwrap().process_count).unwrap() >= 1,
        "the sleep is a process"
    );
    let net0 = linux.network.expect("a CNI pod has network stats");
    let eth0 = net0.default_interface.clone().expect("eth0");
    assert_eq!(eth0.name, "eth0");
    assert!(net0.interfaces.iter().all(|i| i.name != "lo"));

    let r = d
        .exec(
            &c,
            &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.85.0.1"],
            20,
        )
        .await
        .unwrap();
    assert_eq!(
        r.exit_code,
        0,
        "ping the bridge gateway: {}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    let after = pod_stats(&mut d, &pod).await;
    let eth1 = after
        .linux
        .unwrap()
        .network
        .unwrap()
        .default_interface
        .unwrap();
    let (rx0, tx0) = (v(&eth0.rx_bytes).unwrap(), v(&eth0.tx_bytes).unwrap());
    let (rx1, tx1) = (v(&eth1.rx_bytes).unwrap(), v(&eth1.tx_bytes).unwrap());
    // Three 84-byte ICMP packets each way (plus Ethernet headers).
    assert!(
        rx1 >= rx0 + 3 * 84 && tx1 >= tx0 + 3 * 84,
        "eth0 rx {rx0}->{rx1}, tx {tx0}->{tx1}"
    );
    assert!(v(&eth1.rx_errors).is_some() && v(&eth1.tx_errors).is_some());

    // A host-network pod has no network of its own to report.
    let host = pod_stats(&mut d, &other).await;
    assert!(host.linux.unwrap().network.is_none());

    // ListPodSandboxStats filters.
    let list = |f: cri::PodSandboxStatsFilter| cri::ListPodSandboxStatsRequest { filter: Some(f) };
    let ids = |r: cri::ListPodSandboxStatsResponse| -> Vec<String> {
        r.stats
            .into_iter()
            .map(|s| s.attributes.unwrap().id)
            .collect()
    };
    let got = ids(d
        .rt
        .list_pod_sandbox_stats(list(cri::PodSandboxStatsFilter {
            label_selector: [("app".to_string(), "statsnet".to_string())].into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner());
    assert_eq!(got, [pod.as_str()]);
    let got = ids(d
        .rt
        .list_pod_sandbox_stats(list(cri::PodSandboxStatsFilter {
            id: other[..10].to_string(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner());
    assert_eq!(got, [other.as_str()]);
    let got = ids(d
        .rt
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest::default())
        .await
        .unwrap()
        .into_inner());
    assert_eq!(got.len(), 2);
    d.shutdown().await;
}

/// Removes a pod cgroup parent the test made runc create (runc removes only the containers' own).
fn remove_cgroup(rel: &str) {
    let root = std::path::Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        let _ = std::fs::remove_dir(root.join(rel));
        return;
    }
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            let _ = std::fs::remove_dir(e.path().join(rel));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_with_its_own_cgroup_parent_reads_it() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let mut cfg = pod_config("statsparent", true, &d.dir.join("logs/statsparent"));
    let uid = cfg.metadata.as_ref().unwrap().uid.clone();
    let parent = format!("crius-e2e/pod{uid}");
    cfg.linux.as_mut().unwrap().cgroup_parent = format!("/{parent}");
    let pod =
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let c = d
        .run(&pod, &cfg, "busy", &["sh", "-c", "while :; do :; done"])
        .await;
    // A limit on the pod cgroup itself shows up only if the pod's figures come from that cgroup.
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let limit_file = if v2 {
        format!("/sys/fs/cgroup/{parent}/memory.max")
    } else {
        format!("/sys/fs/cgroup/memory/{parent}/memory.limit_in_bytes")
    };
    std::fs::write(&limit_file, (512u64 << 20).to_string()).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let s = pod_stats(&mut d, &pod).await.linux.unwrap();
    let ctr_cpu = cpu_ns(&s.containers[0]);
    assert_eq!(s.containers[0].attributes.as_ref().unwrap().id, c);
    let pod_cpu = v(&s.cpu.unwrap().usage_core_nano_seconds).unwrap();
    assert!(pod_cpu >= ctr_cpu, "pod {pod_cpu} < container {ctr_cpu}");
    let m = s.memory.unwrap();
    let ws = v(&m.working_set_bytes).unwrap();
    assert!(ws > 0);
    assert_eq!(v(&m.available_bytes), Some((512 << 20) - ws), "{m:?}");
    assert!(v(&s.process.unwrap().process_count).unwrap() >= 1);
    d.shutdown().await;
    remove_cgroup(&parent);
}
