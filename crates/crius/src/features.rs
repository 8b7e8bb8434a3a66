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
        note: "RuntimeDefault is a built-in allow-list profile; Localhost profiles are read from absolute paths; per handler a seccomp trial container (at start; for sandbox handlers such as runsc at the first Status or pod that needs them) checks that the filter is applied (gVisor's runsc applies it only with --oci-seccomp, which crius' default runsc args carry); a profile on a handler whose trial failed is refused with FailedPrecondition naming the handler (`crius features --handlers`); the same trial runs one process through `<runtime> exec` in its container and reports whether it was filtered (handler row execSeccomp: no for youki 0.7.0, whose exec rebuilds linux without seccomp, and gVisor's runsc 20221219); ExecSync/Exec into a container with a filter on such a handler is refused with FailedPrecondition naming the handler and linux.security_context.seccomp, unless [runtimes.NAME] allow_unfiltered_exec = true",
    },
    Feature {
        name: "UserNamespacesSupport",
        kep: 127,
        cri: &["NamespaceOption.userns_options", "Mount.uidMappings", "Mount.gidMappings", "RuntimeHandlerFeatures.user_namespaces"],
        maturity: Maturity::Beta,
        note: "userns_options POD (one uid and one gid range, container id 0 mapped); the pod's user namespace is pinned with (and owns) its net/ipc/uts namespaces and every container joins it. Idmapped mounts are made by crius host-side (open_tree + mount_setattr MOUNT_ATTR_IDMAP + move_mount) for runc 1.1 and crun 1.8, which cannot: rootfs = overlay over idmapped layer copies + upper dir owned by the pod's root, volumes with uidMappings/gidMappings bound from idmapped copies; a handler whose features report idmap gets the volume mappings itself. RuntimeHandlerFeatures.user_namespaces is true only where the start-up userns trial container passed (verbose Status: handlers.*.userNamespaces); a pod with userns_options on any other handler (gVisor's runsc 20221219 cannot join a user namespace by path) is refused with FailedPrecondition naming the handler",
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
        note: "CheckpointContainer is not implemented; CRIU is probed at start (`criu check`) and the reason it is unavailable on this host is reported here, in Status and in the RPC's error",
    },
    Feature {
        name: "PodAndContainerStatsFromCRI",
        kep: 2371,
        cri: &["RuntimeService.ContainerStats", "RuntimeService.ListContainerStats", "RuntimeService.PodSandboxStats", "RuntimeService.ListPodSandboxStats", "RuntimeService.ListMetricDescriptors", "RuntimeService.ListPodSandboxMetrics", "RuntimeService.StreamPodSandboxMetrics", "IoUsage"],
        maturity: Maturity::Beta,
        note: "cgroup v1/v2 CPU (rate from the previous sample), memory, swap, process count, writable layer (overlay upper dir, walk capped at 200k entries), pod eth0 counters from its netns; IoUsage present with its PSI on v2 only; ListMetricDescriptors/ListPodSandboxMetrics serve CRI-O's cAdvisor-style series (cpu, memory, network per interface, fs, block I/O per device, OOM events, processes/threads/fds/sockets, limits, PSI on v2; no hugetlb, no ulimits); StreamPodSandboxMetrics needs CRIListStreaming; v1 block I/O comes from the blkio throttle counters, which the kernel moves only for devices with a throttle rule; on gVisor's runsc a container's cgroup holds only its gofer (the pod's one sandbox process runs every container), so its CPU/memory are not the container's own",
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
        note: "GetContainerEvents streams created/started/stopped/deleted events of containers and of pods (pod id as container_id, as containerd), each with the full PodSandboxStatus and every container status of the pod; a client more than container_events_buffer events behind gets its stream closed with DataLoss, never a gap",
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
        note: "by the handler where its features list the rro mount option (runc 1.1); otherwise crius binds a host-side recursively read-only copy (open_tree + mount_setattr AT_RECURSIVE MOUNT_ATTR_RDONLY, kernel >= 5.12, checked at start) as a plain ro bind (crun 1.8); verbose Status says which per handler",
    },
    Feature {
        name: "DevicePluginCDIDevices",
        kep: 4009,
        cri: &["ContainerConfig.CDI_devices"],
        maturity: Maturity::Beta,
        note: "CDI specs (0.3.0-1.0.x, JSON/YAML) from cdi_spec_dirs (default /etc/cdi, /var/run/cdi), re-read on change; device nodes, env, mounts, hooks, additionalGids applied for CDI_devices and cdi.k8s.io/* annotations; unknown/ambiguous devices are InvalidArgument; spec errors in verbose Status (key cdi); intelRdt/netDevices edits refused",
    },
    Feature {
        name: "KubeletCgroupDriverFromCRI",
        kep: 4033,
        cri: &["RuntimeService.RuntimeConfig", "LinuxRuntimeConfiguration.cgroup_driver"],
        maturity: Maturity::Ga,
        note: "cgroup_driver auto|systemd|cgroupfs (auto: systemd when it is PID 1), answered in RuntimeConfig; the systemd driver (slice parents -> slice:crius:<id> scopes, runtimes with --systemd-cgroup) ran against a real systemd (Debian 12's 252 as PID 1 of a test node, cgroup v1 hybrid, runc 1.1.5; tests/systemd_node.rs): SYSTEMD reported (systemd and auto), containers are crius-<id>.scope units in kubepods-*-pod<uid>.slice in every hierarchy, stats and UpdateContainerResources use the scope's cgroup, the packaged crius.service survives systemctl restart and systemctl kill with containers recovered; an init systemd migrated out of its scope (v1 devices) is moved back before start. Not run under systemd on a cgroup v2 host, nor with crun/youki",
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
        cri: &["PsiStats", "CpuUsage.psi", "MemoryUsage.psi", "IoUsage.psi"],
        maturity: Maturity::Beta,
        note: "cpu, memory and io pressure (some and full: total in ns, avg10/60/300) from the cgroup v2 pressure files; on cgroup v1 hosts (like the CI machine) there are no pressure files and psi stays empty, so the v2 path is verified by unit tests on real v2 file contents",
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
        maturity: Maturity::Beta,
        note: "the runtime's part is CDI injection: see DevicePluginCDIDevices",
    },
    Feature {
        name: "ImageVolume",
        kep: 4639,
        cri: &["Mount.image", "Mount.image_sub_path"],
        maturity: Maturity::Beta,
        note: "a pulled image (by reference or id) mounted read-only, nosuid, nodev from its snapshots; image_sub_path must exist and stay inside the image; the image counts as in use while mounted; no user-namespace (idmapped) image volumes",
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
        maturity: Maturity::Beta,
        note: "ContainerStatus.mounts[].image.image_ref is the mounted image's id, as PullImage answered it",
    },
    Feature {
        name: "InPlacePodLevelResourcesVerticalScaling",
        kep: 5419,
        cri: &["RuntimeService.UpdatePodSandboxResources", "LinuxPodSandboxConfig.resources"],
        maturity: Maturity::Beta,
        note: "resources and overhead are validated, recorded and reported (verbose PodSandboxStatus, podResources); written (cpu period/quota/shares, memory limit; other fields refused) only into the pod cgroup crius makes for a pod without cgroup_parent on cgroup v1 (/crius/pod-<id>); a kubelet-owned cgroup_parent is never written, as containerd 2.3 and CRI-O",
    },
    Feature {
        name: "InPlacePodVerticalScaling",
        kep: 1287,
        cri: &["RuntimeService.UpdateContainerResources", "ContainerStatus.resources"],
        maturity: Maturity::Beta,
        note: "container resources are updated through `<runtime> update` and reported in ContainerStatus; gVisor's runsc has no update command: refused with FailedPrecondition naming the handler",
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
        note: "not in cri-api v0.36, which crius serves; needs CRIU (see ContainerCheckpoint)",
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
    /// What was discovered on this host about a feature (e.g. why CRIU cannot checkpoint here).
    details: BTreeMap<String, String>,
    /// Beta/GA features this host cannot serve (reported off, with the reason as the row's detail).
    host_off: BTreeMap<String, String>,
}

