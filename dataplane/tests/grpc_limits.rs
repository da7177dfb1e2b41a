//! The gRPC receiver's size limits (`max_recv_msg_size_mib`) against a real client: a message over the limit is
//! refused from its length prefix, before it is buffered (OUT_OF_RANGE); a gzip bomb is refused once its
//! decompressed size passes the limit (RESOURCE_EXHAUSTED); neither reaches a backend, and the server keeps
//! serving. Also: the exporter's configured headers reach every backend with each part.

mod common;

use common::backend::Backend;
use common::lb::{Lb, Opts};
use dataplane::fixtures as otlp;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tonic::Code;
use tonic::codec::CompressionEncoding;

/// One span whose name is `bytes` zero bytes: compresses to almost nothing.
fn big_request(bytes: usize) -> ExportTraceServiceRequest {
    let mut req = otlp::traces(0..1, 0..1, 1);
    req.resource_spans[0].scope_spans[0].spans[0].name = "\0".repeat(bytes);
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_and_gzip_bombs_are_refused_and_the_server_stays_up() {
    let backend = Backend::start().await;
    let lb = Lb::start_with(&[backend.address()], Opts { grpc: ", max_recv_msg_size_mib: 1", ..Default::default() });
    let mut plain = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    let mut gzip =
        TraceServiceClient::connect(lb.grpc_url()).await.expect("connect").send_compressed(CompressionEncoding::Gzip);

    let err = plain.export(big_request(2 << 20)).await.expect_err("2 MiB over a 1 MiB limit");
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("too large"), "{err:?}");

    // 8 MiB of zeros gzip to a few KiB: the compressed frame is small, its content is not.
    let err = gzip.export(big_request(8 << 20)).await.expect_err("a gzip bomb");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("size limit"), "{err:?}");

    assert!(backend.spans().is_empty(), "nothing refused reached a backend");
    gzip.export(otlp::traces(0..5, 0..2, 1)).await.expect("a normal compressed request is still served");
    plain.export(big_request(512 << 10)).await.expect("under the limit");
    assert_eq!(backend.spans().len(), 11);
    assert_eq!(lb.get("/healthz").map(|(code, _)| code), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_headers_reach_every_backend() {
    let backends = [Backend::start().await, Backend::start().await, Backend::start().await];
    let addrs: Vec<String> = backends.iter().map(Backend::address).collect();
    let otlp = "timeout: 2s, compression: gzip, tls: {insecure: true}, headers: {X-Tenant: acme, x-scope: \"a b\"}";
    let lb = Lb::start_with(&addrs, Opts { otlp, ..Default::default() });
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    client.export(otlp::traces(0..60, 0..2, 3)).await.expect("accepted");
    let mut parts = 0;
    for b in &backends {
        for headers in b.state.trace_headers.lock().expect("lock").iter() {
            parts += 1;
            assert_eq!(headers.get("x-tenant").and_then(|v| v.to_str().ok()), Some("acme"), "{headers:?}");
            assert_eq!(headers.get("x-scope").and_then(|v| v.to_str().ok()), Some("a b"), "{headers:?}");
        }
    }
    assert!(parts >= 2, "60 traces over 3 backends: several parts, each with the headers ({parts})");
}
