//! Running extra processes in a container through `<runtime> exec`: to completion with captured
//! output ([`Handler::exec_sync`]) or interactively with pipes or a pty ([`Handler::exec`]).
//!
//! The runtime writes the exec'd process's host pid to a pid file; timeouts and `kill` signal that
//! pid, because killing only the runtime would leave the process running in the container.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

use crate::handler::json_log_errors;
use crate::{Handler, OciError};

/// After the exec'd process exits, how long we keep collecting output that orphans (background
/// children) may still hold pipes for.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// How long an interactive exec may take to get its process running.
const EXEC_START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The process's exit status (128 + signal if a signal ended it).
    pub exit_code: i32,
    /// The timeout expired and the process was killed.
    pub timed_out: bool,
}

/// Scratch files of one exec: the process document, the pid file, the runtime's own log.
struct ExecFiles {
    dir: tempfile::TempDir,
}

impl ExecFiles {
    fn new(id: &str, process: &oci_spec::runtime::Process) -> Result<ExecFiles, OciError> {
        let dir = tempfile::Builder::new()
            .prefix("crius-exec-")
            .tempdir()
            .map_err(|e| {
                OciError::io(
                    format!("temp dir for exec in {id}"),
                    std::env::temp_dir(),
                    e,
                )
            })?;
        let body = serde_json::to_vec(process).map_err(|e| OciError::Protocol {
            id: id.to_string(),
            what: format!("encode exec process: {e}"),
        })?;
        let path = dir.path().join("process.json");
        std::fs::write(&path, body).map_err(|e| OciError::io("write", &path, e))?;
        Ok(ExecFiles { dir })
    }
    fn process(&self) -> PathBuf {
        self.dir.path().join("process.json")
    }
    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("exec.pid")
    }
    /// A sandbox runtime (gVisor) writes the pid *inside its sandbox*: never a host pid, so it is
    /// kept apart from [`ExecFiles::pid`], which host-side kills trust.
    fn sandbox_pid_file(&self) -> PathBuf {
        self.dir.path().join("sandbox.pid")
    }
    /// Whether the runtime started the process (wrote its pid file, host or sandbox).
    fn started(&self) -> bool {
        self.pid().is_some() || read_pid(&self.sandbox_pid_file()).is_some()
    }
    fn log(&self) -> PathBuf {
        self.dir.path().join("runtime.log")
    }
    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
            .filter(|p: &i32| *p > 0)
    }
    fn runtime_errors(&self) -> String {
        json_log_errors(&std::fs::read_to_string(self.log()).unwrap_or_default()).join("; ")
    }
}

