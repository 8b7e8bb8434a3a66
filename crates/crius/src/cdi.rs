//! CDI (Container Device Interface): reads vendor device specs from the configured directories and
//! applies the container edits of the devices a container asks for, through `ContainerConfig.CDI_devices`
//! or `cdi.k8s.io/*` annotations.
//!
//! Our own small parser of the CDI spec (versions 0.3.0 to 1.0.x, JSON or YAML): the CNCF Rust crate pulls
//! in a JSON-schema validator and a CLI, too heavy for this build. Rules kept from the reference
//! implementation: a spec in a later directory overrides the same device from an earlier one; the same
//! device in two specs of one directory is a conflict (ambiguous, refused); spec-level edits apply once per
//! spec whose device is used. Unknown spec fields are errors rather than silently ignored edits.
//!
//! The specs are re-read whenever a directory's listing or a file's size/mtime changes (checked at each
//! use: a few `stat` calls), so a driver that writes a spec just before the kubelet creates the container
//! is seen.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The annotation prefix the kubelet's device plugins use for CDI device names.
pub const ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Edits {
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub device_nodes: Vec<DeviceNode>,
    #[serde(default)]
    pub hooks: Vec<Hook>,
    #[serde(default)]
    pub mounts: Vec<CdiMount>,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
    /// Parsed so a spec using it is accepted, but refused when a container asks for its device.
    #[serde(default)]
    pub intel_rdt: Option<serde_yaml::Value>,
    #[serde(default)]
    pub net_devices: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceNode {
    pub path: String,
    #[serde(default)]
    pub host_path: Option<String>,
    #[serde(default, rename = "type")]
    pub typ: Option<String>,
    #[serde(default)]
    pub major: Option<i64>,
    #[serde(default)]
    pub minor: Option<i64>,
    #[serde(default)]
    pub file_mode: Option<u32>,
    #[serde(default)]
    pub permissions: Option<String>,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hook {
    pub hook_name: String,
    pub path: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub timeout: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CdiMount {
    pub host_path: String,
    pub container_path: String,
    #[serde(default, rename = "type")]
    pub typ: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SpecFile {
    cdi_version: String,
    kind: String,
    #[serde(default)]
    #[allow(dead_code)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    devices: Vec<DeviceDef>,
    #[serde(default)]
    container_edits: Option<Edits>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeviceDef {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    annotations: BTreeMap<String, String>,
    container_edits: Edits,
}

/// One device as found in a spec.
#[derive(Debug, Clone)]
struct Device {
    spec: PathBuf,
    edits: Edits,
    spec_edits: Option<Edits>,
}

/// What the directories held at the last read.
#[derive(Debug, Default)]
struct Registry {
    devices: HashMap<String, Device>,
    /// Qualified name → the spec files (same directory) that all define it.
    conflicts: HashMap<String, Vec<PathBuf>>,
    /// Spec files that could not be used, with why.
    errors: Vec<(PathBuf, String)>,
}

/// (file, size, mtime ns, inode) of every spec file, per dir; None for a missing dir.
type Signature = Vec<Option<Vec<(PathBuf, u64, i64, u64)>>>;

pub struct Cdi {
    dirs: Vec<PathBuf>,
    cache: Mutex<Option<(Signature, std::sync::Arc<Registry>)>>,
}

fn is_spec_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("json" | "yaml" | "yml")
    )
}

fn signature(dirs: &[PathBuf]) -> Signature {
    dirs.iter()
        .map(|d| {
            let entries = std::fs::read_dir(d).ok()?;
            let mut files: Vec<(PathBuf, u64, i64, u64)> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| is_spec_file(p))
                .map(|p| {
                    let m = std::fs::metadata(&p);
                    let (size, mtime, ino) = m
                        .map(|m| {
                            (
                                m.size(),
                                m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                                m.ino(),
                            )
                        })
                        .unwrap_or((0, 0, 0));
                    (p, size, mtime, ino)
                })
                .collect();
            files.sort();
            Some(files)
        })
        .collect()
}

fn valid_vendor(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
}

fn valid_class(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

fn valid_device_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

/// Splits `vendor.com/class=name`; None if it is not a qualified CDI device name.
pub fn parse_qualified(name: &str) -> Option<(&str, &str, &str)> {
    let (kind, dev) = name.split_once('=')?;
    let (vendor, class) = kind.split_once('/')?;
    (valid_vendor(vendor) && valid_class(class) && valid_device_name(dev))
        .then_some((vendor, class, dev))
}

fn valid_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| p.parse::<u32>().is_ok())
        && matches!(
            (parts[0], parts[1]),
            ("0", "3" | "4" | "5" | "6" | "7" | "8") | ("1", "0")
        )
}

fn check_edits(e: &Edits) -> std::result::Result<(), String> {
    for env in &e.env {
        if !env.contains('=') || env.starts_with('=') {
            return Err(format!("env entry {env:?} is not KEY=VALUE"));
        }
    }
    for d in &e.device_nodes {
        if !d.path.starts_with('/') {
            return Err(format!("device node path {:?} is not absolute", d.path));
        }
        if let Some(h) = d.host_path.as_deref().filter(|h| !h.starts_with('/')) {
            return Err(format!("device node hostPath {h:?} is not absolute"));
        }
        if let Some(t) = d
            .typ
            .as_deref()
            .filter(|t| !matches!(*t, "c" | "b" | "u" | "p"))
        {
            return Err(format!("device node {} has unknown type {t:?}", d.path));
        }
        if let Some(p) = d.permissions.as_deref() {
            if !p.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
                return Err(format!(
                    "device node {} has permissions {p:?}, not a subset of \"rwm\"",
                    d.path
                ));
            }
        }
    }
    for m in &e.mounts {
        if !m.container_path.starts_with('/') {
            return Err(format!(
                "mount containerPath {:?} is not absolute",
                m.container_path
            ));
        }
        if m.host_path.is_empty() {
            return Err(format!("mount {} has no hostPath", m.container_path));
        }
    }
    for h in &e.hooks {
        if !HOOK_NAMES.contains(&h.hook_name.as_str()) {
            return Err(format!("unknown hookName {:?}", h.hook_name));
        }
        if !h.path.starts_with('/') {
            return Err(format!("hook path {:?} is not absolute", h.path));
        }
    }
    Ok(())
}

