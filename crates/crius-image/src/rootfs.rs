//! Container root filesystems: an overlay mount whose lower layers are the image's shared snapshots and
//! whose upper/work dirs live under `<root>/containers/<id>/`. A rootfs record in the metadata keeps the
//! snapshots alive for as long as the container exists, even if its image is removed.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{ImageError, IoContext};
use crate::meta::RootfsRecord;
use crate::{valid_container_id, ImageStore};

/// The kernel copies mount data into one page.
const MAX_MOUNT_DATA: usize = 4095;

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len() + 0
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
        let cdir = self.container_dir(container_id)?;
        let img = self.get(image_id)?.ok_or_else(|| ImageError::NotFound {
            reference: image_id.to_string(),
        })?;
        let mut lowers = Vec::with_capacity(img.chain.len());
        {
            // Under the lease lock GC cannot run, so the snapshots checked here stay until the record exists.
            let _gc = self.inner.lock_leases();
            for c in img.chain.iter().rev() {
                if !self.content().has_snapshot(c) {
                    return Err(ImageError::NotFound {
                        reference: format!("snapshot {c} of image {}", img.id),
                    });
                }
                lowers.push(self.content().snapshot_dir(c)?.join("fs"));
            }
            let existing = self
                .meta()
                .rootfs()?
                .into_iter()
                .find(|(k, _)| k == container_id);
            if let Some((_, rec)) = existing {
                if rec.image_id != img.id {
                    return Err(ImageError::Mount {
                        target: target.to_path_buf(),
                        detail: format!(
                            "container {container_id} already has a rootfs from image {}",
                            rec.image_id
                        ),
                    });
                }
            } else {
                self.meta().put_rootfs(
                    container_id,
                    &RootfsRecord {
                        image_id: img.id.clone(),
                        chain: img.chain.clone(),
                    },
                )?;
            }
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
        if data.len() > MAX_MOUNT_DATA {
            return Err(ImageError::Mount {
                target: target.to_path_buf(),
                detail: format!(
                    "{} layers make overlay options of {} bytes (limit {MAX_MOUNT_DATA}); use a shorter store root",
                    img.chain.len(),
                    data.len()
                ),
            });
        }
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|e| ImageError::Mount {
            target: target.to_path_buf(),
            detail: format!("overlay mount for container {container_id}: {e}"),
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
