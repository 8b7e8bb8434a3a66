//! User and group resolution against an image rootfs (`/etc/passwd`, `/etc/group`), and safe
//! reading of files inside an untrusted rootfs.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::SpecError;

/// The numeric identity a container process runs as.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// The primary gid first, then every group of `/etc/group` that lists the user by name
    /// (deduplicated). The primary gid is included so that a process which calls `setgroups`
    /// itself cannot lose it (the same choice containerd made after CVE-2023-25173).
    pub additional_gids: Vec<u32>,
    /// The user's home from `/etc/passwd`, or `/` when the user has no entry.
    pub home: String,
    /// The user name when one is known (from the request or from `/etc/passwd`).
    pub name: Option<String>,
}

// Same bound as the kernel's for nested symlinks (MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;
// /etc/passwd and /etc/group of real images are tiny; a huge one is an attack on the daemon.
const MAX_DB_BYTES: u64 = 16 * 1024 * 1024;

/// Resolves `path` (interpreted as an absolute path inside the container) to a host path
/// under `rootfs`, following symlinks as if `rootfs` were `/`: an absolute link target
/// restarts at `rootfs`, and `..` never climbs above it. The result may not exist.
pub fn resolve_in_rootfs(rootfs: &Path, path: &Path) -> Result<PathBuf, SpecError> {
    let mut pending: Vec<OsString> = components_reversed(path);
    let mut resolved = PathBuf::new(); // relative to rootfs
    let mut links = 0usize;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let host = rootfs.join(&candidate);
        match std::fs::symlink_metadata(&host) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(SpecError::Io {
                        path: host,
                        source: io::Error::from_raw_os_error(libc::ELOOP),
                    });
                }
                let target = std::fs::read_link(&host).map_err(|source| SpecError::Io {
                    path: host.clone(),
                    source,
                })?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                pending.extend(components_reversed(&target));
            }
            Ok(_) => resolved = candidate,
            Err(e) if e.kind() == io::ErrorKind::NotFound => resolved = candidate,
            Err(source) => return Err(SpecError::Io { path: host, source }),
        }
    }
    Ok(rootfs.join(resolved))
}

fn components_reversed(path: &Path) -> Vec<OsString> {
    let mut parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    parts.reverse();
    parts
}

/// Reads a file of the rootfs without ever leaving it; `Ok(None)` when it does not exist.
///
/// The path is resolved link by link and then opened with `O_NOFOLLOW`; a swap of an
/// intermediate directory between the two steps is not defended against, which is fine as
/// long as nothing runs in the rootfs yet (CreateContainer happens before the container runs).
pub fn read_rootfs_file(rootfs: &Path, path: &str) -> Result<Option<String>, SpecError> {
    let host = resolve_in_rootfs(rootfs, Path::new(path))?;
    // O_NOFOLLOW: the path was resolved link by link; a link swapped in since then is refused.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&host);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SpecError::Io { path: host, source }),
    };
    let io_err = |source| SpecError::Io {
        path: host.clone(),
        source,
    };
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        // A fifo or device planted as /etc/passwd must not block or feed the daemon.
        return Err(io_err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        )));
    }
    let mut text = String::new();
    File::take(file, MAX_DB_BYTES)
        .read_to_string(&mut text)
        .map_err(io_err)?;
    Ok(Some(text))
}

#[derive(Debug, Clone)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Debug, Clone)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].trim().parse().ok()?,
                gid: f[3].trim().parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn user_err(user: &str, reason: impl Into<String>) -> SpecError {
    SpecError::User {
        user: user.to_string(),
        reason: reason.into(),
    }
}

