//! E2E: GetContainerEvents carries the whole pod (its status and every container's) with each event,
//! pods have lifecycle events of their own (pod id as container_id, as containerd), and a client that
//! stops reading gets a closed stream instead of a gap, while a reading client misses nothing.

mod common;

use std::time::Duration;

use common::*;
use cri::ContainerEventType as E;
use cri_api::v1 as cri;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};

const GATE: &str = "[feature_gates]\nEventedPLEG = true\n";

async fn subscribe(d: &mut Daemon) -> tonic::Streaming<cri::ContainerEventResponse> {
    tokio::time::timeout(
        Duration::from_secs(5),
        d.rt.get_container_events(cri::GetEventsRequest {}),
    )
    .await
    .expect("GetContainerEvents answers at once")
    .unwrap()
    .into_inner()
}

async fn next(
    s: &mut tonic::Streaming<cri::ContainerEventResponse>,
) -> cri::ContainerEventResponse {
    tokio::time::timeout(Duration::from_secs(20), s.next())
        .await
        .expect("event in time")
        .expect("stream open")
        .expect("no stream error")
}

fn kind(k: i32) -> E {
    E::try_from(k).unwrap()
}

/// (container id, state) of every container status carried by an event.
fn ctrs(ev: &cri::ContainerEventResponse) -> Vec<(String, i32)> {
    ev.containers_statuses
        .iter()
        .map(|c| (c.id.clone(), c.state))
        .collect()
}

const CREATED: i32 = cri::ContainerState::ContainerCreated as i32;
const RUNNING: i32 = cri::ContainerState::ContainerRunning as i32;
const EXITED: i32 = cri::ContainerState::ContainerExited as i32;
const READY: i32 = cri::PodSandboxState::SandboxReady as i32;
const NOTREADY: i32 = cri::PodSandboxState::SandboxNotready as i32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_carries_the_whole_pod() {
    let mut d = Daemon::start_with(Options {
        extra_config: GATE.into(),
        ..Default::default()
    })
    .await;
    d.pull(&image("busybox:latest")).await;
    let mut s = subscribe(&mut d).await;

    let (pod, pod_cfg) = d.run_pod("events2", true).await;
    let c1 = d.run(&pod, &pod_cfg, "one", &["sleep", "300"]).await;
    let c2 = d.run(&pod, &pod_cfg, "two", &["sleep", "300"]).await;
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: c1.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    // A second stop changes nothing and sends nothing.
    d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();

    let mut evs = vec![];
    loop {
        let ev = next(&mut s).await;
        let done =
            ev.container_id == pod && kind(ev.container_event_type) == E::ContainerDeletedEvent;
        evs.push(ev);
        if done {
            break;
        }
    }
    for ev in &evs {
        let ps = ev
            .pod_sandbox_status
            .as_ref()
            .expect("pod status with every event");
        assert_eq!(ps.id, pod);
        assert_eq!(ps.metadata.as_ref().unwrap().name, "events2");
        assert!(ev.created_at > 0);
    }
    let seq: Vec<(String, E)> = evs
        .iter()
        .map(|e| (e.container_id.clone(), kind(e.container_event_type)))
        .collect();
    assert_eq!(evs.len(), 12, "{seq:?}");
    let state = |i: usize| evs[i].pod_sandbox_status.as_ref().unwrap().state;
    let at = |i: usize| {
        (
            evs[i].container_id.as_str(),
            kind(evs[i].container_event_type),
        )
    };

    // The pod's own lifecycle, with the pod id as container_id.
    assert_eq!(at(0), (pod.as_str(), E::ContainerCreatedEvent));
    assert_eq!(at(1), (pod.as_str(), E::ContainerStartedEvent));
    assert_eq!(state(0), READY);
    assert!(ctrs(&evs[0]).is_empty());

    // Each container event carries every container of the pod as it is after the change.
    assert_eq!(at(2), (c1.as_str(), E::ContainerCreatedEvent));
    assert_eq!(ctrs(&evs[2]), vec![(c1.clone(), CREATED)]);
    assert_eq!(at(3), (c1.as_str(), E::ContainerStartedEvent));
    assert_eq!(ctrs(&evs[3]), vec![(c1.clone(), RUNNING)]);
    assert_eq!(at(4), (c2.as_str(), E::ContainerCreatedEvent));
    assert_eq!(
        ctrs(&evs[4]),
        vec![(c1.clone(), RUNNING), (c2.clone(), CREATED)]
    );
    assert_eq!(at(5), (c2.as_str(), E::ContainerStartedEvent));
    assert_eq!(
        ctrs(&evs[5]),
        vec![(c1.clone(), RUNNING), (c2.clone(), RUNNING)]
    );
    assert_eq!(at(6), (c1.as_str(), E::ContainerStoppedEvent));
    assert_eq!(
        ctrs(&evs[6]),
        vec![(c1.clone(), EXITED), (c2.clone(), RUNNING)]
    );
    let exited = evs[6]
        .containers_statuses
        .iter()
        .find(|c| c.id == c1)
        .unwrap();
    assert!(
        exited.finished_at > 0 && !exited.reason.is_empty(),
        "{exited:?}"
    );

    // Stopping the pod: its last container stops, then the pod.
    assert_eq!(at(7), (c2.as_str(), E::ContainerStoppedEvent));
    assert_eq!(
        ctrs(&evs[7]),
        vec![(c1.clone(), EXITED), (c2.clone(), EXITED)]
    );
    assert_eq!(at(8), (pod.as_str(), E::ContainerStoppedEvent));
    assert_eq!(state(8), NOTREADY);
    assert_eq!(ctrs(&evs[8]).len(), 2);

    // Removing it: each container leaves the list, then the pod goes with its last status.
    let mut deleted = vec![evs[9].container_id.clone(), evs[10].container_id.clone()];
    assert_eq!(kind(evs[9].container_event_type), E::ContainerDeletedEvent);
    assert_eq!(kind(evs[10].container_event_type), E::ContainerDeletedEvent);
    assert_eq!(evs[9].containers_statuses.len(), 1);
    assert_ne!(evs[9].containers_statuses[0].id, evs[9].container_id);
    assert!(evs[10].containers_statuses.is_empty());
    deleted.sort();
    let mut both = vec![c1.clone(), c2.clone()];
    both.sort();
    assert_eq!(deleted, both);
    assert_eq!(at(11), (pod.as_str(), E::ContainerDeletedEvent));
    assert_eq!(state(11), NOTREADY);
    assert!(ctrs(&evs[11]).is_empty());

    drop(s);
    d.shutdown().await;
}

