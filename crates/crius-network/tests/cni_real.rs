//! Real CNI plugins (/usr/lib/cni), real namespaces, real bridge and iptables. Needs root.

mod common;

use common::*;
use crius_network::leakcheck;

#[tokio::test]
async fn setup_gives_ip_and_teardown_cleans_up() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let net = TestNet::new();
    let cni = net.cni();
    let st = cni.status().unwrap();
    assert_eq!(st.name, net.name);
    let ns = Netns::new();
    let id = pod_id();
    let pod = pod(&id, &ns);
    let res = tokio::time::timeout(std::time::Duration::from_secs(60), cni.setup(&pod))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.ips.len(), 1, "{res:?}");
    let std::net::IpAddr::V4(ip) = res.ips[0] else {
        panic!("not v4: {res:?}")
    };
    assert_eq!(&ip.octets()[..3], &[10, 99, net.n], "{ip}");
    assert_eq!(res.interfaces, vec!["eth0".to_string()]);
    assert_eq!(leakcheck::count_veths(&net.bridge).unwrap(), 1);
    assert_eq!(leakcheck::count_ipam(&net.ipam_dir()).unwrap(), 1);
    assert_eq!(cni.cached(&id).unwrap(), res);
    assert_eq!(cni.cached_pods(), vec![id.clone()]);
    // lo is up: a listener on 127.0.0.1 inside the pod is reachable from inside.
    let l = ns.listen("127.0.0.1:7777");
    let echo = echo_once(l);
    roundtrip(
        ns.connect("127.0.0.1:7777".parse().unwrap()).unwrap(),
        b"lo",
    );
    echo.join().unwrap().unwrap();

    cni.check(&pod).await.unwrap();
    cni.teardown(&pod).await.unwrap();
    assert_eq!(leakcheck::count_veths(&net.bridge).unwrap(), 0);
    assert_eq!(leakcheck::count_ipam(&net.ipam_dir()).unwrap(), 0);
    assert!(cni.cached(&id).is_none());
    assert!(cni.cached_pods().is_empty());
    // Idempotent.
    cni.teardown(&pod).await.unwrap();
}

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crius_network::{ConfigSource, NetworkError, PortMapping};

const T: Duration = Duration::from_secs(60);

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f)
        .await
        .expect("CNI call timed out")
}

fn v4(ip: IpAddr) -> std::net::Ipv4Addr {
    match ip {
        IpAddr::V4(v) => v,
        other => panic!("not IPv4: {other}"),
    }
}

/// Per-pod artifacts on the host that a teardown must remove.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    veths: usize,
    ipam: usize,
    portmap: usize,
    masq: usize,
}

fn footprint(net: &TestNet) -> Footprint {
    Footprint {
        veths: leakcheck::count_veths(&net.bridge).unwrap(),
        ipam: leakcheck::count_ipam(&net.ipam_dir()).unwrap(),
        portmap: leakcheck::count_portmap_rules_matching(&format!("\\\"{}\\\"", net.name)).unwrap(),
        masq: leakcheck::count_masq_rules_matching(&format!("\\\"{}\\\"", net.name)).unwrap(),
    }
}

const EMPTY: Footprint = Footprint {
    veths: 0,
    ipam: 0,
    portmap: 0,
    masq: 0,
};

#[tokio::test]
async fn two_pods_talk_tcp_over_the_bridge() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let net = TestNet::new();
    let cni = net.cni();
    let (ns_a, ns_b) = (Netns::new(), Netns::new());
    let (pa, pb) = (pod(&pod_id(), &ns_a), pod(&pod_id(), &ns_b));
    let a = bounded(cni.setup(&pa)).await.unwrap();
    let b = bounded(cni.setup(&pb)).await.unwrap();
    assert_ne!(a.ips[0], b.ips[0]);
    let echo = echo_once(ns_a.listen("0.0.0.0:8080"));
    roundtrip(
        ns_b.connect(SocketAddr::new(a.ips[0], 8080)).unwrap(),
        b"hello over crtest",
    );
    echo.join().unwrap().unwrap();
    // The host reaches a pod through the bridge too.
    let echo = echo_once(ns_b.listen("0.0.0.0:8081"));
    roundtrip(
        std::net::TcpStream::connect_timeout(
            &SocketAddr::new(b.ips[0], 8081),
            Duration::from_secs(5),
        )
        .unwrap(),
        b"host",
    );
    echo.join().unwrap().unwrap();
    bounded(cni.teardown(&pa)).await.unwrap();
    bounded(cni.teardown(&pb)).await.unwrap();
    assert_eq!(footprint(&net), EMPTY);
}

