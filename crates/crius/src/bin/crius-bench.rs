//! crius-bench: prints crius' speed and memory figures. Figures are printed, never asserted.
//!
//! It starts its own daemon (temp root/state, like the e2e tests) and drives it over gRPC:
//! RunPodSandbox (host network and pod network), CreateContainer, StartContainer, StopContainer,
//! RemovePodSandbox latency (median, p95), the RSS of the idle daemon and of one monitor, image pull
//! times (cold and warm), ListImages/ImageStatus latency, and exec round trips through the streaming
//! server.
//!
//! Last, the cost of the Prometheus instrumentation: unary RPC latency with `metrics_address` set and
//! unset (`--metrics-overhead` runs only that part).
//!
//! Usage: crius-bench [--runs N] [--metrics-overhead] [--clients C --pods P]   (needs the test
//! registry: scripts/start-registries.sh and scripts/build-test-images.py). With --pods, only the
//! concurrency figures (see `concurrency`) are printed.
//!
//! `crius-bench --compare [--endpoint unix:///… --endpoint-pid PID] [--churn 200] [--clients 20]
//! [--pull IMAGE --pull-bytes N]`: the figures of issue 16 for crius and, with an endpoint, for that
//! runtime in the same run, with the ratios (see `compare`; scripts/bench-vs-containerd.sh).
//!
//! `crius-bench --handlers [--runs N]`: per available runtime handler, p50/p99 of each lifecycle
//! call (see `handlers`).

#[path = "crius-bench/compare.rs"]
mod compare;
#[path = "crius-bench/concurrency.rs"]
mod concurrency;
#[path = "crius-bench/handlers.rs"]
mod handlers;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cri_api::v1 as cri;
use cri_api::v1::image_service_client::ImageServiceClient;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

