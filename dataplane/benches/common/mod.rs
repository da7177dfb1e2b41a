//! The benches' requests: loadgen's workload (`dataplane::fixtures::workload`, the macro benchmark's requests)
//! with random ids, and the ring of a loopback pool.
//!
//! Traces: 100 spans, 10 traces of 10 spans, spans spread over 5 services (one resource each, one scope), three
//! attributes and a status per span. Metrics: 100 data points over 5 services, each with a cumulative Sum and a
//! Gauge of 10 points, two attributes per point.
#![allow(dead_code)]

use dataplane::fixtures::random_id;
use dataplane::fixtures::workload::{Ids, Workload};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use dataplane::route::ring::{Member, Ring};

pub const SPANS: u32 = 100;
pub const SPANS_PER_TRACE: u32 = 10;
pub const SERVICES: u32 = 5;
pub const POINTS: u32 = 100;
pub const BACKENDS: usize = 4;

const WORKLOAD: Workload =
    Workload { spans_per_trace: SPANS_PER_TRACE, services: SERVICES, start_ns: 1_750_000_000_000_000_000, variant: 1 };

/// 100 spans: 10 traces × 10 spans, with ids drawn from `seed`.
pub fn traces_request(seed: u64) -> ExportTraceServiceRequest {
    let trace = |t: u32| random_id(seed * 1000 + u64::from(t), 16);
    let span = |t: u32, i: u32| random_id(seed * 1_000_000 + u64::from(t * 100 + i), 8);
    WORKLOAD.traces(&Ids { trace: &trace, span: &span }, SPANS / SPANS_PER_TRACE, 0..SPANS_PER_TRACE)
}

/// 100 data points: 5 services × (a Sum of 10 points + a Gauge of 10 points).
pub fn metrics_request() -> ExportMetricsServiceRequest {
    WORKLOAD.metrics(POINTS)
}

/// The ring of a pool of `n` loopback backends.
pub fn ring(n: usize) -> Ring {
    Ring::new((0..n).map(|i| Member { address: format!("127.0.0.1:{}", 14317 + i), weight: 1 })).expect("ring")
}
