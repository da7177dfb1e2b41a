//! Several load-balancer replicas in front of one pool, with each trace's requests spread across them: three
//! otlp-lb processes with a static pool of backends on loopback. While traces are in flight the pool grows from 3
//! backends to 4, then shrinks to 2 (the other two drain), and one replica restarts. Every replica reloads its
//! configuration file on its own (the file is polled), so they see each change at different times. With `peers:`
//! every trace must reach exactly one backend and no span may be lost; the same run without `peers:` is printed
//! for contrast. The backends are in-process OTLP/gRPC servers that record every span, or real Collectors
//! (`otelcol-lb` from `make tools`) whose `tail_sampling` keeps the traces that have an ERROR span and writes them
//! with the file exporter: there a split trace is also an incomplete one.
//! The `queued` module runs the same scenario with `ack: queued`, where each replica delivers from its log.

mod common;
#[path = "replicas/pools.rs"]
mod pools;
#[path = "replicas/queued.rs"]
mod queued;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::backend::Backend;
use common::lb::{Lb, free_port};
use dataplane::fixtures as otlp;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::{Status, status};
use pools::{Collectors, Pool, Recorders, has_error, parse_name};
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

/// How the tier runs: with `peers:` or without, and whether requests are acknowledged once in each replica's log
/// (`ack: queued`) or once delivered.
#[derive(Debug, Clone, Copy)]
struct Tier {
    peers: bool,
    queued: bool,
}

const WITHOUT_PEERS: Tier = Tier { peers: false, queued: false };
const WITH_PEERS: Tier = Tier { peers: true, queued: false };

/// The configuration of replica `me`: its own ports, the pool, (with `peers`) every replica's peer address, and
/// (with `queue`) the directory of its log.
fn config(
    addrs: (SocketAddr, SocketAddr, SocketAddr),
    pool: &PoolFile<'_>,
    peers: Option<(&[u16], usize)>,
    queue: Option<&Path>,
) -> String {
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
    let queue = queue.map_or(String::new(), |dir| {
        format!("  sending_queue: {{ack: queued, storage: \"{}\", fsync: never}}\n", dir.display())
    });
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: \"{grpc}\"}}\n      http: {{endpoint: \"{http}\"}}\n\
         loadbalancing:\n  protocol:\n    otlp: {{timeout: 2s, tls: {{insecure: true}}}}\n  resolver:\n    \
         static: {{hostnames: [{}], draining: [{}]}}\n{queue}\
         routing:\n  affinity_window: 20s\n\
         telemetry:\n  metrics: {{address: \"{telemetry}\"}}\ndrain_timeout: 5s\n{peers}",
        quoted(pool.active),
        quoted(pool.draining),
    )
}

struct Cluster {
    lbs: Vec<Lb>,
    peer_ports: Option<Vec<u16>>,
    /// With `ack: queued`: replica `i`'s log is in `<queues>/<i>`, kept across its restarts.
    queues: Option<tempfile::TempDir>,
}

impl Cluster {
    fn start(pool: &PoolFile<'_>, tier: Tier) -> Cluster {
        Cluster::start_n(REPLICAS, 0, pool, tier)
    }

    /// `replicas` replicas; with peers, their list also names `stopped` replicas that do not run.
    fn start_n(replicas: usize, stopped: usize, pool: &PoolFile<'_>, tier: Tier) -> Cluster {
        let listed = replicas + stopped;
        let peer_ports: Option<Vec<u16>> = tier.peers.then(|| (0..listed).map(|_| free_port()).collect());
        let queues = tier.queued.then(|| tempfile::tempdir().expect("queue dir"));
        let mut cluster = Cluster { lbs: Vec::new(), peer_ports, queues };
        for me in 0..replicas {
            let (peers, queue) = (cluster.peers(me), cluster.queue(me));
            cluster.lbs.push(Lb::start_config(|g, h, t| config((g, h, t), pool, peers, queue.as_deref()), &[]));
        }
        cluster
    }

    fn peers(&self, me: usize) -> Option<(&[u16], usize)> {
        self.peer_ports.as_deref().map(|p| (p, me))
    }

    fn queue(&self, me: usize) -> Option<std::path::PathBuf> {
        self.queues.as_ref().map(|d| d.path().join(me.to_string()))
    }

    /// Rewrites every replica's configuration file; each replica notices on its own poll.
    fn set_pool(&self, pool: &PoolFile<'_>) {
        for (me, lb) in self.lbs.iter().enumerate() {
            let text = config((lb.grpc, lb.http, lb.telemetry), pool, self.peers(me), self.queue(me).as_deref());
            std::fs::write(&lb.config, text).expect("rewrite config");
        }
    }
}

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

