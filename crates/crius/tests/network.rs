//! E2E: pod networking through the real CNI plugins (Debian's containernetworking-plugins), real network
//! namespaces, bridges and iptables.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use cri_api::v1 as cri;
use tonic::Code;

async fn pod_ip(d: &mut Daemon, pod: &str) -> String {
    d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
        pod_sandbox_id: pod.to_string(),
        verbose: false,
    })
    .await
    .unwrap()
    .into_inner()
    .status
    .unwrap()
    .network
    .unwrap()
    .ip
}

/// The two ways crius wires pods; the tests below run against both.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    /// CNI plugins: the embedded conflist (empty conf dir) or a conflist of the test's own.
    Cni,
    /// crius' own netlink network, on a bridge and subnet of the test's own.
    Native,
}

/// A native network of the test's own: bridge, subnet, reservation dir; removed (bridge and nftables
/// table) when dropped.
struct OwnNative {
    bridge: String,
    subnet: String,
    gateway: String,
    ipam: PathBuf,
    _dir: tempfile::TempDir,
}

impl OwnNative {
    /// `tag` keeps the bridge names of concurrently running tests apart; `third` is the subnet's
    /// third octet (10.124.<third>.0/24).
    fn new(tag: &str, third: u8) -> OwnNative {
        let bridge = format!("crn{tag}{}", std::process::id() % 100000);
        let _ = crius_network::leakcheck::remove_native_network(&bridge);
        let dir = tempfile::tempdir().unwrap();
        OwnNative {
            ipam: dir.path().join("ipam"),
            _dir: dir,
            subnet: format!("10.124.{third}.0/24"),
            gateway: format!("10.124.{third}.1"),
            bridge,
        }
    }

    /// The daemon config that selects it.
    fn config(&self) -> String {
        format!(
            "network_backend = \"native\"\n[native_network]\nbridge = \"{}\"\nsubnet = \"{}\"\nipam_dir = \"{}\"\n",
            self.bridge,
            self.subnet,
            self.ipam.display()
        )
    }
}

impl Drop for OwnNative {
    fn drop(&mut self) {
        let _ = crius_network::leakcheck::remove_native_network(&self.bridge);
    }
}

/// Where the daemon's network for `backend` lives: (daemon, gateway address, own native network).
async fn daemon_for(backend: Backend, tag: &str, third: u8) -> (Daemon, String, Option<OwnNative>) {
    match backend {
        Backend::Cni => {
            let d = Daemon::start_with(Options {
                extra_config: "network_backend = \"cni\"\n".into(),
                ..Default::default()
            })
            .await;
            (d, "10.85.0.1".into(), None)
        }
        Backend::Native => {
            let own = OwnNative::new(tag, third);
            let d = Daemon::start_with(Options {
                extra_config: own.config(),
                ..Default::default()
            })
            .await;
            (d, own.gateway.clone(), Some(own))
        }
    }
}

