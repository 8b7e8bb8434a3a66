//! Pod-level resources: `LinuxPodSandboxConfig.resources`/`overhead` at RunPodSandbox and
//! UpdatePodSandboxResources (KEP-5419, in-place pod-level resize).
//!
//! Who owns the pod cgroup decides what crius does:
//! - The kubelet sets `cgroup_parent` to the pod cgroup it made and resizes it itself before it calls
//!   UpdatePodSandboxResources. crius then records the resources and reports them (verbose
//!   PodSandboxStatus), as containerd 2.3 and CRI-O answer; it never writes into a cgroup it did not create.
//! - A pod with no `cgroup_parent` on a cgroup v1 host gets a pod cgroup made by crius,
//!   `/crius/pod-<pod id>`, with its containers below it. crius writes the pod's resources plus overhead
//!   into it (memory, cpu: `memory.limit_in_bytes`, `cpu.cfs_period_us`, `cpu.cfs_quota_us`,
//!   `cpu.shares`) at RunPodSandbox and on every update, and removes it with the pod. Other resource
//!   fields cannot be applied to such a cgroup and are refused naming the field. Zero fields are left as
//!   they are. On cgroup v2 hosts crius makes no pod cgroup (containers go under `/crius`) and only records.

use std::path::{Path, PathBuf};

use cri_api::v1 as cri;
use prost::Message;

use crate::error::{Error, Result};

use super::{Pod, PodState, SandboxRecord};

/// The cgroup parent crius gives a pod that names none.
pub fn default_parent(pod_id: &str, cgroup_v2: bool) -> String {
    if cgroup_v2 {
        "/crius".to_string()
    } else {
        owned_parent(pod_id)
    }
}

fn owned_parent(pod_id: &str) -> String {
    format!("/crius/pod-{pod_id}")
}

/// Whether the pod's cgroup is one crius created (and so may write into and must remove).
pub fn owns(rec: &SandboxRecord) -> bool {
    rec.cgroup_parent == owned_parent(&rec.id)
}

/// The v1 hierarchies mounted here: (controllers, mount point), from /proc/self/mountinfo.
fn v1_hierarchies() -> Vec<(Vec<String>, PathBuf)> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    info.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut r = right.split(' ');
            if r.next()? != "cgroup" {
                return None;
            }
            let opts = r.nth(1)?;
            let f: Vec<&str> = left.split(' ').collect();
            if f.get(3) != Some(&"/") {
                return None;
            }
            let mp = PathBuf::from(f.get(4)?.replace("\\040", " "));
            Some((opts.split(',').map(str::to_string).collect(), mp))
        })
        .collect()
}

/// Mount points of every cgroup hierarchy, v1 and v2 (a hybrid host's cgroup2 mount gets the pod's
/// level too: runc makes it there for the containers).
fn all_hierarchies() -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    info.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            if !matches!(right.split(' ').next()?, "cgroup" | "cgroup2") {
                return None;
            }
            let f: Vec<&str> = left.split(' ').collect();
            if f.get(3) != Some(&"/") {
                return None;
            }
            Some(PathBuf::from(f.get(4)?.replace("\\040", " ")))
        })
        .collect()
}

fn hierarchy(controller: &str) -> Option<PathBuf> {
    v1_hierarchies()
        .into_iter()
        .find(|(c, _)| c.iter().any(|x| x == controller))
        .map(|(_, p)| p)
}

fn cgroup_dir(controller: &str, parent: &str) -> Result<PathBuf> {
    let base = hierarchy(controller).ok_or_else(|| {
        Error::FailedPrecondition(format!(
            "no cgroup v1 hierarchy with the {controller} controller is mounted"
        ))
    })?;
    Ok(base.join(parent.trim_start_matches('/')))
}

fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let p = dir.join(file);
    std::fs::write(&p, value).map_err(|e| {
        let code = e.raw_os_error();
        let msg = format!("write {value} to {}: {e}", p.display());
        // EINVAL/EBUSY: the kernel refuses the value (below current usage, above a parent's quota).
        if matches!(code, Some(libc::EINVAL) | Some(libc::EBUSY)) {
            Error::invalid("resources", msg)
        } else {
            Error::Internal(msg)
        }
    })
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Refuses fields a crius-made v1 pod cgroup cannot take, naming them.
fn check_applicable(res: &cri::LinuxContainerResources, what: &str) -> Result<()> {
    let refuse = |f: &str| {
        Err(Error::unimplemented(
            format!("{what}.{f}"),
            "crius applies only cpu_period, cpu_quota, cpu_shares and memory_limit_in_bytes to the pod cgroup it owns",
        ))
    };
    if !res.cpuset_cpus.is_empty() {
        return refuse("cpuset_cpus");
    }
    if !res.cpuset_mems.is_empty() {
        return refuse("cpuset_mems");
    }
    if !res.hugepage_limits.is_empty() {
        return refuse("hugepage_limits");
    }
    if !res.unified.is_empty() {
        return refuse("unified");
    }
    if res.memory_swap_limit_in_bytes != 0 {
        return refuse("memory_swap_limit_in_bytes");
    }
    if res.oom_score_adj != 0 {
        return refuse("oom_score_adj");
    }
    Ok(())
}

