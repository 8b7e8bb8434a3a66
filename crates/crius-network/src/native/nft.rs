//! The native network's nftables table, spoken in nfnetlink (no `nft` binary): one `ip` table named
//! after the bridge holding
//!
//! - `postrouting` (nat): masquerade of pod traffic leaving the subnet (not multicast), and of
//!   hostPort connections that came from the host itself (127/8) or from a pod on the bridge
//!   (hairpin), so the replies come back through the host;
//! - `prerouting` and `output` (nat): for destinations that are local addresses, DNAT through two
//!   maps: `hostports` (protocol . port → pod address . port) and `hostports_ip` (host address .
//!   protocol . port → …) for mappings bound to one host IP.
//!
//! The table and its rules are written once (at the first pod after start, atomically, rules
//! replaced so a restart never duplicates them); a pod with hostPorts adds and removes map elements,
//! a pod without any costs no nftables message at all.

use std::io;
use std::net::Ipv4Addr;

use super::ipam::Subnet;
use super::nl::{
    attrs, Msg, Socket, NETLINK_NETFILTER, NLA_F_NESTED, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFPROTO_IPV4: u8 = 2;

const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;

const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFTA_SET_DATA_LEN: u16 = 7;
const NFTA_SET_ID: u16 = 10;
const NFT_SET_MAP: u32 = 0x8;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;

const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_INET_POST_ROUTING: u32 = 4;

// Registers: the 32-bit ones, so concatenated keys sit in consecutive registers.
const REG_00: u32 = 8;
const REG_01: u32 = 9;
const REG_02: u32 = 10;
/// A 128-bit register (interface names are 16 bytes).
const REG_1: u32 = 1;

const PAYLOAD_NETWORK: u32 = 1;
const PAYLOAD_TRANSPORT: u32 = 2;
const CMP_EQ: u32 = 0;
const CMP_NEQ: u32 = 1;
const META_OIFNAME: u32 = 7;
const META_L4PROTO: u32 = 16;
const CT_STATUS: u32 = 2;
const IPS_DST_NAT: u32 = 0x20;
const FIB_RESULT_ADDRTYPE: u32 = 3;
const FIB_F_DADDR: u32 = 2;
const RTN_LOCAL: u32 = 2;
const NAT_DNAT: u32 = 1;

// nft's own type ids, so `nft list table ip crius0` prints the maps readably.
const TYPE_IPADDR: u32 = 7;
const TYPE_INET_PROTOCOL: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
fn concat(types: &[u32]) -> u32 {
    types.iter().fold(0, |acc, t| (acc << 6) | t)
}

pub(crate) const MAP_ALL: &str = "hostports";
pub(crate) const MAP_IP: &str = "hostports_ip";
const SET_ID_ALL: u32 = 1;
const SET_ID_IP: u32 = 2;

fn nfgenmsg(family: u8, res_id: u16) -> [u8; 4] {
    let r = res_id.to_be_bytes();
    [family, 0, r[0], r[1]]
}

fn msg(ty: u16, flags: u16) -> Msg {
    Msg::new(
        (NFNL_SUBSYS_NFTABLES << 8) | ty,
        flags | NLM_F_ACK,
        &nfgenmsg(NFPROTO_IPV4, 0),
    )
}

fn batch_mark(ty: u16) -> Msg {
    Msg::new(ty, 0, &nfgenmsg(0, NFNL_SUBSYS_NFTABLES))
}

/// `msgs` between batch begin and end: applied all or nothing.
fn commit(msgs: &[Msg]) -> io::Result<()> {
    let begin = batch_mark(NFNL_MSG_BATCH_BEGIN);
    let end = batch_mark(NFNL_MSG_BATCH_END);
    let mut all: Vec<&Msg> = vec![&begin];
    all.extend(msgs);
    all.push(&end);
    Socket::open(NETLINK_NETFILTER)?.transact(&all).map(drop)
}

/// One expression of a rule.
struct Expr;

impl Expr {
    fn add(m: &mut Msg, name: &str, body: impl FnOnce(&mut Msg)) {
        m.begin(NFTA_LIST_ELEM | NLA_F_NESTED)
            .str(NFTA_EXPR_NAME, name)
            .begin(NFTA_EXPR_DATA | NLA_F_NESTED);
        body(m);
        m.end().end();
    }
}

fn data(m: &mut Msg, ty: u16, value: &[u8]) {
    m.begin(ty | NLA_F_NESTED)
        .attr(NFTA_DATA_VALUE, value)
        .end();
}

fn payload(m: &mut Msg, base: u32, offset: u32, len: u32, dreg: u32) {
    Expr::add(m, "payload", |m| {
        m.be32(1, dreg).be32(2, base).be32(3, offset).be32(4, len);
    });
}

fn cmp(m: &mut Msg, sreg: u32, op: u32, value: &[u8]) {
    Expr::add(m, "cmp", |m| {
        m.be32(1, sreg).be32(2, op);
        data(m, 3, value);
    });
}

fn bitwise(m: &mut Msg, reg: u32, mask: &[u8]) {
    Expr::add(m, "bitwise", |m| {
        m.be32(1, reg).be32(2, reg).be32(3, mask.len() as u32);
        data(m, 4, mask);
        data(m, 5, &vec![0; mask.len()]);
    });
}

fn meta(m: &mut Msg, key: u32, dreg: u32) {
    Expr::add(m, "meta", |m| {
        m.be32(2, key).be32(1, dreg);
    });
}

/// `ip saddr|daddr & mask ==|!= net`.
fn ip_in(m: &mut Msg, offset: u32, net: Subnet, op: u32) {
    payload(m, PAYLOAD_NETWORK, offset, 4, REG_00);
    bitwise(m, REG_00, &net.mask().octets());
    cmp(m, REG_00, op, &net.network.octets());
}

const SADDR: u32 = 12;
const DADDR: u32 = 16;

fn fib_daddr_is_local(m: &mut Msg) {
    Expr::add(m, "fib", |m| {
        m.be32(1, REG_00)
            .be32(2, FIB_RESULT_ADDRTYPE)
            .be32(3, FIB_F_DADDR);
    });
    cmp(m, REG_00, CMP_EQ, &RTN_LOCAL.to_ne_bytes());
}

fn masq(m: &mut Msg) {
    Expr::add(m, "masq", |_| {});
}

/// The base table: chains, maps, rules (replacing whatever rules the chains held).
pub(crate) fn base_batch(table: &str, bridge: &str, subnet: Subnet) -> Vec<Msg> {
    let mut out = Vec::new();
    let mut t = msg(NFT_MSG_NEWTABLE, NLM_F_CREATE);
    t.str(NFTA_TABLE_NAME, table);
    out.push(t);
    let chains = [
        ("prerouting", NF_INET_PRE_ROUTING, -100i32),
        ("output", NF_INET_LOCAL_OUT, -100),
        ("postrouting", NF_INET_POST_ROUTING, 100),
    ];
    for (name, hook, prio) in chains {
        let mut c = msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE);
        c.str(NFTA_CHAIN_TABLE, table)
            .str(NFTA_CHAIN_NAME, name)
            .begin(NFTA_CHAIN_HOOK | NLA_F_NESTED)
            .be32(NFTA_HOOK_HOOKNUM, hook)
            .be32(NFTA_HOOK_PRIORITY, prio as u32)
            .end()
            .str(NFTA_CHAIN_TYPE, "nat");
        out.push(c);
    }
    let sets = [
        (
            MAP_ALL,
            SET_ID_ALL,
            concat(&[TYPE_INET_PROTOCOL, TYPE_INET_SERVICE]),
            8,
        ),
        (
            MAP_IP,
            SET_ID_IP,
            concat(&[TYPE_IPADDR, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE]),
            12,
        ),
    ];
    for (name, id, ktype, klen) in sets {
        let mut s = msg(NFT_MSG_NEWSET, NLM_F_CREATE);
        s.str(NFTA_SET_TABLE, table)
            .str(NFTA_SET_NAME, name)
            .be32(NFTA_SET_FLAGS, NFT_SET_MAP)
            .be32(NFTA_SET_KEY_TYPE, ktype)
            .be32(NFTA_SET_KEY_LEN, klen)
            .be32(
                NFTA_SET_DATA_TYPE,
                concat(&[TYPE_IPADDR, TYPE_INET_SERVICE]),
            )
            .be32(NFTA_SET_DATA_LEN, 8)
            .be32(NFTA_SET_ID, id);
        out.push(s);
    }
    for (name, _, _) in chains {
        let mut d = msg(NFT_MSG_DELRULE, 0);
        d.str(NFTA_RULE_TABLE, table).str(NFTA_RULE_CHAIN, name);
        out.push(d);
    }
    let rule = |chain: &str, body: &dyn Fn(&mut Msg)| {
        let mut r = msg(
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | 0x800, /* NLM_F_APPEND */
        );
        r.str(NFTA_RULE_TABLE, table)
            .str(NFTA_RULE_CHAIN, chain)
            .begin(NFTA_RULE_EXPRESSIONS | NLA_F_NESTED);
        body(&mut r);
        r.end();
        r
    };
    for chain in ["prerouting", "output"] {
        // fib daddr type local ip daddr . meta l4proto . th dport -> dnat @hostports_ip
        out.push(rule(chain, &|m| {
            fib_daddr_is_local(m);
            payload(m, PAYLOAD_NETWORK, DADDR, 4, REG_00);
            meta(m, META_L4PROTO, REG_01);
            payload(m, PAYLOAD_TRANSPORT, 2, 2, REG_02);
            lookup_dnat(m, MAP_IP, SET_ID_IP);
        }));
        // fib daddr type local meta l4proto . th dport -> dnat @hostports
        out.push(rule(chain, &|m| {
            fib_daddr_is_local(m);
            meta(m, META_L4PROTO, REG_00);
            payload(m, PAYLOAD_TRANSPORT, 2, 2, REG_01);
            lookup_dnat(m, MAP_ALL, SET_ID_ALL);
        }));
    }
    // Pods reaching out: masquerade unless the destination is on the bridge or multicast.
    out.push(rule("postrouting", &|m| {
        ip_in(m, SADDR, subnet, CMP_EQ);
        ip_in(m, DADDR, subnet, CMP_NEQ);
        ip_in(
            m,
            DADDR,
            Subnet::parse("224.0.0.0/4").unwrap_or(subnet),
            CMP_NEQ,
        );
        masq(m);
    }));
    // hostPort connections from the host's loopback or from a pod on the bridge (hairpin).
    let mut ifname = [0u8; 16];
    let n = bridge.len().min(15);
    ifname[..n].copy_from_slice(&bridge.as_bytes()[..n]);
    let sources = [Subnet::parse("127.0.0.0/8").unwrap_or(subnet), subnet];
    for src in sources {
        out.push(rule("postrouting", &|m| {
            meta(m, META_OIFNAME, REG_1);
            cmp(m, REG_1, CMP_EQ, &ifname);
            Expr::add(m, "ct", |m| {
                m.be32(1, REG_00).be32(2, CT_STATUS);
            });
            bitwise(m, REG_00, &IPS_DST_NAT.to_ne_bytes());
            cmp(m, REG_00, CMP_NEQ, &[0; 4]);
            ip_in(m, SADDR, src, CMP_EQ);
            masq(m);
        }));
    }
    out
}

