//! The path of one request: admit it against the memory budget, split it against the current pool, deliver the
//! parts, and count the outcome. Receivers (gRPC and HTTP) call [`Pipeline::export`] and translate its result
//! into their protocol's status codes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Semaphore, watch};
use tonic::Code;

use crate::config::Retry;
use crate::export::queued::{Durable, MAX_BACKOFF, signal_of};
use crate::export::wal::{Record, WalError};
use crate::export::{Delivered, deliver};
use crate::pool::Pool;
use crate::route::affinity::Affinity;
use crate::route::key::{RoutingKey, RoutingPolicy};
use crate::route::owners::Owners;
use crate::route::split::{Split, SplitError, split};
use crate::signal::Signal;
use crate::telemetry::Metrics;

/// Why a request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The payload is malformed: 400 / INVALID_ARGUMENT.
    Invalid(String),
    /// The in-flight budget is full: 429 / RESOURCE_EXHAUSTED, retry later.
    Overloaded(String),
    /// No backend could take the data in time: 503 / UNAVAILABLE, retry later.
    Unavailable(String),
    /// Every backend rejected its part for good, with this code.
    Rejected(Code, String),
}

/// How long a client is told to wait before retrying a refused request.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Bound on the pools a request is split against (the current pool is the newest any request routed by).
const ROUTE_ATTEMPTS: usize = 3;

/// Room left before a client's own deadline so that our answer reaches it first.
const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

pub struct Pipeline {
    pools: watch::Receiver<Arc<Pool>>,
    policy: RoutingPolicy,
    affinity: Arc<Affinity>,
    retry: Retry,
    budget: Arc<Semaphore>,
    budget_kib: u32,
    metrics: Metrics,
    /// Set with `ack: queued`.
    durable: Option<Arc<Durable>>,
}

impl Pipeline {
    pub fn new(
        pools: watch::Receiver<Arc<Pool>>,
        policy: RoutingPolicy,
        affinity: Arc<Affinity>,
        retry: Retry,
        memory_limit_mib: u32,
        metrics: Metrics,
    ) -> Pipeline {
        let budget_kib = memory_limit_mib.saturating_mul(1024).max(1);
        let budget = Arc::new(Semaphore::new(budget_kib as usize));
        Pipeline { pools, policy, affinity, retry, budget, budget_kib, metrics, durable: None }
    }

    /// Acknowledges requests once they are in `durable` (`ack: queued`).
    pub fn with_durable_queue(mut self, durable: Arc<Durable>) -> Pipeline {
        self.durable = Some(durable);
        self
    }

