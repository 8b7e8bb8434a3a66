//! E2E: the per-handler feature model — each configured handler's kind and probed features reported in
//! Status (RuntimeHandlerFeatures and verbose `runtimeHandlers`) and by `crius features --handlers`,
//! and enforced: a pod asking its handler for what it cannot do fails fast with FailedPrecondition
//! naming the handler and the field, leaving nothing behind.

mod common;

use common::*;
use cri_api::v1 as cri;
use tonic::Code;

const RUNSC: &str = "/usr/bin/runsc";

pub fn require_runsc() {
    assert!(
        std::path::Path::new(RUNSC).is_file(),
        "{RUNSC} is missing: these tests need gVisor (Debian package `runsc`, installed by scripts/install-deps.sh)"
    );
}

async fn handlers_info(d: &mut Daemon) -> (serde_json::Value, Vec<cri::RuntimeHandler>) {
    let s =
        d.rt.status(cri::StatusRequest { verbose: true })
            .await
            .expect("Status")
            .into_inner();
    let v = serde_json::from_str(&s.info["runtimeHandlers"]).expect("runtimeHandlers is JSON");
    (v, s.runtime_handlers)
}

fn supported(v: &serde_json::Value, handler: &str, feature: &str) -> bool {
    v[handler]["handlerFeatures"][feature]["supported"]
        .as_bool()
        .unwrap_or_else(|| panic!("no handlerFeatures.{feature} for {handler}: {v:#}"))
}

async fn run_pod_on(
    d: &mut Daemon,
    handler: &str,
    cfg: cri::PodSandboxConfig,
) -> Result<String, tonic::Status> {
    d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(cfg),
        runtime_handler: handler.to_string(),
    })
    .await
    .map(|r| r.into_inner().pod_sandbox_id)
}

fn with_ns(
    mut cfg: cri::PodSandboxConfig,
    f: impl FnOnce(&mut cri::NamespaceOption),
) -> cri::PodSandboxConfig {
    let ns = cfg
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap();
    f(ns);
    cfg
}

async fn pod_count(d: &mut Daemon) -> usize {
    d.rt.list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_features_are_reported_and_enforced() {
    require_runsc();
    // A second gVisor handler with gVisor's `--network=none` and without `--oci-seccomp`: no host
    // network, and runsc ignores seccomp filters — the probes must see both.
    let mut d = Daemon::start_with(Options {
        extra_config: format!(
            "[runtimes.gvisor-bare]\npath = \"{RUNSC}\"\nargs = [\"--network=none\"]\n"
        ),
        ..Default::default()
    })
    .await;
    let (v, handlers) = handlers_info(&mut d).await;
    assert_eq!(v["runc"]["type"], "oci", "{v:#}");
    assert_eq!(v["runsc"]["type"], "sandbox", "{v:#}");
    assert_eq!(v["gvisor-bare"]["type"], "sandbox", "{v:#}");
    for h in ["runc", "runsc", "gvisor-bare"] {
        assert_eq!(v[h]["available"], true, "{h}: {v:#}");
    }
    assert!(supported(&v, "runc", "hostPID") && supported(&v, "runc", "privileged"));
    assert!(!supported(&v, "runsc", "hostPID") && !supported(&v, "runsc", "idmappedMounts"));
    assert!(
        supported(&v, "runsc", "seccomp"),
        "runsc has --oci-seccomp: {v:#}"
    );
    assert!(supported(&v, "runsc", "hostNetwork"));
    assert!(!supported(&v, "gvisor-bare", "seccomp"), "{v:#}");
    assert!(!supported(&v, "gvisor-bare", "hostNetwork"), "{v:#}");
    // The CRI discovery fields say what the feature record says.
    for h in &handlers {
        let name = if h.name.is_empty() {
            "runc"
        } else {
            h.name.as_str()
        };
        let f = h.features.unwrap();
        assert_eq!(
            f.user_namespaces,
            supported(&v, name, "userNamespaces"),
            "{name}"
        );
        assert_eq!(
            f.recursive_read_only_mounts,
            supported(&v, name, "recursiveReadOnlyMounts"),
            "{name}"
        );
    }

    let base = |name: &str| pod_config(name, false, &std::env::temp_dir().join("crius-e2e-logs"));
    // Host PID on gVisor: refused before any work, naming handler and field.
    let r = run_pod_on(
        &mut d,
        "runsc",
        with_ns(base("gv-hostpid"), |n| {
            n.pid = cri::NamespaceMode::Node as i32
        }),
    )
    .await;
    let (c, msg) = code(r);
    assert_eq!(c, Code::FailedPrecondition, "{msg}");
    assert!(
        msg.contains("\"runsc\"") && msg.contains("namespace_options.pid"),
        "{msg}"
    );
    // Host network on a gVisor handler without --network=host.
    let r = run_pod_on(
        &mut d,
        "gvisor-bare",
        with_ns(base("gv-hostnet"), |n| {
            n.network = cri::NamespaceMode::Node as i32
        }),
    )
    .await;
    let (c, msg) = code(r);
    assert_eq!(c, Code::FailedPrecondition, "{msg}");
    assert!(
        msg.contains("\"gvisor-bare\"") && msg.contains("namespace_options.network"),
        "{msg}"
    );
    // A seccomp profile on a handler that would ignore it.
    let mut cfg = base("gv-seccomp");
    cfg.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .seccomp = Some(cri::SecurityProfile::default());
    let (c, msg) = code(run_pod_on(&mut d, "gvisor-bare", cfg).await);
    assert_eq!(c, Code::FailedPrecondition, "{msg}");
    assert!(
        msg.contains("\"gvisor-bare\"") && msg.contains("seccomp"),
        "{msg}"
    );
    // A pod user namespace: refused exactly where the handler's trial failed.
    let userns = with_ns(base("gv-userns"), |n| {
        n.userns_options = Some(cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: vec![cri::IdMapping {
                container_id: 0,
                host_id: 3_000_000,
                length: 65536,
            }],
            gids: vec![cri::IdMapping {
                container_id: 0,
                host_id: 3_000_000,
                length: 65536,
            }],
        })
    });
    let r = run_pod_on(&mut d, "runsc", userns).await;
    if supported(&v, "runsc", "userNamespaces") {
        let id = r.expect("runsc advertises user namespaces, so the pod must run");
        d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
            .await
            .unwrap();
    } else {
        let (c, msg) = code(r);
        assert_eq!(c, Code::FailedPrecondition, "{msg}");
        assert!(
            msg.contains("\"runsc\"") && msg.contains("userns_options"),
            "{msg}"
        );
    }
    assert_eq!(
        pod_count(&mut d).await,
        0,
        "a refused pod left something behind"
    );

    // `crius features --handlers` prints the daemon's matrix.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crius"))
        .args(["features", "--handlers", "--socket"])
        .arg(&d.socket)
        .output()
        .expect("run crius features --handlers");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header = text.lines().next().unwrap_or_default();
    for h in ["runc", "runsc", "gvisor-bare"] {
        assert!(header.contains(h), "{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("hostPID")), "{text}");
    assert!(text.contains("runsc hostPID: gVisor"), "{text}");
    assert!(text.contains("gvisor-bare seccomp:"), "{text}");
    d.shutdown().await;
}
