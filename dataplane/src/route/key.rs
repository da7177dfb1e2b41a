//! Routing keys: which part of a resource, scope or item decides the backend it goes to, and the stable 64-bit
//! hash of that part that the ring maps to a backend.
//!
//! The keys, their names and the signals they apply to are the configuration's table ([`KEYS`]). The same key
//! hashes the same way for every signal, so a trace's logs sit with its spans.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::signal::fields;
use crate::wire::{self, WireError};

/// Seed of the key hash; part of the wire contract between load-balancer replicas, never change it.
const KEY_SEED: u64 = 0x6f74_6c70_2d6c_6221;

/// Hashes a routing key.
#[inline]
pub fn hash_key(bytes: &[u8]) -> u64 {
    xxh3_64_with_seed(bytes, KEY_SEED)
}

pub use otlp_lb_config::key::{KEYS, KeySpec, RoutingKey, RoutingPolicy};

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
