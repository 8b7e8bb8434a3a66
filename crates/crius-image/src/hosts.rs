//! Registry endpoint configuration, read from a containerd-compatible hosts directory
//! (`<hosts_dir>/<host[:port]>/hosts.toml`, falling back to `<hosts_dir>/_default/hosts.toml`).
//!
//! The result of a lookup is the ordered list of endpoints to try for one registry: the `[host."..."]`
//! entries in file order, then the `server` (or the registry's own default endpoint).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::error::ImageError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Base URL including the API path, e.g. `https://registry-1.docker.io/v2`.
    pub url: Url,
    /// May be asked to resolve a tag to a manifest digest.
    pub resolve: bool,
    /// May serve manifests by digest and blobs.
    pub pull: bool,
    pub skip_verify: bool,
    /// Extra CA bundles (PEM) trusted for this endpoint.
    pub ca: Vec<PathBuf>,
    /// Try plain HTTP when the HTTPS handshake fails (containerd's rule for localhost without config).
    pub http_fallback: bool,
    /// A mirror (not the registry's own server): requests carry `?ns=<registry>`.
    pub mirror: bool,
    /// Extra request headers from the `header` table (a value may be a list: one header each).
    pub headers: Vec<(String, String)>,
    /// Client certificate and key (PEM) for mutual TLS; `None` as key means both are in the first file.
    pub client: Option<(PathBuf, Option<PathBuf>)>,
}

/// containerd accepts `client = "both.pem"`, `client = ["cert", "key"]` or `client = [["cert", "key"]]`.
fn client_cert(
    v: &Option<toml::Value>,
    base: &Path,
    file: &Path,
) -> Result<Option<(PathBuf, Option<PathBuf>)>, ImageError> {
    let abs = |p: &str| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            base.join(p)
        }
    };
    let bad = || ImageError::HostsConfig {
        path: file.to_path_buf(),
        detail: "client must be a path, [cert, key] or [[cert, key], ...]".into(),
    };
    let pair = |a: &[toml::Value]| -> Result<(PathBuf, Option<PathBuf>), ImageError> {
        let cert = a.first().and_then(|x| x.as_str()).ok_or_else(bad)?;
        let key = a
            .get(1)
            .and_then(|x| x.as_str())
            .filter(|k| !k.is_empty())
            .map(abs);
        Ok((abs(cert), key))
    };
    match v {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some((abs(s), None))),
        Some(toml::Value::Array(a)) if a.is_empty() => Ok(None),
        Some(toml::Value::Array(a)) => match &a[0] {
            // Only the first identity is used: one TLS client presents one certificate.
            toml::Value::Array(inner) => pair(inner).map(Some),
            toml::Value::String(_) => pair(a).map(Some),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

fn headers(v: &Option<toml::Value>, file: &Path) -> Result<Vec<(String, String)>, ImageError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let bad = |d: String| ImageError::HostsConfig {
        path: file.to_path_buf(),
        detail: d,
    };
    let t = v
        .as_table()
        .ok_or_else(|| bad("header must be a table".into()))?;
    let mut out = Vec::new();
    for (k, v) in t {
        match v {
            toml::Value::String(s) => out.push((k.clone(), s.clone())),
            toml::Value::Array(a) => {
                for x in a {
                    let s = x
                        .as_str()
                        .ok_or_else(|| bad(format!("header {k:?}: values must be strings")))?;
                    out.push((k.clone(), s.to_string()));
                }
            }
            _ => return Err(bad(format!("header {k:?}: values must be strings"))),
        }
    }
    Ok(out)
}

/// Unknown keys are ignored rather than refused: containerd keeps adding options (e.g. `dial_timeout`)
/// and a shared certs.d must not break crius pulls.
#[derive(Debug, Default, Deserialize)]
struct HostsFile {
    server: Option<String>,
    capabilities: Option<Vec<String>>,
    skip_verify: Option<bool>,
    ca: Option<StringOrList>,
    #[serde(default)]
    client: Option<toml::Value>,
    #[serde(default)]
    header: Option<toml::Value>,
    override_path: Option<bool>,
    #[serde(default)]
    host: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
struct HostEntry {
    capabilities: Option<Vec<String>>,
    skip_verify: Option<bool>,
    ca: Option<StringOrList>,
    #[serde(default)]
    client: Option<toml::Value>,
    #[serde(default)]
    header: Option<toml::Value>,
    override_path: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn paths(self, base: &Path) -> Vec<PathBuf> {
        let v = match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        };
        v.into_iter()
            .map(|p| {
                let p = PathBuf::from(p);
                // Relative CA paths are relative to the hosts.toml directory, as in containerd.
                if p.is_absolute() {
                    p
                } else {
                    base.join(p)
                }
            })
            .collect()
    }
}

/// The registry's own endpoint when nothing is configured.
fn default_server(registry: &str) -> String {
    if registry == "docker.io" {
        "https://registry-1.docker.io".to_string()
    } else {
        format!("https://{registry}")
    }
}

