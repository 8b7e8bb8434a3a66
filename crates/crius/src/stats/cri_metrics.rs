//! The CRI metrics RPCs (ListMetricDescriptors, ListPodSandboxMetrics, StreamPodSandboxMetrics): the
//! cAdvisor-style series the kubelet serves on `/metrics/cadvisor` when it takes pod and container
//! metrics from the runtime (KEP-2371).
//!
//! Names, help texts and label keys follow CRI-O's stats server, which follows cAdvisor: every series
//! carries `id, image, namespace, pod, container`, some add one more dimension (`cpu`, `interface`,
//! `device`, …). Container series come from the container's cgroup and writable layer; the pod's own
//! series (network, with `container="POD"`) from its network namespace. Only running and created
//! containers are measured (an exited container has no cgroup left), as in CRI-O.
//!
//! Values are whole numbers (the CRI `Metric.value` is a UInt64Value), so `_seconds` counters are
//! truncated to whole seconds exactly as CRI-O does.
//!
//! Not served: hugetlb (its controller is not mounted where runc puts containers on this host layout),
//! ulimits, and PSI on cgroup v1 (no pressure files).

use std::collections::HashMap;

use cri_api::v1 as cri;

use super::cgroup::Cgroup;
use super::detail::{device_name, fds_and_sockets};
use super::{dir_usage, net, FS_WALK_LIMIT};
use crate::container::{ContainerRecord, CtrState};
use crate::pod::{PodState, SandboxRecord};
use crate::runtime::{now_ns, Runtime};

const NS_PER_S: u64 = 1_000_000_000;
const US_PER_S: u64 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

struct Desc {
    name: &'static str,
    help: &'static str,
    /// Label keys after the five base keys.
    extra: &'static [&'static str],
    kind: Kind,
}

/// Label keys every series starts with.
pub const BASE_LABELS: [&str; 5] = ["id", "image", "namespace", "pod", "container"];

macro_rules! d {
    ($name:literal, $kind:ident, $help:literal) => {
        d!($name, $kind, $help, [])
    };
    ($name:literal, $kind:ident, $help:literal, [$($l:literal),*]) => {
        Desc { name: $name, help: $help, extra: &[$($l),*], kind: Kind::$kind }
    };
}

