//! The runtime handler table (RuntimeClass handler name → OCI runtime), probed at start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crius_oci::{Handler, HandlerStatus};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::handler_features::{HandlerFeatures, Probes};

#[derive(Clone)]
pub struct Handlers {
    /// The handler for pods that name none (for `default_runtime = "auto"`: the one chosen at start).
    pub default: String,
    /// How `default` was decided (`default_runtime` as configured, and for `auto` why this one).
    pub default_choice: DefaultChoice,
    pub by_name: BTreeMap<String, Arc<Handler>>,
    /// Whether crius can make recursively read-only mounts host-side (for handlers without `rro`).
    pub host_rro: std::result::Result<(), String>,
    /// Per available handler: whether the user-namespace trial container passed.
    pub userns: BTreeMap<String, std::result::Result<(), String>>,
    /// Per available handler: whether the seccomp trial container passed.
    pub seccomp: BTreeMap<String, std::result::Result<(), String>>,
    /// Per available handler: whether a process the seccomp trial started by exec was filtered.
    pub exec_seccomp: BTreeMap<String, std::result::Result<(), String>>,
    /// Per configured handler: what it can honour (see crate::handler_features).
    pub features: BTreeMap<String, HandlerFeatures>,
}

/// Resolves a bare binary name like the shell would, plus the sbin dirs a root daemon expects.
pub fn find_binary(p: &Path) -> PathBuf {
    if p.is_absolute() || p.components().count() > 1 {
        return p.to_path_buf();
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let extra = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ];
    for dir in path.split(':').filter(|d| !d.is_empty()).chain(extra) {
        let cand = Path::new(dir).join(p);
        if cand.is_file() {
            return cand;
        }
    }
    p.to_path_buf()
}

/// What the trial containers found for one handler: whether it runs a container at all (its
/// status), and for a runnable one the user-namespace and seccomp trials.
type Trials = (
    Handler,
    Option<std::result::Result<(), String>>,
    Option<crius_oci::SeccompTrial>,
);

/// Runs a handler's trial containers (availability, then user namespaces and seccomp together).
async fn run_trials(mut h: Handler) -> Trials {
    h.run_trial().await;
    let name = h.name.clone();
    match &h.status {
        HandlerStatus::Available { version } => {
            tracing::info!("runtime handler {name}: {} ({version})", h.binary.display())
        }
        HandlerStatus::Unavailable { reason } => {
            tracing::warn!("runtime handler {name} unavailable: {reason}");
            return (h, None, None);
        }
    }
    let native = native_of(&h);
    let (u, s) = futures::future::join(
        crate::userns::trial(&h, native),
        crius_oci::trial_seccomp_full(&h, std::time::Duration::from_secs(15)),
    )
    .await;
    if let Err(e) = &s.init {
        tracing::warn!("runtime handler {name}: seccomp filters not applied: {e}");
    }
    if let Err(e) = &s.exec {
        tracing::warn!(
            "runtime handler {name}: exec'd processes run without the container's seccomp filter: {e}"
        );
    }
    match &u {
        Ok(()) => tracing::info!(
            "runtime handler {name}: user namespaces work (idmapped mounts by {})",
            if native.idmap { "the handler" } else { "crius" }
        ),
        Err(e) => tracing::warn!("runtime handler {name}: no user namespaces: {e}"),
    }
    (h, Some(u), Some(s))
}

/// Why a sandbox handler's table entry is not yet usable (see [`LazyHandlers`]).
const NOT_YET_PROBED: &str =
    "its trial containers have not run yet (they start at the first Status or pod that needs the handler)";

/// The handler table, with sandbox handlers (gVisor: each trial container boots a sandbox, a good
/// share of a CPU second) probed on first need rather than at start: Status and every request
/// that runs something on a handler await [`LazyHandlers::ready`] first, so nothing is reported or
/// decided from a guess. Until then, dereferencing gives the table with those handlers marked not
/// probed (usable for what needs only their binary: stop, remove, recovery).
pub struct LazyHandlers {
    pending: Handlers,
    resolved: tokio::sync::OnceCell<Handlers>,
    /// The deferred handlers as found runnable by `--version` (not yet by a trial container).
    deferred: BTreeMap<String, Handler>,
    /// Where their findings are kept across restarts (crate::handler_cache).
    cache: PathBuf,
}

