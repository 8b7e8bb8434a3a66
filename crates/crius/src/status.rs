//! The CRI Status call: readiness conditions, runtime handlers with the features probed from their
//! binaries, crius' own features, and (verbose) the whole picture an operator needs at 3 a.m.

use std::collections::HashMap;

use cri_api::v1 as cri;
use crius_oci::HandlerStatus;

use crate::error::{Error, Result};
use crate::runtime::Runtime;

impl Runtime {
    pub fn status(&self, verbose: bool) -> cri::StatusResponse {
        let default = self.handlers.by_name.get(&self.handlers.default);
        let runtime_ready = match default.map(|h| &h.status) {
            Some(HandlerStatus::Available { .. }) => cri::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            Some(HandlerStatus::Unavailable { reason }) => cri::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: false,
                reason: "DefaultRuntimeUnavailable".into(),
                message: format!(
                    "default runtime handler {:?}: {reason}",
                    self.handlers.default
                ),
            },
            None => cri::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: false,
                reason: "DefaultRuntimeUnavailable".into(),
                message: format!(
                    "default runtime handler {:?} is not configured",
                    self.handlers.default
                ),
            },
        };
        let network = self.cni.status();
        let network_ready = match &network {
            Ok(_) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            Err(e) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message: format!("network plugin returns error: {e}"),
            },
        };

        let mut runtime_handlers = Vec::new();
        // From the handler's feature record (crate::handler_features): by the handler or by crius,
        // and for user namespaces only where the trial container passed.
        let features_of = |h: &crius_oci::Handler| {
            let f = self.handlers.features.get(&h.name);
            cri::RuntimeHandlerFeatures {
                recursive_read_only_mounts: f
                    .is_some_and(|f| f.recursive_read_only_mounts.supported),
                user_namespaces: self.gates.enabled("UserNamespacesSupport")
                    && f.is_some_and(|f| f.user_namespaces.supported),
            }
        };
        if let Some(h) = default.filter(|h| matches!(h.status, HandlerStatus::Available { .. })) {
            runtime_handlers.push(cri::RuntimeHandler {
                name: String::new(),
                features: Some(features_of(h)),
            });
        }
        for (name, h) in &self.handlers.by_name {
            if matches!(h.status, HandlerStatus::Available { .. }) {
                runtime_handlers.push(cri::RuntimeHandler {
                    name: name.clone(),
                    features: Some(features_of(h)),
                });
            }
        }

        let mut info = HashMap::new();
        if verbose {
            let handlers: serde_json::Map<String, serde_json::Value> = self
                .handlers
                .by_name
                .iter()
                .map(|(name, h)| {
                    let v = match &h.status {
                        HandlerStatus::Available { version } => serde_json::json!({
                            "binary": h.binary, "root": h.root, "available": true, "version": version,
                            "features": h.features.as_ref().map(|f| f.raw.clone()),
                            "recursiveReadOnlyMounts": match (crate::oci::native_of(h).rro, &self.handlers.host_rro) {
                                (true, _) => "handler (rro)".to_string(),
                                (false, Ok(())) => "crius (host-side mount_setattr)".to_string(),
                                (false, Err(e)) => format!("unavailable: {e}"),
                            },
                            "type": h.kind,
                            "args": h.global_args,
                            "handlerFeatures": self.handlers.features.get(name),
                            "userNamespaces": match self.handlers.userns.get(name) {
                                Some(Ok(())) if crate::oci::native_of(h).idmap => "handler (idmapped mounts)".to_string(),
                                Some(Ok(())) => "crius (host-side idmapped mounts)".to_string(),
                                Some(Err(e)) => format!("unavailable: {e}"),
                                None => "unavailable".to_string(),
                            },
                        }),
                        HandlerStatus::Unavailable { reason } => serde_json::json!({
                            "binary": h.binary, "root": h.root, "available": false, "reason": reason,
                            "type": h.kind,
                        }),
                    };
                    (name.clone(), v)
                })
                .collect();
            // Every value is a JSON object: crictl shows those as objects, anything else as a string.
            let cni = match &network {
                Ok(s) if s.source == crius_network::ConfigSource::Native => {
                    let n = self.cni.native_config();
                    serde_json::json!({
                        "ready": true, "config": s, "podCIDR": self.pod_cidr(),
                        "confDir": self.cni.conf_dir(),
                        "native": {"bridge": n.bridge, "subnet": n.subnet.to_string(), "mtu": n.mtu, "ipamDir": n.ipam_dir},
                    })
                }
                Ok(s) => serde_json::json!({
                    "ready": true, "config": s, "podCIDR": self.pod_cidr(),
                    "confDir": self.cni.conf_dir(),
                }),
                Err(e) => serde_json::json!({
                    "ready": false, "reason": e.to_string(), "podCIDR": self.pod_cidr(),
                    "confDir": self.cni.conf_dir(),
                }),
            };
            info.insert(
                "config".to_string(),
                serde_json::to_string(&self.cfg).unwrap_or_default(),
            );
            // Not "features": crictl shows the response's RuntimeFeatures under that name.
            let table: serde_json::Map<String, serde_json::Value> = self
                .gates
                .report()
                .into_iter()
                .map(|f| {
                    let v = serde_json::to_value(&f).unwrap_or_default();
                    (f.feature.name.to_string(), v)
                })
                .collect();
            info.insert(
                "criusFeatures".to_string(),
                serde_json::Value::Object(table).to_string(),
            );
            info.insert(
                "runtimeHandlers".to_string(),
                serde_json::Value::Object(handlers).to_string(),
            );
            info.insert(
                "defaultRuntime".to_string(),
                serde_json::to_string(&self.handlers.default_choice).unwrap_or_default(),
            );
            info.insert("cni".to_string(), cni.to_string());
            info.insert(
                "criu".to_string(),
                serde_json::json!({"probe": self.criu, "reason": self.criu.reason()}).to_string(),
            );
            info.insert("cdi".to_string(), self.cdi.report().to_string());
            info.insert(
                "host".to_string(),
                serde_json::json!({
                    "cgroupV2": self.host.cgroup_v2,
                    "boundingCapabilities": self.host.bounding_caps,
                    "capSysResource": self.host.has_cap_sys_resource,
                    "seccomp": self.host.seccomp,
                    "apparmor": self.host.apparmor,
                    "selinux": self.host.selinux,
                    "monitorCgroups": self.monitor_cgroups,
                    "cgroupDriver": self.cgroup_driver,
                })
                .to_string(),
            );
            info.insert("apparmor".to_string(), self.apparmor.status().to_string());
            info.insert(
                "selinux".to_string(),
                crate::selinux::status(self.selinux, self.host_selinux).to_string(),
            );
            if let Some(s) = self.streaming.get() {
                info.insert(
                    "streamingServer".to_string(),
                    serde_json::json!({ "url": s.base_url() }).to_string(),
                );
            }
        }
        cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![runtime_ready, network_ready],
            }),
            info,
            runtime_handlers,
            features: Some(cri::RuntimeFeatures {
                supplemental_groups_policy: self.gates.enabled("SupplementalGroupsPolicy"),
                user_namespaces_host_network: false,
            }),
        }
    }

    /// UpdateRuntimeConfig: the kubelet's pod CIDR. crius records it and reports it; the CNI config
    /// (file or embedded default) decides addresses.
    pub fn set_pod_cidr(&self, cidr: &str) -> Result<()> {
        if !cidr.is_empty() {
            for part in cidr.split(',') {
                let (ip, len) = part.split_once('/').ok_or_else(|| {
                    Error::invalid(
                        "runtime_config.network_config.pod_cidr",
                        format!("{part:?} is not a CIDR"),
                    )
                })?;
                if ip.parse::<std::net::IpAddr>().is_err() || len.parse::<u8>().is_err() {
                    return Err(Error::invalid(
                        "runtime_config.network_config.pod_cidr",
                        format!("{part:?} is not a CIDR"),
                    ));
                }
            }
        }
        let path = self.cfg.state.join("pod-cidr");
        std::fs::write(&path, cidr).map_err(|e| crate::error::io_err("record pod CIDR", &path, e))
    }

    pub fn pod_cidr(&self) -> String {
        std::fs::read_to_string(self.cfg.state.join("pod-cidr")).unwrap_or_default()
    }
}
