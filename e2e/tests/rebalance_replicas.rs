//! Whole traces through every pool change with two load-balancer replicas, on the real cluster, as users run it:
//! the chart's operator, and a LoadBalancedCollector (`e2e/fixtures/rebalance/replicas.yaml`) with
//! `loadBalancer.replicas: 2` (so the replicas get the peer Service and token and agree on each ring switch) in
//! front of Collector backends that write every span they receive to their stdout.
//!
//! Under a steady load of traces whose 4 requests, 1 s apart, each go to the next load-balancer replica
//! ([`load`]), the test runs, one after another:
//! * `kubectl scale lbc whole --replicas 5` (scale-out), then `--replicas 2` (scale-in: three backends drain);
//! * `kubectl rollout restart` of the backends' Deployment (each old pod drains while its replacement joins);
//! * `kubectl rollout restart` of the load balancer's Deployment (each new replica pulls its peers' tables before
//!   it is ready).
//!
//! Each step waits until every load-balancer pod's `/debug/pool` lists the backends' ready endpoints, then holds
//! for [`HOLD`] of traffic. Once the load stops and the replaced backends have drained and exited, the spans each
//! backend wrote ([`capture`]) are compared with what the load balancer acknowledged.
//!
//! Asserted: no trace reached more than one backend (`split`), every acknowledged span reached a backend
//! (`lost`), no request was given up on, most traces crossed replicas, every backend pod took traces, and every
//! ready-set change showed on every replica ([`ring`]) within [`RING_P99_LIMIT_MS`].
//!
//! Prints details on stderr and one line on stdout:
//! `rebalance: lb_replicas=2 backends 3->5->2 ring_update_p99_ms=<n> split=<n> lost=<n>`
//! (`make e2e-rebalance`). Needs root, `make tools` and `make images e2e-images`; fails (never skips) without them.

#[path = "rebalance_replicas/capture.rs"]
mod capture;
#[path = "rebalance_replicas/load.rs"]
mod load;
#[path = "rebalance_replicas/ring.rs"]
mod ring;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use e2e::chart::install_operator;
use e2e::lbc::{debug_pool, kubectl_ok, lb_pods, local_collector, wait_lbc_ready, write_run_file};
use e2e::ring_watch::{self, RingStats, Set};
use e2e::scenario::{fixture, image_vars};
use e2e::wait::Check;
use e2e::{Cluster, tools};
use tokio::sync::{mpsc, watch};

const NS: &str = "default";
/// The LoadBalancedCollector; also its load balancer's Deployment and Service.
const NAME: &str = "whole";
const BACKENDS: &str = "whole-backends";
const BACKEND_PODS: &str = "app.kubernetes.io/instance=whole,app.kubernetes.io/component=backends";
const LB_PODS: &str = "app.kubernetes.io/instance=whole,app.kubernetes.io/component=load-balancer";
const OTLP_PORT: u16 = 4317;
const LB_REPLICAS: usize = 2;
const START: usize = 3;
const OUT: usize = 5;
const IN: usize = 2;

/// Traffic before the first step, and after each step took effect on every replica.
const BEFORE: Duration = Duration::from_secs(5);
const HOLD: Duration = Duration::from_secs(6);
const STEP_LIMIT: Duration = Duration::from_secs(180);
/// The backends' drain (preStop: the affinity window) and shutdown, and a margin.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
const TEST_LIMIT: Duration = Duration::from_secs(900);
/// With peers every change waits for its agreed switch time (`switch_delay`, 2 s); a change that comes less than half
/// a switch delay before the previous one's switch waits for it, then for its own: one and a half switch delays
/// (3 s), and a margin of 2 s for the watch, the ring build and the test's polling on a busy machine (3.3 s was seen
/// on an idle one). Changes applied one at a time, a switch delay apart, would take 8 s and more in a rolling update.
const RING_P99_LIMIT_MS: u64 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_replicas() -> Result<()> {
    e2e::init_logging();
    tools::require(&[tools::KUBECTL, tools::HELM])?;
    image_vars()?;
    let started = Instant::now();
    let cluster = Cluster::start().await?;
    let res = match tokio::time::timeout(TEST_LIMIT, scenario(&cluster)).await {
        Ok(r) => r,
        Err(_) => Err(anyhow::anyhow!("rebalance_replicas did not finish within {TEST_LIMIT:?}")),
    };
    let res = cluster.finish(res).await;
    eprintln!("rebalance_replicas: test took {:.1}s", started.elapsed().as_secs_f64());
    res
}

