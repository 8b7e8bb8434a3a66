//! The feature table: every Kubernetes feature that needs CRI support, with its maturity in crius.
//!
//! This table is the single source of truth. `crius features` prints it, the CRI `Status` call reports it
//! (verbose info key `criusFeatures`), and request handlers ask [`Gates::enabled`] before serving a gated
//! field or RPC. Facts about KEPs and Kubernetes stages come from `shared/data/cri-features.yaml`.
//!
//! Maturity rules: `Alpha` features are off unless their gate is turned on in the config
//! (`[feature_gates] Name = true`); `Beta` and `Ga` are always on; `Unsupported` features are refused with
//! an error naming the field (fail fast) and advertised as absent through the CRI discovery fields.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Maturity {
    /// Not implemented: requests that use it fail with Unimplemented naming the field.
    Unsupported,
    /// Experimental: off unless its feature gate is enabled.
    Alpha,
    /// On, tested end to end.
    Beta,
    /// On, tested end to end, stable.
    Ga,
}

#[derive(Debug, Clone, Serialize)]
pub struct Feature {
    /// crius' gate name (the Kubernetes feature gate name where there is one).
    pub name: &'static str,
    pub kep: u32,
    /// The CRI surface (messages, fields, RPCs) the feature needs.
    pub cri: &'static [&'static str],
    pub maturity: Maturity,
    /// Why the maturity is what it is, or what limits it.
    pub note: &'static str,
}