impl std::ops::Deref for LazyHandlers {
    type Target = Handlers;
    fn deref(&self) -> &Handlers {
        self.resolved.get().unwrap_or(&self.pending)
    }
}

impl LazyHandlers {
    /// The table with every handler probed (running the deferred trials once, on first call).
    pub async fn ready(&self) -> &Handlers {
        self.resolved
            .get_or_init(|| async {
                let mut t = self.pending.clone();
                let trials = self.deferred.values().map(|h| self.trials_of(h.clone()));
                for (h, u, s) in futures::future::join_all(trials).await {
                    t.set(h, u, s);
                }
                t
            })
            .await
    }

    /// A deferred handler's findings: kept ones when made under the same key, else its trials now.
    async fn trials_of(&self, h: Handler) -> Trials {
        use crate::handler_cache as cache;
        let name = h.name.clone();
        let key = cache::key(&h);
        if let Some(e) = key
            .as_ref()
            .and_then(|k| cache::load(&self.cache, &name, k))
        {
            tracing::info!(
                "runtime handler {name}: trial results kept in {} (same binary, args, kernel and crius)",
                self.cache.display()
            );
            let s = crius_oci::SeccompTrial {
                init: e.seccomp,
                exec: e.exec_seccomp,
            };
            return (h, Some(e.userns), Some(s));
        }
        let (h, u, s) = run_trials(h).await;
        tracing::info!("runtime handler {name}: probed on first use");
        if let (Some(key), HandlerStatus::Available { .. }, Some(u), Some(s)) =
            (key, &h.status, &u, &s)
        {
            if cache::keepable(u, &s.init) && cache::keepable(u, &s.exec) {
                let entry = cache::Entry {
                    key,
                    userns: u.clone(),
                    seccomp: s.init.clone(),
                    exec_seccomp: s.exec.clone(),
                };
                cache::store(&self.cache, &name, entry);
            }
        }
        (h, u, s)
    }

    /// Whether some handler's trials have not run (or not finished) yet.
    pub fn is_pending(&self) -> bool {
        self.resolved.get().is_none() && !self.deferred.is_empty()
    }

    /// Whether the default handler is one whose trials are deferred: Status cannot call the runtime
    /// ready without them.
    pub fn default_is_deferred(&self) -> bool {
        self.is_deferred(self.default.as_str())
    }

    /// Whether a handler's trials still wait for [`LazyHandlers::ready`].
    pub fn is_deferred(&self, name: &str) -> bool {
        self.resolved.get().is_none() && self.deferred.contains_key(name)
    }

    /// Awaits [`LazyHandlers::ready`] when the handler a request names (empty = the default) is one
    /// whose trials have not run yet; a request for another handler never waits for them.
    pub async fn ready_for(&self, name: &str) {
        let name = if name.is_empty() {
            self.default.as_str()
        } else {
            name
        };
        if self.is_deferred(name) {
            self.ready().await;
        }
    }
}

#[cfg(test)]
impl LazyHandlers {
    /// A table whose handlers are all probed already (unit tests of the lifecycle).
    pub(crate) fn probed(table: Handlers) -> LazyHandlers {
        LazyHandlers {
            pending: table,
            resolved: tokio::sync::OnceCell::new(),
            deferred: BTreeMap::new(),
            cache: PathBuf::new(),
        }
    }
}

