//! Importing images from an OCI image layout tar or a `docker save` tar.

use std::path::Path;

use crate::error::ImageError;
use crate::ImageStore;

impl ImageStore {
    pub fn import(&self, path: &Path) -> Result<Vec<String>, ImageError> {
        Err(ImageError::Unsupported {
            what: path.display().to_string(),
            detail: "import is not implemented yet".into(),
        })
    }
}
