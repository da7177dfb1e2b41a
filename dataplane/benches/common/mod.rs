//! Requests shaped like `otlp-lb-tools loadgen`'s (the macro benchmark's workload), built with prost.
//!
//! Traces: 100 spans, 10 traces of 10 spans, spans spread over 5 services (one resource each, one scope), three
//! attributes and a status per span. Metrics: 100 data points over 5 services, each with a cumulative Sum and a
//! Gauge of 10 points, two attributes per point.
#![allow(dead_code)]

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};

use dataplane::route::ring::{Member, Ring};

pub const SPANS: u32 = 100;
pub const SPANS_PER_TRACE: u32 = 10;
pub const SERVICES: u32 = 5;
pub const POINTS: u32 = 100;
pub const BACKENDS: usize = 4;

const START_NS: u64 = 1_750_000_000_000_000_000;

/// Deterministic pseudo-random 64-bit values (splitmix64).
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn id(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(&mix(seed.wrapping_mul(31).wrapping_add(i)).to_le_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

fn kv_str(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }),
        ..Default::default()
    }
}

fn resource(n: u32) -> Resource {
    Resource {
        attributes: vec![
            kv_str("service.name", &format!("loadgen-svc-{n}")),
            kv_str("service.instance.id", &format!("loadgen-{n}-0")),
            kv_str("telemetry.sdk.name", "otlp-lb-tools"),
        ],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope { name: "otlp-lb-tools/loadgen".into(), version: "0.1.0".into(), ..Default::default() }
}

/// 100 spans: 10 traces × 10 spans, grouped by service as the loadgen groups them.
pub fn traces_request(seed: u64) -> ExportTraceServiceRequest {
    let traces = SPANS / SPANS_PER_TRACE;
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES as usize];
    for t in 0..traces {
        let trace_id = id(seed * 1000 + u64::from(t), 16);
        for i in 0..SPANS_PER_TRACE {
            let start = START_NS + u64::from(i) * 1_000_000;
            let method = ["GET", "POST", "PUT"][(i % 3) as usize];
            let span = Span {
                trace_id: trace_id.clone(),
                span_id: id(seed * 1_000_000 + u64::from(t * 100 + i), 8),
                parent_span_id: if i == 0 {
                    Vec::new()
                } else {
                    id(seed * 1_000_000 + u64::from(t * 100 + (i - 1) / 2), 8)
                },
                name: format!("{method} /api/v1/item/{i}"),
                kind: if i == 0 { span::SpanKind::Server } else { span::SpanKind::Client } as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + u64::from(SPANS_PER_TRACE - i) * 1_000_000,
                attributes: vec![
                    kv_str("http.request.method", method),
                    kv_int("http.response.status_code", if i % 17 == 16 { 500 } else { 200 }),
                    kv_int("loadgen.variant", 1),
                ],
                status: Some(Status { code: status::StatusCode::Ok as i32, ..Default::default() }),
                ..Default::default()
            };
            by_service[((t + i) % SERVICES) as usize].push(span);
        }
    }
    let resource_spans = by_service
        .into_iter()
        .enumerate()
        .map(|(s, spans)| ResourceSpans {
            resource: Some(resource(s as u32)),
            scope_spans: vec![ScopeSpans { scope: Some(scope()), spans, ..Default::default() }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// 100 data points: 5 services × (a Sum of 10 points + a Gauge of 10 points).
pub fn metrics_request() -> ExportMetricsServiceRequest {
    let per_service = POINTS / SERVICES;
    let point = |j: u32, value: number_data_point::Value| NumberDataPoint {
        attributes: vec![kv_int("loadgen.point", i64::from(j)), kv_int("loadgen.variant", 1)],
        start_time_unix_nano: START_NS,
        time_unix_nano: START_NS + 1,
        value: Some(value),
        ..Default::default()
    };
    let resource_metrics = (0..SERVICES)
        .map(|k| {
            let sums =
                (0..per_service.div_ceil(2)).map(|j| point(j, number_data_point::Value::AsInt(i64::from(j + 1) * 10)));
            let gauges = (0..per_service / 2).map(|j| point(j, number_data_point::Value::AsDouble(f64::from(j) / 4.0)));
            let metrics = vec![
                Metric {
                    name: "loadgen.requests".into(),
                    unit: "{request}".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: sums.collect(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "loadgen.queue.depth".into(),
                    unit: "{item}".into(),
                    data: Some(metric::Data::Gauge(Gauge { data_points: gauges.collect() })),
                    ..Default::default()
                },
            ];
            ResourceMetrics {
                resource: Some(resource(k)),
                scope_metrics: vec![ScopeMetrics { scope: Some(scope()), metrics, ..Default::default() }],
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

/// The ring of a pool of `n` loopback backends.
pub fn ring(n: usize) -> Ring {
    Ring::new((0..n).map(|i| Member { address: format!("127.0.0.1:{}", 14317 + i), weight: 1 })).expect("ring")
}
