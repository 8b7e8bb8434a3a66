//! Exec, attach and port-forward: the CRI requests are validated here (NotFound, FailedPrecondition,
//! InvalidArgument) before the streaming server issues a URL, and this module is the server's backend:
//! it runs exec'd processes through the OCI handler, attaches through the container's monitor, and
//! dials ports inside the pod's network namespace.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use cri_api::v1 as cri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::container::CtrState;
use crate::error::{Error, Result};
use crate::pod::PodState;
use crate::runtime::Runtime;

/// Starts the streaming server (`cfg` from the daemon config: address, idle timeout, session cap).
pub async fn start(rt: &Arc<Runtime>, cfg: crius_streaming::Config) -> anyhow::Result<()> {
    let backend = Arc::new(Backend {
        rt: Arc::downgrade(rt),
    });
    let server = crius_streaming::Server::start(cfg, backend).await?;
    tracing::info!("streaming server on {}", server.base_url());
    let _ = rt.streaming.set(server);
    Ok(())
}

fn server(rt: &Runtime) -> Result<&crius_streaming::Server> {
    rt.streaming
        .get()
        .ok_or_else(|| Error::Unavailable("the streaming server is not running".into()))
}

fn running_container(rt: &Runtime, id: &str) -> Result<String> {
    let c = rt.container(id)?;
    let rec = c.record();
    if rec.state != CtrState::Running {
        return Err(Error::FailedPrecondition(format!(
            "container {} is not running (state {:?})",
            c.id, rec.state
        )));
    }
    Ok(c.id.clone())
}

pub fn exec_url(rt: &Runtime, req: cri::ExecRequest) -> Result<String> {
    if req.cmd.is_empty() {
        return Err(Error::invalid("cmd", "must not be empty"));
    }
    if req.tty && req.stderr {
        return Err(Error::invalid(
            "stderr",
            "tty and stderr cannot both be true (a terminal has one output stream)",
        ));
    }
    if !(req.stdin || req.stdout || req.stderr) {
        return Err(Error::invalid(
            "stdin/stdout/stderr",
            "one of them must be true",
        ));
    }
    let id = running_container(rt, &req.container_id)?;
    Ok(server(rt)?.exec_url(crius_streaming::ExecRequest {
        container_id: id,
        cmd: req.cmd,
        tty: req.tty,
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
    }))
}

pub fn attach_url(rt: &Runtime, req: cri::AttachRequest) -> Result<String> {
    if req.tty && req.stderr {
        return Err(Error::invalid(
            "stderr",
            "tty and stderr cannot both be true (a terminal has one output stream)",
        ));
    }
    if !(req.stdin || req.stdout || req.stderr) {
        return Err(Error::invalid(
            "stdin/stdout/stderr",
            "one of them must be true",
        ));
    }
    let id = running_container(rt, &req.container_id)?;
    let cfg = rt.container(&id)?.record().config();
    if req.stdin && !cfg.stdin {
        return Err(Error::FailedPrecondition(format!(
            "container {id} was not created with stdin; cannot attach stdin"
        )));
    }
    if req.tty != cfg.tty {
        return Err(Error::invalid(
            "tty",
            format!(
                "container {id} has tty={}, the request asks tty={}",
                cfg.tty, req.tty
            ),
        ));
    }
    Ok(server(rt)?.attach_url(crius_streaming::AttachRequest {
        container_id: id,
        tty: req.tty,
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
    }))
}

pub fn port_forward_url(rt: &Runtime, req: cri::PortForwardRequest) -> Result<String> {
    let pod = rt.pod(&req.pod_sandbox_id)?;
    if pod.record().state != PodState::Ready {
        return Err(Error::FailedPrecondition(format!(
            "pod {} is not ready",
            pod.id
        )));
    }
    for (i, p) in req.port.iter().enumerate() {
        if !(1..=65535).contains(p) {
            return Err(Error::invalid(
                format!("port[{i}]"),
                format!("{p} is not a TCP port"),
            ));
        }
    }
    Ok(
        server(rt)?.port_forward_url(crius_streaming::PortForwardRequest {
            pod_sandbox_id: pod.id.clone(),
            ports: req.port,
        }),
    )
}

struct Backend {
    rt: Weak<Runtime>,
}