fn lookup_dnat(m: &mut Msg, set: &str, set_id: u32) {
    Expr::add(m, "lookup", |m| {
        m.str(1, set)
            .be32(2, REG_00)
            .be32(3, REG_00)
            .be32(4, set_id);
    });
    Expr::add(m, "nat", |m| {
        m.be32(1, NAT_DNAT)
            .be32(2, NFPROTO_IPV4 as u32)
            .be32(3, REG_00)
            .be32(5, REG_01);
    });
}

/// Creates or refreshes the table.
pub(crate) fn ensure_table(table: &str, bridge: &str, subnet: Subnet) -> io::Result<()> {
    commit(&base_batch(table, bridge, subnet))
}

/// Whether the table exists (one request; a `nft flush ruleset` removes it under a running daemon).
pub(crate) fn table_exists(table: &str) -> io::Result<bool> {
    let mut m = msg(NFT_MSG_GETTABLE, 0);
    m.str(NFTA_TABLE_NAME, table);
    match Socket::open(NETLINK_NETFILTER)?.transact(&[&m]) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes the table with everything in it; Ok when there is none.
pub(crate) fn delete_table(table: &str) -> io::Result<()> {
    let mut d = msg(NFT_MSG_DELTABLE, 0);
    d.str(NFTA_TABLE_NAME, table);
    match commit(&[d]) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

/// One hostPort mapping as the maps hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostPort {
    /// `None`: every local address.
    pub host_ip: Option<Ipv4Addr>,
    pub proto: u8,
    pub host_port: u16,
    pub pod_ip: Ipv4Addr,
    pub pod_port: u16,
}

fn port_word(p: u16) -> [u8; 4] {
    let b = p.to_be_bytes();
    [b[0], b[1], 0, 0]
}

impl HostPort {
    pub(crate) fn map(&self) -> &'static str {
        if self.host_ip.is_some() {
            MAP_IP
        } else {
            MAP_ALL
        }
    }

    /// The key as the rule's registers hold it: each part in a 32-bit register of its own.
    pub(crate) fn key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(12);
        if let Some(ip) = self.host_ip {
            k.extend_from_slice(&ip.octets());
        }
        k.extend_from_slice(&[self.proto, 0, 0, 0]);
        k.extend_from_slice(&port_word(self.host_port));
        k
    }

    pub(crate) fn value(&self) -> Vec<u8> {
        let mut v = self.pod_ip.octets().to_vec();
        v.extend_from_slice(&port_word(self.pod_port));
        v
    }
}

