//! Several load-balancer replicas in front of one pool, with each trace's requests spread across them: three
//! otlp-lb processes with a static pool of backends on loopback. While traces are in flight the pool grows from 3
//! backends to 4, then shrinks to 2 (the other two drain), and one replica restarts. Every replica reloads its
//! configuration file on its own (the file is polled), so they see each change at different times. With `peers:`
//! every trace must reach exactly one backend and no span may be lost; the same run without `peers:` is printed
//! for contrast, and so is the same run through three Collectors whose `loadbalancing` exporter resolves the pool
//! by name (`replicas/collector.rs`). The backends listen on distinct loopback addresses sharing one port. They
//! are in-process OTLP/gRPC servers that record every span, or real Collectors (`otelcol-lb` from `make tools`)
//! whose `tail_sampling` keeps the traces that have an ERROR span and writes them with the file exporter: there a
//! split trace shows as an incomplete one, as the part without the error is dropped. The `queued` module runs the
//! same scenario with `ack: queued`, where each replica delivers from its log.

#[path = "replicas/collector.rs"]
mod collector;
mod common;
#[path = "replicas/otlp_lb.rs"]
mod otlp_lb;
#[path = "replicas/outcome.rs"]
mod outcome;
#[path = "replicas/pools.rs"]
mod pools;
#[path = "replicas/queued.rs"]
mod queued;
#[path = "replicas/tier.rs"]
mod tier;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use collector::CollectorTier;
use common::backend::Backend;
use common::lb::Lb;
use dataplane::fixtures as otlp;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::{Status, status};
use otlp_lb::{Cluster, Mode, PoolFile, TOKEN};
use outcome::{Outcome, outcome};
use pools::{Collectors, Pool, Recorders, has_error, parse_name};
use tier::Tier;
use tonic::transport::Channel;

const REPLICAS: usize = 3;
/// Traces per batch; each request holds one span of every trace of its batch.
const TRACES_PER_BATCH: u64 = 10;
/// Requests per trace, sent `SPAN_GAP` apart, each to the next replica.
const SPANS: u64 = 4;
const SPAN_GAP: Duration = Duration::from_millis(200);
/// A new batch of traces starts every `BATCH_GAP`.
const BATCH_GAP: Duration = Duration::from_millis(50);

