//! A scratch network namespace that lives as long as a helper thread, standing in for a pod's namespace
//! at DEL time when the pin is gone (or the pod's interface is). Plugins skip host-side cleanup without
//! a namespace, and the bridge plugin (1.1.x) learns which ipMasq rules to remove from the addresses of
//! the interface it deletes; so the scratch namespace gets a stand-in interface with the cached addresses.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use nix::sched::{unshare, CloneFlags};

use crate::error::NetworkError;

pub(crate) struct ScratchNetns {
    path: PathBuf,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ScratchNetns {
    /// `ifname` with `addrs` (CIDR strings) is created (one end of a veth pair) when `addrs` is non-empty; if
    /// that fails the namespace stays empty (plugins then tolerate the missing link).
    pub(crate) fn new(ifname: &str, addrs: &[String]) -> Result<ScratchNetns, NetworkError> {
        let ifname = ifname.to_string();
        let addrs = addrs.to_vec();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<PathBuf, std::io::Error>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("crius-scratch-netns".into())
            .spawn(move || {
                // Only this thread changes namespace; it does nothing else and exits when told.
                let res = unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
                    .map(|()| {
                        let tid = nix::unistd::gettid();
                        PathBuf::from(format!("/proc/{}/task/{tid}/ns/net", std::process::id()))
                    });
                let ok = res.is_ok();
                if ok && !addrs.is_empty() {
                    // Children inherit the calling thread's namespace, so `ip` acts inside it.
                    if let Err(err) = add_stand_in(&ifname, &addrs) {
                        tracing::warn!(%err, "scratch netns: no stand-in link; DEL may keep ipMasq rules");
                    }
                }
                let _ = ready_tx.send(res);
                if ok {
                    let _ = stop_rx.recv();
                }
            })
            .map_err(|e| NetworkError::io("scratch network namespace thread", e))?;
        let path = match ready_rx.recv() {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(NetworkError::io("unshare(CLONE_NEWNET)", e));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(NetworkError::io(
                    "scratch network namespace thread",
                    std::io::Error::other("helper thread exited early"),
                ));
            }
        };
        Ok(ScratchNetns {
            path,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchNetns {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn add_stand_in(ifname: &str, addrs: &[String]) -> Result<(), String> {
    let ip = |args: &[&str]| -> Result<(), String> {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("ip {args:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    // A veth pair rather than a dummy link: veth is always there (the bridge plugin needs it), the dummy
    // module often is not. Both ends stay in the scratch namespace and vanish with it.
    ip(&[
        "link",
        "add",
        ifname,
        "type",
        "veth",
        "peer",
        "name",
        "scratch-peer",
    ])?;
    for a in addrs {
        ip(&["addr", "add", a, "dev", ifname])?;
    }
    Ok(())
}

/// Whether the namespace at `path` has a link called `ifname`; `None` when that cannot be told.
pub(crate) fn has_link(path: &Path, ifname: &str) -> Option<bool> {
    let path = path.to_path_buf();
    let name = std::ffi::CString::new(ifname).ok()?;
    std::thread::Builder::new()
        .name("crius-netns-probe".into())
        .spawn(move || {
            let f = std::fs::File::open(&path).ok()?;
            nix::sched::setns(std::os::fd::AsFd::as_fd(&f), CloneFlags::CLONE_NEWNET).ok()?;
            // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
            let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
            Some(idx != 0)
        })
        .ok()?
        .join()
        .ok()?
}

/// Whether `path` is (still) a network namespace, i.e. a live pin.
pub(crate) fn is_netns(path: &Path) -> bool {
    // NSFS_MAGIC: a bind-mounted or /proc namespace file; anything else (plain file left after the
    // unmount, missing file) means the namespace is gone.
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    // The magic's integer type differs between architectures, hence the cast.
    #[allow(clippy::unnecessary_cast)]
    match nix::sys::statfs::statfs(path) {
        Ok(st) => st.filesystem_type().0 as i64 == NSFS_MAGIC,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_namespace_is_a_netns_while_alive() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let ns = ScratchNetns::new("eth0", &["10.254.1.2/24".to_string()]).unwrap();
        let p = ns.path().to_path_buf();
        assert!(is_netns(&p));
        assert_eq!(has_link(&p, "eth0"), Some(true));
        assert_eq!(has_link(&p, "eth1"), Some(false));
        assert_eq!(has_link(Path::new("/proc/self/ns/net"), "lo"), Some(true));
        assert_ne!(
            std::fs::read_link(&p).unwrap(),
            std::fs::read_link("/proc/self/ns/net").unwrap()
        );
        drop(ns);
        assert!(!is_netns(&p));
        assert!(!is_netns(Path::new("/nonexistent")));
    }
}
