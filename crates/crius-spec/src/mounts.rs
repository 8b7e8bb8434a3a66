//! The mount table of a container: the default kernel filesystems, the pod's
//! `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` and `/dev/shm`, then CRI mounts; plus the
//! default masked and read-only paths.

use std::path::{Component, Path, PathBuf};

use cri_api::v1::{Mount as CriMount, MountPropagation};
use oci_spec::runtime::{LinuxIdMappingBuilder, Mount};

use crate::{HandlerCaps, HostInfo, PodContext, SpecError};

/// Default masked paths: containerd's list plus `/proc/interrupts`, which current Docker and
/// the kubelet's DefaultProcMount also mask (it leaks host interrupt counters).
pub const DEFAULT_MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// containerd's default read-only paths.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn opts(list: &[&str]) -> Option<Vec<String>> {
    Some(list.iter().map(|s| s.to_string()).collect())
}

fn kernel_mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(opts(options));
    m
}

fn bind_mount(dest: &Path, source: &Path, options: Vec<String>) -> Mount {
    let mut m = Mount::default();
    m.set_destination(dest.to_path_buf());
    m.set_typ(Some("bind".into()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(options));
    m
}

/// Where `/dev/shm` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shm<'a> {
    /// The pod's shared tmpfs (the normal case).
    Pod(&'a Path),
    /// Host IPC: the host's `/dev/shm`.
    Host,
    /// A private tmpfs (the container has its own IPC namespace and the pod has no shm).
    Private,
}

/// The kernel filesystems every container gets. `/sys` and the cgroup mount are read-only
/// unless privileged.
pub fn default_mounts(privileged: bool, shm: Shm) -> Vec<Mount> {
    let ro_or_rw = if privileged { "rw" } else { "ro" };
    let mut out = vec![
        kernel_mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        kernel_mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        kernel_mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        kernel_mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        kernel_mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", ro_or_rw],
        ),
        kernel_mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", ro_or_rw],
        ),
    ];
    let shm_mount = match shm {
        Shm::Pod(p) => bind_mount(
            Path::new("/dev/shm"),
            p,
            opts(&["rbind", "rprivate", "nosuid", "nodev", "noexec", "rw"]).unwrap_or_default(),
        ),
        Shm::Host => bind_mount(
            Path::new("/dev/shm"),
            Path::new("/dev/shm"),
            opts(&["rbind", "rprivate", "rw"]).unwrap_or_default(),
        ),
        Shm::Private => kernel_mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
    };
    // /dev/shm must come after /dev, which it sits on.
    out.insert(3, shm_mount);
    out
}

/// Binds of the pod's `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`, except where a
/// CRI mount targets the same path (the kubelet's own file wins, as in containerd).
pub fn pod_file_mounts(pod: &PodContext, cri: &[CriMount], readonly: bool) -> Vec<Mount> {
    let overridden = |dest: &str| {
        cri.iter()
            .any(|m| clean(Path::new(&m.container_path)) == Path::new(dest))
    };
    let rw = if readonly { "ro" } else { "rw" };
    let mut out = Vec::new();
    for (dest, src) in [
        ("/etc/hosts", &pod.hosts),
        ("/etc/resolv.conf", &pod.resolv_conf),
        ("/etc/hostname", &pod.hostname_file),
    ] {
        if let Some(src) = src {
            if !overridden(dest) {
                out.push(bind_mount(
                    Path::new(dest),
                    src,
                    vec!["rbind".into(), "rprivate".into(), rw.into()],
                ));
            }
        }
    }
    out
}

/// Lexically cleans an absolute path (`//a/./b/` → `/a/b`); `..` is kept, callers reject it.
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn has_dotdot(p: &Path) -> bool {
    p.components().any(|c| c == Component::ParentDir)
}

/// The rootfs propagation the CRI mounts need: a shared mount needs a shared rootfs, a slave
/// mount needs at least a slave one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RootfsPropagation {
    Private,
    Slave,
    Shared,
}

