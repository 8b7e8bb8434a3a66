//! Interactive paths through real runc and the real monitor: exec with a tty, attach to a
//! container's stdio (pipes and tty), log reopen after rotation, OOM detection. Needs root.

mod common;

use std::time::{Duration, Instant};

use common::*;
use crius_oci::{attach, read_exit, reopen_log, spawn_monitor, FrameKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn process(args: &[&str], terminal: bool) -> oci_spec::runtime::Process {
    let mut p = oci_spec::runtime::Process::default();
    p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
    p.set_env(Some(vec!["PATH=/bin".into(), "TERM=xterm".into()]));
    p.set_cwd("/".into());
    p.set_terminal(Some(terminal));
    p
}

/// Reads from `r` until the accumulated text contains `needle` (10 s max).
async fn read_until(r: &mut (impl AsyncReadExt + Unpin), acc: &mut String, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while !acc.contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, r.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {needle:?}; got {acc:?}"))
            .expect("read");
        assert!(n > 0, "EOF before {needle:?}; got {acc:?}");
        acc.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[tokio::test]
async fn exec_with_tty_resize_and_exit_code() {
    let f = Fixture::new("exectty", &["sleep", "1000"], false, |_| {});
    let mon = spawn_monitor(&f.handler, &f.monitor_config())
        .await
        .expect("spawn");
    f.handler.start(&f.id).await.expect("start");

    let mut p = f
        .handler
        .exec(&f.id, &process(&["sh"], true))
        .await
        .expect("exec tty");
    assert!(p.pid().is_some());
    let mut pty = p.pty.take().expect("pty master");
    pty.resize(123, 45).expect("resize");
    let mut acc = String::new();
    // wait for the prompt: typeahead would be echoed twice (by the line discipline, then by
    // the shell's line editor), which is terminal behaviour, not ours
    read_until(&mut pty, &mut acc, "# ").await;
    // busybox's line editor asks the terminal for the cursor position (ESC[6n) after the prompt and
    // redraws the line if keys arrive before it gives up waiting: let it settle first
    tokio::time::sleep(Duration::from_millis(500)).await;
    acc.clear();
    pty.write_all(b"stty size; echo mark-$((40+2))\n")
        .await
        .expect("write");
    read_until(&mut pty, &mut acc, "mark-42").await;
    assert!(acc.contains("45 123"), "{acc:?}");
    // echoed once, by the container's terminal only (counted on the line's tail: a late SIGWINCH
    // from the resize may make the shell's line editor redraw the first characters it had echoed)
    assert_eq!(acc.matches("echo mark-$((40+2))").count(), 1, "{acc:?}");
    pty.write_all(b"exit 4\n").await.expect("write exit");
    let code = tokio::time::timeout(Duration::from_secs(10), p.wait())
        .await
        .expect("wait in time")
        .expect("wait");
    assert_eq!(code, 4);

    // kill() ends the exec'd process inside the container, not just the runtime
    let mut p = f
        .handler
        .exec(&f.id, &process(&["sleep", "500"], false))
        .await
        .expect("exec pipes");
    let pid = p.pid().expect("pid");
    assert!(crius_oci::pid_alive(pid));
    p.kill().expect("kill");
    let code = tokio::time::timeout(Duration::from_secs(10), p.wait())
        .await
        .expect("wait in time")
        .expect("wait");
    assert_eq!(code, 137);
    tokio::time::timeout(Duration::from_secs(5), crius_oci::wait_pid_exit(pid))
        .await
        .expect("gone")
        .expect("wait pid");

    // non-tty interactive exec: stdin pipe round trip
    let mut p = f
        .handler
        .exec(&f.id, &process(&["cat"], false))
        .await
        .expect("exec cat");
    let mut stdin = p.stdin.take().expect("stdin");
    let mut stdout = p.stdout.take().expect("stdout");
    stdin.write_all(b"via-pipe\n").await.expect("write");
    drop(stdin);
    let mut acc = String::new();
    read_until(&mut stdout, &mut acc, "via-pipe\n").await;
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), p.wait())
            .await
            .expect("in time")
            .expect("wait"),
        0
    );

    f.handler
        .kill(&f.id, libc::SIGKILL, false)
        .await
        .expect("kill");
    wait_monitor(mon.monitor_pid).await;
}

#[tokio::test]
async fn attach_round_trip_with_stdin_once() {
    let f = Fixture::new("attach", &["cat"], false, |_| {});
    let mut cfg = f.monitor_config();
    cfg.stdin = true;
    cfg.stdin_once = true;
    let mon = spawn_monitor(&f.handler, &cfg).await.expect("spawn");
    f.handler.start(&f.id).await.expect("start");

    let mut a = attach(&f.state_dir()).await.expect("attach");
    // a second, output-only client sees the same output
    let mut watcher = attach(&f.state_dir()).await.expect("attach 2");
    a.write_stdin(b"ping\n").await.expect("stdin");
    let fr = tokio::time::timeout(Duration::from_secs(10), a.read_frame())
        .await
        .expect("in time")
        .expect("frame")
        .expect("some");
    assert_eq!(
        (fr.kind, fr.data.as_slice()),
        (FrameKind::Stdout, &b"ping\n"[..])
    );
    let fr = tokio::time::timeout(Duration::from_secs(10), watcher.read_frame())
        .await
        .expect("in time")
        .expect("frame")
        .expect("some");
    assert_eq!(fr.data, b"ping\n");
    // with stdin_once, ending our stdin closes the container's: cat exits 0
    a.close_stdin().await.expect("close stdin");
    let end = tokio::time::timeout(Duration::from_secs(10), a.read_frame())
        .await
        .expect("in time")
        .expect("read");
    assert!(end.is_none(), "stream should end with the container");
    wait_monitor(mon.monitor_pid).await;
    assert_eq!(
        read_exit(&f.state_dir())
            .expect("read")
            .expect("exit")
            .exit_code,
        0
    );
    let recs = records(&f.log());
    assert_eq!(recs.len(), 1);
    assert_eq!(
        (recs[0].1.as_str(), recs[0].2.as_str(), recs[0].3.as_str()),
        ("stdout", "F", "ping")
    );
}

