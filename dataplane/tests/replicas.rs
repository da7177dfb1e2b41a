//! Several load-balancer replicas in front of one pool, with each trace's requests spread across them: three
//! otlp-lb processes with a static pool of real OTLP/gRPC backends on loopback. While traces are in flight the
//! pool grows from 3 backends to 4, then shrinks to 2 (the other two drain), and one replica restarts. Every
//! replica reloads its configuration file on its own (the file is polled), so they see each change at different
//! times. With `peers:` every trace must reach exactly one backend and no span may be lost; the same run without
//! `peers:` is printed for contrast.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::backend::Backend;
use common::lb::{Lb, free_port};
use common::otlp;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tonic::transport::Channel;

const REPLICAS: usize = 3;
/// Traces per batch; each request holds one span of every trace of its batch.
const TRACES_PER_BATCH: u64 = 10;
/// Requests per trace, sent `SPAN_GAP` apart, each to the next replica.
const SPANS: u64 = 4;
const SPAN_GAP: Duration = Duration::from_millis(200);
/// A new batch of traces starts every `BATCH_GAP`.
const BATCH_GAP: Duration = Duration::from_millis(50);
const TOKEN: &str = "replicas-test-token";

/// What one replica's configuration says of the pool.
struct PoolFile<'a> {
    active: &'a [String],
    draining: &'a [String],
}

fn quoted(list: &[String]) -> String {
    list.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ")
}

/// The configuration of replica `me`: its own ports, the pool, and (with `peers`) every replica's peer address.
fn config(addrs: (SocketAddr, SocketAddr, SocketAddr), pool: &PoolFile<'_>, peers: Option<(&[u16], usize)>) -> String {
    let (grpc, http, telemetry) = addrs;
    let peers = match peers {
        Some((ports, me)) => {
            let all: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
            format!(
                "peers:\n  endpoint: \"127.0.0.1:{}\"\n  addresses: [{}]\n  auth: {{bearer_token: \"{TOKEN}\"}}\n  \
                 switch_delay: 3s\n  exchange_timeout: 2s\n",
                ports[me],
                quoted(&all)
            )
        }
        None => String::new(),
    };
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: \"{grpc}\"}}\n      http: {{endpoint: \"{http}\"}}\n\
         loadbalancing:\n  protocol:\n    otlp: {{timeout: 2s, tls: {{insecure: true}}}}\n  resolver:\n    \
         static: {{hostnames: [{}], draining: [{}]}}\n\
         routing:\n  affinity_window: 20s\n\
         telemetry:\n  metrics: {{address: \"{telemetry}\"}}\ndrain_timeout: 5s\n{peers}",
        quoted(pool.active),
        quoted(pool.draining),
    )
}

struct Cluster {
    lbs: Vec<Lb>,
    peer_ports: Option<Vec<u16>>,
}

impl Cluster {
    fn start(pool: &PoolFile<'_>, with_peers: bool) -> Cluster {
        let peer_ports: Option<Vec<u16>> = with_peers.then(|| (0..REPLICAS).map(|_| free_port()).collect());
        let lbs = (0..REPLICAS)
            .map(|me| {
                let peers = peer_ports.as_deref().map(|p| (p, me));
                Lb::start_config(|g, h, t| config((g, h, t), pool, peers), &[])
            })
            .collect();
        Cluster { lbs, peer_ports }
    }

    /// Rewrites every replica's configuration file; each replica notices on its own poll.
    fn set_pool(&self, pool: &PoolFile<'_>) {
        for (me, lb) in self.lbs.iter().enumerate() {
            let peers = self.peer_ports.as_deref().map(|p| (p, me));
            std::fs::write(&lb.config, config((lb.grpc, lb.http, lb.telemetry), pool, peers)).expect("rewrite config");
        }
    }
}

/// Sends span `span` of the traces of `batch` to replica `first`, or the next one while a replica is down.
async fn send(clients: &[TraceServiceClient<Channel>], batch: u64, span: u64, first: usize) -> bool {
    let traces = batch * TRACES_PER_BATCH..(batch + 1) * TRACES_PER_BATCH;
    let request = otlp::traces(traces, span..span + 1, 1);
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

/// What the backends received: (traces on more than one backend, spans missing, spans received twice).
fn outcome(backends: &[Backend], batches: u64) -> (usize, usize, usize) {
    let mut on: HashMap<Vec<u8>, HashSet<usize>> = HashMap::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, b) in backends.iter().enumerate() {
        for (trace, span) in b.spans() {
            on.entry(trace).or_default().insert(i);
            *seen.entry(span).or_default() += 1;
        }
    }
    let split = on.values().filter(|b| b.len() > 1).count();
    let mut missing = 0;
    for t in 0..batches * TRACES_PER_BATCH {
        missing += (0..SPANS).filter(|s| !seen.contains_key(&format!("t{t}-s{s}"))).count();
    }
    let twice = seen.values().filter(|n| **n > 1).count();
    (split, missing, twice)
}

/// The whole scenario; returns (traces, split, missing spans, spans received twice).
async fn scenario(with_peers: bool) -> (u64, usize, usize, usize) {
    let mut backends = Vec::new();
    for _ in 0..4 {
        backends.push(Backend::start().await);
    }
    let address: Vec<String> = backends.iter().map(Backend::address).collect();
    let mut cluster = Cluster::start(&PoolFile { active: &address[..3], draining: &[] }, with_peers);
    let clients: Arc<Vec<_>> = Arc::new(
        cluster
            .lbs
            .iter()
            .map(|lb| TraceServiceClient::new(Channel::from_shared(lb.grpc_url()).expect("url").connect_lazy()))
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
    cluster.set_pool(&PoolFile { active: &address[..4], draining: &[] });
    at(9).await;
    cluster.set_pool(&PoolFile { active: &address[..2], draining: &address[2..] });
    at(15).await;
    let restarted = &mut cluster.lbs[2];
    restarted.signal("TERM");
    assert!(restarted.wait_exit(Duration::from_secs(10)).is_some(), "replica 2 stops on SIGTERM");
    restarted.respawn();
    let batches = load.await.expect("the load runs");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "every request is accepted by some replica");
    // Everything acknowledged has been delivered: the replicas answer after the backends accept.
    let (split, missing, twice) = outcome(&backends, batches);
    if with_peers {
        for (i, lb) in cluster.lbs.iter().enumerate() {
            let m = lb.metrics();
            let peer: Vec<&str> = m.lines().filter(|l| l.starts_with("otlp_lb_peer")).collect();
            eprintln!("replica {i}: {}", peer.join(" | "));
        }
    }
    (batches * TRACES_PER_BATCH, split, missing, twice)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_stay_whole_across_replicas_through_scale_out_scale_in_and_a_restart() {
    let (traces, split, missing, twice) = scenario(false).await;
    eprintln!("replicas: peers=off traces={traces} split={split} lost_spans={missing} duplicate_spans={twice}");
    let (traces, split, missing, twice) = scenario(true).await;
    eprintln!("replicas: peers=on traces={traces} split={split} lost_spans={missing} duplicate_spans={twice}");
    assert_eq!(missing, 0, "no span lost");
    assert_eq!(twice, 0, "no span delivered twice");
    assert_eq!(split, 0, "no trace reaches two backends with peers");
}
