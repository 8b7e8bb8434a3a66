//! crius-monitor: the per-container process that owns a container's stdio, writes its CRI log,
//! serves attach and log-reopen requests, reaps it, and records its exit status on disk.
//!
//! Invocation (by `crius_oci::spawn_monitor`):
//! `crius-monitor --id ID --bundle DIR --state-dir DIR --runtime BIN --runtime-root DIR
//!   [--log-path FILE [--log-dir DIR]] [--runtime-arg FLAG]... [--start-by-monitor] [--tty] [--stdin] [--stdin-once] [--oom-file FILE] [--sync-fd N]
//!   [--create-timeout-ms N]`
//!
//! Protocol (the library side lives in `crius-oci`; keep both in step):
//! - The invoked process forks and exits at once; the grandchild calls `setsid` so nothing the
//!   daemon's process group or session receives reaches it. It writes `<state>/monitor.pid`.
//! - Sync fd: exactly one JSON line, then close:
//!   `{"ok":true,"monitor_pid":N,"container_pid":N}` or
//!   `{"ok":false,"monitor_pid":N,"exit_code":N,"error":"…"}` (the runtime's own error text).
//! - `<state>/ctl` (unix stream): the client writes `reopen\n`; the monitor reopens `--log-path`
//!   and answers `ok\n` or `error <text>\n`. With `--start-by-monitor` (a container joining a
//!   gVisor sandbox, whose stdio `runsc start` hands in) also `start\n` (the monitor runs the
//!   runtime's `start` with the container's pipes, then `<runtime> wait` for its exit status) and
//!   `abandon\n` (the never-started container was deleted: record exit 137 and finish).
//! - `<state>/attach.sock` (unix stream), frames both ways: `u8 kind, u32 BE length, payload`.
//!   Monitor → client: kind 1 stdout, 2 stderr (with a tty everything is kind 1).
//!   Client → monitor: kind 0 stdin bytes (length 0 = the client's stdin ended), kind 3 resize
//!   (`u16 BE width, u16 BE height`). The monitor closes every attach connection when the
//!   container's output has ended. With `--stdin-once` the container's stdin is closed when the
//!   first client that used stdin ends it or disconnects.
//! - `<state>/exit.json`, written atomically before the monitor exits:
//!   `{"exit_code":i32,"signal":i32|null,"started_at_ns":i64|null,"finished_at_ns":i64,
//!   "oom_killed":bool}` (started_at_ns: when the runtime's `start` opened its exec fifo).

mod crilog;
mod logfile;
mod proto;
mod sys;

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crilog::{LineSplitter, Stream, Tag};
#[cfg(test)]
use proto::MAX_FRAME;
use proto::{next_frame, parse_ctl, Ctl, Frame};

/// How long output may keep flowing after the container's init died (orphans in a shared pid
/// namespace can hold the pipes open forever).
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// [`DRAIN_GRACE`] for `--start-by-monitor` containers, whose pipes the sandbox holds.
const SANDBOX_DRAIN_GRACE: Duration = Duration::from_millis(200);
/// Stop reading attach clients while this much stdin is waiting for the container.
const STDIN_HIGH_WATER: usize = 64 * 1024;

struct Args {
    id: String,
    bundle: PathBuf,
    state_dir: PathBuf,
    runtime: PathBuf,
    runtime_root: PathBuf,
    log_path: Option<PathBuf>,
    /// The pod's log directory: `log_path` is resolved beneath it (default: the log's parent).
    log_dir: Option<PathBuf>,
    tty: bool,
    stdin: bool,
    stdin_once: bool,
    /// Run the runtime with `--systemd-cgroup` (the systemd cgroup driver).
    systemd_cgroup: bool,
    /// Global flags for every runtime command (`--runtime-arg`, repeated).
    runtime_args: Vec<OsString>,
    /// The container joins a sandbox (gVisor): its stdio is given to `<runtime> start`, which the
    /// monitor runs when the ctl socket says `start`, and its exit comes from `<runtime> wait`.
    start_by_monitor: bool,
    /// After the container's exit is recorded, kill and reap whatever children are left (gVisor's
    /// gofer of the pod sandbox or of the container, which serves nothing once its container is
    /// gone): orphaned to an init that reaps late, their zombies held up `runsc delete`, which
    /// waits for the gofer's pid to go away (1-2 s per delete on this CI machine).
    reap_children: bool,
    oom_file: Option<PathBuf>,
    sync_fd: Option<RawFd>,
    create_timeout: Duration,
}

