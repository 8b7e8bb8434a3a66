//! Importing images from an OCI image layout tar or a `docker save` tar. The archive is first staged
//! under `tmp/` (regular files only, names checked like layer entries), then every blob is verified
//! against its digest and layers go through the same ingest path as pulls.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::content::{digest_hex, ingest_layer, random_suffix, sha256_digest, LayerJob};
use crate::error::{ImageError, IoContext};
use crate::meta::LayerRecord;
use crate::pull::{chain_ids, diff_ids, is_index, parse_manifest, select_platform, NewImage};
use crate::reference;
use crate::unpack::safe_components;
use crate::ImageStore;

const NAME_ANNOTATIONS: [&str; 2] = [
    "io.containerd.image.name",
    "org.opencontainers.image.ref.name",
];

/// The extracted archive: regular files on disk plus the symlinks it contained (old `docker save`
/// links duplicate layers), resolved lexically inside the archive.
struct Staged {
    dir: PathBuf,
    links: HashMap<String, String>,
    archive: String,
}

impl Staged {
    fn path(&self, rel: &str) -> Result<PathBuf, ImageError> {
        let mut cur = normalize(rel).ok_or_else(|| self.bad(rel, "path escapes the archive"))?;
        for _ in 0..16 {
            match self.links.get(&cur) {
                Some(t) => cur = t.clone(),
                None => return Ok(self.dir.join(&cur)),
            }
        }
        Err(self.bad(rel, "too many symlinks"))
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.path(rel)?;
        match std::fs::read(&p) {
            Ok(d) => Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(self.bad(rel, "missing from the archive"))
            }
            Err(e) => Err(ImageError::io(p, e)),
        }
    }

    fn bad(&self, entry: &str, detail: &str) -> ImageError {
        ImageError::Unsupported {
            what: self.archive.clone(),
            detail: format!("{entry}: {detail}"),
        }
    }

    /// Reads a blob of an OCI layout and checks it against its descriptor.
    fn blob(&self, digest: &str, size: u64) -> Result<Vec<u8>, ImageError> {
        let hex = digest_hex(&self.archive, digest)?;
        let data = self.read(&format!("blobs/sha256/{hex}"))?;
        let actual = sha256_digest(&data);
        if actual != digest || data.len() as u64 != size {
            return Err(ImageError::DigestMismatch {
                what: format!("{} blob {digest}", self.archive),
                expected: format!("{digest} ({size} bytes)"),
                actual: format!("{actual} ({} bytes)", data.len()),
            });
        }
        Ok(data)
    }
}

/// Lexical normalisation inside the archive; `None` if it climbs above the root.
fn normalize(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

fn file_digest(path: &Path) -> Result<(String, u64), ImageError> {
    let mut f = std::fs::File::open(path).ctx(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).ctx(path)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((format!("sha256:{}", hex::encode(h.finalize())), n))
}

fn sniff_layer_type(path: &Path) -> Result<&'static str, ImageError> {
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).ctx(path)?;
    let n = f.read(&mut magic).ctx(path)?;
    Ok(if magic[..n].starts_with(&[0x1f, 0x8b]) {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    } else if magic[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    } else {
        "application/vnd.docker.image.rootfs.diff.tar"
    })
}

impl ImageStore {
    /// Imports every image of an OCI layout tar or `docker save` tar (optionally gzip/zstd compressed).
    /// Returns the normalised references imported (the image id for unnamed images).
    pub fn import(&self, path: &Path) -> Result<Vec<String>, ImageError> {
        let stage = self
            .content()
            .tmp_dir()
            .join(format!("import-{}", random_suffix()));
        std::fs::create_dir_all(&stage).ctx(&stage)?;
        let res = self
            .stage(path, &stage)
            .and_then(|s| self.import_staged(&s));
        let _ = std::fs::remove_dir_all(&stage);
        res
    }

