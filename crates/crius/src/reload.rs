//! SIGHUP: read the config again and apply what can change under a running daemon.
//!
//! Applied at once: `log_level`, `log_format`, `registry_config_dir` (the next pull reads it) and
//! `cni_conf_dir` (the next pod and Status read it). The files under those dirs need no reload: hosts.toml
//! is read at every pull and the CNI conf dir is rescanned at every use. Every other key is logged as
//! needing a restart and keeps its running value. A file that does not load or validate is refused as a
//! whole: the error names the key, and the running config stays.

use std::sync::Arc;

use crate::config::Config;
use crate::logging::LogHandle;
use crate::runtime::Runtime;

/// Keys a reload applies to the running daemon.
pub const LIVE_KEYS: &[&str] = &[
    "log_level",
    "log_format",
    "registry_config_dir",
    "cni_conf_dir",
];

/// What changed between two configs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Changed keys that are applied now.
    pub apply: Vec<String>,
    /// Changed keys that take effect only after a restart.
    pub restart: Vec<String>,
}

/// Compares `old` and `new` key by key (top-level keys of the TOML form).
pub fn plan(old: &Config, new: &Config) -> Plan {
    let to_table = |c: &Config| toml::Table::try_from(c).unwrap_or_default();
    let (a, b) = (to_table(old), to_table(new));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut p = Plan::default();
    for k in keys {
        if a.get(k) != b.get(k) {
            if LIVE_KEYS.contains(&k.as_str()) {
                p.apply.push(k.clone());
            } else {
                p.restart.push(k.clone());
            }
        }
    }
    p
}

/// The daemon's reload state: how to load the config (file + the command line's flags) and the config
/// in effect.
pub struct Reloader {
    load: Box<dyn Fn() -> anyhow::Result<Config> + Send + Sync>,
    log: Option<LogHandle>,
    current: Config,
}

impl Reloader {
    pub fn new(
        current: Config,
        log: Option<LogHandle>,
        load: Box<dyn Fn() -> anyhow::Result<Config> + Send + Sync>,
    ) -> Reloader {
        Reloader { load, log, current }
    }

    /// One SIGHUP.
    pub fn reload(&mut self, rt: &Arc<Runtime>) {
        let new = match (self.load)() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("config reload refused, the running config stays: {e:#}");
                return;
            }
        };
        let p = plan(&self.current, &new);
        if let Some(log) = &self.log {
            if let Err(e) = log.set(&new.log_level, new.log_format) {
                tracing::error!("config reload refused, the running config stays: {e}");
                return;
            }
        }
        rt.images.set_hosts_dir(new.registry_config_dir.clone());
        rt.cni.set_conf_dir(new.cni_conf_dir.clone());
        for k in &p.restart {
            tracing::warn!("config key `{k}` changed: it takes effect only after a restart");
        }
        // Keys that need a restart keep their running values in what later reloads compare against.
        let mut effective = self.current.clone();
        effective.log_level = new.log_level;
        effective.log_format = new.log_format;
        effective.registry_config_dir = new.registry_config_dir;
        effective.cni_conf_dir = new.cni_conf_dir;
        self.current = effective;
        tracing::info!(
            applied = ?p.apply,
            needs_restart = ?p.restart,
            "config reloaded"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_and_restart_keys_are_told_apart() {
        let old = Config::default();
        let mut new = old.clone();
        new.log_level = "debug".into();
        new.cni_conf_dir = "/etc/cni/other".into();
        new.root = "/srv/crius".into();
        new.feature_gates.insert("CRIListStreaming".into(), true);
        let p = plan(&old, &new);
        assert_eq!(p.apply, vec!["cni_conf_dir", "log_level"]);
        assert_eq!(p.restart, vec!["feature_gates", "root"]);
        assert_eq!(plan(&old, &old), Plan::default());
    }

    #[test]
    fn every_live_key_is_a_config_key() {
        let keys = toml::Table::try_from(Config::default()).unwrap();
        for k in LIVE_KEYS {
            assert!(keys.contains_key(*k), "{k}");
        }
    }
}
