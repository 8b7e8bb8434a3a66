//! The native pod network: what the embedded CNI list (bridge + host-local + portmap) does, done by
//! crius itself over netlink, with no plugin process. A bridge (`crius0`, gateway 10.85.0.1/16 by
//! default) with a veth pair per pod (`eth0` made directly in the pod's namespace, `lo` up, default
//! route via the bridge), addresses reserved on disk in host-local's format (see [`ipam`]),
//! masquerade and hostPort DNAT in an nftables table of its own (see [`nft`]).
//!
//! Setup and teardown are driven by [`crate::Cni`] with the same per-pod cache entry as a CNI ADD
//! (source [`crate::ConfigSource::Native`]), so restarts, retries and orphan cleanup work alike; the
//! entry is written before anything is made and names everything teardown must undo.

pub mod ipam;
mod nft;
mod nl;
mod rtnl;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use crate::error::NetworkError;
use ipam::{Ipam, IpamError, Subnet};
use nft::HostPort;
use rtnl::Rtnl;

pub use nft::count_hostports;

/// Removes a native network from the host: its bridge and its nftables table (tests clean up with
/// this; the daemon itself leaves its network in place for the next start, as the CNI plugins do).
pub fn remove_network(bridge: &str) -> std::io::Result<()> {
    Rtnl::open()?.del_link(bridge)?;
    nft::delete_table(bridge)
}

/// The plugin type the cache entry of a native setup names (no such binary exists).
pub(crate) const NATIVE_TYPE: &str = "crius-native";

/// What the native network looks like; the defaults are the embedded CNI list's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeConfig {
    pub bridge: String,
    pub subnet: Subnet,
    pub mtu: u32,
    /// Reservation directory; the default is the one host-local uses for the embedded list
    /// (network name `crius`), so both share one address pool.
    pub ipam_dir: PathBuf,
}

impl Default for NativeConfig {
    fn default() -> Self {
        NativeConfig {
            bridge: "crius0".into(),
            subnet: Subnet {
                network: Ipv4Addr::new(10, 85, 0, 0),
                prefix: 16,
            },
            mtu: 1500,
            ipam_dir: PathBuf::from("/var/lib/cni/networks/crius"),
        }
    }
}

impl NativeConfig {
    /// Checks what the types cannot: an interface name the kernel takes.
    pub fn validate(&self) -> Result<(), String> {
        let b = &self.bridge;
        if b.is_empty() || b.len() > 15 || b.contains(['/', ' ', ':']) || b == "." || b == ".." {
            return Err(format!(
                "bridge {b:?} is not an interface name (1-15 characters, no '/', ':' or spaces)"
            ));
        }
        if !(68..=65535).contains(&self.mtu) {
            return Err(format!("mtu {} is outside 68..=65535", self.mtu));
        }
        if !self.ipam_dir.is_absolute() {
            return Err(format!(
                "ipam_dir {} is not absolute",
                self.ipam_dir.display()
            ));
        }
        Ok(())
    }
}

/// What a native setup made, as its cache entry records it (the `config` of the entry).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Record {
    pub bridge: String,
    pub subnet: String,
    pub ipam_dir: PathBuf,
    pub host_veth: String,
    pub ifname: String,
}

impl Record {
    /// As a one-plugin conflist, so anything that reads cache entries as lists still can.
    pub(crate) fn to_value(&self) -> Value {
        let mut p = serde_json::to_value(self).unwrap_or_else(|_| json!({}));
        p["type"] = Value::String(NATIVE_TYPE.into());
        json!({"cniVersion": "1.0.0", "name": "crius", "plugins": [p]})
    }

    pub(crate) fn from_value(v: &Value) -> Option<Record> {
        let p = v.get("plugins")?.get(0)?;
        (p.get("type")?.as_str()? == NATIVE_TYPE).then_some(())?;
        serde_json::from_value(p.clone()).ok()
    }
}

/// Host side name of a pod's veth: `veth` and 44 bits of a hash of the pod id, so teardown finds it
/// from the id alone; the `veth` prefix is what host tools expect of pod interfaces.
pub(crate) fn host_veth_name(pod_id: &str) -> String {
    // FNV-1a: stable across releases (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pod_id.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("veth{:011x}", h >> 20)
}

