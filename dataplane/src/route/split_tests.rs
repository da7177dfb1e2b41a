//! Tests of the splitter: every part decodes as a valid request, every item lands exactly once, with its resource
//! and scope, on the backend its key maps to.

use super::*;
use crate::fixtures::{self, kv, scope, service, string, trace_id};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use opentelemetry_proto::tonic::metrics::v1::{NumberDataPoint, metric};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};

const N: usize = 4;

/// Two services × two scopes × 10 traces × 3 spans, traces interleaved across scopes.
fn traces_request() -> ExportTraceServiceRequest {
    fixtures::mixed_traces(10, 3)
}

fn owner(h: u64) -> usize {
    (h % N as u64) as usize
}

fn split_ok(signal: Signal, msg: &impl Message, policy: &RoutingPolicy) -> Split {
    let body = Bytes::from(msg.encode_to_vec());
    split(signal, &body, policy, owner).expect("valid request splits")
}

/// (service, scope, span name) of every span of a request.
fn span_places(req: &ExportTraceServiceRequest) -> Vec<(String, String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let svc = rs.resource.as_ref().map(|r| format!("{:?}", r.attributes)).unwrap_or_default();
        for ss in &rs.scope_spans {
            assert_eq!(ss.schema_url, "s", "scope fields travel with the scope");
            let sc = ss.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
            for sp in &ss.spans {
                out.push((svc.clone(), sc.clone(), sp.name.clone(), sp.trace_id.clone()));
            }
        }
        assert_eq!(rs.schema_url, "r", "resource fields travel with the resource");
    }
    out
}

#[test]
fn traces_by_trace_id_land_once_on_their_owner() {
    let req = traces_request();
    let split = split_ok(Signal::Traces, &req, &RoutingPolicy::default());
    assert_eq!(split.items, 120);
    assert!(split.parts.len() > 1, "10 traces over 4 backends use several");
    let mut all = Vec::new();
    let mut backend_of_trace: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for part in &split.parts {
        let decoded = ExportTraceServiceRequest::decode(part.body.clone()).expect("part decodes");
        let places = span_places(&decoded);
        assert_eq!(part.items, places.len() as u64);
        for p in &places {
            assert_eq!(owner(hash_key(&p.3)), part.backend, "span on its trace's owner");
            let prev = backend_of_trace.insert(p.3.clone(), part.backend);
            assert!(prev.is_none_or(|b| b == part.backend), "trace split across backends");
        }
        all.extend(places);
    }
    let mut want = span_places(&req);
    all.sort();
    want.sort();
    assert_eq!(all, want, "every span exactly once, with its resource and scope");
}

#[test]
fn one_owner_forwards_the_original_bytes() {
    let req = traces_request();
    let body = Bytes::from(req.encode_to_vec());
    let split = split(Signal::Traces, &body, &RoutingPolicy::default(), |_| 2).expect("splits");
    assert_eq!(split.parts.len(), 1);
    assert_eq!(split.parts[0].backend, 2);
    assert_eq!(split.parts[0].body, body);
    assert_eq!(split.parts[0].body.as_ptr(), body.as_ptr(), "no copy");
}

#[test]
fn traces_by_service_keep_a_service_together() {
    let policy = RoutingPolicy { traces: RoutingKey::Service, ..Default::default() };
    let split = split_ok(Signal::Traces, &traces_request(), &policy);
    let mut seen = BTreeSet::new();
    for part in &split.parts {
        let decoded = ExportTraceServiceRequest::decode(part.body.clone()).expect("decodes");
        for rs in decoded.resource_spans {
            let attrs = rs.resource.expect("resource").attributes;
            let name = match &attrs[0].value.as_ref().and_then(|v| v.value.clone()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => panic!("service.name {other:?}"),
            };
            assert_eq!(owner(hash_key(name.as_bytes())), part.backend);
            assert!(seen.insert(name), "a service in one part only");
        }
    }
    assert_eq!(seen.len(), 2);
}

