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
