//! What this host offers containers, read once at start: the capability bounding set, the cgroup
//! layout, seccomp, LSMs. Spec generation consults it so that a request the host cannot honour fails
//! with a clear error instead of an opaque runtime failure.

use std::path::Path;

/// Capability names by bit number (linux/capability.h).
pub const CAP_NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

fn status_field(status: &str, key: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

/// Names of the capabilities set in a /proc status mask (only those this table knows).
pub fn caps_from_mask(mask: u64) -> Vec<String> {
    CAP_NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

/// Whether the host runs the unified (v2-only) cgroup hierarchy. A hybrid host (v1 controllers with a v2
/// mount holding no controllers we use) counts as v1: that is where runc puts the limits.
pub fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

pub fn host_info() -> crius_spec::HostInfo {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = |key| {
        status_field(&status, key)
            .and_then(|v| u64::from_str_radix(&v, 16).ok())
            .unwrap_or(0)
    };
    let bounding = mask("CapBnd:");
    let effective = mask("CapEff:");
    crius_spec::HostInfo {
        bounding_caps: caps_from_mask(bounding),
        cgroup_v2: cgroup_v2(),
        has_cap_sys_resource: effective & (1 << 24) != 0,
        seccomp: status_field(&status, "Seccomp:").is_some(),
        current_oom_score_adj: std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        apparmor: std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .map(|s| s.trim() == "Y")
            .unwrap_or(false),
        selinux: Path::new("/sys/fs/selinux/enforce").exists(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_decoding() {
        assert_eq!(
            caps_from_mask(0b101),
            vec!["CAP_CHOWN", "CAP_DAC_READ_SEARCH"]
        );
        assert!(caps_from_mask(1 << 24).contains(&"CAP_SYS_RESOURCE".to_string()));
        assert_eq!(caps_from_mask(u64::MAX).len(), CAP_NAMES.len());
    }
}
