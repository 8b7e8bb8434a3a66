//! `crius-bench --compare`: the figures of issue 16, for crius (a daemon of the bench's own) and, with
//! `--endpoint unix:///…`, for another CRI runtime (e.g. containerd) in the same run, side by side with
//! the ratios. Every figure is measured here; nothing is assumed.
//!
//! Per target: a cold pull of `--pull IMAGE` (MiB/s of its `--pull-bytes` compressed bytes, the daemon's
//! CPU time), `--runs` sequential pod lives over the CNI network (RunPodSandbox, CreateContainer,
//! StartContainer, StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox; their sum is the
//! crictl-like full cycle), the RSS per running pod (daemon + per-pod helper processes: crius' monitors,
//! containerd's shims and pause containers), the 20-client concurrent churn of `--churn` pods, and last
//! the daemon's RSS once idle after that churn.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cri_api::v1 as cri;
use cri_api::v1::image_service_client::ImageServiceClient;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// A runtime under test.
pub struct Target {
    pub name: String,
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
    pub pid: u32,
    /// A string in the command line of the target's per-pod helpers (monitors, shims).
    pub marker: String,
    pub logs: PathBuf,
}

pub struct Options {
    pub runs: usize,
    pub churn: usize,
    pub clients: usize,
    pub resident_pods: usize,
    pub busybox: String,
    pub pull: Option<(String, u64)>,
}

#[derive(Default, Debug, Clone)]
pub struct Figures {
    pub pull_ms: Option<f64>,
    pub pull_mib_s: Option<f64>,
    pub pull_cpu_ms: Option<f64>,
    pub run_pod: f64,
    pub create: f64,
    pub start: f64,
    pub stop_ctr: f64,
    pub remove_ctr: f64,
    pub stop_pod: f64,
    pub remove_pod: f64,
    pub cycle: f64,
    pub per_pod_rss_kib: f64,
    pub helper_rss_kib: u64,
    pub churn_pods_s: f64,
    pub churn_p50: f64,
    pub churn_p99: f64,
    pub idle_rss_kib: u64,
    pub threads_idle: u64,
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn status_field(pid: u32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// utime + stime + cutime + cstime of `pid`, in ms.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // fields after the comm: state=0 … utime=11 stime=12 cutime=13 cstime=14
    let ticks: u64 = (11..=14).filter_map(|i| f.get(i)).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 * 1000.0 / hz
}

/// pid → (ppid, comm, cmdline) of every process.
fn processes() -> HashMap<u32, (u32, String, String)> {
    let mut out = HashMap::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let comm = head
            .split_once(" (")
            .map(|(_, c)| c)
            .unwrap_or("")
            .to_string();
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        out.insert(pid, (ppid, comm, cmd));
    }
    out
}

/// The target's per-pod helpers: processes whose command line holds the marker, and their
/// descendants other than the workload (`sleep`).
fn helpers(t: &Target) -> Vec<u32> {
    let procs = processes();
    let roots: HashSet<u32> = procs
        .iter()
        .filter(|(pid, (_, _, cmd))| **pid != t.pid && cmd.contains(&t.marker))
        .map(|(pid, _)| *pid)
        .collect();
    procs
        .iter()
        .filter(|(pid, (_, comm, _))| {
            if comm == "sleep" {
                return false;
            }
            let mut p = **pid;
            for _ in 0..64 {
                if roots.contains(&p) {
                    return true;
                }
                match procs.get(&p) {
                    Some((pp, _, _)) if *pp > 1 => p = *pp,
                    _ => return false,
                }
            }
            false
        })
        .map(|(pid, _)| *pid)
        .collect()
}

fn overhead_rss(t: &Target) -> u64 {
    status_field(t.pid, "VmRSS:")
        + helpers(t)
            .iter()
            .map(|p| status_field(*p, "VmRSS:"))
            .sum::<u64>()
}

