//! Container events for GetContainerEvents (the kubelet's Evented PLEG).
//!
//! Every event carries the whole pod as it is after the change: its PodSandboxStatus and the status of
//! every container in it, because the kubelet caches each event as the pod's complete status (as
//! containerd and CRI-O send it). Pods have lifecycle events of their own, named like containerd's:
//! the pod id as `container_id`, CREATED and STARTED when RunPodSandbox finishes, STOPPED after
//! StopPodSandbox, DELETED after RemovePodSandbox (with the pod's last status, so that a consumer can
//! still tell whose pod it was).
//!
//! Delivery: one broadcast channel with a bounded buffer (`container_events_buffer`). A client that
//! falls further behind than the buffer is not handed a stream with a hole in it: its stream ends with
//! DataLoss, and it relists.

use cri_api::v1 as cri;
use tonic::Status;

use crate::container::CtrState;
use crate::runtime::{now_ns, Runtime};

/// A pod's statuses at one moment, to be sent with an event.
pub(crate) struct PodSnapshot {
    status: Option<cri::PodSandboxStatus>,
    containers: Vec<cri::ContainerStatus>,
}

impl Runtime {
    /// The pod's status and the statuses of all its containers (those past Creating), oldest first.
    pub(crate) fn pod_snapshot(&self, pod_id: &str) -> PodSnapshot {
        let status = self
            .pod(pod_id)
            .ok()
            .map(|p| self.pod_status_of(&p.record()));
        let mut recs: Vec<_> = self
            .all_containers()
            .into_iter()
            .filter(|c| c.sandbox_id == pod_id)
            .map(|c| c.record())
            .filter(|r| r.state != CtrState::Creating)
            .collect();
        recs.sort_by_key(|r| r.created_at);
        PodSnapshot {
            status,
            containers: recs.iter().map(|r| self.container_status_of(r)).collect(),
        }
    }

    /// An event about container `container_id` of pod `pod_id`, with the pod as it is now.
    pub(crate) fn container_event(
        &self,
        container_id: &str,
        pod_id: &str,
        kind: cri::ContainerEventType,
    ) {
        let snap = self.pod_snapshot(pod_id);
        self.send_event(container_id, kind, snap);
    }

    /// A lifecycle event of the pod itself.
    pub(crate) fn sandbox_event(&self, pod_id: &str, kind: cri::ContainerEventType) {
        let snap = self.pod_snapshot(pod_id);
        self.send_event(pod_id, kind, snap);
    }

    /// Sends an event built from an earlier snapshot (a removed pod's last status).
    pub(crate) fn send_event(&self, id: &str, kind: cri::ContainerEventType, snap: PodSnapshot) {
        self.emit(cri::ContainerEventResponse {
            container_id: id.to_string(),
            container_event_type: kind as i32,
            created_at: now_ns(),
            pod_sandbox_status: snap.status,
            containers_statuses: snap.containers,
        });
    }
}

/// The GetContainerEvents stream of one client: every event from its subscription on, in order, until
/// it falls behind the buffer; then one DataLoss error and the end of the stream.
pub fn stream(
    rx: tokio::sync::broadcast::Receiver<cri::ContainerEventResponse>,
) -> impl futures::Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send + 'static {
    futures::stream::unfold(Some(rx), |state| async move {
        let mut rx = state?;
        match rx.recv().await {
            Ok(ev) => Some((Ok(ev), Some(rx))),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => Some((
                Err(Status::data_loss(format!(
                    "container event stream closed: this client fell {n} events behind the \
                     buffer (container_events_buffer); relist and subscribe again"
                ))),
                None,
            )),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn ev(n: i64) -> cri::ContainerEventResponse {
        cri::ContainerEventResponse {
            container_id: n.to_string(),
            created_at: n,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_lagging_client_gets_a_prefix_then_data_loss_then_the_end() {
        let (tx, rx) = tokio::sync::broadcast::channel(4);
        let s = stream(rx);
        for n in 0..10 {
            tx.send(ev(n)).unwrap();
        }
        let got: Vec<_> = s.collect().await;
        assert_eq!(got.len(), 1, "{got:?}");
        let e = got[0].as_ref().unwrap_err();
        assert_eq!(e.code(), tonic::Code::DataLoss);
        assert!(e.message().contains("6 events behind"), "{}", e.message());
    }

    #[tokio::test]
    async fn a_keeping_up_client_gets_every_event_in_order() {
        let (tx, rx) = tokio::sync::broadcast::channel(4);
        let mut s = Box::pin(stream(rx));
        for n in 0..20 {
            tx.send(ev(n)).unwrap();
            let got = s.next().await.unwrap().unwrap();
            assert_eq!(got.created_at, n);
        }
        drop(tx);
        assert!(s.next().await.is_none());
    }
}
