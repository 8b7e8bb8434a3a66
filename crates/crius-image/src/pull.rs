//! Pulling: resolve the reference to a manifest (choosing the host platform from an index), fetch the
//! config, then download and unpack all layers concurrently, each in a single streaming pass, and finally
//! record the image. Also the manifest/config parsing shared with import.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::content::{ingest_layer, LayerJob};
use crate::error::ImageError;
use crate::meta::{ImageRecord, LayerRecord};
use crate::reference;
use crate::registry::Session;
use crate::{hosts, to_image, Auth, Image, ImageConfig, ImageStore};

const MAX_CONFIG: usize = 32 << 20;
const MAX_CONCURRENT_LAYERS: usize = 6;

pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: Option<std::collections::HashMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Manifest {
    #[serde(rename = "schemaVersion", default)]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

pub(crate) fn parse_manifest(what: &str, data: &[u8]) -> Result<Manifest, ImageError> {
    let m: Manifest = serde_json::from_slice(data).map_err(|e| ImageError::Unsupported {
        what: what.to_string(),
        detail: format!("not a valid manifest: {e}"),
    })?;
    if m.schema_version == 1 {
        return Err(ImageError::Unsupported {
            what: what.to_string(),
            detail: "Docker schema 1 manifests are not supported".into(),
        });
    }
    Ok(m)
}

pub(crate) fn is_index(media_type: &str, m: &Manifest) -> bool {
    media_type == OCI_INDEX
        || media_type == DOCKER_LIST
        || m.media_type == OCI_INDEX
        || m.media_type == DOCKER_LIST
        || (m.config.is_none() && !m.manifests.is_empty())
}

/// Picks the linux/<host arch> manifest from an index.
pub(crate) fn select_platform(what: &str, m: &Manifest) -> Result<Descriptor, ImageError> {
    let arch = host_arch();
    let candidates: Vec<&Descriptor> = m
        .manifests
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .collect();
    // For arm64 prefer the v8 variant (or none); elsewhere the first match wins.
    let best = candidates
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .and_then(|p| p.variant.as_deref())
                .is_none_or(|v| arch != "arm64" || v == "v8")
        })
        .or(candidates.first());
    best.map(|d| (*d).clone())
        .ok_or_else(|| ImageError::NotFound {
            reference: format!("{what} for platform linux/{arch}"),
        })
}

pub(crate) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {d}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

