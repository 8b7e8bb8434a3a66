//! The native network (netlink + nftables, no plugins) on real namespaces, a real bridge and the
//! kernel's nftables. Needs root. Each test has its own bridge, subnet, reservation dir and table,
//! all removed at the end.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use crius_network::{
    leakcheck, Backend, Cni, CniConfig, ConfigSource, NativeConfig, PortMapping, Subnet,
};

struct Native {
    net: TestNet,
    cfg: NativeConfig,
}

impl Native {
    fn new() -> Native {
        let net = TestNet::new();
        let cfg = NativeConfig {
            bridge: net.bridge.clone(),
            subnet: Subnet::parse(&format!("10.99.{}.0/24", net.n)).unwrap(),
            mtu: 1400,
            ipam_dir: net.tmp.path().join("native-ipam"),
        };
        Native { net, cfg }
    }

    fn cni(&self, backend: Backend) -> Cni {
        Cni::with_backend(
            CniConfig {
                conf_dir: self.net.conf_dir.clone(),
                bin_dirs: vec![BIN_DIR.into()],
                cache_dir: self.net.cache_dir.clone(),
            },
            backend,
            self.cfg.clone(),
        )
    }

    /// (veths on the bridge, reservations, hostPort map elements, cache entries)
    fn footprint(&self, cni: &Cni) -> (usize, usize, usize, usize) {
        (
            leakcheck::count_veths(&self.net.bridge).unwrap(),
            leakcheck::count_ipam(&self.cfg.ipam_dir).unwrap(),
            leakcheck::count_native_hostports(&self.net.bridge).unwrap(),
            cni.cached_pods().len(),
        )
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        // Pods of a failed test first (TestNet's drop), then the table and the bridge.
        let _ = leakcheck::remove_native_network(&self.net.bridge);
    }
}

fn v4(ip: IpAddr) -> std::net::Ipv4Addr {
    match ip {
        IpAddr::V4(v) => v,
        other => panic!("not IPv4: {other}"),
    }
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("native network call timed out")
}

#[tokio::test]
async fn pods_get_addresses_talk_and_leave_nothing() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let n = Native::new();
    let cni = n.cni(Backend::Native);
    let st = cni.status().unwrap();
    assert_eq!(st.source, ConfigSource::Native);
    let (ns_a, ns_b) = (Netns::new(), Netns::new());
    let (ida, idb) = (pod_id(), pod_id());
    let (pa, pb) = (pod(&ida, &ns_a), pod(&idb, &ns_b));
    let a = bounded(cni.setup(&pa)).await.unwrap();
    let b = bounded(cni.setup(&pb)).await.unwrap();
    assert_eq!(a.interfaces, vec!["eth0".to_string()]);
    let (ipa, ipb) = (v4(a.ips[0]), v4(b.ips[0]));
    assert_ne!(ipa, ipb);
    assert!(
        n.cfg.subnet.contains(ipa) && n.cfg.subnet.contains(ipb),
        "{ipa} {ipb}"
    );
    assert_eq!(
        a.raw_result["ips"][0]["gateway"],
        n.cfg.subnet.gateway().to_string()
    );
    assert_eq!(cni.cached(&ida).unwrap(), a);
    assert_eq!(n.footprint(&cni), (2, 2, 0, 2));
    // The pod end: eth0 with the MTU, address and MAC from the address; lo up; the default route.
    // (sysfs shows the host's namespace whatever the thread's is: ask netlink through `ip`.)
    let (links, addrs, route) = ns_a.run(|| {
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        let route = std::fs::read_to_string("/proc/net/route").unwrap();
        (ip(&["-o", "link"]), ip(&["-4", "-o", "addr"]), route)
    });
    let o = ipa.octets();
    let eth0 = links
        .lines()
        .find(|l| l.contains(" eth0@"))
        .unwrap_or_else(|| panic!("{links}"));
    assert!(eth0.contains("mtu 1400") && eth0.contains(",UP"), "{eth0}");
    let mac = format!("0a:58:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
    assert!(eth0.contains(&format!("link/ether {mac}")), "{eth0}");
    let lo = links.lines().find(|l| l.contains(" lo:")).unwrap();
    assert!(lo.contains(",UP"), "{lo}");
    assert!(addrs.contains(&format!("inet {ipa}/24")), "{addrs}");
    assert!(addrs.contains("127.0.0.1/8"), "{addrs}");
    assert!(
        route.lines().any(|l| l.starts_with("eth0\t00000000\t")),
        "no default route: {route}"
    );
    // Pod to pod over the bridge, host to pod, lo inside a pod.
    let echo = echo_once(ns_a.listen("0.0.0.0:8080"));
    roundtrip(
        ns_b.connect(SocketAddr::new(a.ips[0], 8080)).unwrap(),
        b"pod to pod",
    );
    echo.join().unwrap().unwrap();
    let echo = echo_once(ns_b.listen("0.0.0.0:8081"));
    roundtrip(
        std::net::TcpStream::connect_timeout(
            &SocketAddr::new(b.ips[0], 8081),
            Duration::from_secs(5),
        )
        .unwrap(),
        b"host to pod",
    );
    echo.join().unwrap().unwrap();
    let echo = echo_once(ns_a.listen("127.0.0.1:7777"));
    roundtrip(
        ns_a.connect("127.0.0.1:7777".parse().unwrap()).unwrap(),
        b"lo",
    );
    echo.join().unwrap().unwrap();
    bounded(cni.check(&pa)).await.unwrap();

    bounded(cni.teardown(&pa)).await.unwrap();

    cni.settle().await;
    bounded(cni.teardown(&pb)).await.unwrap();
    cni.settle().await;
    assert_eq!(n.footprint(&cni), (0, 0, 0, 0));
    assert!(cni.cached(&ida).is_none());
    // Idempotent.
    bounded(cni.teardown(&pa)).await.unwrap();
    cni.settle().await;
}

