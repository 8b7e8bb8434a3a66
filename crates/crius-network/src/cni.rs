//! The pod network lifecycle: ADD (loopback, then the configured list, undone on failure), DEL and
//! CHECK replayed from the per-pod cache, and the cheap readiness status the CRI Status call reports.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::cache::{self, CacheEntry};
use crate::config::{self, find_plugin, version_at_least, ConfigSource, DirKey, NetworkList};
use crate::error::NetworkError;
use crate::exec::{run_plugin, Invocation};
use crate::native::{Native, NativeConfig, Record, NATIVE_TYPE};
use crate::netns::{has_link, is_netns, ScratchNetns};
use crate::result::{parse_result, sandbox_addresses};
use crate::runtime_config::{capability_args, cni_args, format_cni_args, plugin_stdin};
use crate::version::VersionCache;
use crate::{Backend, CniConfig, NetworkStatus, PodNetwork, PodNetworkStatus};

/// Bound on one plugin execution; a bridge ADD takes tens of milliseconds, so this only catches hangs.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Interface name of the pod's network in its namespace.
const POD_IFNAME: &str = "eth0";

/// `lo` must be up in every pod whatever the configured network does; run as its own list like
/// containerd does. 0.3.1 is understood by every loopback plugin still in the wild.
const LOOPBACK_CONFLIST: &str =
    r#"{"cniVersion":"0.3.1","name":"cni-loopback","plugins":[{"type":"loopback"}]}"#;

/// Handle to pod networking; cheap to clone, shareable across tasks.
#[derive(Clone)]
pub struct Cni {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: CniConfig,
    /// The conf dir in use: `cfg.conf_dir` until [`Cni::set_conf_dir`] (config reload) changes it.
    conf_dir: std::sync::RwLock<PathBuf>,
    timeout: Duration,
    cni_path: String,
    /// Last selection, keyed by the conf dir's candidate files and their mtimes.
    selected: Mutex<Option<Selection>>,
    /// One lock per pod id, alive while someone holds or waits for it: ADD/CHECK/DEL of one pod are
    /// serialized, unrelated pods never wait for each other's plugin execs.
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    versions: VersionCache,
    backend: Backend,
    native: Native,
    /// Background halves of native teardowns (see [`Cni::teardown`]).
    pending: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// What a pod's setup uses now.
enum Mode {
    Cni(NetworkList),
    Native,
}

/// A conf dir scan and what was selected from it (the error is the list of rejection reasons).
type Selection = (Option<DirKey>, Result<NetworkList, String>);

/// The per-invocation environment shared by all plugins of a list.
struct Call<'a> {
    container_id: &'a str,
    netns: String,
    args: String,
    caps: &'a Map<String, Value>,
}

impl Cni {
    pub fn new(cfg: CniConfig) -> Cni {
        Cni::with_plugin_timeout(cfg, DEFAULT_PLUGIN_TIMEOUT)
    }

    pub fn with_plugin_timeout(cfg: CniConfig, timeout: Duration) -> Cni {
        Cni::build(cfg, timeout, Backend::Cni, NativeConfig::default())
    }

    /// Pod networking with a choice of backend: `Cni` (the conf dir, or the embedded list when it is
    /// empty), `Native` (crius' netlink network whatever the conf dir holds) or `Auto` (the conf
    /// dir's configuration when it has one, else the native network).
    pub fn with_backend(cfg: CniConfig, backend: Backend, native: NativeConfig) -> Cni {
        Cni::build(cfg, DEFAULT_PLUGIN_TIMEOUT, backend, native)
    }

