//! crius-image owns everything below the CRI ImageService: reference parsing, registry access (hosts.toml
//! mirrors, auth), the verified content store, layer unpacking into shared per-layer snapshots, overlay
//! root filesystems for containers, image metadata in redb and garbage collection of unused content.
//!
//! On-disk layout under `StoreOptions::root`:
//! `images.redb`, `blobs/sha256/<hex>`, `snapshots/<chain-id hex>/fs`, `containers/<id>/{upper,work}`,
//! `tmp/` (in-progress downloads; emptied on open). Snapshot directories named `tmp-*` are in-progress
//! unpacks and are removed on open as well; unreferenced content is collected on open.
//!
//! Durability: redb commits are durable; blobs are fsynced before their rename; unpacked snapshot
//! files are not fsynced (as in containerd), so a power loss (not a process kill) right after a pull
//! can leave a snapshot that has to be removed and pulled again.

pub mod error;
pub mod hosts;
pub mod reference;

mod content;
mod import;
mod meta;
#[cfg(test)]
mod proptests;
mod pull;
mod registry;
mod rootfs;
mod unpack;
mod usage;
mod volume;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

pub use error::ImageError;
pub use rootfs::LowerMapper;

/// Entry points for the coverage-guided fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::unpack::unpack_limited;
}

/// Test-only crash points: the daemon installs a hook (`crius::crash`) that kills it with SIGKILL at
/// the one point armed when it started; without a hook (every other use) a point does nothing.
static CRASH_HOOK: std::sync::OnceLock<fn(&'static str)> = std::sync::OnceLock::new();

/// Installs the crash-point hook (once; later calls are ignored).
pub fn set_crash_hook(hook: fn(&'static str)) {
    let _ = CRASH_HOOK.set(hook);
}

pub(crate) fn crash_point(name: &'static str) {
    if let Some(hook) = CRASH_HOOK.get() {
        hook(name);
    }
}

use content::Content;
use meta::{ImageRecord, Meta};

/// Where and how the store keeps its data.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Root of the store, e.g. `/var/lib/crius/images`.
    pub root: PathBuf,
    /// containerd-style registry config directory (`<hosts_dir>/<host>/hosts.toml`).
    pub hosts_dir: PathBuf,
    /// A download that receives no bytes for this long fails with `ImageError::Timeout`.
    pub stall_timeout: Duration,
    /// Bounds on what one layer may inflate to (decompression bombs).
    pub limits: UnpackLimits,
}

/// Bounds on one layer's uncompressed content. Exceeding either fails the pull or import with
/// `ImageError::LayerLimit` and keeps nothing of the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Uncompressed tar bytes of one layer (headers and padding included).
    pub max_layer_unpacked_bytes: u64,
    /// Tar entries (files, dirs, links, whiteouts...) of one layer.
    pub max_layer_entries: u64,
}

impl UnpackLimits {
    /// 64 GiB: far above any real layer (the largest public images ship layers of a few GiB).
    pub const DEFAULT_MAX_LAYER_UNPACKED_BYTES: u64 = 64 << 30;
    /// 4 million entries: above the largest real layers (hundreds of thousands of files), far below
    /// what exhausts inodes on a typical node.
    pub const DEFAULT_MAX_LAYER_ENTRIES: u64 = 4_000_000;
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_layer_unpacked_bytes: Self::DEFAULT_MAX_LAYER_UNPACKED_BYTES,
            max_layer_entries: Self::DEFAULT_MAX_LAYER_ENTRIES,
        }
    }
}

impl StoreOptions {
    /// Defaults: `/var/lib/crius/images`, `/etc/crius/certs.d`, 60 s stall timeout.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StoreOptions {
            root: root.into(),
            hosts_dir: PathBuf::from("/etc/crius/certs.d"),
            stall_timeout: Duration::from_secs(60),
            limits: UnpackLimits::default(),
        }
    }
}

/// Registry credentials as carried by the CRI `AuthConfig`.
#[derive(Clone, Default)]
pub struct Auth {
    pub username: String,
    pub password: String,
    /// base64 of `username:password`, used when username/password are empty.
    pub auth: String,
    /// OAuth2 refresh token exchanged at the token endpoint.
    pub identity_token: String,
    /// Bearer token sent to the registry as is.
    pub registry_token: String,
}

