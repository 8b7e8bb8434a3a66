//! Counting what pod networking leaves on the host — veths on a bridge, host-local IP reservations,
//! per-pod iptables NAT chains of portmap and of bridge's ipMasq — so leak tests (this crate's and the
//! daemon's) can compare before/after a setup/teardown loop. The `_matching` variants count only the
//! chains whose jump rule mentions a string (a network name or pod id), so concurrent users of the same
//! host do not disturb the count.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::process::Command;

/// Interfaces enslaved to `bridge` (0 when the bridge does not exist).
pub fn count_veths(bridge: &str) -> io::Result<usize> {
    let dir = Path::new("/sys/class/net").join(bridge).join("brif");
    match std::fs::read_dir(&dir) {
        Ok(rd) => Ok(rd.filter(|e| e.is_ok()).count()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    }
}

/// host-local reservations in `dir` (the network's data dir, e.g. /var/lib/cni/networks/crius): one
/// file per reserved address; the `last_reserved_ip.*` and `lock` files are not reservations.
pub fn count_ipam(dir: &Path) -> io::Result<usize> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<std::net::IpAddr>().is_ok())
            })
            .count()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    }
}

/// All per-pod portmap lines (chain declarations, rules in and jumps to `CNI-DN-*` chains) in the nat
/// table. The shared CNI-HOSTPORT-* chains stay after the last pod and are not counted.
pub fn count_portmap_rules() -> io::Result<usize> {
    count_portmap_rules_matching("")
}

/// Per-pod portmap lines of the chains whose jump rule contains `needle` (portmap puts the network
/// name and pod id in that rule's comment).
pub fn count_portmap_rules_matching(needle: &str) -> io::Result<usize> {
    Ok(count_pod_chain_lines(
        &nat_dump()?,
        is_portmap_chain,
        needle,
    ))
}

/// Per-pod ipMasq lines of the bridge plugin (a `CNI-<hash>` chain jumped to from POSTROUTING with
/// the network name and pod id in the comment).
pub fn count_masq_rules_matching(needle: &str) -> io::Result<usize> {
    Ok(count_pod_chain_lines(&nat_dump()?, is_masq_chain, needle))
}

/// hostPort mappings (map elements) in the native network of `bridge` (its nftables table is named
/// after the bridge); 0 when there is no such table.
pub fn count_native_hostports(bridge: &str) -> io::Result<usize> {
    crate::native::count_hostports(bridge)
}

/// Removes the native network of `bridge` (the bridge and its nftables table): test cleanup.
pub fn remove_native_network(bridge: &str) -> io::Result<()> {
    crate::native::remove_network(bridge)
}

fn nat_dump() -> io::Result<String> {
    let out = Command::new("iptables-save").args(["-t", "nat"]).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "iptables-save -t nat: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_portmap_chain(c: &str) -> bool {
    c.starts_with("CNI-DN-")
}

fn is_masq_chain(c: &str) -> bool {
    c.strip_prefix("CNI-")
        .is_some_and(|h| h.len() == 24 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn count_pod_chain_lines(dump: &str, is_pod_chain: fn(&str) -> bool, needle: &str) -> usize {
    let chain_tokens = |line: &str| -> Vec<String> {
        line.split_whitespace()
            .map(|t| t.trim_start_matches(':'))
            .filter(|t| is_pod_chain(t))
            .map(str::to_string)
            .collect()
    };
    let chains: BTreeSet<String> = dump
        .lines()
        .filter(|l| needle.is_empty() || (l.starts_with("-A ") && l.contains(needle)))
        .flat_map(chain_tokens)
        .collect();
    dump.lines()
        .filter(|l| chain_tokens(l).iter().any(|c| chains.contains(c)))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = r#"*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-DN-aaaaaaaaaaaaaaaaaaaaa - [0:0]
:CNI-DN-bbbbbbbbbbbbbbbbbbbbb - [0:0]
:CNI-0123456789abcdef01234567 - [0:0]
-A POSTROUTING -s 10.99.1.2/32 -m comment --comment "name: \"net1\" id: \"pod-a\"" -j CNI-0123456789abcdef01234567
-A CNI-0123456789abcdef01234567 -d 10.99.1.0/24 -m comment --comment "name: \"net1\" id: \"pod-a\"" -j ACCEPT
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"net1\" id: \"pod-a\"" -m multiport --dports 8080 -j CNI-DN-aaaaaaaaaaaaaaaaaaaaa
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"net2\" id: \"pod-b\"" -m multiport --dports 9090 -j CNI-DN-bbbbbbbbbbbbbbbbbbbbb
-A CNI-DN-aaaaaaaaaaaaaaaaaaaaa -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.1.2:80
-A CNI-DN-bbbbbbbbbbbbbbbbbbbbb -p tcp -m tcp --dport 9090 -j DNAT --to-destination 10.99.2.2:80
COMMIT
"#;

    #[test]
    fn counts_per_pod_chains() {
        assert_eq!(count_pod_chain_lines(DUMP, is_portmap_chain, ""), 6);
        assert_eq!(count_pod_chain_lines(DUMP, is_portmap_chain, "pod-a"), 3);
        assert_eq!(count_pod_chain_lines(DUMP, is_portmap_chain, "net2"), 3);
        assert_eq!(count_pod_chain_lines(DUMP, is_portmap_chain, "pod-z"), 0);
        assert_eq!(count_pod_chain_lines(DUMP, is_masq_chain, "pod-a"), 3);
        assert_eq!(count_pod_chain_lines(DUMP, is_masq_chain, "pod-b"), 0);
    }

    #[test]
    fn ipam_and_veth_counts_on_missing_things() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(count_ipam(&dir.path().join("none")).unwrap(), 0);
        for f in ["10.0.0.2", "10.0.0.3", "last_reserved_ip.0", "lock"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        assert_eq!(count_ipam(dir.path()).unwrap(), 2);
        assert_eq!(count_veths("no-such-bridge0").unwrap(), 0);
    }
}
