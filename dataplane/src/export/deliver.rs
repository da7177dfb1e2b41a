//! Delivery of one request's parts: all backends concurrently; only the parts that failed are tried again, after
//! a backoff, re-routed by the caller against the pool as it is by then (so a part for a backend that left the
//! pool goes to the key's new owner). A part handed back unsent by a backend that left the pool is re-routed at once, without a
//! backoff. The request is acknowledged only when every part was accepted; a part still failing at the
//! deadline makes the whole request fail with UNAVAILABLE, never a silent success.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use rand::Rng;
use tonic::Code;

use super::backend::Backend;
use super::reply::retryable;
use crate::config::Retry;
use crate::route::split::{Part, SplitError};
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
pub struct Undelivered {
    pub code: Code,
    pub message: String,
    /// Items not delivered.
    pub undelivered: u64,
}

/// Upper bound on sending rounds, whatever the deadline.
const MAX_ROUNDS: u32 = 64;

/// A part and the backend it goes to.
pub type Routed = (Arc<Backend>, Part);

/// Why a part could not be routed again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unroutable {
    /// The pool has no backend.
    NoBackends,
    /// A part names a backend its pool does not have.
    PoolChanged,
    /// The part does not split.
    Invalid(SplitError),
}

impl Unroutable {
    /// The outcome of a request whose `undelivered` items cannot be routed; `last` is the last failure's message.
    pub fn undelivered(self, undelivered: u64, last: &str) -> Undelivered {
        let (code, message) = match self {
            Unroutable::NoBackends => (Code::Unavailable, format!("no backends in the pool: {last}")),
            Unroutable::PoolChanged => (Code::Unavailable, "backend pool changed under the request".to_string()),
            Unroutable::Invalid(e) => (Code::Internal, e.to_string()),
        };
        Undelivered { code, message, undelivered }
    }
}

/// Delivers `parts` by `deadline`; `reroute` routes a failed part's body again against the pool current at the
/// time of the retry.
pub async fn deliver(
    signal: Signal,
    parts: Vec<Routed>,
    retry: &Retry,
    deadline: Instant,
    reroute: impl Fn(&Bytes) -> Result<Vec<Routed>, Unroutable>,
) -> Result<Delivered, Undelivered> {
    let mut pending = parts;
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
                    Err(Undelivered { code, message: out.messages.join("; "), undelivered: out.rejected })
                }
                _ => Ok(out),
            };
        }
        let undelivered: u64 = failed.iter().map(|p| p.items).sum();
        let message = last.map(|s| s.message().to_string()).unwrap_or_default();
        let give_up =
            |why: &str| Undelivered { code: Code::Unavailable, message: format!("{why}: {message}"), undelivered };
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
        pending = Vec::new();
        for part in failed {
            pending.extend(reroute(&part.body).map_err(|e| e.undelivered(undelivered, &message))?);
        }
    }
}

fn jittered(d: Duration, factor: f64) -> Duration {
    let f = factor.clamp(0.0, 1.0);
    if f == 0.0 {
        return d;
    }
    d.mul_f64(rand::rng().random_range(1.0 - f..=1.0 + f))
}
