//! `otlp-lb-tools loadgen`: sends OTLP traces, metrics or logs at a controlled rate and reports what was delivered.
//!
//! Requests are encoded once before the run (`build`, `template`); each send copies a template and patches trace
//! ids, span ids and timestamps in place, so one core drives far more traffic than a load balancer can route.
//! Workers (`worker`) each hold one connection; `stats` merges their counters into the final report.
//!
//! Stop conditions (the first reached ends the run; none given = `--duration 10s`):
//! * `--duration D`: no new trace (or metrics/logs request) starts after D; chunks of already started traces are
//!   still sent, so with `--trace-spread N` the run lasts up to `(N-1) × --spread-interval` longer.
//! * `--traces N` (traces, logs): exactly N traces (for logs: N traces' worth of correlated records).
//! * `--requests N`: at most N requests in total (with `--trace-spread` the last traces may be incomplete).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use dataplane::signal::Signal;
use tokio::sync::watch;
use tokio::time::Instant;

mod build;
mod ids;
mod stats;
mod template;
mod transport;
mod worker;

#[cfg(test)]
mod tests;

use build::Plan;
use stats::{Report, Stats};
use transport::{Protocol, Target};
use worker::{Budget, Progress, RetryPolicy, Shared};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SignalArg {
    Traces,
    Metrics,
    Logs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    None,
    Gzip,
}