fn elems_msg(
    ty: u16,
    flags: u16,
    table: &str,
    map: &str,
    ports: &[&HostPort],
    with_data: bool,
) -> Msg {
    let mut m = msg(ty, flags);
    m.str(NFTA_SET_ELEM_LIST_TABLE, table)
        .str(NFTA_SET_ELEM_LIST_SET, map)
        .begin(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED);
    for p in ports {
        m.begin(NFTA_LIST_ELEM | NLA_F_NESTED);
        data(&mut m, NFTA_SET_ELEM_KEY, &p.key());
        if with_data {
            data(&mut m, NFTA_SET_ELEM_DATA, &p.value());
        }
        m.end();
    }
    m.end();
    m
}

/// The messages adding `ports` (one per map that gets elements).
pub(crate) fn add_msgs(table: &str, ports: &[HostPort]) -> Vec<Msg> {
    [MAP_ALL, MAP_IP]
        .into_iter()
        .filter_map(|map| {
            let of: Vec<&HostPort> = ports.iter().filter(|p| p.map() == map).collect();
            (!of.is_empty())
                .then(|| elems_msg(NFT_MSG_NEWSETELEM, NLM_F_CREATE, table, map, &of, true))
        })
        .collect()
}

/// Adds the mappings in one batch; a port another pod holds fails the whole batch (EEXIST/EBUSY).
pub(crate) fn add_ports(table: &str, ports: &[HostPort]) -> io::Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    commit(&add_msgs(table, ports))
}