    fn build(cfg: CniConfig, timeout: Duration, backend: Backend, native: NativeConfig) -> Cni {
        let cni_path = cfg
            .bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        Cni {
            inner: Arc::new(Inner {
                conf_dir: std::sync::RwLock::new(cfg.conf_dir.clone()),
                cfg,
                timeout,
                cni_path,
                selected: Mutex::new(None),
                versions: VersionCache::default(),
                locks: Mutex::new(HashMap::new()),
                backend,
                native: Native::new(native),
                pending: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn config(&self) -> &CniConfig {
        &self.inner.cfg
    }

    /// The configuration that a setup would use now and whether all its plugins are installed.
    pub fn status(&self) -> Result<NetworkStatus, NetworkError> {
        let list = match self.mode()? {
            Mode::Native => return Ok(native_status()),
            Mode::Cni(list) => list,
        };
        let bins = self.resolve(&list)?;
        let lo = loopback_list();
        let lo_bins = self.resolve(&lo)?;
        self.inner
            .versions
            .check(&list, &bins, &self.inner.cni_path)?;
        self.inner
            .versions
            .check(&lo, &lo_bins, &self.inner.cni_path)?;
        Ok(NetworkStatus {
            source: list.source.clone(),
            name: list.name.clone(),
            cni_version: list.cni_version.clone(),
            plugins: list.plugin_types(),
        })
    }

    /// Native, or the configured list and loopback with their plugin binaries, versions checked.
    /// Blocking (a conf dir scan, plugin lookups, maybe VERSION probes).
    #[allow(clippy::type_complexity)]
    fn checked_lists(
        &self,
    ) -> Result<Option<(NetworkList, Vec<PathBuf>, NetworkList, Vec<PathBuf>)>, NetworkError> {
        let list = match self.mode()? {
            Mode::Native => return Ok(None),
            Mode::Cni(list) => list,
        };
        let bins = self.resolve(&list)?;
        let lo = loopback_list();
        let lo_bins = self.resolve(&lo)?;
        self.inner
            .versions
            .check(&list, &bins, &self.inner.cni_path)?;
        self.inner
            .versions
            .check(&lo, &lo_bins, &self.inner.cni_path)?;
        Ok(Some((list, bins, lo, lo_bins)))
    }

    /// CNI ADD for a pod: loopback, then the configured list. On any failure everything is deleted
    /// again (DEL of the whole list with the same arguments) before the error is returned. A pod that
    /// already has a cache entry (an earlier attempt, completed or not) is torn down first, so calling
    /// this twice yields one attachment, not two.
    pub async fn setup(&self, pod: &PodNetwork) -> Result<PodNetworkStatus, NetworkError> {
        cache::validate_id(&pod.id)?;
        let _guard = self.lock(&pod.id).await;
        // Off the async workers: a conf dir scan, plugin lookups and maybe VERSION probes (processes).
        let checked = {
            let me = self.clone();
            tokio::task::spawn_blocking(move || me.checked_lists())
                .await
                .map_err(|e| NetworkError::io(self.conf_dir(), std::io::Error::other(e)))??
        };
        let Some((list, bins, lo, lo_bins)) = checked else {
            return self.native_setup(pod).await;
        };

        // A previous attempt for this id (a retried RunPodSandbox, a crash mid-ADD) is undone first so
        // that its addresses and rules do not linger next to the new ones.
        if cache::read(&self.inner.cfg.cache_dir, &pod.id)?.is_some() {
            tracing::info!(pod = %pod.id, "undoing the previous network setup of this pod before ADD");
            self.teardown_locked(pod).await?;
        }

        let caps = capability_args(pod);
        let args = cni_args(pod);
        let mut entry = cache::new_entry(
            &pod.id,
            &pod.netns,
            POD_IFNAME,
            args.clone(),
            caps.clone(),
            list.to_value(),
            list.source.clone(),
        );
        // Written before the first plugin runs: if crius dies mid-ADD, the entry still drives a DEL.
        cache::write(&self.inner.cfg.cache_dir, &entry)?;

        let call = Call {
            container_id: &pod.id,
            netns: pod.netns.display().to_string(),
            args: format_cni_args(&args),
            caps: &caps,
        };
        let added = self.add_all(&lo, &lo_bins, &list, &bins, &call).await;
        #[allow(clippy::result_large_err)]
        let outcome = added.and_then(|result| {
            let (ips, interfaces) = match parse_result(&result) {
                Ok(parsed) => parsed,
                Err(reason) => {
                    let plugin = list.plugin_types().last().cloned().unwrap_or_default();
                    return Err((
                        NetworkError::BadResult {
                            plugin,
                            command: "ADD".into(),
                            reason,
                        },
                        Some(result),
                    ));
                }
            };
            Ok(PodNetworkStatus {
                ips,
                interfaces,
                raw_result: result,
            })
        });
        let status = match outcome {
            Ok(s) => s,
            Err((err, prev)) => {
                return Err(self
                    .undo_failed_add(&lo, &lo_bins, &list, &bins, &call, prev.as_ref(), err)
                    .await)
            }
        };
        entry.result = Some(status.raw_result.clone());
        if let Err(err) = cache::write(&self.inner.cfg.cache_dir, &entry) {
            // Without a cache entry a later teardown would not know what to delete: undo now.
            let prev = status.raw_result.clone();
            return Err(self
                .undo_failed_add(&lo, &lo_bins, &list, &bins, &call, Some(&prev), err)
                .await);
        }
        Ok(status)
    }

    /// CNI DEL from the cache entry of `setup`; Ok when there is none. The entry is removed only when
    /// every plugin's DEL succeeded, so a failed teardown can be retried (see [`Cni::cached_pods`]).
    ///
    /// A native setup is undone in two steps: its hostPorts before this returns, its veth pair and
    /// address in the background under the pod's lock (the kernel's unregistration of a link waits
    /// for RCU grace periods); the cache entry goes last, so a crash in between leaves it for the
    /// restart's cleanup. [`Cni::settle`] waits for those background steps.
    pub async fn teardown(&self, pod: &PodNetwork) -> Result<(), NetworkError> {
        cache::validate_id(&pod.id)?;
        let guard = self.lock(&pod.id).await;
        if let Ok(Some(entry)) = cache::read(&self.inner.cfg.cache_dir, &pod.id) {
            if entry.config_source == ConfigSource::Native {
                return self.native_teardown_detached(entry, guard).await;
            }
        }
        self.teardown_locked(pod).await
    }

    /// Waits until the background halves of native teardowns started so far are done.
    pub async fn settle(&self) {
        let pending: Vec<_> =
            std::mem::take(&mut *self.inner.pending.lock().unwrap_or_else(|p| p.into_inner()));
        for h in pending {
            let _ = h.await;
        }
    }

    /// CNI CHECK of the cached list (in order, with the cached result). Lists older than 0.4.0 or with
    /// `disableCheck` have nothing to check and succeed.
    pub async fn check(&self, pod: &PodNetwork) -> Result<(), NetworkError> {
        cache::validate_id(&pod.id)?;
        let _guard = self.lock(&pod.id).await;
        let dir = &self.inner.cfg.cache_dir;
        let Some(entry) = cache::read(dir, &pod.id)? else {
            return Err(NetworkError::NotSetUp { id: pod.id.clone() });
        };
        let Some(result) = entry.result.clone() else {
            return Err(NetworkError::NotSetUp { id: pod.id.clone() });
        };
        if entry.config_source == ConfigSource::Native {
            let host_veth = Record::from_value(&entry.config)
                .map(|r| r.host_veth)
                .unwrap_or_default();
            let present = !host_veth.is_empty()
                && Path::new("/sys/class/net").join(&host_veth).exists()
                && has_link(&entry.netns, &entry.ifname) == Some(true);
            return if present {
                Ok(())
            } else {
                Err(NetworkError::NotSetUp { id: pod.id.clone() })
            };
        }
        let list = cached_list(dir, &entry)?;
        if !version_at_least(&list.cni_version, 0, 4) || list.disable_check {
            return Ok(());
        }
        let bins = self.resolve(&list)?;
        let call = Call {
            container_id: &entry.id,
            netns: entry.netns.display().to_string(),
            args: format_cni_args(&entry.cni_args),
            caps: &entry.capability_args,
        };
        for (plugin, bin) in list.plugins.iter().zip(&bins) {
            let stdin = plugin_stdin(&list, plugin, Some(&result), call.caps);
            self.exec(
                "CHECK",
                bin,
                &config::plugin_type(plugin),
                POD_IFNAME,
                &call,
                &stdin,
            )
            .await?;
        }
        Ok(())
    }

    /// The ADD result recorded for a pod, if its setup completed.
    pub fn cached(&self, pod_id: &str) -> Option<PodNetworkStatus> {
        cache::validate_id(pod_id).ok()?;
        let entry = match cache::read(&self.inner.cfg.cache_dir, pod_id) {
            Ok(e) => e?,
            Err(err) => {
                tracing::warn!(pod = pod_id, %err, "unreadable CNI cache entry");
                return None;
            }
        };
        let result = entry.result?;
        match parse_result(&result) {
            Ok((ips, interfaces)) => Some(PodNetworkStatus {
                ips,
                interfaces,
                raw_result: result,
            }),
            Err(reason) => {
                tracing::warn!(pod = pod_id, %reason, "cached CNI result is unusable");
                None
            }
        }
    }

    /// Pods with a cache entry, complete or not: after a restart, those without a live pod need a
    /// teardown.
    pub fn cached_pods(&self) -> Vec<String> {
        cache::list(&self.inner.cfg.cache_dir).unwrap_or_else(|err| {
            tracing::warn!(%err, "cannot list the CNI cache");
            Vec::new()
        })
    }

    async fn teardown_locked(&self, pod: &PodNetwork) -> Result<(), NetworkError> {
        let dir = &self.inner.cfg.cache_dir;
        let entry = match cache::read(dir, &pod.id) {
            Ok(Some(entry)) => entry,
            Ok(None) => return Ok(()),
            // A damaged entry would otherwise block this pod's cleanup forever: delete with what the
            // current configuration and the pod's own arguments say, as a runtime without a cache would.
            Err(err @ NetworkError::InvalidConfig { .. }) => {
                if let Ok(Mode::Native) = self.mode() {
                    tracing::warn!(pod = %pod.id, %err, "cache entry unusable; native teardown with the current config");
                    let mut entry = self.native_entry(pod);
                    entry.capability_args = capability_args(pod);
                    return self.native_teardown(entry).await;
                }
                let Ok(list) = self.current() else {
                    return Err(err);
                };
                tracing::warn!(pod = %pod.id, %err, "CNI cache entry unusable; DEL with the current config");
                cache::new_entry(
                    &pod.id,
                    &pod.netns,
                    POD_IFNAME,
                    cni_args(pod),
                    capability_args(pod),
                    list.to_value(),
                    list.source.clone(),
                )
            }
            Err(err) => return Err(err),
        };
        if entry.config_source == ConfigSource::Native {
            return self.native_teardown(entry).await;
        }
        let list = cached_list(dir, &entry)?;
        let bins = self.resolve(&list)?;
        let lo = loopback_list();
        let lo_bins = if entry.loopback {
            self.resolve(&lo)?
        } else {
            Vec::new()
        };

        let (_scratch, netns) = match self.del_netns(pod, &entry) {
            DelNetns::Live(p) => (None, p),
            DelNetns::Scratch(ns) => {
                let p = ns.path().display().to_string();
                (Some(ns), p)
            }
            DelNetns::None => (None, String::new()),
        };
        let call = Call {
            container_id: &entry.id,
            netns,
            args: format_cni_args(&entry.cni_args),
            caps: &entry.capability_args,
        };
        let mut first_err = self
            .del_list(&list, &bins, &call, entry.result.as_ref())
            .await
            .err();
        if entry.loopback {
            if let Err(e) = self.del_list(&lo, &lo_bins, &call, None).await {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => cache::remove(dir, &entry.id),
        }
    }

    /// The cache entry of a native setup, before anything is made.
    fn native_entry(&self, pod: &PodNetwork) -> CacheEntry {
        let rec = self.inner.native.record(&pod.id, POD_IFNAME);
        let mut entry = cache::new_entry(
            &pod.id,
            &pod.netns,
            POD_IFNAME,
            cni_args(pod),
            capability_args(pod),
            rec.to_value(),
            ConfigSource::Native,
        );
        entry.loopback = false;
        entry
    }

    /// The native counterpart of ADD: same cache entry life cycle (written before anything is made,
    /// completed with the result, kept when an undo fails so recovery retries it).
    async fn native_setup(&self, pod: &PodNetwork) -> Result<PodNetworkStatus, NetworkError> {
        let dir = &self.inner.cfg.cache_dir;
        if cache::read(dir, &pod.id)?.is_some() {
            tracing::info!(pod = %pod.id, "undoing the previous network setup of this pod first");
            self.teardown_locked(pod).await?;
        }
        let mut entry = self.native_entry(pod);
        cache::write_volatile(dir, &entry)?;
        let inner = self.inner.clone();
        let (id, netns, ports) = (pod.id.clone(), pod.netns.clone(), pod.port_mappings.clone());
        let Some(rec) = Record::from_value(&entry.config) else {
            return Err(NetworkError::BadResult {
                plugin: NATIVE_TYPE.into(),
                command: "ADD".into(),
                reason: "unreadable native record".into(),
            });
        };
        let made =
            tokio::task::spawn_blocking(move || inner.native.setup(&id, &netns, &rec, &ports))
                .await
                .unwrap_or_else(|e| Err(task_err(e)));
        let outcome = made.and_then(|result| {
            let (ips, interfaces) =
                parse_result(&result).map_err(|reason| NetworkError::BadResult {
                    plugin: NATIVE_TYPE.into(),
                    command: "ADD".into(),
                    reason,
                })?;
            Ok(PodNetworkStatus {
                ips,
                interfaces,
                raw_result: result,
            })
        });
        let status = match outcome {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(pod = %pod.id, %err, "native network setup failed; undoing it");
                if let Err(e) = self.native_teardown(entry).await {
                    tracing::warn!(pod = %pod.id, err = %e, "undo of failed native setup incomplete; cache entry kept");
                }
                return Err(err);
            }
        };
        entry.result = Some(status.raw_result.clone());
        if let Err(err) = cache::write_volatile(dir, &entry) {
            entry.result = None;
            if let Err(e) = self.native_teardown(entry).await {
                tracing::warn!(pod = %pod.id, err = %e, "undo of native setup incomplete");
            }
            return Err(err);
        }
        Ok(status)
    }

    async fn native_teardown_detached(
        &self,
        entry: CacheEntry,
        guard: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<(), NetworkError> {
        let rec = Record::from_value(&entry.config).ok_or_else(|| NetworkError::InvalidConfig {
            path: cache::entry_path(&self.inner.cfg.cache_dir, &entry.id),
            reason: "native cache entry without its record".into(),
        })?;
        let id = entry.id.clone();
        let (result, caps) = (entry.result.clone(), entry.capability_args.clone());
        let (r, i) = (rec.clone(), id.clone());
        let ips = tokio::task::spawn_blocking(move || {
            Native::teardown_ports(&i, &r, result.as_ref(), &caps)
        })
        .await
        .unwrap_or_else(|e| Err(task_err(e)))?;
        let dir = self.inner.cfg.cache_dir.clone();
        let known = entry.result.is_some();
        let handle = tokio::spawn(async move {
            let _guard = guard;
            let done = tokio::task::spawn_blocking({
                let id = id.clone();
                move || Native::teardown_links(&id, &rec, known, &ips)
            })
            .await
            .unwrap_or_else(|e| Err(task_err(e)))
            .and_then(|()| cache::remove(&dir, &id));
            if let Err(err) = done {
                tracing::warn!(pod = %id, %err, "native network teardown incomplete; retried at restart");
            }
        });
        let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|h| !h.is_finished());
        pending.push(handle);
        Ok(())
    }

    /// Undoes a native setup from its entry, then drops the entry (kept if anything failed).
    async fn native_teardown(&self, entry: CacheEntry) -> Result<(), NetworkError> {
        let rec = Record::from_value(&entry.config).ok_or_else(|| NetworkError::InvalidConfig {
            path: cache::entry_path(&self.inner.cfg.cache_dir, &entry.id),
            reason: "native cache entry without its record".into(),
        })?;
        let id = entry.id.clone();
        let (result, caps) = (entry.result.clone(), entry.capability_args.clone());
        tokio::task::spawn_blocking(move || Native::teardown(&id, &rec, result.as_ref(), &caps))
            .await
            .unwrap_or_else(|e| Err(task_err(e)))?;
        cache::remove(&self.inner.cfg.cache_dir, &entry.id)
    }

    /// The backend a setup would use now.
    fn mode(&self) -> Result<Mode, NetworkError> {
        match self.inner.backend {
            Backend::Native => Ok(Mode::Native),
            Backend::Cni => self.current().map(Mode::Cni),
            // `current` falls back to the embedded list exactly when the dir holds no configuration.
            Backend::Auto => self.current().map(|l| match l.source {
                ConfigSource::Embedded => Mode::Native,
                _ => Mode::Cni(l),
            }),
        }
    }

    /// The native network's settings.
    pub fn native_config(&self) -> &NativeConfig {
        self.inner.native.config()
    }

    /// The namespace DEL runs against: the pod's own while it still has its interface, otherwise a
    /// scratch one holding a stand-in interface with the cached addresses (see `netns`).
    fn del_netns(&self, pod: &PodNetwork, entry: &CacheEntry) -> DelNetns {
        let live = [pod.netns.as_path(), entry.netns.as_path()]
            .into_iter()
            .find(|p| !p.as_os_str().is_empty() && is_netns(p));
        if let Some(p) = live {
            if has_link(p, &entry.ifname) != Some(false) {
                return DelNetns::Live(p.display().to_string());
            }
        }
        let addrs = entry
            .result
            .as_ref()
            .map(|r| sandbox_addresses(r, &entry.ifname))
            .unwrap_or_default();
        match ScratchNetns::new(&entry.ifname, &addrs) {
            Ok(ns) => DelNetns::Scratch(ns),
            Err(err) => {
                tracing::warn!(pod = %entry.id, %err, "no scratch netns; DEL without CNI_NETNS");
                DelNetns::None
            }
        }
    }

    /// ADD loopback then the list. On error: the error and the last result of the chain (for DEL).
    async fn add_all(
        &self,
        lo: &NetworkList,
        lo_bins: &[PathBuf],
        list: &NetworkList,
        bins: &[PathBuf],
        call: &Call<'_>,
    ) -> Result<Value, (NetworkError, Option<Value>)> {
        self.add_list(lo, lo_bins, call, "lo").await?;
        self.add_list(list, bins, call, POD_IFNAME).await
    }

    async fn add_list(
        &self,
        list: &NetworkList,
        bins: &[PathBuf],
        call: &Call<'_>,
        ifname: &str,
    ) -> Result<Value, (NetworkError, Option<Value>)> {
        let mut prev: Option<Value> = None;
        for (plugin, bin) in list.plugins.iter().zip(bins) {
            let ty = config::plugin_type(plugin);
            let stdin = plugin_stdin(list, plugin, prev.as_ref(), call.caps);
            match self.exec("ADD", bin, &ty, ifname, call, &stdin).await {
                Ok(Some(result)) => prev = Some(result),
                Ok(None) => {
                    let err = NetworkError::BadResult {
                        plugin: ty,
                        command: "ADD".into(),
                        reason: "no result on stdout".into(),
                    };
                    return Err((err, prev));
                }
                Err(err) => return Err((err, prev)),
            }
        }
        prev.ok_or_else(|| {
            (
                NetworkError::InvalidConfig {
                    path: PathBuf::from(list.source.to_string()),
                    reason: "no plugins".into(),
                },
                None,
            )
        })
    }

    /// DEL of every plugin of the list in reverse order; all are tried, the first error is returned.
    async fn del_list(
        &self,
        list: &NetworkList,
        bins: &[PathBuf],
        call: &Call<'_>,
        prev: Option<&Value>,
    ) -> Result<(), NetworkError> {
        let ifname = if list.name == loopback_list().name {
            "lo"
        } else {
            POD_IFNAME
        };
        // Before 0.4.0 DEL carried no prevResult.
        let prev = prev.filter(|_| version_at_least(&list.cni_version, 0, 4));
        let mut first_err = None;
        for (plugin, bin) in list.plugins.iter().zip(bins).rev() {
            let stdin = plugin_stdin(list, plugin, prev, call.caps);
            if let Err(e) = self
                .exec(
                    "DEL",
                    bin,
                    &config::plugin_type(plugin),
                    ifname,
                    call,
                    &stdin,
                )
                .await
            {
                tracing::warn!(pod = call.container_id, err = %e, "CNI DEL failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Undoes a failed ADD and returns the ADD error. The cache entry goes only if the undo worked;
    /// otherwise it stays for the daemon's orphan cleanup to retry.
    #[allow(clippy::too_many_arguments)]
    async fn undo_failed_add(
        &self,
        lo: &NetworkList,
        lo_bins: &[PathBuf],
        list: &NetworkList,
        bins: &[PathBuf],
        call: &Call<'_>,
        prev: Option<&Value>,
        err: NetworkError,
    ) -> NetworkError {
        tracing::warn!(pod = call.container_id, %err, "CNI ADD failed; deleting what was added");
        let main = self.del_list(list, bins, call, prev).await;
        let loopback = self.del_list(lo, lo_bins, call, None).await;
        match (main, loopback) {
            (Ok(()), Ok(())) => {
                if let Err(e) = cache::remove(&self.inner.cfg.cache_dir, call.container_id) {
                    tracing::warn!(pod = call.container_id, err = %e, "cannot remove CNI cache entry");
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(pod = call.container_id, err = %e, "undo of failed ADD incomplete; cache entry kept");
            }
        }
        err
    }

    async fn exec(
        &self,
        command: &'static str,
        bin: &Path,
        plugin: &str,
        ifname: &str,
        call: &Call<'_>,
        stdin: &Value,
    ) -> Result<Option<Value>, NetworkError> {
        let inv = Invocation {
            command,
            container_id: call.container_id,
            netns: &call.netns,
            ifname,
            args: &call.args,
            path: &self.inner.cni_path,
        };
        let bytes = serde_json::to_vec(stdin).map_err(|e| {
            NetworkError::io(bin, std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })?;
        let started = std::time::Instant::now();
        let out = run_plugin(bin, plugin, &inv, &bytes, self.inner.timeout).await;
        tracing::debug!(pod = call.container_id, plugin, command, elapsed = ?started.elapsed(), ok = out.is_ok(), "CNI plugin ran");
        out
    }

    /// Switches to another conf dir (config reload); the next setup or status reads it.
    pub fn set_conf_dir(&self, dir: PathBuf) {
        *self
            .inner
            .conf_dir
            .write()
            .unwrap_or_else(|p| p.into_inner()) = dir;
    }

    /// The conf dir in use.
    pub fn conf_dir(&self) -> PathBuf {
        self.inner
            .conf_dir
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The conf dir's current selection, reparsed only when its candidate files changed.
    fn current(&self) -> Result<NetworkList, NetworkError> {
        let dir = &self.conf_dir();
        let key = config::scan_dir(dir)?;
        let mut guard = self
            .inner
            .selected
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let fresh = match guard.as_ref() {
            Some((k, _)) => *k != key,
            None => true,
        };
        if fresh {
            let selected = config::select(key.as_ref());
            *guard = Some((key, selected));
        }
        match guard.as_ref().map(|(_, s)| s) {
            Some(Ok(list)) => Ok(list.clone()),
            Some(Err(reason)) => Err(NetworkError::NoConfig {
                dir: dir.clone(),
                reason: reason.clone(),
            }),
            None => Err(NetworkError::NoConfig {
                dir: dir.clone(),
                reason: "not loaded".into(),
            }),
        }
    }

    fn resolve(&self, list: &NetworkList) -> Result<Vec<PathBuf>, NetworkError> {
        list.plugin_types()
            .iter()
            .map(|t| find_plugin(t, &self.inner.cfg.bin_dirs))
            .collect()
    }

    async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.retain(|_, w| w.strong_count() > 0);
            match locks.get(id).and_then(Weak::upgrade) {
                Some(m) => m,
                None => {
                    let m = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(id.to_string(), Arc::downgrade(&m));
                    m
                }
            }
        };
        m.lock_owned().await
    }
}

fn native_status() -> NetworkStatus {
    NetworkStatus {
        source: ConfigSource::Native,
        name: "crius".into(),
        cni_version: "1.0.0".into(),
        plugins: vec![NATIVE_TYPE.into()],
    }
}

fn task_err(e: tokio::task::JoinError) -> NetworkError {
    NetworkError::Netlink {
        op: "native network task".into(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Where a DEL runs; a scratch namespace lives until the DELs are done.
enum DelNetns {
    Live(String),
    Scratch(ScratchNetns),
    None,
}

fn loopback_list() -> NetworkList {
    match NetworkList::parse(LOOPBACK_CONFLIST.as_bytes(), ConfigSource::Embedded) {
        Ok(l) => l,
        Err(reason) => panic!("built-in loopback conflist is invalid: {reason}"),
    }
}

fn cached_list(dir: &Path, entry: &CacheEntry) -> Result<NetworkList, NetworkError> {
    let path = cache::entry_path(dir, &entry.id);
    NetworkList::from_value(entry.config.clone(), ConfigSource::Cache(path.clone())).map_err(
        |reason| NetworkError::InvalidConfig {
            path,
            reason: format!("cached network config: {reason}"),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_list_is_valid() {
        assert_eq!(loopback_list().plugin_types(), vec!["loopback"]);
    }

    #[tokio::test]
    async fn pod_locks_serialize_one_pod_only() {
        let cni = Cni::new(CniConfig {
            conf_dir: PathBuf::from("/nonexistent"),
            bin_dirs: vec![],
            cache_dir: PathBuf::from("/nonexistent"),
        });
        let held = cni.lock("pod-a").await;
        // Any other pod gets its lock at once (with 64 stripes, some of these 200 ids would have
        // shared pod-a's stripe).
        for i in 0..200 {
            let other = format!("pod-{i}");
            tokio::time::timeout(Duration::from_millis(100), cni.lock(&other))
                .await
                .unwrap_or_else(|_| panic!("{other} waited for pod-a"));
        }
        // The same pod waits.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), cni.lock("pod-a"))
                .await
                .is_err()
        );
        drop(held);
        tokio::time::timeout(Duration::from_secs(1), cni.lock("pod-a"))
            .await
            .unwrap();
        // Unused locks are dropped from the map.
        let _g = cni.lock("pod-b").await;
        assert!(cni.inner.locks.lock().unwrap().len() <= 2);
    }
}
