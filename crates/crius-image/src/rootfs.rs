//! Container root filesystems: an overlay mount whose lower layers are the image's shared snapshots and
//! whose upper/work dirs live under `<root>/containers/<id>/`. A rootfs record in the metadata keeps the
//! snapshots alive for as long as the container exists, even if its image is removed.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{ImageError, IoContext};
use crate::meta::RootfsRecord;
use crate::{valid_container_id, ImageStore};

/// Turns image layers into the lower dirs a container's overlay uses (see
/// [`ImageStore::prepare_rootfs_mapped`]).
pub struct LowerMapper<'a> {
    /// Host uid/gid that owns the writable layer (the container's root).
    pub owner: (u32, u32),
    /// Layer dirs (top first) → the dirs to give overlayfs.
    pub map: &'a dyn Fn(&[PathBuf]) -> std::io::Result<Vec<PathBuf>>,
    /// Called with what `map` returned once the overlay is mounted (or failed).
    pub release: &'a dyn Fn(&[PathBuf]),
}

/// The kernel copies mount data into one page.
pub(crate) const MAX_MOUNT_DATA: usize = 4095;

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True when `target` is a mount point (per /proc/self/mountinfo).
pub(crate) fn is_mountpoint(target: &Path) -> Result<bool, ImageError> {
    let canon = match std::fs::canonicalize(target) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(ImageError::io(target, e)),
    };
    let info = std::fs::read_to_string("/proc/self/mountinfo").ctx("/proc/self/mountinfo")?;
    let want = canon.to_string_lossy();
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape_mountinfo(mp) == want))
}

pub(crate) fn cpath(p: &Path) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))
}

fn sys(r: libc::c_long) -> std::io::Result<libc::c_long> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `fsmount` attributes of a read-only image volume.
pub(crate) const MOUNT_ATTR_RDONLY_NOSUID_NODEV: libc::c_uint = 0x1 | 0x2 | 0x4;

/// Mounts overlay through the new mount API, adding each lower layer separately (top first). Without
/// `upper_work` the overlay is read-only; `attrs` are `MOUNT_ATTR_*` flags of the new mount.
pub(crate) fn mount_many_layers(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    attrs: libc::c_uint,
    target: &Path,
) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
    let fstype = std::ffi::CString::new("overlay").map_err(std::io::Error::other)?;
    // SAFETY: valid C string; the fd is owned below.
    let fs = sys(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: fs is a fresh fd.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    let set = |key: &str, value: &Path| -> std::io::Result<()> {
        let k = std::ffi::CString::new(key).map_err(std::io::Error::other)?;
        let v = cpath(value)?;
        // SAFETY: valid fd and C strings.
        sys(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_STRING,
                k.as_ptr(),
                v.as_ptr(),
                0,
            )
        })
        .map(|_| ())
    };
    for l in lowers {
        set("lowerdir+", l)?;
    }
    if let Some((upper, work)) = upper_work {
        set("upperdir", upper)?;
        set("workdir", work)?;
    }
    // SAFETY: valid fd; null key/value are what FSCONFIG_CMD_CREATE takes.
    sys(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: valid fd.
    let mnt =
        sys(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })?;
    // SAFETY: mnt is a fresh fd.
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt as i32) };
    let empty = std::ffi::CString::new("").map_err(std::io::Error::other)?;
    let t = cpath(target)?;
    // SAFETY: valid fds and C strings.
    sys(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(|_| ())
}

impl ImageStore {
    fn container_dir(&self, container_id: &str) -> Result<PathBuf, ImageError> {
        if !valid_container_id(container_id) {
            return Err(ImageError::InvalidReference {
                reference: container_id.to_string(),
                reason: "not a valid container id".into(),
            });
        }
        Ok(self.root().join("containers").join(container_id))
    }

    /// Mounts the container's overlay rootfs at `target` (created if missing). Idempotent.
    pub fn prepare_rootfs(
        &self,
        image_id: &str,
        container_id: &str,
        target: &Path,
    ) -> Result<(), ImageError> {
        self.prepare_rootfs_mapped(image_id, container_id, target, None)
    }

