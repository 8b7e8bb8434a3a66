//! The PID namespace of a TARGET container (`namespace_options.pid = TARGET`, e.g. an ephemeral debug
//! container joining the container it debugs), held by a pidfd rather than named by a bare pid.
//!
//! `/proc/<pid>/ns/pid` names whatever process holds the pid when the runtime opens it: if the target's
//! init has exited (and crius has not noticed yet) the pid may already belong to another process,
//! possibly one in the host PID namespace. So the namespace is resolved once, here: a pidfd is opened
//! for the recorded pid; the process it names must be in the target container's cgroup
//! (`crius-<id>`); its `ns/pid` is opened; the pidfd must still say the process lives after that
//! open (a live process keeps its pid, so the fd is the target's namespace). The fd is pinned by a bind
//! mount at `<container dir>/target-pidns`, which is what the spec names, and released once the
//! runtime has created the container (its init is in the namespace by then).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const FIELD: &str = "config.linux.security_context.namespace_options.target_id";

/// Where the target's PID namespace is pinned for the container being created in `ctr_dir`.
pub fn pin_path(ctr_dir: &Path) -> PathBuf {
    ctr_dir.join("target-pidns")
}

/// True while the process has not exited. A pidfd polls readable once its process has exited, zombies
/// included (signal 0 would still reach an unreaped zombie, whose PID namespace takes no new process).
fn alive(pidfd: &OwnedFd) -> bool {
    let mut fds = [libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: one valid pollfd; timeout 0 never blocks.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
    r == 0
}

fn gone(target_id: &str, pid: i32, why: impl std::fmt::Display) -> Error {
    Error::FailedPrecondition(format!(
        "{FIELD}: container {target_id} (pid {pid}) cannot be joined: {why}"
    ))
}

/// True if one of the process' cgroups (any hierarchy) is the container's own `crius-<id>` cgroup
/// (cgroupfs `.../crius-<id>`, systemd `.../crius-<id>.scope`).
fn in_container_cgroup(cgroup_file: &str, container_id: &str) -> bool {
    let want = format!("crius-{container_id}");
    cgroup_file.lines().any(|l| {
        let path = l.splitn(3, ':').nth(2).unwrap_or("");
        path.rsplit('/')
            .next()
            .is_some_and(|last| last == want || last == format!("{want}.scope"))
    })
}

/// Resolves and pins the PID namespace of container `target_id`, whose init crius recorded as `pid`.
/// Returns the pin's path (for the spec). FailedPrecondition if that pid no longer names the
/// container's process.
pub fn pin(ctr_dir: &Path, target_id: &str, pid: i32) -> Result<PathBuf> {
    if pid <= 0 {
        return Err(gone(target_id, pid, "it has no recorded process"));
    }
    // SAFETY: plain syscall; the fd it returns is owned below.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        return Err(gone(
            target_id,
            pid,
            format!("pidfd_open: {}", std::io::Error::last_os_error()),
        ));
    }
    // SAFETY: a fresh fd from pidfd_open, owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let cg_path = format!("/proc/{pid}/cgroup");
    let cgroups = std::fs::read_to_string(&cg_path).unwrap_or_default();
    if !in_container_cgroup(&cgroups, target_id) {
        return Err(gone(
            target_id,
            pid,
            "the pid now names a process outside the container's cgroup (it exited and the pid was reused)",
        ));
    }
    let src = format!("/proc/{pid}/ns/pid");
    let ns = std::fs::File::open(&src).map_err(|e| gone(target_id, pid, format!("{src}: {e}")))?;
    // Alive after the open: the pid named the process the pidfd holds when `ns` was opened.
    if !alive(&pidfd) {
        return Err(gone(target_id, pid, "its process exited"));
    }
    let target = pin_path(ctr_dir);
    release(ctr_dir);
    std::fs::File::create(&target)
        .map_err(|e| crate::error::io_err("create the target PID namespace pin", &target, e))?;
    let via = format!("/proc/self/fd/{}", ns.as_raw_fd());
    nix::mount::mount(
        Some(via.as_str()),
        &target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| Error::internal(format!("bind {src} onto {}", target.display()), e))?;
    Ok(target)
}

/// Unpins (if pinned) and removes the pin file; called once the runtime's create returned, whatever
/// its outcome.
pub fn release(ctr_dir: &Path) {
    crate::pod::namespaces::unpin_path(&pin_path(ctr_dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_lines_must_end_in_the_containers_own_cgroup() {
        let id = "abc123";
        assert!(in_container_cgroup("12:pids:/crius/crius-abc123\n", id));
        assert!(in_container_cgroup(
            "0::/kubepods.slice/crius-abc123.scope\n",
            id
        ));
        assert!(in_container_cgroup(
            "3:cpu:/x\n1:name=systemd:/kubepods/crius-abc123\n",
            id
        ));
        assert!(!in_container_cgroup("12:pids:/crius/crius-abc1234\n", id));
        assert!(!in_container_cgroup("12:pids:/crius-abc123/other\n", id));
        assert!(!in_container_cgroup("0::/\n", id));
        assert!(!in_container_cgroup("", id));
    }

    /// A real process of the host (this test's own child) is not the container's: refused with
    /// FailedPrecondition naming the field, and nothing is pinned.
    #[test]
    fn a_pid_outside_the_containers_cgroup_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let r = pin(dir.path(), "abc123", child.id() as i32);
        let _ = child.kill();
        let _ = child.wait();
        match r {
            Err(Error::FailedPrecondition(m)) => {
                assert!(m.contains(FIELD) && m.contains("reused"), "{m}")
            }
            other => panic!("want FailedPrecondition, got {other:?}"),
        }
        assert!(!pin_path(dir.path()).exists());
        // A pid that names no process at all.
        let pid = child.id() as i32;
        assert!(matches!(
            pin(dir.path(), "abc123", pid),
            Err(Error::FailedPrecondition(_))
        ));
        assert!(matches!(
            pin(dir.path(), "abc123", 0),
            Err(Error::FailedPrecondition(_))
        ));
    }
}
