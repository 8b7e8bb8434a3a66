//! Fixtures for the real-plugin tests: a private bridge/subnet/conf dir per test, named network
//! namespaces, and TCP endpoints created inside a namespace.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crius_network::{Cni, CniConfig, PodNetwork};

pub const BIN_DIR: &str = "/usr/lib/cni";

static NEXT: AtomicU32 = AtomicU32::new(0);

pub fn unique() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    (std::process::id() as u64) << 32 ^ nanos ^ (NEXT.fetch_add(1, Ordering::SeqCst) as u64) << 20
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A network of its own: bridge `crtest<N>`, subnet 10.99.<N>.0/24, host-local data in a temp dir.
pub struct TestNet {
    pub n: u8,
    pub name: String,
    pub bridge: String,
    pub tmp: tempfile::TempDir,
    pub conf_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub data_dir: PathBuf,
}

impl TestNet {
    pub fn new() -> TestNet {
        let tmp = tempfile::tempdir().unwrap();
        // Pick a bridge number nobody on this host uses right now.
        let mut n = 0u8;
        for attempt in 0..200u64 {
            let cand = (100 + (unique().wrapping_add(attempt * 7919) % 150)) as u8;
            if !Path::new(&format!("/sys/class/net/crtest{cand}")).exists()
                && !in_nat_table(cand)
                && claim(cand)
            {
                n = cand;
                break;
            }
        }
        assert!(n != 0, "no free crtest bridge number");
        let net = TestNet {
            n,
            name: format!("crtest{n}"),
            bridge: format!("crtest{n}"),
            conf_dir: tmp.path().join("net.d"),
            cache_dir: tmp.path().join("cache"),
            data_dir: tmp.path().join("ipam"),
            tmp,
        };
        std::fs::create_dir_all(&net.conf_dir).unwrap();
        net.write_conf("10-test.conflist", &net.conflist());
        net
    }

    pub fn conflist(&self) -> String {
        format!(
            r#"{{
  "cniVersion": "1.0.0",
  "name": "{name}",
  "plugins": [
    {{ "type": "bridge", "bridge": "{br}", "isGateway": true, "ipMasq": true, "hairpinMode": true,
       "ipam": {{ "type": "host-local", "dataDir": "{data}", "routes": [{{ "dst": "0.0.0.0/0" }}],
                  "ranges": [[{{ "subnet": "10.99.{n}.0/24" }}]] }} }},
    {{ "type": "portmap", "capabilities": {{ "portMappings": true }}, "snat": true }}
  ]
}}"#,
            name = self.name,
            br = self.bridge,
            data = self.data_dir.display(),
            n = self.n
        )
    }

    pub fn write_conf(&self, file: &str, body: &str) {
        std::fs::write(self.conf_dir.join(file), body).unwrap();
    }

    pub fn cni(&self) -> Cni {
        Cni::with_plugin_timeout(
            CniConfig {
                conf_dir: self.conf_dir.clone(),
                bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from(BIN_DIR)],
                cache_dir: self.cache_dir.clone(),
            },
            Duration::from_secs(30),
        )
    }

    /// host-local keeps one file per address under <dataDir>/<network name>.
    pub fn ipam_dir(&self) -> PathBuf {
        self.data_dir.join(&self.name)
    }

    pub fn gateway(&self) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::new(10, 99, self.n, 1)
    }
}

/// Whether some earlier run left NAT rules for network `crtest<n>` (then that number is not fresh).
fn in_nat_table(n: u8) -> bool {
    let out = Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("\\\"crtest{n}\\\""))
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // A test that failed half-way still tears its pods down (from the cache, like a restarted
        // daemon would), so one failure does not leave rules behind for later runs.
        let cni = self.cni();
        let ids = cni.cached_pods();
        if !ids.is_empty() {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    for id in ids {
                        let p = PodNetwork {
                            id,
                            ..Default::default()
                        };
                        let _ =
                            tokio::time::timeout(Duration::from_secs(30), cni.teardown(&p)).await;
                    }
                    cni.settle().await;
                })
            })
            .join();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        let _ = std::fs::remove_file(claim_path(self.n));
    }
}

fn claim_path(n: u8) -> PathBuf {
    PathBuf::from(format!("/tmp/crius-network-test-crtest{n}.lock"))
}

/// Exclusive claim on a bridge number across concurrently running test binaries.
fn claim(n: u8) -> bool {
    let path = claim_path(n);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(_) => true,
        Err(_) => {
            // A claim left by a crashed run is stale when its bridge is gone and it is old.
            let stale = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .map(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(600))
                .unwrap_or(false);
            stale && std::fs::remove_file(&path).is_ok() && claim(n)
        }
    }
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    pub name: String,
    pub path: PathBuf,
}

impl Netns {
    pub fn new() -> Netns {
        let name = format!("crius-test-{:x}", unique());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip netns add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns {
            path: PathBuf::from("/run/netns").join(&name),
            name,
        }
    }

    /// Runs `f` on a thread that joined this namespace; sockets made there belong to it.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path.clone();
        std::thread::spawn(move || {
            let f_ns = std::fs::File::open(&path).unwrap();
            nix::sched::setns(f_ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    pub fn listen(&self, addr: &str) -> TcpListener {
        let addr: SocketAddr = addr.parse().unwrap();
        self.run(move || TcpListener::bind(addr).unwrap())
    }

    pub fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        self.run(move || TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

pub fn pod(id: &str, ns: &Netns) -> PodNetwork {
    PodNetwork {
        id: id.to_string(),
        name: format!("pod-{id}"),
        namespace: "crius-test".into(),
        uid: format!("uid-{id}"),
        netns: ns.path.clone(),
        ..Default::default()
    }
}

pub fn pod_id() -> String {
    format!("{:016x}{:016x}", unique(), unique().rotate_left(17))
}

/// Accepts one connection on `l` and echoes what it reads back, within a few seconds.
pub fn echo_once(l: TcpListener) -> std::thread::JoinHandle<std::io::Result<()>> {
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        l.set_nonblocking(false)?;
        let (mut s, _) = l.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf)?;
        s.write_all(&buf[..n])?;
        Ok(())
    })
}

/// Sends `msg` and expects it echoed.
pub fn roundtrip(mut s: TcpStream, msg: &[u8]) {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(msg).unwrap();
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(buf, msg);
}

pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}
