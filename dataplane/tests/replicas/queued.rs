//! The replicas with `ack: queued`: each acknowledges a request once it is in its log and delivers it from there,
//! by the same routing as a direct delivery (its own table, the peers' table, the exchange gate). The whole
//! scenario of the replicas test; and a replica that restarts with records still in its log, after a pool change
//! it missed, delivers them by the tables its peers hold.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tonic::transport::Channel;

use super::common::lb::Lb;
use super::otlp_lb::{Cluster, Mode, PoolFile};
use super::outcome::outcome;
use super::pools::{Pool, Recorders};
use super::{SERIAL, SPANS, TRACES_PER_BATCH, otlp_lb, scenario, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_stay_whole_across_replicas_that_acknowledge_once_logged() {
    let _serial = SERIAL.lock().await;
    let (on, _) = scenario(&mut Recorders::start(4).await, |p| otlp_lb(p, Mode::QUEUED_WITH_PEERS)).await;
    eprintln!("replicas: backends=recorders balancer=otlp-lb peers=on ack=queued {on}");
    assert_eq!(on.failed_requests, 0, "every request is accepted by some replica");
    assert_eq!(on.missing, 0, "no span lost");
    assert_eq!(on.twice, 0, "no span delivered twice: the restarted replica delivered its log before it stopped");
    assert_eq!(on.split, 0, "no trace reaches two backends");
}

/// Waits (bounded) until the backends hold `spans` spans.
async fn wait_delivered(pool: &Recorders, spans: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while pool.delivered().is_some_and(|n| n < spans) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_delivers_its_log_by_the_traces_its_peers_hold() {
    let _serial = SERIAL.lock().await;
    let pool = Recorders::start(4).await;
    let address = pool.addresses();
    let mut cluster =
        Cluster::start_n(2, 0, &PoolFile { active: &address[..3], draining: &[] }, Mode::QUEUED_WITH_PEERS);
    let clients: Vec<_> = cluster
        .lbs
        .iter()
        .map(|lb| TraceServiceClient::new(Channel::from_shared(lb.grpc_url()).expect("url").connect_lazy()))
        .collect();
    const BATCHES: u64 = 20;
    let spans = |n: u64| (BATCHES * TRACES_PER_BATCH * n) as usize;
    // The first half of every trace through replica 0, delivered by the ring of 3.
    for batch in 0..BATCHES {
        for span in 0..SPANS / 2 {
            assert!(send(&clients, batch, span, 0).await, "replica 0 takes the request");
        }
    }
    wait_delivered(&pool, spans(SPANS / 2), Duration::from_secs(20)).await;
    assert_eq!(pool.delivered(), Some(spans(SPANS / 2)), "the first half delivered");
    // The second half into replica 1's log while the backends refuse, then replica 1 stops before delivering it.
    pool.refuse(true);
    for batch in 0..BATCHES {
        for span in SPANS / 2..SPANS {
            assert!(send(&clients, batch, span, 1).await, "replica 1 logs the request");
        }
    }
    cluster.lbs[1].kill9();
    // The pool grows while replica 1 is down: replica 0 switches to the ring of 4 on its own.
    cluster.write_pool(&PoolFile { active: &address, draining: &[] });
    let switched = |lb: &Lb| lb.metric("otlp_lb_peer_switches_total{timing=\"on_time\"}") >= 1.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !switched(&cluster.lbs[0]) {
        assert!(Instant::now() < deadline, "replica 0 switches to the new ring");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.refuse(false);
    cluster.lbs[1].respawn();
    wait_delivered(&pool, spans(SPANS), Duration::from_secs(30)).await;
    let mut pool = pool;
    let (received, whole) = pool.received().await;
    let o = outcome(&received, BATCHES * TRACES_PER_BATCH, SPANS, whole);
    eprintln!("replicas: restart with a log after a missed pool change {o}");
    assert_eq!(o.missing, 0, "every logged span delivered after the restart:\n{}", cluster.lbs[1].logs());
    assert_eq!(o.split, 0, "the log's traces go where replica 0 sent their first spans");
}
