//! Reading CNI results: pod IPs and sandbox interfaces, for every result format crius accepts
//! (0.1.0/0.2.0 `ip4`/`ip6`, 0.3.x/0.4.0 and 1.x `ips[]`/`interfaces[]`).

use std::net::IpAddr;

use serde_json::Value;

/// IPs (IPv4 first, otherwise in result order, without duplicates) and the names of the interfaces
/// that live in the pod's namespace.
pub(crate) fn parse_result(v: &Value) -> Result<(Vec<IpAddr>, Vec<String>), String> {
    let Value::Object(obj) = v else {
        return Err("result is not a JSON object".to_string());
    };
    let interfaces: Vec<&Value> = match obj.get("interfaces") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(_) => return Err("\"interfaces\" is not an array".to_string()),
    };
    let mut ips = Vec::new();
    // Interfaces that an IP is assigned to count as the pod's even when a plugin left `sandbox` empty.
    let mut ip_ifaces = Vec::new();
    match obj.get("ips") {
        None | Some(Value::Null) => {
            for key in ["ip4", "ip6"] {
                if let Some(cfg) = obj.get(key).filter(|c| !c.is_null()) {
                    let addr = cfg
                        .get("ip")
                        .and_then(Value::as_str)
                        .ok_or(format!("\"{key}.ip\" missing"))?;
                    ips.push(parse_cidr_ip(addr)?);
                }
            }
        }
        Some(Value::Array(list)) => {
            for (i, ip) in list.iter().enumerate() {
                let addr = ip
                    .get("address")
                    .and_then(Value::as_str)
                    .ok_or(format!("ips[{i}].address missing"))?;
                ips.push(parse_cidr_ip(addr).map_err(|e| format!("ips[{i}]: {e}"))?);
                if let Some(idx) = ip.get("interface").and_then(Value::as_u64) {
                    ip_ifaces.push(idx as usize);
                }
            }
        }
        Some(_) => return Err("\"ips\" is not an array".to_string()),
    }
    let mut seen = Vec::new();
    ips.retain(|ip| {
        let fresh = !seen.contains(ip);
        seen.push(*ip);
        fresh
    });
    // Stable: keeps plugin order within a family.
    ips.sort_by_key(|ip| ip.is_ipv6());

    let mut names = Vec::new();
    for (i, iface) in interfaces.iter().enumerate() {
        let Some(name) = iface.get("name").and_then(Value::as_str) else {
            continue;
        };
        let in_sandbox = iface
            .get("sandbox")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        if (in_sandbox || ip_ifaces.contains(&i)) && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    Ok((ips, names))
}

/// The addresses (CIDR form, as the result has them) assigned to the sandbox interface `ifname`, or all
/// addresses when the result does not say which interface they belong to.
pub(crate) fn sandbox_addresses(v: &Value, ifname: &str) -> Vec<String> {
    let interfaces = v.get("interfaces").and_then(Value::as_array);
    let mut out = Vec::new();
    if let Some(list) = v.get("ips").and_then(Value::as_array) {
        for ip in list {
            let Some(addr) = ip.get("address").and_then(Value::as_str) else {
                continue;
            };
            let on_ifname = match (ip.get("interface").and_then(Value::as_u64), interfaces) {
                (Some(i), Some(ifs)) => {
                    ifs.get(i as usize)
                        .and_then(|f| f.get("name"))
                        .and_then(Value::as_str)
                        == Some(ifname)
                }
                _ => true,
            };
            if on_ifname {
                out.push(addr.to_string());
            }
        }
    } else {
        for key in ["ip4", "ip6"] {
            if let Some(addr) = v.get(key).and_then(|c| c.get("ip")).and_then(Value::as_str) {
                out.push(addr.to_string());
            }
        }
    }
    out
}

