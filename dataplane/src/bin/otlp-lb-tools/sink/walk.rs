//! Reads what the sink counts out of an encoded OTLP request without decoding it: items, `service.name` of each
//! resource, trace ids, and a 64-bit identity per item for duplicate detection. Walks with `dataplane::wire`.

use dataplane::signal::{Signal, fields};
use dataplane::wire::{self, WireError};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// What to collect besides the counts.
#[derive(Debug, Clone, Copy)]
pub struct WalkOpts {
    /// Trace ids and item identities (for per-trace counts and duplicates).
    pub ids: bool,
    /// (trace id, span id, service) of every span, for `--out`.
    pub spans: bool,
}

/// One request's worth of counts.
#[derive(Debug, Default)]
pub struct Summary<'a> {
    pub items: u64,
    /// Items per resource, by `service.name` (`""` when absent); a service may repeat.
    pub services: Vec<(&'a str, u64)>,
    /// The trace id of every item that has one (unsorted, one entry per item).
    pub trace_ids: Vec<[u8; 16]>,
    /// Identity of every item: (trace id, span id) for spans, the record or point bytes plus resource for others.
    pub keys: Vec<u64>,
    /// Log records carrying a trace id.
    pub with_trace: u64,
    pub spans: Vec<(&'a [u8], &'a [u8], &'a str)>,
}

/// Walks `Export*ServiceRequest` `body` of `signal`.
pub fn walk(signal: Signal, body: &[u8], opts: WalkOpts) -> Result<Summary<'_>, WireError> {
    let mut s = Summary::default();
    for rf in wire::fields(body) {
        let rf = rf?;
        if rf.number != fields::REQUEST_RESOURCES {
            continue;
        }
        let resource_msg = rf.bytes()?;
        let service = service_name(resource_msg)?;
        let resource_seed = xxh3_64(service.as_bytes());
        let before = s.items;
        for sf in wire::fields(resource_msg) {
            let sf = sf?;
            if sf.number != fields::RESOURCE_SCOPES {
                continue;
            }
            for item in wire::fields(sf.bytes()?) {
                let item = item?;
                if item.number != fields::SCOPE_ITEMS {
                    continue;
                }
                match signal {
                    Signal::Traces => s.span(item.bytes()?, service, opts)?,
                    Signal::Logs => s.log(item.bytes()?, resource_seed, opts)?,
                    Signal::Metrics => s.metric(item.bytes()?, resource_seed, opts)?,
                }
            }
        }
        s.services.push((service, s.items - before));
    }
    Ok(s)
}

fn trace_id(bytes: &[u8]) -> Option<[u8; 16]> {
    let id: [u8; 16] = bytes.try_into().ok()?;
    (id != [0; 16]).then_some(id)
}

impl<'a> Summary<'a> {
    fn span(&mut self, span: &'a [u8], service: &'a str, opts: WalkOpts) -> Result<(), WireError> {
        self.items += 1;
        if !opts.ids && !opts.spans {
            return Ok(());
        }
        let (mut trace, mut id): (&[u8], &[u8]) = (&[], &[]);
        for f in wire::fields(span) {
            let f = f?;
            match f.number {
                fields::SPAN_TRACE_ID => trace = f.bytes()?,
                fields::SPAN_SPAN_ID => id = f.bytes()?,
                _ => {}
            }
        }
        if opts.ids {
            let mut key = [0u8; 24];
            key[..trace.len().min(16)].copy_from_slice(&trace[..trace.len().min(16)]);
            key[16..16 + id.len().min(8)].copy_from_slice(&id[..id.len().min(8)]);
            self.keys.push(xxh3_64(&key));
            self.trace_ids.extend(trace_id(trace));
        }
        if opts.spans {
            self.spans.push((trace, id, service));
        }
        Ok(())
    }

