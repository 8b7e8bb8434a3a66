//! Network configuration: which conflist is in use (first valid file in the conf dir, or the embedded
//! default when the dir holds no configuration at all), its validation, and plugin binary lookup.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::error::NetworkError;

/// The configuration used when the conf dir is missing or holds no `.conflist`/`.conf`/`.json` file,
/// so a fresh node has pod networking without anyone writing to /etc. 10.85.0.0/16 and the `crius0`
/// bridge keep clear of docker (172.17/16) and of the usual cluster CIDRs; `lo` is brought up
/// separately by the loopback plugin for every pod, so it is not part of this list.
pub const EMBEDDED_DEFAULT_CONFLIST: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "crius",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "crius0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "routes": [{ "dst": "0.0.0.0/0" }],
        "ranges": [[{ "subnet": "10.85.0.0/16" }]]
      }
    },
    {
      "type": "portmap",
      "capabilities": { "portMappings": true },
      "snat": true
    }
  ]
}"#;

/// CNI spec versions whose config and result formats crius understands.
const SUPPORTED_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// Where the configuration in use came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConfigSource {
    File(PathBuf),
    Embedded,
    /// Replayed from a pod's cache entry (teardown/check after a config change or restart).
    Cache(PathBuf),
    /// crius' own netlink network (no CNI plugin), used when the conf dir holds no configuration.
    Native,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::Embedded => f.write_str("embedded default"),
            ConfigSource::Cache(p) => write!(f, "cache {}", p.display()),
            ConfigSource::Native => f.write_str("native (netlink, no CNI plugins)"),
        }
    }
}

/// A validated network configuration list (a single `.conf` is wrapped into a one-plugin list).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    /// Plugin configurations in chain order, each with a non-empty `type`.
    pub plugins: Vec<Map<String, Value>>,
    pub source: ConfigSource,
}

impl NetworkList {
    /// Parses a conflist or a single plugin conf. The error is a reason meant to follow the path.
    pub fn parse(bytes: &[u8], source: ConfigSource) -> Result<NetworkList, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
        Self::from_value(value, source)
    }

    pub fn from_value(value: Value, source: ConfigSource) -> Result<NetworkList, String> {
        let Value::Object(obj) = value else {
            return Err("not a JSON object".to_string());
        };
        let name = match obj.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err("\"name\" must be a non-empty string".to_string()),
            None => return Err("missing \"name\"".to_string()),
        };
        let cni_version = match obj.get("cniVersion") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err("\"cniVersion\" must be a string".to_string()),
            None => return Err("missing \"cniVersion\"".to_string()),
        };
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(format!(
                "unsupported cniVersion {cni_version:?} (supported: {})",
                SUPPORTED_VERSIONS.join(", ")
            ));
        }
        let disable_check = matches!(obj.get("disableCheck"), Some(Value::Bool(true)));
        let plugins = match obj.get("plugins") {
            Some(Value::Array(list)) => {
                if list.is_empty() {
                    return Err("\"plugins\" is empty".to_string());
                }
                let mut plugins = Vec::with_capacity(list.len());
                for (i, p) in list.iter().enumerate() {
                    let Value::Object(p) = p else {
                        return Err(format!("plugins[{i}] is not an object"));
                    };
                    check_type(p).map_err(|r| format!("plugins[{i}]: {r}"))?;
                    plugins.push(p.clone());
                }
                plugins
            }
            Some(_) => return Err("\"plugins\" must be an array".to_string()),
            None if obj.contains_key("type") => {
                check_type(&obj)?;
                vec![obj.clone()]
            }
            None => {
                return Err(
                    "neither a plugin list (\"plugins\") nor a plugin config (\"type\")"
                        .to_string(),
                )
            }
        };
        Ok(NetworkList {
            name,
            cni_version,
            disable_check,
            plugins,
            source,
        })
    }

    /// The list as a conflist document (what the cache stores and replays).
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        obj.insert("name".into(), Value::String(self.name.clone()));
        if self.disable_check {
            obj.insert("disableCheck".into(), Value::Bool(true));
        }
        obj.insert(
            "plugins".into(),
            Value::Array(self.plugins.iter().cloned().map(Value::Object).collect()),
        );
        Value::Object(obj)
    }

    pub fn plugin_types(&self) -> Vec<String> {
        self.plugins.iter().map(plugin_type).collect()
    }

    pub fn embedded() -> NetworkList {
        // The constant is checked by a unit test; failing here would be a build defect, not a runtime one.
        match NetworkList::parse(EMBEDDED_DEFAULT_CONFLIST.as_bytes(), ConfigSource::Embedded) {
            Ok(l) => l,
            Err(reason) => panic!("embedded default conflist is invalid: {reason}"),
        }
    }
}