/// Every series served, in the order they are emitted.
const DESCS: &[Desc] = &[
    d!("container_last_seen", Gauge, "Last time a container was seen by the exporter"),
    // CPU
    d!("container_cpu_user_seconds_total", Counter, "Cumulative user CPU time consumed in seconds."),
    d!("container_cpu_system_seconds_total", Counter, "Cumulative system CPU time consumed in seconds."),
    d!("container_cpu_usage_seconds_total", Counter, "Cumulative CPU time consumed in seconds.", ["cpu"]),
    d!("container_cpu_cfs_periods_total", Counter, "Number of elapsed enforcement period intervals."),
    d!("container_cpu_cfs_throttled_periods_total", Counter, "Number of throttled period intervals."),
    d!("container_cpu_cfs_throttled_seconds_total", Counter, "Total time duration the container has been throttled."),
    // Filesystem (the writable layer and the filesystem holding it)
    d!("container_fs_inodes_free", Gauge, "Number of free inodes."),
    d!("container_fs_inodes_total", Gauge, "Total number of inodes."),
    d!("container_fs_limit_bytes", Gauge, "Filesystem limit in bytes."),
    d!("container_fs_usage_bytes", Gauge, "Current filesystem usage in bytes."),
    // Block I/O
    d!("container_fs_reads_bytes_total", Counter, "Cumulative count of bytes read", ["device"]),
    d!("container_fs_reads_total", Counter, "Cumulative count of reads completed", ["device"]),
    d!("container_fs_writes_bytes_total", Counter, "Cumulative count of bytes written", ["device"]),
    d!("container_fs_writes_total", Counter, "Cumulative count of writes completed", ["device"]),
    d!("container_blkio_device_usage_total", Counter, "Blkio Device bytes usage", ["device", "major", "minor", "operation"]),
    // Memory
    d!("container_memory_cache", Gauge, "Number of bytes of page cache memory."),
    d!("container_memory_rss", Gauge, "Size of RSS in bytes."),
    d!("container_memory_kernel_usage", Gauge, "Size of kernel memory allocated in bytes."),
    d!("container_memory_mapped_file", Gauge, "Size of memory mapped files in bytes."),
    d!("container_memory_swap", Gauge, "Container swap usage in bytes."),
    d!("container_memory_failcnt", Gauge, "Number of memory usage hits limits"),
    d!("container_memory_usage_bytes", Gauge, "Current memory usage in bytes, including all memory regardless of when it was accessed"),
    d!("container_memory_max_usage_bytes", Gauge, "Maximum memory usage recorded in bytes"),
    d!("container_memory_working_set_bytes", Gauge, "Current working set in bytes."),
    d!("container_memory_total_active_file_bytes", Gauge, "Current total active file in bytes."),
    d!("container_memory_total_inactive_file_bytes", Gauge, "Current total inactive file in bytes."),
    d!("container_memory_active_anon_bytes", Gauge, "Current active anonymous memory in bytes."),
    d!("container_memory_inactive_anon_bytes", Gauge, "Current inactive anonymous memory in bytes."),
    d!("container_memory_anon_thp_bytes", Gauge, "Amount of anonymous memory backed by transparent hugepages (THP) in bytes. Always zero on cgroup v1."),
    d!("container_memory_shmem_thp_bytes", Gauge, "Amount of shared memory backed by transparent hugepages (THP) in bytes. Always zero on cgroup v1."),
    d!("container_memory_file_thp_bytes", Gauge, "Amount of file-backed memory backed by transparent hugepages (THP) in bytes. Always zero on cgroup v1."),
    d!("container_memory_failures_total", Counter, "Cumulative count of memory allocation failures.", ["failure_type", "scope"]),
    // Network (pod level)
    d!("container_network_receive_bytes_total", Counter, "Cumulative count of bytes received", ["interface"]),
    d!("container_network_receive_packets_total", Counter, "Cumulative count of packets received", ["interface"]),
    d!("container_network_receive_packets_dropped_total", Counter, "Cumulative count of packets dropped while receiving", ["interface"]),
    d!("container_network_receive_errors_total", Counter, "Cumulative count of errors encountered while receiving", ["interface"]),
    d!("container_network_transmit_bytes_total", Counter, "Cumulative count of bytes transmitted", ["interface"]),
    d!("container_network_transmit_packets_total", Counter, "Cumulative count of packets transmitted", ["interface"]),
    d!("container_network_transmit_packets_dropped_total", Counter, "Cumulative count of packets dropped while transmitting", ["interface"]),
    d!("container_network_transmit_errors_total", Counter, "Cumulative count of errors encountered while transmitting", ["interface"]),
    // OOM
    d!("container_oom_events_total", Counter, "Count of out of memory events observed for the container"),
    // Processes
    d!("container_file_descriptors", Gauge, "Number of open file descriptors for the container."),
    d!("container_processes", Gauge, "Number of processes running inside the container."),
    d!("container_sockets", Gauge, "Number of open sockets for the container."),
    d!("container_threads", Gauge, "Number of threads running inside the container"),
    d!("container_threads_max", Gauge, "Maximum number of threads allowed inside the container, infinity if value is zero"),
    // Spec
    d!("container_spec_cpu_period", Gauge, "CPU period of the container."),
    d!("container_spec_cpu_shares", Gauge, "CPU share of the container."),
    d!("container_spec_cpu_quota", Gauge, "CPU quota of the container."),
    d!("container_spec_memory_limit_bytes", Gauge, "Memory limit for the container in bytes."),
    d!("container_spec_memory_reservation_limit_bytes", Gauge, "Memory reservation limit for the container."),
    d!("container_spec_memory_swap_limit_bytes", Gauge, "Memory swap limit for the container."),
    d!("container_start_time_seconds", Gauge, "Start time of the container since unix epoch in seconds."),
    // Pressure (cgroup v2)
    d!("container_pressure_cpu_stalled_seconds_total", Counter, "Total time duration no tasks in the container could make progress due to CPU congestion."),
    d!("container_pressure_cpu_waiting_seconds_total", Counter, "Total time duration tasks in the container have waited due to CPU congestion."),
    d!("container_pressure_memory_stalled_seconds_total", Counter, "Total time duration no tasks in the container could make progress due to memory congestion."),
    d!("container_pressure_memory_waiting_seconds_total", Counter, "Total time duration tasks in the container have waited due to memory congestion."),
    d!("container_pressure_io_stalled_seconds_total", Counter, "Total time duration no tasks in the container could make progress due to IO congestion."),
    d!("container_pressure_io_waiting_seconds_total", Counter, "Total time duration tasks in the container have waited due to IO congestion."),
];

