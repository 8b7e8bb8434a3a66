//! Image volumes (KEP-4639, `Mount.image`, `Mount.image_sub_path`): a pulled image mounted read-only,
//! nosuid and nodev at the mount's `container_path`, from the image's own snapshots.
//!
//! Each image mount of a container is a read-only overlay at `<container dir>/image-volumes/<index>`
//! (made by `crius-image`, which records it so the layers stay while it is mounted), and the CRI mount is
//! rewritten as a read-only bind of that overlay (or of the sub-path inside it) before the OCI spec is
//! generated. Like containerd and CRI-O, the volume is read-only whatever `readonly` says.

use std::path::{Component, Path, PathBuf};

use cri_api::v1 as cri;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, Error, Result};
use crate::shared::Shared;

/// One image mounted into a container, kept in its record for ContainerStatus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountedImage {
    /// Index in `ContainerConfig.mounts`.
    pub index: usize,
    pub image_id: String,
    /// What PullImage answered for the image (its id), reported as `mounts[].image.image_ref`
    /// (KEP-5365; critest compares it with the PullImageResponse).
    pub image_ref: String,
}

/// The directory holding a container's image volume mounts.
pub fn volumes_dir(container_dir: &Path) -> PathBuf {
    container_dir.join("image-volumes")
}

fn field(i: usize, f: &str) -> String {
    format!("config.mounts[{i}].{f}")
}

/// Checks what can be checked without mounting: names, paths, the image being present. Fail fast.
pub fn validate(rt: &Shared, cfg: &cri::ContainerConfig) -> Result<()> {
    for (i, m) in cfg.mounts.iter().enumerate() {
        let Some(img) = &m.image else {
            if !m.image_sub_path.is_empty() {
                return Err(Error::invalid(
                    field(i, "image_sub_path"),
                    "is set on a mount without an image",
                ));
            }
            continue;
        };
        if img.image.is_empty() {
            return Err(Error::invalid(field(i, "image.image"), "must not be empty"));
        }
        if !m.host_path.is_empty() {
            return Err(Error::invalid(
                field(i, "host_path"),
                format!(
                    "{:?} is set on an image mount (image {:?}); a mount is either",
                    m.host_path, img.image
                ),
            ));
        }
        if !m.image_sub_path.is_empty() {
            let p = Path::new(&m.image_sub_path);
            if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
                return Err(Error::invalid(
                    field(i, "image_sub_path"),
                    format!(
                        "{:?} must be a relative path inside image {:?} without '.' or '..'",
                        m.image_sub_path, img.image
                    ),
                ));
            }
        }
        match rt.images.get(&img.image) {
            Ok(Some(_)) => {}
            Ok(None) | Err(crius_image::ImageError::NotFound { .. }) => {
                return Err(Error::not_found("image", img.image.clone()))
            }
            Err(
                e @ (crius_image::ImageError::InvalidReference { .. }
                | crius_image::ImageError::Ambiguous { .. }),
            ) => return Err(Error::invalid(field(i, "image.image"), e.to_string())),
            Err(e) => return Err(Error::from(e)),
        }
    }
    Ok(())
}

/// Mounts the container's image volumes and returns the config to generate the OCI spec from (image
/// mounts turned into read-only binds) with what was mounted. Blocking (mounts, stats).
pub fn mount_all(
    rt: &Shared,
    container_id: &str,
    container_dir: &Path,
    cfg: &cri::ContainerConfig,
) -> Result<(cri::ContainerConfig, Vec<MountedImage>)> {
    let mut out = cfg.clone();
    let mut mounted = Vec::new();
    let dir = volumes_dir(container_dir);
    for (i, m) in cfg.mounts.iter().enumerate() {
        let Some(img) = &m.image else { continue };
        let target = dir.join(i.to_string());
        let image = rt
            .images
            .mount_image_volume(&img.image, container_id, i, &target)
            .map_err(|e| match e {
                crius_image::ImageError::NotFound { .. } => {
                    Error::not_found("image", img.image.clone())
                }
                other => Error::from(other),
            })?;
        let source = if m.image_sub_path.is_empty() {
            target.clone()
        } else {
            // Symlinks inside the image resolve inside it, never to the host.
            let p = crius_spec::resolve_in_rootfs(&target, Path::new(&m.image_sub_path))
                .map_err(|e| Error::invalid(field(i, "image_sub_path"), e.to_string()))?;
            match std::fs::symlink_metadata(&p) {
                Ok(_) => p,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::invalid(
                        field(i, "image_sub_path"),
                        format!(
                            "{:?} does not exist in image {:?} ({})",
                            m.image_sub_path, img.image, image.id
                        ),
                    ))
                }
                Err(e) => return Err(io_err("stat image sub-path", &p, e)),
            }
        };
        let bind = &mut out.mounts[i];
        bind.image = None;
        bind.image_sub_path = String::new();
        bind.host_path = source.display().to_string();
        bind.readonly = true;
        mounted.push(MountedImage {
            index: i,
            image_ref: image.id.clone(),
            image_id: image.id,
        });
    }
    Ok((out, mounted))
}