/// Sends span `span` of the traces of `batch` to replica `first`, or the next one while a replica is down.
async fn send(clients: &[TraceServiceClient<Channel>], batch: u64, span: u64, first: usize) -> bool {
    let traces = batch * TRACES_PER_BATCH..(batch + 1) * TRACES_PER_BATCH;
    let mut request = otlp::traces(traces, span..span + 1, 1);
    if span == SPANS - 1 {
        let spans = request.resource_spans.iter_mut().flat_map(|r| &mut r.scope_spans).flat_map(|s| &mut s.spans);
        for s in spans.filter(|s| parse_name(&s.name).is_some_and(|(t, _)| has_error(t))) {
            s.status = Some(Status { code: status::StatusCode::Error as i32, message: "failed".into() });
        }
    }
    for attempt in 0..40 {
        let mut client = clients[(first + attempt) % clients.len()].clone();
        let mut r = tonic::Request::new(request.clone());
        r.set_timeout(Duration::from_secs(5));
        if client.export(r).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The same traffic through any tier, from one definition: traces start every `BATCH_GAP` for 21s, each request
/// of a trace going to the next replica. The pool (4 backends) starts with 3, grows to 4 at 2s and shrinks to 2 at
/// 9s (the other two draining), and replica 2 restarts at 15s. `start` starts the tier on the first pool.
async fn scenario<T: Tier>(pool: &mut impl Pool, start: impl FnOnce(&[SocketAddr]) -> T) -> (Outcome, T) {
    let address = pool.addresses();
    let mut tier = tokio::task::block_in_place(|| start(&address[..3]));
    let clients: Arc<Vec<_>> = Arc::new(
        tier.urls()
            .into_iter()
            .map(|url| TraceServiceClient::new(Channel::from_shared(url).expect("url").connect_lazy()))
            .collect(),
    );
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let load_for = Duration::from_secs(21);
    let load = {
        let (clients, failed) = (Arc::clone(&clients), Arc::clone(&failed));
        tokio::spawn(async move {
            let mut traces = Vec::new();
            let mut batch = 0;
            while started.elapsed() < load_for {
                let (clients, failed) = (Arc::clone(&clients), Arc::clone(&failed));
                traces.push(tokio::spawn(async move {
                    for span in 0..SPANS {
                        if !send(&clients, batch, span, ((batch + span) % REPLICAS as u64) as usize).await {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        tokio::time::sleep(SPAN_GAP).await;
                    }
                }));
                batch += 1;
                tokio::time::sleep(BATCH_GAP).await;
            }
            for t in traces {
                let _ = t.await;
            }
            batch
        })
    };
    let at = |s: u64| tokio::time::sleep_until((started + Duration::from_secs(s)).into());
    at(2).await;
    tokio::task::block_in_place(|| tier.set_pool(&address[..4], &[]));
    at(9).await;
    tokio::task::block_in_place(|| tier.set_pool(&address[..2], &address[2..]));
    at(15).await;
    tokio::task::block_in_place(|| tier.restart(2));
    let batches = load.await.expect("the load runs");
    // Everything acknowledged has been delivered: the replicas answer after the backends accept, or (`ack:
    // queued`) once logged, so wait (bounded) for the backends that count what they hold to hold it all.
    let sent = (batches * TRACES_PER_BATCH * SPANS) as usize;
    let deadline = Instant::now() + Duration::from_secs(30);
    while pool.delivered().is_some_and(|n| n < sent) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (received, whole) = pool.received().await;
    let mut o = outcome(&received, batches * TRACES_PER_BATCH, SPANS, whole);
    o.failed_requests = failed.load(Ordering::Relaxed);
    (o, tier)
}

fn otlp_lb(active: &[SocketAddr], mode: Mode) -> Cluster {
    Cluster::start(REPLICAS, &PoolFile { active, draining: &[] }, mode)
}

/// The scenario through the Collector's `loadbalancing` exporter, for contrast: its outcome is printed, not
/// asserted; asserted is only that the scenario ran (every replica used each new pool, the added backend got
/// spans). Returns the outcome and how long each pool change took to reach every replica.
async fn through_the_collector(pool: &mut impl Pool) -> (Outcome, String) {
    let (o, mut tier) = scenario(pool, |active| CollectorTier::start(REPLICAS, active)).await;
    let changes = tier.pool_changes();
    assert!(changes.len() == 2 && changes.iter().all(Option::is_some), "each pool change seen: {changes:?}");
    assert!(o.per_backend[3] > 0, "the added backend got spans: {:?}", o.per_backend);
    let ms: Vec<String> = changes.iter().flatten().map(|d| d.as_millis().to_string()).collect();
    (o, ms.join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_stay_whole_across_replicas_through_scale_out_scale_in_and_a_restart() {
    let _serial = SERIAL.lock().await;
    let (off, _) = scenario(&mut Recorders::start(4).await, |p| otlp_lb(p, Mode::WITHOUT_PEERS)).await;
    let (on, cluster) = scenario(&mut Recorders::start(4).await, |p| otlp_lb(p, Mode::WITH_PEERS)).await;
    cluster.peer_metrics().iter().for_each(|l| eprintln!("{l}"));
    let (lbx, seen) = through_the_collector(&mut Recorders::start(4).await).await;
    eprintln!("replicas: backends=recorders balancer=otlp-lb peers=off {off}");
    eprintln!("replicas: backends=recorders balancer=otlp-lb peers=on {on}");
    eprintln!("replicas: backends=recorders balancer=collector-loadbalancing-exporter {lbx} pool_seen_ms={seen}");
    assert_eq!(on.failed_requests, 0, "every request is accepted by some replica");
    assert_eq!(on.missing, 0, "no span lost");
    assert_eq!(on.twice, 0, "no span delivered twice");
    assert_eq!(on.split, 0, "no trace reaches two backends with peers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_traces_stay_whole_on_real_collectors_with_several_replicas() {
    let _serial = SERIAL.lock().await;
    let (on, cluster) = scenario(&mut Collectors::start(4), |p| otlp_lb(p, Mode::WITH_PEERS)).await;
    cluster.peer_metrics().iter().for_each(|l| eprintln!("{l}"));
    let (lbx, seen) = through_the_collector(&mut Collectors::start(4)).await;
    eprintln!("replicas: backends=collectors balancer=otlp-lb peers=on {on}");
    eprintln!("replicas: backends=collectors balancer=collector-loadbalancing-exporter {lbx} pool_seen_ms={seen}");
    assert_eq!(on.failed_requests, 0, "every request is accepted by some replica");
    assert_eq!(on.missing, 0, "every sampled trace complete");
    assert_eq!(on.incomplete, 0, "every sampled trace complete");
    assert_eq!(on.twice, 0, "no span delivered twice");
    assert_eq!(on.split, 0, "no trace reaches two Collectors");
    assert_eq!(on.unexpected, 0, "the Collectors kept only the traces with an error");
}

/// The scenarios time pool changes against the replicas' polls: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_api_takes_only_the_shared_token() {
    let backend = Backend::start().await;
    let address = [backend.addr];
    let cluster = Cluster::start(1, &PoolFile { active: &address, draining: &[] }, Mode::WITH_PEERS);
    let port = cluster.peer_ports.as_ref().expect("peers")[0];
    let url = format!("http://127.0.0.1:{port}/peer/v1/held");
    let http = reqwest::Client::new();
    let status = |r: reqwest::Result<reqwest::Response>| r.expect("the peer API answers").status().as_u16();
    assert_eq!(status(http.get(&url).send().await), 401, "no token");
    assert_eq!(status(http.get(&url).bearer_auth("guess").send().await), 401, "a wrong token");
    assert_eq!(status(http.post(&url).bearer_auth("guess").body(vec![1u8; 64]).send().await), 401, "a wrong token");
    assert_eq!(status(http.get(&url).bearer_auth(TOKEN).send().await), 200, "the shared token");
    let garbage = http.post(&url).bearer_auth(TOKEN).body(vec![0xffu8; 64]).send().await.expect("answers");
    assert_eq!(garbage.status().as_u16(), 400);
    let text = garbage.text().await.expect("a message");
    assert!(text.contains("undecodable table"), "{text}");
    assert_eq!(cluster.lbs[0].metric("otlp_lb_peer_traces_adopted_total"), 0.0, "nothing taken from them");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_peer_that_is_not_running_does_not_hold_the_switch() {
    let _serial = SERIAL.lock().await;
    let pool = Recorders::start(3).await;
    let address = pool.addresses();
    let cluster = Cluster::start_n(2, 1, &PoolFile { active: &address[..2], draining: &[] }, Mode::WITH_PEERS);
    cluster.write_pool(&PoolFile { active: &address, draining: &[] });
    let switched = |lb: &Lb| lb.metric("otlp_lb_peer_switches_total{timing=\"on_time\"}") >= 1.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cluster.lbs.iter().all(switched) {
        assert!(Instant::now() < deadline, "both replicas switch to the new ring");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The exchange ends once the running peer's table is in, and the stopped one refused the connection.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for lb in &cluster.lbs {
        let waited = lb.metric("otlp_lb_peer_exchange_last_milliseconds");
        assert!(waited < 1000.0, "the exchange waited {waited} ms of the 2 s bound");
        assert!(lb.metric("otlp_lb_peer_unanswered_total{request=\"push\"}") >= 1.0, "the stopped peer is reported");
        assert_eq!(lb.metric("otlp_lb_peer_unanswered_total{request=\"table\"}"), 0.0);
    }
    drop(pool);
}