#[tokio::test]
async fn host_ports_dnat_to_the_pod_and_go_with_it() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let n = Native::new();
    let cni = n.cni(Backend::Native);
    let ns = Netns::new();
    let id = pod_id();
    let port = 20000 + (unique() % 20000) as u16;
    let mut p = pod(&id, &ns);
    p.port_mappings = vec![
        PortMapping {
            host_port: port,
            container_port: 8080,
            protocol: "tcp".into(),
            host_ip: String::new(),
        },
        PortMapping {
            host_port: port,
            container_port: 53,
            protocol: "udp".into(),
            host_ip: n.cfg.subnet.gateway().to_string(),
        },
    ];
    let r = bounded(cni.setup(&p)).await.unwrap();
    assert_eq!(n.footprint(&cni), (1, 1, 2, 1));
    // A host address (the gateway) and loopback both reach the pod through the hostPort.
    for host in [n.cfg.subnet.gateway().to_string(), "127.0.0.1".to_string()] {
        let echo = echo_once(ns.listen("0.0.0.0:8080"));
        let addr: SocketAddr = format!("{host}:{port}").parse().unwrap();
        roundtrip(
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("{addr}: {e}")),
            b"via hostPort",
        );
        echo.join().unwrap().unwrap();
    }
    // The pod reaches itself through its own hostPort (hairpin).
    let echo = echo_once(ns.listen("0.0.0.0:8080"));
    let gw: SocketAddr = format!("{}:{port}", n.cfg.subnet.gateway())
        .parse()
        .unwrap();
    roundtrip(ns.connect(gw).unwrap(), b"hairpin");
    echo.join().unwrap().unwrap();

    // Another pod asking for the same host port fails fast and leaves nothing.
    let ns2 = Netns::new();
    let id2 = pod_id();
    let mut p2 = pod(&id2, &ns2);
    p2.port_mappings = p.port_mappings[..1].to_vec();
    let err = bounded(cni.setup(&p2)).await.unwrap_err();
    assert!(err.to_string().contains(&format!("{port}/tcp")), "{err}");
    assert_eq!(n.footprint(&cni), (1, 1, 2, 1));

    bounded(cni.teardown(&p)).await.unwrap();

    cni.settle().await;
    assert_eq!(n.footprint(&cni), (0, 0, 0, 0));
    let _ = r;
}

#[tokio::test]
async fn teardown_after_the_netns_is_gone_and_after_a_restart() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let n = Native::new();
    let ns = Netns::new();
    let id = pod_id();
    let mut p = pod(&id, &ns);
    p.port_mappings = vec![PortMapping {
        host_port: 20000 + (unique() % 20000) as u16,
        container_port: 80,
        protocol: "tcp".into(),
        host_ip: String::new(),
    }];
    bounded(n.cni(Backend::Native).setup(&p)).await.unwrap();
    drop(ns);
    // A new handle (a restarted daemon) that would use CNI now: the cache entry says native.
    n.net.write_conf("10-test.conflist", &n.net.conflist());
    let after = n.cni(Backend::Auto);
    assert_ne!(after.status().unwrap().source, ConfigSource::Native);
    assert_eq!(after.cached_pods(), vec![id.clone()]);
    let orphan = crius_network::PodNetwork {
        id: id.clone(),
        ..Default::default()
    };
    bounded(after.teardown(&orphan)).await.unwrap();
    after.settle().await;
    assert_eq!(n.footprint(&after), (0, 0, 0, 0));
}

#[tokio::test]
async fn a_retried_setup_replaces_the_first_attempt() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let n = Native::new();
    let cni = n.cni(Backend::Native);
    let ns = Netns::new();
    let p = pod(&pod_id(), &ns);
    let first = bounded(cni.setup(&p)).await.unwrap();
    let second = bounded(cni.setup(&p)).await.unwrap();
    assert_eq!(n.footprint(&cni), (1, 1, 0, 1));
    assert!(n.cfg.subnet.contains(v4(first.ips[0])) && n.cfg.subnet.contains(v4(second.ips[0])));
    bounded(cni.teardown(&p)).await.unwrap();
    cni.settle().await;
    assert_eq!(n.footprint(&cni), (0, 0, 0, 0));
}

