//! Unpacking one layer tar into its own snapshot directory (the overlay "diff" of that layer).
//!
//! Every entry is created relative to a directory fd reached by walking the entry's parent path one
//! component at a time with `O_NOFOLLOW | O_DIRECTORY`, so neither `..`, an absolute name, nor a symlink
//! planted by an earlier entry can make a write land outside the snapshot. Docker/OCI whiteouts are turned
//! into overlayfs whiteouts (0/0 character devices, `trusted.overlay.opaque=y`).

use std::ffi::{CStr, CString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::error::ImageError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const META_PREFIX: &str = ".wh..wh.";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in name"))
}

fn openat(dir: RawFd, name: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    // SAFETY: name is a valid C string; the returned fd is owned by the OwnedFd.
    let fd = cvt(unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: fd was just returned by openat and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn lstatat(dir: RawFd, name: &CStr) -> io::Result<Option<libc::stat>> {
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers for the duration of the call.
    let r = unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(st))
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn fd_path(fd: RawFd) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
}

/// Removes whatever is at `name` in `dir` (recursively for directories, never following symlinks).
fn remove_existing(dir: RawFd, name: &CStr) -> io::Result<()> {
    let Some(st) = lstatat(dir, name)? else {
        return Ok(());
    };
    if is_dir(&st) {
        let d = openat(
            dir,
            name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )?;
        // std's remove_dir_all walks with openat/O_NOFOLLOW, so a resolved fd path is safe to hand it.
        let p = fd_path(d.as_raw_fd())?;
        std::fs::remove_dir_all(p)
    } else {
        // SAFETY: valid C string.
        cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), 0) }).map(|_| ())
    }
}