async fn scenario(cluster: &Cluster) -> Result<()> {
    install_operator(cluster).await?;
    let yaml = local_collector(&fixture("rebalance/replicas.yaml")?)?;
    let file = write_run_file(cluster, "replicas.yaml", &yaml)?;
    kubectl_ok(cluster, &["apply", "-n", NS, "-f", &file.to_string_lossy()]).await?;
    wait_lbc_ready(cluster, NS, NAME, Some(START as i64), STEP_LIMIT).await?;
    pools_show_ready_backends(cluster).await?;
    let lbs = lb_pods(cluster, NS, NAME).await?;
    anyhow::ensure!(lbs.len() == LB_REPLICAS, "expected {LB_REPLICAS} load-balancer pods, found {lbs:?}");

    let backend_logs = cluster.run_dir().join("captured/backends");
    let lb_logs = cluster.run_dir().join("captured/load-balancer");
    let (stop_tx, stop_rx) = watch::channel(false);
    let (load_stop_tx, load_stop_rx) = watch::channel(false);
    let (endpoints_tx, endpoints_rx) = watch::channel(Vec::new());
    let (updates_tx, updates_rx) = mpsc::unbounded_channel();
    let events = Arc::new(AtomicU64::new(0));
    let slice_watch =
        tokio::spawn(ring_watch::watch_ready(cluster.client(), NS, BACKENDS, OTLP_PORT, updates_tx, events.clone()));

    let t0 = Instant::now();
    let driver = async {
        let (steps, sent) = tokio::join!(
            async {
                let steps = steps(cluster, t0).await;
                let _ = load_stop_tx.send(true);
                steps
            },
            load::run(endpoints_rx, load_stop_rx),
        );
        let drained = match &steps {
            Ok(_) => replaced_backends_gone(cluster).await,
            Err(_) => Ok(()),
        };
        let _ = stop_tx.send(true);
        (steps, sent, drained)
    };
    let ((steps, sent, drained), (), backends_linked, lb_linked, monitor) = tokio::join!(
        driver,
        lb_endpoints(cluster, endpoints_tx, stop_rx.clone()),
        capture::run(cluster, NS, BACKEND_PODS, &backend_logs, stop_rx.clone()),
        capture::run(cluster, NS, LB_PODS, &lb_logs, stop_rx.clone()),
        ring::run(cluster, NS, NAME, updates_rx, stop_rx.clone()),
    );
    slice_watch.abort();
    let steps = steps?;
    drained?;
    eprintln!("rebalance_replicas: captured {} backend and {} load-balancer log files", backends_linked?, lb_linked?);

    // The outcome.
    let received = capture::spans(&backend_logs)?;
    let outcome = Outcome::of(&received, &sent);
    let ring = RingStats::of(monitor.delays.iter().map(|d| d.ms).collect());

    let rel = |t: Instant| t.saturating_duration_since(t0).as_secs_f64();
    for (what, at) in &steps {
        eprintln!("rebalance_replicas: {:7.2}s {what}", rel(*at));
    }
    eprintln!(
        "rebalance_replicas: load: {} batches, {} traces, {} spans acknowledged, {} retries, {} requests failed{}; {} traces crossed replicas",
        sent.batches,
        sent.served_by.len(),
        sent.acked.len(),
        sent.retries,
        sent.failed_requests,
        if sent.failed_requests > 0 { format!(" (last: {})", sent.last_error) } else { String::new() },
        sent.crossing(),
    );
    for d in &monitor.delays {
        eprintln!(
            "rebalance_replicas: {:7.2}s ring {} -> {} backends on every replica after {} ms{}",
            rel(d.at),
            d.from,
            d.to,
            d.ms,
            if d.superseded { " (superseded: timed until the newer set showed)" } else { "" }
        );
    }
    eprintln!(
        "rebalance_replicas: ring updates p50={} p99={} max={} ms ({} slice events, {} polls, {} poll errors{})",
        ring.p50_ms,
        ring.p99_ms,
        ring.max_ms,
        events.load(std::sync::atomic::Ordering::SeqCst),
        monitor.polls,
        monitor.poll_errors,
        if monitor.poll_errors > 0 { format!(", last: {}", monitor.last_error) } else { String::new() }
    );
    for (pod, spans) in &received {
        eprintln!("rebalance_replicas: backend {pod}: {} spans", spans.len());
    }
    eprintln!("rebalance_replicas: load-balancer warnings:\n{}", lb_warnings(&lb_logs));
    eprintln!("rebalance_replicas: {outcome}");
    println!(
        "rebalance: lb_replicas={LB_REPLICAS} backends {START}->{OUT}->{IN} ring_update_p99_ms={} split={} lost={}",
        ring.p99_ms, outcome.split, outcome.lost
    );

    let mut failures = Vec::new();
    if outcome.split > 0 {
        failures
            .push(format!("{} traces reached more than one backend, e.g. {:?}", outcome.split, outcome.split_examples));
    }
    if outcome.lost > 0 {
        failures
            .push(format!("{} acknowledged spans reached no backend, e.g. {:?}", outcome.lost, outcome.lost_examples));
    }
    if sent.failed_requests > 0 {
        failures.push(format!("{} requests were given up on (last: {})", sent.failed_requests, sent.last_error));
    }
    if sent.crossing() * 2 < sent.served_by.len() {
        failures.push(format!("only {} of {} traces crossed replicas", sent.crossing(), sent.served_by.len()));
    }
    // The 3 first backends, the 2 of the scale-out, and the 2 replacements of the rollout.
    if received.len() != START + (OUT - START) + IN {
        failures.push(format!("expected {} backend pods, captured {:?}", START + OUT - START + IN, received.keys()));
    }
    for (pod, spans) in &received {
        if spans.is_empty() {
            failures.push(format!("backend {pod} received no span"));
        }
    }
    if ring.sorted_ms.is_empty() {
        failures.push("no ring update was measured".into());
    }
    if !monitor.unresolved.is_empty() {
        failures.push(format!(
            "ready sets never shown by every replica: {:?}",
            monitor.unresolved.iter().map(|u| &u.1).collect::<Vec<_>>()
        ));
    }
    if ring.p99_ms > RING_P99_LIMIT_MS {
        failures.push(format!("ring update p99 {} ms > {RING_P99_LIMIT_MS} ms ({:?})", ring.p99_ms, ring.sorted_ms));
    }
    if !failures.is_empty() {
        bail!("rebalance_replicas failed:\n- {}", failures.join("\n- "));
    }
    Ok(())
}

