//! `split` on well-formed requests built by `arbitrary`: resources (service, tenant, other attributes, sometimes
//! none), scopes, and spans or log records with trace ids drawn from a small pool (so traces repeat across
//! resources and scopes), empty, all-zero or arbitrary. Encoded by prost, split by trace id over 1..=8 backends.
//!
//! Every span lands exactly once, with its own resource and scope, in input order within its part; spans of one
//! trace id share a backend, the one its trace id hashes to; log records without a trace id (empty or all zero)
//! go by their resource's `service.name`; each part's count is its number of items; the total is the request's.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use bytes::Bytes;
use dataplane::route::key::{RoutingPolicy, hash_key};
use dataplane::route::split::split;
use dataplane::signal::Signal;
use fuzz_support::Request;
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

#[derive(Arbitrary, Debug)]
struct Input {
    logs: bool,
    backends: u8,
    resources: Vec<Res>,
}

#[derive(Arbitrary, Debug)]
struct Res {
    /// No `Resource` message at all.
    absent: bool,
    attrs: Vec<Attr>,
    schema: bool,
    scopes: Vec<Scp>,
}

#[derive(Arbitrary, Debug)]
struct Scp {
    absent: bool,
    name: u8,
    attrs: Vec<Attr>,
    schema: bool,
    items: Vec<Item>,
}

#[derive(Arbitrary, Debug)]
struct Item {
    trace: Trace,
    attrs: Vec<Attr>,
}

#[derive(Arbitrary, Debug)]
enum Trace {
    Empty,
    Zero,
    Pool(u8),
    Raw([u8; 16]),
    Odd(Vec<u8>),
}

impl Trace {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Trace::Empty => Vec::new(),
            Trace::Zero => vec![0; 16],
            Trace::Pool(t) => {
                let mut id = vec![0u8; 16];
                id[0] = t % 6;
                id[15] = 1;
                id
            }
            Trace::Raw(id) => id.to_vec(),
            Trace::Odd(id) => id.clone(),
        }
    }
}

/// An attribute: key from a small set that includes the routing attributes, value a string from a small set or an
/// int (a `service.name` that is not a string counts as none).
#[derive(Arbitrary, Debug)]
struct Attr {
    key: u8,
    value: u8,
    int: bool,
}

const KEYS: [&str; 4] = ["service.name", "tenant", "host", "k8s.pod.name"];
const VALUES: [&str; 5] = ["checkout", "cart", "", "t1", "t2"];

impl Attr {
    fn kv(&self) -> KeyValue {
        let value = if self.int {
            any_value::Value::IntValue(i64::from(self.value))
        } else {
            any_value::Value::StringValue(VALUES[self.value as usize % VALUES.len()].into())
        };
        KeyValue {
            key: KEYS[self.key as usize % KEYS.len()].into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }
}

fn kvs(attrs: &[Attr]) -> Vec<KeyValue> {
    attrs.iter().map(Attr::kv).collect()
}

/// The service a resource's log records without a trace id go by: the first `service.name`, if a string.
fn service_of(resource: &Option<Resource>) -> Vec<u8> {
    let first = resource.as_ref().and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"));
    match first.and_then(|a| a.value.as_ref()).and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone().into_bytes(),
        _ => Vec::new(),
    }
}

/// Where an item is expected: resource envelope, scope envelope, item, routing key bytes.
type Expect = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

