//! Idmapped and recursively read-only mounts made host-side, for runtime handlers that cannot make
//! them (runc < 1.2, crun < 1.9 for idmapped mounts; crun < 1.9 for `rro`).
//!
//! A mount is prepared as a detached copy of the source tree (`open_tree(OPEN_TREE_CLONE |
//! AT_RECURSIVE)`), changed with `mount_setattr` (`MOUNT_ATTR_IDMAP` with a user-namespace fd,
//! and/or `MOUNT_ATTR_RDONLY` with `AT_RECURSIVE`), and attached with `move_mount` under the
//! container's state dir. The OCI spec then names that path as a plain `rbind,ro` or `rbind,rw`
//! source: a bind of an idmapped or read-only mount keeps those attributes. Once the runtime has
//! created the container (its mount namespace holds its own copies), the prepared mounts are
//! detached again, so nothing idmapped stays mounted on the host.
//!
//! Kernel features used: `open_tree`/`move_mount` (5.2), `mount_setattr` with `AT_RECURSIVE` and
//! `MOUNT_ATTR_RDONLY`/`MOUNT_ATTR_IDMAP` (5.12), overlayfs over idmapped lower layers (5.19).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crius_spec::IdMap;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn ctx(what: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// A detached copy of the mount tree at `source` (all submounts included).
fn clone_tree(source: &Path) -> io::Result<OwnedFd> {
    let p = cpath(source)?;
    // SAFETY: valid C string; the returned fd is owned right below.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            p.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint,
        )
    })
    .map_err(|e| ctx("open_tree", source, e))?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sets read-only and/or an idmapping on every mount of a detached tree.
fn set_attrs(tree: &OwnedFd, rdonly: bool, userns: Option<BorrowedFd>) -> io::Result<()> {
    let mut attr = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    if rdonly {
        attr.attr_set |= MOUNT_ATTR_RDONLY;
    }
    if let Some(u) = userns {
        attr.attr_set |= MOUNT_ATTR_IDMAP;
        attr.userns_fd = u.as_raw_fd() as u64;
    }
    // SAFETY: valid fd, empty C string with AT_EMPTY_PATH, and a correctly sized mount_attr.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(|_| ())
}

fn attach(tree: &OwnedFd, target: &Path) -> io::Result<()> {
    let t = cpath(target)?;
    // SAFETY: valid fd and C strings.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(|_| ())
}

/// Mounts at `target` (created, file or dir like the source) a copy of the tree at `source` that is
/// recursively read-only when `rdonly` and idmapped through `userns` when given.
pub fn prepare_tree(
    source: &Path,
    target: &Path,
    rdonly: bool,
    userns: Option<BorrowedFd>,
) -> io::Result<()> {
    let meta = std::fs::metadata(source).map_err(|e| ctx("stat", source, e))?;
    if meta.is_dir() {
        std::fs::create_dir_all(target).map_err(|e| ctx("create", target, e))?;
    } else {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ctx("create", parent, e))?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(target)
            .map_err(|e| ctx("create", target, e))?;
    }
    let tree = clone_tree(source)?;
    set_attrs(&tree, rdonly, userns).map_err(|e| {
        ctx(
            &format!(
                "mount_setattr({}{}) on a copy of",
                if rdonly {
                    "RDONLY|AT_RECURSIVE"
                } else {
                    "AT_RECURSIVE"
                },
                if userns.is_some() { "|IDMAP" } else { "" }
            ),
            source,
            e,
        )
    })?;
    attach(&tree, target).map_err(|e| ctx("move_mount onto", target, e))
}

/// Detaches what [`prepare_tree`] mounted at `target` and removes the mount point (never
/// recursively: a still-mounted tree is left alone rather than emptied). Idempotent.
pub fn release_tree(target: &Path) {
    // Stacked copies are possible after a retried prepare: detach until nothing is mounted.
    for _ in 0..4 {
        if nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
    let res = if target.is_dir() {
        std::fs::remove_dir(target)
    } else {
        std::fs::remove_file(target)
    };
    if let Err(e) = res {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!("remove prepared mount point {}: {e}", target.display());
        }
    }
}