/// The pod's MAC address from its IP (0a:58 + the address, as kubenet and the bridge plugin did):
/// stable across a pod's restarts, unique on the bridge, locally administered.
pub(crate) fn pod_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x0a, 0x58, o[0], o[1], o[2], o[3]]
}

fn mac_string(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn nl_err(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
    let op = op.into();
    move |source| NetworkError::Netlink { op, source }
}

fn ipam_err(e: IpamError) -> NetworkError {
    match e {
        IpamError::Exhausted { subnet, dir } => NetworkError::AddressesExhausted {
            subnet: subnet.to_string(),
            dir,
        },
        IpamError::Io { path, source } => NetworkError::Io { path, source },
    }
}

pub(crate) struct Native {
    cfg: NativeConfig,
    /// The bridge index once the host side (bridge, address, sysctls, nftables) was made by this
    /// process; checked again (one netlink round trip) at every setup.
    host: Mutex<Option<u32>>,
}

impl Native {
    pub(crate) fn new(cfg: NativeConfig) -> Native {
        Native {
            cfg,
            host: Mutex::new(None),
        }
    }

    pub(crate) fn config(&self) -> &NativeConfig {
        &self.cfg
    }

    pub(crate) fn record(&self, pod_id: &str, ifname: &str) -> Record {
        Record {
            bridge: self.cfg.bridge.clone(),
            subnet: self.cfg.subnet.to_string(),
            ipam_dir: self.cfg.ipam_dir.clone(),
            host_veth: host_veth_name(pod_id),
            ifname: ifname.to_string(),
        }
    }

    /// The bridge with its gateway address, up; forwarding on; the nftables table. Returns the
    /// bridge's index.
    fn ensure_host(&self, rt: &mut Rtnl) -> Result<u32, NetworkError> {
        let mut host = self.host.lock().unwrap_or_else(|p| p.into_inner());
        let br = &self.cfg.bridge;
        let idx = rt
            .link_index(br)
            .map_err(nl_err(format!("looking up bridge {br}")))?;
        if let (Some(known), Some(idx)) = (*host, idx) {
            // The table can go under a running daemon (`nft flush ruleset`): then it is written again.
            let table =
                nft::table_exists(br).map_err(nl_err(format!("looking up table ip {br}")))?;
            if known == idx && table {
                return Ok(idx);
            }
        }
        let idx = match idx {
            Some(i) => i,
            None => {
                match rt.run(&rtnl::bridge_msg(br, self.cfg.mtu)) {
                    Ok(()) => {}
                    // Another daemon on this node made it meanwhile.
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(nl_err(format!("creating bridge {br}"))(e)),
                }
                rt.link_index(br)
                    .map_err(nl_err(format!("looking up bridge {br}")))?
                    .ok_or_else(|| {
                        nl_err(format!("creating bridge {br}"))(std::io::Error::other(
                            "the bridge vanished right after it was made",
                        ))
                    })?
            }
        };
        let gw = self.cfg.subnet.gateway();
        match rt.run(&rtnl::addr_msg(idx, gw, self.cfg.subnet.prefix)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => {
                return Err(nl_err(format!(
                    "adding {gw}/{} to {br}",
                    self.cfg.subnet.prefix
                ))(e))
            }
        }
        rt.set_up(idx).map_err(nl_err(format!("setting {br} up")))?;
        // The bridge plugin's isGateway turns forwarding on; portmap's snat lets 127.0.0.1:hostPort
        // reach pods (the DNATed packet leaves with a loopback source, masqueraded in postrouting).
        for (path, what) in [
            (PathBuf::from("/proc/sys/net/ipv4/ip_forward"), "forwarding"),
            (
                PathBuf::from(format!("/proc/sys/net/ipv4/conf/{br}/route_localnet")),
                "route_localnet",
            ),
        ] {
            if std::fs::read_to_string(&path)
                .map(|s| s.trim() == "1")
                .unwrap_or(false)
            {
                continue;
            }
            std::fs::write(&path, "1").map_err(|e| {
                tracing::warn!(path = %path.display(), %e, "cannot turn on {what}");
                NetworkError::Io {
                    path: path.clone(),
                    source: e,
                }
            })?;
        }
        nft::ensure_table(br, br, self.cfg.subnet)
            .map_err(nl_err(format!("writing nftables table ip {br}")))?;
        *host = Some(idx);
        Ok(idx)
    }

    /// Wires the pod: reservation, veth pair, addresses and routes in the pod, hostPorts. Returns the
    /// result in CNI 1.0.0 form. On error what was made stays for [`Native::teardown`] (the caller
    /// runs it with the same record).
    pub(crate) fn setup(
        &self,
        pod_id: &str,
        netns: &Path,
        rec: &Record,
        ports: &[crate::PortMapping],
    ) -> Result<Value, NetworkError> {
        let mut rt = Rtnl::open().map_err(nl_err("opening rtnetlink"))?;
        let bridge = self.ensure_host(&mut rt)?;
        let ipam = Ipam::new(self.cfg.ipam_dir.clone(), self.cfg.subnet);
        // The caller tore down any earlier setup of this pod (cache entry first), so it holds nothing.
        let ip = ipam.reserve_new(pod_id, &rec.ifname).map_err(ipam_err)?;
        let mac = pod_mac(ip);
        let ns = std::fs::File::open(netns).map_err(|e| NetworkError::io(netns, e))?;
        rt.run(&rtnl::veth_msg(
            &rec.host_veth,
            bridge,
            &rec.ifname,
            mac,
            self.cfg.mtu,
            rtnl::fd_number(&ns),
        ))
        .map_err(nl_err(format!(
            "creating veth pair {}/{} on {}",
            rec.host_veth, rec.ifname, rec.bridge
        )))?;
        drop(ns);
        // hairpinMode: a pod reaching itself through its own hostPort.
        let hairpin = PathBuf::from(format!(
            "/sys/class/net/{}/brport/hairpin_mode",
            rec.host_veth
        ));
        std::fs::write(&hairpin, "1").map_err(|e| NetworkError::io(&hairpin, e))?;

        let mut pod =
            Rtnl::open_in(netns).map_err(nl_err(format!("entering {}", netns.display())))?;
        let eth = pod
            .link_index(&rec.ifname)
            .map_err(nl_err(format!("looking up {} in the pod", rec.ifname)))?
            .ok_or_else(|| {
                nl_err(format!("looking up {} in the pod", rec.ifname))(
                    std::io::Error::from_raw_os_error(libc::ENODEV),
                )
            })?;
        let gw = self.cfg.subnet.gateway();
        pod.run(&rtnl::addr_msg(eth, ip, self.cfg.subnet.prefix))
            .map_err(nl_err(format!("adding {ip} to the pod's {}", rec.ifname)))?;
        pod.set_up(eth)
            .map_err(nl_err(format!("setting the pod's {} up", rec.ifname)))?;
        pod.run(&rtnl::default_route_msg(eth, gw))
            .map_err(nl_err("adding the pod's default route"))?;
        // lo is index 1 in every namespace.
        pod.set_up(1).map_err(nl_err("setting the pod's lo up"))?;

        let hp = host_ports(ports, ip);
        nft::add_ports(&rec.bridge, &hp).map_err(|e| match e.raw_os_error() {
            Some(libc::EEXIST) | Some(libc::EBUSY) => NetworkError::HostPortTaken {
                ports: ports
                    .iter()
                    .map(|p| format!("{}/{}", p.host_port, p.protocol))
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            _ => nl_err("adding hostPort mappings")(e),
        })?;

        Ok(json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": rec.bridge},
                {"name": rec.host_veth},
                {"name": rec.ifname, "mac": mac_string(mac), "sandbox": netns.display().to_string()},
            ],
            "ips": [{
                "address": format!("{ip}/{}", self.cfg.subnet.prefix),
                "gateway": gw.to_string(),
                "interface": 2,
            }],
            "routes": [{"dst": "0.0.0.0/0", "gw": gw.to_string()}],
            "dns": {},
        }))
    }

    /// Undoes a setup from its record: hostPorts (those still pointing at the pod), the veth pair
    /// (gone already if the namespace is), the reservation. Every step tolerates its object being
    /// gone, so it can run after a crash at any point of setup and again after a failed attempt.
    pub(crate) fn teardown(
        pod_id: &str,
        rec: &Record,
        result: Option<&Value>,
        caps: &Map<String, Value>,
    ) -> Result<(), NetworkError> {
        let ips = Self::teardown_ports(pod_id, rec, result, caps)?;
        Self::teardown_links(pod_id, rec, result.is_some(), &ips)
    }

    /// The first half of a teardown, which must not wait: the pod's hostPorts go (another pod may ask
    /// for them next). Returns the pod's addresses for [`Native::teardown_links`].
    pub(crate) fn teardown_ports(
        pod_id: &str,
        rec: &Record,
        result: Option<&Value>,
        caps: &Map<String, Value>,
    ) -> Result<Vec<Ipv4Addr>, NetworkError> {
        let mut ips: Vec<Ipv4Addr> = result
            .and_then(|r| crate::result::parse_result(r).ok())
            .map(|(ips, _)| {
                ips.into_iter()
                    .filter_map(|ip| match ip {
                        IpAddr::V4(v4) => Some(v4),
                        IpAddr::V6(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mappings = ports_from_caps(caps);
        if !mappings.is_empty() && ips.is_empty() {
            // Setup died before it recorded its result: the reservation says which address it had.
            ips = ipam_owned(&Self::ipam_of(pod_id, rec)?, pod_id, &rec.ifname)?;
        }
        for ip in &ips {
            nft::remove_ports(&rec.bridge, &host_ports(&mappings, *ip))
                .map_err(nl_err("removing hostPort mappings"))?;
        }
        Ok(ips)
    }

    /// The second half: the veth pair (its unregistration waits for RCU grace periods in the kernel,
    /// tens of milliseconds on a busy node), then the reservation, only once the link is gone.
    pub(crate) fn teardown_links(
        pod_id: &str,
        rec: &Record,
        result_known: bool,
        ips: &[Ipv4Addr],
    ) -> Result<(), NetworkError> {
        let ipam = Self::ipam_of(pod_id, rec)?;
        Rtnl::open()
            .and_then(|mut rt| rt.del_link(&rec.host_veth))
            .map_err(nl_err(format!("deleting {}", rec.host_veth)))?;
        if result_known && !ips.is_empty() {
            // The address is known: release it without scanning every reservation.
            for ip in ips {
                ipam.release_ip(*ip, pod_id, &rec.ifname)
                    .map_err(ipam_err)?;
            }
        } else {
            ipam.release(pod_id, &rec.ifname).map_err(ipam_err)?;
        }
        Ok(())
    }

    fn ipam_of(pod_id: &str, rec: &Record) -> Result<Ipam, NetworkError> {
        let subnet = Subnet::parse(&rec.subnet).map_err(|reason| NetworkError::InvalidConfig {
            path: PathBuf::from(format!("cache entry of {pod_id}")),
            reason,
        })?;
        Ok(Ipam::new(rec.ipam_dir.clone(), subnet))
    }
}

fn ipam_owned(ipam: &Ipam, id: &str, ifname: &str) -> Result<Vec<Ipv4Addr>, NetworkError> {
    // A reserve of an id that holds an address returns it without taking another; but it would take
    // one when it holds none, so read the directory instead.
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(ipam.dir()) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(NetworkError::io(ipam.dir(), e)),
    };
    for entry in rd.flatten() {
        let Some(ip) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        if let Ok(c) = std::fs::read_to_string(entry.path()) {
            let c = c.trim();
            if c == format!("{id}\r\n{ifname}") || c == id {
                out.push(ip);
            }
        }
    }
    Ok(out)
}

/// The CRI port mappings crius passes to portmap (capability args), back from a cache entry.
fn ports_from_caps(caps: &Map<String, Value>) -> Vec<crate::PortMapping> {
    caps.get("portMappings")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|p| {
                    Some(crate::PortMapping {
                        host_port: u16::try_from(p.get("hostPort")?.as_u64()?).ok()?,
                        container_port: u16::try_from(p.get("containerPort")?.as_u64()?).ok()?,
                        protocol: p.get("protocol")?.as_str()?.to_string(),
                        host_ip: p
                            .get("hostIP")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Map elements for a pod's mappings, as portmap reads them: a mapping bound to an IPv6 host address
/// does not apply to an IPv4 pod; an unspecified host address means all of them.
fn host_ports(ports: &[crate::PortMapping], pod_ip: Ipv4Addr) -> Vec<HostPort> {
    ports
        .iter()
        .filter(|p| p.host_port != 0)
        .filter_map(|p| {
            let host_ip = match p.host_ip.parse::<IpAddr>() {
                Err(_) => None,
                Ok(ip) if ip.is_unspecified() => None,
                Ok(IpAddr::V4(v4)) => Some(v4),
                Ok(IpAddr::V6(_)) => return None,
            };
            let proto = match p.protocol.to_ascii_lowercase().as_str() {
                "udp" => libc::IPPROTO_UDP,
                "sctp" => libc::IPPROTO_SCTP,
                _ => libc::IPPROTO_TCP,
            } as u8;
            Some(HostPort {
                host_ip,
                proto,
                host_port: p.host_port,
                pod_ip,
                pod_port: p.container_port,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PortMapping;

    #[test]
    fn names_and_macs() {
        let a = host_veth_name(&"a".repeat(64));
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("veth"));
        assert_eq!(a, host_veth_name(&"a".repeat(64)), "stable");
        assert_ne!(a, host_veth_name(&"b".repeat(64)));
        assert_eq!(
            mac_string(pod_mac(Ipv4Addr::new(10, 85, 1, 2))),
            "0a:58:0a:55:01:02"
        );
    }

    #[test]
    fn record_round_trips_through_the_cache_form() {
        let n = Native::new(NativeConfig::default());
        let r = n.record("abc", "eth0");
        let v = r.to_value();
        assert_eq!(v["plugins"][0]["type"], NATIVE_TYPE);
        assert_eq!(v["plugins"][0]["bridge"], "crius0");
        assert_eq!(v["plugins"][0]["subnet"], "10.85.0.0/16");
        assert_eq!(Record::from_value(&v), Some(r));
        // It is a valid list for whatever reads entries as lists.
        crate::config::NetworkList::from_value(v, crate::ConfigSource::Native).unwrap();
        assert_eq!(
            Record::from_value(&json!({"plugins": [{"type": "bridge"}]})),
            None
        );
    }

    #[test]
    fn host_ports_follow_portmap() {
        let pm = |hp: u16, proto: &str, ip: &str| PortMapping {
            host_port: hp,
            container_port: 80,
            protocol: proto.into(),
            host_ip: ip.into(),
        };
        let ip = Ipv4Addr::new(10, 85, 0, 9);
        let got = host_ports(
            &[
                pm(8080, "tcp", ""),
                pm(53, "udp", "192.0.2.1"),
                pm(9000, "sctp", "0.0.0.0"),
                pm(9001, "tcp", "::"),
                pm(9002, "tcp", "fd00::1"),
                pm(0, "tcp", ""),
            ],
            ip,
        );
        let summary: Vec<_> = got
            .iter()
            .map(|h| (h.host_ip, h.proto, h.host_port))
            .collect();
        assert_eq!(
            summary,
            vec![
                (None, 6, 8080),
                (Some(Ipv4Addr::new(192, 0, 2, 1)), 17, 53),
                (None, 132, 9000),
                (None, 6, 9001),
            ]
        );
        assert!(got.iter().all(|h| h.pod_ip == ip && h.pod_port == 80));
        // Back from the capability args crius records.
        let caps = crate::runtime_config::capability_args(&crate::PodNetwork {
            port_mappings: vec![pm(8080, "TCP", ""), pm(53, "udp", "192.0.2.1")],
            ..Default::default()
        });
        let back = ports_from_caps(&caps);
        assert_eq!(back, vec![pm(8080, "tcp", ""), pm(53, "udp", "192.0.2.1")]);
    }

    #[test]
    fn config_validation() {
        assert!(NativeConfig::default().validate().is_ok());
        for bad in [
            NativeConfig {
                bridge: "".into(),
                ..Default::default()
            },
            NativeConfig {
                bridge: "a-very-long-bridge".into(),
                ..Default::default()
            },
            NativeConfig {
                bridge: "a/b".into(),
                ..Default::default()
            },
            NativeConfig {
                mtu: 10,
                ..Default::default()
            },
            NativeConfig {
                ipam_dir: "rel".into(),
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
