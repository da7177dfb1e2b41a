//! Writes the seed inputs of the fuzz targets into `fuzz/seeds/<target>/` (checked in, a few KB in all):
//! small valid OTLP requests of each signal, framed for each target's input layout.
//!
//! `CARGO_TARGET_DIR=target cargo run --manifest-path fuzz/Cargo.toml --example seeds` from the workspace root (a
//! plain build, not instrumented; the main workspace's target/ already holds most dependencies).

use std::io::Write;
use std::path::{Path, PathBuf};

use dataplane::signal::Signal;
use flate2::Compression;
use flate2::write::GzEncoder;
use fuzz_support::{Request, signal_keys};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, exponential_histogram_data_point, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

fn resource(service: &str, tenant: Option<&str>) -> Option<Resource> {
    let mut attributes = vec![kv("service.name", service)];
    attributes.extend(tenant.map(|t| kv("tenant", t)));
    Some(Resource { attributes, ..Default::default() })
}

fn scope(name: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope { name: name.into(), version: "1".into(), ..Default::default() })
}

fn trace_id(t: u8) -> Vec<u8> {
    let mut id = vec![0u8; 16];
    id[0] = t;
    id[15] = 1;
    id
}

fn traces() -> ExportTraceServiceRequest {
    let resource_spans = [("checkout", Some("t1")), ("cart", None)]
        .into_iter()
        .enumerate()
        .map(|(r, (svc, tenant))| ResourceSpans {
            resource: resource(svc, tenant),
            scope_spans: ["http", "db"]
                .into_iter()
                .map(|sc| ScopeSpans {
                    scope: scope(sc),
                    spans: (0..3u8)
                        .map(|i| Span {
                            trace_id: trace_id(i),
                            span_id: vec![r as u8, i, 0, 0, 0, 0, 0, 1],
                            name: format!("{sc}{i}"),
                            attributes: if i == 2 { vec![kv("tenant", "t2")] } else { vec![] },
                            ..Default::default()
                        })
                        .collect(),
                    schema_url: String::new(),
                })
                .collect(),
            schema_url: String::new(),
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

fn logs() -> ExportLogsServiceRequest {
    let log_records = (0..4u8)
        .map(|i| LogRecord {
            trace_id: match i {
                0 => vec![],
                1 => vec![0; 16],
                _ => trace_id(i),
            },
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("log {i}"))) }),
            attributes: if i == 3 { vec![kv("tenant", "t1")] } else { vec![] },
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("cart", None),
            scope_logs: vec![ScopeLogs { scope: scope("app"), log_records, schema_url: String::new() }],
            schema_url: String::new(),
        }],
    }
}

fn point(path: &str, v: i64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: vec![kv("path", path)],
        value: Some(number_data_point::Value::AsInt(v)),
        ..Default::default()
    }
}

fn metrics() -> ExportMetricsServiceRequest {
    let m = |name: &str, data: metric::Data| Metric {
        name: name.into(),
        unit: "1".into(),
        data: Some(data),
        ..Default::default()
    };
    let metrics = vec![
        m(
            "requests",
            metric::Data::Sum(Sum {
                data_points: vec![point("/a", 1), point("/b", 2), point("/c", 3)],
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
        m("queue", metric::Data::Gauge(Gauge { data_points: vec![point("/q", 1)] })),
        m(
            "latency",
            metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: vec![kv("tenant", "t1")],
                    count: 2,
                    bucket_counts: vec![1, 1],
                    explicit_bounds: vec![1.0],
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            }),
        ),
        m(
            "size",
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    attributes: vec![kv("path", "/e")],
                    count: 1,
                    positive: Some(exponential_histogram_data_point::Buckets { offset: 0, bucket_counts: vec![1] }),
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            }),
        ),
        m(
            "rt",
            metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    attributes: vec![kv("path", "/s")],
                    count: 1,
                    sum: 2.0,
                    ..Default::default()
                }],
            }),
        ),
        Metric { name: "empty".into(), ..Default::default() },
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("cart", Some("t1")),
            scope_metrics: vec![ScopeMetrics { scope: scope("m"), metrics, schema_url: String::new() }],
            schema_url: String::new(),
        }],
    }
}

fn requests() -> Vec<(Signal, Request)> {
    vec![
        (Signal::Traces, Request::Traces(traces())),
        (Signal::Metrics, Request::Metrics(metrics())),
        (Signal::Logs, Request::Logs(logs())),
    ]
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn write(dir: &Path, target: &str, name: &str, data: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("seed dir");
    std::fs::write(d.join(name), data).expect("seed file");
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let _ = std::fs::remove_dir_all(&dir);
    let pairs = signal_keys();
    for (signal, req) in requests() {
        let pb = req.encode();
        write(&dir, "wire_fields", signal.name(), &pb);
        for (i, (s, key)) in pairs.iter().enumerate() {
            if *s == signal {
                let mut input = vec![i as u8, 3];
                input.extend_from_slice(&pb);
                write(&dir, "split_request", &format!("{}-{}", signal.name(), key.name()), &input);
            }
        }
        let json = match &req {
            Request::Traces(r) => serde_json::to_vec(r),
            Request::Metrics(r) => serde_json::to_vec(r),
            Request::Logs(r) => serde_json::to_vec(r),
        }
        .expect("json");
        write(&dir, "json_decode", &format!("{}.json", signal.name()), &json);
        // gzip_limit: mode 0 = a gzip body, mode 1 = a payload compressed by the target; limits below and above.
        for (mode, limit) in [(0u8, 4096u16), (1, 4096), (0, 64), (3, 64)] {
            let mut input = vec![mode];
            input.extend_from_slice(&limit.to_le_bytes());
            input.extend_from_slice(&if mode % 2 == 0 { gzip(&json) } else { json.clone() });
            write(&dir, "gzip_limit", &format!("{}-{mode}-{limit}", signal.name()), &input);
        }
    }
    write(&dir, "json_decode", "spec-style.json", br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},"scopeSpans":[{"scope":{"name":"my.library","version":"1.0.0"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173","name":"I'm a server span","startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000","kind":2,"attributes":[{"key":"my.span.attr","value":{"intValue":"42"}}]}]}]}]}"#);
    write(&dir, "json_decode", "metrics-spec.json", br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"s"}}]},"scopeMetrics":[{"scope":{"name":"m"},"metrics":[{"name":"c","unit":"1","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"asInt":"5","startTimeUnixNano":"1","timeUnixNano":"2","attributes":[{"key":"k","value":{"doubleValue":1.5}}]}]}},{"name":"h","histogram":{"aggregationTemporality":1,"dataPoints":[{"count":"2","sum":2,"bucketCounts":["1","1"],"explicitBounds":[1],"min":0,"max":2}]}}]}]}]}"#);
    write(&dir, "json_decode", "logs-spec.json", br#"{"resourceLogs":[{"resource":{},"scopeLogs":[{"scope":{},"logRecords":[{"timeUnixNano":"1544712660300000000","severityNumber":10,"severityText":"Information","traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","body":{"kvlistValue":{"values":[{"key":"a","value":{"arrayValue":{"values":[{"boolValue":true},{"bytesValue":"aGk="}]}}}]}}}]}]}]}"#);
    // split_structured reads its input through `arbitrary`: a few deterministic byte strings of several sizes.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in [16usize, 64, 256, 1024] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        write(&dir, "split_structured", &format!("random-{len}"), &bytes);
    }
    println!("seeds written to {}", dir.display());
}