pub fn pod_config(name: &str, logs: &Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("bench-{name}"),
            namespace: "bench".into(),
            attempt: 0,
        }),
        log_directory: logs.join(name).display().to_string(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: "/crius-bench".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn ctr_config(image: &str) -> cri::ContainerConfig {
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

async fn pull(t: &mut Target, image: &str) -> anyhow::Result<()> {
    t.img
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    Ok(())
}

async fn run_pod(t: &mut Target, name: &str) -> anyhow::Result<(String, cri::PodSandboxConfig)> {
    let cfg = pod_config(name, &t.logs);
    std::fs::create_dir_all(&cfg.log_directory)?;
    let id =
        t.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    Ok((id, cfg))
}

/// Every figure for one target.
pub async fn measure(t: &mut Target, o: &Options) -> anyhow::Result<Figures> {
    let mut f = Figures::default();
    if let Some((image, bytes)) = &o.pull {
        let cpu0 = cpu_ms(t.pid);
        let t0 = Instant::now();
        pull(t, image).await?;
        let el = t0.elapsed().as_secs_f64();
        f.pull_ms = Some(el * 1000.0);
        f.pull_mib_s = Some(*bytes as f64 / (1024.0 * 1024.0) / el);
        f.pull_cpu_ms = Some(cpu_ms(t.pid) - cpu0);
    }
    pull(t, &o.busybox).await?;
    // A warm-up pod: first-call costs (CNI bridge creation, caches) are not the steady state.
    let (mut runp, mut create, mut start, mut stopc, mut rmc, mut stopp, mut rmp, mut cycle) = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    for i in 0..=o.runs {
        let c0 = Instant::now();
        let (pod, cfg) = run_pod(t, &format!("seq-{i}")).await?;
        let c1 = Instant::now();
        let ctr =
            t.rt.create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(ctr_config(&o.busybox)),
                sandbox_config: Some(cfg),
            })
            .await?
            .into_inner()
            .container_id;
        let c2 = Instant::now();
        t.rt.start_container(cri::StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await?;
        let c3 = Instant::now();
        t.rt.stop_container(cri::StopContainerRequest {
            container_id: ctr.clone(),
            timeout: 0,
        })
        .await?;
        let c4 = Instant::now();
        t.rt.remove_container(cri::RemoveContainerRequest { container_id: ctr })
            .await?;
        let c5 = Instant::now();
        t.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
        let c6 = Instant::now();
        t.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await?;
        let c7 = Instant::now();
        if i == 0 {
            continue;
        }
        runp.push(c1 - c0);
        create.push(c2 - c1);
        start.push(c3 - c2);
        stopc.push(c4 - c3);
        rmc.push(c5 - c4);
        stopp.push(c6 - c5);
        rmp.push(c7 - c6);
        cycle.push(c7 - c0);
    }
    f.run_pod = median(runp);
    f.create = median(create);
    f.start = median(start);
    f.stop_ctr = median(stopc);
    f.remove_ctr = median(rmc);
    f.stop_pod = median(stopp);
    f.remove_pod = median(rmp);
    f.cycle = median(cycle);

    // RSS per running pod: `resident_pods` pods with a running container each. Both samples wait
    // out crius' heap trim interval (10 s), so that a trim between them does not count.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let before = overhead_rss(t);
    let mut pods = vec![];
    for i in 0..o.resident_pods {
        let (pod, cfg) = run_pod(t, &format!("res-{i}")).await?;
        let ctr =
            t.rt.create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(ctr_config(&o.busybox)),
                sandbox_config: Some(cfg),
            })
            .await?
            .into_inner()
            .container_id;
        t.rt.start_container(cri::StartContainerRequest { container_id: ctr })
            .await?;
        pods.push(pod);
    }
    tokio::time::sleep(Duration::from_secs(11)).await;
    let after = overhead_rss(t);
    f.per_pod_rss_kib = (after as f64 - before as f64) / o.resident_pods.max(1) as f64;
    let hs = helpers(t);
    let procs = processes();
    // One helper's RSS: crius' monitor, or containerd's shim (not the pause container).
    f.helper_rss_kib = hs
        .iter()
        .filter(|p| {
            procs
                .get(p)
                .is_some_and(|(_, _, cmd)| cmd.contains(&t.marker))
        })
        .map(|p| status_field(*p, "VmRSS:"))
        .max()
        .unwrap_or(0);
    for pod in pods {
        t.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
        t.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await?;
    }

    let logs = t.logs.clone();
    let c = super::concurrency::run(
        &format!("{} churn", t.name),
        &t.rt,
        o.clients,
        o.churn,
        move |name: &str| {
            let cfg = pod_config(name, &logs);
            let _ = std::fs::create_dir_all(&cfg.log_directory);
            cfg
        },
        ctr_config(&o.busybox),
    )
    .await?;
    f.churn_pods_s = c.pods_per_s;
    f.churn_p50 = c.p50_ms;
    f.churn_p99 = c.p99_ms;
    tokio::time::sleep(Duration::from_secs(11)).await;
    f.idle_rss_kib = status_field(t.pid, "VmRSS:");
    f.threads_idle = status_field(t.pid, "Threads:");
    Ok(f)
}