impl Backend {
    fn rt(&self) -> std::result::Result<Arc<Runtime>, String> {
        self.rt
            .upgrade()
            .ok_or_else(|| "crius is shutting down".to_string())
    }
}

/// Connects to localhost:`port` from inside the network namespace pinned at `netns` (None: the host's).
/// The socket is created by a short-lived thread that joined the namespace; the socket stays in it.
fn dial_in_netns(
    netns: Option<PathBuf>,
    port: u16,
) -> std::result::Result<std::net::TcpStream, String> {
    std::thread::spawn(move || {
        if let Some(ns) = &netns {
            let f = std::fs::File::open(ns)
                .map_err(|e| format!("open network namespace {}: {e}", ns.display()))?;
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("enter network namespace {}: {e}", ns.display()))?;
        }
        // "localhost" as kubelet's runtimes dial it: IPv4 first, then IPv6 for a server that
        // listens on ::1 only.
        let s =
            std::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port)).or_else(|v4| {
                std::net::TcpStream::connect((std::net::Ipv6Addr::LOCALHOST, port)).map_err(|v6| {
                    format!("connect to port {port} in the pod: 127.0.0.1: {v4}; [::1]: {v6}")
                })
            })?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(s)
    })
    .join()
    .map_err(|_| "port-forward thread panicked".to_string())?
}

#[async_trait::async_trait]
impl crius_streaming::Backend for Backend {
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        streams: crius_streaming::Streams,
    ) -> std::result::Result<i32, String> {
        let _session = crate::metrics::get().session("exec");
        let rt = self.rt()?;
        let mut streams = streams;
        rt.check_exec_seccomp(container_id)
            .await
            .map_err(|e| e.to_string())?;
        let (handler, cid, mut process) = rt
            .exec_process(container_id, cmd, streams.tty)
            .map_err(|e| e.to_string())?;
        // The server held the call back until the client's first terminal size arrived (or
        // 200 ms passed): the process must start with that size, since a program that reads it
        // once at start (stty, a shell's line editor) would otherwise see 80x24.
        let first_size = match (streams.tty, streams.resize.as_mut()) {
            (true, Some(rx)) => latest_size(rx),
            _ => None,
        };
        if let Some(sz) = first_size {
            process.set_console_size(Some(console_size(sz)?));
        }
        let proc = start_exec(handler, cid, process).await?;
        pump_exec(proc, streams).await
    }

    async fn attach(
        &self,
        container_id: &str,
        streams: crius_streaming::Streams,
    ) -> std::result::Result<(), String> {
        let _session = crate::metrics::get().session("attach");
        let rt = self.rt()?;
        let id = running_container(&rt, container_id).map_err(|e| e.to_string())?;
        let conn = crius_oci::attach(&rt.container_dir(&id))
            .await
            .map_err(|e| e.to_string())?;
        pump_attach(conn, streams).await
    }

    async fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
    ) -> std::result::Result<tokio::net::TcpStream, String> {
        // The connection is pumped by the streaming server after this returns: counted, not tracked.
        crate::metrics::get().session_started("portforward");
        let rt = self.rt()?;
        let pod = rt.pod(pod_sandbox_id).map_err(|e| e.to_string())?;
        let netns = pod.record().pins.net;
        let std_stream = tokio::task::spawn_blocking(move || dial_in_netns(netns, port))
            .await
            .map_err(|e| e.to_string())??;
        tokio::net::TcpStream::from_std(std_stream).map_err(|e| e.to_string())
    }
}

/// Starts the exec'd process in a task of its own. The client may leave while runc is still
/// starting it, and dropping `Handler::exec` half-way would kill only runc and leave the process
/// it had already started running in the container, owned by nobody; the task instead finishes
/// the start and kills what it started when nobody is waiting for it any more.
async fn start_exec(
    handler: Arc<crius_oci::Handler>,
    cid: String,
    process: oci_spec::runtime::Process,
) -> std::result::Result<crius_oci::ExecProcess, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let started = handler
            .exec(&cid, &process)
            .await
            .map_err(|e| e.to_string());
        if let Err(Ok(proc)) = tx.send(started) {
            drop(KillOnDrop {
                proc,
                finished: false,
            });
        }
    });
    rx.await
        .map_err(|_| "the exec start task ended without an answer".to_string())?
}

