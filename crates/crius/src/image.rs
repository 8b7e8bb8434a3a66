//! ImageService on top of the `crius-image` store: CRI shapes in, CRI shapes out.

use cri_api::v1 as cri;

use crate::error::{Error, Result};
use crate::runtime::{info_map, now_ns, Runtime};

/// Maps image store errors onto CRI codes; the message keeps the reference and cause.
pub fn image_err(e: crius_image::ImageError) -> Error {
    use crius_image::ImageError as E;
    let msg = e.to_string();
    match e {
        E::InvalidReference { .. } => Error::InvalidArgument {
            field: "image".into(),
            reason: msg,
        },
        E::NotFound { reference } => Error::NotFound {
            kind: "image",
            id: reference,
        },
        E::Unauthorized { .. } => Error::Unauthenticated(msg),
        E::Forbidden { .. } => Error::PermissionDenied(msg),
        E::DigestMismatch { .. } => Error::DataLoss(msg),
        E::UnsafeLayerEntry { .. } => Error::InvalidArgument {
            field: "image layer".into(),
            reason: msg,
        },
        E::Timeout { .. } => Error::DeadlineExceeded(msg),
        _ => Error::Internal(msg),
    }
}

fn spec_handler_check(rt: &Runtime, spec: Option<&cri::ImageSpec>, field: &str) -> Result<()> {
    if let Some(h) = spec
        .map(|s| s.runtime_handler.as_str())
        .filter(|h| !h.is_empty())
    {
        if h != rt.handlers.default {
            return Err(Error::unimplemented(
                format!("{field}.runtime_handler"),
                format!("images are shared by all handlers; pulling for handler {h:?} separately is not supported (feature RuntimeClassInImageCriAPI)"),
            ));
        }
    }
    Ok(())
}

pub fn to_cri(img: &crius_image::Image) -> cri::Image {
    let (uid, username) = user_of(&img.config.user);
    cri::Image {
        id: img.id.clone(),
        repo_tags: img.repo_tags.clone(),
        repo_digests: img.repo_digests.clone(),
        size: img.size,
        uid: uid.map(|value| cri::Int64Value { value }),
        username,
        spec: Some(cri::ImageSpec {
            image: img.id.clone(),
            ..Default::default()
        }),
        pinned: img.pinned,
    }
}

/// The image USER as the CRI wants it: a numeric uid, or a user name (the kubelet's runAsNonRoot check
/// needs the uid; with a name it refuses to guess).
pub fn user_of(user: &str) -> (Option<i64>, String) {
    let name = user.split(':').next().unwrap_or("");
    if name.is_empty() {
        return (Some(0), String::new());
    }
    match name.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, name.to_string()),
    }
}

impl Runtime {
    pub async fn pull_image(
        &self,
        spec: Option<cri::ImageSpec>,
        auth: Option<cri::AuthConfig>,
    ) -> Result<String> {
        spec_handler_check(self, spec.as_ref(), "image")?;
        let reference = spec.map(|s| s.image).unwrap_or_default();
        if reference.is_empty() {
            return Err(Error::invalid("image.image", "must not be empty"));
        }
        let auth = auth.map(|a| crius_image::Auth {
            username: a.username,
            password: a.password,
            auth: a.auth,
            identity_token: a.identity_token,
            registry_token: a.registry_token,
        });
        let started = std::time::Instant::now();
        let pulled = crate::metrics::trace::child(
            "registry pull",
            vec![(
                "container.image.name",
                crate::metrics::trace::Attr::Str(reference.clone()),
            )],
            self.images.pull(&reference, auth.as_ref()),
        )
        .await;
        crate::metrics::get().image_pull(&pulled, started.elapsed());
        let img = pulled.map_err(image_err)?;
        Ok(img.id)
    }

    pub fn image_status(
        &self,
        spec: Option<cri::ImageSpec>,
        verbose: bool,
    ) -> Result<cri::ImageStatusResponse> {
        let reference = spec.map(|s| s.image).unwrap_or_default();
        if reference.is_empty() {
            return Err(Error::invalid("image.image", "must not be empty"));
        }
        // An unknown image is not an error for ImageStatus: the response just has no image.
        let img = match self.images.get(&reference) {
            Ok(i) => i,
            Err(crius_image::ImageError::NotFound { .. }) => None,
            Err(e) => return Err(image_err(e)),
        };
        let info = match (&img, verbose) {
            (Some(i), true) => {
                let cfg: serde_json::Value =
                    serde_json::from_str(&i.config_json).unwrap_or(serde_json::Value::Null);
                info_map(serde_json::json!({"id": i.id, "chainIDs": i.chain, "imageSpec": cfg}))
            }
            _ => Default::default(),
        };
        Ok(cri::ImageStatusResponse {
            image: img.as_ref().map(to_cri),
            info,
        })
    }

    pub fn list_images(&self, filter: Option<cri::ImageFilter>) -> Result<Vec<cri::Image>> {
        let want = filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .unwrap_or_default();
        if !want.is_empty() {
            return Ok(match self.images.get(&want) {
                Ok(Some(i)) => vec![to_cri(&i)],
                Ok(None) | Err(crius_image::ImageError::NotFound { .. }) => vec![],
                Err(e) => return Err(image_err(e)),
            });
        }
        Ok(self
            .images
            .list()
            .map_err(image_err)?
            .iter()
            .map(to_cri)
            .collect())
    }

    pub fn remove_image(&self, spec: Option<cri::ImageSpec>) -> Result<()> {
        let reference = spec.map(|s| s.image).unwrap_or_default();
        if reference.is_empty() {
            return Err(Error::invalid("image.image", "must not be empty"));
        }
        self.images.remove(&reference).map_err(image_err)
    }

    pub fn image_fs_info(&self) -> Result<cri::ImageFsInfoResponse> {
        let usage = |u: crius_image::FsUsage| cri::FilesystemUsage {
            timestamp: now_ns(),
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: u.mountpoint.display().to_string(),
            }),
            used_bytes: Some(cri::UInt64Value {
                value: u.used_bytes,
            }),
            inodes_used: Some(cri::UInt64Value {
                value: u.inodes_used,
            }),
        };
        Ok(cri::ImageFsInfoResponse {
            image_filesystems: vec![usage(self.images.fs_usage().map_err(image_err)?)],
            container_filesystems: vec![usage(
                self.images.container_fs_usage().map_err(image_err)?,
            )],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_user_split() {
        assert_eq!(user_of(""), (Some(0), String::new()));
        assert_eq!(user_of("1000"), (Some(1000), String::new()));
        assert_eq!(user_of("1000:1000"), (Some(1000), String::new()));
        assert_eq!(user_of("crius"), (None, "crius".to_string()));
    }
}
