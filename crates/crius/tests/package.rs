//! The .deb: built by packaging/build-deb.sh from the test build's binaries, unpacked into a scratch root
//! with dpkg-deb, and checked: files, control fields, the unit's keys, the packaged config, and that the
//! packaged binary runs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_deb_holds_binaries_unit_config_and_dependencies() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_crius")).parent().unwrap();
    for b in ["crius-monitor", "crius-pause"] {
        assert!(
            bin_dir.join(b).exists(),
            "{b} missing: run `cargo build --workspace --bins` first"
        );
    }
    let tmp = tempfile::Builder::new()
        .prefix("crius-deb-")
        .tempdir_in("/tmp")
        .unwrap();
    let out = run(Command::new(repo().join("packaging/build-deb.sh"))
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--out")
        .arg(tmp.path())
        .args(["--compress", "gzip"]));
    let deb = PathBuf::from(out.trim());
    assert!(deb.exists(), "{out}");

    let field = |name: &str| run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name));
    assert_eq!(field("Package").trim(), "crius");
    assert_eq!(field("Version").trim(), env!("CARGO_PKG_VERSION"));
    let depends = field("Depends");
    assert!(depends.contains("runc | crun"), "{depends}");
    assert!(depends.contains("containernetworking-plugins"), "{depends}");
    let conffiles = run(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/crius/crius.toml");

    let root = tmp.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    for f in [
        "usr/bin/crius",
        "usr/bin/crius-monitor",
        "usr/bin/crius-pause",
        "lib/systemd/system/crius.service",
        "etc/crius/crius.toml",
    ] {
        assert!(root.join(f).is_file(), "{f} missing from the package");
    }
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/crius.service")).unwrap();
    let keys: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let has = |k: &str, v: &str| keys.iter().any(|(kk, vv)| *kk == k && vv.contains(v));
    for (k, v) in [
        ("Delegate", "yes"),
        ("KillMode", "process"),
        ("OOMScoreAdjust", "-999"),
        ("LimitNOFILE", "1048576"),
        ("After", "network-online.target"),
        ("ExecStart", "/usr/bin/crius daemon"),
        ("ExecReload", "-HUP"),
    ] {
        assert!(has(k, v), "unit lacks {k}={v}:\n{unit}");
    }

    // The packaged binary runs, and the packaged config is the default one and valid.
    let crius = root.join("usr/bin/crius");
    let version = run(Command::new(&crius).arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let conf = root.join("etc/crius/crius.toml");
    let table = run(Command::new(&crius)
        .arg("features")
        .arg("--config")
        .arg(&conf));
    assert!(table.contains("AppArmor"), "{table}");
    let default = run(Command::new(&crius).args(["config", "default"]));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), default);
}
