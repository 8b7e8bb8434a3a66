//! Container and pod stats for the CRI stats RPCs (ContainerStats, ListContainerStats, PodSandboxStats,
//! ListPodSandboxStats and their Stream* forms).
//!
//! Sources: the container's cgroup (the OCI spec's `linux.cgroupsPath`, read through [`cgroup`] for v1 and
//! v2), the overlay upper dir of its rootfs for the writable layer, and `/proc/net/dev` inside the pod's
//! network namespace ([`net`]). CPU rate (`usage_nano_cores`) is the delta against the previous sample of
//! the same container or pod, which this module keeps in a small process-wide table.

pub mod cgroup;
pub mod cri_metrics;
pub mod detail;
pub mod net;

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cri_api::v1 as cri;

use crate::container::{ContainerRecord, CtrState};
use crate::error::Result;
use crate::pod::{PodState, SandboxRecord};
use crate::runtime::{labels_match, now_ns, Runtime};
use cgroup::Cgroup;

/// Entries walked per writable layer at most: a container that fills its rootfs with millions of small
/// files must not make one stats call walk them all. Past it, the figures are a lower bound.
const FS_WALK_LIMIT: u64 = 200_000;

/// CPU samples older than this are dropped (their container is probably gone).
const SAMPLE_TTL_NS: i64 = 10 * 60 * 1_000_000_000;

/// Below this gap the previous sample is kept: a rate over a few milliseconds is mostly noise, and two
/// clients polling at once would otherwise spoil each other's rate.
const MIN_SAMPLE_GAP_NS: i64 = 100_000_000;

#[derive(Debug, Clone, Copy)]
struct Sample {
    usage_ns: u64,
    at: i64,
}

static LAST_CPU: Mutex<BTreeMap<String, Sample>> = Mutex::new(BTreeMap::new());

/// The CPU rate in nanocores since the previous sample under `key`, recording this one.
fn nano_cores(key: &str, usage_ns: u64, at: i64) -> Option<u64> {
    let mut last = LAST_CPU.lock().unwrap_or_else(|p| p.into_inner());
    last.retain(|_, s| at - s.at < SAMPLE_TTL_NS);
    let prev = last.get(key).copied();
    match prev {
        Some(p) if at - p.at < MIN_SAMPLE_GAP_NS && at >= p.at => {}
        _ => {
            last.insert(key.to_string(), Sample { usage_ns, at });
        }
    }
    rate(prev?, Sample { usage_ns, at })
}

fn rate(prev: Sample, cur: Sample) -> Option<u64> {
    let dt = cur.at - prev.at;
    // A counter that went back is a new cgroup under the same key (or a pod that lost a container).
    if dt <= 0 || cur.usage_ns < prev.usage_ns {
        return None;
    }
    Some(((cur.usage_ns - prev.usage_ns) as u128 * 1_000_000_000 / dt as u128) as u64)
}

fn u64v(value: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value })
}

/// Allocated bytes and inodes below `root`, hard links counted once, symlinks not followed, at most
/// `limit` entries. A missing root is empty.
pub fn dir_usage(root: &Path, limit: u64) -> (u64, u64) {
    let mut seen = HashSet::new();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if inodes >= limit {
            tracing::debug!(
                "writable layer {}: stopped counting at {limit} entries",
                root.display()
            );
            break;
        }
        // Entries vanish under a running container; they simply are not counted.
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
            continue;
        }
        bytes += m.blocks() * 512;
        inodes += 1;
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    (bytes, inodes)
}

/// Whether a pod's cgroup parent belongs to that pod alone (the kubelet names it `pod<uid>`), so that
/// its counters are the pod's. A shared parent (crius' default `/crius`) holds other pods too.
pub fn parent_is_pods_own(parent: &str, uid: &str) -> bool {
    if uid.is_empty() {
        return false;
    }
    let base = parent
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");
    base.contains(uid) || base.contains(&uid.replace('-', "_"))
}

