//! The files a pod gives its containers: /etc/hostname, /etc/hosts, /etc/resolv.conf, and the /dev/shm
//! tmpfs. They live in the pod's state dir and are bind-mounted into every container.

use std::path::{Path, PathBuf};

use cri_api::v1::DnsConfig;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{io_err, Error, Result};

/// Size of a pod's /dev/shm, like Docker's and containerd's default.
pub const SHM_SIZE: u64 = 64 * 1024 * 1024;

fn write_atomic(path: &Path, content: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).map_err(|e| io_err("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err("rename into place", path, e))
}

pub fn write_hostname(dir: &Path, hostname: &str) -> Result<PathBuf> {
    let p = dir.join("hostname");
    write_atomic(&p, &format!("{hostname}\n"))?;
    Ok(p)
}

/// A host-network pod sees the host's /etc/hosts; others get a generated one.
pub fn write_hosts(
    dir: &Path,
    hostname: &str,
    host_network: bool,
    ips: &[String],
) -> Result<PathBuf> {
    let p = dir.join("hosts");
    let content = if host_network {
        std::fs::read_to_string("/etc/hosts")
            .map_err(|e| io_err("read", Path::new("/etc/hosts"), e))?
    } else {
        hosts_content(hostname, ips)
    };
    write_atomic(&p, &content)?;
    Ok(p)
}

pub fn hosts_content(hostname: &str, ips: &[String]) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for ip in ips {
        if !hostname.is_empty() {
            s.push_str(&format!("{ip}\t{hostname}\n"));
        }
    }
    s
}

/// resolv.conf from the pod's DNSConfig; without one, the host's.
pub fn write_resolv_conf(dir: &Path, dns: Option<&DnsConfig>) -> Result<PathBuf> {
    let p = dir.join("resolv.conf");
    let content = match dns {
        Some(d) if !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()) => {
            resolv_content(d)?
        }
        _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    write_atomic(&p, &content)?;
    Ok(p)
}

pub fn resolv_content(d: &DnsConfig) -> Result<String> {
    let mut s = String::new();
    for (i, server) in d.servers.iter().enumerate() {
        if server.parse::<std::net::IpAddr>().is_err() {
            return Err(Error::invalid(
                format!("dns_config.servers[{i}]"),
                format!("{server:?} is not an IP address"),
            ));
        }
        s.push_str(&format!("nameserver {server}\n"));
    }
    for (field, list) in [("searches", &d.searches), ("options", &d.options)] {
        for (i, v) in list.iter().enumerate() {
            if v.is_empty() || v.chars().any(|c| c.is_whitespace()) {
                return Err(Error::invalid(
                    format!("dns_config.{field}[{i}]"),
                    format!("{v:?} is empty or holds white space"),
                ));
            }
        }
    }
    if !d.searches.is_empty() {
        s.push_str(&format!("search {}\n", d.searches.join(" ")));
    }
    if !d.options.is_empty() {
        s.push_str(&format!("options {}\n", d.options.join(" ")));
    }
    Ok(s)
}

/// Mounts the pod's /dev/shm tmpfs at `dir/shm`.
pub fn mount_shm(dir: &Path) -> Result<PathBuf> {
    let p = dir.join("shm");
    std::fs::create_dir_all(&p).map_err(|e| io_err("create shm dir", &p, e))?;
    let data = format!("mode=1777,size={SHM_SIZE}");
    mount(
        Some("shm"),
        &p,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .map_err(|e| Error::internal(format!("mount shm tmpfs at {}", p.display()), e))?;
    Ok(p)
}

pub fn unmount(p: &Path) {
    // EINVAL (not mounted) and ENOENT are the idempotent cases.
    let _ = umount2(p, MntFlags::MNT_DETACH);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_from_dns_config() {
        let d = DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["ns.svc.cluster.local".into(), "cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_content(&d).unwrap(),
            "nameserver 10.0.0.10\nsearch ns.svc.cluster.local cluster.local\noptions ndots:5\n"
        );
    }

    #[test]
    fn bad_dns_server_names_field() {
        let d = DnsConfig {
            servers: vec!["not-an-ip".into()],
            ..Default::default()
        };
        let e = resolv_content(&d).unwrap_err().to_string();
        assert!(e.contains("dns_config.servers[0]"), "{e}");
    }

    #[test]
    fn hosts_lists_pod_ip() {
        let h = hosts_content("web-0", &["10.85.0.7".into()]);
        assert!(h.contains("127.0.0.1\tlocalhost"));
        assert!(h.ends_with("10.85.0.7\tweb-0\n"));
    }
}
