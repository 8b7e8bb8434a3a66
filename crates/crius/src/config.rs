//! Daemon configuration: embedded defaults, an optional TOML file, and command-line overrides.
//!
//! Every key of the file is also a `crius daemon` flag; flags win over the file, the file wins over the
//! defaults. Unknown keys are an error (a typo must not silently fall back to a default).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default path of the optional config file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/crius/crius.toml";

/// `default_runtime = "auto"`: the first of these handlers whose trial container passes at start.
pub const AUTO_RUNTIME: &str = "auto";
/// The handlers `auto` chooses from, in order of preference.
pub const AUTO_CANDIDATES: &[&str] = &["crun", "runc"];

/// A runtime handler (RuntimeClass handler name → OCI runtime binary).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuntimeEntry {
    /// Path or bare name (looked up in PATH) of the OCI runtime binary.
    pub path: PathBuf,
    /// The runtime's `--root` (its own state dir). Default: `<state>/runtime/<name>`.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// `oci` (runc, crun, youki: containers are host processes) or `sandbox` (gVisor's runsc:
    /// containers run under their own kernel). Default: `sandbox` for a binary named runsc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<crius_oci::HandlerKind>,
    /// Global flags given to the runtime before every subcommand (e.g. `["--network=host"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Allow ExecSync/Exec into a container with a seccomp filter on a handler whose exec'd
    /// processes run without it (youki 0.7.0, gVisor's runsc; `crius features --handlers` row
    /// execSeccomp). Default false: such an exec is refused with FailedPrecondition.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unfiltered_exec: bool,
}

impl RuntimeEntry {
    /// The configured kind, else the one the binary's name implies.
    pub fn kind(&self) -> crius_oci::HandlerKind {
        self.kind
            .unwrap_or_else(|| crius_oci::HandlerKind::of_binary(&self.path))
    }
}

/// gVisor's flags for a pod on this kind of node: the sandbox uses the host kernel's network stack
/// inside the pod's network namespace (runsc's own netstack refuses to start in a namespace it did
/// not create), and applies the spec's seccomp filter inside the sandbox (without the flag runsc
/// ignores `linux.seccomp`).
pub const RUNSC_DEFAULT_ARGS: &[&str] = &["--network=host", "--oci-seccomp"];

