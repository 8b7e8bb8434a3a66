//! Shared fixtures for the integration tests: real runc, a busybox rootfs, the real monitor.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crius_oci::{Handler, HandlerStatus, MonitorConfig};

pub const RUNC: &str = "/usr/sbin/runc";

/// The monitor binary built from this workspace (`cargo build -p crius-monitor` first), or
/// `$CRIUS_MONITOR`.
pub fn monitor_binary() -> PathBuf {
    if let Ok(p) = std::env::var("CRIUS_MONITOR") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/crius-monitor");
    assert!(
        p.is_file(),
        "{} missing: run `cargo build -p crius-monitor` first",
        p.display()
    );
    p
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub id: String,
    pub handler: Handler,
}

impl Fixture {
    /// A bundle whose process runs `args`; `edit` may change the config further.
    pub fn new(
        name: &str,
        args: &[&str],
        terminal: bool,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("crius-oci-t-")
            .tempdir()
            .expect("tempdir");
        let id = format!("crius-t-{name}-{}", std::process::id());
        let rootfs = dir.path().join("bundle/rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir rootfs");
        for d in ["proc", "dev", "sys", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("mkdir");
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
        for applet in [
            "sh", "echo", "sleep", "cat", "true", "stty", "tail", "printf", "dd", "yes", "head",
            "ps", "kill",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .expect("symlink");
        }
        let bundle = dir.path().join("bundle");
        let st = std::process::Command::new(RUNC)
            .arg("spec")
            .current_dir(&bundle)
            .status()
            .expect("runc spec");
        assert!(st.success());
        let cfg_path = bundle.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cfg_path).expect("read config"))
                .expect("parse config");
        cfg["process"]["args"] = serde_json::json!(args);
        cfg["process"]["terminal"] = serde_json::json!(terminal);
        cfg["process"]["env"] = serde_json::json!(["PATH=/bin", "TERM=xterm"]);
        cfg["root"]["readonly"] = serde_json::json!(false);
        cfg["linux"]["cgroupsPath"] = serde_json::json!(format!("/crius-test/{id}"));
        edit(&mut cfg);
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).expect("encode"))
            .expect("write config");
        std::fs::create_dir_all(dir.path().join("state")).expect("mkdir state");
        let handler = Handler {
            name: "runc".into(),
            binary: RUNC.into(),
            root: dir.path().join("runc-root"),
            status: HandlerStatus::Available {
                version: "test".into(),
            },
            features: None,
            systemd_cgroup: false,
            global_args: Vec::new(),
            kind: crius_oci::HandlerKind::Oci,
        };
        Fixture { dir, id, handler }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("logs/ctr.log")
    }

    pub fn monitor_config(&self) -> MonitorConfig {
        std::fs::create_dir_all(self.dir.path().join("logs")).expect("mkdir logs");
        MonitorConfig {
            monitor_binary: monitor_binary(),
            id: self.id.clone(),
            bundle: self.dir.path().join("bundle"),
            state_dir: self.state_dir(),
            log_path: Some(self.log_path()),
            log_dir: None,
            tty: false,
            stdin: false,
            stdin_once: false,
            oom_file: None,
            create_timeout: Duration::from_secs(30),
            join_cgroups: Vec::new(),
            start_by_monitor: false,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Polls the log until `pred` holds (10 s max).
    pub async fn wait_log(&self, pred: impl Fn(&str) -> bool) -> String {
        wait_file(&self.log_path(), pred).await
    }
}

pub async fn wait_file(path: &Path, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if pred(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting on {}; content: {text:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Best effort: never leave a container or cgroup behind, whatever the test did.
        let _ = std::process::Command::new(RUNC)
            .arg("--root")
            .arg(&self.handler.root)
            .args(["delete", "--force", &self.id])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Parses `<ts> <stream> <tag> <content>` records.
pub fn records(log: &str) -> Vec<(String, String, String, String)> {
    log.lines()
        .map(|l| {
            let mut it = l.splitn(4, ' ');
            let ts = it.next().unwrap_or_default().to_string();
            let stream = it.next().unwrap_or_default().to_string();
            let tag = it.next().unwrap_or_default().to_string();
            let content = it.next().unwrap_or_default().to_string();
            (ts, stream, tag, content)
        })
        .collect()
}

pub async fn wait_monitor(pid: i32) {
    tokio::time::timeout(Duration::from_secs(15), crius_oci::wait_pid_exit(pid))
        .await
        .expect("monitor did not exit in time")
        .expect("wait_pid_exit");
}

pub fn ppid(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect(")") + 2..];
    after
        .split(' ')
        .nth(1)
        .expect("ppid")
        .parse()
        .expect("ppid number")
}

pub fn vm_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}
