//! Image metadata in redb (`<root>/images.redb`): image records, the reference index (tags and repo
//! digests → image id) and container rootfs records. Every change is one redb write transaction, so a
//! crash leaves either the old or the new state.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::ImageError;

/// image id → JSON `ImageRecord`.
pub(crate) const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
/// `name:tag` or `name@digest` → image id.
pub(crate) const REFS: TableDefinition<&str, &str> = TableDefinition::new("refs");
/// container id → JSON `RootfsRecord`.
pub(crate) const ROOTFS: TableDefinition<&str, &[u8]> = TableDefinition::new("rootfs");
/// `<container id>/<mount index>` → JSON `RootfsRecord` of an image mounted as a volume.
pub(crate) const VOLUMES: TableDefinition<&str, &[u8]> = TableDefinition::new("image_volumes");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub size: u64,
    pub pinned: bool,
    pub config_json: String,
    pub manifest_digest: String,
    /// The index/manifest list the manifest was chosen from, kept so the repo digest stays resolvable.
    pub index_digest: Option<String>,
    pub layers: Vec<LayerRecord>,
    pub chain: Vec<String>,
}

impl ImageRecord {
    /// Every blob this image keeps alive.
    pub fn blobs(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.id.as_str())
            .chain(std::iter::once(self.manifest_digest.as_str()))
            .chain(self.index_digest.as_deref())
            .chain(self.layers.iter().map(|l| l.digest.as_str()))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RootfsRecord {
    pub image_id: String,
    pub chain: Vec<String>,
}

pub(crate) struct Meta {
    pub db: Database,
    pub path: PathBuf,
}

pub(crate) fn db_err(path: &Path, e: impl std::fmt::Display) -> ImageError {
    ImageError::Db {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

impl Meta {
    pub fn open(path: &Path) -> Result<Self, ImageError> {
        let db = Database::create(path).map_err(|e| db_err(path, e))?;
        let w = db.begin_write().map_err(|e| db_err(path, e))?;
        {
            w.open_table(IMAGES).map_err(|e| db_err(path, e))?;
            w.open_table(REFS).map_err(|e| db_err(path, e))?;
            w.open_table(ROOTFS).map_err(|e| db_err(path, e))?;
            w.open_table(VOLUMES).map_err(|e| db_err(path, e))?;
        }
        w.commit().map_err(|e| db_err(path, e))?;
        Ok(Meta {
            db,
            path: path.to_path_buf(),
        })
    }

    pub fn err(&self, e: impl std::fmt::Display) -> ImageError {
        db_err(&self.path, e)
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(IMAGES).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| self.err(e))? {
            let (_, v) = item.map_err(|e| self.err(e))?;
            out.push(serde_json::from_slice(v.value()).map_err(|e| self.err(e))?);
        }
        Ok(out)
    }

    pub fn image(&self, id: &str) -> Result<Option<ImageRecord>, ImageError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(IMAGES).map_err(|e| self.err(e))?;
        match t.get(id).map_err(|e| self.err(e))? {
            Some(v) => Ok(Some(
                serde_json::from_slice(v.value()).map_err(|e| self.err(e))?,
            )),
            None => Ok(None),
        }
    }

    pub fn lookup_ref(&self, reference: &str) -> Result<Option<String>, ImageError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(REFS).map_err(|e| self.err(e))?;
        Ok(t.get(reference)
            .map_err(|e| self.err(e))?
            .map(|v| v.value().to_string()))
    }

    pub fn rootfs(&self) -> Result<Vec<(String, RootfsRecord)>, ImageError> {
        self.records(ROOTFS)
    }

    pub fn put_rootfs(&self, container_id: &str, rec: &RootfsRecord) -> Result<(), ImageError> {
        self.put_record(ROOTFS, container_id, rec)
    }

    pub fn drop_rootfs(&self, container_id: &str) -> Result<(), ImageError> {
        self.drop_records(ROOTFS, &[container_id])
    }

    pub fn volumes(&self) -> Result<Vec<(String, RootfsRecord)>, ImageError> {
        self.records(VOLUMES)
    }

    pub fn put_volume(&self, key: &str, rec: &RootfsRecord) -> Result<(), ImageError> {
        self.put_record(VOLUMES, key, rec)
    }