impl Gates {
    pub fn new(overrides: BTreeMap<String, bool>) -> Gates {
        Gates {
            overrides,
            details: BTreeMap::new(),
            host_off: BTreeMap::new(),
        }
    }

    /// Marks a feature as off on this host (e.g. PSI on a cgroup v1 host, which has no pressure files):
    /// reported `enabled: false` with `why` as its detail, so discovery never over-claims.
    pub fn off_on_this_host(mut self, name: &str, why: impl Into<String>) -> Gates {
        let why = why.into();
        self.details.insert(name.to_string(), why.clone());
        self.host_off.insert(name.to_string(), why);
        self
    }

    /// The standard host facts: PSI needs the cgroup v2 pressure files.
    pub fn with_host(self, cgroup_v2: bool) -> Gates {
        if cgroup_v2 {
            self
        } else {
            self.off_on_this_host(
                "KubeletPSI",
                "this host's containers are in cgroup v1 hierarchies, which have no pressure files: stats carry no psi",
            )
        }
    }

    /// Adds a host-specific fact to a feature's row.
    pub fn with_detail(mut self, name: &str, detail: impl Into<String>) -> Gates {
        self.details.insert(name.to_string(), detail.into());
        self
    }

    pub fn detail(&self, name: &str) -> Option<&str> {
        self.details.get(name).map(String::as_str)
    }

    /// Whether the feature named `name` is on. Unsupported features are never on; Beta and GA always are.
    pub fn enabled(&self, name: &str) -> bool {
        if self.host_off.contains_key(name) {
            return false;
        }
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
                detail: self.details.get(f.name).cloned(),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FeatureState {
    #[serde(flatten)]
    pub feature: Feature,
    pub enabled: bool,
    /// What was found on this host, when it matters (see [`Gates::with_detail`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
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
        let note = match &s.detail {
            Some(d) => format!("{}; here: {d}", s.feature.note),
            None => s.feature.note.to_string(),
        };
        out.push_str(&format!(
            "{:<42} {:>5} {:<12} {:<8} {}\n",
            s.feature.name, s.feature.kep, m, s.enabled, note
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
    fn host_facts_turn_a_beta_feature_off_and_say_why() {
        let v1 = Gates::default().with_host(false);
        assert!(!v1.enabled("KubeletPSI"));
        let row = v1
            .report()
            .into_iter()
            .find(|r| r.feature.name == "KubeletPSI")
            .unwrap();
        assert!(!row.enabled && row.detail.unwrap().contains("cgroup v1"));
        assert!(Gates::default().with_host(true).enabled("KubeletPSI"));
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
                ("WindowsHostNetwork".to_string(), true),
            ]
            .into(),
        );
        assert!(g.enabled("ContainerStopSignals"));
        assert!(!g.enabled("WindowsHostNetwork"));
    }
}