fn parse_args(mut it: impl Iterator<Item = OsString>) -> Result<Args, String> {
    let mut id = None;
    let mut bundle = None;
    let mut state_dir = None;
    let mut runtime = None;
    let mut runtime_root = None;
    let mut a = Args {
        id: String::new(),
        bundle: PathBuf::new(),
        state_dir: PathBuf::new(),
        runtime: PathBuf::new(),
        runtime_root: PathBuf::new(),
        log_path: None,
        log_dir: None,
        tty: false,
        systemd_cgroup: false,
        runtime_args: Vec::new(),
        start_by_monitor: false,
        reap_children: false,
        stdin: false,
        stdin_once: false,
        oom_file: None,
        sync_fd: None,
        create_timeout: Duration::from_secs(60),
    };
    while let Some(flag) = it.next() {
        let flag = flag.to_string_lossy().into_owned();
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--id" => id = Some(value()?.to_string_lossy().into_owned()),
            "--bundle" => bundle = Some(PathBuf::from(value()?)),
            "--state-dir" => state_dir = Some(PathBuf::from(value()?)),
            "--runtime" => runtime = Some(PathBuf::from(value()?)),
            "--runtime-root" => runtime_root = Some(PathBuf::from(value()?)),
            "--log-path" => a.log_path = Some(PathBuf::from(value()?)),
            "--log-dir" => a.log_dir = Some(PathBuf::from(value()?)),
            "--runtime-arg" => a.runtime_args.push(value()?),
            "--oom-file" => a.oom_file = Some(PathBuf::from(value()?)),
            "--sync-fd" => {
                let v = value()?;
                a.sync_fd = Some(
                    v.to_string_lossy()
                        .parse()
                        .map_err(|_| format!("bad --sync-fd {v:?}"))?,
                )
            }
            "--create-timeout-ms" => {
                let v = value()?;
                let ms: u64 = v
                    .to_string_lossy()
                    .parse()
                    .map_err(|_| format!("bad --create-timeout-ms {v:?}"))?;
                a.create_timeout = Duration::from_millis(ms);
            }
            "--tty" => a.tty = true,
            "--start-by-monitor" => a.start_by_monitor = true,
            "--reap-children" => a.reap_children = true,
            "--systemd-cgroup" => a.systemd_cgroup = true,
            "--stdin" => a.stdin = true,
            "--stdin-once" => a.stdin_once = true,
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    a.id = id.ok_or("--id is required")?;
    a.bundle = bundle.ok_or("--bundle is required")?;
    a.state_dir = state_dir.ok_or("--state-dir is required")?;
    a.runtime = runtime.ok_or("--runtime is required")?;
    a.runtime_root = runtime_root.ok_or("--runtime-root is required")?;
    Ok(a)
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Reads the JSON string literal starting at `s[0] == '"'`; enough for runc's log lines.
fn parse_json_str(s: &str) -> Option<String> {
    let mut chars = s.strip_prefix('"')?.chars();
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?).unwrap_or('?'));
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// The `msg` of every error-level line of a runc/crun JSON log.
fn runtime_errors(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("\"level\":\"error\"") || l.contains("\"level\":\"fatal\""))
        .filter_map(|l| {
            l.find("\"msg\":")
                .and_then(|i| parse_json_str(l[i + 6..].trim_start()))
        })
        .collect()
}

/// Writes `data` to `path` so that a reader sees either nothing or all of it; with `durable`,
/// also across a crash of the machine.
fn write_atomic(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(data)?;
    if durable {
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let (true, Some(dir)) = (durable, path.parent()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Appends a diagnostic to `<state>/monitor.log`: after daemonizing there is no stderr.
fn note(state_dir: &Path, msg: &str) {
    if let Ok(mut f) = OpenOptions::new()
        .append(true)
        .create(true)
        .open(state_dir.join("monitor.log"))
    {
        let _ = writeln!(f, "{} {msg}", crilog::format_timestamp(now_ns()));
    }
}

/// The OOM-kill counter: `oom_kill N` (cgroup v2 memory.events, v1 memory.oom_control on newer
/// kernels), else the v1 `memory.failcnt` next to it (a weaker signal, used only with SIGKILL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OomCounter {
    Kills(u64),
    Failcnt(u64),
}

fn read_oom_counter(path: &Path) -> Option<OomCounter> {
    let text = std::fs::read_to_string(path).ok()?;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("oom_kill ") {
            return n.trim().parse().ok().map(OomCounter::Kills);
        }
    }
    let failcnt = path.parent()?.join("memory.failcnt");
    std::fs::read_to_string(failcnt)
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(OomCounter::Failcnt)
}

fn oom_happened(
    before: Option<OomCounter>,
    after: Option<OomCounter>,
    signal: Option<i32>,
) -> bool {
    match (before, after) {
        (Some(OomCounter::Kills(b)), Some(OomCounter::Kills(a))) => a > b,
        (None, Some(OomCounter::Kills(a))) => a > 0,
        (Some(OomCounter::Failcnt(b)), Some(OomCounter::Failcnt(a))) => {
            a > b && signal == Some(libc::SIGKILL)
        }
        _ => false,
    }
}

struct Sync(Option<File>);

impl Sync {
    fn send(&mut self, line: &str) {
        if let Some(mut f) = self.0.take() {
            let _ = f.write_all(line.as_bytes());
            let _ = f.write_all(b"\n");
        }
    }
}

fn main() {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("crius-monitor: {e}");
            std::process::exit(2);
        }
    };
    // SAFETY: single-threaded here; the child only continues with plain Rust code.
    match unsafe { libc::fork() } {
        -1 => {
            eprintln!("crius-monitor: fork: {}", io::Error::last_os_error());
            std::process::exit(1);
        }
        0 => {}
        _ => std::process::exit(0),
    }
    unsafe {
        libc::setsid();
        // A daemon that went away must not kill us through its sync pipe or a client socket.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            unsafe {
                libc::dup2(null.as_raw_fd(), fd);
            }
        }
    }
    let state_dir = args.state_dir.clone();
    std::panic::set_hook(Box::new(move |info| {
        note(&state_dir, &format!("panic: {info}"))
    }));
    // SAFETY: the daemon handed us this fd for our exclusive use.
    let mut sync = Sync(args.sync_fd.map(|fd| {
        let _ = sys::set_cloexec(fd);
        unsafe { File::from_raw_fd(fd) }
    }));
    let mut made = false;
    let code = match Monitor::create(&args, &mut made) {
        Ok(mut m) => {
            sync.send(&format!(
                "{{\"ok\":true,\"monitor_pid\":{},\"container_pid\":{}}}",
                std::process::id(),
                m.container_pid
            ));
            drop(sync);
            m.run(&args);
            if args.reap_children {
                kill_children();
            }
            0
        }
        Err(f) => {
            sync.send(&format!(
                "{{\"ok\":false,\"monitor_pid\":{},\"exit_code\":{},\"error\":{}}}",
                std::process::id(),
                f.exit_code,
                json_str(&f.error)
            ));
            note(&args.state_dir, &format!("create failed: {}", f.error));
            // Leave nothing behind: a half-created container would pin its cgroup and mounts.
            // Only when the container is ours: a `create` that failed by itself has cleaned up,
            // and one that failed because the id exists must not take the other one down.
            if made {
                let _ = Command::new(&args.runtime)
                    .arg("--root")
                    .arg(&args.runtime_root)
                    .args(args.systemd_cgroup.then_some("--systemd-cgroup"))
                    .args(&args.runtime_args)
                    .args(["delete", "--force", &args.id])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            // As subreaper we inherited whatever the runtime left running (a killed `create`
            // leaves `runc init` and hooks behind); those die with us.
            kill_children();
            if made {
                // A `create` killed half-way has no runtime state for `delete` to find, but may
                // have made the container's cgroup.
                remove_cgroup(&args.bundle);
            }
            let _ = std::fs::remove_file(args.state_dir.join("monitor.pid"));
            1
        }
    };
    std::process::exit(code);
}

