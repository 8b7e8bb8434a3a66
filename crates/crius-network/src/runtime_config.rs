//! What a plugin is told about the pod besides its config: CNI_ARGS (the kubelet's K8S_POD_* keys)
//! and `runtimeConfig`, which carries a capability argument only to plugins that declare that
//! capability in their config (`"capabilities": {"portMappings": true}`).

use serde_json::{json, Map, Value};

use crate::config::NetworkList;
use crate::PodNetwork;

/// Capability name for pod annotations, as containerd passes them (opt-in by plugins).
const CAP_POD_ANNOTATIONS: &str = "io.kubernetes.cri.pod-annotations";

/// The CNI_ARGS key/value pairs for a pod, in the order the kubelet's dockershim/containerd used.
pub fn cni_args(pod: &PodNetwork) -> Vec<(String, String)> {
    vec![
        ("IgnoreUnknown".to_string(), "1".to_string()),
        ("K8S_POD_NAMESPACE".to_string(), pod.namespace.clone()),
        ("K8S_POD_NAME".to_string(), pod.name.clone()),
        ("K8S_POD_INFRA_CONTAINER_ID".to_string(), pod.id.clone()),
        ("K8S_POD_UID".to_string(), pod.uid.clone()),
    ]
}

/// `K=V;K=V`, the CNI_ARGS wire form.
pub(crate) fn format_cni_args(args: &[(String, String)]) -> String {
    args.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Every capability argument crius can offer for this pod; plugins get the subset they declare.
pub(crate) fn capability_args(pod: &PodNetwork) -> Map<String, Value> {
    let mut caps = Map::new();
    // A mapping without a host port only documents the container port; nothing to forward.
    let ports: Vec<Value> = pod
        .port_mappings
        .iter()
        .filter(|p| p.host_port != 0)
        .map(|p| {
            let mut m = json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": normalise_protocol(&p.protocol),
            });
            // An unspecified address means "all addresses"; portmap would take it literally as `-d 0.0.0.0`.
            let unspecified = p
                .host_ip
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_unspecified());
            if !p.host_ip.is_empty() && !unspecified {
                m["hostIP"] = Value::String(p.host_ip.clone());
            }
            m
        })
        .collect();
    if !ports.is_empty() {
        caps.insert("portMappings".into(), Value::Array(ports));
    }
    if let Some(bw) = &pod.bandwidth {
        caps.insert(
            "bandwidth".into(),
            json!({
                "ingressRate": bw.ingress_rate,
                "ingressBurst": bw.ingress_burst,
                "egressRate": bw.egress_rate,
                "egressBurst": bw.egress_burst,
            }),
        );
    }
    if let Some(dns) = &pod.dns {
        caps.insert(
            "dns".into(),
            json!({ "servers": dns.servers, "searches": dns.searches, "options": dns.options }),
        );
    }
    if !pod.annotations.is_empty() {
        caps.insert(CAP_POD_ANNOTATIONS.into(), json!(pod.annotations));
    }
    caps
}

fn normalise_protocol(p: &str) -> String {
    let p = p.to_ascii_lowercase();
    if p.is_empty() {
        "tcp".to_string()
    } else {
        p
    }
}

/// The `runtimeConfig` for one plugin: only the capability args it declares. `None` when empty.
pub(crate) fn runtime_config_for(
    plugin: &Map<String, Value>,
    caps: &Map<String, Value>,
) -> Option<Map<String, Value>> {
    let declared = plugin.get("capabilities").and_then(Value::as_object)?;
    let rc: Map<String, Value> = declared
        .iter()
        .filter(|(_, on)| on.as_bool() == Some(true))
        .filter_map(|(name, _)| caps.get(name).map(|v| (name.clone(), v.clone())))
        .collect();
    (!rc.is_empty()).then_some(rc)
}

