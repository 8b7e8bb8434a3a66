//! Cgroup readers for container and pod stats: CPU time, memory, swap and process counts from a cgroupfs
//! path, on the v1 (one hierarchy per controller) and the v2 (unified) layouts.
//!
//! Every reader answers `None` when its files are missing: a container that has exited has no cgroup left
//! (the runtime removes it on delete), and that is a normal state, not an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// On v1 an unlimited memory cgroup reports a page-rounded i64::MAX; anything this large means "no limit".
const UNLIMITED: u64 = 1 << 62;

/// One cgroup, named by its cgroupfs path (the OCI `linux.cgroupsPath`).
#[derive(Debug, Clone)]
pub struct Cgroup {
    root: PathBuf,
    rel: PathBuf,
    v2: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    pub usage: u64,
    /// Usage minus inactive file cache: what the kubelet evicts on.
    pub working_set: u64,
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swap {
    pub usage: u64,
    pub limit: Option<u64>,
}

impl Cgroup {
    /// The cgroup at `path` below this host's `/sys/fs/cgroup`.
    pub fn new(path: &Path, v2: bool) -> Cgroup {
        Cgroup::with_root(Path::new("/sys/fs/cgroup"), path, v2)
    }

    /// The cgroup at `path` below another cgroupfs root (tests use a fake tree).
    pub fn with_root(root: &Path, path: &Path, v2: bool) -> Cgroup {
        Cgroup {
            root: root.to_path_buf(),
            rel: path.strip_prefix("/").unwrap_or(path).to_path_buf(),
            v2,
        }
    }

    pub fn v2(&self) -> bool {
        self.v2
    }

    pub(super) fn dir(&self, controller: &str) -> PathBuf {
        if self.v2 {
            self.root.join(&self.rel)
        } else {
            self.root.join(controller).join(&self.rel)
        }
    }

    pub(super) fn read(&self, controller: &str, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dir(controller).join(file)).ok()
    }

    pub(super) fn read_u64(&self, controller: &str, file: &str) -> Option<u64> {
        self.read(controller, file)?.trim().parse().ok()
    }

    /// Whether the cgroup exists (its memory controller dir on v1).
    pub fn exists(&self) -> bool {
        self.dir("memory").is_dir()
    }

    /// Cumulative CPU time of all tasks, in nanoseconds.
    pub fn cpu_usage_ns(&self) -> Option<u64> {
        if self.v2 {
            let stat = self.read("cpu", "cpu.stat")?;
            parse_flat_keyed(&stat)
                .get("usage_usec")
                .map(|us| us.saturating_mul(1000))
        } else {
            self.read_u64("cpuacct", "cpuacct.usage")
        }
    }

    pub fn memory(&self) -> Option<Memory> {
        if self.v2 {
            let usage = self.read_u64("memory", "memory.current")?;
            let stat = self.read("memory", "memory.stat").unwrap_or_default();
            let stat = parse_flat_keyed(&stat);
            let get = |k: &str| stat.get(k).copied().unwrap_or(0);
            Some(Memory {
                usage,
                working_set: usage.saturating_sub(get("inactive_file")),
                rss: get("anon"),
                page_faults: get("pgfault"),
                major_page_faults: get("pgmajfault"),
                limit: self
                    .read("memory", "memory.max")
                    .and_then(|s| parse_limit(&s)),
            })
        } else {
            let usage = self.read_u64("memory", "memory.usage_in_bytes")?;
            let stat = self.read("memory", "memory.stat").unwrap_or_default();
            let stat = parse_flat_keyed(&stat);
            // The total_ counters include child cgroups, which a pod cgroup parent has.
            let get = |k: &str| {
                stat.get(format!("total_{k}").as_str())
                    .or_else(|| stat.get(k))
                    .copied()
                    .unwrap_or(0)
            };
            Some(Memory {
                usage,
                working_set: usage.saturating_sub(get("inactive_file")),
                rss: get("rss"),
                page_faults: get("pgfault"),
                major_page_faults: get("pgmajfault"),
                limit: self
                    .read("memory", "memory.limit_in_bytes")
                    .and_then(|s| parse_limit(&s)),
            })
        }
    }