impl Handler {
    fn exec_command(&self, id: &str, files: &ExecFiles) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .args(self.systemd_cgroup.then_some("--systemd-cgroup"))
            .args(&self.global_args)
            .arg("--log")
            .arg(files.log())
            .args(["--log-format", "json", "exec", "--process"])
            .arg(files.process())
            // runsc's --pid-file names its own exec process; the process inside the sandbox is
            // the --internal-pid-file one, which `runsc kill --pid` takes.
            .arg(if self.kind == crate::HandlerKind::Sandbox {
                "--internal-pid-file"
            } else {
                "--pid-file"
            })
            .arg(if self.kind == crate::HandlerKind::Sandbox {
                files.sandbox_pid_file()
            } else {
                files.pid_file()
            });
        cmd.arg(id).kill_on_drop(true);
        cmd
    }

    /// Runs `process` in container `id` to completion, capturing at most `max_output` bytes of
    /// each stream (the rest is read and dropped). On timeout the process is killed and
    /// `timed_out` is set. A process that cannot be started at all (no such executable, container
    /// not running) is an [`OciError::Exec`].
    ///
    /// A runtime that failed transiently before starting the process (youki 0.7.0's "failed to
    /// seal /proc/self/exe: EBUSY", [`crate::is_transient`]) is run again, bounded, within the same
    /// timeout: nothing ran in the container yet.
    pub async fn exec_sync(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
        timeout: Option<Duration>,
        max_output: usize,
    ) -> Result<ExecOutput, OciError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut tries = 1;
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let (out, not_started) = self.exec_sync_once(id, process, left, max_output).await?;
            if !not_started
                || tries >= crate::handler::TRANSIENT_TRIES
                || !crate::is_transient(&String::from_utf8_lossy(&out.stderr))
            {
                return Ok(out);
            }
            tries += 1;
            tokio::time::sleep(crate::handler::TRANSIENT_PAUSE * tries).await;
        }
    }

    /// One `<runtime> exec`; also whether it failed without starting the process.
    async fn exec_sync_once(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
        timeout: Option<Duration>,
        max_output: usize,
    ) -> Result<(ExecOutput, bool), OciError> {
        let mut process = process.clone();
        process.set_terminal(Some(false));
        let files = ExecFiles::new(id, &process)?;
        let mut cmd = self.exec_command(id, &files);
        // Not kill_on_drop: killing the runtime alone would orphan the exec'd process in the
        // container. The guard below kills the process tree instead if this future is dropped.
        cmd.kill_on_drop(false);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| OciError::io(format!("run exec in {id} with"), &self.binary, e))?;
        let mut guard = ExecGuard {
            files: Some(files),
            runtime_pid: child.id().map(|p| p as i32),
            sandbox: (self.kind == crate::HandlerKind::Sandbox)
                .then(|| (self.clone(), id.to_string())),
        };
        let out_buf = Arc::new(Mutex::new(Vec::new()));
        let err_buf = Arc::new(Mutex::new(Vec::new()));
        let out_task = child
            .stdout
            .take()
            .map(|s| tokio::spawn(read_capped(s, out_buf.clone(), max_output)));
        let err_task = child
            .stderr
            .take()
            .map(|s| tokio::spawn(read_capped(s, err_buf.clone(), max_output)));

        let mut timed_out = false;
        let status = match timeout {
            None => child.wait().await,
            Some(t) => match tokio::time::timeout(t, child.wait()).await {
                Ok(s) => s,
                Err(_) => {
                    timed_out = true;
                    // Only returns once the process and its children are gone: a caller that
                    // looks right after the DeadlineExceeded must not find them (critest does).
                    self.end_exec(id, &mut guard, &mut child, t).await?
                }
            },
        }
        .map_err(|e| OciError::io(format!("wait for exec in {id} of"), &self.binary, e))?;
        let files = guard.disarm();
        let grace = Instant::now() + OUTPUT_GRACE;
        for task in [out_task, err_task].into_iter().flatten() {
            let left = grace.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, task).await.is_err() {
                // An orphan holds the pipe; what was read so far is what we report.
            }
        }
        let exit_code = status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        });
        let not_started = !status.success() && !timed_out && !files.started();
        if not_started {
            let errors = files.runtime_errors();
            if !errors.is_empty() {
                return Err(OciError::Exec {
                    id: id.to_string(),
                    binary: self.binary.clone(),
                    stderr: errors,
                });
            }
        }
        let take = |b: &Arc<Mutex<Vec<u8>>>| {
            std::mem::take(&mut *b.lock().unwrap_or_else(|p| p.into_inner()))
        };
        Ok((
            ExecOutput {
                stdout: take(&out_buf),
                stderr: take(&err_buf),
                exit_code,
                timed_out,
            },
            not_started,
        ))
    }

    /// Starts `process` in container `id` and returns it running. With `process.terminal` the
    /// process gets a pty whose master is [`ExecProcess::pty`]; otherwise it has pipes.
    ///
    /// A runtime that failed transiently before starting the process ([`crate::is_transient`]) is
    /// run again, bounded: nothing ran in the container and no stream was handed out yet.
    pub async fn exec(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
    ) -> Result<ExecProcess, OciError> {
        let mut tries = 1;
        loop {
            match self.exec_once(id, process).await {
                Err(OciError::Exec { stderr, .. })
                    if tries < crate::handler::TRANSIENT_TRIES && crate::is_transient(&stderr) =>
                {
                    tries += 1;
                    tokio::time::sleep(crate::handler::TRANSIENT_PAUSE * tries).await;
                }
                r => return r,
            }
        }
    }

    async fn exec_once(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
    ) -> Result<ExecProcess, OciError> {
        let tty = process.terminal().unwrap_or(false);
        let files = ExecFiles::new(id, process)?;
        let mut cmd = self.exec_command(id, &files);
        // runc only hands a pty master to a console socket when it detaches, and a detached
        // exec's exit status is lost to us. So runc stays in the foreground with a pty of ours
        // as its stdio: it relays between that and the container's pty, copies our terminal
        // size on start and on SIGWINCH (see Pty::resize).
        let mut master = None;
        if tty {
            let (m, slave) =
                open_pty(process).map_err(|e| OciError::io("openpty for exec in", id, e))?;
            let dup = |f: &OwnedFd| {
                f.try_clone()
                    .map_err(|e| OciError::io("dup pty for exec in", id, e))
            };
            cmd.stdin(Stdio::from(dup(&slave)?))
                .stdout(Stdio::from(dup(&slave)?))
                .stderr(Stdio::from(slave));
            master = Some(m);
        } else {
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| OciError::io(format!("run exec in {id} with"), &self.binary, e))?;
        // Our copies of the slave went with `cmd`'s Stdio; only runc holds it now, so reading the
        // master ends (EIO) when runc exits.
        drop(cmd);
        let pty = match master {
            Some(m) => {
                let mut p =
                    Pty::new(m).map_err(|e| OciError::io("register pty of exec in", id, e))?;
                p.notify_pid = child.id().map(|p| p as i32);
                Some(p)
            }
            None => None,
        };
        let exec_err = |files: &ExecFiles, fallback: String| {
            let errors = files.runtime_errors();
            OciError::Exec {
                id: id.to_string(),
                binary: self.binary.clone(),
                stderr: if errors.is_empty() { fallback } else { errors },
            }
        };
        let started = async {
            // The pid file appears once the process runs; the runtime exiting first means failure.
            loop {
                if files.started() {
                    return Ok(());
                }
                if let Ok(Some(st)) = child.try_wait() {
                    if files.started() {
                        return Ok(());
                    }
                    // What the runtime printed before its log was set up (with pipes only).
                    let mut said = Vec::new();
                    if let Some(e) = child.stderr.as_mut() {
                        let _ = tokio::time::timeout(
                            Duration::from_millis(200),
                            e.read_to_end(&mut said),
                        )
                        .await;
                    }
                    let said = String::from_utf8_lossy(&said);
                    return Err(exec_err(
                        &files,
                        format!("runtime exited with {st}: {}", said.trim()),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        match tokio::time::timeout(EXEC_START_TIMEOUT, started).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(OciError::Timeout {
                    op: "exec",
                    id: id.to_string(),
                    binary: self.binary.clone(),
                    after: EXEC_START_TIMEOUT,
                })
            }
        }
        Ok(ExecProcess {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            pty,
            pid: files.pid(),
            child,
            files,
        })
    }
}

/// How long the parents in a timed-out exec's process tree get to reap the children killed under
/// them before their own turn.
const REAP_GRACE: Duration = Duration::from_millis(500);
/// How long the runtime may take to write the exec's pid file once it has been asked to exec.
const PID_FILE_WAIT: Duration = Duration::from_secs(5);

/// Kills a sync exec's process tree if the exec is abandoned (its future dropped: the client went
/// away) before it finished.
struct ExecGuard {
    files: Option<ExecFiles>,
    runtime_pid: Option<i32>,
    /// For a sandbox runtime: the handler and container, to kill the process inside the sandbox.
    sandbox: Option<(Handler, String)>,
}

/// Waits (bounded) for a sandbox runtime's exec pid file.
fn wait_sandbox_pid(path: &Path) -> Option<i32> {
    let deadline = Instant::now() + PID_FILE_WAIT;
    loop {
        if let Some(p) = read_pid(path) {
            return Some(p);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Handler {
    /// `<runtime> kill --pid N <id> KILL`: a process inside a sandbox runtime's sandbox (gVisor),
    /// whose pid means nothing on the host. Blocking; bounded by the runtime.
    fn kill_in_sandbox_blocking(&self, id: &str, pid: i32) {
        let _ = std::process::Command::new(&self.binary)
            .arg("--root")
            .arg(&self.root)
            .args(&self.global_args)
            .args(["kill", "--pid", &pid.to_string(), id, "9"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl ExecGuard {
    fn disarm(&mut self) -> ExecFiles {
        // Only called once, after the process ended.
        self.files
            .take()
            .unwrap_or_else(|| unreachable!("exec guard disarmed twice"))
    }
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        let Some(files) = self.files.take() else {
            return;
        };
        let runtime_pid = self.runtime_pid;
        if let Some((h, id)) = self.sandbox.take() {
            std::thread::spawn(move || {
                if let Some(pid) = wait_sandbox_pid(&files.sandbox_pid_file()) {
                    h.kill_in_sandbox_blocking(&id, pid);
                }
                if let Some(p) = runtime_pid {
                    // SAFETY: plain kill(2) of the runtime process we spawned.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            });
            return;
        }
        // Dropping happens on an async worker; the kill sleeps between rounds.
        std::thread::spawn(move || {
            let deadline = Instant::now() + PID_FILE_WAIT;
            loop {
                if let Some(pid) = files.pid() {
                    crate::tree::kill_tree(pid, runtime_pid, REAP_GRACE);
                    return;
                }
                let runtime_gone = runtime_pid
                    .map(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
                    .unwrap_or(true);
                if runtime_gone || Instant::now() >= deadline {
                    if let Some(p) = runtime_pid {
                        // SAFETY: plain kill(2) of the runtime process we spawned.
                        unsafe { libc::kill(p, libc::SIGKILL) };
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    }
}

impl Handler {
    /// Ends a timed-out sync exec: kills the exec'd process tree (children first), then waits for
    /// the runtime, which is the process's parent, to reap it and exit. The runtime itself is killed
    /// only as a last resort, because killing it first would orphan the process in the container.
    async fn end_exec(
        &self,
        id: &str,
        guard: &mut ExecGuard,
        child: &mut Child,
        after: Duration,
    ) -> Result<io::Result<std::process::ExitStatus>, OciError> {
        let runtime_pid = guard.runtime_pid;
        if self.kind == crate::HandlerKind::Sandbox {
            let path = guard.files.as_ref().map(|f| f.sandbox_pid_file());
            let h = self.clone();
            let id2 = id.to_string();
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(pid) = path.as_deref().and_then(wait_sandbox_pid) {
                    h.kill_in_sandbox_blocking(&id2, pid);
                }
            })
            .await;
            return match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
                Ok(s) => Ok(s),
                Err(_) => {
                    let _ = child.start_kill();
                    Ok(child.wait().await)
                }
            };
        }
        let files_dir = guard.files.as_ref().map(|f| f.dir.path().to_path_buf());
        let pid_file = files_dir.map(|d| d.join("exec.pid"));
        let pid = {
            let deadline = Instant::now() + PID_FILE_WAIT;
            loop {
                let pid = pid_file.as_deref().and_then(read_pid);
                if pid.is_some() {
                    break pid;
                }
                if let Ok(Some(st)) = child.try_wait() {
                    // The runtime finished (the process ended just now, or never started).
                    return Ok(Ok(st));
                }
                if Instant::now() >= deadline {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        if let Some(pid) = pid {
            tokio::task::spawn_blocking(move || {
                crate::tree::kill_tree(pid, runtime_pid, REAP_GRACE)
            })
            .await
            .map_err(|e| OciError::Protocol {
                id: id.to_string(),
                what: format!("kill task of timed-out exec: {e}"),
            })?;
        }
        match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
            Ok(s) => Ok(s),
            Err(_) => {
                let _ = child.start_kill();
                match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
                    Ok(s) => Ok(s),
                    Err(_) => Err(OciError::Timeout {
                        op: "exec",
                        id: id.to_string(),
                        binary: self.binary.clone(),
                        after,
                    }),
                }
            }
        }
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p: &i32| *p > 0)
}

async fn read_capped<R: AsyncRead + Unpin>(mut r: R, buf: Arc<Mutex<Vec<u8>>>, cap: usize) {
    let mut chunk = [0u8; 8192];
    while let Ok(n) = r.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        let mut b = buf.lock().unwrap_or_else(|p| p.into_inner());
        let room = cap.saturating_sub(b.len());
        b.extend_from_slice(&chunk[..n.min(room)]);
    }
}

/// A process started with [`Handler::exec`].
pub struct ExecProcess {
    /// Pipes (non-terminal exec). Drop `stdin` to close the process's stdin.
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
    /// The pty master (terminal exec): read output from it, write input to it.
    pub pty: Option<Pty>,
    pid: Option<i32>,
    child: Child,
    files: ExecFiles,
}

impl ExecProcess {
    /// Host pid of the exec'd process.
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }

    pub fn resize(&self, width: u16, height: u16) -> Result<(), OciError> {
        match &self.pty {
            Some(p) => p.resize(width, height),
            None => Ok(()),
        }
    }

    /// Waits for the process to end and returns its exit code (128 + signal for signals).
    pub async fn wait(&mut self) -> Result<i32, OciError> {
        let st = self
            .child
            .wait()
            .await
            .map_err(|e| OciError::io("wait for exec runtime", self.files.dir.path(), e))?;
        use std::os::unix::process::ExitStatusExt;
        Ok(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)))
    }

    /// Kills the exec'd process inside the container; the runtime waiting for it then exits.
    pub fn kill(&mut self) -> Result<(), OciError> {
        if let Some(pid) = self.pid {
            if unsafe { libc::kill(pid, libc::SIGKILL) } < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ESRCH) {
                    return Err(OciError::io(
                        "kill exec'd process",
                        format!("/proc/{pid}"),
                        e,
                    ));
                }
            }
            return Ok(());
        }
        self.child
            .start_kill()
            .map_err(|e| OciError::io("kill exec runtime", self.files.dir.path(), e))
    }
}

/// A pty pair sized like the process's `consoleSize` (80x24 without one).
fn open_pty(process: &oci_spec::runtime::Process) -> io::Result<(OwnedFd, OwnedFd)> {
    let (w, h) = process
        .console_size()
        .as_ref()
        .map(|b| (b.width() as u16, b.height() as u16))
        .unwrap_or((80, 24));
    let ws = libc::winsize {
        ws_row: h,
        ws_col: w,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let (mut m, mut s) = (-1, -1);
    if unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fds from openpty.
    let (m, s) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
    for fd in [&m, &s] {
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // The container's own pty does echo and line editing; ours must pass bytes through
    // untouched from the first byte (runc makes it raw too, but only once it is running).
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(s.as_raw_fd(), &mut t) < 0 {
            return Err(io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(s.as_raw_fd(), libc::TCSANOW, &t) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((m, s))
}

/// A pty master as an async byte stream. Reading returns EOF once every slave end is closed
/// (the kernel reports that as EIO).
pub struct Pty {
    fd: AsyncFd<OwnedFd>,
    /// The process relaying this pty (runc exec) to notify of size changes.
    notify_pid: Option<i32>,
}

impl Pty {
    pub fn new(fd: OwnedFd) -> io::Result<Pty> {
        let raw = fd.as_raw_fd();
        let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
        if flags < 0 || unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open and unchanged while registered.
        Ok(Pty {
            fd: unsafe { AsyncFd::register(fd) }?,
            notify_pid: None,
        })
    }

    /// A second handle on the same master, e.g. one for a reader task and one for a writer.
    pub fn try_clone(&self) -> io::Result<Pty> {
        let fd = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh fd from F_DUPFD_CLOEXEC.
        let mut p = Pty::new(unsafe { OwnedFd::from_raw_fd(fd) })?;
        p.notify_pid = self.notify_pid;
        Ok(p)
    }

    pub fn resize(&self, width: u16, height: u16) -> Result<(), OciError> {
        let ws = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            return Err(OciError::io(
                "resize pty",
                Path::new("/dev/ptmx"),
                io::Error::last_os_error(),
            ));
        }
        // Our pty is not the relay's controlling terminal, so the kernel does not signal it.
        if let Some(pid) = self.notify_pid {
            unsafe {
                libc::kill(pid, libc::SIGWINCH);
            }
        }
        Ok(())
    }
}

impl AsyncRead for Pty {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let res = guard.try_io(|fd| {
                let r = unsafe {
                    libc::read(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len())
                };
                if r < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(r as usize)
                }
            });
            match res {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Pty {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            let res = guard.try_io(|fd| {
                let r = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if r < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(r as usize)
                }
            });
            match res {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