#[tokio::test]
async fn host_port_reaches_the_pod_and_teardown_removes_rules() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let net = TestNet::new();
    let cni = net.cni();
    let ns = Netns::new();
    let mut p = pod(&pod_id(), &ns);
    let host_port = 20000 + (unique() % 20000) as u16;
    p.port_mappings = vec![PortMapping {
        host_port,
        container_port: 80,
        protocol: "TCP".into(),
        host_ip: String::new(),
    }];
    let before = footprint(&net);
    bounded(cni.setup(&p)).await.unwrap();
    let during = footprint(&net);
    assert_eq!((during.veths, during.ipam), (1, 1));
    assert!(during.portmap >= 3, "portmap rules: {during:?}");
    assert!(during.masq >= 2, "masq rules: {during:?}");
    assert!(leakcheck::count_portmap_rules_matching(&p.id).unwrap() >= 3);

    let echo = echo_once(ns.listen("0.0.0.0:80"));
    let s = std::net::TcpStream::connect_timeout(
        &SocketAddr::new(net.gateway().into(), host_port),
        Duration::from_secs(5),
    )
    .expect("hostPort via the bridge gateway address");
    roundtrip(s, b"via hostPort");
    echo.join().unwrap().unwrap();
    // portmap's snat mode also makes the port answer on 127.0.0.1 (it sets route_localnet).
    let echo = echo_once(ns.listen("0.0.0.0:80"));
    let s = std::net::TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], host_port)),
        Duration::from_secs(5),
    )
    .expect("hostPort via 127.0.0.1");
    roundtrip(s, b"via localhost");
    echo.join().unwrap().unwrap();

    bounded(cni.teardown(&p)).await.unwrap();
    assert_eq!(footprint(&net), before);
    assert_eq!(leakcheck::count_portmap_rules_matching(&p.id).unwrap(), 0);
}

#[tokio::test]
async fn failed_add_in_the_middle_of_the_chain_leaks_nothing() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let net = TestNet::new();
    // bridge and portmap succeed, then tuning fails on a sysctl that does not exist.
    let conf = net.conflist().replace(
        r#""snat": true }"#,
        r#""snat": true }, { "type": "tuning", "sysctl": { "net.ipv4.conf.eth0.no_such_knob": "1" } }"#,
    );
    assert!(conf.contains("tuning"));
    net.write_conf("10-test.conflist", &conf);
    let cni = net.cni();
    let ns = Netns::new();
    let mut p = pod(&pod_id(), &ns);
    p.port_mappings = vec![PortMapping {
        host_port: 20000 + (unique() % 20000) as u16,
        container_port: 80,
        protocol: "tcp".into(),
        host_ip: String::new(),
    }];
    let err = bounded(cni.setup(&p)).await.unwrap_err();
    match &err {
        NetworkError::Plugin {
            plugin, command, ..
        } => assert_eq!(
            (plugin.as_str(), command.as_str()),
            ("tuning", "ADD"),
            "{err}"
        ),
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(footprint(&net), EMPTY);
    assert_eq!(leakcheck::count_portmap_rules_matching(&p.id).unwrap(), 0);
    assert!(cni.cached_pods().is_empty());
    assert!(cni.cached(&p.id).is_none());
    // eth0 is gone from the pod too.
    let out = std::process::Command::new("ip")
        .args(["-n", &ns.name, "-o", "link"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("eth0"));
}

#[tokio::test]
async fn teardown_uses_the_cache_after_config_change_and_restart() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let net = TestNet::new();
    let ns = Netns::new();
    let mut p = pod(&pod_id(), &ns);
    p.port_mappings = vec![PortMapping {
        host_port: 20000 + (unique() % 20000) as u16,
        container_port: 80,
        protocol: "tcp".into(),
        host_ip: String::new(),
    }];
    let res = bounded(net.cni().setup(&p)).await.unwrap();
    // The network config changes under us and the daemon restarts (a new Cni on the same cache dir).
    net.write_conf("05-other.conflist", r#"{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"bridge","bridge":"crtest-none","ipam":{"type":"host-local","subnet":"10.98.0.0/24"}}]}"#);
    let cni = net.cni();
    assert_eq!(cni.status().unwrap().name, "other");
    assert_eq!(cni.cached(&p.id), Some(res));
    assert_eq!(cni.cached_pods(), vec![p.id.clone()]);
    bounded(cni.teardown(&p)).await.unwrap();
    assert_eq!(footprint(&net), EMPTY);
    assert!(!link_exists("crtest-none"));
    assert!(cni.cached_pods().is_empty());
}

#[tokio::test]
async fn teardown_after_the_netns_is_gone_still_cleans_the_host() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let net = TestNet::new();
    let cni = net.cni();
    let ns = Netns::new();
    let mut p = pod(&pod_id(), &ns);
    p.port_mappings = vec![PortMapping {
        host_port: 20000 + (unique() % 20000) as u16,
        container_port: 80,
        protocol: "tcp".into(),
        host_ip: String::new(),
    }];
    bounded(cni.setup(&p)).await.unwrap();
    drop(ns);
    bounded(cni.teardown(&p)).await.unwrap();
    assert_eq!(footprint(&net), EMPTY);
    assert!(cni.cached_pods().is_empty());
}