struct CreateFailure {
    exit_code: i32,
    error: String,
}

impl CreateFailure {
    fn io(what: &str, e: io::Error) -> Self {
        CreateFailure {
            exit_code: -1,
            error: format!("{what}: {e}"),
        }
    }
}

struct Client {
    fd: OwnedFd,
    inbuf: Vec<u8>,
    used_stdin: bool,
    dead: bool,
}

struct Monitor {
    container_pid: i32,
    sigfd: OwnedFd,
    /// stdout pipe or the pty master.
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    /// stdin pipe; with a tty, stdin goes to `out` (the master) and this stays None.
    stdin: Option<OwnedFd>,
    stdin_open: bool,
    stdin_pending: Vec<u8>,
    stdin_once: bool,
    stdin_once_done: bool,
    tty: bool,
    splitters: [LineSplitter; 2],
    log: Option<File>,
    attach: Option<OwnedFd>,
    ctl: Option<OwnedFd>,
    clients: Vec<Client>,
    oom_before: Option<OomCounter>,
    /// Watches the runtime's exec fifo: `start` opening it is the moment the container starts.
    start_watch: Option<OwnedFd>,
    started_at: Option<i128>,
    exit: Option<(i32, Option<i32>, i128)>,
    /// `--start-by-monitor`: the container's ends of its stdin/stdout/stderr pipes, until `start`.
    held: Option<[Option<OwnedFd>; 3]>,
    /// `--start-by-monitor`: the running `<runtime> wait`, whose output is the exit status.
    waiter: Option<std::process::Child>,
}

fn open_log(args: &Args, path: &Path) -> io::Result<File> {
    let base = args
        .log_dir
        .as_deref()
        .or_else(|| path.parent())
        .unwrap_or(Path::new("/"));
    logfile::open_beneath(base, path)
}

