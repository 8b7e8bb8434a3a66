//! What the probes made, so it can be removed after each probe, at the end of a run, and on Ctrl-C.
//!
//! Host resources are recorded before they are made. Pods carry the run's label, so a pod whose
//! RunPodSandbox answer never arrived (a hang, Ctrl-C) is still found by [`Ledger::sweep`].

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use cri_api::v1 as cri;

use crate::client::Cri;

/// The label every pod made by a run carries, with the run id as value.
pub const RUN_LABEL: &str = "crius-portability/run";

#[derive(Debug, Clone)]
pub enum Made {
    Pod(String),
    Container(String),
    /// A mount on the host (a tmpfs under the scratch dir).
    Mount(PathBuf),
    File(PathBuf),
    /// A directory this run created (removed with its contents).
    Dir(PathBuf),
}

pub struct Ledger {
    made: Mutex<Vec<Made>>,
    errors: Mutex<Vec<String>>,
    /// Bound of each removal call.
    call: Duration,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new(Duration::from_secs(15))
    }
}

impl Ledger {
    pub fn new(call: Duration) -> Ledger {
        Ledger {
            made: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            call,
        }
    }

    pub fn record(&self, m: Made) {
        if let Ok(mut v) = self.made.lock() {
            v.push(m);
        }
    }

    pub fn mark(&self) -> usize {
        self.made.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Errors met while removing things (reported, so a leak is never silent).
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn error(&self, e: String) {
        if let Ok(mut v) = self.errors.lock() {
            v.push(e);
        }
    }

    /// Removes, newest first, everything recorded after `mark`.
    pub async fn unwind_to(&self, cri: &Cri, mark: usize) {
        let items: Vec<Made> = match self.made.lock() {
            Ok(mut v) => {
                let at = mark.min(v.len());
                v.split_off(at)
            }
            Err(_) => return,
        };
        for m in items.into_iter().rev() {
            self.remove(cri, m).await;
        }
    }

    async fn remove(&self, cri: &Cri, m: Made) {
        let mut rt = cri.rt.clone();
        match m {
            Made::Container(id) => {
                let _ = tokio::time::timeout(
                    self.call,
                    rt.stop_container(cri::StopContainerRequest {
                        container_id: id.clone(),
                        timeout: 0,
                    }),
                )
                .await;
                match tokio::time::timeout(
                    self.call,
                    rt.remove_container(cri::RemoveContainerRequest {
                        container_id: id.clone(),
                    }),
                )
                .await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(s)) if s.code() == tonic::Code::NotFound => {}
                    Ok(Err(s)) => self.error(format!("remove container {id}: {}", s.message())),
                    Err(_) => self.error(format!(
                        "remove container {id}: no answer in {:?}",
                        self.call
                    )),
                }
            }
            Made::Pod(id) => self.remove_pod(cri, &id).await,
            Made::Mount(p) => {
                if let Err(e) = umount(&p) {
                    self.error(format!("umount {}: {e}", p.display()));
                }
            }
            Made::File(p) => match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => self.error(format!("remove {}: {e}", p.display())),
            },
            Made::Dir(p) => match std::fs::remove_dir_all(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => self.error(format!("remove {}: {e}", p.display())),
            },
        }
    }

    async fn remove_pod(&self, cri: &Cri, id: &str) {
        let mut rt = cri.rt.clone();
        let _ = tokio::time::timeout(
            self.call,
            rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.to_string(),
            }),
        )
        .await;
        match tokio::time::timeout(
            self.call,
            rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.to_string(),
            }),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(s)) if s.code() == tonic::Code::NotFound => {}
            Ok(Err(s)) => self.error(format!("remove pod {id}: {}", s.message())),
            Err(_) => self.error(format!("remove pod {id}: no answer in {:?}", self.call)),
        }
    }

    /// Removes every pod labelled with this run (covers creations whose answer was lost).
    pub async fn sweep(&self, cri: &Cri, run_id: &str) {
        let mut rt = cri.rt.clone();
        let req = cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: [(RUN_LABEL.to_string(), run_id.to_string())].into(),
                ..Default::default()
            }),
        };
        match tokio::time::timeout(self.call, rt.list_pod_sandbox(req)).await {
            Ok(Ok(r)) => {
                for p in r.into_inner().items {
                    // A runtime that ignores the filter must not lose other pods.
                    if p.labels.get(RUN_LABEL).map(String::as_str) == Some(run_id) {
                        self.remove_pod(cri, &p.id).await;
                    }
                }
            }
            Ok(Err(s)) => self.error(format!("list pods to sweep: {}", s.message())),
            Err(_) => self.error(format!("list pods to sweep: no answer in {:?}", self.call)),
        }
    }
}

fn cstr(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))
}

/// Mounts a small tmpfs at `p`.
pub fn mount_tmpfs(p: &Path) -> std::io::Result<()> {
    let target = cstr(p)?;
    let fstype = CString::new("tmpfs").map_err(std::io::Error::other)?;
    let data = CString::new("size=1m,mode=0755").map_err(std::io::Error::other)?;
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Detaches the mount at `p` (lazily, so a runtime still holding it cannot make this fail).
pub fn umount(p: &Path) -> std::io::Result<()> {
    let target = cstr(p)?;
    // SAFETY: `target` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(()); // not mounted (any more)
        }
        return Err(e);
    }
    Ok(())
}
