//! OTLP/HTTP receiver: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with `application/x-protobuf` or
//! `application/json` (the OTLP JSON mapping), optionally gzip-compressed, answered in the request's encoding with
//! the status codes of the OTLP specification (400, 413, 415, 429 and 503 with Retry-After).

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use opentelemetry_proto::tonic::collector::{logs::v1 as logs, metrics::v1 as metrics, trace::v1 as trace};
use prost::Message;
use tonic::Code;

use super::auth::Bearer;
use super::reply::{export_response, rpc_status};
use crate::config::HttpReceiver as HttpConfig;
use crate::pipeline::{Pipeline, RETRY_AFTER, Refusal};
use crate::signal::Signal;

#[derive(Clone)]
struct AppState {
    pipeline: Arc<Pipeline>,
    auth: Bearer,
    max_body: usize,
    max_decompressed: usize,
}

/// The router of the OTLP/HTTP receiver.
pub fn router(pipeline: Arc<Pipeline>, cfg: &HttpConfig, auth: Bearer) -> Router {
    let state = AppState {
        pipeline,
        auth,
        max_body: cfg.max_request_body_size,
        max_decompressed: cfg.max_decompressed_body_size,
    };
    let mut app = Router::new();
    for signal in Signal::ALL {
        app = app
            .route(signal.http_path(), post(move |s: State<AppState>, h: HeaderMap, b: Body| export(s, signal, h, b)));
    }
    app.with_state(state)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// An error answer: HTTP status, `google.rpc.Status` body in the request's encoding, Retry-After when retryable.
struct Failure {
    status: StatusCode,
    code: Code,
    message: String,
    retry: bool,
}

impl Failure {
    fn new(status: StatusCode, code: Code, message: impl Into<String>) -> Failure {
        Failure { status, code, message: message.into(), retry: false }
    }

    fn into_response(self, encoding: Encoding) -> Response {
        let retry_after = self.retry.then_some(RETRY_AFTER);
        let body = match encoding {
            Encoding::Protobuf => rpc_status(self.code as i32, &self.message, retry_after),
            Encoding::Json => {
                serde_json::json!({ "code": self.code as i32, "message": self.message }).to_string().into_bytes()
            }
        };
        let mut response = (self.status, [(header::CONTENT_TYPE, encoding.content_type())], body).into_response();
        if let Some(d) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(d.as_secs().max(1)));
        }
        response
    }
}

async fn export(State(s): State<AppState>, signal: Signal, headers: HeaderMap, body: Body) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let encoding = match content_type.split(';').next().map(str::trim) {
        Some("application/x-protobuf") | Some("application/protobuf") => Encoding::Protobuf,
        Some("application/json") => Encoding::Json,
        _ => {
            let msg =
                format!("unsupported content type {content_type:?}; use application/x-protobuf or application/json");
            return Failure::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, Code::InvalidArgument, msg)
                .into_response(Encoding::Protobuf);
        }
    };
    if let Err(why) = s.auth.check(&headers) {
        let mut r = Failure::new(StatusCode::UNAUTHORIZED, Code::Unauthenticated, why).into_response(encoding);
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    match handle(&s, signal, &headers, encoding, body).await {
        Ok(bytes) => (StatusCode::OK, [(header::CONTENT_TYPE, encoding.content_type())], bytes).into_response(),
        Err(f) => f.into_response(encoding),
    }
}

async fn handle(
    s: &AppState,
    signal: Signal,
    headers: &HeaderMap,
    encoding: Encoding,
    body: Body,
) -> Result<Vec<u8>, Failure> {
    let too_large = |what: &str, limit: usize| {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::ResourceExhausted,
            format!("{what} exceeds the limit of {limit} bytes"),
        )
    };
    let raw = match Limited::new(body, s.max_body).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large("request body", s.max_body)),
        Err(e) => {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                Code::InvalidArgument,
                format!("reading the body failed: {e}"),
            ));
        }
    };
    let content_encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    let payload = match content_encoding.trim() {
        "" | "identity" => raw,
        "gzip" | "x-gzip" => {
            let mut out = Vec::new();
            let reader = flate2::read::GzDecoder::new(&raw[..]);
            match reader.take(s.max_decompressed as u64 + 1).read_to_end(&mut out) {
                Ok(n) if n > s.max_decompressed => return Err(too_large("decompressed body", s.max_decompressed)),
                Ok(_) => Bytes::from(out),
                Err(e) => {
                    return Err(Failure::new(
                        StatusCode::BAD_REQUEST,
                        Code::InvalidArgument,
                        format!("invalid gzip body: {e}"),
                    ));
                }
            }
        }
        other => {
            let msg = format!("unsupported content encoding {other:?}; use gzip or none");
            return Err(Failure::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, Code::InvalidArgument, msg));
        }
    };
    let protobuf = match encoding {
        Encoding::Protobuf => payload,
        Encoding::Json => json_to_protobuf(signal, &payload).map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                Code::InvalidArgument,
                format!("invalid OTLP/JSON {signal} request: {e}"),
            )
        })?,
    };
    match s.pipeline.export(signal, "http", protobuf, None).await {
        Ok(done) => Ok(response_body(signal, encoding, done.rejected, &done.messages.join("; "))),
        Err(refusal) => Err(failure_of(refusal)),
    }
}

fn failure_of(refusal: Refusal) -> Failure {
    match refusal {
        Refusal::Invalid(m) => Failure::new(StatusCode::BAD_REQUEST, Code::InvalidArgument, m),
        Refusal::Overloaded(m) => {
            Failure { retry: true, ..Failure::new(StatusCode::TOO_MANY_REQUESTS, Code::ResourceExhausted, m) }
        }
        Refusal::Unavailable(m) => {
            Failure { retry: true, ..Failure::new(StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable, m) }
        }
        Refusal::Rejected(code @ Code::InvalidArgument, m) => Failure::new(StatusCode::BAD_REQUEST, code, m),
        Refusal::Rejected(code, m) => Failure::new(StatusCode::INTERNAL_SERVER_ERROR, code, m),
    }
}

/// Decodes an OTLP/JSON request into its protobuf encoding.
pub fn json_to_protobuf(signal: Signal, json: &[u8]) -> Result<Bytes, serde_json::Error> {
    Ok(Bytes::from(match signal {
        Signal::Traces => serde_json::from_slice::<trace::ExportTraceServiceRequest>(json)?.encode_to_vec(),
        Signal::Metrics => serde_json::from_slice::<metrics::ExportMetricsServiceRequest>(json)?.encode_to_vec(),
        Signal::Logs => serde_json::from_slice::<logs::ExportLogsServiceRequest>(json)?.encode_to_vec(),
    }))
}

fn response_body(signal: Signal, encoding: Encoding, rejected: u64, message: &str) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => export_response(rejected, message),
        Encoding::Json if rejected == 0 && message.is_empty() => b"{}".to_vec(),
        Encoding::Json => {
            let field = match signal {
                Signal::Traces => "rejectedSpans",
                Signal::Metrics => "rejectedDataPoints",
                Signal::Logs => "rejectedLogRecords",
            };
            let mut partial = serde_json::Map::new();
            partial.insert(field.into(), serde_json::Value::String(rejected.to_string()));
            partial.insert("errorMessage".into(), serde_json::Value::String(message.into()));
            serde_json::json!({ "partialSuccess": partial }).to_string().into_bytes()
        }
    }
}
