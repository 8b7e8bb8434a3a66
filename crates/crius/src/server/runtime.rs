//! RuntimeService: thin handlers that validate, call the runtime, and map errors.
//!
//! Semantics follow the CRI comments: Stop*/Remove* are idempotent for unknown ids, other calls on
//! unknown ids are NotFound, and anything crius cannot do is Unimplemented naming the RPC or field.

use std::pin::Pin;
use std::sync::Arc;

use cri_api::v1 as cri;
use cri_api::v1::runtime_service_server::RuntimeService;
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::runtime::{Runtime, CRI_VERSION, RUNTIME_NAME, RUNTIME_VERSION};
use crate::server::task::detached;

/// How long Status waits for deferred handlers' trials when the default handler is not one of them.
const STATUS_PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

pub struct RuntimeSvc {
    pub rt: Arc<Runtime>,
}

type Res<T> = Result<Response<T>, Status>;
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// How many items one message of a Stream* list RPC carries.
const PAGE: usize = 100;

fn unimplemented_rpc(rpc: &str, why: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented by crius: {why}"))
}

fn gated(rt: &Runtime, feature: &str, rpc: &str) -> Result<(), Status> {
    if rt.gates.enabled(feature) {
        Ok(())
    } else {
        Err(unimplemented_rpc(
            rpc,
            &format!(
                "alpha feature {feature} is off (enable it with feature_gates.{feature} = true)"
            ),
        ))
    }
}

/// Runs a stats read (cgroupfs, a directory walk, a namespace switch) off the async workers.
async fn blocking<T: Send + 'static>(
    rt: &Arc<Runtime>,
    f: impl FnOnce(&Runtime) -> T + Send + 'static,
) -> Result<T, Status> {
    let rt = rt.clone();
    tokio::task::spawn_blocking(move || f(&rt))
        .await
        .map_err(|e| Status::internal(format!("stats task failed: {e}")))
}

fn paged<T: Send + 'static, R: Send + 'static>(
    items: Vec<T>,
    wrap: fn(Vec<T>) -> R,
) -> BoxStream<R> {
    let mut pages: Vec<Result<R, Status>> = Vec::new();
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        pages.push(Ok(wrap(it.by_ref().take(PAGE).collect())));
    }
    Box::pin(futures::stream::iter(pages))
}

