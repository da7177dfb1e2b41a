//! Writes the seed inputs of the fuzz targets into `fuzz/seeds/<target>/` (checked in, a few KB in all):
//! small valid OTLP requests of each signal (from `dataplane::fixtures`), framed for each target's input layout.
//!
//! `CARGO_TARGET_DIR=target cargo run --manifest-path fuzz/Cargo.toml --example seeds` from the workspace root (a
//! plain build, not instrumented; the main workspace's target/ already holds most dependencies).

use std::io::Write;
use std::path::{Path, PathBuf};

use dataplane::fixtures::{self, kv};
use dataplane::signal::Signal;
use flate2::Compression;
use flate2::write::GzEncoder;
use fuzz_support::{Request, signal_keys};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// Two resources × two scopes × 3 traces of one span, with a `tenant` on the first resource and on every span of
/// trace 2 (for the `attributes` key's lookup order).
fn traces() -> ExportTraceServiceRequest {
    let mut req = fixtures::mixed_traces(3, 1);
    for (r, rs) in req.resource_spans.iter_mut().enumerate() {
        if r == 0 {
            rs.resource.get_or_insert_default().attributes.push(kv("tenant", "t1"));
        }
        for span in rs.scope_spans.iter_mut().flat_map(|ss| &mut ss.spans) {
            if span.name.ends_with("-2-0") {
                span.attributes.push(kv("tenant", "t2"));
            }
        }
    }
    req
}

fn requests() -> Vec<(Signal, Request)> {
    vec![
        (Signal::Traces, Request::Traces(traces())),
        (Signal::Metrics, Request::Metrics(fixtures::every_metric_type())),
        (Signal::Logs, Request::Logs(fixtures::varied_logs())),
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