fn set_xattr_fd(fd: RawFd, key: &str, value: &[u8]) -> io::Result<()> {
    let k = cstring(key.as_bytes())?;
    // SAFETY: valid pointers and lengths.
    cvt(unsafe { libc::fsetxattr(fd, k.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
        .map(|_| ())
}

fn set_xattr_nofollow(dir: RawFd, name: &CStr, key: &str, value: &[u8]) -> io::Result<()> {
    // lsetxattr needs a path: go through the parent's /proc fd link, which the kernel resolves to the
    // already-verified directory; the final component is not followed.
    let mut p = fd_path(dir)?.into_os_string().into_vec();
    p.push(b'/');
    p.extend_from_slice(name.to_bytes());
    let p = cstring(&p)?;
    let k = cstring(key.as_bytes())?;
    // SAFETY: valid pointers and lengths.
    cvt(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(|_| ())
}

fn set_times(dir: RawFd, name: &CStr, mtime: i64) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [ts, ts];
    // SAFETY: valid pointers.
    cvt(unsafe {
        libc::utimensat(
            dir,
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(|_| ())
}

/// A normalised, safe relative path split into components.
pub(crate) fn safe_components(layer: &str, raw: &[u8]) -> Result<Vec<Vec<u8>>, ImageError> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let unsafe_entry = |reason: &str| ImageError::UnsafeLayerEntry {
        layer: layer.to_string(),
        entry: shown.clone(),
        reason: reason.to_string(),
    };
    if raw.first() == Some(&b'/') {
        return Err(unsafe_entry("absolute path"));
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => continue,
            b".." => return Err(unsafe_entry("path contains '..'")),
            _ => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

/// Unpacks a layer tar stream into `dest` (an existing, empty directory).
#[cfg(test)]
pub fn unpack<R: Read>(layer: &str, reader: R, dest: &Path) -> Result<R, ImageError> {
    unpack_limited(layer, reader, dest, u64::MAX, u64::MAX)
}

/// `unpack`, failing with `ImageError::LayerLimit` on the entry after the first `max_entries`, or
/// on the file whose contents would take the files' total past `max_bytes`
/// (`max_layer_unpacked_bytes`). The byte bound is checked against each file's size before it is
/// created: a GNU sparse entry expands its holes to zeros, so a few hundred bytes of tar can
/// declare terabytes that the stream's own byte count never sees.
pub fn unpack_limited<R: Read>(
    layer: &str,
    reader: R,
    dest: &Path,
    max_entries: u64,
    max_bytes: u64,
) -> Result<R, ImageError> {
    let mut u = Unpacker::new(layer, dest)?;
    u.max_bytes = max_bytes;
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| u.err("", e))?;
    let mut count: u64 = 0;
    for entry in entries {
        let mut entry = entry.map_err(|e| u.err("", e))?;
        count += 1;
        if count > max_entries {
            return Err(ImageError::LayerLimit {
                layer: layer.to_string(),
                what: "number of entries",
                limit: max_entries,
                key: "max_layer_entries",
            });
        }
        u.entry(&mut entry)?;
    }
    u.finish()?;
    Ok(archive.into_inner())
}

struct Unpacker {
    layer: String,
    /// Where the layer is unpacked (named when the filesystem is full).
    dest: PathBuf,
    root: OwnedFd,
    /// The last parent directory opened, reused because tar entries are grouped by directory.
    cache: Option<(Vec<Vec<u8>>, OwnedFd)>,
    /// Directory mtimes are applied last: creating children would change them again.
    dir_times: Vec<(Vec<Vec<u8>>, i64)>,
    buf: Vec<u8>,
    /// Bytes of file contents written so far, and their bound.
    written: u64,
    max_bytes: u64,
}

impl Unpacker {
    fn new(layer: &str, dest: &Path) -> Result<Self, ImageError> {
        let p = cstring(dest.as_os_str().as_bytes()).map_err(|e| ImageError::io(dest, e))?;
        let root = openat(libc::AT_FDCWD, &p, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(|e| ImageError::io(dest, e))?;
        Ok(Unpacker {
            layer: layer.to_string(),
            dest: dest.to_path_buf(),
            root,
            cache: None,
            dir_times: Vec::new(),
            buf: vec![0; 256 * 1024],
            written: 0,
            max_bytes: u64::MAX,
        })
    }

    fn err(&self, entry: &str, e: io::Error) -> ImageError {
        if crate::error::is_no_space(&e) {
            return ImageError::NoSpace {
                what: format!(
                    "{} entry {entry:?} unpacking into {}",
                    self.layer,
                    self.dest.display()
                ),
                detail: e.to_string(),
            };
        }
        ImageError::Unpack {
            layer: self.layer.clone(),
            entry: entry.to_string(),
            reason: e.to_string(),
        }
    }

    /// Opens (creating missing directories) the directory `comps` below the root without following
    /// any symlink. Returns a raw fd owned by `self.cache` or `self.root`.
    fn open_parent(&mut self, shown: &str, comps: &[Vec<u8>]) -> Result<RawFd, ImageError> {
        if comps.is_empty() {
            return Ok(self.root.as_raw_fd());
        }
        if let Some((p, fd)) = &self.cache {
            if p.as_slice() == comps {
                return Ok(fd.as_raw_fd());
            }
        }
        let mut cur: Option<OwnedFd> = None;
        for c in comps {
            let dirfd = cur
                .as_ref()
                .map(|f| f.as_raw_fd())
                .unwrap_or(self.root.as_raw_fd());
            let name = cstring(c).map_err(|e| self.err(shown, e))?;
            let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
            let next = match openat(dirfd, &name, flags, 0) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    // SAFETY: valid C string.
                    cvt(unsafe { libc::mkdirat(dirfd, name.as_ptr(), 0o755) })
                        .map_err(|e| self.err(shown, e))?;
                    openat(dirfd, &name, flags, 0).map_err(|e| self.err(shown, e))?
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                    return Err(ImageError::UnsafeLayerEntry {
                        layer: self.layer.clone(),
                        entry: shown.to_string(),
                        reason: format!(
                            "parent component {:?} is a symlink or not a directory",
                            String::from_utf8_lossy(c)
                        ),
                    });
                }
                Err(e) => return Err(self.err(shown, e)),
            };
            cur = Some(next);
        }
        let fd = cur.ok_or_else(|| self.err(shown, io::Error::other("empty parent")))?;
        let raw = fd.as_raw_fd();
        self.cache = Some((comps.to_vec(), fd));
        Ok(raw)
    }

    /// Forgets the cached parent if `comps` (being replaced) is it or one of its ancestors.
    fn invalidate(&mut self, comps: &[Vec<u8>]) {
        if let Some((p, _)) = &self.cache {
            if p.starts_with(comps) {
                self.cache = None;
            }
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let comps = safe_components(&self.layer, &raw_path)?;
        let xattrs = pax_xattrs(entry).map_err(|e| self.err(&shown, e))?;
        let header = entry.header().clone();
        let header = &header;
        let kind = header.entry_type();
        if comps.is_empty() {
            // The layer root itself ("./"): the snapshot dir keeps its own attributes.
            return Ok(());
        }
        let (parent_comps, name) = comps.split_at(comps.len() - 1);
        let name = &name[0];
        let mode = header.mode().map_err(|e| self.err(&shown, e))? & 0o7777;
        let uid = header.uid().map_err(|e| self.err(&shown, e))?;
        let gid = header.gid().map_err(|e| self.err(&shown, e))?;
        let mtime = header.mtime().map_err(|e| self.err(&shown, e))? as i64;

        let name_str = String::from_utf8_lossy(name).into_owned();
        if name_str.starts_with(WHITEOUT_PREFIX) {
            let parent = self.open_parent(&shown, parent_comps)?;
            if name_str == OPAQUE_MARKER {
                set_xattr_fd(parent, OPAQUE_XATTR, b"y").map_err(|e| self.err(&shown, e))?;
            } else if name_str.starts_with(META_PREFIX) {
                // Other AUFS metadata (e.g. hard-link dirs) has no meaning for overlay.
            } else {
                let target = &name[WHITEOUT_PREFIX.len()..];
                if matches!(target, b"" | b"." | b"..") {
                    // `.wh..` would remove the parent itself, `.wh...` the grandparent.
                    return Err(ImageError::UnsafeLayerEntry {
                        layer: self.layer.clone(),
                        entry: shown,
                        reason: "whiteout of an empty name, '.' or '..'".into(),
                    });
                }
                let mut target_comps = parent_comps.to_vec();
                target_comps.push(target.to_vec());
                self.invalidate(&target_comps);
                let parent = self.open_parent(&shown, parent_comps)?;
                let t = cstring(target).map_err(|e| self.err(&shown, e))?;
                remove_existing(parent, &t).map_err(|e| self.err(&shown, e))?;
                // SAFETY: valid C string.
                cvt(unsafe { libc::mknodat(parent, t.as_ptr(), libc::S_IFCHR, 0) })
                    .map_err(|e| self.err(&shown, e))?;
            }
            return Ok(());
        }

        let cname = cstring(name).map_err(|e| self.err(&shown, e))?;
        match kind {
            tar::EntryType::Directory => {
                let parent = self.open_parent(&shown, parent_comps)?;
                match lstatat(parent, &cname).map_err(|e| self.err(&shown, e))? {
                    Some(st) if is_dir(&st) => {}
                    Some(_) => {
                        remove_existing(parent, &cname).map_err(|e| self.err(&shown, e))?;
                        // SAFETY: valid C string.
                        cvt(unsafe { libc::mkdirat(parent, cname.as_ptr(), 0o700) })
                            .map_err(|e| self.err(&shown, e))?;
                    }
                    None => {
                        // SAFETY: valid C string.
                        cvt(unsafe { libc::mkdirat(parent, cname.as_ptr(), 0o700) })
                            .map_err(|e| self.err(&shown, e))?;
                    }
                }
                let fd = openat(
                    parent,
                    &cname,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                )
                .map_err(|e| self.err(&shown, e))?;
                self.apply_fd_attrs(&shown, fd.as_raw_fd(), uid, gid, mode, &xattrs)?;
                self.dir_times.push((comps.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                // The reader yields exactly `size` bytes (a sparse entry's real size), or fails.
                let size = entry.size();
                match self.written.checked_add(size) {
                    Some(total) if total <= self.max_bytes => self.written = total,
                    _ => {
                        return Err(ImageError::LayerLimit {
                            layer: self.layer.clone(),
                            what: "uncompressed size",
                            limit: self.max_bytes,
                            key: "max_layer_unpacked_bytes",
                        })
                    }
                }
                self.invalidate(&comps);
                let parent = self.open_parent(&shown, parent_comps)?;
                remove_existing(parent, &cname).map_err(|e| self.err(&shown, e))?;
                let fd = openat(
                    parent,
                    &cname,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                    0o600,
                )
                .map_err(|e| self.err(&shown, e))?;
                let mut file = std::fs::File::from(fd);
                loop {
                    let n = match entry.read(&mut self.buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(self.err(&shown, e)),
                    };
                    file.write_all(&self.buf[..n])
                        .map_err(|e| self.err(&shown, e))?;
                }
                self.apply_fd_attrs(&shown, file.as_raw_fd(), uid, gid, mode, &xattrs)?;
                let parent = self.open_parent(&shown, parent_comps)?;
                set_times(parent, &cname, mtime).map_err(|e| self.err(&shown, e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.err(&shown, io::Error::other("symlink without target")))?
                    .into_owned();
                self.invalidate(&comps);
                let parent = self.open_parent(&shown, parent_comps)?;
                remove_existing(parent, &cname).map_err(|e| self.err(&shown, e))?;
                let t = cstring(&target).map_err(|e| self.err(&shown, e))?;
                // SAFETY: valid C strings. The target is stored verbatim and never followed by us.
                cvt(unsafe { libc::symlinkat(t.as_ptr(), parent, cname.as_ptr()) })
                    .map_err(|e| self.err(&shown, e))?;
                // SAFETY: valid C string.
                cvt(unsafe {
                    libc::fchownat(
                        parent,
                        cname.as_ptr(),
                        uid as _,
                        gid as _,
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                })
                .map_err(|e| self.err(&shown, e))?;
                for (k, v) in &xattrs {
                    set_xattr_nofollow(parent, &cname, k, v).map_err(|e| self.err(&shown, e))?;
                }
                set_times(parent, &cname, mtime).map_err(|e| self.err(&shown, e))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.err(&shown, io::Error::other("hard link without target")))?
                    .into_owned();
                let tcomps = safe_components(&self.layer, &target).map_err(|e| match e {
                    ImageError::UnsafeLayerEntry { layer, reason, .. } => {
                        ImageError::UnsafeLayerEntry {
                            layer,
                            entry: shown.clone(),
                            reason: format!("hard link target {}", reason),
                        }
                    }
                    other => other,
                })?;
                if tcomps.is_empty() {
                    return Err(ImageError::UnsafeLayerEntry {
                        layer: self.layer.clone(),
                        entry: shown,
                        reason: "hard link to the layer root".into(),
                    });
                }
                let (tparent, tname) = tcomps.split_at(tcomps.len() - 1);
                let tparent_fd = self.open_parent(&shown, tparent)?;
                // Keep the target's directory open while the link's parent is resolved.
                let tparent_fd = dup(tparent_fd).map_err(|e| self.err(&shown, e))?;
                let tname = cstring(&tname[0]).map_err(|e| self.err(&shown, e))?;
                self.invalidate(&comps);
                let parent = self.open_parent(&shown, parent_comps)?;
                if tcomps != comps {
                    remove_existing(parent, &cname).map_err(|e| self.err(&shown, e))?;
                }
                // SAFETY: valid C strings; flags 0 links the entry itself, never a symlink's target.
                cvt(unsafe {
                    libc::linkat(
                        tparent_fd.as_raw_fd(),
                        tname.as_ptr(),
                        parent,
                        cname.as_ptr(),
                        0,
                    )
                })
                .map_err(|e| self.err(&shown, e))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let fmt = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                self.invalidate(&comps);
                let parent = self.open_parent(&shown, parent_comps)?;
                remove_existing(parent, &cname).map_err(|e| self.err(&shown, e))?;
                let dev = libc::makedev(major, minor);
                // SAFETY: valid C string.
                cvt(unsafe { libc::mknodat(parent, cname.as_ptr(), fmt | mode, dev) })
                    .map_err(|e| self.err(&shown, e))?;
                // SAFETY: valid C string.
                cvt(unsafe {
                    libc::fchownat(
                        parent,
                        cname.as_ptr(),
                        uid as _,
                        gid as _,
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                })
                .map_err(|e| self.err(&shown, e))?;
                // SAFETY: valid C string; mknod applies the umask, so set the mode explicitly.
                cvt(unsafe { libc::fchmodat(parent, cname.as_ptr(), mode, 0) })
                    .map_err(|e| self.err(&shown, e))?;
                for (k, v) in &xattrs {
                    set_xattr_nofollow(parent, &cname, k, v).map_err(|e| self.err(&shown, e))?;
                }
                set_times(parent, &cname, mtime).map_err(|e| self.err(&shown, e))?;
            }
            // PAX/GNU metadata entries are consumed by the tar reader; anything else carries no file.
            _ => {}
        }
        Ok(())
    }

    fn apply_fd_attrs(
        &self,
        shown: &str,
        fd: RawFd,
        uid: u64,
        gid: u64,
        mode: u32,
        xattrs: &[(String, Vec<u8>)],
    ) -> Result<(), ImageError> {
        // SAFETY: plain syscalls on an fd we own.
        cvt(unsafe { libc::fchown(fd, uid as _, gid as _) }).map_err(|e| self.err(shown, e))?;
        // chown clears set-id bits, so the mode goes second.
        // SAFETY: as above.
        cvt(unsafe { libc::fchmod(fd, mode) }).map_err(|e| self.err(shown, e))?;
        for (k, v) in xattrs {
            set_xattr_fd(fd, k, v).map_err(|e| self.err(shown, e))?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(), ImageError> {
        self.cache = None;
        let times = std::mem::take(&mut self.dir_times);
        for (comps, mtime) in times.into_iter().rev() {
            let shown = comps
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let (parent, name) = comps.split_at(comps.len() - 1);
            let parent = self.open_parent(&shown, parent)?;
            let c = cstring(&name[0]).map_err(|e| self.err(&shown, e))?;
            set_times(parent, &c, mtime).map_err(|e| self.err(&shown, e))?;
        }
        Ok(())
    }
}

fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd we own.
    let n = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: n is a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Extended attributes carried as `SCHILY.xattr.*` PAX records. Overlay's own attributes are dropped:
/// only the unpacker decides what is a whiteout or opaque directory.
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                if name.starts_with("trusted.overlay.") {
                    continue;
                }
                out.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    fn header(path: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        // set_path refuses "..", which is exactly what the malicious tests need, so write raw bytes.
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        h
    }

    enum E<'a> {
        Dir(&'a str),
        File(&'a str, &'a [u8]),
        Sym(&'a str, &'a str),
        Hard(&'a str, &'a str),
    }

    fn build(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            match e {
                E::Dir(p) => {
                    let h = header(p, tar::EntryType::Directory, 0, 0o755);
                    b.append(&h, io::empty()).unwrap();
                }
                E::File(p, data) => {
                    let h = header(p, tar::EntryType::Regular, data.len() as u64, 0o644);
                    b.append(&h, *data).unwrap();
                }
                E::Sym(p, t) | E::Hard(p, t) => {
                    let kind = if matches!(e, E::Sym(..)) {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    };
                    let mut h = header(p, kind, 0, 0o777);
                    let ln = &mut h.as_old_mut().linkname;
                    ln.fill(0);
                    ln[..t.len()].copy_from_slice(t.as_bytes());
                    h.set_cksum();
                    b.append(&h, io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// A sandbox: `<tmp>/outside` is where an escape would land, `<tmp>/layer` is the target.
    fn sandbox() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let layer = t.path().join("layer");
        std::fs::create_dir(&layer).unwrap();
        std::fs::create_dir(t.path().join("outside")).unwrap();
        (t, layer)
    }

    fn outside_is_empty(t: &tempfile::TempDir) -> bool {
        std::fs::read_dir(t.path().join("outside"))
            .unwrap()
            .next()
            .is_none()
            && std::fs::read_dir(t.path()).unwrap().count() == 2
    }

    /// An old-GNU sparse entry: `chunks` (offset, length) of data, `real_size` in all; the holes
    /// between the chunks read as zeros.
    fn gnu_sparse(path: &str, real_size: u64, chunks: &[(u64, u64)]) -> Vec<u8> {
        let data: u64 = chunks.iter().map(|c| c.1).sum();
        let mut h = header(path, tar::EntryType::GNUSparse, data, 0o644);
        let gnu = h.as_gnu_mut().unwrap();
        for (slot, (off, len)) in gnu.sparse.iter_mut().zip(chunks) {
            slot.set_offset(*off);
            slot.set_length(*len);
        }
        gnu.set_real_size(real_size);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.resize(out.len() + (data as usize).div_ceil(512) * 512, b'D');
        out.resize(out.len() + 1024, 0);
        out
    }

    /// Found by the `tar_unpack` fuzz target: a 2 KiB archive whose sparse entry declares 1 TiB
    /// wrote zeros until the disk (the fuzzer's 64 MiB tmpfs) was full, past any byte limit, since
    /// the limit only counted the stream. Now the declared size is charged before the file exists.
    #[test]
    fn sparse_entry_cannot_expand_past_the_byte_limit() {
        let (t, layer) = sandbox();
        let tar = gnu_sparse("bomb", 1 << 40, &[(0, 1), (1 << 40, 0)]);
        assert!(tar.len() <= 2048);
        let started = std::time::Instant::now();
        match unpack_limited("l", &tar[..], &layer, u64::MAX, 1 << 20) {
            Err(ImageError::LayerLimit { key, limit, .. }) => {
                assert_eq!(key, "max_layer_unpacked_bytes");
                assert_eq!(limit, 1 << 20);
            }
            other => panic!("want LayerLimit, got {other:?}"),
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(!layer.join("bomb").exists(), "the bomb was created");
        assert!(outside_is_empty(&t));
        // Within the limit a sparse file unpacks with its holes as zeros, and files add up.
        let (_t, layer) = sandbox();
        let mut tar = gnu_sparse("s", 4096, &[(0, 512), (3584, 512)]);
        tar.truncate(tar.len() - 1024);
        tar.extend_from_slice(&build(&[E::File("f", &[7; 100])]));
        unpack_limited("l", &tar[..], &layer, u64::MAX, 4196).unwrap();
        let s = std::fs::read(layer.join("s")).unwrap();
        assert_eq!(s.len(), 4096);
        assert_eq!((s[0], s[511], s[512], s[3583]), (b'D', b'D', 0, 0));
        assert_eq!((s[3584], s[4095]), (b'D', b'D'));
        let (_t, layer) = sandbox();
        assert!(matches!(
            unpack_limited("l", &tar[..], &layer, u64::MAX, 4195),
            Err(ImageError::LayerLimit { .. })
        ));
    }

    #[test]
    fn entry_limit_stops_at_the_first_entry_past_it() {
        let (_t, layer) = sandbox();
        let tar = build(&[E::File("a", b"1"), E::File("b", b"2"), E::File("c", b"3")]);
        unpack_limited("l", &tar[..], &layer, 3, u64::MAX).unwrap();
        let (_t, layer) = sandbox();
        match unpack_limited("l", &tar[..], &layer, 2, u64::MAX) {
            Err(ImageError::LayerLimit { key, limit, .. }) => {
                assert_eq!(key, "max_layer_entries");
                assert_eq!(limit, 2);
            }
            other => panic!("want LayerLimit, got {other:?}"),
        }
        assert!(
            !layer.join("c").exists(),
            "the entry past the limit was written"
        );
    }

    #[test]
    fn whiteouts_of_dot_and_dotdot_are_refused_and_remove_nothing() {
        for evil in ["sub/.wh..", "sub/.wh...", "sub/.wh."] {
            let (t, layer) = sandbox();
            let tar = build(&[
                E::Dir("sub/"),
                E::File("sub/keep", b"k"),
                E::File(evil, b""),
            ]);
            match unpack("evil", &tar[..], &layer) {
                Err(ImageError::UnsafeLayerEntry { entry, .. }) => assert_eq!(entry, evil),
                other => panic!("{evil}: want UnsafeLayerEntry, got {other:?}"),
            }
            assert!(
                layer.join("sub/keep").exists(),
                "{evil}: the parent was removed"
            );
            assert!(outside_is_empty(&t));
        }
    }

    #[test]
    fn regular_files_dirs_symlinks_hardlinks() {
        let (_t, layer) = sandbox();
        let tar = build(&[
            E::Dir("etc/"),
            E::File("etc/passwd", b"root:x:0:0\n"),
            E::File("bin/sh", b"#!"),
            E::Sym("bin/ash", "/bin/sh"),
            E::Hard("bin/sh2", "bin/sh"),
        ]);
        unpack("l", &tar[..], &layer).unwrap();
        assert_eq!(
            std::fs::read(layer.join("etc/passwd")).unwrap(),
            b"root:x:0:0\n"
        );
        assert_eq!(
            std::fs::read_link(layer.join("bin/ash")).unwrap(),
            Path::new("/bin/sh")
        );
        let a = std::fs::metadata(layer.join("bin/sh")).unwrap();
        let b = std::fs::metadata(layer.join("bin/sh2")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(a.permissions().mode() & 0o7777, 0o644);
        assert_eq!(a.mtime(), 1_600_000_000);
        let d = std::fs::metadata(layer.join("etc")).unwrap();
        assert_eq!(d.mtime(), 1_600_000_000);
        assert_eq!(d.permissions().mode() & 0o7777, 0o755);
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let (_t, layer) = sandbox();
        let tar = build(&[
            E::Dir("a/"),
            E::File("a/.wh..wh..opq", b""),
            E::File("a/.wh.gone", b""),
            E::File(".wh.top", b""),
        ]);
        unpack("l", &tar[..], &layer).unwrap();
        for p in ["a/gone", "top"] {
            let m = std::fs::symlink_metadata(layer.join(p)).unwrap();
            assert!(m.file_type().is_char_device(), "{p}");
            assert_eq!(m.rdev(), 0);
        }
        assert!(!layer.join("a/.wh.gone").exists());
        assert!(!layer.join("a/.wh..wh..opq").exists());
        let mut v = [0u8; 8];
        let p = CString::new(layer.join("a").as_os_str().as_bytes()).unwrap();
        let k = CString::new(OPAQUE_XATTR).unwrap();
        // SAFETY: valid buffers.
        let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert_eq!(n, 1);
        assert_eq!(v[0], b'y');
    }

    #[test]
    fn rejects_dotdot_and_absolute() {
        for evil in ["../outside/x", "a/../../outside/x", "/outside/x"] {
            let (t, layer) = sandbox();
            let tar = build(&[E::File(evil, b"pwned")]);
            match unpack("evil", &tar[..], &layer) {
                Err(ImageError::UnsafeLayerEntry { entry, layer, .. }) => {
                    assert_eq!(entry, evil);
                    assert_eq!(layer, "evil");
                }
                other => panic!("{evil}: expected UnsafeLayerEntry, got {other:?}"),
            }
            assert!(outside_is_empty(&t), "{evil} escaped");
        }
    }

    #[test]
    fn rejects_writes_through_symlinks() {
        let cases: Vec<Vec<E>> = vec![
            vec![E::Sym("link", "../outside"), E::File("link/x", b"pwned")],
            vec![E::Sym("link", "/"), E::File("link/tmp/x", b"pwned")],
            vec![
                E::Dir("d/"),
                E::Sym("d/l", "../../outside"),
                E::Dir("d/l/sub/"),
            ],
        ];
        for entries in cases {
            let (t, layer) = sandbox();
            let tar = build(&entries);
            let r = unpack("evil", &tar[..], &layer);
            assert!(
                matches!(r, Err(ImageError::UnsafeLayerEntry { .. })),
                "{r:?}"
            );
            assert!(outside_is_empty(&t));
        }
        // A hard link naming a path outside the layer is refused as well.
        let (t, layer) = sandbox();
        let tar = build(&[E::Hard("x", "../outside/secret")]);
        assert!(matches!(
            unpack("evil", &tar[..], &layer),
            Err(ImageError::UnsafeLayerEntry { .. })
        ));
        assert!(outside_is_empty(&t));
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let (_t, layer) = sandbox();
        let tar = build(&[
            E::Dir("x/"),
            E::File("x/f", b"1"),
            E::File("x", b"now a file"),
            E::Sym("y", "x"),
            E::File("y", b"replaced link"),
        ]);
        unpack("l", &tar[..], &layer).unwrap();
        assert_eq!(std::fs::read(layer.join("x")).unwrap(), b"now a file");
        assert!(!std::fs::symlink_metadata(layer.join("y"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn xattrs_devices_owners_and_special_modes() {
        let (_t, layer) = sandbox();
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("SCHILY.xattr.user.crius", b"yes".as_slice())])
            .unwrap();
        let mut h = header("bin/su", tar::EntryType::Regular, 2, 0o4755);
        h.set_uid(1000);
        h.set_gid(2000);
        h.set_cksum();
        b.append(&h, &b"#!"[..]).unwrap();
        // Overlay's own attributes from a layer are dropped, not applied.
        b.append_pax_extensions([("SCHILY.xattr.trusted.overlay.opaque", b"y".as_slice())])
            .unwrap();
        b.append(
            &header("d/", tar::EntryType::Directory, 0, 0o1777),
            io::empty(),
        )
        .unwrap();
        let mut h = header("dev/null", tar::EntryType::Char, 0, 0o666);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_cksum();
        b.append(&h, io::empty()).unwrap();
        b.append(
            &header("run/fifo", tar::EntryType::Fifo, 0, 0o600),
            io::empty(),
        )
        .unwrap();
        let tar = b.into_inner().unwrap();
        unpack("l", &tar[..], &layer).unwrap();

        let su = std::fs::metadata(layer.join("bin/su")).unwrap();
        assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
        assert_eq!((su.uid(), su.gid()), (1000, 2000));
        let get = |p: &Path, k: &str| {
            let p = CString::new(p.as_os_str().as_bytes()).unwrap();
            let k = CString::new(k).unwrap();
            let mut v = [0u8; 16];
            // SAFETY: valid buffers.
            let n =
                unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
            (n >= 0).then(|| v[..n as usize].to_vec())
        };
        assert_eq!(
            get(&layer.join("bin/su"), "user.crius"),
            Some(b"yes".to_vec())
        );
        assert_eq!(get(&layer.join("d"), OPAQUE_XATTR), None);
        assert_eq!(
            std::fs::metadata(layer.join("d"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o1777
        );
        let null = std::fs::symlink_metadata(layer.join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), libc::makedev(1, 3));
        assert_eq!(null.permissions().mode() & 0o7777, 0o666);
        assert!(std::fs::symlink_metadata(layer.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
    }
}
