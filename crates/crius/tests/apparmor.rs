//! AppArmor: the profile `crius apparmor-profile` prints compiles with the real `apparmor_parser`, and the
//! daemon's Status reports AppArmor as the host has it.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use cri_api::v1 as cri;

const PARSER: &str = "/usr/sbin/apparmor_parser";

/// Compiles `profile` with `apparmor_parser -Q -K` (parse and compile, no kernel, no cache).
fn compile(profile: &str) -> std::process::Output {
    let mut child = Command::new(PARSER)
        .args(["-Q", "-K"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn apparmor_parser");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(profile.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_default_profile_compiles_with_apparmor_parser() {
    let out = Command::new(env!("CARGO_BIN_EXE_crius"))
        .arg("apparmor-profile")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let profile = String::from_utf8(out.stdout).unwrap();
    assert!(profile.contains("profile crius-default "), "{profile}");
    if !Path::new(PARSER).exists() {
        eprintln!(
            "SKIPPED: {PARSER} is absent (Debian package `apparmor`); the profile was not compiled"
        );
        return;
    }
    let out = compile(&profile);
    assert!(
        out.status.success(),
        "apparmor_parser rejected the profile: {}\n{profile}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The parser does check: the same profile with one broken rule is refused.
    let broken = profile.replace("  capability,", "  capability no_such_cap,");
    assert!(
        !compile(&broken).status.success(),
        "apparmor_parser accepted a broken rule"
    );
}

#[tokio::test]
async fn status_reports_apparmor_as_the_host_has_it() {
    let mut d = common::Daemon::start().await;
    let info =
        d.rt.status(cri::StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner()
            .info;
    let aa: serde_json::Value =
        serde_json::from_str(info.get("apparmor").expect("apparmor key")).unwrap();
    let on = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false)
        && Path::new("/sys/kernel/security/apparmor").is_dir();
    assert_eq!(aa["enabled"], on, "{aa}");
    if on {
        assert_eq!(aa["defaultProfile"], "crius-default", "{aa}");
    } else {
        // Behaviour without AppArmor is unchanged: RuntimeDefault runs the container unconfined.
        d.pull(&common::image("busybox:latest")).await;
        let (pod, pod_cfg) = d.run_pod("aa", true).await;
        let mut cfg =
            common::container_config("c", &common::image("busybox:latest"), &["sleep", "30"]);
        cfg.linux
            .get_or_insert_with(Default::default)
            .security_context
            .get_or_insert_with(Default::default)
            .apparmor = Some(cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        });
        let id = d.create(&pod, &pod_cfg, cfg).await.unwrap();
        d.start_ctr(&id).await;
        assert_eq!(
            d.status(&id).await.state,
            cri::ContainerState::ContainerRunning as i32
        );
        let spec_path = d.dir.join("state/containers").join(&id).join("config.json");
        let spec = std::fs::read_to_string(&spec_path).unwrap();
        assert!(!spec.contains("apparmorProfile"), "{spec}");
    }
    d.cleanup().await;
    d.shutdown().await;
}
