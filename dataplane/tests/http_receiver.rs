//! The OTLP/HTTP receiver: protobuf and JSON, gzip, and the status codes of the OTLP specification.

mod common;

use std::io::Write;

use common::backend::Backend;
use common::lb::{Lb, Opts};
use dataplane::fixtures as otlp;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("compress");
    enc.finish().expect("compress")
}

async fn post(lb: &Lb, path: &str, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(lb.http_url(path)).header("content-type", content_type).body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    req.send().await.expect("http request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_json_and_gzip_bodies_are_routed() {
    let backends = [Backend::start().await, Backend::start().await];
    let lb = Lb::start(&[backends[0].address(), backends[1].address()]);
    let pb = otlp::traces(0..10, 0..2, 2).encode_to_vec();
    let r = post(&lb, "/v1/traces", "application/x-protobuf", None, pb.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    assert_eq!(
        ExportTraceServiceResponse::decode(r.bytes().await.expect("body")).expect("response decodes"),
        ExportTraceServiceResponse::default()
    );
    let r = post(
        &lb,
        "/v1/traces",
        "application/x-protobuf",
        Some("gzip"),
        gzip(&otlp::traces(10..20, 0..2, 2).encode_to_vec()),
    )
    .await;
    assert_eq!(r.status(), 200);
    // OTLP/JSON: hex ids, lowerCamelCase, as an SDK sends it.
    let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-svc"}}]},
      "scopeSpans":[{"scope":{"name":"s"},"spans":[
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"a","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000"},
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","name":"b","startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
         "attributes":[{"key":"n","value":{"intValue":"42"}}]}]}]}]}"#;
    let r = post(&lb, "/v1/traces", "application/json", None, json.as_bytes().to_vec()).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = post(&lb, "/v1/traces", "application/json", Some("gzip"), gzip(json.as_bytes())).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let spans: Vec<_> = backends.iter().flat_map(|b| b.spans()).collect();
    assert_eq!(spans.len(), 20 + 20 + 4);
    let json_trace = hex_decode("5b8efff798038103d269b633813fc60c");
    let homes = backends.iter().filter(|b| b.spans().iter().any(|(t, _)| *t == json_trace)).count();
    assert_eq!(homes, 1, "the JSON trace's spans sit together");
    assert_eq!(backends.iter().flat_map(|b| b.spans()).filter(|(t, _)| *t == json_trace).count(), 4);
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_otlp_status_codes_and_the_server_stays_up() {
    let backend = Backend::start().await;
    let lb = Lb::start(&[backend.address()]);
    // Malformed protobuf: 400 with a google.rpc.Status naming the problem.
    let r = post(&lb, "/v1/traces", "application/x-protobuf", None, vec![0x0a, 0x7f, 0x01]).await;
    assert_eq!(r.status(), 400);
    let status = r.bytes().await.expect("body");
    assert!(String::from_utf8_lossy(&status).contains("malformed traces request"), "{status:?}");
    // Malformed JSON: 400 with a JSON status.
    let r = post(&lb, "/v1/logs", "application/json", None, b"{\"resourceLogs\": 7}".to_vec()).await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.expect("json status");
    assert_eq!(body["code"], 3);
    assert!(body["message"].as_str().is_some_and(|m| m.contains("invalid OTLP/JSON logs request")), "{body}");
    // Unsupported content type and encoding: 415.
    assert_eq!(post(&lb, "/v1/traces", "text/plain", None, b"hi".to_vec()).await.status(), 415);
    assert_eq!(post(&lb, "/v1/traces", "application/x-protobuf", Some("br"), b"hi".to_vec()).await.status(), 415);
    // Broken gzip: 400.
    assert_eq!(
        post(&lb, "/v1/traces", "application/x-protobuf", Some("gzip"), b"not gzip".to_vec()).await.status(),
        400
    );
    // Unknown path: 404; wrong method: 405.
    assert_eq!(post(&lb, "/v1/profiles", "application/x-protobuf", None, vec![]).await.status(), 404);
    assert_eq!(reqwest::get(lb.http_url("/v1/traces")).await.expect("get").status(), 405);
    // Malformed over gRPC: INVALID_ARGUMENT.
    let channel =
        tonic::transport::Endpoint::from_shared(lb.grpc_url()).expect("url").connect().await.expect("connect");
    let mut raw = tonic::client::Grpc::new(channel);
    raw.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
    let err = raw
        .unary(tonic::Request::new(bytes::Bytes::from_static(&[0x0a, 0x7f, 0x01])), path, dataplane::codec::RawCodec)
        .await
        .expect_err("malformed");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("malformed traces request"), "{}", err.message());
    // Still serving.
    let ok = post(&lb, "/v1/traces", "application/x-protobuf", None, otlp::traces(0..2, 0..1, 1).encode_to_vec()).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(backend.spans().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413() {
    let backend = Backend::start().await;
    let opts = Opts { http: ", max_request_body_size: 2048, max_decompressed_body_size: 8192", ..Opts::default() };
    let lb = Lb::start_with(&[backend.address()], opts);
    let big = otlp::traces(0..200, 0..5, 1).encode_to_vec();
    assert!(big.len() > 8192);
    assert_eq!(post(&lb, "/v1/traces", "application/x-protobuf", None, big.clone()).await.status(), 413);
    let mut repetitive = otlp::traces(0..1, 0..1, 1);
    repetitive.resource_spans[0].scope_spans[0].spans[0].name = "a".repeat(100_000);
    let bomb = gzip(&repetitive.encode_to_vec());
    assert!(bomb.len() < 2048, "compresses below the body limit: {}", bomb.len());
    assert_eq!(
        post(&lb, "/v1/traces", "application/x-protobuf", Some("gzip"), bomb).await.status(),
        413,
        "decompressed limit"
    );
    assert!(backend.spans().is_empty(), "nothing forwarded");
    let small = otlp::traces(0..2, 0..1, 1).encode_to_vec();
    assert_eq!(post(&lb, "/v1/traces", "application/x-protobuf", None, small).await.status(), 200);
}