/// The steps, each followed by [`HOLD`] of traffic once every replica shows the new pool; returns when each
/// step was requested and took effect.
async fn steps(cluster: &Cluster, t0: Instant) -> Result<Vec<(String, Instant)>> {
    let mut marks = Vec::new();
    tokio::time::sleep_until((t0 + BEFORE).into()).await;
    let backends = format!("deployment/{BACKENDS}");
    let lb = format!("deployment/{NAME}");
    let plan: [(&str, Vec<&str>, Option<usize>); 4] = [
        ("scale lbc to 5", vec!["scale", "lbc", NAME, "--replicas", "5"], Some(OUT)),
        ("scale lbc to 2", vec!["scale", "lbc", NAME, "--replicas", "2"], Some(IN)),
        ("rollout restart of the backends", vec!["rollout", "restart", &backends], None),
        ("rollout restart of the load balancer", vec!["rollout", "restart", &lb], None),
    ];
    for (what, args, backends_wanted) in plan {
        marks.push((format!("{what}: requested"), Instant::now()));
        let mut argv = vec!["-n", NS];
        argv.extend(args.iter().copied());
        kubectl_ok(cluster, &argv).await?;
        match backends_wanted {
            Some(n) => {
                wait_lbc_ready(cluster, NS, NAME, Some(n as i64), STEP_LIMIT).await?;
            }
            None => {
                let target = args[2];
                let timeout = format!("--timeout={}s", STEP_LIMIT.as_secs());
                kubectl_ok(cluster, &["-n", NS, "rollout", "status", target, &timeout]).await?;
            }
        }
        pools_show_ready_backends(cluster).await?;
        marks.push((format!("{what}: every replica routes by the new pool"), Instant::now()));
        tokio::time::sleep(HOLD).await;
    }
    Ok(marks)
}

