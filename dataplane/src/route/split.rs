//! Split one OTLP export request into one request per backend.
//!
//! The request is walked, not decoded: resources, scopes and items (spans, metrics, log records) are located by
//! their framing, only the fields a routing key needs are read, and each backend's request is written by copying
//! the original bytes of its resources, scopes and items. Resource and scope headers travel with every item. When
//! every item goes to one backend the original request is forwarded as it is, without a copy.
//!
//! Metrics routed by `streamID` or `attributes` are split per data point: a metric whose points go to several
//! backends is rebuilt once per backend with that backend's points.

use bytes::Bytes;
use thiserror::Error;

use super::key::{self, RoutingKey, RoutingPolicy, hash_key};
use super::keyed::{KeyReader, Keyed, ResourceKeys, ScopeKeys};
use crate::signal::{Signal, fields};
use crate::wire::{self, WireError};

/// One backend's share of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Index of the backend (the ring member) the part goes to.
    pub backend: usize,
    /// The encoded export request for that backend.
    pub body: Bytes,
    /// Spans, data points or log records in the part.
    pub items: u64,
}

/// A request cut into parts, one per backend that owns some of its items.
#[derive(Debug, Clone, Default)]
pub struct Split {
    pub parts: Vec<Part>,
    /// Items in the whole request.
    pub items: u64,
}

/// The request could not be walked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed {signal} request: {source}")]
pub struct SplitError {
    pub signal: Signal,
    #[source]
    pub source: WireError,
}

/// Where an item's bytes are.
#[derive(Clone, Copy)]
enum ItemBytes {
    /// The item's whole field, unchanged: this byte range of the request.
    Request { start: usize, end: usize },
    /// The item's whole field, rewritten: this index into `Splitter::owned`.
    Owned(usize),
}

#[derive(Clone, Copy)]
struct Item {
    bytes: ItemBytes,
    backend: u32,
    /// Spans, data points or log records in the item.
    count: u32,
}

#[derive(Clone, Copy)]
struct Group {
    /// Range in `chunks` of the fields copied unchanged (the resource or scope message, schema URL, unknown fields).
    fixed: (usize, usize),
    /// Range of child groups (for a resource) or items (for a scope).
    children: (usize, usize),
}

struct Splitter<'a, F> {
    keys: KeyReader<'a>,
    owner: F,
    base: usize,
    chunks: Vec<(usize, usize)>,
    resources: Vec<Group>,
    scopes: Vec<Group>,
    items: Vec<Item>,
    owned: Vec<Vec<u8>>,
}

/// Splits `body`, an encoded `Export{Trace,Metrics,Logs}ServiceRequest`, by `policy`'s key for `signal`;
/// `owner` maps a key hash to a backend index.
pub fn split(
    signal: Signal,
    body: &Bytes,
    policy: &RoutingPolicy,
    owner: impl FnMut(u64) -> usize,
) -> Result<Split, SplitError> {
    let mut s = Splitter {
        keys: KeyReader::new(signal, policy),
        owner,
        base: body.as_ptr() as usize,
        chunks: Vec::new(),
        resources: Vec::new(),
        scopes: Vec::new(),
        items: Vec::new(),
        owned: Vec::new(),
    };
    s.walk(body).map_err(|source| SplitError { signal, source })?;
    Ok(s.assemble(body))
}

impl<'a, F: FnMut(u64) -> usize> Splitter<'a, F> {
    fn range(&self, raw: &[u8]) -> (usize, usize) {
        let start = raw.as_ptr() as usize - self.base;
        (start, start + raw.len())
    }

