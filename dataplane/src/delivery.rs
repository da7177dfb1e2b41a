//! The delivery of one admitted request: split it against the current pool (with trace affinity for trace-id
//! keys), hand each part to its backend ([`export::deliver`]), and say how it went. The
//! [`Pipeline`](crate::pipeline::Pipeline) delivers each request it admits this way, and `ack: queued`
//! ([`durable`](crate::durable)) each record of its log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::config::Retry;
use crate::export::{self, Delivered, Routed, Unroutable};
use crate::pool::Pool;
use crate::refusal::Refusal;
use crate::route::affinity::Affinity;
use crate::route::key::{RoutingKey, RoutingPolicy};
use crate::route::owners::Owners;
use crate::route::split::{Part, Split, SplitError, split};
use crate::signal::Signal;

/// Bound on the pools a request is split against (the current pool is the newest any request routed by).
const ROUTE_ATTEMPTS: usize = 3;

/// Bound on the times a request with an unknown trace waits for the peers' tables (each wait is itself bounded).
const GATE_WAITS: usize = 3;

/// Room left before a client's own deadline so that our answer reaches it first.
const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

/// Splits requests against the pool in use and delivers their parts.
pub struct Delivery {
    pools: watch::Receiver<Arc<Pool>>,
    policy: RoutingPolicy,
    affinity: Arc<Affinity>,
    retry: Retry,
}

impl Delivery {
    pub fn new(
        pools: watch::Receiver<Arc<Pool>>,
        policy: RoutingPolicy,
        affinity: Arc<Affinity>,
        retry: Retry,
    ) -> Delivery {
        Delivery { pools, policy, affinity, retry }
    }

    pub fn pools(&self) -> &watch::Receiver<Arc<Pool>> {
        &self.pools
    }

    pub fn retry(&self) -> &Retry {
        &self.retry
    }

    /// When a request must be answered: after `max_elapsed_time`, or before the client's own deadline.
    pub fn deadline(&self, client_timeout: Option<Duration>) -> Instant {
        let mut budget = self.retry.max_elapsed_time.0.max(Duration::from_millis(1));
        if let Some(t) = client_timeout {
            budget = budget.min(t.saturating_sub(DEADLINE_MARGIN).max(Duration::from_millis(1)));
        }
        Instant::now() + budget
    }

    /// Walks `body` as delivery splits it, without routing it: its item count, or why it can never be delivered.
    pub fn check(&self, signal: Signal, body: &Bytes) -> Result<u64, Refusal> {
        split(signal, body, &self.policy, |_| 0).map(|s| s.items).map_err(|e| Refusal::Invalid(e.to_string()))
    }

    /// Splits `body` against the current pool and delivers the parts by `deadline`: the request's item count (0
    /// when it was refused before it was split) and the outcome.
    pub async fn deliver(&self, signal: Signal, body: Bytes, deadline: Instant) -> (u64, Result<Delivered, Refusal>) {
        let pool = self.settled_pool(signal, &body).await;
        if pool.ring.is_none() {
            return (0, Err(Refusal::Unavailable("no backends in the pool".into())));
        }
        if !pool.any_available() {
            return (0, Err(Refusal::Unavailable("every backend is ejected after failures; retry later".into())));
        }
        let (pool, split) = match self.route(signal, pool, &body) {
            Ok(routed) => routed,
            Err(e) => return (0, Err(Refusal::Invalid(e.to_string()))),
        };
        // The parts hold what they need of it (copies, or the request itself when one backend takes it all):
        // the request is not kept for the time of the delivery.
        drop(body);
        let items = split.items;
        if split.parts.is_empty() {
            return (items, Ok(Delivered { rounds: 0, ..Delivered::default() }));
        }
        let parts = match with_backends(&pool, split.parts) {
            Ok(parts) => parts,
            Err(e) => return (items, Err(e.undelivered(items, "").into())),
        };
        let reroute = |body: &Bytes| self.route_now(signal, body);
        (items, export::deliver(signal, parts, &self.retry, deadline, reroute).await.map_err(Refusal::from))
    }

    /// The pool to route `body` by. While the replicas exchange the traces they hold, a request with a trace
    /// this replica knows nothing of waits (bounded) for every peer's table; the gate closes before a new pool is
    /// published.
    async fn settled_pool(&self, signal: Signal, body: &Bytes) -> Arc<Pool> {
        let held = self.affinity.peers();
        if self.policy.key(signal) == RoutingKey::TraceId {
            for _ in 0..GATE_WAITS {
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

    /// Routes a failed part's body again against the pool in use now.
    fn route_now(&self, signal: Signal, body: &Bytes) -> Result<Vec<Routed>, Unroutable> {
        let current = self.pools.borrow().clone();
        if current.ring.is_none() {
            return Err(Unroutable::NoBackends);
        }
        let (pool, split) = self.route(signal, current, body).map_err(Unroutable::Invalid)?;
        with_backends(&pool, split.parts)
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
}

/// Each part with the backend of `pool` it was split for.
fn with_backends(pool: &Pool, parts: Vec<Part>) -> Result<Vec<Routed>, Unroutable> {
    parts
        .into_iter()
        .map(|part| Ok((Arc::clone(pool.backends.get(part.backend).ok_or(Unroutable::PoolChanged)?), part)))
        .collect()
}