/// Writes resources + overhead into the crius-made pod cgroup (v1), creating it where a value is to be
/// written (runc makes the other levels when the first container starts).
fn apply(
    parent: &str,
    res: &cri::LinuxContainerResources,
    overhead: &cri::LinuxContainerResources,
) -> Result<()> {
    check_applicable(res, "resources")?;
    check_applicable(overhead, "overhead")?;
    let mut cpu_writes: Vec<(&str, String)> = Vec::new();
    if res.cpu_period > 0 {
        cpu_writes.push(("cpu.cfs_period_us", res.cpu_period.to_string()));
    }
    if res.cpu_quota > 0 {
        let q = res.cpu_quota + overhead.cpu_quota.max(0);
        cpu_writes.push(("cpu.cfs_quota_us", q.to_string()));
    } else if res.cpu_quota < 0 {
        cpu_writes.push(("cpu.cfs_quota_us", "-1".into()));
    }
    if res.cpu_shares > 0 {
        let s = res.cpu_shares + overhead.cpu_shares.max(0);
        cpu_writes.push(("cpu.shares", s.to_string()));
    }
    let mut mem_writes: Vec<(&str, String)> = Vec::new();
    if res.memory_limit_in_bytes > 0 {
        let m = res.memory_limit_in_bytes + overhead.memory_limit_in_bytes.max(0);
        mem_writes.push(("memory.limit_in_bytes", m.to_string()));
    }
    for (controller, writes) in [("cpu", cpu_writes), ("memory", mem_writes)] {
        if writes.is_empty() {
            continue;
        }
        let dir = cgroup_dir(controller, parent)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| crate::error::io_err("create pod cgroup", &dir, e))?;
        for (file, value) in writes {
            write(&dir, file, &value)?;
        }
    }
    Ok(())
}

/// Removes the crius-made pod cgroup from every hierarchy (runc makes the levels of controllers crius
/// does not write, and the cgroup2 level of a hybrid host), leaf first. Only empty cgroups can go; a
/// busy one is left with a warning.
fn remove(parent: &str) {
    for mp in all_hierarchies() {
        let dir = mp.join(parent.trim_start_matches('/'));
        if !dir.is_dir() {
            continue;
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        if let Err(e) = std::fs::remove_dir(&dir) {
            tracing::warn!("removing pod cgroup {}: {e}", dir.display());
        }
    }
}

/// Controllers of the v1 resource hierarchies a pause joins its pod's cgroup in.
const RESOURCE_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "memory",
    "pids",
    "blkio",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "perf_event",
    "hugetlb",
    "cpuset",
    "rdma",
    "misc",
];

/// Where the pause of a pod whose cgroup crius owns (cgroup v1, no `cgroup_parent`) goes: the pod's
/// cgroup `/crius/pod-<id>` in every v1 resource hierarchy, made here where missing (crius owns every
/// level it makes; it never writes into a cgroup it did not create), so the pause is accounted and
/// limited with its pod. A new cpuset level takes its parent's cpus and mems (an empty cpuset accepts
/// no task). Below a `cgroup_parent` the kubelet made: a child of it, see [`pause_child_cgroups`].
/// Empty on cgroup v2 hosts and with the systemd driver (crius' own scope there). Blocking.
pub(super) fn pause_cgroups(rec: &SandboxRecord) -> Result<Vec<PathBuf>> {
    if !owns(rec) {
        return pause_child_cgroups(rec);
    }
    let mut out = Vec::new();
    for (opts, mp) in v1_hierarchies() {
        if !opts
            .iter()
            .any(|o| RESOURCE_CONTROLLERS.contains(&o.as_str()))
        {
            continue;
        }
        let cpuset = opts.iter().any(|o| o == "cpuset");
        let mut dir = mp.clone();
        for comp in rec.cgroup_parent.trim_start_matches('/').split('/') {
            let parent = dir.clone();
            dir.push(comp);
            match std::fs::create_dir(&dir) {
                Ok(()) if cpuset => {
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let v = read(&parent, f).unwrap_or_default();
                        write(&dir, f, &v)?;
                    }
                }
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(crate::error::io_err("create pod cgroup", &dir, e)),
            }
        }
        out.push(dir);
    }
    Ok(out)
}