fn parse_cidr_ip(s: &str) -> Result<IpAddr, String> {
    let addr = s.split('/').next().unwrap_or(s);
    addr.parse().map_err(|e| format!("bad address {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_0_0_and_v1_1_0() {
        for version in ["1.0.0", "1.1.0"] {
            let r = json!({
                "cniVersion": version,
                "interfaces": [
                    {"name": "crius0", "mac": "aa"},
                    {"name": "veth1", "mac": "bb"},
                    {"name": "eth0", "mac": "cc", "sandbox": "/run/netns/x"}
                ],
                "ips": [
                    {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 2},
                    {"address": "10.85.0.5/16", "gateway": "10.85.0.1", "interface": 2}
                ],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dns": {}
            });
            let (ips, ifs) = parse_result(&r).unwrap();
            assert_eq!(ips, vec![ip("10.85.0.5"), ip("fd00::5")], "{version}");
            assert_eq!(ifs, vec!["eth0"]);
            assert_eq!(
                sandbox_addresses(&r, "eth0"),
                vec!["fd00::5/64", "10.85.0.5/16"]
            );
            assert!(sandbox_addresses(&r, "veth1").is_empty());
        }
    }

    #[test]
    fn v0_4_0_and_v0_3_1_with_version_field() {
        for version in ["0.4.0", "0.3.1", "0.3.0"] {
            let r = json!({
                "cniVersion": version,
                "interfaces": [{"name": "eth0", "sandbox": "/proc/1/ns/net"}],
                "ips": [{"version": "4", "address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0}]
            });
            assert_eq!(
                parse_result(&r).unwrap(),
                (vec![ip("10.0.0.2")], vec!["eth0".to_string()])
            );
        }
    }

    #[test]
    fn legacy_ip4_ip6() {
        let r = json!({"cniVersion": "0.2.0", "ip6": {"ip": "fd00::2/64"}, "ip4": {"ip": "10.1.0.2/16", "gateway": "10.1.0.1"}});
        assert_eq!(
            parse_result(&r).unwrap(),
            (vec![ip("10.1.0.2"), ip("fd00::2")], vec![])
        );
    }

    #[test]
    fn interface_without_sandbox_counts_if_it_has_an_ip() {
        let r = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "net1"}], "ips": [{"address": "10.0.0.9/8", "interface": 0}]});
        assert_eq!(parse_result(&r).unwrap().1, vec!["net1"]);
    }

    #[test]
    fn empty_and_broken() {
        assert_eq!(
            parse_result(&json!({"cniVersion": "1.0.0"})).unwrap(),
            (vec![], vec![])
        );
        assert!(parse_result(&json!([])).is_err());
        assert!(parse_result(&json!({"ips": [{"address": "nope/1"}]}))
            .unwrap_err()
            .contains("bad address"));
        assert!(parse_result(&json!({"ips": [{}]}))
            .unwrap_err()
            .contains("address missing"));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            prop_oneof![
                Just("10.0.0.2/24".to_string()),
                Just("fd00::2/64".to_string()),
                Just("eth0".to_string()),
                Just("/var/run/netns/x".to_string()),
                "\\PC{0,12}",
            ]
            .prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let keys = prop_oneof![
                Just("ips".to_string()),
                Just("interfaces".to_string()),
                Just("address".to_string()),
                Just("interface".to_string()),
                Just("sandbox".to_string()),
                Just("name".to_string()),
                Just("ip4".to_string()),
                Just("ip6".to_string()),
                Just("ip".to_string()),
                "[a-z]{1,6}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys, inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// A plugin's result is untrusted output: any JSON gives IPs or an error, never a panic,
        /// and IPs come without duplicates.
        #[test]
        fn parse_result_is_total(v in json()) {
            if let Ok((ips, _)) = parse_result(&v) {
                let mut seen = std::collections::HashSet::new();
                for ip in &ips {
                    prop_assert!(seen.insert(*ip), "duplicate {ip}");
                }
            }
        }
    }
}
