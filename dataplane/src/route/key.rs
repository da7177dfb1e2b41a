//! Routing keys: which part of a resource, scope or item decides the backend it goes to, and the stable 64-bit
//! hash of that part that the ring maps to a backend.
//!
//! Keys follow the Collector's loadbalancing exporter: `traceID`, `service`, `resource`, `metric`, `streamID`,
//! `attributes`. The same key hashes the same way for every signal, so a trace's logs sit with its spans.

use std::fmt;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::signal::{Signal, fields};
use crate::wire::{self, WireError};

/// Seed of the key hash; part of the wire contract between load-balancer replicas, never change it.
const KEY_SEED: u64 = 0x6f74_6c70_2d6c_6221;

/// Hashes a routing key.
#[inline]
pub fn hash_key(bytes: &[u8]) -> u64 {
    xxh3_64_with_seed(bytes, KEY_SEED)
}

/// What a signal is routed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoutingKey {
    TraceId,
    Service,
    Resource,
    Metric,
    StreamId,
    Attributes,
}

impl RoutingKey {
    /// The name used in configuration (the Collector's spelling).
    pub fn name(self) -> &'static str {
        match self {
            RoutingKey::TraceId => "traceID",
            RoutingKey::Service => "service",
            RoutingKey::Resource => "resource",
            RoutingKey::Metric => "metric",
            RoutingKey::StreamId => "streamID",
            RoutingKey::Attributes => "attributes",
        }
    }

    pub fn parse(name: &str) -> Option<RoutingKey> {
        [Self::TraceId, Self::Service, Self::Resource, Self::Metric, Self::StreamId, Self::Attributes]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// The keys valid for a signal.
    pub fn valid_for(signal: Signal) -> &'static [RoutingKey] {
        use RoutingKey::*;
        match signal {
            Signal::Traces => &[TraceId, Service, Attributes],
            Signal::Metrics => &[Service, Resource, Metric, StreamId, Attributes],
            Signal::Logs => &[TraceId, Service, Resource, Attributes],
        }
    }

    /// The default key of a signal: trace id for spans and logs, service for metrics.
    pub fn default_for(signal: Signal) -> RoutingKey {
        match signal {
            Signal::Traces | Signal::Logs => RoutingKey::TraceId,
            Signal::Metrics => RoutingKey::Service,
        }
    }
}

impl fmt::Display for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The routing keys of all three signals plus the attribute names the `attributes` key looks up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingPolicy {
    pub traces: RoutingKey,
    pub metrics: RoutingKey,
    pub logs: RoutingKey,
    pub attributes: Vec<String>,
}

impl Default for RoutingPolicy {
    fn default() -> Self {
        RoutingPolicy {
            traces: RoutingKey::default_for(Signal::Traces),
            metrics: RoutingKey::default_for(Signal::Metrics),
            logs: RoutingKey::default_for(Signal::Logs),
            attributes: Vec::new(),
        }
    }
}

impl RoutingPolicy {
    pub fn key(&self, signal: Signal) -> RoutingKey {
        match signal {
            Signal::Traces => self.traces,
            Signal::Metrics => self.metrics,
            Signal::Logs => self.logs,
        }
    }
}

/// An attribute of an encoded message: its key and its raw `AnyValue`.
pub type Attribute<'a> = (&'a [u8], &'a [u8]);

/// The attributes (`repeated KeyValue` field `field`) of an encoded message.
pub fn attributes(msg: &[u8], field: u32) -> Result<Vec<Attribute<'_>>, WireError> {
    let mut out = Vec::new();
    for f in wire::fields(msg) {
        let f = f?;
        if f.number == field {
            out.push(key_value(f.bytes()?)?);
        }
    }
    Ok(out)
}

/// Splits an encoded `KeyValue` into its key and its raw `AnyValue` bytes.
pub fn key_value(kv: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    for f in wire::fields(kv) {
        let f = f?;
        match f.number {
            fields::KEY_VALUE_KEY => key = f.bytes()?,
            fields::KEY_VALUE_VALUE => value = f.bytes()?,
            _ => {}
        }
    }
    Ok((key, value))
}

