//! E2E: the Prometheus endpoint of the real daemon. Scrape, do real work (pulls from the test registry,
//! a pod on the CNI bridge, containers that fail, get OOM-killed and keep running, an exec session over
//! WebSocket), scrape again, and check that exactly the right series moved.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use cri_api::v1 as cri;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A raw HTTP/1.1 GET: (status, content-type, body).
fn http_get(port: u16, path: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to the metrics endpoint on {port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

/// One scrape: series (name with its labels, as exposed) → value.
struct Scrape {
    text: String,
    series: BTreeMap<String, f64>,
}

impl Scrape {
    fn get(&self, series: &str) -> f64 {
        *self
            .series
            .get(series)
            .unwrap_or_else(|| panic!("series {series} missing from the scrape:\n{}", self.text))
    }
    fn get_or_zero(&self, series: &str) -> f64 {
        self.series.get(series).copied().unwrap_or(0.0)
    }
}

fn scrape(port: u16) -> Scrape {
    let (status, ctype, text) = http_get(port, "/metrics");
    assert_eq!(status, 200, "{text}");
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let mut series = BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (k, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l}"));
        let v: f64 = v.parse().unwrap_or_else(|_| panic!("bad value in {l}"));
        series.insert(k.to_string(), v);
    }
    Scrape { text, series }
}

fn rpc(method: &str) -> String {
    format!("grpc_service=\"runtime.v1.RuntimeService\",grpc_method=\"{method}\"")
}

fn img_rpc(method: &str) -> String {
    format!("grpc_service=\"runtime.v1.ImageService\",grpc_method=\"{method}\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_moves_with_the_work_done() {
    let port = free_port();
    let mut d = Daemon::start_with(Options {
        extra_config: format!("metrics_address = \"127.0.0.1:{port}\"\n"),
        ..Default::default()
    })
    .await;

    let before = scrape(port);
    assert!(before.get("crius_process_resident_memory_bytes") > 1e6);
    assert!(before.get("crius_process_open_fds") >= 3.0);
    assert!(before.get("crius_process_threads") >= 2.0);
    // Started within the last few minutes.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = before.get("crius_process_start_time_seconds");
    assert!(
        now - start < 300.0 && now - start > -5.0,
        "{start} vs {now}"
    );
    assert_eq!(before.get("crius_pods{state=\"ready\"}"), 0.0);
    assert_eq!(before.get("crius_containers{state=\"running\"}"), 0.0);
    // The Version call of the harness' start-up was counted.
    assert!(before.get(&format!("crius_grpc_requests_total{{{}}}", rpc("Version"))) >= 1.0);

    // Pulls: one that works, one of a tag that does not exist.
    d.pull(&image("busybox:latest")).await;
    let missing = d
        .img
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image("no-such-image:latest"),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let (missing_code, _) = code(missing);

    // A pod on the CNI network, a container that fails, one the OOM killer ends, one that runs.
    let (pod, pod_cfg) = d.run_pod("metrics", false).await;
    let fail = d.run(&pod, &pod_cfg, "fail", &["sh", "-c", "exit 3"]).await;
    let mut oom_cfg = container_config(
        "oom",
        &image("busybox:latest"),
        &[
            "awk",
            "BEGIN { s = sprintf(\"%100000000s\", \"\"); print length(s) }",
        ],
    );
    oom_cfg.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 16 << 20,
            memory_swap_limit_in_bytes: 16 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let oom = d.create(&pod, &pod_cfg, oom_cfg).await.unwrap();
    d.start_ctr(&oom).await;
    let sleeper = d.run(&pod, &pod_cfg, "sleep", &["sleep", "300"]).await;
    let fail_st = d.wait_exit(&fail, Duration::from_secs(30)).await;
    assert_eq!(fail_st.reason, "Error");
    let oom_st = d.wait_exit(&oom, Duration::from_secs(60)).await;
    assert_eq!(oom_st.reason, "OOMKilled", "{oom_st:?}");

    // One exec session over WebSocket.
    let url =
        d.rt.exec(cri::ExecRequest {
            container_id: sleeper.clone(),
            cmd: vec!["echo".into(), "hi".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let out = crius_streaming::client::ws::exec(
        &url,
        &[crius_streaming::ws::V5_BINARY],
        crius_streaming::client::ExecIo {
            stdout: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(out.stdout, b"hi\n");

    let after = scrape(port);
    let delta = |s: &str| after.get(s) - before.get_or_zero(s);
    // Every family has HELP and TYPE, every sample the crius_ prefix (a labelled family shows once it
    // has a series).
    let helps: Vec<&str> = after
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .collect();
    let types = after
        .text
        .lines()
        .filter(|l| l.starts_with("# TYPE "))
        .count();
    assert_eq!(helps.len(), types, "{}", after.text);
    for name in [
        "crius_grpc_requests",
        "crius_grpc_errors",
        "crius_grpc_request_duration_seconds",
        "crius_image_pulls",
        "crius_image_pull_failures",
        "crius_image_pull_bytes",
        "crius_image_pull_duration_seconds",
        "crius_pods",
        "crius_containers",
        "crius_container_oom_kills",
        "crius_container_exits",
        "crius_cni_operation_duration_seconds",
        "crius_cni_operation_failures",
        "crius_streaming_sessions_open",
        "crius_streaming_sessions",
        "crius_process_resident_memory_bytes",
        "crius_process_open_fds",
        "crius_process_threads",
        "crius_process_cpu_seconds",
        "crius_process_start_time_seconds",
    ] {
        assert!(
            helps
                .iter()
                .any(|h| h.starts_with(&format!("{name} ")) && h.len() > name.len() + 10),
            "no HELP for {name}:\n{}",
            after.text
        );
    }
    for k in after.series.keys() {
        assert!(k.starts_with("crius_"), "{k}");
    }

    assert_eq!(delta("crius_image_pulls_total"), 1.0);
    assert!(delta("crius_image_pull_bytes_total") > 100_000.0);
    assert_eq!(delta("crius_image_pull_duration_seconds_count"), 2.0);
    assert_eq!(missing_code, tonic::Code::NotFound);
    assert_eq!(
        delta("crius_image_pull_failures_total{reason=\"not_found\"}"),
        1.0
    );
    assert_eq!(
        delta(&format!(
            "crius_grpc_requests_total{{{}}}",
            img_rpc("PullImage")
        )),
        2.0
    );
    assert_eq!(
        delta(&format!(
            "crius_grpc_errors_total{{{},grpc_code=\"NotFound\"}}",
            img_rpc("PullImage")
        )),
        1.0
    );
    assert_eq!(
        delta(&format!(
            "crius_grpc_requests_total{{{}}}",
            rpc("RunPodSandbox")
        )),
        1.0
    );
    assert_eq!(
        delta(&format!(
            "crius_grpc_requests_total{{{}}}",
            rpc("CreateContainer")
        )),
        3.0
    );
    assert_eq!(
        delta(&format!(
            "crius_grpc_request_duration_seconds_count{{{}}}",
            rpc("RunPodSandbox")
        )),
        1.0
    );
    // Successful calls are not errors.
    assert!(!after.text.contains(&format!(
        "crius_grpc_errors_total{{{}",
        rpc("RunPodSandbox")
    )));

    assert_eq!(after.get("crius_pods{state=\"ready\"}"), 1.0);
    assert_eq!(after.get("crius_containers{state=\"running\"}"), 1.0);
    assert_eq!(after.get("crius_containers{state=\"exited\"}"), 2.0);
    assert_eq!(delta("crius_container_exits_total{reason=\"Error\"}"), 1.0);
    assert_eq!(
        delta("crius_container_exits_total{reason=\"OOMKilled\"}"),
        1.0
    );
    assert_eq!(
        delta("crius_container_exits_total{reason=\"Completed\"}"),
        0.0
    );
    assert_eq!(delta("crius_container_oom_kills_total"), 1.0);

    assert_eq!(
        delta("crius_cni_operation_duration_seconds_count{operation=\"ADD\"}"),
        1.0
    );
    assert_eq!(
        delta("crius_cni_operation_failures_total{operation=\"ADD\"}"),
        0.0
    );
    assert_eq!(delta("crius_streaming_sessions_total{kind=\"exec\"}"), 1.0);
    assert_eq!(
        after.get("crius_streaming_sessions_open{kind=\"exec\"}"),
        0.0
    );
    assert!(
        after.get("crius_process_cpu_seconds_total")
            >= before.get("crius_process_cpu_seconds_total")
    );

    // Tearing the pod down runs CNI DEL and empties the state gauges.
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
    let end = scrape(port);
    assert_eq!(
        end.get("crius_cni_operation_duration_seconds_count{operation=\"DEL\"}")
            - before.get_or_zero("crius_cni_operation_duration_seconds_count{operation=\"DEL\"}"),
        1.0
    );
    assert_eq!(end.get("crius_pods{state=\"ready\"}"), 0.0);
    assert_eq!(end.get("crius_containers{state=\"exited\"}"), 0.0);
    // The sleeper was killed by the pod's stop: its exit counted under Error (SIGKILL, exit 137).
    assert_eq!(
        end.get("crius_container_exits_total{reason=\"Error\"}")
            - before.get_or_zero("crius_container_exits_total{reason=\"Error\"}"),
        2.0
    );

    // Other paths are not the metrics.
    assert_eq!(http_get(port, "/").0, 404);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_metrics_address_stops_the_daemon_naming_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("crius.toml");
    std::fs::write(
        &cfg,
        format!(
            "root = \"{r}/root\"\nstate = \"{r}/state\"\nlisten = \"{r}/state/crius.sock\"\ncni_conf_dir = \"{r}/net.d\"\nmetrics_address = \"127.0.0.1:{port}\"\n",
            r = dir.path().display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crius"))
        .args(["daemon", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metrics_address"), "{err}");
}
