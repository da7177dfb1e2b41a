//! The document `/api/v1/status` returns. Its fields are the API: add fields freely, but rename or remove one
//! only with a new [`API_VERSION`] (and path).

use std::time::{Instant, SystemTime};

use serde::Serialize;

use super::rates::{BackendRate, WINDOW, Window};
use crate::config::Sizer;
use crate::pool::Pool;
use crate::pool::changes::ChangeRecord;
use crate::route::affinity::Affinity;
use crate::signal::Signal;

/// The version of the document; the `v1` of its path.
pub const API_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct StatusView {
    /// [`API_VERSION`].
    pub version: u32,
    pub generated_unix_ms: u64,
    /// Seconds the rates and latencies are measured over.
    pub window_s: f64,
    pub ring: RingView,
    pub backends: Vec<BackendStatus>,
    /// The recent pool changes, newest first.
    pub changes: Vec<ChangeRecord>,
    pub affinity: AffinityView,
    pub signals: Vec<SignalView>,
}

#[derive(Debug, Serialize)]
pub struct RingView {
    /// The pool version: increments on every change.
    pub version: u64,
    /// Hash of the member set and weights, equal on every replica with the same pool.
    pub fingerprint: Option<String>,
    pub resolver: &'static str,
    pub updated_unix_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct BackendStatus {
    pub address: String,
    pub weight: u32,
    /// Fraction of the key space the backend owns.
    pub share: f64,
    /// `healthy`, `ejected` or `probing`.
    pub health: &'static str,
    /// Ejections since the backend joined the pool.
    pub ejections: u64,
    /// When an ejected backend is due for a probe.
    pub ejected_until_unix_ms: Option<u64>,
    pub in_flight: usize,
    pub in_flight_limit: Option<usize>,
    pub requests_per_s: f64,
    pub latency_p99_ms: Option<f64>,
    pub queue: QueueView,
}

#[derive(Debug, Serialize)]
pub struct QueueView {
    pub size: usize,
    pub capacity: Option<usize>,
    pub sizer: Sizer,
}

#[derive(Debug, Serialize)]
pub struct AffinityView {
    /// Trace ids remembered.
    pub traces: usize,
    pub max_traces: usize,
    pub window_s: f64,
    pub early_rotations: u64,
}

#[derive(Debug, Serialize)]
pub struct SignalView {
    pub signal: &'static str,
    /// What an item of the signal is called: spans, metric points, log records.
    pub items: &'static str,
    pub accepted_per_s: f64,
    pub refused_per_s: f64,
    pub accepted_total: u64,
    pub refused_total: u64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub(super) fn build(pool: &Pool, changes: &[ChangeRecord], affinity: &Affinity, rates: &Window) -> StatusView {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let members = pool.ring.as_ref().map(|r| r.members()).unwrap_or_default();
    let backends = members
        .iter()
        .zip(&pool.backends)
        .enumerate()
        .map(|(i, (m, b))| {
            let health = b.health.snapshot();
            let load = b.load();
            let rate = rates.backends.get(&b.address).copied().unwrap_or(BackendRate::default());
            BackendStatus {
                address: m.address.clone(),
                weight: m.weight,
                share: pool.ring.as_ref().map_or(0.0, |r| r.share(i)),
                health: match (health.available, health.probing) {
                    (true, _) => "healthy",
                    (false, false) => "ejected",
                    (false, true) => "probing",
                },
                ejections: health.total_ejections,
                ejected_until_unix_ms: health
                    .ejected_until
                    .map(|t| unix_ms(wall) + t.saturating_duration_since(now).as_millis() as u64),
                in_flight: load.in_flight,
                in_flight_limit: load.in_flight_limit,
                requests_per_s: rate.requests_per_s,
                latency_p99_ms: rate.p99_ms,
                queue: QueueView { size: load.queued, capacity: load.queue_capacity, sizer: load.sizer },
            }
        })
        .collect();
    StatusView {
        version: API_VERSION,
        generated_unix_ms: unix_ms(wall),
        window_s: if rates.seconds > 0.0 { rates.seconds } else { WINDOW.as_secs_f64() },
        ring: RingView {
            version: pool.version,
            fingerprint: pool.ring.as_ref().map(|r| format!("{:016x}", r.fingerprint())),
            resolver: pool.resolver,
            updated_unix_ms: unix_ms(pool.updated),
        },
        backends,
        changes: changes.to_vec(),
        affinity: AffinityView {
            traces: affinity.len(),
            max_traces: affinity.capacity(),
            window_s: affinity.window().as_secs_f64(),
            early_rotations: affinity.early_rotations(),
        },
        signals: Signal::ALL
            .iter()
            .zip(&rates.signals)
            .map(|(s, r)| SignalView {
                signal: s.name(),
                items: s.item_name(),
                accepted_per_s: r.accepted_per_s,
                refused_per_s: r.refused_per_s,
                accepted_total: r.accepted_total,
                refused_total: r.refused_total,
            })
            .collect(),
    }
}