    pub fn drop_volumes(&self, keys: &[&str]) -> Result<(), ImageError> {
        self.drop_records(VOLUMES, keys)
    }

    fn records(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<(String, RootfsRecord)>, ImageError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(table).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push((
                k.value().to_string(),
                serde_json::from_slice(v.value()).map_err(|e| self.err(e))?,
            ));
        }
        Ok(out)
    }

    fn put_record(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        rec: &RootfsRecord,
    ) -> Result<(), ImageError> {
        let v = serde_json::to_vec(rec).map_err(|e| self.err(e))?;
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = w.open_table(table).map_err(|e| self.err(e))?;
            t.insert(key, v.as_slice()).map_err(|e| self.err(e))?;
        }
        w.commit().map_err(|e| self.err(e))
    }

    fn drop_records(
        &self,
        table: TableDefinition<&str, &[u8]>,
        keys: &[&str],
    ) -> Result<(), ImageError> {
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = w.open_table(table).map_err(|e| self.err(e))?;
            for k in keys {
                t.remove(*k).map_err(|e| self.err(e))?;
            }
        }
        w.commit().map_err(|e| self.err(e))
    }

    /// Runs `f` on a write transaction with the three tables open, committing if it succeeds.
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut Tables<'_>) -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        let out = {
            let mut tables = Tables {
                images: w.open_table(IMAGES).map_err(|e| self.err(e))?,
                refs: w.open_table(REFS).map_err(|e| self.err(e))?,
                path: &self.path,
            };
            f(&mut tables)?
        };
        w.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }
}

pub(crate) struct Tables<'a> {
    pub images: redb::Table<'a, &'static str, &'static [u8]>,
    pub refs: redb::Table<'a, &'static str, &'static str>,
    path: &'a Path,
}

impl Tables<'_> {
    pub fn err(&self, e: impl std::fmt::Display) -> ImageError {
        db_err(self.path, e)
    }

    pub fn get_image(&self, id: &str) -> Result<Option<ImageRecord>, ImageError> {
        match self.images.get(id).map_err(|e| self.err(e))? {
            Some(v) => Ok(Some(
                serde_json::from_slice(v.value()).map_err(|e| self.err(e))?,
            )),
            None => Ok(None),
        }
    }

    pub fn put_image(&mut self, rec: &ImageRecord) -> Result<(), ImageError> {
        let v = serde_json::to_vec(rec).map_err(|e| self.err(e))?;
        let path = self.path;
        self.images
            .insert(rec.id.as_str(), v.as_slice())
            .map_err(|e| db_err(path, e))?;
        Ok(())
    }

    pub fn get_ref(&self, r: &str) -> Result<Option<String>, ImageError> {
        Ok(self
            .refs
            .get(r)
            .map_err(|e| self.err(e))?
            .map(|v| v.value().to_string()))
    }

    /// Points `reference` at `id`, taking it away from any image that had it.
    pub fn set_ref(&mut self, reference: &str, id: &str, is_tag: bool) -> Result<(), ImageError> {
        if let Some(old) = self.get_ref(reference)? {
            if old != id {
                if let Some(mut rec) = self.get_image(&old)? {
                    rec.repo_tags.retain(|t| t != reference);
                    rec.repo_digests.retain(|t| t != reference);
                    self.put_image(&rec)?;
                }
            }
        }
        let path = self.path;
        self.refs
            .insert(reference, id)
            .map_err(|e| db_err(path, e))?;
        if let Some(mut rec) = self.get_image(id)? {
            let list = if is_tag {
                &mut rec.repo_tags
            } else {
                &mut rec.repo_digests
            };
            if !list.iter().any(|t| t == reference) {
                list.push(reference.to_string());
                self.put_image(&rec)?;
            }
        }
        Ok(())
    }

    pub fn remove_ref(&mut self, reference: &str) -> Result<(), ImageError> {
        let path = self.path;
        self.refs.remove(reference).map_err(|e| db_err(path, e))?;
        Ok(())
    }

    pub fn remove_image(&mut self, id: &str) -> Result<(), ImageError> {
        let path = self.path;
        self.images.remove(id).map_err(|e| db_err(path, e))?;
        Ok(())
    }
}