/// Removes the mappings that still point at `pod_ip` (a port since taken over by another pod stays).
pub(crate) fn remove_ports(table: &str, ports: &[HostPort]) -> io::Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    let mut msgs = Vec::new();
    for map in [MAP_ALL, MAP_IP] {
        let wanted: Vec<&HostPort> = ports.iter().filter(|p| p.map() == map).collect();
        if wanted.is_empty() {
            continue;
        }
        let present = match elements(table, map) {
            Ok(e) => e,
            // No table or map: nothing of this pod is left there.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        let gone: Vec<&HostPort> = wanted
            .into_iter()
            .filter(|p| {
                present
                    .iter()
                    .any(|(k, v)| *k == p.key() && *v == p.value())
            })
            .collect();
        if !gone.is_empty() {
            msgs.push(elems_msg(NFT_MSG_DELSETELEM, 0, table, map, &gone, false));
        }
    }
    if msgs.is_empty() {
        return Ok(());
    }
    commit(&msgs)
}

/// The (key, value) elements of a map.
pub(crate) fn elements(table: &str, map: &str) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut m = Msg::new(
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM,
        NLM_F_DUMP,
        &nfgenmsg(NFPROTO_IPV4, 0),
    );
    m.str(NFTA_SET_ELEM_LIST_TABLE, table)
        .str(NFTA_SET_ELEM_LIST_SET, map);
    let replies = Socket::open(NETLINK_NETFILTER)?.dump(&m)?;
    let mut out = Vec::new();
    for r in replies {
        if r.payload.len() < 4 {
            continue;
        }
        out.extend(parse_elements(&r.payload[4..]));
    }
    Ok(out)
}

