//! The gRPC server on the CRI unix socket.

pub mod authority;
pub mod deadline;
pub mod image;
pub mod limits;
#[cfg(test)]
mod proptests;
pub mod runtime;
pub mod task;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use cri_api::admin::admin_server::AdminServer;
use cri_api::v1::image_service_server::ImageServiceServer;
use cri_api::v1::runtime_service_server::RuntimeServiceServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::runtime::Runtime;

/// Largest CRI message accepted or sent (the kubelet uses 16 MiB).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Binds the socket: parent dirs created, a stale socket replaced, mode 0660 (root only).
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create socket dir {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("remove stale socket {}", path.display())),
    }
    // Created with a tight umask so there is no window in which others could connect.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o117));
    let l = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let l = l.with_context(|| format!("bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod 0660 {}", path.display()))?;
    Ok(l)
}

pub async fn serve(
    rt: Arc<Runtime>,
    listener: UnixListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let runtime = RuntimeServiceServer::new(runtime::RuntimeSvc { rt: rt.clone() })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let image = ImageServiceServer::new(image::ImageSvc { rt: rt.clone() })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let metrics = crate::metrics::grpc::RpcMetricsLayer::new(rt.cfg.metrics_address.is_some());
    let traces = crate::metrics::trace::TraceLayer::new(rt.cfg.tracing_endpoint.is_some());
    let max_connections = rt.cfg.max_grpc_connections;
    let admin = AdminServer::new(image::AdminSvc { rt });
    // Connections beyond the cap wait (unaccepted) until one closes.
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let incoming = futures::StreamExt::then(UnixListenerStream::new(listener), move |conn| {
        let slots = slots.clone();
        async move {
            let permit = slots
                .acquire_owned()
                .await
                .map_err(|e| std::io::Error::other(format!("connection slots: {e}")))?;
            conn.map(|c| limits::Limited::new(authority::AuthorityFix::new(c), permit))
        }
    });
    tonic::transport::Server::builder()
        .layer(deadline::DeadlineLayer)
        .layer(metrics)
        .layer(traces)
        .max_concurrent_streams(limits::MAX_STREAMS_PER_CONNECTION)
        .concurrency_limit_per_connection(limits::MAX_STREAMS_PER_CONNECTION as usize)
        .http2_max_header_list_size(limits::MAX_HEADER_LIST)
        .add_service(runtime)
        .add_service(image)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .context("gRPC server")
}