#[tokio::test]
async fn check_detects_a_missing_interface() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let net = TestNet::new();
    let cni = net.cni();
    let ns = Netns::new();
    let p = pod(&pod_id(), &ns);
    bounded(cni.setup(&p)).await.unwrap();
    bounded(cni.check(&p)).await.unwrap();
    let out = std::process::Command::new("ip")
        .args(["-n", &ns.name, "link", "del", "eth0"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = bounded(cni.check(&p)).await.unwrap_err();
    assert!(
        matches!(err, NetworkError::Plugin { ref command, .. } if command == "CHECK"),
        "{err}"
    );
    bounded(cni.teardown(&p)).await.unwrap();
    assert_eq!(footprint(&net), EMPTY);
}

#[tokio::test]
async fn status_reports_invalid_json_and_missing_plugins() {
    let net = TestNet::new();
    net.write_conf("10-test.conflist", "{ not json");
    let err = net.cni().status().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, NetworkError::NoConfig { .. }), "{msg}");
    assert!(
        msg.contains("10-test.conflist") && msg.contains("invalid JSON"),
        "{msg}"
    );

    net.write_conf("20-missing.conflist", r#"{"cniVersion":"1.0.0","name":"m","plugins":[{"type":"bridge"},{"type":"crius-no-such-plugin"}]}"#);
    let cni = net.cni();
    let err = cni.status().unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, NetworkError::PluginNotFound { ref plugin, .. } if plugin == "crius-no-such-plugin"),
        "{msg}"
    );
    assert!(
        msg.contains("/opt/cni/bin") && msg.contains("/usr/lib/cni"),
        "{msg}"
    );
    // setup refuses before touching anything.
    let p = crius_network::PodNetwork {
        id: pod_id(),
        netns: "/nonexistent".into(),
        ..Default::default()
    };
    assert!(matches!(
        bounded(cni.setup(&p)).await,
        Err(NetworkError::PluginNotFound { .. })
    ));
    assert!(cni.cached_pods().is_empty());

    // Fixing the file is picked up without a new Cni.
    net.write_conf("10-test.conflist", &net.conflist());
    assert_eq!(
        cni.status().unwrap().source,
        ConfigSource::File(net.conf_dir.join("10-test.conflist"))
    );
}

#[tokio::test]
async fn embedded_default_gives_an_address_in_10_85() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    // Shares crius0 and /var/lib/cni/networks/crius with a daemon on this host: only our own
    // reservation is looked at, and the bridge is left in place.
    let tmp = tempfile::tempdir().unwrap();
    let cni = crius_network::Cni::new(crius_network::CniConfig {
        conf_dir: tmp.path().join("no-such-dir"),
        bin_dirs: vec![BIN_DIR.into()],
        cache_dir: tmp.path().join("cache"),
    });
    let st = cni.status().unwrap();
    assert_eq!(
        (st.source.clone(), st.name.as_str(), st.cni_version.as_str()),
        (ConfigSource::Embedded, "crius", "1.0.0")
    );
    let ns = Netns::new();
    let p = pod(&pod_id(), &ns);
    let res = bounded(cni.setup(&p)).await.unwrap();
    let ip = v4(res.ips[0]);
    assert_eq!(&ip.octets()[..2], &[10, 85], "{ip}");
    let reservation = std::path::Path::new("/var/lib/cni/networks/crius").join(ip.to_string());
    assert!(std::fs::read_to_string(&reservation)
        .unwrap()
        .contains(&p.id));
    assert!(link_exists("crius0"));
    bounded(cni.teardown(&p)).await.unwrap();
    assert!(!reservation.exists());
}