/// Adds `nosuid` and `nodev` to the OCI mounts that bind an image volume (runc would otherwise clear
/// those flags when it remounts the bind read-only).
pub fn harden(spec: &mut oci_spec::runtime::Spec, container_dir: &Path) {
    let dir = volumes_dir(container_dir);
    let Some(mut mounts) = spec.mounts().clone() else {
        return;
    };
    for m in mounts.iter_mut() {
        if m.source().as_ref().is_some_and(|s| s.starts_with(&dir)) {
            let mut opts = m.options().clone().unwrap_or_default();
            for o in ["nosuid", "nodev", "ro"] {
                if !opts.iter().any(|x| x == o) {
                    opts.push(o.to_string());
                }
            }
            opts.retain(|o| o != "rw");
            m.set_options(Some(opts));
        }
    }
    spec.set_mounts(Some(mounts));
}

/// The mounts as ContainerStatus reports them: as requested, with each image's resolved reference.
pub fn report(mut mounts: Vec<cri::Mount>, mounted: &[MountedImage]) -> Vec<cri::Mount> {
    for v in mounted {
        if let Some(img) = mounts.get_mut(v.index).and_then(|m| m.image.as_mut()) {
            img.image_ref = v.image_ref.clone();
        }
    }
    mounts
}

/// Unmounts a container's image volumes and releases their layers. Idempotent.
pub fn release(rt: &Shared, container_id: &str, container_dir: &Path) {
    if let Err(e) = rt
        .images
        .remove_image_volumes(container_id, &volumes_dir(container_dir))
    {
        tracing::warn!("container {container_id}: releasing image volumes: {e}");
    }
}

/// Drops volume records of containers that no longer exist (a crash between mount and record).
pub fn recover(rt: &Shared, known: &[String]) {
    match rt.images.list_image_volume_owners() {
        Ok(owners) => {
            for id in owners.into_iter().filter(|id| !known.contains(id)) {
                release(rt, &id, &rt.container_dir(&id));
            }
        }
        Err(e) => tracing::warn!("listing image volumes: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_fills_image_ref() {
        let mounts = vec![
            cri::Mount {
                container_path: "/a".into(),
                host_path: "/h".into(),
                ..Default::default()
            },
            cri::Mount {
                container_path: "/v".into(),
                image: Some(cri::ImageSpec {
                    image: "x:latest".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ];
        let r = report(
            mounts,
            &[MountedImage {
                index: 1,
                image_id: "sha256:1".into(),
                image_ref: "x@sha256:2".into(),
            }],
        );
        assert_eq!(r[1].image.as_ref().unwrap().image_ref, "x@sha256:2");
        assert!(r[0].image.is_none());
    }

    #[test]
    fn harden_adds_nosuid_nodev_ro_to_volume_binds_only() {
        let dir = Path::new("/run/crius/containers/abc");
        let mut spec = oci_spec::runtime::Spec::default();
        let mut vol = oci_spec::runtime::Mount::default();
        vol.set_destination("/v".into());
        vol.set_source(Some(volumes_dir(dir).join("0")));
        vol.set_options(Some(vec!["rbind".into(), "rw".into()]));
        let mut other = oci_spec::runtime::Mount::default();
        other.set_destination("/o".into());
        other.set_source(Some("/srv".into()));
        other.set_options(Some(vec!["rbind".into()]));
        spec.set_mounts(Some(vec![vol, other]));
        harden(&mut spec, dir);
        let ms = spec.mounts().clone().unwrap();
        let o = ms[0].options().clone().unwrap();
        assert!(o.contains(&"nosuid".to_string()) && o.contains(&"nodev".to_string()));
        assert!(o.contains(&"ro".to_string()) && !o.contains(&"rw".to_string()));
        assert_eq!(ms[1].options().clone().unwrap(), vec!["rbind".to_string()]);
    }
}
