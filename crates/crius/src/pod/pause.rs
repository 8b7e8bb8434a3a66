//! The pause process of a pod that shares one PID namespace, held by a pidfd rather than a bare pid.
//!
//! A pid names whatever process holds it now; after the pause dies (a root process in the pod can kill
//! it) the number may be reused by any process, possibly one in the host PID namespace. A pidfd names
//! one process for its whole life: signals through it never reach a successor, and it becomes readable
//! the moment that process exits. So: the pidfd is opened right after the spawn and checked to belong
//! to this pod's pause (its command line names the pod's pause.pid file); a task watches it and marks
//! the pod NotReady (and emits an event) as soon as the pause exits; containers join the PID namespace
//! only after the pidfd says the pause is still alive, and the join is checked again after the
//! container was created.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cri_api::v1 as cri;

use super::{Pod, PodState};
use crate::error::{Error, Result};
use crate::shared::now_ns;

/// A pause process known by its pidfd.
pub struct Pause {
    pub pid: i32,
    fd: OwnedFd,
}

impl Pause {
    /// True while the process the pidfd names has not exited. The pidfd polls readable once it has,
    /// an unreaped zombie included (signal 0 would still reach a zombie, and the PID namespace of a
    /// dead pid 1 takes no new process).
    pub fn alive(&self) -> bool {
        let mut fds = [libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd; timeout 0 never blocks.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
        r == 0
    }

    /// Sends `sig` to this process and no other.
    pub fn signal(&self, sig: libc::c_int) -> std::io::Result<()> {
        // SAFETY: valid pidfd; null siginfo; no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Waits until the process has exited (the pidfd turns readable).
    pub async fn exited(&self) -> std::io::Result<()> {
        // A duplicate of the pidfd names the same process; the AsyncFd owns it while registered.
        let dup = self.fd.try_clone()?;
        // SAFETY: the AsyncFd owns `dup`, so the fd stays open and unchanged while registered.
        let afd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(dup, tokio::io::Interest::READABLE)
        }
        .map_err(|e| e.into_parts().1)?;
        // A pidfd becomes readable exactly when the process exits, and stays so.
        let _ = afd.readable().await?;
        Ok(())
    }
}

fn table() -> &'static Mutex<HashMap<String, Arc<Pause>>> {
    static T: OnceLock<Mutex<HashMap<String, Arc<Pause>>>> = OnceLock::new();
    T.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The pidfd of `pid`, if it is the pause of the pod whose pid file is `pid_file`.
pub fn open(pid: i32, pid_file: &Path) -> Result<Pause> {
    // SAFETY: plain syscall; the fd it returns is owned below.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        return Err(Error::Internal(format!(
            "pidfd_open of pause pid {pid}: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: a fresh fd from pidfd_open, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let p = Pause { pid, fd };
    // Checked after the pidfd exists: if the pid was reused before pidfd_open, the command line is
    // not ours; if the pause dies after, `alive` says so.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let want = pid_file.to_string_lossy().to_string();
    let alive = p.alive();
    let cmd = String::from_utf8_lossy(&cmdline);
    let ours = cmd.contains(&want);
    if !ours || !alive {
        return Err(Error::Internal(format!(
            "pid {pid} is not the pause process of {} (alive: {alive}, command line {:?})",
            pid_file.display(),
            cmd.replace('\0', " ")
        )));
    }
    Ok(p)
}

/// Holds `pause` for `pod` and watches it: its exit makes the pod NotReady at once.
pub fn watch(rt: &Arc<super::Pods>, pod: &Arc<Pod>, pause: Pause) {
    let pause = Arc::new(pause);
    if let Ok(mut t) = table().lock() {
        t.insert(pod.id.clone(), pause.clone());
    }
    let rt = Arc::clone(rt);
    let pod = Arc::clone(pod);
    tokio::spawn(async move {
        if let Err(e) = pause.exited().await {
            tracing::warn!("pod {}: cannot watch the pause pidfd: {e}", pod.id);
            return;
        }
        let current = table()
            .lock()
            .ok()
            .and_then(|t| t.get(&pod.id).cloned())
            .map(|p| Arc::ptr_eq(&p, &pause))
            .unwrap_or(false);
        if !current {
            return; // stopped or removed on purpose
        }
        tracing::warn!(
            "pod {}: pause process {} exited; the pod is NotReady",
            pod.id,
            pause.pid
        );
        let was_ready = pod.record().state == PodState::Ready;
        if let Err(e) = pod.apply(&rt, super::state::PodEvent::Lost).await {
            tracing::warn!("pod {}: recording NotReady: {e}", pod.id);
        }
        if was_ready {
            rt.emit(cri::ContainerEventResponse {
                container_id: pod.id.clone(),
                container_event_type: cri::ContainerEventType::ContainerStoppedEvent as i32,
                created_at: now_ns(),
                pod_sandbox_status: Some(rt.pod_status_of(&pod.record())),
                containers_statuses: vec![],
            });
        }
    });
}

/// Forgets the pod's pause (after it was killed on purpose) and returns it.
pub fn take(pod_id: &str) -> Option<Arc<Pause>> {
    table().lock().ok().and_then(|mut t| t.remove(pod_id))
}

/// The pause of `pod_id`, if held and still alive.
pub fn living(pod_id: &str) -> Option<Arc<Pause>> {
    table()
        .lock()
        .ok()
        .and_then(|t| t.get(pod_id).cloned())
        .filter(|p| p.alive())
}

/// The pid in the pod's `pause.pid` (written by crius-pause), if any.
pub fn pid_from_file(pod_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(pod_dir.join("pause.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p: &i32| *p > 0)
}

/// Where the pod's PID namespace is pinned (a bind mount of the pause's `ns/pid`).
pub fn pin_path(pod_dir: &Path) -> PathBuf {
    pod_dir.join("pidns")
}

/// Pins the pause's PID namespace at `target`, through an fd opened while the pidfd vouched for the
/// pause: the pin names the pod's namespace for good, never one of a process that reused the pid.
pub fn pin_pid_ns(p: &Pause, target: &Path) -> Result<()> {
    let src = format!("/proc/{}/ns/pid", p.pid);
    let ns =
        std::fs::File::open(&src).map_err(|e| crate::error::io_err("open", Path::new(&src), e))?;
    // Alive after the open: the pid was the pause's when it was opened, so the fd is its namespace.
    if !p.alive() {
        return Err(Error::Internal(format!(
            "pause {} exited while its PID namespace was pinned",
            p.pid
        )));
    }
    std::fs::File::create(target).map_err(|e| crate::error::io_err("create pin", target, e))?;
    let via = format!("/proc/self/fd/{}", ns.as_raw_fd());
    nix::mount::mount(
        Some(via.as_str()),
        target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| Error::internal(format!("bind {src} onto {}", target.display()), e))
}

/// The PID namespace a container of this pod joins: the pinned namespace of the pause, while its
/// pidfd says it lives (a namespace without its pid 1 takes no new processes anyway).
pub fn pid_ns(pod_dir: &Path, pod_id: &str, pause_pid: Option<i32>) -> Result<Option<PathBuf>> {
    let Some(pid) = pause_pid else {
        return Ok(None);
    };
    match living(pod_id) {
        Some(p) if p.pid == pid => {
            let pin = pin_path(pod_dir);
            if super::namespaces::is_pinned(&pin) {
                Ok(Some(pin))
            } else {
                // A pod made before pins existed: the pidfd checks before and after the join stay.
                Ok(Some(PathBuf::from(format!("/proc/{pid}/ns/pid"))))
            }
        }
        _ => Err(Error::FailedPrecondition(format!(
            "pod {pod_id}: its pause process (pid 1 of the pod's PID namespace) is gone; the pod is not ready"
        ))),
    }
}

/// After a container joined the pod's PID namespace: was the pause still alive?
pub fn still_alive(pod_id: &str, pause_pid: Option<i32>) -> Result<()> {
    match (pause_pid, living(pod_id)) {
        (None, _) => Ok(()),
        (Some(pid), Some(p)) if p.pid == pid => Ok(()),
        _ => Err(Error::FailedPrecondition(format!(
            "pod {pod_id}: its pause process exited while the container was created"
        ))),
    }
}

/// The uid and gid the pause runs as: the pod's sandbox `run_as_user`/`run_as_group`, else 65535 (the
/// upstream pause image's user). Never root: pid 1 of the pod needs no privilege to reap.
pub fn identity(cfg: &cri::PodSandboxConfig) -> (u32, u32) {
    let sc = cfg.linux.as_ref().and_then(|l| l.security_context.as_ref());
    let nonroot = |v: Option<i64>| {
        v.filter(|v| *v > 0 && *v < i64::from(u32::MAX))
            .map(|v| v as u32)
            .unwrap_or(65535)
    };
    let uid = nonroot(sc.and_then(|s| s.run_as_user.as_ref()).map(|v| v.value));
    let gid = nonroot(sc.and_then(|s| s.run_as_group.as_ref()).map(|v| v.value));
    (uid, gid)
}
