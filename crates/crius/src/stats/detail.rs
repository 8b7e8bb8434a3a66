//! The detailed cgroup figures behind the CRI metrics RPCs (the cAdvisor-style series) and the I/O and
//! pressure (PSI) parts of the stats RPCs: CPU split and throttling, the memory breakdown, OOM kills,
//! tasks, the limits in force, block I/O per device and pressure stall information.
//!
//! What each cgroup version serves:
//! - v1: CPU from `cpuacct.usage`/`cpuacct.stat`/`cpu.stat`, memory from `memory.stat` (total_*),
//!   `memory.failcnt`, `memory.max_usage_in_bytes`, `memory.kmem.usage_in_bytes`; OOM kills from
//!   `memory.oom_control`; block I/O from `blkio.throttle.io_service_bytes_recursive` and
//!   `…io_serviced_recursive`. No pressure files exist on v1: PSI is absent.
//! - v2: CPU from `cpu.stat`, memory from `memory.stat`/`memory.peak`, OOM kills from `memory.events`,
//!   block I/O from `io.stat`, PSI from `cpu.pressure`, `memory.pressure` and `io.pressure`.
//!
//! Like [`super::cgroup`], a missing file is `None`: the cgroup may be gone, or the kernel may not have
//! that file.

use super::cgroup::{parse_flat_keyed, parse_limit, Cgroup};

/// USER_HZ, the unit of v1 `cpuacct.stat`: 100 on every Linux ABI.
const USER_HZ: u64 = 100;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuDetail {
    pub user_ns: u64,
    pub system_ns: u64,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryDetail {
    pub cache: u64,
    pub rss: u64,
    pub mapped_file: u64,
    pub swap: u64,
    pub kernel: u64,
    pub failcnt: u64,
    pub max_usage: Option<u64>,
    pub active_file: u64,
    pub inactive_file: u64,
    pub active_anon: u64,
    pub inactive_anon: u64,
    pub anon_thp: u64,
    pub file_thp: u64,
    pub shmem_thp: u64,
    pub pgfault: u64,
    pub pgmajfault: u64,
}

/// Block I/O of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoDevice {
    pub major: u64,
    pub minor: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

/// One line of a pressure file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PsiLine {
    /// Microseconds of stall since the cgroup was created.
    pub total_us: u64,
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
}

/// A pressure file: `some` (at least one task stalled) and `full` (all non-idle tasks stalled).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Psi {
    pub some: PsiLine,
    pub full: Option<PsiLine>,
}

/// The limits in force (the container's spec as the kernel holds it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<u64>,
    pub memory_reservation: Option<u64>,
    pub swap: Option<u64>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<u64>,
    pub cpu_shares: Option<u64>,
}

/// Parses a pressure file (`cpu.pressure`, `memory.pressure`, `io.pressure`).
pub fn parse_psi(text: &str) -> Option<Psi> {
    let mut some = None;
    let mut full = None;
    for l in text.lines() {
        let mut it = l.split_whitespace();
        let kind = it.next();
        let mut line = PsiLine::default();
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            match k {
                "avg10" => line.avg10 = v.parse().ok()?,
                "avg60" => line.avg60 = v.parse().ok()?,
                "avg300" => line.avg300 = v.parse().ok()?,
                "total" => line.total_us = v.parse().ok()?,
                _ => {}
            }
        }
        match kind {
            Some("some") => some = Some(line),
            Some("full") => full = Some(line),
            _ => {}
        }
    }
    Some(Psi { some: some?, full })
}

/// Parses v2 `io.stat`: `MAJ:MIN rbytes=… wbytes=… rios=… wios=… dbytes=… dios=…` per device.
pub fn parse_io_stat(text: &str) -> Vec<IoDevice> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (major, minor) = parse_dev(it.next()?)?;
            let mut d = IoDevice {
                major,
                minor,
                ..Default::default()
            };
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let Ok(v) = v.parse::<u64>() else {
                    continue;
                };
                match k {
                    "rbytes" => d.read_bytes = v,
                    "wbytes" => d.write_bytes = v,
                    "rios" => d.reads = v,
                    "wios" => d.writes = v,
                    _ => {}
                }
            }
            Some(d)
        })
        .collect()
}

