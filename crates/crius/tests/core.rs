//! E2E: the daemon core under timeouts, cancellation and races (issue 10), against the real daemon,
//! runc and the test registry.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use cri_api::v1 as cri;
use tonic::Code;

/// `(name, state)` of every process in the container, zombies included (`pgrep`, which critest
/// uses, lists zombies too).
async fn processes(d: &mut Daemon, ctr: &str) -> Vec<(String, String)> {
    let r = d
        .exec(
            ctr,
            &[
                "sh",
                "-c",
                "for p in /proc/[0-9]*; do echo $(cat $p/comm) $(cut -d')' -f2 $p/stat | cut -d' ' -f2); done 2>/dev/null",
            ],
            10,
        )
        .await
        .unwrap_or_else(|e| panic!("listing processes: {e}"));
    String::from_utf8_lossy(&r.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(c, s)| (c.to_string(), s.to_string()))
        .collect()
}

/// critest "runtime should support execSync with timeout", 20 times: right after DeadlineExceeded,
/// the timed-out process is gone, not even a zombie (the container's pid 1 here never reaps). When
/// the process has children, they are killed too; a child its parent did not reap before exiting
/// (the shell here exits as soon as its foreground child dies) is reparented to pid 1 as a zombie,
/// which only the container's init could reap, so for children only live processes count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_timeout_leaves_no_process_behind() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("exec-timeout", true).await;
    let ctr = d
        .run(&pod, &pod_cfg, "main", &["tail", "-f", "/dev/null"])
        .await;
    // 20 rounds of critest's case, then 3 where the exec'd process has children (last, because
    // they may leave zombies behind).
    for round in 0..23 {
        let cmd: &[&str] = if round >= 20 {
            &["sh", "-c", "sleep 4321 & sleep 4322"]
        } else {
            &["sleep", "4321"]
        };
        let t0 = std::time::Instant::now();
        let (c, msg) = code(d.exec(&ctr, cmd, 1).await);
        assert_eq!(c, Code::DeadlineExceeded, "round {round}: {msg}");
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "round {round}: timeout took {:?}",
            t0.elapsed()
        );
        let left = processes(&mut d, &ctr).await;
        let with_children = cmd.len() > 2;
        assert!(
            !left
                .iter()
                .any(|(c, s)| c == "sleep" && (s != "Z" || !with_children)),
            "round {round}: the timed-out exec is still in the container: {left:?}"
        );
    }
    d.shutdown().await;
}

/// A conflist of the test's own (bridge, subnet, IPAM dir), so leak counts are not disturbed by
/// other tests.
fn own_network(dir: &Path, bridge: &str, subnet: &str) -> (PathBuf, PathBuf) {
    let conf = dir.join(format!("net.d-{bridge}"));
    let ipam = dir.join(format!("ipam-{bridge}"));
    std::fs::create_dir_all(&conf).unwrap();
    let list = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": bridge,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": ipam}},
        ]
    });
    std::fs::write(
        conf.join("10-test.conflist"),
        serde_json::to_vec_pretty(&list).unwrap(),
    )
    .unwrap();
    (conf, ipam)
}

/// What a pod or container can leak: (nsfs pins, mounts, veths, IPAM reservations, masquerade
/// rules, processes naming the daemon's dir, runc containers, pod state dirs, container state dirs).
fn leaks(d: &Daemon, bridge: &str, ipam: &Path) -> [usize; 9] {
    let state = d.dir.join("state");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let below = |p: &Path| {
        mountinfo
            .lines()
            .filter(|l| {
                l.split(' ')
                    .nth(4)
                    .map(|m| Path::new(m).starts_with(p))
                    .unwrap_or(false)
            })
            .collect::<Vec<_>>()
    };
    let nsfs = below(&state)
        .iter()
        .filter(|l| l.contains(" nsfs "))
        .count();
    let mounts = below(&d.dir).len();
    let needle = d.dir.display().to_string();
    let procs = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .count();
    // The OCI runtime's own state (runc or crun, whichever `auto` chose): a dir per container.
    let runtime = std::fs::read_dir(state.join("runtime"))
        .map(|handlers| {
            handlers
                .flatten()
                .filter_map(|h| std::fs::read_dir(h.path()).ok())
                .map(|cs| cs.flatten().filter(|c| c.path().is_dir()).count())
                .sum()
        })
        .unwrap_or(0);
    let entries = |p: PathBuf| std::fs::read_dir(p).map(|r| r.count()).unwrap_or(0);
    [
        nsfs,
        mounts,
        crius_network::leakcheck::count_veths(bridge).unwrap_or(0),
        crius_network::leakcheck::count_ipam(&ipam.join(bridge)).unwrap_or(0),
        crius_network::leakcheck::count_masq_rules_matching(bridge).unwrap_or(0),
        procs,
        runtime,
        entries(state.join("pods")),
        entries(state.join("containers")),
    ]
}

