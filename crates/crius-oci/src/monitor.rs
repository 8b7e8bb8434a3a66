//! The daemon's side of `crius-monitor`: spawning it (which creates the container), reading the
//! exit status it leaves behind, watching its pid, and its control socket (log reopen).
//! The wire formats are specified at the top of `crates/crius-monitor/src/main.rs`.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::{Handler, OciError};

/// The fd number the sync pipe gets in the monitor.
const SYNC_FD: i32 = 3;
/// Extra time granted to the monitor beyond the runtime's create timeout (it enforces that one
/// itself and then cleans up).
const SYNC_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub monitor_binary: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    /// Where the monitor keeps monitor.pid, container.pid, exit.json, attach.sock, ctl.
    pub state_dir: PathBuf,
    pub log_path: Option<PathBuf>,
    /// The pod's log directory: the monitor resolves `log_path` beneath it, following no symlink.
    pub log_dir: Option<PathBuf>,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    /// memory.events (cgroup v2) or memory.oom_control (v1) of the container's cgroup.
    pub oom_file: Option<PathBuf>,
    pub create_timeout: Duration,
    /// Cgroup directories the monitor joins before it execs, so that it and the container it creates
    /// do not live in the daemon's cgroup (a service restart must not kill them).
    pub join_cgroups: Vec<PathBuf>,
    /// The container joins a sandbox (gVisor): the monitor runs its `start` (see [`start`]), which is
    /// where such a runtime takes the container's stdio, and learns its exit from `<runtime> wait`.
    pub start_by_monitor: bool,
}

/// `<dir>/cgroup.procs` of each dir, ready for [`join_cgroups_in_child`].
pub fn cgroup_procs_files(dirs: &[PathBuf]) -> Result<Vec<std::ffi::CString>, OciError> {
    dirs.iter()
        .map(|d| {
            let p = d.join("cgroup.procs");
            std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).map_err(|e| {
                OciError::io(
                    "cgroup path",
                    &p,
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                )
            })
        })
        .collect()
}