const HOOK_NAMES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

fn parse_spec(path: &Path) -> std::result::Result<SpecFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read: {e}"))?;
    let spec: SpecFile = if path.extension().and_then(|e| e.to_str()) == Some("json") {
        serde_json::from_str(&text).map_err(|e| e.to_string())?
    } else {
        serde_yaml::from_str(&text).map_err(|e| e.to_string())?
    };
    if !valid_version(&spec.cdi_version) {
        return Err(format!(
            "unsupported cdiVersion {:?} (crius reads 0.3.0 to 1.0.x)",
            spec.cdi_version
        ));
    }
    let (vendor, class) = spec
        .kind
        .split_once('/')
        .ok_or_else(|| format!("kind {:?} is not vendor/class", spec.kind))?;
    if !valid_vendor(vendor) || !valid_class(class) {
        return Err(format!("kind {:?} is not a valid vendor/class", spec.kind));
    }
    if spec.devices.is_empty() {
        return Err("no devices".into());
    }
    let mut seen = std::collections::HashSet::new();
    for d in &spec.devices {
        if !valid_device_name(&d.name) {
            return Err(format!("device name {:?} is invalid", d.name));
        }
        if !seen.insert(d.name.as_str()) {
            return Err(format!("device {:?} is defined twice", d.name));
        }
        check_edits(&d.container_edits).map_err(|e| format!("device {:?}: {e}", d.name))?;
    }
    if let Some(e) = &spec.container_edits {
        check_edits(e).map_err(|e| format!("containerEdits: {e}"))?;
    }
    Ok(spec)
}

fn load(dirs: &[PathBuf]) -> Registry {
    let mut reg = Registry::default();
    // Per directory: name → files defining it, so same-directory duplicates are conflicts.
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            // A missing spec dir is normal (no vendor installed a spec yet).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                reg.errors
                    .push((dir.clone(), format!("read spec dir: {e}")));
                continue;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| is_spec_file(p))
            .collect();
        files.sort();
        let mut here: HashMap<String, Vec<Device>> = HashMap::new();
        for f in files {
            match parse_spec(&f) {
                Ok(spec) => {
                    for d in spec.devices {
                        here.entry(format!("{}={}", spec.kind, d.name))
                            .or_default()
                            .push(Device {
                                spec: f.clone(),
                                edits: d.container_edits,
                                spec_edits: spec.container_edits.clone(),
                            });
                    }
                }
                Err(e) => reg.errors.push((f, e)),
            }
        }
        for (name, mut defs) in here {
            // A higher-priority directory replaces whatever a lower one said, conflict or not.
            reg.conflicts.remove(&name);
            reg.devices.remove(&name);
            if defs.len() > 1 {
                reg.conflicts
                    .insert(name, defs.iter().map(|d| d.spec.clone()).collect());
            } else if let Some(d) = defs.pop() {
                reg.devices.insert(name, d);
            }
        }
    }
    reg.errors.sort();
    reg
}

