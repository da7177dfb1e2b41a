//! Reading routing keys: the key hash of each span, log record, metric or data point of an encoded request by
//! its signal's [`RoutingKey`], read from the item and from the resource and scope around it. The splitter
//! ([`split`](super::split)) asks [`KeyReader::key_of`] for every item: this is the one place keys are read.

use super::key::{self, RoutingKey, RoutingPolicy, hash_key};
use crate::signal::{Signal, fields};
use crate::wire::{self, WireError};

/// What a routing key is read from.
pub enum Keyed<'k, 'm> {
    /// A span, a log record or a metric, as encoded.
    Item(&'m [u8]),
    /// A data point of a metric: its attributes, and the hashes of its stream's resource, scope and metric
    /// identity (name, unit, kind and the kind's fields other than the points).
    Point { attrs: &'k mut [key::Attribute<'m>], stream: [u64; 3] },
}

/// What an item routed by `attributes` goes by when it carries none of them. The two differ by what the item
/// is, and each is part of how requests are routed.
enum Fallback<'m> {
    /// A span or log record (as encoded): its trace ([`trace_key`](KeyReader::trace_key)).
    Trace(&'m [u8]),
    /// A data point: its resource's service.
    Service,
}

/// Per-resource values that items' keys are derived from; computed once per resource, on demand.
pub struct ResourceKeys<'a> {
    msg: &'a [u8],
    attrs: Option<Vec<(&'a [u8], &'a [u8])>>,
    service: Option<u64>,
    resource: Option<u64>,
}

impl<'a> ResourceKeys<'a> {
    #[inline]
    pub fn new(msg: &'a [u8]) -> Self {
        ResourceKeys { msg, attrs: None, service: None, resource: None }
    }

    fn attrs(&mut self) -> Result<&[key::Attribute<'a>], WireError> {
        if self.attrs.is_none() {
            self.attrs = Some(key::attributes(self.msg, fields::RESOURCE_ATTRIBUTES)?);
        }
        Ok(self.attrs.as_deref().unwrap_or_default())
    }

    /// Hash of the resource's `service.name` (of the empty string when it has none).
    pub fn service(&mut self) -> Result<u64, WireError> {
        if let Some(h) = self.service {
            return Ok(h);
        }
        let name = self
            .attrs()?
            .iter()
            .find(|(k, _)| *k == b"service.name")
            .and_then(|(_, v)| key::any_value_str(v))
            .unwrap_or_default();
        let h = hash_key(name);
        self.service = Some(h);
        Ok(h)
    }

    /// Order-independent hash of all resource attributes.
    pub fn resource(&mut self) -> Result<u64, WireError> {
        if let Some(h) = self.resource {
            return Ok(h);
        }
        let mut attrs = self.attrs()?.to_vec();
        let h = key::hash_attributes(&mut attrs);
        self.resource = Some(h);
        Ok(h)
    }
}

/// The scope's attributes, read once per scope, on demand.
pub struct ScopeKeys<'a> {
    msg: &'a [u8],
    attrs: Option<Vec<key::Attribute<'a>>>,
}

impl<'a> ScopeKeys<'a> {
    #[inline]
    pub fn new(msg: &'a [u8]) -> Self {
        ScopeKeys { msg, attrs: None }
    }

    /// The encoded scope.
    pub fn msg(&self) -> &'a [u8] {
        self.msg
    }

    fn attrs(&mut self) -> Result<&[key::Attribute<'a>], WireError> {
        if self.attrs.is_none() {
            self.attrs = Some(key::attributes(self.msg, fields::SCOPE_ATTRIBUTES)?);
        }
        Ok(self.attrs.as_deref().unwrap_or_default())
    }
}

/// Reads the keys of one signal's items by the policy's key for it.
pub struct KeyReader<'p> {
    pub signal: Signal,
    pub key: RoutingKey,
    policy: &'p RoutingPolicy,
}

