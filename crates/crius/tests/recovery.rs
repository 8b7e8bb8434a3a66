//! E2E: the daemon dies (kill -9) or is stopped (SIGTERM); containers keep running, exits that happen
//! while it is down are not lost, and after a restart everything is listed and controllable.

mod common;

use std::time::Duration;

use common::*;
use cri_api::v1 as cri;

fn alive(pid: i64) -> bool {
    // A zombie would still have /proc/pid; check the state too.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_restart_recovers_running_and_exited_containers() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("recover", false).await;
    let runner = d.run(&pod, &pod_cfg, "runner", &["sleep", "300"]).await;
    let quitter = d
        .run(&pod, &pod_cfg, "quitter", &["sh", "-c", "sleep 2; exit 7"])
        .await;
    let pid = d.pid_of(&runner).await;
    let pod_ip =
        d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .network
        .unwrap()
        .ip;

    d.kill9();
    // The quitter exits while nobody listens.
    tokio::time::sleep(Duration::from_secs(4)).await;
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
    let st =
        d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        st.status.unwrap().network.unwrap().ip,
        pod_ip,
        "pod IP survives the restart"
    );

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

    // The recovered container is still controllable: exec, then stop.
    let r = d.exec(&runner, &["echo", "still-here"], 10).await.unwrap();
    assert_eq!(r.stdout, b"still-here\n");
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: runner.clone(),
        timeout: 2,
    })
    .await
    .unwrap();
    let s = d.wait_exit(&runner, Duration::from_secs(15)).await;
    // `sleep` is pid 1 of its own PID namespace and has no SIGTERM handler, so the kernel drops the
    // stop signal and the timeout's SIGKILL ends it.
    assert_eq!(s.exit_code, 137, "{s:?}");
    assert!(!alive(pid));

    // A second restart while a container is running after the first one.
    let again = d.run(&pod, &pod_cfg, "again", &["sleep", "300"]).await;
    d.kill9();
    d.spawn().await;
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: again.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    assert_eq!(d.status(&again).await.exit_code, 137);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_containers_running() {
    let mut d = Daemon::start().await;
    d.pull(&image("busybox:latest")).await;
    let (pod, pod_cfg) = d.run_pod("term", true).await;
    let ctr = d.run(&pod, &pod_cfg, "c", &["sleep", "300"]).await;
    let pid = d.pid_of(&ctr).await;
    let status = d.terminate();
    assert!(status.success(), "daemon exit on SIGTERM: {status}");
    assert!(!d.socket.exists(), "socket removed on clean shutdown");
    assert!(alive(pid));
    d.spawn().await;
    assert_eq!(
        d.status(&ctr).await.state,
        cri::ContainerState::ContainerRunning as i32
    );
    d.shutdown().await;
    assert!(!alive(pid), "cleanup stops it");
}