fn pod_resources(
    cfg: &cri::PodSandboxConfig,
) -> (cri::LinuxContainerResources, cri::LinuxContainerResources) {
    let l = cfg.linux.clone().unwrap_or_default();
    (
        l.resources.unwrap_or_default(),
        l.overhead.unwrap_or_default(),
    )
}

/// RunPodSandbox: makes and sizes the pod cgroup when crius owns it. Blocking (cgroupfs writes).
pub(super) fn create(rec: &SandboxRecord, cfg: &cri::PodSandboxConfig) -> Result<()> {
    if !owns(rec) {
        return Ok(());
    }
    let (res, overhead) = pod_resources(cfg);
    apply(&rec.cgroup_parent, &res, &overhead).map_err(|e| prefix_fields(e, "config.linux"))
}

fn prefix_fields(e: Error, p: &str) -> Error {
    match e {
        Error::InvalidArgument { field, reason } => Error::InvalidArgument {
            field: format!("{p}.{field}"),
            reason,
        },
        Error::Unimplemented { what, reason } => Error::Unimplemented {
            what: format!("{p}.{what}"),
            reason,
        },
        other => other,
    }
}

/// The cgroup crius makes for a pod's pause below a `cgroup_parent` it did not make (the kubelet's
/// pod cgroup, cgroupfs style), as the runtime does for each container: `<parent>/crius-pause-<id>`.
fn pause_child(cgroup_parent: &str, pod_id: &str) -> Option<String> {
    let parent = cgroup_parent.trim_end_matches('/');
    // Slice names (systemd driver) are no paths: the pause stays in crius' own scope there.
    if !parent.starts_with('/') || parent.split('/').any(|c| c == "..") {
        return None;
    }
    Some(format!("{parent}/crius-pause-{pod_id}"))
}

/// A pause below a `cgroup_parent` the kubelet made (cgroup v1): joins `<parent>/crius-pause-<id>`,
/// made here, in every v1 resource hierarchy where the parent exists. Nothing is written into the
/// parent itself; the child (a new cpuset level takes the parent's cpus and mems) is crius' own and
/// goes with the pod ([`release`]). Blocking.
fn pause_child_cgroups(rec: &SandboxRecord) -> Result<Vec<PathBuf>> {
    let Some(child) = pause_child(&rec.cgroup_parent, &rec.id) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (opts, mp) in v1_hierarchies() {
        if !opts
            .iter()
            .any(|o| RESOURCE_CONTROLLERS.contains(&o.as_str()))
        {
            continue;
        }
        let parent = mp.join(rec.cgroup_parent.trim_start_matches('/'));
        if !parent.is_dir() {
            continue;
        }
        let dir = mp.join(child.trim_start_matches('/'));
        match std::fs::create_dir(&dir) {
            Ok(()) if opts.iter().any(|o| o == "cpuset") => {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let v = read(&parent, f).unwrap_or_default();
                    write(&dir, f, &v)?;
                }
            }
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(crate::error::io_err("create pause cgroup", &dir, e)),
        }
        out.push(dir);
    }
    Ok(out)
}

/// RemovePodSandbox (and undoing a failed run): removes the pod cgroup crius made, or the pause's
/// cgroup crius made below the kubelet's.
pub(super) fn release(rec: &SandboxRecord) {
    if owns(rec) {
        remove(&rec.cgroup_parent);
    } else if let Some(child) = pause_child(&rec.cgroup_parent, &rec.id) {
        for mp in all_hierarchies() {
            let dir = mp.join(child.trim_start_matches('/'));
            if dir.is_dir() {
                if let Err(e) = std::fs::remove_dir(&dir) {
                    tracing::warn!("removing pause cgroup {}: {e}", dir.display());
                }
            }
        }
    }
}

fn resources_json(r: &cri::LinuxContainerResources) -> serde_json::Value {
    serde_json::json!({
        "cpu_period": r.cpu_period,
        "cpu_quota": r.cpu_quota,
        "cpu_shares": r.cpu_shares,
        "memory_limit_in_bytes": r.memory_limit_in_bytes,
        "oom_score_adj": r.oom_score_adj,
        "cpuset_cpus": r.cpuset_cpus,
        "cpuset_mems": r.cpuset_mems,
        "hugepage_limits": r.hugepage_limits.iter().map(|h| serde_json::json!({"page_size": h.page_size, "limit": h.limit})).collect::<Vec<_>>(),
        "unified": r.unified,
        "memory_swap_limit_in_bytes": r.memory_swap_limit_in_bytes,
    })
}