/// The table. Keep it sorted by KEP number.
pub const FEATURES: &[Feature] = &[
    Feature {
        name: "AppArmor",
        kep: 24,
        cri: &["LinuxSandboxSecurityContext.apparmor", "LinuxContainerSecurityContext.apparmor"],
        maturity: Maturity::Beta,
        note: "without AppArmor: RuntimeDefault/Unconfined run unconfined, Localhost is refused; with it: RuntimeDefault = crius-default, loaded at start with apparmor_parser and reloaded when missing, Localhost must be loaded; the profile compiles with the real apparmor_parser, loading is unit-tested only (no AppArmor kernel in CI)",
    },
    Feature {
        name: "Seccomp",
        kep: 135,
        cri: &["SecurityProfile", "LinuxSandboxSecurityContext.seccomp", "LinuxContainerSecurityContext.seccomp"],
        maturity: Maturity::Ga,
        note: "RuntimeDefault is a built-in allow-list profile; Localhost profiles are read from absolute paths",
    },
    Feature {
        name: "UserNamespacesSupport",
        kep: 127,
        cri: &["NamespaceOption.userns_options", "Mount.uidMappings", "Mount.gidMappings", "RuntimeHandlerFeatures.user_namespaces"],
        maturity: Maturity::Unsupported,
        note: "needs idmapped mounts (runc >= 1.2, crun >= 1.9); reported per handler, refused on userns_options",
    },
    Feature {
        name: "PodOverhead",
        kep: 688,
        cri: &["LinuxPodSandboxConfig.overhead", "LinuxPodSandboxConfig.resources"],
        maturity: Maturity::Ga,
        note: "informational for the runtime: the pod cgroup is sized by the kubelet",
    },
    Feature {
        name: "WindowsHostProcessContainers",
        kep: 1981,
        cri: &["PodSandboxConfig.windows", "WindowsContainerSecurityContext.host_process"],
        maturity: Maturity::Unsupported,
        note: "crius runs Linux containers only; Windows configs are refused",
    },
    Feature {
        name: "ContainerCheckpoint",
        kep: 2008,
        cri: &["RuntimeService.CheckpointContainer"],
        maturity: Maturity::Unsupported,
        note: "needs CRIU, not installed",
    },
    Feature {
        name: "PodAndContainerStatsFromCRI",
        kep: 2371,
        cri: &["RuntimeService.ContainerStats", "RuntimeService.ListContainerStats", "RuntimeService.PodSandboxStats", "RuntimeService.ListPodSandboxStats"],
        maturity: Maturity::Beta,
        note: "cgroup v1/v2 CPU (rate from the previous sample), memory, swap, process count, writable layer (overlay upper dir, walk capped at 200k entries), pod eth0 counters from its netns; no IoUsage, no PSI; ListMetricDescriptors/ListPodSandboxMetrics stay Unimplemented",
    },
    Feature {
        name: "NodeSwap",
        kep: 2400,
        cri: &["LinuxContainerResources.memory_swap_limit_in_bytes"],
        maturity: Maturity::Ga,
        note: "memory.memsw.limit_in_bytes (v1) / memory.swap.max (v2) through the OCI runtime",
    },
    Feature {
        name: "AmbientCapabilities",
        kep: 2763,
        cri: &["Capability.add_ambient_capabilities"],
        maturity: Maturity::Alpha,
        note: "ambient capabilities are added only with the gate on; otherwise the field is refused",
    },
    Feature {
        name: "EventedPLEG",
        kep: 3386,
        cri: &["RuntimeService.GetContainerEvents", "ContainerEventResponse", "PodSandboxStatusResponse.containers_statuses"],
        maturity: Maturity::Alpha,
        note: "GetContainerEvents streams created/started/stopped/deleted events with the gate on",
    },
    Feature {
        name: "WindowsHostNetwork",
        kep: 3503,
        cri: &["WindowsSandboxSecurityContext.namespace_options"],
        maturity: Maturity::Unsupported,
        note: "crius runs Linux containers only",
    },
    Feature {
        name: "SupplementalGroupsPolicy",
        kep: 3619,
        cri: &["LinuxContainerSecurityContext.supplemental_groups_policy", "ContainerStatus.user", "RuntimeFeatures.supplemental_groups_policy"],
        maturity: Maturity::Beta,
        note: "Merge and Strict, resolved from the image's /etc/group",
    },
    Feature {
        name: "RecursiveReadOnlyMounts",
        kep: 3857,
        cri: &["Mount.recursive_read_only", "RuntimeHandlerFeatures.recursive_read_only_mounts"],
        maturity: Maturity::Ga,
        note: "available per handler, from `<runtime> features` (mountOptions has \"rro\"); refused otherwise",
    },
    Feature {
        name: "DevicePluginCDIDevices",
        kep: 4009,
        cri: &["ContainerConfig.CDI_devices"],
        maturity: Maturity::Unsupported,
        note: "no CDI spec directories are read yet; CDI_devices is refused",
    },
    Feature {
        name: "KubeletCgroupDriverFromCRI",
        kep: 4033,
        cri: &["RuntimeService.RuntimeConfig", "LinuxRuntimeConfiguration.cgroup_driver"],
        maturity: Maturity::Ga,
        note: "cgroup_driver auto|systemd|cgroupfs (auto: systemd when it is PID 1), answered in RuntimeConfig; the systemd driver (slice parents -> slice:crius:<id> scopes, runtimes with --systemd-cgroup) is verified by unit tests and an e2e of the report and the fail-fast only: no container ran under a real systemd",
    },
    Feature {
        name: "KubeletSeparateDiskGC",
        kep: 4191,
        cri: &["ImageFsInfoResponse.container_filesystems"],
        maturity: Maturity::Ga,
        note: "image and container filesystems are reported separately",
    },
    Feature {
        name: "KubeletPSI",
        kep: 4205,
        cri: &["PsiStats", "CpuUsage.psi", "MemoryUsage.psi"],
        maturity: Maturity::Unsupported,
        note: "stats RPCs serve without psi: this host is cgroup v1, which has no pressure files",
    },
    Feature {
        name: "RuntimeClassInImageCriAPI",
        kep: 4216,
        cri: &["ImageSpec.runtime_handler"],
        maturity: Maturity::Unsupported,
        note: "images are shared by all handlers; a pull naming a handler other than the default is refused",
    },
    Feature {
        name: "DynamicResourceAllocation",
        kep: 4381,
        cri: &["CDIDevice", "ContainerConfig.CDI_devices"],
        maturity: Maturity::Unsupported,
        note: "see DevicePluginCDIDevices",
    },
    Feature {
        name: "ImageVolume",
        kep: 4639,
        cri: &["Mount.image", "Mount.image_sub_path"],
        maturity: Maturity::Unsupported,
        note: "image mounts are refused",
    },
    Feature {
        name: "WindowsCPUAndMemoryAffinity",
        kep: 4885,
        cri: &["WindowsContainerResources.affinity_cpus"],
        maturity: Maturity::Unsupported,
        note: "crius runs Linux containers only",
    },
    Feature {
        name: "ContainerStopSignals",
        kep: 4960,
        cri: &["ContainerConfig.stop_signal", "ContainerStatus.stop_signal"],
        maturity: Maturity::Beta,
        note: "the request's signal wins over the image's STOPSIGNAL; SIGTERM otherwise",
    },
    Feature {
        name: "ImageVolumeWithDigest",
        kep: 5365,
        cri: &["ImageSpec.image_ref"],
        maturity: Maturity::Unsupported,
        note: "comes with ImageVolume",
    },
    Feature {
        name: "InPlacePodLevelResourcesVerticalScaling",
        kep: 5419,
        cri: &["RuntimeService.UpdatePodSandboxResources", "LinuxPodSandboxConfig.resources"],
        maturity: Maturity::Unsupported,
        note: "UpdatePodSandboxResources answers Unimplemented",
    },
    Feature {
        name: "InPlacePodVerticalScaling",
        kep: 1287,
        cri: &["RuntimeService.UpdateContainerResources", "ContainerStatus.resources"],
        maturity: Maturity::Beta,
        note: "container resources are updated through `<runtime> update` and reported in ContainerStatus",
    },
    Feature {
        name: "UserNamespacesHostNetworkSupport",
        kep: 5607,
        cri: &["RuntimeFeatures.user_namespaces_host_network"],
        maturity: Maturity::Unsupported,
        note: "needs user namespaces",
    },
    Feature {
        name: "PodLevelCheckpointRestore",
        kep: 5823,
        cri: &["RuntimeService.CheckpointPod", "RuntimeService.RestorePod"],
        maturity: Maturity::Unsupported,
        note: "needs CRIU",
    },
    Feature {
        name: "CRIListStreaming",
        kep: 5825,
        cri: &["RuntimeService.StreamPodSandboxes", "RuntimeService.StreamContainers", "ImageService.StreamImages"],
        maturity: Maturity::Alpha,
        note: "StreamPodSandboxes/StreamContainers/StreamImages serve with the gate on; StreamContainerStats/StreamPodSandboxStats too; StreamPodSandboxMetrics is Unimplemented",
    },
    Feature {
        name: "VolumeBindMountOptions",
        kep: 5855,
        cri: &["Mount.mount_options", "RuntimeFeatures.mount_options"],
        maturity: Maturity::Unsupported,
        note: "not in cri-api v0.36, which crius serves",
    },
];

