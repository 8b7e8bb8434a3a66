//! File modes of what crius keeps on disk. Container root filesystems, image snapshots and writable
//! layers hold whatever a container or an image put there — setuid binaries, device nodes — so no
//! unprivileged host user may reach them (containerd CVE-2021-41103 is this class). The root and state
//! dirs stay traversable (0711: the CRI socket lives in the state dir) but not listable; every dir below
//! them that leads to container or image data is 0700; files holding specs, env or network results are
//! 0600. `harden` also tightens installs made by older versions at every start.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::Config;

/// Mode of the root and state dirs: traversable (the socket's parent), not listable, not writable.
pub const TOP_DIR_MODE: u32 = 0o711;
/// Mode of every dir leading to container or image data.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of files holding specs (env, Secret-backed values), metadata or network results.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// The dirs under root and state that lead to container or image data.
pub fn private_dirs(cfg: &Config) -> Vec<PathBuf> {
    vec![
        cfg.state.join("pods"),
        cfg.state.join("containers"),
        cfg.state.join("runtime"),
        cfg.root.join("images"),
        cfg.root.join("cni-cache"),
    ]
}

/// Creates the root, state and private dirs with their modes and tightens what an older install left
/// more open: the top dirs lose group/other read and write, the private dirs become 0700, the store and
/// every bundle's `config.json` 0600.
pub fn harden(cfg: &Config) -> anyhow::Result<()> {
    for (what, dir) in [("root", &cfg.root), ("state", &cfg.state)] {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("create {what} dir {}: {e}", dir.display()))?;
        tighten(dir, TOP_DIR_MODE)?;
    }
    for d in private_dirs(cfg) {
        std::fs::create_dir_all(&d).map_err(|e| anyhow::anyhow!("create {}: {e}", d.display()))?;
        tighten(&d, PRIVATE_DIR_MODE)?;
    }
    let store = cfg.root.join("crius.redb");
    if store.exists() {
        tighten(&store, PRIVATE_FILE_MODE)?;
    }
    let ctrs = cfg.state.join("containers");
    if let Ok(entries) = std::fs::read_dir(&ctrs) {
        for e in entries.flatten() {
            let spec = e.path().join("config.json");
            if spec.exists() {
                tighten(&spec, PRIVATE_FILE_MODE)?;
            }
        }
    }
    Ok(())
}

/// Clears every permission bit of `path` that `max` does not allow (never widens).
pub fn tighten(path: &Path, max: u32) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| anyhow::anyhow!("stat {}: {e}", path.display()))?;
    if meta.file_type().is_symlink() {
        anyhow::bail!("{} is a symlink; refusing to follow it", path.display());
    }
    let mode = meta.permissions().mode() & 0o7777;
    let want = mode & max;
    if want != mode {
        tracing::info!("tightening {} from {mode:o} to {want:o}", path.display());
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(want))
            .map_err(|e| anyhow::anyhow!("chmod {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Writes `data` to `path` readable by root only (created 0600, and chmod'ed if it existed).
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
    f.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn harden_creates_and_tightens_an_old_install() {
        let t = tempfile::tempdir().unwrap();
        let cfg = Config {
            root: t.path().join("root"),
            state: t.path().join("state"),
            ..Config::default()
        };
        // An install made before this module: everything 0755/0644.
        let bundle = cfg.state.join("containers/abc");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::create_dir_all(cfg.root.join("images/snapshots")).unwrap();
        std::fs::write(bundle.join("config.json"), "{}").unwrap();
        std::fs::write(cfg.root.join("crius.redb"), "").unwrap();
        for p in [
            &cfg.root,
            &cfg.state,
            &cfg.state.join("containers"),
            &cfg.root.join("images"),
        ] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        for p in [bundle.join("config.json"), cfg.root.join("crius.redb")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        harden(&cfg).unwrap();
        assert_eq!(mode(&cfg.root), 0o711);
        assert_eq!(mode(&cfg.state), 0o711);
        for d in private_dirs(&cfg) {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        assert_eq!(mode(&bundle.join("config.json")), 0o600);
        assert_eq!(mode(&cfg.root.join("crius.redb")), 0o600);
    }

    #[test]
    fn tighten_never_widens_and_refuses_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, "").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o400)).unwrap();
        tighten(&f, 0o600).unwrap();
        assert_eq!(mode(&f), 0o400);
        std::os::unix::fs::symlink(&f, t.path().join("l")).unwrap();
        assert!(tighten(&t.path().join("l"), 0o600).is_err());
    }

    #[test]
    fn write_private_makes_0600_even_over_an_open_file() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("config.json");
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&f, b"new").unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");
    }
}
