//! The peer API's messages (protobuf) and the held table: the trace keys a replica routed under an earlier ring,
//! each with the backend it went to, as an index into a list of backend addresses sent alongside.

use std::collections::HashMap;
use std::sync::Arc;

/// Propose to switch to the ring `ring` (its fingerprint) at `at_unix_ms`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Proposal {
    #[prost(fixed64, tag = "1")]
    pub from: u64,
    #[prost(fixed64, tag = "2")]
    pub ring: u64,
    #[prost(uint64, tag = "3")]
    pub at_unix_ms: u64,
}

/// The traces a replica holds, at its switch to `ring` (or in answer to a starting replica).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Held {
    #[prost(fixed64, tag = "1")]
    pub from: u64,
    #[prost(fixed64, tag = "2")]
    pub ring: u64,
    /// Backend addresses; `owner_of` indexes this list.
    #[prost(string, repeated, tag = "3")]
    pub owners: Vec<String>,
    #[prost(fixed64, repeated, tag = "4")]
    pub keys: Vec<u64>,
    #[prost(uint32, repeated, tag = "5")]
    pub owner_of: Vec<u32>,
}

/// The answer to every request: who answered.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ack {
    #[prost(fixed64, tag = "1")]
    pub from: u64,
}

impl Held {
    /// The table of `entries` (key, backend address).
    pub fn new(from: u64, ring: u64, entries: impl IntoIterator<Item = (u64, Arc<str>)>) -> Held {
        let mut index: HashMap<Arc<str>, u32> = HashMap::new();
        let mut held = Held { from, ring, ..Held::default() };
        for (key, owner) in entries {
            let next = index.len() as u32;
            let i = *index.entry(Arc::clone(&owner)).or_insert_with(|| {
                held.owners.push(owner.to_string());
                next
            });
            held.keys.push(key);
            held.owner_of.push(i);
        }
        held
    }

    /// The entries (key, backend address), or what is wrong with the table.
    pub fn entries(&self) -> Result<Vec<(u64, Arc<str>)>, String> {
        if self.keys.len() != self.owner_of.len() {
            return Err(format!("{} keys but {} owners", self.keys.len(), self.owner_of.len()));
        }
        let owners: Vec<Arc<str>> = self.owners.iter().map(|o| Arc::from(o.as_str())).collect();
        self.keys
            .iter()
            .zip(&self.owner_of)
            .map(|(k, i)| match owners.get(*i as usize) {
                Some(o) => Ok((*k, Arc::clone(o))),
                None => Err(format!("owner index {i} of {} backends", owners.len())),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn a_table_round_trips_with_each_address_sent_once() {
        let a: Arc<str> = Arc::from("10.0.0.1:4317");
        let b: Arc<str> = Arc::from("10.0.0.2:4317");
        let entries = vec![(1, Arc::clone(&a)), (2, Arc::clone(&b)), (3, Arc::clone(&a))];
        let held = Held::new(9, 77, entries.clone());
        assert_eq!(held.owners.len(), 2);
        let decoded = Held::decode(held.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(decoded.entries().expect("valid"), entries);
        assert_eq!((decoded.from, decoded.ring), (9, 77));
    }

    #[test]
    fn a_malformed_table_is_refused() {
        let mut held = Held::new(1, 1, [(1, Arc::from("a:1"))]);
        held.owner_of[0] = 5;
        assert_eq!(held.entries(), Err("owner index 5 of 1 backends".to_string()));
        held.keys.push(2);
        assert_eq!(held.entries(), Err("2 keys but 1 owners".to_string()));
    }
}