/// ListMetricDescriptors: every series ListPodSandboxMetrics may return.
pub fn descriptors() -> Vec<cri::MetricDescriptor> {
    DESCS
        .iter()
        .map(|d| cri::MetricDescriptor {
            name: d.name.to_string(),
            help: d.help.to_string(),
            label_keys: BASE_LABELS
                .iter()
                .chain(d.extra.iter())
                .map(|s| s.to_string())
                .collect(),
        })
        .collect()
}

/// Builds the series of one container (or of the pod) with its base label values.
struct Emitter {
    base: [String; 5],
    at: i64,
    out: Vec<cri::Metric>,
}

impl Emitter {
    fn new(base: [String; 5]) -> Emitter {
        Emitter {
            base,
            at: now_ns(),
            out: Vec::new(),
        }
    }

    fn put(&mut self, name: &str, value: u64, extra: &[&str]) {
        let Some(d) = DESCS.iter().find(|d| d.name == name) else {
            // A programming error: every emitted name is in the table (a unit test checks it).
            tracing::error!("CRI metric {name} has no descriptor; not served");
            return;
        };
        if d.extra.len() != extra.len() {
            tracing::error!(
                "CRI metric {name}: {} extra labels, want {}",
                extra.len(),
                d.extra.len()
            );
            return;
        }
        self.out.push(cri::Metric {
            name: d.name.to_string(),
            timestamp: self.at,
            metric_type: match d.kind {
                Kind::Counter => cri::MetricType::Counter,
                Kind::Gauge => cri::MetricType::Gauge,
            } as i32,
            label_values: self
                .base
                .iter()
                .cloned()
                .chain(extra.iter().map(|s| s.to_string()))
                .collect(),
            value: Some(cri::UInt64Value { value }),
        });
    }

    fn put_opt(&mut self, name: &str, value: Option<u64>) {
        if let Some(v) = value {
            self.put(name, v, &[]);
        }
    }
}