impl<'p> KeyReader<'p> {
    #[inline]
    pub fn new(signal: Signal, policy: &'p RoutingPolicy) -> KeyReader<'p> {
        KeyReader { signal, key: policy.key(signal), policy }
    }

    /// The key hash of an item or a data point by the signal's routing key. The keys read from one field stay
    /// small enough to inline into the splitter's loop; the attribute keys, which gather several sets, are not.
    #[inline(always)]
    pub fn key_of(
        &self,
        keyed: Keyed<'_, '_>,
        rk: &mut ResourceKeys<'_>,
        sk: &mut ScopeKeys<'_>,
    ) -> Result<u64, WireError> {
        match (self.key, keyed) {
            (RoutingKey::Service, _) => rk.service(),
            (RoutingKey::Resource, _) => rk.resource(),
            (RoutingKey::TraceId, Keyed::Item(msg)) => self.trace_key(msg, rk),
            (RoutingKey::Metric, Keyed::Item(msg)) => Ok(hash_key(first_bytes(msg, fields::METRIC_NAME)?)),
            (_, keyed) => self.attributes_key(keyed, rk, sk),
        }
    }

    /// The key of an item by `streamID` or `attributes` (spans and log records go by `attributes` under either).
    #[inline(never)]
    fn attributes_key(
        &self,
        keyed: Keyed<'_, '_>,
        rk: &mut ResourceKeys<'_>,
        sk: &mut ScopeKeys<'_>,
    ) -> Result<u64, WireError> {
        match (self.key, keyed) {
            (RoutingKey::StreamId, Keyed::Point { attrs, stream }) => Ok(stream_key(stream, attrs)),
            // Data points are split out only for streamID and attributes.
            (_, Keyed::Point { attrs, .. }) => self.by_attributes(rk, sk, attrs, Fallback::Service),
            (_, Keyed::Item(msg)) => {
                let field = if self.signal == Signal::Logs { fields::LOG_ATTRIBUTES } else { fields::SPAN_ATTRIBUTES };
                let attrs = key::attributes(msg, field)?;
                self.by_attributes(rk, sk, &attrs, Fallback::Trace(msg))
            }
        }
    }

    /// Hash of the values of the policy's attributes, looked up in the resource, the scope and `attrs`; the
    /// `fallback` key when none of them is there.
    fn by_attributes(
        &self,
        rk: &mut ResourceKeys<'_>,
        sk: &mut ScopeKeys<'_>,
        attrs: &[key::Attribute<'_>],
        fallback: Fallback<'_>,
    ) -> Result<u64, WireError> {
        let mut buf = Vec::new();
        if key::collect_attribute_values(&self.policy.attributes, &[rk.attrs()?, sk.attrs()?, attrs], &mut buf) {
            return Ok(hash_key(&buf));
        }
        match fallback {
            Fallback::Trace(msg) => self.trace_key(msg, rk),
            Fallback::Service => rk.service(),
        }
    }

    /// Key of a span or log record by trace id; a log record without one goes by its service.
    #[inline(always)]
    fn trace_key(&self, msg: &[u8], rk: &mut ResourceKeys<'_>) -> Result<u64, WireError> {
        let field = if self.signal == Signal::Logs { fields::LOG_TRACE_ID } else { fields::SPAN_TRACE_ID };
        let id = first_bytes(msg, field)?;
        if self.signal == Signal::Logs && id.iter().all(|b| *b == 0) {
            return rk.service();
        }
        Ok(hash_key(id))
    }
}

/// The key of a data point by `streamID`: its stream's hashes with the hash of its attributes (in any order).
pub fn stream_key(stream: [u64; 3], attrs: &mut [key::Attribute<'_>]) -> u64 {
    let mut buf = [0u8; 32];
    for (i, h) in stream.iter().chain([&key::hash_attributes(attrs)]).enumerate() {
        buf[i * 8..i * 8 + 8].copy_from_slice(&h.to_le_bytes());
    }
    hash_key(&buf)
}

/// The first length-delimited field `number` of `msg`, or empty.
#[inline]
fn first_bytes(msg: &[u8], number: u32) -> Result<&[u8], WireError> {
    for f in wire::fields(msg) {
        let f = f?;
        if f.number == number {
            return f.bytes();
        }
    }
    Ok(&[])
}
