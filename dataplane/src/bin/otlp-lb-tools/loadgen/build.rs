//! Builds the template requests with prost — traces, Sum and Gauge metrics, logs with and without trace context —
//! and decides the batching layout: how many traces a request holds and in how many requests a trace is sent.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use dataplane::signal::Signal;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};
use prost::Message;

use super::template::{Template, placeholder_span, placeholder_trace};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Plan {
    pub signal: Signal,
    pub spans_per_trace: u32,
    pub items_per_request: u32,
    pub services: u32,
    pub spread: u32,
    /// Wall-clock time of the run start, for span and point timestamps.
    pub start_ns: u64,
}

/// How traces are batched into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Traces whose items share a request (0 for metrics).
    pub traces_per_group: u32,
    /// Requests each trace is sent in.
    pub chunks: u32,
    /// Log records without trace context per request.
    pub untraced: u32,
}

impl Plan {
    pub fn layout(&self) -> Layout {
        let spt = self.spans_per_trace.max(1);
        let ipr = self.items_per_request.max(1);
        match self.signal {
            Signal::Traces => {
                let chunks = self.spread.max(spt.div_ceil(ipr)).clamp(1, spt);
                let chunk_max = spt.div_ceil(chunks);
                Layout { traces_per_group: (ipr / chunk_max).max(1), chunks, untraced: 0 }
            }
            Signal::Logs => {
                let traces = (ipr * 9 / 10 / spt).max(1);
                Layout { traces_per_group: traces, chunks: 1, untraced: ipr.saturating_sub(traces * spt) }
            }
            Signal::Metrics => Layout { traces_per_group: 0, chunks: 1, untraced: 0 },
        }
    }

    /// The requests of one group of `traces` traces in pool variant `variant`, one per chunk.
    pub fn group(&self, variant: u32, traces: u32) -> Result<Vec<Template>> {
        let layout = self.layout();
        let slots = traces as usize;
        (0..layout.chunks)
            .map(|chunk| {
                let bytes = match self.signal {
                    Signal::Traces => self.traces(variant, traces, chunk, layout.chunks).encode_to_vec(),
                    Signal::Logs => self.logs(variant, traces, layout.untraced).encode_to_vec(),
                    Signal::Metrics => self.metrics(variant).encode_to_vec(),
                };
                Template::new(self.signal, bytes, slots).context("indexing a generated request")
            })
            .collect()
    }

    fn service(&self, n: u32) -> u32 {
        n % self.services.max(1)
    }