/// Emits every cgroup-derived series of one container.
fn cgroup_series(e: &mut Emitter, cg: &Cgroup) {
    if let Some(usage) = cg.cpu_usage_ns() {
        e.put(
            "container_cpu_usage_seconds_total",
            usage / NS_PER_S,
            &["total"],
        );
    }
    if let Some(c) = cg.cpu_detail() {
        e.put(
            "container_cpu_user_seconds_total",
            c.user_ns / NS_PER_S,
            &[],
        );
        e.put(
            "container_cpu_system_seconds_total",
            c.system_ns / NS_PER_S,
            &[],
        );
        e.put("container_cpu_cfs_periods_total", c.periods, &[]);
        e.put(
            "container_cpu_cfs_throttled_periods_total",
            c.throttled_periods,
            &[],
        );
        e.put(
            "container_cpu_cfs_throttled_seconds_total",
            c.throttled_ns / NS_PER_S,
            &[],
        );
    }
    if let Some(io) = cg.io() {
        for dev in io {
            let name = device_name(dev.major, dev.minor);
            let (major, minor) = (dev.major.to_string(), dev.minor.to_string());
            e.put("container_fs_reads_bytes_total", dev.read_bytes, &[&name]);
            e.put("container_fs_reads_total", dev.reads, &[&name]);
            e.put("container_fs_writes_bytes_total", dev.write_bytes, &[&name]);
            e.put("container_fs_writes_total", dev.writes, &[&name]);
            for (op, v) in [("Read", dev.read_bytes), ("Write", dev.write_bytes)] {
                e.put(
                    "container_blkio_device_usage_total",
                    v,
                    &[&name, &major, &minor, op],
                );
            }
        }
    }
    if let Some(m) = cg.memory() {
        e.put("container_memory_usage_bytes", m.usage, &[]);
        e.put("container_memory_working_set_bytes", m.working_set, &[]);
    }
    if let Some(m) = cg.memory_detail() {
        e.put("container_memory_cache", m.cache, &[]);
        e.put("container_memory_rss", m.rss, &[]);
        e.put("container_memory_kernel_usage", m.kernel, &[]);
        e.put("container_memory_mapped_file", m.mapped_file, &[]);
        e.put("container_memory_swap", m.swap, &[]);
        e.put("container_memory_failcnt", m.failcnt, &[]);
        e.put_opt("container_memory_max_usage_bytes", m.max_usage);
        e.put(
            "container_memory_total_active_file_bytes",
            m.active_file,
            &[],
        );
        e.put(
            "container_memory_total_inactive_file_bytes",
            m.inactive_file,
            &[],
        );
        e.put("container_memory_active_anon_bytes", m.active_anon, &[]);
        e.put("container_memory_inactive_anon_bytes", m.inactive_anon, &[]);
        e.put("container_memory_anon_thp_bytes", m.anon_thp, &[]);
        e.put("container_memory_shmem_thp_bytes", m.shmem_thp, &[]);
        e.put("container_memory_file_thp_bytes", m.file_thp, &[]);
        // A container's cgroup is a leaf: its own and its hierarchy's counts are the same.
        for scope in ["container", "hierarchy"] {
            e.put(
                "container_memory_failures_total",
                m.pgfault,
                &["pgfault", scope],
            );
            e.put(
                "container_memory_failures_total",
                m.pgmajfault,
                &["pgmajfault", scope],
            );
        }
    }
    e.put_opt("container_oom_events_total", cg.oom_kills());
    let procs = cg.procs();
    let (fds, sockets) = fds_and_sockets(&procs);
    e.put("container_file_descriptors", fds, &[]);
    e.put("container_sockets", sockets, &[]);
    e.put_opt("container_processes", cg.processes());
    e.put_opt("container_threads", cg.threads());
    e.put("container_threads_max", cg.threads_max().unwrap_or(0), &[]);
    let l = cg.limits();
    e.put_opt("container_spec_cpu_period", l.cpu_period);
    e.put_opt("container_spec_cpu_shares", l.cpu_shares);
    e.put_opt("container_spec_cpu_quota", l.cpu_quota);
    e.put_opt("container_spec_memory_limit_bytes", l.memory);
    e.put_opt(
        "container_spec_memory_reservation_limit_bytes",
        l.memory_reservation,
    );
    e.put_opt("container_spec_memory_swap_limit_bytes", l.swap);
    for res in ["cpu", "memory", "io"] {
        if let Some(p) = cg.pressure(res) {
            e.put(
                &format!("container_pressure_{res}_waiting_seconds_total"),
                p.some.total_us / US_PER_S,
                &[],
            );
            if let Some(full) = p.full {
                e.put(
                    &format!("container_pressure_{res}_stalled_seconds_total"),
                    full.total_us / US_PER_S,
                    &[],
                );
            }
        }
    }
}

/// Capacity and free inodes of the filesystem at `path`.
fn fs_capacity(path: &std::path::Path) -> Option<(u64, u64, u64)> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let frsize = s.fragment_size() as u64;
    Some((
        s.blocks() as u64 * frsize,
        s.files() as u64,
        s.files_free() as u64,
    ))
}

