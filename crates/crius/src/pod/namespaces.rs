//! Pause-less pods: a pod's network, IPC and UTS namespaces are created by a short-lived thread and kept
//! alive by bind-mounting them onto files in the pod's state dir. Containers join them by path.
//!
//! A thread (not a process) is enough: Linux namespaces belong to tasks, so `unshare` in a fresh thread
//! moves only that thread, and the thread exits right after the bind mounts are made. Only a PID namespace
//! needs a living process (its pid 1): see [`spawn_pause`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::error::{io_err, Error, Result};

/// The pinned namespaces of one pod (None = the host's).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Pins {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// The pod's own user namespace (userns_options POD); it owns the others.
    #[serde(default)]
    pub user: Option<PathBuf>,
}

impl Pins {
    pub fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.net
            .iter()
            .chain(self.ipc.iter())
            .chain(self.uts.iter())
            .chain(self.user.iter())
    }
}

/// Creates and pins new namespaces under `dir` (files `net`, `ipc`, `uts`), setting `hostname` in the
/// new UTS namespace. On error nothing stays mounted.
pub fn pin(dir: &Path, net: bool, ipc: bool, uts: bool, hostname: &str) -> Result<Pins> {
    let mut flags = CloneFlags::empty();
    let mut pins = Pins::default();
    if net {
        flags |= CloneFlags::CLONE_NEWNET;
        pins.net = Some(dir.join("net"));
    }
    if ipc {
        flags |= CloneFlags::CLONE_NEWIPC;
        pins.ipc = Some(dir.join("ipc"));
    }
    if uts {
        flags |= CloneFlags::CLONE_NEWUTS;
        pins.uts = Some(dir.join("uts"));
    }
    if flags.is_empty() {
        return Ok(pins);
    }
    let dir = dir.to_path_buf();
    let hostname = hostname.to_string();
    let pins2 = pins.clone();
    let result = std::thread::Builder::new()
        .name("crius-nspin".into())
        .spawn(move || -> Result<()> {
            unshare(flags).map_err(|e| {
                Error::internal(
                    format!("unshare namespaces for pod dir {}", dir.display()),
                    e,
                )
            })?;
            if uts && !hostname.is_empty() {
                nix::unistd::sethostname(&hostname)
                    .map_err(|e| Error::internal(format!("set hostname {hostname:?}"), e))?;
            }
            let tid = nix::unistd::gettid();
            for (kind, target) in [
                ("net", &pins2.net),
                ("ipc", &pins2.ipc),
                ("uts", &pins2.uts),
            ] {
                let Some(target) = target else { continue };
                std::fs::File::create(target)
                    .map_err(|e| io_err("create namespace pin", target, e))?;
                let source = format!("/proc/self/task/{tid}/ns/{kind}");
                mount(
                    Some(source.as_str()),
                    target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| {
                    Error::internal(format!("bind {source} onto {}", target.display()), e)
                })?;
            }
            Ok(())
        })
        .map_err(|e| Error::internal("spawn namespace thread", e))?
        .join()
        .map_err(|_| Error::Internal("namespace thread panicked".into()))?;
    if let Err(e) = result {
        unpin(&pins);
        return Err(e);
    }
    Ok(pins)
}

/// Unmounts and removes pins; missing or already unmounted pins are fine (idempotent).
pub fn unpin(pins: &Pins) {
    for p in pins.paths() {
        unpin_path(p);
    }
}

pub fn unpin_path(p: &Path) {
    let _ = umount2(p, MntFlags::MNT_DETACH);
    match std::fs::remove_file(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("remove namespace pin {}: {e}", p.display()),
    }
}

/// Whether `p` is a live namespace pin (a mounted nsfs file).
pub fn is_pinned(p: &Path) -> bool {
    // An nsfs bind mount reports the nsfs magic; a plain leftover file does not.
    nix::sys::statfs::statfs(p)
        .map(|s| s.filesystem_type().0 == 0x6e736673)
        .unwrap_or(false)
}

/// Starts the pod's pause process, pid 1 of a new PID namespace that the pod's containers join.
/// Returns its pid (in the host's PID namespace). It survives daemon restarts (own session).
/// It starts in `join_cgroups` (out of the daemon's cgroup, see `cgroups::lifetime`).
pub async fn spawn_pause(
    pause_bin: &Path,
    pid_file: &Path,
    identity: Option<(u32, u32)>,
    userns: Option<&Path>,
    join_cgroups: &[std::path::PathBuf],
) -> Result<i32> {
    let procs = crius_oci::cgroup_procs_files(join_cgroups)
        .map_err(|e| Error::Internal(format!("pause cgroups: {e}")))?;
    let mut cmd = tokio::process::Command::new(pause_bin);
    cmd.arg(pid_file)
        .args(match identity {
            Some((uid, gid)) => [uid.to_string(), gid.to_string()],
            // Keeps its credentials (see crius-pause).
            None => ["keep".to_string(), "keep".to_string()],
        })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // A pod with its own user namespace: the PID namespace must belong to it (the containers' root
    // mounts /proc for it), so pause enters the user namespace before unsharing.
    let userns = match userns {
        Some(p) => {
            Some(std::fs::File::open(p).map_err(|e| io_err("open user namespace pin", p, e))?)
        }
        None => None,
    };
    // SAFETY: setsid, setns, unshare and the open/write of join_cgroups_in_child are async-signal-safe;
    // the new PID namespace applies
    // to the pause binary's children, and it forks its pid 1 right away.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            // Out of the daemon's cgroup first, while still in the host's user namespace.
            crius_oci::join_cgroups_in_child(&procs)?;
            if let Some(f) = &userns {
                nix::sched::setns(f, CloneFlags::CLONE_NEWUSER).map_err(std::io::Error::from)?;
            }
            unshare(CloneFlags::CLONE_NEWPID).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = crius_oci::spawn_off_worker(cmd)
        .await
        .map_err(|e| io_err("run pause binary", pause_bin, e))?;
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .map_err(|_| {
            Error::Internal(format!(
                "pause {} did not start in 10s",
                pause_bin.display()
            ))
        })?
        .map_err(|e| io_err("run pause binary", pause_bin, e))?;
    if !out.status.success() {
        return Err(Error::Internal(format!(
            "pause {} failed ({}): {}",
            pause_bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = std::fs::read_to_string(pid_file)
        .map_err(|e| io_err("read pause pid file", pid_file, e))?;
    text.trim()
        .parse::<i32>()
        .map_err(|e| Error::Internal(format!("pause pid file {}: {e}", pid_file.display())))
}
