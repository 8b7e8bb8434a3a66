//! The daemon's own Prometheus metrics: what crius does (CRI calls, image pulls, CNI, exits, streaming
//! sessions) and what it costs (its process's RSS, descriptors, threads, CPU).
//!
//! The instruments live in one process-wide [`Metrics`] so that any module records with one call
//! (`metrics::get().…`) and no handle threads through the runtime; counting is a few atomic adds and is
//! always on. The endpoint ([`http`]) and the per-RPC layer ([`grpc`]) run only when `metrics_address`
//! is set. Gauges of state (pods and containers by state, the process figures) are computed at scrape
//! time from the runtime's tables and `/proc/self`, so they cannot drift.
//!
//! Names follow the Prometheus conventions: `crius_` prefix, base units (`_seconds`, `_bytes`), counters
//! end in `_total` in the exposition.

pub mod grpc;
pub mod http;
pub mod process;
pub mod trace;

use std::future::Future;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::container::CtrState;
use crate::pod::PodState;
use crate::runtime::Runtime;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub grpc_service: String,
    pub grpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcCodeLabels {
    pub grpc_service: String,
    pub grpc_method: String,
    pub grpc_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn rpc_buckets() -> Histogram {
    // 0.25 ms .. ~8 s: a Version call is sub-millisecond, a RunPodSandbox with CNI tens of ms.
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

fn cni_buckets() -> Histogram {
    // 1 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every instrument, registered once.
pub struct Metrics {
    registry: Registry,
    pub rpc_requests: Family<RpcLabels, Counter>,
    pub rpc_errors: Family<RpcCodeLabels, Counter>,
    pub rpc_duration: HistogramFamily<RpcLabels>,
    pub image_pulls: Counter,
    pub image_pull_failures: Family<ReasonLabels, Counter>,
    pub image_pull_bytes: Counter,
    pub image_pull_duration: Histogram,
    pub pods: Family<StateLabels, Gauge>,
    pub containers: Family<StateLabels, Gauge>,
    pub oom_kills: Counter,
    pub container_exits: Family<ReasonLabels, Counter>,
    pub cni_duration: HistogramFamily<OperationLabels>,
    pub cni_failures: Family<OperationLabels, Counter>,
    pub sessions_open: Family<KindLabels, Gauge>,
    pub sessions: Family<KindLabels, Counter>,
    process: process::Instruments,
    /// One scrape at a time: the state gauges are set and encoded as one consistent picture.
    scrape: Mutex<()>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide instruments.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// Streaming session kinds, as the CRI names the calls.
pub const SESSION_KINDS: &[&str] = &["exec", "attach", "portforward"];
const OPEN_SESSION_KINDS: &[&str] = &["exec", "attach"];

const POD_STATES: &[(PodState, &str)] = &[
    (PodState::Creating, "creating"),
    (PodState::Ready, "ready"),
    (PodState::NotReady, "notready"),
];

const CTR_STATES: &[(CtrState, &str)] = &[
    (CtrState::Creating, "creating"),
    (CtrState::Created, "created"),
    (CtrState::Running, "running"),
    (CtrState::Exited, "exited"),
    (CtrState::Unknown, "unknown"),
];

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::default();
        let m = Metrics {
            rpc_requests: Family::default(),
            rpc_errors: Family::default(),
            rpc_duration: Family::new_with_constructor(rpc_buckets as fn() -> Histogram),
            image_pulls: Counter::default(),
            image_pull_failures: Family::default(),
            image_pull_bytes: Counter::default(),
            image_pull_duration: Histogram::new(exponential_buckets(0.01, 2.0, 15)),
            pods: Family::default(),
            containers: Family::default(),
            oom_kills: Counter::default(),
            container_exits: Family::default(),
            cni_duration: Family::new_with_constructor(cni_buckets as fn() -> Histogram),
            cni_failures: Family::default(),
            sessions_open: Family::default(),
            sessions: Family::default(),
            process: process::Instruments::default(),
            scrape: Mutex::new(()),
            registry: Registry::default(),
        };
        r.register(
            "crius_grpc_requests",
            "CRI gRPC calls handled, by service and method",
            m.rpc_requests.clone(),
        );
        r.register(
            "crius_grpc_errors",
            "CRI gRPC calls that ended with a non-OK status, by service, method and gRPC code",
            m.rpc_errors.clone(),
        );
        r.register(
            "crius_grpc_request_duration_seconds",
            "Time from a CRI gRPC call's arrival to its response headers, by service and method",
            m.rpc_duration.clone(),
        );
        r.register(
            "crius_image_pulls",
            "Image pulls that succeeded",
            m.image_pulls.clone(),
        );
        r.register(
            "crius_image_pull_failures",
            "Image pulls that failed, by reason (the image store's error kind)",
            m.image_pull_failures.clone(),
        );
        r.register(
            "crius_image_pull_bytes",
            "Size of the images pulled successfully: compressed layers plus config, as ImageStatus reports it",
            m.image_pull_bytes.clone(),
        );
        r.register(
            "crius_image_pull_duration_seconds",
            "Duration of image pulls, successful or not",
            m.image_pull_duration.clone(),
        );
        r.register(
            "crius_pods",
            "Pod sandboxes known to crius, by state",
            m.pods.clone(),
        );
        r.register(
            "crius_containers",
            "Containers known to crius, by state",
            m.containers.clone(),
        );
        r.register(
            "crius_container_oom_kills",
            "Containers whose exit was caused by the kernel's OOM killer",
            m.oom_kills.clone(),
        );
        r.register(
            "crius_container_exits",
            "Container exits collected, by reason (Completed, Error, OOMKilled, Unknown)",
            m.container_exits.clone(),
        );
        r.register(
            "crius_cni_operation_duration_seconds",
            "Duration of CNI network setup (ADD) and teardown (DEL) of pods, successful or not",
            m.cni_duration.clone(),
        );
        r.register(
            "crius_cni_operation_failures",
            "CNI ADD and DEL operations that failed",
            m.cni_failures.clone(),
        );
        r.register(
            "crius_streaming_sessions_open",
            "Streaming sessions open now, by kind (exec, attach; port-forward connections are only counted in crius_streaming_sessions_total)",
            m.sessions_open.clone(),
        );
        r.register(
            "crius_streaming_sessions",
            "Streaming sessions started, by kind",
            m.sessions.clone(),
        );
        m.process.register(&mut r);
        // Series that exist from the start, so a rate() over them has a zero to begin with.
        for kind in SESSION_KINDS {
            let l = KindLabels {
                kind: kind.to_string(),
            };
            let _ = m.sessions.get_or_create(&l);
            if OPEN_SESSION_KINDS.contains(kind) {
                let _ = m.sessions_open.get_or_create(&l);
            }
        }
        for reason in ["Completed", "Error", "OOMKilled", "Unknown"] {
            let _ = m.container_exits.get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            });
        }
        for op in ["ADD", "DEL"] {
            let _ = m.cni_failures.get_or_create(&OperationLabels {
                operation: op.to_string(),
            });
        }
        Metrics { registry: r, ..m }
    }

    /// Records one finished gRPC call (`path` is the HTTP/2 path, `/runtime.v1.RuntimeService/Version`).
    pub fn rpc_done(&self, path: &str, code: tonic::Code, elapsed: Duration) {
        let (service, method) = split_path(path);
        let labels = RpcLabels {
            grpc_service: service.to_string(),
            grpc_method: method.to_string(),
        };
        self.rpc_requests.get_or_create(&labels).inc();
        self.rpc_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if code != tonic::Code::Ok {
            self.rpc_errors
                .get_or_create(&RpcCodeLabels {
                    grpc_service: labels.grpc_service,
                    grpc_method: labels.grpc_method,
                    grpc_code: format!("{code:?}"),
                })
                .inc();
        }
    }

    /// Records a finished image pull.
    pub fn image_pull(
        &self,
        result: &Result<crius_image::Image, crius_image::ImageError>,
        elapsed: Duration,
    ) {
        self.image_pull_duration.observe(elapsed.as_secs_f64());
        match result {
            Ok(img) => {
                self.image_pulls.inc();
                self.image_pull_bytes.inc_by(img.size);
            }
            Err(e) => {
                self.image_pull_failures
                    .get_or_create(&ReasonLabels {
                        reason: pull_failure_reason(e).to_string(),
                    })
                    .inc();
            }
        }
    }

    /// Records a container exit with the reason ContainerStatus reports.
    pub fn container_exited(&self, reason: &str) {
        // Reasons are crius' own fixed set; anything else is folded so a label cannot grow unbounded.
        let reason = match reason {
            "Completed" | "Error" | "OOMKilled" | "Unknown" => reason,
            _ => "Other",
        };
        if reason == "OOMKilled" {
            self.oom_kills.inc();
        }
        self.container_exits
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Opens a streaming session of `kind`; the session counts as open until the guard is dropped.
    pub fn session(&self, kind: &'static str) -> SessionGuard {
        let l = KindLabels {
            kind: kind.to_string(),
        };
        self.sessions.get_or_create(&l).inc();
        self.sessions_open.get_or_create(&l).inc();
        SessionGuard { kind }
    }

    /// Counts a session whose end crius does not see (a port-forward connection).
    pub fn session_started(&self, kind: &'static str) {
        self.sessions
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// The exposition: sets the gauges computed at scrape time, then encodes every instrument.
    pub fn render(&self, rt: &Runtime) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        let pods: Vec<PodState> = rt.all_pods().iter().map(|p| p.record().state).collect();
        for (state, name) in POD_STATES {
            let n = pods.iter().filter(|s| *s == state).count();
            self.pods
                .get_or_create(&StateLabels {
                    state: name.to_string(),
                })
                .set(n as i64);
        }
        let ctrs: Vec<CtrState> = rt
            .all_containers()
            .iter()
            .map(|c| c.record().state)
            .collect();
        for (state, name) in CTR_STATES {
            let n = ctrs.iter().filter(|s| *s == state).count();
            self.containers
                .get_or_create(&StateLabels {
                    state: name.to_string(),
                })
                .set(n as i64);
        }
        self.process.update();
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Only a formatter error, which writing to a String does not produce.
            tracing::warn!("encoding metrics: {e}");
        }
        out
    }
}