fn parse_dev(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Parses a v1 blkio file pair: `…io_service_bytes…` (bytes) and `…io_serviced…` (operations), lines
/// `MAJ:MIN Read|Write|Sync|Async|Discard|Total N` and a final `Total N`.
pub fn parse_blkio(bytes: &str, ops: &str) -> Vec<IoDevice> {
    let mut devs: Vec<IoDevice> = Vec::new();
    let mut apply = |text: &str, is_bytes: bool| {
        for l in text.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [dev, op, n] = f.as_slice() else {
                continue;
            };
            let (Some((major, minor)), Ok(n)) = (parse_dev(dev), n.parse::<u64>()) else {
                continue;
            };
            let i = match devs
                .iter()
                .position(|d| d.major == major && d.minor == minor)
            {
                Some(i) => i,
                None => {
                    devs.push(IoDevice {
                        major,
                        minor,
                        ..Default::default()
                    });
                    devs.len() - 1
                }
            };
            let d = &mut devs[i];
            match (*op, is_bytes) {
                ("Read", true) => d.read_bytes = n,
                ("Write", true) => d.write_bytes = n,
                ("Read", false) => d.reads = n,
                ("Write", false) => d.writes = n,
                _ => {}
            }
        }
    };
    apply(bytes, true);
    apply(ops, false);
    devs
}

impl Cgroup {
    pub fn cpu_detail(&self) -> Option<CpuDetail> {
        if self.v2() {
            let st = self.read("cpu", "cpu.stat")?;
            let st = parse_flat_keyed(&st);
            let get = |k: &str| st.get(k).copied().unwrap_or(0);
            Some(CpuDetail {
                user_ns: get("user_usec").saturating_mul(1000),
                system_ns: get("system_usec").saturating_mul(1000),
                periods: get("nr_periods"),
                throttled_periods: get("nr_throttled"),
                throttled_ns: get("throttled_usec").saturating_mul(1000),
            })
        } else {
            let acct = self.read("cpuacct", "cpuacct.stat")?;
            let acct = parse_flat_keyed(&acct);
            let ticks = |k: &str| {
                acct.get(k)
                    .copied()
                    .unwrap_or(0)
                    .saturating_mul(1_000_000_000 / USER_HZ)
            };
            let st = self.read("cpu", "cpu.stat").unwrap_or_default();
            let st = parse_flat_keyed(&st);
            let get = |k: &str| st.get(k).copied().unwrap_or(0);
            Some(CpuDetail {
                user_ns: ticks("user"),
                system_ns: ticks("system"),
                periods: get("nr_periods"),
                throttled_periods: get("nr_throttled"),
                throttled_ns: get("throttled_time"),
            })
        }
    }

    pub fn memory_detail(&self) -> Option<MemoryDetail> {
        let stat = self.read("memory", "memory.stat")?;
        let stat = parse_flat_keyed(&stat);
        if self.v2() {
            let get = |k: &str| stat.get(k).copied().unwrap_or(0);
            Some(MemoryDetail {
                cache: get("file"),
                rss: get("anon"),
                mapped_file: get("file_mapped"),
                swap: self.read_u64("memory", "memory.swap.current").unwrap_or(0),
                kernel: stat.get("kernel").copied().unwrap_or_else(|| {
                    get("kernel_stack") + get("pagetables") + get("sock") + get("slab")
                }),
                // v2 has no failure counter; `max` of memory.events is the closest (limit hits).
                failcnt: self
                    .read("memory", "memory.events")
                    .map(|t| parse_flat_keyed(&t).get("max").copied().unwrap_or(0))
                    .unwrap_or(0),
                max_usage: self.read_u64("memory", "memory.peak"),
                active_file: get("active_file"),
                inactive_file: get("inactive_file"),
                active_anon: get("active_anon"),
                inactive_anon: get("inactive_anon"),
                anon_thp: get("anon_thp"),
                file_thp: get("file_thp"),
                shmem_thp: get("shmem_thp"),
                pgfault: get("pgfault"),
                pgmajfault: get("pgmajfault"),
            })
        } else {
            // total_* include child cgroups (a pod's cgroup parent has them).
            let get = |k: &str| {
                stat.get(format!("total_{k}").as_str())
                    .or_else(|| stat.get(k))
                    .copied()
                    .unwrap_or(0)
            };
            Some(MemoryDetail {
                cache: get("cache"),
                rss: get("rss"),
                mapped_file: get("mapped_file"),
                swap: get("swap"),
                kernel: self
                    .read_u64("memory", "memory.kmem.usage_in_bytes")
                    .unwrap_or(0),
                failcnt: self.read_u64("memory", "memory.failcnt").unwrap_or(0),
                max_usage: self.read_u64("memory", "memory.max_usage_in_bytes"),
                active_file: get("active_file"),
                inactive_file: get("inactive_file"),
                active_anon: get("active_anon"),
                inactive_anon: get("inactive_anon"),
                // v1 does not account transparent huge pages per cgroup.
                anon_thp: 0,
                file_thp: 0,
                shmem_thp: 0,
                pgfault: get("pgfault"),
                pgmajfault: get("pgmajfault"),
            })
        }
    }

