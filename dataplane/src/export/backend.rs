//! One backend: a lazily connected OTLP/gRPC client with the configured timeout, compression and headers, and the
//! queue of parts waiting for one of its sending slots.
//!
//! Requests travel as raw bytes, framed and compressed by [`grpc`](super::grpc) and multiplexed over one HTTP/2
//! [`connection`](super::connection), which closes when the last holder of the backend (the pool, or a request
//! still in flight after the backend left the pool) lets go of it.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderName, HeaderValue};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tonic::{Code, Status};

use super::coalesce::{self, Line, Waiting};
use super::connection::Connection;
use super::grpc;
use super::health::{Health, Transition};
use super::reply::{Reply, parse_reply};
use crate::config::{HealthCheck, OtlpExporter, Sizer};
use crate::metrics::Metrics;
use crate::signal::Signal;

/// A backend of the pool.
pub struct Backend {
    pub address: String,
    connection: Connection,
    /// The `:scheme` and `:authority` of every request.
    scheme: Scheme,
    authority: Authority,
    encoding: grpc::Encoding,
    /// Every request's headers: the configured ones and gRPC's.
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    metrics: Metrics,
    pub health: Health,
    probe_timeout: Duration,
    /// `num_consumers` permits; `None` when the queue is disabled.
    slots: Option<Arc<Semaphore>>,
    /// Parts waiting for a slot: the sending queue, one line per signal.
    lines: [Mutex<Line>; 3],
    coalesce_max_bytes: usize,
    /// Waiting parts, in `sizer` units.
    waiting: AtomicUsize,
    queue_size: usize,
    sizer: Sizer,
    /// Set when the backend leaves the pool: parts still waiting for a slot, or not yet sent, are handed back.
    retired: AtomicBool,
    /// Requests sent and not yet answered.
    in_flight: AtomicUsize,
    /// `num_consumers`; `None` when the queue is disabled.
    slot_count: Option<usize>,
}

/// A backend's load now, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Requests sent and not yet answered.
    pub in_flight: usize,
    /// At most this many in flight (`num_consumers`); `None` when the queue is disabled.
    pub in_flight_limit: Option<usize>,
    /// Parts waiting for a sending slot, in `sizer` units.
    pub queued: usize,
    /// What may wait (`queue_size`); `None` when the queue is disabled.
    pub queue_capacity: Option<usize>,
    pub sizer: Sizer,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("address", &self.address).finish()
    }
}

impl Backend {
    /// `ejections` is notified whenever this backend is ejected (see [`Health::new`]).
    pub fn new(
        address: &str,
        cfg: &OtlpExporter,
        health: &HealthCheck,
        ejections: &Arc<Notify>,
        metrics: Metrics,
    ) -> Result<Backend, String> {
        let authority =
            Authority::from_str(address).map_err(|e| format!("{address}: not a valid backend address: {e}"))?;
        if authority.port().is_none() {
            return Err(format!("{address}: not a valid backend address: no port"));
        }
        let scheme = if cfg.tls.plaintext() { Scheme::HTTP } else { Scheme::HTTPS };
        let connection = Connection::new(address, &cfg.tls, cfg.timeout.0).map_err(|e| format!("{address}: {e}"))?;
        let mut headers = Vec::new();
        for (k, v) in &cfg.headers {
            let key = HeaderName::from_str(&k.to_ascii_lowercase()).map_err(|e| format!("header {k}: {e}"))?;
            let value = HeaderValue::try_from(v.as_str()).map_err(|e| format!("header {k}: {e}"))?;
            headers.push((key, value));
        }
        let queue = &cfg.sending_queue;
        let slots = queue.enabled.then(|| Arc::new(Semaphore::new(queue.num_consumers.max(1))));
        let queue_size = if queue.enabled { queue.queue_size } else { usize::MAX };
        metrics.queue(address, 0, if queue.enabled { queue.queue_size } else { 0 });
        metrics.backend_health(address, true);
        Ok(Backend {
            address: address.to_string(),
            connection,
            scheme,
            authority,
            encoding: grpc::Encoding {
                compression: cfg.compression,
                level: cfg.compression_params.level.filter(|&l| l != -1),
            },
            headers: grpc::headers(cfg.compression, &headers),
            timeout: cfg.timeout.0,
            metrics,
            health: Health::new(health.clone(), Arc::clone(ejections)),
            probe_timeout: health.probe_timeout.0,
            slots,
            lines: Default::default(),
            coalesce_max_bytes: if queue.coalesce.enabled { queue.coalesce.max_bytes } else { 0 },
            waiting: AtomicUsize::new(0),
            queue_size,
            sizer: queue.sizer,
            retired: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            slot_count: queue.enabled.then_some(queue.num_consumers.max(1)),
        })
    }