/// Moves the calling process into each cgroup (writes `0` to its `cgroup.procs`). Meant for a
/// `pre_exec` hook: only open/write/close, no allocation.
pub fn join_cgroups_in_child(procs: &[std::ffi::CString]) -> std::io::Result<()> {
    for p in procs {
        // SAFETY: p is a valid NUL-terminated path; open/write/close are async-signal-safe.
        unsafe {
            let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if n != 1 {
                return Err(err);
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorHandle {
    pub monitor_pid: i32,
    pub container_pid: i32,
}

/// The monitor's record of how the container ended (`<state>/exit.json`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit status, or 128 + signal when a signal killed it.
    pub exit_code: i32,
    #[serde(default)]
    pub signal: Option<i32>,
    pub finished_at_ns: i64,
    #[serde(default)]
    pub started_at_ns: Option<i64>,
    #[serde(default)]
    pub oom_killed: bool,
}

#[derive(Deserialize)]
struct SyncMsg {
    ok: bool,
    #[serde(default)]
    monitor_pid: i32,
    #[serde(default)]
    container_pid: i32,
    #[serde(default)]
    error: String,
}

fn monitor_args(handler: &Handler, cfg: &MonitorConfig) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![
        "--id".into(),
        cfg.id.clone().into(),
        "--bundle".into(),
        cfg.bundle.clone().into(),
        "--state-dir".into(),
        cfg.state_dir.clone().into(),
        "--runtime".into(),
        handler.binary.clone().into(),
        "--runtime-root".into(),
        handler.root.clone().into(),
        "--sync-fd".into(),
        SYNC_FD.to_string().into(),
        "--create-timeout-ms".into(),
        cfg.create_timeout.as_millis().to_string().into(),
    ];
    if let Some(p) = &cfg.log_path {
        a.push("--log-path".into());
        a.push(p.clone().into());
    }
    if let Some(p) = &cfg.log_dir {
        a.push("--log-dir".into());
        a.push(p.clone().into());
    }
    for g in &handler.global_args {
        a.push("--runtime-arg".into());
        a.push(g.into());
    }
    if let Some(p) = &cfg.oom_file {
        a.push("--oom-file".into());
        a.push(p.clone().into());
    }
    for (on, flag) in [
        (handler.systemd_cgroup, "--systemd-cgroup"),
        (cfg.tty, "--tty"),
        (cfg.start_by_monitor, "--start-by-monitor"),
        // gVisor: a container's gofer goes with it (see crius-monitor).
        (
            handler.kind == crate::HandlerKind::Sandbox,
            "--reap-children",
        ),
        (cfg.stdin, "--stdin"),
        (cfg.stdin_once, "--stdin-once"),
    ] {
        if on {
            a.push(flag.into());
        }
    }
    a
}

/// Starts a monitor for `cfg.id`, which runs the runtime's `create`. Returns once the container
/// is created (its process waits for [`Handler::start`]). On failure nothing is left behind: the
/// monitor has exited and the runtime's half-made container is deleted.
pub async fn spawn_monitor(
    handler: &Handler,
    cfg: &MonitorConfig,
) -> Result<MonitorHandle, OciError> {
    handler.ensure_available()?;
    let create_err = |stderr: String| OciError::Create {
        id: cfg.id.clone(),
        binary: handler.binary.clone(),
        stderr,
    };
    std::fs::create_dir_all(&cfg.state_dir)
        .map_err(|e| OciError::io("create state dir", &cfg.state_dir, e))?;
    // A stale exit.json from an earlier attempt would be mistaken for this container's exit.
    for stale in ["exit.json", "monitor.pid"] {
        let p = cfg.state_dir.join(stale);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(OciError::io("remove stale", p, e)),
        }
    }
    let (rx, tx) = pipe().map_err(|e| OciError::io("sync pipe for", &cfg.state_dir, e))?;
    let tx_raw = tx.as_raw_fd();
    let procs = cgroup_procs_files(&cfg.join_cgroups)?;
    let mut cmd = tokio::process::Command::new(&cfg.monitor_binary);
    cmd.args(monitor_args(handler, cfg))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.as_std_mut().pre_exec(move || {
            // dup2 clears close-on-exec on the copy, which is exactly what the monitor needs.
            if libc::dup2(tx_raw, SYNC_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            join_cgroups_in_child(&procs)
        });
    }
    let child = crate::spawn_off_worker(cmd).await.map_err(|e| {
        OciError::io(
            format!("spawn monitor for {}", cfg.id),
            &cfg.monitor_binary,
            e,
        )
    })?;
    drop(tx);
    // The invoked process forks the real monitor and exits at once.
    let first = child.wait_with_output().await.map_err(|e| {
        OciError::io(
            format!("wait for monitor of {}", cfg.id),
            &cfg.monitor_binary,
            e,
        )
    })?;
    if !first.status.success() {
        return Err(create_err(format!(
            "monitor {} failed ({}): {}",
            cfg.monitor_binary.display(),
            first.status,
            String::from_utf8_lossy(&first.stderr).trim()
        )));
    }
    crate::crash_point("container.create.monitor_running");
    let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(rx)
        .map_err(|e| OciError::io("sync pipe for", &cfg.state_dir, e))?;
    let mut line = String::new();
    let wait = cfg.create_timeout + SYNC_GRACE;
    let read = tokio::time::timeout(wait, BufReader::new(rx).read_line(&mut line)).await;
    match read {
        Err(_) => {
            // The monitor is wedged: kill it and whatever the runtime made.
            if let Some(pid) = read_pid(&cfg.state_dir.join("monitor.pid")) {
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            let _ = handler.delete(&cfg.id, true).await;
            return Err(OciError::Timeout {
                op: "create",
                id: cfg.id.clone(),
                binary: handler.binary.clone(),
                after: wait,
            });
        }
        Ok(Err(e)) => return Err(OciError::io("read sync pipe for", &cfg.state_dir, e)),
        Ok(Ok(_)) => {}
    }
    if line.trim().is_empty() {
        let _ = handler.delete(&cfg.id, true).await;
        let note = std::fs::read_to_string(cfg.state_dir.join("monitor.log")).unwrap_or_default();
        return Err(create_err(format!(
            "monitor exited without reporting. {}",
            note.trim()
        )));
    }
    let msg: SyncMsg = serde_json::from_str(line.trim()).map_err(|e| OciError::Protocol {
        id: cfg.id.clone(),
        what: format!("bad monitor sync line {line:?}: {e}"),
    })?;
    if !msg.ok {
        // The monitor deletes the container itself; wait for it so "nothing left behind" holds
        // when we return.
        if msg.monitor_pid > 0 {
            let _ =
                tokio::time::timeout(Duration::from_secs(10), wait_pid_exit(msg.monitor_pid)).await;
        }
        return Err(create_err(msg.error));
    }
    Ok(MonitorHandle {
        monitor_pid: msg.monitor_pid,
        container_pid: msg.container_pid,
    })
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh fds from pipe2. The write end's O_NONBLOCK is irrelevant: the monitor writes
    // one short line.
    use std::os::fd::FromRawFd;
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p: &i32| *p > 0)
}

/// The exit status the monitor recorded, if it has recorded one.
pub fn read_exit(state_dir: &Path) -> Result<Option<ExitInfo>, OciError> {
    let path = state_dir.join("exit.json");
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| OciError::Protocol {
                id: state_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                what: format!("bad {}: {e}", path.display()),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(OciError::io("read", path, e)),
    }
}

/// Resolves when process `pid` (not necessarily our child) has exited; at once if it is gone.
pub async fn wait_pid_exit(pid: i32) -> Result<(), OciError> {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(OciError::io("pidfd_open", format!("/proc/{pid}"), e));
    }
    // SAFETY: fresh fd from pidfd_open.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open and unchanged while registered.
    let afd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    }
    .map_err(|e| e.into_parts().1)
    .map_err(|e| OciError::io("watch pidfd of", format!("/proc/{pid}"), e))?;
    // A pidfd becomes readable exactly when the process exits, and stays so.
    let _guard = afd
        .readable()
        .await
        .map_err(|e| OciError::io("poll pidfd of", format!("/proc/{pid}"), e))?;
    Ok(())
}