/// The network source the daemon reports in its verbose Status.
async fn network_source(d: &mut Daemon) -> String {
    let s =
        d.rt.status(cri::StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner();
    let cni: serde_json::Value = serde_json::from_str(&s.info["cni"]).unwrap();
    cni["config"]["source"].to_string()
}

/// A conflist of the test's own (bridge, subnet, IPAM dir), so counts are not disturbed by other tests.
fn own_network(dir: &Path, bridge: &str, subnet: &str) -> (PathBuf, PathBuf) {
    let conf = dir.join(format!("net.d-{bridge}"));
    let ipam = dir.join(format!("ipam-{bridge}"));
    std::fs::create_dir_all(&conf).unwrap();
    let list = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": bridge,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": ipam}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    std::fs::write(
        conf.join("10-test.conflist"),
        serde_json::to_vec_pretty(&list).unwrap(),
    )
    .unwrap();
    (conf, ipam)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_talk_over_tcp_and_dns_config_lands() {
    two_pods_talk(Backend::Cni).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_two_pods_talk_over_tcp_and_dns_config_lands() {
    two_pods_talk(Backend::Native).await;
}

async fn two_pods_talk(backend: Backend) {
    let (mut d, gateway, _own) = daemon_for(backend, "t", 1).await;
    let source = network_source(&mut d).await;
    match backend {
        Backend::Cni => assert_eq!(source, "\"Embedded\""),
        Backend::Native => assert_eq!(source, "\"Native\""),
    }
    d.pull(&image("busybox:latest")).await;
    let (a, a_cfg) = d.run_pod("server", false).await;
    let mut b_cfg = pod_config("client", false, &d.dir.join("logs/client"));
    b_cfg.dns_config = Some(cri::DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["e2e.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    let b =
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(b_cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let ip_a = pod_ip(&mut d, &a).await;
    let prefix = &gateway[..gateway.rfind('.').unwrap()];
    let prefix = if backend == Backend::Cni {
        "10.85"
    } else {
        prefix
    };
    assert!(
        ip_a.starts_with(prefix) && ip_a != gateway,
        "{backend:?}: pod IP {ip_a} not in the network of {gateway}"
    );
    d.run(
        &a,
        &a_cfg,
        "srv",
        &["sh", "-c", "while true; do echo pong | nc -l -p 8080; done"],
    )
    .await;
    let cli = d.run(&b, &b_cfg, "cli", &["sleep", "300"]).await;

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = d
            .exec(
                &cli,
                &["sh", "-c", &format!("echo ping | nc -w 2 {ip_a} 8080")],
                10,
            )
            .await
            .unwrap();
        if String::from_utf8_lossy(&r.stdout).contains("pong") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod {b} could not reach {ip_a}:8080: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let resolv = d
        .exec(&cli, &["cat", "/etc/resolv.conf"], 10)
        .await
        .unwrap();
    let resolv = String::from_utf8_lossy(&resolv.stdout).to_string();
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(resolv.contains("search e2e.svc.cluster.local"), "{resolv}");
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    let hosts = d.exec(&cli, &["cat", "/etc/hosts"], 10).await.unwrap();
    assert!(
        String::from_utf8_lossy(&hosts.stdout).contains("client"),
        "pod IP and hostname in /etc/hosts"
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_port_is_reachable_from_the_host() {
    host_port_reachable(Backend::Cni, 18080).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_host_port_is_reachable_from_the_host() {
    host_port_reachable(Backend::Native, 18081).await;
}

async fn host_port_reachable(backend: Backend, host_port: i32) {
    let (mut d, gw, _own) = daemon_for(backend, "h", 2).await;
    d.pull(&image("busybox:latest")).await;
    let mut cfg = pod_config("hostport", false, &d.dir.join("logs/hostport"));
    cfg.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 8080,
        host_port,
        host_ip: String::new(),
    }];
    let pod =
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    d.run(
        &pod,
        &cfg,
        "srv",
        &[
            "sh",
            "-c",
            "while true; do echo from-pod | nc -l -p 8080; done",
        ],
    )
    .await;
    // The bridge's gateway address is a host address; hostPort DNAT applies to local destinations.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = std::net::TcpStream::connect_timeout(
            &format!("{gw}:{host_port}").parse().unwrap(),
            Duration::from_secs(2),
        )
        .and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            let _ = s.write_all(b"hi\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            Ok(buf)
        });
        if matches!(&got, Ok(s) if s.contains("from-pod")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{backend:?}: hostPort {host_port} not reachable: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_network_pod_sees_host_interfaces() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, cfg) = d.run_pod("hostnet", true).await;
    let c = d.run(&pod, &cfg, "c", &["sleep", "300"]).await;
    let r = d.exec(&c, &["cat", "/proc/net/dev"], 10).await.unwrap();
    let inside: Vec<String> = String::from_utf8_lossy(&r.stdout)
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|s| s.trim().to_string())
        .collect();
    let host = std::fs::read_to_string("/proc/net/dev").unwrap();
    let host: Vec<String> = host
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|s| s.trim().to_string())
        .collect();
    for ifc in host.iter().filter(|i| !i.starts_with("veth")) {
        assert!(
            inside.contains(ifc),
            "host interface {ifc} missing in host-network pod: {inside:?}"
        );
    }
    assert_eq!(
        pod_ip(&mut d, &pod).await,
        "",
        "no CNI IP for host network pods"
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cni_config_reports_not_ready_and_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("net.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("10-broken.conflist"), "{ not json").unwrap();
    let mut d = Daemon::start_with(Options {
        cni_conf_dir: Some(conf.clone()),
        ..Default::default()
    })
    .await;
    let s =
        d.rt.status(cri::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
    let net = s
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap();
    assert!(!net.status);
    assert!(net.message.contains("10-broken.conflist"), "{net:?}");
    let cfg = pod_config("nonet", false, &d.dir.join("logs"));
    let t0 = Instant::now();
    let (c, m) = code(
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg),
            runtime_handler: String::new(),
        })
        .await,
    );
    assert_eq!(c, Code::FailedPrecondition, "{m}");
    assert!(m.contains("10-broken.conflist"), "{m}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    // A host-network pod does not need CNI.
    d.run_pod("hostok", true).await;

    // A missing plugin is named; fixing the config is picked up without a restart.
    std::fs::write(
        conf.join("10-broken.conflist"),
        r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"no-such-plugin"}]}"#,
    )
    .unwrap();
    let s =
        d.rt.status(cri::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
    let net = s
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap();
    assert!(
        !net.status && net.message.contains("no-such-plugin"),
        "{net:?}"
    );
    std::fs::remove_file(conf.join("10-broken.conflist")).unwrap();
    let s =
        d.rt.status(cri::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
    let net = s
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap();
    assert!(net.status, "empty conf dir = embedded default: {net:?}");
    d.shutdown().await;
}

fn count_nsfs_mounts(below: &Path) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            l.contains(" nsfs ")
                && l.split(' ')
                    .nth(4)
                    .map(|p| Path::new(p).starts_with(below))
                    .unwrap_or(false)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_cycles_leak_nothing_even_with_daemon_kills() {
    fifty_cycles(Backend::Cni).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_fifty_cycles_leak_nothing_even_with_daemon_kills() {
    fifty_cycles(Backend::Native).await;
}

async fn fifty_cycles(backend: Backend) {
    let base = tempfile::tempdir().unwrap();
    let (mut d, bridge, ipam, own) = match backend {
        Backend::Cni => {
            let bridge = format!("crl{}", std::process::id() % 100000);
            let (conf, ipam) = own_network(base.path(), &bridge, "10.123.0.0/24");
            let d = Daemon::start_with(Options {
                cni_conf_dir: Some(conf),
                ..Default::default()
            })
            .await;
            (d, bridge.clone(), ipam.join(&bridge), None)
        }
        Backend::Native => {
            let own = OwnNative::new("l", 3);
            let d = Daemon::start_with(Options {
                extra_config: own.config(),
                ..Default::default()
            })
            .await;
            (d, own.bridge.clone(), own.ipam.clone(), Some(own))
        }
    };
    let state = d.dir.join("state");
    let count = |ipam: &Path| {
        (
            count_nsfs_mounts(&state),
            crius_network::leakcheck::count_veths(&bridge).unwrap_or(0),
            crius_network::leakcheck::count_ipam(ipam).unwrap_or(0),
            match backend {
                Backend::Cni => {
                    crius_network::leakcheck::count_portmap_rules_matching(&bridge).unwrap_or(0)
                }
                Backend::Native => {
                    crius_network::leakcheck::count_native_hostports(&bridge).unwrap()
                }
            },
        )
    };
    let before = count(&ipam);
    for i in 0..50 {
        let mut cfg = pod_config(&format!("leak{i}"), false, &d.dir.join("logs"));
        cfg.port_mappings = vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 80,
            host_port: 20000 + i,
            host_ip: String::new(),
        }];
        let pod =
            d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(cfg),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("cycle {i}: {e}"))
            .into_inner()
            .pod_sandbox_id;
        if i == 0 {
            let during = count(&ipam);
            assert!(during.0 > before.0 && during.1 > before.1 && during.2 > before.2 && during.3 > before.3,
                "the counters must see a live pod (else this test cannot fail): {before:?} -> {during:?}");
        }
        d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        if i % 10 == 5 {
            d.kill9();
            d.spawn().await;
        }
        d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
    }
    // Kill the daemon in the middle of a pod's life too: recovery + remove must still clean up.
    let cfg = pod_config("leak-kill", false, &d.dir.join("logs"));
    let pod =
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    d.kill9();
    d.spawn().await;
    d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    // The native network removes links and reservations in the background once hostPorts are gone:
    // give it a moment (a leak never settles).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = count(&ipam);
    while after != before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = count(&ipam);
    }
    assert_eq!(
        before, after,
        "{backend:?}: (nsfs pins, veths, IPAM reservations, hostPort rules) before vs after"
    );
    d.shutdown().await;
    match own {
        Some(own) => drop(own),
        None => {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &bridge])
                .status();
        }
    }
}