/// The pod's resources as recorded (the last update, else the RunPodSandbox config) and, where crius
/// owns the pod cgroup, what that cgroup holds now. For verbose PodSandboxStatus.
pub fn report(rec: &SandboxRecord) -> serde_json::Value {
    let (mut res, mut overhead) = pod_resources(&rec.config());
    if let Some(r) = decode(&rec.resources) {
        res = r;
    }
    if let Some(o) = decode(&rec.overhead) {
        overhead = o;
    }
    let cgroup = if owns(rec) {
        let mem = cgroup_dir("memory", &rec.cgroup_parent).ok();
        let cpu = cgroup_dir("cpu", &rec.cgroup_parent).ok();
        let get = |d: &Option<PathBuf>, f: &str| d.as_ref().and_then(|d| read(d, f));
        serde_json::json!({
            "owner": "crius",
            "path": rec.cgroup_parent,
            "memory.limit_in_bytes": get(&mem, "memory.limit_in_bytes"),
            "cpu.cfs_period_us": get(&cpu, "cpu.cfs_period_us"),
            "cpu.cfs_quota_us": get(&cpu, "cpu.cfs_quota_us"),
            "cpu.shares": get(&cpu, "cpu.shares"),
        })
    } else {
        serde_json::json!({"owner": "kubelet", "path": rec.cgroup_parent})
    };
    serde_json::json!({
        "resources": resources_json(&res),
        "overhead": resources_json(&overhead),
        "cgroup": cgroup,
    })
}

fn decode(b: &[u8]) -> Option<cri::LinuxContainerResources> {
    if b.is_empty() {
        return None;
    }
    cri::LinuxContainerResources::decode(b).ok()
}

impl super::Pods {
    /// UpdatePodSandboxResources: validates, applies to the pod cgroup if crius owns it, records.
    pub async fn update_pod_resources(
        &self,
        id: &str,
        overhead: Option<cri::LinuxContainerResources>,
        resources: Option<cri::LinuxContainerResources>,
    ) -> Result<()> {
        let pod: std::sync::Arc<Pod> = self.pod(id)?;
        let _g = pod.op.lock().await;
        let rec = pod.record();
        if rec.state != PodState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod {} is not ready (state {:?})",
                pod.id, rec.state
            )));
        }
        let (cur_res, cur_over) = pod_resources(&rec.config());
        let res = resources
            .or_else(|| decode(&rec.resources))
            .unwrap_or(cur_res);
        let over = overhead
            .or_else(|| decode(&rec.overhead))
            .unwrap_or(cur_over);
        for (what, r) in [("resources", &res), ("overhead", &over)] {
            crius_spec::linux_resources(r, &self.host).map_err(|e| match e {
                crius_spec::SpecError::Invalid { field, reason } => {
                    Error::invalid(format!("{what}.{field}"), reason)
                }
                crius_spec::SpecError::Unsupported { field, reason } => {
                    Error::unimplemented(format!("{what}.{field}"), reason)
                }
                other => Error::invalid(what, other.to_string()),
            })?;
        }
        if owns(&rec) {
            let (parent, r, o) = (rec.cgroup_parent.clone(), res.clone(), over.clone());
            tokio::task::spawn_blocking(move || apply(&parent, &r, &o))
                .await
                .map_err(|e| Error::internal("pod cgroup task", e))??;
        }
        pod.update(self, |r| {
            r.resources = res.encode_to_vec();
            r.overhead = over.encode_to_vec();
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pods_own_parent_is_owned() {
        assert_eq!(default_parent("abc", true), "/crius");
        assert_eq!(default_parent("abc", false), "/crius/pod-abc");
    }

    #[test]
    fn a_pause_below_the_kubelets_parent_gets_its_own_child() {
        assert_eq!(
            pause_child("/kubepods/burstable/pod12/", "abc").as_deref(),
            Some("/kubepods/burstable/pod12/crius-pause-abc")
        );
        // systemd slices and anything climbing out are not paths crius makes a child in.
        assert_eq!(pause_child("kubepods-burstable-pod12.slice", "abc"), None);
        assert_eq!(pause_child("/kubepods/../etc", "abc"), None);
        assert_eq!(pause_child("", "abc"), None);
    }

    #[test]
    fn fields_crius_cannot_apply_are_named() {
        let r = cri::LinuxContainerResources {
            cpuset_cpus: "0".into(),
            ..Default::default()
        };
        let e = check_applicable(&r, "resources").unwrap_err().to_string();
        assert!(e.contains("resources.cpuset_cpus"), "{e}");
        check_applicable(
            &cri::LinuxContainerResources {
                cpu_quota: 5000,
                memory_limit_in_bytes: 1 << 20,
                ..Default::default()
            },
            "resources",
        )
        .unwrap();
    }
}