impl Monitor {
    fn create(args: &Args, made: &mut bool) -> Result<Monitor, CreateFailure> {
        let state = &args.state_dir;
        // Relative socket names keep us under the 108-byte sun_path limit however deep the state
        // dir is.
        std::env::set_current_dir(state)
            .map_err(|e| CreateFailure::io(&format!("chdir {}", state.display()), e))?;
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
        write_atomic(
            &state.join("monitor.pid"),
            std::process::id().to_string().as_bytes(),
            // a monitor does not survive a reboot, so neither need its pid file
            false,
        )
        .map_err(|e| CreateFailure::io("write monitor.pid", e))?;
        let sigfd =
            sys::signalfd(&[libc::SIGCHLD]).map_err(|e| CreateFailure::io("signalfd", e))?;
        let pid_file = state.join("container.pid");
        let _ = std::fs::remove_file(&pid_file);
        let runtime_log = state.join("runtime.log");
        let _ = std::fs::remove_file(&runtime_log);
        let log = match &args.log_path {
            Some(p) => Some(
                open_log(args, p)
                    .map_err(|e| CreateFailure::io(&format!("open log {}", p.display()), e))?,
            ),
            None => None,
        };

        let mut cmd = Command::new(&args.runtime);
        cmd.arg("--root")
            .arg(&args.runtime_root)
            .args(args.systemd_cgroup.then_some("--systemd-cgroup"))
            .args(&args.runtime_args)
            .arg("--log")
            .arg(&runtime_log)
            .args(["--log-format", "json", "create", "--bundle"])
            .arg(&args.bundle)
            .arg("--pid-file")
            .arg(&pid_file);
        let mut console = None;
        let (mut out, mut err, mut stdin) = (None, None, None);
        let mut held: Option<[Option<OwnedFd>; 3]> = None;
        if args.tty {
            let sock = Path::new("console.sock");
            console = Some(
                sys::unix_listen(sock).map_err(|e| CreateFailure::io("listen console.sock", e))?,
            );
            let abs = state.join(sock);
            let sock_arg = if abs.as_os_str().len() < 100 {
                abs
            } else {
                sock.to_path_buf()
            };
            cmd.arg("--console-socket").arg(sock_arg);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        } else if args.start_by_monitor {
            // The runtime's `start` gets the container's end of each pipe (see Monitor::start).
            let (r, w) = sys::pipe().map_err(|e| CreateFailure::io("pipe", e))?;
            out = Some(r);
            let (r2, w2) = sys::pipe().map_err(|e| CreateFailure::io("pipe", e))?;
            err = Some(r2);
            let child_in = if args.stdin {
                let (r, w) = sys::pipe().map_err(|e| CreateFailure::io("pipe", e))?;
                stdin = Some(w);
                Some(r)
            } else {
                None
            };
            held = Some([child_in, Some(w), Some(w2)]);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        } else {
            let (r, w) = sys::pipe().map_err(|e| CreateFailure::io("pipe", e))?;
            out = Some(r);
            cmd.stdout(Stdio::from(w));
            let (r, w) = sys::pipe().map_err(|e| CreateFailure::io("pipe", e))?;
            err = Some(r);
            cmd.stderr(Stdio::from(w));
            if args.stdin {
                let (r, w) = sys::pipe().map_err(|e| CreateFailure::io("pipe", e))?;
                stdin = Some(w);
                cmd.stdin(Stdio::from(r));
            } else {
                cmd.stdin(Stdio::null());
            }
        }
        cmd.arg(&args.id);
        let mut child = cmd
            .spawn()
            .map_err(|e| CreateFailure::io(&format!("run {}", args.runtime.display()), e))?;
        // The runtime's copies of the pipe ends must be the only ones, or we never see EOF.
        drop(cmd);

        let deadline = Instant::now() + args.create_timeout;
        let mut master: Option<OwnedFd> = None;
        let status = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break st;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Killed half-way, the runtime may have made state we must undo.
                *made = true;
                let _ = child.kill();
                let _ = child.wait();
                return Err(CreateFailure {
                    exit_code: -1,
                    error: format!(
                        "{} create timed out after {:?}",
                        args.runtime.display(),
                        args.create_timeout
                    ),
                });
            }
            let mut fds = vec![libc::pollfd {
                fd: sigfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if let Some(c) = &console {
                fds.push(libc::pollfd {
                    fd: c.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            // SIGCHLD of the runtime can race with the try_wait above; a bounded poll covers it.
            let _ = sys::poll(&mut fds, left.as_millis().min(200) as i32);
            sys::drain_signalfd(sigfd.as_raw_fd());
            if fds.len() > 1 && fds[1].revents != 0 {
                if let Some(c) = &console {
                    if let Ok(Some(conn)) = sys::accept(c.as_raw_fd()) {
                        let _ = sys::set_socket_timeouts(conn.as_raw_fd(), 5);
                        match sys::recv_fd(conn.as_raw_fd()) {
                            Ok(fd) => master = Some(fd),
                            Err(e) => note(state, &format!("console socket: {e}")),
                        }
                    }
                }
            }
        };
        drop(console);
        let _ = std::fs::remove_file(state.join("console.sock"));

        if !status.success() {
            let code = status.code().unwrap_or(-1);
            let mut text =
                runtime_errors(&std::fs::read_to_string(&runtime_log).unwrap_or_default())
                    .join("; ");
            if text.is_empty() {
                if let Some(e) = &err {
                    let _ = sys::set_nonblocking(e.as_raw_fd());
                    let mut buf = [0u8; 4096];
                    if let Ok(Some(n)) = sys::read(e.as_raw_fd(), &mut buf) {
                        text = String::from_utf8_lossy(&buf[..n]).trim().to_string();
                    }
                }
            }
            if text.is_empty() {
                text = format!("{} create exited with {status}", args.runtime.display());
            }
            return Err(CreateFailure {
                exit_code: code,
                error: text,
            });
        }
        // From here on the container exists and any failure must delete it.
        *made = true;
        let pid_text = std::fs::read_to_string(&pid_file)
            .map_err(|e| CreateFailure::io(&format!("read {}", pid_file.display()), e))?;
        let container_pid: i32 = pid_text.trim().parse().map_err(|_| CreateFailure {
            exit_code: -1,
            error: format!("bad pid file content {pid_text:?}"),
        })?;
        if args.tty {
            match master {
                Some(m) => out = Some(m),
                None => {
                    return Err(CreateFailure {
                        exit_code: -1,
                        error: "runtime sent no pty master".into(),
                    });
                }
            }
        }
        for fd in [&out, &err].into_iter().flatten() {
            let _ = sys::set_nonblocking(fd.as_raw_fd());
        }
        if let Some(s) = &stdin {
            let _ = sys::set_nonblocking(s.as_raw_fd());
        }
        let attach = sys::unix_listen(Path::new("attach.sock"))
            .map_err(|e| CreateFailure::io("listen attach.sock", e))?;
        let ctl =
            sys::unix_listen(Path::new("ctl")).map_err(|e| CreateFailure::io("listen ctl", e))?;
        // The cgroup exists only now; its counter at creation is the baseline.
        let oom_before = args.oom_file.as_deref().and_then(read_oom_counter);
        Ok(Monitor {
            container_pid,
            sigfd,
            out,
            err,
            stdin_open: args.stdin,
            stdin,
            stdin_pending: Vec::new(),
            stdin_once: args.stdin_once,
            stdin_once_done: false,
            tty: args.tty,
            splitters: [LineSplitter::default(), LineSplitter::default()],
            log,
            attach: Some(attach),
            ctl: Some(ctl),
            clients: Vec::new(),
            oom_before,
            // runc and crun keep `exec.fifo` there; without one we just report no start time.
            start_watch: sys::inotify_watch(
                &args.runtime_root.join(&args.id).join("exec.fifo"),
                libc::IN_OPEN,
            )
            .ok(),
            started_at: None,
            exit: None,
            held,
            waiter: None,
        })
    }

    fn run(&mut self, args: &Args) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if let Some((_, _, at)) = self.exit {
                let outputs_done = self.out.is_none() && self.err.is_none();
                let waited = Duration::from_nanos((now_ns() - at).max(0) as u64);
                // A sandbox runtime (gVisor) keeps the container's pipes open until the container
                // is deleted, which waits for this exit: its output was written before the exit.
                let grace = if args.start_by_monitor {
                    SANDBOX_DRAIN_GRACE
                } else {
                    DRAIN_GRACE
                };
                if outputs_done || waited >= grace {
                    break;
                }
            }
            let mut fds: Vec<libc::pollfd> = Vec::with_capacity(8 + self.clients.len());
            let pfd = |fd: RawFd, events: i16| libc::pollfd {
                fd,
                events,
                revents: 0,
            };
            fds.push(pfd(self.sigfd.as_raw_fd(), libc::POLLIN));
            fds.push(pfd(
                self.out.as_ref().map_or(-1, |f| f.as_raw_fd()),
                libc::POLLIN,
            ));
            fds.push(pfd(
                self.err.as_ref().map_or(-1, |f| f.as_raw_fd()),
                libc::POLLIN,
            ));
            fds.push(pfd(
                self.attach.as_ref().map_or(-1, |f| f.as_raw_fd()),
                libc::POLLIN,
            ));
            fds.push(pfd(
                self.ctl.as_ref().map_or(-1, |f| f.as_raw_fd()),
                libc::POLLIN,
            ));
            let stdin_fd = self.stdin_fd();
            let want_out = !self.stdin_pending.is_empty() && stdin_fd >= 0;
            fds.push(pfd(if want_out { stdin_fd } else { -1 }, libc::POLLOUT));
            fds.push(pfd(
                self.start_watch.as_ref().map_or(-1, |f| f.as_raw_fd()),
                libc::POLLIN,
            ));
            let read_clients = self.stdin_pending.len() < STDIN_HIGH_WATER;
            // Clients accepted below join the poll set on the next round.
            let polled_clients = self.clients.len();
            for c in &self.clients {
                fds.push(pfd(
                    if read_clients { c.fd.as_raw_fd() } else { -1 },
                    libc::POLLIN,
                ));
            }
            let timeout = match self.exit {
                Some(_) => 100,
                // A periodic wake-up also catches a container pid that is somehow not our child.
                None => 1000,
            };
            if let Err(e) = sys::poll(&mut fds, timeout) {
                note(&args.state_dir, &format!("poll: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            if fds[0].revents != 0 {
                sys::drain_signalfd(self.sigfd.as_raw_fd());
            }
            self.reap();
            if fds[1].revents != 0 {
                self.read_output(Stream::Stdout, &mut buf);
            }
            if fds[2].revents != 0 {
                self.read_output(Stream::Stderr, &mut buf);
            }
            if fds[3].revents != 0 {
                self.accept_clients();
            }
            if fds[4].revents != 0 {
                self.serve_ctl(args);
            }
            if fds[5].revents != 0 {
                self.flush_stdin();
            }
            if fds[6].revents != 0 {
                // The first open after create is `start` (create's own open happened before
                // the watch existed); a delete before start removes the fifo without opening it.
                self.started_at = Some(now_ns());
                self.start_watch = None;
            }
            for i in 0..polled_clients {
                if fds[7 + i].revents != 0 {
                    self.read_client(i, &mut buf);
                }
            }
            self.clients.retain(|c| !c.dead);
        }
        self.finish(args);
    }

    fn stdin_fd(&self) -> RawFd {
        if !self.stdin_open {
            return -1;
        }
        if self.tty {
            self.out.as_ref().map_or(-1, |f| f.as_raw_fd())
        } else {
            self.stdin.as_ref().map_or(-1, |f| f.as_raw_fd())
        }
    }

    fn reap(&mut self) {
        loop {
            match sys::try_wait(-1) {
                Ok(Some((pid, status))) => {
                    let waiter = self.waiter.as_ref().map(|w| w.id() as i32);
                    if waiter == Some(pid) && self.exit.is_none() {
                        let code = self.waited_status();
                        let sig = (code > 128).then_some(code - 128);
                        self.exit = Some((code, sig, now_ns()));
                    } else if pid == self.container_pid && self.exit.is_none() {
                        let (code, sig) = sys::decode_status(status);
                        self.exit = Some((code, sig, now_ns()));
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    // ECHILD: nothing left to reap. If the container is gone without our seeing
                    // its status (not our child after all), record an unknown exit.
                    if self.exit.is_none() && unsafe { libc::kill(self.container_pid, 0) } != 0 {
                        self.exit = Some((255, None, now_ns()));
                    }
                    break;
                }
            }
        }
    }

    fn read_output(&mut self, stream: Stream, buf: &mut [u8]) {
        let slot = match stream {
            Stream::Stdout => &mut self.out,
            Stream::Stderr => &mut self.err,
        };
        let Some(fd) = slot.as_ref().map(|f| f.as_raw_fd()) else {
            return;
        };
        let n = match sys::read(fd, buf) {
            Ok(Some(n)) => n,
            Ok(None) => return,
            // EIO is how a pty master reports that every slave end is closed.
            Err(_) => 0,
        };
        let idx = stream as usize;
        let ts = crilog::format_timestamp(now_ns());
        let mut records = Vec::new();
        {
            let mut emit = |tag: Tag, content: &[u8]| {
                crilog::format_record(&ts, stream, tag, content, &mut records)
            };
            if n == 0 {
                self.splitters[idx].finish(&mut emit);
            } else {
                self.splitters[idx].push(&buf[..n], &mut emit);
            }
        }
        if let (Some(log), false) = (self.log.as_mut(), records.is_empty()) {
            // A full disk must not stop the container: the bytes are lost, the monitor goes on.
            let _ = log.write_all(&records);
        }
        if n == 0 {
            *slot = None;
            if self.tty {
                self.stdin_open = false;
            }
            return;
        }
        let kind = match stream {
            Stream::Stdout => 1u8,
            Stream::Stderr => 2u8,
        };
        let mut frame = Vec::with_capacity(5 + n);
        frame.push(kind);
        frame.extend_from_slice(&(n as u32).to_be_bytes());
        frame.extend_from_slice(&buf[..n]);
        for c in &mut self.clients {
            if !c.dead && write_all_fd(c.fd.as_raw_fd(), &frame).is_err() {
                c.dead = true;
            }
        }
    }

    fn accept_clients(&mut self) {
        let Some(l) = &self.attach else { return };
        while let Ok(Some(fd)) = sys::accept(l.as_raw_fd()) {
            // A stalled client may delay the others by at most this much, then it is dropped.
            let _ = sys::set_socket_timeouts(fd.as_raw_fd(), 5);
            self.clients.push(Client {
                fd,
                inbuf: Vec::new(),
                used_stdin: false,
                dead: false,
            });
        }
    }

    fn read_client(&mut self, i: usize, buf: &mut [u8]) {
        let fd = self.clients[i].fd.as_raw_fd();
        let n = match sys::read(fd, buf) {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(_) => 0,
        };
        if n == 0 {
            self.clients[i].dead = true;
            if self.clients[i].used_stdin {
                self.stdin_ended();
            }
            return;
        }
        self.clients[i].inbuf.extend_from_slice(&buf[..n]);
        loop {
            let c = &mut self.clients[i];
            let (kind, payload) = match next_frame(&mut c.inbuf) {
                Frame::Incomplete => break,
                Frame::TooBig => {
                    c.dead = true;
                    return;
                }
                Frame::Got(kind, payload) => (kind, payload),
            };
            let len = payload.len();
            match kind {
                0 => {
                    c.used_stdin = true;
                    if len == 0 {
                        self.stdin_ended();
                    } else if self.stdin_open {
                        self.stdin_pending.extend_from_slice(&payload);
                        self.flush_stdin();
                    }
                }
                3 if len == 4 => {
                    let w = u16::from_be_bytes([payload[0], payload[1]]);
                    let h = u16::from_be_bytes([payload[2], payload[3]]);
                    if let (true, Some(m)) = (self.tty, self.out.as_ref()) {
                        let _ = sys::set_winsize(m.as_raw_fd(), w, h);
                    }
                }
                _ => {}
            }
        }
    }

    /// A client's stdin ended; only `--stdin-once` turns that into closing the container's stdin.
    fn stdin_ended(&mut self) {
        if !self.stdin_once || self.stdin_once_done {
            return;
        }
        self.stdin_once_done = true;
        // Whatever was typed before the end still belongs to the container.
        self.flush_stdin_blocking();
        if self.tty {
            // Closing the master would hang the whole terminal up; ^D is end-of-input for it.
            if let Some(m) = &self.out {
                let _ = sys::write(m.as_raw_fd(), &[4]);
            }
        } else {
            self.stdin = None;
        }
        self.stdin_open = false;
        self.stdin_pending.clear();
    }

    fn flush_stdin(&mut self) {
        let fd = self.stdin_fd();
        if fd < 0 {
            self.stdin_pending.clear();
            return;
        }
        while !self.stdin_pending.is_empty() {
            match sys::write(fd, &self.stdin_pending) {
                Ok(0) => break,
                Ok(n) => {
                    self.stdin_pending.drain(..n);
                }
                Err(_) => {
                    // EPIPE: the container closed its stdin; drop what cannot be delivered.
                    self.stdin_pending.clear();
                    self.stdin_open = false;
                    if !self.tty {
                        self.stdin = None;
                    }
                }
            }
        }
    }

    fn flush_stdin_blocking(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.stdin_pending.is_empty() && Instant::now() < deadline {
            self.flush_stdin();
            if !self.stdin_pending.is_empty() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    fn serve_ctl(&mut self, args: &Args) {
        let Some(l) = self.ctl.as_ref().map(|l| l.as_raw_fd()) else {
            return;
        };
        while let Ok(Some(fd)) = sys::accept(l) {
            let _ = sys::set_socket_timeouts(fd.as_raw_fd(), 1);
            let mut conn = File::from(fd);
            let mut req = [0u8; 64];
            let n = conn.read(&mut req).unwrap_or(0);
            let reply = match parse_ctl(&req[..n]) {
                Ctl::Reopen => match &args.log_path {
                    Some(p) => match open_log(args, p) {
                        Ok(f) => {
                            self.log = Some(f);
                            "ok\n".to_string()
                        }
                        Err(e) => format!("error reopen {}: {e}\n", p.display()),
                    },
                    None => "ok\n".to_string(),
                },
                Ctl::Ping => "ok\n".to_string(),
                Ctl::Start if !args.start_by_monitor => {
                    "error start: not --start-by-monitor\n".into()
                }
                Ctl::Start => match self.start(args) {
                    Ok(()) => "ok\n".to_string(),
                    Err(e) => format!("error {}\n", e.replace('\n', " ")),
                },
                Ctl::Abandon => {
                    if self.waiter.is_none() && self.exit.is_none() {
                        self.exit = Some((128 + libc::SIGKILL, Some(libc::SIGKILL), now_ns()));
                        self.held = None;
                    }
                    "ok\n".to_string()
                }
                Ctl::Unknown(other) => format!("error unknown command {other:?}\n"),
            };
            let _ = conn.write_all(reply.as_bytes());
        }
    }

    fn runtime_command(args: &Args) -> Command {
        let mut c = Command::new(&args.runtime);
        c.arg("--root")
            .arg(&args.runtime_root)
            .args(args.systemd_cgroup.then_some("--systemd-cgroup"))
            .args(&args.runtime_args);
        c
    }

    /// `--start-by-monitor`: runs `<runtime> start` with the container's stdio, then
    /// `<runtime> wait` in the background. Idempotent once started.
    fn start(&mut self, args: &Args) -> Result<(), String> {
        if self.started_at.is_some() {
            return Ok(());
        }
        if self.exit.is_some() {
            return Err("the container has already exited".into());
        }
        let log = args.state_dir.join("runtime-start.log");
        let _ = std::fs::remove_file(&log);
        let mut cmd = Self::runtime_command(args);
        cmd.arg("--log")
            .arg(&log)
            .args(["--log-format", "json", "start", &args.id]);
        // With a tty the runtime took the console at create; the pipes are for the other case.
        let [i, o, e] = self.held.take().unwrap_or([None, None, None]);
        let stdio = |f: Option<OwnedFd>| f.map_or_else(Stdio::null, Stdio::from);
        cmd.stdin(stdio(i)).stdout(stdio(o)).stderr(stdio(e));
        let status = cmd
            .status()
            .map_err(|e| format!("run {} start: {e}", args.runtime.display()))?;
        // Only the runtime (and now the container) hold the pipes' other ends.
        drop(cmd);
        if !status.success() {
            let text =
                runtime_errors(&std::fs::read_to_string(&log).unwrap_or_default()).join("; ");
            return Err(format!(
                "{} start exited with {status}: {text}",
                args.runtime.display()
            ));
        }
        self.started_at = Some(now_ns());
        let waiter = Self::runtime_command(args)
            .args(["wait", &args.id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("run {} wait: {e}", args.runtime.display()))?;
        self.waiter = Some(waiter);
        Ok(())
    }

    /// The exit status `<runtime> wait` printed (`{"id":…,"exitStatus":N}`).
    fn waited_status(&mut self) -> i32 {
        let mut text = String::new();
        if let Some(out) = self.waiter.as_mut().and_then(|w| w.stdout.as_mut()) {
            let _ = out.read_to_string(&mut text);
        }
        parse_exit_status(&text).unwrap_or(255)
    }

    fn finish(&mut self, args: &Args) {
        // Flush held partial lines even if an orphan kept a pipe open past the grace period.
        let mut buf = Vec::new();
        let ts = crilog::format_timestamp(now_ns());
        for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            self.splitters[i]
                .finish(&mut |tag, c| crilog::format_record(&ts, stream, tag, c, &mut buf));
        }
        if let (Some(log), false) = (self.log.as_mut(), buf.is_empty()) {
            let _ = log.write_all(&buf);
        }
        // No fsync of the log: the kubelet reads it through the page cache and a process crash loses
        // nothing; an fsync here delayed every StopContainer by a disk flush (containerd does none).
        let _ = std::fs::remove_file(args.state_dir.join("attach.sock"));
        let _ = std::fs::remove_file(args.state_dir.join("ctl"));
        self.clients.clear();
        let (code, signal, at) = self.exit.unwrap_or((255, None, now_ns()));
        let oom_after = args.oom_file.as_deref().and_then(read_oom_counter);
        let oom = oom_happened(self.oom_before, oom_after, signal);
        let json = format!(
            "{{\"exit_code\":{code},\"signal\":{},\"started_at_ns\":{},\"finished_at_ns\":{at},\"oom_killed\":{oom}}}\n",
            signal.map_or("null".to_string(), |s| s.to_string()),
            self.started_at.map_or("null".to_string(), |s| s.to_string()),
        );
        // The rename makes it atomic for a restarted daemon; not durable: the state dir and the
        // container die with the machine, and an fsync (file + dir) delayed every StopContainer.
        if let Err(e) = write_atomic(&args.state_dir.join("exit.json"), json.as_bytes(), false) {
            note(&args.state_dir, &format!("writing exit.json: {e}"));
        }
    }
}

/// `exitStatus` out of `runsc wait`'s JSON line (128 + signal for a signalled process).
fn parse_exit_status(text: &str) -> Option<i32> {
    let i = text.find("\"exitStatus\"")?;
    let rest = text[i + 12..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The bundle's absolute cgroupfs `linux.cgroupsPath`, if it has one.
fn bundle_cgroup_path(config_json: &str) -> Option<String> {
    let i = config_json.find("\"cgroupsPath\"")?;
    let rest = config_json[i + 13..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let p = parse_json_str(rest)?;
    // relative paths hang off the runtime's own cgroup and systemd paths ("slice:prefix:name")
    // are the systemd driver's business: neither is ours to guess.
    (p.starts_with('/') && !p.contains("..") && p.len() > 1).then_some(p)
}

/// rmdir of the container's cgroup under every cgroup mount (v1 controllers and v2).
fn remove_cgroup(bundle: &Path) {
    let Ok(cfg) = std::fs::read_to_string(bundle.join("config.json")) else {
        return;
    };
    let Some(rel) = bundle_cgroup_path(&cfg) else {
        return;
    };
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = post.split(' ').next().unwrap_or_default();
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        if let Some(mnt) = pre.split(' ').nth(4) {
            let _ = std::fs::remove_dir(Path::new(mnt).join(rel.trim_start_matches('/')));
        }
    }
}

/// SIGKILLs and reaps every child of ours, including orphans reparented to us.
fn kill_children() {
    let me = std::process::id() as i32;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut found = false;
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                // the comm field may contain spaces; ppid is the second field after its ')'
                let ppid = stat
                    .rfind(')')
                    .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
                    .and_then(|p| p.parse::<i32>().ok());
                if ppid == Some(me) {
                    found = true;
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        while let Ok(Some(_)) = sys::try_wait(-1) {}
        if !found || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Writes all of `data` to a blocking socket whose send timeout bounds the wait; a timeout
/// (reported as 0 bytes written) counts as failure.
fn write_all_fd(fd: RawFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match sys::write(fd, data)? {
            0 => return Err(io::Error::from(io::ErrorKind::TimedOut)),
            n => data = &data[n..],
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn runsc_wait_output_gives_the_exit_status() {
        assert_eq!(
            super::parse_exit_status("{\"id\":\"c1\",\"exitStatus\":7}\n"),
            Some(7)
        );
        assert_eq!(
            super::parse_exit_status("{\"id\":\"c1\",\"exitStatus\": 137}"),
            Some(137)
        );
        assert_eq!(
            super::parse_exit_status("waiting on container: not started"),
            None
        );
        assert_eq!(super::parse_exit_status(""), None);
    }

    use super::*;

    #[test]
    fn runtime_error_lines() {
        let log = "{\"level\":\"info\",\"msg\":\"x\"}\n{\"level\":\"error\",\"msg\":\"container \\\"a\\\" does not exist\",\"time\":\"t\"}\n";
        assert_eq!(
            runtime_errors(log),
            vec!["container \"a\" does not exist".to_string()]
        );
    }

    #[test]
    fn json_escaping_round_trips() {
        let s = "a\"b\\c\nd\u{1}";
        assert_eq!(parse_json_str(&json_str(s)).as_deref(), Some(s));
    }

    #[test]
    fn cgroup_path_from_config() {
        assert_eq!(
            bundle_cgroup_path("{\"linux\": {\"cgroupsPath\" : \"/a/b\"}}").as_deref(),
            Some("/a/b")
        );
        assert_eq!(
            bundle_cgroup_path("{\"cgroupsPath\":\"system.slice:crius:x\"}"),
            None
        );
        assert_eq!(bundle_cgroup_path("{\"cgroupsPath\":\"/a/../..\"}"), None);
        assert_eq!(bundle_cgroup_path("{}"), None);
    }

    #[test]
    fn oom_decision() {
        use OomCounter::*;
        assert!(oom_happened(Some(Kills(0)), Some(Kills(1)), None));
        assert!(!oom_happened(Some(Kills(2)), Some(Kills(2)), Some(9)));
        assert!(oom_happened(Some(Failcnt(0)), Some(Failcnt(3)), Some(9)));
        assert!(!oom_happened(Some(Failcnt(0)), Some(Failcnt(3)), None));
        assert!(!oom_happened(None, None, Some(9)));
    }

    #[test]
    fn args_parse() {
        let a = parse_args(
            [
                "--id",
                "c1",
                "--bundle",
                "/b",
                "--state-dir",
                "/s",
                "--runtime",
                "runc",
                "--runtime-root",
                "/r",
                "--tty",
                "--sync-fd",
                "3",
            ]
            .iter()
            .map(OsString::from),
        )
        .map_err(|e| e.to_string());
        let a = match a {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        };
        assert!(a.tty && !a.stdin);
        assert_eq!(a.sync_fd, Some(3));
        assert!(parse_args(["--id", "x"].iter().map(OsString::from)).is_err());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Frames sent in any chunking come out whole and in order; a length over MAX_FRAME is
        /// refused before anything is buffered for it.
        #[test]
        fn attach_frames_decode_in_any_chunking(
            frames in prop::collection::vec((any::<u8>(), prop::collection::vec(any::<u8>(), 0..300)), 0..8),
            cuts in prop::collection::vec(1usize..64, 0..20),
            bogus_len in (MAX_FRAME as u32 + 1)..u32::MAX,
        ) {
            let mut wire = Vec::new();
            for (k, p) in &frames {
                wire.push(*k);
                wire.extend_from_slice(&(p.len() as u32).to_be_bytes());
                wire.extend_from_slice(p);
            }
            let mut inbuf = Vec::new();
            let mut got = Vec::new();
            let mut rest = &wire[..];
            let mut cuts = cuts.into_iter();
            while !rest.is_empty() {
                let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
                inbuf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                loop {
                    match next_frame(&mut inbuf) {
                        Frame::Got(k, p) => got.push((k, p)),
                        Frame::Incomplete => break,
                        Frame::TooBig => prop_assert!(false, "a legal frame was refused"),
                    }
                }
            }
            prop_assert!(inbuf.is_empty());
            prop_assert_eq!(got, frames);
            let mut evil = vec![0u8];
            evil.extend_from_slice(&bogus_len.to_be_bytes());
            prop_assert_eq!(next_frame(&mut evil), Frame::TooBig);
        }

        /// Any request on the control socket is one of the commands or an error echo; only
        /// the exact words (whitespace around them aside) act.
        #[test]
        fn control_requests_are_total(req in prop::collection::vec(any::<u8>(), 0..64)) {
            let trimmed = String::from_utf8_lossy(&req).trim().to_string();
            match parse_ctl(&req) {
                Ctl::Reopen => prop_assert_eq!(trimmed, "reopen"),
                Ctl::Ping => prop_assert_eq!(trimmed, "ping"),
                Ctl::Start => prop_assert_eq!(trimmed, "start"),
                Ctl::Abandon => prop_assert_eq!(trimmed, "abandon"),
                Ctl::Unknown(s) => prop_assert!(!["reopen", "ping", "start", "abandon"].contains(&s.as_str())),
            }
        }
    }
}