struct Bench {
    dir: PathBuf,
    child: Child,
    rt: RuntimeServiceClient<Channel>,
    img: ImageServiceClient<Channel>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn registry() -> String {
    std::env::var("CRIUS_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name:<34} n={:<3} median {:>8.2} ms   p95 {:>8.2} ms   min {:>8.2} ms",
        v.len(),
        ms(p(0.5)),
        ms(p(0.95)),
        ms(v[0])
    );
}

/// (Pss, Private) KiB from smaps_rollup: what one more monitor really costs, shared libc pages aside.
fn pss_private_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .sum::<u64>()
    };
    (
        field("Pss:"),
        field("Private_Clean:") + field("Private_Dirty:"),
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

async fn start() -> anyhow::Result<Bench> {
    start_with("main", &[]).await
}

/// A daemon of its own (dir tagged `tag`), with extra `crius daemon` flags.
async fn start_with(tag: &str, extra: &[&str]) -> anyhow::Result<Bench> {
    let dir = std::env::temp_dir().join(format!("crius-bench-{}-{tag}", std::process::id()));
    let certs = dir.join("certs.d").join(registry());
    std::fs::create_dir_all(&certs)?;
    std::fs::create_dir_all(dir.join("net.d"))?;
    std::fs::write(
        certs.join("hosts.toml"),
        format!("server = \"http://{r}\"\n[host.\"http://{r}\"]\n  capabilities = [\"pull\", \"resolve\"]\n", r = registry()),
    )?;
    let crius = std::env::current_exe()?.with_file_name("crius");
    let sock = dir.join("state/crius.sock");
    let child = Command::new(&crius)
        .args(["daemon", "--log-level", "warn"])
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--state")
        .arg(dir.join("state"))
        .arg("--registry-config-dir")
        .arg(dir.join("certs.d"))
        .arg("--cni-conf-dir")
        .arg(dir.join("net.d"))
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("start {}: {e}", crius.display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(ch) = crius::client::connect(&sock).await {
            let mut rt = RuntimeServiceClient::new(ch.clone());
            if rt.version(cri::VersionRequest::default()).await.is_ok() {
                return Ok(Bench {
                    dir,
                    child,
                    rt,
                    img: ImageServiceClient::new(ch),
                });
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "daemon did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pod_cfg(name: &str, host_network: bool, logs: &Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("bench-{name}"),
            namespace: "bench".into(),
            attempt: 0,
        }),
        log_directory: logs.display().to_string(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: "/crius-bench".into(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: if host_network {
                        cri::NamespaceMode::Node
                    } else {
                        cri::NamespaceMode::Pod
                    } as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ctr_cfg(image: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "300".into()],
        log_path: "c.log".into(),
        ..Default::default()
    }
}

async fn pull(b: &mut Bench, image: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    b.img
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    Ok(t.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    if std::env::args().any(|a| a == "--metrics-overhead") {
        return metrics_overhead(runs * 25).await;
    }
    let arg = |name: &str| {
        std::env::args()
            .skip_while(|a| a != name)
            .nth(1)
            .and_then(|n| n.parse::<usize>().ok())
    };
    if std::env::args().any(|a| a == "--compare") {
        return compare_main(runs).await;
    }
    if std::env::args().any(|a| a == "--handlers") {
        return handlers::run(runs).await;
    }
    let mut b = start().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(pods) = arg("--pods") {
        let clients = arg("--clients").unwrap_or(20);
        let busybox = format!("{}/crius-test/busybox:latest", registry());
        let layered = format!("{}/crius-test/layered:latest", registry());
        pull(&mut b, &busybox).await?;
        let logs = b.dir.join("logs");
        let cfg = move |name: &str| pod_cfg(name, false, &logs);
        let _ = concurrency::run(
            "alone",
            &b.rt,
            clients,
            pods,
            cfg.clone(),
            ctr_cfg(&busybox),
        )
        .await?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = tokio::spawn(concurrency::image_churn(
            b.img.clone(),
            layered,
            stop.clone(),
        ));
        let _ =
            concurrency::run("image churn", &b.rt, clients, pods, cfg, ctr_cfg(&busybox)).await?;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (rounds, polls, worst) = churn.await??;
        println!(
            "{:<34} {rounds} pull+remove rounds, {polls} ImageFsInfo calls, slowest {:.1} ms",
            "image churn meanwhile",
            worst.as_secs_f64() * 1000.0
        );
        return Ok(());
    }
    println!(
        "crius-bench: {runs} runs per figure, daemon pid {}",
        b.child.id()
    );
    println!(
        "{:<34} {} KiB",
        "daemon RSS (idle, fresh)",
        rss_kib(b.child.id())
    );

    // Pulls: cold (empty store) and warm with shared layers (a second tag of a multi-layer image).
    let layered = format!("{}/crius-test/layered:latest", registry());
    let busybox = format!("{}/crius-test/busybox:latest", registry());
    let cold = pull(&mut b, &layered).await?;
    println!(
        "{:<34} {:>8.2} ms",
        "pull layered (cold)",
        cold.as_secs_f64() * 1000.0
    );
    let mut warm = vec![];
    let mut cold_bb = vec![];
    let mut bb_id = String::new();
    for _ in 0..runs.min(10) {
        // By id: every tag goes, and with it (garbage collection) the blobs and snapshots, so the
        // next pull downloads, verifies and unpacks everything again.
        if !bb_id.is_empty() {
            b.img
                .remove_image(cri::RemoveImageRequest {
                    image: Some(cri::ImageSpec {
                        image: bb_id.clone(),
                        ..Default::default()
                    }),
                })
                .await?;
        }
        let t = Instant::now();
        bb_id = b
            .img
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: busybox.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?
            .into_inner()
            .image_ref;
        cold_bb.push(t.elapsed());
        // Another tag of the same image: manifest and config only, the layers are there.
        warm.push(pull(&mut b, &format!("{}/crius-test/busybox:1.36", registry())).await?);
    }
    stats("pull busybox (cold, after rm)", cold_bb);
    stats("pull busybox:1.36 (layers there)", warm);
    let mut list = vec![];
    let mut status = vec![];
    for _ in 0..runs {
        let t = Instant::now();
        b.img.list_images(cri::ListImagesRequest::default()).await?;
        list.push(t.elapsed());
        let t = Instant::now();
        b.img
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: busybox.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await?;
        status.push(t.elapsed());
    }
    stats("ListImages", list);
    stats("ImageStatus", status);

    let logs = b.dir.join("logs");
    for (label, host_network) in [
        ("host network", true),
        (
            "pod network (default backend: native unless a CNI config exists)",
            false,
        ),
    ] {
        let (mut runp, mut create, mut startc, mut stop, mut rmp) =
            (vec![], vec![], vec![], vec![], vec![]);
        let mut monitor_rss = 0;
        let mut monitor_pss = (0, 0);
        for i in 0..runs {
            let cfg = pod_cfg(&format!("p{i}-{host_network}"), host_network, &logs);
            let t = Instant::now();
            let pod =
                b.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(cfg.clone()),
                    runtime_handler: String::new(),
                })
                .await?
                .into_inner()
                .pod_sandbox_id;
            runp.push(t.elapsed());
            let t = Instant::now();
            let ctr =
                b.rt.create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: pod.clone(),
                    config: Some(ctr_cfg(&busybox)),
                    sandbox_config: Some(cfg),
                })
                .await?
                .into_inner()
                .container_id;
            create.push(t.elapsed());
            let t = Instant::now();
            b.rt.start_container(cri::StartContainerRequest {
                container_id: ctr.clone(),
            })
            .await?;
            startc.push(t.elapsed());
            if i == 0 {
                let v =
                    b.rt.container_status(cri::ContainerStatusRequest {
                        container_id: ctr.clone(),
                        verbose: true,
                    })
                    .await?
                    .into_inner();
                let info: serde_json::Value =
                    serde_json::from_str(v.info.get("info").map(String::as_str).unwrap_or("{}"))?;
                let mpid = info["monitorPid"].as_u64().unwrap_or(0) as u32;
                monitor_rss = rss_kib(mpid);
                monitor_pss = pss_private_kib(mpid);
            }
            let t = Instant::now();
            b.rt.stop_container(cri::StopContainerRequest {
                container_id: ctr.clone(),
                timeout: 0,
            })
            .await?;
            stop.push(t.elapsed());
            b.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await?;
            let t = Instant::now();
            b.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            })
            .await?;
            rmp.push(t.elapsed());
        }
        println!("-- {label}");
        stats("RunPodSandbox", runp);
        stats("CreateContainer", create);
        stats("StartContainer", startc);
        stats("StopContainer (timeout 0)", stop);
        stats("RemovePodSandbox (after stop)", rmp);
        println!(
            "{:<34} {} KiB (PSS {} KiB, private {} KiB)",
            "monitor RSS (running container)", monitor_rss, monitor_pss.0, monitor_pss.1
        );
    }
    exec_round_trips(&mut b, &busybox, runs.max(20)).await?;
    println!(
        "{:<34} {} KiB",
        "daemon RSS (after the runs)",
        rss_kib(b.child.id())
    );
    drop(b);
    metrics_overhead(runs.max(20) * 25).await
}

