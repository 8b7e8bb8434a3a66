//! Pod network setup + teardown time, native vs CNI plugins (bridge + host-local + portmap, the
//! embedded conflist's chain), on a bridge and subnet of its own. Figures are printed, never asserted.
//!
//! Usage (root): cargo run --release -p crius-network --example netbench [-- PODS [native|cni]]
//! Each backend gets its own bridge (`crbn<pid>`/`crbc<pid>`), subnet and temp dirs; all of it, and
//! the namespaces, are removed at the end.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crius_network::{Backend, Cni, CniConfig, NativeConfig, PodNetwork, PortMapping, Subnet};

fn netns(name: &str) -> PathBuf {
    let ok = Command::new("ip")
        .args(["netns", "add", name])
        .status()
        .map(|s| s.success());
    assert!(matches!(ok, Ok(true)), "ip netns add {name}");
    PathBuf::from("/run/netns").join(name)
}

fn stats(label: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p = |q: f64| ms(v[((v.len() as f64 - 1.0) * q).round() as usize]);
    println!(
        "{label:<44} median {:>7.2} ms   p90 {:>7.2} ms   min {:>7.2} ms   (n={})",
        p(0.5),
        p(0.9),
        ms(v[0]),
        v.len()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("clean") {
        // `netbench clean BRIDGE`: removes what an interrupted run left.
        let bridge = std::env::args().nth(2).expect("netbench clean BRIDGE");
        crius_network::leakcheck::remove_native_network(&bridge).unwrap();
        return;
    }
    let pods: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    // `native` or `cni` runs only that backend.
    let only = std::env::args().nth(2);
    let pid = std::process::id() % 100000;
    let tmp = tempfile::tempdir().unwrap();
    for (label, backend, bridge, third) in [
        ("native", Backend::Native, format!("crbn{pid}"), 1u8),
        (
            "CNI (bridge+host-local+portmap)",
            Backend::Cni,
            format!("crbc{pid}"),
            2u8,
        ),
    ] {
        if only
            .as_deref()
            .is_some_and(|o| !label.to_lowercase().starts_with(o))
        {
            continue;
        }
        let dir = tmp.path().join(&bridge);
        let conf = dir.join("net.d");
        std::fs::create_dir_all(&conf).unwrap();
        let subnet = format!("10.125.{third}.0/24");
        let list = serde_json::json!({
            "cniVersion": "1.0.0", "name": bridge,
            "plugins": [
                {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
                 "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}], "ranges": [[{"subnet": subnet}]],
                          "dataDir": dir.join("ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
            ]
        });
        std::fs::write(conf.join("10-bench.conflist"), list.to_string()).unwrap();
        let cni = Cni::with_backend(
            CniConfig {
                conf_dir: conf,
                bin_dirs: vec!["/usr/lib/cni".into(), "/opt/cni/bin".into()],
                cache_dir: dir.join("cache"),
            },
            backend,
            NativeConfig {
                bridge: bridge.clone(),
                subnet: Subnet::parse(&subnet).unwrap(),
                mtu: 1500,
                ipam_dir: dir.join("native-ipam"),
            },
        );
        for host_ports in [false, true] {
            let (mut setup, mut teardown, mut both, mut settled) = (vec![], vec![], vec![], vec![]);
            // One warm-up pod (makes the bridge, the nftables table, page cache) is not counted.
            for i in 0..=pods {
                let name = format!("crb{pid}-{i}");
                let ns = netns(&name);
                let pod = PodNetwork {
                    id: format!("{pid:08x}{i:056x}"),
                    name: name.clone(),
                    namespace: "bench".into(),
                    uid: name.clone(),
                    netns: ns,
                    port_mappings: if host_ports {
                        vec![PortMapping {
                            host_port: 30000 + i as u16,
                            container_port: 80,
                            protocol: "tcp".into(),
                            host_ip: String::new(),
                        }]
                    } else {
                        vec![]
                    },
                    ..Default::default()
                };
                let t = Instant::now();
                cni.setup(&pod)
                    .await
                    .unwrap_or_else(|e| panic!("{label}: setup: {e}"));
                let s = t.elapsed();
                let t = Instant::now();
                cni.teardown(&pod)
                    .await
                    .unwrap_or_else(|e| panic!("{label}: teardown: {e}"));
                let d = t.elapsed();
                // The native teardown's second half (veth, reservation) runs in the background.
                cni.settle().await;
                let full = t.elapsed();
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
                if i > 0 {
                    setup.push(s);
                    teardown.push(d);
                    both.push(s + d);
                    settled.push(s + full);
                }
            }
            let hp = if host_ports { ", 1 hostPort" } else { "" };
            stats(&format!("{label}{hp}: setup"), setup);
            stats(&format!("{label}{hp}: teardown"), teardown);
            stats(&format!("{label}{hp}: setup + teardown"), both);
            stats(&format!("{label}{hp}: setup + teardown, settled"), settled);
        }
        let _ = crius_network::leakcheck::remove_native_network(&bridge);
    }
}