impl std::fmt::Debug for Auth {
    // Credentials never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The runtime-relevant part of an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub user: String,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub stop_signal: String,
    pub labels: BTreeMap<String, String>,
    pub volumes: Vec<String>,
    pub exposed_ports: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `sha256:<config digest hex>`.
    pub id: String,
    pub repo_tags: Vec<String>,
    /// `name@sha256:<manifest digest>`.
    pub repo_digests: Vec<String>,
    /// Compressed layers plus config, like containerd reports.
    pub size: u64,
    pub config: ImageConfig,
    pub pinned: bool,
    /// The raw OCI image config, for verbose ImageStatus.
    pub config_json: String,
    /// Chain ids of the layers, bottom first.
    pub chain: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsUsage {
    pub mountpoint: PathBuf,
    pub used_bytes: u64,
    pub inodes_used: u64,
}

/// Digests and chain ids a running pull or import is writing; GC must not touch them even though no
/// image record names them yet.
#[derive(Default)]
struct Leases {
    blobs: HashMap<String, usize>,
    snaps: HashMap<String, usize>,
}

struct Inner {
    opts: StoreOptions,
    /// The registry hosts dir in use: `opts.hosts_dir` until [`ImageStore::set_hosts_dir`] changes it.
    hosts_dir: std::sync::RwLock<PathBuf>,
    content: Content,
    meta: Meta,
    clients: Arc<registry::Clients>,
    leases: Mutex<Leases>,
    /// Per-digest/chain-id locks so concurrent pulls share one download and one unpack.
    inflight: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

/// The image store. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

/// Removes its leases when dropped.
pub(crate) struct LeaseGuard {
    inner: Arc<Inner>,
    blobs: Vec<String>,
    snaps: Vec<String>,
}

impl LeaseGuard {
    fn add(&mut self, blobs: &[String], snaps: &[String]) {
        let mut l = self.inner.lock_leases();
        for b in blobs {
            *l.blobs.entry(b.clone()).or_default() += 1;
            self.blobs.push(b.clone());
        }
        for s in snaps {
            *l.snaps.entry(s.clone()).or_default() += 1;
            self.snaps.push(s.clone());
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let mut l = self.inner.lock_leases();
        for b in &self.blobs {
            if let Some(n) = l.blobs.get_mut(b) {
                *n -= 1;
                if *n == 0 {
                    l.blobs.remove(b);
                }
            }
        }
        for s in &self.snaps {
            if let Some(n) = l.snaps.get_mut(s) {
                *n -= 1;
                if *n == 0 {
                    l.snaps.remove(s);
                }
            }
        }
    }
}

impl Inner {
    fn lock_leases(&self) -> MutexGuard<'_, Leases> {
        // A panic while holding the lock leaves counts that are still usable.
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn valid_container_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// How a user-supplied string matched an image.
enum Resolved {
    /// Through a tag reference (the normalised `name:tag`).
    Tag(String),
    /// Through an id, id prefix or digest reference.
    Other,
}

impl ImageStore {
    /// Opens (creating) the store and removes leftovers of interrupted pulls, unpacks and removals.
    pub fn open(opts: StoreOptions) -> Result<Self, ImageError> {
        use error::IoContext;
        let content = Content::new(&opts.root);
        for d in [
            opts.root.clone(),
            content.blobs_dir(),
            content.snapshots_dir(),
            content.tmp_dir(),
            opts.root.join("containers"),
            opts.root.join("empty"),
        ] {
            std::fs::create_dir_all(&d).ctx(&d)?;
        }
        // Snapshots and writable layers hold what images and containers put there (setuid binaries,
        // device nodes): no other host user may reach them, on a new install or an old one.
        {
            use std::os::unix::fs::PermissionsExt;
            let root = &opts.root;
            let mode = std::fs::metadata(root).ctx(root)?.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode & 0o700))
                    .ctx(root)?;
            }
        }
        let tmp = content.tmp_dir();
        for e in std::fs::read_dir(&tmp).ctx(&tmp)? {
            let e = e.ctx(&tmp)?;
            let p = e.path();
            let r = if e.file_type().ctx(&p)?.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            r.ctx(&p)?;
        }
        let snaps = content.snapshots_dir();
        for e in std::fs::read_dir(&snaps).ctx(&snaps)? {
            let e = e.ctx(&snaps)?;
            if e.file_name().to_string_lossy().starts_with("tmp-") {
                std::fs::remove_dir_all(e.path()).ctx(e.path())?;
            }
        }
        let meta = Meta::open(&opts.root.join("images.redb"))?;
        // Container dirs without a record come from an interrupted removal.
        let records: HashSet<String> = meta.rootfs()?.into_iter().map(|(k, _)| k).collect();
        let cdir = opts.root.join("containers");
        for e in std::fs::read_dir(&cdir).ctx(&cdir)? {
            let e = e.ctx(&cdir)?;
            if !records.contains(&*e.file_name().to_string_lossy()) {
                std::fs::remove_dir_all(e.path()).ctx(e.path())?;
            }
        }
        let store = ImageStore {
            inner: Arc::new(Inner {
                hosts_dir: std::sync::RwLock::new(opts.hosts_dir.clone()),
                opts,
                content,
                meta,
                clients: Arc::new(registry::Clients::default()),
                leases: Mutex::new(Leases::default()),
                inflight: Mutex::new(HashMap::new()),
            }),
        };
        // Content committed by pulls that failed or were killed before recording their image.
        store.gc()?;
        Ok(store)
    }