pub(crate) fn diff_ids(what: &str, config: &[u8]) -> Result<Vec<String>, ImageError> {
    let v: Value = serde_json::from_slice(config).map_err(|e| ImageError::Unsupported {
        what: what.to_string(),
        detail: format!("image config is not JSON: {e}"),
    })?;
    let ids = v
        .pointer("/rootfs/diff_ids")
        .and_then(|x| x.as_array())
        .ok_or_else(|| ImageError::Unsupported {
            what: what.to_string(),
            detail: "image config has no rootfs.diff_ids".into(),
        })?;
    ids.iter()
        .map(|x| {
            x.as_str()
                .filter(|s| reference::is_digest(s))
                .map(str::to_string)
                .ok_or_else(|| ImageError::Unsupported {
                    what: what.to_string(),
                    detail: format!("invalid diff id {x}"),
                })
        })
        .collect()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(|x| x.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn keys(v: Option<&Value>) -> Vec<String> {
    let mut k: Vec<String> = v
        .and_then(|x| x.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// Extracts the runtime fields from a raw image config (missing fields are empty).
pub(crate) fn image_config(json: &str) -> ImageConfig {
    let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    let c = v.get("config");
    let s = |k: &str| {
        c.and_then(|c| c.get(k))
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string()
    };
    ImageConfig {
        user: s("User"),
        env: strings(c.and_then(|c| c.get("Env"))),
        entrypoint: strings(c.and_then(|c| c.get("Entrypoint"))),
        cmd: strings(c.and_then(|c| c.get("Cmd"))),
        working_dir: s("WorkingDir"),
        stop_signal: s("StopSignal"),
        labels: c
            .and_then(|c| c.get("Labels"))
            .and_then(|x| x.as_object())
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default(),
        volumes: keys(c.and_then(|c| c.get("Volumes"))),
        exposed_ports: keys(c.and_then(|c| c.get("ExposedPorts"))),
    }
}

/// Feeds downloaded chunks to the blocking ingest thread.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

fn join_err(what: &str, e: tokio::task::JoinError) -> ImageError {
    ImageError::Unpack {
        layer: what.to_string(),
        entry: String::new(),
        reason: format!("unpack task failed: {e}"),
    }
}

/// What is needed to record an image once its content is in place.
pub(crate) struct NewImage {
    pub config_digest: String,
    pub config_json: String,
    pub manifest_digest: String,
    pub index_digest: Option<String>,
    pub layers: Vec<LayerRecord>,
    pub chain: Vec<String>,
    pub config_size: u64,
    /// Tag references (`name:tag`) to point at this image.
    pub tags: Vec<String>,
    /// Repo digest (`name@digest`), if any.
    pub repo_digest: Option<String>,
}

impl ImageStore {
    /// Pulls an image and returns its record. Concurrent pulls of the same content share downloads.
    pub async fn pull(&self, reference: &str, auth: Option<&Auth>) -> Result<Image, ImageError> {
        let r = reference::parse(reference)?;
        let eps = hosts::endpoints(&self.hosts_dir(), &r.registry)?;
        let stall = self.options().stall_timeout;
        let session = Arc::new(Session::new(
            self.inner.clients.clone(),
            r.clone(),
            eps,
            auth,
            stall,
        )?);
        let what = r.to_string();
        let top = session.manifest(r.object()).await?;
        let mut lease = self.lease();
        let top_m = parse_manifest(&what, &top.data)?;
        let (manifest_bytes, manifest_digest, index) = if is_index(&top.media_type, &top_m) {
            let d = select_platform(&what, &top_m)?;
            let m = session.manifest(&d.digest).await?;
            if m.data.len() as u64 != d.size {
                return Err(ImageError::DigestMismatch {
                    what: format!("{what} manifest {}", d.digest),
                    expected: format!("{} bytes", d.size),
                    actual: format!("{} bytes", m.data.len()),
                });
            }
            (
                m.data,
                m.digest,
                Some((top.digest.clone(), top.data.clone())),
            )
        } else {
            (top.data.clone(), top.digest.clone(), None)
        };
        let manifest = parse_manifest(&what, &manifest_bytes)?;
        if index.is_some() && is_index("", &manifest) {
            return Err(ImageError::Unsupported {
                what,
                detail: "nested image index".into(),
            });
        }
        let config_desc = manifest
            .config
            .clone()
            .ok_or_else(|| ImageError::Unsupported {
                what: what.clone(),
                detail: "manifest has no config".into(),
            })?;
        if let Some(l) = manifest
            .layers
            .iter()
            .find(|l| l.media_type.ends_with("+encrypted"))
        {
            return Err(ImageError::Unsupported {
                what,
                detail: format!("layer {} is encrypted ({})", l.digest, l.media_type),
            });
        }
        let mut blobs = vec![manifest_digest.clone(), config_desc.digest.clone()];
        blobs.extend(index.iter().map(|(d, _)| d.clone()));
        blobs.extend(manifest.layers.iter().map(|l| l.digest.clone()));
        lease.add(&blobs, &[]);

        let content = self.content();
        let config = if content.has_blob(&config_desc.digest, Some(config_desc.size)) {
            content.read_blob(&config_desc.digest)?
        } else {
            let data = session.small_blob(&config_desc.digest, MAX_CONFIG).await?;
            self.write_blob_off_worker(
                format!("{what} config"),
                &config_desc.digest,
                data.to_vec(),
            )
            .await?;
            data.to_vec()
        };
        crate::crash_point("image.pull.config_stored");
        let diffs = diff_ids(&what, &config)?;
        if diffs.len() != manifest.layers.len() {
            return Err(ImageError::Unsupported {
                what,
                detail: format!(
                    "manifest has {} layers but the config lists {} diff ids",
                    manifest.layers.len(),
                    diffs.len()
                ),
            });
        }
        let chain = chain_ids(&diffs);
        lease.add(&[], &chain);

        // Owned jobs: a stream of futures borrowing the manifest trips the compiler's higher-ranked
        // lifetime check once the pull future is spawned.
        let jobs: Vec<LayerJob> = manifest
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerJob {
                name: format!("{what} layer {}", l.digest),
                digest: l.digest.clone(),
                size: l.size,
                diff_id: diffs[i].clone(),
                chain_id: chain[i].clone(),
                store_blob: true,
                unpack: true,
                limits: self.options().limits,
            })
            .collect();
        let jobs = jobs
            .into_iter()
            .map(|job| self.ensure_layer(session.clone(), job));
        // Bounded like containerd's max_concurrent_downloads, so a 100-layer image does not open 100
        // connections to one registry.
        // Every job runs to its end before a failure is reported: dropping the others mid-way would
        // leave their blocking unpack threads finishing (and cleaning up) after the pull returned.
        {
            use futures::stream::StreamExt;
            let results: Vec<Result<(), ImageError>> = futures::stream::iter(jobs)
                .buffer_unordered(MAX_CONCURRENT_LAYERS)
                .collect()
                .await;
            if let Some(e) = results.into_iter().find_map(Result::err) {
                return Err(e);
            }
        }

        self.write_blob_off_worker(
            format!("{what} manifest"),
            &manifest_digest,
            manifest_bytes.to_vec(),
        )
        .await?;
        if let Some((d, data)) = &index {
            self.write_blob_off_worker(format!("{what} index"), d, data.to_vec())
                .await?;
        }
        let repo_digest = r.with_digest(
            index
                .as_ref()
                .map(|(d, _)| d.as_str())
                .unwrap_or(&manifest_digest),
        );
        let config_json = String::from_utf8(config).map_err(|_| ImageError::Unsupported {
            what: what.clone(),
            detail: "image config is not UTF-8".into(),
        })?;
        crate::crash_point("image.pull.blobs_stored");
        let store = self.clone();
        let commit = NewImage {
            config_digest: config_desc.digest.clone(),
            config_json,
            manifest_digest,
            index_digest: index.map(|(d, _)| d),
            layers: manifest
                .layers
                .iter()
                .map(|l| LayerRecord {
                    digest: l.digest.clone(),
                    size: l.size,
                    media_type: l.media_type.clone(),
                })
                .collect(),
            chain,
            config_size: config_desc.size,
            tags: if r.digest.is_none() {
                r.tagged().into_iter().collect()
            } else {
                Vec::new()
            },
            repo_digest: Some(repo_digest),
        };
        // A durable metadata commit (fsync): off the async workers.
        let img = tokio::task::spawn_blocking(move || store.commit_image(commit))
            .await
            .map_err(|e| join_err(&what, e))??;
        crate::crash_point("image.pull.committed");
        drop(lease);
        Ok(img)
    }

    /// Stores a small blob (config, manifest, index) on a blocking thread: it is written and fsynced.
    async fn write_blob_off_worker(
        &self,
        what: String,
        digest: &str,
        data: Vec<u8>,
    ) -> Result<(), ImageError> {
        let (content, digest) = (self.content().clone(), digest.to_string());
        let name = what.clone();
        tokio::task::spawn_blocking(move || content.write_blob(&what, &digest, &data))
            .await
            .map_err(|e| join_err(&name, e))?
    }

    /// Makes sure one layer's blob and snapshot exist, downloading/unpacking at most once at a time.
    pub(crate) async fn ensure_layer(
        &self,
        session: Arc<Session>,
        mut job: LayerJob,
    ) -> Result<(), ImageError> {
        // Distinct key spaces: for an uncompressed bottom layer, blob digest == diff id == chain id.
        let _blob_lock = self.inflight(&format!("blob {}", job.digest)).await;
        let _snap_lock = self.inflight(&format!("snapshot {}", job.chain_id)).await;
        let content = self.content().clone();
        let have_blob = content.has_blob(&job.digest, Some(job.size));
        let have_snap = content.has_snapshot(&job.chain_id);
        if have_blob && have_snap {
            return Ok(());
        }
        job.store_blob = !have_blob;
        job.unpack = !have_snap;
        let name = job.name.clone();
        if have_blob {
            let path = content.blob_path(&job.digest)?;
            return tokio::task::spawn_blocking(move || {
                let f = std::fs::File::open(&path).map_err(|e| ImageError::io(&path, e))?;
                ingest_layer(&content, &job, f)
            })
            .await
            .map_err(|e| join_err(&name, e))?;
        }
        let mut resp = session.blob(&job.digest).await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(64);
        let handle = tokio::task::spawn_blocking(move || {
            ingest_layer(
                &content,
                &job,
                ChannelReader {
                    rx,
                    cur: Bytes::new(),
                },
            )
        });
        let mut download_err = None;
        loop {
            match session.next_chunk(&mut resp, &name).await {
                Ok(Some(c)) => {
                    if tx.send(Ok(c)).await.is_err() {
                        // The ingest side failed; its error is the one to report.
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                    download_err = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let res = handle.await.map_err(|e| join_err(&name, e))?;
        if let Some(e) = download_err {
            return Err(e);
        }
        res
    }

    /// Records a fully stored image, moving its tag from any previous holder.
    pub(crate) fn commit_image(&self, n: NewImage) -> Result<Image, ImageError> {
        let size = n.layers.iter().map(|l| l.size).sum::<u64>() + n.config_size;
        let rec = self.meta().update(|t| {
            let mut rec = match t.get_image(&n.config_digest)? {
                Some(mut old) => {
                    // Same config, maybe a different manifest (e.g. recompressed): newest wins.
                    old.manifest_digest = n.manifest_digest.clone();
                    old.index_digest = n.index_digest.clone().or(old.index_digest);
                    old.layers = n.layers.clone();
                    old.size = size;
                    old
                }
                None => ImageRecord {
                    id: n.config_digest.clone(),
                    repo_tags: Vec::new(),
                    repo_digests: Vec::new(),
                    size,
                    pinned: false,
                    config_json: n.config_json.clone(),
                    manifest_digest: n.manifest_digest.clone(),
                    index_digest: n.index_digest.clone(),
                    layers: n.layers.clone(),
                    chain: n.chain.clone(),
                },
            };
            t.put_image(&rec)?;
            for tag in &n.tags {
                t.set_ref(tag, &rec.id, true)?;
            }
            if let Some(d) = &n.repo_digest {
                t.set_ref(d, &rec.id, false)?;
            }
            if let Some(r) = t.get_image(&rec.id)? {
                rec = r;
            }
            Ok(rec)
        })?;
        to_image(&rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        let expect = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(format!("{a} {b}").as_bytes()))
        );
        assert_eq!(c[1], expect);
    }

    #[test]
    fn image_config_fields() {
        let j = r#"{"config":{"User":"1000","Env":["A=1"],"Entrypoint":["/bin/sh"],"Cmd":["-c","x"],
            "WorkingDir":"/w","StopSignal":"SIGINT","Labels":{"k":"v"},"Volumes":{"/data":{}},
            "ExposedPorts":{"80/tcp":{}}},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let c = image_config(j);
        assert_eq!(c.user, "1000");
        assert_eq!(c.env, ["A=1"]);
        assert_eq!(c.entrypoint, ["/bin/sh"]);
        assert_eq!(c.cmd, ["-c", "x"]);
        assert_eq!(c.working_dir, "/w");
        assert_eq!(c.stop_signal, "SIGINT");
        assert_eq!(c.labels.get("k").map(String::as_str), Some("v"));
        assert_eq!(c.volumes, ["/data"]);
        assert_eq!(c.exposed_ports, ["80/tcp"]);
        assert_eq!(image_config("{}"), ImageConfig::default());
    }

    #[test]
    fn selects_host_platform() {
        let arch = host_arch();
        let j = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"m","digest":"sha256:{}","size":1,"platform":{{"os":"linux","architecture":"s390x"}}}},
            {{"mediaType":"m","digest":"sha256:{}","size":2,"platform":{{"os":"windows","architecture":"{arch}"}}}},
            {{"mediaType":"m","digest":"sha256:{}","size":3,"platform":{{"os":"linux","architecture":"{arch}"}}}}]}}"#,
            "1".repeat(64),
            "2".repeat(64),
            "3".repeat(64)
        );
        let m = parse_manifest("x", j.as_bytes()).unwrap();
        assert!(is_index("", &m));
        assert_eq!(select_platform("x", &m).unwrap().size, 3);
        let none = parse_manifest("x", br#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
        assert!(matches!(
            select_platform("x", &none),
            Err(ImageError::NotFound { .. })
        ));
        assert!(parse_manifest("x", br#"{"schemaVersion":1}"#).is_err());
    }
}
