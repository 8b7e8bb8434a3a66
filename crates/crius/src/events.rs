//! Container events for GetContainerEvents (the kubelet's Evented PLEG). The events are built by the
//! container service (`container::events`, which sees pods and containers) and the pod service (a pod
//! with no containers); this module streams them.
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