/// The side-by-side table; `targets` of the issue are ratio caps for crius/other.
pub fn print(a: (&str, &Figures), b: Option<(&str, &Figures)>) {
    let mib = |k: f64| k / 1024.0;
    let opt = |v: Option<f64>| v.unwrap_or(f64::NAN);
    type Row<'a> = (&'a str, &'a str, Box<dyn Fn(&Figures) -> f64>, &'a str);
    let rows: Vec<Row> = vec![
        (
            "CreatePod (RunPodSandbox, CNI)",
            "ms",
            Box::new(|f| f.run_pod),
            "",
        ),
        ("CreateContainer", "ms", Box::new(|f| f.create), ""),
        ("StartContainer", "ms", Box::new(|f| f.start), ""),
        (
            "CreateContainer + StartContainer",
            "ms",
            Box::new(|f| f.create + f.start),
            "<= 0.5",
        ),
        (
            "StopContainer (timeout 0)",
            "ms",
            Box::new(|f| f.stop_ctr),
            "",
        ),
        ("RemoveContainer", "ms", Box::new(|f| f.remove_ctr), ""),
        ("StopPod", "ms", Box::new(|f| f.stop_pod), ""),
        ("RemovePod", "ms", Box::new(|f| f.remove_pod), ""),
        (
            "full cycle (runp..rmp)",
            "ms",
            Box::new(|f| f.cycle),
            "<= 0.5",
        ),
        (
            "RSS per running pod",
            "MiB",
            Box::new(move |f| mib(f.per_pod_rss_kib)),
            "",
        ),
        (
            "monitor / shim RSS",
            "MiB",
            Box::new(move |f| mib(f.helper_rss_kib as f64)),
            "crius <= 1 MiB",
        ),
        (
            "churn, 20 clients",
            "pods/s",
            Box::new(|f| f.churn_pods_s),
            "",
        ),
        ("churn cycle p50", "ms", Box::new(|f| f.churn_p50), ""),
        ("churn cycle p99", "ms", Box::new(|f| f.churn_p99), ""),
        (
            "daemon RSS idle after the churn",
            "MiB",
            Box::new(move |f| mib(f.idle_rss_kib as f64)),
            "crius <= 15 MiB",
        ),
        (
            "daemon threads idle",
            "",
            Box::new(|f| f.threads_idle as f64),
            "",
        ),
        ("cold pull", "ms", Box::new(move |f| opt(f.pull_ms)), ""),
        (
            "cold pull",
            "MiB/s",
            Box::new(move |f| opt(f.pull_mib_s)),
            "",
        ),
        (
            "cold pull daemon CPU",
            "ms",
            Box::new(move |f| opt(f.pull_cpu_ms)),
            "",
        ),
    ];
    let bname = b.map(|(n, _)| n).unwrap_or("-");
    println!(
        "\n| figure | unit | {} | {} | ratio | target |\n|---|---|---|---|---|---|",
        a.0, bname
    );
    for (name, unit, get, target) in rows {
        let va = get(a.1);
        let (vb, ratio) = match b {
            Some((_, fb)) => {
                let vb = get(fb);
                (format!("{vb:.2}"), format!("{:.2}", va / vb))
            }
            None => ("-".into(), "-".into()),
        };
        println!("| {name} | {unit} | {va:.2} | {vb} | {ratio} | {target} |");
    }
}

/// The OCI runtime alone on a bundle of the host's /usr (no image, no crius): medians of `create`,
/// `start`, `kill` + `delete`, so that crius' own share of a call is the call minus these.
pub fn bare_runtime(binary: &str, runs: usize) -> anyhow::Result<(f64, f64, f64)> {
    use std::process::{Command, Stdio};
    let dir = std::env::temp_dir().join(format!("crius-bench-{}-bare", std::process::id()));
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    let mut mounts = vec![
        serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        serde_json::json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}),
    ];
    for top in ["proc", "dev", "usr", "bin", "sbin", "lib", "lib64"] {
        let host = Path::new("/").join(top);
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&host)?, rootfs.join(top))?;
        } else {
            std::fs::create_dir_all(rootfs.join(top))?;
            if top != "proc" && top != "dev" {
                mounts.push(
                    serde_json::json!({"destination": format!("/{top}"), "type": "bind",
                    "source": host, "options": ["rbind", "ro"]}),
                );
            }
        }
    }
    let root = dir.join("state");
    let run = |args: &[&str]| -> anyhow::Result<Duration> {
        let t = Instant::now();
        let st = Command::new(binary)
            .arg("--root")
            .arg(&root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        anyhow::ensure!(st.success(), "{binary} {args:?}: {st}");
        Ok(t.elapsed())
    };
    let (mut c, mut s, mut d) = (vec![], vec![], vec![]);
    let result = (|| {
        for i in 0..=runs {
            let id = format!("crius-bench-bare-{}-{i}", std::process::id());
            let config = serde_json::json!({
                "ociVersion": "1.0.2",
                "process": {"user": {"uid": 0, "gid": 0}, "args": ["/bin/sleep", "300"], "cwd": "/",
                            "env": ["PATH=/usr/bin:/bin"]},
                "root": {"path": "rootfs", "readonly": true},
                "mounts": mounts,
                "linux": {"cgroupsPath": format!("/crius-bench/{id}"),
                          "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
                                         {"type": "uts"}, {"type": "network"}]}
            });
            std::fs::write(dir.join("config.json"), config.to_string())?;
            let bundle = dir.display().to_string();
            let tc = run(&["create", "--bundle", &bundle, &id])?;
            let ts = run(&["start", &id])?;
            let t = Instant::now();
            run(&["kill", &id, "KILL"])?;
            // wait until stopped, as StopContainer does
            for _ in 0..500 {
                let out = Command::new(binary)
                    .arg("--root")
                    .arg(&root)
                    .args(["state", &id])
                    .output()?;
                if String::from_utf8_lossy(&out.stdout).contains("\"stopped\"") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            run(&["delete", &id])?;
            let td = t.elapsed();
            if i > 0 {
                c.push(tc);
                s.push(ts);
                d.push(td);
            }
        }
        anyhow::Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    Ok((median(c), median(s), median(d)))
}
