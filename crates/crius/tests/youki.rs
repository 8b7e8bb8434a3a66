//! E2E: youki (the Rust OCI runtime, built from crates.io by scripts/install-youki.sh into
//! `$CRIUS_TEST_DIR/youki/bin/youki`) as the pods' runtime handler: the lifecycle and recovery
//! subset runc passes — pod and container create/start/exec/logs/stop/remove, exit codes, and a
//! `kill -9` of the daemon with containers running and exiting, then a restart that recovers them —
//! each checked against youki's own state (`youki --root <handler root> list`) and leaving nothing
//! behind (no youki container state, no mounts, no processes).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use cri_api::v1 as cri;

/// The youki binary the install script builds (or `$CRIUS_YOUKI`); a clear failure when missing.
fn youki() -> PathBuf {
    let p = std::env::var_os("CRIUS_YOUKI")
        .map(PathBuf::from)
        .unwrap_or_else(|| test_dir().join("youki/bin/youki"));
    assert!(
        p.is_file(),
        "{} is missing: these tests need youki, built by scripts/install-youki.sh (CI runs it)",
        p.display()
    );
    p
}

/// A daemon whose only (and default) handler is youki, so nothing can silently run on runc.
async fn youki_daemon() -> Daemon {
    let bin = youki();
    Daemon::start_with(Options {
        extra_config: format!(
            "default_runtime = \"youki\"\n[runtimes.youki]\npath = \"{}\"\n",
            bin.display()
        ),
        ..Default::default()
    })
    .await
}

/// The ids of the containers youki itself knows: its per-container state dirs
/// (`<root>/<id>/state.json`) under the handler's root.
fn youki_ids(d: &Daemon) -> Vec<String> {
    let root = d.dir.join("state/runtime/youki");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("state.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

/// On a failed test (the harness' own cleanup knows runc only): force-deletes every container youki
/// still has under the daemon's handler root, after the daemon is killed. Declare before the daemon.
struct YoukiLeftovers(Option<PathBuf>);

impl Drop for YoukiLeftovers {
    fn drop(&mut self) {
        let Some(root) = self.0.take() else { return };
        if !std::thread::panicking() {
            return;
        }
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let _ = std::process::Command::new(youki())
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force"])
                .arg(entry.file_name())
                .status();
        }
    }
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(String::from)
        .collect()
}

fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

async fn run_youki_pod(d: &mut Daemon, name: &str) -> (String, cri::PodSandboxConfig) {
    let cfg = pod_config(name, false, &d.dir.join("logs").join(name));
    let id =
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: "youki".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox {name} on youki: {e}\n{}", d.log()))
        .into_inner()
        .pod_sandbox_id;
    let st =
        d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(st.runtime_handler, "youki");
    assert!(!st.network.unwrap().ip.is_empty(), "pod has no IP");
    (id, cfg)
}

/// Stops and removes the pod, then checks that nothing of it is left: no container youki knows, no
/// mount under the daemon's dirs, no process still alive.
async fn remove_and_check_clean(d: &mut Daemon, pod: &str, pids: &[i64]) {
    d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.to_string(),
    })
    .await
    .unwrap();
    d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.to_string(),
    })
    .await
    .unwrap();
    let listed =
        d.rt.list_containers(cri::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
    assert!(listed.is_empty(), "containers left: {listed:?}");
    assert_eq!(youki_ids(d), Vec::<String>::new(), "youki state left");
    assert_eq!(mounts_under(&d.dir), Vec::<String>::new(), "mounts left");
    for &pid in pids {
        assert!(!alive(pid), "process {pid} outlived its pod");
    }
}

