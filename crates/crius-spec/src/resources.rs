//! CRI `LinuxContainerResources` → OCI `linux.resources` (CreateContainer and
//! UpdateContainerResources), and the OOM score policy.

use std::collections::HashMap;

use cri_api::v1::LinuxContainerResources;
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use crate::{HostInfo, SpecError};

fn invalid(field: &str, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: format!("resources.{field}"),
        reason: reason.into(),
    }
}

/// Translates CRI resources; zero/empty CRI values mean "not set" and produce no OCI field.
///
/// `oom_score_adj` is not part of OCI `linux.resources` (it is `process.oomScoreAdj`): use
/// [`oom_score_adj`]. Device rules are added by `container_spec`, not here, so that an update
/// never rewrites them. `unified` is accepted only on a cgroup v2 host.
pub fn linux_resources(
    r: &LinuxContainerResources,
    host: &HostInfo,
) -> Result<LinuxResources, SpecError> {
    let mut out = LinuxResources::default();

    let mut cpu = LinuxCpu::default();
    let mut cpu_set = false;
    if r.cpu_period < 0 {
        return Err(invalid("cpu_period", format!("negative: {}", r.cpu_period)));
    }
    if r.cpu_period > 0 {
        cpu.set_period(Some(r.cpu_period as u64));
        cpu_set = true;
    }
    // -1 is the kernel's "unlimited"; other negative quotas are meaningless.
    if r.cpu_quota < -1 {
        return Err(invalid("cpu_quota", format!("negative: {}", r.cpu_quota)));
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
        cpu_set = true;
    }
    if r.cpu_shares < 0 {
        return Err(invalid("cpu_shares", format!("negative: {}", r.cpu_shares)));
    }
    if r.cpu_shares > 0 {
        cpu.set_shares(Some(r.cpu_shares as u64));
        cpu_set = true;
    }
    if !r.cpuset_cpus.is_empty() {
        validate_cpuset(&r.cpuset_cpus).map_err(|e| invalid("cpuset_cpus", e))?;
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
        cpu_set = true;
    }
    if !r.cpuset_mems.is_empty() {
        validate_cpuset(&r.cpuset_mems).map_err(|e| invalid("cpuset_mems", e))?;
        cpu.set_mems(Some(r.cpuset_mems.clone()));
        cpu_set = true;
    }
    if cpu_set {
        out.set_cpu(Some(cpu));
    }

    let mut memory = LinuxMemory::default();
    let mut memory_set = false;
    if r.memory_limit_in_bytes < 0 {
        return Err(invalid(
            "memory_limit_in_bytes",
            format!("negative: {}", r.memory_limit_in_bytes),
        ));
    }
    if r.memory_limit_in_bytes > 0 {
        memory.set_limit(Some(r.memory_limit_in_bytes));
        memory_set = true;
    }
    // -1 means unlimited swap; otherwise OCI swap is memory+swap and cannot be below the limit.
    if r.memory_swap_limit_in_bytes < -1 {
        return Err(invalid(
            "memory_swap_limit_in_bytes",
            format!("negative: {}", r.memory_swap_limit_in_bytes),
        ));
    }
    if r.memory_swap_limit_in_bytes != 0 {
        if r.memory_swap_limit_in_bytes > 0
            && r.memory_limit_in_bytes > 0
            && r.memory_swap_limit_in_bytes < r.memory_limit_in_bytes
        {
            return Err(invalid(
                "memory_swap_limit_in_bytes",
                format!(
                    "{} is below memory_limit_in_bytes {} (it counts memory plus swap)",
                    r.memory_swap_limit_in_bytes, r.memory_limit_in_bytes
                ),
            ));
        }
        memory.set_swap(Some(r.memory_swap_limit_in_bytes));
        memory_set = true;
    }
    if memory_set {
        out.set_memory(Some(memory));
    }

    if !r.hugepage_limits.is_empty() {
        let mut limits = Vec::with_capacity(r.hugepage_limits.len());
        for (i, h) in r.hugepage_limits.iter().enumerate() {
            validate_page_size(&h.page_size)
                .map_err(|e| invalid(&format!("hugepage_limits[{i}].page_size"), e))?;
            let mut l = LinuxHugepageLimit::default();
            l.set_page_size(h.page_size.clone());
            l.set_limit(
                i64::try_from(h.limit)
                    .map_err(|_| invalid(&format!("hugepage_limits[{i}].limit"), "exceeds i64"))?,
            );
            limits.push(l);
        }
        out.set_hugepage_limits(Some(limits));
    }

    if !r.unified.is_empty() {
        if !host.cgroup_v2 {
            return Err(invalid(
                "unified",
                "cgroup v2 unified parameters given on a cgroup v1 host",
            ));
        }
        for key in r.unified.keys() {
            if key.is_empty() || key.contains('/') || key.starts_with('.') {
                return Err(invalid(
                    &format!("unified[{key}]"),
                    "not a cgroup interface file name",
                ));
            }
        }
        let unified: HashMap<String, String> = r
            .unified
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.set_unified(Some(unified));
    }

    // LinuxResources::default() carries an empty device list; an update must leave the
    // container's device rules alone, so the field is absent here.
    out.set_devices(None);
    Ok(out)
}

/// The process OOM score adjustment to request.
///
/// Without CAP_SYS_RESOURCE the kernel refuses to lower a score below the daemon's own, so a
/// lower request is raised to `host.current_oom_score_adj` rather than failing the create with
/// EPERM inside the runtime. Out-of-range values are Invalid.
pub fn oom_score_adj(r: &LinuxContainerResources, host: &HostInfo) -> Result<i32, SpecError> {
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        return Err(invalid(
            "oom_score_adj",
            format!("{} is outside -1000..=1000", r.oom_score_adj),
        ));
    }
    let wanted = r.oom_score_adj as i32;
    Ok(clamp_oom(wanted, host))
}

