//! Sends one encoded request over OTLP/gRPC (tonic with the raw codec, one HTTP/2 connection per worker) or
//! OTLP/HTTP (hyper HTTP/1.1, one keep-alive connection per worker) and classifies the outcome the way an OTLP
//! exporter does: acknowledged (with the partial-success rejected count) or failed with a code, retryable or not.

use std::error::Error as _;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use dataplane::codec::RawCodec;
use dataplane::signal::Signal;
use dataplane::wire;
use http::uri::PathAndQuery;
use http::{HeaderValue, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Channel, Endpoint};

/// Wire protocol of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Grpc,
    Http,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }
}

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`.
    pub authority: String,
    pub signal: Signal,
    pub gzip: bool,
    pub timeout: Duration,
}

/// `host:port` from an endpoint given as `host:port`, `http://host:port` or `http://host:port/`.
pub fn parse_endpoint(endpoint: &str) -> Result<String> {
    if endpoint.starts_with("https://") {
        bail!("{endpoint}: TLS is not supported by otlp-lb-tools; use a plain-text endpoint");
    }
    let rest = endpoint.strip_prefix("http://").unwrap_or(endpoint).trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || !rest.contains(':') {
        bail!("{endpoint}: expected host:port (optionally prefixed with http://)");
    }
    Ok(rest.to_string())
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// gRPC code name (`UNAVAILABLE`), `HTTP_<status>`, `TIMEOUT` or `CONNECTION_ERROR`.
    pub code: String,
    /// Whether an OTLP exporter would retry it.
    pub retryable: bool,
}

impl Failure {
    fn new(code: impl Into<String>, retryable: bool) -> Failure {
        Failure { code: code.into(), retryable }
    }
}

/// A connection to the target.
pub enum Client {
    Grpc(tonic::client::Grpc<Channel>, Target),
    Http(HttpClient),
}

impl Client {
    /// A lazily connecting client: connection errors surface as failed requests, not as a start-up error.
    pub fn new(protocol: Protocol, target: &Target) -> Result<Client> {
        match protocol {
            Protocol::Grpc => {
                let endpoint = Endpoint::from_shared(format!("http://{}", target.authority))
                    .context("invalid gRPC endpoint")?
                    .connect_timeout(Duration::from_secs(5))
                    .tcp_nodelay(true);
                let mut grpc = tonic::client::Grpc::new(endpoint.connect_lazy())
                    .max_decoding_message_size(64 << 20)
                    .accept_compressed(CompressionEncoding::Gzip);
                if target.gzip {
                    grpc = grpc.send_compressed(CompressionEncoding::Gzip);
                }
                Ok(Client::Grpc(grpc, target.clone()))
            }
            Protocol::Http => Ok(Client::Http(HttpClient::new(target)?)),
        }
    }

    /// Sends one request; `Ok` holds the number of items the receiver reported as rejected (partial success).
    pub async fn send(&mut self, body: Bytes) -> Result<u64, Failure> {
        match self {
            Client::Grpc(grpc, target) => {
                let mut request = tonic::Request::new(body);
                request.set_timeout(target.timeout);
                let path = PathAndQuery::from_static(target.signal.grpc_path());
                let call = async {
                    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                    grpc.unary(request, path, RawCodec).await
                };
                match tokio::time::timeout(target.timeout, call).await {
                    Err(_) => Err(grpc_failure(Code::DeadlineExceeded)),
                    // tonic's own deadline (from the grpc-timeout we set) surfaces as CANCELLED "Timeout expired".
                    Ok(Err(status))
                        if status.code() == Code::Cancelled
                            && status.message() == tonic::TimeoutExpired(()).to_string() =>
                    {
                        Err(grpc_failure(Code::DeadlineExceeded))
                    }
                    // A status the server never sent: tonic made it from a transport error (the connection
                    // closed mid-call, as when the balancer is killed). grpc-go clients see UNAVAILABLE and retry;
                    // tonic says UNKNOWN. Count it as the HTTP client does, a retryable connection error.
                    Ok(Err(status)) if status.code() == Code::Unknown && status.source().is_some() => {
                        Err(Failure::new("CONNECTION_ERROR", true))
                    }
                    Ok(Err(status)) => Err(grpc_failure(status.code())),
                    Ok(Ok(response)) => Ok(rejected_items(response.get_ref())),
                }
            }
            Client::Http(http) => http.send(body).await,
        }
    }
}

fn grpc_failure(code: Code) -> Failure {
    // The OTLP specification's retryable codes, plus RESOURCE_EXHAUSTED (the Collector's back-pressure signal).
    let retryable = matches!(
        code,
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
            | Code::ResourceExhausted
    );
    Failure::new(code_name(code), retryable)
}

