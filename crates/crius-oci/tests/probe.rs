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

#[tokio::test]
async fn crun_is_unavailable_on_this_host_with_a_reason() {
    let root = tempfile::tempdir().expect("tempdir");
    let h = Handler::probe(
        "crun",
        Path::new("/usr/bin/crun"),
        &root.path().join("crun"),
    )
    .await;
    match &h.status {
        HandlerStatus::Unavailable { reason } => {
            eprintln!("crun: {reason}");
            assert!(reason.contains("cannot run a container"), "{reason}");
        }
        HandlerStatus::Available { version } => panic!("crun unexpectedly usable ({version})"),
    }
    assert!(h.ensure_available().is_err());
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
