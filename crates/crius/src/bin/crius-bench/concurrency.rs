//! The concurrency figure (issue 10): C clients creating and tearing down P pods (CNI network, one
//! running container each) — pods/s and the per-pod cycle time p50/p99 — alone, then again while a
//! large image is pulled and removed in a loop and ImageFsInfo is polled every 50 ms.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cri_api::v1 as cri;
use cri_api::v1::image_service_client::ImageServiceClient;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// One pod's whole life: RunPodSandbox, CreateContainer, StartContainer, StopPodSandbox,
/// RemovePodSandbox.
async fn cycle(
    rt: &mut RuntimeServiceClient<Channel>,
    cfg: cri::PodSandboxConfig,
    ctr: cri::ContainerConfig,
) -> anyhow::Result<()> {
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(ctr),
            sandbox_config: Some(cfg),
        })
        .await?
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest { container_id: id })
        .await?;
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await?;
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await?;
    Ok(())
}

/// What [`run`] measured.
pub struct Churn {
    pub pods_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Runs `pods` cycles over `clients` concurrent clients; prints pods/s, p50, p99.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    label: &str,
    rt: &RuntimeServiceClient<Channel>,
    clients: usize,
    pods: usize,
    pod_cfg: impl Fn(&str) -> cri::PodSandboxConfig + Send + Sync + 'static,
    ctr_cfg: cri::ContainerConfig,
) -> anyhow::Result<Churn> {
    let next = Arc::new(AtomicUsize::new(0));
    let pod_cfg = Arc::new(pod_cfg);
    let t0 = Instant::now();
    let mut tasks = vec![];
    for _ in 0..clients {
        let (mut rt, next, pod_cfg, ctr_cfg) =
            (rt.clone(), next.clone(), pod_cfg.clone(), ctr_cfg.clone());
        let label = label.to_string();
        tasks.push(tokio::spawn(async move {
            let mut times = vec![];
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= pods {
                    return Ok::<_, anyhow::Error>(times);
                }
                let cfg = pod_cfg(&format!("cc-{label}-{i}").replace(' ', "-"));
                let t = Instant::now();
                cycle(&mut rt, cfg, ctr_cfg.clone()).await?;
                times.push(t.elapsed());
            }
        }));
    }
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await??);
    }
    let total = t0.elapsed();
    all.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p = |q: f64| all[((all.len() as f64 - 1.0) * q).round() as usize];
    let churn = Churn {
        pods_per_s: pods as f64 / total.as_secs_f64(),
        p50_ms: ms(p(0.5)),
        p99_ms: ms(p(0.99)),
    };
    println!(
        "{:<34} {clients} clients, {pods} pods: {:>6.1} pods/s   cycle p50 {:>8.1} ms   p99 {:>8.1} ms",
        format!("concurrency ({label})"),
        churn.pods_per_s,
        churn.p50_ms,
        churn.p99_ms,
    );
    Ok(churn)
}

/// Pulls and removes `image` in a loop and polls ImageFsInfo every 50 ms until `stop` is set;
/// returns (pull+remove rounds, ImageFsInfo calls, slowest ImageFsInfo).
pub async fn image_churn(
    mut img: ImageServiceClient<Channel>,
    image: String,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(usize, usize, Duration)> {
    let mut poll = img.clone();
    let stop2 = stop.clone();
    let poller = tokio::spawn(async move {
        let (mut n, mut worst) = (0usize, Duration::ZERO);
        while !stop2.load(Ordering::SeqCst) {
            let t = Instant::now();
            poll.image_fs_info(cri::ImageFsInfoRequest::default())
                .await?;
            worst = worst.max(t.elapsed());
            n += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok::<_, anyhow::Error>((n, worst))
    });
    let mut rounds = 0;
    while !stop.load(Ordering::SeqCst) {
        img.pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
        img.remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
        })
        .await?;
        rounds += 1;
    }
    let (n, worst) = poller.await??;
    Ok((rounds, n, worst))
}
