//! A pre-encoded request and the offsets of the bytes that change from one send to the next.
//!
//! Templates are encoded once with prost, with placeholder ids that name a trace slot and a span index. Walking the
//! encoding with `dataplane::wire` finds where every placeholder (and every timestamp to refresh) sits; a send then
//! copies the template and overwrites those bytes in place — no protobuf encoding on the hot path.

use bytes::Bytes;
use dataplane::signal::{Signal, fields};
use dataplane::wire::{self, Field, WireError};

use super::ids::IdGen;

const TRACE_MARK: [u8; 4] = [0xa5; 4];
const SPAN_MARK: [u8; 4] = [0x5a; 4];
/// `Span.parent_span_id`, `LogRecord.span_id`, `LogRecord.time_unix_nano`, `NumberDataPoint.time_unix_nano`.
const SPAN_PARENT: u32 = 4;
const LOG_SPAN_ID: u32 = 10;
const LOG_TIME: u32 = 1;
const POINT_TIME: u32 = 3;

/// Placeholder trace id naming trace slot `slot` of a template.
pub fn placeholder_trace(slot: u32) -> Vec<u8> {
    let mut v = vec![0u8; 16];
    v[..4].copy_from_slice(&TRACE_MARK);
    v[4..8].copy_from_slice(&slot.to_be_bytes());
    v
}

/// Placeholder span id naming span `index` of its trace.
pub fn placeholder_span(index: u32) -> Vec<u8> {
    let mut v = vec![0u8; 8];
    v[..4].copy_from_slice(&SPAN_MARK);
    v[4..].copy_from_slice(&index.to_be_bytes());
    v
}

fn read_mark(bytes: &[u8], mark: [u8; 4]) -> Option<u32> {
    let (head, tail) = bytes.split_at_checked(4)?;
    if head != mark {
        return None;
    }
    Some(u32::from_be_bytes(tail.get(..4)?.try_into().ok()?))
}

/// Where a trace id (and optionally a span id and a parent span id) must be written.
#[derive(Debug, Clone, Copy)]
struct IdPatch {
    slot: u32,
    trace_at: u32,
    span: Option<(u32, u32)>,
    parent: Option<(u32, u32)>,
}

/// One encoded request with its patch list.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    /// Items (spans, data points, log records) in the request.
    pub items: u32,
    /// Items carrying the trace id of each trace slot.
    pub slot_items: Vec<u32>,
    ids: Vec<IdPatch>,
    times: Vec<u32>,
}

fn offset(base: &[u8], part: &[u8]) -> u32 {
    (part.as_ptr() as usize - base.as_ptr() as usize) as u32
}

/// Offset of the 8 value bytes of a fixed64 field.
fn fixed64_at(base: &[u8], f: &Field<'_>) -> Option<u32> {
    matches!(f.value, wire::Value::Fixed64(_)).then(|| offset(base, f.raw) + f.raw.len() as u32 - 8)
}

impl Template {
    /// Indexes an encoded `Export*ServiceRequest` of `signal` that holds placeholders for `slots` traces.
    pub fn new(signal: Signal, bytes: Vec<u8>, slots: usize) -> Result<Template, WireError> {
        let mut t =
            Template { bytes: Vec::new(), items: 0, slot_items: vec![0; slots], ids: Vec::new(), times: Vec::new() };
        let base = bytes.as_slice();
        for rf in wire::fields(base) {
            let rf = rf?;
            if rf.number != fields::REQUEST_RESOURCES {
                continue;
            }
            for sf in wire::fields(rf.bytes()?) {
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
                        Signal::Traces => t.index_span(base, item.bytes()?)?,
                        Signal::Logs => t.index_log(base, item.bytes()?)?,
                        Signal::Metrics => t.index_metric(base, item.bytes()?)?,
                    }
                }
            }
        }
        t.bytes = bytes;
        Ok(t)
    }

    fn index_span(&mut self, base: &[u8], span: &[u8]) -> Result<(), WireError> {
        let (mut trace, mut id, mut parent) = (None, None, None);
        for f in wire::fields(span) {
            let f = f?;
            match f.number {
                fields::SPAN_TRACE_ID => trace = Some(f.bytes()?),
                fields::SPAN_SPAN_ID => id = Some(f.bytes()?),
                SPAN_PARENT => parent = Some(f.bytes()?),
                _ => {}
            }
        }
        self.items += 1;
        self.add_ids(base, trace, id, parent);
        Ok(())
    }

    fn index_log(&mut self, base: &[u8], record: &[u8]) -> Result<(), WireError> {
        let (mut trace, mut id) = (None, None);
        for f in wire::fields(record) {
            let f = f?;
            match f.number {
                fields::LOG_TRACE_ID => trace = Some(f.bytes()?),
                LOG_SPAN_ID => id = Some(f.bytes()?),
                LOG_TIME => self.times.extend(fixed64_at(base, &f)),
                _ => {}
            }
        }
        self.items += 1;
        self.add_ids(base, trace, id, None);
        Ok(())
    }

    fn index_metric(&mut self, base: &[u8], metric: &[u8]) -> Result<(), WireError> {
        for f in wire::fields(metric) {
            let f = f?;
            if fields::data_point_attributes(f.number).is_none() {
                continue;
            }
            for dp in wire::fields(f.bytes()?) {
                let dp = dp?;
                if dp.number != fields::DATA_POINTS {
                    continue;
                }
                self.items += 1;
                for pf in wire::fields(dp.bytes()?) {
                    let pf = pf?;
                    if pf.number == POINT_TIME {
                        self.times.extend(fixed64_at(base, &pf));
                    }
                }
            }
        }
        Ok(())
    }

    fn add_ids(&mut self, base: &[u8], trace: Option<&[u8]>, id: Option<&[u8]>, parent: Option<&[u8]>) {
        let Some(trace) = trace else { return };
        let Some(slot) = read_mark(trace, TRACE_MARK) else { return };
        let Some(count) = self.slot_items.get_mut(slot as usize) else { return };
        *count += 1;
        let span_patch = |b: &[u8]| read_mark(b, SPAN_MARK).map(|i| (i, offset(base, b)));
        self.ids.push(IdPatch {
            slot,
            trace_at: offset(base, trace),
            span: id.and_then(span_patch),
            parent: parent.and_then(span_patch),
        });
    }

    /// Encoded size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// A copy of the request with the ids of global traces `traces[slot]` and timestamps `time_ns`.
    pub fn instantiate(&self, ids: &IdGen, traces: &[u64], time_ns: u64) -> Bytes {
        let mut buf = self.bytes.clone();
        let trace_ids: Vec<[u8; 16]> = traces.iter().map(|g| ids.trace_id(*g)).collect();
        for p in &self.ids {
            let (Some(&g), Some(tid)) = (traces.get(p.slot as usize), trace_ids.get(p.slot as usize)) else {
                continue;
            };
            put(&mut buf, p.trace_at, tid);
            if let Some((i, at)) = p.span {
                put(&mut buf, at, &ids.span_id(g, i));
            }
            if let Some((i, at)) = p.parent {
                put(&mut buf, at, &ids.span_id(g, i));
            }
        }
        let time = time_ns.to_le_bytes();
        for &at in &self.times {
            put(&mut buf, at, &time);
        }
        Bytes::from(buf)
    }
}

fn put(buf: &mut [u8], at: u32, value: &[u8]) {
    let at = at as usize;
    if let Some(dst) = buf.get_mut(at..at + value.len()) {
        dst.copy_from_slice(value);
    }
}
