//! The path of one request, top-down: [`Pipeline::admit`] it against the memory budget; then either deliver it
//! ([`Delivery::deliver`]: split against the current pool, parts sent, the outcome awaited) or, with
//! `ack: queued`, accept it into the write-ahead log ([`DurableAck::accept`]); and count the outcome. Receivers
//! (gRPC and HTTP) call [`Pipeline::export`] and translate its result into their protocol's status codes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::config::Retry;
use crate::delivery::Delivery;
use crate::durable::DurableAck;
use crate::export::Delivered;
use crate::metrics::Metrics;
use crate::pool::Pool;
pub use crate::refusal::{RETRY_AFTER, Refusal};
use crate::route::affinity::Affinity;
use crate::route::key::RoutingPolicy;
use crate::route::split::{Split, SplitError};
use crate::signal::Signal;

/// The front of the data plane: what receivers hand every request to.
pub struct Pipeline {
    delivery: Arc<Delivery>,
    budget: Arc<Semaphore>,
    budget_kib: u32,
    metrics: Metrics,
    /// Set with `ack: queued`.
    durable: Option<Arc<DurableAck>>,
}

/// A request's share of the memory budget, held until it is answered.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    bytes: i64,
    metrics: Metrics,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.metrics.inflight().sub(self.bytes);
    }
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
        let delivery = Arc::new(Delivery::new(pools, policy, affinity, retry));
        Pipeline { delivery, budget, budget_kib, metrics, durable: None }
    }

    /// The delivery of admitted requests (and of the records of the write-ahead log).
    pub fn delivery(&self) -> &Arc<Delivery> {
        &self.delivery
    }

    /// Acknowledges requests once they are in `durable`'s log (`ack: queued`).
    pub fn with_durable_ack(mut self, durable: Arc<DurableAck>) -> Pipeline {
        self.durable = Some(durable);
        self
    }

    pub fn pools(&self) -> &watch::Receiver<Arc<Pool>> {
        self.delivery.pools()
    }

    /// See [`Delivery::route`].
    pub fn route(&self, signal: Signal, pool: Arc<Pool>, body: &Bytes) -> Result<(Arc<Pool>, Split), SplitError> {
        self.delivery.route(signal, pool, body)
    }

    /// Admits, then delivers or durably accepts, one encoded export request. `client_timeout` is the client's own
    /// deadline, if it sent one.
    pub async fn export(
        &self,
        signal: Signal,
        transport: &str,
        body: Bytes,
        client_timeout: Option<Duration>,
    ) -> Result<Delivered, Refusal> {
        let _admitted = self.admit(&body)?;
        let (items, result) = match &self.durable {
            Some(durable) => durable.accept(signal, body).await,
            None => self.delivery.deliver(signal, body, self.delivery.deadline(client_timeout)).await,
        };
        self.metrics.received(signal, transport, items, result.is_ok());
        result
    }

    /// Takes the request's share of the memory budget: the request and its per-backend copies are held until it
    /// is answered.
    pub fn admit(&self, body: &Bytes) -> Result<Admitted, Refusal> {
        let cost_kib = (body.len().saturating_mul(2) / 1024 + 1).min(u32::MAX as usize) as u32;
        if cost_kib > self.budget_kib {
            return Err(Refusal::Overloaded(format!("request of {} bytes exceeds the memory limit", body.len())));
        }
        let Ok(permit) = self.budget.clone().try_acquire_many_owned(cost_kib) else {
            return Err(Refusal::Overloaded("load balancer memory limit reached, retry later".into()));
        };
        let bytes = i64::from(cost_kib) * 1024;
        self.metrics.inflight().add(bytes);
        Ok(Admitted { _permit: permit, bytes, metrics: self.metrics.clone() })
    }
}
