//! Test support: a real `docker-registry` on 127.0.0.1 with a temp storage dir, a client pushing blobs and
//! manifests over the distribution API, layer/config builders, and a TCP proxy that can throttle or stall.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub const USER: &str = "crius";
pub const PASS: &str = "crius-pass";

pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub struct Registry {
    pub addr: String,
    pub dir: tempfile::TempDir,
    pub auth: bool,
    /// Token used by the push helpers against a token-auth registry.
    pub bearer: Option<String>,
    /// "http" or "https".
    pub scheme: &'static str,
    child: Child,
    pub log: PathBuf,
}

impl Registry {
    pub fn start(auth: bool) -> Registry {
        Self::start_with(auth, None)
    }

    /// A registry whose auth section is `auth_yaml` (already indented under `auth:`), pushing with `bearer`.
    pub fn start_token(auth_yaml: &str, bearer: String) -> Registry {
        Self::start_with(false, Some((auth_yaml.to_string(), bearer)))
    }

    /// A plain (no auth) registry serving HTTPS with the given certificate and key.
    pub fn start_tls(cert: &Path, key: &Path) -> Registry {
        let tls = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        );
        Self::start_full(false, None, Some(tls), None)
    }

    /// HTTPS with extra lines under `tls:` (e.g. `clientcas`).
    pub fn start_tls_extra(cert: &Path, key: &Path, extra: &str) -> Registry {
        let tls = format!(
            "  tls:\n    certificate: {}\n    key: {}\n{extra}",
            cert.display(),
            key.display()
        );
        Self::start_full(false, None, Some(tls), None)
    }

    /// HTTPS on the storage of another registry (`<other dir>/storage`).
    pub fn start_tls_on(cert: &Path, key: &Path, other_dir: &Path) -> Registry {
        let tls = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        );
        Self::start_full(false, None, Some(tls), Some(other_dir.join("storage")))
    }

    fn start_with(auth: bool, token: Option<(String, String)>) -> Registry {
        Self::start_full(auth, token, None, None)
    }

    fn start_full(
        auth: bool,
        token: Option<(String, String)>,
        tls: Option<String>,
        storage: Option<PathBuf>,
    ) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let storage = storage.unwrap_or_else(|| dir.path().join("storage"));
        std::fs::create_dir_all(&storage).unwrap();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            storage.display()
        );
        if auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", USER, PASS])
                .output()
                .expect("htpasswd");
            assert!(out.status.success());
            let hp = dir.path().join("htpasswd");
            std::fs::write(&hp, &out.stdout).unwrap();
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
                hp.display()
            ));
        }
        if let Some(t) = &tls {
            cfg.push_str(t);
        }
        if let Some((yaml, _)) = &token {
            cfg.push_str(&format!("auth:\n{yaml}"));
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = dir.path().join("registry.log");
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(logf.try_clone().unwrap())
            .spawn()
            .expect("spawn docker-registry");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            addr,
            dir,
            auth,
            bearer: token.map(|t| t.1),
            scheme: if tls.is_some() { "https" } else { "http" },
            child,
            log,
        }
    }

    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Number of blob GETs for `digest` seen in the registry's access log.
    pub fn blob_gets(&self, digest: &str) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter(|l| {
                l.contains("response completed")
                    && l.contains("http.request.method=GET")
                    && l.contains(&format!("/blobs/{digest}"))
                    && l.contains("http.response.status=200")
            })
            .count()
    }

    fn client(&self) -> reqwest::Client {
        // The test pushes to its own registry; trust is what the store under test must get right.
        reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap()
    }

    fn req(
        &self,
        client: &reqwest::Client,
        m: reqwest::Method,
        url: &str,
    ) -> reqwest::RequestBuilder {
        let r = client.request(m, url);
        if let Some(t) = &self.bearer {
            r.bearer_auth(t)
        } else if self.auth {
            r.basic_auth(USER, Some(PASS))
        } else {
            r
        }
    }

    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = digest(data);
        let client = self.client();
        let url = format!("{}://{}/v2/{repo}/blobs/uploads/", self.scheme, self.addr);
        let resp = self
            .req(&client, reqwest::Method::POST, &url)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "start upload");
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        let loc = if loc.starts_with('/') {
            format!("{}://{}{loc}", self.scheme, self.addr)
        } else {
            loc
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let resp = self
            .req(
                &client,
                reqwest::Method::PUT,
                &format!("{loc}{sep}digest={d}"),
            )
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "finish upload");
        d
    }

    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        data: &[u8],
    ) -> String {
        let client = self.client();
        let url = format!(
            "{}://{}/v2/{repo}/manifests/{reference}",
            self.scheme, self.addr
        );
        let resp = self
            .req(&client, reqwest::Method::PUT, &url)
            .header("content-type", media_type)
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "push manifest: {:?}", resp.text().await);
        digest(data)
    }

    /// Pushes config + layers + manifest; returns (manifest digest, image id).
    pub async fn push_image(&self, repo: &str, tag: &str, img: &TestImage) -> (String, String) {
        for l in &img.layers {
            self.push_blob(repo, &l.data).await;
        }
        let id = self.push_blob(repo, &img.config).await;
        let m = img.manifest();
        let md = self.push_manifest(repo, tag, OCI_MANIFEST, &m).await;
        (md, id)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

#[derive(Clone, Copy)]
pub enum Comp {
    Gzip,
    Zstd,
    None,
}

#[derive(Clone)]
pub struct Layer {
    pub data: Vec<u8>,
    pub diff_id: String,
    pub media_type: &'static str,
}

pub enum Entry<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Sym(&'a str, &'a str),
    /// A raw name written without the tar crate's path checks (for hostile layers).
    RawFile(&'a str, &'a [u8]),
}

