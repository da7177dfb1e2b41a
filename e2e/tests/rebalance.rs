//! Rebalancing under load: otlp-lb with the k8s resolver in front
//! of a Deployment of Collector backends that is scaled 3 → 5 → 2 while a
//! steady load of traces, each sent in several requests over several seconds,
//! runs through it.
//!
//! Set-up (fixtures in `e2e/fixtures/rebalance/`): Deployment `backends`
//! (Collectors, OTLP/gRPC receiver → file exporter writing
//! `/data/<pod>.json`, `/data` a hostPath in the run directory so the files of
//! scaled-away backends survive their pods; a pod told to stop drains first:
//! its preStop sleep covers otlp-lb's affinity window while its endpoint is
//! serving and terminating; then on SIGTERM the Collector stops its receiver
//! and flushes and closes the file) behind the headless Service
//! `backends`; otlp-lb (1 replica) with ServiceAccount `otlp-lb`, a Role that
//! may only get/list/watch `discovery.k8s.io` EndpointSlices, and the config
//! `resolver: k8s: {service: backends.default, ports: [4317]}`,
//! `routing: {traces: traceID, affinity_window: 30s}`; readiness on /readyz.
//!
//! The load: `otlp-lb-tools loadgen` from the root namespace to the otlp-lb
//! pod IP, as a rolling series of small runs — one every 250 ms for 30 s, each
//! `--traces 25 --spans-per-trace 10 --trace-spread 4 --spread-interval 1s
//! --connections 1 --retry --record` with its own seed — so 100 traces (1000
//! spans) start per second, and each trace's spans arrive in 4 requests at
//! 0, 1, 2 and 3 s. (A single long `loadgen --rate R --trace-spread 4` run
//! starts its traces in bursts a few seconds long about every 10 s and sends
//! their later chunks up to ~7 s late — see the README — which would leave
//! the 5-backend phase without new traces.) Each run's start and exit times
//! bound the times of its traces.
//!
//! Timeline: load starts; after 5 s the backends are scaled to 5; once 5 are
//! ready and in the ring and 6 s of traffic have passed, they are scaled to 2
//! (the 3 removed pods drain, and leave the ring at once); load keeps starting
//! until 30 s; then the Collectors flush and the removed pods finish draining.
//!
//! Measured and asserted:
//!
//! * **ring update delay** — the test watches the backends' EndpointSlices
//!   itself (kube-runtime watcher), computes the ready set (ready, serving,
//!   not terminating) after every update, and polls otlp-lb's
//!   `GET :8888/debug/pool` every 10 ms until its backend set equals it. The
//!   delay is from the test's receipt of the watch event to the first poll
//!   answer showing that set. An update overtaken by a newer one before the
//!   ring showed it counts with the delay until the ring showed the newer set
//!   (an upper bound). p99 (nearest rank) ≤ 1000 ms.
//! * **no split during scale-out** — window: the traces of the loadgen runs
//!   that started before the ring held all 5 ready backends AND exited
//!   (every request acknowledged) before the scale-in was requested. Such a
//!   trace was routed entirely between the 3-backend ring and the scale-in;
//!   if its spans are in more than one backend's file it was split: 0
//!   allowed. The window includes the traces that straddle the first ring
//!   change of the scale-out (their number is printed and must not be 0).
//! * **no span lost** — every span of every trace that loadgen recorded as
//!   acknowledged is in some backend's file (distinct span ids per trace ≥
//!   acknowledged items), including the files of the backends scaled away;
//!   duplicates (retries) are reported, not failed; loadgen must report 0
//!   failed requests.
//! * **no split during scale-in** — a removed backend drains: it keeps the
//!   traces it holds and takes no new one, so no trace of the whole run is in
//!   more than one backend's file (0 allowed), and none moved from a removed
//!   backend to a surviving one.
//! * the scenario itself: every one of the 5 backends received spans, so the
//!   new ones took new traces.
//!
//! Prints details on stderr and exactly one line on stdout:
//! `rebalance: backends 3->5->2 ring_update_p99_ms=<n> split=<n> lost=<n>`
//! (`split`: traces split over the whole run, scale-out and scale-in)
//! (run with `--nocapture`; `make e2e-rebalance`).
//!
//! Needs root, `make tools` and `cargo build -p dataplane --bins`; fails
//! (never skips) without them. `REBALANCE_LB_LOG` sets otlp-lb's log filter
//! (default `info`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use e2e::ring_watch::{self, RingStats, Set, SliceUpdate};
use e2e::scenario::{fixture, fixture_with, ready_pod_ip, substitute};
use e2e::wait::{self, Check};
use e2e::{Cluster, otlp_json, tools};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, watch};

