//! A scratch, empty network namespace that lives as long as a helper thread. DEL of a pod whose pinned
//! namespace is already gone runs against it: plugins then find no interface (fine for them) but still
//! do their host-side cleanup, which several (bridge's ipMasq chain) skip when CNI_NETNS is missing.

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
    pub(crate) fn new() -> Result<ScratchNetns, NetworkError> {
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
        let ns = ScratchNetns::new().unwrap();
        let p = ns.path().to_path_buf();
        assert!(is_netns(&p));
        assert_ne!(
            std::fs::read_link(&p).unwrap(),
            std::fs::read_link("/proc/self/ns/net").unwrap()
        );
        drop(ns);
        assert!(!is_netns(&p));
        assert!(!is_netns(Path::new("/nonexistent")));
    }
}
