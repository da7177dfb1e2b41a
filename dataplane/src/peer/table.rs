//! What this replica tells its peers it holds: the traces routed here under an earlier ring, or learned from
//! peers, whose backend is still in the pool and is not the one the pool's ring gives them. A trace the ring
//! would send to the same backend anyway needs no entry.

use std::collections::HashMap;
use std::sync::Arc;

use crate::pool::Pool;
use crate::route::affinity::Affinity;

/// The held entries (trace key, backend address) against `pool`.
pub fn held(affinity: &Affinity, pool: &Pool) -> Vec<(u64, Arc<str>)> {
    let Some(ring) = &pool.ring else { return Vec::new() };
    let moved = |key: u64, owner: &str| pool.holds(owner) && ring.members()[ring.lookup(key)].address != owner;
    let peers = affinity.peers();
    let mut entries: Vec<(u64, Arc<str>)> = peers.entries().into_iter().filter(|(k, o)| moved(*k, o)).collect();
    let mut interned: HashMap<&str, Arc<str>> = HashMap::new();
    for (key, version) in affinity.entries() {
        // What a peer said wins, as it does when routing.
        if version >= pool.version || peers.owner(key).is_some() {
            continue;
        }
        let Some(owner) = pool.ring_owner(key, version).filter(|o| moved(key, o)) else { continue };
        let owner = interned.entry(owner).or_insert_with(|| Arc::from(owner));
        entries.push((key, Arc::clone(owner)));
    }
    entries
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{ClientTls, HealthCheck, OtlpExporter};
    use crate::metrics::Metrics;
    use crate::pool::PoolManager;
    use crate::route::ring::Member;

    fn members(n: usize) -> Vec<Member> {
        (1..=n).map(|i| Member { address: format!("10.0.0.{i}:4317"), weight: 1 }).collect()
    }

    #[tokio::test]
    async fn holds_the_traces_whose_backend_the_new_ring_changes() {
        let plaintext =
            OtlpExporter { tls: ClientTls { insecure: true, ..ClientTls::default() }, ..OtlpExporter::default() };
        let window = Duration::from_secs(30);
        let (manager, pools) = PoolManager::new(plaintext, HealthCheck::default(), Metrics::new(), "static", window);
        manager.apply(members(3)).await.expect("valid").expect("a pool");
        let affinity = Affinity::new(window, 100_000);
        let keys: Vec<u64> = (0..3000u64).map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        let first = pools.borrow().clone();
        for k in &keys {
            first.owner(*k, Some(&affinity), 0).expect("current pool");
        }
        assert!(held(&affinity, &first).is_empty(), "under the ring that routed them, nothing is held");
        manager.apply(members(4)).await.expect("valid").expect("a change");
        let pool = pools.borrow().clone();
        let entries = held(&affinity, &pool);
        let ring = pool.ring.as_ref().expect("a ring");
        let moved = keys.iter().filter(|k| first.ring_owner(**k, 1) != Some(&ring.members()[ring.lookup(**k)].address));
        assert_eq!(entries.len(), moved.count(), "one entry per trace the new ring moves");
        assert!((600..1000).contains(&entries.len()), "about a quarter move: {}", entries.len());
        for (k, owner) in &entries {
            assert_eq!(first.ring_owner(*k, 1), Some(&**owner), "the backend that routed it first");
        }
        // A trace a peer told of is held as the peer said, even if this replica routed it too.
        // (Scaling out moves keys only to the new member: tell of one of the others.)
        let (k, routed) = entries[0].clone();
        let other = members(3).into_iter().map(|m| m.address).find(|a| **a != *routed).expect("another");
        affinity.peers().adopt([(k, Arc::from(other.as_str()))]);
        let again = held(&affinity, &pool);
        let told: Vec<_> = again.iter().filter(|(key, _)| *key == k).collect();
        assert_eq!(told.len(), 1);
        assert_eq!(*told[0].1, *other);
    }
}