/// Whether `version` (a CNI spec version) is at least `major.minor`.
pub(crate) fn version_at_least(version: &str, major: u64, minor: u64) -> bool {
    let mut it = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let (ma, mi) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

pub(crate) fn plugin_type(p: &Map<String, Value>) -> String {
    p.get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn check_type(p: &Map<String, Value>) -> Result<(), String> {
    match p.get("type") {
        Some(Value::String(t)) if t.is_empty() => Err("empty \"type\"".to_string()),
        Some(Value::String(t)) if t.contains('/') || t == "." || t == ".." => {
            Err(format!("plugin type {t:?} is not a plain file name"))
        }
        Some(Value::String(_)) => Ok(()),
        Some(_) => Err("\"type\" must be a string".to_string()),
        None => Err("missing \"type\"".to_string()),
    }
}

/// Finds an executable plugin binary in the bin dirs, first dir wins.
pub(crate) fn find_plugin(plugin: &str, bin_dirs: &[PathBuf]) -> Result<PathBuf, NetworkError> {
    for dir in bin_dirs {
        let path = dir.join(plugin);
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(path);
            }
        }
    }
    Err(NetworkError::PluginNotFound {
        plugin: plugin.to_string(),
        searched: bin_dirs.to_vec(),
    })
}

/// Identity of the candidate files (name, mtime, size), so an unchanged dir is not parsed again.
pub(crate) type DirKey = Vec<(PathBuf, Option<SystemTime>, u64)>;

/// Lists the configuration candidates of `dir` in the order they are tried. `Ok(None)`: the dir is missing.
pub(crate) fn scan_dir(dir: &Path) -> Result<Option<DirKey>, NetworkError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(NetworkError::io(dir, e)),
    };
    let mut key = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| NetworkError::io(dir, e))?;
        let path = entry.path();
        let is_conf = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("conflist") | Some("conf") | Some("json")
        );
        if !is_conf {
            continue;
        }
        // Follows symlinks (config management often links files in); a dangling link is skipped.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        key.push((path, meta.modified().ok(), meta.len()));
    }
    key.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
    Ok(Some(key))
}

