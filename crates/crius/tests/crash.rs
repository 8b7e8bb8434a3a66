//! E2E: crash points. For every point `crius debug crash-points` lists, the daemon starts with the
//! point armed and a whole pod/container/image lifecycle runs until the daemon dies there (SIGKILL);
//! it is restarted unarmed, the failed call is retried and the lifecycle completes. Then processes
//! (monitors, pause, container init), mounts, veths, IPAM reservations, iptables rules, cgroups and
//! the files under root and state must be exactly as before the lifecycle.
//! Real runc, CNI plugins (own bridge and IPAM dir), registry and namespaces.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use cri_api::v1 as cri;

fn crash_points() -> Vec<String> {
    let crius = PathBuf::from(env!("CARGO_BIN_EXE_crius"));
    let out = std::process::Command::new(crius)
        .args(["debug", "crash-points"])
        .output()
        .expect("run crius debug crash-points");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect()
}

/// A conflist of the test's own (bridge, subnet, IPAM dir), so other tests do not disturb the counts.
fn own_network(dir: &Path, bridge: &str, subnet: &str) -> (PathBuf, PathBuf) {
    let conf = dir.join("net.d-crash");
    let ipam = dir.join("ipam-crash");
    std::fs::create_dir_all(&conf).unwrap();
    let list = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": bridge,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": ipam}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    std::fs::write(
        conf.join("10-crash.conflist"),
        serde_json::to_vec_pretty(&list).unwrap(),
    )
    .unwrap();
    (conf, ipam)
}

/// Everything the lifecycle could leak, as comparable sets.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Snapshot {
    processes: BTreeSet<String>,
    mounts: BTreeSet<String>,
    veths: usize,
    ipam: usize,
    portmap_rules: usize,
    masq_rules: usize,
    cgroups: BTreeSet<String>,
    files: BTreeSet<String>,
}

struct World {
    dir: PathBuf,
    bridge: String,
    ipam: PathBuf,
    /// Every pod and container id this test has seen (replies, state dirs).
    ids: BTreeSet<String>,
}

fn mount_points() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .collect()
}

fn walk(
    dir: &Path,
    base: &Path,
    skip: &BTreeSet<PathBuf>,
    dirs_only: bool,
    out: &mut BTreeSet<String>,
) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir || !dirs_only {
            out.insert(p.strip_prefix(base).unwrap().display().to_string());
        }
        if is_dir && !skip.contains(&p) {
            walk(&p, base, skip, dirs_only, out);
        }
    }
}

fn cgroup_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(" - cgroup ") || l.contains(" - cgroup2 "))
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .collect()
}