    /// The registry hosts dir pulls read (`<dir>/<host>/hosts.toml`, read at every pull).
    pub fn hosts_dir(&self) -> PathBuf {
        self.inner
            .hosts_dir
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Switches pulls to another registry hosts dir (config reload).
    pub fn set_hosts_dir(&self, dir: PathBuf) {
        *self
            .inner
            .hosts_dir
            .write()
            .unwrap_or_else(|p| p.into_inner()) = dir;
    }

    pub fn options(&self) -> &StoreOptions {
        &self.inner.opts
    }

    pub(crate) fn lease(&self) -> LeaseGuard {
        LeaseGuard {
            inner: self.inner.clone(),
            blobs: Vec::new(),
            snaps: Vec::new(),
        }
    }

    /// Serialises work on one digest or chain id across concurrent pulls.
    pub(crate) async fn inflight(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            map.retain(|_, w| w.strong_count() > 0);
            match map.get(key).and_then(|w| w.upgrade()) {
                Some(m) => m,
                None => {
                    let m = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(key.to_string(), Arc::downgrade(&m));
                    m
                }
            }
        };
        m.lock_owned().await
    }

    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        self.inner.meta.images()?.iter().map(to_image).collect()
    }

    /// Finds an image by tag or digest reference, full id (`sha256:<hex>` or bare hex) or unique id prefix.
    pub fn get(&self, reference_or_id: &str) -> Result<Option<Image>, ImageError> {
        match self.resolve(reference_or_id)? {
            Some((rec, _)) => Ok(Some(to_image(&rec)?)),
            None => Ok(None),
        }
    }

