//! Container lifecycle through the real monitor and real runc: create, start, logs, exit record,
//! kill, delete, exec_sync. Needs root.

mod common;

use std::time::{Duration, Instant};

use common::*;
use crius_oci::{read_exit, spawn_monitor, OciError};

#[tokio::test]
async fn create_start_logs_and_exit_code() {
    let f = Fixture::new(
        "exit3",
        &[
            "sh",
            "-c",
            "echo hello; echo oops >&2; sleep 1; printf tail; exit 3",
        ],
        false,
        |_| {},
    );
    let cfg = f.monitor_config();
    let t0 = Instant::now();
    let mon = spawn_monitor(&f.handler, &cfg)
        .await
        .expect("spawn_monitor");
    let create_took = t0.elapsed();
    assert!(mon.container_pid > 0 && mon.monitor_pid > 0);
    // The monitor is detached from us: not our child, in its own session.
    assert_ne!(ppid(mon.monitor_pid), std::process::id() as i32);
    assert_eq!(
        crius_oci::monitor_alive(&f.state_dir()),
        Some(mon.monitor_pid)
    );
    for sock in ["attach.sock", "ctl"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f.state_dir().join(sock))
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{sock}");
    }
    let st = f.handler.state(&f.id).await.expect("state").expect("known");
    assert_eq!(st.status, "created");
    assert!(read_exit(&f.state_dir()).expect("read_exit").is_none());

    let unix_ns = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0)
    };
    let before_start = unix_ns();
    f.handler.start(&f.id).await.expect("start");
    let after_start = unix_ns();
    let rss = vm_rss_kib(mon.monitor_pid);
    eprintln!(
        "create via monitor took {create_took:?}; monitor VmRSS of a running container: {rss} KiB"
    );
    assert!(rss < 8 * 1024, "monitor RSS {rss} KiB");

    wait_monitor(mon.monitor_pid).await;
    let exit = read_exit(&f.state_dir())
        .expect("read_exit")
        .expect("exit.json written");
    assert_eq!(exit.exit_code, 3);
    assert_eq!(exit.signal, None);
    assert!(!exit.oom_killed);
    let started = exit.started_at_ns.expect("start time recorded");
    // The monitor notices the start asynchronously (the exec fifo being opened), so its stamp may
    // trail `start` returning by a scheduling delay.
    assert!(
        before_start <= started && started <= after_start + 500_000_000,
        "{before_start} {started} {after_start}"
    );
    assert!(
        exit.finished_at_ns >= started + 1_000_000_000,
        "ran for its 1 s sleep"
    );
    assert_eq!(crius_oci::monitor_alive(&f.state_dir()), None);

    let recs = records(&f.log());
    let body: Vec<(&str, &str, &str)> = recs
        .iter()
        .map(|(_, s, t, c)| (s.as_str(), t.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        body,
        vec![
            ("stdout", "F", "hello"),
            ("stderr", "F", "oops"),
            ("stdout", "P", "tail")
        ]
    );
    for (ts, ..) in &recs {
        // 2026-11-25T10:21:36.123456789Z
        assert_eq!(ts.len(), 30, "{ts}");
        assert!(
            ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.',
            "{ts}"
        );
    }
    f.handler.delete(&f.id, false).await.expect("delete");
    f.handler
        .delete(&f.id, false)
        .await
        .expect("delete is idempotent");
    assert!(f.handler.state(&f.id).await.expect("state").is_none());
}

#[tokio::test]
async fn long_lines_are_split() {
    // 40000 bytes in one line → P(16384) P(16384) F(7232)
    let f = Fixture::new(
        "long",
        &[
            "sh",
            "-c",
            "i=0; s=0123456789; while [ $i -lt 4000 ]; do printf $s; i=$((i+1)); done; echo",
        ],
        false,
        |_| {},
    );
    let mon = spawn_monitor(&f.handler, &f.monitor_config())
        .await
        .expect("spawn");
    f.handler.start(&f.id).await.expect("start");
    wait_monitor(mon.monitor_pid).await;
    let recs = records(&f.log());
    let shape: Vec<(&str, usize)> = recs
        .iter()
        .map(|(_, _, t, c)| (t.as_str(), c.len()))
        .collect();
    assert_eq!(shape, vec![("P", 16384), ("P", 16384), ("F", 7232)]);
}

#[tokio::test]
async fn kill_term_and_kill_are_recorded() {
    let f = Fixture::new(
        "term",
        &["sh", "-c", "trap 'exit 7' TERM; sleep 1000 & wait"],
        false,
        |_| {},
    );
    let mon = spawn_monitor(&f.handler, &f.monitor_config())
        .await
        .expect("spawn");
    f.handler.start(&f.id).await.expect("start");
    // give sh time to install its trap
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.handler
        .kill(&f.id, libc::SIGTERM, false)
        .await
        .expect("kill TERM");
    wait_monitor(mon.monitor_pid).await;
    let exit = read_exit(&f.state_dir()).expect("read").expect("exit");
    assert_eq!(exit.exit_code, 7);
    // stopped container: signalling is a no-op, not an error
    f.handler
        .kill(&f.id, libc::SIGKILL, false)
        .await
        .expect("kill stopped");
    assert_eq!(
        f.handler
            .kill_checked(&f.id, libc::SIGKILL, false)
            .await
            .expect("kill_checked"),
        crius_oci::KillOutcome::NotRunning
    );
    f.handler.delete(&f.id, false).await.expect("delete");
    assert_eq!(
        f.handler
            .kill_checked(&f.id, libc::SIGKILL, false)
            .await
            .expect("kill_checked"),
        crius_oci::KillOutcome::NoSuchContainer
    );

    let g = Fixture::new("kill9", &["sleep", "1000"], false, |_| {});
    let mon = spawn_monitor(&g.handler, &g.monitor_config())
        .await
        .expect("spawn");
    g.handler.start(&g.id).await.expect("start");
    g.handler
        .kill(&g.id, libc::SIGKILL, true)
        .await
        .expect("kill KILL");
    wait_monitor(mon.monitor_pid).await;
    let exit = read_exit(&g.state_dir()).expect("read").expect("exit");
    assert_eq!((exit.exit_code, exit.signal), (137, Some(9)));
}

