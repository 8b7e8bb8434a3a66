//! E2E: the CRI metrics RPCs (ListMetricDescriptors, ListPodSandboxMetrics, StreamPodSandboxMetrics)
//! against real containers in a pod on the CNI bridge, over gRPC and through crictl v1.36
//! (`crictl metricdescs`, `crictl metricsp`).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use cri_api::v1 as cri;
use tonic::Code;

/// `name{label_values}` → value, for one container's (or the pod's) metrics.
fn index(ms: &[cri::Metric]) -> HashMap<String, (u64, Vec<String>, i32)> {
    ms.iter()
        .map(|m| {
            let extra = m.label_values[5..].join(",");
            (
                format!("{}{{{extra}}}", m.name),
                (
                    m.value.as_ref().map(|v| v.value).unwrap_or(0),
                    m.label_values.clone(),
                    m.metric_type,
                ),
            )
        })
        .collect()
}

async fn list_metrics(d: &mut Daemon) -> Vec<cri::PodSandboxMetrics> {
    d.rt.list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
        .await
        .unwrap_or_else(|e| panic!("ListPodSandboxMetrics: {e}\n{}", d.log()))
        .into_inner()
        .pod_metrics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_and_container_metrics_of_real_containers() {
    let mut d = Daemon::start_with(Options {
        extra_config: "[feature_gates]\nCRIListStreaming = true\n".into(),
        ..Default::default()
    })
    .await;

    let descs =
        d.rt.list_metric_descriptors(cri::ListMetricDescriptorsRequest {})
            .await
            .unwrap()
            .into_inner()
            .descriptors;
    let by_name: HashMap<&str, &cri::MetricDescriptor> =
        descs.iter().map(|x| (x.name.as_str(), x)).collect();
    for (name, extra) in [
        ("container_cpu_usage_seconds_total", vec!["cpu"]),
        ("container_memory_working_set_bytes", vec![]),
        ("container_memory_rss", vec![]),
        ("container_memory_cache", vec![]),
        ("container_network_receive_bytes_total", vec!["interface"]),
        ("container_fs_usage_bytes", vec![]),
        ("container_fs_writes_bytes_total", vec!["device"]),
        ("container_oom_events_total", vec![]),
        ("container_processes", vec![]),
        ("container_spec_memory_limit_bytes", vec![]),
    ] {
        let x = by_name
            .get(name)
            .unwrap_or_else(|| panic!("no descriptor {name}"));
        let mut keys = vec!["id", "image", "namespace", "pod", "container"];
        keys.extend(extra);
        assert_eq!(x.label_keys, keys, "{name}");
        assert!(!x.help.is_empty());
    }

    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("crimetrics", false).await;
    // A process holding a 20 MB buffer under a 256 MiB limit, and one that writes 4 MiB with O_DIRECT.
    let mut hog = container_config(
        "hog",
        &image("busybox:latest"),
        &[
            "awk",
            "BEGIN { s = sprintf(\"%20000000s\", \"\"); system(\"touch /tmp/ready; sleep 300\") }",
        ],
    );
    hog.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 256 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let hog = d.create(&pod, &pod_cfg, hog).await.unwrap();
    d.start_ctr(&hog).await;
    let writer = d
        .run(
            &pod,
            &pod_cfg,
            "writer",
            &[
                "sh",
                "-c",
                "dd if=/dev/zero of=/var/out bs=64k count=64 oflag=direct conv=fsync 2>/tmp/dd.err; touch /tmp/ready; sleep 300",
            ],
        )
        .await;
    let done = d.run(&pod, &pod_cfg, "done", &["true"]).await;
    d.wait_exit(&done, Duration::from_secs(30)).await;
    for c in [&hog, &writer] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while d
            .exec(c, &["test", "-e", "/tmp/ready"], 5)
            .await
            .unwrap()
            .exit_code
            != 0
        {
            assert!(Instant::now() < deadline, "{c} not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Traffic on eth0: ping the bridge gateway.
    let r = d
        .exec(
            &hog,
            &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.85.0.1"],
            20,
        )
        .await
        .unwrap();
    assert_eq!(r.exit_code, 0, "{}", String::from_utf8_lossy(&r.stderr));

    let all = list_metrics(&mut d).await;
    assert_eq!(all.len(), 1);
    let pm = &all[0];
    assert_eq!(pm.pod_sandbox_id, pod);

    // Pod level: the network of its namespace, labelled as the POD.
    let podm = index(&pm.metrics);
    let (rx, labels, kind) = podm
        .get("container_network_receive_bytes_total{eth0}")
        .unwrap_or_else(|| panic!("no eth0 receive bytes in {:?}", pm.metrics));
    assert!(*rx > 0);
    assert_eq!(labels[..5], [pod.as_str(), "", "e2e", "crimetrics", "POD"]);
    assert_eq!(*kind, cri::MetricType::Counter as i32);
    assert!(podm["container_network_transmit_packets_total{eth0}"].0 >= 3);
    assert!(!podm.keys().any(|k| k.ends_with("{lo}")));

    // Containers: the exited one is not measured.
    let ids: Vec<&str> = pm
        .container_metrics
        .iter()
        .map(|c| c.container_id.as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&hog.as_str()) && ids.contains(&writer.as_str()));
    assert!(!ids.contains(&done.as_str()));

    let hm = pm
        .container_metrics
        .iter()
        .find(|c| c.container_id == hog)
        .unwrap();
    let h = index(&hm.metrics);
    let (ws, labels, kind) = &h["container_memory_working_set_bytes{}"];
    assert!(*ws >= 20_000_000, "working set {ws}");
    assert_eq!(*kind, cri::MetricType::Gauge as i32);
    assert_eq!(
        labels,
        &vec![
            hog.clone(),
            image("busybox:latest"),
            "e2e".to_string(),
            "crimetrics".to_string(),
            "hog".to_string()
        ]
    );
    assert!(h["container_memory_rss{}"].0 >= 20_000_000);
    assert!(h["container_memory_usage_bytes{}"].0 >= h["container_memory_working_set_bytes{}"].0);
    assert_eq!(h["container_spec_memory_limit_bytes{}"].0, 256 << 20);
    assert!(h["container_processes{}"].0 >= 2, "awk and its sleep");
    assert!(h["container_threads{}"].0 >= h["container_processes{}"].0);
    assert!(h["container_file_descriptors{}"].0 >= 3);
    assert_eq!(h["container_oom_events_total{}"].0, 0);
    assert!(h.contains_key("container_cpu_usage_seconds_total{total}"));
    assert!(h.contains_key("container_memory_failures_total{pgfault,container}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let started = h["container_start_time_seconds{}"].0;
    assert!(now >= started && now - started < 120, "{started} vs {now}");
    assert!(now.abs_diff(h["container_last_seen{}"].0) < 60);
    assert!(h["container_fs_limit_bytes{}"].0 > 0);
    assert!(h["container_fs_inodes_total{}"].0 >= h["container_fs_inodes_free{}"].0);

    // The writer's 4 MiB land in its writable layer.
    let wm = pm
        .container_metrics
        .iter()
        .find(|c| c.container_id == writer)
        .unwrap();
    let w = index(&wm.metrics);
    let dd_err = d.exec(&writer, &["cat", "/tmp/dd.err"], 5).await.unwrap();
    let dd_err = String::from_utf8_lossy(&dd_err.stdout).to_string();
    assert!(
        w["container_fs_usage_bytes{}"].0 >= 4 << 20,
        "{:?}; dd said {dd_err}",
        w.get("container_fs_usage_bytes{}")
    );
    // Block I/O series are per device and only for devices the kernel accounted (on cgroup v1 the
    // throttle counters move only for devices with a throttle rule): when present, well-formed.
    for (k, (_, labels, kind)) in w
        .iter()
        .filter(|(k, _)| k.starts_with("container_fs_writes"))
    {
        assert_eq!(labels.len(), 6, "{k}");
        assert_eq!(*kind, cri::MetricType::Counter as i32);
    }

    // ContainerStats: IoUsage is served whenever the cgroup exists; pressure (PSI) only on cgroup v2,
    // whose pressure files v1 does not have.
    let st =
        d.rt.container_stats(cri::ContainerStatsRequest {
            container_id: hog.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let io = st.io.expect("IoUsage of a running container");
    assert!(io.timestamp > 0);
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(io.psi.is_some(), v2);
    assert_eq!(st.cpu.unwrap().psi.is_some(), v2);
    assert_eq!(st.memory.unwrap().psi.is_some(), v2);
    assert_eq!(
        h.contains_key("container_pressure_cpu_waiting_seconds_total{}"),
        v2
    );

    // The stream form pages the same pods.
    let mut s =
        d.rt.stream_pod_sandbox_metrics(cri::StreamPodSandboxMetricsRequest {})
            .await
            .unwrap()
            .into_inner();
    let mut streamed = vec![];
    while let Some(m) = s.message().await.unwrap() {
        streamed.extend(m.pod_sandbox_metrics.into_iter().map(|p| p.pod_sandbox_id));
    }
    assert_eq!(streamed, vec![pod.clone()]);

    // A stopped pod has no network and no running containers left to measure.
    d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    let all = list_metrics(&mut d).await;
    assert_eq!(all.len(), 1);
    assert!(all[0].metrics.is_empty());
    assert!(all[0].container_metrics.is_empty());
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_pod_sandbox_metrics_is_gated() {
    let mut d = Daemon::start().await;
    let e =
        d.rt.stream_pod_sandbox_metrics(cri::StreamPodSandboxMetricsRequest {})
            .await
            .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(e.message().contains("CRIListStreaming"), "{}", e.message());
    d.shutdown().await;
}

/// crictl v1.36 from the shared tools, unpacked into `dir`.
fn crictl(dir: &std::path::Path) -> PathBuf {
    let xz = std::env::var("CRIUS_CRICTL_XZ")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/tools/cri-tools/crictl.xz")
        });
    assert!(
        xz.exists(),
        "{} missing (set CRIUS_CRICTL_XZ)",
        xz.display()
    );
    let bin = dir.join("crictl");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("xz -dc \"$0\" > \"$1\" && chmod 0755 \"$1\"")
        .arg(&xz)
        .arg(&bin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

fn run_crictl(bin: &std::path::Path, sock: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(bin)
        .arg("--runtime-endpoint")
        .arg(format!("unix://{}", sock.display()))
        .arg("--image-endpoint")
        .arg(format!("unix://{}", sock.display()))
        .arg("--timeout")
        .arg("20s")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "crictl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "crictl {args:?} output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crictl_metricdescs_and_metricsp() {
    let tools = tempfile::tempdir().unwrap();
    let bin = crictl(tools.path());
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("crictlmetrics", false).await;
    let c = d.run(&pod, &pod_cfg, "sleeper", &["sleep", "300"]).await;

    let descs = run_crictl(&bin, &d.socket, &["metricdescs"]);
    let names: Vec<&str> = descs["descriptors"]
        .as_array()
        .unwrap_or_else(|| panic!("{descs}"))
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    assert!(
        names.contains(&"container_memory_working_set_bytes"),
        "{names:?}"
    );
    assert!(names.contains(&"container_network_receive_bytes_total"));

    let m = run_crictl(&bin, &d.socket, &["metricsp"]);
    let pods = m["podMetrics"].as_array().unwrap_or_else(|| panic!("{m}"));
    assert_eq!(pods.len(), 1, "{m}");
    assert_eq!(pods[0]["podSandboxId"], pod.as_str());
    let cm = pods[0]["containerMetrics"].as_array().unwrap();
    assert_eq!(cm[0]["containerId"], c.as_str());
    let ws = cm[0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "container_memory_working_set_bytes")
        .unwrap_or_else(|| panic!("{m}"));
    assert_eq!(ws["labelValues"][4], "sleeper");
    let v = ws["value"]["value"]
        .as_str()
        .map(|s| s.parse::<u64>().unwrap())
        .or_else(|| ws["value"]["value"].as_u64())
        .unwrap_or_else(|| panic!("{ws}"));
    assert!(v > 0);
    assert!(pods[0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["name"] == "container_network_transmit_bytes_total"));
    d.shutdown().await;
}