    fn walk<'b>(&mut self, body: &'b [u8]) -> Result<(), WireError> {
        let mut scope_fields: Vec<&'b [u8]> = Vec::new();
        for f in wire::fields(body) {
            let f = f?;
            if f.number != fields::REQUEST_RESOURCES {
                continue;
            }
            let mut resource_msg: &[u8] = &[];
            let fixed_start = self.chunks.len();
            scope_fields.clear();
            for rf in wire::fields(f.bytes()?) {
                let rf = rf?;
                match rf.number {
                    fields::RESOURCE_SCOPES => scope_fields.push(rf.bytes()?),
                    n => {
                        if n == fields::RESOURCE {
                            resource_msg = rf.bytes()?;
                        }
                        let r = self.range(rf.raw);
                        self.chunks.push(r);
                    }
                }
            }
            let fixed = (fixed_start, self.chunks.len());
            let scopes_start = self.scopes.len();
            let mut rk = ResourceKeys::new(resource_msg);
            for scope in &scope_fields {
                self.walk_scope(scope, &mut rk)?;
            }
            self.resources.push(Group { fixed, children: (scopes_start, self.scopes.len()) });
        }
        Ok(())
    }

    fn walk_scope<'b>(&mut self, scope: &'b [u8], rk: &mut ResourceKeys<'b>) -> Result<(), WireError> {
        let fixed_start = self.chunks.len();
        let items_start = self.items.len();
        let mut scope_msg: &[u8] = &[];
        let mut item_fields: Vec<wire::Field<'_>> = Vec::new();
        for sf in wire::fields(scope) {
            let sf = sf?;
            match sf.number {
                fields::SCOPE_ITEMS => {
                    sf.bytes()?;
                    item_fields.push(sf);
                }
                n => {
                    if n == fields::SCOPE {
                        scope_msg = sf.bytes()?;
                    }
                    let r = self.range(sf.raw);
                    self.chunks.push(r);
                }
            }
        }
        let fixed = (fixed_start, self.chunks.len());
        let mut sk = ScopeKeys::new(scope_msg);
        for item in item_fields {
            let canonical = if self.keys.signal == Signal::Metrics { canonical_metric(item.bytes()?)? } else { None };
            let msg = canonical.as_deref().map_or(item.bytes(), Ok)?;
            // A rewritten metric is carried as owned bytes, not as a range of the request.
            let raw = if canonical.is_some() { None } else { Some(item.raw) };
            if self.keys.signal == Signal::Metrics
                && matches!(self.keys.key, RoutingKey::StreamId | RoutingKey::Attributes)
            {
                self.walk_metric_points(raw, msg, rk, &mut sk)?;
                continue;
            }
            let hash = self.keys.key_of(Keyed::Item(msg), rk, &mut sk)?;
            let count = if self.keys.signal == Signal::Metrics { count_points(msg)? } else { 1 };
            let backend = (self.owner)(hash) as u32;
            self.push_item(raw.map(|r| self.range(r)), msg, backend, count);
        }
        self.scopes.push(Group { fixed, children: (items_start, self.items.len()) });
        Ok(())
    }

    /// Routes each data point of a metric; rebuilds the metric per backend when its points go to several.
    fn walk_metric_points(
        &mut self,
        raw: Option<&[u8]>,
        metric: &[u8],
        rk: &mut ResourceKeys<'_>,
        sk: &mut ScopeKeys<'_>,
    ) -> Result<(), WireError> {
        let range = raw.map(|r| self.range(r));
        let mut ident = Vec::new();
        let mut kind: Option<(wire::Field<'_>, u32)> = None;
        for f in wire::fields(metric) {
            let f = f?;
            match f.number {
                fields::METRIC_NAME | fields::METRIC_UNIT => wire::put_len_field(&mut ident, f.number, f.bytes()?),
                n => {
                    if let Some(a) = fields::data_point_attributes(n) {
                        kind = Some((f, a));
                    }
                }
            }
        }
        let Some((kind, attr_field)) = kind else {
            // A metric with no data: it goes with its service.
            let backend = (self.owner)(rk.service()?) as u32;
            self.push_item(range, metric, backend, 0);
            return Ok(());
        };
        let mut points: Vec<(&[u8], u32)> = Vec::new();
        let mut kind_fixed: Vec<&[u8]> = Vec::new();
        for f in wire::fields(kind.bytes()?) {
            let f = f?;
            if f.number == fields::DATA_POINTS {
                points.push((f.raw, 0));
            } else {
                kind_fixed.push(f.raw);
            }
        }
        ident.extend_from_slice(&kind.number.to_le_bytes());
        for k in &kind_fixed {
            ident.extend_from_slice(k);
        }
        let stream = [rk.resource()?, hash_key(sk.msg()), hash_key(&ident)];
        for (raw_point, backend) in points.iter_mut() {
            let point = wire::fields(raw_point).next().transpose()?.map(|f| f.bytes()).transpose()?.unwrap_or(&[]);
            let mut attrs = key::attributes(point, attr_field)?;
            let hash = self.keys.key_of(Keyed::Point { attrs: &mut attrs, stream }, rk, sk)?;
            *backend = (self.owner)(hash) as u32;
        }
        let first = points.first().map(|p| p.1);
        if points.iter().all(|p| Some(p.1) == first) {
            let backend = first.unwrap_or(0);
            self.push_item(range, metric, backend, points.len() as u32);
            return Ok(());
        }
        let mut backends: Vec<u32> = points.iter().map(|p| p.1).collect();
        backends.sort_unstable();
        backends.dedup();
        for b in backends {
            let mine: Vec<&[u8]> = points.iter().filter(|p| p.1 == b).map(|p| p.0).collect();
            let kind_len: usize = kind_fixed.iter().chain(&mine).map(|r| r.len()).sum();
            let mut m = Vec::new();
            for f in wire::fields(metric) {
                let f = f?;
                if f.number == kind.number {
                    wire::put_len_header(&mut m, kind.number, kind_len);
                    kind_fixed.iter().chain(&mine).for_each(|r| m.extend_from_slice(r));
                } else {
                    m.extend_from_slice(f.raw);
                }
            }
            let mut item = Vec::with_capacity(m.len() + 6);
            wire::put_len_field(&mut item, fields::SCOPE_ITEMS, &m);
            self.owned.push(item);
            let bytes = ItemBytes::Owned(self.owned.len() - 1);
            self.items.push(Item { bytes, backend: b, count: mine.len() as u32 });
        }
        Ok(())
    }

    /// Records an item: a range of the request when it is carried unchanged, else owned bytes of `msg`.
    fn push_item(&mut self, range: Option<(usize, usize)>, msg: &[u8], backend: u32, count: u32) {
        let bytes = match range {
            Some((start, end)) => ItemBytes::Request { start, end },
            None => {
                let mut item = Vec::with_capacity(msg.len() + 6);
                wire::put_len_field(&mut item, fields::SCOPE_ITEMS, msg);
                self.owned.push(item);
                ItemBytes::Owned(self.owned.len() - 1)
            }
        };
        self.items.push(Item { bytes, backend, count });
    }

    fn item_bytes<'b>(&'b self, body: &'b [u8], item: &Item) -> &'b [u8] {
        match item.bytes {
            ItemBytes::Request { start, end } => &body[start..end],
            ItemBytes::Owned(i) => &self.owned[i],
        }
    }

    fn fixed_len(&self, fixed: (usize, usize)) -> usize {
        self.chunks[fixed.0..fixed.1].iter().map(|(s, e)| e - s).sum()
    }

    fn assemble(self, body: &Bytes) -> Split {
        let total: u64 = self.items.iter().map(|i| u64::from(i.count)).sum();
        let mut backends: Vec<u32> = self.items.iter().map(|i| i.backend).collect();
        backends.sort_unstable();
        backends.dedup();
        // One backend: the request as it is. (Owned items are then only metrics rewritten to their parsed form,
        // which the backend's parser reads the original as anyway.)
        if backends.len() == 1 {
            let part = Part { backend: backends[0] as usize, body: body.clone(), items: total };
            return Split { parts: vec![part], items: total };
        }
        let parts = backends.iter().map(|&b| self.assemble_part(body, b)).collect();
        Split { parts, items: total }
    }

    /// Writes the request for backend `b`: every resource and scope that holds one of its items, with those items.
    fn assemble_part(&self, body: &Bytes, b: u32) -> Part {
        let items_len = |scope: &Group| -> usize {
            self.items[scope.children.0..scope.children.1]
                .iter()
                .filter(|i| i.backend == b)
                .map(|i| self.item_bytes(body, i).len())
                .sum()
        };
        // Sizes first, so that each message's length prefix is known before it is written.
        let scope_lens: Vec<usize> = self
            .scopes
            .iter()
            .map(|s| match items_len(s) {
                0 => 0,
                n => n + self.fixed_len(s.fixed),
            })
            .collect();
        let resource_lens: Vec<usize> = self
            .resources
            .iter()
            .map(|r| {
                let scopes = &scope_lens[r.children.0..r.children.1];
                let inner: usize =
                    scopes.iter().filter(|l| **l > 0).map(|l| wire::len_field_size(fields::RESOURCE_SCOPES, *l)).sum();
                if inner == 0 { 0 } else { inner + self.fixed_len(r.fixed) }
            })
            .collect();
        let total: usize =
            resource_lens.iter().filter(|l| **l > 0).map(|l| wire::len_field_size(fields::REQUEST_RESOURCES, *l)).sum();
        let mut out = Vec::with_capacity(total);
        let mut count = 0u64;
        for (r, rlen) in self.resources.iter().zip(&resource_lens) {
            if *rlen == 0 {
                continue;
            }
            wire::put_len_header(&mut out, fields::REQUEST_RESOURCES, *rlen);
            self.put_chunks(&mut out, body, r.fixed);
            let children = r.children.0..r.children.1;
            for (scope, &slen) in self.scopes[children.clone()].iter().zip(&scope_lens[children]) {
                if slen == 0 {
                    continue;
                }
                wire::put_len_header(&mut out, fields::RESOURCE_SCOPES, slen);
                self.put_chunks(&mut out, body, scope.fixed);
                for item in self.items[scope.children.0..scope.children.1].iter().filter(|i| i.backend == b) {
                    out.extend_from_slice(self.item_bytes(body, item));
                    count += u64::from(item.count);
                }
            }
        }
        debug_assert_eq!(out.len(), total);
        Part { backend: b as usize, body: Bytes::from(out), items: count }
    }

    fn put_chunks(&self, out: &mut Vec<u8>, body: &[u8], fixed: (usize, usize)) {
        for (s, e) in &self.chunks[fixed.0..fixed.1] {
            out.extend_from_slice(&body[*s..*e]);
        }
    }
}

