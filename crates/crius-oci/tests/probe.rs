//! Handler probing against the real runtimes installed on this host. Needs root.

use crius_oci::{Handler, HandlerStatus};
use std::path::Path;

#[tokio::test]
async fn runc_is_available_with_features() {
    let root = tempfile::tempdir().expect("tempdir");
    let h = Handler::probe(
        "runc",
        Path::new("/usr/sbin/runc"),
        &root.path().join("runc"),
    )
    .await;
    match &h.status {
        HandlerStatus::Available { version } => {
            assert!(version.starts_with("runc version"), "{version}")
        }
        HandlerStatus::Unavailable { reason } => panic!("runc unavailable: {reason}"),
    }
    let f = h.features.expect("runc 1.1 has `features`");
    assert!(f.namespaces.iter().any(|n| n == "pid"));
    assert!(f.cgroup_v1 && f.seccomp);
    assert!(f.mount_options.iter().any(|o| o == "bind"));
    // runc 1.1.5 lists `rro` but predates idmapped-mount support in `features`
    assert!(f.recursive_read_only_mounts && !f.user_namespaces);
}

const UNIFIED_CONTROLLERS: &str = "/sys/fs/cgroup/unified/cgroup.controllers";

/// crun 1.8.1 refuses a cgroup v1 host whose cgroup2 mount holds a controller ("hybrid" layout).
fn crun_hybrid_refusal_applies() -> bool {
    std::fs::read_to_string(UNIFIED_CONTROLLERS)
        .map(|c| !c.trim().is_empty())
        .unwrap_or(false)
}

async fn probe_crun(root: &Path) -> Handler {
    Handler::probe("crun", Path::new("/usr/bin/crun"), &root.join("crun")).await
}

/// Whatever the host's layout, the probe's verdict must match what crun can really do: unavailable
/// with crun's own reason while cgroup2 holds a controller, available once it holds none. Where the
/// host has the hybrid layout, the test releases hugetlb (a v1 hugetlb mount moves it out of cgroup2)
/// to check both verdicts, and unmounts it again.
#[tokio::test]
async fn crun_probe_follows_what_crun_can_do_here() {
    let root = tempfile::tempdir().expect("tempdir");
    if crun_hybrid_refusal_applies() {
        let h = probe_crun(root.path()).await;
        match &h.status {
            HandlerStatus::Unavailable { reason } => {
                eprintln!("crun (hybrid layout): {reason}");
                assert!(reason.contains("cannot run a container"), "{reason}");
            }
            HandlerStatus::Available { version } => {
                panic!("crun reported usable ({version}) while cgroup2 holds a controller")
            }
        }
        assert!(h.ensure_available().is_err());

        let mnt = root.path().join("hugetlb");
        std::fs::create_dir(&mnt).expect("mkdir");
        let ok = std::process::Command::new("mount")
            .args(["-t", "cgroup", "-o", "hugetlb", "cgroup"])
            .arg(&mnt)
            .status()
            .expect("mount")
            .success();
        if !ok {
            eprintln!("could not mount a v1 hugetlb hierarchy: only the refusal was checked");
            return;
        }
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(self.0).status();
            }
        }
        let _undo = Unmount(&mnt);
        for _ in 0..50 {
            if !crun_hybrid_refusal_applies() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(!crun_hybrid_refusal_applies(), "hugetlb still in cgroup2");
        let h = probe_crun(&root.path().join("released")).await;
        match &h.status {
            HandlerStatus::Available { version } => assert!(version.contains("crun"), "{version}"),
            HandlerStatus::Unavailable { reason } => {
                panic!("crun unavailable with an empty cgroup2: {reason}")
            }
        }
        h.ensure_available().expect("available");
    } else {
        let h = probe_crun(root.path()).await;
        match &h.status {
            HandlerStatus::Available { version } => assert!(version.contains("crun"), "{version}"),
            HandlerStatus::Unavailable { reason } => panic!("crun unavailable: {reason}"),
        }
    }
}