fn str_arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

/// `--compare`: see the module doc of `compare`.
async fn compare_main(runs: usize) -> anyhow::Result<()> {
    let num = |name: &str, d: usize| {
        str_arg(name)
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(d)
    };
    let opts = compare::Options {
        runs,
        churn: num("--churn", 200),
        clients: num("--clients", 20),
        resident_pods: num("--resident-pods", 20),
        busybox: str_arg("--image")
            .unwrap_or_else(|| format!("{}/crius-test/busybox:latest", registry())),
        pull: match (str_arg("--pull"), str_arg("--pull-bytes")) {
            (Some(i), Some(n)) => Some((i, n.parse()?)),
            (None, None) => None,
            _ => anyhow::bail!("--pull and --pull-bytes go together"),
        },
    };
    let other = match str_arg("--endpoint") {
        None => None,
        Some(ep) => {
            let path = ep.strip_prefix("unix://").unwrap_or(&ep).to_string();
            let pid: u32 = str_arg("--endpoint-pid")
                .ok_or_else(|| anyhow::anyhow!("--endpoint needs --endpoint-pid (its daemon)"))?
                .parse()?;
            let name = str_arg("--endpoint-name").unwrap_or_else(|| "other".into());
            let ch = crius::client::connect(Path::new(&path)).await?;
            let logs =
                std::env::temp_dir().join(format!("crius-bench-{}-other-logs", std::process::id()));
            Some(compare::Target {
                name,
                rt: RuntimeServiceClient::new(ch.clone()),
                img: ImageServiceClient::new(ch),
                pid,
                marker: path,
                logs,
            })
        }
    };
    // The other runtime first: crius' daemon is not running meanwhile.
    let fo = match other {
        Some(mut t) => {
            let f = compare::measure(&mut t, &opts).await?;
            let _ = std::fs::remove_dir_all(&t.logs);
            Some((t.name.clone(), f))
        }
        None => None,
    };
    let b = start().await?;
    let mut rt = b.rt.clone();
    let info = rt
        .status(cri::StatusRequest { verbose: true })
        .await?
        .into_inner()
        .info;
    let handler = info
        .get("defaultRuntime")
        .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
        .and_then(|v| v["chosen"].as_str().map(String::from))
        .unwrap_or_default();
    let mut t = compare::Target {
        name: format!("crius ({handler})"),
        rt: b.rt.clone(),
        img: b.img.clone(),
        pid: b.child.id(),
        marker: b.dir.display().to_string(),
        logs: b.dir.join("logs"),
    };
    let fc = compare::measure(&mut t, &opts).await?;
    drop(b);
    if !handler.is_empty() {
        let bin = crius::oci::find_binary(Path::new(&handler));
        let (c, s, d) = compare::bare_runtime(&bin.to_string_lossy(), runs)?;
        println!(
            "\nbare {handler} (host-/usr bundle, medians): create {c:.2} ms, start {s:.2} ms, kill+delete {d:.2} ms"
        );
        println!(
            "crius' own time above the runtime: CreateContainer {:.2} ms, StartContainer {:.2} ms, StopContainer+RemoveContainer {:.2} ms",
            fc.create - c,
            fc.start - s,
            fc.stop_ctr + fc.remove_ctr - d
        );
    }
    compare::print((&t.name, &fc), fo.as_ref().map(|(n, f)| (n.as_str(), f)));
    Ok(())
}

