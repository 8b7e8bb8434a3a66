//! Layer tars come from untrusted images. Whatever the archive holds, unpacking it writes nothing
//! outside the target directory, ever: next to the target sits `outside/` with a canary file and
//! an empty dir, and after every unpack the sandbox holds exactly that, the canary unchanged
//! (content, mode, owner, link count). The unpacked size never exceeds the layer's byte limit,
//! whatever the headers claim (GNU sparse entries expand holes to zeros).
//!
//! The sandbox is a 64 MiB tmpfs mounted in a private mount namespace of the fuzz process (root)
//! at /tmp/crius-fuzz-unpack, so absolute paths naming it are reachable by the fuzzer's dictionary
//! and nothing survives the process; without root it is a plain directory there.
#![no_main]

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const SANDBOX: &str = "/tmp/crius-fuzz-unpack";
/// The layer's unpacked-bytes limit (`max_layer_unpacked_bytes`) for the fuzzed unpacks.
const MAX_BYTES: u64 = 1 << 20;
const CANARY: &[u8] = b"canary: must never change";

fn sandbox() -> &'static Path {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let root = PathBuf::from(SANDBOX);
        fs::create_dir_all(&root).expect("creating the sandbox dir");
        // SAFETY: plain syscalls with valid, NUL-terminated arguments; failures fall back to the
        // plain directory.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) == 0 {
                let none = CString::new("none").unwrap_or_default();
                let slash = CString::new("/").unwrap_or_default();
                libc::mount(
                    std::ptr::null(),
                    slash.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                );
                let target = CString::new(SANDBOX).unwrap_or_default();
                let opts = CString::new("size=64m,mode=0755").unwrap_or_default();
                let tmpfs = CString::new("tmpfs").unwrap_or_default();
                libc::mount(
                    none.as_ptr(),
                    target.as_ptr(),
                    tmpfs.as_ptr(),
                    0,
                    opts.as_ptr() as *const libc::c_void,
                );
            }
        }
        root
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let root = sandbox();
    let outside = root.join("outside");
    let layer = root.join("layer");
    let _ = fs::remove_dir_all(&layer);
    let _ = fs::remove_dir_all(&outside);
    fs::create_dir(&outside).expect("mkdir outside");
    fs::create_dir(outside.join("dir")).expect("mkdir outside/dir");
    fs::write(outside.join("canary"), CANARY).expect("write canary");
    fs::set_permissions(outside.join("canary"), fs::Permissions::from_mode(0o644))
        .expect("chmod canary");
    fs::create_dir(&layer).expect("mkdir layer");
    let before = fs::symlink_metadata(outside.join("canary")).expect("stat canary");

    let _ = crius_image::fuzzing::unpack_limited("fuzz", data, &layer, 10_000, MAX_BYTES);

    let mut top: Vec<_> = names(root);
    top.sort();
    assert_eq!(top, ["layer", "outside"], "written next to the target");
    assert!(
        fs::symlink_metadata(&layer).expect("stat layer").is_dir(),
        "target replaced"
    );
    let mut out = names(&outside);
    out.sort();
    assert_eq!(out, ["canary", "dir"], "written into outside/");
    assert!(
        names(&outside.join("dir")).is_empty(),
        "written into outside/dir"
    );
    let after = fs::symlink_metadata(outside.join("canary")).expect("stat canary");
    assert_eq!(
        fs::read(outside.join("canary")).expect("read canary"),
        CANARY
    );
    assert!(after.is_file());
    assert_eq!(after.ino(), before.ino());
    assert_eq!(after.mode(), before.mode(), "canary mode changed");
    assert_eq!(
        (after.uid(), after.gid()),
        (before.uid(), before.gid()),
        "canary chowned"
    );
    assert_eq!(after.nlink(), 1, "canary linked into the layer");

    let mut seen = HashSet::new();
    let written = size_of(&layer, &mut seen);
    assert!(
        written <= MAX_BYTES,
        "{written} bytes unpacked from a {} byte archive (limit {MAX_BYTES})",
        data.len()
    );
});

fn names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Apparent size of the regular files below `dir`, each inode once.
fn size_of(dir: &Path, seen: &mut HashSet<u64>) -> u64 {
    let mut total = 0;
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        let Ok(md) = e.metadata() else { continue };
        if md.is_dir() {
            total += size_of(&e.path(), seen);
        } else if md.is_file() && seen.insert(md.ino()) {
            total += md.size();
        }
    }
    total
}