#[tokio::test]
async fn attach_to_tty_container_with_resize() {
    let f = Fixture::new("attachtty", &["sh"], true, |_| {});
    let mut cfg = f.monitor_config();
    cfg.tty = true;
    cfg.stdin = true;
    let mon = spawn_monitor(&f.handler, &cfg).await.expect("spawn tty");
    f.handler.start(&f.id).await.expect("start");
    let mut a = attach(&f.state_dir()).await.expect("attach");
    a.resize(77, 22).await.expect("resize");
    a.write_stdin(b"stty size; echo done-$((1+1))\n")
        .await
        .expect("stdin");
    let mut acc = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !acc.contains("done-2") {
        let left = deadline.saturating_duration_since(Instant::now());
        let fr = tokio::time::timeout(left, a.read_frame())
            .await
            .expect("in time")
            .expect("frame")
            .expect("some");
        assert_eq!(fr.kind, FrameKind::Stdout);
        acc.push_str(&String::from_utf8_lossy(&fr.data));
    }
    assert!(acc.contains("22 77"), "{acc:?}");
    // without stdin_once, detaching leaves the shell running
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(crius_oci::monitor_alive(&f.state_dir()).is_some());
    let mut a = attach(&f.state_dir()).await.expect("attach again");
    a.write_stdin(b"exit 9\n").await.expect("stdin");
    wait_monitor(mon.monitor_pid).await;
    assert_eq!(
        read_exit(&f.state_dir())
            .expect("read")
            .expect("exit")
            .exit_code,
        9
    );
    // tty output is logged as stdout; lines end in \r\n on a tty
    let log = f.log();
    assert!(records(&log).iter().all(|r| r.1 == "stdout"), "{log}");
    assert!(log.contains("22 77"), "{log}");
}

#[tokio::test]
async fn reopen_log_after_rotation() {
    let f = Fixture::new("reopen", &["cat"], false, |_| {});
    let mut cfg = f.monitor_config();
    cfg.stdin = true;
    let mon = spawn_monitor(&f.handler, &cfg).await.expect("spawn");
    f.handler.start(&f.id).await.expect("start");
    let mut a = attach(&f.state_dir()).await.expect("attach");
    a.write_stdin(b"one\n").await.expect("stdin");
    f.wait_log(|l| l.contains(" F one\n")).await;
    let rotated = f.log_path().with_extension("log.1");
    std::fs::rename(f.log_path(), &rotated).expect("rotate");
    reopen_log(&f.state_dir()).await.expect("reopen");
    a.write_stdin(b"two\n").await.expect("stdin");
    f.wait_log(|l| l.contains(" F two\n")).await;
    let old = std::fs::read_to_string(&rotated).expect("old log");
    assert!(old.contains(" F one\n") && !old.contains("two"), "{old}");
    assert!(!f.log().contains("one"));
    f.handler
        .kill(&f.id, libc::SIGKILL, false)
        .await
        .expect("kill");
    wait_monitor(mon.monitor_pid).await;
    assert!(
        reopen_log(&f.state_dir()).await.is_err(),
        "no monitor, no reopen"
    );
}

#[tokio::test]
async fn oom_kill_is_reported() {
    let limit = 8 * 1024 * 1024;
    let f = Fixture::new("oom", &["sh", "-c", "tail /dev/zero; exit 0"], false, |c| {
        c["linux"]["resources"]["memory"] = serde_json::json!({"limit": limit, "swap": limit});
    });
    let mut cfg = f.monitor_config();
    let cg = format!("/sys/fs/cgroup/memory/crius-test/{}", f.id);
    cfg.oom_file = Some(format!("{cg}/memory.oom_control").into());
    let mon = spawn_monitor(&f.handler, &cfg).await.expect("spawn");
    f.handler.start(&f.id).await.expect("start");
    wait_monitor(mon.monitor_pid).await;
    let exit = read_exit(&f.state_dir()).expect("read").expect("exit");
    assert!(exit.oom_killed, "{exit:?}");

    // and a container that exits normally under a limit is not OOM-killed
    let g = Fixture::new("nooom", &["true"], false, |c| {
        c["linux"]["resources"]["memory"] = serde_json::json!({"limit": limit, "swap": limit});
    });
    let mut cfg = g.monitor_config();
    cfg.oom_file = Some(
        format!(
            "/sys/fs/cgroup/memory/crius-test/{}/memory.oom_control",
            g.id
        )
        .into(),
    );
    let mon = spawn_monitor(&g.handler, &cfg).await.expect("spawn");
    g.handler.start(&g.id).await.expect("start");
    wait_monitor(mon.monitor_pid).await;
    let exit = read_exit(&g.state_dir()).expect("read").expect("exit");
    assert!(!exit.oom_killed && exit.exit_code == 0, "{exit:?}");
}