/// The per-handler matrix of verbose Status (`runtimeHandlers`).
async fn handlers_verbose(d: &mut Daemon) -> (serde_json::Value, Vec<cri::RuntimeHandler>) {
    let st =
        d.rt.status(cri::StatusRequest { verbose: true })
            .await
            .expect("Status")
            .into_inner();
    let v = serde_json::from_str(&st.info["runtimeHandlers"]).expect("runtimeHandlers is JSON");
    (v, st.runtime_handlers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn youki_lifecycle_exec_logs_exit_codes() {
    let mut leftovers = YoukiLeftovers(None);
    let mut d = youki_daemon().await;
    leftovers.0 = Some(d.dir.join("state/runtime/youki"));
    let (handlers, runtime_handlers) = handlers_verbose(&mut d).await;
    assert_eq!(
        handlers["youki"]["available"], true,
        "youki is not available: {handlers:#}"
    );
    assert!(
        handlers["youki"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("youki")),
        "{handlers:#}"
    );
    assert!(runtime_handlers.iter().any(|h| h.name == "youki"));

    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = run_youki_pod(&mut d, "youki-life").await;

    // A container that writes to both streams and exits 3: exit code and CRI-format log.
    let mut cfg = container_config(
        "talker",
        &image("busybox:latest"),
        &["sh", "-c", "echo hello-youki; echo oops-youki >&2; exit 3"],
    );
    cfg.log_path = "talker.log".into();
    let talker = d.create(&pod, &pod_cfg, cfg).await.unwrap();
    assert_eq!(
        d.status(&talker).await.state,
        cri::ContainerState::ContainerCreated as i32
    );
    assert!(
        youki_ids(&d).contains(&talker),
        "youki does not know the created container"
    );
    d.start_ctr(&talker).await;
    let s = d.wait_exit(&talker, Duration::from_secs(20)).await;
    assert_eq!(s.exit_code, 3, "{s:?}");
    let log = std::fs::read_to_string(Path::new(&pod_cfg.log_directory).join("talker.log"))
        .expect("container log");
    assert!(
        log.lines().any(|l| l.contains(" stdout F hello-youki")),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains(" stderr F oops-youki")),
        "{log}"
    );

    // A long-running container: exec (output and exit code), stop, remove.
    let runner = d.run(&pod, &pod_cfg, "runner", &["sleep", "300"]).await;
    let pid = d.pid_of(&runner).await;
    assert!(alive(pid));
    let r = d.exec(&runner, &["echo", "exec-youki"], 10).await.unwrap();
    assert_eq!(r.stdout, b"exec-youki\n");
    assert_eq!(r.exit_code, 0);
    let r = d
        .exec(&runner, &["sh", "-c", "echo bad >&2; exit 5"], 10)
        .await
        .unwrap();
    assert_eq!((r.exit_code, r.stderr.as_slice()), (5, &b"bad\n"[..]));
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: runner.clone(),
        timeout: 1,
    })
    .await
    .unwrap();
    let s = d.wait_exit(&runner, Duration::from_secs(15)).await;
    // `sleep` is pid 1 of its PID namespace without a SIGTERM handler: the timeout's SIGKILL ends it.
    assert_eq!(s.exit_code, 137, "{s:?}");
    assert!(!alive(pid));
    d.rt.remove_container(cri::RemoveContainerRequest {
        container_id: runner.clone(),
    })
    .await
    .unwrap();
    assert!(
        !youki_ids(&d).contains(&runner),
        "youki still has the removed container"
    );

    remove_and_check_clean(&mut d, &pod, &[pid]).await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn youki_kill9_restart_recovers_containers() {
    let mut leftovers = YoukiLeftovers(None);
    let mut d = youki_daemon().await;
    leftovers.0 = Some(d.dir.join("state/runtime/youki"));
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = run_youki_pod(&mut d, "youki-recover").await;
    let runner = d.run(&pod, &pod_cfg, "runner", &["sleep", "300"]).await;
    let quitter = d
        .run(&pod, &pod_cfg, "quitter", &["sh", "-c", "sleep 2; exit 7"])
        .await;
    let pid = d.pid_of(&runner).await;

    d.kill9();
    // The quitter exits while nobody listens.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(alive(pid), "container process {pid} died with the daemon");
    d.spawn().await;

    let pods =
        d.rt.list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].state, cri::PodSandboxState::SandboxReady as i32);
    assert_eq!(pods[0].runtime_handler, "youki");
    let s = d.status(&runner).await;
    assert_eq!(
        s.state,
        cri::ContainerState::ContainerRunning as i32,
        "{s:?}"
    );
    let s = d.status(&quitter).await;
    assert_eq!(
        s.state,
        cri::ContainerState::ContainerExited as i32,
        "{s:?}"
    );
    assert_eq!(s.exit_code, 7, "{s:?}");

    // Still controllable through youki: exec, stop, remove.
    let r = d.exec(&runner, &["echo", "still-here"], 10).await.unwrap();
    assert_eq!(r.stdout, b"still-here\n");
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: runner.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    let s = d.wait_exit(&runner, Duration::from_secs(15)).await;
    assert_eq!(s.exit_code, 137, "{s:?}");
    assert!(!alive(pid));
    for id in [&runner, &quitter] {
        d.rt.remove_container(cri::RemoveContainerRequest {
            container_id: id.to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("RemoveContainer {id}: {e}\n{}", d.log()));
    }
    assert_eq!(youki_ids(&d), Vec::<String>::new(), "youki state left");

    remove_and_check_clean(&mut d, &pod, &[pid]).await;
    d.shutdown().await;
}

