//! The per-pod CNI cache, `<cache_dir>/<pod-id>.json`: the exact config list, CNI args, capability
//! args and netns path of the ADD, and its result. DEL and CHECK replay it, so they keep working after
//! the conf dir changed or the daemon restarted. An entry without a result marks an ADD that started
//! but never completed (crash): it still gets a DEL.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::config::ConfigSource;
use crate::error::NetworkError;

const CACHE_FORMAT: u32 = 1;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct CacheEntry {
    pub format: u32,
    pub id: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub cni_args: Vec<(String, String)>,
    pub capability_args: Map<String, Value>,
    /// The conflist document as it was used.
    pub config: Value,
    pub config_source: ConfigSource,
    /// Whether the loopback plugin was run (and so needs a DEL too).
    pub loopback: bool,
    /// The final result of the chain; `None` until the ADD succeeded.
    pub result: Option<Value>,
}

pub(crate) fn validate_id(id: &str) -> Result<(), NetworkError> {
    let bad = |reason: &str| {
        Err(NetworkError::InvalidPodId {
            id: id.to_string(),
            reason: reason.to_string(),
        })
    };
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > 200 {
        return bad("longer than 200 bytes");
    }
    if id.starts_with('.') {
        return bad("starts with '.'");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return bad("only ASCII letters, digits, '-', '_' and '.' are allowed");
    }
    Ok(())
}

pub(crate) fn entry_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Writes the entry so that a crash leaves either the old or the new content, never a torn file.
pub(crate) fn write(dir: &Path, entry: &CacheEntry) -> Result<(), NetworkError> {
    write_as(dir, entry, true)
}

/// As [`write`], without waiting for the disk: for entries of the native network, whose state (links,
/// nftables elements) dies with the machine anyway. A daemon crash keeps the page cache, so a
/// killed daemon still finds the entry; only a power loss can drop it, and then nothing of what it
/// describes is left but an address reservation.
pub(crate) fn write_volatile(dir: &Path, entry: &CacheEntry) -> Result<(), NetworkError> {
    write_as(dir, entry, false)
}

fn write_as(dir: &Path, entry: &CacheEntry, durable: bool) -> Result<(), NetworkError> {
    if !dir.exists() {
        // The results name netns paths, IPs and CNI args: root only.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| NetworkError::io(dir, e))?;
    }
    let path = entry_path(dir, &entry.id);
    let tmp = dir.join(format!(".{}.json.tmp", entry.id));
    let data = serde_json::to_vec_pretty(entry).map_err(|e| {
        NetworkError::io(
            &path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| NetworkError::io(&tmp, e))?;
    f.write_all(&data).map_err(|e| NetworkError::io(&tmp, e))?;
    if durable {
        f.sync_all().map_err(|e| NetworkError::io(&tmp, e))?;
    }
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| NetworkError::io(&path, e))?;
    if !durable {
        return Ok(());
    }
    // The rename itself must survive a power cut too.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

pub(crate) fn read(dir: &Path, id: &str) -> Result<Option<CacheEntry>, NetworkError> {
    let path = entry_path(dir, id);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(NetworkError::io(&path, e)),
    };
    let entry: CacheEntry =
        serde_json::from_slice(&data).map_err(|e| NetworkError::InvalidConfig {
            path: path.clone(),
            reason: format!("unreadable cache entry: {e}"),
        })?;
    if entry.format != CACHE_FORMAT {
        return Err(NetworkError::InvalidConfig {
            path,
            reason: format!(
                "cache format {} (this crius reads {CACHE_FORMAT})",
                entry.format
            ),
        });
    }
    Ok(Some(entry))
}

pub(crate) fn remove(dir: &Path, id: &str) -> Result<(), NetworkError> {
    let path = entry_path(dir, id);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetworkError::io(&path, e)),
    }
}

/// Pod ids with an entry, sorted.
pub(crate) fn list(dir: &Path) -> Result<Vec<String>, NetworkError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NetworkError::io(dir, e)),
    };
    let mut ids = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| NetworkError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name.strip_suffix(".json") {
            if validate_id(id).is_ok() {
                ids.push(id.to_string());
            }
        }
    }
    ids.sort();
    Ok(ids)
}

pub(crate) fn new_entry(
    id: &str,
    netns: &Path,
    ifname: &str,
    cni_args: Vec<(String, String)>,
    capability_args: Map<String, Value>,
    config: Value,
    config_source: ConfigSource,
) -> CacheEntry {
    CacheEntry {
        format: CACHE_FORMAT,
        id: id.to_string(),
        netns: netns.to_path_buf(),
        ifname: ifname.to_string(),
        cni_args,
        capability_args,
        config,
        config_source,
        loopback: true,
        result: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("0123abcdef").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b", &"x".repeat(201)] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roundtrip_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("cache");
        assert!(list(&d).unwrap().is_empty());
        assert!(read(&d, "p1").unwrap().is_none());
        let mut e = new_entry(
            "p1",
            Path::new("/run/netns/x"),
            "eth0",
            vec![],
            Map::new(),
            serde_json::json!({}),
            ConfigSource::Embedded,
        );
        write(&d, &e).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&d), 0o700, "cache dir is root only");
            assert_eq!(
                mode(&entry_path(&d, "p1")),
                0o600,
                "cache entries are root only"
            );
        }
        e.id = "p2".into();
        e.result = Some(serde_json::json!({"ips": []}));
        write(&d, &e).unwrap();
        std::fs::write(d.join(".p3.json.tmp"), "{").unwrap();
        assert_eq!(list(&d).unwrap(), vec!["p1", "p2"]);
        assert!(read(&d, "p1").unwrap().unwrap().result.is_none());
        assert_eq!(
            read(&d, "p2").unwrap().unwrap().result,
            Some(serde_json::json!({"ips": []}))
        );
        remove(&d, "p1").unwrap();
        remove(&d, "p1").unwrap();
        assert_eq!(list(&d).unwrap(), vec!["p2"]);
        std::fs::write(entry_path(&d, "p2"), "garbage").unwrap();
        assert!(matches!(
            read(&d, "p2"),
            Err(NetworkError::InvalidConfig { .. })
        ));
    }
}
