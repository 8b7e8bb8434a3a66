//! Device nodes and the device cgroup: the default allow list, CRI `devices`, and all host
//! devices for privileged containers.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use cri_api::v1::Device;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use crate::SpecError;

fn rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(typ);
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

/// Deny everything, then allow the nodes every container needs (the runtime creates the
/// standard nodes itself; the rules make them usable).
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let c = Some(LinuxDeviceType::C);
    vec![
        rule(false, None, None, None, "rwm"),
        rule(true, c, Some(1), Some(3), "rwm"), // null
        rule(true, c, Some(1), Some(5), "rwm"), // zero
        rule(true, c, Some(1), Some(7), "rwm"), // full
        rule(true, c, Some(1), Some(8), "rwm"), // random
        rule(true, c, Some(1), Some(9), "rwm"), // urandom
        rule(true, c, Some(5), Some(0), "rwm"), // tty
        rule(true, c, Some(5), Some(2), "rwm"), // ptmx
        rule(true, c, Some(136), None, "rwm"),  // pts/*
    ]
}

/// Privileged containers may use every device.
pub fn allow_all_rule() -> Vec<LinuxDeviceCgroup> {
    vec![rule(true, None, None, None, "rwm")]
}

fn device_from_meta(path: &Path, meta: &std::fs::Metadata) -> Option<LinuxDevice> {
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    let rdev = meta.rdev();
    let mut d = LinuxDevice::default();
    d.set_path(path.to_path_buf());
    d.set_typ(typ);
    d.set_major(libc::major(rdev) as i64);
    d.set_minor(libc::minor(rdev) as i64);
    d.set_file_mode(Some(meta.mode() & 0o777));
    d.set_uid(Some(meta.uid()));
    d.set_gid(Some(meta.gid()));
    Some(d)
}

fn allow_device(d: &LinuxDevice, access: &str) -> LinuxDeviceCgroup {
    rule(
        true,
        Some(d.typ()),
        Some(d.major()),
        Some(d.minor()),
        access,
    )
}

/// CRI `devices[i]`: the host path must be a device node, or a directory whose device nodes
/// are all added below the container path (as containerd does for e.g. `/dev/snd`).
/// Permissions are a subset of `rwm`; empty means `rwm`.
pub fn cri_devices(
    devices: &[Device],
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    let mut nodes = Vec::new();
    let mut rules = Vec::new();
    for (i, dev) in devices.iter().enumerate() {
        let field = |f: &str| format!("devices[{i}].{f}");
        let access = if dev.permissions.is_empty() {
            "rwm".to_string()
        } else {
            dev.permissions.clone()
        };
        if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(SpecError::invalid(
                field("permissions"),
                format!("{:?} is not a subset of \"rwm\"", dev.permissions),
            ));
        }
        let host = Path::new(&dev.host_path);
        if !host.is_absolute() {
            return Err(SpecError::invalid(
                field("host_path"),
                format!("{:?} must be absolute", dev.host_path),
            ));
        }
        let container = if dev.container_path.is_empty() {
            host.to_path_buf()
        } else {
            PathBuf::from(&dev.container_path)
        };
        if !container.is_absolute() {
            return Err(SpecError::invalid(
                field("container_path"),
                format!("{:?} must be absolute", dev.container_path),
            ));
        }
        let meta = std::fs::metadata(host).map_err(|e| {
            SpecError::invalid(field("host_path"), format!("{}: {e}", dev.host_path))
        })?;
        if meta.is_dir() {
            let found = walk_devices(host).map_err(|e| {
                SpecError::invalid(field("host_path"), format!("{}: {e}", dev.host_path))
            })?;
            for mut d in found {
                let rel = d
                    .path()
                    .strip_prefix(host)
                    .unwrap_or(d.path())
                    .to_path_buf();
                d.set_path(container.join(rel));
                rules.push(allow_device(&d, &access));
                nodes.push(d);
            }
            continue;
        }
        let mut d = device_from_meta(&container, &meta).ok_or_else(|| {
            SpecError::invalid(
                field("host_path"),
                format!("{} is not a device node", dev.host_path),
            )
        })?;
        d.set_path(container);
        rules.push(allow_device(&d, &access));
        nodes.push(d);
    }
    Ok((nodes, rules))
}