/// The cost of the Prometheus instrumentation: two daemons, one with `--metrics-address` (the per-RPC
/// layer and the endpoint on) and one without, called alternately so that machine load hits both alike.
async fn metrics_overhead(calls: usize) -> anyhow::Result<()> {
    let mut off = start_with("metrics-off", &[]).await?;
    let mut on = start_with("metrics-on", &["--metrics-address", "127.0.0.1:0"]).await?;
    let (mut v_off, mut v_on, mut l_off, mut l_on) = (vec![], vec![], vec![], vec![]);
    for i in 0..calls + 50 {
        let mut pair = [
            (&mut off, &mut v_off, &mut l_off),
            (&mut on, &mut v_on, &mut l_on),
        ];
        // Each goes first half the time: the second call of a pair runs on a warmer machine.
        if i % 2 == 1 {
            pair.reverse();
        }
        for (b, v, l) in pair {
            let t = Instant::now();
            b.rt.version(cri::VersionRequest::default()).await?;
            let version = t.elapsed();
            let t = Instant::now();
            b.rt.list_pod_sandbox(cri::ListPodSandboxRequest::default())
                .await?;
            let list = t.elapsed();
            // The first calls warm connections and caches up.
            if i >= 50 {
                v.push(version);
                l.push(list);
            }
        }
    }
    println!("-- metrics overhead ({calls} alternating calls per daemon)");
    stats("Version, metrics off", v_off);
    stats("Version, metrics on", v_on);
    stats("ListPodSandbox, metrics off", l_off);
    stats("ListPodSandbox, metrics on", l_on);
    println!(
        "{:<34} off {} KiB, on {} KiB",
        "daemon RSS after the calls",
        rss_kib(off.child.id()),
        rss_kib(on.child.id())
    );
    Ok(())
}

/// Exec round trip through the streaming server: Exec RPC, connect, run `true`, exit status back.
async fn exec_round_trips(b: &mut Bench, image: &str, runs: usize) -> anyhow::Result<()> {
    use crius_streaming::client::{spdy, ws, ExecIo};
    let cfg = pod_cfg("exec", true, &b.dir.join("logs"));
    let pod =
        b.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let ctr =
        b.rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(ctr_cfg(image)),
            sandbox_config: Some(cfg),
        })
        .await?
        .into_inner()
        .container_id;
    b.rt.start_container(cri::StartContainerRequest {
        container_id: ctr.clone(),
    })
    .await?;
    for spdy_transport in [false, true] {
        let mut times = vec![];
        for _ in 0..runs {
            let t = Instant::now();
            let url =
                b.rt.exec(cri::ExecRequest {
                    container_id: ctr.clone(),
                    cmd: vec!["true".into()],
                    stdout: true,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .url;
            let io = ExecIo {
                stdout: true,
                ..Default::default()
            };
            let out = if spdy_transport {
                spdy::exec(&url, &[crius_streaming::spdy::REMOTECOMMAND_V4], io, false).await
            } else {
                ws::exec(&url, &[crius_streaming::ws::V5_BINARY], io).await
            }
            .map_err(|e| anyhow::anyhow!("exec: {e}"))?;
            anyhow::ensure!(
                out.status.code() == Some(0),
                "exec `true` failed: {:?}",
                out.status
            );
            times.push(t.elapsed());
        }
        stats(
            if spdy_transport {
                "exec round trip (SPDY v4)"
            } else {
                "exec round trip (WebSocket v5)"
            },
            times,
        );
    }
    b.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await?;
    b.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await?;
    Ok(())
}
