//! One worker = one connection with one request in flight. It starts groups of traces, sends their later chunks
//! when due (`--trace-spread`), paces itself to its share of `--rate`, retries like an OTLP exporter, and counts.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use super::build::{Layout, Plan};
use super::ids::{IdGen, mix64};
use super::stats::Stats;
use super::template::Template;
use super::transport::{Client, Protocol, Target};

/// Exporter-style retry with exponential backoff and jitter, bounded in attempts and time.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max_interval: Duration,
    pub max_elapsed: Duration,
    pub max_attempts: u32,
}

/// Live totals for progress lines.
#[derive(Debug, Default)]
pub struct Progress {
    pub items: AtomicU64,
    pub requests: AtomicU64,
    pub failed: AtomicU64,
}

/// What every worker shares.
pub struct Shared {
    pub plan: Plan,
    pub layout: Layout,
    /// Full-group templates: `pool[variant][chunk]`.
    pub pool: Vec<Vec<Template>>,
    pub ids: IdGen,
    pub workers: u32,
    pub protocol: Protocol,
    pub target: Target,
    pub spread_interval: Duration,
    pub retry: Option<RetryPolicy>,
    /// No new group starts after this instant.
    pub deadline: Option<Instant>,
    pub record: bool,
    pub progress: Progress,
}

/// A worker's share of the stop conditions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Budget {
    pub traces: Option<u64>,
    pub requests: Option<u64>,
    /// Items per second; `None` = as fast as possible.
    pub rate: Option<f64>,
}

/// What a worker hands back.
pub struct WorkerResult {
    pub stats: Stats,
    /// Acknowledged items per local trace number (only with `--record`).
    pub acked: Vec<u32>,
}

struct Group {
    variant: usize,
    first: u64,
    traces: Vec<u64>,
    own: Option<Vec<Template>>,
    acked: u32,
    failed: u32,
}

struct Pending {
    due: Instant,
    group: u64,
    chunk: u32,
}

/// Keeps a worker at its share of the rate; after a stall it catches up for at most `SLACK`.
struct Pacer {
    secs_per_item: Option<f64>,
    next: Instant,
}

const SLACK: Duration = Duration::from_millis(100);

impl Pacer {
    async fn wait(&mut self, items: u32) {
        let Some(per_item) = self.secs_per_item else { return };
        let now = Instant::now();
        if self.next + SLACK < now {
            self.next = now;
        }
        if self.next > now {
            tokio::time::sleep_until(self.next).await;
        }
        self.next += Duration::from_secs_f64(per_item * f64::from(items));
    }
}