#[tokio::test]
async fn deleting_a_created_container_ends_its_monitor() {
    let f = Fixture::new("never", &["true"], false, |_| {});
    let mon = spawn_monitor(&f.handler, &f.monitor_config())
        .await
        .expect("spawn");
    f.handler.delete(&f.id, true).await.expect("delete");
    wait_monitor(mon.monitor_pid).await;
    let exit = read_exit(&f.state_dir()).expect("read").expect("exit");
    assert_eq!(exit.exit_code, 137);
    assert_eq!(exit.started_at_ns, None, "never started");
}

#[tokio::test]
async fn failed_create_leaves_nothing_behind() {
    let f = Fixture::new("badcreate", &["/no/such/binary"], false, |_| {});
    let err = spawn_monitor(&f.handler, &f.monitor_config())
        .await
        .expect_err("create must fail");
    match &err {
        OciError::Create { id, stderr, .. } => {
            assert_eq!(id, &f.id);
            assert!(stderr.contains("no such file"), "{stderr}");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(f.handler.state(&f.id).await.expect("state").is_none());
    assert_eq!(crius_oci::monitor_alive(&f.state_dir()), None);
}

#[tokio::test]
async fn exec_sync_output_exit_code_and_timeout() {
    let f = Fixture::new("exec", &["sleep", "1000"], false, |_| {});
    let mon = spawn_monitor(&f.handler, &f.monitor_config())
        .await
        .expect("spawn");
    f.handler.start(&f.id).await.expect("start");
    let process = |args: &[&str]| {
        let mut p = oci_spec::runtime::Process::default();
        p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        p.set_env(Some(vec!["PATH=/bin".into()]));
        p.set_cwd("/".into());
        p
    };

    let out = f
        .handler
        .exec_sync(
            &f.id,
            &process(&["sh", "-c", "echo out; echo err >&2; exit 5"]),
            Some(Duration::from_secs(10)),
            1 << 20,
        )
        .await
        .expect("exec_sync");
    assert_eq!(
        (
            out.stdout.as_slice(),
            out.stderr.as_slice(),
            out.exit_code,
            out.timed_out
        ),
        (&b"out\n"[..], &b"err\n"[..], 5, false)
    );

    let out = f
        .handler
        .exec_sync(
            &f.id,
            &process(&["sh", "-c", "yes 0123456789 | head -n 1000"]),
            None,
            100,
        )
        .await
        .expect("exec_sync capped");
    assert_eq!(out.stdout.len(), 100);
    assert_eq!(out.exit_code, 0);

    let t0 = Instant::now();
    let out = f
        .handler
        .exec_sync(
            &f.id,
            &process(&["sleep", "100"]),
            Some(Duration::from_millis(500)),
            1024,
        )
        .await
        .expect("exec_sync timeout");
    assert!(out.timed_out);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    // the exec'd sleep was killed inside the container: only pid 1's sleep is left
    let ps = f
        .handler
        .exec_sync(
            &f.id,
            &process(&["ps"]),
            Some(Duration::from_secs(10)),
            1 << 16,
        )
        .await
        .expect("ps");
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        !ps.contains("sleep 100\n") && !ps.contains("sleep 100 "),
        "{ps}"
    );

    let err = f
        .handler
        .exec_sync(
            &f.id,
            &process(&["/no/such"]),
            Some(Duration::from_secs(10)),
            1024,
        )
        .await
        .expect_err("missing executable");
    assert!(matches!(err, OciError::Exec { .. }), "{err}");

    f.handler
        .kill(&f.id, libc::SIGKILL, false)
        .await
        .expect("kill");
    wait_monitor(mon.monitor_pid).await;
    f.handler.delete(&f.id, false).await.expect("delete");
}

/// Prints (does not assert) what the monitor adds on top of a bare `runc create`.
#[tokio::test]
async fn create_overhead_figures() {
    const N: u32 = 5;
    let mut via_monitor = Duration::ZERO;
    let mut bare = Duration::ZERO;
    for i in 0..N {
        let f = Fixture::new(&format!("fig{i}"), &["true"], false, |_| {});
        let t = Instant::now();
        let mon = spawn_monitor(&f.handler, &f.monitor_config())
            .await
            .expect("spawn");
        via_monitor += t.elapsed();
        f.handler.delete(&f.id, true).await.expect("delete");
        wait_monitor(mon.monitor_pid).await;

        let bundle = f.dir.path().join("bundle");
        let t = Instant::now();
        let st = tokio::process::Command::new(RUNC)
            .arg("--root")
            .arg(&f.handler.root)
            .args(["create", "--bundle"])
            .arg(&bundle)
            .arg(&f.id)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .expect("runc create");
        bare += t.elapsed();
        assert!(st.success());
        f.handler.delete(&f.id, true).await.expect("delete");
    }
    eprintln!(
        "create: via spawn_monitor {:?} mean, bare runc create {:?} mean (n={N})",
        via_monitor / N,
        bare / N
    );
}
