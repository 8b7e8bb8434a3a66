//! Disk usage of directory trees (allocated bytes and inodes, hard links counted once).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::error::ImageError;

/// Sums allocated bytes and inodes below `roots`, never following symlinks. Entries vanishing during the
/// walk (a concurrent removal) are skipped.
pub(crate) fn walk(roots: &[PathBuf]) -> Result<(u64, u64), ImageError> {
    let mut seen = HashSet::new();
    let mut bytes = 0u64;
    let mut inodes = 0u64;
    let mut stack: Vec<PathBuf> = roots.to_vec();
    while let Some(p) = stack.pop() {
        let m = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ImageError::io(&p, e)),
        };
        if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
            continue;
        }
        bytes += m.blocks() * 512;
        inodes += 1;
        if m.is_dir() {
            let rd = match std::fs::read_dir(&p) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ImageError::io(&p, e)),
            };
            for e in rd {
                match e {
                    Ok(e) => stack.push(e.path()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(ImageError::io(&p, e)),
                }
            }
        }
    }
    Ok((bytes, inodes))
}