/// Runs worker `w` until its budget, the deadline or the stop signal ends it.
pub async fn run(shared: Arc<Shared>, w: u32, budget: Budget, mut stop: watch::Receiver<bool>) -> Result<WorkerResult> {
    let s = &*shared;
    let mut worker = Worker {
        client: Client::new(s.protocol, &s.target)?,
        stats: Stats::default(),
        acked: Vec::new(),
        jitter: mix64(u64::from(w) ^ 0x6a69),
        last_time: 0,
    };
    let mut pacer = Pacer { secs_per_item: budget.rate.filter(|r| *r > 0.0).map(|r| 1.0 / r), next: Instant::now() };
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut groups: HashMap<u64, Group> = HashMap::new();
    let (mut next_group, mut next_trace, mut requests) = (0u64, 0u64, 0u64);
    let mut starting = true;
    loop {
        if *stop.borrow() || budget.requests.is_some_and(|n| requests >= n) {
            break;
        }
        let now = Instant::now();
        let traces_left = budget.traces.map(|n| n.saturating_sub(next_trace));
        if s.deadline.is_some_and(|d| now >= d) || traces_left == Some(0) {
            starting = false;
        }
        let job = if pending.front().is_some_and(|p| p.due <= now) {
            pending.pop_front()
        } else if starting {
            let per_group = u64::from(s.layout.traces_per_group);
            let n = traces_left.map_or(per_group, |left| left.min(per_group));
            let variant = (next_group % s.pool.len().max(1) as u64) as usize;
            let own = if n < per_group { Some(s.plan.group(variant as u32, n as u32)?) } else { None };
            let traces = (0..n).map(|i| (next_trace + i) * u64::from(s.workers) + u64::from(w)).collect();
            groups.insert(next_group, Group { variant, first: next_trace, traces, own, acked: 0, failed: 0 });
            for chunk in 1..s.layout.chunks {
                pending.push_back(Pending { due: now + s.spread_interval * chunk, group: next_group, chunk });
            }
            next_trace += n;
            next_group += 1;
            Some(Pending { due: now, group: next_group - 1, chunk: 0 })
        } else if let Some(p) = pending.front() {
            let due = p.due;
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
            continue;
        } else {
            break;
        };
        let Some(job) = job else { continue };
        let Some(group) = groups.get_mut(&job.group) else { continue };
        let Some(templates) = group.own.as_ref().or_else(|| s.pool.get(group.variant)) else { continue };
        let Some(template) = templates.get(job.chunk as usize) else { continue };
        tokio::select! {
            () = pacer.wait(template.items) => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        let body = template.instantiate(&s.ids, &group.traces, worker.timestamp(s.workers, w));
        requests += 1;
        let ok = tokio::select! {
            r = worker.deliver(s, body) => r,
            _ = stop.wait_for(|stopped| *stopped) => {
                // Interrupted in flight: the receiver may or may not have it; count it as failed.
                *worker.stats.errors.entry("INTERRUPTED".into()).or_default() += 1;
                false
            }
        };
        worker.account(s, template, group.first, ok);
        if ok {
            group.acked += 1
        } else {
            group.failed += 1
        }
        if group.acked + group.failed == s.layout.chunks {
            let n = group.traces.len() as u64;
            match (group.acked, group.failed) {
                (_, 0) => worker.stats.traces_complete += n,
                (0, _) => worker.stats.traces_failed += n,
                _ => worker.stats.traces_incomplete += n,
            }
            groups.remove(&job.group);
        }
    }
    // Groups cut short (stop signal or request budget) are incomplete if anything of them arrived, failed if
    // everything sent failed, and not counted if nothing was sent.
    for g in groups.values().filter(|g| g.acked + g.failed > 0) {
        let n = g.traces.len() as u64;
        if g.acked > 0 { worker.stats.traces_incomplete += n } else { worker.stats.traces_failed += n }
    }
    Ok(WorkerResult { stats: worker.stats, acked: worker.acked })
}

struct Worker {
    client: Client,
    stats: Stats,
    acked: Vec<u32>,
    jitter: u64,
    last_time: u64,
}

impl Worker {
    /// A wall-clock timestamp unique to this request among all workers: ≡ w (mod workers), increasing.
    fn timestamp(&mut self, workers: u32, w: u32) -> u64 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let (n, w) = (u64::from(workers.max(1)), u64::from(w));
        let t = (now / n * n + w).max(self.last_time + n);
        self.last_time = t;
        t
    }

    /// Sends one request, retrying per the policy; true when it was acknowledged.
    async fn deliver(&mut self, s: &Shared, body: Bytes) -> bool {
        let started = Instant::now();
        let mut backoff = s.retry.map_or(Duration::ZERO, |r| r.initial);
        let attempts = s.retry.map_or(1, |r| r.max_attempts.max(1));
        for attempt in 1..=attempts {
            let t0 = Instant::now();
            let result = self.client.send(body.clone()).await;
            self.stats.latency.record(t0.elapsed());
            let failure = match result {
                Ok(rejected) => {
                    self.stats.rejected_items += rejected;
                    return true;
                }
                Err(f) => f,
            };
            *self.stats.errors.entry(failure.code).or_default() += 1;
            let Some(policy) = s.retry else { return false };
            self.jitter = mix64(self.jitter);
            let factor = 0.5 + (self.jitter >> 11) as f64 / (1u64 << 53) as f64;
            let wait = backoff.mul_f64(factor);
            if !failure.retryable || attempt == attempts || started.elapsed() + wait > policy.max_elapsed {
                return false;
            }
            self.stats.retries += 1;
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(policy.max_interval);
        }
        false
    }

    fn account(&mut self, s: &Shared, template: &Template, first: u64, ok: bool) {
        let p = &s.progress;
        if ok {
            self.stats.sent_items += u64::from(template.items);
            self.stats.sent_requests += 1;
            self.stats.sent_bytes += template.len() as u64;
            p.items.fetch_add(u64::from(template.items), Ordering::Relaxed);
            p.requests.fetch_add(1, Ordering::Relaxed);
            if s.record {
                for (i, n) in template.slot_items.iter().enumerate() {
                    let at = (first + i as u64) as usize;
                    if self.acked.len() <= at {
                        self.acked.resize(at + 1, 0);
                    }
                    self.acked[at] += n;
                }
            }
        } else {
            self.stats.failed_requests += 1;
            self.stats.failed_items += u64::from(template.items);
            p.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