#[tokio::test]
async fn bandwidth_reaches_the_plugin_that_declares_it() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let net = TestNet::new();
    let conf = net.conflist().replace(
        r#""snat": true }"#,
        r#""snat": true }, { "type": "bandwidth", "capabilities": { "bandwidth": true } }"#,
    );
    net.write_conf("10-test.conflist", &conf);
    let cni = net.cni();
    let ns = Netns::new();
    let mut p = pod(&pod_id(), &ns);
    let mut ann = BTreeMap::new();
    ann.insert(
        "kubernetes.io/egress-bandwidth".to_string(),
        "10M".to_string(),
    );
    ann.insert(
        "kubernetes.io/ingress-bandwidth".to_string(),
        "20M".to_string(),
    );
    p.bandwidth = crius_network::bandwidth_from_annotations(&ann).unwrap();
    p.annotations = ann;
    bounded(cni.setup(&p)).await.unwrap();
    // Ingress shaping sits on the host side of the pod's veth as a tbf qdisc.
    let out = std::process::Command::new("tc")
        .args(["qdisc", "show"])
        .output()
        .unwrap();
    let qdiscs = String::from_utf8_lossy(&out.stdout);
    assert!(
        qdiscs.contains("tbf") && qdiscs.contains("20Mbit"),
        "{qdiscs}"
    );
    bounded(cni.teardown(&p)).await.unwrap();
    assert_eq!(footprint(&net), EMPTY);
}

#[tokio::test]
async fn leak_loop_50_cycles() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    // CRIUS_TEST_TRACE=debug shows each plugin run with its duration.
    if let Ok(filter) = std::env::var("CRIUS_TEST_TRACE") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let net = TestNet::new();
    let cni = net.cni();
    let ns = Netns::new();
    let base_port = 20000 + (unique() % 20000) as u16;
    let global_before = leakcheck::count_portmap_rules().unwrap();
    let before = footprint(&net);
    let started = Instant::now();
    let mut ids = Vec::new();
    let (mut setup_time, mut teardown_time) = (Duration::ZERO, Duration::ZERO);
    for i in 0..50u16 {
        let mut p = pod(&pod_id(), &ns);
        p.port_mappings = vec![PortMapping {
            host_port: base_port,
            container_port: 80 + i,
            protocol: "tcp".into(),
            host_ip: String::new(),
        }];
        let t0 = Instant::now();
        let res = bounded(cni.setup(&p)).await.unwrap();
        setup_time += t0.elapsed();
        assert_eq!(&v4(res.ips[0]).octets()[..3], &[10, 99, net.n]);
        let t1 = Instant::now();
        bounded(cni.teardown(&p)).await.unwrap();
        teardown_time += t1.elapsed();
        ids.push(p.id);
    }
    let per_cycle = started.elapsed() / 50;
    assert_eq!(footprint(&net), before);
    for id in &ids {
        assert_eq!(
            leakcheck::count_portmap_rules_matching(id).unwrap(),
            0,
            "{id}"
        );
    }
    assert!(cni.cached_pods().is_empty());
    eprintln!(
        "leak loop: 50 setup+teardown cycles, {per_cycle:?} per cycle (setup {:?}, teardown {:?}); global portmap lines {global_before} -> {}",
        setup_time / 50,
        teardown_time / 50,
        leakcheck::count_portmap_rules().unwrap()
    );
}