/// Decrements the open-session gauge of its kind when dropped.
pub struct SessionGuard {
    kind: &'static str,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        get()
            .sessions_open
            .get_or_create(&KindLabels {
                kind: self.kind.to_string(),
            })
            .dec();
    }
}

/// Times a CNI operation (`ADD` or `DEL`) and counts its failure.
pub async fn cni<T, E: std::fmt::Display>(
    operation: &'static str,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let start = Instant::now();
    let r = trace::child(&format!("CNI {operation}"), vec![], f).await;
    let m = get();
    let l = OperationLabels {
        operation: operation.to_string(),
    };
    m.cni_duration
        .get_or_create(&l)
        .observe(start.elapsed().as_secs_f64());
    if r.is_err() {
        m.cni_failures.get_or_create(&l).inc();
    }
    r
}

/// The gRPC services crius serves; calls to any other path are counted under `unknown` so that a
/// client probing random paths cannot grow the label set.
const SERVICES: &[&str] = &[
    "runtime.v1.RuntimeService",
    "runtime.v1.ImageService",
    "crius.admin.v1.Admin",
];

fn split_path(path: &str) -> (&str, &str) {
    let p = path.strip_prefix('/').unwrap_or(path);
    match p.split_once('/') {
        Some((svc, method))
            if SERVICES.contains(&svc)
                && !method.is_empty()
                && method.len() <= 64
                && method.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            (svc, method)
        }
        _ => ("unknown", "unknown"),
    }
}