#[test]
fn attributes_key_looks_up_resource_then_scope_then_span() {
    let mut req = traces_request();
    for (i, sp) in req.resource_spans[0].scope_spans[0].spans.iter_mut().enumerate() {
        sp.attributes.push(kv("tenant", &format!("t{}", i % 2)));
    }
    let policy =
        RoutingPolicy { traces: RoutingKey::Attributes, attributes: vec!["tenant".into()], ..Default::default() };
    let split = split_ok(Signal::Traces, &req, &policy);
    let mut tenant_backend = BTreeMap::new();
    for part in &split.parts {
        let decoded = ExportTraceServiceRequest::decode(part.body.clone()).expect("decodes");
        for sp in decoded.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
            if let Some(t) = sp.attributes.iter().find(|a| a.key == "tenant") {
                let mut key = Vec::new();
                crate::wire::put_len_field(&mut key, 1, b"tenant");
                crate::wire::put_len_field(&mut key, 2, &t.value.as_ref().expect("v").encode_to_vec());
                assert_eq!(owner(hash_key(&key)), part.backend);
                tenant_backend.entry(format!("{:?}", t.value)).or_insert(part.backend);
            } else {
                assert_eq!(owner(hash_key(&sp.trace_id)), part.backend, "no attribute: by trace id");
            }
        }
    }
    assert_eq!(tenant_backend.len(), 2);
}

fn log_request() -> ExportLogsServiceRequest {
    let records = (0..40u64)
        .map(|i| LogRecord {
            trace_id: if i % 4 == 0 { vec![] } else { trace_id(i % 10) },
            body: string(&format!("log {i}")),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![fixtures::resource_logs(service("cart"), scope("app", "1.0"), records)],
    }
}

#[test]
fn logs_follow_their_trace_and_fall_back_to_service() {
    let split = split_ok(Signal::Logs, &log_request(), &RoutingPolicy::default());
    let mut count = 0;
    for part in &split.parts {
        let decoded = ExportLogsServiceRequest::decode(part.body.clone()).expect("decodes");
        for rec in decoded.resource_logs.iter().flat_map(|r| &r.scope_logs).flat_map(|s| &s.log_records) {
            count += 1;
            let expect = if rec.trace_id.is_empty() { hash_key(b"cart") } else { hash_key(&rec.trace_id) };
            assert_eq!(owner(expect), part.backend);
        }
    }
    assert_eq!(count, 40);
    assert_eq!(split.items, 40);
}

fn point(attr: &str, v: i64) -> NumberDataPoint {
    fixtures::int_point(vec![kv("path", attr)], v)
}

fn metrics_request() -> ExportMetricsServiceRequest {
    let sum = fixtures::counter("requests", "1", (0..12).map(|i| point(&format!("/p{i}"), i)).collect());
    let gauge = fixtures::gauge("queue", "", vec![point("/q", 1), point("/r", 2)]);
    ExportMetricsServiceRequest {
        resource_metrics: vec![fixtures::resource_metrics(service("cart"), scope("m", "1.0"), vec![sum, gauge])],
    }
}

/// (metric name, point attribute) → backend, with metric headers checked on every copy.
fn points_by_backend(split: &Split) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for part in &split.parts {
        let decoded = ExportMetricsServiceRequest::decode(part.body.clone()).expect("part decodes");
        let mut n = 0;
        for m in decoded.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics) {
            let points = match &m.data {
                Some(metric::Data::Sum(s)) => {
                    assert_eq!((s.aggregation_temporality, s.is_monotonic, m.unit.as_str()), (2, true, "1"));
                    &s.data_points
                }
                Some(metric::Data::Gauge(g)) => &g.data_points,
                other => panic!("unexpected {other:?}"),
            };
            for p in points {
                n += 1;
                let path = format!("{:?}", p.attributes[0].value);
                assert!(out.insert((m.name.clone(), path), part.backend).is_none(), "point delivered twice");
            }
        }
        assert_eq!(part.items, n);
    }
    out
}

