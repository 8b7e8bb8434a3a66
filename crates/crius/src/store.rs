//! The metadata store: pod and container records in redb, crash-safe.
//!
//! Each record is JSON under its 64-hex id. A write is one redb transaction, written to the file when it
//! returns, so a `kill -9` at any point leaves the last committed state, which recovery reconciles with
//! the machine.
//!
//! Commits do not fsync (see [`PageCacheBackend`]): the records describe pods and containers, which die
//! with the machine, so surviving a power loss buys nothing, while two fsyncs per CreateContainer cost
//! ~4 ms on this kind of disk. A file left unreadable by a power loss (writes reordered) is set aside on
//! the next boot and the store starts empty, as the machine does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};

/// Bumped when a record layout changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
pub const SANDBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("sandboxes");
pub const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata store {path}: {message}")]
    Db { path: PathBuf, message: String },
    #[error("metadata store {path}: record {id} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        id: String,
        source: serde_json::Error,
    },
    #[error(
        "metadata store {path} has schema version {found}, this crius understands {SCHEMA_VERSION}"
    )]
    Schema { path: PathBuf, found: String },
}

#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

/// redb's file backend without the fsync: writes reach the page cache before a commit returns (a
/// process crash loses nothing), nothing waits for the disk.
#[derive(Debug)]
struct PageCacheBackend(redb::backends::FileBackend);

impl redb::StorageBackend for PageCacheBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.0.read(offset, len)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self, _eventual: bool) -> std::io::Result<()> {
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write(offset, data)
    }
}