/// Waits until every running load-balancer pod's `/debug/pool` lists exactly the backends' ready endpoints.
async fn pools_show_ready_backends(cluster: &Cluster) -> Result<()> {
    cluster
        .wait_for(
            "every load-balancer pod to route by the backends' ready endpoints",
            Duration::from_secs(60),
            || async {
                let want: Set =
                    cluster.ready_endpoints(NS, BACKENDS).await?.iter().map(|ip| format!("{ip}:{OTLP_PORT}")).collect();
                let mut differ = Vec::new();
                for pod in lb_pods(cluster, NS, NAME).await? {
                    let ip = cluster.pod_ip(NS, &pod)?;
                    match debug_pool(ip).await {
                        Ok(list) if list.iter().cloned().collect::<Set>() == want => {}
                        Ok(list) => differ.push(format!("{pod}: {list:?}")),
                        Err(e) => differ.push(format!("{pod}: {e:#}")),
                    }
                }
                Ok(if differ.is_empty() {
                    Check::Done(())
                } else {
                    Check::Pending(format!("want {want:?}; {}", differ.join("; ")))
                })
            },
        )
        .await
}

/// Waits until only the [`IN`] current backend pods are left: the others drained, flushed and exited.
async fn replaced_backends_gone(cluster: &Cluster) -> Result<()> {
    cluster
        .wait_for("the replaced backends to drain and exit", DRAIN_LIMIT, || async {
            let pods = cluster.pods(NS, BACKEND_PODS).await?;
            Ok(if pods.len() == IN { Check::Done(()) } else { Check::Pending(format!("{} backend pods", pods.len())) })
        })
        .await
}

/// Publishes the ready endpoints of the load balancer's Service (OTLP gRPC port) every 100 ms until `stop`.
async fn lb_endpoints(cluster: &Cluster, tx: watch::Sender<Vec<SocketAddr>>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if let Ok(ips) = cluster.ready_endpoints(NS, NAME).await {
            let list: Vec<SocketAddr> = ips.into_iter().map(|ip| SocketAddr::from((ip, OTLP_PORT))).collect();
            tx.send_if_modified(|cur| {
                let changed = *cur != list;
                *cur = list;
                changed
            });
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// The warning and error lines, and the peer switches, of the captured load-balancer logs.
fn lb_warnings(dir: &Path) -> String {
    let mut out = Vec::new();
    for pod in std::fs::read_dir(dir).into_iter().flatten().filter_map(|e| e.ok()) {
        for file in std::fs::read_dir(pod.path()).into_iter().flatten().filter_map(|e| e.ok()) {
            let text = std::fs::read(file.path()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            let pod = pod.file_name().to_string_lossy().into_owned();
            out.extend(
                text.lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("switch"))
                    .map(|l| format!("  {pod}: {l}")),
            );
        }
    }
    out.join("\n")
}

/// What reached the backends, against what was acknowledged.
struct Outcome {
    traces: usize,
    split: usize,
    split_examples: Vec<String>,
    lost: usize,
    lost_examples: Vec<(u64, u64)>,
    duplicates: usize,
    foreign: usize,
}

impl Outcome {
    fn of(received: &BTreeMap<String, Vec<e2e::otlp_json::SpanKey>>, sent: &load::Sent) -> Outcome {
        let mut on: HashMap<u64, BTreeSet<&str>> = HashMap::new();
        let mut seen: HashMap<(u64, u64), usize> = HashMap::new();
        let mut foreign = 0;
        for (pod, spans) in received {
            for s in spans {
                match (load::trace_number(&s.trace_id), load::span_numbers(&s.span_id)) {
                    (Some(t), Some((st, k))) if st == t => {
                        on.entry(t).or_default().insert(pod);
                        *seen.entry((t, k)).or_default() += 1;
                    }
                    _ => foreign += 1,
                }
            }
        }
        let split: Vec<String> =
            on.iter().filter(|(_, pods)| pods.len() > 1).map(|(t, pods)| format!("trace {t} on {pods:?}")).collect();
        let lost: Vec<(u64, u64)> = sent.acked.iter().filter(|k| !seen.contains_key(k)).copied().collect();
        Outcome {
            traces: on.len(),
            split: split.len(),
            split_examples: split.into_iter().take(5).collect(),
            lost: lost.len(),
            lost_examples: lost.into_iter().take(5).collect(),
            duplicates: seen.values().filter(|n| **n > 1).count(),
            foreign,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} traces received, {} split, {} acknowledged spans lost, {} spans received more than once, {} spans not of the load",
            self.traces, self.split, self.lost, self.duplicates, self.foreign
        )
    }
}