/// Resolves an image/CRI user string against the rootfs databases.
///
/// Accepted forms: `""` (root), `name`, `uid`, `name:group`, `uid:gid`, `name:gid`, `uid:group`.
/// A numeric uid without a passwd entry is accepted with gid 0 and home `/` (as runc and
/// containerd do); a name that is not in `/etc/passwd` (or a missing passwd) is an error.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<ResolvedUser, SpecError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if group_part.is_some_and(|g| g.is_empty()) {
        return Err(user_err(user, "empty group after ':'"));
    }
    let passwd = read_rootfs_file(rootfs, "/etc/passwd")?
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|e| e.uid == uid).cloned(),
        Err(_) => Some(
            passwd
                .iter()
                .find(|e| e.name == user_part)
                .cloned()
                .ok_or_else(|| user_err(user, format!("no user {user_part:?} in /etc/passwd")))?,
        ),
    };
    let uid = match &entry {
        Some(e) => e.uid,
        None => user_part
            .parse::<u32>()
            .map_err(|_| user_err(user, "invalid uid"))?,
    };

    // The group database is only needed for a named group or for memberships of a named user.
    let groups = if group_part.is_some() || entry.is_some() {
        read_rootfs_file(rootfs, "/etc/group")?
            .map(|t| parse_group(&t))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let gid = match group_part {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| user_err(user, format!("no group {g:?} in /etc/group")))?,
        },
        None => entry.as_ref().map(|e| e.gid).unwrap_or(0),
    };

    let mut additional_gids = vec![gid];
    if let Some(e) = &entry {
        for g in groups.iter().filter(|g| g.members.contains(&e.name)) {
            if !additional_gids.contains(&g.gid) {
                additional_gids.push(g.gid);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: entry
            .as_ref()
            .map(|e| e.home.clone())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "/".into()),
        name: entry.map(|e| e.name),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n\
             # comment\n\
             daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
             alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
             bob:x:1001:100::/home/bob:/bin/sh\n\
             broken:line\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\n\
             users:x:100:alice\n\
             alice:x:1000:\n\
             wheel:x:10:alice,bob\n\
             audio:x:29: bob \n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn by_name() {
        let r = rootfs();
        let u = resolve_user(r.path(), "alice").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, vec![1000, 100, 10]);
        assert_eq!(u.home, "/home/alice");
        assert_eq!(u.name.as_deref(), Some("alice"));
    }

    #[test]
    fn by_uid_known_and_unknown() {
        let r = rootfs();
        let u = resolve_user(r.path(), "1001").unwrap();
        assert_eq!((u.uid, u.gid), (1001, 100));
        assert_eq!(u.additional_gids, vec![100, 10, 29]);
        let u = resolve_user(r.path(), "4242").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 0));
        assert_eq!(u.additional_gids, vec![0]);
        assert_eq!(u.home, "/");
    }

    #[test]
    fn empty_is_root() {
        let r = rootfs();
        let u = resolve_user(r.path(), "").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
    }

    #[test]
    fn with_group() {
        let r = rootfs();
        let u = resolve_user(r.path(), "alice:wheel").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 10));
        assert_eq!(u.additional_gids, vec![10, 100]);
        let u = resolve_user(r.path(), "4242:4343").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 4343));
        let u = resolve_user(r.path(), "1000:users").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 100));
    }

    #[test]
    fn unknown_names_fail_naming_them() {
        let r = rootfs();
        let err = resolve_user(r.path(), "mallory").unwrap_err();
        assert!(matches!(&err, SpecError::User { user, .. } if user == "mallory"));
        assert!(err.to_string().contains("mallory"), "{err}");
        let err = resolve_user(r.path(), "alice:nogroup").unwrap_err();
        assert!(err.to_string().contains("nogroup"), "{err}");
        assert!(resolve_user(r.path(), "alice:").is_err());
    }

    #[test]
    fn missing_databases() {
        let dir = tempfile::tempdir().unwrap();
        let u = resolve_user(dir.path(), "123:456").unwrap();
        assert_eq!((u.uid, u.gid), (123, 456));
        assert!(matches!(
            resolve_user(dir.path(), "alice"),
            Err(SpecError::User { .. })
        ));
    }

    #[test]
    fn absolute_symlink_stays_inside_rootfs() {
        // An image whose /etc/passwd points at the host's /etc/passwd must read its own copy.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        let r = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(r.path().join("etc")).unwrap();
        let target = outside.path().join("passwd");
        std::os::unix::fs::symlink(&target, r.path().join("etc/passwd")).unwrap();
        // The absolute target is re-rooted: it names <rootfs>/<tmp>/passwd, which does not exist.
        assert!(matches!(
            resolve_user(r.path(), "evil"),
            Err(SpecError::User { .. })
        ));
        // Plant the re-rooted file: that is the one that is read.
        let rerooted = r.path().join(target.strip_prefix("/").unwrap());
        std::fs::create_dir_all(rerooted.parent().unwrap()).unwrap();
        std::fs::write(&rerooted, "inside:x:7:7::/in:/bin/sh\n").unwrap();
        assert_eq!(resolve_user(r.path(), "inside").unwrap().uid, 7);
    }

    #[test]
    fn relative_dotdot_symlink_is_clamped() {
        let base = tempfile::tempdir().unwrap();
        std::fs::write(base.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        let root = base.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("../../../passwd", root.join("etc/passwd")).unwrap();
        // ../../../passwd from /etc clamps to /passwd inside the rootfs, not base/passwd.
        assert_eq!(
            resolve_in_rootfs(&root, Path::new("/etc/passwd")).unwrap(),
            root.join("passwd")
        );
        assert!(resolve_user(&root, "evil").is_err());
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let r = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(r.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", r.path().join("etc/passwd")).unwrap();
        assert!(matches!(
            resolve_user(r.path(), "alice"),
            Err(SpecError::Io { .. })
        ));
    }

    #[test]
    fn fifo_passwd_is_refused_not_blocking() {
        let r = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(r.path().join("etc")).unwrap();
        let p = r.path().join("etc/passwd");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            resolve_user(r.path(), "alice"),
            Err(SpecError::Io { .. })
        ));
    }
}
