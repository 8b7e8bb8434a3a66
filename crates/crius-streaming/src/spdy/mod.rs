//! SPDY/3.1 streaming (kubectl's classic transport): frame codec, the server session for
//! remotecommand (exec/attach) and port forwarding.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response};
use http_body_util::Full;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::remotecommand::Session;
use crate::Backend;

pub const UPGRADE_TOKEN: &str = "SPDY/3.1";
pub const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
pub const ACCEPTED_PROTOCOLS_HEADER: &str = "x-accepted-stream-protocol-versions";

pub const REMOTECOMMAND_V4: &str = "v4.channel.k8s.io";
pub const REMOTECOMMAND_V3: &str = "v3.channel.k8s.io";
pub const REMOTECOMMAND_V2: &str = "v2.channel.k8s.io";
pub const REMOTECOMMAND_V1: &str = "channel.k8s.io";
pub const PORTFORWARD_V1: &str = "portforward.k8s.io";

pub(crate) const REMOTECOMMAND_PROTOCOLS: &[&str] = &[
    REMOTECOMMAND_V4,
    REMOTECOMMAND_V3,
    REMOTECOMMAND_V2,
    REMOTECOMMAND_V1,
];
pub(crate) const PORTFORWARD_PROTOCOLS: &[&str] = &[PORTFORWARD_V1];

pub(crate) fn handshake_response(
    protocol: Option<&'static str>,
) -> Result<Response<Full<Bytes>>, String> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        http::header::UPGRADE,
        HeaderValue::from_static(UPGRADE_TOKEN),
    );
    if let Some(p) = protocol {
        h.insert(PROTOCOL_HEADER, HeaderValue::from_static(p));
    }
    Ok(resp)
}

pub(crate) async fn serve_remotecommand<IO>(
    _io: IO,
    _protocol: Option<&'static str>,
    _session: Session,
    _timeout: Duration,
) where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    tracing::warn!("SPDY remotecommand is not implemented yet");
}

pub(crate) async fn serve_port_forward<IO>(
    _io: IO,
    _backend: Arc<dyn Backend>,
    _pod: String,
    _timeout: Duration,
) where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    tracing::warn!("SPDY port forward is not implemented yet");
}
