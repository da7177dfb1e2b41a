//! Tests of where the splitter reads each item's routing key, and of what an item routed by `attributes` goes by
//! when it carries none of them: a span or log record by its trace, a data point by its service.

use super::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

fn service(name: &str) -> Option<Resource> {
    Some(Resource { attributes: vec![kv("service.name", name)], ..Default::default() })
}

/// The key hash of every item (or data point) of `body`, in request order.
fn keys(signal: Signal, body: Vec<u8>, policy: &RoutingPolicy) -> Vec<u64> {
    let mut seen = Vec::new();
    split(signal, &Bytes::from(body), policy, |h| {
        seen.push(h);
        0
    })
    .expect("a valid request");
    seen
}

fn tenant_policy(key: RoutingKey) -> RoutingPolicy {
    RoutingPolicy { traces: key, metrics: key, logs: key, attributes: vec!["tenant".into()] }
}

#[test]
fn a_span_without_the_attributes_goes_by_its_trace() {
    let span = |id: u8, attrs: Vec<KeyValue>| Span {
        trace_id: vec![id; 16],
        span_id: vec![id; 8],
        attributes: attrs,
        ..Default::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: service("cart"),
            scope_spans: vec![ScopeSpans {
                spans: vec![span(1, vec![kv("tenant", "a")]), span(2, vec![])],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let got = keys(Signal::Traces, request.encode_to_vec(), &tenant_policy(RoutingKey::Attributes));
    assert_eq!(got.len(), 2, "one key per span");
    assert_eq!(got[1], hash_key(&[2; 16]), "the span without the attribute goes by its trace");
    assert_ne!(got[0], hash_key(&[1; 16]), "the span with the attribute goes by its value");
    let by_trace = keys(Signal::Traces, request.encode_to_vec(), &tenant_policy(RoutingKey::TraceId));
    assert_eq!(by_trace, [hash_key(&[1; 16]), hash_key(&[2; 16])]);
}

#[test]
fn a_data_point_without_the_attributes_goes_by_its_service() {
    let point = |attrs: Vec<KeyValue>, v: i64| NumberDataPoint {
        attributes: attrs,
        value: Some(number_data_point::Value::AsInt(v)),
        ..Default::default()
    };
    let gauge = Metric {
        name: "queue".into(),
        unit: "1".into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![point(vec![kv("tenant", "a")], 1), point(vec![], 2)],
        })),
        ..Default::default()
    };
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: service("cart"),
            scope_metrics: vec![ScopeMetrics { metrics: vec![gauge], ..Default::default() }],
            ..Default::default()
        }],
    };
    let body = request.encode_to_vec();
    let got = keys(Signal::Metrics, body.clone(), &tenant_policy(RoutingKey::Attributes));
    assert_eq!(got.len(), 2, "one key per data point");
    assert_eq!(got[1], hash_key(b"cart"), "the point without the attribute goes by its service");
    assert_ne!(got[0], got[1]);
    let streams = keys(Signal::Metrics, body.clone(), &tenant_policy(RoutingKey::StreamId));
    assert_eq!(streams.len(), 2, "one key per data point");
    assert_ne!(streams[0], streams[1], "two streams: the attributes differ");
    assert_eq!(keys(Signal::Metrics, body.clone(), &tenant_policy(RoutingKey::Service)), [hash_key(b"cart")]);
    assert_eq!(keys(Signal::Metrics, body, &tenant_policy(RoutingKey::Metric)), [hash_key(b"queue")]);
}
