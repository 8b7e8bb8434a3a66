//! The findings of a sandbox handler's trial containers (gVisor: each boots a sandbox), kept under
//! the daemon's root so that a restarted daemon answers Status without booting them again. An entry
//! counts only for the same runtime binary (path, size, mtime, `--version`), the same global args,
//! the same kernel and the same crius binary; anything else probes again. Only a run whose trial
//! container passed and whose trials did not time out is kept: a failure may be passing trouble
//! (a loaded host), and must not outlive it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crius_oci::{Handler, HandlerStatus};
use serde::{Deserialize, Serialize};

/// What a cached finding depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub binary: PathBuf,
    pub size: u64,
    pub mtime_ns: u128,
    pub version: String,
    pub args: Vec<String>,
    /// `/proc/sys/kernel/osrelease` and `version` (the build).
    pub kernel: String,
    /// Size and mtime of the running crius binary (trial code and spec generation are its).
    pub crius: (u64, u128),
}

/// One handler's cached findings (its trial container passed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: Key,
    pub userns: Result<(), String>,
    pub seccomp: Result<(), String>,
    /// The seccomp trial's exec'd process (crate::handler_features `execSeccomp`).
    pub exec_seccomp: Result<(), String>,
}

fn identity(p: &Path) -> Option<(u64, u128)> {
    let m = std::fs::metadata(p).ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some((m.len(), mtime))
}

/// The key of a handler found runnable by `--version` (None when something it needs is unreadable:
/// then nothing is cached).
pub fn key(h: &Handler) -> Option<Key> {
    let HandlerStatus::Available { version } = &h.status else {
        return None;
    };
    let (size, mtime_ns) = identity(&h.binary)?;
    let kernel = ["osrelease", "version"]
        .iter()
        .map(|f| std::fs::read_to_string(format!("/proc/sys/kernel/{f}")).ok())
        .collect::<Option<Vec<_>>>()?
        .concat();
    Some(Key {
        binary: h.binary.clone(),
        size,
        mtime_ns,
        version: version.clone(),
        args: h.global_args.clone(),
        kernel,
        crius: identity(&std::env::current_exe().ok()?)?,
    })
}

fn read(path: &Path) -> BTreeMap<String, Entry> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The cached findings for handler `name`, if they were made under `key`.
pub fn load(path: &Path, name: &str, key: &Key) -> Option<Entry> {
    read(path).remove(name).filter(|e| &e.key == key)
}

/// Whether findings are worth keeping (see the module doc).
pub fn keepable(userns: &Result<(), String>, seccomp: &Result<(), String>) -> bool {
    let timed_out = |r: &Result<(), String>| r.as_ref().is_err_and(|e| e.contains("timed out"));
    !timed_out(userns) && !timed_out(seccomp)
}

/// Records handler `name`'s findings (best effort: a write failure only costs a later probe).
pub fn store(path: &Path, name: &str, entry: Entry) {
    let mut all = read(path);
    all.insert(name.to_string(), entry);
    let res = serde_json::to_vec_pretty(&all)
        .map_err(std::io::Error::other)
        .and_then(|body| {
            let tmp = path.with_extension("json.tmp");
            crate::perms::write_private(&tmp, &body)?;
            std::fs::rename(&tmp, path)
        });
    if let Err(e) = res {
        tracing::warn!("keeping handler trial results in {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(version: &str) -> Key {
        Key {
            binary: "/usr/bin/runsc".into(),
            size: 1,
            mtime_ns: 2,
            version: version.into(),
            args: vec!["--network=host".into()],
            kernel: "6.1".into(),
            crius: (3, 4),
        }
    }

    #[test]
    fn an_entry_counts_only_under_its_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handler-probes.json");
        assert!(load(&path, "runsc", &k("a")).is_none());
        let e = Entry {
            key: k("a"),
            userns: Err("gofer: invalid argument".into()),
            seccomp: Ok(()),
            exec_seccomp: Err("runs unfiltered".into()),
        };
        store(&path, "runsc", e.clone());
        assert_eq!(load(&path, "runsc", &k("a")), Some(e));
        assert!(load(&path, "runsc", &k("b")).is_none(), "another version");
        assert!(load(&path, "gvisor", &k("a")).is_none(), "another handler");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn timed_out_trials_are_not_kept() {
        assert!(keepable(&Err("invalid argument".into()), &Ok(())));
        assert!(!keepable(&Ok(()), &Err("timed out after 15s".into())));
    }
}
