//! The exchange gate on the request path: while the replicas exchange the traces they hold, a request whose
//! traces this replica already knows goes on at once, and one with a trace it knows nothing of waits until every
//! peer's table is in, or until the exchange's bound. Real pipeline and pool, real OTLP/gRPC backends.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::backend::Backend;
use dataplane::config::{ClientTls, HealthCheck, OtlpExporter, Retry};
use dataplane::metrics::Metrics;
use dataplane::pipeline::Pipeline;
use dataplane::pool::PoolManager;
use dataplane::route::affinity::Affinity;
use dataplane::route::key::RoutingPolicy;
use dataplane::route::ring::Member;
use dataplane::route::split::split;
use dataplane::signal::Signal;
use prost::Message;

fn request(trace: u64) -> Bytes {
    Bytes::from(dataplane::fixtures::traces(trace..trace + 1, 0..1, 1).encode_to_vec())
}

/// The routing key of `trace`, as the splitter computes it.
fn key_of(trace: u64) -> u64 {
    let mut key = 0;
    split(Signal::Traces, &request(trace), &RoutingPolicy::default(), |k| {
        key = k;
        0
    })
    .expect("a valid request");
    key
}

/// Exports one request of `trace` in the background; its time to complete.
fn export(pipeline: &Arc<Pipeline>, trace: u64) -> tokio::task::JoinHandle<Duration> {
    let pipeline = Arc::clone(pipeline);
    tokio::spawn(async move {
        let started = Instant::now();
        pipeline.export(Signal::Traces, "grpc", request(trace), None).await.expect("delivered");
        started.elapsed()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_requests_with_unknown_traces_wait_for_the_peers_tables() {
    let backends = [Backend::start().await, Backend::start().await];
    let members = backends.iter().map(|b| Member { address: b.address(), weight: 1 }).collect();
    let plaintext =
        OtlpExporter { tls: ClientTls { insecure: true, ..ClientTls::default() }, ..OtlpExporter::default() };
    let window = Duration::from_secs(30);
    let (manager, pools) = PoolManager::new(plaintext, HealthCheck::default(), Metrics::new(), "static", window);
    manager.apply(members).await.expect("valid pool");
    let affinity = Arc::new(Affinity::new(window, 10_000));
    let pipeline = Arc::new(Pipeline::new(
        pools,
        RoutingPolicy::default(),
        Arc::clone(&affinity),
        Retry::default(),
        64,
        Metrics::new(),
    ));
    export(&pipeline, 1).await.expect("trace 1 routed here");

    let held = affinity.peers();
    held.close(Instant::now() + Duration::from_secs(30));
    let known = export(&pipeline, 1).await.expect("trace 1 again");
    assert!(known < Duration::from_secs(5), "a known trace goes on during the exchange: {known:?}");
    held.adopt([(key_of(2), Arc::from(backends[0].address().as_str()))]);
    let told = export(&pipeline, 2).await.expect("trace 2");
    assert!(told < Duration::from_secs(5), "a trace a peer told of goes on: {told:?}");
    assert!(
        backends[0].spans().iter().any(|(id, _)| *id == dataplane::fixtures::trace_id(2)),
        "to the backend the peer said"
    );
    let unknown = export(&pipeline, 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!unknown.is_finished(), "a trace nobody knows waits for the peers' tables");
    held.open();
    let waited = unknown.await.expect("released");
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(5), "{waited:?}");

    // A peer that never answers holds a new trace for the exchange's bound, no longer.
    held.close(Instant::now() + Duration::from_millis(500));
    let bounded = export(&pipeline, 4).await.expect("trace 4");
    assert!(bounded >= Duration::from_millis(450) && bounded < Duration::from_secs(5), "{bounded:?}");
    let spans = backends.iter().map(|b| b.spans().len()).sum::<usize>();
    assert_eq!(spans, 5, "every request delivered");
}
