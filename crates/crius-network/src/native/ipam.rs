//! Address reservations of the native network, on disk in the CNI `host-local` plugin's format so
//! that both can serve one subnet side by side (a node switching between the embedded CNI list and
//! the native network, or two daemons on one bridge): one file per reserved address holding
//! `<pod id>\r\n<ifname>`, `last_reserved_ip.0` for round-robin allocation, and `lock` taken with
//! flock(2) around every change. Reservations live on disk, so they survive a daemon restart; a
//! teardown (also the one recovery runs for a pod killed mid-life) releases them by pod id.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const LAST_RESERVED: &str = "last_reserved_ip.0";
const LINE_BREAK: &str = "\r\n";

/// An IPv4 subnet, e.g. 10.85.0.0/16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(s: &str) -> Result<Subnet, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (address/prefix)"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 30).ok_or_else(|| {
            format!("{s:?}: the prefix must be 0..=30 (room for a gateway and a pod)")
        })?;
        let net = Subnet {
            network: Ipv4Addr::from(u32::from(addr) & Self::mask_of(prefix)),
            prefix,
        };
        if net.network != addr {
            return Err(format!("{s:?} has host bits set (the network is {net})"));
        }
        Ok(net)
    }

    fn mask_of(prefix: u8) -> u32 {
        u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0)
    }

    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(Self::mask_of(self.prefix))
    }

    /// The first host address, the bridge's (as host-local's default gateway).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    fn broadcast(&self) -> u32 {
        u32::from(self.network) | !Self::mask_of(self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_of(self.prefix) == u32::from(self.network)
    }

    /// Pod addresses: after the gateway, before the broadcast address.
    fn pod_range(&self) -> (u32, u32) {
        (u32::from(self.network) + 2, self.broadcast() - 1)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("no free address left in {subnet} (reservations in {})", dir.display())]
    Exhausted { subnet: Subnet, dir: PathBuf },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> IpamError + '_ {
    move |source| IpamError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The reservations of one subnet in one directory.
pub struct Ipam {
    dir: PathBuf,
    subnet: Subnet,
}