impl Handlers {
    /// Probes every configured handler: OCI runtimes (a trial container is a few ms of runc) now,
    /// sandbox handlers on first need (see [`LazyHandlers`]).
    pub async fn probe(cfg: &Config) -> LazyHandlers {
        // What trials of a daemon killed mid-probe left behind (cgroups, bundle dirs) goes first.
        if let Ok(said) = tokio::task::spawn_blocking(crius_oci::sweep_dead_trials).await {
            for line in said {
                tracing::info!("{line}");
            }
        }
        let probes = cfg.runtimes.iter().map(|(name, entry)| {
            let bin = find_binary(&entry.path);
            let root = cfg.runtime_root(name);
            let systemd = crate::cgroups::systemd::detect(cfg.cgroup_driver)
                == crate::cgroups::systemd::Driver::Systemd;
            let (args, kind) = (entry.args.clone(), entry.kind());
            async move {
                let mut h = Handler::probe_untried(name, &bin, &root, args, kind).await;
                h.systemd_cgroup = systemd;
                h
            }
        });
        let untried = futures::future::join_all(probes).await;
        let host_rro = match tempfile::Builder::new()
            .prefix("crius-rro-probe-")
            .tempdir_in(&cfg.state)
        {
            Ok(d) => crate::idmap::host_rro_supported(d.path()),
            Err(e) => Err(format!("scratch dir in {}: {e}", cfg.state.display())),
        };
        if let Err(e) = &host_rro {
            tracing::warn!("host-side recursive read-only mounts unavailable: {e}");
        }
        // Idmapped layer copies a crashed daemon left mounted (it died between mapping the layers
        // and mounting the overlay over them).
        crate::idmap::release_leftovers(&cfg.root.join("idmap"));
        let mut deferred = BTreeMap::new();
        let mut now = Vec::new();
        for h in untried {
            let runnable = matches!(h.status, HandlerStatus::Available { .. });
            if runnable && h.kind == crius_oci::HandlerKind::Sandbox {
                tracing::info!(
                    "runtime handler {}: {} answers; trial containers deferred to first use",
                    h.name,
                    h.binary.display()
                );
                deferred.insert(h.name.clone(), h);
            } else {
                now.push(h);
            }
        }
        let mut table = Handlers {
            default: String::new(),
            default_choice: DefaultChoice {
                configured: String::new(),
                chosen: String::new(),
                why: String::new(),
            },
            by_name: BTreeMap::new(),
            host_rro,
            userns: BTreeMap::new(),
            seccomp: BTreeMap::new(),
            exec_seccomp: BTreeMap::new(),
            features: BTreeMap::new(),
        };
        for (h, u, s) in futures::future::join_all(now.into_iter().map(run_trials)).await {
            table.set(h, u, s);
        }
        for h in deferred.values() {
            let mut p = h.clone();
            p.status = HandlerStatus::Unavailable {
                reason: NOT_YET_PROBED.into(),
            };
            table.set(p, None, None);
        }
        let default_choice = choose_default(&cfg.default_runtime, &table.by_name);
        tracing::info!(
            "default runtime handler: {} ({})",
            default_choice.chosen,
            default_choice.why
        );
        table.default = default_choice.chosen.clone();
        table.default_choice = default_choice;
        let resolved = if deferred.is_empty() {
            tokio::sync::OnceCell::new_with(Some(table.clone()))
        } else {
            tokio::sync::OnceCell::new()
        };
        LazyHandlers {
            pending: table,
            resolved,
            deferred,
            cache: cfg.root.join("handler-probes.json"),
        }
    }

    /// Records one handler's probe results and its feature record.
    fn set(
        &mut self,
        h: Handler,
        userns: Option<std::result::Result<(), String>>,
        seccomp: Option<crius_oci::SeccompTrial>,
    ) {
        let name = h.name.clone();
        self.userns.remove(&name);
        self.seccomp.remove(&name);
        self.exec_seccomp.remove(&name);
        if let Some(u) = userns {
            self.userns.insert(name.clone(), u);
        }
        if let Some(s) = seccomp {
            self.seccomp.insert(name.clone(), s.init);
            self.exec_seccomp.insert(name.clone(), s.exec);
        }
        let f = HandlerFeatures::compute(
            &h,
            &Probes {
                host_rro: Some(&self.host_rro),
                userns: self.userns.get(&name),
                seccomp: self.seccomp.get(&name),
                exec_seccomp: self.exec_seccomp.get(&name),
            },
        );
        self.features.insert(name.clone(), f);
        self.by_name.insert(name, Arc::new(h));
    }

