//! E2E: pod user namespaces and recursive read-only mounts on every runtime handler (runc 1.1 and
//! crun 1.8 here: neither makes idmapped mounts, crun has no `rro`, so crius prepares them host-side).
//!
//! crun 1.8.1 refuses this host's hybrid cgroup layout while the cgroup2 mount holds hugetlb; the
//! tests that drive crun release hugetlb by mounting it as a v1 hierarchy ([`CrunGuard`]) and undo
//! that when they end.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use cri_api::v1 as cri;
use tonic::Code;

/// While alive, hugetlb is a v1 hierarchy mounted at a dir of its own, so the cgroup2 mount holds no
/// controller and crun 1.8.1 runs. Dropping it unmounts that dir (the kernel gives hugetlb back to
/// cgroup2 shortly after) and removes the dir.
struct CrunGuard {
    dir: PathBuf,
}

fn unified_controllers() -> Option<String> {
    std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").ok()
}

impl CrunGuard {
    fn new() -> CrunGuard {
        let dir = tempfile::Builder::new()
            .prefix("crius-e2e-hugetlb-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let st = std::process::Command::new("mount")
            .args(["-t", "cgroup", "-o", "hugetlb", "cgroup"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount hugetlb at {}", dir.display());
        let deadline = Instant::now() + Duration::from_secs(10);
        while unified_controllers().is_some_and(|c| c.split_whitespace().any(|x| x == "hugetlb")) {
            assert!(Instant::now() < deadline, "hugetlb still in cgroup2");
            std::thread::sleep(Duration::from_millis(50));
        }
        CrunGuard { dir }
    }
}

impl Drop for CrunGuard {
    fn drop(&mut self) {
        // A v1 hierarchy with child cgroups outlives its last mount (crun left `crius-e2e`, the
        // pods' parent, behind): remove the empty ones, deepest first, so hugetlb can go back.
        // Busy ones (another test's containers) fail to rmdir and stay.
        let mut dirs: Vec<PathBuf> = walk(&self.dir).into_iter().filter(|p| p.is_dir()).collect();
        dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for d in dirs {
            let _ = std::fs::remove_dir(&d);
        }
        let _ = std::process::Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// On a failed test, kills what crun ran for the daemon (the harness only knows runc's root).
struct CrunReaper(PathBuf);

impl Drop for CrunReaper {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let crun = |args: &[&str]| {
            std::process::Command::new("crun")
                .arg("--root")
                .arg(&self.0)
                .args(args)
                .output()
        };
        let ids = crun(&["list", "-q"])
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        for id in ids.lines().filter(|l| !l.is_empty()) {
            let _ = crun(&["kill", "-a", id, "KILL"]);
            std::thread::sleep(Duration::from_millis(200));
            let _ = crun(&["delete", "-f", id]);
        }
    }
}

async fn start(handler: &str) -> Daemon {
    let d = Daemon::start_with(Options {
        extra_config: format!("default_runtime = \"{handler}\"\n"),
        ..Default::default()
    })
    .await;
    // A container in a user namespace reaches its rootfs as the pod's root, an unprivileged host
    // uid: the test dir (0700 from mkdtemp) must be searchable. crius fixes its own state dir.
    std::fs::set_permissions(&d.dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    d
}

async fn handler_features(d: &mut Daemon) -> cri::RuntimeHandlerFeatures {
    let st =
        d.rt.status(cri::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
    st.runtime_handlers
        .iter()
        .find(|h| h.name.is_empty())
        .and_then(|h| h.features)
        .expect("default handler in Status")
}

fn out(r: &cri::ExecSyncResponse) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    )
}

/// A host dir holding a tmpfs mounted on `tmpfs/`; unmounted and removed on drop.
struct RroSource {
    dir: PathBuf,
}

impl RroSource {
    fn new() -> RroSource {
        let dir = tempfile::Builder::new()
            .prefix("crius-e2e-rro-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let t = dir.join("tmpfs");
        std::fs::create_dir(&t).unwrap();
        nix::mount::mount(
            Some("none"),
            &t,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        RroSource { dir }
    }
}

impl Drop for RroSource {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.dir.join("tmpfs"), nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mount(host: &Path, ctr: &str, readonly: bool, rro: bool) -> cri::Mount {
    cri::Mount {
        host_path: host.display().to_string(),
        container_path: ctr.to_string(),
        readonly,
        recursive_read_only: rro,
        ..Default::default()
    }
}

/// Mount points under `dir` in this mount namespace.
fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|p| Path::new(p).starts_with(dir))
        })
        .map(str::to_string)
        .collect()
}

async fn rro_checks(handler: &str) {
    let src = RroSource::new();
    let mut d = start(handler).await;
    let _reaper = CrunReaper(d.dir.join("state/runtime/crun"));
    assert!(
        handler_features(&mut d).await.recursive_read_only_mounts,
        "{handler}: recursive_read_only_mounts must be reported\n{}",
        d.log()
    );
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod(&format!("rro-{handler}"), true).await;

    let mut cfg = container_config("rro", &image("busybox:latest"), &["sleep", "3600"]);
    cfg.mounts = vec![
        mount(&src.dir, "/rro", true, true),
        mount(&src.dir, "/ro", true, false),
    ];
    let id = d
        .create(&pod, &pod_cfg, cfg)
        .await
        .unwrap_or_else(|e| panic!("{handler}: create with rro: {e}\n{}", d.log()));
    // The host-side copies are gone once the runtime has the container's own.
    let prepared: Vec<String> = mounts_under(&d.dir)
        .into_iter()
        .filter(|l| l.contains("/mounts/"))
        .collect();
    assert!(prepared.is_empty(), "{handler}: {prepared:?}");
    d.start_ctr(&id).await;
    let r = d
        .exec(&id, &["sh", "-c", "touch /rro/tmpfs/f"], 10)
        .await
        .unwrap();
    assert_ne!(r.exit_code, 0, "{handler}: rro submount written");
    assert!(
        out(&r).contains("Read-only file system"),
        "{handler}: {}",
        out(&r)
    );
    let r = d
        .exec(&id, &["sh", "-c", "touch /rro/top"], 10)
        .await
        .unwrap();
    assert_ne!(r.exit_code, 0, "{handler}: rro top written");
    // A plain read-only bind leaves the submount writable: that is what rro is for.
    let r = d
        .exec(&id, &["sh", "-c", "touch /ro/tmpfs/f && echo ok"], 10)
        .await
        .unwrap();
    assert_eq!(r.exit_code, 0, "{handler}: {}", out(&r));
    assert!(src.dir.join("tmpfs/f").exists());
    let st = d.status(&id).await;
    assert_eq!(st.mounts.len(), 2);
    assert!(st.mounts[0].recursive_read_only);

    // The refusals: rro without readonly, rro with a propagation other than private.
    for (i, m) in [
        mount(&src.dir, "/rro", false, true),
        cri::Mount {
            propagation: cri::MountPropagation::PropagationHostToContainer as i32,
            ..mount(&src.dir, "/rro", true, true)
        },
        cri::Mount {
            propagation: cri::MountPropagation::PropagationBidirectional as i32,
            ..mount(&src.dir, "/rro", true, true)
        },
    ]
    .into_iter()
    .enumerate()
    {
        let mut cfg = container_config(&format!("bad{i}"), &image("busybox:latest"), &["true"]);
        cfg.mounts = vec![m];
        let (c, msg) = code(d.create(&pod, &pod_cfg, cfg).await);
        assert_eq!(c, Code::InvalidArgument, "{handler}: {msg}");
        assert!(msg.contains("recursive_read_only"), "{handler}: {msg}");
    }
    d.cleanup().await;
    assert!(
        mounts_under(&d.dir).is_empty(),
        "{handler}: {:?}",
        mounts_under(&d.dir)
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursive_read_only_mounts_runc() {
    rro_checks("runc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursive_read_only_mounts_crun() {
    let _g = CrunGuard::new();
    rro_checks("crun").await;
}

fn idmap(host: u32) -> Vec<cri::IdMapping> {
    vec![cri::IdMapping {
        container_id: 0,
        host_id: host,
        length: 65536,
    }]
}

fn userns_pod(d: &Daemon, name: &str, host: u32) -> cri::PodSandboxConfig {
    let mut cfg = pod_config(name, false, &d.dir.join("logs").join(name));
    let linux = cfg.linux.as_mut().unwrap();
    linux.sysctls = HashMap::from([
        (
            "net.ipv4.ip_unprivileged_port_start".to_string(),
            "99".to_string(),
        ),
        ("kernel.shmmni".to_string(), "1234".to_string()),
    ]);
    let ns = linux
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap();
    ns.userns_options = Some(cri::UserNamespace {
        mode: cri::NamespaceMode::Pod as i32,
        uids: idmap(host),
        gids: idmap(host),
    });
    cfg
}

async fn run_userns_pod(d: &mut Daemon, cfg: &cri::PodSandboxConfig) -> String {
    d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(cfg.clone()),
        runtime_handler: String::new(),
    })
    .await
    .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", d.log()))
    .into_inner()
    .pod_sandbox_id
}

fn userns_ctr(
    name: &str,
    pod_cfg: &cri::PodSandboxConfig,
    args: &[&str],
    mounts: Vec<cri::Mount>,
) -> cri::ContainerConfig {
    let mut c = container_config(name, &image("busybox:latest"), args);
    c.mounts = mounts;
    c.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            namespace_options: pod_cfg
                .linux
                .as_ref()
                .and_then(|l| l.security_context.as_ref())
                .and_then(|s| s.namespace_options.clone()),
            ..Default::default()
        }),
        ..Default::default()
    });
    c
}