/// The whole daemon configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Persistent state: metadata store, images, snapshots, CNI result cache.
    pub root: PathBuf,
    /// Runtime state (tmpfs in production): sockets, bundles, namespace pins, monitor files.
    pub state: PathBuf,
    /// The CRI gRPC unix socket.
    pub listen: PathBuf,
    /// containerd-compatible registry hosts directory (`<dir>/<host>/hosts.toml`).
    pub registry_config_dir: PathBuf,
    /// CNI configuration directory.
    pub cni_conf_dir: PathBuf,
    /// CNI plugin directories, searched in order.
    pub cni_bin_dir: Vec<PathBuf>,
    /// The handler used when a pod names no runtime handler; [`AUTO_RUNTIME`] (the default) picks
    /// crun when its trial container passes at start, else runc (as CRI-O prefers crun).
    pub default_runtime: String,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a tracing filter directive).
    pub log_level: String,
    /// Log line format: `text` or `json` (one object a line).
    pub log_format: crate::logging::LogFormat,
    /// Address of the exec/attach/port-forward streaming server (port 0 = ephemeral); a bare IP means
    /// port 0, as containerd's `stream_server_address`.
    #[serde(deserialize_with = "de_streaming_address")]
    pub streaming_address: SocketAddr,
    /// Runtime handlers by name.
    pub runtimes: BTreeMap<String, RuntimeEntry>,
    /// Feature gates for alpha features (name → enabled).
    pub feature_gates: BTreeMap<String, bool>,
    /// The per-container monitor binary. Default: `crius-monitor` next to the `crius` binary.
    pub monitor_path: Option<PathBuf>,
    /// The pause binary used by pods that share one PID namespace. Default: next to `crius`.
    pub pause_path: Option<PathBuf>,
    /// Seconds a registry may send nothing before a pull fails.
    pub pull_stall_timeout_secs: u64,
    /// `auto` (systemd when systemd is PID 1), `systemd` or `cgroupfs`.
    pub cgroup_driver: crate::cgroups::systemd::DriverChoice,
    /// SELinux labelling (containerd's `enable_selinux`). false: SELinux fields are accepted and ignored.
    pub selinux: bool,
    /// Address of the Prometheus metrics endpoint (`http://<addr>/metrics`), e.g. `127.0.0.1:9090`.
    /// Off unless set.
    pub metrics_address: Option<SocketAddr>,
    /// Container events held for a GetContainerEvents client that is not reading; a client further
    /// behind gets its stream closed (DataLoss) rather than a gap.
    pub container_events_buffer: usize,
    /// CRI socket connections served at once (a runaway client cannot take the daemon's fds); the next
    /// one waits in the listen backlog until one closes. Test tools such as critest hold a few hundred.
    pub max_grpc_connections: usize,
    /// OTLP/HTTP endpoint for trace export, e.g. `http://127.0.0.1:4318/v1/traces` (JSON encoding, no
    /// TLS). Off unless set.
    pub tracing_endpoint: Option<String>,
    /// CDI spec directories, lowest priority first (a device in a later dir overrides an earlier one).
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// The CRIU binary probed at start for checkpointing (path or name in PATH).
    pub criu_path: PathBuf,
    /// An exec/attach/port-forward session whose connection carries nothing for this long is
    /// closed (`4h`, `30m`, `90s`, `1h30m`; the kubelet's default is 4h).
    pub stream_idle_timeout: String,
    /// Exec/attach/port-forward sessions served at once; more are refused (HTTP 503).
    pub max_streaming_sessions: usize,
    /// Uncompressed bytes one image layer may inflate to (default 64 GiB); a bigger layer fails the
    /// pull with ResourceExhausted and nothing of it is kept (decompression bombs).
    pub max_layer_unpacked_bytes: u64,
    /// Tar entries one image layer may hold (default 4,000,000); more fail the pull the same way.
    pub max_layer_entries: u64,
    /// Pod networking: `auto` (the CNI configuration in `cni_conf_dir` when there is one, else crius'
    /// native network), `cni` (always CNI; an empty dir means the embedded conflist) or `native`.
    pub network_backend: crius_network::Backend,
    /// The native network (netlink, no CNI plugins): bridge, subnet, MTU, reservation dir.
    pub native_network: NativeNetwork,
}

/// `[native_network]`: the defaults are those of the embedded CNI conflist (bridge `crius0`,
/// 10.85.0.0/16, gateway .0.1) and host-local's reservation dir for it, so both share one pool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NativeNetwork {
    pub bridge: String,
    pub subnet: String,
    pub mtu: u32,
    pub ipam_dir: PathBuf,
}

impl Default for NativeNetwork {
    fn default() -> Self {
        let d = crius_network::NativeConfig::default();
        NativeNetwork {
            bridge: d.bridge,
            subnet: d.subnet.to_string(),
            mtu: d.mtu,
            ipam_dir: d.ipam_dir,
        }
    }
}

