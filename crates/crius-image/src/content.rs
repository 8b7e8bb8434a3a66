//! The content store (verified blobs under `blobs/sha256/<hex>`) and layer ingestion: one pass over the
//! compressed bytes that writes the blob, hashes it, decompresses, hashes the diff and unpacks the snapshot.
//! Nothing becomes visible under its final name before both digests have been checked.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{ImageError, IoContext};
use crate::reference::is_hex;
use crate::unpack;

#[derive(Debug, Clone)]
pub(crate) struct Content {
    pub root: PathBuf,
}

pub(crate) fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The hex part of a `sha256:` digest; other algorithms are refused.
pub(crate) fn digest_hex<'a>(what: &str, digest: &'a str) -> Result<&'a str, ImageError> {
    match digest.split_once(':') {
        Some(("sha256", h)) if h.len() == 64 && is_hex(h) => Ok(h),
        _ => Err(ImageError::Unsupported {
            what: what.to_string(),
            detail: format!("digest {digest:?} is not a sha256 digest"),
        }),
    }
}

pub(crate) fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl Content {
    pub fn new(root: &Path) -> Self {
        Content {
            root: root.to_path_buf(),
        }
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.blobs_dir().join(digest_hex("blob", digest)?))
    }

    pub fn snapshot_dir(&self, chain_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.snapshots_dir().join(digest_hex("snapshot", chain_id)?))
    }

    pub fn has_blob(&self, digest: &str, size: Option<u64>) -> bool {
        match self.blob_path(digest).map(std::fs::metadata) {
            Ok(Ok(m)) => size.is_none_or(|s| m.len() == s),
            _ => false,
        }
    }

    pub fn has_snapshot(&self, chain_id: &str) -> bool {
        self.snapshot_dir(chain_id)
            .map(|p| p.join("fs").is_dir())
            .unwrap_or(false)
    }

    /// Reads a whole (small) blob and checks its digest again: it is about to be parsed.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.blob_path(digest)?;
        let data = std::fs::read(&p).ctx(&p)?;
        let actual = sha256_digest(&data);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("stored blob {}", p.display()),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(data)
    }

    /// Stores a small blob already held in memory, after checking its digest.
    pub fn write_blob(&self, what: &str, digest: &str, data: &[u8]) -> Result<(), ImageError> {
        let actual = sha256_digest(data);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what: what.to_string(),
                expected: digest.to_string(),
                actual,
            });
        }
        let dst = self.blob_path(digest)?;
        if dst.exists() {
            return Ok(());
        }
        let tmp = self.tmp_dir().join(format!("blob-{}", random_suffix()));
        let res = (|| {
            let mut f = File::create(&tmp).ctx(&tmp)?;
            f.write_all(data).ctx(&tmp)?;
            f.sync_all().ctx(&tmp)?;
            std::fs::rename(&tmp, &dst).ctx(&dst)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }
}

/// What one layer ingestion must produce and check.
pub(crate) struct LayerJob {
    /// Human name for errors: `<image ref> layer <digest>`.
    pub name: String,
    pub digest: String,
    pub size: u64,
    pub diff_id: String,
    pub chain_id: String,
    /// Write the compressed bytes as a blob (false when the blob is already stored).
    pub store_blob: bool,
    /// Unpack into the snapshot (false when the snapshot already exists).
    pub unpack: bool,
    pub limits: crate::UnpackLimits,
}

/// Running hash, count and optional copy of the compressed bytes.
struct TeeState {
    file: Option<io::BufWriter<File>>,
    hasher: Sha256,
    count: u64,
    limit: u64,
}

/// Passes reads through while feeding them to a `TeeState`.
struct Tee<'a, R> {
    inner: &'a mut R,
    st: &'a mut TeeState,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.st.count += n as u64;
        if self.st.count > self.st.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob longer than its declared size {}", self.st.limit),
            ));
        }
        self.st.hasher.update(&buf[..n]);
        if let Some(f) = &mut self.st.file {
            f.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

/// Hashes and counts the uncompressed stream; refuses to read past `limit` bytes.
struct HashRead<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: u64,
}

impl<R> HashRead<R> {
    fn exceeded(&self) -> bool {
        self.count > self.limit
    }
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.exceeded() {
            return Err(io::Error::other("uncompressed layer exceeds its limit"));
        }
        // Never ask for more than one byte past the limit, so a bomb is caught before it is written.
        let room = (self.limit - self.count).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.count += n as u64;
        if self.exceeded() {
            return Err(io::Error::other("uncompressed layer exceeds its limit"));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Ingests one layer from `reader` (compressed bytes). Runs on a blocking thread.
pub(crate) fn ingest_layer<R: Read>(
    content: &Content,
    job: &LayerJob,
    reader: R,
) -> Result<(), ImageError> {
    let tmp_blob = content.tmp_dir().join(format!("layer-{}", random_suffix()));
    let tmp_snap = content
        .snapshots_dir()
        .join(format!("tmp-{}", random_suffix()));
    let res = ingest_inner(content, job, reader, &tmp_blob, &tmp_snap);
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp_blob);
        if tmp_snap.exists() {
            let _ = std::fs::remove_dir_all(&tmp_snap);
        }
    }
    res
}

