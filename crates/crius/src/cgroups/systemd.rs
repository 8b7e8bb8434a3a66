//! The cgroup driver: `cgroupfs` (crius names cgroup paths) or `systemd` (systemd owns the tree; the
//! kubelet sends slice names such as `kubepods-burstable-pod<uid>.slice`, containers become scopes
//! `crius-<id>.scope` in them, and the OCI runtime runs with `--systemd-cgroup` and gets
//! `linux.cgroupsPath = "<slice>:crius:<id>"`).
//!
//! Pure mapping, unit-tested; the daemon applies it to the spec, the handlers' flags, stats and the
//! RuntimeConfig answer.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `cgroup_driver` in the config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverChoice {
    /// systemd when systemd is PID 1, else cgroupfs.
    #[default]
    Auto,
    Systemd,
    Cgroupfs,
}

/// The driver in effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    Systemd,
    Cgroupfs,
}

/// The prefix of container scopes (`crius-<id>.scope`), as runc's `slice:prefix:name`.
pub const SCOPE_PREFIX: &str = "crius";

/// Resolves `auto` from the name of PID 1 (`/proc/1/comm`).
pub fn resolve(choice: DriverChoice, pid1_comm: Option<&str>) -> Driver {
    match choice {
        DriverChoice::Systemd => Driver::Systemd,
        DriverChoice::Cgroupfs => Driver::Cgroupfs,
        DriverChoice::Auto if pid1_comm.map(str::trim) == Some("systemd") => Driver::Systemd,
        DriverChoice::Auto => Driver::Cgroupfs,
    }
}

/// The driver on this host.
pub fn detect(choice: DriverChoice) -> Driver {
    let comm = std::fs::read_to_string("/proc/1/comm").ok();
    resolve(choice, comm.as_deref())
}

/// systemd's slice path: `a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`; `-.slice` is the root.
pub fn expand_slice(slice: &str) -> Result<PathBuf, String> {
    let name = slice
        .strip_suffix(".slice")
        .ok_or_else(|| format!("{slice:?} is not a slice name (<name>.slice)"))?;
    if name == "-" {
        return Ok(PathBuf::from("/"));
    }
    if name.is_empty() || name.contains('/') || name.starts_with('-') || name.ends_with('-') {
        return Err(format!("{slice:?} is not a valid slice name"));
    }
    let mut path = PathBuf::from("/");
    let mut prefix = String::new();
    for part in name.split('-') {
        if part.is_empty() {
            return Err(format!("{slice:?} has an empty component"));
        }
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Ok(path)
}

/// The OCI `linux.cgroupsPath` of container (or sandbox) `id` under the pod's `cgroup_parent`.
/// An empty parent is `system.slice`, runc's default.
pub fn cgroups_path(parent: &str, id: &str) -> Result<String, String> {
    let slice = if parent.is_empty() {
        "system.slice"
    } else {
        parent
    };
    expand_slice(slice).map_err(|e| {
        format!("with the systemd cgroup driver, cgroup_parent must be a slice name: {e}")
    })?;
    Ok(format!("{slice}:{SCOPE_PREFIX}:{id}"))
}

/// Where a `linux.cgroupsPath` lives in the cgroup filesystem, relative to a hierarchy's root:
/// `slice:prefix:name` → `<expanded slice>/<prefix>-<name>.scope`; a cgroupfs path is itself.
pub fn fs_path(cgroups_path: &str) -> PathBuf {
    let parts: Vec<&str> = cgroups_path.split(':').collect();
    if let [slice, prefix, name] = parts[..] {
        let slice = if slice.is_empty() {
            "system.slice"
        } else {
            slice
        };
        if let Ok(dir) = expand_slice(slice) {
            let unit = if name.ends_with(".slice") {
                name.to_string()
            } else if prefix.is_empty() {
                format!("{name}.scope")
            } else {
                format!("{prefix}-{name}.scope")
            };
            return dir.join(unit);
        }
    }
    PathBuf::from(cgroups_path)
}

/// A pod's cgroup parent as a path: slices expanded, cgroupfs paths unchanged.
pub fn parent_fs_path(parent: &str) -> PathBuf {
    if parent.ends_with(".slice") {
        expand_slice(parent).unwrap_or_else(|_| PathBuf::from(parent))
    } else {
        PathBuf::from(parent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_pid_1() {
        assert_eq!(
            resolve(DriverChoice::Auto, Some("systemd\n")),
            Driver::Systemd
        );
        assert_eq!(resolve(DriverChoice::Auto, Some("init")), Driver::Cgroupfs);
        assert_eq!(resolve(DriverChoice::Auto, None), Driver::Cgroupfs);
        assert_eq!(
            resolve(DriverChoice::Systemd, Some("init")),
            Driver::Systemd
        );
        assert_eq!(
            resolve(DriverChoice::Cgroupfs, Some("systemd")),
            Driver::Cgroupfs
        );
    }

    #[test]
    fn slices_expand_like_systemd() {
        assert_eq!(
            expand_slice("kubepods-burstable-pod1234_5678.slice").unwrap(),
            PathBuf::from(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice"
            )
        );
        assert_eq!(
            expand_slice("system.slice").unwrap(),
            PathBuf::from("/system.slice")
        );
        assert_eq!(expand_slice("-.slice").unwrap(), PathBuf::from("/"));
        for bad in [
            "kubepods",
            "/kubepods.slice",
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            ".slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn container_paths_are_scopes_in_the_pod_slice() {
        let p = cgroups_path("kubepods-besteffort-podabc.slice", "0123").unwrap();
        assert_eq!(p, "kubepods-besteffort-podabc.slice:crius:0123");
        assert_eq!(
            fs_path(&p),
            PathBuf::from(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podabc.slice/crius-0123.scope"
            )
        );
        assert_eq!(cgroups_path("", "x").unwrap(), "system.slice:crius:x");
        let err = cgroups_path("/kubepods/burstable/podabc", "x").unwrap_err();
        assert!(err.contains("slice"), "{err}");
        // cgroupfs paths pass through.
        assert_eq!(
            fs_path("/crius-e2e/crius-1"),
            PathBuf::from("/crius-e2e/crius-1")
        );
        assert_eq!(
            parent_fs_path("kubepods-pod1.slice"),
            PathBuf::from("/kubepods.slice/kubepods-pod1.slice")
        );
        assert_eq!(
            parent_fs_path("/kubepods/pod1"),
            PathBuf::from("/kubepods/pod1")
        );
    }
}