impl Runtime {
    fn container_metrics(
        &self,
        pod: &SandboxRecord,
        rec: &ContainerRecord,
    ) -> cri::ContainerMetrics {
        let pod_meta = pod.config().metadata.unwrap_or_default();
        let name = rec.config().metadata.map(|m| m.name).unwrap_or_default();
        let mut e = Emitter::new([
            rec.id.clone(),
            rec.image_name.clone(),
            pod_meta.namespace,
            pod_meta.name,
            name,
        ]);
        e.put("container_last_seen", e.at as u64 / NS_PER_S, &[]);
        if let Some(cg) = self.container_cgroup(&rec.id).filter(|cg| cg.exists()) {
            cgroup_series(&mut e, &cg);
        }
        let containers = self.images.options().root.join("containers");
        let (bytes, _) = dir_usage(&containers.join(&rec.id).join("upper"), FS_WALK_LIMIT);
        e.put("container_fs_usage_bytes", bytes, &[]);
        if let Some((cap, inodes, free)) = fs_capacity(&containers) {
            e.put("container_fs_limit_bytes", cap, &[]);
            e.put("container_fs_inodes_total", inodes, &[]);
            e.put("container_fs_inodes_free", free, &[]);
        }
        if rec.started_at > 0 {
            e.put(
                "container_start_time_seconds",
                rec.started_at as u64 / NS_PER_S,
                &[],
            );
        }
        cri::ContainerMetrics {
            container_id: rec.id.clone(),
            metrics: e.out,
        }
    }

    fn pod_metrics(&self, pod: &SandboxRecord, ctrs: &[ContainerRecord]) -> cri::PodSandboxMetrics {
        let meta = pod.config().metadata.unwrap_or_default();
        let mut e = Emitter::new([
            pod.id.clone(),
            String::new(),
            meta.namespace,
            meta.name,
            "POD".to_string(),
        ]);
        if let Some(ns) = pod
            .pins
            .net
            .as_ref()
            .filter(|_| pod.state == PodState::Ready)
        {
            match net::read_in_netns(ns) {
                Ok(ifaces) => {
                    for i in ifaces.iter().filter(|i| i.name != "lo") {
                        let n = i.name.as_str();
                        e.put("container_network_receive_bytes_total", i.rx_bytes, &[n]);
                        e.put(
                            "container_network_receive_packets_total",
                            i.rx_packets,
                            &[n],
                        );
                        e.put(
                            "container_network_receive_packets_dropped_total",
                            i.rx_dropped,
                            &[n],
                        );
                        e.put("container_network_receive_errors_total", i.rx_errors, &[n]);
                        e.put("container_network_transmit_bytes_total", i.tx_bytes, &[n]);
                        e.put(
                            "container_network_transmit_packets_total",
                            i.tx_packets,
                            &[n],
                        );
                        e.put(
                            "container_network_transmit_packets_dropped_total",
                            i.tx_dropped,
                            &[n],
                        );
                        e.put("container_network_transmit_errors_total", i.tx_errors, &[n]);
                    }
                }
                Err(err) => tracing::debug!("pod {}: network metrics: {err}", pod.id),
            }
        }
        cri::PodSandboxMetrics {
            pod_sandbox_id: pod.id.clone(),
            metrics: e.out,
            container_metrics: ctrs
                .iter()
                .filter(|c| matches!(c.state, CtrState::Running | CtrState::Created))
                .map(|c| self.container_metrics(pod, c))
                .collect(),
        }
    }