    /// Like [`ImageStore::prepare_rootfs`], with the lower layers replaced by what
    /// `mapper` makes of them (idmapped copies for a user-namespaced container) and the upper dir
    /// owned by `mapper.owner`. The layers on disk are not touched.
    pub fn prepare_rootfs_mapped(
        &self,
        image_id: &str,
        container_id: &str,
        target: &Path,
        mapper: Option<&LowerMapper>,
    ) -> Result<(), ImageError> {
        let cdir = self.container_dir(container_id)?;
        let mut lowers = Vec::new();
        {
            // Under the lease lock GC cannot run, so the snapshots checked here stay until the record exists.
            let _gc = self.inner.lock_leases();
            let existing = self
                .meta()
                .rootfs()?
                .into_iter()
                .find(|(k, _)| k == container_id)
                .map(|(_, r)| r);
            // An existing record wins: the image may have been removed (or retagged) since, but the
            // container keeps the layers it was created from.
            let rec = match existing {
                Some(rec) => {
                    let same = rec.image_id == image_id
                        || self
                            .get(image_id)
                            .ok()
                            .flatten()
                            .is_some_and(|i| i.id == rec.image_id);
                    if !same {
                        return Err(ImageError::Mount {
                            target: target.to_path_buf(),
                            detail: format!(
                                "container {container_id} already has a rootfs from image {}",
                                rec.image_id
                            ),
                        });
                    }
                    rec
                }
                None => {
                    let img = self.get(image_id)?.ok_or_else(|| ImageError::NotFound {
                        reference: image_id.to_string(),
                    })?;
                    RootfsRecord {
                        image_id: img.id,
                        chain: img.chain,
                    }
                }
            };
            for c in rec.chain.iter().rev() {
                if !self.content().has_snapshot(c) {
                    return Err(ImageError::NotFound {
                        reference: format!("snapshot {c} of image {}", rec.image_id),
                    });
                }
                lowers.push(self.content().snapshot_dir(c)?.join("fs"));
            }
            self.meta().put_rootfs(container_id, &rec)?;
        }
        if lowers.is_empty() {
            lowers.push(self.root().join("empty"));
        }
        let upper = cdir.join("upper");
        let work = cdir.join("work");
        for d in [&upper, &work] {
            std::fs::create_dir_all(d).ctx(d)?;
        }
        std::fs::create_dir_all(target).ctx(target)?;
        if is_mountpoint(target)? {
            return Ok(());
        }
        if let Some(m) = mapper {
            let (uid, gid) = m.owner;
            std::os::unix::fs::chown(&upper, Some(uid), Some(gid)).ctx(&upper)?;
            let mapped = (m.map)(&lowers).map_err(|e| ImageError::Mount {
                target: target.to_path_buf(),
                detail: format!("idmapped lower layers for container {container_id}: {e}"),
            })?;
            let res = self.mount_overlay(container_id, &mapped, &upper, &work, target);
            (m.release)(&mapped);
            return res;
        }
        self.mount_overlay(container_id, &lowers, &upper, &work, target)
    }

    fn mount_overlay(
        &self,
        container_id: &str,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<(), ImageError> {
        let lower = lowers
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":");
        let data = format!(
            "lowerdir={lower},upperdir={},workdir={}",
            upper.to_string_lossy(),
            work.to_string_lossy()
        );
        // `volatile` (Linux 5.10+): no sync of the upper dir, above all none when it is unmounted —
        // that sync flushed the whole filesystem and cost RemoveContainer 5-50 ms. The writable layer
        // of a container does not outlive the machine's uptime in use (after a crash only its removal
        // remains), so durability buys nothing. Older kernels refuse the option: mount without it.
        let volatile = format!("{data},volatile");
        if volatile.len() <= MAX_MOUNT_DATA {
            match mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::empty(),
                Some(volatile.as_str()),
            ) {
                Ok(()) => return Ok(()),
                Err(nix::errno::Errno::EINVAL) => {}
                Err(e) => {
                    return Err(ImageError::Mount {
                        target: target.to_path_buf(),
                        detail: format!("overlay mount for container {container_id}: {e}"),
                    })
                }
            }
        }
        if data.len() <= MAX_MOUNT_DATA {
            return mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::empty(),
                Some(data.as_str()),
            )
            .map_err(|e| ImageError::Mount {
                target: target.to_path_buf(),
                detail: format!("overlay mount for container {container_id}: {e}"),
            });
        }
        // Too many layers for one page of mount options: hand the layers to the kernel one by one
        // (fsconfig "lowerdir+", Linux 6.8+).
        mount_many_layers(lowers, Some((upper, work)), 0, target).map_err(|e| ImageError::Mount {
            target: target.to_path_buf(),
            detail: format!(
                "overlay mount for container {container_id} with {} layers ({} bytes of options, \
                 beyond the {MAX_MOUNT_DATA}-byte limit of mount(2)) via fsconfig lowerdir+: {e}",
                lowers.len(),
                data.len()
            ),
        })
    }

    /// Unmounts (lazily if busy) and deletes the container's writable layer and record. Idempotent.
    pub fn remove_rootfs(&self, container_id: &str, target: &Path) -> Result<(), ImageError> {
        let cdir = self.container_dir(container_id)?;
        // Stacked mounts are possible if something mounted twice; unmount until nothing is left.
        for _ in 0..8 {
            if !is_mountpoint(target)? {
                break;
            }
            match umount2(target, MntFlags::empty()) {
                Ok(()) => {}
                Err(nix::errno::Errno::EBUSY) => {
                    umount2(target, MntFlags::MNT_DETACH).map_err(|e| ImageError::Mount {
                        target: target.to_path_buf(),
                        detail: format!("lazy unmount: {e}"),
                    })?;
                }
                Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => break,
                Err(e) => {
                    return Err(ImageError::Mount {
                        target: target.to_path_buf(),
                        detail: format!("unmount: {e}"),
                    })
                }
            }
        }
        match std::fs::remove_dir_all(&cdir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io(&cdir, e)),
        }
        self.meta().drop_rootfs(container_id)?;
        self.gc()
    }
}
