//! The events of containers and of pods with their containers: each carries the whole pod (see
//! `crate::events`).

use cri_api::v1 as cri;

use super::{Containers, CtrState};
use crate::shared::event;

/// A pod's statuses at one moment, to be sent with an event.
pub(crate) struct PodSnapshot {
    status: Option<cri::PodSandboxStatus>,
    containers: Vec<cri::ContainerStatus>,
}

impl Containers {
    /// The pod's status and the statuses of all its containers (those past Creating), oldest first.
    pub(crate) fn pod_snapshot(&self, pod_id: &str) -> PodSnapshot {
        let status = self
            .pods
            .pod(pod_id)
            .ok()
            .map(|p| self.pods.pod_status_of(&p.record()));
        let mut recs: Vec<_> = self
            .of_pod(pod_id)
            .into_iter()
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

    /// A lifecycle event of the pod itself, with its containers.
    pub(crate) fn sandbox_event(&self, pod_id: &str, kind: cri::ContainerEventType) {
        let snap = self.pod_snapshot(pod_id);
        self.send_event(pod_id, kind, snap);
    }

    /// Sends an event built from an earlier snapshot.
    pub(crate) fn send_event(&self, id: &str, kind: cri::ContainerEventType, snap: PodSnapshot) {
        self.emit(event(id, kind, snap.status, snap.containers));
    }
}
