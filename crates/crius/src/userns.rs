//! Pod user namespaces on handlers that cannot make idmapped mounts themselves.
//!
//! The pod's user namespace is created together with its network, IPC and UTS namespaces (so it owns
//! them: namespaced sysctls and capabilities work inside) and pinned like them; every container joins
//! it by path, with the pod's mappings in `linux.uidMappings`/`gidMappings`. crius makes the mounts
//! that need an idmapping host-side (see [`crate::idmap`]): the rootfs overlay gets idmapped copies of
//! the image layers as its lower dirs and an upper dir owned by the pod's root; volumes that carry
//! `uidMappings`/`gidMappings` are bound from idmapped copies. The pod's /etc/hosts, resolv.conf,
//! hostname and /dev/shm are owned by the pod's root.
//!
//! Whether a handler can run such a container is proven once at start by a trial container
//! ([`trial`]); only then is `RuntimeHandlerFeatures.user_namespaces` reported true for it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crius_spec::{IdMap, PodUserns};

use crate::error::{io_err, Error, Result};
use crate::idmap;

/// Host ids the trial container's user namespace maps (container 0.. → these); nothing on disk is
/// owned by them.
const TRIAL_HOST_ID: u32 = 0x7000_0000;
const TRIAL_LEN: u32 = 65536;

/// Pins a userns pod's namespaces under `dir`: `user` and those of `want` ("net", "ipc", "uts").
pub fn pin_pod(
    dir: &Path,
    map: &PodUserns,
    want: &[&str],
    hostname: &str,
) -> Result<Vec<(String, PathBuf)>> {
    idmap::pin_with_userns(dir, &map.uids, &map.gids, want, hostname).map_err(|e| {
        Error::Internal(format!(
            "pod dir {}: pinning a user namespace: {e}",
            dir.display()
        ))
    })
}

/// Makes the pod's files (hosts, resolv.conf, hostname, the shm tmpfs root) the pod root's, so
/// the pod can use them as a pod without a user namespace would.
pub fn chown_pod_files(map: &PodUserns, files: &[&Path]) -> Result<()> {
    let (uid, gid) = map.root();
    for f in files {
        std::os::unix::fs::chown(f, Some(uid), Some(gid))
            .map_err(|e| io_err("chown to the pod's root", f, e))?;
    }
    Ok(())
}