fuzz_target!(|input: Input| {
    let n = (input.backends % 8) as usize + 1;
    let owner = |h: u64| (h % n as u64) as usize;
    let signal = if input.logs { Signal::Logs } else { Signal::Traces };
    // Items are numbered in input order; the number is the span id (or the log record's span id), unique.
    let mut next: u64 = 0;
    let mut expect: Vec<Expect> = Vec::new();
    let mut traces = ExportTraceServiceRequest::default();
    let mut logs = ExportLogsServiceRequest::default();
    for r in &input.resources {
        let resource = (!r.absent).then(|| Resource { attributes: kvs(&r.attrs), ..Default::default() });
        let rschema = if r.schema { "https://opentelemetry.io/schemas/1.0.0".to_string() } else { String::new() };
        let service = service_of(&resource);
        let mut scope_spans = Vec::new();
        let mut scope_logs = Vec::new();
        for s in &r.scopes {
            let scope = (!s.absent).then(|| InstrumentationScope {
                name: format!("scope-{}", s.name % 4),
                version: "1.0".into(),
                attributes: kvs(&s.attrs),
                ..Default::default()
            });
            let sschema = if s.schema { "s".to_string() } else { String::new() };
            let renv_t = ResourceSpans { resource: resource.clone(), scope_spans: vec![], schema_url: rschema.clone() };
            let senv_t = ScopeSpans { scope: scope.clone(), spans: vec![], schema_url: sschema.clone() };
            let renv_l = ResourceLogs { resource: resource.clone(), scope_logs: vec![], schema_url: rschema.clone() };
            let senv_l = ScopeLogs { scope: scope.clone(), log_records: vec![], schema_url: sschema.clone() };
            let mut spans = Vec::new();
            let mut records = Vec::new();
            for it in &s.items {
                let id = next.to_be_bytes().to_vec();
                next += 1;
                let trace_id = it.trace.bytes();
                if input.logs {
                    let rec = LogRecord {
                        trace_id: trace_id.clone(),
                        span_id: id,
                        attributes: kvs(&it.attrs),
                        severity_number: 9,
                        ..Default::default()
                    };
                    let key = if trace_id.iter().all(|b| *b == 0) { service.clone() } else { trace_id };
                    expect.push((renv_l.encode_to_vec(), senv_l.encode_to_vec(), rec.encode_to_vec(), key));
                    records.push(rec);
                } else {
                    let span = Span {
                        trace_id: trace_id.clone(),
                        span_id: id,
                        name: "op".into(),
                        attributes: kvs(&it.attrs),
                        ..Default::default()
                    };
                    expect.push((renv_t.encode_to_vec(), senv_t.encode_to_vec(), span.encode_to_vec(), trace_id));
                    spans.push(span);
                }
            }
            scope_spans.push(ScopeSpans { spans, ..senv_t });
            scope_logs.push(ScopeLogs { log_records: records, ..senv_l });
        }
        traces.resource_spans.push(ResourceSpans {
            scope_spans,
            resource: resource.clone(),
            schema_url: rschema.clone(),
        });
        logs.resource_logs.push(ResourceLogs { scope_logs, resource, schema_url: rschema });
    }
    let body = Bytes::from(if input.logs { logs.encode_to_vec() } else { traces.encode_to_vec() });
    let s = split(signal, &body, &RoutingPolicy::default(), owner).expect("a prost-encoded request splits");
    assert_eq!(s.items, next, "the split counts every item");

    let mut landed: Vec<Option<usize>> = vec![None; expect.len()];
    let mut trace_backend: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for p in &s.parts {
        let part = Request::decode(signal, &p.body).expect("every part decodes");
        let placed = match &part {
            // `placed` sorts; order within the part is checked on the decoded request itself.
            Request::Traces(t) => t
                .resource_spans
                .iter()
                .flat_map(|r| r.scope_spans.iter().map(move |s| (r, s)))
                .flat_map(|(r, s)| {
                    s.spans.iter().map(move |sp| (r, s, sp.span_id.clone(), sp.trace_id.clone(), sp.encode_to_vec()))
                })
                .map(|(r, s, id, tid, enc)| {
                    let renv = ResourceSpans { scope_spans: vec![], ..r.clone() }.encode_to_vec();
                    let senv = ScopeSpans { spans: vec![], ..s.clone() }.encode_to_vec();
                    (id, tid, renv, senv, enc)
                })
                .collect::<Vec<_>>(),
            Request::Logs(l) => l
                .resource_logs
                .iter()
                .flat_map(|r| r.scope_logs.iter().map(move |s| (r, s)))
                .flat_map(|(r, s)| {
                    s.log_records
                        .iter()
                        .map(move |lr| (r, s, lr.span_id.clone(), lr.trace_id.clone(), lr.encode_to_vec()))
                })
                .map(|(r, s, id, tid, enc)| {
                    let renv = ResourceLogs { scope_logs: vec![], ..r.clone() }.encode_to_vec();
                    let senv = ScopeLogs { log_records: vec![], ..s.clone() }.encode_to_vec();
                    (id, tid, renv, senv, enc)
                })
                .collect::<Vec<_>>(),
            Request::Metrics(_) => unreachable!(),
        };
        assert_eq!(p.items, placed.len() as u64, "a part's count is its number of items");
        let mut last: Option<usize> = None;
        for (id, tid, renv, senv, enc) in placed {
            let i = u64::from_be_bytes(id.try_into().expect("8-byte span id")) as usize;
            assert!(last.is_none_or(|l| l < i), "items keep their input order within a part");
            last = Some(i);
            assert!(landed[i].replace(p.backend).is_none(), "item {i} delivered twice");
            let (want_r, want_s, want_item, key) = &expect[i];
            assert!(renv == *want_r, "item {i} keeps its resource");
            assert!(senv == *want_s, "item {i} keeps its scope");
            assert!(enc == *want_item, "item {i} arrives as sent");
            assert_eq!(owner(hash_key(key)), p.backend, "item {i} on its key's owner");
            if !input.logs || tid.iter().any(|b| *b != 0) {
                let b = *trace_backend.entry(tid).or_insert(p.backend);
                assert_eq!(b, p.backend, "a trace split across backends");
            }
        }
    }
    if let Some(i) = landed.iter().position(Option::is_none) {
        panic!("item {i} was not delivered");
    }
});