fn is_local(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.split(':').next().unwrap_or("")
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

/// Candidate hosts.toml paths for a registry, most specific first.
fn candidate_files(hosts_dir: &Path, registry: &str) -> Vec<PathBuf> {
    let mut v = vec![hosts_dir.join(registry).join("hosts.toml")];
    if registry.contains(':') {
        // containerd's alternative spelling for host:port directory names.
        v.push(
            hosts_dir
                .join(format!("{}_", registry.replace(':', "_")))
                .join("hosts.toml"),
        );
    }
    v.push(hosts_dir.join("_default").join("hosts.toml"));
    v
}

fn api_url(raw: &str, override_path: bool, file: &Path) -> Result<Url, ImageError> {
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("https://{raw}")
    };
    let mut url = Url::parse(&with_scheme).map_err(|e| ImageError::HostsConfig {
        path: file.to_path_buf(),
        detail: format!("invalid URL {raw:?}: {e}"),
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ImageError::HostsConfig {
            path: file.to_path_buf(),
            detail: format!("URL {raw:?} must be http or https"),
        });
    }
    let path = url.path().trim_end_matches('/').to_string();
    if !override_path && !path.ends_with("/v2") {
        url.set_path(&format!("{path}/v2"));
    } else {
        url.set_path(&path);
    }
    Ok(url)
}

fn caps(list: &Option<Vec<String>>, file: &Path) -> Result<(bool, bool), ImageError> {
    match list {
        None => Ok((true, true)),
        Some(l) => {
            for c in l {
                if !matches!(c.as_str(), "pull" | "resolve" | "push") {
                    return Err(ImageError::HostsConfig {
                        path: file.to_path_buf(),
                        detail: format!("unknown capability {c:?}"),
                    });
                }
            }
            Ok((
                l.iter().any(|c| c == "pull"),
                l.iter().any(|c| c == "resolve"),
            ))
        }
    }
}

/// Parses one hosts.toml text into the ordered endpoint list for `registry`.
pub fn parse_hosts(text: &str, file: &Path, registry: &str) -> Result<Vec<Endpoint>, ImageError> {
    let base = file.parent().unwrap_or(Path::new("/"));
    let parsed: HostsFile = toml::from_str(text).map_err(|e| ImageError::HostsConfig {
        path: file.to_path_buf(),
        detail: e.to_string(),
    })?;
    let server_raw = parsed
        .server
        .clone()
        .unwrap_or_else(|| default_server(registry));
    let server_url = api_url(&server_raw, parsed.override_path.unwrap_or(false), file)?;
    let mut out = Vec::new();
    // toml::Table keeps insertion order only with the preserve_order feature; parse the raw text for the
    // header order so that "tried in order" holds regardless.
    let order = host_header_order(text);
    let mut keys: Vec<&String> = parsed.host.keys().collect();
    keys.sort_by_key(|k| order.iter().position(|o| o == *k).unwrap_or(usize::MAX));
    for key in keys {
        let value = &parsed.host[key];
        let entry: HostEntry =
            value
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| ImageError::HostsConfig {
                    path: file.to_path_buf(),
                    detail: format!("[host.{key:?}]: {e}"),
                })?;
        if entry.client.is_some() {
            return Err(ImageError::HostsConfig {
                path: file.to_path_buf(),
                detail: format!(
                    "[host.{key:?}]: client certificates (`client`) are not supported yet"
                ),
            });
        }
        let url = api_url(key, entry.override_path.unwrap_or(false), file)?;
        let (pull, resolve) = caps(&entry.capabilities, file)?;
        let mirror = url.host_str() != server_url.host_str() || url.port() != server_url.port();
        out.push(Endpoint {
            url,
            pull,
            resolve,
            skip_verify: entry.skip_verify.unwrap_or(false),
            ca: entry.ca.map(|c| c.paths(base)).unwrap_or_default(),
            http_fallback: false,
            mirror,
            headers: headers(&entry.header, file)?,
            client: client_cert(&entry.client, base, file)?,
        });
    }
    let (pull, resolve) = caps(&parsed.capabilities, file)?;
    out.push(Endpoint {
        url: server_url,
        pull,
        resolve,
        skip_verify: parsed.skip_verify.unwrap_or(false),
        ca: parsed.ca.map(|c| c.paths(base)).unwrap_or_default(),
        http_fallback: false,
        mirror: false,
        headers: headers(&parsed.header, file)?,
        client: client_cert(&parsed.client, base, file)?,
    });
    Ok(out)
}

/// Keys of `[host."..."]` tables in the order they appear in the file.
fn host_header_order(text: &str) -> Vec<String> {
    let mut v = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        let Some(inner) = l.strip_prefix("[host.").and_then(|r| r.strip_suffix(']')) else {
            continue;
        };
        let inner = inner.trim();
        let key = inner
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .or_else(|| inner.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
            .unwrap_or(inner);
        v.push(key.to_string());
    }
    v
}