/// Sums of several cgroups' counters (a pod without a cgroup of its own).
#[derive(Default)]
struct Totals {
    cpu_ns: Option<u64>,
    memory: Option<cgroup::Memory>,
    processes: Option<u64>,
}

impl Totals {
    fn add(&mut self, cg: &Cgroup) {
        if let Some(ns) = cg.cpu_usage_ns() {
            self.cpu_ns = Some(self.cpu_ns.unwrap_or(0) + ns);
        }
        if let Some(m) = cg.memory() {
            let t = self.memory.get_or_insert_with(Default::default);
            t.usage += m.usage;
            t.working_set += m.working_set;
            t.rss += m.rss;
            t.page_faults += m.page_faults;
            t.major_page_faults += m.major_page_faults;
        }
        if let Some(n) = cg.processes() {
            self.processes = Some(self.processes.unwrap_or(0) + n);
        }
    }
}

/// A pressure file as the CRI's PsiStats (totals in nanoseconds; the kernel counts microseconds).
fn psi_stats(p: Option<detail::Psi>) -> Option<cri::PsiStats> {
    let data = |l: &detail::PsiLine| cri::PsiData {
        total: l.total_us.saturating_mul(1000),
        avg10: l.avg10,
        avg60: l.avg60,
        avg300: l.avg300,
    };
    p.map(|p| cri::PsiStats {
        full: p.full.as_ref().map(data),
        some: Some(data(&p.some)),
    })
}

/// The pressure of `resource` in `cg` (cgroup v2 only; `None` on v1 or without a cgroup).
fn pressure(cg: Option<&Cgroup>, resource: &str) -> Option<cri::PsiStats> {
    psi_stats(cg.and_then(|cg| cg.pressure(resource)))
}

/// IoUsage: the CRI message carries only pressure; it is present whenever the cgroup is.
fn io_usage(cg: Option<&Cgroup>, at: i64) -> Option<cri::IoUsage> {
    cg.map(|cg| cri::IoUsage {
        timestamp: at,
        psi: psi_stats(cg.pressure("io")),
    })
}

fn cpu_usage(
    key: &str,
    usage_ns: Option<u64>,
    at: i64,
    psi: Option<cri::PsiStats>,
) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: at,
        usage_core_nano_seconds: usage_ns.and_then(u64v),
        usage_nano_cores: usage_ns
            .and_then(|ns| nano_cores(key, ns, at))
            .and_then(u64v),
        psi,
    }
}

fn memory_usage(
    m: Option<cgroup::Memory>,
    at: i64,
    psi: Option<cri::PsiStats>,
) -> cri::MemoryUsage {
    let Some(m) = m else {
        return cri::MemoryUsage {
            timestamp: at,
            psi,
            ..Default::default()
        };
    };
    cri::MemoryUsage {
        timestamp: at,
        working_set_bytes: u64v(m.working_set),
        available_bytes: m.limit.and_then(|l| u64v(l.saturating_sub(m.working_set))),
        usage_bytes: u64v(m.usage),
        rss_bytes: u64v(m.rss),
        page_faults: u64v(m.page_faults),
        major_page_faults: u64v(m.major_page_faults),
        psi,
    }
}

impl Runtime {
    /// The cgroup of a container, from the `linux.cgroupsPath` of the OCI spec it was created with.
    fn container_cgroup(&self, id: &str) -> Option<Cgroup> {
        let spec = self.container_dir(id).join("config.json");
        let bytes = std::fs::read(&spec).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let path = v.get("linux")?.get("cgroupsPath")?.as_str()?;
        Some(Cgroup::new(
            &crate::cgroups::systemd::fs_path(path),
            self.host.cgroup_v2,
        ))
    }