/// The records' pages cached in memory at most (the store holds a few KiB per pod).
const CACHE_BYTES: usize = 4 << 20;

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn open_db(path: &Path) -> Result<Database, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| e.to_string())?;
    let backend = redb::backends::FileBackend::new(file).map_err(|e| e.to_string())?;
    Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create_with_backend(PageCacheBackend(backend))
        .map_err(|e| e.to_string())
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |e: &dyn std::fmt::Display| StoreError::Db {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        // The boot the file was last opened in: unreadable after a reboot means a power loss
        // reordered unsynced writes, and the pods it described are gone anyway.
        let boot_file = path.with_extension("redb.boot");
        let boot = boot_id();
        let db = match open_db(path) {
            Ok(db) => db,
            Err(e)
                if !boot.is_empty()
                    && std::fs::read_to_string(&boot_file)
                        .map(|s| s.trim().to_string())
                        .is_ok_and(|b| b != boot) =>
            {
                let aside = path.with_extension(format!("redb.lost-{}", std::process::id()));
                tracing::warn!(
                    "metadata store {} unreadable after a reboot ({e}): set aside as {}, starting empty",
                    path.display(),
                    aside.display()
                );
                std::fs::rename(path, &aside).map_err(|e| err(&e))?;
                open_db(path).map_err(|e| err(&e))?
            }
            Err(e) => return Err(err(&e)),
        };
        // 0600 like every file under root (SECURITY.md: nothing world-readable there).
        crate::perms::write_private(&boot_file, boot.as_bytes()).map_err(|e| err(&e))?;
        let store = Store {
            db: Arc::new(db),
            path: path.to_path_buf(),
        };
        let txn = store.db.begin_write().map_err(|e| err(&e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| err(&e))?;
            let current = meta
                .get("schema")
                .map_err(|e| err(&e))?
                .map(|v| v.value().to_string());
            match current {
                None => {
                    meta.insert("schema", SCHEMA_VERSION.to_string().as_str())
                        .map_err(|e| err(&e))?;
                }
                Some(v) if v == SCHEMA_VERSION.to_string() => {}
                Some(v) => {
                    return Err(StoreError::Schema {
                        path: path.to_path_buf(),
                        found: v,
                    })
                }
            }
            txn.open_table(SANDBOXES).map_err(|e| err(&e))?;
            txn.open_table(CONTAINERS).map_err(|e| err(&e))?;
        }
        txn.commit().map_err(|e| err(&e))?;
        Ok(store)
    }

    fn db_err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    pub fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| self.db_err(e))?;
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut t = txn.open_table(table).map_err(|e| self.db_err(e))?;
            t.insert(id, bytes.as_slice()).map_err(|e| self.db_err(e))?;
        }
        txn.commit().map_err(|e| self.db_err(e))
    }

    pub fn delete(&self, table: TableDefinition<&str, &[u8]>, id: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut t = txn.open_table(table).map_err(|e| self.db_err(e))?;
            t.remove(id).map_err(|e| self.db_err(e))?;
        }
        txn.commit().map_err(|e| self.db_err(e))
    }

    /// [`Store::put`] on a blocking thread: a commit (file writes, a lock) must not stall an async worker.
    pub async fn put_async<T: Serialize + Send + 'static>(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        id: String,
        value: T,
    ) -> Result<(), StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.put(table, &id, &value))
            .await
            .map_err(|e| self.db_err(format!("commit task: {e}")))?
    }

    /// [`Store::delete`] on a blocking thread.
    pub async fn delete_async(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        id: String,
    ) -> Result<(), StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.delete(table, &id))
            .await
            .map_err(|e| self.db_err(format!("commit task: {e}")))?
    }

    pub fn list<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let t = txn.open_table(table).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(|e| self.db_err(e))? {
            let (k, v) = entry.map_err(|e| self.db_err(e))?;
            let rec = serde_json::from_slice(v.value()).map_err(|source| StoreError::Corrupt {
                path: self.path.clone(),
                id: k.value().to_string(),
                source,
            })?;
            out.push(rec);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_list_delete_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.redb");
        {
            let s = Store::open(&path).unwrap();
            s.put(SANDBOXES, "a", &serde_json::json!({"id": "a"}))
                .unwrap();
            s.put(SANDBOXES, "b", &serde_json::json!({"id": "b"}))
                .unwrap();
            s.delete(SANDBOXES, "a").unwrap();
        }
        let s = Store::open(&path).unwrap();
        let all: Vec<serde_json::Value> = s.list(SANDBOXES).unwrap();
        assert_eq!(all, vec![serde_json::json!({"id": "b"})]);
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Rec {
        id: String,
        state: String,
    }

    /// A record that does not decode is an error naming it and the store, never a default value.
    #[test]
    fn a_corrupt_record_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.redb");
        let s = Store::open(&path).unwrap();
        s.put(
            CONTAINERS,
            "good",
            &serde_json::json!({"id": "good", "state": "x"}),
        )
        .unwrap();
        for (id, bytes) in [
            ("garbage", &b"\xff\x00not json"[..]),
            ("truncated", &br#"{"id": "truncated", "sta"#[..]),
            ("missing", &br#"{"id": "missing"}"#[..]),
        ] {
            {
                let txn = s.db.begin_write().unwrap();
                txn.open_table(CONTAINERS)
                    .unwrap()
                    .insert(id, bytes)
                    .unwrap();
                txn.commit().unwrap();
            }
            let e = s.list::<Rec>(CONTAINERS).unwrap_err();
            match &e {
                StoreError::Corrupt { id: named, .. } => assert_eq!(named, id),
                other => panic!("{id}: expected Corrupt, got {other}"),
            }
            let msg = e.to_string();
            assert!(msg.contains(id) && msg.contains("m.redb"), "{msg}");
            s.delete(CONTAINERS, id).unwrap();
        }
        let ok: Vec<Rec> = s.list(CONTAINERS).unwrap();
        assert_eq!(ok.len(), 1);
    }

    #[test]
    fn a_commit_is_in_the_file_without_fsync_when_it_returns() {
        // What a `kill -9` leaves: the file as written, read by another process's open.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.redb");
        let s = Store::open(&path).unwrap();
        s.put(CONTAINERS, "c", &serde_json::json!({"id": "c"}))
            .unwrap();
        let copy = dir.path().join("copy.redb");
        std::fs::copy(&path, &copy).unwrap();
        let c = Store::open(&copy).unwrap();
        let all: Vec<serde_json::Value> = c.list(CONTAINERS).unwrap();
        assert_eq!(all, vec![serde_json::json!({"id": "c"})]);
    }

    #[test]
    fn an_unreadable_file_is_set_aside_only_after_a_reboot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.redb");
        std::fs::write(&path, vec![0xa5u8; 8192]).unwrap();
        // Same boot (no boot file from another boot): an error, the file untouched.
        std::fs::write(path.with_extension("redb.boot"), boot_id()).unwrap();
        assert!(Store::open(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), vec![0xa5u8; 8192]);
        // Last opened in another boot: set aside, a fresh store.
        std::fs::write(path.with_extension("redb.boot"), "another-boot").unwrap();
        let s = Store::open(&path).unwrap();
        assert!(s.list::<serde_json::Value>(SANDBOXES).unwrap().is_empty());
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("lost-"));
        assert!(aside);
    }
}