/// What reached the backends, against what was sent.
#[derive(Debug, Default)]
struct Outcome {
    traces: u64,
    /// Traces with spans on more than one backend.
    split: usize,
    /// Spans of the traces that must be whole that reached no backend.
    missing: usize,
    /// Spans that reached a backend more than once.
    twice: usize,
    /// Spans of the other traces (sampled out by the Collectors) that reached one.
    unexpected: usize,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = self;
        write!(f, "traces={} split={} lost_spans={} duplicate_spans={}", o.traces, o.split, o.missing, o.twice)?;
        write!(f, " sampled_out_spans_kept={}", o.unexpected)
    }
}

/// `received[b]`: the (trace, span) pairs backend `b` holds; `whole(t)`: whether trace `t` must be whole.
fn outcome(received: &[Vec<(u64, u64)>], traces: u64, whole: fn(u64) -> bool) -> Outcome {
    let mut on: HashMap<u64, HashSet<usize>> = HashMap::new();
    let mut seen: HashMap<(u64, u64), usize> = HashMap::new();
    for (b, spans) in received.iter().enumerate() {
        for &(t, s) in spans {
            on.entry(t).or_default().insert(b);
            *seen.entry((t, s)).or_default() += 1;
        }
    }
    let split = on.values().filter(|b| b.len() > 1).count();
    let lost = |t: u64| (0..SPANS).filter(|s| !seen.contains_key(&(t, *s))).count();
    let missing = (0..traces).filter(|t| whole(*t)).map(lost).sum();
    let twice = seen.values().filter(|n| **n > 1).count();
    let unexpected = seen.keys().filter(|(t, _)| !whole(*t)).count();
    Outcome { traces, split, missing, twice, unexpected }
}

/// The whole scenario against `pool`, which has 4 backends.
async fn scenario(pool: &mut impl Pool, tier: Tier) -> Outcome {
    let address = pool.addresses();
    let mut cluster = Cluster::start(&PoolFile { active: &address[..3], draining: &[] }, tier);
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
    if tier.queued {
        // Acknowledged once logged: wait (bounded) for the logs to be delivered.
        let sent = (batches * TRACES_PER_BATCH * SPANS) as usize;
        let deadline = Instant::now() + Duration::from_secs(30);
        while pool.delivered().is_some_and(|n| n < sent) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    if tier.peers {
        for (i, lb) in cluster.lbs.iter().enumerate() {
            let m = lb.metrics();
            let peer: Vec<&str> = m.lines().filter(|l| l.starts_with("otlp_lb_peer")).collect();
            eprintln!("replica {i}: {}", peer.join(" | "));
        }
    }
    // Everything acknowledged has been delivered: the replicas answer after the backends accept, or (queued) the
    // logs were waited for.
    let (received, whole) = pool.received().await;
    outcome(&received, batches * TRACES_PER_BATCH, whole)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_stay_whole_across_replicas_through_scale_out_scale_in_and_a_restart() {
    let _serial = SERIAL.lock().await;
    let off = scenario(&mut Recorders::start(4).await, WITHOUT_PEERS).await;
    eprintln!("replicas: backends=recorders peers=off {off}");
    let on = scenario(&mut Recorders::start(4).await, WITH_PEERS).await;
    eprintln!("replicas: backends=recorders peers=on {on}");
    assert_eq!(on.missing, 0, "no span lost");
    assert_eq!(on.twice, 0, "no span delivered twice");
    assert_eq!(on.split, 0, "no trace reaches two backends with peers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_traces_stay_whole_on_real_collectors_with_several_replicas() {
    let _serial = SERIAL.lock().await;
    let on = scenario(&mut Collectors::start(4), WITH_PEERS).await;
    eprintln!("replicas: backends=collectors peers=on {on}");
    assert_eq!(on.missing, 0, "every sampled trace complete");
    assert_eq!(on.twice, 0, "no span delivered twice");
    assert_eq!(on.split, 0, "no trace reaches two Collectors");
    assert_eq!(on.unexpected, 0, "the Collectors kept only the traces with an error");
}

/// The scenarios time pool changes against the replicas' polls: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_api_takes_only_the_shared_token() {
    let backend = Backend::start().await;
    let address = [backend.address()];
    let cluster = Cluster::start_n(1, 0, &PoolFile { active: &address, draining: &[] }, WITH_PEERS);
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
    let cluster = Cluster::start_n(2, 1, &PoolFile { active: &address[..2], draining: &[] }, WITH_PEERS);
    cluster.set_pool(&PoolFile { active: &address, draining: &[] });
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
