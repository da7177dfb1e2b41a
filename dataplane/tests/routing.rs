//! Routing through the real `otlp-lb` binary to real gRPC backends on loopback: every span of a trace on exactly
//! one backend, every item exactly once, a service's metrics together, logs with their trace's spans.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::backend::Backend;
use common::lb::Lb;
use dataplane::fixtures as otlp;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tonic::codec::CompressionEncoding;

async fn backends(n: usize) -> Vec<Backend> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Backend::start().await);
    }
    out
}

fn addresses(b: &[Backend]) -> Vec<String> {
    b.iter().map(Backend::address).collect()
}

/// trace id → the backends that received spans of it, and the total span count.
fn trace_placement(backends: &[Backend]) -> (BTreeMap<Vec<u8>, BTreeSet<usize>>, usize, BTreeSet<String>) {
    let mut placement: BTreeMap<Vec<u8>, BTreeSet<usize>> = BTreeMap::new();
    let mut names = BTreeSet::new();
    let mut total = 0;
    for (i, b) in backends.iter().enumerate() {
        for (trace, name) in b.spans() {
            placement.entry(trace).or_default().insert(i);
            names.insert(name);
            total += 1;
        }
    }
    (placement, total, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_a_trace_meet_on_one_backend_across_requests() {
    let backends = backends(4).await;
    let lb = Lb::start(&addresses(&backends));
    let mut client =
        TraceServiceClient::connect(lb.grpc_url()).await.expect("connect").send_compressed(CompressionEncoding::Gzip);
    // 200 traces × 6 spans, each trace's spans sent in three different requests, 40 traces per request.
    for part in 0..3u64 {
        for batch in 0..5u64 {
            let req = otlp::traces(batch * 40..batch * 40 + 40, part * 2..part * 2 + 2, 5);
            client.export(req).await.expect("export accepted");
        }
    }
    let (placement, total, names) = trace_placement(&backends);
    assert_eq!(placement.len(), 200, "every trace arrived");
    assert_eq!(total, 1200, "every span exactly once (no loss, no duplicate)");
    assert_eq!(names.len(), 1200, "no span delivered twice");
    let split: Vec<_> = placement.iter().filter(|(_, b)| b.len() > 1).collect();
    assert!(split.is_empty(), "traces split across backends: {}", split.len());
    for (i, b) in backends.iter().enumerate() {
        let traces = placement.values().filter(|s| s.contains(&i)).count();
        assert!((20..=80).contains(&traces), "backend {i} got {traces} of 200 traces: uneven");
        assert!(b.requests() <= 15, "one request per backend per incoming request at most");
    }
    assert_eq!(lb.metric("otelcol_receiver_accepted_spans{receiver=\"otlp\",transport=\"grpc\"}"), 1200.0);
    assert_eq!(lb.metric("otelcol_loadbalancer_num_backends{resolver=\"static\"}"), 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_a_service_stay_together() {
    let backends = backends(3).await;
    let lb = Lb::start(&addresses(&backends));
    let mut client = MetricsServiceClient::connect(lb.grpc_url()).await.expect("connect");
    for _ in 0..4 {
        client.export(otlp::metrics(12, 5)).await.expect("accepted");
    }
    let mut service_backends: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let mut points = 0;
    for (i, b) in backends.iter().enumerate() {
        let r = b.state.received.lock().expect("lock");
        for rm in r.metrics.iter().flat_map(|m| &m.resource_metrics) {
            let svc = format!("{:?}", rm.resource.as_ref().map(|r| &r.attributes));
            service_backends.entry(svc).or_default().insert(i);
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                if let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Gauge(g)) = &m.data {
                    points += g.data_points.len();
                }
            }
        }
    }
    assert_eq!(points, 4 * 12 * 5, "every data point exactly once");
    assert_eq!(service_backends.len(), 12);
    assert!(service_backends.values().all(|b| b.len() == 1), "a service's metrics on one backend");
    let used: BTreeSet<usize> = service_backends.values().flatten().copied().collect();
    assert!(used.len() > 1, "12 services spread over backends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_sit_with_their_traces_spans() {
    let backends = backends(3).await;
    let lb = Lb::start(&addresses(&backends));
    let mut traces = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    traces.export(otlp::traces(0..60, 0..3, 3)).await.expect("spans accepted");
    let mut logs = LogsServiceClient::connect(lb.grpc_url()).await.expect("connect");
    logs.export(otlp::logs(0..60, 7)).await.expect("logs accepted");
    let mut span_home = BTreeMap::new();
    for (i, b) in backends.iter().enumerate() {
        for (t, _) in b.spans() {
            span_home.insert(t, i);
        }
    }
    let mut untraced_homes = BTreeSet::new();
    let mut records = 0;
    for (i, b) in backends.iter().enumerate() {
        let r = b.state.received.lock().expect("lock");
        for rec in
            r.logs.iter().flat_map(|l| &l.resource_logs).flat_map(|rl| &rl.scope_logs).flat_map(|s| &s.log_records)
        {
            records += 1;
            if rec.trace_id.is_empty() {
                untraced_homes.insert(i);
            } else {
                assert_eq!(span_home.get(&rec.trace_id), Some(&i), "a log record sits with its trace's spans");
            }
        }
    }
    assert_eq!(records, 67);
    assert_eq!(untraced_homes.len(), 1, "records without a trace id go by service: one backend");
}
