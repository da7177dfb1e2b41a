//! Trace affinity across ring changes: a trace keeps going to the backend of the ring that routed its first
//! request, for `affinity_window`, as long as that backend is still in the pool. Scaling out then splits no trace
//! in flight; new traces use the new ring at once.
//!
//! The table remembers, for each trace key, the version of the pool (and so of the ring) that first routed it: not
//! a time, so a request split against a ring just before a change and one split just after it agree on the ring
//! whatever their clocks say. It is bounded in time (two generations, rotated every window, so an entry lives
//! between one and two windows) and in size (a generation that fills up rotates early), and sharded so that
//! concurrent requests rarely contend. The state is per process; with several load-balancer replicas, what the
//! peers routed is in [`PeerHeld`], filled by the peer exchange.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::peer_held::PeerHeld;

const SHARDS: usize = 16;

/// Keys are already hashes: use them as they are.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Table = HashMap<u64, u64, BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
struct Generations {
    current: Table,
    previous: Table,
    rotated_ms: u64,
}

/// The pool version that first routed each trace key.
pub struct Affinity {
    window_ms: u64,
    shard_capacity: usize,
    shards: Vec<Mutex<Generations>>,
    origin: Instant,
    early_rotations: AtomicU64,
    peers: PeerHeld,
}

impl Affinity {
    pub fn new(window: Duration, max_traces: usize) -> Affinity {
        Affinity {
            window_ms: window.as_millis().max(1) as u64,
            shard_capacity: (max_traces / SHARDS / 2).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(Generations::default())).collect(),
            origin: Instant::now(),
            early_rotations: AtomicU64::new(0),
            peers: PeerHeld::new(window, max_traces),
        }
    }

    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    /// Milliseconds since the table was created: the clock that rotates its generations.
    pub fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// The pool version that first routed `key`; `version` (recorded) if the key is new. `now_ms` (from
    /// [`Affinity::now_ms`]) only ages the table.
    pub fn first_routed(&self, key: u64, version: u64, now_ms: u64) -> u64 {
        // The shard comes from bits 32-35: a table indexes its buckets by the key's low bits and tags them with its
        // top 7 bits, so taking the shard from neither leaves every key of a shard a full 7-bit tag.
        let shard = &self.shards[(key >> 32) as usize % SHARDS];
        let Ok(mut g) = shard.lock() else { return version };
        let idle = now_ms.saturating_sub(g.rotated_ms);
        if idle >= 2 * self.window_ms {
            // Both generations are older than a window: nothing in them is remembered any more.
            g.current.clear();
            g.previous.clear();
            g.rotated_ms = now_ms;
        } else if idle >= self.window_ms || g.current.len() >= self.shard_capacity {
            if g.current.len() >= self.shard_capacity {
                self.early_rotations.fetch_add(1, Ordering::Relaxed);
            }
            // The full generation becomes the previous one; the one it replaces is emptied and reused, keeping
            // its capacity rather than growing a new table from nothing at every rotation.
            let g = &mut *g;
            std::mem::swap(&mut g.previous, &mut g.current);
            g.current.clear();
            g.rotated_ms = now_ms;
        }
        if let Some(first) = g.previous.get(&key) {
            return *first;
        }
        *g.current.entry(key).or_insert(version)
    }

    /// Whether `key` was routed here or told of by a peer (nothing is recorded).
    pub fn knows(&self, key: u64) -> bool {
        let known = self.shards[(key >> 32) as usize % SHARDS]
            .lock()
            .is_ok_and(|g| g.current.contains_key(&key) || g.previous.contains_key(&key));
        known || self.peers.owner(key).is_some()
    }

    /// Traces remembered.
    pub fn len(&self) -> usize {
        self.shards.iter().filter_map(|s| s.lock().ok()).map(|g| g.current.len() + g.previous.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many traces the table holds at most.
    pub fn capacity(&self) -> usize {
        self.shard_capacity * SHARDS * 2
    }

    /// The keys a pool older than `version` first routed, one shard locked at a time.
    pub fn keys_routed_before(&self, version: u64) -> Vec<u64> {
        let mut keys = Vec::new();
        for shard in self.shards.iter().filter_map(|s| s.lock().ok()) {
            let older = |(k, first): (&u64, &u64)| (*first < version).then_some(*k);
            keys.extend(shard.current.iter().filter_map(older));
            keys.extend(shard.previous.iter().filter_map(older));
        }
        keys
    }

    /// Every remembered key with the pool version that first routed it, one shard locked at a time.
    pub fn entries(&self) -> Vec<(u64, u64)> {
        let mut all = Vec::new();
        for shard in self.shards.iter().filter_map(|s| s.lock().ok()) {
            all.extend(shard.current.iter().chain(shard.previous.iter()).map(|(k, v)| (*k, *v)));
        }
        all
    }

    /// What the other load-balancer replicas routed.
    pub fn peers(&self) -> &PeerHeld {
        &self.peers
    }

    /// Times a full table rotated before its window ended (affinity shortened under load).
    pub fn early_rotations(&self) -> u64 {
        self.early_rotations.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_first_version_for_one_to_two_windows() {
        let a = Affinity::new(Duration::from_millis(1000), 1_000_000);
        assert_eq!(a.first_routed(7, 1, 100), 1);
        assert_eq!(a.first_routed(7, 2, 900), 1, "the first version kept");
        assert_eq!(a.first_routed(7, 3, 1500), 1, "still remembered in the previous generation");
        assert_eq!(a.first_routed(8, 3, 1500), 3);
        // Two rotations later the key is forgotten and counts as new.
        assert_eq!(a.first_routed(9, 4, 2600), 4);
        assert_eq!(a.first_routed(7, 4, 2700), 4);
        let mut before = a.keys_routed_before(4);
        before.sort_unstable();
        assert_eq!(before, vec![8], "7 and 9 are remembered from version 4 only, 8 from version 3");
        assert_eq!(a.capacity(), 1_000_000);
    }

    #[test]
    fn a_long_idle_shard_forgets_everything_at_once() {
        let a = Affinity::new(Duration::from_millis(1000), 1_000_000);
        assert_eq!(a.first_routed(7, 1, 100), 1);
        // Nothing touches the table for five windows: the next sight is a first sight.
        assert_eq!(a.first_routed(7, 2, 5200), 2);
    }

    #[test]
    fn size_is_bounded() {
        let a = Affinity::new(Duration::from_secs(3600), 3200);
        for k in 0..100_000u64 {
            a.first_routed(k.wrapping_mul(0x9e37_79b9_7f4a_7c15), 1, 10);
        }
        assert!(a.len() <= 3200, "{} entries", a.len());
        assert!(a.early_rotations() > 0);
    }
}