/// The newest size already queued on `rx`, without waiting.
fn latest_size(
    rx: &mut tokio::sync::mpsc::Receiver<crius_streaming::TermSize>,
) -> Option<crius_streaming::TermSize> {
    let mut last = None;
    while let Ok(sz) = rx.try_recv() {
        last = Some(sz);
    }
    last
}

fn console_size(
    sz: crius_streaming::TermSize,
) -> std::result::Result<oci_spec::runtime::Box, String> {
    oci_spec::runtime::BoxBuilder::default()
        .width(u64::from(sz.width))
        .height(u64::from(sz.height))
        .build()
        .map_err(|e| format!("console size {}x{}: {e}", sz.width, sz.height))
}

/// Copies the client's stdin into `w` until EOF, then closes `w`.
async fn copy_stdin(
    mut r: crius_streaming::StreamReader,
    mut w: impl tokio::io::AsyncWrite + Unpin,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = w.shutdown().await;
}

async fn copy_out(
    mut r: impl tokio::io::AsyncRead + Unpin,
    mut w: Option<crius_streaming::StreamWriter>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(out) = w.as_mut() {
                    if out.write_all(&buf[..n]).await.is_err() {
                        w = None;
                    }
                }
            }
        }
    }
    if let Some(mut out) = w {
        let _ = out.shutdown().await;
    }
}

/// Kills the exec'd process and everything it started unless it finished: the streaming server
/// drops our future when the client goes away, and no exec'd process may outlive its client. Its
/// children count too: `sh -c 'sleep 1000; …'` would otherwise leave the sleep running once the
/// shell is gone (runc only signals the process it started).
struct KillOnDrop {
    proc: crius_oci::ExecProcess,
    finished: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(pid) = self.proc.pid() {
            kill_tree(pid);
        }
        let _ = self.proc.kill();
    }
}

/// The parent pid in `/proc/<pid>/stat` (the field after the parenthesised command name, which
/// may itself contain spaces and parentheses).
fn parent_of(stat: &str) -> Option<i32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `(pid, parent)` of every process on the host.
fn process_table() -> Vec<(i32, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parent_of(&stat)?))
        })
        .collect()
}

/// SIGKILLs `root` and its descendants. Each one is stopped as soon as it is found so that it can
/// neither fork past the scan nor exit and have its children reparented out of sight (to the
/// container's init) before they are found.
fn kill_tree(root: i32) {
    let signal = |pid: i32, sig: i32| unsafe { libc::kill(pid, sig) };
    signal(root, libc::SIGSTOP);
    let mut found = vec![root];
    for _ in 0..5 {
        let table = process_table();
        let mut grew = false;
        let mut i = 0;
        while i < found.len() {
            let parent = found[i];
            for &(pid, ppid) in &table {
                if ppid == parent && !found.contains(&pid) {
                    signal(pid, libc::SIGSTOP);
                    found.push(pid);
                    grew = true;
                }
            }
            i += 1;
        }
        if !grew {
            break;
        }
    }
    for pid in found {
        signal(pid, libc::SIGKILL);
    }
}