/// A second connection whose HTTP/2 receive window is tiny: once it stops reading, the daemon cannot
/// send it more than about a kilobyte.
async fn slow_client(socket: &std::path::Path) -> RuntimeServiceClient<tonic::transport::Channel> {
    let socket = socket.to_path_buf();
    let ch = Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .initial_stream_window_size(Some(1024))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .unwrap();
    RuntimeServiceClient::new(ch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_gets_a_closed_stream_not_a_gap() {
    let mut d = Daemon::start_with(Options {
        extra_config: format!("container_events_buffer = 8\n{GATE}"),
        ..Default::default()
    })
    .await;
    // The reading client collects in a task of its own.
    let mut fast = subscribe(&mut d).await;
    let mut slow_rt = slow_client(&d.socket).await;
    let mut slow = slow_rt
        .get_container_events(cri::GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    const PODS: usize = 15;
    let reader = tokio::spawn(async move {
        let mut got = vec![];
        while got.len() < PODS * 4 {
            match tokio::time::timeout(Duration::from_secs(60), fast.next()).await {
                Ok(Some(Ok(ev))) => got.push(ev),
                other => panic!("the reading client's stream: {other:?}"),
            }
        }
        got
    });

    let mut pods = vec![];
    for i in 0..PODS {
        let (pod, _) = d.run_pod(&format!("burst{i}"), true).await;
        d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        pods.push(pod);
    }
    let all = reader.await.unwrap();
    // The reader saw every event, in order: created, started, stopped, deleted per pod.
    let seq: Vec<(String, i32)> = all
        .iter()
        .map(|e| (e.container_id.clone(), e.container_event_type))
        .collect();
    let want: Vec<(String, i32)> = pods
        .iter()
        .flat_map(|p| {
            [
                E::ContainerCreatedEvent,
                E::ContainerStartedEvent,
                E::ContainerStoppedEvent,
                E::ContainerDeletedEvent,
            ]
            .map(|k| (p.clone(), k as i32))
        })
        .collect();
    assert_eq!(seq, want);

    // The slow client now reads: a gap-free prefix of the same events, then DataLoss, then the end.
    let mut prefix = vec![];
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(20), slow.next()).await {
            Ok(Some(Ok(ev))) => prefix.push(ev),
            Ok(Some(Err(e))) => break e,
            other => panic!(
                "expected events then an error, got {other:?} after {}",
                prefix.len()
            ),
        }
    };
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err:?}");
    assert!(
        err.message().contains("container_events_buffer"),
        "{}",
        err.message()
    );
    assert!(prefix.len() < all.len(), "the slow client fell behind");
    for (i, ev) in prefix.iter().enumerate() {
        assert_eq!(
            (
                ev.container_id.as_str(),
                ev.container_event_type,
                ev.created_at
            ),
            (
                all[i].container_id.as_str(),
                all[i].container_event_type,
                all[i].created_at
            ),
            "event {i} of the slow client"
        );
    }
    let end = tokio::time::timeout(Duration::from_secs(5), slow.next())
        .await
        .expect("the closed stream ends");
    assert!(end.is_none(), "{end:?}");
    d.shutdown().await;
}