/// Canonical upper-case name of a gRPC status code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `Export*ServiceResponse.partial_success (1) .rejected_* (1)`, or 0.
fn rejected_items(response: &[u8]) -> u64 {
    let partial = wire::fields(response).filter_map(Result::ok).find(|f| f.number == 1);
    let Some(Ok(partial)) = partial.map(|f| f.bytes()) else { return 0 };
    let rejected = wire::fields(partial).filter_map(Result::ok).find(|f| f.number == 1);
    rejected.and_then(|f| f.varint().ok()).unwrap_or(0)
}

/// One OTLP/HTTP keep-alive connection, re-established after an error or a timeout.
pub struct HttpClient {
    authority: String,
    host: HeaderValue,
    path: &'static str,
    gzip: bool,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl HttpClient {
    fn new(target: &Target) -> Result<HttpClient> {
        Ok(HttpClient {
            authority: target.authority.clone(),
            host: HeaderValue::from_str(&target.authority).context("invalid host")?,
            path: target.signal.http_path(),
            gzip: target.gzip,
            timeout: target.timeout,
            sender: None,
        })
    }

    async fn send(&mut self, body: Bytes) -> Result<u64, Failure> {
        let body = if self.gzip { gzip(&body).map_err(|_| Failure::new("ENCODE", false))? } else { body };
        match tokio::time::timeout(self.timeout, self.exchange(body)).await {
            Ok(Ok(rejected)) => Ok(rejected),
            Ok(Err(failure)) => Err(failure),
            Err(_) => {
                // The connection may still carry the unanswered request: never reuse it.
                self.sender = None;
                Err(Failure::new("TIMEOUT", true))
            }
        }
    }

    async fn exchange(&mut self, body: Bytes) -> Result<u64, Failure> {
        let connection_error = |_| Failure::new("CONNECTION_ERROR", true);
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => {
                let tcp = tokio::net::TcpStream::connect(&self.authority).await.map_err(connection_error)?;
                let _ = tcp.set_nodelay(true);
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|_| Failure::new("CONNECTION_ERROR", true))?;
                tokio::spawn(conn);
                sender
            }
        };
        sender.ready().await.map_err(|_| Failure::new("CONNECTION_ERROR", true))?;
        let mut request = http::Request::post(self.path)
            .header(header::HOST, self.host.clone())
            .header(header::CONTENT_TYPE, "application/x-protobuf");
        if self.gzip {
            request = request.header(header::CONTENT_ENCODING, "gzip");
        }
        let request = request.body(Full::new(body)).map_err(|_| Failure::new("ENCODE", false))?;
        let response = sender.send_request(request).await.map_err(|_| Failure::new("CONNECTION_ERROR", true))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|_| Failure::new("CONNECTION_ERROR", true))?;
        self.sender = Some(sender);
        if status.is_success() {
            return Ok(rejected_items(&body.to_bytes()));
        }
        let retryable = matches!(status.as_u16(), 429 | 502 | 503 | 504);
        Err(Failure::new(format!("HTTP_{}", status.as_u16()), retryable))
    }
}

fn gzip(body: &[u8]) -> std::io::Result<Bytes> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
    enc.write_all(body)?;
    Ok(Bytes::from(enc.finish()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_partial_success() {
        assert_eq!(parse_endpoint("http://127.0.0.1:4317/").ok().as_deref(), Some("127.0.0.1:4317"));
        assert_eq!(parse_endpoint("lb:4318").ok().as_deref(), Some("lb:4318"));
        assert!(parse_endpoint("https://lb:4317").is_err());
        assert!(parse_endpoint("lb").is_err());
        // partial_success { rejected = 7 }
        assert_eq!(rejected_items(&[0x0a, 0x02, 0x08, 0x07]), 7);
        assert_eq!(rejected_items(&[]), 0);
    }

    /// An HTTP/2 server that receives a call and then dies without answering (its connection dropped): the
    /// client reports a retryable connection error, not a final UNKNOWN.
    #[tokio::test]
    async fn a_call_cut_by_a_dying_server_is_retryable() {
        use hyper_util::rt::TokioExecutor;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let authority = listener.local_addr().expect("addr").to_string();
        let (got_call, call_seen) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let got_call = std::sync::Mutex::new(Some(got_call));
            let service = hyper::service::service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                if let Some(tx) = got_call.lock().ok().and_then(|mut g| g.take()) {
                    let _ = tx.send(());
                }
                std::future::pending::<Result<http::Response<Full<Bytes>>, std::convert::Infallible>>()
            });
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            let _ = conn.serve_connection(TokioIo::new(tcp), service).await;
        });
        let target = Target { authority, signal: Signal::Traces, gzip: false, timeout: Duration::from_secs(10) };
        let mut client = Client::new(Protocol::Grpc, &target).expect("client");
        let send = tokio::spawn(async move { client.send(Bytes::from_static(b"")).await });
        tokio::time::timeout(Duration::from_secs(10), call_seen).await.expect("the call reached the server").ok();
        server.abort();
        let outcome = tokio::time::timeout(Duration::from_secs(10), send).await.expect("answered").expect("joined");
        assert_eq!(outcome, Err(Failure::new("CONNECTION_ERROR", true)));
    }
}