/// The container's root needs to reach its rootfs and bind sources through the state dir: every
/// directory from `/` to `dir` must be searchable by others. crius makes its own dirs (`state`,
/// `state/<sub>`) so; an ancestor that is not is an error naming it.
pub fn ensure_traversable(state: &Path, dir: &Path) -> Result<()> {
    let mut p = PathBuf::new();
    for c in dir.components() {
        p.push(c);
        let meta = std::fs::metadata(&p).map_err(|e| io_err("stat", &p, e))?;
        let mode = meta.permissions().mode();
        if mode & 0o001 != 0 {
            continue;
        }
        if p.starts_with(state) {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode((mode & 0o7777) | 0o011))
                .map_err(|e| io_err("make searchable for user-namespaced containers", &p, e))?;
        } else {
            return Err(Error::FailedPrecondition(format!(
                "{} (mode {:o}) is not searchable by others: a container in a user namespace \
                 cannot reach its rootfs under {}",
                p.display(),
                mode & 0o7777,
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Runs a container in a pinned user namespace on handler `h`, as a pod's container would run: the
/// namespaces joined by path with their mappings, the host's /usr etc. bound through idmapped copies,
/// and an idmapped writable dir the container writes its `/proc/self/uid_map` into. Passes when the
/// file holds the trial mapping and is owned by host root on disk (the idmapping took effect).
pub async fn trial(
    h: &crius_oci::Handler,
    native: idmap::Native,
) -> std::result::Result<(), String> {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("crius-userns-probe-{}-", std::process::id()))
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let dir = tmp.path().to_path_buf();
    let res = trial_in(h, native, &dir).await;
    // Nothing may stay mounted below the dir before it is removed (recursively).
    release_below(&dir);
    drop(tmp);
    res
}

fn release_below(dir: &Path) {
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        let mut below: Vec<PathBuf> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|p| p.starts_with(dir))
            .collect();
        below.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in below {
            let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

async fn trial_in(
    h: &crius_oci::Handler,
    native: idmap::Native,
    dir: &Path,
) -> std::result::Result<(), String> {
    let e = |what: &str, p: &Path, err: std::io::Error| format!("{what} {}: {err}", p.display());
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .map_err(|err| e("chmod", dir, err))?;
    let map = [IdMap {
        container_id: 0,
        host_id: TRIAL_HOST_ID,
        length: TRIAL_LEN,
    }];
    let pins = dir.join("ns");
    std::fs::create_dir_all(&pins).map_err(|err| e("create", &pins, err))?;
    let pinned = idmap::pin_with_userns(&pins, &map, &map, &["net", "ipc", "uts"], "crius-probe")
        .map_err(|err| format!("pinning a user namespace: {err}"))?;
    let pin = |k: &str| {
        pinned
            .iter()
            .find(|(kind, _)| kind == k)
            .map(|(_, p)| p.clone())
            .unwrap_or_default()
    };
    let res = async {
        let rootfs = dir.join("rootfs");
        let out = dir.join("out");
        for d in [&rootfs, &out, &rootfs.join("proc"), &rootfs.join("dev"), &rootfs.join("out")] {
            std::fs::create_dir_all(d).map_err(|err| e("create", d, err))?;
        }
        let idmap_json = serde_json::json!([{"containerID": 0, "hostID": TRIAL_HOST_ID, "size": TRIAL_LEN}]);
        let bind = |dest: &str, src: &Path, rw: &str| {
            serde_json::json!({"destination": dest, "type": "bind", "source": src,
                "options": ["rbind", rw, "idmap"], "uidMappings": idmap_json, "gidMappings": idmap_json})
        };
        let mut mounts = vec![
            serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc"}),
            serde_json::json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
            bind("/out", &out, "rw"),
        ];
        for top in ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            let host = Path::new("/").join(top);
            let Ok(meta) = std::fs::symlink_metadata(&host) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&host).map_err(|err| e("readlink", &host, err))?;
                std::os::unix::fs::symlink(target, rootfs.join(top))
                    .map_err(|err| e("symlink", &rootfs.join(top), err))?;
            } else if meta.is_dir() {
                std::fs::create_dir_all(rootfs.join(top))
                    .map_err(|err| e("create", &rootfs.join(top), err))?;
                mounts.push(bind(&format!("/{top}"), &host, "ro"));
            }
        }
        let id = crius_oci::trial_id();
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": ["/bin/sh", "-c", "cat /proc/self/uid_map > /out/uid_map"],
                "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/",
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "crius-probe",
            "mounts": mounts,
            "linux": {
                "cgroupsPath": format!("/{id}"),
                "uidMappings": idmap_json,
                "gidMappings": idmap_json,
                "namespaces": [
                    {"type": "user", "path": pin("user")},
                    {"type": "network", "path": pin("net")},
                    {"type": "ipc", "path": pin("ipc")},
                    {"type": "uts", "path": pin("uts")},
                    {"type": "pid"}, {"type": "mount"}
                ]
            }
        });
        let mut spec: oci_spec::runtime::Spec =
            serde_json::from_value(config).map_err(|err| format!("trial spec: {err}"))?;
        let prepared = idmap::prepare_spec_mounts(&mut spec, dir, native, None)?;
        let written = serde_json::to_vec_pretty(&spec)
            .map_err(|err| format!("trial spec: {err}"))
            .and_then(|j| {
                std::fs::write(dir.join("config.json"), j)
                    .map_err(|err| e("write", &dir.join("config.json"), err))
            });
        let ran = match written {
            Ok(()) => crius_oci::run_trial_bundle(h, dir, &id, Duration::from_secs(15)).await,
            Err(err) => Err(err),
        };
        idmap::release(&prepared);
        ran?;
        let f = out.join("uid_map");
        let text = std::fs::read_to_string(&f)
            .map_err(|err| format!("the trial container wrote no uid_map ({}): {err}", f.display()))?;
        let fields: Vec<&str> = text.split_whitespace().collect();
        let want = ["0".to_string(), TRIAL_HOST_ID.to_string(), TRIAL_LEN.to_string()];
        if fields != want {
            return Err(format!(
                "the trial container saw uid_map {text:?}, not the pinned user namespace's {want:?}"
            ));
        }
        let owner = std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata(&f).map_err(|err| e("stat", &f, err))?,
        );
        if owner != 0 {
            return Err(format!(
                "a file the trial container's root wrote through an idmapped mount is owned by host uid {owner}, not 0"
            ));
        }
        Ok(())
    }
    .await;
    for (_, p) in &pinned {
        crate::pod::namespaces::unpin_path(p);
    }
    res
}
