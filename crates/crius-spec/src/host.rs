//! Probing of the host facts in [`HostInfo`] (from `/proc/self` and `/sys`), and capability
//! number ↔ name mapping for the kernel's capability masks.

use std::path::Path;

use crate::{HostInfo, SpecError};

/// Kernel capability names by bit number (linux/capability.h).
pub const CAP_NAMES: [&str; 41] = [
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

/// Names of the capabilities set in a kernel mask (`CapBnd:` of `/proc/<pid>/status`). Bits
/// beyond the known names are skipped: no runtime could grant them by name anyway.
pub fn cap_names_from_mask(mask: u64) -> Vec<String> {
    CAP_NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, name)| name.to_string())
        .collect()
}

/// The value of a `Key:\tvalue` line of a `/proc/<pid>/status` text.
fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

fn read(path: &str) -> Result<String, SpecError> {
    std::fs::read_to_string(path).map_err(|source| SpecError::Io {
        path: path.into(),
        source,
    })
}

fn hex_mask(status: &str, key: &str) -> Result<u64, SpecError> {
    status_field(status, key)
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .ok_or_else(|| SpecError::Io {
            path: "/proc/self/status".into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("no {key} line")),
        })
}

impl HostInfo {
    /// Probes the calling process and the host: bounding set and CAP_SYS_RESOURCE from
    /// `/proc/self/status`, seccomp support (its `Seccomp:` line exists only on kernels built
    /// with it), the current OOM score, cgroup v2 (unified hierarchy at `/sys/fs/cgroup`),
    /// AppArmor (module enabled) and SELinux (selinuxfs mounted).
    pub fn probe() -> Result<HostInfo, SpecError> {
        let status = read("/proc/self/status")?;
        let bounding = hex_mask(&status, "CapBnd")?;
        let effective = hex_mask(&status, "CapEff")?;
        let oom = read("/proc/self/oom_score_adj")?;
        let current_oom_score_adj = oom.trim().parse::<i32>().map_err(|e| SpecError::Io {
            path: "/proc/self/oom_score_adj".into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .map(|s| s.trim() == "Y")
            .unwrap_or(false);
        Ok(HostInfo {
            bounding_caps: cap_names_from_mask(bounding),
            cgroup_v2: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
            has_cap_sys_resource: effective & (1 << 24) != 0,
            seccomp: status_field(&status, "Seccomp").is_some(),
            current_oom_score_adj,
            apparmor,
            selinux: Path::new("/sys/fs/selinux/enforce").exists(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_to_names() {
        assert_eq!(cap_names_from_mask(0), Vec::<String>::new());
        assert_eq!(cap_names_from_mask(1), vec!["CAP_CHOWN"]);
        assert_eq!(
            cap_names_from_mask((1 << 21) | (1 << 40)),
            vec!["CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE"]
        );
        assert_eq!(cap_names_from_mask(u64::MAX).len(), CAP_NAMES.len());
        // Every name is one oci-spec knows, so the bounding set maps fully.
        for n in CAP_NAMES {
            assert_eq!(crate::caps::canonical_cap(n).as_deref(), Some(n));
        }
    }

    #[test]
    fn status_parsing() {
        let s = "Name:\tx\nCapBnd:\t000001ffffffffff\nSeccomp:\t0\n";
        assert_eq!(hex_mask(s, "CapBnd").unwrap(), 0x1ff_ffff_ffff);
        assert!(hex_mask(s, "CapEff").is_err());
        assert_eq!(status_field(s, "Seccomp"), Some("0"));
    }

    #[test]
    fn probe_this_process() {
        let h = HostInfo::probe().unwrap();
        assert!(!h.bounding_caps.is_empty());
        assert!((-1000..=1000).contains(&h.current_oom_score_adj));
        // This build host lacks CAP_SYS_RESOURCE in its bounding set; on any host the two
        // facts must agree.
        if !h.bounding_caps.iter().any(|c| c == "CAP_SYS_RESOURCE") {
            assert!(!h.has_cap_sys_resource);
        }
    }
}
