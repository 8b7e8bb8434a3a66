//! Pod network counters: `/proc/net/dev` as seen from inside the pod's network namespace.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
    pub rx_packets: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
}

/// Parses `/proc/net/dev` (two header lines, then `name: rx… tx…` with 8 receive and 8 transmit columns).
pub fn parse_net_dev(text: &str) -> Vec<Iface> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let cols: Vec<u64> = rest
                .split_whitespace()
                .map(|c| c.parse().ok())
                .collect::<Option<Vec<u64>>>()?;
            if cols.len() < 16 {
                return None;
            }
            Some(Iface {
                name: name.trim().to_string(),
                rx_bytes: cols[0],
                rx_errors: cols[2],
                tx_bytes: cols[8],
                tx_errors: cols[10],
                rx_packets: cols[1],
                rx_dropped: cols[3],
                tx_packets: cols[9],
                tx_dropped: cols[11],
            })
        })
        .collect()
}

/// Reads the interfaces of the network namespace pinned at `netns`. A short-lived thread enters it so no
/// thread of the daemon's pool ever changes namespace; `/proc/thread-self` shows that thread's view
/// (`/proc/self/net` would show the main thread's).
pub fn read_in_netns(netns: &Path) -> Result<Vec<Iface>, String> {
    let ns: PathBuf = netns.to_path_buf();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&ns)
            .map_err(|e| format!("open network namespace {}: {e}", ns.display()))?;
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("enter network namespace {}: {e}", ns.display()))?;
        let p = "/proc/thread-self/net/dev";
        let text = std::fs::read_to_string(p).map_err(|e| format!("read {p}: {e}"))?;
        Ok(parse_net_dev(&text))
    })
    .join()
    .map_err(|_| "network stats thread panicked".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
 lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0\n  \
 eth0:    5166      41    1    3    0     0          0         0     1234      12    2    4    0     0       0          0\n\
 bad: 1 2 3\n";
        let v = parse_net_dev(text);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name, "lo");
        assert_eq!(
            v[1],
            Iface {
                name: "eth0".into(),
                rx_bytes: 5166,
                rx_errors: 1,
                tx_bytes: 1234,
                tx_errors: 2,
                rx_packets: 41,
                rx_dropped: 3,
                tx_packets: 12,
                tx_dropped: 4,
            }
        );
    }

    #[test]
    fn reads_the_hosts_own_namespace() {
        // Entering our own namespace is allowed as root and always has a loopback device.
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        let v = read_in_netns(Path::new("/proc/self/ns/net")).unwrap();
        assert!(v.iter().any(|i| i.name == "lo"), "{v:?}");
    }
}