    fn traces(&self, variant: u32, traces: u32, chunk: u32, chunks: u32) -> ExportTraceServiceRequest {
        let spt = self.spans_per_trace.max(1);
        let (first, end) = (chunk * spt / chunks, (chunk + 1) * spt / chunks);
        let mut by_service: BTreeMap<u32, Vec<Span>> = BTreeMap::new();
        for slot in 0..traces {
            for i in first..end {
                let start = self.start_ns + u64::from(i) * 1_000_000;
                let span = Span {
                    trace_id: placeholder_trace(slot),
                    span_id: placeholder_span(i),
                    parent_span_id: if i == 0 { Vec::new() } else { placeholder_span((i - 1) / 2) },
                    name: format!("{} /api/v{}/item/{}", ["GET", "POST", "PUT"][(i % 3) as usize], variant % 4, i),
                    kind: if i == 0 { span::SpanKind::Server } else { span::SpanKind::Client } as i32,
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + u64::from(spt - i) * 1_000_000,
                    attributes: vec![
                        kv_str("http.request.method", ["GET", "POST", "PUT"][(i % 3) as usize]),
                        kv_int("http.response.status_code", if i % 17 == 16 { 500 } else { 200 }),
                        kv_int("loadgen.variant", i64::from(variant)),
                    ],
                    status: Some(Status {
                        code: if i % 17 == 16 { status::StatusCode::Error } else { status::StatusCode::Ok } as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                by_service.entry(self.service(variant + slot + i)).or_default().push(span);
            }
        }
        let resource_spans = by_service
            .into_iter()
            .map(|(s, spans)| ResourceSpans {
                resource: Some(resource(s)),
                scope_spans: vec![ScopeSpans { scope: Some(scope()), spans, ..Default::default() }],
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest { resource_spans }
    }

    fn logs(&self, variant: u32, traces: u32, untraced: u32) -> ExportLogsServiceRequest {
        let mut by_service: BTreeMap<u32, Vec<LogRecord>> = BTreeMap::new();
        // Timestamps must be non-zero to be encoded: the template patches them per request.
        let record = |body: String, severity: i32| LogRecord {
            time_unix_nano: self.start_ns.max(1),
            observed_time_unix_nano: self.start_ns,
            severity_number: severity,
            severity_text: if severity >= 17 { "ERROR" } else { "INFO" }.into(),
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(body)) }),
            attributes: vec![kv_int("loadgen.variant", i64::from(variant))],
            ..Default::default()
        };
        for slot in 0..traces {
            for i in 0..self.spans_per_trace.max(1) {
                let mut r = record(format!("handled request step {i}"), if i % 13 == 12 { 17 } else { 9 });
                r.trace_id = placeholder_trace(slot);
                r.span_id = placeholder_span(i);
                r.flags = 1;
                by_service.entry(self.service(variant + slot + i)).or_default().push(r);
            }
        }
        for j in 0..untraced {
            let r = record(format!("background job {j} finished"), 9);
            by_service.entry(self.service(variant + j)).or_default().push(r);
        }
        let resource_logs = by_service
            .into_iter()
            .map(|(s, log_records)| ResourceLogs {
                resource: Some(resource(s)),
                scope_logs: vec![ScopeLogs { scope: Some(scope()), log_records, ..Default::default() }],
                ..Default::default()
            })
            .collect();
        ExportLogsServiceRequest { resource_logs }
    }

    fn metrics(&self, variant: u32) -> ExportMetricsServiceRequest {
        let ipr = self.items_per_request.max(1);
        let services = self.services.clamp(1, ipr);
        let point = |j: u32, value: number_data_point::Value| NumberDataPoint {
            attributes: vec![kv_int("loadgen.point", i64::from(j)), kv_int("loadgen.variant", i64::from(variant))],
            start_time_unix_nano: self.start_ns,
            time_unix_nano: self.start_ns.max(1),
            value: Some(value),
            ..Default::default()
        };
        let resource_metrics = (0..services)
            .map(|k| {
                let points = ipr / services + u32::from(k < ipr % services);
                let sums: Vec<_> = (0..points.div_ceil(2))
                    .map(|j| point(j, number_data_point::Value::AsInt(i64::from(j + 1) * 10)))
                    .collect();
                let gauges: Vec<_> =
                    (0..points / 2).map(|j| point(j, number_data_point::Value::AsDouble(f64::from(j) / 4.0))).collect();
                let mut metrics = vec![Metric {
                    name: "loadgen.requests".into(),
                    unit: "{request}".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: sums,
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }];
                if !gauges.is_empty() {
                    metrics.push(Metric {
                        name: "loadgen.queue.depth".into(),
                        unit: "{item}".into(),
                        data: Some(metric::Data::Gauge(Gauge { data_points: gauges })),
                        ..Default::default()
                    });
                }
                ResourceMetrics {
                    resource: Some(resource(self.service(variant + k))),
                    scope_metrics: vec![ScopeMetrics { scope: Some(scope()), metrics, ..Default::default() }],
                    ..Default::default()
                }
            })
            .collect();
        ExportMetricsServiceRequest { resource_metrics }
    }
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

/// The name of generated service `n`.
pub fn service_name(n: u32) -> String {
    format!("loadgen-svc-{n}")
}

fn resource(n: u32) -> Resource {
    Resource {
        attributes: vec![
            kv_str("service.name", &service_name(n)),
            kv_str("service.instance.id", &format!("loadgen-{n}-0")),
            kv_str("telemetry.sdk.name", "otlp-lb-tools"),
        ],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "otlp-lb-tools/loadgen".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}
