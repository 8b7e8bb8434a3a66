//! `crius-bench --handlers [--runs N]`: per runtime handler, the latency of each step of a pod's
//! life — RunPodSandbox, CreateContainer, StartContainer, ExecSync, StopContainer, StopPodSandbox,
//! RemovePodSandbox — over N pods (p50 and p99), for every handler the daemon reports available
//! among runc, crun, youki (`$CRIUS_YOUKI`, else scripts/install-youki.sh's
//! `$CRIUS_TEST_DIR/youki/bin/youki`) and runsc. One daemon, pod network (the embedded default),
//! one busybox `sleep` container per pod, `echo` as the exec, StopContainer with timeout 0. The
//! handlers run one after another, never concurrently. Figures are printed, never asserted.
//!
//! Handlers that are unavailable are listed with the daemon's reason (crun 1.8 on a cgroup v1 host
//! whose cgroup2 mount holds a controller, for one: scripts/critest.sh shows the hugetlb remount
//! that makes it run; this bench changes nothing on the host).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cri_api::v1 as cri;

use super::{ctr_cfg, pod_cfg, pull, registry, start_with};

const HANDLERS: &[&str] = &["runc", "crun", "youki", "runsc"];
const STEPS: &[&str] = &[
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "ExecSync",
    "StopContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
];

fn youki_path() -> PathBuf {
    std::env::var_os("CRIUS_YOUKI")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(
                std::env::var("CRIUS_TEST_DIR").unwrap_or_else(|_| "/var/lib/crius-test".into()),
            )
            .join("youki/bin/youki")
        })
}

/// The config naming the four handlers (everything else comes from `start_with`'s flags).
fn config_text() -> String {
    let runsc_args = crius::config::RUNSC_DEFAULT_ARGS
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[runtimes.runc]\npath = \"runc\"\n[runtimes.crun]\npath = \"crun\"\n\
         [runtimes.youki]\npath = {youki:?}\n[runtimes.runsc]\npath = \"runsc\"\nargs = [{runsc_args}]\n",
        youki = youki_path().display().to_string(),
    )
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

pub async fn run(runs: usize) -> anyhow::Result<()> {
    anyhow::ensure!(runs > 0, "--runs must be at least 1");
    let config =
        std::env::temp_dir().join(format!("crius-bench-{}-handlers.toml", std::process::id()));
    std::fs::write(&config, config_text())
        .map_err(|e| anyhow::anyhow!("write {}: {e}", config.display()))?;
    let config_arg = config.display().to_string();
    let started = start_with("handlers", &["--config", &config_arg]).await;
    let _ = std::fs::remove_file(&config);
    let mut b = started?;

    let status =
        b.rt.status(cri::StatusRequest { verbose: true })
            .await?
            .into_inner();
    let info: serde_json::Value = serde_json::from_str(
        status
            .info
            .get("runtimeHandlers")
            .ok_or_else(|| anyhow::anyhow!("verbose Status has no runtimeHandlers"))?,
    )?;
    let mut available = Vec::new();
    for &h in HANDLERS {
        let v = &info[h];
        if v["available"].as_bool() == Some(true) {
            println!(
                "handler {h:<6} available: {}",
                v["version"].as_str().unwrap_or("?")
            );
            available.push(h);
        } else {
            println!(
                "handler {h:<6} NOT measured: {}",
                v["reason"].as_str().unwrap_or("not reported")
            );
        }
    }

    let busybox = format!("{}/crius-test/busybox:latest", registry());
    pull(&mut b, &busybox).await?;
    let logs = b.dir.join("logs");
    let mut table: Vec<(&str, Vec<Vec<Duration>>)> = Vec::new();
    for &h in &available {
        let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); STEPS.len()];
        for i in 0..runs {
            let cfg = pod_cfg(&format!("{h}-{i}"), false, &logs.join(format!("{h}-{i}")));
            let timed = Instant::now();
            let pod =
                b.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(cfg.clone()),
                    runtime_handler: h.to_string(),
                })
                .await
                .map_err(|e| anyhow::anyhow!("{h}: RunPodSandbox: {e}"))?
                .into_inner()
                .pod_sandbox_id;
            times[0].push(timed.elapsed());
            let result = one_pod(&mut b, h, &pod, &cfg, &busybox, &mut times).await;
            if result.is_err() {
                // Leave nothing behind before reporting.
                let _ =
                    b.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: pod.clone(),
                    })
                    .await;
                let _ =
                    b.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                        pod_sandbox_id: pod.clone(),
                    })
                    .await;
            }
            result?;
        }
        table.push((h, times));
    }

    println!(
        "\nper-handler lifecycle latency, {runs} pods each (p99 of {runs} samples is their maximum when fewer than 100)"
    );
    print!("{:<18}", "step (ms)");
    for (h, _) in &table {
        print!("{:>10} p50{:>8} p99", h, "");
    }
    println!();
    for (s, step) in STEPS.iter().enumerate() {
        print!("{step:<18}");
        for (_, times) in &table {
            let mut v = times[s].clone();
            v.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            print!(
                "{:>14.1}{:>12.1}",
                ms(percentile(&v, 0.5)),
                ms(percentile(&v, 0.99))
            );
        }
        println!();
    }
    Ok(())
}

/// Create, start, exec, stop the container, then stop and remove the pod, timing each call.
async fn one_pod(
    b: &mut super::Bench,
    h: &str,
    pod: &str,
    cfg: &cri::PodSandboxConfig,
    image: &str,
    times: &mut [Vec<Duration>],
) -> anyhow::Result<()> {
    let err = |step: &str, e: tonic::Status| anyhow::anyhow!("{h}: {step}: {e}");
    let t = Instant::now();
    let ctr =
        b.rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.to_string(),
            config: Some(ctr_cfg(image)),
            sandbox_config: Some(cfg.clone()),
        })
        .await
        .map_err(|e| err("CreateContainer", e))?
        .into_inner()
        .container_id;
    times[1].push(t.elapsed());
    let t = Instant::now();
    b.rt.start_container(cri::StartContainerRequest {
        container_id: ctr.clone(),
    })
    .await
    .map_err(|e| err("StartContainer", e))?;
    times[2].push(t.elapsed());
    let t = Instant::now();
    let r =
        b.rt.exec_sync(cri::ExecSyncRequest {
            container_id: ctr.clone(),
            cmd: vec!["echo".into(), "bench".into()],
            timeout: 10,
        })
        .await
        .map_err(|e| err("ExecSync", e))?
        .into_inner();
    times[3].push(t.elapsed());
    anyhow::ensure!(
        r.exit_code == 0 && r.stdout == b"bench\n",
        "{h}: ExecSync answered exit {} stdout {:?}",
        r.exit_code,
        String::from_utf8_lossy(&r.stdout)
    );
    let t = Instant::now();
    b.rt.stop_container(cri::StopContainerRequest {
        container_id: ctr,
        timeout: 0,
    })
    .await
    .map_err(|e| err("StopContainer", e))?;
    times[4].push(t.elapsed());
    let t = Instant::now();
    b.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.to_string(),
    })
    .await
    .map_err(|e| err("StopPodSandbox", e))?;
    times[5].push(t.elapsed());
    let t = Instant::now();
    b.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.to_string(),
    })
    .await
    .map_err(|e| err("RemovePodSandbox", e))?;
    times[6].push(t.elapsed());
    Ok(())
}