pub(crate) fn clamp_oom(wanted: i32, host: &HostInfo) -> i32 {
    if !host.has_cap_sys_resource && wanted < host.current_oom_score_adj {
        host.current_oom_score_adj
    } else {
        wanted
    }
}

/// A cpuset list: `0-3,5,7-8`.
fn validate_cpuset(s: &str) -> Result<(), String> {
    for part in s.split(',') {
        let part = part.trim();
        let ok = match part.split_once('-') {
            Some((a, b)) => match (a.parse::<u32>(), b.parse::<u32>()) {
                (Ok(a), Ok(b)) => a <= b,
                _ => false,
            },
            None => part.parse::<u32>().is_ok(),
        };
        if !ok {
            return Err(format!("{s:?} is not a cpu list like 0-3,5"));
        }
    }
    Ok(())
}

/// Kubernetes sends page sizes as `<n>KB|MB|GB` (the cgroup file suffix spelling).
fn validate_page_size(s: &str) -> Result<(), String> {
    let digits = s
        .strip_suffix("KB")
        .or_else(|| s.strip_suffix("MB"))
        .or_else(|| s.strip_suffix("GB"));
    match digits.map(|d| d.parse::<u64>()) {
        Some(Ok(n)) if n > 0 && n.is_power_of_two() => Ok(()),
        _ => Err(format!("{s:?} is not a page size like 2MB or 1GB")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_api::v1::HugepageLimit;

    fn host(v2: bool) -> HostInfo {
        HostInfo {
            cgroup_v2: v2,
            ..HostInfo::default()
        }
    }

    #[test]
    fn empty_means_unset() {
        let r = linux_resources(&LinuxContainerResources::default(), &host(false)).unwrap();
        assert!(r.cpu().is_none() && r.memory().is_none() && r.devices().is_none());
        assert!(r.hugepage_limits().is_none() && r.unified().is_none());
    }

    #[test]
    fn cpu_and_memory() {
        let r = LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            cpuset_cpus: "0-1,3".into(),
            cpuset_mems: "0".into(),
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 128 << 20,
            ..Default::default()
        };
        let out = linux_resources(&r, &host(false)).unwrap();
        let cpu = out.cpu().as_ref().unwrap();
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.cpus().as_deref(), Some("0-1,3"));
        assert_eq!(cpu.mems().as_deref(), Some("0"));
        let mem = out.memory().as_ref().unwrap();
        assert_eq!(mem.limit(), Some(64 << 20));
        assert_eq!(mem.swap(), Some(128 << 20));
    }

    #[test]
    fn invalid_values_name_the_field() {
        let cases: Vec<(LinuxContainerResources, &str)> = vec![
            (
                LinuxContainerResources {
                    cpu_shares: -2,
                    ..Default::default()
                },
                "resources.cpu_shares",
            ),
            (
                LinuxContainerResources {
                    cpu_quota: -5,
                    ..Default::default()
                },
                "resources.cpu_quota",
            ),
            (
                LinuxContainerResources {
                    cpuset_cpus: "0-x".into(),
                    ..Default::default()
                },
                "resources.cpuset_cpus",
            ),
            (
                LinuxContainerResources {
                    memory_limit_in_bytes: 100,
                    memory_swap_limit_in_bytes: 50,
                    ..Default::default()
                },
                "resources.memory_swap_limit_in_bytes",
            ),
            (
                LinuxContainerResources {
                    hugepage_limits: vec![HugepageLimit {
                        page_size: "3MB".into(),
                        limit: 1,
                    }],
                    ..Default::default()
                },
                "resources.hugepage_limits[0].page_size",
            ),
            (
                LinuxContainerResources {
                    unified: [("memory.max".to_string(), "1".to_string())].into(),
                    ..Default::default()
                },
                "resources.unified",
            ),
        ];
        for (r, want) in cases {
            match linux_resources(&r, &host(false)) {
                Err(SpecError::Invalid { field, .. }) => assert_eq!(field, want),
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn hugepages_and_unified_on_v2() {
        let r = LinuxContainerResources {
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 21,
            }],
            unified: [("memory.high".to_string(), "1000000".to_string())].into(),
            ..Default::default()
        };
        let out = linux_resources(&r, &host(true)).unwrap();
        let h = &out.hugepage_limits().as_ref().unwrap()[0];
        assert_eq!((h.page_size().as_str(), h.limit()), ("2MB", 4 << 21));
        assert_eq!(
            out.unified().as_ref().unwrap().get("memory.high").unwrap(),
            "1000000"
        );
        let bad = LinuxContainerResources {
            unified: [("../x".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        assert!(linux_resources(&bad, &host(true)).is_err());
    }

    #[test]
    fn oom_clamped_without_cap_sys_resource() {
        let h = HostInfo {
            current_oom_score_adj: -500,
            has_cap_sys_resource: false,
            ..HostInfo::default()
        };
        let r = |v| LinuxContainerResources {
            oom_score_adj: v,
            ..Default::default()
        };
        assert_eq!(oom_score_adj(&r(-999), &h).unwrap(), -500);
        assert_eq!(oom_score_adj(&r(100), &h).unwrap(), 100);
        let h2 = HostInfo {
            has_cap_sys_resource: true,
            ..h
        };
        assert_eq!(oom_score_adj(&r(-999), &h2).unwrap(), -999);
        assert!(matches!(
            oom_score_adj(&r(1001), &h2),
            Err(SpecError::Invalid { field, .. }) if field == "resources.oom_score_adj"
        ));
    }
}