/// Tasks of one session. The streaming server drops the session's future when the client goes
/// away, and a spawned task is not cancelled with it: this aborts them, so no copy loop (and no
/// descriptor it holds, such as the attach socket) outlives the session.
#[derive(Default)]
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Tasks {
    fn spawn(&mut self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        self.0.push(tokio::spawn(f));
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// How long output may keep flowing after the runtime exited. Without a tty runc relays the
/// process's output itself and only exits once its copies end, so a background child holding the
/// pipes keeps the session open until it closes them (as with containerd); this bounds the rest.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

async fn pump_exec(
    proc: crius_oci::ExecProcess,
    streams: crius_streaming::Streams,
) -> std::result::Result<i32, String> {
    let mut g = KillOnDrop {
        proc,
        finished: false,
    };
    let crius_streaming::Streams {
        stdin,
        stdout,
        stderr,
        resize,
        ..
    } = streams;
    let mut inputs = Tasks::default();
    let mut outputs = Tasks::default();
    if let Some(pty) = g.proc.pty.take() {
        if let Some(input) = stdin {
            let w = pty.try_clone().map_err(|e| format!("pty: {e}"))?;
            inputs.spawn(copy_stdin(input, w));
        }
        if let Some(mut rx) = resize {
            let p = pty.try_clone().map_err(|e| format!("pty: {e}"))?;
            inputs.spawn(async move {
                while let Some(sz) = rx.recv().await {
                    let _ = p.resize(sz.width, sz.height);
                }
            });
        }
        outputs.spawn(copy_out(pty, stdout));
    } else {
        match (stdin, g.proc.stdin.take()) {
            (Some(input), Some(pipe)) => inputs.spawn(copy_stdin(input, pipe)),
            // No stdin requested: the process sees EOF at once.
            (_, pipe) => drop(pipe),
        }
        if let Some(out) = g.proc.stdout.take() {
            outputs.spawn(copy_out(out, stdout));
        }
        if let Some(err) = g.proc.stderr.take() {
            outputs.spawn(copy_out(err, stderr));
        }
    }
    let code = g.proc.wait().await.map_err(|e| e.to_string());
    g.finished = true;
    let _ = tokio::time::timeout(DRAIN, futures::future::join_all(outputs.0.iter_mut())).await;
    // Dropping `inputs` and `outputs` stops whatever is left (stdin nobody reads, a grandchild
    // still holding the output pipes past the drain time).
    code
}

async fn pump_attach(
    conn: crius_oci::AttachStream,
    streams: crius_streaming::Streams,
) -> std::result::Result<(), String> {
    let (mut reader, mut writer) = conn.into_split();
    let crius_streaming::Streams {
        stdin,
        mut stdout,
        mut stderr,
        resize,
        tty,
    } = streams;
    let mut tasks = Tasks::default();
    // This task keeps the write half even after the client's stdin and resize streams ended
    // (both branches then pend): dropping it shuts the socket's write side down, which the
    // monitor takes as a detach and stops sending output, so the output after an EOF on stdin
    // (what `cat` prints last, a final message) would never reach the client.
    tasks.spawn(async move {
        let mut stdin = stdin;
        let mut resize = resize;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            tokio::select! {
                n = async { match stdin.as_mut() { Some(r) => r.read(&mut buf).await, None => std::future::pending().await } } => {
                    match n {
                        Ok(0) | Err(_) => {
                            let _ = writer.close_stdin().await;
                            stdin = None;
                        }
                        Ok(n) => if writer.write_stdin(&buf[..n]).await.is_err() { break },
                    }
                }
                sz = async { match resize.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } } => {
                    match sz {
                        Some(sz) => { let _ = writer.resize(sz.width, sz.height).await; }
                        None => resize = None,
                    }
                }
            }
        }
    });
    loop {
        let frame = match reader.read_frame().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(e.to_string()),
        };
        let out = match frame.kind {
            crius_oci::FrameKind::Stdout => stdout.as_mut(),
            crius_oci::FrameKind::Stderr if tty => stdout.as_mut(),
            crius_oci::FrameKind::Stderr => stderr.as_mut(),
            _ => None,
        };
        if let Some(w) = out {
            if w.write_all(&frame.data).await.is_err() {
                break;
            }
        }
    }
    drop(tasks);
    for w in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
        let _ = w.shutdown().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_from_stat() {
        assert_eq!(parent_of("42 (sleep) S 7 42 1 0 -1"), Some(7));
        assert_eq!(parent_of("42 (a) b) (c) R 9 42 1 0"), Some(9));
        assert_eq!(parent_of("42 (x"), None);
    }

    #[test]
    fn kill_tree_kills_children_of_a_process() {
        // A shell whose child would outlive it if only the shell were killed.
        let mut sh = std::process::Command::new("/bin/busybox")
            .args(["sh", "-c", "sleep 977 & sleep 978; true"])
            .spawn()
            .expect("spawn busybox sh");
        let pid = sh.id() as i32;
        let children = |pid: i32| -> Vec<i32> {
            process_table()
                .into_iter()
                .filter(|(_, p)| *p == pid)
                .map(|(c, _)| c)
                .collect()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while children(pid).len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "children never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let kids = children(pid);
        kill_tree(pid);
        let _ = sh.wait();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        for k in kids {
            // Reparented to our init (not reaped by us) they may linger as zombies: dead enough.
            loop {
                let stat = std::fs::read_to_string(format!("/proc/{k}/stat")).unwrap_or_default();
                let state = stat
                    .rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().next().map(str::to_string));
                if stat.is_empty() || state.as_deref() == Some("Z") {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "child {k} survived: {stat}"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}