// Subtrees that are per-container or not devices at all.
const SKIP_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// Every char/block device under `root` (not following symlinks), skipping `/dev/pts`-like
/// subtrees and the console. Used for privileged containers with `root = /dev`.
pub fn walk_devices(root: &Path) -> std::io::Result<Vec<LinuxDevice>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // A subdirectory that vanished or is unreadable must not fail the whole walk.
            Err(_) if dir != root => continue,
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                let name = entry.file_name();
                if !SKIP_DIRS.iter().any(|s| name == *s) {
                    stack.push(path);
                }
                continue;
            }
            if path == Path::new("/dev/console") {
                continue;
            }
            if let Some(d) = device_from_meta(&path, &meta) {
                out.push(d);
            }
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(out)
}

/// All host devices for a privileged container.
pub fn host_devices() -> Result<Vec<LinuxDevice>, SpecError> {
    walk_devices(Path::new("/dev")).map_err(|source| SpecError::Io {
        path: "/dev".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(host: &str, container: &str, perms: &str) -> Device {
        Device {
            host_path: host.into(),
            container_path: container.into(),
            permissions: perms.into(),
        }
    }

    #[test]
    fn default_rules_deny_then_allow() {
        let r = default_device_rules();
        assert!(!r[0].allow());
        assert_eq!(r[0].access().as_deref(), Some("rwm"));
        assert!(r[1..].iter().all(|x| x.allow()));
        assert!(r
            .iter()
            .any(|x| x.major() == Some(136) && x.minor().is_none()));
    }

    #[test]
    fn a_real_device() {
        let (nodes, rules) = cri_devices(&[dev("/dev/null", "/dev/mynull", "rw")]).unwrap();
        assert_eq!(nodes[0].path(), Path::new("/dev/mynull"));
        assert_eq!((nodes[0].major(), nodes[0].minor()), (1, 3));
        assert_eq!(nodes[0].typ(), LinuxDeviceType::C);
        assert_eq!(rules[0].access().as_deref(), Some("rw"));
        assert_eq!(rules[0].major(), Some(1));
        // Empty container path and permissions default to the host path and rwm.
        let (nodes, rules) = cri_devices(&[dev("/dev/zero", "", "")]).unwrap();
        assert_eq!(nodes[0].path(), Path::new("/dev/zero"));
        assert_eq!(rules[0].access().as_deref(), Some("rwm"));
    }

    #[test]
    fn missing_or_non_device_is_invalid() {
        let err = cri_devices(&[
            dev("/dev/null", "/a", "rw"),
            dev("/dev/nope-crius", "/b", "rw"),
        ])
        .unwrap_err();
        assert_eq!(err.field(), Some("devices[1].host_path"));
        let err = cri_devices(&[dev("/etc/hostname", "/b", "rw")]).unwrap_err();
        assert_eq!(err.field(), Some("devices[0].host_path"));
        let err = cri_devices(&[dev("/dev/null", "/b", "rwx")]).unwrap_err();
        assert_eq!(err.field(), Some("devices[0].permissions"));
        let err = cri_devices(&[dev("/dev/null", "b", "r")]).unwrap_err();
        assert_eq!(err.field(), Some("devices[0].container_path"));
    }

    #[test]
    fn host_devices_include_null_not_pts() {
        let all = host_devices().unwrap();
        assert!(all.iter().any(|d| d.path() == Path::new("/dev/null")));
        assert!(!all.iter().any(|d| d.path().starts_with("/dev/pts")));
    }
}