/// A container config running `sleep 300` with the given seccomp profile (None: unconfined).
fn sleeper(
    name: &str,
    seccomp: Option<cri::security_profile::ProfileType>,
) -> cri::ContainerConfig {
    let mut cfg = container_config(name, &image("busybox:latest"), &["sleep", "300"]);
    cfg.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            seccomp: seccomp.map(|t| cri::SecurityProfile {
                profile_type: t as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    cfg
}

/// youki 0.7.0's `exec` runs processes without the container's seccomp filter. crius finds that with
/// its seccomp trial (the `execSeccomp` handler feature, as a trial run here finds it: no for youki,
/// yes for runc) and refuses ExecSync and Exec into a container with a filter on youki, naming the
/// handler and the field — until `allow_unfiltered_exec = true` in `[runtimes.youki]`. A container
/// without a filter is never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn youki_exec_into_a_filtered_container_is_refused_unless_allowed() {
    use cri::security_profile::ProfileType;
    let mut leftovers = YoukiLeftovers(None);
    let mut d = youki_daemon().await;
    leftovers.0 = Some(d.dir.join("state/runtime/youki"));

    // What crius reports is what the trial finds, run here against the same binaries.
    let (handlers, _) = handlers_verbose(&mut d).await;
    let scratch = tempfile::tempdir().unwrap();
    for (name, bin) in [
        ("youki", youki()),
        ("runc", PathBuf::from("/usr/sbin/runc")),
    ] {
        let h = crius_oci::Handler::probe(name, &bin, &scratch.path().join(name)).await;
        let trial = crius_oci::trial_seccomp_full(&h, Duration::from_secs(15)).await;
        let row = &handlers[name]["handlerFeatures"]["execSeccomp"];
        assert_eq!(
            row["supported"].as_bool(),
            Some(trial.exec.is_ok()),
            "{name}: crius reports {row}, the trial found {trial:?}"
        );
        assert_eq!(
            trial.exec.is_ok(),
            name == "runc",
            "{name}: runc filters exec'd processes, youki 0.7.0 does not: {trial:?}"
        );
    }
    let why = handlers["youki"]["handlerFeatures"]["execSeccomp"]["how"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        why.contains("without the container's seccomp filter"),
        "{why}"
    );

    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = run_youki_pod(&mut d, "youki-exec-seccomp").await;
    let filtered = d
        .create(
            &pod,
            &pod_cfg,
            sleeper("filtered", Some(ProfileType::RuntimeDefault)),
        )
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", d.log()));
    d.start_ctr(&filtered).await;
    let open = d
        .create(&pod, &pod_cfg, sleeper("open", None))
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", d.log()));
    d.start_ctr(&open).await;

    let (c, m) = code(d.exec(&filtered, &["echo", "hi"], 10).await);
    assert_eq!(c, tonic::Code::FailedPrecondition, "{m}");
    assert!(
        m.contains("\"youki\"") && m.contains("linux.security_context.seccomp"),
        "{m}"
    );
    assert!(
        m.contains(&why) && m.contains("allow_unfiltered_exec"),
        "{m}"
    );
    let (c, m) = code(
        d.rt.exec(cri::ExecRequest {
            container_id: filtered.clone(),
            cmd: vec!["sh".into()],
            stdout: true,
            ..Default::default()
        })
        .await,
    );
    assert_eq!(c, tonic::Code::FailedPrecondition, "{m}");
    assert!(m.contains("linux.security_context.seccomp"), "{m}");
    // Unconfined: nothing to lose, so exec runs.
    let r = d.exec(&open, &["echo", "open"], 10).await.unwrap();
    assert_eq!((r.exit_code, r.stdout.as_slice()), (0, &b"open\n"[..]));

    // The operator accepts unfiltered exec on youki: the same container now execs.
    let config = std::fs::read_to_string(&d.config).unwrap();
    let allowed = config.replacen(
        "[runtimes.youki]\n",
        "[runtimes.youki]\nallow_unfiltered_exec = true\n",
        1,
    );
    assert_ne!(config, allowed, "no [runtimes.youki] in {config}");
    std::fs::write(&d.config, allowed).unwrap();
    d.kill9();
    d.spawn().await;
    let r = d
        .exec(&filtered, &["echo", "allowed"], 10)
        .await
        .unwrap_or_else(|e| panic!("ExecSync with allow_unfiltered_exec: {e}\n{}", d.log()));
    assert_eq!((r.exit_code, r.stdout.as_slice()), (0, &b"allowed\n"[..]));

    let pids = [d.pid_of(&filtered).await, d.pid_of(&open).await];
    remove_and_check_clean(&mut d, &pod, &pids).await;
    d.shutdown().await;
}