async fn sh(d: &mut Daemon, id: &str, script: &str) -> (i32, String) {
    let r = d
        .exec(id, &["sh", "-c", script], 20)
        .await
        .unwrap_or_else(|e| panic!("exec {script:?}: {e}\n{}", d.log()));
    (r.exit_code, out(&r))
}

/// Host dirs the userns tests bind: `plain` (root-owned, no idmapping), `mapped` (root-owned,
/// idmapped), `shared` (1777, plain, used by two pods).
struct Volumes {
    dir: PathBuf,
}

impl Volumes {
    fn new() -> Volumes {
        let dir = tempfile::Builder::new()
            .prefix("crius-e2e-userns-vol-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for (sub, mode) in [("plain", 0o755), ("mapped", 0o755), ("shared", 0o1777)] {
            let p = dir.join(sub);
            std::fs::create_dir(&p).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::write(dir.join("plain/secret"), "host secret\n").unwrap();
        std::fs::create_dir_all(dir.join("nested/sub")).unwrap();
        std::fs::create_dir_all(dir.join("nested-src")).unwrap();
        std::fs::write(dir.join("nested-src/f"), "from a submount\n").unwrap();
        nix::mount::mount(
            Some(&dir.join("nested-src")),
            &dir.join("nested/sub"),
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        std::fs::write(dir.join("termination-log"), "").unwrap();
        std::fs::set_permissions(
            dir.join("termination-log"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::set_permissions(
            dir.join("plain/secret"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        Volumes { dir }
    }
    fn p(&self, sub: &str) -> PathBuf {
        self.dir.join(sub)
    }
}

impl Drop for Volumes {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(
            &self.dir.join("nested/sub"),
            nix::mount::MntFlags::MNT_DETACH,
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn idmapped_mounts_naming(paths: &[&Path]) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains("idmapped"))
        .filter(|l| paths.iter().any(|p| l.contains(&p.display().to_string())))
        .map(str::to_string)
        .collect()
}

async fn userns_checks(handler: &str, base: u32) {
    let vols = Volumes::new();
    let mut d = start(handler).await;
    let _reaper = CrunReaper(d.dir.join("state/runtime/crun"));
    assert!(
        handler_features(&mut d).await.user_namespaces,
        "{handler}: user_namespaces must be reported\n{}",
        d.log()
    );
    d.pull(&image("busybox:latest")).await;
    let (ha, hb) = (base, base + 65536);
    let cfg_a = userns_pod(&d, &format!("userns-a-{handler}"), ha);
    let pod_a = run_userns_pod(&mut d, &cfg_a).await;
    let mapped = cri::Mount {
        uid_mappings: idmap(ha),
        gid_mappings: idmap(ha),
        ..mount(&vols.p("mapped"), "/mapped", false, false)
    };
    let mut cfg = userns_ctr(
        "a",
        &cfg_a,
        &["sh", "-c", "echo started-in-userns; exec sleep 3600"],
        vec![
            mount(&vols.p("plain"), "/plain", false, false),
            mapped,
            mount(&vols.p("shared"), "/shared", false, false),
            // A volume with a mount inside it (crun binds only the top one in a user namespace).
            cri::Mount {
                uid_mappings: idmap(ha),
                gid_mappings: idmap(ha),
                ..mount(&vols.p("nested"), "/nested", true, false)
            },
            mount(&vols.p("nested"), "/nested-plain", true, false),
            // A single file, as the kubelet binds /etc/hosts and the termination log.
            cri::Mount {
                uid_mappings: idmap(ha),
                gid_mappings: idmap(ha),
                ..mount(
                    &vols.p("termination-log"),
                    "/dev/termination-log",
                    false,
                    false,
                )
            },
        ],
    );
    // A capability the pod's root has over the pod's network namespace (which its user
    // namespace owns), not over the host's.
    let sc = cfg
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap();
    sc.capabilities = Some(cri::Capability {
        add_capabilities: vec!["NET_ADMIN".into()],
        ..Default::default()
    });
    let a = d
        .create(&pod_a, &cfg_a, cfg)
        .await
        .unwrap_or_else(|e| panic!("{handler}: create in userns pod: {e}\n{}", d.log()));
    d.start_ctr(&a).await;

    // The mapping the kubelet sent, root inside, not root outside.
    let (rc, o) = sh(
        &mut d,
        &a,
        "cat /proc/self/uid_map; cat /proc/self/gid_map; id -u",
    )
    .await;
    assert_eq!(rc, 0, "{handler}: {o}");
    let lines: Vec<Vec<&str>> = o.lines().map(|l| l.split_whitespace().collect()).collect();
    let want = vec!["0".to_string(), ha.to_string(), "65536".to_string()];
    assert_eq!(lines[0], want, "{handler}: {o}");
    assert_eq!(lines[1], want, "{handler}: {o}");
    assert_eq!(lines[2], vec!["0"], "{handler}: {o}");
    let pid = d.pid_of(&a).await;
    let st = std::fs::metadata(format!("/proc/{pid}")).unwrap();
    assert_eq!(
        st.uid(),
        ha,
        "{handler}: the container's init runs as host uid {ha}"
    );

    // A root-owned host path without idmapping: neither writable nor (0600) readable.
    let (rc, o) = sh(&mut d, &a, "touch /plain/x").await;
    assert_ne!(rc, 0, "{handler}: wrote to a root-owned host dir: {o}");
    let (rc, o) = sh(&mut d, &a, "cat /plain/secret").await;
    assert_ne!(rc, 0, "{handler}: read a 0600 host file: {o}");
    assert!(!vols.p("plain/x").exists());

    // Through the idmapped volume, the pod's root writes files the host sees as root's.
    let (rc, o) = sh(
        &mut d,
        &a,
        "echo v > /mapped/by-root && chown 7:8 /mapped/by-root && echo w > /mapped/plain && stat -c '%u:%g' /mapped/plain",
    )
    .await;
    assert_eq!(rc, 0, "{handler}: {o}");
    assert_eq!(o.trim(), "0:0", "{handler}");
    let m = std::fs::metadata(vols.p("mapped/plain")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0), "{handler}");
    let m = std::fs::metadata(vols.p("mapped/by-root")).unwrap();
    assert_eq!((m.uid(), m.gid()), (7, 8), "{handler}");
    let (rc, o) = sh(
        &mut d,
        &a,
        "cat /nested/sub/f /nested-plain/sub/f; stat -c '%u' /nested/sub/f /nested-plain/sub/f",
    )
    .await;
    assert_eq!(rc, 0, "{handler}: {o}");
    assert_eq!(
        o.lines().collect::<Vec<_>>(),
        vec!["from a submount", "from a submount", "0", "65534"],
        "{handler}: submounts of volumes, idmapped and not"
    );
    let (rc, o) = sh(
        &mut d,
        &a,
        "echo bye > /dev/termination-log && stat -c '%u:%g' /dev/termination-log",
    )
    .await;
    assert_eq!((rc, o.trim()), (0, "0:0"), "{handler}: {o}");
    assert_eq!(
        std::fs::read_to_string(vols.p("termination-log")).unwrap(),
        "bye\n"
    );

    // The rootfs: image files are root's inside, the writable layer is the pod root's on disk,
    // the shared layers are not touched.
    let (rc, o) = sh(
        &mut d,
        &a,
        "stat -c '%u:%g' /bin/busybox && touch /etc/new && chown 5:5 /bin/busybox && stat -c '%u' /bin/busybox",
    )
    .await;
    assert_eq!(rc, 0, "{handler}: {o}");
    assert_eq!(o.lines().collect::<Vec<_>>(), vec!["0:0", "5"], "{handler}");
    let images = d.dir.join("root/images");
    let layered: Vec<PathBuf> = walk(&images)
        .into_iter()
        .filter(|p| p.ends_with("bin/busybox"))
        .collect();
    assert!(!layered.is_empty(), "busybox in {}", images.display());
    for p in &layered {
        let m = std::fs::symlink_metadata(p).unwrap();
        if p.to_string_lossy().contains("/upper/") {
            assert_eq!(m.uid(), ha + 5, "{handler}: copied-up {}", p.display());
        } else {
            assert_eq!(
                m.uid(),
                0,
                "{handler}: layer file {} changed owner",
                p.display()
            );
        }
    }
    assert!(layered
        .iter()
        .any(|p| p.to_string_lossy().contains("/upper/")));

    // Pod files and namespaced knobs.
    let (rc, o) = sh(
        &mut d,
        &a,
        "echo 1.2.3.4 extra >> /etc/hosts && echo x > /dev/shm/a && hostname && cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shmmni && ip link set lo mtu 1400 && echo caps-ok",
    )
    .await;
    assert_eq!(rc, 0, "{handler}: {o}");
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(lines[0], format!("userns-a-{handler}"), "{handler}: {o}");
    assert_eq!(&lines[1..], ["99", "1234", "caps-ok"], "{handler}: {o}");
    let log = d
        .dir
        .join("logs")
        .join(format!("userns-a-{handler}"))
        .join("a/0.log");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("started-in-userns"),
        "{handler}: log {text:?}"
    );

    // A second pod with a disjoint range cannot read the first one's files.
    let (rc, o) = sh(
        &mut d,
        &a,
        "echo mine > /shared/a && chmod 600 /shared/a && cat /shared/a",
    )
    .await;
    assert_eq!((rc, o.trim()), (0, "mine"), "{handler}");
    assert_eq!(std::fs::metadata(vols.p("shared/a")).unwrap().uid(), ha);
    // Pod b also shares one PID namespace (the pause process is in its user namespace).
    let mut cfg_b = userns_pod(&d, &format!("userns-b-{handler}"), hb);
    cfg_b
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .pid = cri::NamespaceMode::Pod as i32;
    let pod_b = run_userns_pod(&mut d, &cfg_b).await;
    let b = d
        .create(
            &pod_b,
            &cfg_b,
            userns_ctr(
                "b",
                &cfg_b,
                &["sleep", "3600"],
                vec![mount(&vols.p("shared"), "/shared", false, false)],
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{handler}: create b: {e}\n{}", d.log()));
    d.start_ctr(&b).await;
    let (rc, o) = sh(&mut d, &b, "cat /proc/self/uid_map; cat /shared/a").await;
    assert!(o.contains(&hb.to_string()), "{handler}: {o}");
    assert_ne!(rc, 0, "{handler}: pod b read pod a's file: {o}");
    let (rc, o) = sh(
        &mut d,
        &b,
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; id -u",
    )
    .await;
    assert_eq!(rc, 0, "{handler}: {o}");
    assert!(
        o.contains("crius-pause"),
        "{handler}: pid 1 of pod b is its pause: {o}"
    );

    // A daemon restart keeps the pod's namespaces, mappings and mounts.
    d.kill9();
    d.spawn().await;
    let (rc, o) = sh(
        &mut d,
        &a,
        "cat /proc/self/uid_map; cat /dev/shm/a; ls /mapped",
    )
    .await;
    assert_eq!(rc, 0, "{handler}: after restart: {o}");
    assert!(
        o.contains(&ha.to_string()) && o.contains("by-root"),
        "{handler}: {o}"
    );
    let a2 = d
        .create(
            &pod_a,
            &cfg_a,
            userns_ctr("a2", &cfg_a, &["sleep", "3600"], vec![]),
        )
        .await
        .unwrap_or_else(|e| panic!("{handler}: create after restart: {e}\n{}", d.log()));
    d.start_ctr(&a2).await;
    let (rc, o) = sh(&mut d, &a2, "cat /proc/self/uid_map; cat /dev/shm/a").await;
    assert_eq!(rc, 0, "{handler}: {o}");
    assert!(
        o.contains(&ha.to_string()) && o.contains('x'),
        "{handler}: same pod userns: {o}"
    );

    // Teardown leaves no idmapped mount behind.
    d.cleanup().await;
    let left = idmapped_mounts_naming(&[&d.dir, &vols.dir]);
    assert!(left.is_empty(), "{handler}: {left:?}");
    assert!(
        mounts_under(&d.dir).is_empty(),
        "{handler}: {:?}",
        mounts_under(&d.dir)
    );
    d.shutdown().await;
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p.clone()),
                _ => {}
            }
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_namespaces_runc() {
    userns_checks("runc", 1_000_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_namespaces_crun() {
    let _g = CrunGuard::new();
    userns_checks("crun", 2_000_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_namespace_requests_are_validated() {
    let mut d = start("runc").await;
    let two = vec![
        cri::IdMapping {
            container_id: 0,
            host_id: 3_000_000,
            length: 65536,
        },
        cri::IdMapping {
            container_id: 0,
            host_id: 3_100_000,
            length: 65536,
        },
    ];
    let no_root = vec![cri::IdMapping {
        container_id: 1,
        host_id: 3_000_000,
        length: 65536,
    }];
    let cases = [
        (
            cri::NamespaceMode::Pod,
            two.clone(),
            two,
            Code::InvalidArgument,
        ),
        (
            cri::NamespaceMode::Pod,
            no_root.clone(),
            no_root,
            Code::InvalidArgument,
        ),
        (
            cri::NamespaceMode::Container,
            vec![],
            vec![],
            Code::Unimplemented,
        ),
        (
            cri::NamespaceMode::Target,
            vec![],
            vec![],
            Code::InvalidArgument,
        ),
    ];
    for (i, (mode, uids, gids, want)) in cases.into_iter().enumerate() {
        let mut cfg = userns_pod(&d, &format!("bad-userns-{i}"), 3_000_000);
        cfg.linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .namespace_options
            .as_mut()
            .unwrap()
            .userns_options = Some(cri::UserNamespace {
            mode: mode as i32,
            uids,
            gids,
        });
        let r =
            d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(cfg),
                runtime_handler: String::new(),
            })
            .await;
        let (c, msg) = code(r);
        assert_eq!(c, want, "case {i}: {msg}");
        assert!(msg.contains("userns_options"), "case {i}: {msg}");
    }
    let pods =
        d.rt.list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
    assert!(pods.is_empty(), "{pods:?}");
    d.shutdown().await;
}
