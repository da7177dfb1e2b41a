//! Trace affinity at the moment of a pool change: requests are split by the real pipeline and pool while the
//! pool changes many times under a high rate of new traces; then a second span of every trace is routed. A trace
//! whose first request was split just before or just after a change must keep the backend it was first sent
//! to: no trace may reach two backends.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dataplane::config::{ClientTls, HealthCheck, OtlpExporter, Retry};
use dataplane::metrics::Metrics;
use dataplane::pipeline::Pipeline;
use dataplane::pool::PoolManager;
use dataplane::route::affinity::Affinity;
use dataplane::route::key::RoutingPolicy;
use dataplane::route::ring::Member;
use dataplane::signal::Signal;
use prost::Message;

/// Pool changes: 3 backends, then 4 and 3 in turn, ending with 4 (so every backend a trace met is in the final
/// pool, and only the moment of each change is under test).
const CHANGES: usize = 41;
/// Threads sending new traces during the changes, and then their second spans.
const ROUTERS: u64 = 2;
/// Bound on the traces one router starts, whatever the speed of the machine.
const MAX_TRACES: u64 = 4_000_000;
/// Time between changes: the ring is in use for a while, as between real pool changes.
const BETWEEN_CHANGES: Duration = Duration::from_millis(10);

fn address(i: usize) -> String {
    format!("127.0.0.{i}:4317")
}

fn members(n: usize) -> Vec<Member> {
    (1..=n).map(|i| Member { address: address(i), weight: 1 }).collect()
}

/// Routes one request holding span `span` of trace `trace` as the pipeline does: the number of the backend it
/// goes to.
fn route(pipeline: &Pipeline, trace: u64, span: u64) -> u8 {
    let body = Bytes::from(dataplane::fixtures::traces(trace..trace + 1, span..span + 1, 1).encode_to_vec());
    let pool = pipeline.pools().borrow().clone();
    let (pool, split) = pipeline.route(Signal::Traces, pool, &body).expect("a valid request");
    assert_eq!(split.parts.len(), 1, "one span goes to one backend");
    let to = &pool.backends[split.parts[0].backend].address;
    (1..=4).find(|i| *to == address(*i as usize)).expect("one of the four backends")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_trace_splits_across_pool_changes_under_many_new_traces() {
    let window = Duration::from_secs(120);
    let plaintext =
        OtlpExporter { tls: ClientTls { insecure: true, ..ClientTls::default() }, ..OtlpExporter::default() };
    let (manager, pools) = PoolManager::new(plaintext, HealthCheck::default(), Metrics::new(), "static", window);
    manager.apply(members(3)).await.expect("valid pool");
    let affinity = Arc::new(Affinity::new(window, 16 * MAX_TRACES as usize));
    let pipeline =
        Arc::new(Pipeline::new(pools, RoutingPolicy::default(), affinity, Retry::default(), 64, Metrics::new()));
    let done = Arc::new(AtomicBool::new(false));
    let routers: Vec<_> = (0..ROUTERS)
        .map(|r| {
            let (pipeline, done) = (Arc::clone(&pipeline), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut first = Vec::new();
                let mut n = 0;
                while !done.load(Ordering::Relaxed) && n < MAX_TRACES {
                    first.push(route(&pipeline, n * ROUTERS + r, 0));
                    n += 1;
                }
                first
            })
        })
        .collect();
    let started = Instant::now();
    for i in 1..=CHANGES {
        tokio::time::sleep(BETWEEN_CHANGES).await;
        manager.apply(members(if i % 2 == 1 { 4 } else { 3 })).await.expect("valid pool").expect("a change");
    }
    tokio::time::sleep(BETWEEN_CHANGES).await;
    done.store(true, Ordering::Relaxed);
    let changing = started.elapsed();
    let first: Vec<Vec<u8>> = routers.into_iter().map(|r| r.join().expect("router")).collect();
    let traces: usize = first.iter().map(Vec::len).sum();
    assert!(
        first.iter().all(|f| (f.len() as u64) < MAX_TRACES),
        "the routers must run through every change: {traces} traces"
    );
    let pool = pipeline.pools().borrow().clone();
    assert_eq!((pool.version, pool.backends.len()), (CHANGES as u64 + 1, 4));

    // The second span of every trace, once the pool has settled.
    let seconds: Vec<Vec<u8>> = (0..ROUTERS)
        .map(|r| {
            let pipeline = Arc::clone(&pipeline);
            let n = first[r as usize].len() as u64;
            std::thread::spawn(move || (0..n).map(|i| route(&pipeline, i * ROUTERS + r, 1)).collect::<Vec<_>>())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("router"))
        .collect();
    let split = first.iter().flatten().zip(seconds.iter().flatten()).filter(|(a, b)| a != b).count();
    let on_fourth = first.iter().flatten().filter(|b| **b == 4).count();
    println!(
        "swap race: {traces} traces over {CHANGES} pool changes in {} ms, {on_fourth} first sent to the backend that \
         came and went; split={split}",
        changing.as_millis()
    );
    assert!(on_fourth > 0, "traces must have been routed while the fourth backend was in the pool");
    assert_eq!(split, 0, "traces whose two spans reached two backends, of {traces}");
}