/// Translates CRI mounts. Host paths must exist (the daemon creates missing directories, as
/// containerd does, before calling this); they are not checked here to keep this pure.
pub fn cri_mounts(
    mounts: &[CriMount],
    handler: HandlerCaps,
    // Unused since the daemon does the SELinux relabel; kept so callers need not change.
    _host: &HostInfo,
) -> Result<(Vec<Mount>, RootfsPropagation), SpecError> {
    let mut out = Vec::with_capacity(mounts.len());
    let mut propagation = RootfsPropagation::Private;
    for (i, m) in mounts.iter().enumerate() {
        let field = |f: &str| format!("mounts[{i}].{f}");
        if m.image.as_ref().is_some_and(|img| !img.image.is_empty()) {
            return Err(SpecError::unsupported(
                field("image"),
                "image volume mounts are not implemented",
            ));
        }
        if !m.image_sub_path.is_empty() {
            return Err(SpecError::unsupported(
                field("image_sub_path"),
                "image volume mounts are not implemented",
            ));
        }
        let host_path = Path::new(&m.host_path);
        if m.host_path.is_empty() || !host_path.is_absolute() || has_dotdot(host_path) {
            return Err(SpecError::invalid(
                field("host_path"),
                format!(
                    "{:?} must be an absolute path without '..' components",
                    m.host_path
                ),
            ));
        }
        let dest = Path::new(&m.container_path);
        if m.container_path.is_empty() || !dest.is_absolute() || has_dotdot(dest) {
            return Err(SpecError::invalid(
                field("container_path"),
                format!(
                    "{:?} must be an absolute path without '..' components",
                    m.container_path
                ),
            ));
        }
        let prop = MountPropagation::try_from(m.propagation).map_err(|_| {
            SpecError::invalid(
                field("propagation"),
                format!("unknown value {}", m.propagation),
            )
        })?;
        let (prop_opt, needs) = match prop {
            MountPropagation::PropagationPrivate => ("rprivate", RootfsPropagation::Private),
            MountPropagation::PropagationHostToContainer => ("rslave", RootfsPropagation::Slave),
            MountPropagation::PropagationBidirectional => ("rshared", RootfsPropagation::Shared),
        };
        propagation = propagation.max(needs);
        let mut options = vec!["rbind".to_string(), prop_opt.to_string()];
        if m.recursive_read_only {
            if !m.readonly {
                return Err(SpecError::invalid(
                    field("recursive_read_only"),
                    "requires readonly",
                ));
            }
            if prop != MountPropagation::PropagationPrivate {
                return Err(SpecError::invalid(
                    field("recursive_read_only"),
                    "requires PROPAGATION_PRIVATE",
                ));
            }
            if !handler.rro {
                return Err(SpecError::unsupported(
                    field("recursive_read_only"),
                    "the runtime handler does not support recursive read-only mounts",
                ));
            }
            options.push("rro".into());
        } else {
            options.push(if m.readonly { "ro" } else { "rw" }.into());
        }
        // selinux_relabel: without SELinux there is nothing to relabel (see the crate docs); with
        // it the daemon relabels the host path with the container's mount label.
        let mut mount = bind_mount(&clean(dest), &clean(host_path), options);
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            if !handler.idmap {
                let f = if m.uid_mappings.is_empty() {
                    "gidMappings"
                } else {
                    "uidMappings"
                };
                return Err(SpecError::unsupported(
                    field(f),
                    "the runtime handler does not support id-mapped mounts",
                ));
            }
            let map = |v: &[cri_api::v1::IdMapping], f: &str| {
                v.iter()
                    .map(|x| {
                        LinuxIdMappingBuilder::default()
                            .host_id(x.host_id)
                            .container_id(x.container_id)
                            .size(x.length)
                            .build()
                            .map_err(|e| SpecError::invalid(field(f), e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            mount.set_uid_mappings(Some(map(&m.uid_mappings, "uidMappings")?));
            mount.set_gid_mappings(Some(map(&m.gid_mappings, "gidMappings")?));
            if let Some(o) = mount.options_mut() {
                o.push("idmap".into());
            }
        }
        out.push(mount);
    }
    Ok((out, propagation))
}

/// Later mounts on the same destination shadow earlier ones in the runtime; drop the shadowed
/// defaults so the spec says what happens (a CRI mount on `/dev/shm` replaces the pod's).
pub fn merge(defaults: Vec<Mount>, cri: Vec<Mount>) -> Vec<Mount> {
    let mut out: Vec<Mount> = defaults
        .into_iter()
        .filter(|d| !cri.iter().any(|c| c.destination() == d.destination()))
        .collect();
    out.extend(cri);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(ms: &'a [Mount], dest: &str) -> Option<&'a Mount> {
        ms.iter().find(|m| m.destination() == Path::new(dest))
    }

    fn options(m: &Mount) -> Vec<String> {
        m.options().clone().unwrap_or_default()
    }

    #[test]
    fn defaults_ro_sys_and_pod_shm() {
        let ms = default_mounts(false, Shm::Pod(Path::new("/run/crius/pod/shm")));
        let sys = find(&ms, "/sys").unwrap();
        assert!(options(sys).contains(&"ro".to_string()));
        let cg = find(&ms, "/sys/fs/cgroup").unwrap();
        assert!(options(cg).contains(&"ro".to_string()));
        let shm = find(&ms, "/dev/shm").unwrap();
        assert_eq!(shm.typ().as_deref(), Some("bind"));
        assert_eq!(
            shm.source().as_deref(),
            Some(Path::new("/run/crius/pod/shm"))
        );
        let dev = ms.iter().position(|m| m.destination() == Path::new("/dev"));
        let shm_pos = ms
            .iter()
            .position(|m| m.destination() == Path::new("/dev/shm"));
        assert!(dev < shm_pos);
        for d in ["/proc", "/dev", "/dev/pts", "/dev/mqueue"] {
            assert!(find(&ms, d).is_some(), "{d}");
        }
    }

    #[test]
    fn privileged_sys_rw_and_other_shm_kinds() {
        let ms = default_mounts(true, Shm::Private);
        assert!(options(find(&ms, "/sys").unwrap()).contains(&"rw".to_string()));
        assert_eq!(
            find(&ms, "/dev/shm").unwrap().typ().as_deref(),
            Some("tmpfs")
        );
        let ms = default_mounts(false, Shm::Host);
        assert_eq!(
            find(&ms, "/dev/shm").unwrap().source().as_deref(),
            Some(Path::new("/dev/shm"))
        );
    }

    fn pod() -> PodContext {
        PodContext {
            hosts: Some("/run/p/hosts".into()),
            resolv_conf: Some("/run/p/resolv.conf".into()),
            hostname_file: Some("/run/p/hostname".into()),
            ..Default::default()
        }
    }

    #[test]
    fn pod_files_and_override() {
        let ms = pod_file_mounts(&pod(), &[], false);
        assert_eq!(ms.len(), 3);
        assert!(options(&ms[0]).contains(&"rw".to_string()));
        let cri = vec![CriMount {
            container_path: "/etc//hosts".into(),
            host_path: "/var/lib/kubelet/hosts".into(),
            ..Default::default()
        }];
        let ms = pod_file_mounts(&pod(), &cri, true);
        assert_eq!(ms.len(), 2);
        assert!(find(&ms, "/etc/hosts").is_none());
        assert!(options(&ms[0]).contains(&"ro".to_string()));
    }

    fn mount(host: &str, dest: &str) -> CriMount {
        CriMount {
            host_path: host.into(),
            container_path: dest.into(),
            ..Default::default()
        }
    }

    #[test]
    fn cri_mount_options_and_propagation() {
        let mut a = mount("/data", "/data");
        a.readonly = true;
        let mut b = mount("/var/run/x", "/x");
        b.propagation = MountPropagation::PropagationHostToContainer as i32;
        let (ms, p) = cri_mounts(
            &[a.clone(), b],
            HandlerCaps::default(),
            &HostInfo::default(),
        )
        .unwrap();
        assert_eq!(options(&ms[0]), vec!["rbind", "rprivate", "ro"]);
        assert_eq!(options(&ms[1]), vec!["rbind", "rslave", "rw"]);
        assert_eq!(p, RootfsPropagation::Slave);
        let mut c = mount("/shared", "/s");
        c.propagation = MountPropagation::PropagationBidirectional as i32;
        let (ms, p) = cri_mounts(&[c, a], HandlerCaps::default(), &HostInfo::default()).unwrap();
        assert_eq!(options(&ms[0])[1], "rshared");
        assert_eq!(p, RootfsPropagation::Shared);
    }

    #[test]
    fn bad_paths_name_the_field() {
        let h = HostInfo::default();
        for (m, want) in [
            (mount("relative", "/x"), "mounts[0].host_path"),
            (mount("/a/../etc", "/x"), "mounts[0].host_path"),
            (mount("", "/x"), "mounts[0].host_path"),
            (mount("/a", "x"), "mounts[0].container_path"),
            (mount("/a", "/x/../../y"), "mounts[0].container_path"),
        ] {
            let err = cri_mounts(&[m], HandlerCaps::default(), &h).unwrap_err();
            assert_eq!(err.field(), Some(want), "{err}");
            assert!(matches!(err, SpecError::Invalid { .. }));
        }
    }

    #[test]
    fn rro_needs_handler_support() {
        let mut m = mount("/a", "/a");
        m.readonly = true;
        m.recursive_read_only = true;
        let h = HostInfo::default();
        let err = cri_mounts(&[m.clone()], HandlerCaps::default(), &h).unwrap_err();
        assert!(
            matches!(&err, SpecError::Unsupported { field, .. } if field == "mounts[0].recursive_read_only")
        );
        let caps = HandlerCaps {
            rro: true,
            ..Default::default()
        };
        let (ms, _) = cri_mounts(&[m.clone()], caps, &h).unwrap();
        assert_eq!(options(&ms[0]), vec!["rbind", "rprivate", "rro"]);
        m.readonly = false;
        let err = cri_mounts(&[m], caps, &h).unwrap_err();
        assert!(matches!(err, SpecError::Invalid { .. }));
    }

    #[test]
    fn unimplemented_mount_fields() {
        let h = HostInfo::default();
        let mut m = mount("/a", "/a");
        m.uid_mappings = vec![cri_api::v1::IdMapping {
            host_id: 1000,
            container_id: 0,
            length: 10,
        }];
        let err = cri_mounts(&[m.clone()], HandlerCaps::default(), &h).unwrap_err();
        assert_eq!(err.field(), Some("mounts[0].uidMappings"));
        let caps = HandlerCaps {
            idmap: true,
            ..Default::default()
        };
        let (ms, _) = cri_mounts(&[m], caps, &h).unwrap();
        assert_eq!(ms[0].uid_mappings().as_ref().unwrap()[0].host_id(), 1000);

        let mut m = mount("/a", "/a");
        m.image = Some(cri_api::v1::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        });
        let err = cri_mounts(&[m], HandlerCaps::default(), &h).unwrap_err();
        assert_eq!(err.field(), Some("mounts[0].image"));

        let mut m = mount("/a", "/a");
        m.selinux_relabel = true;
        cri_mounts(&[m.clone()], HandlerCaps::default(), &h).unwrap();
        let selinux = HostInfo {
            selinux: true,
            ..HostInfo::default()
        };
        // The daemon relabels; the spec keeps the bind as it is.
        let with = cri_mounts(&[m], HandlerCaps::default(), &selinux).unwrap();
        let without = cri_mounts(&[mount("/a", "/a")], HandlerCaps::default(), &h).unwrap();
        assert_eq!(with, without);
    }

    #[test]
    fn cri_mount_shadows_default() {
        let defaults = default_mounts(false, Shm::Private);
        let (cri, _) = cri_mounts(
            &[mount("/host/shm", "/dev/shm")],
            HandlerCaps::default(),
            &HostInfo::default(),
        )
        .unwrap();
        let ms = merge(defaults, cri);
        let shms: Vec<_> = ms
            .iter()
            .filter(|m| m.destination() == Path::new("/dev/shm"))
            .collect();
        assert_eq!(shms.len(), 1);
        assert_eq!(shms[0].source().as_deref(), Some(Path::new("/host/shm")));
    }
}
