//! Builders of OTLP requests for tests.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

pub fn resource(service: &str) -> Option<Resource> {
    Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() })
}

/// A valid (non-zero) trace id for trace number `n`.
pub fn trace_id(n: u64) -> Vec<u8> {
    let n = n + 1;
    let mut id = vec![0u8; 16];
    id[..8].copy_from_slice(&n.to_be_bytes());
    id[8..].copy_from_slice(&(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes());
    id
}

/// Spans `first_span..first_span+spans_per_trace` of traces `traces`, one service per trace id modulo `services`.
pub fn traces(traces: std::ops::Range<u64>, spans: std::ops::Range<u64>, services: u64) -> ExportTraceServiceRequest {
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); services as usize];
    for t in traces {
        for s in spans.clone() {
            by_service[(t % services) as usize].push(Span {
                trace_id: trace_id(t),
                span_id: (t * 1000 + s + 1).to_be_bytes().to_vec(),
                name: format!("t{t}-s{s}"),
                ..Default::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .enumerate()
            .filter(|(_, spans)| !spans.is_empty())
            .map(|(i, spans)| ResourceSpans {
                resource: resource(&format!("svc-{i}")),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope { name: "test".into(), ..Default::default() }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

pub fn metrics(services: u64, points: u64) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: (0..services)
            .map(|i| ResourceMetrics {
                resource: resource(&format!("svc-{i}")),
                scope_metrics: vec![ScopeMetrics {
                    scope: None,
                    metrics: vec![Metric {
                        name: "queue_depth".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: (0..points)
                                .map(|p| NumberDataPoint {
                                    attributes: vec![kv("queue", &format!("q{p}"))],
                                    value: Some(number_data_point::Value::AsInt(p as i64)),
                                    ..Default::default()
                                })
                                .collect(),
                        })),
                        ..Default::default()
                    }],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// One log record per trace in `traces`, on service svc-0, plus `untraced` records without a trace id.
pub fn logs(traces: std::ops::Range<u64>, untraced: u64) -> ExportLogsServiceRequest {
    let mut records: Vec<LogRecord> = traces
        .map(|t| LogRecord {
            trace_id: trace_id(t),
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("log of t{t}"))) }),
            ..Default::default()
        })
        .collect();
    records.extend((0..untraced).map(|i| LogRecord {
        body: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("untraced {i}"))) }),
        ..Default::default()
    }));
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("svc-0"),
            scope_logs: vec![ScopeLogs { scope: None, log_records: records, schema_url: String::new() }],
            schema_url: String::new(),
        }],
    }
}
