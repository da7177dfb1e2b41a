//! OTLP/gRPC receiver: the Export methods of TraceService, MetricsService and LogsService, served with the raw
//! codec so that requests reach the router as the bytes the client sent (decompressed).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use super::auth::Bearer;
use super::reply::{export_response, rpc_status};
use crate::codec::RawCodec;
use crate::pipeline::{Pipeline, RETRY_AFTER, Refusal};
use crate::signal::Signal;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The gRPC front end; one per listener, cloned per connection.
#[derive(Clone)]
pub struct GrpcReceiver {
    pipeline: Arc<Pipeline>,
    max_message_bytes: usize,
    auth: Bearer,
}

impl GrpcReceiver {
    pub fn new(pipeline: Arc<Pipeline>, max_message_bytes: usize, auth: Bearer) -> GrpcReceiver {
        GrpcReceiver { pipeline, max_message_bytes, auth }
    }
}

impl<B> tower::Service<http::Request<B>> for GrpcReceiver
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if let Err(why) = self.auth.check(req.headers()) {
            let status = Status::unauthenticated(why);
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let Some(signal) = Signal::from_grpc_path(req.uri().path()) else {
            let status = Status::unimplemented(format!("unknown method {}", req.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        let export = ExportMethod { pipeline: Arc::clone(&self.pipeline), signal };
        // Replies are a few bytes: compressing them only costs a compressor per request.
        let mut grpc = tonic::server::Grpc::new(RawCodec)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(usize::MAX);
        let req = req.map(|b| b.map_err(Into::into).boxed_unsync());
        Box::pin(async move { Ok(grpc.unary(export, req).await) })
    }
}

struct ExportMethod {
    pipeline: Arc<Pipeline>,
    signal: Signal,
}

impl tonic::server::UnaryService<Bytes> for ExportMethod {
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let timeout = grpc_timeout(request.metadata());
        let body = request.into_inner();
        let (pipeline, signal) = (Arc::clone(&self.pipeline), self.signal);
        Box::pin(async move {
            match pipeline.export(signal, "grpc", body, timeout).await {
                Ok(done) => {
                    Ok(tonic::Response::new(Bytes::from(export_response(done.rejected, &done.messages.join("; ")))))
                }
                Err(refusal) => Err(status_of(refusal)),
            }
        })
    }
}

/// The gRPC status for a refusal; retryable ones carry RetryInfo.
pub fn status_of(refusal: Refusal) -> Status {
    let (code, message, retry) = match refusal {
        Refusal::Invalid(m) => (Code::InvalidArgument, m, None),
        Refusal::Overloaded(m) => (Code::ResourceExhausted, m, Some(RETRY_AFTER)),
        Refusal::Unavailable(m) => (Code::Unavailable, m, Some(RETRY_AFTER)),
        Refusal::Rejected(code, m) => (code, m, None),
    };
    let details = rpc_status(code as i32, &message, retry);
    Status::with_details(code, message, Bytes::from(details))
}

/// The client's deadline from the `grpc-timeout` header (`<digits><H|M|S|m|u|n>`).
pub fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok().filter(|_| digits.len() <= 8)?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeouts() {
        let mut m = MetadataMap::new();
        for (text, want) in [
            ("5S", Some(Duration::from_secs(5))),
            ("250m", Some(Duration::from_millis(250))),
            ("2M", Some(Duration::from_secs(120))),
            ("x", None),
            ("123456789S", None),
        ] {
            m.insert("grpc-timeout", text.parse().expect("ascii"));
            assert_eq!(grpc_timeout(&m), want, "{text}");
        }
    }

    #[test]
    fn refusals_map_to_otlp_codes() {
        assert_eq!(status_of(Refusal::Invalid("x".into())).code(), Code::InvalidArgument);
        let busy = status_of(Refusal::Overloaded("x".into()));
        assert_eq!(busy.code(), Code::ResourceExhausted);
        assert!(!busy.details().is_empty(), "RESOURCE_EXHAUSTED carries RetryInfo");
        assert_eq!(status_of(Refusal::Unavailable("x".into())).code(), Code::Unavailable);
    }
}