fn ingest_inner<R: Read>(
    content: &Content,
    job: &LayerJob,
    mut reader: R,
    tmp_blob: &Path,
    tmp_snap: &Path,
) -> Result<(), ImageError> {
    let file = if job.store_blob {
        Some(io::BufWriter::with_capacity(
            256 * 1024,
            File::create(tmp_blob).ctx(tmp_blob)?,
        ))
    } else {
        None
    };
    let mut st = TeeState {
        file,
        hasher: Sha256::new(),
        count: 0,
        limit: job.size,
    };
    let fs_dir = tmp_snap.join("fs");
    if job.unpack {
        std::fs::create_dir_all(&fs_dir).ctx(&fs_dir)?;
        crate::crash_point("image.pull.unpack_started");
    }
    let decoded = decode_and_unpack(job, &mut reader, &mut st, &fs_dir);
    // Whatever trails the compressed stream (or was not read because unpacking failed) still belongs to
    // the blob: a corrupted blob must be reported as such, not as the tar error it caused.
    let drained = io::copy(
        &mut Tee {
            inner: &mut reader,
            st: &mut st,
        },
        &mut io::sink(),
    );
    let actual = format!("sha256:{}", hex::encode(st.hasher.clone().finalize()));
    if drained.is_ok() && (st.count != job.size || actual != job.digest) {
        return Err(ImageError::DigestMismatch {
            what: job.name.clone(),
            expected: format!("{} ({} bytes)", job.digest, job.size),
            actual: format!("{} ({} bytes)", actual, st.count),
        });
    }
    let diff_hash = decoded?;
    drained.map_err(|e| ImageError::Unpack {
        layer: job.name.clone(),
        entry: String::new(),
        reason: e.to_string(),
    })?;
    if diff_hash != job.diff_id {
        return Err(ImageError::DigestMismatch {
            what: format!("{} (uncompressed diff)", job.name),
            expected: job.diff_id.clone(),
            actual: diff_hash,
        });
    }
    if let Some(f) = st.file {
        let f = f
            .into_inner()
            .map_err(|e| ImageError::io(tmp_blob, e.into_error()))?;
        f.sync_all().ctx(tmp_blob)?;
        let dst = content.blob_path(&job.digest)?;
        std::fs::rename(tmp_blob, &dst).ctx(&dst)?;
    }
    if job.unpack {
        let dst = content.snapshot_dir(&job.chain_id)?;
        match std::fs::rename(tmp_snap, &dst) {
            Ok(()) => {}
            // Someone else committed the same snapshot first: theirs is identical.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {
                let _ = std::fs::remove_dir_all(tmp_snap);
            }
            Err(e) => return Err(ImageError::io(&dst, e)),
        }
        crate::crash_point("image.pull.layer_unpacked");
    }
    Ok(())
}

/// Decompresses (by magic bytes: registries mislabel media types) and unpacks; returns the diff digest.
fn decode_and_unpack<R: Read>(
    job: &LayerJob,
    reader: &mut R,
    st: &mut TeeState,
    fs_dir: &Path,
) -> Result<String, ImageError> {
    let io_err = |e: io::Error| ImageError::Unpack {
        layer: job.name.clone(),
        entry: String::new(),
        reason: e.to_string(),
    };
    let mut buffered = BufReader::with_capacity(256 * 1024, Tee { inner: reader, st });
    let magic = buffered.fill_buf().map_err(io_err)?.to_vec();
    let diff = if magic.starts_with(GZIP_MAGIC) {
        let dec = flate2::bufread::MultiGzDecoder::new(&mut buffered);
        run_diff(job, dec, fs_dir)?
    } else if magic.starts_with(ZSTD_MAGIC) {
        let dec = zstd::stream::read::Decoder::with_buffer(&mut buffered).map_err(io_err)?;
        run_diff(job, dec, fs_dir)?
    } else {
        run_diff(job, &mut buffered, fs_dir)?
    };
    // Bytes already buffered but not consumed by the decoder were hashed by the tee; nothing is lost.
    Ok(diff)
}

/// Unpacks (or just reads) the uncompressed stream, returning its digest and the decoder.
fn run_diff<D: Read>(job: &LayerJob, dec: D, fs_dir: &Path) -> Result<String, ImageError> {
    let mut hr = HashRead {
        inner: dec,
        hasher: Sha256::new(),
        count: 0,
        limit: job.limits.max_layer_unpacked_bytes,
    };
    let too_big = || ImageError::LayerLimit {
        layer: job.name.clone(),
        what: "uncompressed size",
        limit: job.limits.max_layer_unpacked_bytes,
        key: "max_layer_unpacked_bytes",
    };
    if job.unpack {
        let r = unpack::unpack_limited(
            &job.name,
            &mut hr,
            fs_dir,
            job.limits.max_layer_entries,
            job.limits.max_layer_unpacked_bytes,
        )
        .map(|_| ());
        if hr.exceeded() {
            return Err(too_big());
        }
        r?;
    }
    // The diff id covers the tar's trailing padding too, which the tar reader leaves unread.
    let r = io::copy(&mut hr, &mut io::sink());
    if hr.exceeded() {
        return Err(too_big());
    }
    r.map_err(|e| ImageError::Unpack {
        layer: job.name.clone(),
        entry: String::new(),
        reason: e.to_string(),
    })?;
    Ok(format!("sha256:{}", hex::encode(hr.hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_read_never_passes_more_than_one_byte_over_its_limit() {
        let data = vec![0u8; 10_000];
        let mut hr = HashRead {
            inner: &data[..],
            hasher: Sha256::new(),
            count: 0,
            limit: 4096,
        };
        let mut out = Vec::new();
        let r = io::copy(&mut hr, &mut out);
        assert!(r.is_err());
        assert!(hr.exceeded());
        assert!(out.len() <= 4096, "{} bytes passed", out.len());
        // Exactly at the limit is fine.
        let mut hr = HashRead {
            inner: &data[..4096],
            hasher: Sha256::new(),
            count: 0,
            limit: 4096,
        };
        assert_eq!(io::copy(&mut hr, &mut io::sink()).unwrap(), 4096);
        assert!(!hr.exceeded());
    }
}