fn parse_elements(payload: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let value = |nested: &[u8]| {
        attrs(nested)
            .into_iter()
            .find(|(t, _)| *t == NFTA_DATA_VALUE)
            .map(|(_, d)| d.to_vec())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (t, list) in attrs(payload) {
        if t != NFTA_SET_ELEM_LIST_ELEMENTS {
            continue;
        }
        for (_, elem) in attrs(list) {
            let mut k = Vec::new();
            let mut v = Vec::new();
            for (t, d) in attrs(elem) {
                match t {
                    NFTA_SET_ELEM_KEY => k = value(d),
                    NFTA_SET_ELEM_DATA => v = value(d),
                    _ => {}
                }
            }
            out.push((k, v));
        }
    }
    out
}

/// Elements in both maps of `table` (0 when there is no such table): what leak tests count.
pub fn count_hostports(table: &str) -> io::Result<usize> {
    let mut n = 0;
    for map in [MAP_ALL, MAP_IP] {
        match elements(table, map) {
            Ok(e) => n += e.len(),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host_ip: Option<Ipv4Addr>) -> HostPort {
        HostPort {
            host_ip,
            proto: 6,
            host_port: 8080,
            pod_ip: Ipv4Addr::new(10, 85, 0, 5),
            pod_port: 80,
        }
    }

    #[test]
    fn keys_and_values_are_register_words() {
        let p = hp(None);
        assert_eq!(p.map(), MAP_ALL);
        assert_eq!(p.key(), vec![6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        assert_eq!(p.value(), vec![10, 85, 0, 5, 0, 80, 0, 0]);
        let p = hp(Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(p.map(), MAP_IP);
        assert_eq!(p.key(), vec![192, 0, 2, 1, 6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
    }

    #[test]
    fn element_messages_round_trip() {
        let ports = [hp(None), hp(Some(Ipv4Addr::new(192, 0, 2, 1)))];
        let msgs = add_msgs("crius0", &ports);
        assert_eq!(msgs.len(), 2, "one message per map");
        let b = msgs[0].bytes(1);
        assert_eq!(
            u16::from_ne_bytes([b[4], b[5]]),
            (10 << 8) | NFT_MSG_NEWSETELEM
        );
        assert_eq!(&b[16..20], &[NFPROTO_IPV4, 0, 0, 0]);
        let top = attrs(&b[20..]);
        assert_eq!(top[0], (NFTA_SET_ELEM_LIST_TABLE, &b"crius0\0"[..]));
        assert_eq!(top[1], (NFTA_SET_ELEM_LIST_SET, &b"hostports\0"[..]));
        assert_eq!(
            parse_elements(&b[20..]),
            vec![(ports[0].key(), ports[0].value())]
        );
        let b = msgs[1].bytes(1);
        assert_eq!(
            parse_elements(&b[20..]),
            vec![(ports[1].key(), ports[1].value())]
        );
        assert!(add_msgs("t", &[]).is_empty());
    }

    #[test]
    fn base_batch_shape() {
        let b = base_batch("crius0", "crius0", Subnet::parse("10.85.0.0/16").unwrap());
        let types: Vec<u16> = b
            .iter()
            .map(|m| u16::from_ne_bytes([m.bytes(0)[4], m.bytes(0)[5]]) & 0xff)
            .collect();
        assert_eq!(
            types,
            vec![
                NFT_MSG_NEWTABLE,
                NFT_MSG_NEWCHAIN,
                NFT_MSG_NEWCHAIN,
                NFT_MSG_NEWCHAIN,
                NFT_MSG_NEWSET,
                NFT_MSG_NEWSET,
                NFT_MSG_DELRULE,
                NFT_MSG_DELRULE,
                NFT_MSG_DELRULE,
                NFT_MSG_NEWRULE,
                NFT_MSG_NEWRULE,
                NFT_MSG_NEWRULE,
                NFT_MSG_NEWRULE,
                NFT_MSG_NEWRULE,
                NFT_MSG_NEWRULE,
                NFT_MSG_NEWRULE,
            ]
        );
        // Every nested attribute carries NLA_F_NESTED (nftables validates it strictly).
        let chain = b[1].bytes(0);
        let hook = attrs(&chain[20..])
            .into_iter()
            .find(|(t, _)| *t == NFTA_CHAIN_HOOK)
            .unwrap();
        assert_eq!(
            attrs(hook.1),
            vec![
                (1, &0u32.to_be_bytes()[..]),
                (2, &(-100i32).to_be_bytes()[..])
            ]
        );
        // Header and nfgenmsg (20), table name (12), chain name (16), then the hook.
        let raw_type = u16::from_ne_bytes([chain[20 + 12 + 16 + 2], chain[20 + 12 + 16 + 3]]);
        assert_eq!(raw_type, NFTA_CHAIN_HOOK | NLA_F_NESTED);
    }
}