/// The resolved edits of the devices one container asked for, in request order.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// (qualified name, edits) — spec-level edits appear once, under the first device of that spec.
    pub edits: Vec<(String, Edits)>,
}

impl Resolved {
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }
}

/// The device names a container asks for, each with the CRI field it came from.
pub fn requested(cfg: &cri_api::v1::ContainerConfig) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = cfg
        .cdi_devices
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.clone(), format!("config.CDI_devices[{i}].name")))
        .collect();
    let mut keys: Vec<&String> = cfg
        .annotations
        .keys()
        .filter(|k| k.starts_with(ANNOTATION_PREFIX))
        .collect();
    keys.sort();
    for k in keys {
        for name in cfg.annotations[k].split(',').map(str::trim) {
            if !name.is_empty() {
                out.push((name.to_string(), format!("config.annotations[{k:?}]")));
            }
        }
    }
    out
}

impl Cdi {
    pub fn new(dirs: Vec<PathBuf>) -> Cdi {
        Cdi {
            dirs,
            cache: Mutex::new(None),
        }
    }

    fn registry(&self) -> std::sync::Arc<Registry> {
        let sig = signature(&self.dirs);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((old, reg)) = cache.as_ref() {
            if *old == sig {
                return reg.clone();
            }
        }
        let reg = std::sync::Arc::new(load(&self.dirs));
        for (f, e) in &reg.errors {
            tracing::warn!("CDI spec {}: {e}", f.display());
        }
        *cache = Some((sig, reg.clone()));
        reg
    }

    /// Resolves every device the container asks for; an unknown, ambiguous or malformed name is an
    /// InvalidArgument naming it and the field it came from.
    pub fn resolve(&self, cfg: &cri_api::v1::ContainerConfig) -> Result<Resolved> {
        let wanted = requested(cfg);
        if wanted.is_empty() {
            return Ok(Resolved::default());
        }
        let reg = self.registry();
        let mut out = Resolved::default();
        let mut seen_names = std::collections::HashSet::new();
        let mut seen_specs = std::collections::HashSet::new();
        for (name, field) in wanted {
            if parse_qualified(&name).is_none() {
                return Err(Error::invalid(
                    field,
                    format!(
                        "{name:?} is not a qualified CDI device name (vendor.com/class=device)"
                    ),
                ));
            }
            if !seen_names.insert(name.clone()) {
                continue;
            }
            if let Some(files) = reg.conflicts.get(&name) {
                return Err(Error::invalid(
                    field,
                    format!(
                        "CDI device {name} is ambiguous: defined by {}",
                        files
                            .iter()
                            .map(|f| f.display().to_string())
                            .collect::<Vec<_>>()
                            .join(" and ")
                    ),
                ));
            }
            let Some(dev) = reg.devices.get(&name) else {
                let bad: Vec<String> = reg
                    .errors
                    .iter()
                    .map(|(f, e)| format!("{}: {e}", f.display()))
                    .collect();
                return Err(Error::invalid(
                    field,
                    format!(
                        "unresolvable CDI device {name}: no spec in {} defines it{}",
                        self.dirs
                            .iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        if bad.is_empty() {
                            String::new()
                        } else {
                            format!(" (specs with errors: {})", bad.join("; "))
                        }
                    ),
                ));
            };
            for e in std::iter::once(&dev.edits).chain(
                dev.spec_edits
                    .as_ref()
                    .filter(|_| seen_specs.insert(dev.spec.clone())),
            ) {
                if e.intel_rdt.is_some() || e.net_devices.is_some() {
                    return Err(Error::unimplemented(
                        field,
                        format!(
                            "CDI device {name} ({}) uses intelRdt or netDevices edits, which crius does not apply",
                            dev.spec.display()
                        ),
                    ));
                }
                out.edits.push((name.clone(), e.clone()));
            }
        }
        Ok(out)
    }