impl NativeNetwork {
    /// The checked form; the error names the key.
    pub fn to_native(&self) -> Result<crius_network::NativeConfig, ConfigError> {
        let subnet =
            crius_network::Subnet::parse(&self.subnet).map_err(|reason| ConfigError::Invalid {
                key: "native_network.subnet".into(),
                reason,
            })?;
        let n = crius_network::NativeConfig {
            bridge: self.bridge.clone(),
            subnet,
            mtu: self.mtu,
            ipam_dir: self.ipam_dir.clone(),
        };
        n.validate().map_err(|reason| ConfigError::Invalid {
            key: "native_network".into(),
            reason,
        })?;
        Ok(n)
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut runtimes = BTreeMap::new();
        for (name, bin) in [
            ("runc", "runc"),
            ("crun", "crun"),
            ("youki", "youki"),
            ("runsc", "runsc"),
        ] {
            runtimes.insert(
                name.to_string(),
                RuntimeEntry {
                    path: PathBuf::from(bin),
                    root: None,
                    kind: None,
                    args: if name == "runsc" {
                        RUNSC_DEFAULT_ARGS.iter().map(|a| a.to_string()).collect()
                    } else {
                        Vec::new()
                    },
                    allow_unfiltered_exec: false,
                },
            );
        }
        Config {
            root: PathBuf::from("/var/lib/crius"),
            state: PathBuf::from("/run/crius"),
            listen: PathBuf::from("/run/crius/crius.sock"),
            registry_config_dir: PathBuf::from("/etc/crius/certs.d"),
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            cni_bin_dir: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            default_runtime: AUTO_RUNTIME.to_string(),
            log_level: "info".to_string(),
            log_format: crate::logging::LogFormat::Text,
            streaming_address: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            runtimes,
            feature_gates: BTreeMap::new(),
            monitor_path: None,
            pause_path: None,
            pull_stall_timeout_secs: 60,
            cgroup_driver: crate::cgroups::systemd::DriverChoice::Auto,
            selinux: false,
            metrics_address: None,
            container_events_buffer: 1024,
            max_grpc_connections: 1024,
            tracing_endpoint: None,
            cdi_spec_dirs: vec![PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")],
            criu_path: PathBuf::from("criu"),
            stream_idle_timeout: "4h".to_string(),
            max_streaming_sessions: 128,
            max_layer_unpacked_bytes: crius_image::UnpackLimits::DEFAULT_MAX_LAYER_UNPACKED_BYTES,
            max_layer_entries: crius_image::UnpackLimits::DEFAULT_MAX_LAYER_ENTRIES,
            network_backend: crius_network::Backend::Auto,
            native_network: NativeNetwork::default(),
        }
    }
}

/// `ip:port`, `[v6]:port` or a bare IP (port 0: an ephemeral port).
pub fn parse_streaming_address(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 0))
        .map_err(|_| format!("{s:?} is neither ip:port nor an IP address"))
}

fn de_streaming_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    parse_streaming_address(&s).map_err(serde::de::Error::custom)
}