/// Looks a feature up by its gate name.
pub fn by_gate(name: &str) -> Option<&'static Feature> {
    FEATURES.iter().find(|f| f.name == name)
}

/// The gates in force: the table plus the config's `feature_gates`.
#[derive(Debug, Clone, Default)]
pub struct Gates {
    overrides: BTreeMap<String, bool>,
}

impl Gates {
    pub fn new(overrides: BTreeMap<String, bool>) -> Gates {
        Gates { overrides }
    }

    /// Whether the feature named `name` is on. Unsupported features are never on; Beta and GA always are.
    pub fn enabled(&self, name: &str) -> bool {
        match by_gate(name).map(|f| f.maturity) {
            Some(Maturity::Alpha) => self.overrides.get(name).copied().unwrap_or(false),
            Some(Maturity::Beta) | Some(Maturity::Ga) => true,
            Some(Maturity::Unsupported) | None => false,
        }
    }

    /// The table with each feature's effective state, for `crius features` and verbose Status.
    pub fn report(&self) -> Vec<FeatureState> {
        FEATURES
            .iter()
            .map(|f| FeatureState {
                feature: f.clone(),
                enabled: self.enabled(f.name),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FeatureState {
    #[serde(flatten)]
    pub feature: Feature,
    pub enabled: bool,
}

/// Human-readable table for `crius features`.
pub fn render(gates: &Gates) -> String {
    let mut out = format!(
        "{:<42} {:>5} {:<12} {:<8} {}\n",
        "FEATURE", "KEP", "MATURITY", "ENABLED", "NOTE"
    );
    for s in gates.report() {
        let m = match s.feature.maturity {
            Maturity::Unsupported => "unsupported",
            Maturity::Alpha => "alpha",
            Maturity::Beta => "beta",
            Maturity::Ga => "ga",
        };
        out.push_str(&format!(
            "{:<42} {:>5} {:<12} {:<8} {}\n",
            s.feature.name, s.feature.kep, m, s.enabled, s.feature.note
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = FEATURES.iter().map(|f| f.name).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    #[test]
    fn alpha_is_off_until_gated() {
        let off = Gates::default();
        assert!(!off.enabled("CRIListStreaming"));
        let on = Gates::new([("CRIListStreaming".to_string(), true)].into());
        assert!(on.enabled("CRIListStreaming"));
    }

    #[test]
    fn beta_cannot_be_switched_off_and_unsupported_never_on() {
        let g = Gates::new(
            [
                ("ContainerStopSignals".to_string(), false),
                ("ImageVolume".to_string(), true),
            ]
            .into(),
        );
        assert!(g.enabled("ContainerStopSignals"));
        assert!(!g.enabled("ImageVolume"));
    }
}