    /// For verbose Status: the dirs, the devices found and the spec errors.
    pub fn report(&self) -> serde_json::Value {
        let reg = self.registry();
        let mut devices: Vec<serde_json::Value> = reg
            .devices
            .iter()
            .map(|(n, d)| serde_json::json!({"name": n, "spec": d.spec}))
            .collect();
        devices.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let mut conflicts: Vec<serde_json::Value> = reg
            .conflicts
            .iter()
            .map(|(n, f)| serde_json::json!({"name": n, "specs": f}))
            .collect();
        conflicts.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        serde_json::json!({
            "specDirs": self.dirs,
            "devices": devices,
            "conflicts": conflicts,
            "errors": reg.errors.iter().map(|(f, e)| serde_json::json!({"spec": f, "error": e})).collect::<Vec<_>>(),
        })
    }
}

fn env_key(e: &str) -> &str {
    e.split_once('=').map(|(k, _)| k).unwrap_or(e)
}

/// Applies resolved CDI edits to a container's OCI spec.
pub fn apply(spec: &mut oci_spec::runtime::Spec, resolved: &Resolved) -> Result<()> {
    use oci_spec::runtime::{
        Hook as OciHook, Hooks, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, Mount,
    };
    for (name, e) in &resolved.edits {
        let field = || format!("CDI device {name}");
        // env: a device's value wins over the image's and the request's for the same key.
        if !e.env.is_empty() {
            let mut process = spec.process().clone().unwrap_or_default();
            let mut env = process.env().clone().unwrap_or_default();
            for kv in &e.env {
                env.retain(|x| env_key(x) != env_key(kv));
                env.push(kv.clone());
            }
            process.set_env(Some(env));
            spec.set_process(Some(process));
        }
        if !e.additional_gids.is_empty() {
            let mut process = spec.process().clone().unwrap_or_default();
            let mut user = process.user().clone();
            let mut gids = user.additional_gids().clone().unwrap_or_default();
            for g in e.additional_gids.iter().filter(|g| **g != 0) {
                if !gids.contains(g) {
                    gids.push(*g);
                }
            }
            user.set_additional_gids(Some(gids));
            process.set_user(user);
            spec.set_process(Some(process));
        }
        if !e.device_nodes.is_empty() {
            let mut linux = spec.linux().clone().unwrap_or_default();
            let mut devices = linux.devices().clone().unwrap_or_default();
            let mut resources = linux.resources().clone().unwrap_or_default();
            let mut rules = resources.devices().clone().unwrap_or_default();
            for n in &e.device_nodes {
                let host = n.host_path.clone().unwrap_or_else(|| n.path.clone());
                let meta = std::fs::metadata(&host);
                let (typ, major, minor) = match (n.typ.as_deref(), n.major, n.minor) {
                    (Some(t @ ("p" | "u" | "c" | "b")), Some(ma), Some(mi)) => (t, ma, mi),
                    (Some("p"), _, _) => ("p", 0, 0),
                    _ => {
                        let m = meta.as_ref().map_err(|err| {
                            Error::invalid(
                                field(),
                                format!("device node {}: host path {host}: {err}", n.path),
                            )
                        })?;
                        let ft = m.file_type();
                        let t = if ft.is_char_device() {
                            "c"
                        } else if ft.is_block_device() {
                            "b"
                        } else if ft.is_fifo() {
                            "p"
                        } else {
                            return Err(Error::invalid(
                                field(),
                                format!("device node {}: {host} is not a device", n.path),
                            ));
                        };
                        let t = n.typ.as_deref().unwrap_or(t);
                        let rdev = m.rdev();
                        (
                            t,
                            n.major.unwrap_or(libc::major(rdev) as i64),
                            n.minor.unwrap_or(libc::minor(rdev) as i64),
                        )
                    }
                };
                let typ = match typ {
                    "b" => LinuxDeviceType::B,
                    "u" => LinuxDeviceType::U,
                    "p" => LinuxDeviceType::P,
                    _ => LinuxDeviceType::C,
                };
                let mut d = LinuxDevice::default();
                d.set_path(PathBuf::from(&n.path));
                d.set_typ(typ);
                d.set_major(major);
                d.set_minor(minor);
                d.set_file_mode(
                    n.file_mode
                        .or_else(|| meta.as_ref().ok().map(|m| m.mode() & 0o777)),
                );
                d.set_uid(n.uid.or_else(|| meta.as_ref().ok().map(|m| m.uid())));
                d.set_gid(n.gid.or_else(|| meta.as_ref().ok().map(|m| m.gid())));
                devices.retain(|x| x.path() != d.path());
                devices.push(d);
                if typ != LinuxDeviceType::P {
                    let mut r = LinuxDeviceCgroup::default();
                    r.set_allow(true);
                    r.set_typ(Some(typ));
                    r.set_major(Some(major));
                    r.set_minor(Some(minor));
                    r.set_access(Some(
                        n.permissions.clone().unwrap_or_else(|| "rwm".to_string()),
                    ));
                    rules.push(r);
                }
            }
            resources.set_devices(Some(rules));
            linux.set_resources(Some(resources));
            linux.set_devices(Some(devices));
            spec.set_linux(Some(linux));
        }
        if !e.mounts.is_empty() {
            let mut mounts = spec.mounts().clone().unwrap_or_default();
            for m in &e.mounts {
                let mut om = Mount::default();
                om.set_destination(PathBuf::from(&m.container_path));
                om.set_source(Some(PathBuf::from(&m.host_path)));
                om.set_typ(Some(m.typ.clone().unwrap_or_else(|| "bind".to_string())));
                let mut options = m.options.clone();
                if m.typ.is_none() && !options.iter().any(|o| o == "bind" || o == "rbind") {
                    options.insert(0, "bind".into());
                }
                om.set_options(Some(options));
                mounts.retain(|x| x.destination() != om.destination());
                mounts.push(om);
            }
            spec.set_mounts(Some(mounts));
        }
        if !e.hooks.is_empty() {
            let mut hooks: Hooks = spec.hooks().clone().unwrap_or_default();
            for h in &e.hooks {
                let mut oh = OciHook::default();
                oh.set_path(PathBuf::from(&h.path));
                oh.set_args((!h.args.is_empty()).then(|| h.args.clone()));
                oh.set_env((!h.env.is_empty()).then(|| h.env.clone()));
                oh.set_timeout(h.timeout);
                let push = |v: &Option<Vec<OciHook>>| {
                    let mut v = v.clone().unwrap_or_default();
                    v.push(oh.clone());
                    Some(v)
                };
                match h.hook_name.as_str() {
                    "prestart" => {
                        #[allow(deprecated)]
                        let v = push(hooks.prestart());
                        #[allow(deprecated)]
                        hooks.set_prestart(v);
                    }
                    "createRuntime" => {
                        let v = push(hooks.create_runtime());
                        hooks.set_create_runtime(v);
                    }
                    "createContainer" => {
                        let v = push(hooks.create_container());
                        hooks.set_create_container(v);
                    }
                    "startContainer" => {
                        let v = push(hooks.start_container());
                        hooks.set_start_container(v);
                    }
                    "poststart" => {
                        let v = push(hooks.poststart());
                        hooks.set_poststart(v);
                    }
                    "poststop" => {
                        let v = push(hooks.poststop());
                        hooks.set_poststop(v);
                    }
                    other => {
                        return Err(Error::invalid(
                            field(),
                            format!("unknown hookName {other:?}"),
                        ))
                    }
                }
            }
            spec.set_hooks(Some(hooks));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZERO: &str = r#"
cdiVersion: "0.6.0"
kind: vendor.example/dev
containerEdits:
  env: ["VENDOR_SPEC=1"]
devices:
  - name: zero
    containerEdits:
      env: ["ZERO_DEVICE=yes"]
      deviceNodes:
        - path: /dev/vendor-zero
          hostPath: /dev/zero
          permissions: rw
      mounts:
        - hostPath: /etc/hostname
          containerPath: /vendor/hostname
          options: [ro, rbind]
      hooks:
        - hookName: createContainer
          path: /bin/true
      additionalGids: [4242]
  - name: null
    containerEdits:
      deviceNodes:
        - path: /dev/vendor-null
          hostPath: /dev/null
"#;

    fn cfg(names: &[&str]) -> cri_api::v1::ContainerConfig {
        cri_api::v1::ContainerConfig {
            cdi_devices: names
                .iter()
                .map(|n| cri_api::v1::CdiDevice {
                    name: n.to_string(),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn qualified_names() {
        assert_eq!(
            parse_qualified("vendor.example/dev=zero"),
            Some(("vendor.example", "dev", "zero"))
        );
        for bad in [
            "zero",
            "vendor/dev",
            "/dev=zero",
            "vendor.example/dev=",
            "v/d=a b",
        ] {
            assert!(parse_qualified(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn resolves_applies_and_rereads_on_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vendor.yaml"), ZERO).unwrap();
        let cdi = Cdi::new(vec![dir.path().to_path_buf()]);
        let r = cdi.resolve(&cfg(&["vendor.example/dev=zero"])).unwrap();
        // device edits + the spec's own edits once
        assert_eq!(r.edits.len(), 2);
        let mut spec = oci_spec::runtime::Spec::default();
        apply(&mut spec, &r).unwrap();
        let env = spec.process().as_ref().unwrap().env().clone().unwrap();
        assert!(env.contains(&"ZERO_DEVICE=yes".to_string()), "{env:?}");
        assert!(env.contains(&"VENDOR_SPEC=1".to_string()), "{env:?}");
        let dev = &spec.linux().as_ref().unwrap().devices().as_ref().unwrap()[0];
        assert_eq!(dev.path(), Path::new("/dev/vendor-zero"));
        assert_eq!((dev.major(), dev.minor()), (1, 5));
        let gids = spec
            .process()
            .as_ref()
            .unwrap()
            .user()
            .additional_gids()
            .clone()
            .unwrap();
        assert!(gids.contains(&4242));
        assert_eq!(
            spec.hooks()
                .as_ref()
                .unwrap()
                .create_container()
                .as_ref()
                .unwrap()
                .len(),
            1
        );

        let e = cdi
            .resolve(&cfg(&["vendor.example/dev=later"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("vendor.example/dev=later") && e.contains("CDI_devices[0]"),
            "{e}"
        );
        // A spec written later is seen without a restart.
        std::fs::write(
            dir.path().join("later.json"),
            r#"{"cdiVersion":"0.5.0","kind":"vendor.example/dev","devices":[{"name":"later","containerEdits":{"env":["L=1"]}}]}"#,
        )
        .unwrap();
        cdi.resolve(&cfg(&["vendor.example/dev=later"])).unwrap();
    }

    #[test]
    fn ambiguous_and_overridden_devices() {
        let low = tempfile::tempdir().unwrap();
        let high = tempfile::tempdir().unwrap();
        std::fs::write(low.path().join("a.yaml"), ZERO).unwrap();
        std::fs::write(low.path().join("b.yaml"), ZERO).unwrap();
        let cdi = Cdi::new(vec![low.path().to_path_buf()]);
        let e = cdi
            .resolve(&cfg(&["vendor.example/dev=zero"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ambiguous"), "{e}");
        // The higher-priority dir settles it.
        std::fs::write(high.path().join("c.yaml"), ZERO).unwrap();
        let cdi = Cdi::new(vec![low.path().to_path_buf(), high.path().to_path_buf()]);
        cdi.resolve(&cfg(&["vendor.example/dev=zero"])).unwrap();
    }

    #[test]
    fn spec_errors_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.yaml"),
            "cdiVersion: 0.6.0\nkind: nope\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("unknown-field.yaml"),
            "cdiVersion: 0.6.0\nkind: v.example/c\ndevices:\n- name: a\n  containerEdits:\n    frobnicate: 1\n",
        )
        .unwrap();
        let cdi = Cdi::new(vec![dir.path().to_path_buf()]);
        let r = cdi.report();
        let errors = r["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 2, "{r}");
        assert!(r.to_string().contains("frobnicate"), "{r}");
    }

    #[test]
    fn annotations_are_requests_too() {
        let mut c = cfg(&[]);
        c.annotations.insert(
            "cdi.k8s.io/plugin".into(),
            "vendor.example/dev=zero, vendor.example/dev=null".into(),
        );
        c.annotations.insert("other".into(), "x".into());
        let r = requested(&c);
        assert_eq!(r.len(), 2);
        assert!(r[1].1.contains("cdi.k8s.io/plugin"));
    }
}
