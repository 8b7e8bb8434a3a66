//! E2E: trace export. A tiny OTLP/HTTP receiver runs inside the test; the daemon, with
//! `tracing_endpoint` pointing at it, sends a server span per CRI call (continuing the caller's W3C
//! trace when the call carries a `traceparent`) with the pod and container ids, and child spans for the
//! registry pull, CNI ADD and the OCI runtime's create and start.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use cri_api::v1 as cri;
use serde_json::Value;

/// An OTLP/HTTP JSON receiver on a loopback port: stores every span it is sent. Stops when dropped.
struct Receiver {
    port: u16,
    spans: Arc<Mutex<Vec<Value>>>,
    paths: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let spans = Arc::new(Mutex::new(vec![]));
        let paths = Arc::new(Mutex::new(vec![]));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, p, st) = (spans.clone(), paths.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let (conn, _) = match l.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut r = BufReader::new(conn);
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0u8; len];
                r.read_exact(&mut body).unwrap();
                let v: Value = serde_json::from_slice(&body).expect("OTLP JSON");
                for rs in v["resourceSpans"].as_array().unwrap() {
                    assert_eq!(
                        rs["resource"]["attributes"][0]["value"]["stringValue"],
                        "crius"
                    );
                    for ss in rs["scopeSpans"].as_array().unwrap() {
                        s.lock()
                            .unwrap()
                            .extend(ss["spans"].as_array().unwrap().iter().cloned());
                    }
                }
                p.lock().unwrap().push(path);
                let mut conn = r.into_inner();
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
                );
            }
        });
        Receiver {
            port,
            spans,
            paths,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits for a span matching `f`.
    fn wait_for(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = self.spans.lock().unwrap().iter().find(|s| f(s)) {
                return s.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no span {what} among {:#?}",
                self.spans.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn attr_str(span: &Value, key: &str) -> Option<String> {
    attr(span, key)?["stringValue"].as_str().map(str::to_string)
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_per_call_with_ids_children_and_the_callers_trace() {
    let rx = Receiver::start();
    let mut d = Daemon::start_with(Options {
        extra_config: format!(
            "tracing_endpoint = \"http://127.0.0.1:{}/v1/traces\"\n",
            rx.port
        ),
        ..Default::default()
    })
    .await;
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let with_parent = |msg| {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut()
            .insert("traceparent", traceparent.parse().unwrap());
        r
    };

    d.pull(&image("busybox:latest")).await;
    let cfg = pod_config("traced", false, &d.dir.join("logs/traced"));
    let pod =
        d.rt.run_pod_sandbox(with_parent(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let ctr = d
        .create(
            &pod,
            &cfg,
            container_config("web", &image("busybox:latest"), &["sleep", "300"]),
        )
        .await
        .unwrap();
    d.start_ctr(&ctr).await;
    let missing =
        d.rt.container_status(cri::ContainerStatusRequest {
            container_id: "feedface".into(),
            verbose: false,
        })
        .await;
    assert_eq!(missing.unwrap_err().code(), tonic::Code::NotFound);

    // RunPodSandbox: a server span in the caller's trace, under the caller's span, naming the pod.
    let run = rx.wait_for("RunPodSandbox", |s| {
        s["name"] == "runtime.v1.RuntimeService/RunPodSandbox"
    });
    assert_eq!(run["traceId"], TRACE);
    assert_eq!(run["parentSpanId"], PARENT);
    assert_eq!(run["kind"], 2);
    assert_eq!(
        attr_str(&run, "crius.pod_sandbox_id").as_deref(),
        Some(pod.as_str())
    );
    assert_eq!(attr_str(&run, "k8s.pod.name").as_deref(), Some("traced"));
    assert_eq!(attr_str(&run, "k8s.namespace.name").as_deref(), Some("e2e"));
    assert_eq!(attr_str(&run, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(run["status"]["code"], 0);
    let start: u64 = run["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u64 = run["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(end > start);
    // Its CNI ADD is a child span inside it.
    let run_id = run["spanId"].as_str().unwrap().to_string();
    let cni = rx.wait_for("CNI ADD", |s| s["name"] == "CNI ADD");
    assert_eq!(cni["traceId"], TRACE);
    assert_eq!(cni["parentSpanId"], run_id.as_str());
    let cs: u64 = cni["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let ce: u64 = cni["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(cs >= start && ce <= end && ce > cs);

    // A call without traceparent starts a trace of its own; its children follow it.
    let create = rx.wait_for("CreateContainer", |s| {
        s["name"] == "runtime.v1.RuntimeService/CreateContainer"
    });
    assert_ne!(create["traceId"], TRACE);
    assert!(create.get("parentSpanId").is_none() || create["parentSpanId"] == "");
    assert_eq!(
        attr_str(&create, "container.id").as_deref(),
        Some(ctr.as_str())
    );
    assert_eq!(
        attr_str(&create, "crius.pod_sandbox_id").as_deref(),
        Some(pod.as_str())
    );
    assert_eq!(
        attr_str(&create, "k8s.container.name").as_deref(),
        Some("web")
    );
    let oci = rx.wait_for("OCI create", |s| s["name"] == "OCI create");
    assert_eq!(oci["traceId"], create["traceId"]);
    assert_eq!(oci["parentSpanId"], create["spanId"]);
    let start_span = rx.wait_for("StartContainer", |s| {
        s["name"] == "runtime.v1.RuntimeService/StartContainer"
    });
    assert_eq!(
        attr_str(&start_span, "container.id").as_deref(),
        Some(ctr.as_str())
    );
    let oci_start = rx.wait_for("OCI start", |s| s["name"] == "OCI start");
    assert_eq!(oci_start["parentSpanId"], start_span["spanId"]);

    // The pull and its registry work.
    let pull = rx.wait_for("PullImage", |s| {
        s["name"] == "runtime.v1.ImageService/PullImage"
    });
    assert_eq!(
        attr_str(&pull, "container.image.name").as_deref(),
        Some(image("busybox:latest").as_str())
    );
    let reg = rx.wait_for("registry pull", |s| s["name"] == "registry pull");
    assert_eq!(reg["parentSpanId"], pull["spanId"]);

    // A failed call: an error span with the gRPC code.
    let failed = rx.wait_for("ContainerStatus", |s| {
        s["name"] == "runtime.v1.RuntimeService/ContainerStatus"
    });
    assert_eq!(failed["status"]["code"], 2);
    assert!(failed["status"]["message"]
        .as_str()
        .unwrap()
        .starts_with("NotFound"));
    assert_eq!(
        attr(&failed, "rpc.grpc.status_code").unwrap()["intValue"],
        "5"
    );
    assert_eq!(
        attr_str(&failed, "container.id").as_deref(),
        Some("feedface")
    );

    assert!(rx.paths.lock().unwrap().iter().all(|p| p == "/v1/traces"));
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tracing_endpoint_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("crius.toml");
    std::fs::write(
        &cfg,
        format!(
            "root = \"{r}/root\"\nstate = \"{r}/state\"\nlisten = \"{r}/state/crius.sock\"\ntracing_endpoint = \"https://collector:4318\"\n",
            r = dir.path().display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crius"))
        .args(["daemon", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tracing_endpoint"), "{err}");
}