#[tokio::test]
async fn missing_binary_is_unavailable() {
    let h = Handler::probe(
        "nope",
        Path::new("/no/such/runtime"),
        Path::new("/tmp/crius-nope"),
    )
    .await;
    assert!(
        matches!(h.status, HandlerStatus::Unavailable { ref reason } if reason.contains("not found"))
    );
}

const RUNSC: &str = "/usr/bin/runsc";

fn runsc_present() {
    assert!(
        Path::new(RUNSC).is_file(),
        "{RUNSC} is missing: install the Debian package runsc (scripts/install-deps.sh does)"
    );
}

/// The seccomp trial tells a runtime that applies `linux.seccomp` from one that ignores it: runc
/// applies it; gVisor's runsc applies it only with `--oci-seccomp`.
#[tokio::test]
async fn seccomp_trial_tells_applied_from_ignored() {
    runsc_present();
    let root = tempfile::tempdir().expect("tempdir");
    let runc = Handler::probe(
        "runc",
        Path::new("/usr/sbin/runc"),
        &root.path().join("runc"),
    )
    .await;
    crius_oci::trial_seccomp(&runc, std::time::Duration::from_secs(15))
        .await
        .expect("runc applies seccomp filters");
    for (args, applied) in [
        (
            vec!["--network=host".to_string(), "--oci-seccomp".to_string()],
            true,
        ),
        (vec!["--network=host".to_string()], false),
    ] {
        let h = Handler::probe_with(
            "runsc",
            Path::new(RUNSC),
            &root.path().join("runsc"),
            args.clone(),
            crius_oci::HandlerKind::Sandbox,
        )
        .await;
        assert!(
            h.ensure_available().is_ok(),
            "runsc {args:?}: {:?}",
            h.status
        );
        let r = crius_oci::trial_seccomp(&h, std::time::Duration::from_secs(15)).await;
        assert_eq!(r.is_ok(), applied, "runsc {args:?}: {r:?}");
    }
}

/// The seccomp trial's exec half tells a runtime that filters processes started by `exec` (runc)
/// from those that filter only the container's own process (gVisor's runsc 20221219 with
/// `--oci-seccomp`; youki 0.7.0 when built by scripts/install-youki.sh): the exec'd process ran,
/// and ran unfiltered, rather than failing to run.
#[tokio::test]
async fn seccomp_trial_tells_filtered_exec_from_unfiltered() {
    runsc_present();
    let root = tempfile::tempdir().expect("tempdir");
    let t = std::time::Duration::from_secs(15);
    let runc = Handler::probe(
        "runc",
        Path::new("/usr/sbin/runc"),
        &root.path().join("runc"),
    )
    .await;
    let r = crius_oci::trial_seccomp_full(&runc, t).await;
    assert_eq!(r.init, Ok(()), "runc: {r:?}");
    assert_eq!(r.exec, Ok(()), "runc filters exec'd processes: {r:?}");
    let mut unfiltered = vec![
        Handler::probe_with(
            "runsc",
            Path::new(RUNSC),
            &root.path().join("runsc"),
            vec!["--network=host".to_string(), "--oci-seccomp".to_string()],
            crius_oci::HandlerKind::Sandbox,
        )
        .await,
    ];
    let youki = Path::new(&std::env::var("CRIUS_TEST_DIR").unwrap_or("/var/lib/crius-test".into()))
        .join("youki/bin/youki");
    if youki.is_file() {
        unfiltered.push(Handler::probe("youki", &youki, &root.path().join("youki")).await);
    } else {
        eprintln!(
            "{} missing (scripts/install-youki.sh): youki not tried",
            youki.display()
        );
    }
    for h in unfiltered {
        assert!(h.ensure_available().is_ok(), "{}: {:?}", h.name, h.status);
        let r = crius_oci::trial_seccomp_full(&h, t).await;
        assert_eq!(r.init, Ok(()), "{}: {r:?}", h.name);
        let e = r.exec.expect_err(&h.name);
        assert!(
            e.contains("without the container's seccomp filter"),
            "{}: {e}",
            h.name
        );
    }
}