    /// Sends one encoded export request (a part); gives up at `deadline`. The part waits in the backend's queue
    /// for one of its `num_consumers` slots and leaves with the parts of the same signal waiting with it, as one
    /// request (see `export::coalesce`). Fails at once with RESOURCE_EXHAUSTED when waiting would take the
    /// queue past `queue_size` (in `sizer` units; a part alone in the queue is always let in).
    ///
    /// Once the backend has left the pool ([`Backend::retire`]), parts not yet sent fail at once with UNAVAILABLE
    /// so that delivery re-routes them to their keys' new owners; parts already sent finish here (drain).
    pub async fn export(
        self: &Arc<Self>,
        signal: Signal,
        body: Bytes,
        items: u64,
        deadline: Instant,
    ) -> Result<Reply, Status> {
        if self.is_retired() {
            return Err(self.left_pool());
        }
        let units = match self.sizer {
            Sizer::Requests => 1,
            Sizer::Items => usize::try_from(items).unwrap_or(usize::MAX),
            Sizer::Bytes => body.len(),
        };
        let before = self.waiting.fetch_add(units, Ordering::Relaxed);
        if before > 0 && before.saturating_add(units) > self.queue_size {
            self.waiting.fetch_sub(units, Ordering::Relaxed);
            return Err(Status::resource_exhausted(format!("sending queue of {} is full", self.address)));
        }
        self.report_queue(before + units);
        let (reply, outcome) = oneshot::channel();
        let start = self.line(signal).push(Waiting { body, items, units, deadline, reply });
        if start {
            tokio::spawn(Arc::clone(self).flush(signal));
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, outcome).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Status::unavailable(format!("backend {}: the part was dropped unsent", self.address))),
            // Dropping `outcome` tells the queue that nobody awaits the part any more: it will not be sent.
            Err(_) => Err(Status::deadline_exceeded(format!("no answer from {} before the deadline", self.address))),
        }
    }

    /// Requests in flight and parts waiting, now.
    pub fn load(&self) -> Load {
        Load {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            in_flight_limit: self.slot_count,
            queued: self.waiting.load(Ordering::Relaxed),
            queue_capacity: self.slot_count.map(|_| self.queue_size),
            sizer: self.sizer,
        }
    }

    fn line(&self, signal: Signal) -> std::sync::MutexGuard<'_, Line> {
        // A panic while holding the lock leaves the line consistent (every method completes its change first).
        self.lines[signal.index()].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report_queue(&self, waiting: usize) {
        if self.slots.is_some() {
            self.metrics.queue(&self.address, waiting, self.queue_size);
        }
    }

    fn dequeued(&self, units: usize) {
        let waiting = self.waiting.fetch_sub(units, Ordering::Relaxed) - units;
        self.report_queue(waiting);
    }

    /// Sends what waits in the signal's line, one request per free slot, until the line is empty. Runs once the
    /// tasks that are ready now have run, so that parts routed at the same moment leave together.
    async fn flush(self: Arc<Self>, signal: Signal) {
        tokio::task::yield_now().await;
        loop {
            let slot = match &self.slots {
                None => None,
                // The semaphore is closed by `retire`.
                Some(slots) => match Arc::clone(slots).acquire_owned().await {
                    Ok(permit) => Some(permit),
                    Err(_) => return self.hand_back(signal),
                },
            };
            if self.is_retired() {
                return self.hand_back(signal);
            }
            let (batch, units, more) = {
                let mut line = self.line(signal);
                let (batch, units) = line.take(self.coalesce_max_bytes);
                (batch, units, !line.is_empty())
            };
            self.dequeued(units);
            if !more {
                // The last request of this flush is sent from its task: parts queued from now on start another.
                if !batch.is_empty() {
                    self.send(signal, batch, slot).await;
                }
                return;
            }
            if !batch.is_empty() {
                tokio::spawn(Arc::clone(&self).send(signal, batch, slot));
            }
        }
    }

    /// Fails every waiting part with UNAVAILABLE: the backend left the pool, delivery re-routes them.
    fn hand_back(&self, signal: Signal) {
        let (parts, units) = self.line(signal).take_all();
        self.dequeued(units);
        coalesce::answer_all(parts, &Err(self.left_pool()));
    }

    /// Sends one request carrying `parts`, holding `slot` until the answer, and hands each part its outcome.
    async fn send(self: Arc<Self>, signal: Signal, parts: Vec<Waiting>, slot: Option<OwnedSemaphorePermit>) {
        let items = parts.iter().map(|p| p.items).sum();
        let now = Instant::now();
        // Each part's caller gives up at its own deadline; the request serves the part that may wait longest.
        let deadline = parts.iter().map(|p| p.deadline).max().unwrap_or(now);
        let timeout = self.timeout.min(deadline.saturating_duration_since(now));
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = tokio::time::timeout(timeout, self.call(signal, &coalesce::bodies(&parts), timeout)).await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let result = result.unwrap_or_else(|_| {
            Err(Status::deadline_exceeded(format!("no answer from {} in {timeout:?}", self.address)))
        });
        drop(slot);
        self.metrics.backend_result(&self.address, signal, items, now.elapsed(), result.is_ok());
        self.metrics.sent_parts(&self.address, parts.len());
        // Only a success resets the failure count; a rejection of the data says nothing about the backend's health.
        // tonic reports its own timeout as CANCELLED ("Timeout expired").
        let outcome = match &result {
            Ok(_) => Some(false),
            Err(s)
                if matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown) =>
            {
                Some(true)
            }
            Err(_) => None,
        };
        if let Some(t) = outcome.and_then(|failure| self.health.record(failure)) {
            self.report(t, result.as_ref().err().map(|s| s.message()).unwrap_or_default());
        }
        coalesce::answer_all(parts, &result);
    }

    /// Marks the backend as gone from the pool and wakes every part waiting for one of its slots, which then
    /// fails with UNAVAILABLE and is re-routed. Requests already sent are left to finish.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        if let Some(slots) = &self.slots {
            slots.close();
        }
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    fn left_pool(&self) -> Status {
        Status::unavailable(format!("backend {} left the pool before the part was sent", self.address))
    }

    /// Probes an ejected backend with an empty export (a valid no-op request) and readmits it on success.
    pub async fn probe(&self) {
        let result = tokio::time::timeout(self.probe_timeout, self.call(Signal::Traces, &[], self.probe_timeout)).await;
        let error = match result {
            Ok(Ok(_)) => None,
            Ok(Err(s)) => Some(s.message().to_string()),
            Err(_) => Some(format!("no answer in {:?}", self.probe_timeout)),
        };
        if let Some(t) = self.health.probed(error.is_none()) {
            self.report(t, error.as_deref().unwrap_or_default());
        }
    }

    fn report(&self, t: Transition, error: &str) {
        match t {
            Transition::Ejected { for_, failures } => {
                tracing::warn!(backend = %self.address, failures, ejected_for = ?for_, error, "backend ejected: its keys fail over to the next backend in ring order");
                self.metrics.backend_health(&self.address, false);
            }
            Transition::Readmitted => {
                tracing::info!(backend = %self.address, "backend readmitted after a successful probe");
                self.metrics.backend_health(&self.address, true);
            }
        }
    }

    /// One request whose message is the concatenation of `bodies`.
    async fn call(&self, signal: Signal, bodies: &[&[u8]], timeout: Duration) -> Result<Reply, Status> {
        let frame = grpc::frame(bodies, self.encoding)?;
        let uri = (&self.scheme, &self.authority);
        let reply = grpc::unary(&self.connection, uri, signal.grpc_path(), frame, &self.headers, timeout)
            .await
            .map_err(|s| annotate(s, &self.address))?;
        Ok(parse_reply(&reply))
    }
}

fn annotate(status: Status, address: &str) -> Status {
    Status::new(status.code(), format!("backend {address}: {}", status.message()))
}
