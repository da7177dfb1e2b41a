//! Delivery of one request's parts: all backends concurrently; only the parts that failed are tried again, after
//! a backoff, re-routed against the pool as it is by then (so a part for a backend that left the pool goes to the
//! key's new owner). A part handed back unsent by a backend that left the pool is re-routed at once, without a
//! backoff. The request is acknowledged only when every part was accepted; a part still failing at the
//! deadline makes the whole request fail with UNAVAILABLE, never a silent success.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use rand::Rng;
use tokio::sync::watch;
use tonic::Code;

use super::backend::{Backend, retryable};
use crate::config::Retry;
use crate::pool::Pool;
use crate::route::split::{Part, Split, SplitError};
use crate::signal::Signal;

/// Every part was accepted (some items may have been rejected for good by a backend: OTLP partial success).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    pub rejected: u64,
    pub messages: Vec<String>,
    /// Rounds of sending it took (1 = no retry).
    pub rounds: u32,
}

/// Some part could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: Code,
    pub message: String,
    /// Items not delivered.
    pub undelivered: u64,
}

/// Upper bound on sending rounds, whatever the deadline.
const MAX_ROUNDS: u32 = 64;

/// Delivers `parts` (split against `pool`) by `deadline`; `resplit` routes a failed part again against the pool
/// current at the time of the retry, giving the pool its parts were split against.
pub async fn deliver(
    signal: Signal,
    pools: &watch::Receiver<Arc<Pool>>,
    pool: &Pool,
    parts: Vec<Part>,
    retry: &Retry,
    deadline: Instant,
    resplit: impl Fn(Arc<Pool>, &bytes::Bytes) -> Result<(Arc<Pool>, Split), SplitError>,
) -> Result<Delivered, Failure> {
    let mut pending: Vec<(Arc<Backend>, Part)> = Vec::with_capacity(parts.len());
    for part in parts {
        let backend = pool.backends.get(part.backend).cloned().ok_or_else(|| no_backend(part.items))?;
        pending.push((backend, part));
    }
    let mut out = Delivered::default();
    let mut backoff = retry.initial_interval.0;
    let mut permanent: Option<(Code, u64)> = None;
    let mut delivered_any = false;
    loop {
        out.rounds += 1;
        let results = join_all(pending.iter().map(|(b, p)| b.export(signal, p.body.clone(), p.items, deadline))).await;
        let mut failed: Vec<Part> = Vec::new();
        let mut last = None;
        // Parts handed back by backends that left the pool: re-routed at once, without a backoff.
        let mut handed_back = 0;
        for ((backend, part), result) in pending.into_iter().zip(results) {
            match result {
                Err(status) if backend.is_retired() && status.code() == Code::Unavailable => {
                    tracing::debug!(backend = %backend.address, "backend left the pool; re-routing its part");
                    handed_back += 1;
                    last = Some(status);
                    failed.push(part);
                }
                Ok(reply) => {
                    delivered_any = true;
                    out.rejected += reply.rejected;
                    if !reply.message.is_empty() {
                        out.messages.push(format!("{}: {}", backend.address, reply.message));
                    }
                }
                Err(status) if retryable(status.code()) => {
                    tracing::debug!(backend = %backend.address, code = ?status.code(), "part failed, will retry");
                    last = Some(status);
                    failed.push(part);
                }
                Err(status) => {
                    tracing::warn!(backend = %backend.address, code = ?status.code(), error = status.message(), "part rejected");
                    out.rejected += part.items;
                    out.messages.push(status.message().to_string());
                    let (_, n) = permanent.get_or_insert((status.code(), 0));
                    *n += part.items;
                }
            }
        }
        if failed.is_empty() {
            return match permanent {
                Some((code, _)) if !delivered_any => {
                    Err(Failure { code, message: out.messages.join("; "), undelivered: out.rejected })
                }
                _ => Ok(out),
            };
        }
        let undelivered: u64 = failed.iter().map(|p| p.items).sum();
        let message = last.map(|s| s.message().to_string()).unwrap_or_default();
        let give_up =
            |why: &str| Failure { code: Code::Unavailable, message: format!("{why}: {message}"), undelivered };
        let wait = jittered(backoff, retry.randomization_factor);
        // A part handed back was never sent: routing it again is no retry.
        if !retry.enabled && handed_back < failed.len() {
            return Err(give_up("backend unavailable"));
        }
        let wait = if handed_back == failed.len() { Duration::ZERO } else { wait };
        if Instant::now() + wait >= deadline || out.rounds >= MAX_ROUNDS {
            return Err(give_up("backend unavailable until the deadline"));
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            backoff = retry.max_interval.0.min(backoff.mul_f64(retry.multiplier.max(1.0)));
        }
        let current = pools.borrow().clone();
        if current.ring.is_none() {
            return Err(give_up("no backends in the pool"));
        }
        pending = Vec::new();
        for part in failed {
            let (routed, again) = resplit(Arc::clone(&current), &part.body).map_err(|e| Failure {
                code: Code::Internal,
                message: e.to_string(),
                undelivered,
            })?;
            for p in again.parts {
                let backend = routed.backends.get(p.backend).cloned().ok_or_else(|| no_backend(p.items))?;
                pending.push((backend, p));
            }
        }
    }
}

fn no_backend(items: u64) -> Failure {
    Failure { code: Code::Unavailable, message: "backend pool changed under the request".into(), undelivered: items }
}

fn jittered(d: Duration, factor: f64) -> Duration {
    let f = factor.clamp(0.0, 1.0);
    if f == 0.0 {
        return d;
    }
    d.mul_f64(rand::rng().random_range(1.0 - f..=1.0 + f))
}