/// A RunPodSandbox / CreateContainer whose client gives up after 1..50 ms, each followed at once by
/// a normal retry (while the first attempt may still be running) and a second retry after it: every
/// retry gets the same id, exactly one pod and one container exist per name, all pods Ready, and after
/// teardown nothing is left (pins, mounts, veths, IPAM, NAT rules, processes, runc state, dirs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_creates_finish_and_retries_get_the_same_id() {
    let base = tempfile::tempdir().unwrap();
    let bridge = format!("crc{}", std::process::id() % 100000);
    let (conf, ipam) = own_network(base.path(), &bridge, "10.124.0.0/24");
    let mut d = Daemon::start_with(Options {
        cni_conf_dir: Some(conf),
        ..Default::default()
    })
    .await;
    d.pull(&image("busybox:latest")).await;
    let before = leaks(&d, &bridge, &ipam);
    let deadlines = [1u64, 2, 3, 5, 8, 12, 17, 25, 35, 50];
    let mut pods = HashMap::new();
    let mut ctrs = HashMap::new();
    for (i, ms) in deadlines.iter().enumerate() {
        let name = format!("cancel{i}");
        let cfg = pod_config(&name, false, &d.dir.join("logs"));
        let req = cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        };
        let limit = Duration::from_millis(*ms);
        let mut tiny = tonic::Request::new(req.clone());
        tiny.set_timeout(limit);
        let mut c = d.rt.clone();
        let _ = tokio::time::timeout(limit, c.run_pod_sandbox(tiny)).await;
        let id =
            d.rt.run_pod_sandbox(req.clone())
                .await
                .unwrap_or_else(|e| panic!("retry of RunPodSandbox {name} ({ms} ms): {e}"))
                .into_inner()
                .pod_sandbox_id;
        let again = d.rt.run_pod_sandbox(req).await.unwrap().into_inner();
        assert_eq!(again.pod_sandbox_id, id, "{name}: second retry");
        pods.insert(name.clone(), id.clone());

        let ccfg = container_config("main", &image("busybox:latest"), &["sleep", "300"]);
        let creq = cri::CreateContainerRequest {
            pod_sandbox_id: id.clone(),
            config: Some(ccfg),
            sandbox_config: Some(cfg),
        };
        let mut tiny = tonic::Request::new(creq.clone());
        tiny.set_timeout(limit);
        let _ = tokio::time::timeout(limit, c.create_container(tiny)).await;
        let cid =
            d.rt.create_container(creq.clone())
                .await
                .unwrap_or_else(|e| panic!("retry of CreateContainer in {name} ({ms} ms): {e}"))
                .into_inner()
                .container_id;
        let again = d.rt.create_container(creq).await.unwrap().into_inner();
        assert_eq!(again.container_id, cid, "{name}: second container retry");
        ctrs.insert(name, cid);
    }
    let listed =
        d.rt.list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
    assert_eq!(
        listed.len(),
        deadlines.len(),
        "one pod per name: {listed:?}"
    );
    for p in &listed {
        let name = &p.metadata.as_ref().unwrap().name;
        assert_eq!(pods.get(name), Some(&p.id), "{name}");
        assert_eq!(p.state, cri::PodSandboxState::SandboxReady as i32, "{name}");
    }
    let listed =
        d.rt.list_containers(cri::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
    assert_eq!(
        listed.len(),
        deadlines.len(),
        "one container per pod: {listed:?}"
    );
    for c in &listed {
        assert!(ctrs.values().any(|id| *id == c.id), "unexpected {c:?}");
        assert_eq!(c.state, cri::ContainerState::ContainerCreated as i32);
    }
    let during = leaks(&d, &bridge, &ipam);
    for k in [0, 1, 2, 3, 5, 6, 7, 8] {
        assert!(
            during[k] > before[k],
            "counter {k} must see the live pods (else this test cannot fail): {before:?} -> {during:?}"
        );
    }
    d.cleanup().await;
    let after = leaks(&d, &bridge, &ipam);
    assert_eq!(
        before, after,
        "leaks (see `leaks`) before vs after teardown"
    );
    d.shutdown().await;
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &bridge])
        .status();
}

/// A container that exits within a millisecond of StartContainer reports Exited with its own code:
/// `true` and `exit 3`, 100 times each (10 at a time), never stuck in Running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_exits_after_start_report_their_code() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("instant", true).await;
    let mut n = 0;
    for batch in 0..20 {
        let (args, want): (&[&str], i32) = if batch % 2 == 0 {
            (&["true"], 0)
        } else {
            (&["sh", "-c", "exit 3"], 3)
        };
        let mut ids = vec![];
        for _ in 0..10 {
            let mut cfg = container_config(&format!("c{n}"), &image("busybox:latest"), args);
            cfg.log_path = String::new();
            n += 1;
            ids.push(d.create(&pod, &pod_cfg, cfg).await.unwrap());
        }
        for id in &ids {
            d.start_ctr(id).await;
        }
        for id in &ids {
            let s = d.wait_exit(id, Duration::from_secs(10)).await;
            assert_eq!(s.exit_code, want, "{args:?}: {s:?}");
            assert!(s.started_at > 0 && s.finished_at >= s.started_at, "{s:?}");
            d.rt.remove_container(cri::RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
        }
    }
    d.shutdown().await;
}