    /// Whether pods on `h` can use recursive read-only mounts (by the handler or by crius).
    pub fn rro(&self, h: &Handler) -> bool {
        native_of(h).rro || self.host_rro.is_ok()
    }

    /// Whether the user-namespace trial passed on the handler named `name`.
    pub fn userns_ok(&self, name: &str) -> bool {
        let name = if name.is_empty() {
            self.default.as_str()
        } else {
            name
        };
        matches!(self.userns.get(name), Some(Ok(())))
    }

    /// The feature set of the handler named `name` (empty = the default).
    pub fn features_of(&self, name: &str) -> Result<&HandlerFeatures> {
        let name = if name.is_empty() {
            self.default.as_str()
        } else {
            name
        };
        self.features.get(name).ok_or_else(|| {
            Error::Internal(format!("runtime handler {name:?} has no feature record"))
        })
    }

    /// Why pods with a user namespace cannot run on the handler named `name`.
    pub fn userns_reason(&self, name: &str) -> String {
        match self.userns.get(name) {
            Some(Err(e)) => e.clone(),
            Some(Ok(())) => String::new(),
            None => "the handler is unavailable".into(),
        }
    }
}

/// The outcome of `default_runtime` (reported in verbose Status as `defaultRuntime`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DefaultChoice {
    /// `default_runtime` as configured (`auto` or a handler name).
    pub configured: String,
    /// The handler pods without one run on.
    pub chosen: String,
    /// Why: for `auto`, which candidates' trial containers failed.
    pub why: String,
}

/// Resolves `default_runtime`: a handler name stands; `auto` takes the first of
/// [`crate::config::AUTO_CANDIDATES`] whose trial container passed (crun, then runc), and when none
/// did, the last configured candidate so that Status reports why it cannot run.
pub fn choose_default(configured: &str, by_name: &BTreeMap<String, Arc<Handler>>) -> DefaultChoice {
    use crate::config::{AUTO_CANDIDATES, AUTO_RUNTIME};
    if configured != AUTO_RUNTIME || by_name.contains_key(AUTO_RUNTIME) {
        return DefaultChoice {
            configured: configured.to_string(),
            chosen: configured.to_string(),
            why: "configured".into(),
        };
    }
    let mut skipped = Vec::new();
    let mut last = None;
    for cand in AUTO_CANDIDATES {
        match by_name.get(*cand).map(|h| &h.status) {
            Some(HandlerStatus::Available { .. }) => {
                let why = if skipped.is_empty() {
                    format!(
                        "auto: the first of {} whose trial container passed",
                        AUTO_CANDIDATES.join(", ")
                    )
                } else {
                    format!("auto: {}", skipped.join("; "))
                };
                return DefaultChoice {
                    configured: configured.to_string(),
                    chosen: cand.to_string(),
                    why,
                };
            }
            Some(HandlerStatus::Unavailable { reason }) => {
                skipped.push(format!("{cand} unavailable: {reason}"));
                last = Some(*cand);
            }
            None => skipped.push(format!("{cand} not configured")),
        }
    }
    DefaultChoice {
        configured: configured.to_string(),
        chosen: last
            .unwrap_or(AUTO_CANDIDATES[AUTO_CANDIDATES.len() - 1])
            .to_string(),
        why: format!(
            "auto: no candidate can run containers ({})",
            skipped.join("; ")
        ),
    }
}

/// What the handler does itself, from its `features`: `rro` and idmapped mounts.
pub fn native_of(h: &Handler) -> crate::idmap::Native {
    crate::idmap::Native {
        rro: h
            .features
            .as_ref()
            .is_some_and(|f| f.recursive_read_only_mounts),
        idmap: h.features.as_ref().is_some_and(|f| f.user_namespaces),
    }
}

/// Whether the handler takes `linux.rootfsPropagation` only as the plain runtime-spec values
/// (applied recursively): youki (0.7.0 refuses `rshared`/`rslave`). Told by the version line the
/// handler printed when probed (`youki version: X`); `features` does not say.
pub fn plain_rootfs_propagation(h: &Handler) -> bool {
    matches!(&h.status, HandlerStatus::Available { version } if version.starts_with("youki "))
}