    /// Swap use; `None` where the kernel does not account swap (v1 without memsw, v2 without swap files).
    pub fn swap(&self) -> Option<Swap> {
        if self.v2 {
            let usage = self.read_u64("memory", "memory.swap.current")?;
            let limit = self
                .read("memory", "memory.swap.max")
                .and_then(|s| parse_limit(&s));
            Some(Swap { usage, limit })
        } else {
            // memsw counts memory plus swap: the swap share is the difference.
            let memsw = self.read_u64("memory", "memory.memsw.usage_in_bytes")?;
            let mem = self.read_u64("memory", "memory.usage_in_bytes")?;
            let memsw_limit = self
                .read("memory", "memory.memsw.limit_in_bytes")
                .and_then(|s| parse_limit(&s));
            let mem_limit = self
                .read("memory", "memory.limit_in_bytes")
                .and_then(|s| parse_limit(&s));
            let limit = match (memsw_limit, mem_limit) {
                (Some(a), Some(b)) => Some(a.saturating_sub(b)),
                _ => None,
            };
            Some(Swap {
                usage: memsw.saturating_sub(mem),
                limit,
            })
        }
    }

    /// Number of tasks: `pids.current`, else the line count of `cgroup.procs`.
    pub fn processes(&self) -> Option<u64> {
        if let Some(n) = self.read_u64("pids", "pids.current") {
            return Some(n);
        }
        let procs = self.read("memory", "cgroup.procs")?;
        Some(procs.lines().filter(|l| !l.trim().is_empty()).count() as u64)
    }
}

/// `key value` lines (memory.stat, cpu.stat); lines that do not parse are skipped.
pub fn parse_flat_keyed(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((k, v))
        })
        .collect()
}

/// A limit file: a number, or `max` (v2) / a near-i64::MAX value (v1) for none.
pub fn parse_limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return None;
    }
    t.parse::<u64>().ok().filter(|&v| v < UNLIMITED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, file: &str, text: &str) {
        let d = root.join(rel);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(file), text).unwrap();
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("104857600\n"), Some(104857600));
        assert_eq!(parse_limit("garbage"), None);
    }

    #[test]
    fn v1_reads_per_controller_dirs() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "cpuacct/p/c", "cpuacct.usage", "123456789\n");
        write(r, "memory/p/c", "memory.usage_in_bytes", "1000000\n");
        write(r, "memory/p/c", "memory.limit_in_bytes", "4000000\n");
        write(r, "memory/p/c", "memory.memsw.usage_in_bytes", "1500000\n");
        write(
            r,
            "memory/p/c",
            "memory.memsw.limit_in_bytes",
            "9223372036854771712\n",
        );
        write(
            r,
            "memory/p/c",
            "memory.stat",
            "inactive_file 5\nrss 7\ntotal_inactive_file 200000\ntotal_rss 600000\ntotal_pgfault 42\ntotal_pgmajfault 3\n",
        );
        write(r, "pids/p/c", "pids.current", "4\n");
        let cg = Cgroup::with_root(r, Path::new("/p/c"), false);
        assert!(cg.exists());
        assert_eq!(cg.cpu_usage_ns(), Some(123456789));
        assert_eq!(
            cg.memory(),
            Some(Memory {
                usage: 1000000,
                working_set: 800000,
                rss: 600000,
                page_faults: 42,
                major_page_faults: 3,
                limit: Some(4000000),
            })
        );
        assert_eq!(
            cg.swap(),
            Some(Swap {
                usage: 500000,
                limit: None
            })
        );
        assert_eq!(cg.processes(), Some(4));
    }

    #[test]
    fn v2_reads_the_unified_dir() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(
            r,
            "p/c",
            "cpu.stat",
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
        );
        write(r, "p/c", "memory.current", "3000\n");
        write(r, "p/c", "memory.max", "max\n");
        write(
            r,
            "p/c",
            "memory.stat",
            "anon 1000\ninactive_file 500\npgfault 9\npgmajfault 1\n",
        );
        write(r, "p/c", "memory.swap.current", "10\n");
        write(r, "p/c", "memory.swap.max", "100\n");
        write(r, "p/c", "cgroup.procs", "1\n22\n333\n");
        let cg = Cgroup::with_root(r, Path::new("/p/c"), true);
        assert_eq!(cg.cpu_usage_ns(), Some(2_500_000));
        let m = cg.memory().unwrap();
        assert_eq!((m.usage, m.working_set, m.rss), (3000, 2500, 1000));
        assert_eq!((m.page_faults, m.major_page_faults, m.limit), (9, 1, None));
        assert_eq!(
            cg.swap(),
            Some(Swap {
                usage: 10,
                limit: Some(100)
            })
        );
        assert_eq!(cg.processes(), Some(3));
    }

    #[test]
    fn a_missing_cgroup_reads_as_absent() {
        let t = tempfile::tempdir().unwrap();
        for v2 in [false, true] {
            let cg = Cgroup::with_root(t.path(), Path::new("/gone"), v2);
            assert!(!cg.exists());
            assert_eq!(cg.cpu_usage_ns(), None);
            assert_eq!(cg.memory(), None);
            assert_eq!(cg.swap(), None);
            assert_eq!(cg.processes(), None);
        }
    }
}