    /// Delivers one record of the durable queue, retrying until every part is accepted, then commits it.
    pub async fn deliver_record(self: Arc<Self>, record: Record) {
        let Some(durable) = self.durable.clone() else { return };
        let Some(signal) = signal_of(record.signal) else {
            tracing::error!(seq = record.seq, signal = record.signal, "record of an unknown signal; dropping it");
            durable.commit(record.seq);
            return;
        };
        let mut backoff = self.retry.initial_interval.0.max(Duration::from_millis(10));
        loop {
            match self.deliver_body(signal, record.payload.clone(), None).await.1 {
                Ok(_) => break,
                Err(Refusal::Invalid(m) | Refusal::Rejected(_, m)) => {
                    tracing::warn!(seq = record.seq, error = %m, "queued record rejected by the backends for good; dropping it");
                    break;
                }
                Err(Refusal::Overloaded(m) | Refusal::Unavailable(m)) => {
                    tracing::debug!(seq = record.seq, error = %m, ?backoff, "queued record not delivered yet");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        durable.commit(record.seq);
    }

    /// Splits `body` against `pool` (which must not be empty), with trace affinity for trace-id keys. Also says
    /// whether some key was first routed by a newer pool (such keys go by `pool`'s own ring).
    fn split(&self, signal: Signal, pool: &Pool, body: &Bytes) -> Result<(Split, bool), SplitError> {
        let affinity = (self.policy.key(signal) == RoutingKey::TraceId).then_some(&*self.affinity);
        let now = self.affinity.now_ms();
        let mut owners = Owners::default();
        let mut newer = false;
        let split = split(signal, body, &self.policy, |key| {
            owners.get(key, |key| {
                pool.owner(key, affinity, now).unwrap_or_else(|n| {
                    newer = true;
                    n.fallback
                })
            })
        })?;
        Ok((split, newer))
    }

    /// Splits `body` against `pool` (which must not be empty): the parts, with the pool their backend indices
    /// refer to. A request taken in just before a pool change may hold a trace that a request taken in just after
    /// it routed first, by the new ring: it is then split again against the current pool.
    pub fn route(&self, signal: Signal, pool: Arc<Pool>, body: &Bytes) -> Result<(Arc<Pool>, Split), SplitError> {
        let mut pool = pool;
        for _ in 1..ROUTE_ATTEMPTS {
            let (split, newer) = self.split(signal, &pool, body)?;
            let current = self.pools.borrow().clone();
            if !newer || current.ring.is_none() || current.version <= pool.version {
                return Ok((pool, split));
            }
            pool = current;
        }
        let (split, _) = self.split(signal, &pool, body)?;
        Ok((pool, split))
    }

    pub fn pools(&self) -> &watch::Receiver<Arc<Pool>> {
        &self.pools
    }

    /// Routes and delivers one encoded export request. `client_timeout` is the client's own deadline, if it sent one.
    pub async fn export(
        &self,
        signal: Signal,
        transport: &str,
        body: Bytes,
        client_timeout: Option<Duration>,
    ) -> Result<Delivered, Refusal> {
        // The request and its per-backend copies are held until delivery ends.
        let cost_kib = (body.len().saturating_mul(2) / 1024 + 1).min(u32::MAX as usize) as u32;
        if cost_kib > self.budget_kib {
            return Err(Refusal::Overloaded(format!("request of {} bytes exceeds the memory limit", body.len())));
        }
        let Ok(_permit) = self.budget.clone().try_acquire_many_owned(cost_kib) else {
            return Err(Refusal::Overloaded("load balancer memory limit reached, retry later".into()));
        };
        let bytes = i64::from(cost_kib) * 1024;
        self.metrics.inflight().add(bytes);
        let result = self.route_and_deliver(signal, transport, body, client_timeout).await;
        self.metrics.inflight().sub(bytes);
        result
    }

    async fn route_and_deliver(
        &self,
        signal: Signal,
        transport: &str,
        body: Bytes,
        client_timeout: Option<Duration>,
    ) -> Result<Delivered, Refusal> {
        if let Some(durable) = &self.durable {
            // Refuse what can never be delivered before acknowledging it.
            let split = split(signal, &body, &self.policy, |_| 0).map_err(|e| Refusal::Invalid(e.to_string()))?;
            let queued = durable.enqueue(signal, body).await;
            self.metrics.received(signal, transport, split.items, queued.is_ok());
            return match queued {
                Ok(()) => Ok(Delivered::default()),
                Err(e @ (WalError::Full | WalError::TooLarge { .. })) => Err(Refusal::Overloaded(e.to_string())),
                Err(e) => Err(Refusal::Unavailable(e.to_string())),
            };
        }
        let (items, result) = self.deliver_body(signal, body, client_timeout).await;
        self.metrics.received(signal, transport, items, result.is_ok());
        result
    }

    /// Splits and delivers a request (without counting it as received); returns its item count with the outcome.
    async fn deliver_body(
        &self,
        signal: Signal,
        body: Bytes,
        client_timeout: Option<Duration>,
    ) -> (u64, Result<Delivered, Refusal>) {
        let pool = self.settled_pool(signal, &body).await;
        let mut items = 0;
        let result = self.deliver_split(signal, pool, body, client_timeout, &mut items).await;
        (items, result)
    }

    /// The pool to route `body` by. While the replicas exchange the traces they hold, a request with a trace
    /// this replica knows nothing of waits (bounded) for every peer's table; the gate closes before a new pool is
    /// published.
    async fn settled_pool(&self, signal: Signal, body: &Bytes) -> Arc<Pool> {
        let held = self.affinity.peers();
        if self.policy.key(signal) == RoutingKey::TraceId {
            for _ in 0..3 {
                let pool = self.pools.borrow().clone();
                if !held.is_closed() || self.knows_every_trace(signal, body) {
                    return pool;
                }
                held.settled().await;
            }
        }
        self.pools.borrow().clone()
    }

    /// Whether every trace of `body` was routed here or told of by a peer.
    fn knows_every_trace(&self, signal: Signal, body: &Bytes) -> bool {
        let mut known = true;
        let _ = split(signal, body, &self.policy, |key| {
            known = known && self.affinity.knows(key);
            0
        });
        known
    }

    async fn deliver_split(
        &self,
        signal: Signal,
        pool: Arc<Pool>,
        body: Bytes,
        client_timeout: Option<Duration>,
        items: &mut u64,
    ) -> Result<Delivered, Refusal> {
        if pool.ring.is_none() {
            return Err(Refusal::Unavailable("no backends in the pool".into()));
        }
        if !pool.any_available() {
            return Err(Refusal::Unavailable("every backend is ejected after failures; retry later".into()));
        }
        let (pool, split) = self.route(signal, pool, &body).map_err(|e| Refusal::Invalid(e.to_string()))?;
        // The parts hold what they need of it (copies, or the request itself when one backend takes it all):
        // the request is not kept for the time of the delivery.
        drop(body);
        *items = split.items;
        if split.parts.is_empty() {
            return Ok(Delivered { rounds: 0, ..Delivered::default() });
        }
        let mut budget = self.retry.max_elapsed_time.0.max(Duration::from_millis(1));
        if let Some(t) = client_timeout {
            budget = budget.min(t.saturating_sub(DEADLINE_MARGIN).max(Duration::from_millis(1)));
        }
        let deadline = Instant::now() + budget;
        let resplit = |current: Arc<Pool>, part: &Bytes| self.route(signal, current, part);
        deliver(signal, &self.pools, &pool, split.parts, &self.retry, deadline, resplit).await.map_err(|f| {
            match f.code {
                Code::Unavailable => Refusal::Unavailable(f.message),
                code => Refusal::Rejected(code, f.message),
            }
        })
    }
}
