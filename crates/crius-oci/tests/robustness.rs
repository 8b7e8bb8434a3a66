//! The monitor outliving its spawner, create timeouts, deep state dirs, resource updates.
//! Real runc and the real monitor; needs root.

mod common;

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::*;
use crius_oci::{attach, monitor_alive, read_exit, reopen_log, spawn_monitor, OciError};

#[tokio::test]
async fn monitor_survives_sigkill_of_its_spawners_process_group() {
    let f = Fixture::new(
        "orphan",
        &["sh", "-c", "echo started; exit 6"],
        false,
        |_| {},
    );
    let cfg = f.monitor_config();
    // A stand-in daemon: a shell in its own process group that starts the monitor and lingers.
    let script = format!(
        "'{}' --id '{}' --bundle '{}' --state-dir '{}' --runtime {} --runtime-root '{}' --log-path '{}'; sleep 100",
        cfg.monitor_binary.display(),
        f.id,
        cfg.bundle.display(),
        cfg.state_dir.display(),
        RUNC,
        f.handler.root.display(),
        f.log_path().display()
    );
    let mut daemon = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .process_group(0)
        .spawn()
        .expect("sh");
    let pgid = daemon.id() as i32;
    wait_file(&cfg.state_dir.join("container.pid"), |t| {
        !t.trim().is_empty()
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mon = loop {
        if let Some(pid) = monitor_alive(&cfg.state_dir) {
            break pid;
        }
        assert!(Instant::now() < deadline, "monitor did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = daemon.wait();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        monitor_alive(&cfg.state_dir),
        Some(mon),
        "monitor died with its spawner"
    );
    // its own session, so terminal hangups and group signals of the daemon miss it
    let stat = std::fs::read_to_string(format!("/proc/{mon}/stat")).expect("stat");
    let sid: i32 = stat[stat.rfind(')').expect(")") + 2..]
        .split(' ')
        .nth(3)
        .expect("sid")
        .parse()
        .expect("sid");
    assert_eq!(sid, mon);
    // and it still does its job for the restarted daemon
    reopen_log(&cfg.state_dir).await.expect("reopen");
    f.handler.start(&f.id).await.expect("start");
    wait_monitor(mon).await;
    assert_eq!(
        read_exit(&cfg.state_dir)
            .expect("read")
            .expect("exit")
            .exit_code,
        6
    );
    assert!(f.log().contains(" stdout F started\n"));
}

#[tokio::test]
async fn create_timeout_kills_and_cleans_up() {
    // a createRuntime hook that hangs makes `runc create` hang
    let f = Fixture::new("slowcreate", &["true"], false, |c| {
        c["hooks"] = serde_json::json!({"createRuntime": [{"path": "/bin/busybox", "args": ["busybox", "sleep", "30"]}]});
    });
    let mut cfg = f.monitor_config();
    cfg.create_timeout = Duration::from_secs(1);
    let t0 = Instant::now();
    let err = spawn_monitor(&f.handler, &cfg)
        .await
        .expect_err("must time out");
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t0.elapsed()
    );
    match &err {
        OciError::Create { stderr, .. } => assert!(stderr.contains("timed out"), "{stderr}"),
        other => panic!("unexpected {other}"),
    }
    assert!(f.handler.state(&f.id).await.expect("state").is_none());
    assert_eq!(monitor_alive(&cfg.state_dir), None);
    // nor its cgroup
    let cg = format!("/sys/fs/cgroup/memory/crius-test/{}", f.id);
    assert!(!std::path::Path::new(&cg).exists(), "{cg} left behind");
    // no hook or runc process of this container survives
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            assert!(!cmd.contains(&f.id), "left behind: {cmd}");
            assert!(
                !(cmd.contains("sleep 30") && cmd.contains("busybox")),
                "hook left behind: {cmd}"
            );
        }
    }
}

#[tokio::test]
async fn deep_state_dir_beyond_sun_path_limit() {
    let f = Fixture::new("deep", &["cat"], false, |_| {});
    let mut cfg = f.monitor_config();
    cfg.state_dir = f
        .dir
        .path()
        .join(format!("{}/{}", "d".repeat(60), "e".repeat(64)));
    assert!(cfg.state_dir.join("attach.sock").as_os_str().len() > 108);
    cfg.stdin = true;
    cfg.stdin_once = true;
    let mon = spawn_monitor(&f.handler, &cfg).await.expect("spawn");
    f.handler.start(&f.id).await.expect("start");
    let mut a = attach(&cfg.state_dir).await.expect("attach via long path");
    a.write_stdin(b"deep\n").await.expect("stdin");
    let fr = tokio::time::timeout(Duration::from_secs(10), a.read_frame())
        .await
        .expect("in time")
        .expect("frame")
        .expect("some");
    assert_eq!(fr.data, b"deep\n");
    reopen_log(&cfg.state_dir)
        .await
        .expect("reopen via long path");
    a.close_stdin().await.expect("eof");
    wait_monitor(mon.monitor_pid).await;
    assert_eq!(
        read_exit(&cfg.state_dir)
            .expect("read")
            .expect("exit")
            .exit_code,
        0
    );
}

#[tokio::test]
async fn update_changes_the_memory_limit() {
    let f = Fixture::new("update", &["sleep", "1000"], false, |c| {
        c["linux"]["resources"]["memory"] = serde_json::json!({"limit": 64 * 1024 * 1024});
    });
    let mon = spawn_monitor(&f.handler, &f.monitor_config())
        .await
        .expect("spawn");
    f.handler.start(&f.id).await.expect("start");
    let limit_file = format!(
        "/sys/fs/cgroup/memory/crius-test/{}/memory.limit_in_bytes",
        f.id
    );
    assert_eq!(
        std::fs::read_to_string(&limit_file).expect("limit").trim(),
        (64 * 1024 * 1024).to_string()
    );
    let mut mem = oci_spec::runtime::LinuxMemory::default();
    mem.set_limit(Some(32 * 1024 * 1024));
    let mut res = oci_spec::runtime::LinuxResources::default();
    res.set_memory(Some(mem));
    f.handler.update(&f.id, &res).await.expect("update");
    assert_eq!(
        std::fs::read_to_string(&limit_file).expect("limit").trim(),
        (32 * 1024 * 1024).to_string()
    );
    f.handler
        .kill(&f.id, libc::SIGKILL, false)
        .await
        .expect("kill");
    wait_monitor(mon.monitor_pid).await;
    let err = f
        .handler
        .update(&f.id, &res)
        .await
        .expect_err("update of a stopped container");
    assert!(
        matches!(err, OciError::Runtime { op: "update", .. }),
        "{err}"
    );
}

#[tokio::test]
async fn duplicate_create_does_not_harm_the_existing_container() {
    let f = Fixture::new("dup", &["sleep", "1000"], false, |_| {});
    let mon = spawn_monitor(&f.handler, &f.monitor_config())
        .await
        .expect("spawn");
    let mut again = f.monitor_config();
    again.state_dir = f.dir.path().join("state2");
    let err = spawn_monitor(&f.handler, &again)
        .await
        .expect_err("same id twice");
    assert!(err.to_string().contains("exists"), "{err}");
    // the first one is untouched and still starts
    assert_eq!(monitor_alive(&f.state_dir()), Some(mon.monitor_pid));
    f.handler.start(&f.id).await.expect("start the original");
    let st = f
        .handler
        .state(&f.id)
        .await
        .expect("state")
        .expect("exists");
    assert_eq!(st.status, "running");
    f.handler
        .kill(&f.id, libc::SIGKILL, false)
        .await
        .expect("kill");
    wait_monitor(mon.monitor_pid).await;
}