const AFTER_HELP: &str = "\
Stop conditions (the first reached ends the run; none given = --duration 10s):
  --duration D   no new trace (metrics/logs request) starts after D; chunks of started traces are still sent,
                 so with --trace-spread N the run lasts up to (N-1) x --spread-interval longer
  --traces N     exactly N traces (logs: N traces' worth of correlated records, plus uncorrelated ones)
  --requests N   at most N requests (with --trace-spread the last traces may be incomplete)

Report: sent_* count acknowledged requests and their items; errors counts every failed attempt by code
(gRPC code name, HTTP_<status>, TIMEOUT, CONNECTION_ERROR, INTERRUPTED); failed_requests counts requests
given up on. Trace ids are a function of --seed and the trace number: a traces run and a logs run with the
same --seed and --traces carry the same trace ids.";

#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct Args {
    /// Target `host:port` (an `http://` prefix is accepted).
    #[arg(long, default_value = "127.0.0.1:4317")]
    endpoint: String,
    #[arg(long, value_enum, default_value = "grpc")]
    protocol: Protocol,
    #[arg(long, value_enum, default_value = "traces")]
    signal: SignalArg,
    /// Items (spans, data points, log records) per second over all connections; 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Stop starting new work after this long (e.g. `10s`, `2m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many traces (traces and logs).
    #[arg(long)]
    traces: Option<u64>,
    /// Stop after this many requests.
    #[arg(long)]
    requests: Option<u64>,
    #[arg(long, default_value_t = 10)]
    spans_per_trace: u32,
    /// Items per request; a request holds whole traces (or whole chunks of traces) where possible.
    #[arg(long, default_value_t = 100)]
    items_per_request: u32,
    /// Distinct `service.name` values.
    #[arg(long, default_value_t = 5)]
    services: u32,
    /// Concurrent connections, each with one request in flight.
    #[arg(long, default_value_t = 4)]
    connections: u32,
    #[arg(long, value_enum, default_value = "none")]
    compression: Compression,
    /// Seed of trace ids and span ids (random when absent; printed in the report).
    #[arg(long)]
    seed: Option<u64>,
    /// Print the final report as one JSON line.
    #[arg(long)]
    report_json: bool,
    /// Send each trace's spans in this many requests (traces only).
    #[arg(long, default_value_t = 1)]
    trace_spread: u32,
    /// Time between the requests that carry one trace's chunks.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    spread_interval: Duration,
    /// Retry UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, HTTP 429/502/503/504 with backoff.
    #[arg(long)]
    retry: bool,
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    retry_initial: Duration,
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    retry_max_interval: Duration,
    /// Give up on a request after retrying this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    retry_max_elapsed: Duration,
    #[arg(long, default_value_t = 50)]
    retry_max_attempts: u32,
    /// Per-attempt timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Write every trace id delivered (`<hex> <items>` per line) to this file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Distinct template requests (variants of names, services and attributes).
    #[arg(long, default_value_t = 16)]
    pool: u32,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

impl Args {
    fn signal(&self) -> Signal {
        match self.signal {
            SignalArg::Traces => Signal::Traces,
            SignalArg::Metrics => Signal::Metrics,
            SignalArg::Logs => Signal::Logs,
        }
    }

    fn validate(&self) -> Result<()> {
        let positive = [
            ("--spans-per-trace", self.spans_per_trace),
            ("--items-per-request", self.items_per_request),
            ("--services", self.services),
            ("--connections", self.connections),
            ("--trace-spread", self.trace_spread),
            ("--pool", self.pool),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            bail!("{name} must be at least 1");
        }
        if self.connections > 4096 || self.pool > 4096 {
            bail!("--connections and --pool are limited to 4096");
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            bail!("--rate must be a non-negative number");
        }
        if self.signal() != Signal::Traces && self.trace_spread > 1 {
            bail!("--trace-spread applies to traces only");
        }
        if self.trace_spread > self.spans_per_trace {
            bail!("--trace-spread cannot exceed --spans-per-trace");
        }
        if self.signal() == Signal::Metrics && self.traces.is_some() {
            bail!("--traces does not apply to metrics; use --requests or --duration");
        }
        Ok(())
    }
}

/// The share of `total` that worker `w` of `workers` takes (items `g ≡ w mod workers`).
fn share(total: u64, w: u32, workers: u32) -> u64 {
    (total + u64::from(workers) - 1 - u64::from(w)) / u64::from(workers)
}

pub async fn run(args: Args) -> Result<()> {
    args.validate()?;
    let signal = args.signal();
    let seed = args.seed.unwrap_or_else(rand::random);
    let authority = transport::parse_endpoint(&args.endpoint)?;
    let start_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let plan = Plan {
        signal,
        spans_per_trace: args.spans_per_trace,
        items_per_request: args.items_per_request,
        services: args.services,
        spread: args.trace_spread,
        start_ns,
    };
    let layout = plan.layout();
    let pool = (0..args.pool)
        .map(|v| plan.group(v, layout.traces_per_group))
        .collect::<Result<Vec<_>>>()
        .context("building template requests")?;
    let workers = args.connections;
    let duration = match (args.duration, args.traces, args.requests) {
        (None, None, None) => Some(Duration::from_secs(10)),
        (d, _, _) => d,
    };
    let started = Instant::now();
    let shared = Arc::new(Shared {
        plan,
        layout,
        pool,
        ids: ids::IdGen::new(seed),
        workers,
        protocol: args.protocol,
        target: Target {
            authority: authority.clone(),
            signal,
            gzip: args.compression == Compression::Gzip,
            timeout: args.timeout,
        },
        spread_interval: args.spread_interval,
        retry: args.retry.then_some(RetryPolicy {
            initial: args.retry_initial,
            max_interval: args.retry_max_interval,
            max_elapsed: args.retry_max_elapsed,
            max_attempts: args.retry_max_attempts,
        }),
        deadline: duration.map(|d| started + d),
        record: args.record.is_some(),
        progress: Progress::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut handles = Vec::new();
    for w in 0..workers {
        let budget = Budget {
            traces: args.traces.map(|n| share(n, w, workers)),
            requests: args.requests.map(|n| share(n, w, workers)),
            rate: (args.rate > 0.0).then(|| args.rate / f64::from(workers)),
        };
        handles.push(tokio::spawn(worker::run(shared.clone(), w, budget, stop_rx.clone())));
    }
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("loadgen: interrupted, finishing");
            let _ = stop_tx.send(true);
        }
    });
    let progress = (!args.quiet).then(|| tokio::spawn(progress_lines(shared.clone(), signal)));
    let mut total = Stats::default();
    let mut acked = Vec::new();
    for (w, h) in handles.into_iter().enumerate() {
        let result = h.await.context("worker panicked")??;
        total.merge(&result.stats);
        acked.push((w as u64, result.acked));
    }
    let elapsed = started.elapsed();
    ctrl_c.abort();
    if let Some(p) = progress {
        p.abort();
    }
    if let Some(path) = &args.record {
        write_record(path, &shared.ids, workers, &acked).with_context(|| format!("writing {}", path.display()))?;
    }
    let report = Report::new(&total, elapsed, (signal.name(), args.protocol.name(), authority, seed));
    if args.report_json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.text(signal.item_name()));
    }
    Ok(())
}

async fn progress_lines(shared: Arc<Shared>, signal: Signal) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    let (mut last, mut at) = (0u64, Instant::now());
    // Aborted by `run` once the workers are done.
    loop {
        tick.tick().await;
        let p = &shared.progress;
        let items = p.items.load(Ordering::Relaxed);
        let rate = (items - last) as f64 / at.elapsed().as_secs_f64();
        (last, at) = (items, Instant::now());
        eprintln!(
            "loadgen: {items} {} in {} requests, {} failed, {rate:.0}/s",
            signal.item_name(),
            p.requests.load(Ordering::Relaxed),
            p.failed.load(Ordering::Relaxed)
        );
    }
}

/// `<trace id hex> <items delivered>` per trace with at least one item delivered, by global trace index.
fn write_record(path: &std::path::Path, ids: &ids::IdGen, workers: u32, acked: &[(u64, Vec<u32>)]) -> Result<()> {
    let mut rows: Vec<(u64, u32)> = acked
        .iter()
        .flat_map(|(w, counts)| {
            counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(move |(c, n)| (c as u64 * u64::from(workers) + w, *n))
        })
        .collect();
    rows.sort_unstable();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (g, n) in rows {
        writeln!(out, "{} {n}", ids::hex(&ids.trace_id(g)))?;
    }
    out.flush()?;
    Ok(())
}