#[test]
fn metrics_by_stream_id_split_points_and_keep_headers() {
    let policy = RoutingPolicy { metrics: RoutingKey::StreamId, ..Default::default() };
    let split = split_ok(Signal::Metrics, &metrics_request(), &policy);
    assert_eq!(split.items, 14);
    let placed = points_by_backend(&split);
    assert_eq!(placed.len(), 14, "every point exactly once");
    let backends: BTreeSet<_> = placed.iter().filter(|(k, _)| k.0 == "requests").map(|(_, b)| *b).collect();
    assert!(backends.len() > 1, "12 streams of one metric spread over backends");
    // Deterministic: the same stream goes to the same backend in another request.
    assert_eq!(placed, points_by_backend(&split_ok(Signal::Metrics, &metrics_request(), &policy)));
}

#[test]
fn metrics_by_service_and_by_name_keep_metrics_whole() {
    let by_service = split_ok(Signal::Metrics, &metrics_request(), &RoutingPolicy::default());
    assert_eq!(by_service.parts.len(), 1);
    assert_eq!(by_service.parts[0].backend, owner(hash_key(b"cart")));
    assert_eq!(by_service.items, 14);
    let policy = RoutingPolicy { metrics: RoutingKey::Metric, ..Default::default() };
    for ((name, _), backend) in points_by_backend(&split_ok(Signal::Metrics, &metrics_request(), &policy)) {
        assert_eq!(owner(hash_key(name.as_bytes())), backend);
    }
}

#[test]
fn malformed_requests_are_errors_not_panics() {
    let good = traces_request().encode_to_vec();
    for cut in [1, 3, good.len() / 2, good.len() - 1] {
        let body = Bytes::copy_from_slice(&good[..cut]);
        assert!(split(Signal::Traces, &body, &RoutingPolicy::default(), owner).is_err(), "cut at {cut}");
    }
    let err = split(Signal::Logs, &Bytes::from_static(&[0x0a, 0x7f, 0x00]), &RoutingPolicy::default(), owner)
        .expect_err("length past the end");
    assert!(err.to_string().contains("malformed logs request"), "{err}");
}

#[test]
fn empty_request_has_no_parts() {
    let split = split(Signal::Traces, &Bytes::new(), &RoutingPolicy::default(), owner).expect("empty is valid");
    assert!(split.parts.is_empty());
    assert_eq!(split.items, 0);
}

/// A Metric whose data oneof is on the wire twice: `gauge {p0}` then `gauge {p1, p2}` (parsers merge them), and
/// one with a `sum` before a `gauge` (the gauge wins).
fn repeated_oneof_request() -> (Bytes, usize) {
    use crate::wire::put_len_field;
    let point = |i: i64| point(&format!("/r{i}"), i).encode_to_vec();
    let gauge = |ps: &[i64]| {
        let mut g = Vec::new();
        ps.iter().for_each(|p| put_len_field(&mut g, 1, &point(*p)));
        g
    };
    let mut merged = Vec::new();
    put_len_field(&mut merged, 1, b"merged");
    put_len_field(&mut merged, 5, &gauge(&[0]));
    put_len_field(&mut merged, 5, &gauge(&[1, 2]));
    let mut replaced = Vec::new();
    put_len_field(&mut replaced, 1, b"replaced");
    put_len_field(&mut replaced, 7, &gauge(&[90, 91]));
    put_len_field(&mut replaced, 5, &gauge(&[3, 4, 5]));
    let mut scope = Vec::new();
    put_len_field(&mut scope, 2, &merged);
    put_len_field(&mut scope, 2, &replaced);
    let mut rm = Vec::new();
    put_len_field(&mut rm, 1, &service("cart").expect("resource").encode_to_vec());
    put_len_field(&mut rm, 2, &scope);
    let mut req = Vec::new();
    put_len_field(&mut req, 1, &rm);
    (Bytes::from(req), 6)
}