pub fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            Entry::File(p, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_mode(*mode);
                b.append_data(&mut h, p, *data).unwrap();
            }
            Entry::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            Entry::Sym(p, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_mode(0o777);
                b.append_link(&mut h, p, t).unwrap();
            }
            Entry::RawFile(p, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                let name = &mut h.as_old_mut().name;
                name.fill(0);
                name[..p.len()].copy_from_slice(p.as_bytes());
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn layer(entries: &[Entry], comp: Comp) -> Layer {
    let tar = tar_of(entries);
    let diff_id = digest(&tar);
    let (data, media_type) = match comp {
        Comp::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&tar).unwrap();
            (
                enc.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        }
        Comp::Zstd => (
            zstd::encode_all(&tar[..], 3).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        Comp::None => (tar, "application/vnd.oci.image.layer.v1.tar"),
    };
    Layer {
        data,
        diff_id,
        media_type,
    }
}

pub struct TestImage {
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
}

impl TestImage {
    pub fn new(layers: Vec<Layer>, cmd: &[&str]) -> TestImage {
        Self::with_arch(layers, cmd, "amd64")
    }

    pub fn with_arch(layers: Vec<Layer>, cmd: &[&str], arch: &str) -> TestImage {
        let config = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": cmd, "Env": ["PATH=/bin"], "WorkingDir": "/", "Labels": {"test": "crius"}},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
        });
        TestImage {
            layers,
            config: serde_json::to_vec(&config).unwrap(),
        }
    }

    pub fn id(&self) -> String {
        digest(&self.config)
    }

    pub fn manifest(&self) -> Vec<u8> {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&self.config), "size": self.config.len()},
            "layers": self.layers.iter().map(|l| serde_json::json!({"mediaType": l.media_type, "digest": digest(&l.data), "size": l.data.len()})).collect::<Vec<_>>(),
        });
        serde_json::to_vec(&m).unwrap()
    }

    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.data.len() as u64).sum::<u64>() + self.config.len() as u64
    }
}

pub fn store(root: &Path, hosts: &Path) -> crius_image::ImageStore {
    let mut o = crius_image::StoreOptions::new(root);
    o.hosts_dir = hosts.to_path_buf();
    o.stall_timeout = Duration::from_secs(10);
    crius_image::ImageStore::open(o).expect("open store")
}

/// Forwards TCP to `upstream`; after `free_bytes` of response per connection it either sends `chunk`
/// bytes every `interval` (throttle) or nothing at all (stall, when `chunk == 0`).
pub struct Proxy {
    pub addr: String,
    pub connections: Arc<AtomicUsize>,
    pub served: Arc<AtomicU64>,
}

impl Proxy {
    /// Answers the first `busy` connections with `503 Service Unavailable`, then forwards to `upstream`.
    pub async fn start_busy(upstream: String, busy: usize) -> Proxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let c2 = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut down, _)) = l.accept().await {
                let n = c2.fetch_add(1, Ordering::SeqCst);
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if n < busy {
                        let mut buf = [0u8; 4096];
                        let _ = down.read(&mut buf).await;
                        let _ = down
                            .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                        let _ = down.shutdown().await;
                        return;
                    }
                    let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                });
            }
        });
        Proxy {
            addr,
            connections,
            served: Arc::new(AtomicU64::new(0)),
        }
    }

    pub async fn start(
        upstream: String,
        free_bytes: u64,
        chunk: usize,
        interval: Duration,
    ) -> Proxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicU64::new(0));
        let (c2, s2) = (connections.clone(), served.clone());
        tokio::spawn(async move {
            while let Ok((down, _)) = l.accept().await {
                c2.fetch_add(1, Ordering::SeqCst);
                let upstream = upstream.clone();
                let served = s2.clone();
                tokio::spawn(async move {
                    let Ok(up) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut dr, mut dw) = down.into_split();
                    let (mut ur, mut uw) = up.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut dr, &mut uw).await;
                    });
                    let mut sent = 0u64;
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match ur.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let mut off = 0;
                        while off < n {
                            let step = if sent < free_bytes {
                                ((free_bytes - sent) as usize).min(n - off)
                            } else if chunk == 0 {
                                // Stall forever (until the client gives up).
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                return;
                            } else {
                                tokio::time::sleep(interval).await;
                                chunk.min(n - off)
                            };
                            if dw.write_all(&buf[off..off + step]).await.is_err() {
                                return;
                            }
                            off += step;
                            sent += step as u64;
                            served.fetch_add(step as u64, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        Proxy {
            addr,
            connections,
            served,
        }
    }
}

/// Incompressible bytes, so compressed layer sizes are predictable.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
