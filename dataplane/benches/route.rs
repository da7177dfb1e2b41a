//! Routing micro-benchmarks: ring lookup, and the splitter on loadgen-shaped requests over 4 backends.
//!
//! `cargo bench -p dataplane --bench route` (`make bench` runs it with short warm-up and measurement times).
//! Throughput is per element: per lookup, per span, per data point — criterion's `time` divided by the
//! element count is the cost per item (bench/macro.py reads `target/criterion/*/new/estimates.json`).

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane::fixtures::mix;
use dataplane::route::affinity::Affinity;
use dataplane::route::key::{RoutingKey, RoutingPolicy};
use dataplane::route::owners::Owners;
use dataplane::route::split::split;
use dataplane::signal::Signal;
use prost::Message;

mod common;

fn ring_lookup(c: &mut Criterion) {
    let ring = common::ring(common::BACKENDS);
    let keys: Vec<u64> = (0..4096u64).map(mix).collect();
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("lookup", |b| {
        b.iter(|| {
            let mut acc = 0usize;
            for k in &keys {
                acc = acc.wrapping_add(ring.lookup(black_box(*k)));
            }
            acc
        })
    });
    // Every key new, as at saturation where each trace id is seen once per request: a lookup lands anywhere in
    // the 4 MiB table.
    let mut next = 0u64;
    g.bench_function("lookup_new_key", |b| {
        b.iter(|| {
            let mut acc = 0usize;
            for _ in 0..keys.len() {
                acc = acc.wrapping_add(ring.lookup(mix(next)));
                next += 1;
            }
            acc
        })
    });
    g.finish();
}

fn split_traces(c: &mut Criterion) {
    let ring = common::ring(common::BACKENDS);
    let policy = RoutingPolicy::default();
    let body = Bytes::from(common::traces_request(1).encode_to_vec());
    let check = split(Signal::Traces, &body, &policy, |h| ring.lookup(h)).expect("split");
    assert_eq!(check.items, u64::from(common::SPANS));
    assert!(check.parts.len() > 1, "the request must go to several backends");

    // 256 distinct requests in rotation (~6 MiB, more than the caches hold), as requests arriving from the network.
    let bodies: Vec<Bytes> = (0..256).map(|s| Bytes::from(common::traces_request(s + 10).encode_to_vec())).collect();
    let mut g = c.benchmark_group("split");
    g.throughput(Throughput::Elements(u64::from(common::SPANS)));
    let mut next = 0usize;
    g.bench_function("traces_by_traceid", |b| {
        b.iter(|| {
            next = (next + 1) % bodies.len();
            split(Signal::Traces, black_box(&bodies[next]), &policy, |h| ring.lookup(h)).expect("split")
        })
    });
    // As the pipeline calls it: trace affinity consulted once per trace key of a request, the answers remembered
    // for the request (`Owners`). The affinity table then holds the 2560 keys of the rotation (lookups hit; inserts
    // are not measured).
    let affinity = Affinity::new(Duration::from_secs(30), 1_000_000);
    let owner = |key: u64, now: u64| {
        black_box(affinity.first_routed(key, 1, now));
        ring.lookup(key)
    };
    g.bench_function("traces_by_traceid_with_affinity", |b| {
        b.iter(|| {
            next = (next + 1) % bodies.len();
            let now = affinity.now_ms();
            let mut owners = Owners::default();
            split(Signal::Traces, black_box(&bodies[next]), &policy, |key| owners.get(key, |k| owner(k, now)))
                .expect("split")
        })
    });
    // With the peer exchange (`peers:`) the pool also asks what peers told of each key: an empty table in steady
    // state, and after a pool change a table of the traces the peers held (here 500,000, none of these keys).
    for (name, told) in
        [("traces_by_traceid_with_affinity_and_peers", 0u64), ("traces_by_traceid_after_a_peer_exchange", 500_000)]
    {
        let peers = affinity.peers();
        peers.adopt((0..told).map(|k| (mix(k ^ 0x5555_5555), std::sync::Arc::from("10.0.0.1:4317"))));
        g.bench_function(name, |b| {
            b.iter(|| {
                next = (next + 1) % bodies.len();
                let now = affinity.now_ms();
                let mut owners = Owners::default();
                split(Signal::Traces, black_box(&bodies[next]), &policy, |key| {
                    owners.get(key, |k| {
                        let told = affinity.peers().owner(k);
                        owner(k, now) + usize::from(black_box(told).is_some())
                    })
                })
                .expect("split")
            })
        });
    }
    // The same with only the last key's answer remembered, for comparison with `Owners`.
    g.bench_function("traces_by_traceid_with_affinity_last_key", |b| {
        b.iter(|| {
            next = (next + 1) % bodies.len();
            let now = affinity.now_ms();
            let mut last: Option<(u64, usize)> = None;
            split(Signal::Traces, black_box(&bodies[next]), &policy, |key| match last {
                Some((k, o)) if k == key => o,
                _ => {
                    let o = owner(key, now);
                    last = Some((key, o));
                    o
                }
            })
            .expect("split")
        })
    });
    g.finish();
}

fn split_metrics(c: &mut Criterion) {
    let ring = common::ring(common::BACKENDS);
    let body = Bytes::from(common::metrics_request().encode_to_vec());
    let mut g = c.benchmark_group("split");
    g.throughput(Throughput::Elements(u64::from(common::POINTS)));
    for (name, key) in [("metrics_by_streamid", RoutingKey::StreamId), ("metrics_by_service", RoutingKey::Service)] {
        let policy = RoutingPolicy { metrics: key, ..RoutingPolicy::default() };
        let check = split(Signal::Metrics, &body, &policy, |h| ring.lookup(h)).expect("split");
        assert_eq!(check.items, u64::from(common::POINTS));
        g.bench_function(name, |b| {
            b.iter(|| split(Signal::Metrics, black_box(&body), &policy, |h| ring.lookup(h)).expect("split"))
        });
    }
    g.finish();
}

/// The trace-affinity table as a busy balancer uses it: every trace key is new (a lookup in the previous
/// generation that misses, an insert into the current one), the table holds the default million keys, and full
/// generations rotate as they do under load. Keys per batch: 1,000.
fn affinity_new_traces(c: &mut Criterion) {
    const BATCH: u64 = 1000;
    let affinity = Affinity::new(Duration::from_secs(3600), 1_000_000);
    let mut next = 0u64;
    // Fill both generations first: the steady state of a saturated balancer.
    for _ in 0..1_500_000 {
        affinity.first_routed(mix(next), 1, 0);
        next += 1;
    }
    let mut g = c.benchmark_group("affinity");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("first_seen_new_trace", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                black_box(affinity.first_routed(mix(next), 1, 0));
                next += 1;
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = ring_lookup, split_traces, split_metrics, affinity_new_traces
}
criterion_main!(benches);
