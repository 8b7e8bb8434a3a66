//! Images mounted as volumes (KEP-4639): a read-only, nosuid, nodev overlay of the image's snapshots,
//! with no upper layer. A volume record (`<container id>/<mount index>` → image id and chain) keeps the
//! snapshots alive while the volume exists, exactly as a container rootfs record does for the image a
//! container runs from: removing the image drops its name, the layers stay until the container goes.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{ImageError, IoContext};
use crate::meta::RootfsRecord;
use crate::rootfs::{
    is_mountpoint, mount_many_layers, MAX_MOUNT_DATA, MOUNT_ATTR_RDONLY_NOSUID_NODEV,
};
use crate::{valid_container_id, Image, ImageStore};

fn volume_key(container_id: &str, index: usize) -> String {
    format!("{container_id}/{index}")
}

impl ImageStore {
    /// Mounts `reference` (tag, digest or id of a pulled image) read-only at `target` for the container's
    /// mount number `index`, and records it so its layers stay while the volume does. Idempotent.
    pub fn mount_image_volume(
        &self,
        reference: &str,
        container_id: &str,
        index: usize,
        target: &Path,
    ) -> Result<Image, ImageError> {
        if !valid_container_id(container_id) {
            return Err(ImageError::InvalidReference {
                reference: container_id.to_string(),
                reason: "not a valid container id".into(),
            });
        }
        let img = self.get(reference)?.ok_or_else(|| ImageError::NotFound {
            reference: reference.to_string(),
        })?;
        let mut lowers: Vec<PathBuf> = Vec::new();
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
            self.meta().put_volume(
                &volume_key(container_id, index),
                &RootfsRecord {
                    image_id: img.id.clone(),
                    chain: img.chain.clone(),
                },
            )?;
        }
        // Overlay without an upper dir needs two lower layers; the empty dir is the harmless second one.
        lowers.push(self.root().join("empty"));
        std::fs::create_dir_all(target).ctx(target)?;
        if is_mountpoint(target)? {
            return Ok(img);
        }
        let lower = lowers
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":");
        let data = format!("lowerdir={lower}");
        let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        let r = if data.len() <= MAX_MOUNT_DATA {
            mount(
                Some("overlay"),
                target,
                Some("overlay"),
                flags,
                Some(data.as_str()),
            )
            .map_err(std::io::Error::from)
        } else {
            mount_many_layers(&lowers, None, MOUNT_ATTR_RDONLY_NOSUID_NODEV, target)
        };
        r.map_err(|e| ImageError::Mount {
            target: target.to_path_buf(),
            detail: format!(
                "read-only overlay of image {} ({} layers) for container {container_id}: {e}",
                img.id,
                img.chain.len()
            ),
        })?;
        Ok(img)
    }

    /// Unmounts every volume of the container found below `dir` and drops their records (the image's
    /// layers are collected if nothing else uses them). Idempotent.
    pub fn remove_image_volumes(&self, container_id: &str, dir: &Path) -> Result<(), ImageError> {
        let prefix = format!("{container_id}/");
        let keys: Vec<String> = self
            .meta()
            .volumes()?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with(&prefix))
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        for k in &keys {
            let index = &k[prefix.len()..];
            let target = dir.join(index);
            if is_mountpoint(&target)? {
                umount2(&target, MntFlags::MNT_DETACH).map_err(|e| ImageError::Mount {
                    target: target.clone(),
                    detail: format!("unmount image volume: {e}"),
                })?;
            }
        }
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.meta().drop_volumes(&refs)?;
        self.gc()
    }

    /// Container ids that have image volume records.
    pub fn list_image_volume_owners(&self) -> Result<Vec<String>, ImageError> {
        let mut ids: Vec<String> = self
            .meta()
            .volumes()?
            .into_iter()
            .filter_map(|(k, _)| k.split_once('/').map(|(c, _)| c.to_string()))
            .collect();
        ids.dedup();
        Ok(ids)
    }
}
