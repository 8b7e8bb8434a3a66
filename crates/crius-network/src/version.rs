//! Which CNI spec versions each plugin binary speaks (CNI VERSION), remembered per binary and its
//! mtime, so a configuration a plugin cannot serve is reported by status() and refused by setup()
//! with a clear reason instead of failing inside the ADD.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{plugin_type, NetworkList};
use crate::error::NetworkError;

/// VERSION only prints a constant; anything slower than this is a broken binary.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A binary's identity (mtime, size) and what it answered (`None`: no usable answer).
type Key = (Option<SystemTime>, u64);
type Known = (Key, Option<Vec<String>>);

#[derive(Default)]
pub(crate) struct VersionCache {
    known: Mutex<HashMap<PathBuf, Known>>,
}

impl VersionCache {
    /// Fails when a plugin of `list` declares its versions and the list's version is not among them.
    /// A plugin that cannot answer VERSION is given the benefit of the doubt (logged).
    pub(crate) fn check(
        &self,
        list: &NetworkList,
        bins: &[PathBuf],
        cni_path: &str,
    ) -> Result<(), NetworkError> {
        for (plugin, bin) in list.plugins.iter().zip(bins) {
            let Some(supported) = self.supported(bin, &list.cni_version, cni_path) else {
                continue;
            };
            if !supported.iter().any(|v| v == &list.cni_version) {
                return Err(NetworkError::IncompatiblePlugin {
                    plugin: plugin_type(plugin),
                    path: bin.clone(),
                    version: list.cni_version.clone(),
                    supported,
                });
            }
        }
        Ok(())
    }

    fn supported(&self, bin: &Path, version: &str, cni_path: &str) -> Option<Vec<String>> {
        let meta = std::fs::metadata(bin).ok()?;
        let key: Key = (meta.modified().ok(), meta.len());
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, v)) = known.get(bin) {
            if *k == key {
                return v.clone();
            }
        }
        let probed = match probe(bin, version, cni_path) {
            Ok(v) => Some(v),
            Err(reason) => {
                tracing::warn!(plugin = %bin.display(), %reason, "CNI VERSION probe failed; not checking versions");
                None
            }
        };
        known.insert(bin.to_path_buf(), (key, probed.clone()));
        probed
    }
}

/// Runs `bin` with CNI_COMMAND=VERSION and returns its supportedVersions.
fn probe(bin: &Path, version: &str, cni_path: &str) -> Result<Vec<String>, String> {
    let mut child = Command::new(bin)
        .env("CNI_COMMAND", "VERSION")
        .env("CNI_PATH", cni_path)
        .env_remove("CNI_CONTAINERID")
        .env_remove("CNI_NETNS")
        .env_remove("CNI_IFNAME")
        .env_remove("CNI_ARGS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(format!(r#"{{"cniVersion":"{version}"}}"#).as_bytes());
    }
    let deadline = Instant::now() + PROBE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {PROBE_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("wait: {e}")),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("output: {e}"))?;
    if !out.status.success() {
        return Err(format!("exited with {}", out.status));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("bad JSON: {e}"))?;
    let list = v
        .get("supportedVersions")
        .and_then(|s| s.as_array())
        .ok_or("no supportedVersions")?
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigSource;

    #[test]
    fn real_bridge_plugin_versions() {
        let bin = Path::new("/usr/lib/cni/bridge");
        if !bin.exists() {
            eprintln!("skipped: no /usr/lib/cni/bridge");
            return;
        }
        let v = probe(bin, "1.0.0", "/usr/lib/cni").unwrap();
        assert!(
            v.contains(&"1.0.0".to_string()) && v.contains(&"0.4.0".to_string()),
            "{v:?}"
        );
        let cache = VersionCache::default();
        let ok = NetworkList::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#,
            ConfigSource::Embedded,
        )
        .unwrap();
        cache
            .check(&ok, &[bin.to_path_buf()], "/usr/lib/cni")
            .unwrap();
        // Debian's 1.1.1 plugins stop at 1.0.0.
        if !v.contains(&"1.1.0".to_string()) {
            let newer = NetworkList::parse(
                br#"{"cniVersion":"1.1.0","name":"n","type":"bridge"}"#,
                ConfigSource::Embedded,
            )
            .unwrap();
            let err = cache
                .check(&newer, &[bin.to_path_buf()], "/usr/lib/cni")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("bridge") && err.contains("1.1.0") && err.contains("1.0.0"),
                "{err}"
            );
        }
    }

    #[test]
    fn unanswering_plugin_is_not_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("old");
        std::fs::write(&bin, "#!/bin/sh\nexit 1\n").unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let list = NetworkList::parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"old"}"#,
            ConfigSource::Embedded,
        )
        .unwrap();
        VersionCache::default().check(&list, &[bin], "").unwrap();
    }
}
