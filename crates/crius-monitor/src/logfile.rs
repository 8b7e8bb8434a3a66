//! Opening the container's CRI log file without trusting the log directory's contents. Whoever can
//! write into the pod's log directory (a container with it mounted, a log shipper) could plant a
//! symlink, FIFO or hard link where the log goes, and the monitor runs as root: so every component
//! below the pod's log directory is walked with `O_NOFOLLOW | O_DIRECTORY` (the same guarantee as
//! openat2's RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), the file itself is opened with `O_NOFOLLOW` and
//! `O_NONBLOCK` (a FIFO cannot block us) and must be a regular file with a single link.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in log path"))
}

fn openat(
    dir: RawFd,
    name: &CString,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    // SAFETY: name is a valid C string; the returned fd is owned by the OwnedFd below.
    let fd = cvt(unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: fd was just returned by openat and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn refuse(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why)
}

/// Opens (creating) `path` for appending, resolved beneath `base` (the pod's log directory; created if
/// missing, as the kubelet's own dir it is trusted). Missing dirs between are created 0755.
pub fn open_beneath(base: &Path, path: &Path) -> io::Result<File> {
    let rel = path.strip_prefix(base).map_err(|_| {
        refuse(format!(
            "log path {} is not below the log directory {}",
            path.display(),
            base.display()
        ))
    })?;
    let mut comps = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => comps.push(n.as_bytes().to_vec()),
            Component::CurDir => {}
            _ => {
                return Err(refuse(format!(
                    "log path {} leaves its directory",
                    path.display()
                )))
            }
        }
    }
    let Some(name) = comps.pop() else {
        return Err(refuse(format!("log path {} names no file", path.display())));
    };
    std::fs::create_dir_all(base)?;
    let b = cstr(base.as_os_str().as_bytes())?;
    let mut dir = openat(libc::AT_FDCWD, &b, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    for c in &comps {
        let n = cstr(c)?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        dir = match openat(dir.as_raw_fd(), &n, flags, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // SAFETY: valid dir fd and C string.
                match cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), n.as_ptr(), 0o755) }) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                openat(dir.as_raw_fd(), &n, flags, 0)?
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                return Err(refuse(format!(
                    "{:?} in log path {} is a symlink or not a directory",
                    String::from_utf8_lossy(c),
                    path.display()
                )))
            }
            Err(e) => return Err(e),
        };
    }
    let n = cstr(&name)?;
    let flags =
        libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let fd = openat(dir.as_raw_fd(), &n, flags, 0o640).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            refuse(format!("log file {} is a symlink", path.display()))
        } else {
            e
        }
    })?;
    // SAFETY: zeroed stat is a valid out-parameter; fd is open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and pointer.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(refuse(format!(
            "log file {} is not a regular file",
            path.display()
        )));
    }
    if st.st_nlink > 1 {
        return Err(refuse(format!(
            "log file {} has {} hard links",
            path.display(),
            st.st_nlink
        )));
    }
    // Back to blocking writes: O_NONBLOCK was only for the open.
    // SAFETY: valid fd.
    let fl = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: valid fd.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK) })?;
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn creates_parents_and_appends() {
        let t = tempfile_dir();
        let base = t.join("pod");
        let p = base.join("c/0.log");
        open_beneath(&base, &p).unwrap().write_all(b"a").unwrap();
        open_beneath(&base, &p).unwrap().write_all(b"b").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"ab");
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn planted_symlinks_fifos_and_hard_links_are_refused() {
        let t = tempfile_dir();
        let base = t.join("pod");
        std::fs::create_dir_all(base.join("c")).unwrap();
        let victim = t.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        // The file itself a symlink.
        std::os::unix::fs::symlink(&victim, base.join("c/0.log")).unwrap();
        assert!(open_beneath(&base, &base.join("c/0.log")).is_err());
        // A parent dir a symlink.
        std::os::unix::fs::symlink(&t, base.join("d")).unwrap();
        assert!(open_beneath(&base, &base.join("d/victim")).is_err());
        // A FIFO (would block a plain open for writing).
        let fifo = cstr(base.join("c/1.log").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o666) }, 0);
        assert!(open_beneath(&base, &base.join("c/1.log")).is_err());
        // A hard link to a file elsewhere.
        std::fs::hard_link(&victim, base.join("c/2.log")).unwrap();
        assert!(open_beneath(&base, &base.join("c/2.log")).is_err());
        // Paths outside the base.
        assert!(open_beneath(&base, &t.join("elsewhere.log")).is_err());
        assert!(open_beneath(&base, &base.join("c/../../x.log")).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        std::fs::remove_dir_all(&t).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "crius-monitor-logfile-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
