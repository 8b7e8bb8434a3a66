//! A real-process backend for the integration tests: exec runs the command on this host with
//! pipes or a pseudo-terminal, attach echoes stdin to stdout, port forward dials 127.0.0.1.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;

use crius_streaming::{Backend, Streams, TermSize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;

pub struct LocalBackend;

async fn copy_then_close<R, W>(mut r: R, mut w: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _ = tokio::io::copy(&mut r, &mut w).await;
    let _ = w.shutdown().await;
}

fn set_winsize(fd: &OwnedFd, size: TermSize) {
    let ws = nix::libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct from a valid pointer; fd is a live pty master.
    unsafe {
        nix::libc::ioctl(fd.as_raw_fd(), nix::libc::TIOCSWINSZ, &ws);
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

impl LocalBackend {
    async fn exec_pipes(&self, cmd: &[String], streams: Streams) -> Result<i32, String> {
        let mut c = Command::new(&cmd[0]);
        c.args(&cmd[1..])
            .kill_on_drop(true)
            .stdin(if streams.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(if streams.stdout.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(if streams.stderr.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = c.spawn().map_err(|e| format!("spawning {cmd:?}: {e}"))?;
        let mut tasks = Vec::new();
        if let (Some(src), Some(dst)) = (streams.stdin, child.stdin.take()) {
            // Not awaited: stdin may never reach EOF while the process has already exited.
            tokio::spawn(copy_then_close(src, dst));
        }
        if let (Some(dst), Some(src)) = (streams.stdout, child.stdout.take()) {
            tasks.push(tokio::spawn(copy_then_close(src, dst)));
        }
        if let (Some(dst), Some(src)) = (streams.stderr, child.stderr.take()) {
            tasks.push(tokio::spawn(copy_then_close(src, dst)));
        }
        let status = child.wait().await.map_err(|e| format!("waiting: {e}"))?;
        for t in tasks {
            let _ = t.await;
        }
        Ok(exit_code(status))
    }

    async fn exec_tty(&self, cmd: &[String], mut streams: Streams) -> Result<i32, String> {
        let pty = nix::pty::openpty(None, None).map_err(|e| format!("openpty: {e}"))?;
        let master = pty.master;
        let slave = pty.slave;
        // The server queues the client's first size before calling us: apply it before the
        // process starts so it never sees a 0x0 terminal.
        if let Some(rx) = streams.resize.as_mut() {
            if let Ok(size) = rx.try_recv() {
                set_winsize(&master, size);
            }
        }
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| format!("dup: {e}"));
        let mut c = Command::new(&cmd[0]);
        c.args(&cmd[1..])
            .kill_on_drop(true)
            .stdin(Stdio::from(dup(&slave)?))
            .stdout(Stdio::from(dup(&slave)?))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
        unsafe {
            c.pre_exec(|| {
                nix::libc::setsid();
                nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let mut child = c.spawn().map_err(|e| format!("spawning {cmd:?}: {e}"))?;
        // Drop our slave copies (held by the Command) so the master sees EIO at exit.
        drop(c);
        let reader = tokio::fs::File::from(std::fs::File::from(dup(&master)?));
        let writer = tokio::fs::File::from(std::fs::File::from(dup(&master)?));
        if let Some(mut rx) = streams.resize.take() {
            let m = dup(&master)?;
            tokio::spawn(async move {
                while let Some(size) = rx.recv().await {
                    set_winsize(&m, size);
                }
            });
        }
        if let Some(src) = streams.stdin.take() {
            tokio::spawn(copy_then_close(src, writer));
        }
        let out = streams
            .stdout
            .take()
            .map(|dst| tokio::spawn(copy_then_close(reader, dst)));
        let status = child.wait().await.map_err(|e| format!("waiting: {e}"))?;
        if let Some(t) = out {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
        drop(master);
        Ok(exit_code(status))
    }
}

#[async_trait::async_trait]
impl Backend for LocalBackend {
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        streams: Streams,
    ) -> Result<i32, String> {
        if container_id == "missing" {
            return Err(format!("container {container_id} not found"));
        }
        if cmd.is_empty() {
            return Err("empty command".into());
        }
        if streams.tty {
            self.exec_tty(cmd, streams).await
        } else {
            self.exec_pipes(cmd, streams).await
        }
    }

    async fn attach(&self, _container_id: &str, streams: Streams) -> Result<(), String> {
        // The "container" echoes its stdin, like `cat` as pid 1.
        if let (Some(src), Some(dst)) = (streams.stdin, streams.stdout) {
            copy_then_close(src, dst).await;
        }
        Ok(())
    }

    async fn port_forward(&self, _pod: &str, port: u16) -> Result<tokio::net::TcpStream, String> {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("dialing 127.0.0.1:{port}: {e}"))
    }
}