const NS: &str = "default";
const BACKENDS: &str = "backends";
const LB: &str = "otlp-lb";
const OTLP_PORT: u16 = 4317;
const LB_METRICS_PORT: u16 = 8888;

/// The scale steps.
const START: i32 = 3;
const OUT: i32 = 5;
const IN: i32 = 2;

/// The load: a loadgen run of 25 traces every 250 ms for 30 s (100 traces,
/// 1000 spans per second), each trace in 4 requests 1 s apart.
const BATCH_EVERY: Duration = Duration::from_millis(250);
const BATCH_TRACES: u32 = 25;
const SPANS_PER_TRACE: u32 = 10;
const TRACE_SPREAD: u32 = 4;
const LOAD: Duration = Duration::from_secs(30);
const SEED: u64 = 20_260_505;
/// Steady traffic before the scale-out, at 5 backends, and (at least) after
/// the scale-in.
const BEFORE_OUT: Duration = Duration::from_secs(5);
const HOLD_AT_OUT: Duration = Duration::from_secs(6);
const MIN_AFTER_IN: Duration = Duration::from_secs(4);

/// Bound on the removed pods' drain and shutdown (the fixture's grace period
/// and a margin).
const DRAIN_LIMIT: Duration = Duration::from_secs(90);

const POOL_POLL: Duration = Duration::from_millis(10);
const TAIL_EVERY: Duration = Duration::from_millis(200);
const RING_P99_LIMIT_MS: u64 = 1000;

/// One ring update measured.
struct RingDelay {
    at: Instant,
    from: Set,
    to: Set,
    delay: Duration,
    /// A newer update arrived before the ring showed this one.
    superseded: bool,
}

/// A pool version seen on `/debug/pool`.
#[derive(Clone)]
struct PoolObs {
    at: Instant,
    version: u64,
    set: Set,
    /// `address=share` of each backend.
    shares: String,
}

/// What `/debug/pool` says.
#[derive(Clone, Debug)]
struct PoolView {
    version: u64,
    set: Set,
    resolver: String,
    shares: String,
}

#[derive(Default)]
struct PoolMonitor {
    delays: Vec<RingDelay>,
    timeline: Vec<PoolObs>,
    /// Ready sets the ring never showed.
    unresolved: Vec<(Instant, Set)>,
    polls: u64,
    poll_errors: u64,
    last_error: String,
}

/// What the steps of the scenario recorded.
struct Steps {
    out_requested: Instant,
    out_ready: Instant,
    in_requested: Instant,
    in_done: Instant,
    /// otlp-lb's `/metrics` just before the scale-in.
    metrics_at_out: String,
}

/// One loadgen run of the rolling load.
struct Batch {
    started: Instant,
    ended: Instant,
    report: Value,
    /// Trace id → acknowledged items (`--record`).
    acked: HashMap<String, u64>,
}