    fn stage(&self, path: &Path, dir: &Path) -> Result<Staged, ImageError> {
        let archive = path.display().to_string();
        let f = std::fs::File::open(path).ctx(path)?;
        let mut r = BufReader::with_capacity(256 * 1024, f);
        let magic = r.fill_buf().ctx(path)?.to_vec();
        let reader: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::bufread::MultiGzDecoder::new(r))
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Box::new(zstd::stream::read::Decoder::with_buffer(r).ctx(path)?)
        } else {
            Box::new(r)
        };
        let mut links = HashMap::new();
        let mut ar = tar::Archive::new(reader);
        for entry in ar.entries().ctx(path)? {
            let mut entry = entry.ctx(path)?;
            let raw = entry.path_bytes().into_owned();
            let comps = safe_components(&archive, &raw)?;
            let rel = comps
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("/");
            if rel.is_empty() {
                continue;
            }
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let dst = dir.join(&rel);
                    if let Some(p) = dst.parent() {
                        std::fs::create_dir_all(p).ctx(p)?;
                    }
                    let mut out = std::fs::File::create(&dst).ctx(&dst)?;
                    std::io::copy(&mut entry, &mut out).ctx(&dst)?;
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                        rel.rsplit_once('/')
                            .map(|(d, _)| d.to_string())
                            .unwrap_or_default()
                    } else {
                        String::new()
                    };
                    let resolved = normalize(&format!("{base}/{target}")).ok_or_else(|| {
                        ImageError::UnsafeLayerEntry {
                            layer: archive.clone(),
                            entry: rel.clone(),
                            reason: format!("link target {target:?} leaves the archive"),
                        }
                    })?;
                    links.insert(rel, resolved);
                }
                _ => {}
            }
        }
        Ok(Staged {
            dir: dir.to_path_buf(),
            links,
            archive,
        })
    }

    fn import_staged(&self, s: &Staged) -> Result<Vec<String>, ImageError> {
        if s.path("index.json")?.is_file() {
            self.import_oci(s)
        } else if s.path("manifest.json")?.is_file() {
            self.import_docker(s)
        } else {
            Err(s.bad("", "neither an OCI image layout (index.json) nor a docker save archive (manifest.json)"))
        }
    }

    fn import_oci(&self, s: &Staged) -> Result<Vec<String>, ImageError> {
        let index = parse_manifest(&s.archive, &s.read("index.json")?)?;
        let mut out = Vec::new();
        for desc in &index.manifests {
            let name = desc
                .annotations
                .as_ref()
                .and_then(|a| NAME_ANNOTATIONS.iter().find_map(|k| a.get(*k)))
                // A bare tag ("v1") names nothing we could pull again; only full references count.
                .filter(|n| n.contains('/') || n.contains(':'))
                .map(|n| reference::parse(n))
                .transpose()?;
            let top = s.blob(&desc.digest, desc.size)?;
            let top_m = parse_manifest(&s.archive, &top)?;
            let (mdesc_digest, manifest_bytes, index_digest) = if is_index(&desc.media_type, &top_m)
            {
                let d = select_platform(&s.archive, &top_m)?;
                let data = s.blob(&d.digest, d.size)?;
                self.content().write_blob(&s.archive, &desc.digest, &top)?;
                (d.digest, data, Some(desc.digest.clone()))
            } else {
                (desc.digest.clone(), top, None)
            };
            let manifest = parse_manifest(&s.archive, &manifest_bytes)?;
            let config_desc = manifest
                .config
                .clone()
                .ok_or_else(|| s.bad(&mdesc_digest, "manifest has no config"))?;
            let config = s.blob(&config_desc.digest, config_desc.size)?;
            let layers: Vec<(String, u64, String, PathBuf)> = manifest
                .layers
                .iter()
                .map(|l| {
                    let hex = digest_hex(&s.archive, &l.digest)?;
                    Ok((
                        l.digest.clone(),
                        l.size,
                        l.media_type.clone(),
                        s.path(&format!("blobs/sha256/{hex}"))?,
                    ))
                })
                .collect::<Result<_, ImageError>>()?;
            let id = self.import_one(
                s,
                &config_desc.digest,
                &config,
                &mdesc_digest,
                &manifest_bytes,
                index_digest.clone(),
                layers,
                name.as_ref().and_then(|n| n.tagged()).into_iter().collect(),
                name.as_ref().map(|n| n.with_digest(&desc.digest)),
            )?;
            out.push(name.and_then(|n| n.tagged()).unwrap_or(id));
        }
        Ok(out)
    }

    fn import_docker(&self, s: &Staged) -> Result<Vec<String>, ImageError> {
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(rename = "Config")]
            config: String,
            #[serde(rename = "RepoTags", default)]
            repo_tags: Option<Vec<String>>,
            #[serde(rename = "Layers", default)]
            layers: Vec<String>,
        }
        let entries: Vec<Entry> = serde_json::from_slice(&s.read("manifest.json")?)
            .map_err(|e| s.bad("manifest.json", &format!("invalid: {e}")))?;
        let mut out = Vec::new();
        for e in entries {
            let config = s.read(&e.config)?;
            let config_digest = sha256_digest(&config);
            // Old docker names the config after its digest: check it when it does.
            let stem = e
                .config
                .rsplit('/')
                .next()
                .unwrap_or("")
                .trim_end_matches(".json");
            if stem.len() == 64
                && reference::is_hex(stem)
                && config_digest != format!("sha256:{stem}")
            {
                return Err(ImageError::DigestMismatch {
                    what: format!("{} config {}", s.archive, e.config),
                    expected: format!("sha256:{stem}"),
                    actual: config_digest,
                });
            }
            let mut layers = Vec::new();
            let mut descs = Vec::new();
            for l in &e.layers {
                let p = s.path(l)?;
                let (digest, size) = file_digest(&p)?;
                let mt = sniff_layer_type(&p)?;
                descs.push(serde_json::json!({"mediaType": mt, "size": size, "digest": digest}));
                layers.push((digest, size, mt.to_string(), p));
            }
            let manifest = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                           "size": config.len(), "digest": config_digest},
                "layers": descs,
            }))
            .map_err(|e| s.bad("manifest.json", &e.to_string()))?;
            let manifest_digest = sha256_digest(&manifest);
            let tags: Vec<String> = e
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| reference::parse(t).map(|r| r.tagged().unwrap_or_else(|| r.to_string())))
                .collect::<Result<_, _>>()?;
            let id = self.import_one(
                s,
                &config_digest,
                &config,
                &manifest_digest,
                &manifest,
                None,
                layers,
                tags.clone(),
                None,
            )?;
            if tags.is_empty() {
                out.push(id);
            } else {
                out.extend(tags);
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn import_one(
        &self,
        s: &Staged,
        config_digest: &str,
        config: &[u8],
        manifest_digest: &str,
        manifest: &[u8],
        index_digest: Option<String>,
        layers: Vec<(String, u64, String, PathBuf)>,
        tags: Vec<String>,
        repo_digest: Option<String>,
    ) -> Result<String, ImageError> {
        let what = s.archive.clone();
        let diffs = diff_ids(&what, config)?;
        if diffs.len() != layers.len() {
            return Err(s.bad(
                manifest_digest,
                "layer count differs from the config's diff ids",
            ));
        }
        let chain = chain_ids(&diffs);
        let mut lease = self.lease();
        let mut blobs: Vec<String> = layers.iter().map(|l| l.0.clone()).collect();
        blobs.push(config_digest.to_string());
        blobs.push(manifest_digest.to_string());
        blobs.extend(index_digest.iter().cloned());
        lease.add(&blobs, &chain);
        let content = self.content();
        content.write_blob(&format!("{what} config"), config_digest, config)?;
        content.write_blob(&format!("{what} manifest"), manifest_digest, manifest)?;
        for (i, (digest, size, _, path)) in layers.iter().enumerate() {
            let job = LayerJob {
                name: format!("{what} layer {digest}"),
                digest: digest.clone(),
                size: *size,
                diff_id: diffs[i].clone(),
                chain_id: chain[i].clone(),
                store_blob: !content.has_blob(digest, Some(*size)),
                unpack: !content.has_snapshot(&chain[i]),
                limits: self.options().limits,
            };
            if !job.store_blob && !job.unpack {
                continue;
            }
            let f = std::fs::File::open(path).ctx(path)?;
            ingest_layer(content, &job, f)?;
        }
        let img = self.commit_image(NewImage {
            config_digest: config_digest.to_string(),
            config_json: String::from_utf8_lossy(config).into_owned(),
            manifest_digest: manifest_digest.to_string(),
            index_digest,
            layers: layers
                .iter()
                .map(|(d, sz, mt, _)| LayerRecord {
                    digest: d.clone(),
                    size: *sz,
                    media_type: mt.clone(),
                })
                .collect(),
            chain,
            config_size: config.len() as u64,
            tags,
            repo_digest,
        })?;
        drop(lease);
        Ok(img.id)
    }
}