impl Handlers {
    /// The handler a request names (empty = the default), failing fast when it is unknown or cannot run.
    pub fn get(&self, name: &str) -> Result<Arc<Handler>> {
        let name = if name.is_empty() {
            self.default.as_str()
        } else {
            name
        };
        let h = self.by_name.get(name).ok_or_else(|| {
            Error::invalid(
                "runtime_handler",
                format!(
                    "no runtime handler named {name:?} is configured (configured: {})",
                    self.by_name.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        match &h.status {
            HandlerStatus::Available { .. } => Ok(h.clone()),
            HandlerStatus::Unavailable { reason } => Err(Error::FailedPrecondition(format!(
                "runtime handler {name:?} ({}) is unavailable on this node: {reason}",
                h.binary.display()
            ))),
        }
    }

    /// The handler by name without the availability check (for stop/remove of existing containers).
    pub fn existing(&self, name: &str) -> Result<Arc<Handler>> {
        self.by_name.get(name).cloned().ok_or_else(|| {
            Error::Internal(format!("runtime handler {name:?} is no longer configured"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(avail: &[(&str, bool)]) -> BTreeMap<String, Arc<Handler>> {
        avail
            .iter()
            .map(|(name, ok)| {
                let status = if *ok {
                    HandlerStatus::Available {
                        version: "1".into(),
                    }
                } else {
                    HandlerStatus::Unavailable {
                        reason: "trial failed".into(),
                    }
                };
                let h = Handler {
                    name: name.to_string(),
                    binary: PathBuf::from(name),
                    root: PathBuf::from("/nonexistent"),
                    status,
                    features: None,
                    systemd_cgroup: false,
                    global_args: Vec::new(),
                    kind: crius_oci::HandlerKind::Oci,
                };
                (name.to_string(), Arc::new(h))
            })
            .collect()
    }

    #[test]
    fn only_youki_gets_plain_rootfs_propagation() {
        let with_version = |v: &str| {
            let mut h = (*table(&[("x", true)])["x"]).clone();
            h.status = HandlerStatus::Available {
                version: v.to_string(),
            };
            h
        };
        assert!(plain_rootfs_propagation(&with_version(
            "youki version: 0.7.0"
        )));
        assert!(!plain_rootfs_propagation(&with_version(
            "runc version 1.1.5+ds1"
        )));
        assert!(!plain_rootfs_propagation(&with_version(
            "crun version 1.8.1"
        )));
    }

    #[test]
    fn auto_prefers_crun_when_it_runs() {
        let c = choose_default("auto", &table(&[("crun", true), ("runc", true)]));
        assert_eq!(c.chosen, "crun");
    }

    #[test]
    fn auto_falls_back_to_runc_and_says_why() {
        let c = choose_default("auto", &table(&[("crun", false), ("runc", true)]));
        assert_eq!(c.chosen, "runc");
        assert!(
            c.why.contains("crun unavailable: trial failed"),
            "{}",
            c.why
        );
        let c = choose_default("auto", &table(&[("runc", true), ("youki", true)]));
        assert_eq!(c.chosen, "runc");
        assert!(c.why.contains("crun not configured"), "{}", c.why);
    }

    #[test]
    fn auto_with_nothing_runnable_names_a_candidate_and_the_reasons() {
        let c = choose_default("auto", &table(&[("crun", false), ("runc", false)]));
        assert_eq!(c.chosen, "runc");
        assert!(c.why.contains("no candidate"), "{}", c.why);
    }

    #[test]
    fn an_explicit_name_stands_even_when_unavailable() {
        let c = choose_default("crun", &table(&[("crun", false), ("runc", true)]));
        assert_eq!(c.chosen, "crun");
        // a handler the operator named "auto" is a name like any other
        let c = choose_default("auto", &table(&[("auto", true), ("runc", true)]));
        assert_eq!(c.chosen, "auto");
    }
}
