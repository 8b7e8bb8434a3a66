//! The daemon process's own figures, read from `/proc/self` at scrape time: resident memory, virtual
//! memory, open descriptors, threads, CPU time and start time.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Default)]
pub struct Instruments {
    rss: Gauge,
    vsize: Gauge,
    fds: Gauge,
    max_fds: Gauge,
    threads: Gauge,
    cpu: Counter<f64, AtomicU64>,
    start: Gauge<f64, AtomicU64>,
    /// CPU seconds already added to the counter (it only moves by deltas).
    cpu_seen: Mutex<f64>,
}

/// The fields of `/proc/<pid>/stat` this module uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    pub threads: u64,
    pub start_ticks: u64,
    pub vsize_bytes: u64,
    pub rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses, so fields are
/// counted from its last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // rest starts at field 3 (state); field n is at index n - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |field: usize| -> Option<u64> { f.get(field - 3)?.parse().ok() };
    Some(Stat {
        utime_ticks: n(14)?,
        stime_ticks: n(15)?,
        threads: n(20)?,
        start_ticks: n(22)?,
        vsize_bytes: n(23)?,
        rss_pages: n(24)?,
    })
}

/// `btime` of `/proc/stat`: the boot time in seconds since the epoch.
pub fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft `Max open files` limit of `/proc/<pid>/limits` (`None` when unlimited).
pub fn parse_max_fds(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value; it has no memory effects.
    let v = unsafe { libc::sysconf(name) };
    (v > 0).then_some(v as u64)
}

impl Instruments {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "crius_process_resident_memory_bytes",
            "Resident memory of the crius daemon process",
            self.rss.clone(),
        );
        r.register(
            "crius_process_virtual_memory_bytes",
            "Virtual memory size of the crius daemon process",
            self.vsize.clone(),
        );
        r.register(
            "crius_process_open_fds",
            "File descriptors the crius daemon process holds open",
            self.fds.clone(),
        );
        r.register(
            "crius_process_max_fds",
            "The crius daemon process's soft limit of open file descriptors",
            self.max_fds.clone(),
        );
        r.register(
            "crius_process_threads",
            "Threads of the crius daemon process",
            self.threads.clone(),
        );
        r.register(
            "crius_process_cpu_seconds",
            "User and system CPU time used by the crius daemon process",
            self.cpu.clone(),
        );
        r.register(
            "crius_process_start_time_seconds",
            "Start time of the crius daemon process, in seconds since the Unix epoch",
            self.start.clone(),
        );
    }

    /// Reads `/proc/self` into the gauges. A file that cannot be read leaves its gauges as they were.
    pub fn update(&self) {
        let ticks = sysconf(libc::_SC_CLK_TCK).unwrap_or(100) as f64;
        let page = sysconf(libc::_SC_PAGESIZE).unwrap_or(4096);
        if let Some(st) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .as_deref()
            .and_then(parse_stat)
        {
            self.rss.set((st.rss_pages * page) as i64);
            self.vsize.set(st.vsize_bytes as i64);
            self.threads.set(st.threads as i64);
            let cpu = (st.utime_ticks + st.stime_ticks) as f64 / ticks;
            let mut seen = self.cpu_seen.lock().unwrap_or_else(|p| p.into_inner());
            if cpu > *seen {
                self.cpu.inc_by(cpu - *seen);
                *seen = cpu;
            }
            if let Some(boot) = std::fs::read_to_string("/proc/stat")
                .ok()
                .as_deref()
                .and_then(parse_btime)
            {
                self.start.set(boot as f64 + st.start_ticks as f64 / ticks);
            }
        }
        if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself is one of the entries; it is not the daemon's.
            self.fds.set(rd.count().saturating_sub(1) as i64);
        }
        if let Some(max) = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .as_deref()
            .and_then(parse_max_fds)
        {
            self.max_fds.set(max as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_command_with_spaces_and_parens() {
        // A real /proc/<pid>/stat line, with the command renamed to contain ") (".
        let text = "4242 (cri us) (x)) S 1 4242 4242 0 -1 4194560 1503 0 0 0 17 9 0 0 20 0 7 0 \
                    123456 1213984768 2345 18446744073709551615 1 1 0 0 0 0 0 4096 17475 0 0 0 17 1 \
                    0 0 0 0 0 0 0 0 0 0 0 0 0\n";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                utime_ticks: 17,
                stime_ticks: 9,
                threads: 7,
                start_ticks: 123456,
                vsize_bytes: 1213984768,
                rss_pages: 2345,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn btime_and_fd_limit() {
        assert_eq!(
            parse_btime("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n"),
            Some(1700000000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1048576              1048576              files     \n";
        assert_eq!(parse_max_fds(limits), Some(1048576));
        assert_eq!(
            parse_max_fds("Max open files unlimited unlimited files"),
            None
        );
    }

    #[test]
    fn reads_this_process() {
        let i = Instruments::default();
        i.update();
        assert!(i.rss.get() > 0);
        assert!(i.threads.get() >= 1);
        assert!(i.fds.get() >= 1);
        assert!(i.start.get() > 1_000_000_000.0);
    }
}