#[tokio::test]
async fn auto_uses_a_cni_config_when_there_is_one() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let n = Native::new();
    let cni = n.cni(Backend::Auto);
    // TestNet wrote a conflist: CNI has priority.
    assert_eq!(cni.status().unwrap().name, n.net.name);
    std::fs::remove_file(n.net.conf_dir.join("10-test.conflist")).unwrap();
    assert_eq!(cni.status().unwrap().source, ConfigSource::Native);
    // `cni` keeps the embedded list for an empty dir; `native` ignores a config.
    assert_eq!(
        n.cni(Backend::Cni).status().unwrap().source,
        ConfigSource::Embedded
    );
    n.net.write_conf("10-test.conflist", &n.net.conflist());
    assert_eq!(
        n.cni(Backend::Native).status().unwrap().source,
        ConfigSource::Native
    );
}

#[tokio::test]
async fn a_failed_setup_is_undone() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let n = Native::new();
    let cni = n.cni(Backend::Native);
    // Warm the bridge up so the failure below comes from the pod's side.
    let ns = Netns::new();
    let ok = pod(&pod_id(), &ns);
    bounded(cni.setup(&ok)).await.unwrap();
    bounded(cni.teardown(&ok)).await.unwrap();
    cni.settle().await;
    // A "namespace" that is a plain file: the veth pair cannot be made; the address goes back.
    let fake = n.net.tmp.path().join("not-a-netns");
    std::fs::write(&fake, "").unwrap();
    let mut p = pod(&pod_id(), &ns);
    p.netns = fake;
    p.port_mappings = vec![PortMapping {
        host_port: 20000 + (unique() % 20000) as u16,
        container_port: 80,
        protocol: "tcp".into(),
        host_ip: String::new(),
    }];
    let err = bounded(cni.setup(&p)).await.unwrap_err();
    assert!(err.to_string().contains("veth"), "{err}");
    assert_eq!(n.footprint(&cni), (0, 0, 0, 0));
}

#[tokio::test]
async fn a_setup_that_died_before_its_result_is_still_undone() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let n = Native::new();
    let cni = n.cni(Backend::Native);
    let ns = Netns::new();
    let id = pod_id();
    let mut p = pod(&id, &ns);
    p.port_mappings = vec![PortMapping {
        host_port: 20000 + (unique() % 20000) as u16,
        container_port: 80,
        protocol: "tcp".into(),
        host_ip: String::new(),
    }];
    bounded(cni.setup(&p)).await.unwrap();
    assert_eq!(n.footprint(&cni), (1, 1, 1, 1));
    // As if the daemon died after making everything but before recording the result.
    let entry = n.net.cache_dir.join(format!("{id}.json"));
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
    v["result"] = serde_json::Value::Null;
    std::fs::write(&entry, serde_json::to_vec(&v).unwrap()).unwrap();
    // A restarted daemon finds the orphan and tears it down from the record and the reservation.
    let after = n.cni(Backend::Native);
    assert_eq!(after.cached_pods(), vec![id.clone()]);
    let orphan = crius_network::PodNetwork {
        id,
        ..Default::default()
    };
    bounded(after.teardown(&orphan)).await.unwrap();
    after.settle().await;
    assert_eq!(n.footprint(&after), (0, 0, 0, 0));
}

#[tokio::test]
async fn a_bridge_and_table_removed_under_a_running_daemon_come_back() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let n = Native::new();
    let cni = n.cni(Backend::Native);
    let ns = Netns::new();
    let a = pod(&pod_id(), &ns);
    bounded(cni.setup(&a)).await.unwrap();
    bounded(cni.teardown(&a)).await.unwrap();
    cni.settle().await;
    leakcheck::remove_native_network(&n.net.bridge).unwrap();
    let port = 20000 + (unique() % 20000) as u16;
    let mut b = pod(&pod_id(), &ns);
    b.port_mappings = vec![PortMapping {
        host_port: port,
        container_port: 8080,
        protocol: "tcp".into(),
        host_ip: String::new(),
    }];
    bounded(cni.setup(&b)).await.unwrap();
    assert_eq!(n.footprint(&cni), (1, 1, 1, 1));
    let echo = echo_once(ns.listen("0.0.0.0:8080"));
    let addr: SocketAddr = format!("{}:{port}", n.cfg.subnet.gateway())
        .parse()
        .unwrap();
    roundtrip(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap(),
        b"back",
    );
    echo.join().unwrap().unwrap();
    bounded(cni.teardown(&b)).await.unwrap();
    cni.settle().await;
    assert_eq!(n.footprint(&cni), (0, 0, 0, 0));
}