impl World {
    fn snapshot(&self, daemon_pid: u32) -> Snapshot {
        let dir = self.dir.display().to_string();
        let mut processes = BTreeSet::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == daemon_pid || pid == std::process::id() {
                continue;
            }
            let cmd = std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            let cg = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
            if cmd.contains(&dir) || self.ids.iter().any(|id| cg.contains(id.as_str())) {
                processes.insert(format!("{pid} {}", cmd.trim()));
            }
        }
        let mounts: BTreeSet<String> = mount_points()
            .into_iter()
            .filter(|p| p.starts_with(&self.dir))
            .map(|p| p.display().to_string())
            .collect();
        let mut cgroups = BTreeSet::new();
        for mp in cgroup_mounts() {
            for id in &self.ids {
                let d = mp.join("crius").join(format!("pod-{id}"));
                if d.exists() {
                    cgroups.insert(d.display().to_string());
                    walk(&d, &mp, &BTreeSet::new(), true, &mut cgroups);
                }
            }
        }
        // Not below mounts: a leaked mount is reported as such, its contents would only add noise.
        let skip: BTreeSet<PathBuf> = mount_points().into_iter().collect();
        let mut files = BTreeSet::new();
        for sub in ["root", "state"] {
            walk(&self.dir.join(sub), &self.dir, &skip, false, &mut files);
        }
        Snapshot {
            processes,
            mounts,
            veths: crius_network::leakcheck::count_veths(&self.bridge).unwrap(),
            ipam: crius_network::leakcheck::count_ipam(&self.ipam.join(&self.bridge)).unwrap(),
            portmap_rules: crius_network::leakcheck::count_portmap_rules_matching(&self.bridge)
                .unwrap(),
            masq_rules: crius_network::leakcheck::count_masq_rules_matching(&self.bridge).unwrap(),
            cgroups,
            files,
        }
    }

    /// Ids of pods and containers that have state dirs now (a crashed attempt's id was never replied).
    fn learn_ids(&mut self) {
        for sub in ["state/pods", "state/containers"] {
            if let Ok(rd) = std::fs::read_dir(self.dir.join(sub)) {
                for e in rd.flatten() {
                    self.ids.insert(e.file_name().to_string_lossy().to_string());
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    Pull,
    RunPod,
    Create,
    Start,
    Stop,
    Remove,
    StopPod,
    RemovePod,
    RemoveImage,
}

const STEPS: [Step; 9] = [
    Step::Pull,
    Step::RunPod,
    Step::Create,
    Step::Start,
    Step::Stop,
    Step::Remove,
    Step::StopPod,
    Step::RemovePod,
    Step::RemoveImage,
];

struct Lifecycle {
    pod_cfg: cri::PodSandboxConfig,
    ctr_cfg: cri::ContainerConfig,
    pod: String,
    ctr: String,
}

async fn step(
    d: &mut Daemon,
    l: &mut Lifecycle,
    s: Step,
    retry: bool,
) -> Result<(), tonic::Status> {
    let img = image("busybox:latest");
    match s {
        Step::Pull => {
            d.img
                .pull_image(cri::PullImageRequest {
                    image: Some(cri::ImageSpec {
                        image: img,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await?;
        }
        Step::RunPod => {
            l.pod =
                d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(l.pod_cfg.clone()),
                    runtime_handler: String::new(),
                })
                .await?
                .into_inner()
                .pod_sandbox_id;
        }
        Step::Create => {
            l.ctr = d.create(&l.pod, &l.pod_cfg, l.ctr_cfg.clone()).await?;
        }
        Step::Start => {
            let r =
                d.rt.start_container(cri::StartContainerRequest {
                    container_id: l.ctr.clone(),
                })
                .await;
            match r {
                Ok(_) => {}
                // The first attempt started it before the crash: StartContainer on a running
                // container is refused, as the CRI has it.
                Err(e) if retry && e.code() == tonic::Code::FailedPrecondition => {}
                Err(e) => return Err(e),
            }
            let st = d.status(&l.ctr).await;
            if st.state != cri::ContainerState::ContainerRunning as i32 {
                return Err(tonic::Status::internal(format!(
                    "started container is not running: {st:?}"
                )));
            }
        }
        Step::Stop => {
            d.rt.stop_container(cri::StopContainerRequest {
                container_id: l.ctr.clone(),
                timeout: 0,
            })
            .await?;
            let st = d.status(&l.ctr).await;
            if st.state != cri::ContainerState::ContainerExited as i32 {
                return Err(tonic::Status::internal(format!(
                    "stopped container has not exited: {st:?}"
                )));
            }
        }
        Step::Remove => {
            d.rt.remove_container(cri::RemoveContainerRequest {
                container_id: l.ctr.clone(),
            })
            .await?;
        }
        Step::StopPod => {
            d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: l.pod.clone(),
            })
            .await?;
        }
        Step::RemovePod => {
            d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: l.pod.clone(),
            })
            .await?;
        }
        Step::RemoveImage => {
            d.img
                .remove_image(cri::RemoveImageRequest {
                    image: Some(cri::ImageSpec {
                        image: img,
                        ..Default::default()
                    }),
                })
                .await?;
        }
    }
    Ok(())
}

/// Runs the lifecycle; with a point armed, the daemon must die exactly once, at some step, and the
/// step is retried after an unarmed restart. Returns the step that crashed.
async fn lifecycle(
    d: &mut Daemon,
    w: &mut World,
    l: &mut Lifecycle,
    point: Option<&str>,
) -> Option<Step> {
    let mut crashed = None;
    for s in STEPS {
        loop {
            match step(d, l, s, crashed == Some(s)).await {
                Ok(()) => {
                    w.ids.insert(l.pod.clone());
                    w.ids.insert(l.ctr.clone());
                    break;
                }
                Err(e) => {
                    let Some(status) = d.wait_dead(Duration::from_secs(15)) else {
                        panic!(
                            "point {point:?}: {s:?} failed without the daemon dying: {e}\n{}",
                            d.log()
                        );
                    };
                    assert!(
                        point.is_some() && crashed.is_none(),
                        "point {point:?}: the daemon died at {s:?} ({status}): {e}\n{}",
                        d.log()
                    );
                    assert_eq!(
                        status.signal(),
                        Some(libc::SIGKILL),
                        "point {point:?}: the daemon must die by SIGKILL, not {status}\n{}",
                        d.log()
                    );
                    crashed = Some(s);
                    w.learn_ids();
                    d.env.clear();
                    d.spawn().await;
                }
            }
        }
        w.learn_ids();
    }
    crashed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_crash_point_recovers_without_leaks() {
    let all = crash_points();
    assert!(all.len() >= 30, "crash points: {all:?}");
    // CRIUS_CRASH_ONLY=<substring> walks a subset (while working on one operation's recovery).
    let only = std::env::var("CRIUS_CRASH_ONLY").unwrap_or_default();
    let points: Vec<String> = all.into_iter().filter(|p| p.contains(&only)).collect();
    let base = tempfile::tempdir().unwrap();
    let bridge = format!("crc{}", std::process::id() % 100000);
    let (conf, ipam) = own_network(base.path(), &bridge, "10.124.0.0/24");
    let mut d = Daemon::start_with(Options {
        cni_conf_dir: Some(conf),
        ..Default::default()
    })
    .await;
    let mut w = World {
        dir: d.dir.clone(),
        bridge: bridge.clone(),
        ipam,
        ids: BTreeSet::new(),
    };
    let mut pod_cfg = pod_config("crash", false, &d.dir.join("logs/crash"));
    {
        let linux = pod_cfg.linux.as_mut().unwrap();
        // crius makes and removes the pod cgroup itself (the default parent with resources).
        linux.cgroup_parent = String::new();
        linux.resources = Some(cri::LinuxContainerResources {
            cpu_shares: 512,
            ..Default::default()
        });
        let ns = linux
            .security_context
            .as_mut()
            .unwrap()
            .namespace_options
            .as_mut()
            .unwrap();
        // A pause process (a PID namespace shared by the pod) and an shm mount (IPC namespace).
        ns.pid = cri::NamespaceMode::Pod as i32;
        ns.ipc = cri::NamespaceMode::Pod as i32;
    }
    pod_cfg.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 80,
        host_port: 21000 + (std::process::id() % 4000) as i32,
        host_ip: String::new(),
    }];
    let mut ctr_cfg = container_config("sleeper", &image("busybox:latest"), &["sleep", "3600"]);
    ctr_cfg.linux = Some(cri::LinuxContainerConfig {
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
    let mut l = Lifecycle {
        pod_cfg,
        ctr_cfg,
        pod: String::new(),
        ctr: String::new(),
    };

    // A warm-up lifecycle makes the dirs crius creates on first use; it also proves the probes see a
    // live pod (else this test could not fail).
    step(&mut d, &mut l, Step::Pull, false).await.unwrap();
    step(&mut d, &mut l, Step::RunPod, false).await.unwrap();
    step(&mut d, &mut l, Step::Create, false).await.unwrap();
    step(&mut d, &mut l, Step::Start, false).await.unwrap();
    w.ids.insert(l.pod.clone());
    w.ids.insert(l.ctr.clone());
    let live = w.snapshot(d.pid());
    for s in &STEPS[4..] {
        step(&mut d, &mut l, *s, false).await.unwrap();
    }
    let idle = w.snapshot(d.pid());
    assert!(
        live.processes.len() >= 3
            && live.mounts.len() > idle.mounts.len()
            && live.veths > idle.veths
            && live.ipam > idle.ipam
            && live.portmap_rules > idle.portmap_rules
            && live.masq_rules > idle.masq_rules
            && live.cgroups.len() > idle.cgroups.len()
            && live.files.len() > idle.files.len(),
        "the probes must see a live pod (monitor, pause, container; mounts; network; cgroups): {live:#?}\nidle: {idle:#?}"
    );

    let mut covered: Vec<(String, Step)> = Vec::new();
    let mut leaks: Vec<String> = Vec::new();
    for p in &points {
        d.terminate();
        d.env = vec![("CRIUS_CRASH_POINT".to_string(), p.clone())];
        d.spawn().await;
        let before = w.snapshot(d.pid());
        let crashed = lifecycle(&mut d, &mut w, &mut l, Some(p)).await;
        let Some(at) = crashed else {
            panic!("crash point {p} was never reached\n{}", d.log());
        };
        covered.push((p.clone(), at));
        // Teardown finished; asynchronous ends (monitors exiting) get a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        let after = loop {
            let now = w.snapshot(d.pid());
            if now == before || Instant::now() > deadline {
                break now;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if after != before {
            let what = describe(p, &before, &after);
            eprintln!("LEAK {what}");
            leaks.push(what);
            // Clean up what leaked so the next point starts from a clean slate.
            d.cleanup().await;
        }
    }
    println!("crash points covered ({}):", covered.len());
    for (p, at) in &covered {
        println!("  {p:<40} died during {at:?}");
    }
    assert!(
        leaks.is_empty(),
        "{} of {} crash points leaked:\n{}",
        leaks.len(),
        points.len(),
        leaks.join("\n")
    );
    d.shutdown().await;
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &bridge])
        .status();
}

fn describe(point: &str, before: &Snapshot, after: &Snapshot) -> String {
    let mut out = format!("{point}:");
    let set = |name: &str, b: &BTreeSet<String>, a: &BTreeSet<String>, out: &mut String| {
        let extra: Vec<_> = a.difference(b).collect();
        let gone: Vec<_> = b.difference(a).collect();
        if !extra.is_empty() || !gone.is_empty() {
            out.push_str(&format!("\n  {name}: left {extra:?}, vanished {gone:?}"));
        }
    };
    set("processes", &before.processes, &after.processes, &mut out);
    set("mounts", &before.mounts, &after.mounts, &mut out);
    set("cgroups", &before.cgroups, &after.cgroups, &mut out);
    set("files", &before.files, &after.files, &mut out);
    for (name, b, a) in [
        ("veths", before.veths, after.veths),
        ("ipam", before.ipam, after.ipam),
        ("portmap rules", before.portmap_rules, after.portmap_rules),
        ("masq rules", before.masq_rules, after.masq_rules),
    ] {
        if a != b {
            out.push_str(&format!("\n  {name}: {b} -> {a}"));
        }
    }
    out
}