/// The directory lock, released on drop (closing the fd drops the flock).
struct Locked(#[allow(dead_code)] File);

impl Ipam {
    pub fn new(dir: PathBuf, subnet: Subnet) -> Ipam {
        Ipam { dir, subnet }
    }

    fn lock(&self) -> Result<Locked, IpamError> {
        if !self.dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&self.dir)
                .map_err(io_at(&self.dir))?;
        }
        let path = self.dir.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_at(&path))?;
        loop {
            // SAFETY: flock on an fd this function owns.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Locked(f));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(IpamError::Io { path, source: e });
            }
        }
    }

    fn owner_matches(content: &str, id: &str, ifname: &str) -> bool {
        let c = content.trim();
        c == format!("{}{LINE_BREAK}{ifname}", id.trim()) || c == id.trim()
    }

    /// The address reserved for (`id`, `ifname`), if any.
    #[cfg(test)]
    fn find(&self, id: &str, ifname: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        Ok(self
            .owned(id, ifname)?
            .into_iter()
            .find(|ip| self.subnet.contains(*ip)))
    }

    fn owned(&self, id: &str, ifname: &str) -> Result<Vec<Ipv4Addr>, IpamError> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(IpamError::Io {
                    path: self.dir.clone(),
                    source: e,
                })
            }
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(io_at(&self.dir))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            match std::fs::read_to_string(entry.path()) {
                Ok(c) if Self::owner_matches(&c, id, ifname) => out.push(ip),
                Ok(_) => {}
                // Released by someone else meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(IpamError::Io {
                        path: entry.path(),
                        source: e,
                    })
                }
            }
        }
        Ok(out)
    }

    /// Reserves an address for (`id`, `ifname`): the one it already holds, else the next free one
    /// after the last reserved (round robin, so a just-released address is not handed out again at
    /// once while stale ARP entries or conntrack still name it).
    #[cfg(test)]
    pub fn reserve(&self, id: &str, ifname: &str) -> Result<Ipv4Addr, IpamError> {
        let _lock = self.lock()?;
        if let Some(ip) = self.find(id, ifname)? {
            return Ok(ip);
        }
        self.take_next(id, ifname)
    }

    /// As [`Ipam::reserve`] for an owner known to hold nothing (its earlier setup was torn down):
    /// no scan of the reservations, whose cost grows with the pods on the node.
    pub fn reserve_new(&self, id: &str, ifname: &str) -> Result<Ipv4Addr, IpamError> {
        let _lock = self.lock()?;
        self.take_next(id, ifname)
    }

    fn take_next(&self, id: &str, ifname: &str) -> Result<Ipv4Addr, IpamError> {
        let (first, last) = self.subnet.pod_range();
        let last_path = self.dir.join(LAST_RESERVED);
        let start = std::fs::read_to_string(&last_path)
            .ok()
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
            .map(u32::from)
            .filter(|ip| (first..=last).contains(ip))
            .map(|ip| if ip == last { first } else { ip + 1 })
            .unwrap_or(first);
        let size = last - first + 1;
        for i in 0..size {
            let ip = Ipv4Addr::from(first + (start - first + i) % size);
            let path = self.dir.join(ip.to_string());
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path);
            let mut f = match f {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(IpamError::Io { path, source: e }),
            };
            let written = f
                .write_all(format!("{}{LINE_BREAK}{ifname}", id.trim()).as_bytes())
                .and_then(|()| std::fs::write(&last_path, ip.to_string()));
            if let Err(e) = written {
                let _ = std::fs::remove_file(&path);
                return Err(IpamError::Io { path, source: e });
            }
            return Ok(ip);
        }
        Err(IpamError::Exhausted {
            subnet: self.subnet,
            dir: self.dir.clone(),
        })
    }

    /// Releases `ip` if (`id`, `ifname`) holds it (a single file read instead of a scan); Ok(false)
    /// when it does not.
    pub fn release_ip(&self, ip: Ipv4Addr, id: &str, ifname: &str) -> Result<bool, IpamError> {
        let _lock = self.lock()?;
        let path = self.dir.join(ip.to_string());
        match std::fs::read_to_string(&path) {
            Ok(c) if Self::owner_matches(&c, id, ifname) => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(IpamError::Io { path, source: e }),
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(IpamError::Io { path, source: e }),
        }
    }

    /// Releases every address (`id`, `ifname`) holds; returns them.
    pub fn release(&self, id: &str, ifname: &str) -> Result<Vec<Ipv4Addr>, IpamError> {
        let _lock = self.lock()?;
        let owned = self.owned(id, ifname)?;
        for ip in &owned {
            let path = self.dir.join(ip.to_string());
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(IpamError::Io { path, source: e }),
            }
        }
        Ok(owned)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn subnets() {
        let s = Subnet::parse("10.85.0.0/16").unwrap();
        assert_eq!(s.gateway(), ip("10.85.0.1"));
        assert_eq!(s.mask(), ip("255.255.0.0"));
        assert_eq!(
            s.pod_range(),
            (u32::from(ip("10.85.0.2")), u32::from(ip("10.85.255.254")))
        );
        assert!(s.contains(ip("10.85.200.1")) && !s.contains(ip("10.86.0.1")));
        assert_eq!(s.to_string(), "10.85.0.0/16");
        for bad in [
            "10.85.0.0",
            "10.85.0.1/16",
            "10.85.0.0/31",
            "x/8",
            "10.0.0.0/a",
            "::/64",
        ] {
            assert!(Subnet::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Subnet::parse("0.0.0.0/0").unwrap().mask(), ip("0.0.0.0"));
    }

    #[test]
    fn reservations_are_host_local_files_round_robin_and_released_by_id() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("net");
        let ipam = Ipam::new(dir.clone(), Subnet::parse("10.9.0.0/29").unwrap());
        // .2 .. .6 are pod addresses (.1 gateway, .7 broadcast).
        assert_eq!(ipam.reserve("a", "eth0").unwrap(), ip("10.9.0.2"));
        assert_eq!(ipam.reserve("b", "eth0").unwrap(), ip("10.9.0.3"));
        // host-local's format: "<id>\r\n<ifname>", and the last reserved address.
        assert_eq!(
            std::fs::read_to_string(dir.join("10.9.0.2")).unwrap(),
            "a\r\neth0"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(LAST_RESERVED)).unwrap(),
            "10.9.0.3"
        );
        // Asking again is idempotent.
        assert_eq!(ipam.reserve("a", "eth0").unwrap(), ip("10.9.0.2"));
        // A release frees the address, but the next pod gets the next one (round robin).
        assert_eq!(ipam.release("a", "eth0").unwrap(), vec![ip("10.9.0.2")]);
        assert!(!dir.join("10.9.0.2").exists());
        assert!(ipam.release("a", "eth0").unwrap().is_empty());
        assert_eq!(ipam.reserve("c", "eth0").unwrap(), ip("10.9.0.4"));
        // A reservation written by host-local itself (or an old one holding only the id) is found.
        std::fs::write(dir.join("10.9.0.5"), "cni-pod\r\neth0\n").unwrap();
        std::fs::write(dir.join("10.9.0.6"), "old-pod").unwrap();
        // Wraps around to the freed .2, skipping what is taken; then the subnet is full.
        assert_eq!(ipam.reserve("d", "eth0").unwrap(), ip("10.9.0.2"));
        let err = ipam.reserve("e", "eth0").unwrap_err();
        assert!(matches!(err, IpamError::Exhausted { .. }), "{err}");
        assert!(err.to_string().contains("10.9.0.0/29"), "{err}");
        assert_eq!(
            ipam.release("cni-pod", "eth0").unwrap(),
            vec![ip("10.9.0.5")]
        );
        assert_eq!(
            ipam.release("old-pod", "eth0").unwrap(),
            vec![ip("10.9.0.6")]
        );
        // Another interface of the same pod is someone else.
        assert!(ipam.release("b", "net1").unwrap().is_empty());
        assert_eq!(ipam.reserve("e", "eth0").unwrap(), ip("10.9.0.5"));
        // Non-address files are not reservations.
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "10.9.0.2",
                "10.9.0.3",
                "10.9.0.4",
                "10.9.0.5",
                "last_reserved_ip.0",
                "lock"
            ]
        );
    }

    #[test]
    fn targeted_release_and_reserve_without_scan() {
        let d = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(
            d.path().to_path_buf(),
            Subnet::parse("10.9.0.0/24").unwrap(),
        );
        let a = ipam.reserve_new("a", "eth0").unwrap();
        let b = ipam.reserve_new("b", "eth0").unwrap();
        assert_ne!(a, b);
        // Only the owner releases an address.
        assert!(!ipam.release_ip(a, "b", "eth0").unwrap());
        assert!(!ipam.release_ip(ip("10.9.0.200"), "a", "eth0").unwrap());
        assert!(ipam.release_ip(a, "a", "eth0").unwrap());
        assert!(!ipam.release_ip(a, "a", "eth0").unwrap());
        assert_eq!(ipam.release("b", "eth0").unwrap(), vec![b]);
    }

    #[test]
    fn a_stale_last_reserved_outside_the_range_restarts_at_the_first() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(LAST_RESERVED), "192.168.1.1").unwrap();
        let ipam = Ipam::new(
            d.path().to_path_buf(),
            Subnet::parse("10.9.0.0/24").unwrap(),
        );
        assert_eq!(ipam.reserve("a", "eth0").unwrap(), ip("10.9.0.2"));
    }

    #[test]
    fn concurrent_reservations_never_share_an_address() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_path_buf();
        let got: Vec<Ipv4Addr> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|t| {
                    let dir = dir.clone();
                    s.spawn(move || {
                        let ipam = Ipam::new(dir, Subnet::parse("10.9.0.0/24").unwrap());
                        (0..10)
                            .map(|i| ipam.reserve(&format!("p{t}-{i}"), "eth0").unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let mut uniq = got.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), 80);
    }
}