impl Batch {
    fn num(&self, key: &str) -> u64 {
        self.report.get(key).and_then(Value::as_u64).unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance() -> Result<()> {
    e2e::init_logging();
    let loadgen = tools::otlp_lb_tools_bin()?;
    let started = Instant::now();
    let cluster = Cluster::start().await?;
    let res = scenario(&cluster, &loadgen).await;
    let res = cluster.finish(res).await;
    eprintln!("rebalance: test took {:.1}s", started.elapsed().as_secs_f64());
    res
}

async fn scenario(cluster: &Cluster, loadgen: &Path) -> Result<()> {
    let t_setup = Instant::now();
    let data_dir = cluster.run_dir().join("backend-data");
    let record_dir = cluster.run_dir().join("loadgen");
    for d in [&data_dir, &record_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    // The backends run as the Collector image's user: their hostPath must be writable to it.
    std::fs::set_permissions(&data_dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;

    // Backends, then otlp-lb with the k8s resolver.
    let yaml = fixture_with(
        "rebalance/backends.yaml",
        &[("REPLICAS", START.to_string()), ("DATA_DIR", data_dir.display().to_string())],
    )?;
    cluster.apply_yaml_in(NS, &yaml).await?;
    cluster.wait_deployment_ready(NS, BACKENDS, START, Duration::from_secs(120)).await?;
    let ips = cluster.wait_ready_endpoints(NS, BACKENDS, START as usize, Duration::from_secs(60)).await?;
    let yaml = fixture_with(
        "rebalance/otlp-lb.yaml",
        &[
            ("NAMESPACE", NS.to_string()),
            ("LB_LOG", std::env::var("REBALANCE_LB_LOG").unwrap_or_else(|_| "info".into())),
        ],
    )?;
    cluster.apply_yaml_in(NS, &yaml).await?;
    cluster.wait_deployment_ready(NS, LB, 1, Duration::from_secs(90)).await?;
    let (lb_pod, lb_ip) = ready_pod_ip(cluster, LB).await?;
    let pool_addr = SocketAddr::from((lb_ip, LB_METRICS_PORT));
    let want = addresses(&ips);
    let first = wait::until(
        "otlp-lb's /debug/pool to list the 3 backends",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            Ok(match get_pool(pool_addr).await {
                Ok(p) if p.set == want => Check::Done(p),
                Ok(p) => Check::Pending(format!("{p:?}")),
                Err(e) => Check::Pending(format!("{e:#}")),
            })
        },
    )
    .await?;
    ensure!(first.resolver == "k8s", "otlp-lb reports resolver {:?}, not k8s", first.resolver);
    eprintln!(
        "rebalance: {START} backends {ips:?} and otlp-lb {lb_pod} ({lb_ip}) ready after {:.1}s",
        t_setup.elapsed().as_secs_f64()
    );

    // Monitors: the EndpointSlice watch, the /debug/pool poller, the file tailer.
    let (updates_tx, updates_rx) = mpsc::unbounded_channel();
    let slice_events = Arc::new(AtomicU64::new(0));
    let watch_task = tokio::spawn(ring_watch::watch_ready(
        cluster.client(),
        NS,
        BACKENDS,
        OTLP_PORT,
        updates_tx,
        slice_events.clone(),
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (pool_tx, pool_rx) = watch::channel(first.clone());
    let poll_task = tokio::spawn(poll_pool(pool_addr, updates_rx, pool_tx, stop_rx));
    let tail_stop = Arc::new(AtomicBool::new(false));
    let tailed = Arc::new(AtomicU64::new(0));
    let tail_task = {
        let (dir, stop, tailed) = (data_dir.clone(), tail_stop.clone(), tailed.clone());
        tokio::task::spawn_blocking(move || count_spans(&dir, &stop, &tailed))
    };

    // The load and, while it runs, the scale steps.
    let t0 = Instant::now();
    let endpoint = format!("{lb_ip}:{OTLP_PORT}");
    let load = rolling_load(cluster, loadgen, &endpoint, &record_dir, t0);
    let steps = scale_steps(cluster, t0, pool_rx, pool_addr);
    let (batches, steps) = tokio::try_join!(load, steps)?;
    let load_end = batches.iter().map(|b| b.ended).max().unwrap_or(t0);
    let sum = |k: &str| batches.iter().map(|b| b.num(k)).sum::<u64>();
    let (sent_items, failed_requests) = (sum("sent_items"), sum("failed_requests"));
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for b in &batches {
        for (code, n) in b.report.get("errors").and_then(Value::as_object).into_iter().flatten() {
            *errors.entry(code.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
    }
    let max_latency_ms =
        batches.iter().filter_map(|b| b.report.get("max_ms").and_then(Value::as_f64)).fold(0.0, f64::max);
    eprintln!(
        "rebalance: loadgen: {} runs, {} traces, {sent_items} spans in {} requests acknowledged, {failed_requests} requests failed, {} retries, errors {errors:?}, max latency {max_latency_ms:.0} ms",
        batches.len(),
        sum("traces"),
        sum("sent_requests"),
        sum("retries"),
    );

    // Let the Collectors flush: everything acknowledged is in the files and
    // nothing more arrives for 2 s (bounded; a shortfall is reported as lost).
    let mut last = (tailed.load(Ordering::SeqCst), Instant::now());
    let flush_deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < flush_deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let n = tailed.load(Ordering::SeqCst);
        if n != last.0 {
            last = (n, Instant::now());
        } else if n >= sent_items && last.1.elapsed() >= Duration::from_secs(2) {
            break;
        }
    }
    removed_pods_gone(cluster).await?;
    let _ = stop_tx.send(true);
    tail_stop.store(true, Ordering::SeqCst);
    watch_task.abort();
    let monitor = poll_task.await.context("pool poller")?;
    tail_task.await.context("file tailer")??;

    // What the backends wrote, per backend (pod) file.
    let mut per_backend: BTreeMap<String, Vec<otlp_json::SpanKey>> = BTreeMap::new();
    for entry in std::fs::read_dir(&data_dir)? {
        let path = entry?.path();
        let Some(name) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        let text = String::from_utf8_lossy(&std::fs::read(&path)?).into_owned();
        per_backend
            .insert(name, otlp_json::spans_in_text(&text).with_context(|| format!("parsing {}", path.display()))?);
    }
    let survivors: BTreeSet<String> =
        cluster.pods(NS, &format!("app={BACKENDS}")).await?.into_iter().filter_map(|p| p.metadata.name).collect();

    let analysis = Analysis::new(&per_backend, &survivors, &batches, &steps, &monitor);
    let ring = RingStats::of(monitor.delays.iter().map(|d| d.delay.as_millis() as u64).collect());

    // Details (stderr).
    let rel = |t: Instant| t.saturating_duration_since(t0).as_secs_f64();
    eprintln!("rebalance: timeline (s since the load started):");
    eprintln!(
        "  scale to {OUT} requested {:.2}; ring held all {OUT} ready backends {:.2}",
        rel(steps.out_requested),
        rel(steps.out_ready)
    );
    eprintln!(
        "  scale to {IN} requested {:.2}; ring held {IN} (the removed pods draining) {:.2}; last loadgen run started {:.2}, ended {:.2}",
        rel(steps.in_requested),
        rel(steps.in_done),
        rel(batches.iter().map(|b| b.started).max().unwrap_or(t0)),
        rel(load_end)
    );
    for o in &monitor.timeline {
        eprintln!(
            "  {:.3} /debug/pool version {} with {} backends (shares {})",
            rel(o.at),
            o.version,
            o.set.len(),
            o.shares
        );
    }
    eprintln!(
        "rebalance: ring updates (EndpointSlice ready-set change -> /debug/pool equal; {} slice events, {} polls, {} poll errors{}):",
        slice_events.load(Ordering::SeqCst),
        monitor.polls,
        monitor.poll_errors,
        if monitor.poll_errors > 0 { format!(", last: {}", monitor.last_error) } else { String::new() }
    );
    for d in &monitor.delays {
        eprintln!(
            "  {:.3} {} -> {} backends (+{:?} -{:?}): {} ms{}",
            rel(d.at),
            d.from.len(),
            d.to.len(),
            d.to.difference(&d.from).collect::<Vec<_>>(),
            d.from.difference(&d.to).collect::<Vec<_>>(),
            d.delay.as_millis(),
            if d.superseded {
                " (superseded by a newer update; delay until the ring showed the newer set)"
            } else {
                ""
            }
        );
    }
    for (at, set) in &monitor.unresolved {
        eprintln!("  {:.3} ready set {set:?}: NEVER shown by /debug/pool", rel(*at));
    }
    eprintln!(
        "rebalance: ring update delays ms {:?}: p50={} p99={} max={}",
        ring.sorted_ms, ring.p50_ms, ring.p99_ms, ring.max_ms
    );
    let metrics_at_end = http_get(pool_addr, "/metrics").await.unwrap_or_else(|e| format!("GET /metrics: {e:#}"));
    for (when, text) in [("before the scale-in", &steps.metrics_at_out), ("at the end", &metrics_at_end)] {
        eprintln!("rebalance: otlp-lb per-backend metrics {when}:\n{}", backend_metrics(text));
    }
    eprintln!(
        "rebalance: otlp-lb log (pool changes, warnings):\n{}",
        cluster
            .logs(NS, &lb_pod)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("backend pool changed") || l.contains("WARN") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (name, spans) in &per_backend {
        let state = if survivors.contains(name) {
            "kept".to_string()
        } else {
            // The kubelet removes a deleted pod's logs with it.
            let collector = match cluster.logs(NS, name) {
                Err(_) => "logs gone with the pod",
                Ok(log) if log.contains("Shutdown complete") => "shut down cleanly (Shutdown complete)",
                Ok(_) => "did NOT log `Shutdown complete`",
            };
            format!("scaled away; collector {collector}")
        };
        let traces: HashSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
        eprintln!("rebalance: backend {name}: {} spans, {} traces ({state})", spans.len(), traces.len());
    }
    eprintln!("rebalance: {analysis}");

    let line = format!(
        "rebalance: backends {START}->{OUT}->{IN} ring_update_p99_ms={} split={} lost={}",
        ring.p99_ms, analysis.split_all, analysis.lost
    );
    println!("{line}");

    // Assertions: the scenario happened as planned, then the outcomes.
    let mut failures = Vec::new();
    let last_start = t0 + LOAD;
    if last_start.saturating_duration_since(steps.in_done) < MIN_AFTER_IN {
        failures.push(format!(
            "traces kept starting only {:.1}s after the scale-in completed (want >= {MIN_AFTER_IN:?}): the steps took too long",
            last_start.saturating_duration_since(steps.in_done).as_secs_f64(),
        ));
    }
    if per_backend.len() != OUT as usize {
        // The 3 first backends and the 2 added: one file each.
        failures.push(format!(
            "expected {OUT} backend files, found {}: {:?}",
            per_backend.len(),
            per_backend.keys().collect::<Vec<_>>()
        ));
    }
    for (name, spans) in &per_backend {
        if spans.is_empty() {
            failures.push(format!("backend {name} received no span"));
        }
    }
    if analysis.straddling == 0 {
        failures.push("no trace straddled the scale-out: the window tests nothing".into());
    }
    if ring.sorted_ms.is_empty() {
        failures.push("no ring update was measured".into());
    }
    if !monitor.unresolved.is_empty() {
        failures.push(format!("{} EndpointSlice ready sets never showed in /debug/pool", monitor.unresolved.len()));
    }
    if ring.p99_ms > RING_P99_LIMIT_MS {
        failures
            .push(format!("ring update p99 {} ms > {RING_P99_LIMIT_MS} ms (delays {:?})", ring.p99_ms, ring.sorted_ms));
    }
    if analysis.split_out > 0 {
        failures.push(format!(
            "{} traces split across backends during scale-out, e.g. {:?}",
            analysis.split_out, analysis.split_examples
        ));
    }
    if analysis.lost > 0 {
        failures.push(format!(
            "{} acknowledged spans lost in {} traces, e.g. {:?}",
            analysis.lost, analysis.lost_traces, analysis.lost_examples
        ));
    }
    if failed_requests > 0 {
        failures.push(format!("loadgen gave up on {failed_requests} requests (errors {errors:?})"));
    }
    if analysis.split_all > analysis.split_out {
        failures.push(format!(
            "{} traces split across backends outside the scale-out window (a removed backend must drain), e.g. {:?}",
            analysis.split_all - analysis.split_out,
            analysis.split_all_examples
        ));
    }
    if analysis.moved_in > 0 {
        failures.push(format!(
            "{} traces moved from a removed backend to a surviving one (a removed backend must keep its traces)",
            analysis.moved_in
        ));
    }
    if analysis.inconsistent > 0 {
        failures.push(format!(
            "{} traces landed on more than one surviving backend (scale-in must move a trace to one new owner), e.g. {:?}",
            analysis.inconsistent, analysis.inconsistent_examples
        ));
    }
    if !failures.is_empty() {
        bail!("rebalance failed:\n- {}", failures.join("\n- "));
    }
    Ok(())
}

/// The steady load: a loadgen run of `BATCH_TRACES` traces every
/// `BATCH_EVERY` from `t0` until `t0 + LOAD`, each with its own seed (so its
/// own trace ids) and record file. With one connection and fewer traces than
/// a request holds, each run sends its traces' 4 chunks on time, 1 s apart.
async fn rolling_load(
    cluster: &Cluster,
    loadgen: &Path,
    endpoint: &str,
    dir: &Path,
    t0: Instant,
) -> Result<Vec<Batch>> {
    let mut running = FuturesUnordered::new();
    let mut done = Vec::new();
    let mut i: u32 = 0;
    loop {
        let next = t0 + BATCH_EVERY * i;
        if next >= t0 + LOAD {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {}
            Some(batch) = running.next(), if !running.is_empty() => {
                done.push(batch?);
                continue;
            }
        }
        let record = dir.join(format!("run-{i:03}.txt"));
        let args: Vec<String> = [
            "loadgen",
            "--endpoint",
            endpoint,
            "--traces",
            &BATCH_TRACES.to_string(),
            "--rate",
            "0",
            "--spans-per-trace",
            &SPANS_PER_TRACE.to_string(),
            "--trace-spread",
            &TRACE_SPREAD.to_string(),
            "--spread-interval",
            "1s",
            "--connections",
            "1",
            "--retry",
            "--seed",
            &(SEED + u64::from(i)).to_string(),
            "--report-json",
            "--quiet",
            "--record",
            &record.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let started = Instant::now();
        running.push(async move {
            let out = cluster
                .exec_on_host(loadgen, &args, Duration::from_secs(120))
                .await?
                .check(&format!("loadgen run {i}"))?;
            let ended = Instant::now();
            let report: Value = out
                .stdout
                .lines()
                .rev()
                .find_map(|l| serde_json::from_str(l.trim()).ok())
                .with_context(|| format!("no JSON report from loadgen run {i}:\n{}", out.stdout))?;
            anyhow::Ok(Batch { started, ended, report, acked: read_record(&record)? })
        });
        i += 1;
    }
    while let Some(batch) = running.next().await {
        done.push(batch?);
    }
    done.sort_by_key(|b| b.started);
    Ok(done)
}

/// Scale 3 → 5, wait until 5 are ready and in the ring, hold, scale to 2,
/// wait until the ring holds 2 (the removed pods drain meanwhile).
async fn scale_steps(cluster: &Cluster, t0: Instant, pool: watch::Receiver<PoolView>, lb: SocketAddr) -> Result<Steps> {
    tokio::time::sleep_until((t0 + BEFORE_OUT).into()).await;
    let out_requested = Instant::now();
    cluster.scale_deployment(NS, BACKENDS, OUT).await?;
    cluster.wait_deployment_ready(NS, BACKENDS, OUT, Duration::from_secs(90)).await?;
    let ips = cluster.wait_ready_endpoints(NS, BACKENDS, OUT as usize, Duration::from_secs(30)).await?;
    let out_ready = ring_holds(&pool, &addresses(&ips)).await?;
    tokio::time::sleep_until((out_ready + HOLD_AT_OUT).into()).await;
    let metrics_at_out = http_get(lb, "/metrics").await.unwrap_or_else(|e| format!("GET /metrics: {e:#}"));

    let in_requested = Instant::now();
    cluster.scale_deployment(NS, BACKENDS, IN).await?;
    cluster.wait_deployment_ready(NS, BACKENDS, IN, Duration::from_secs(90)).await?;
    let ips = cluster.wait_ready_endpoints(NS, BACKENDS, IN as usize, Duration::from_secs(30)).await?;
    let in_done = ring_holds(&pool, &addresses(&ips)).await?;
    Ok(Steps { out_requested, out_ready, in_requested, in_done, metrics_at_out })
}

/// Waits until the scaled-away backends' pods have drained and are gone (their
/// Collectors flushed and closed their files).
async fn removed_pods_gone(cluster: &Cluster) -> Result<()> {
    cluster
        .wait_for(
            &format!("the scaled-away backends' pods to drain and be gone (only {IN} left)"),
            DRAIN_LIMIT,
            || async {
                let pods = cluster.pods(NS, &format!("app={BACKENDS}")).await?;
                Ok(if pods.len() == IN as usize {
                    Check::Done(())
                } else {
                    Check::Pending(format!("{} pods", pods.len()))
                })
            },
        )
        .await
}

/// Waits until the poller has seen `/debug/pool` list exactly `want`;
/// returns when it first did.
async fn ring_holds(pool: &watch::Receiver<PoolView>, want: &Set) -> Result<Instant> {
    let mut rx = pool.clone();
    let wait = async {
        loop {
            if rx.borrow_and_update().set == *want {
                return Instant::now();
            }
            if rx.changed().await.is_err() {
                return Instant::now();
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(30), wait).await {
        Ok(t) if rx.borrow().set == *want => Ok(t),
        _ => bail!("timed out waiting for /debug/pool to hold {want:?}; it holds {:?}", rx.borrow().set),
    }
}

/// The per-backend lines of a Prometheus text page (no histogram buckets).
fn backend_metrics(text: &str) -> String {
    text.lines()
        .filter(|l| l.contains("endpoint=") && !l.contains("_bucket"))
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn addresses(ips: &[Ipv4Addr]) -> Set {
    ips.iter().map(|ip| format!("{ip}:{OTLP_PORT}")).collect()
}

/// Polls `/debug/pool` every 10 ms until stopped: publishes what it shows and
/// times how long each ready-set change takes to show.
async fn poll_pool(
    addr: SocketAddr,
    mut updates: mpsc::UnboundedReceiver<SliceUpdate>,
    state: watch::Sender<PoolView>,
    mut stop: watch::Receiver<bool>,
) -> PoolMonitor {
    let mut m = PoolMonitor::default();
    let mut pending: Vec<SliceUpdate> = Vec::new();
    let mut tick = tokio::time::interval(POOL_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        m.polls += 1;
        let res = get_pool(addr).await;
        let now = Instant::now();
        while let Ok(u) = updates.try_recv() {
            pending.push(u);
        }
        let view = match res {
            Ok(p) => p,
            Err(e) => {
                m.poll_errors += 1;
                m.last_error = format!("{e:#}");
                continue;
            }
        };
        if m.timeline.last().map(|o| o.version) != Some(view.version) {
            m.timeline.push(PoolObs {
                at: now,
                version: view.version,
                set: view.set.clone(),
                shares: view.shares.clone(),
            });
        }
        if let Some(i) = pending.iter().rposition(|u| u.ready == view.set) {
            for (j, u) in pending.drain(..=i).enumerate() {
                // The first set is the initial listing: already in the ring
                // before the watch started, nothing to time.
                let Some(from) = u.previous else { continue };
                m.delays.push(RingDelay {
                    at: u.at,
                    from,
                    to: u.ready,
                    delay: now.saturating_duration_since(u.at),
                    superseded: j < i,
                });
            }
        }
        state.send_replace(view);
    }
    m.unresolved = pending.into_iter().map(|u| (u.at, u.ready)).collect();
    m
}

/// `GET /debug/pool`.
async fn get_pool(addr: SocketAddr) -> Result<PoolView> {
    let body = http_get(addr, "/debug/pool").await?;
    let v: Value = serde_json::from_str(&body).with_context(|| format!("parsing {body:?}"))?;
    let version = v.get("version").and_then(Value::as_u64).context("no version")?;
    let backends = v.get("backends").and_then(Value::as_array).context("no backends")?;
    let set = backends.iter().filter_map(|b| b.get("address").and_then(Value::as_str)).map(str::to_string).collect();
    let shares = backends
        .iter()
        .map(|b| {
            format!(
                "{}={:.3}",
                b.get("address").and_then(Value::as_str).unwrap_or("?"),
                b.get("share").and_then(Value::as_f64).unwrap_or(f64::NAN)
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    let resolver = v.get("resolver").and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(PoolView { version, set, resolver, shares })
}

/// A minimal HTTP/1.1 GET (one connection per request); the body of a 200.
async fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .with_context(|| format!("GET http://{addr}{path} timed out"))??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").with_context(|| format!("bad HTTP response {text:?}"))?;
    ensure!(head.starts_with("HTTP/1.1 200"), "GET {path}: {}", head.lines().next().unwrap_or_default());
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
            if n == 0 {
                break;
            }
            out.push_str(tail.get(..n).context("short chunk")?);
            rest = tail.get(n + 2..).unwrap_or_default();
        }
        return Ok(out);
    }
    Ok(body.to_string())
}

/// Counts the spans written to the files in `dir` (reading only what was
/// appended since the last pass) into `spans`, until `stop`.
fn count_spans(dir: &Path, stop: &AtomicBool, spans: &AtomicU64) -> Result<()> {
    let mut offsets: HashMap<PathBuf, u64> = HashMap::new();
    let mut total = 0u64;
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if !path.is_file() {
                continue;
            }
            let off = offsets.entry(path.clone()).or_insert(0);
            let mut f = std::fs::File::open(&path)?;
            f.seek(SeekFrom::Start(*off))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            // Only complete lines; a partly written one waits for the next pass.
            let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..=end]);
            total +=
                otlp_json::spans_in_text(&text).with_context(|| format!("parsing {}", path.display()))?.len() as u64;
            *off += end as u64 + 1;
        }
        spans.store(total, Ordering::SeqCst);
        if stopping {
            return Ok(());
        }
        std::thread::sleep(TAIL_EVERY);
    }
}

/// `--record` output: trace id → acknowledged items.
fn read_record(path: &Path) -> Result<HashMap<String, u64>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (id, n) = line.split_once(' ').with_context(|| format!("bad record line {line:?}"))?;
        out.insert(id.to_ascii_lowercase(), n.trim().parse()?);
    }
    Ok(out)
}

/// The outcome in numbers.
#[derive(Default)]
struct Analysis {
    traces: usize,
    total_spans: usize,
    distinct_spans: usize,
    duplicates: usize,
    acked_traces: usize,
    acked_spans: u64,
    lost: u64,
    lost_traces: usize,
    lost_examples: Vec<String>,
    /// Traces in the files that loadgen did not record as acknowledged.
    unrecorded_traces: usize,
    /// Traces of the scale-out window, those split, and those straddling the
    /// first ring change of the scale-out.
    window: usize,
    split_out: usize,
    split_examples: Vec<(String, Vec<String>)>,
    straddling: usize,
    /// Traces that started while the ring held 5 and ended before the
    /// scale-in, and how many of them went to the 2 added backends.
    during_out: usize,
    during_out_on_new: usize,
    /// Split traces over the whole run (scale-in moves included).
    split_all: usize,
    split_all_examples: Vec<(String, Vec<String>)>,
    /// Traces with spans on a removed backend and on a surviving one.
    moved_in: usize,
    inconsistent: usize,
    inconsistent_examples: Vec<(String, Vec<String>)>,
}

impl Analysis {
    fn new(
        per_backend: &BTreeMap<String, Vec<otlp_json::SpanKey>>,
        survivors: &BTreeSet<String>,
        batches: &[Batch],
        steps: &Steps,
        monitor: &PoolMonitor,
    ) -> Analysis {
        let mut a = Analysis::default();
        // trace → (backends, distinct span ids)
        let mut traces: HashMap<&str, (BTreeSet<&str>, HashSet<&str>)> = HashMap::new();
        for (backend, spans) in per_backend {
            for s in spans {
                let t = traces.entry(s.trace_id.as_str()).or_default();
                t.0.insert(backend.as_str());
                t.1.insert(s.span_id.as_str());
                a.total_spans += 1;
            }
        }
        a.traces = traces.len();
        a.distinct_spans = traces.values().map(|t| t.1.len()).sum();
        a.duplicates = a.total_spans - a.distinct_spans;
        // The backends that were in the pool before the scale-out: the first
        // ring's addresses are not pod names, so tell them apart by what the
        // backends received before the scale-out instead.
        let first_out_change = monitor
            .timeline
            .iter()
            .find(|o| o.at >= steps.out_requested && o.set.len() != START as usize)
            .map_or(steps.out_ready, |o| o.at);
        let mut original: BTreeSet<&str> = BTreeSet::new();
        for b in batches.iter().filter(|b| b.ended < steps.out_requested) {
            for id in b.acked.keys() {
                if let Some(t) = traces.get(id.as_str()) {
                    original.extend(t.0.iter().copied());
                }
            }
        }
        for b in batches {
            let in_window = b.started < steps.out_ready && b.ended < steps.in_requested;
            let straddles = b.started < first_out_change && b.ended > first_out_change;
            let during_out = b.started >= steps.out_ready && b.ended < steps.in_requested;
            for (id, acked) in &b.acked {
                a.acked_traces += 1;
                a.acked_spans += acked;
                let t = traces.get(id.as_str());
                let found = t.map_or(0, |t| t.1.len()) as u64;
                if found < *acked {
                    a.lost += acked - found;
                    a.lost_traces += 1;
                    if a.lost_examples.len() < 5 {
                        a.lost_examples.push(format!("{id}: {found} of {acked} acknowledged spans"));
                    }
                }
                let Some((backends, _)) = t else { continue };
                if in_window {
                    a.window += 1;
                    if straddles {
                        a.straddling += 1;
                    }
                    if backends.len() > 1 {
                        a.split_out += 1;
                        if a.split_examples.len() < 5 {
                            a.split_examples.push((id.clone(), backends.iter().map(|b| b.to_string()).collect()));
                        }
                    }
                }
                if during_out {
                    a.during_out += 1;
                    if backends.iter().all(|b| !original.contains(b)) {
                        a.during_out_on_new += 1;
                    }
                }
            }
        }
        let recorded: HashSet<&str> = batches.iter().flat_map(|b| b.acked.keys().map(String::as_str)).collect();
        a.unrecorded_traces = traces.keys().filter(|t| !recorded.contains(**t)).count();
        for (id, (backends, _)) in &traces {
            if backends.len() > 1 {
                a.split_all += 1;
                if a.split_all_examples.len() < 5 {
                    a.split_all_examples.push((id.to_string(), backends.iter().map(|b| b.to_string()).collect()));
                }
            }
            let on_survivors = backends.iter().filter(|b| survivors.contains(**b)).count();
            if on_survivors >= 1 && on_survivors < backends.len() {
                a.moved_in += 1;
            }
            if on_survivors > 1 {
                a.inconsistent += 1;
                if a.inconsistent_examples.len() < 5 {
                    a.inconsistent_examples.push((id.to_string(), backends.iter().map(|b| b.to_string()).collect()));
                }
            }
        }
        a
    }
}

impl std::fmt::Display for Analysis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "spans: {} acknowledged in {} traces; in the files {} ({} distinct, {} duplicates) in {} traces; \
             lost {} in {} traces; traces in the files not acknowledged: {}\n\
             rebalance: scale-out window: {} traces (loadgen run started before the ring held {OUT}, ended before the scale-in request), \
             {} straddling the first scale-out ring change, {} split; \
             {} traces started and ended at {OUT} backends, {} of them on the added backends\n\
             rebalance: scale-in: {} traces moved from a removed backend to a surviving one, {} on more than one surviving backend; \
             split over the whole run: {}",
            self.acked_spans,
            self.acked_traces,
            self.total_spans,
            self.distinct_spans,
            self.duplicates,
            self.traces,
            self.lost,
            self.lost_traces,
            self.unrecorded_traces,
            self.window,
            self.straddling,
            self.split_out,
            self.during_out,
            self.during_out_on_new,
            self.moved_in,
            self.inconsistent,
            self.split_all
        )
    }
}

#[test]
fn fixtures_parse_after_substitution() {
    let yaml = substitute(
        &fixture("rebalance/backends.yaml").unwrap(),
        &[("REPLICAS", "3".into()), ("DATA_DIR", "/tmp/x".into())],
    );
    let objs = e2e::apply::parse_yaml(&yaml).unwrap();
    assert_eq!(objs.len(), 3);
    assert!(yaml.contains("/data/${env:POD_NAME}.json"));
    let yaml = substitute(
        &fixture("rebalance/otlp-lb.yaml").unwrap(),
        &[("NAMESPACE", NS.into()), ("LB_LOG", "info".into()), ("OTLP_LB_IMAGE", "otlp-lb:1".into())],
    );
    assert!(!yaml.contains("${"), "{yaml}");
    let objs = e2e::apply::parse_yaml(&yaml).unwrap();
    let kinds: Vec<&str> = objs.iter().filter_map(|o| o.types.as_ref().map(|t| t.kind.as_str())).collect();
    assert_eq!(kinds, ["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment"]);
    let role = &objs[1].data["rules"];
    assert_eq!(
        role,
        &serde_json::json!([{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}])
    );
}