    /// Processes the OOM killer ended in this cgroup.
    pub fn oom_kills(&self) -> Option<u64> {
        let file = if self.v2() {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let text = self.read("memory", file)?;
        parse_flat_keyed(&text).get("oom_kill").copied()
    }

    /// Threads (tasks) in the cgroup.
    pub fn threads(&self) -> Option<u64> {
        let text = if self.v2() {
            self.read("memory", "cgroup.threads")?
        } else {
            self.read("pids", "tasks")
                .or_else(|| self.read("memory", "tasks"))?
        };
        Some(text.lines().filter(|l| !l.trim().is_empty()).count() as u64)
    }

    /// `pids.max`; `None` when unlimited.
    pub fn threads_max(&self) -> Option<u64> {
        parse_limit(&self.read("pids", "pids.max")?)
    }

    /// Pids of the processes in the cgroup.
    pub fn procs(&self) -> Vec<i32> {
        self.read("memory", "cgroup.procs")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    pub fn limits(&self) -> Limits {
        if self.v2() {
            let (quota, period) = self
                .read("cpu", "cpu.max")
                .map(|s| {
                    let mut it = s.split_whitespace();
                    let q = it.next().and_then(|q| q.parse().ok());
                    let p = it.next().and_then(|p| p.parse().ok());
                    (q, p)
                })
                .unwrap_or((None, None));
            Limits {
                memory: self
                    .read("memory", "memory.max")
                    .and_then(|s| parse_limit(&s)),
                memory_reservation: self
                    .read("memory", "memory.low")
                    .and_then(|s| parse_limit(&s)),
                swap: self
                    .read("memory", "memory.swap.max")
                    .and_then(|s| parse_limit(&s)),
                cpu_period: period,
                cpu_quota: quota,
                // cpu.weight (1..10000) back to shares (2..262144): the inverse of runc's mapping, as
                // cAdvisor computes it.
                cpu_shares: self
                    .read_u64("cpu", "cpu.weight")
                    .map(|w| 2 + (w.saturating_sub(1) * 262142) / 9999),
            }
        } else {
            let quota = self
                .read("cpu", "cpu.cfs_quota_us")
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|q| *q > 0)
                .map(|q| q as u64);
            Limits {
                memory: self
                    .read("memory", "memory.limit_in_bytes")
                    .and_then(|s| parse_limit(&s)),
                memory_reservation: self
                    .read("memory", "memory.soft_limit_in_bytes")
                    .and_then(|s| parse_limit(&s)),
                swap: self
                    .read("memory", "memory.memsw.limit_in_bytes")
                    .and_then(|s| parse_limit(&s)),
                cpu_period: self.read_u64("cpu", "cpu.cfs_period_us"),
                cpu_quota: quota,
                cpu_shares: self.read_u64("cpu", "cpu.shares"),
            }
        }
    }

    /// Block I/O per device.
    pub fn io(&self) -> Option<Vec<IoDevice>> {
        if self.v2() {
            return Some(parse_io_stat(&self.read("io", "io.stat")?));
        }
        // The throttle files count every bio whatever the I/O scheduler; the CFQ/BFQ ones only theirs.
        for (bytes, ops) in [
            (
                "blkio.throttle.io_service_bytes_recursive",
                "blkio.throttle.io_serviced_recursive",
            ),
            (
                "blkio.throttle.io_service_bytes",
                "blkio.throttle.io_serviced",
            ),
        ] {
            if let Some(b) = self.read("blkio", bytes) {
                let o = self.read("blkio", ops).unwrap_or_default();
                return Some(parse_blkio(&b, &o));
            }
        }
        None
    }

    /// Pressure stall information of `resource` (`cpu`, `memory`, `io`); v2 only.
    pub fn pressure(&self, resource: &str) -> Option<Psi> {
        if !self.v2() {
            return None;
        }
        parse_psi(&self.read(resource, &format!("{resource}.pressure"))?)
    }
}

/// `/dev/<name>` of a block device from sysfs, or `MAJ:MIN` when sysfs does not know it.
pub fn device_name(major: u64, minor: u64) -> String {
    std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
        .ok()
        .and_then(|u| {
            u.lines()
                .find_map(|l| l.strip_prefix("DEVNAME="))
                .map(|n| format!("/dev/{n}"))
        })
        .unwrap_or_else(|| format!("{major}:{minor}"))
}

/// Open descriptors and sockets of the given processes (`/proc/<pid>/fd`); processes that are gone or
/// unreadable count nothing.
pub fn fds_and_sockets(pids: &[i32]) -> (u64, u64) {
    let (mut fds, mut sockets) = (0u64, 0u64);
    for pid in pids {
        let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for e in rd.flatten() {
            fds += 1;
            if std::fs::read_link(e.path())
                .map(|t| t.to_string_lossy().starts_with("socket:"))
                .unwrap_or(false)
            {
                sockets += 1;
            }
        }
    }
    (fds, sockets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(root: &Path, rel: &str, file: &str, text: &str) {
        let d = root.join(rel);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(file), text).unwrap();
    }

    // Contents as a 6.1 kernel writes them for a container cgroup (cgroup v2).
    const CPU_PRESSURE: &str = "some avg10=1.52 avg60=0.87 avg300=0.21 total=4183127\n\
                                full avg10=0.00 avg60=0.03 avg300=0.00 total=120331\n";
    const MEMORY_PRESSURE: &str = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n\
                                   full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
    const IO_PRESSURE: &str = "some avg10=12.50 avg60=4.10 avg300=1.02 total=998877\n\
                               full avg10=10.25 avg60=3.80 avg300=0.97 total=887766\n";
    const IO_STAT: &str =
        "254:0 rbytes=4415488 wbytes=20480000 rios=218 wios=5003 dbytes=0 dios=0\n\
                           7:3 rbytes=1024 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n";
    const CPU_STAT: &str = "usage_usec 2500300\nuser_usec 2000100\nsystem_usec 500200\n\
                            core_sched.force_idle_usec 0\nnr_periods 1200\nnr_throttled 37\n\
                            throttled_usec 912345\nnr_bursts 0\nburst_usec 0\n";
    const MEMORY_STAT: &str = "anon 21630976\nfile 4096000\nkernel 1187840\nkernel_stack 49152\n\
                               pagetables 147456\nsec_pagetables 0\npercpu 480\nsock 0\nvmalloc 0\n\
                               shmem 0\nzswap 0\nzswapped 0\nfile_mapped 1228800\nfile_dirty 0\n\
                               file_writeback 0\nswapcached 0\nanon_thp 2097152\nfile_thp 0\n\
                               shmem_thp 0\ninactive_anon 21618688\nactive_anon 12288\n\
                               inactive_file 2048000\nactive_file 2048000\nunevictable 0\n\
                               slab_reclaimable 651264\nslab_unreclaimable 326720\nslab 977984\n\
                               pgfault 6090\npgmajfault 12\n";
    const MEMORY_EVENTS: &str = "low 0\nhigh 0\nmax 17\noom 1\noom_kill 1\noom_group_kill 0\n";

    #[test]
    fn psi_from_real_v2_files() {
        let p = parse_psi(CPU_PRESSURE).unwrap();
        assert_eq!(p.some.total_us, 4183127);
        assert_eq!(
            (p.some.avg10, p.some.avg60, p.some.avg300),
            (1.52, 0.87, 0.21)
        );
        let full = p.full.unwrap();
        assert_eq!((full.total_us, full.avg60), (120331, 0.03));
        assert_eq!(parse_psi(MEMORY_PRESSURE).unwrap().some.total_us, 0);
        // Kernels before 5.13 write no `full` line for cpu.
        let old = parse_psi("some avg10=0.10 avg60=0.20 avg300=0.30 total=42\n").unwrap();
        assert_eq!(old.full, None);
        assert_eq!(parse_psi(""), None);
        assert_eq!(parse_psi("some avg10=x total=1\n"), None);
    }

    #[test]
    fn io_stat_and_blkio() {
        let v = parse_io_stat(IO_STAT);
        assert_eq!(
            v[0],
            IoDevice {
                major: 254,
                minor: 0,
                read_bytes: 4415488,
                write_bytes: 20480000,
                reads: 218,
                writes: 5003
            }
        );
        assert_eq!(v.len(), 2);
        let bytes = "254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 8192\n254:0 Async 4096\n\
                     254:0 Discard 0\n254:0 Total 12288\nTotal 12288\n";
        let ops = "254:0 Read 1\n254:0 Write 2\n254:0 Sync 2\n254:0 Async 1\n254:0 Discard 0\n\
                   254:0 Total 3\nTotal 3\n";
        assert_eq!(
            parse_blkio(bytes, ops),
            vec![IoDevice {
                major: 254,
                minor: 0,
                read_bytes: 4096,
                write_bytes: 8192,
                reads: 1,
                writes: 2
            }]
        );
        assert!(parse_blkio("Total 0\n", "Total 0\n").is_empty());
    }

    #[test]
    fn v2_cgroup_details() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let rel = "kubepods/podx/c1";
        write(r, rel, "cpu.stat", CPU_STAT);
        write(r, rel, "memory.stat", MEMORY_STAT);
        write(r, rel, "memory.events", MEMORY_EVENTS);
        write(r, rel, "memory.peak", "30000000\n");
        write(r, rel, "memory.swap.current", "4096\n");
        write(r, rel, "memory.max", "268435456\n");
        write(r, rel, "memory.low", "0\n");
        write(r, rel, "memory.swap.max", "max\n");
        write(r, rel, "cpu.max", "50000 100000\n");
        write(r, rel, "cpu.weight", "100\n");
        write(r, rel, "pids.max", "max\n");
        write(r, rel, "cgroup.threads", "10\n11\n12\n");
        write(r, rel, "cgroup.procs", "10\n");
        write(r, rel, "io.stat", IO_STAT);
        write(r, rel, "cpu.pressure", CPU_PRESSURE);
        write(r, rel, "memory.pressure", MEMORY_PRESSURE);
        write(r, rel, "io.pressure", IO_PRESSURE);
        let cg = Cgroup::with_root(r, Path::new("/kubepods/podx/c1"), true);
        assert_eq!(
            cg.cpu_detail(),
            Some(CpuDetail {
                user_ns: 2_000_100_000,
                system_ns: 500_200_000,
                periods: 1200,
                throttled_periods: 37,
                throttled_ns: 912_345_000,
            })
        );
        let m = cg.memory_detail().unwrap();
        assert_eq!(
            (m.rss, m.cache, m.mapped_file),
            (21630976, 4096000, 1228800)
        );
        assert_eq!((m.kernel, m.swap, m.failcnt), (1187840, 4096, 17));
        assert_eq!(m.max_usage, Some(30000000));
        assert_eq!((m.anon_thp, m.pgfault, m.pgmajfault), (2097152, 6090, 12));
        assert_eq!(cg.oom_kills(), Some(1));
        assert_eq!(cg.threads(), Some(3));
        assert_eq!(cg.threads_max(), None);
        assert_eq!(cg.procs(), vec![10]);
        let l = cg.limits();
        assert_eq!(l.memory, Some(268435456));
        assert_eq!((l.cpu_quota, l.cpu_period), (Some(50000), Some(100000)));
        // cpu.weight 100 is 2597 shares by the mapping cAdvisor uses.
        assert_eq!(l.cpu_shares, Some(2597));
        assert_eq!(l.swap, None);
        assert_eq!(cg.io().unwrap().len(), 2);
        let io = cg.pressure("io").unwrap();
        assert_eq!(io.full.unwrap().total_us, 887766);
        assert_eq!(cg.pressure("cpu").unwrap().some.avg10, 1.52);
    }