/// The stdin document for one plugin of the list: its config plus the list's name and version, the
/// previous result in the chain, and its filtered runtimeConfig.
pub(crate) fn plugin_stdin(
    list: &NetworkList,
    plugin: &Map<String, Value>,
    prev_result: Option<&Value>,
    caps: &Map<String, Value>,
) -> Value {
    let mut conf = plugin.clone();
    conf.insert("name".into(), Value::String(list.name.clone()));
    conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
    match prev_result {
        Some(prev) => {
            conf.insert("prevResult".into(), prev.clone());
        }
        None => {
            conf.remove("prevResult");
        }
    }
    if let Some(rc) = runtime_config_for(plugin, caps) {
        let mut merged = conf
            .get("runtimeConfig")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        merged.extend(rc);
        conf.insert("runtimeConfig".into(), Value::Object(merged));
    }
    Value::Object(conf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigSource;
    use crate::{Bandwidth, Dns, PortMapping};

    fn pod() -> PodNetwork {
        PodNetwork {
            id: "abc".into(),
            name: "web".into(),
            namespace: "default".into(),
            uid: "u-1".into(),
            port_mappings: vec![
                PortMapping {
                    host_port: 8080,
                    container_port: 80,
                    protocol: "TCP".into(),
                    host_ip: String::new(),
                },
                PortMapping {
                    host_port: 0,
                    container_port: 81,
                    protocol: "tcp".into(),
                    host_ip: String::new(),
                },
                PortMapping {
                    host_port: 53,
                    container_port: 53,
                    protocol: "udp".into(),
                    host_ip: "10.0.0.1".into(),
                },
                PortMapping {
                    host_port: 9000,
                    container_port: 9,
                    protocol: "".into(),
                    host_ip: "0.0.0.0".into(),
                },
                PortMapping {
                    host_port: 9001,
                    container_port: 9,
                    protocol: "sctp".into(),
                    host_ip: "::".into(),
                },
            ],
            bandwidth: Some(Bandwidth {
                ingress_rate: 1000,
                ingress_burst: 2,
                egress_rate: 3000,
                egress_burst: 4,
            }),
            dns: Some(Dns {
                servers: vec!["1.1.1.1".into()],
                searches: vec!["svc".into()],
                options: vec![],
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cni_args_wire_form() {
        assert_eq!(
            format_cni_args(&cni_args(&pod())),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1"
        );
    }

    #[test]
    fn capability_args_shape() {
        let caps = capability_args(&pod());
        assert_eq!(
            caps["portMappings"],
            json!([
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 53, "containerPort": 53, "protocol": "udp", "hostIP": "10.0.0.1"},
                {"hostPort": 9000, "containerPort": 9, "protocol": "tcp"},
                {"hostPort": 9001, "containerPort": 9, "protocol": "sctp"}
            ])
        );
        assert_eq!(
            caps["bandwidth"],
            json!({"ingressRate": 1000, "ingressBurst": 2, "egressRate": 3000, "egressBurst": 4})
        );
        assert_eq!(
            caps["dns"],
            json!({"servers": ["1.1.1.1"], "searches": ["svc"], "options": []})
        );
        assert!(!caps.contains_key(CAP_POD_ANNOTATIONS));
        assert!(capability_args(&PodNetwork::default()).is_empty());
    }

    #[test]
    fn runtime_config_only_for_declared_capabilities() {
        let caps = capability_args(&pod());
        let obj = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            runtime_config_for(&obj(json!({"type": "bridge"})), &caps),
            None
        );
        assert_eq!(
            runtime_config_for(
                &obj(json!({"type": "portmap", "capabilities": {"portMappings": true}})),
                &caps
            )
            .map(|m| m.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["portMappings".to_string()])
        );
        // Declared but switched off, or declared but nothing to pass.
        assert_eq!(
            runtime_config_for(
                &obj(json!({"type": "x", "capabilities": {"portMappings": false, "ips": true}})),
                &caps
            ),
            None
        );
        let rc = runtime_config_for(
            &obj(json!({"type": "x", "capabilities": {"bandwidth": true, "dns": true, "portMappings": true}})),
            &caps,
        )
        .unwrap();
        assert_eq!(rc.len(), 3);
    }

    #[test]
    fn stdin_injects_name_version_prev_result() {
        let list = NetworkList::parse(
            br#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"bridge","name":"ignored"},
                {"type":"portmap","capabilities":{"portMappings":true},"runtimeConfig":{"keep":1}}]}"#,
            ConfigSource::Embedded,
        )
        .unwrap();
        let caps = capability_args(&pod());
        let first = plugin_stdin(&list, &list.plugins[0], None, &caps);
        assert_eq!(first["name"], "net");
        assert_eq!(first["cniVersion"], "1.0.0");
        assert!(first.get("prevResult").is_none());
        assert!(first.get("runtimeConfig").is_none());
        let prev = json!({"cniVersion": "1.0.0", "ips": []});
        let second = plugin_stdin(&list, &list.plugins[1], Some(&prev), &caps);
        assert_eq!(second["prevResult"], prev);
        assert_eq!(second["runtimeConfig"]["keep"], 1);
        assert_eq!(second["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    }
}
