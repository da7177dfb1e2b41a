//! Backend failures: only the failed parts are retried; a part that cannot be delivered fails the request with
//! UNAVAILABLE (never a silent success); permanent rejections come back as partial success; overload is refused
//! with RESOURCE_EXHAUSTED / 429 and Retry-After.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::backend::Backend;
use common::lb::{Lb, Opts};
use dataplane::fixtures as otlp;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;

const FAST_RETRY: &str = "  retry_on_failure: {initial_interval: 20ms, max_interval: 100ms, max_elapsed_time: 1s}\n";
const NO_FAILOVER: &str = "  retry_on_failure: {initial_interval: 20ms, max_interval: 100ms, max_elapsed_time: 1s}\n  health_check: {enabled: false}\n";
const FAST_FAILOVER: &str = "  retry_on_failure: {initial_interval: 20ms, max_interval: 100ms, max_elapsed_time: 3s}\n  health_check: {consecutive_failures: 2, ejection_time: 200ms, max_ejection_time: 1s}\n";

fn unique(spans: &[(Vec<u8>, String)]) -> usize {
    spans.iter().map(|s| &s.1).collect::<BTreeSet<_>>().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_briefly_failing_backend_gets_only_its_part_again() {
    let backends = [Backend::start().await, Backend::start().await, Backend::start().await];
    let lb = Lb::start_with(
        &backends.iter().map(Backend::address).collect::<Vec<_>>(),
        Opts { lb: FAST_RETRY, ..Opts::default() },
    );
    backends[1].state.fail_next.store(2, Ordering::SeqCst);
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    client.export(otlp::traces(0..90, 0..4, 3)).await.expect("accepted after the backend recovers");
    let all: Vec<_> = backends.iter().flat_map(|b| b.spans()).collect();
    assert_eq!(all.len(), 360, "every span delivered exactly once");
    assert_eq!(unique(&all), 360);
    assert_eq!(backends[1].state.failed.load(Ordering::SeqCst), 2);
    for b in &backends {
        assert_eq!(b.requests(), 1, "each backend accepted one request: the healthy ones were not sent the data again");
    }
    assert!(lb.metrics().contains(&format!(
        "otelcol_loadbalancer_backend_outcome{{endpoint=\"{}\",success=\"false\"}} 2",
        backends[1].address()
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_failover_a_backend_that_stays_down_fails_the_request_with_unavailable() {
    let backends = [Backend::start().await, Backend::start().await];
    let lb = Lb::start_with(
        &backends.iter().map(Backend::address).collect::<Vec<_>>(),
        Opts { lb: NO_FAILOVER, ..Opts::default() },
    );
    backends[0].state.fail_code.store(tonic::Code::Unavailable as u32, Ordering::SeqCst);
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    let started = Instant::now();
    let err = client.export(otlp::traces(0..50, 0..2, 2)).await.expect_err("must not succeed silently");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(4), "gave up within max_elapsed_time: {:?}", started.elapsed());
    assert!(backends[0].state.failed.load(Ordering::SeqCst) >= 2, "retried");
    assert_eq!(backends[1].requests(), 1, "the healthy part was delivered once and not resent");
    assert!(lb.metric("otelcol_receiver_refused_spans{receiver=\"otlp\",transport=\"grpc\"}") == 100.0);
    // The client retries once the backend is back: the request now succeeds.
    backends[0].state.fail_code.store(0, Ordering::SeqCst);
    client.export(otlp::traces(0..50, 0..2, 2)).await.expect("accepted once the backend is back");
    let spans0: BTreeSet<_> = backends[0].spans().into_iter().map(|s| s.1).collect();
    assert!(!spans0.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_backend_is_an_error_over_http_too() {
    let backend = Backend::start().await;
    let dead = format!("127.0.0.1:{}", common::lb::free_port());
    let lb = Lb::start_with(&[backend.address(), dead], Opts { lb: NO_FAILOVER, ..Opts::default() });
    let body = otlp::traces(0..40, 0..1, 1).encode_to_vec();
    let r = reqwest::Client::new()
        .post(lb.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_rejections_come_back_as_partial_success() {
    let backends = [Backend::start().await, Backend::start().await];
    let lb = Lb::start(&backends.iter().map(Backend::address).collect::<Vec<_>>());
    backends[0].state.fail_code.store(tonic::Code::InvalidArgument as u32, Ordering::SeqCst);
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    let reply = client.export(otlp::traces(0..60, 0..2, 2)).await.expect("partial success is a success").into_inner();
    let partial = reply.partial_success.expect("partial success reported");
    let delivered = backends[1].spans().len() as i64;
    assert_eq!(partial.rejected_spans + delivered, 120, "rejected + delivered = sent");
    assert!(partial.rejected_spans > 0 && delivered > 0);
    assert!(partial.error_message.contains("backend told to fail"), "{}", partial.error_message);
    assert_eq!(backends[0].state.failed.load(Ordering::SeqCst), 1, "a permanent error is not retried");

    // The same over OTLP/HTTP: 200 with the partial success in the reply's encoding.
    let req = otlp::traces(100..160, 0..2, 2);
    let json = serde_json::to_vec(&req).expect("OTLP/JSON");
    for (content_type, body) in [("application/x-protobuf", req.encode_to_vec()), ("application/json", json)] {
        let r = reqwest::Client::new()
            .post(lb.http_url("/v1/traces"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{content_type}: partial success is a success");
        let reply = r.bytes().await.expect("body");
        let (rejected, message) = if content_type == "application/json" {
            let v: serde_json::Value = serde_json::from_slice(&reply).expect("a JSON reply");
            let p = &v["partialSuccess"];
            (
                p["rejectedSpans"].as_str().and_then(|n| n.parse::<i64>().ok()).unwrap_or(0),
                p["errorMessage"].as_str().unwrap_or_default().to_string(),
            )
        } else {
            let p = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(reply)
                .expect("a protobuf reply")
                .partial_success
                .expect("partial success");
            (p.rejected_spans, p.error_message)
        };
        assert!(rejected > 0 && rejected < 120, "{content_type}: {rejected} of 120 spans rejected");
        assert!(message.contains("backend told to fail"), "{content_type}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_go_to_their_backends_concurrently() {
    // Each backend answers after 700 ms: one after the other, three parts would take 2.1 s.
    let backends = [Backend::start().await, Backend::start().await, Backend::start().await];
    for b in &backends {
        b.state.delay_ms.store(700, Ordering::SeqCst);
    }
    let lb = Lb::start(&backends.iter().map(Backend::address).collect::<Vec<_>>());
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    let started = Instant::now();
    client.export(otlp::traces(0..60, 0..2, 3)).await.expect("accepted");
    let took = started.elapsed();
    assert!(backends.iter().all(|b| b.requests() == 1), "one part per backend");
    assert!(took < Duration::from_millis(1400), "three 700 ms parts took {took:?}: sent one after another");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_with_resource_exhausted_and_429() {
    let backend = Backend::start().await;
    let lb = Lb::start_with(
        &[backend.address()],
        Opts { top: "limits: {memory_limit_mib: 1}\n", grpc: ", max_recv_msg_size_mib: 4", ..Opts::default() },
    );
    let mut big = otlp::traces(0..1, 0..1, 1);
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(700 * 1024);
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    let err = client.export(big.clone()).await.expect_err("over the memory budget");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(!err.details().is_empty(), "carries RetryInfo so that OTLP clients retry");
    let r = reqwest::Client::new()
        .post(lb.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(big.encode_to_vec())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    client.export(otlp::traces(0..5, 0..1, 1)).await.expect("small requests still pass");
    assert_eq!(backend.spans().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_backend_is_ejected_its_keys_fail_over_and_come_back() {
    let backends = [Backend::start().await, Backend::start().await, Backend::start().await];
    let lb = Lb::start_with(
        &backends.iter().map(Backend::address).collect::<Vec<_>>(),
        Opts { lb: FAST_FAILOVER, ..Opts::default() },
    );
    backends[0].state.fail_code.store(tonic::Code::Unavailable as u32, Ordering::SeqCst);
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    for batch in 0..10u64 {
        client.export(otlp::traces(batch * 30..batch * 30 + 30, 0..2, 3)).await.expect("0 refused: keys fail over");
    }
    let all: Vec<_> = backends.iter().flat_map(|b| b.spans()).collect();
    assert_eq!(all.len(), 600, "0 lost");
    assert_eq!(unique(&all), 600, "0 duplicated");
    assert!(backends[0].spans().is_empty());
    let health0 = format!("otelcol_loadbalancer_backend_health{{endpoint=\"{}\"}}", backends[0].address());
    assert_eq!(lb.metric(&health0), 0.0, "ejected");
    assert!(lb.logs().contains("backend ejected"));
    // Recovery: the probe readmits it and its keys come back.
    backends[0].state.fail_code.store(0, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while lb.metric(&health0) != 1.0 {
        assert!(Instant::now() < deadline, "not readmitted:\n{}", lb.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(lb.logs().contains("backend readmitted"));
    client.export(otlp::traces(1000..1090, 0..2, 3)).await.expect("accepted");
    assert!(!backends[0].spans().is_empty(), "keys came back to the readmitted backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_is_deterministic_next_in_ring_order() {
    // Two load balancers with the same pool and the same ejected backend send each key to the same place.
    let backends = [Backend::start().await, Backend::start().await, Backend::start().await, Backend::start().await];
    let addrs: Vec<String> = backends.iter().map(Backend::address).collect();
    let a = Lb::start_with(&addrs, Opts { lb: FAST_FAILOVER, ..Opts::default() });
    let b = Lb::start_with(&addrs, Opts { lb: FAST_FAILOVER, ..Opts::default() });
    backends[1].state.fail_code.store(tonic::Code::Unavailable as u32, Ordering::SeqCst);
    let mut ca = TraceServiceClient::connect(a.grpc_url()).await.expect("connect");
    let mut cb = TraceServiceClient::connect(b.grpc_url()).await.expect("connect");
    // Warm up until both have ejected the backend.
    ca.export(otlp::traces(10_000..10_040, 0..1, 1)).await.expect("accepted");
    cb.export(otlp::traces(10_000..10_040, 0..1, 1)).await.expect("accepted");
    // The same traces through both: spans 0..2 via a, spans 2..4 via b.
    ca.export(otlp::traces(0..200, 0..2, 2)).await.expect("accepted");
    cb.export(otlp::traces(0..200, 2..4, 2)).await.expect("accepted");
    let mut homes: std::collections::BTreeMap<Vec<u8>, BTreeSet<usize>> = Default::default();
    for (i, be) in backends.iter().enumerate() {
        for (t, name) in be.spans() {
            let trace: u64 =
                name[1..].split('-').next().and_then(|t| t.parse().ok()).expect("span name t<trace>-s<span>");
            if trace < 10_000 {
                homes.entry(t).or_default().insert(i);
            }
        }
    }
    assert_eq!(homes.len(), 200);
    assert!(homes.values().all(|h| h.len() == 1), "both replicas fail over each key to the same backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_down_fails_fast_and_recovers() {
    let backends = [Backend::start().await, Backend::start().await];
    let lb = Lb::start_with(
        &backends.iter().map(Backend::address).collect::<Vec<_>>(),
        Opts { lb: FAST_FAILOVER, ..Opts::default() },
    );
    for b in &backends {
        b.state.fail_code.store(tonic::Code::Unavailable as u32, Ordering::SeqCst);
    }
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    let started = Instant::now();
    let err = client.export(otlp::traces(0..20, 0..1, 1)).await.expect_err("no false success");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(5), "within the configured time: {:?}", started.elapsed());
    // Once everything is ejected, requests are refused at once.
    let started = Instant::now();
    let err = client.export(otlp::traces(0..20, 0..1, 1)).await.expect_err("no false success");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(started.elapsed() < Duration::from_millis(500), "refused fast: {:?}", started.elapsed());
    for b in &backends {
        b.state.fail_code.store(0, Ordering::SeqCst);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match client.export(otlp::traces(100..120, 0..1, 1)).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "did not recover: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        backends.iter().map(|b| b.spans().len()).sum::<usize>(),
        20,
        "data flows again; nothing from the refused requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sending_queue_refuses_parts_by_its_sizer_and_they_are_retried() {
    // One request at a time to the backend, at most 150 spans waiting (sizer: items). Three requests of 100 spans:
    // the first is sent, the second waits (100 queued), the third does not fit (100 + 100 > 150): it is refused
    // with RESOURCE_EXHAUSTED, retried, and delivered once room is made. Nothing lost, nothing twice.
    let backend = Backend::start().await;
    backend.state.delay_ms.store(800, Ordering::SeqCst);
    let otlp = "timeout: 5s, compression: gzip, tls: {insecure: true}, sending_queue: {num_consumers: 1, queue_size: 150, sizer: items}";
    let lb = Lb::start_with(
        &[backend.address()],
        Opts {
            otlp,
            lb: "  retry_on_failure: {initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 10s}\n",
            ..Opts::default()
        },
    );
    let queue_size = format!("otelcol_exporter_queue_size{{endpoint=\"{}\"}}", backend.address());
    let capacity = format!("otelcol_exporter_queue_capacity{{endpoint=\"{}\"}}", backend.address());
    assert_eq!(lb.metric(&capacity), 150.0);
    let mut sent = Vec::new();
    for r in 0..3u64 {
        let url = lb.grpc_url();
        sent.push(tokio::spawn(async move {
            let mut client = TraceServiceClient::connect(url).await.expect("connect");
            client.export(otlp::traces(r * 10..r * 10 + 10, 0..10, 1)).await
        }));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(lb.metric(&queue_size), 100.0, "the second request's 100 spans wait; the third's do not fit");
    for s in sent {
        s.await.expect("join").expect("every request is delivered in the end");
    }
    let spans = backend.spans();
    assert_eq!((spans.len(), unique(&spans)), (300, 300), "every span once");
    assert!(lb.logs().contains("ResourceExhausted"), "the third part was refused by the full queue:\n{}", lb.logs());
    assert_eq!(lb.metric(&queue_size), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_waiting_together_leave_as_one_request_and_share_its_outcome() {
    // One request at a time to the backend (num_consumers: 1), which answers after 500 ms. Request 0 takes the
    // slot; requests 1–5 wait and then leave together as one request. Every client is answered, every span once.
    let backend = Backend::start().await;
    backend.state.delay_ms.store(500, Ordering::SeqCst);
    let otlp = "timeout: 5s, compression: gzip, tls: {insecure: true}, sending_queue: {num_consumers: 1}";
    let lb = Lb::start_with(&[backend.address()], Opts { otlp, ..Opts::default() });
    let send = |r: u64, spans: u64| {
        let url = lb.grpc_url();
        tokio::spawn(async move {
            let mut client = TraceServiceClient::connect(url).await.expect("connect");
            client.export(otlp::traces(r * 10..r * 10 + 10, 0..spans, 1)).await.map(|reply| reply.into_inner())
        })
    };
    let first = send(0, 2);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let waiting: Vec<_> = (1..6).map(|r| send(r, 2)).collect();
    first.await.expect("join").expect("request 0 delivered");
    for w in waiting {
        w.await.expect("join").expect("a coalesced request is acknowledged");
    }
    let spans = backend.spans();
    assert_eq!((spans.len(), unique(&spans)), (120, 120), "every span once");
    assert_eq!(backend.requests(), 2, "request 0, then requests 1-5 as one");
    let coalesced = format!("otlp_lb_exporter_coalesced_parts{{endpoint=\"{}\"}}", backend.address());
    assert_eq!(lb.metric(&coalesced), 5.0);

    // A permanent rejection: request 10 is in flight when requests 11-13 arrive; they wait, leave as one request
    // and share its outcome: each fails with the backend's error, and none is sent again.
    backend.state.fail_code.store(tonic::Code::InvalidArgument as u32, Ordering::SeqCst);
    let first = send(10, 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let waiting: Vec<_> = (11..14).map(|r| send(r, r - 10)).collect();
    for (r, w) in (10..14u64).zip(std::iter::once(first).chain(waiting)) {
        let err = w.await.expect("join").expect_err("a request rejected whole fails");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "request {r}: {err:?}");
        assert!(err.message().contains("backend told to fail"), "{}", err.message());
    }
    assert_eq!(backend.state.failed.load(Ordering::SeqCst), 2, "request 10, then requests 11-13 as one; no retry");
    assert_eq!(lb.metric(&coalesced), 8.0);
}