/// A Metric whose `data` oneof is on the wire more than once, rewritten as protobuf parsers read it: the last
/// member wins, and its occurrences after the last other member merge (for messages, merging is concatenation).
/// `None` when the metric has at most one data field (the usual case: it is used as it is).
fn canonical_metric(metric: &[u8]) -> Result<Option<Vec<u8>>, WireError> {
    let mut data = Vec::new();
    let mut others = Vec::new();
    for f in wire::fields(metric) {
        let f = f?;
        if fields::data_point_attributes(f.number).is_some() { data.push(f) } else { others.push(f) }
    }
    let Some(last) = data.last().map(|f| f.number) else { return Ok(None) };
    if data.len() == 1 {
        return Ok(None);
    }
    let start = data.iter().rposition(|f| f.number != last).map_or(0, |i| i + 1);
    let mut payload = Vec::new();
    for f in &data[start..] {
        payload.extend_from_slice(f.bytes()?);
    }
    let mut out = Vec::with_capacity(metric.len());
    others.iter().for_each(|f| out.extend_from_slice(f.raw));
    wire::put_len_field(&mut out, last, &payload);
    Ok(Some(out))
}

/// Data points in an encoded `Metric`.
fn count_points(metric: &[u8]) -> Result<u32, WireError> {
    for f in wire::fields(metric) {
        let f = f?;
        if fields::data_point_attributes(f.number).is_some() {
            let mut n = 0;
            for p in wire::fields(f.bytes()?) {
                if p?.number == fields::DATA_POINTS {
                    n += 1;
                }
            }
            return Ok(n);
        }
    }
    Ok(0)
}

#[cfg(test)]
#[path = "split_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "split_key_tests.rs"]
mod key_tests;
