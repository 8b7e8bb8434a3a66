//! rtnetlink operations the native network needs: bridge and veth pair creation (the pod end made
//! directly in the pod's namespace), addresses, the default route, links up and deleted.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use super::nl::{Msg, Socket, NETLINK_ROUTE, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;

const RTA_GATEWAY: u16 = 5;
const RTA_OIF: u16 = 4;

const IFF_UP: u32 = 1;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;

/// `struct ifinfomsg`: family, type, index, flags, change.
pub(crate) fn ifinfomsg(index: i32, flags: u32, change: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

/// The request creating a veth pair: `host` on the bridge `master` (up), its peer `peer` created in
/// the namespace `netns_fd` with address `mac` (down). Both ends get `mtu`.
pub(crate) fn veth_msg(
    host: &str,
    master: u32,
    peer: &str,
    mac: [u8; 6],
    mtu: u32,
    netns_fd: u32,
) -> Msg {
    let mut m = Msg::new(
        RTM_NEWLINK,
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        &ifinfomsg(0, IFF_UP, IFF_UP),
    );
    m.str(IFLA_IFNAME, host)
        .u32(IFLA_MTU, mtu)
        .u32(IFLA_MASTER, master)
        .begin(IFLA_LINKINFO)
        .str(IFLA_INFO_KIND, "veth")
        .begin(IFLA_INFO_DATA)
        .begin(VETH_INFO_PEER)
        // Down: a peer brought up while it is being made in another namespace fails (ENOTCONN on
        // 6.x kernels); the pod side sets it up once it has its address.
        .raw(&ifinfomsg(0, 0, 0))
        .str(IFLA_IFNAME, peer)
        .u32(IFLA_MTU, mtu)
        .attr(IFLA_ADDRESS, &mac)
        .u32(IFLA_NET_NS_FD, netns_fd)
        .end()
        .end()
        .end();
    m
}

pub(crate) fn bridge_msg(name: &str, mtu: u32) -> Msg {
    let mut m = Msg::new(
        RTM_NEWLINK,
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        &ifinfomsg(0, IFF_UP, IFF_UP),
    );
    m.str(IFLA_IFNAME, name)
        .u32(IFLA_MTU, mtu)
        .begin(IFLA_LINKINFO)
        .str(IFLA_INFO_KIND, "bridge")
        .end();
    m
}

/// `addr/prefix` on link `index` (with the subnet's broadcast address, as `ip addr add … brd +`).
pub(crate) fn addr_msg(index: u32, addr: Ipv4Addr, prefix: u8) -> Msg {
    let mut fixed = [0u8; 8];
    fixed[0] = libc::AF_INET as u8;
    fixed[1] = prefix;
    fixed[4..8].copy_from_slice(&index.to_ne_bytes());
    let bcast = u32::from(addr) | (u32::MAX.checked_shr(prefix as u32).unwrap_or(0));
    let mut m = Msg::new(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &fixed);
    m.attr(IFA_LOCAL, &addr.octets())
        .attr(IFA_ADDRESS, &addr.octets())
        .attr(IFA_BROADCAST, &Ipv4Addr::from(bcast).octets());
    m
}

/// The default route via `gw` out of link `index`.
pub(crate) fn default_route_msg(index: u32, gw: Ipv4Addr) -> Msg {
    let fixed = [
        libc::AF_INET as u8,
        0, // dst_len: default
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        0, // RT_SCOPE_UNIVERSE
        RTN_UNICAST,
        0,
        0,
        0,
        0,
    ];
    let mut m = Msg::new(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &fixed);
    m.attr(RTA_GATEWAY, &gw.octets()).u32(RTA_OIF, index);
    m
}

pub(crate) struct Rtnl {
    sock: Socket,
}

impl Rtnl {
    /// rtnetlink in the calling thread's network namespace.
    pub(crate) fn open() -> io::Result<Rtnl> {
        Ok(Rtnl {
            sock: Socket::open(NETLINK_ROUTE)?,
        })
    }

    /// rtnetlink inside the namespace pinned at `netns`: the socket is made by a short-lived thread
    /// that entered it, and stays bound to that namespace whoever uses it afterwards.
    pub(crate) fn open_in(netns: &Path) -> io::Result<Rtnl> {
        let ns = std::fs::File::open(netns)?;
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)?;
                Rtnl::open()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
        })
    }

    pub(crate) fn run(&mut self, m: &Msg) -> io::Result<()> {
        self.sock.transact(&[m]).map(drop)
    }

    /// The index of link `name`, `None` when there is none.
    pub(crate) fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut m = Msg::new(RTM_GETLINK, NLM_F_ACK, &ifinfomsg(0, 0, 0));
        m.str(IFLA_IFNAME, name);
        match self.sock.transact(&[&m]) {
            Ok(replies) => Ok(replies
                .iter()
                .find(|r| r.ty == RTM_NEWLINK && r.payload.len() >= 16)
                .map(|r| {
                    i32::from_ne_bytes([r.payload[4], r.payload[5], r.payload[6], r.payload[7]])
                        as u32
                })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn set_up(&mut self, index: u32) -> io::Result<()> {
        let m = Msg::new(
            RTM_NEWLINK,
            NLM_F_ACK,
            &ifinfomsg(index as i32, IFF_UP, IFF_UP),
        );
        self.run(&m)
    }

    /// Deletes link `name`; Ok(false) when there was none.
    pub(crate) fn del_link(&mut self, name: &str) -> io::Result<bool> {
        let mut m = Msg::new(RTM_DELLINK, NLM_F_ACK, &ifinfomsg(0, 0, 0));
        m.str(IFLA_IFNAME, name);
        match self.run(&m) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The fd number the kernel reads from `IFLA_NET_NS_FD`.
pub(crate) fn fd_number(f: &impl AsRawFd) -> u32 {
    f.as_raw_fd() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::nl::attrs;

    #[test]
    fn veth_request_nests_the_peer_with_its_own_ifinfomsg() {
        let m = veth_msg("vethabc", 7, "eth0", [0x0a, 0x58, 10, 85, 0, 2], 1500, 33);
        let b = m.bytes(1);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), RTM_NEWLINK);
        let top = attrs(&b[32..]);
        let kinds: Vec<u16> = top.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            kinds,
            vec![IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO]
        );
        assert_eq!(top[2].1, &7u32.to_ne_bytes());
        let info = attrs(top[3].1);
        assert_eq!(info[0], (IFLA_INFO_KIND, &b"veth\0"[..]));
        let data = attrs(info[1].1);
        assert_eq!(data[0].0, VETH_INFO_PEER);
        let peer = data[0].1;
        assert_eq!(&peer[..16], &ifinfomsg(0, 0, 0));
        let peer_attrs = attrs(&peer[16..]);
        assert_eq!(peer_attrs[0], (IFLA_IFNAME, &b"eth0\0"[..]));
        assert_eq!(
            peer_attrs[2],
            (IFLA_ADDRESS, &[0x0a, 0x58, 10, 85, 0, 2][..])
        );
        assert_eq!(peer_attrs[3], (IFLA_NET_NS_FD, &33u32.to_ne_bytes()[..]));
    }

    #[test]
    fn address_has_the_subnet_broadcast() {
        let b = addr_msg(3, Ipv4Addr::new(10, 85, 3, 4), 16).bytes(1);
        assert_eq!(b[16], libc::AF_INET as u8);
        assert_eq!(b[17], 16);
        let a = attrs(&b[24..]);
        assert_eq!(a[0], (IFA_LOCAL, &[10, 85, 3, 4][..]));
        assert_eq!(a[2], (IFA_BROADCAST, &[10, 85, 255, 255][..]));
        let b = addr_msg(3, Ipv4Addr::new(10, 1, 2, 3), 32).bytes(1);
        assert_eq!(attrs(&b[24..])[2], (IFA_BROADCAST, &[10, 1, 2, 3][..]));
    }

    #[test]
    fn default_route() {
        let b = default_route_msg(2, Ipv4Addr::new(10, 85, 0, 1)).bytes(1);
        assert_eq!(&b[16..24], &[2, 0, 0, 0, 254, 3, 0, 1]);
        let a = attrs(&b[28..]);
        assert_eq!(
            a,
            vec![
                (RTA_GATEWAY, &[10, 85, 0, 1][..]),
                (RTA_OIF, &2u32.to_ne_bytes()[..])
            ]
        );
    }
}