    fn resolve(&self, s: &str) -> Result<Option<(ImageRecord, Resolved)>, ImageError> {
        let meta = &self.inner.meta;
        let s = s.trim();
        if s.is_empty() {
            return Err(ImageError::InvalidReference {
                reference: s.to_string(),
                reason: "empty image reference".into(),
            });
        }
        let bare = s.strip_prefix("sha256:").unwrap_or(s);
        if bare.len() == 64 && reference::is_hex(bare) {
            return Ok(meta
                .image(&format!("sha256:{bare}"))?
                .map(|r| (r, Resolved::Other)));
        }
        let parsed = reference::parse(s);
        if let Ok(r) = &parsed {
            let (key, how) = match &r.digest {
                Some(d) => (r.with_digest(d), None),
                None => {
                    let t = r.tagged().unwrap_or_default();
                    (t.clone(), Some(t))
                }
            };
            if let Some(id) = meta.lookup_ref(&key)? {
                if let Some(rec) = meta.image(&id)? {
                    let how = match how {
                        Some(t) => Resolved::Tag(t),
                        None => Resolved::Other,
                    };
                    return Ok(Some((rec, how)));
                }
            }
        }
        // An id prefix, as accepted by containerd and CRI-O (at least 3 hex characters).
        if bare.len() >= 3 && reference::is_hex(bare) {
            let mut found: Vec<ImageRecord> = meta
                .images()?
                .into_iter()
                .filter(|r| r.id.strip_prefix("sha256:").unwrap_or("").starts_with(bare))
                .collect();
            return match found.len() {
                0 => Ok(None),
                1 => Ok(found.pop().map(|r| (r, Resolved::Other))),
                n => Err(ImageError::Ambiguous {
                    reference: s.to_string(),
                    matches: n,
                }),
            };
        }
        match parsed {
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes an image (idempotent). By tag, only that tag goes when the image has other tags; by id or
    /// digest, the whole image goes. Unreferenced blobs and snapshots are then collected.
    pub fn remove(&self, reference_or_id: &str) -> Result<(), ImageError> {
        let Some((rec, how)) = self.resolve(reference_or_id)? else {
            return Ok(());
        };
        let whole = self.inner.meta.update(|t| {
            let Some(mut rec) = t.get_image(&rec.id)? else {
                return Ok(false);
            };
            if let Resolved::Tag(tag) = &how {
                if rec.repo_tags.len() > 1 {
                    rec.repo_tags.retain(|x| x != tag);
                    t.remove_ref(tag)?;
                    t.put_image(&rec)?;
                    return Ok(false);
                }
            }
            for r in rec.repo_tags.iter().chain(rec.repo_digests.iter()) {
                // Only drop refs that still point here.
                if t.get_ref(r)?.as_deref() == Some(rec.id.as_str()) {
                    t.remove_ref(r)?;
                }
            }
            t.remove_image(&rec.id)?;
            Ok(true)
        })?;
        if whole {
            crash_point("image.remove.untagged");
            self.gc()?;
        }
        Ok(())
    }

    pub fn set_pinned(&self, reference_or_id: &str, pinned: bool) -> Result<(), ImageError> {
        let Some((rec, _)) = self.resolve(reference_or_id)? else {
            return Err(ImageError::NotFound {
                reference: reference_or_id.to_string(),
            });
        };
        self.inner.meta.update(|t| {
            if let Some(mut r) = t.get_image(&rec.id)? {
                r.pinned = pinned;
                t.put_image(&r)?;
            }
            Ok(())
        })
    }

    /// Deletes blobs and snapshots that no image, container rootfs or running pull refers to.
    pub fn gc(&self) -> Result<(), ImageError> {
        use error::IoContext;
        let leases = self.inner.lock_leases();
        let mut live_blobs: HashSet<String> = leases.blobs.keys().cloned().collect();
        let mut live_snaps: HashSet<String> = leases.snaps.keys().cloned().collect();
        for rec in self.inner.meta.images()? {
            live_blobs.extend(rec.blobs().map(str::to_string));
            live_snaps.extend(rec.chain.iter().cloned());
        }
        for (_, r) in self
            .inner
            .meta
            .rootfs()?
            .into_iter()
            .chain(self.inner.meta.volumes()?)
        {
            live_snaps.extend(r.chain);
        }
        let hex_of = |s: &String| s.strip_prefix("sha256:").map(str::to_string);
        let live_blobs: HashSet<String> = live_blobs.iter().filter_map(hex_of).collect();
        let live_snaps: HashSet<String> = live_snaps.iter().filter_map(hex_of).collect();
        let c = &self.inner.content;
        let bdir = c.blobs_dir();
        for e in std::fs::read_dir(&bdir).ctx(&bdir)? {
            let e = e.ctx(&bdir)?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !live_blobs.contains(&name) {
                std::fs::remove_file(e.path()).ctx(e.path())?;
            }
        }
        let sdir = c.snapshots_dir();
        for e in std::fs::read_dir(&sdir).ctx(&sdir)? {
            let e = e.ctx(&sdir)?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("tmp-") || live_snaps.contains(&name) {
                continue;
            }
            // Rename first so a crash mid-delete never leaves a half snapshot under a valid name.
            let doomed = sdir.join(format!("tmp-del-{}", content::random_suffix()));
            std::fs::rename(e.path(), &doomed).ctx(e.path())?;
            crash_point("image.remove.snapshot_renamed");
            std::fs::remove_dir_all(&doomed).ctx(&doomed)?;
        }
        drop(leases);
        Ok(())
    }

    /// Container ids that have a rootfs record.
    pub fn list_rootfs(&self) -> Result<Vec<String>, ImageError> {
        Ok(self
            .inner
            .meta
            .rootfs()?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// Disk usage of the image filesystem (content and snapshots).
    pub fn fs_usage(&self) -> Result<FsUsage, ImageError> {
        let c = &self.inner.content;
        let (bytes, inodes) = usage::walk(&[c.blobs_dir(), c.snapshots_dir()])?;
        Ok(FsUsage {
            mountpoint: self.inner.opts.root.clone(),
            used_bytes: bytes,
            inodes_used: inodes,
        })
    }

    /// Disk usage of all containers' writable layers.
    pub fn container_fs_usage(&self) -> Result<FsUsage, ImageError> {
        let dir = self.inner.opts.root.join("containers");
        let (bytes, inodes) = usage::walk(std::slice::from_ref(&dir))?;
        Ok(FsUsage {
            mountpoint: dir,
            used_bytes: bytes,
            inodes_used: inodes,
        })
    }

    pub(crate) fn content(&self) -> &Content {
        &self.inner.content
    }

    pub(crate) fn meta(&self) -> &Meta {
        &self.inner.meta
    }

    pub(crate) fn root(&self) -> &Path {
        &self.inner.opts.root
    }
}

pub(crate) fn to_image(rec: &ImageRecord) -> Result<Image, ImageError> {
    Ok(Image {
        id: rec.id.clone(),
        repo_tags: rec.repo_tags.clone(),
        repo_digests: rec.repo_digests.clone(),
        size: rec.size,
        config: pull::image_config(&rec.config_json),
        pinned: rec.pinned,
        config_json: rec.config_json.clone(),
        chain: rec.chain.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_spawnable<F: std::future::Future + Send + 'static>(_: F) {}
    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn store_and_pull_future_are_send() {
        assert_send_sync_clone::<ImageStore>();
        let d = tempfile::tempdir().unwrap();
        let s = ImageStore::open(StoreOptions::new(d.path())).unwrap();
        // tonic handlers need Send futures: this fails to compile if a lock is held across an await.
        // The same bound tokio::spawn imposes (this is what catches higher-ranked lifetime errors).
        assert_spawnable(async move { s.pull("busybox", None).await });
    }

    #[test]
    fn get_handles_ids_prefixes_and_ambiguity() {
        let d = tempfile::tempdir().unwrap();
        let s = ImageStore::open(StoreOptions::new(d.path())).unwrap();
        for (id, tag) in [("abc1", "a:1"), ("abc2", "b:1")] {
            let id = format!("sha256:{}{}", id, "0".repeat(60));
            s.commit_image(pull::NewImage {
                config_digest: id.clone(),
                config_json: "{}".into(),
                manifest_digest: format!("sha256:{}", "f".repeat(64)),
                index_digest: None,
                layers: Vec::new(),
                chain: Vec::new(),
                config_size: 2,
                tags: vec![reference::parse(tag).unwrap().tagged().unwrap()],
                repo_digest: None,
            })
            .unwrap();
        }
        assert!(matches!(
            s.get("abc"),
            Err(ImageError::Ambiguous { matches: 2, .. })
        ));
        assert_eq!(
            s.get("abc1").unwrap().unwrap().repo_tags,
            ["docker.io/library/a:1"]
        );
        assert_eq!(
            s.get("b:1").unwrap().unwrap().id,
            format!("sha256:abc2{}", "0".repeat(60))
        );
        assert!(s.get("abd").unwrap().is_none());
        assert!(s.get("").is_err());
        assert!(matches!(
            s.get("UPPER/case"),
            Err(ImageError::InvalidReference { .. })
        ));
        // Moving a tag to another image takes it from the first.
        s.commit_image(pull::NewImage {
            config_digest: format!("sha256:abc2{}", "0".repeat(60)),
            config_json: "{}".into(),
            manifest_digest: format!("sha256:{}", "e".repeat(64)),
            index_digest: None,
            layers: Vec::new(),
            chain: Vec::new(),
            config_size: 2,
            tags: vec!["docker.io/library/a:1".into()],
            repo_digest: None,
        })
        .unwrap();
        assert!(s.get("abc1").unwrap().unwrap().repo_tags.is_empty());
        assert_eq!(
            s.get("a:1").unwrap().unwrap().id,
            format!("sha256:abc2{}", "0".repeat(60))
        );
    }
}