/// Whether a process with this pid exists (it may be anyone's; see [`monitor_alive`]).
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The pid of the monitor of the container whose state dir this is, if it is still running.
/// Checks the command line, so a recycled pid (after a reboot or a long downtime) is not taken
/// for our monitor.
pub fn monitor_alive(state_dir: &Path) -> Option<i32> {
    let pid = read_pid(&state_dir.join("monitor.pid"))?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let is_monitor = args
        .first()
        .is_some_and(|a0| a0.ends_with(b"crius-monitor"));
    let want = state_dir.as_os_str().as_encoded_bytes();
    let same_dir = args
        .windows(2)
        .any(|w| w[0] == b"--state-dir" && w[1] == want);
    (is_monitor && same_dir).then_some(pid)
}

/// Connects to a unix socket, going through /proc/self/fd when the path is too long for
/// sockaddr_un (deep state dirs).
pub(crate) async fn connect(path: &Path) -> std::io::Result<UnixStream> {
    if path.as_os_str().len() < 100 {
        return UnixStream::connect(path).await;
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().unwrap_or_default();
    let d = std::fs::File::open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", d.as_raw_fd())).join(name);
    let s = UnixStream::connect(&short).await;
    drop(d);
    s
}

/// Asks the monitor to reopen its log file (after the kubelet rotated it); returns once it has.
pub async fn reopen_log(state_dir: &Path) -> Result<(), OciError> {
    ctl(state_dir, "reopen").await
}

/// Starts a container created with [`MonitorConfig::start_by_monitor`]: the monitor runs the
/// runtime's `start` with the container's stdio; returns once it has.
pub async fn start(state_dir: &Path) -> Result<(), OciError> {
    ctl(state_dir, "start").await
}

/// Tells the monitor of a never-started [`MonitorConfig::start_by_monitor`] container that it was
/// deleted: it records the exit (137) and finishes.
pub async fn abandon(state_dir: &Path) -> Result<(), OciError> {
    ctl(state_dir, "abandon").await
}

async fn ctl(state_dir: &Path, cmd: &str) -> Result<(), OciError> {
    let path = state_dir.join("ctl");
    let id = state_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let talk = async {
        let mut s = connect(&path).await?;
        s.write_all(format!("{cmd}\n").as_bytes()).await?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = tokio::time::timeout(Duration::from_secs(10), talk)
        .await
        .map_err(|_| {
            OciError::io(
                format!("{cmd} via"),
                &path,
                std::io::ErrorKind::TimedOut.into(),
            )
        })?
        .map_err(|e| OciError::io(format!("{cmd} via"), &path, e))?;
    match reply.trim() {
        "ok" => Ok(()),
        other => Err(OciError::Protocol {
            id,
            what: format!("monitor refused `{cmd}`: {other}"),
        }),
    }
}
