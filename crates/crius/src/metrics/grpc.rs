//! A tower layer around the gRPC server that counts and times every call: one place instead of an edit
//! to every handler.
//!
//! The status is taken from the response headers: tonic sends an error as a trailers-only response, so
//! a failed unary call carries `grpc-status` there; a response without it is OK. A streaming call is
//! timed to its first response headers and counted OK once the stream opens.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::Either;
use tonic::codegen::http;

/// Wraps the server's routes in [`RpcMetrics`]. Disabled (metrics off), it passes calls through without
/// a clock read or an allocation.
#[derive(Clone, Copy, Debug)]
pub struct RpcMetricsLayer {
    enabled: bool,
}

impl RpcMetricsLayer {
    pub fn new(enabled: bool) -> Self {
        RpcMetricsLayer { enabled }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics {
            inner,
            enabled: self.enabled,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    inner: S,
    enabled: bool,
}

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Boxed<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        if !self.enabled {
            return Either::Left(self.inner.call(req));
        }
        let path = req.uri().path().to_owned();
        let start = Instant::now();
        let fut = self.inner.call(req);
        Either::Right(Box::pin(async move {
            let res = fut.await;
            let code = match &res {
                Ok(r) => status_of(r.headers()),
                // The transport failed the call before any gRPC status existed.
                Err(_) => tonic::Code::Unknown,
            };
            super::get().rpc_done(&path, code, start.elapsed());
            res
        }))
    }
}

/// The gRPC code in a response's headers; OK when there is none (it then comes in the trailers, and
/// tonic puts errors raised before the first message in the headers).
pub fn status_of(headers: &http::HeaderMap) -> tonic::Code {
    match headers.get("grpc-status") {
        None => tonic::Code::Ok,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse::<i32>().ok())
            .map(tonic::Code::from_i32)
            .unwrap_or(tonic::Code::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_from_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(status_of(&h), tonic::Code::Ok);
        h.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(status_of(&h), tonic::Code::NotFound);
        h.insert("grpc-status", http::HeaderValue::from_static("junk"));
        assert_eq!(status_of(&h), tonic::Code::Unknown);
    }
}
