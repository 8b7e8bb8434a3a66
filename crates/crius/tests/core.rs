//! E2E: the daemon core under timeouts, cancellation and races (issue 10), against the real daemon,
//! runc and the test registry.

mod common;

use std::time::Duration;

use common::*;
use tonic::Code;

/// `(name, state)` of every process in the container, zombies included (`pgrep`, which critest
/// uses, lists zombies too).
async fn processes(d: &mut Daemon, ctr: &str) -> Vec<(String, String)> {
    let r = d
        .exec(
            ctr,
            &[
                "sh",
                "-c",
                "for p in /proc/[0-9]*; do echo $(cat $p/comm) $(cut -d')' -f2 $p/stat | cut -d' ' -f2); done 2>/dev/null",
            ],
            10,
        )
        .await
        .unwrap_or_else(|e| panic!("listing processes: {e}"));
    String::from_utf8_lossy(&r.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(c, s)| (c.to_string(), s.to_string()))
        .collect()
}

/// critest "runtime should support execSync with timeout", 20 times: right after DeadlineExceeded,
/// the timed-out process is gone, not even a zombie (the container's pid 1 here never reaps). When
/// the process has children, they are killed too; a child its parent did not reap before exiting
/// (the shell here exits as soon as its foreground child dies) is reparented to pid 1 as a zombie,
/// which only the container's init could reap, so for children only live processes count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_timeout_leaves_no_process_behind() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("exec-timeout", true).await;
    let ctr = d
        .run(&pod, &pod_cfg, "main", &["tail", "-f", "/dev/null"])
        .await;
    // 20 rounds of critest's case, then 3 where the exec'd process has children (last, because
    // they may leave zombies behind).
    for round in 0..23 {
        let cmd: &[&str] = if round >= 20 {
            &["sh", "-c", "sleep 4321 & sleep 4322"]
        } else {
            &["sleep", "4321"]
        };
        let t0 = std::time::Instant::now();
        let (c, msg) = code(d.exec(&ctr, cmd, 1).await);
        assert_eq!(c, Code::DeadlineExceeded, "round {round}: {msg}");
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "round {round}: timeout took {:?}",
            t0.elapsed()
        );
        let left = processes(&mut d, &ctr).await;
        let with_children = cmd.len() > 2;
        assert!(
            !left
                .iter()
                .any(|(c, s)| c == "sleep" && (s != "Z" || !with_children)),
            "round {round}: the timed-out exec is still in the container: {left:?}"
        );
    }
    d.shutdown().await;
}