    #[test]
    fn v1_cgroup_details() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "cpuacct/p/c", "cpuacct.stat", "user 250\nsystem 50\n");
        write(
            r,
            "cpu/p/c",
            "cpu.stat",
            "nr_periods 10\nnr_throttled 4\nthrottled_time 123456789\nnr_bursts 0\nburst_time 0\n",
        );
        write(r, "cpu/p/c", "cpu.cfs_quota_us", "-1\n");
        write(r, "cpu/p/c", "cpu.cfs_period_us", "100000\n");
        write(r, "cpu/p/c", "cpu.shares", "512\n");
        write(
            r,
            "memory/p/c",
            "memory.stat",
            "cache 1\nrss 2\ntotal_cache 4096\ntotal_rss 8192\ntotal_mapped_file 512\ntotal_swap 0\n\
             total_active_file 1024\ntotal_inactive_file 3072\ntotal_active_anon 8192\n\
             total_inactive_anon 0\ntotal_pgfault 77\ntotal_pgmajfault 1\n",
        );
        write(r, "memory/p/c", "memory.failcnt", "3\n");
        write(r, "memory/p/c", "memory.max_usage_in_bytes", "999999\n");
        write(r, "memory/p/c", "memory.kmem.usage_in_bytes", "65536\n");
        write(
            r,
            "memory/p/c",
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        write(r, "memory/p/c", "memory.limit_in_bytes", "16777216\n");
        write(
            r,
            "memory/p/c",
            "memory.soft_limit_in_bytes",
            "9223372036854771712\n",
        );
        write(r, "memory/p/c", "cgroup.procs", "7\n8\n");
        write(r, "pids/p/c", "tasks", "7\n8\n9\n");
        write(r, "pids/p/c", "pids.max", "100\n");
        write(
            r,
            "blkio/p/c",
            "blkio.throttle.io_service_bytes_recursive",
            "8:0 Read 4096\n8:0 Write 0\n8:0 Total 4096\nTotal 4096\n",
        );
        write(
            r,
            "blkio/p/c",
            "blkio.throttle.io_serviced_recursive",
            "8:0 Read 1\n8:0 Write 0\n8:0 Total 1\nTotal 1\n",
        );
        let cg = Cgroup::with_root(r, Path::new("/p/c"), false);
        assert_eq!(
            cg.cpu_detail(),
            Some(CpuDetail {
                user_ns: 2_500_000_000,
                system_ns: 500_000_000,
                periods: 10,
                throttled_periods: 4,
                throttled_ns: 123456789,
            })
        );
        let m = cg.memory_detail().unwrap();
        assert_eq!((m.cache, m.rss, m.mapped_file), (4096, 8192, 512));
        assert_eq!((m.failcnt, m.max_usage, m.kernel), (3, Some(999999), 65536));
        assert_eq!((m.active_file, m.inactive_file), (1024, 3072));
        assert_eq!(cg.oom_kills(), Some(2));
        assert_eq!(cg.threads(), Some(3));
        assert_eq!(cg.threads_max(), Some(100));
        assert_eq!(cg.procs(), vec![7, 8]);
        let l = cg.limits();
        assert_eq!(l.memory, Some(16777216));
        assert_eq!(l.memory_reservation, None);
        assert_eq!(
            (l.cpu_quota, l.cpu_period, l.cpu_shares),
            (None, Some(100000), Some(512))
        );
        assert_eq!(
            cg.io(),
            Some(vec![IoDevice {
                major: 8,
                minor: 0,
                read_bytes: 4096,
                reads: 1,
                ..Default::default()
            }])
        );
        // v1 has no pressure files.
        assert_eq!(cg.pressure("cpu"), None);
    }
}