#[tonic::async_trait]
impl RuntimeService for RuntimeSvc {
    async fn version(&self, _req: Request<cri::VersionRequest>) -> Res<cri::VersionResponse> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: RUNTIME_VERSION.into(),
            runtime_api_version: CRI_VERSION.into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<cri::RunPodSandboxRequest>,
    ) -> Res<cri::RunPodSandboxResponse> {
        let req = req.into_inner();
        let cfg = req
            .config
            .ok_or_else(|| Error::invalid("config", "is required"))?;
        let rt = self.rt.clone();
        let id = detached("RunPodSandbox", async move {
            rt.run_pod(cfg, &req.runtime_handler).await
        })
        .await?;
        Ok(Response::new(cri::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<cri::StopPodSandboxRequest>,
    ) -> Res<cri::StopPodSandboxResponse> {
        let (rt, id) = (self.rt.clone(), req.into_inner().pod_sandbox_id);
        detached("StopPodSandbox", async move { rt.stop_pod(&id).await }).await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<cri::RemovePodSandboxRequest>,
    ) -> Res<cri::RemovePodSandboxResponse> {
        let (rt, id) = (self.rt.clone(), req.into_inner().pod_sandbox_id);
        detached("RemovePodSandbox", async move { rt.remove_pod(&id).await }).await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<cri::PodSandboxStatusRequest>,
    ) -> Res<cri::PodSandboxStatusResponse> {
        let req = req.into_inner();
        Ok(Response::new(
            self.rt.pod_status(&req.pod_sandbox_id, req.verbose)?,
        ))
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<cri::ListPodSandboxRequest>,
    ) -> Res<cri::ListPodSandboxResponse> {
        let items = self.rt.list_pods(req.into_inner().filter.as_ref());
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    type StreamPodSandboxesStream = BoxStream<cri::StreamPodSandboxesResponse>;
    async fn stream_pod_sandboxes(
        &self,
        req: Request<cri::StreamPodSandboxesRequest>,
    ) -> Res<Self::StreamPodSandboxesStream> {
        gated(&self.rt, "CRIListStreaming", "StreamPodSandboxes")?;
        let items = self.rt.list_pods(req.into_inner().filter.as_ref());
        Ok(Response::new(paged(items, |pod_sandboxes| {
            cri::StreamPodSandboxesResponse { pod_sandboxes }
        })))
    }

    async fn create_container(
        &self,
        req: Request<cri::CreateContainerRequest>,
    ) -> Res<cri::CreateContainerResponse> {
        let req = req.into_inner();
        let cfg = req
            .config
            .ok_or_else(|| Error::invalid("config", "is required"))?;
        let rt = self.rt.clone();
        let id = detached("CreateContainer", async move {
            rt.create_container(&req.pod_sandbox_id, cfg, req.sandbox_config)
                .await
        })
        .await?;
        Ok(Response::new(cri::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        req: Request<cri::StartContainerRequest>,
    ) -> Res<cri::StartContainerResponse> {
        let (rt, id) = (self.rt.clone(), req.into_inner().container_id);
        detached(
            "StartContainer",
            async move { rt.start_container(&id).await },
        )
        .await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<cri::StopContainerRequest>,
    ) -> Res<cri::StopContainerResponse> {
        let req = req.into_inner();
        let rt = self.rt.clone();
        detached("StopContainer", async move {
            rt.stop_container(&req.container_id, req.timeout).await
        })
        .await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<cri::RemoveContainerRequest>,
    ) -> Res<cri::RemoveContainerResponse> {
        let (rt, id) = (self.rt.clone(), req.into_inner().container_id);
        detached(
            "RemoveContainer",
            async move { rt.remove_container(&id).await },
        )
        .await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        req: Request<cri::ListContainersRequest>,
    ) -> Res<cri::ListContainersResponse> {
        let containers = self.rt.list_containers(req.into_inner().filter.as_ref());
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    type StreamContainersStream = BoxStream<cri::StreamContainersResponse>;
    async fn stream_containers(
        &self,
        req: Request<cri::StreamContainersRequest>,
    ) -> Res<Self::StreamContainersStream> {
        gated(&self.rt, "CRIListStreaming", "StreamContainers")?;
        let items = self.rt.list_containers(req.into_inner().filter.as_ref());
        Ok(Response::new(paged(items, |containers| {
            cri::StreamContainersResponse { containers }
        })))
    }

    async fn container_status(
        &self,
        req: Request<cri::ContainerStatusRequest>,
    ) -> Res<cri::ContainerStatusResponse> {
        let req = req.into_inner();
        Ok(Response::new(
            self.rt.container_status(&req.container_id, req.verbose)?,
        ))
    }

    async fn update_container_resources(
        &self,
        req: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Res<cri::UpdateContainerResourcesResponse> {
        let req = req.into_inner();
        let rt = self.rt.clone();
        detached("UpdateContainerResources", async move {
            rt.update_resources(&req.container_id, req.linux, req.windows.is_some())
                .await
        })
        .await?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        req: Request<cri::ReopenContainerLogRequest>,
    ) -> Res<cri::ReopenContainerLogResponse> {
        self.rt.reopen_log(&req.into_inner().container_id).await?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(&self, req: Request<cri::ExecSyncRequest>) -> Res<cri::ExecSyncResponse> {
        let req = req.into_inner();
        Ok(Response::new(
            self.rt
                .exec_sync(&req.container_id, &req.cmd, req.timeout)
                .await?,
        ))
    }

    async fn exec(&self, req: Request<cri::ExecRequest>) -> Res<cri::ExecResponse> {
        let req = req.into_inner();
        self.rt.check_exec_seccomp(&req.container_id).await?;
        let url = crate::streaming::exec_url(&self.rt, req)?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(&self, req: Request<cri::AttachRequest>) -> Res<cri::AttachResponse> {
        let url = crate::streaming::attach_url(&self.rt, req.into_inner())?;
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        req: Request<cri::PortForwardRequest>,
    ) -> Res<cri::PortForwardResponse> {
        let url = crate::streaming::port_forward_url(&self.rt, req.into_inner())?;
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn container_stats(
        &self,
        req: Request<cri::ContainerStatsRequest>,
    ) -> Res<cri::ContainerStatsResponse> {
        let id = req.into_inner().container_id;
        let stats = blocking(&self.rt, move |rt| rt.container_stats(&id)).await??;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_container_stats(
        &self,
        req: Request<cri::ListContainerStatsRequest>,
    ) -> Res<cri::ListContainerStatsResponse> {
        let filter = req.into_inner().filter;
        let stats = blocking(&self.rt, move |rt| rt.list_container_stats(filter.as_ref())).await?;
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    type StreamContainerStatsStream = BoxStream<cri::StreamContainerStatsResponse>;
    async fn stream_container_stats(
        &self,
        req: Request<cri::StreamContainerStatsRequest>,
    ) -> Res<Self::StreamContainerStatsStream> {
        gated(&self.rt, "CRIListStreaming", "StreamContainerStats")?;
        let filter = req.into_inner().filter;
        let items = blocking(&self.rt, move |rt| rt.list_container_stats(filter.as_ref())).await?;
        Ok(Response::new(paged(items, |container_stats| {
            cri::StreamContainerStatsResponse { container_stats }
        })))
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<cri::PodSandboxStatsRequest>,
    ) -> Res<cri::PodSandboxStatsResponse> {
        let id = req.into_inner().pod_sandbox_id;
        let stats = blocking(&self.rt, move |rt| rt.pod_stats(&id)).await??;
        Ok(Response::new(cri::PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Res<cri::ListPodSandboxStatsResponse> {
        let filter = req.into_inner().filter;
        let stats = blocking(&self.rt, move |rt| rt.list_pod_stats(filter.as_ref())).await?;
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    type StreamPodSandboxStatsStream = BoxStream<cri::StreamPodSandboxStatsResponse>;
    async fn stream_pod_sandbox_stats(
        &self,
        req: Request<cri::StreamPodSandboxStatsRequest>,
    ) -> Res<Self::StreamPodSandboxStatsStream> {
        gated(&self.rt, "CRIListStreaming", "StreamPodSandboxStats")?;
        let filter = req.into_inner().filter;
        let items = blocking(&self.rt, move |rt| rt.list_pod_stats(filter.as_ref())).await?;
        Ok(Response::new(paged(items, |pod_sandbox_stats| {
            cri::StreamPodSandboxStatsResponse { pod_sandbox_stats }
        })))
    }

    async fn update_runtime_config(
        &self,
        req: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Res<cri::UpdateRuntimeConfigResponse> {
        let cidr = req
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        self.rt.set_pod_cidr(&cidr)?;
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn status(&self, req: Request<cri::StatusRequest>) -> Res<cri::StatusResponse> {
        // Off the workers: the CNI check scans the conf dir and may probe plugins.
        let (rt, verbose) = (self.rt.clone(), req.into_inner().verbose);
        // Handlers probed on first use (gVisor) start their trials now; Status reports only probed
        // features. It waits for them when the default handler is one (RuntimeReady depends on it),
        // else at most STATUS_PROBE_WAIT: a gVisor trial takes seconds and `crictl info` gives up
        // after 2 s. Until they finish, such a handler is reported unavailable "not yet probed".
        if rt.handlers.is_pending() {
            let bg = rt.clone();
            let trials = tokio::spawn(async move {
                bg.handlers.ready().await;
            });
            if rt.handlers.default_is_deferred() {
                let _ = trials.await;
            } else {
                let _ = tokio::time::timeout(STATUS_PROBE_WAIT, trials).await;
            }
        }
        let status = tokio::task::spawn_blocking(move || rt.status(verbose))
            .await
            .map_err(|e| Status::internal(format!("status task: {e}")))?;
        Ok(Response::new(status))
    }

    async fn checkpoint_container(
        &self,
        _req: Request<cri::CheckpointContainerRequest>,
    ) -> Res<cri::CheckpointContainerResponse> {
        // Probed at start: no per-call work, so the kubelet hears the reason at once.
        Err(unimplemented_rpc(
            "CheckpointContainer",
            &format!(
                "feature ContainerCheckpoint is unsupported: {}",
                self.rt.criu.reason()
            ),
        ))
    }

    type GetContainerEventsStream = BoxStream<cri::ContainerEventResponse>;
    async fn get_container_events(
        &self,
        _req: Request<cri::GetEventsRequest>,
    ) -> Res<Self::GetContainerEventsStream> {
        gated(&self.rt, "EventedPLEG", "GetContainerEvents")?;
        let rx = self.rt.subscribe();
        Ok(Response::new(Box::pin(crate::events::stream(rx))))
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Res<cri::ListMetricDescriptorsResponse> {
        Ok(Response::new(cri::ListMetricDescriptorsResponse {
            descriptors: crate::stats::cri_metrics::descriptors(),
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Res<cri::ListPodSandboxMetricsResponse> {
        let pod_metrics = blocking(&self.rt, |rt| rt.pod_sandbox_metrics()).await?;
        Ok(Response::new(cri::ListPodSandboxMetricsResponse {
            pod_metrics,
        }))
    }

    type StreamPodSandboxMetricsStream = BoxStream<cri::StreamPodSandboxMetricsResponse>;
    async fn stream_pod_sandbox_metrics(
        &self,
        _req: Request<cri::StreamPodSandboxMetricsRequest>,
    ) -> Res<Self::StreamPodSandboxMetricsStream> {
        gated(&self.rt, "CRIListStreaming", "StreamPodSandboxMetrics")?;
        let items = blocking(&self.rt, |rt| rt.pod_sandbox_metrics()).await?;
        Ok(Response::new(paged(items, |pod_sandbox_metrics| {
            cri::StreamPodSandboxMetricsResponse {
                pod_sandbox_metrics,
            }
        })))
    }

    async fn runtime_config(
        &self,
        _req: Request<cri::RuntimeConfigRequest>,
    ) -> Res<cri::RuntimeConfigResponse> {
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: match self.rt.cgroup_driver {
                    crate::cgroups::systemd::Driver::Systemd => cri::CgroupDriver::Systemd,
                    crate::cgroups::systemd::Driver::Cgroupfs => cri::CgroupDriver::Cgroupfs,
                } as i32,
            }),
        }))
    }

    async fn update_pod_sandbox_resources(
        &self,
        req: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Res<cri::UpdatePodSandboxResourcesResponse> {
        let req = req.into_inner();
        self.rt
            .update_pod_resources(&req.pod_sandbox_id, req.overhead, req.resources)
            .await?;
        Ok(Response::new(cri::UpdatePodSandboxResourcesResponse {}))
    }
}