    fn writable_layer(&self, id: &str, at: i64) -> cri::FilesystemUsage {
        // The container filesystem ImageFsInfo reports, so the kubelet can attribute this usage to it.
        let containers = self.images.options().root.join("containers");
        let (bytes, inodes) = dir_usage(&containers.join(id).join("upper"), FS_WALK_LIMIT);
        cri::FilesystemUsage {
            timestamp: at,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: containers.display().to_string(),
            }),
            used_bytes: u64v(bytes),
            inodes_used: u64v(inodes),
        }
    }

    fn stats_of(&self, rec: &ContainerRecord) -> cri::ContainerStats {
        let at = now_ns();
        let cfg = rec.config();
        // An exited container's cgroup is gone (or about to be): it has no usage to report.
        let cg = matches!(rec.state, CtrState::Running | CtrState::Created)
            .then(|| self.container_cgroup(&rec.id))
            .flatten()
            .filter(|cg| cg.exists());
        let swap = cg
            .as_ref()
            .and_then(|cg| cg.swap())
            .map(|s| cri::SwapUsage {
                timestamp: at,
                swap_available_bytes: s.limit.and_then(|l| u64v(l.saturating_sub(s.usage))),
                swap_usage_bytes: u64v(s.usage),
            });
        cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: rec.id.clone(),
                metadata: cfg.metadata,
                labels: cfg.labels,
                annotations: cfg.annotations,
            }),
            cpu: Some(cpu_usage(
                &rec.id,
                cg.as_ref().and_then(|cg| cg.cpu_usage_ns()),
                at,
                pressure(cg.as_ref(), "cpu"),
            )),
            memory: Some(memory_usage(
                cg.as_ref().and_then(|cg| cg.memory()),
                at,
                pressure(cg.as_ref(), "memory"),
            )),
            writable_layer: Some(self.writable_layer(&rec.id, at)),
            swap,
            io: io_usage(cg.as_ref(), at),
        }
    }

    /// ContainerStats.
    pub fn container_stats(&self, id: &str) -> Result<cri::ContainerStats> {
        let rec = self.container(id)?.record();
        if rec.state == CtrState::Creating {
            return Err(crate::error::Error::not_found("container", id));
        }
        Ok(self.stats_of(&rec))
    }

    /// ListContainerStats: containers matching the filter's id prefix, pod id prefix and labels.
    pub fn list_container_stats(
        &self,
        filter: Option<&cri::ContainerStatsFilter>,
    ) -> Vec<cri::ContainerStats> {
        let mut recs: Vec<ContainerRecord> = self
            .all_containers()
            .into_iter()
            .map(|c| c.record())
            .filter(|r| r.state != CtrState::Creating)
            .filter(|r| match filter {
                None => true,
                Some(f) => {
                    (f.id.is_empty() || r.id.starts_with(&f.id))
                        && (f.pod_sandbox_id.is_empty()
                            || r.sandbox_id.starts_with(&f.pod_sandbox_id))
                        && labels_match(&r.config().labels, &f.label_selector)
                }
            })
            .collect();
        recs.sort_by_key(|r| r.created_at);
        recs.iter().map(|r| self.stats_of(r)).collect()
    }

    fn pod_stats_of(&self, rec: &SandboxRecord) -> cri::PodSandboxStats {
        let cfg = rec.config();
        let mut ctrs: Vec<ContainerRecord> = self
            .all_containers()
            .into_iter()
            .filter(|c| c.sandbox_id == rec.id)
            .map(|c| c.record())
            .filter(|r| r.state != CtrState::Creating)
            .collect();
        ctrs.sort_by_key(|r| r.created_at);
        let containers: Vec<cri::ContainerStats> = ctrs.iter().map(|r| self.stats_of(r)).collect();

        let at = now_ns();
        let v2 = self.host.cgroup_v2;
        let uid = cfg.metadata.as_ref().map(|m| m.uid.as_str()).unwrap_or("");
        let parent = Cgroup::new(
            &crate::cgroups::systemd::parent_fs_path(&rec.cgroup_parent),
            v2,
        );
        let mut totals = Totals::default();
        let own_parent = parent_is_pods_own(&rec.cgroup_parent, uid) && parent.exists();
        if own_parent {
            totals.add(&parent);
        } else {
            // The pause container (pods sharing a PID namespace) has a cgroup of its own.
            let sandbox = format!(
                "{}/crius-{}",
                rec.cgroup_parent.trim_end_matches('/'),
                rec.id
            );
            let mut cgroups = vec![Cgroup::new(Path::new(&sandbox), v2)];
            cgroups.extend(
                ctrs.iter()
                    .filter(|r| matches!(r.state, CtrState::Running | CtrState::Created))
                    .filter_map(|r| self.container_cgroup(&r.id)),
            );
            for cg in cgroups.iter().filter(|cg| cg.exists()) {
                totals.add(cg);
            }
        }
        let mut memory = totals.memory;
        if own_parent {
            if let (Some(m), Some(full)) = (memory.as_mut(), parent.memory()) {
                m.limit = full.limit;
            }
        }
        let own = own_parent.then_some(&parent).cloned();
        let network = (rec.state == PodState::Ready)
            .then_some(rec.pins.net.as_ref())
            .flatten()
            .and_then(|ns| match net::read_in_netns(ns) {
                Ok(ifaces) => Some(ifaces),
                Err(e) => {
                    tracing::debug!("pod {}: network stats: {e}", rec.id);
                    None
                }
            })
            .map(|ifaces| {
                let to_cri = |i: &net::Iface| cri::NetworkInterfaceUsage {
                    name: i.name.clone(),
                    rx_bytes: u64v(i.rx_bytes),
                    rx_errors: u64v(i.rx_errors),
                    tx_bytes: u64v(i.tx_bytes),
                    tx_errors: u64v(i.tx_errors),
                };
                cri::NetworkUsage {
                    timestamp: at,
                    default_interface: ifaces.iter().find(|i| i.name == "eth0").map(to_cri),
                    interfaces: ifaces
                        .iter()
                        .filter(|i| i.name != "lo")
                        .map(to_cri)
                        .collect(),
                }
            });
        cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: rec.id.clone(),
                metadata: cfg.metadata,
                labels: cfg.labels,
                annotations: cfg.annotations,
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: Some(cpu_usage(
                    &format!("pod:{}", rec.id),
                    totals.cpu_ns,
                    at,
                    pressure(own.as_ref(), "cpu"),
                )),
                memory: Some(memory_usage(memory, at, pressure(own.as_ref(), "memory"))),
                network,
                process: Some(cri::ProcessUsage {
                    timestamp: at,
                    process_count: totals.processes.and_then(u64v),
                }),
                containers,
                // Pressure is not additive: only a cgroup of the pod's own has a pod-wide figure.
                io: io_usage(own.as_ref(), at),
            }),
            windows: None,
        }
    }

    /// PodSandboxStats.
    pub fn pod_stats(&self, id: &str) -> Result<cri::PodSandboxStats> {
        let rec = self.pod(id)?.record();
        if rec.state == PodState::Creating {
            return Err(crate::error::Error::not_found("pod sandbox", id));
        }
        Ok(self.pod_stats_of(&rec))
    }

    /// ListPodSandboxStats: pods matching the filter's id prefix and labels.
    pub fn list_pod_stats(
        &self,
        filter: Option<&cri::PodSandboxStatsFilter>,
    ) -> Vec<cri::PodSandboxStats> {
        let mut recs: Vec<SandboxRecord> = self
            .all_pods()
            .into_iter()
            .map(|p| p.record())
            .filter(|r| r.state != PodState::Creating)
            .filter(|r| match filter {
                None => true,
                Some(f) => {
                    (f.id.is_empty() || r.id.starts_with(&f.id))
                        && labels_match(&r.config().labels, &f.label_selector)
                }
            })
            .collect();
        recs.sort_by_key(|r| r.created_at);
        recs.iter().map(|r| self.pod_stats_of(r)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rate_from_two_samples() {
        let s = |usage_ns, at| Sample { usage_ns, at };
        // Half a core over two seconds.
        assert_eq!(
            rate(s(0, 0), s(1_000_000_000, 2_000_000_000)),
            Some(500_000_000)
        );
        assert_eq!(rate(s(10, 5), s(20, 5)), None);
        assert_eq!(rate(s(20, 0), s(10, 1_000_000_000)), None);
    }

    #[test]
    fn nano_cores_needs_a_previous_sample_and_keeps_it_over_short_gaps() {
        let key = "unit-test-nano-cores";
        assert_eq!(nano_cores(key, 1_000, 1_000_000_000_000), None);
        // 10 ms later: computed against the first sample, which stays.
        assert_eq!(
            nano_cores(key, 1_000 + 10_000_000, 1_000_010_000_000),
            Some(1_000_000_000)
        );
        // One second after the first sample, a quarter core.
        assert_eq!(
            nano_cores(key, 1_000 + 250_000_000, 1_001_000_000_000),
            Some(250_000_000)
        );
        // The one-second sample was recorded.
        assert_eq!(
            nano_cores(key, 1_000 + 750_000_000, 1_002_000_000_000),
            Some(500_000_000)
        );
    }

    #[test]
    fn psi_becomes_cri_psi_stats_in_nanoseconds() {
        let p = detail::parse_psi(
            "some avg10=1.50 avg60=0.50 avg300=0.10 total=2500\nfull avg10=0.25 avg60=0.00 avg300=0.00 total=1000\n",
        );
        let s = psi_stats(p).unwrap();
        let some = s.some.unwrap();
        assert_eq!(some.total, 2_500_000);
        assert_eq!((some.avg10, some.avg60, some.avg300), (1.5, 0.5, 0.1));
        assert_eq!(s.full.unwrap().total, 1_000_000);
        assert_eq!(psi_stats(None), None);

        // v1: the cgroup exists, so IoUsage is served with its timestamp and without pressure.
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("memory/c")).unwrap();
        let v1 = Cgroup::with_root(t.path(), Path::new("/c"), false);
        let io = io_usage(Some(&v1), 7).unwrap();
        assert_eq!((io.timestamp, io.psi), (7, None));
        assert_eq!(pressure(Some(&v1), "cpu"), None);
        // v2 with pressure files.
        std::fs::create_dir_all(t.path().join("c2")).unwrap();
        std::fs::write(
            t.path().join("c2/io.pressure"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=9\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=4\n",
        )
        .unwrap();
        let v2 = Cgroup::with_root(t.path(), Path::new("/c2"), true);
        let io = io_usage(Some(&v2), 8).unwrap();
        assert_eq!(io.psi.unwrap().full.unwrap().total, 4000);
        assert_eq!(io_usage(None, 9), None);
    }

    #[test]
    fn pod_owned_parents() {
        assert!(parent_is_pods_own("/kubepods/besteffort/podab-cd", "ab-cd"));
        assert!(parent_is_pods_own("/kubepods/pod_ab_cd/", "ab-cd"));
        assert!(!parent_is_pods_own("/crius", "ab-cd"));
        assert!(!parent_is_pods_own("/kubepods/podab-cd/x", "ab-cd"));
        assert!(!parent_is_pods_own("/crius", ""));
    }

    #[test]
    fn dir_usage_counts_hard_links_once_and_stops_at_the_limit() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/a"), vec![1u8; 64 * 1024]).unwrap();
        std::fs::hard_link(d.join("sub/a"), d.join("b")).unwrap();
        std::os::unix::fs::symlink("/etc", d.join("l")).unwrap();
        let (bytes, inodes) = dir_usage(d, 1000);
        // root, sub, a (once), l
        assert_eq!(inodes, 4);
        assert!(bytes >= 64 * 1024, "{bytes}");
        assert_eq!(dir_usage(d, 2).1, 2);
        assert_eq!(dir_usage(&d.join("missing"), 1000), (0, 0));
    }
}
