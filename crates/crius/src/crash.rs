//! Crash points: named places in every mutating operation where a test can make the daemon die as
//! with `kill -9`, to prove that recovery plus a retry leaves nothing behind.
//!
//! The switch is the environment variable `CRIUS_CRASH_POINT=<name>`, read once when the daemon
//! starts (`arm_from_env`). It is compiled in always but inert otherwise: no request field, config key
//! or signal can arm a point, and a name that is not in `POINTS` stops the daemon at start (a typo
//! must not make a crash test pass vacuously). `crius debug crash-points` lists the names.

use std::sync::OnceLock;

/// The environment variable that arms one crash point.
pub const ENV: &str = "CRIUS_CRASH_POINT";

/// Every crash point, in the order an operation reaches them, with what has happened when it fires.
pub const POINTS: &[(&str, &str)] = &[
    (
        "image.pull.config_stored",
        "PullImage: the config blob is in the content store, no layer yet",
    ),
    (
        "image.pull.unpack_started",
        "PullImage: a layer's temporary snapshot dir exists, unpacking begins",
    ),
    (
        "image.pull.layer_unpacked",
        "PullImage: a layer's blob and snapshot are committed under their digests",
    ),
    (
        "image.pull.blobs_stored",
        "PullImage: every blob and snapshot stored, the image not yet recorded",
    ),
    (
        "image.pull.committed",
        "PullImage: the image record is committed, the reply not sent",
    ),
    (
        "pod.run.recorded",
        "RunPodSandbox: the pod's record is written as Creating",
    ),
    (
        "pod.run.cgroup_created",
        "RunPodSandbox: the pod's cgroup exists",
    ),
    (
        "pod.run.namespaces_pinned",
        "RunPodSandbox: net/ipc/uts namespaces are pinned, the pins not yet recorded",
    ),
    (
        "pod.run.pause_spawned",
        "RunPodSandbox: the pause process runs, its pid not yet recorded",
    ),
    (
        "pod.run.pid_ns_pinned",
        "RunPodSandbox: pause recorded and its PID namespace pinned",
    ),
    (
        "pod.run.network_marked",
        "RunPodSandbox: the record says the network is up, CNI ADD not yet run",
    ),
    (
        "pod.run.network_added",
        "RunPodSandbox: CNI ADD done (veth, IP, rules), the IPs not yet recorded",
    ),
    (
        "pod.run.files_written",
        "RunPodSandbox: hostname, hosts, resolv.conf written and shm mounted, not yet recorded",
    ),
    (
        "pod.run.ready",
        "RunPodSandbox: the pod is recorded Ready, the reply not sent",
    ),
    (
        "container.create.recorded",
        "CreateContainer: the container's record is written as Creating",
    ),
    (
        "container.create.rootfs_prepared",
        "CreateContainer: the rootfs snapshot is mounted",
    ),
    (
        "container.create.spec_written",
        "CreateContainer: the OCI bundle's config.json is written",
    ),
    (
        "container.create.monitor_running",
        "CreateContainer: the monitor runs the OCI create, the daemon waits for its report",
    ),
    (
        "container.create.monitor_spawned",
        "CreateContainer: the OCI container is created, the record not yet Created",
    ),
    (
        "container.create.created",
        "CreateContainer: the record is Created, the reply not sent",
    ),
    (
        "container.start.runtime_started",
        "StartContainer: the OCI start returned, the record not yet Running",
    ),
    (
        "container.start.recorded",
        "StartContainer: the record is Running, the reply not sent",
    ),
    (
        "container.stop.signalled",
        "StopContainer: SIGKILL sent, the exit not yet collected",
    ),
    (
        "container.exit.recorded",
        "exit collection: the exit is recorded, the OCI state not yet deleted",
    ),
    (
        "container.remove.runtime_deleted",
        "RemoveContainer: the OCI state is deleted, the rootfs still mounted",
    ),
    (
        "container.remove.rootfs_removed",
        "RemoveContainer: the rootfs is unmounted and removed",
    ),
    (
        "container.remove.state_dir_removed",
        "RemoveContainer: the state dir is gone, the record not yet deleted",
    ),
    (
        "pod.stop.containers_stopped",
        "StopPodSandbox: every container stopped, the pod's resources untouched",
    ),
    (
        "pod.stop.network_released",
        "StopPodSandbox: CNI DEL done, the record still says the network is up",
    ),
    (
        "pod.stop.pause_killed",
        "StopPodSandbox: pause killed, its pid still recorded",
    ),
    (
        "pod.stop.recorded",
        "StopPodSandbox: the pod is recorded NotReady, the reply not sent",
    ),
    (
        "pod.remove.containers_removed",
        "RemovePodSandbox: the pod's containers are removed",
    ),
    (
        "pod.remove.state_dir_removed",
        "RemovePodSandbox: the state dir and cgroup are gone, the record not yet deleted",
    ),
    (
        "image.remove.untagged",
        "RemoveImage: the image record is deleted, blobs and snapshots not yet collected",
    ),
    (
        "image.remove.snapshot_renamed",
        "RemoveImage: a snapshot is renamed for deletion, not yet deleted",
    ),
];

static ARMED: OnceLock<Option<&'static str>> = OnceLock::new();

/// Reads `CRIUS_CRASH_POINT` (once, at daemon start) and installs the hooks of the library crates.
/// An unknown name is an error.
pub fn arm_from_env() -> anyhow::Result<()> {
    let armed = match std::env::var(ENV) {
        Err(_) => None,
        Ok(v) if v.is_empty() => None,
        Ok(v) => match POINTS.iter().find(|(n, _)| *n == v) {
            Some((n, _)) => Some(*n),
            None => anyhow::bail!(
                "{ENV}={v:?} names no crash point (`crius debug crash-points` lists them)"
            ),
        },
    };
    let _ = ARMED.set(armed);
    if let Some(n) = armed {
        tracing::warn!("crash point {n} is armed: the daemon kills itself when it gets there");
        crius_image::set_crash_hook(point);
        crius_oci::set_crash_hook(point);
    }
    Ok(())
}

/// A crash point: kills the daemon with SIGKILL if `name` is the armed point, else does nothing.
pub fn point(name: &'static str) {
    debug_assert!(
        POINTS.iter().any(|(n, _)| *n == name),
        "crash point {name} is not in crash::POINTS"
    );
    if ARMED.get().copied().flatten() == Some(name) {
        eprintln!("crius: crash point {name} reached: SIGKILL");
        // SAFETY: kill(2) on our own pid has no memory-safety effect; SIGKILL cannot be caught, so
        // the process ends here exactly as with `kill -9`.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_dotted() {
        let mut seen = std::collections::HashSet::new();
        for (n, what) in POINTS {
            assert!(seen.insert(*n), "duplicate crash point {n}");
            assert_eq!(n.split('.').count(), 3, "{n}: operation.step form");
            assert!(!what.is_empty());
        }
    }

    #[test]
    fn an_unarmed_point_does_nothing() {
        point("pod.run.ready");
    }
}