/// Picks the configuration for a scanned dir: the first file that parses, or the embedded default
/// when there are no candidates. The error lists why each candidate was rejected.
pub(crate) fn select(key: Option<&DirKey>) -> Result<NetworkList, String> {
    let candidates = match key {
        None => return Ok(NetworkList::embedded()),
        Some(k) if k.is_empty() => return Ok(NetworkList::embedded()),
        Some(k) => k,
    };
    let mut reasons = Vec::new();
    for (path, _, _) in candidates {
        let parsed = std::fs::read(path)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|bytes| NetworkList::parse(&bytes, ConfigSource::File(path.clone())));
        match parsed {
            Ok(list) => return Ok(list),
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "skipping CNI config");
                reasons.push(format!("{}: {reason}", path.display()));
            }
        }
    }
    Err(reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let l = NetworkList::embedded();
        assert_eq!(l.name, "crius");
        assert_eq!(l.cni_version, "1.0.0");
        assert_eq!(l.plugin_types(), vec!["bridge", "portmap"]);
        assert_eq!(l.plugins[0]["bridge"], "crius0");
        assert_eq!(
            l.plugins[0]["ipam"]["ranges"][0][0]["subnet"],
            "10.85.0.0/16"
        );
        assert_eq!(l.plugins[1]["capabilities"]["portMappings"], true);
    }

    #[test]
    fn single_conf_is_wrapped() {
        let l = NetworkList::parse(
            br#"{"cniVersion":"0.4.0","name":"n","type":"bridge","bridge":"b0"}"#,
            ConfigSource::Embedded,
        )
        .unwrap();
        assert_eq!(l.name, "n");
        assert_eq!(l.cni_version, "0.4.0");
        assert_eq!(l.plugin_types(), vec!["bridge"]);
        assert_eq!(l.plugins[0]["bridge"], "b0");
        // Round trip through the cache form keeps it a list.
        let again = NetworkList::from_value(l.to_value(), ConfigSource::Embedded).unwrap();
        assert_eq!(again, l);
    }

    #[test]
    fn rejects_bad_configs_with_reasons() {
        let cases: &[(&str, &str)] = &[
            ("{nope", "invalid JSON"),
            ("[1]", "not a JSON object"),
            (
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#,
                "missing \"name\"",
            ),
            (
                r#"{"name":"n","plugins":[{"type":"x"}]}"#,
                "missing \"cniVersion\"",
            ),
            (
                r#"{"name":"n","cniVersion":"9.9.9","plugins":[{"type":"x"}]}"#,
                "unsupported cniVersion",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[]}"#,
                "\"plugins\" is empty",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[{"a":1}]}"#,
                "plugins[0]: missing \"type\"",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"../sh"}]}"#,
                "not a plain file name",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0"}"#,
                "neither a plugin list",
            ),
        ];
        for (doc, want) in cases {
            let err = NetworkList::parse(doc.as_bytes(), ConfigSource::Embedded).unwrap_err();
            assert!(err.contains(want), "{doc}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn selection_order_and_fallbacks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Missing dir and empty dir: embedded default.
        let missing = d.join("missing");
        assert_eq!(
            select(scan_dir(&missing).unwrap().as_ref()).unwrap().source,
            ConfigSource::Embedded
        );
        assert_eq!(
            select(scan_dir(d).unwrap().as_ref()).unwrap().source,
            ConfigSource::Embedded
        );
        // Non-config files are ignored.
        std::fs::write(d.join("README"), "hi").unwrap();
        assert_eq!(
            select(scan_dir(d).unwrap().as_ref()).unwrap().source,
            ConfigSource::Embedded
        );
        // Only invalid files: an error naming each file and its reason.
        std::fs::write(d.join("10-x.conflist"), "{oops").unwrap();
        let err = select(scan_dir(d).unwrap().as_ref()).unwrap_err();
        assert!(err.contains("10-x.conflist: invalid JSON"), "{err}");
        // A later valid file is used, an earlier valid one wins over it.
        std::fs::write(
            d.join("20-b.conf"),
            r#"{"cniVersion":"1.0.0","name":"b","type":"bridge"}"#,
        )
        .unwrap();
        assert_eq!(select(scan_dir(d).unwrap().as_ref()).unwrap().name, "b");
        std::fs::write(
            d.join("15-a.json"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        let l = select(scan_dir(d).unwrap().as_ref()).unwrap();
        assert_eq!(l.name, "a");
        assert_eq!(l.source, ConfigSource::File(d.join("15-a.json")));
    }

    #[test]
    fn plugin_lookup_reports_searched_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("noexec"), "").unwrap();
        std::fs::write(bin.join("good"), "").unwrap();
        std::fs::set_permissions(bin.join("good"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dirs = vec![dir.path().join("none"), bin.clone()];
        assert_eq!(find_plugin("good", &dirs).unwrap(), bin.join("good"));
        let err = find_plugin("noexec", &dirs).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("\"noexec\"") && msg.contains("none") && msg.contains("bin"),
            "{msg}"
        );
    }

    #[test]
    fn version_compare() {
        assert!(version_at_least("0.4.0", 0, 4));
        assert!(version_at_least("1.0.0", 0, 4));
        assert!(!version_at_least("0.3.1", 0, 4));
    }
}
