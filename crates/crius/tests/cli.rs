//! The `crius` command line: help with defaults, the feature table, and config errors that name the key.

use std::process::Command;

fn crius() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crius"))
}

#[test]
fn daemon_help_documents_every_flag_with_its_default() {
    let out = crius().args(["daemon", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, default) in [
        ("--root", "/var/lib/crius"),
        ("--state", "/run/crius"),
        ("--listen", "/run/crius/crius.sock"),
        ("--registry-config-dir", "/etc/crius/certs.d"),
        ("--cni-conf-dir", "/etc/cni/net.d"),
        ("--cni-bin-dir", "/opt/cni/bin,/usr/lib/cni"),
        ("--default-runtime", "runc"),
        ("--log-level", "info"),
        ("--streaming-address", "127.0.0.1:0"),
        ("--cdi-spec-dirs", "/etc/cdi,/var/run/cdi"),
        ("--criu-path", "[default: criu]"),
        ("--metrics-address", "[default: off]"),
        ("--tracing-endpoint", "[default: off]"),
        ("--config", "/etc/crius/crius.toml"),
    ] {
        assert!(help.contains(flag), "{flag} missing from help:\n{help}");
        assert!(
            help.contains(default),
            "default {default} of {flag} missing from help:\n{help}"
        );
    }
}

#[test]
fn features_prints_the_table() {
    let out = crius()
        .args(["features", "--config", "/nonexistent/crius.toml"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an explicit missing config file is an error"
    );
    let out = crius().args(["features"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.lines().any(|l| l.starts_with("CRIListStreaming")
            && l.contains("alpha")
            && l.contains("false")),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.starts_with("ContainerStopSignals")
            && l.contains("beta")
            && l.contains("true")),
        "{table}"
    );
    let out = crius().args(["features", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.as_array().unwrap().len() >= 20);
}

fn daemon_with_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("crius.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = crius()
        .args(["daemon", "--config"])
        .arg(&cfg)
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--state")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bad_config_exits_non_zero_naming_the_key() {
    for (text, key) in [
        ("default_runtime = \"kata\"\n", "default_runtime"),
        ("cni_conf_dir = \"relative/dir\"\n", "cni_conf_dir"),
        ("no_such_key = 1\n", "no_such_key"),
        (
            "[feature_gates]\nContainerStopSignals = true\n",
            "feature_gates.ContainerStopSignals",
        ),
        (
            "[feature_gates]\nMadeUpGate = true\n",
            "feature_gates.MadeUpGate",
        ),
        ("log_level = \"crius=loud\"\n", "log_level"),
    ] {
        let (ok, err) = daemon_with_config(text);
        assert!(!ok, "{text:?} was accepted");
        assert!(
            err.contains(key),
            "{text:?}: error does not name {key}: {err}"
        );
    }
}