    fn log(&mut self, record: &'a [u8], resource_seed: u64, opts: WalkOpts) -> Result<(), WireError> {
        self.items += 1;
        let mut trace = None;
        for f in wire::fields(record) {
            let f = f?;
            if f.number == fields::LOG_TRACE_ID {
                trace = trace_id(f.bytes()?);
            }
        }
        if let Some(t) = trace {
            self.with_trace += 1;
            if opts.ids {
                self.trace_ids.push(t);
            }
        }
        if opts.ids {
            self.keys.push(xxh3_64_with_seed(record, resource_seed));
        }
        Ok(())
    }

    fn metric(&mut self, metric: &'a [u8], resource_seed: u64, opts: WalkOpts) -> Result<(), WireError> {
        let mut seed = resource_seed;
        for f in wire::fields(metric) {
            let f = f?;
            if f.number == fields::METRIC_NAME {
                seed ^= xxh3_64(f.bytes()?).rotate_left(17);
                continue;
            }
            if fields::data_point_attributes(f.number).is_none() {
                continue;
            }
            for dp in wire::fields(f.bytes()?) {
                let dp = dp?;
                if dp.number != fields::DATA_POINTS {
                    continue;
                }
                self.items += 1;
                if opts.ids {
                    self.keys.push(xxh3_64_with_seed(dp.bytes()?, seed ^ u64::from(f.number)));
                }
            }
        }
        Ok(())
    }
}

/// `service.name` of a `Resource*` message (its `resource` field), `""` when absent.
fn service_name(resource_msg: &[u8]) -> Result<&str, WireError> {
    for f in wire::fields(resource_msg) {
        let f = f?;
        if f.number != fields::RESOURCE {
            continue;
        }
        for attr in wire::fields(f.bytes()?) {
            let attr = attr?;
            if attr.number != fields::RESOURCE_ATTRIBUTES {
                continue;
            }
            let (mut key, mut value) = ("", None);
            for kv in wire::fields(attr.bytes()?) {
                let kv = kv?;
                match kv.number {
                    fields::KEY_VALUE_KEY => key = kv.str()?,
                    fields::KEY_VALUE_VALUE => value = Some(kv.bytes()?),
                    _ => {}
                }
            }
            if key != "service.name" {
                continue;
            }
            for v in wire::fields(value.unwrap_or_default()) {
                let v = v?;
                if v.number == fields::ANY_VALUE_STRING {
                    return v.str();
                }
            }
        }
    }
    Ok("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    fn resource_spans(service: Option<&str>, spans: Vec<Span>) -> ResourceSpans {
        let attributes = service
            .map(|s| KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue { value: Some(any_value::Value::StringValue(s.into())) }),
                ..Default::default()
            })
            .into_iter()
            .collect();
        ResourceSpans {
            resource: Some(Resource { attributes, ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }
    }

    #[test]
    fn counts_spans_services_trace_ids_and_identities() {
        let span = |t: u8, s: u8| Span { trace_id: vec![t; 16], span_id: vec![s; 8], ..Default::default() };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![
                resource_spans(Some("a"), vec![span(1, 1), span(1, 2), span(2, 1)]),
                resource_spans(None, vec![span(1, 1)]),
            ],
        }
        .encode_to_vec();
        let s = walk(Signal::Traces, &req, WalkOpts { ids: true, spans: true }).expect("valid");
        assert_eq!(s.items, 4);
        assert_eq!(s.services, vec![("a", 3), ("", 1)]);
        assert_eq!(s.trace_ids.len(), 4);
        assert_eq!(s.keys.len(), 4);
        assert_eq!(s.keys[0], s.keys[3], "same trace and span id: same identity");
        assert_ne!(s.keys[0], s.keys[1]);
        assert_eq!(s.spans[2], (&[2u8; 16][..], &[1u8; 8][..], "a"));
        assert!(walk(Signal::Traces, &req[..req.len() - 1], WalkOpts { ids: false, spans: false }).is_err());
    }
}