/// Whether this kernel lets crius make recursively read-only copies (mount_setattr, 5.12+):
/// tried on a scratch directory.
pub fn host_rro_supported(scratch: &Path) -> Result<(), String> {
    let src = scratch.join("rro-probe-src");
    let dst = scratch.join("rro-probe-dst");
    std::fs::create_dir_all(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    let res = prepare_tree(&src, &dst, true, None).map_err(|e| e.to_string());
    let ro = res.is_ok()
        && nix::sys::statvfs::statvfs(&dst)
            .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
            .unwrap_or(false);
    release_tree(&dst);
    let _ = std::fs::remove_dir(&src);
    res?;
    if !ro {
        return Err("the prepared copy is not read-only".into());
    }
    Ok(())
}

fn map_text(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.length))
        .collect()
}

/// A child process holding freshly unshared namespaces until it is released.
struct Holder {
    pid: libc::pid_t,
    release: Option<OwnedFd>,
}

impl Holder {
    /// Forks a child that unshares `flags` (a new user namespace first, so it owns the others)
    /// and sets `hostname` in a new UTS namespace.
    fn spawn(flags: libc::c_int, hostname: Option<&str>) -> io::Result<Holder> {
        let host = hostname
            .map(|h| CString::new(h).map_err(|_| io::Error::other("NUL in hostname")))
            .transpose()?;
        let mut status = [0i32; 2];
        let mut rel = [0i32; 2];
        // SAFETY: pipe2 fills the arrays; the fds are owned right below.
        check(unsafe { libc::pipe2(status.as_mut_ptr(), libc::O_CLOEXEC) } as libc::c_long)?;
        // SAFETY: as above.
        let (sr, sw) = unsafe {
            (
                OwnedFd::from_raw_fd(status[0]),
                OwnedFd::from_raw_fd(status[1]),
            )
        };
        // SAFETY: pipe2 fills the array; the fds are owned right below.
        check(unsafe { libc::pipe2(rel.as_mut_ptr(), libc::O_CLOEXEC) } as libc::c_long)?;
        // SAFETY: as above.
        let (rr, rw) = unsafe { (OwnedFd::from_raw_fd(rel[0]), OwnedFd::from_raw_fd(rel[1])) };
        let host_ptr = host.as_ref().map(|h| (h.as_ptr(), h.as_bytes().len()));
        // SAFETY: the child runs only async-signal-safe syscalls (unshare, sethostname, write,
        // read, _exit) on memory prepared before the fork, then exits without unwinding.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: see above; the child never returns into Rust code.
            unsafe {
                // Only the parent may hold the release pipe's write end, or EOF never comes.
                libc::close(rw.as_raw_fd());
                libc::close(sr.as_raw_fd());
                let mut code: u8 = 0;
                if libc::unshare(flags) != 0 {
                    code = (*libc::__errno_location()).clamp(1, 255) as u8;
                } else if let Some((p, n)) = host_ptr {
                    if libc::sethostname(p, n) != 0 {
                        code = (*libc::__errno_location()).clamp(1, 255) as u8;
                    }
                }
                libc::write(sw.as_raw_fd(), &code as *const u8 as *const libc::c_void, 1);
                let mut b = 0u8;
                libc::read(rr.as_raw_fd(), &mut b as *mut u8 as *mut libc::c_void, 1);
                libc::_exit(0);
            }
        }
        drop(sw);
        drop(rr);
        let mut holder = Holder {
            pid,
            release: Some(rw),
        };
        let mut code = [0u8; 1];
        // SAFETY: valid fd and buffer.
        let n = unsafe { libc::read(sr.as_raw_fd(), code.as_mut_ptr() as *mut libc::c_void, 1) };
        if n != 1 {
            holder.finish();
            return Err(io::Error::other("namespace helper died before reporting"));
        }
        if code[0] != 0 {
            holder.finish();
            return Err(io::Error::from_raw_os_error(code[0] as i32));
        }
        Ok(holder)
    }

    fn write_maps(&self, uids: &[IdMap], gids: &[IdMap]) -> io::Result<()> {
        for (file, maps) in [("uid_map", uids), ("gid_map", gids)] {
            let p = PathBuf::from(format!("/proc/{}/{file}", self.pid));
            std::fs::write(&p, map_text(maps)).map_err(|e| ctx("write", &p, e))?;
        }
        Ok(())
    }

    fn ns_path(&self, kind: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{kind}", self.pid))
    }

    /// Lets the child exit and reaps it.
    fn finish(&mut self) {
        if self.release.take().is_some() {
            let mut st = 0;
            // SAFETY: our own child; waitpid with a valid status pointer.
            unsafe { libc::waitpid(self.pid, &mut st, 0) };
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A user namespace with the given mappings, held open by an fd (used to idmap mounts).
pub struct UserNs {
    fd: OwnedFd,
}

impl UserNs {
    pub fn create(uids: &[IdMap], gids: &[IdMap]) -> io::Result<UserNs> {
        let h = Holder::spawn(libc::CLONE_NEWUSER, None)?;
        h.write_maps(uids, gids)?;
        let p = h.ns_path("user");
        let f = std::fs::File::open(&p).map_err(|e| ctx("open", &p, e))?;
        Ok(UserNs { fd: f.into() })
    }

    /// Opens a pinned user namespace.
    pub fn open(pin: &Path) -> io::Result<UserNs> {
        let f = std::fs::File::open(pin).map_err(|e| ctx("open", pin, e))?;
        Ok(UserNs { fd: f.into() })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }
}

/// Pinned namespaces of a pod with its own user namespace: `user` plus those of `want` (net, ipc,
/// uts), all created together so the user namespace owns the others.
pub fn pin_with_userns(
    dir: &Path,
    uids: &[IdMap],
    gids: &[IdMap],
    want: &[&str],
    hostname: &str,
) -> io::Result<Vec<(String, PathBuf)>> {
    let mut flags = libc::CLONE_NEWUSER;
    for w in want {
        flags |= match *w {
            "net" => libc::CLONE_NEWNET,
            "ipc" => libc::CLONE_NEWIPC,
            "uts" => libc::CLONE_NEWUTS,
            other => return Err(io::Error::other(format!("cannot pin namespace {other}"))),
        };
    }
    let host = (want.contains(&"uts") && !hostname.is_empty()).then_some(hostname);
    let h = Holder::spawn(flags, host)?;
    h.write_maps(uids, gids)?;
    let mut done: Vec<(String, PathBuf)> = Vec::new();
    let kinds = std::iter::once("user").chain(want.iter().copied());
    for kind in kinds {
        let target = dir.join(if kind == "user" { "user" } else { kind });
        let res = std::fs::File::create(&target)
            .map_err(|e| ctx("create namespace pin", &target, e))
            .and_then(|_| {
                nix::mount::mount(
                    Some(h.ns_path(kind).as_path()),
                    &target,
                    None::<&str>,
                    nix::mount::MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| ctx("bind namespace onto", &target, e.into()))
            });
        if let Err(e) = res {
            for (_, p) in &done {
                crate::pod::namespaces::unpin_path(p);
            }
            crate::pod::namespaces::unpin_path(&target);
            return Err(e);
        }
        done.push((kind.to_string(), target));
    }
    Ok(done)
}

/// Whether an OCI mount is a bind mount.
fn is_bind(m: &oci_spec::runtime::Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
}

/// A pod's pinned user namespace and its mappings.
#[derive(Debug, Clone)]
pub struct PodUserns {
    pub pin: PathBuf,
    pub uids: Vec<IdMap>,
    pub gids: Vec<IdMap>,
}

impl PodUserns {
    /// Host uid and gid of the pod's root.
    pub fn root(&self) -> (u32, u32) {
        crius_spec::PodUserns {
            uids: self.uids.clone(),
            gids: self.gids.clone(),
        }
        .root()
    }
}

/// What the runtime handler does itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Native {
    pub rro: bool,
    pub idmap: bool,
}

/// Rewrites the bind mounts of `spec` that ask for `rro` or idmappings the handler cannot do into
/// binds of host-side prepared copies under `dir`. Returns the prepared mount points, to be given
/// to [`release`] once the runtime has created the container (or failed to).
pub fn prepare_spec_mounts(
    spec: &mut oci_spec::runtime::Spec,
    dir: &Path,
    native: Native,
    pod_userns: Option<&PodUserns>,
) -> Result<Vec<PathBuf>, String> {
    let mut prepared = Vec::new();
    let Some(mounts) = spec.mounts().clone() else {
        return Ok(prepared);
    };
    let mut out = Vec::with_capacity(mounts.len());
    for (i, mut m) in mounts.into_iter().enumerate() {
        let opts = m.options().clone().unwrap_or_default();
        let want_rro = is_bind(&m) && opts.iter().any(|o| o == "rro") && !native.rro;
        let uids = m.uid_mappings().clone().unwrap_or_default();
        let gids = m.gid_mappings().clone().unwrap_or_default();
        let want_idmap = is_bind(&m) && (!uids.is_empty() || !gids.is_empty()) && !native.idmap;
        if !want_rro && !want_idmap {
            out.push(m);
            continue;
        }
        let source = m.source().clone().unwrap_or_default();
        let target = dir.join("mounts").join(i.to_string());
        let conv = |v: &[oci_spec::runtime::LinuxIdMapping]| -> Vec<IdMap> {
            v.iter()
                .map(|x| IdMap {
                    container_id: x.container_id(),
                    host_id: x.host_id(),
                    length: x.size(),
                })
                .collect()
        };
        let userns = if want_idmap {
            let (u, g) = (conv(&uids), conv(&gids));
            let ns = match pod_userns {
                // The usual case: the volume's mapping is the pod's.
                Some(p) if p.uids == u && p.gids == g => UserNs::open(&p.pin),
                _ => UserNs::create(&u, &g),
            }
            .map_err(|e| {
                format!(
                    "mounts {}: user namespace for the idmapping: {e}",
                    m.destination().display()
                )
            })?;
            Some(ns)
        } else {
            None
        };
        if let Err(e) = prepare_tree(&source, &target, want_rro, userns.as_ref().map(|u| u.fd())) {
            release(&prepared);
            release_tree(&target);
            return Err(format!(
                "mount {} (host path {}): {e}",
                m.destination().display(),
                source.display()
            ));
        }
        prepared.push(target.clone());
        let mut new_opts: Vec<String> = opts
            .into_iter()
            .filter(|o| o != "idmap" && o != "ridmap")
            .map(|o| if o == "rro" { "ro".to_string() } else { o })
            .collect();
        if want_rro && !new_opts.iter().any(|o| o == "ro") {
            new_opts.push("ro".into());
        }
        m.set_options(Some(new_opts));
        m.set_source(Some(target));
        if want_idmap {
            m.set_uid_mappings(None);
            m.set_gid_mappings(None);
        }
        out.push(m);
    }
    if pod_userns.is_some() {
        out = with_submounts(out);
    }
    spec.set_mounts(Some(out));
    Ok(prepared)
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// crun 1.8 binds only the top mount of an `rbind` source inside a user namespace (runc binds the
/// whole tree): each mount below a bind source gets an explicit bind of its own, right after its
/// parent, so the container sees the same tree with either handler.
fn with_submounts(mounts: Vec<oci_spec::runtime::Mount>) -> Vec<oci_spec::runtime::Mount> {
    let points: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .collect();
    let mut out = Vec::with_capacity(mounts.len());
    for m in mounts {
        let rbind = is_bind(&m)
            && m.options()
                .as_ref()
                .is_some_and(|o| o.iter().any(|x| x == "rbind"));
        let src = m
            .source()
            .as_ref()
            .and_then(|s| std::fs::canonicalize(s).ok());
        let dest = m.destination().clone();
        let opts = m.options().clone();
        out.push(m);
        let (true, Some(src)) = (rbind, src) else {
            continue;
        };
        let mut below: Vec<&PathBuf> = points
            .iter()
            .filter(|p| p.starts_with(&src) && **p != src)
            .collect();
        below.sort_by_key(|p| p.components().count());
        below.dedup();
        for p in below {
            let Ok(rel) = p.strip_prefix(&src) else {
                continue;
            };
            let mut sub = oci_spec::runtime::Mount::default();
            sub.set_destination(dest.join(rel));
            sub.set_typ(Some("bind".into()));
            sub.set_source(Some(p.clone()));
            sub.set_options(opts.clone());
            out.push(sub);
        }
    }
    out
}

/// Detaches prepared mounts (after the runtime made its own copies).
pub fn release(prepared: &[PathBuf]) {
    for p in prepared {
        release_tree(p);
    }
}

/// Detaches and removes the mounts [`prepare_spec_mounts`] made under `dir` (`<dir>/mounts/<n>`),
/// for when the prepared paths themselves are no longer at hand.
pub fn release_prepared_in(dir: &Path) {
    let mounts = dir.join("mounts");
    let Ok(entries) = std::fs::read_dir(&mounts) else {
        return;
    };
    for e in entries.flatten() {
        release_tree(&e.path());
    }
    let _ = std::fs::remove_dir(&mounts);
}

/// Detaches and removes every `<dir>/<container>/<n>` mount point (layer copies a crashed daemon
/// left behind); never removes anything recursively.
pub fn release_leftovers(dir: &Path) {
    let Ok(ctrs) = std::fs::read_dir(dir) else {
        return;
    };
    for c in ctrs.flatten() {
        if let Ok(layers) = std::fs::read_dir(c.path()) {
            for l in layers.flatten() {
                tracing::info!(
                    "releasing leftover idmapped layer copy {}",
                    l.path().display()
                );
                release_tree(&l.path());
            }
        }
        let _ = std::fs::remove_dir(c.path());
    }
}

/// Idmapped copies of image layers for a user-namespaced container's overlay rootfs.
pub struct LayerMapper {
    pub userns: PathBuf,
    pub scratch: PathBuf,
}

impl LayerMapper {
    /// Mounts an idmapped copy of every layer under the scratch dir; returns their paths.
    pub fn map(&self, lowers: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
        let ns = UserNs::open(&self.userns)?;
        let mut out = Vec::with_capacity(lowers.len());
        for (i, l) in lowers.iter().enumerate() {
            let t = self.scratch.join(i.to_string());
            if let Err(e) = prepare_tree(l, &t, false, Some(ns.fd())) {
                release(&out);
                release_tree(&t);
                return Err(e);
            }
            out.push(t);
        }
        Ok(out)
    }

    /// Detaches the copies once overlayfs holds its own references to them.
    pub fn release(&self, mapped: &[PathBuf]) {
        release(mapped);
        let _ = std::fs::remove_dir(&self.scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(dest: &str, src: &Path, opts: &[&str]) -> oci_spec::runtime::Mount {
        let mut m = oci_spec::runtime::Mount::default();
        m.set_destination(PathBuf::from(dest));
        m.set_typ(Some("bind".into()));
        m.set_source(Some(src.to_path_buf()));
        m.set_options(Some(opts.iter().map(|s| s.to_string()).collect()));
        m
    }

    fn is_mounted(p: &Path) -> bool {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
    }

    /// Needs root (mounts); this project's tests run as root.
    #[test]
    fn rro_binds_are_rewritten_only_when_the_handler_cannot() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let mut spec = oci_spec::runtime::Spec::default();
        spec.set_mounts(Some(vec![
            bind("/plain", &src, &["rbind", "rprivate", "ro"]),
            bind("/rro", &src, &["rbind", "rprivate", "rro"]),
        ]));
        let mut native = spec.clone();
        let none = prepare_spec_mounts(
            &mut native,
            tmp.path(),
            Native {
                rro: true,
                idmap: true,
            },
            None,
        )
        .unwrap();
        assert!(none.is_empty());
        assert_eq!(native.mounts(), spec.mounts());

        let prepared = prepare_spec_mounts(&mut spec, tmp.path(), Native::default(), None).unwrap();
        assert_eq!(prepared, vec![tmp.path().join("mounts/1")]);
        let ms = spec.mounts().clone().unwrap();
        assert_eq!(ms[0].source().as_deref(), Some(src.as_path()));
        assert_eq!(ms[1].source().as_deref(), Some(prepared[0].as_path()));
        assert_eq!(
            ms[1].options().clone().unwrap(),
            vec!["rbind", "rprivate", "ro"]
        );
        assert!(is_mounted(&prepared[0]));
        let st = nix::sys::statvfs::statvfs(&prepared[0]).unwrap();
        assert!(st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
        release(&prepared);
        assert!(!is_mounted(&prepared[0]));
        assert!(!prepared[0].exists());
    }

    #[test]
    fn map_text_is_one_line_per_range() {
        let m = [IdMap {
            container_id: 0,
            host_id: 1000,
            length: 65536,
        }];
        assert_eq!(map_text(&m), "0 1000 65536\n");
    }
}
