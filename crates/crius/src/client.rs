//! A gRPC channel to a crius (or any CRI) unix socket, for the CLI, tests and the benchmark.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

pub async fn connect(socket: &Path) -> anyhow::Result<Channel> {
    let socket: PathBuf = socket.to_path_buf();
    let shown = socket.display().to_string();
    Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .map_err(|e| anyhow::anyhow!("connect to {shown}: {e}"))
}