#[test]
fn a_repeated_data_oneof_is_read_as_protobuf_parsers_read_it() {
    let (body, points) = repeated_oneof_request();
    let decoded = ExportMetricsServiceRequest::decode(body.clone()).expect("valid protobuf");
    let mut want = BTreeSet::new();
    for m in decoded.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics) {
        if let Some(metric::Data::Gauge(g)) = &m.data {
            g.data_points.iter().for_each(|p| {
                want.insert((m.name.clone(), format!("{:?}", p.attributes[0].value)));
            });
        }
    }
    assert_eq!(want.len(), points, "prost merges the first metric and keeps the last member of the second");
    for key in [RoutingKey::Service, RoutingKey::StreamId] {
        for n in [1u64, 3] {
            let policy = RoutingPolicy { metrics: key, ..Default::default() };
            let split = split(Signal::Metrics, &body, &policy, |h| (h % n) as usize).expect("splits");
            assert_eq!(split.items, points as u64, "{key:?} over {n}: counted as parsed");
            let mut got = BTreeSet::new();
            let mut total = 0;
            for part in &split.parts {
                let d = ExportMetricsServiceRequest::decode(part.body.clone()).expect("part decodes");
                let mut in_part = 0;
                for m in d.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics) {
                    if let Some(metric::Data::Gauge(g)) = &m.data {
                        for p in &g.data_points {
                            got.insert((m.name.clone(), format!("{:?}", p.attributes[0].value)));
                            in_part += 1;
                        }
                    }
                }
                assert_eq!(part.items, in_part, "{key:?} over {n}: part count");
                total += in_part;
            }
            assert_eq!(got, want, "{key:?} over {n}: every point once");
            assert_eq!(total, points as u64, "{key:?} over {n}: no duplicates");
        }
    }
}

/// Logs of 12 resources (service × host), the first one sent twice with its attributes in the other order.
fn logs_of_resources() -> ExportLogsServiceRequest {
    let attrs = |i: usize| vec![kv("service.name", &format!("svc{}", i % 4)), kv("host", &format!("h{}", i / 4))];
    let records = |i: usize, n: usize| {
        (0..n).map(|r| LogRecord { body: string(&format!("{i}/{r}")), ..Default::default() }).collect()
    };
    let mut rl: Vec<ResourceLogs> = (0..12)
        .map(|i| fixtures::resource_logs(fixtures::resource(attrs(i)), scope("app", "1.0"), records(i, 3)))
        .collect();
    let mut reversed = attrs(0);
    reversed.reverse();
    rl.push(fixtures::resource_logs(fixtures::resource(reversed), scope("app", "1.0"), records(0, 2)));
    ExportLogsServiceRequest { resource_logs: rl }
}

#[test]
fn resource_key_keeps_each_resource_whole_whatever_its_attribute_order() {
    let policy = RoutingPolicy { logs: RoutingKey::Resource, ..Default::default() };
    let split = split_ok(Signal::Logs, &logs_of_resources(), &policy);
    assert_eq!(split.items, 12 * 3 + 2);
    // resource index (from the record bodies) → backends; every record once.
    let mut homes: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let mut records = 0;
    for part in &split.parts {
        let decoded = ExportLogsServiceRequest::decode(part.body.clone()).expect("part decodes");
        for rec in decoded.resource_logs.iter().flat_map(|r| &r.scope_logs).flat_map(|s| &s.log_records) {
            let Some(any_value::Value::StringValue(body)) = rec.body.as_ref().and_then(|b| b.value.clone()) else {
                panic!("record without its body");
            };
            let resource = body.split('/').next().unwrap_or_default().to_string();
            homes.entry(resource).or_default().insert(part.backend);
            records += 1;
        }
    }
    assert_eq!(records, 12 * 3 + 2, "every record exactly once");
    assert_eq!(homes.len(), 12);
    assert!(homes.values().all(|b| b.len() == 1), "a resource (in either attribute order) on one backend: {homes:?}");
    let used: BTreeSet<usize> = homes.values().flatten().copied().collect();
    assert!(used.len() > 1, "12 resources spread over backends");

    // Metrics by resource: the same resource attributes go to the same backend as its logs.
    let mut metrics = metrics_request();
    metrics.resource_metrics[0].resource = logs_of_resources().resource_logs[5].resource.clone();
    let policy = RoutingPolicy { metrics: RoutingKey::Resource, ..Default::default() };
    let by_resource = split_ok(Signal::Metrics, &metrics, &policy);
    assert_eq!(by_resource.parts.len(), 1, "one resource: one part");
    assert_eq!(Some(&BTreeSet::from([by_resource.parts[0].backend])), homes.get("5"));
    assert_eq!(by_resource.items, 14);
}
