//! The sink's three listeners: OTLP/gRPC (raw codec through `tonic::server::Grpc`), OTLP/HTTP protobuf, and the
//! admin API (`GET /report`, `POST /reset`, `GET|POST /mode`, `GET /healthz`).

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use dataplane::codec::RawCodec;
use dataplane::signal::Signal;
use serde_json::{Value, json};
use tonic::codec::CompressionEncoding;

use super::Sink;
use super::mode::{Mode, Reply};

/// Largest request accepted (after decompression).
const MAX_BODY: usize = 64 << 20;

/// Routes of the three `Export` methods.
pub fn grpc_router(sink: Arc<Sink>) -> Router {
    let mut router = Router::new();
    for signal in Signal::ALL {
        let sink = sink.clone();
        router = router.route(signal.grpc_path(), post(move |req: Request| grpc_export(sink.clone(), signal, req)));
    }
    router
}

async fn grpc_export(sink: Arc<Sink>, signal: Signal, req: Request) -> Response {
    let service = tower::service_fn(move |request: tonic::Request<Bytes>| {
        let sink = sink.clone();
        async move {
            match sink.handle(signal, request.get_ref()).await {
                Ok(()) => Ok(tonic::Response::new(Bytes::new())),
                Err(reply) => Err(grpc_status(reply)),
            }
        }
    });
    let mut grpc = tonic::server::Grpc::new(RawCodec)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .max_decoding_message_size(MAX_BODY);
    grpc.unary(service, req).await.map(axum::body::Body::new)
}

fn grpc_status(reply: Reply) -> tonic::Status {
    let message = format!("otlp-lb-tools sink: {}", reply.code());
    match reply {
        Reply::ResourceExhausted => tonic::Status::resource_exhausted(message),
        Reply::InvalidArgument => tonic::Status::invalid_argument(message),
        Reply::Ok | Reply::Unavailable | Reply::Hang => tonic::Status::unavailable(message),
    }
}

/// `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with `application/x-protobuf` bodies, gzip or not.
pub fn http_router(sink: Arc<Sink>) -> Router {
    let mut router = Router::new();
    for signal in Signal::ALL {
        let sink = sink.clone();
        router = router.route(
            signal.http_path(),
            post(move |headers: HeaderMap, body: Bytes| http_export(sink.clone(), signal, headers, body)),
        );
    }
    router.layer(DefaultBodyLimit::max(MAX_BODY))
}

async fn http_export(sink: Arc<Sink>, signal: Signal, headers: HeaderMap, body: Bytes) -> Response {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    if text(header::CONTENT_TYPE).contains("json") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "OTLP/JSON is not supported; send application/x-protobuf")
            .into_response();
    }
    let body = match text(header::CONTENT_ENCODING) {
        "" | "identity" => body,
        "gzip" => match gunzip(&body) {
            Ok(b) => b,
            Err(err) => return (StatusCode::BAD_REQUEST, format!("gzip: {err}")).into_response(),
        },
        other => return (StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("content-encoding {other}")).into_response(),
    };
    let status = match sink.handle(signal, &body).await {
        Ok(()) => StatusCode::OK,
        Err(Reply::ResourceExhausted) => StatusCode::TOO_MANY_REQUESTS,
        Err(Reply::InvalidArgument) => StatusCode::BAD_REQUEST,
        Err(Reply::Ok | Reply::Unavailable | Reply::Hang) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, [(header::CONTENT_TYPE, "application/x-protobuf")], Bytes::new()).into_response()
}

fn gunzip(body: &[u8]) -> std::io::Result<Bytes> {
    let mut out = Vec::with_capacity(body.len() * 4);
    flate2::read::GzDecoder::new(body).take(MAX_BODY as u64 + 1).read_to_end(&mut out)?;
    if out.len() > MAX_BODY {
        return Err(std::io::Error::other("decompressed body too large"));
    }
    Ok(Bytes::from(out))
}

/// The admin API.
pub fn admin_router(sink: Arc<Sink>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/report", get(report))
        .route("/reset", post(reset))
        .route("/mode", get(get_mode).post(set_mode))
        .with_state(sink)
}

async fn report(State(sink): State<Arc<Sink>>, uri: Uri) -> Response {
    let traces = uri.query().is_some_and(|q| q.split('&').any(|kv| kv == "traces=1" || kv == "traces=true"));
    let mut report = sink.lock().report(traces);
    report.insert("name".into(), json!(sink.name));
    report.insert("uptime_s".into(), json!(sink.started.elapsed().as_secs_f64()));
    report.insert("mode".into(), json!(sink.mode.get()));
    report.insert("track_ids".into(), json!(sink.opts.ids));
    axum::Json(Value::Object(report)).into_response()
}

async fn reset(State(sink): State<Arc<Sink>>) -> Response {
    sink.reset();
    axum::Json(json!({"reset": true})).into_response()
}

async fn get_mode(State(sink): State<Arc<Sink>>) -> Response {
    axum::Json(sink.mode.get()).into_response()
}

/// Any content type: the body must be a JSON `Mode`.
async fn set_mode(State(sink): State<Arc<Sink>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Mode>(&body) {
        Ok(mode) => {
            sink.mode.set(mode);
            tracing::info!(name = %sink.name, ?mode, "mode changed");
            axum::Json(mode).into_response()
        }
        Err(err) => (StatusCode::BAD_REQUEST, format!("invalid mode: {err}\n")).into_response(),
    }
}
