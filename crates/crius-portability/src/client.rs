//! A CRI connection to any endpoint (`unix:///path` or a bare path), plus raw calls to RPCs newer
//! than the cri-api this checker was built with.

use std::path::PathBuf;

use cri_api::v1::image_service_client::ImageServiceClient;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("endpoint {0:?}: only unix:// sockets are supported")]
    Scheme(String),
    #[error("connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
}

#[derive(Clone)]
pub struct Cri {
    pub endpoint: String,
    pub channel: Channel,
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
}

/// `unix:///run/x.sock` or `/run/x.sock` → the socket path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ConnectError> {
    if let Some(p) = endpoint.strip_prefix("unix://") {
        return Ok(PathBuf::from(p));
    }
    if endpoint.starts_with('/') {
        return Ok(PathBuf::from(endpoint));
    }
    Err(ConnectError::Scheme(endpoint.to_string()))
}

pub async fn connect(endpoint: &str) -> Result<Cri, ConnectError> {
    let socket = socket_path(endpoint)?;
    let channel = Endpoint::from_static("http://localhost")
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .map_err(|source| ConnectError::Connect {
            endpoint: endpoint.to_string(),
            source,
        })?;
    Ok(Cri {
        endpoint: endpoint.to_string(),
        rt: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
        img: ImageServiceClient::new(channel.clone()),
        channel,
    })
}

impl Cri {
    /// Calls `/runtime.v1.RuntimeService/<method>` with an empty request message; for RPCs newer
    /// than this checker's cri-api. An endpoint that does not know the method answers Unimplemented.
    pub async fn raw_empty_call(&self, method: &str) -> Result<(), tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("channel not ready: {e}")))?;
        let path = PathAndQuery::try_from(format!("/runtime.v1.RuntimeService/{method}"))
            .map_err(|e| tonic::Status::internal(format!("bad method path: {e}")))?;
        let codec = tonic_prost::ProstCodec::<(), ()>::new();
        grpc.unary(tonic::Request::new(()), path, codec)
            .await
            .map(|_| ())
    }
}