#[tokio::test]
async fn concurrent_pods_get_distinct_addresses_and_leave_nothing() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let net = TestNet::new();
    let cni = net.cni();
    let namespaces: Vec<Netns> = (0..6).map(|_| Netns::new()).collect();
    let pods: Vec<_> = namespaces.iter().map(|ns| pod(&pod_id(), ns)).collect();
    let results = futures_join(pods.iter().map(|p| {
        let cni = cni.clone();
        let p = p.clone();
        tokio::spawn(async move { bounded(cni.setup(&p)).await })
    }))
    .await;
    let mut ips: Vec<IpAddr> = results.into_iter().map(|r| r.unwrap().ips[0]).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 6);
    assert_eq!(leakcheck::count_veths(&net.bridge).unwrap(), 6);
    assert_eq!(leakcheck::count_ipam(&net.ipam_dir()).unwrap(), 6);
    let done = futures_join(pods.iter().map(|p| {
        let cni = cni.clone();
        let p = p.clone();
        tokio::spawn(async move { bounded(cni.teardown(&p)).await })
    }))
    .await;
    for d in done {
        d.unwrap();
    }
    assert_eq!(footprint(&net), EMPTY);
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_hanging_plugin_times_out_and_the_add_is_undone() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let net = TestNet::new();
    // After the real bridge/portmap, a plugin that never answers ADD (and deletes fine).
    let bin = net.tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let hang = bin.join("crius-hang");
    std::fs::write(
        &hang,
        "#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = ADD ] && exec sleep 30\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&hang, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    net.write_conf(
        "10-test.conflist",
        &net.conflist().replace(
            r#""snat": true }"#,
            r#""snat": true }, { "type": "crius-hang" }"#,
        ),
    );
    let cni = crius_network::Cni::with_plugin_timeout(
        crius_network::CniConfig {
            conf_dir: net.conf_dir.clone(),
            bin_dirs: vec![bin, BIN_DIR.into()],
            cache_dir: net.cache_dir.clone(),
        },
        Duration::from_secs(2),
    );
    let ns = Netns::new();
    let mut p = pod(&pod_id(), &ns);
    p.port_mappings = vec![PortMapping {
        host_port: 20000 + (unique() % 20000) as u16,
        container_port: 80,
        protocol: "tcp".into(),
        host_ip: String::new(),
    }];
    let started = Instant::now();
    let err = bounded(cni.setup(&p)).await.unwrap_err();
    assert!(
        matches!(err, NetworkError::Timeout { ref plugin, .. } if plugin == "crius-hang"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(footprint(&net), EMPTY);
    assert!(cni.cached_pods().is_empty());
}

#[tokio::test]
async fn retried_setup_replaces_the_first_attempt() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let net = TestNet::new();
    let cni = net.cni();
    let ns = Netns::new();
    let p = pod(&pod_id(), &ns);
    bounded(cni.setup(&p)).await.unwrap();
    let second = bounded(cni.setup(&p)).await.unwrap();
    assert_eq!(leakcheck::count_veths(&net.bridge).unwrap(), 1);
    assert_eq!(leakcheck::count_ipam(&net.ipam_dir()).unwrap(), 1);
    assert_eq!(cni.cached(&p.id), Some(second));
    bounded(cni.teardown(&p)).await.unwrap();
    assert_eq!(footprint(&net), EMPTY);
}

#[tokio::test]
async fn a_damaged_cache_entry_still_gets_a_delete() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let net = TestNet::new();
    let cni = net.cni();
    let ns = Netns::new();
    let p = pod(&pod_id(), &ns);
    bounded(cni.setup(&p)).await.unwrap();
    std::fs::write(net.cache_dir.join(format!("{}.json", p.id)), "{ torn").unwrap();
    assert!(cni.cached(&p.id).is_none());
    bounded(cni.teardown(&p)).await.unwrap();
    assert_eq!(footprint(&net), EMPTY);
    assert!(cni.cached_pods().is_empty());
}

#[tokio::test]
async fn dual_stack_lists_ipv4_first() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let net = TestNet::new();
    // The IPv6 range comes first in the config; the pod's primary IP must still be the IPv4 one.
    let conf = net.conflist().replace(
        &format!(r#""ranges": [[{{ "subnet": "10.99.{}.0/24" }}]]"#, net.n),
        &format!(
            r#""ranges": [[{{ "subnet": "fd99:{0}::/64" }}], [{{ "subnet": "10.99.{0}.0/24" }}]]"#,
            net.n
        ),
    );
    assert!(conf.contains("fd99:"));
    net.write_conf("10-test.conflist", &conf);
    let cni = net.cni();
    let ns = Netns::new();
    let p = pod(&pod_id(), &ns);
    let res = bounded(cni.setup(&p)).await.unwrap();
    assert_eq!(res.ips.len(), 2, "{res:?}");
    assert!(res.ips[0].is_ipv4() && res.ips[1].is_ipv6(), "{res:?}");
    assert_eq!(
        res.raw_result["ips"][0]["address"]
            .as_str()
            .map(|a| a.starts_with("fd99:")),
        Some(true)
    );
    bounded(cni.teardown(&p)).await.unwrap();
    assert_eq!(footprint(&net), EMPTY);
    assert_eq!(leakcheck::count_ipam(&net.ipam_dir()).unwrap(), 0);
}

#[tokio::test]
async fn status_is_cheap() {
    let net = TestNet::new();
    let cni = net.cni();
    cni.status().unwrap();
    let n = 500u32;
    let started = Instant::now();
    for _ in 0..n {
        cni.status().unwrap();
    }
    let per_call = started.elapsed() / n;
    eprintln!("status(): {per_call:?} per call (config unchanged)");
    // A CRI Status must not pay for parsing or plugin execs: only a dir scan and a few stats.
    assert!(per_call < Duration::from_millis(2), "{per_call:?}");
}
