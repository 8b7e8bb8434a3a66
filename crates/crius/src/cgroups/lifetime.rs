//! Keeping monitors and pause processes out of the daemon's cgroup.
//!
//! A service manager ends a service by killing every process of its cgroup (systemd's default
//! `KillMode=control-group`); monitors and pause processes spawned by the daemon would inherit that
//! cgroup and die with it, taking every container along. So they start in `crius.monitors`, a cgroup
//! crius creates at the top of each hierarchy that decides a process' service membership: the named
//! `name=systemd` v1 hierarchy and the cgroup v2 hierarchy. Resource hierarchies (memory, cpu, …) are
//! left alone: there the daemon's cgroup limits nothing that matters for survival, and crius never
//! writes into cgroups it did not create.

use std::path::{Path, PathBuf};

/// The cgroup crius creates for its monitors and pause processes.
pub const MONITOR_CGROUP: &str = "crius.monitors";

/// Mount points of the hierarchies that decide service membership, from `/proc/self/mountinfo`.
pub fn membership_hierarchies(mountinfo: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        // `id parent maj:min root mountpoint opts [optional...] - fstype source superopts`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split_whitespace();
        let (fstype, _source, superopts) = (r.next(), r.next(), r.next().unwrap_or(""));
        let Some(mountpoint) = left.split_whitespace().nth(4) else {
            continue;
        };
        let mountpoint = PathBuf::from(mountpoint.replace("\\040", " "));
        let wanted = match fstype {
            Some("cgroup2") => true,
            Some("cgroup") => superopts.split(',').any(|o| o == "name=systemd"),
            _ => false,
        };
        if wanted && !out.contains(&mountpoint) {
            out.push(mountpoint);
        }
    }
    out
}

/// Creates `crius.monitors` in each membership hierarchy mounted on this host and returns the dirs
/// new monitors and pause processes join. A hierarchy where it cannot be made is reported, not fatal:
/// the process then stays in the daemon's cgroup there (the behaviour before).
pub fn setup(mountinfo_path: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let text = match std::fs::read_to_string(mountinfo_path) {
        Ok(t) => t,
        Err(e) => {
            return (
                Vec::new(),
                vec![format!("{}: {e}", mountinfo_path.display())],
            )
        }
    };
    let mut dirs = Vec::new();
    let mut problems = Vec::new();
    for h in membership_hierarchies(&text) {
        let dir = h.join(MONITOR_CGROUP);
        match std::fs::create_dir(&dir) {
            Ok(()) => dirs.push(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => dirs.push(dir),
            Err(e) => problems.push(format!("create cgroup {}: {e}", dir.display())),
        }
    }
    (dirs, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_named_systemd_and_v2_hierarchies_only() {
        let mi = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
40 22 0:5 / /proc rw - proc proc rw
";
        assert_eq!(
            membership_hierarchies(mi),
            vec![
                PathBuf::from("/sys/fs/cgroup/unified"),
                PathBuf::from("/sys/fs/cgroup/systemd")
            ]
        );
        // A pure v2 host.
        let v2 = "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            membership_hierarchies(v2),
            vec![PathBuf::from("/sys/fs/cgroup")]
        );
        // No membership hierarchy at all (resource controllers only): nothing to do.
        let v1 = "35 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert!(membership_hierarchies(v1).is_empty());
    }
}