/// The string inside a raw `AnyValue`, if it holds one.
pub fn any_value_str(value: &[u8]) -> Option<&[u8]> {
    wire::fields(value)
        .filter_map(Result::ok)
        .find(|f| f.number == fields::ANY_VALUE_STRING)
        .and_then(|f| f.bytes().ok())
}

/// Order-independent hash of a set of attributes: sorted by key, each key and value length-framed.
pub fn hash_attributes(attrs: &mut [(&[u8], &[u8])]) -> u64 {
    attrs.sort_unstable_by(|a, b| a.0.cmp(b.0).then(a.1.cmp(b.1)));
    let mut buf = Vec::with_capacity(attrs.iter().map(|(k, v)| k.len() + v.len() + 4).sum());
    for (k, v) in attrs.iter() {
        wire::put_len_field(&mut buf, 1, k);
        wire::put_len_field(&mut buf, 2, v);
    }
    hash_key(&buf)
}

/// Looks up `names` in successive attribute sets (resource, then scope, then item) and frames the values found
/// into `out`; returns whether any was found.
pub fn collect_attribute_values(names: &[String], sets: &[&[(&[u8], &[u8])]], out: &mut Vec<u8>) -> bool {
    let mut found = false;
    for name in names {
        let hit = sets.iter().find_map(|set| set.iter().find(|(k, _)| *k == name.as_bytes()));
        if let Some((_, v)) = hit {
            wire::put_len_field(out, 1, name.as_bytes());
            wire::put_len_field(out, 2, v);
            found = true;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_round_trip_and_validity() {
        for k in [RoutingKey::TraceId, RoutingKey::Service, RoutingKey::StreamId] {
            assert_eq!(RoutingKey::parse(k.name()), Some(k));
        }
        assert_eq!(RoutingKey::parse("traceid"), None);
        assert!(!RoutingKey::valid_for(Signal::Traces).contains(&RoutingKey::Metric));
        assert!(RoutingKey::valid_for(Signal::Metrics).contains(&RoutingKey::StreamId));
        assert!(!RoutingKey::valid_for(Signal::Logs).contains(&RoutingKey::StreamId));
    }

    #[test]
    fn attribute_hash_ignores_order_but_not_values() {
        let mut a = vec![(&b"a"[..], &b"1"[..]), (&b"b"[..], &b"2"[..])];
        let mut b = vec![(&b"b"[..], &b"2"[..]), (&b"a"[..], &b"1"[..])];
        let mut c = vec![(&b"b"[..], &b"3"[..]), (&b"a"[..], &b"1"[..])];
        assert_eq!(hash_attributes(&mut a), hash_attributes(&mut b));
        assert_ne!(hash_attributes(&mut a), hash_attributes(&mut c));
    }

    #[test]
    fn attribute_lookup_prefers_resource_then_scope_then_item() {
        let resource = vec![(&b"tenant"[..], &b"r"[..])];
        let scope = vec![(&b"tenant"[..], &b"s"[..]), (&b"region"[..], &b"s"[..])];
        let item = vec![(&b"region"[..], &b"i"[..]), (&b"user"[..], &b"i"[..])];
        let names = vec!["tenant".to_string(), "region".to_string(), "user".to_string()];
        let mut got = Vec::new();
        assert!(collect_attribute_values(&names, &[&resource, &scope, &item], &mut got));
        let mut want = Vec::new();
        for (k, v) in [("tenant", "r"), ("region", "s"), ("user", "i")] {
            wire::put_len_field(&mut want, 1, k.as_bytes());
            wire::put_len_field(&mut want, 2, v.as_bytes());
        }
        assert_eq!(got, want);
        assert!(!collect_attribute_values(&["absent".into()], &[&resource], &mut Vec::new()));
    }
}