/// A configuration problem, naming the key (or file) and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl Config {
    /// Loads `path`. A missing file is fine only when it is the default path (embedded defaults apply).
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|message| ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses TOML text over the defaults.
    pub fn parse(text: &str) -> Result<Config, String> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        // A file that defines [runtimes.x] replaces only that entry, not the default table.
        let defaults = Config::default();
        for (name, entry) in defaults.runtimes {
            cfg.runtimes.entry(name).or_insert(entry);
        }
        Ok(cfg)
    }

    /// Checks the values that a type alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let abs = |key: &str, p: &Path| {
            if p.is_absolute() {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key: key.to_string(),
                    reason: format!("{} is not an absolute path", p.display()),
                })
            }
        };
        abs("root", &self.root)?;
        abs("state", &self.state)?;
        abs("listen", &self.listen)?;
        abs("registry_config_dir", &self.registry_config_dir)?;
        abs("cni_conf_dir", &self.cni_conf_dir)?;
        if self.cni_bin_dir.is_empty() {
            return Err(ConfigError::Invalid {
                key: "cni_bin_dir".into(),
                reason: "needs at least one directory".into(),
            });
        }
        for d in &self.cni_bin_dir {
            abs("cni_bin_dir", d)?;
        }
        for d in &self.cdi_spec_dirs {
            abs("cdi_spec_dirs", d)?;
        }
        self.native_network.to_native()?;
        if self.default_runtime == AUTO_RUNTIME && !self.runtimes.contains_key(AUTO_RUNTIME) {
            if !AUTO_CANDIDATES
                .iter()
                .any(|c| self.runtimes.contains_key(*c))
            {
                return Err(ConfigError::Invalid {
                    key: "default_runtime".into(),
                    reason: format!(
                        "\"auto\" chooses among {} and none of them is configured",
                        AUTO_CANDIDATES.join(", ")
                    ),
                });
            }
        } else if !self.runtimes.contains_key(&self.default_runtime) {
            return Err(ConfigError::Invalid {
                key: "default_runtime".into(),
                reason: format!(
                    "no runtime handler named {:?} (known: {})",
                    self.default_runtime,
                    self.runtimes.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        for name in self.runtimes.keys() {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                return Err(ConfigError::Invalid {
                    key: format!("runtimes.{name}"),
                    reason: "handler names may hold only letters, digits, '-', '_' and '.'".into(),
                });
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(ConfigError::Invalid {
                key: "log_level".into(),
                reason: format!("{:?} is not a log level or filter", self.log_level),
            });
        }
        for gate in self.feature_gates.keys() {
            let reason = match crate::features::by_gate(gate).map(|f| f.maturity) {
                None => "unknown feature gate (see `crius features`)",
                Some(crate::features::Maturity::Alpha) => continue,
                Some(crate::features::Maturity::Unsupported) => {
                    "this feature is not supported by crius and cannot be enabled"
                }
                Some(_) => "this feature is beta or GA in crius: always on, it has no gate",
            };
            return Err(ConfigError::Invalid {
                key: format!("feature_gates.{gate}"),
                reason: reason.into(),
            });
        }
        if let Some(url) = &self.tracing_endpoint {
            crate::metrics::trace::parse_endpoint(url).map_err(|reason| ConfigError::Invalid {
                key: "tracing_endpoint".into(),
                reason,
            })?;
        }
        if self.max_grpc_connections == 0 {
            return Err(ConfigError::Invalid {
                key: "max_grpc_connections".into(),
                reason: "must be at least 1".into(),
            });
        }
        if self.container_events_buffer == 0 {
            return Err(ConfigError::Invalid {
                key: "container_events_buffer".into(),
                reason: "must be at least 1".into(),
            });
        }
        if self.pull_stall_timeout_secs == 0 {
            return Err(ConfigError::Invalid {
                key: "pull_stall_timeout_secs".into(),
                reason: "must be at least 1".into(),
            });
        }
        match parse_duration(&self.stream_idle_timeout) {
            Ok(d) if d >= std::time::Duration::from_secs(1) => {}
            Ok(_) => {
                return Err(ConfigError::Invalid {
                    key: "stream_idle_timeout".into(),
                    reason: "must be at least 1s".into(),
                })
            }
            Err(reason) => {
                return Err(ConfigError::Invalid {
                    key: "stream_idle_timeout".into(),
                    reason,
                })
            }
        }
        if self.max_streaming_sessions == 0 {
            return Err(ConfigError::Invalid {
                key: "max_streaming_sessions".into(),
                reason: "must be at least 1".into(),
            });
        }
        for (key, v) in [
            ("max_layer_unpacked_bytes", self.max_layer_unpacked_bytes),
            ("max_layer_entries", self.max_layer_entries),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    reason: "must be at least 1".into(),
                });
            }
        }
        Ok(())
    }

    /// `stream_idle_timeout` as a duration (validated by [`Config::validate`]; 4 h otherwise).
    pub fn stream_idle_timeout(&self) -> std::time::Duration {
        parse_duration(&self.stream_idle_timeout)
            .unwrap_or(std::time::Duration::from_secs(4 * 3600))
    }

    /// The runtime's own state dir for handler `name`.
    pub fn runtime_root(&self, name: &str) -> PathBuf {
        self.runtimes
            .get(name)
            .and_then(|r| r.root.clone())
            .unwrap_or_else(|| self.state.join("runtime").join(name))
    }

    /// A binary shipped next to the running `crius` executable.
    pub fn sibling_binary(name: &str) -> PathBuf {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join(name)))
            .unwrap_or_else(|| PathBuf::from(name))
    }

    pub fn monitor_binary(&self) -> PathBuf {
        self.monitor_path
            .clone()
            .unwrap_or_else(|| Self::sibling_binary("crius-monitor"))
    }

    pub fn pause_binary(&self) -> PathBuf {
        self.pause_path
            .clone()
            .unwrap_or_else(|| Self::sibling_binary("crius-pause"))
    }
}

