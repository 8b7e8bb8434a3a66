//! What a node operator sees: the printed default config is a config the daemon accepts, the log has no
//! colour codes off a terminal and can be JSON, `crictl info` gets JSON objects, a bare streaming IP works.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cri_api::v1 as cri;

fn crius() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crius"))
}

#[tokio::test]
async fn the_default_config_starts_the_daemon_unchanged() {
    let out = crius().args(["config", "default"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("crius-e2e-defcfg-")
        .tempdir_in("/tmp")
        .unwrap();
    let file = dir.path().join("crius.toml");
    std::fs::write(&file, &text).unwrap();
    // Only the directories move (flags); the file is used as printed.
    let state = dir.path().join("state");
    let net = dir.path().join("net.d");
    std::fs::create_dir_all(&net).unwrap();
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut child = crius()
        .arg("daemon")
        .arg("--config")
        .arg(&file)
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--state")
        .arg(&state)
        .arg("--cni-conf-dir")
        .arg(&net)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let sock = state.join("crius.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    let version = loop {
        if let Ok(ch) = crius::client::connect(&sock).await {
            let mut rt = cri::runtime_service_client::RuntimeServiceClient::new(ch);
            if let Ok(v) = rt.version(cri::VersionRequest::default()).await {
                break v.into_inner();
            }
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "daemon exited ({st}) with the printed default config:\n{}\n{text}",
                std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "daemon did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(version.runtime_name, "crius");
    // SAFETY: kill(2) on the pid of the child this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn text_logs_carry_no_colour_codes_off_a_terminal() {
    let d = common::Daemon::start().await;
    let log = d.log();
    assert!(log.contains("serving the CRI"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escape in a log file:\n{log}");
    d.shutdown().await;
}

#[tokio::test]
async fn json_logs_and_a_bare_streaming_ip() {
    let mut d = common::Daemon::start_with(common::Options {
        extra_config: "log_format = \"json\"\nstreaming_address = \"127.0.0.1\"\n".into(),
        ..Default::default()
    })
    .await;
    let info =
        d.rt.status(cri::StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner()
            .info;
    let streaming: serde_json::Value = serde_json::from_str(&info["streamingServer"]).unwrap();
    let url = streaming["url"].as_str().unwrap().to_string();
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    assert!(url.starts_with("http://127.0.0.1:") && port != 0, "{url}");
    let log = d.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
    }
    assert!(lines.iter().any(|l| l.contains("serving the CRI")), "{log}");
    d.shutdown().await;
}

/// crictl (cri-tools 1.36, unpacked by scripts/critest.sh) shows info values that are JSON objects as
/// objects and anything else as a string.
#[tokio::test]
async fn crictl_info_shows_json_objects() {
    let crictl = common::test_dir().join("cri-tools/crictl");
    if !crictl.exists() {
        eprintln!(
            "SKIPPED: {} absent (scripts/critest.sh unpacks it)",
            crictl.display()
        );
        return;
    }
    let d = common::Daemon::start().await;
    let out = Command::new(&crictl)
        .arg("--runtime-endpoint")
        .arg(format!("unix://{}", d.socket.display()))
        .arg("info")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (k, v) in info.as_object().unwrap() {
        assert!(v.is_object(), "crictl info key {k} is not an object: {v}");
    }
    assert_eq!(info["cni"]["config"]["plugins"][0], "bridge", "{info}");
    assert!(
        info["criusFeatures"]["CRIListStreaming"].is_object(),
        "{info}"
    );
    d.shutdown().await;
}
