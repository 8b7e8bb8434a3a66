//! Keeping a container's init inside its own unit on cgroup v1 hosts run by systemd.
//!
//! Seen with Debian 12's systemd 252 and runc 1.1.5 on a v1 host (crates/crius/tests/systemd_node.rs):
//! when a container's scope is the first unit under the pod slices that needs the devices controller
//! (the first container after none ran), systemd realizes the slices only after runc has joined the
//! container's init to the scope's cgroups, and migrates it into the pod slice's devices cgroup. The
//! container then escapes its scope's device rules (the slice allows every device), and `runc kill
//! --all`, which lists a container's processes from its devices cgroup, finds none: StopContainer
//! hangs. Before `runtime start` lets the container's process run, crius checks where its init sits
//! in every mounted hierarchy and moves it back into the scope where it drifted.

use std::path::{Path, PathBuf};

/// A mounted cgroup hierarchy: its controllers (`name=systemd` for the named one; none for v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub controllers: Vec<String>,
    pub mountpoint: PathBuf,
}

/// The cgroup hierarchies mounted under `/sys/fs/cgroup`, from `/proc/self/mountinfo`.
pub fn hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut l = left.split_whitespace();
        let (root, mountpoint) = (l.nth(3), l.next());
        let (Some("/"), Some(mountpoint)) = (root, mountpoint) else {
            continue;
        };
        if !mountpoint.starts_with("/sys/fs/cgroup") {
            continue;
        }
        let mut r = right.split_whitespace();
        let (fstype, _source, superopts) = (r.next(), r.next(), r.next().unwrap_or(""));
        let controllers = match fstype {
            Some("cgroup2") => Vec::new(),
            Some("cgroup") => superopts
                .split(',')
                .filter(|o| {
                    !matches!(
                        *o,
                        "rw" | "ro" | "none" | "xattr" | "noprefix" | "clone_children"
                    ) && !o.starts_with("release_agent=")
                })
                .map(str::to_string)
                .collect(),
            _ => continue,
        };
        out.push(Hierarchy {
            controllers,
            mountpoint: PathBuf::from(mountpoint),
        });
    }
    out
}

/// The cgroup dirs (`<mountpoint>/<want>`) a process whose `/proc/<pid>/cgroup` is `proc_cgroup` must
/// join to sit in `want` (relative to each hierarchy's root) everywhere; hierarchies not mounted here
/// are left alone.
pub fn misplaced(proc_cgroup: &str, want: &Path, hs: &[Hierarchy]) -> Vec<PathBuf> {
    let rel = want.strip_prefix("/").unwrap_or(want);
    let mut out = Vec::new();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let h = if ctrls.is_empty() {
            hs.iter().find(|h| h.controllers.is_empty())
        } else {
            let first = ctrls.split(',').next().unwrap_or(ctrls);
            hs.iter().find(|h| h.controllers.iter().any(|c| c == first))
        };
        let Some(h) = h else { continue };
        if Path::new(path) != want {
            let dir = h.mountpoint.join(rel);
            if !out.contains(&dir) {
                out.push(dir);
            }
        }
    }
    out
}

/// Moves `pid` back into `want` where it drifted; only into cgroups that exist (made by the runtime
/// or systemd), never creating any. Returns the cgroups it joined.
pub fn restore(pid: i32, want: &Path) -> Result<Vec<PathBuf>, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let proc_cgroup = format!("/proc/{pid}/cgroup");
    let current =
        std::fs::read_to_string(&proc_cgroup).map_err(|e| format!("{proc_cgroup}: {e}"))?;
    let mut joined = Vec::new();
    for dir in misplaced(&current, want, &hierarchies(&mountinfo)) {
        if !dir.is_dir() {
            continue;
        }
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .map_err(|e| format!("move pid {pid} into {}: {e}", procs.display()))?;
        joined.push(dir);
    }
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:39 / /tmp/elsewhere/hugetlb rw - cgroup cgroup rw,hugetlb
51 23 0:35 /sub /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
";

    #[test]
    fn reads_the_hierarchies_under_sys_fs_cgroup() {
        let hs = hierarchies(MOUNTINFO);
        let names: Vec<_> = hs.iter().map(|h| h.controllers.join(",")).collect();
        // hugetlb is mounted elsewhere and pids is a bind of a sub-cgroup: neither is a hierarchy root.
        assert_eq!(
            names,
            ["cpu,cpuacct", "memory", "devices", "name=systemd", ""]
        );
        assert_eq!(hs[4].mountpoint, PathBuf::from("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn finds_the_hierarchies_where_the_process_drifted() {
        let scope = "/kubepods.slice/kubepods-pod1.slice/crius-a.scope";
        let slice = "/kubepods.slice/kubepods-pod1.slice";
        let cg = format!(
            "12:hugetlb:/\n4:cpu,cpuacct:{scope}\n3:memory:{scope}\n2:devices:{slice}\n\
             1:name=systemd:{scope}\n0::{scope}\n"
        );
        assert_eq!(
            misplaced(&cg, Path::new(scope), &hierarchies(MOUNTINFO)),
            vec![PathBuf::from(format!("/sys/fs/cgroup/devices{scope}"))]
        );
        let v2_drift = format!("3:memory:{scope}\n0::{slice}\n");
        assert_eq!(
            misplaced(&v2_drift, Path::new(scope), &hierarchies(MOUNTINFO)),
            vec![PathBuf::from(format!("/sys/fs/cgroup/unified{scope}"))]
        );
        let placed = format!("3:memory:{scope}\n2:devices:{scope}\n0::{scope}\n");
        assert!(misplaced(&placed, Path::new(scope), &hierarchies(MOUNTINFO)).is_empty());
    }
}