/// Parses a duration written as the kubelet writes them: one or more `<number><unit>` with units
/// `h`, `m`, `s`, `ms` (e.g. `4h`, `1h30m`, `90s`, `500ms`).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration (write e.g. 4h, 30m, 90s)".into());
    }
    let mut total = std::time::Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!("{text:?}: expected a number at {rest:?}"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|e| format!("{text:?}: {e}"))?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (std::time::Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (std::time::Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (std::time::Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (std::time::Duration::from_secs(1), 1)
        } else {
            return Err(format!("{text:?}: unit must be h, m, s or ms"));
        };
        rest = &rest[len..];
        let part = unit
            .checked_mul(u32::try_from(n).map_err(|_| format!("{text:?}: {n} is too large"))?)
            .ok_or_else(|| format!("{text:?}: too large"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("{text:?}: too large"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_backend_and_native_network() {
        let cfg = Config::parse(
            "network_backend = \"native\"\n[native_network]\nbridge = \"br9\"\nsubnet = \"10.9.0.0/24\"\n",
        )
        .unwrap();
        assert_eq!(cfg.network_backend, crius_network::Backend::Native);
        let n = cfg.native_network.to_native().unwrap();
        assert_eq!(
            (n.bridge.as_str(), n.subnet.to_string(), n.mtu),
            ("br9", "10.9.0.0/24".to_string(), 1500)
        );
        assert_eq!(
            Config::default().network_backend,
            crius_network::Backend::Auto
        );
        assert!(Config::parse("network_backend = \"calico\"\n")
            .unwrap_err()
            .contains("calico"));
        for (toml, key) in [
            (
                "[native_network]\nsubnet = \"10.9.0.1/24\"\n",
                "native_network.subnet",
            ),
            (
                "[native_network]\nbridge = \"a-bridge-name-too-long\"\n",
                "native_network",
            ),
            ("[native_network]\nipam_dir = \"rel\"\n", "native_network"),
        ] {
            let err = Config::parse(toml)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("`{key}`")), "{toml}: {err}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn durations_and_streaming_limits() {
        use std::time::Duration;
        assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(4 * 3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1s500ms"), Ok(Duration::from_millis(1500)));
        for bad in ["", "4", "h", "4d", "1.5h", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Config::default().stream_idle_timeout(),
            Duration::from_secs(4 * 3600)
        );
        let cfg = Config::parse("stream_idle_timeout = \"10x\"").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("`stream_idle_timeout`"), "{err}");
        let cfg = Config::parse("stream_idle_timeout = \"500ms\"").unwrap();
        assert!(cfg.validate().is_err(), "under 1s");
        let cfg = Config::parse("max_streaming_sessions = 0").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("`max_streaming_sessions`"), "{err}");
    }

    #[test]
    fn unknown_key_is_rejected_by_name() {
        let err = Config::parse("roots = \"/x\"").unwrap_err();
        assert!(err.contains("roots"), "{err}");
    }

    #[test]
    fn relative_root_names_the_key() {
        let cfg = Config::parse("root = \"relative\"").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("`root`"), "{err}");
    }

    #[test]
    fn unknown_default_runtime_names_the_key() {
        let cfg = Config::parse("default_runtime = \"kata\"").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("default_runtime") && err.contains("kata"),
            "{err}"
        );
    }

    #[test]
    fn auto_is_the_default_and_needs_crun_or_runc() {
        assert_eq!(Config::default().default_runtime, AUTO_RUNTIME);
        let cfg = Config::parse("default_runtime = \"auto\"\n[runtimes.runc]\npath = \"runc\"\n")
            .unwrap();
        cfg.validate().unwrap();
        let mut cfg = Config::default();
        cfg.runtimes.retain(|k, _| k == "youki");
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("default_runtime") && err.contains("crun"),
            "{err}"
        );
    }

    #[test]
    fn streaming_address_may_be_a_bare_ip() {
        let cfg = Config::parse("streaming_address = \"10.0.0.1\"").unwrap();
        assert_eq!(cfg.streaming_address, "10.0.0.1:0".parse().unwrap());
        let cfg = Config::parse("streaming_address = \"[::1]:10010\"").unwrap();
        assert_eq!(cfg.streaming_address, "[::1]:10010".parse().unwrap());
        assert_eq!(
            parse_streaming_address("::1").unwrap(),
            "[::1]:0".parse().unwrap()
        );
        let err = Config::parse("streaming_address = \"localhost\"").unwrap_err();
        assert!(err.contains("streaming_address"), "{err}");
    }

    #[test]
    fn log_format_is_text_or_json() {
        assert_eq!(
            Config::parse("log_format = \"json\"").unwrap().log_format,
            crate::logging::LogFormat::Json
        );
        let err = Config::parse("log_format = \"xml\"").unwrap_err();
        assert!(err.contains("log_format"), "{err}");
    }

    #[test]
    fn metrics_address_is_off_unless_set() {
        assert_eq!(Config::default().metrics_address, None);
        let cfg = Config::parse("metrics_address = \"127.0.0.1:9090\"").unwrap();
        assert_eq!(cfg.metrics_address, Some("127.0.0.1:9090".parse().unwrap()));
        let err = Config::parse("metrics_address = \"nope\"").unwrap_err();
        assert!(err.contains("metrics_address"), "{err}");
    }

    #[test]
    fn an_empty_event_buffer_is_refused() {
        let cfg = Config::parse("container_events_buffer = 0").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("container_events_buffer"), "{err}");
        assert_eq!(Config::default().container_events_buffer, 1024);
    }

    #[test]
    fn zero_layer_limits_name_the_key() {
        for key in ["max_layer_unpacked_bytes", "max_layer_entries"] {
            let cfg = Config::parse(&format!("{key} = 0")).unwrap();
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn runtime_entries_carry_kind_and_args() {
        let cfg = Config::parse(
            "[runtimes.gvisor]\npath = \"/usr/bin/runsc\"\nargs = [\"--network=host\", \"--platform=kvm\"]\n\
             [runtimes.other]\npath = \"/usr/bin/runsc\"\nkind = \"oci\"\n",
        )
        .unwrap();
        let g = &cfg.runtimes["gvisor"];
        assert_eq!(g.kind(), crius_oci::HandlerKind::Sandbox);
        assert_eq!(g.args, vec!["--network=host", "--platform=kvm"]);
        assert_eq!(cfg.runtimes["other"].kind(), crius_oci::HandlerKind::Oci);
        assert_eq!(cfg.runtimes["runc"].kind(), crius_oci::HandlerKind::Oci);
        assert_eq!(
            cfg.runtimes["runsc"].kind(),
            crius_oci::HandlerKind::Sandbox
        );
        assert!(cfg.runtimes["runsc"]
            .args
            .iter()
            .any(|a| a == "--oci-seccomp"));
        let err = Config::parse("[runtimes.x]\npath = \"/x\"\nkind = \"vm\"\n").unwrap_err();
        assert!(err.contains("kind") || err.contains("vm"), "{err}");
    }

    #[test]
    fn runtime_table_merges_with_defaults() {
        let cfg = Config::parse("[runtimes.fast]\npath = \"/usr/bin/crun\"\n").unwrap();
        assert!(cfg.runtimes.contains_key("fast"));
        assert!(cfg.runtimes.contains_key("runc"));
    }
}