/// A short, fixed name for each way a pull can fail (the label value of `crius_image_pull_failures`).
pub fn pull_failure_reason(e: &crius_image::ImageError) -> &'static str {
    use crius_image::ImageError as E;
    match e {
        E::InvalidReference { .. } => "invalid_reference",
        E::NotFound { .. } => "not_found",
        E::Ambiguous { .. } => "ambiguous",
        E::Unauthorized { .. } => "unauthorized",
        E::Forbidden { .. } => "forbidden",
        E::Registry { .. } => "registry",
        E::DigestMismatch { .. } => "digest_mismatch",
        E::UnsafeLayerEntry { .. } => "unsafe_layer_entry",
        E::Unpack { .. } => "unpack",
        E::Timeout { .. } => "timeout",
        E::Unsupported { .. } => "unsupported",
        E::HostsConfig { .. } => "hosts_config",
        E::Io { .. } => "io",
        E::Mount { .. } => "mount",
        E::Db { .. } => "db",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_known_services_only() {
        assert_eq!(
            split_path("/runtime.v1.RuntimeService/RunPodSandbox"),
            ("runtime.v1.RuntimeService", "RunPodSandbox")
        );
        assert_eq!(
            split_path("/runtime.v1.ImageService/PullImage"),
            ("runtime.v1.ImageService", "PullImage")
        );
        assert_eq!(split_path("/evil.Service/X"), ("unknown", "unknown"));
        assert_eq!(
            split_path("/runtime.v1.RuntimeService/a{b}"),
            ("unknown", "unknown")
        );
        assert_eq!(split_path("/"), ("unknown", "unknown"));
    }

    #[test]
    fn exposition_has_help_type_and_conventional_names() {
        let m = get();
        m.rpc_done(
            "/runtime.v1.RuntimeService/Version",
            tonic::Code::Ok,
            Duration::from_millis(2),
        );
        m.rpc_done(
            "/runtime.v1.RuntimeService/ContainerStatus",
            tonic::Code::NotFound,
            Duration::from_millis(1),
        );
        m.container_exited("OOMKilled");
        m.container_exited("something else");
        {
            let _s = m.session("exec");
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        for want in [
            "# HELP crius_grpc_requests CRI gRPC calls handled",
            "# TYPE crius_grpc_requests counter",
            "crius_grpc_requests_total{grpc_service=\"runtime.v1.RuntimeService\",grpc_method=\"Version\"}",
            "crius_grpc_errors_total{grpc_service=\"runtime.v1.RuntimeService\",grpc_method=\"ContainerStatus\",grpc_code=\"NotFound\"}",
            "crius_grpc_request_duration_seconds_bucket{le=\"+Inf\",grpc_service=\"runtime.v1.RuntimeService\",grpc_method=\"Version\"}",
            "crius_container_oom_kills_total",
            "crius_container_exits_total{reason=\"Other\"}",
            "crius_streaming_sessions_open{kind=\"exec\"} 0",
            "crius_streaming_sessions_total{kind=\"exec\"}",
            "# TYPE crius_process_resident_memory_bytes gauge",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
        // Every family has HELP text.
        let families = out.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = out.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(families, helps);
        for l in out.lines().filter(|l| !l.starts_with('#')) {
            assert!(l.starts_with("crius_"), "{l}");
        }
    }
}