    /// ListPodSandboxMetrics: every pod past creation, oldest first.
    pub fn pod_sandbox_metrics(&self) -> Vec<cri::PodSandboxMetrics> {
        let mut by_pod: HashMap<String, Vec<ContainerRecord>> = HashMap::new();
        for c in self.all_containers() {
            let r = c.record();
            by_pod.entry(r.sandbox_id.clone()).or_default().push(r);
        }
        let mut pods: Vec<SandboxRecord> = self
            .all_pods()
            .into_iter()
            .map(|p| p.record())
            .filter(|r| r.state != PodState::Creating)
            .collect();
        pods.sort_by_key(|r| r.created_at);
        pods.iter()
            .map(|p| {
                let mut ctrs = by_pod.remove(&p.id).unwrap_or_default();
                ctrs.sort_by_key(|c| c.created_at);
                self.pod_metrics(p, &ctrs)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_unique_and_named_as_cadvisor_does() {
        let d = descriptors();
        let mut names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), d.len(), "duplicate descriptor");
        for x in &d {
            assert!(x.name.starts_with("container_"), "{}", x.name);
            assert_eq!(&x.label_keys[..5], &BASE_LABELS);
            assert!(!x.help.is_empty());
            let counter = DESCS.iter().find(|y| y.name == x.name).unwrap().kind == Kind::Counter;
            // Counters end in _total (container_fs_inodes_total is cAdvisor's gauge of a capacity).
            if counter {
                assert!(x.name.ends_with("_total"), "{}", x.name);
            }
        }
    }

    #[test]
    fn every_series_a_cgroup_yields_has_a_descriptor() {
        // A v2 cgroup with every file: each emitted name must resolve (put() drops unknown names).
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("c");
        std::fs::create_dir_all(&d).unwrap();
        for (f, text) in [
            ("cpu.stat", "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\nnr_periods 1\nnr_throttled 0\nthrottled_usec 0\n"),
            ("memory.current", "1000\n"),
            ("memory.stat", "anon 10\nfile 20\ninactive_file 5\npgfault 1\npgmajfault 0\n"),
            ("memory.events", "max 0\noom_kill 0\n"),
            ("memory.peak", "2000\n"),
            ("memory.max", "4096\n"),
            ("memory.swap.max", "0\n"),
            ("memory.low", "0\n"),
            ("cpu.max", "max 100000\n"),
            ("cpu.weight", "100\n"),
            ("pids.current", "1\n"),
            ("pids.max", "10\n"),
            ("cgroup.procs", ""),
            ("cgroup.threads", "1\n"),
            ("io.stat", "7:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n"),
            ("cpu.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=5000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=2000000\n"),
            ("memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
            ("io.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
        ] {
            std::fs::write(d.join(f), text).unwrap();
        }
        let cg = Cgroup::with_root(t.path(), std::path::Path::new("/c"), true);
        let mut e = Emitter::new(Default::default());
        cgroup_series(&mut e, &cg);
        let got: Vec<&str> = e.out.iter().map(|m| m.name.as_str()).collect();
        for want in [
            "container_cpu_usage_seconds_total",
            "container_memory_working_set_bytes",
            "container_fs_reads_bytes_total",
            "container_blkio_device_usage_total",
            "container_oom_events_total",
            "container_threads",
            "container_spec_memory_limit_bytes",
            "container_pressure_cpu_waiting_seconds_total",
            "container_pressure_cpu_stalled_seconds_total",
            "container_pressure_io_stalled_seconds_total",
        ] {
            assert!(got.contains(&want), "{want} missing from {got:?}");
        }
        let cpu = e
            .out
            .iter()
            .find(|m| m.name == "container_cpu_usage_seconds_total")
            .unwrap();
        assert_eq!(cpu.value.as_ref().unwrap().value, 3);
        assert_eq!(cpu.label_values.last().unwrap(), "total");
        assert_eq!(cpu.metric_type, cri::MetricType::Counter as i32);
        let stalled = e
            .out
            .iter()
            .find(|m| m.name == "container_pressure_cpu_stalled_seconds_total")
            .unwrap();
        assert_eq!(stalled.value.as_ref().unwrap().value, 2);
        for m in &e.out {
            let d = DESCS.iter().find(|d| d.name == m.name).unwrap();
            assert_eq!(m.label_values.len(), 5 + d.extra.len(), "{}", m.name);
        }
    }
}