/// The endpoints to try for `registry`, in order.
pub fn endpoints(hosts_dir: &Path, registry: &str) -> Result<Vec<Endpoint>, ImageError> {
    for file in candidate_files(hosts_dir, registry) {
        match std::fs::read_to_string(&file) {
            Ok(text) => return parse_hosts(&text, &file, registry),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ImageError::io(file, e)),
        }
    }
    let url = api_url(&default_server(registry), false, Path::new("<default>"))?;
    Ok(vec![Endpoint {
        url,
        pull: true,
        resolve: true,
        skip_verify: false,
        ca: Vec::new(),
        http_fallback: is_local(registry),
        mirror: false,
        headers: Vec::new(),
        client: None,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_endpoints() {
        let d = tempfile::tempdir().unwrap();
        let e = endpoints(d.path(), "docker.io").unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].url.as_str(), "https://registry-1.docker.io/v2");
        assert!(!e[0].http_fallback);
        let e = endpoints(d.path(), "127.0.0.1:5000").unwrap();
        assert_eq!(e[0].url.as_str(), "https://127.0.0.1:5000/v2");
        assert!(e[0].http_fallback);
        assert!(endpoints(d.path(), "localhost").unwrap()[0].http_fallback);
        assert!(!endpoints(d.path(), "quay.io").unwrap()[0].http_fallback);
    }

    #[test]
    fn parses_hosts_in_order_with_capabilities() {
        let text = r#"
server = "https://registry.example.com"

[host."http://mirror-b.local:5000"]
  capabilities = ["pull"]

[host."https://mirror-a.local/prefix"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
  ca = ["ca1.pem", "/abs/ca2.pem"]

[host."https://raw.local/custom"]
  override_path = true
  ca = "/x.pem"
  [host."https://raw.local/custom".header]
    x-one = "1"
    x-many = ["a", "b"]
"#;
        let f = Path::new("/etc/certs.d/registry.example.com/hosts.toml");
        let e = parse_hosts(text, f, "registry.example.com").unwrap();
        let urls: Vec<_> = e.iter().map(|e| e.url.as_str().to_string()).collect();
        assert_eq!(
            urls,
            [
                "http://mirror-b.local:5000/v2",
                "https://mirror-a.local/prefix/v2",
                "https://raw.local/custom",
                "https://registry.example.com/v2"
            ]
        );
        assert!(e[0].pull && !e[0].resolve && e[0].mirror);
        assert!(e[1].pull && e[1].resolve && e[1].skip_verify);
        assert_eq!(
            e[1].ca,
            [
                PathBuf::from("/etc/certs.d/registry.example.com/ca1.pem"),
                PathBuf::from("/abs/ca2.pem")
            ]
        );
        assert_eq!(e[2].ca, [PathBuf::from("/x.pem")]);
        let mut h = e[2].headers.clone();
        h.sort();
        assert_eq!(
            h,
            [
                ("x-many".into(), "a".into()),
                ("x-many".into(), "b".into()),
                ("x-one".into(), "1".into())
            ]
        );
        assert!(e[3].pull && e[3].resolve && !e[3].mirror);
        assert_eq!(e[0].client, None);
    }

    #[test]
    fn client_certificate_forms() {
        let f = Path::new("/h/x.io/hosts.toml");
        let one = |t: &str| parse_hosts(t, f, "x.io").unwrap().pop().unwrap().client;
        assert_eq!(
            one("client = \"c.pem\""),
            Some((PathBuf::from("/h/x.io/c.pem"), None))
        );
        assert_eq!(
            one("client = [\"/c.crt\", \"/c.key\"]"),
            Some((PathBuf::from("/c.crt"), Some(PathBuf::from("/c.key"))))
        );
        assert_eq!(
            one("client = [[\"/c.crt\", \"\"], [\"/d.crt\", \"/d.key\"]]"),
            Some((PathBuf::from("/c.crt"), None))
        );
        assert!(parse_hosts("client = 3", f, "x.io").is_err());
    }

    #[test]
    fn lookup_by_host_port_dir_then_default() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("127.0.0.1:5000")).unwrap();
        std::fs::write(
            d.path().join("127.0.0.1:5000/hosts.toml"),
            "server = \"http://127.0.0.1:5000\"\n",
        )
        .unwrap();
        std::fs::create_dir_all(d.path().join("_default")).unwrap();
        std::fs::write(
            d.path().join("_default/hosts.toml"),
            "[host.\"http://127.0.0.1:6000\"]\ncapabilities=[\"pull\",\"resolve\"]\n",
        )
        .unwrap();
        let e = endpoints(d.path(), "127.0.0.1:5000").unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].url.as_str(), "http://127.0.0.1:5000/v2");
        let e = endpoints(d.path(), "quay.io").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].url.as_str(), "http://127.0.0.1:6000/v2");
        assert!(e[0].mirror);
        assert_eq!(e[1].url.as_str(), "https://quay.io/v2");
    }

    #[test]
    fn rejects_bad_config() {
        let f = Path::new("/h/hosts.toml");
        assert!(matches!(
            parse_hosts("server = 3", f, "x.io"),
            Err(ImageError::HostsConfig { .. })
        ));
        assert!(parse_hosts("[host.\"ftp://a\"]\n", f, "x.io").is_err());
        assert!(parse_hosts("[host.\"https://a\"]\ncapabilities=[\"fly\"]\n", f, "x.io").is_err());
    }
}
