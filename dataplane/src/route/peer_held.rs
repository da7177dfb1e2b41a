//! The traces other load-balancer replicas hold: for each trace key a peer routed under an earlier ring, the
//! backend it sent it to. The peer exchange fills it at each agreed ring switch (and at start-up); the pool reads
//! it for keys that this replica has not itself routed under an earlier ring, so that a trace any replica held
//! keeps its backend.
//!
//! It also holds the exchange gate: from the switch until every peer's table has arrived (or the exchange's bound
//! has passed), requests with a trace this replica knows nothing of wait before they are routed. Entries live for one to two affinity windows (two
//! generations, as the affinity table) and their number is bounded.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::affinity::KeyHasher;

const SHARDS: usize = 16;

type Table = HashMap<u64, Arc<str>, BuildHasherDefault<KeyHasher>>;

struct Generations {
    current: Table,
    previous: Table,
    rotated: Instant,
}

/// Backends that peers routed trace keys to, and the gate of the exchange in progress.
pub struct PeerHeld {
    window: Duration,
    shard_capacity: usize,
    shards: Vec<Mutex<Generations>>,
    /// Entries over every shard: lets the request path skip the table while it is empty.
    entries: AtomicUsize,
    /// Entries refused because the table was full.
    dropped: AtomicU64,
    closed: AtomicBool,
    /// `Some(deadline)` while an exchange is under way.
    gate: watch::Sender<Option<Instant>>,
}

impl PeerHeld {
    pub fn new(window: Duration, max_traces: usize) -> PeerHeld {
        let now = Instant::now();
        let empty = || Generations { current: Table::default(), previous: Table::default(), rotated: now };
        PeerHeld {
            window: window.max(Duration::from_millis(1)),
            shard_capacity: (max_traces / SHARDS / 2).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(empty())).collect(),
            entries: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            gate: watch::channel(None).0,
        }
    }

    fn shard(&self, key: u64) -> &Mutex<Generations> {
        &self.shards[(key >> 32) as usize % SHARDS]
    }

    /// Ages a shard: a generation older than a window becomes the previous one, and one older than two is gone.
    fn age(&self, g: &mut Generations, now: Instant) {
        let idle = now.saturating_duration_since(g.rotated);
        if idle < self.window {
            return;
        }
        let mut gone = g.previous.len();
        if idle >= 2 * self.window {
            gone += g.current.len();
            g.current.clear();
        }
        std::mem::swap(&mut g.previous, &mut g.current);
        g.current.clear();
        g.rotated = now;
        self.entries.fetch_sub(gone, Ordering::Relaxed);
    }

    /// The backend (address) a peer routed `key` to, if one told us.
    pub fn owner(&self, key: u64) -> Option<Arc<str>> {
        if self.entries.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut g = self.shard(key).lock().ok()?;
        self.age(&mut g, Instant::now());
        g.current.get(&key).or_else(|| g.previous.get(&key)).cloned()
    }

    /// Records what peers routed. A key already recorded keeps its first backend. Returns how many were new.
    pub fn adopt(&self, entries: impl IntoIterator<Item = (u64, Arc<str>)>) -> usize {
        let now = Instant::now();
        let mut added = 0;
        for (key, owner) in entries {
            let Ok(mut g) = self.shard(key).lock() else { continue };
            self.age(&mut g, now);
            if g.previous.contains_key(&key) || g.current.contains_key(&key) {
                continue;
            }
            if g.current.len() >= self.shard_capacity {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            g.current.insert(key, owner);
            self.entries.fetch_add(1, Ordering::Relaxed);
            added += 1;
        }
        added
    }

    /// Every entry, one shard locked at a time.
    pub fn entries(&self) -> Vec<(u64, Arc<str>)> {
        let mut all = Vec::new();
        let now = Instant::now();
        for shard in &self.shards {
            let Ok(mut g) = shard.lock() else { continue };
            self.age(&mut g, now);
            all.extend(g.current.iter().chain(g.previous.iter()).map(|(k, o)| (*k, Arc::clone(o))));
        }
        all
    }

    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many entries the table holds at most.
    pub fn capacity(&self) -> usize {
        self.shard_capacity * SHARDS * 2
    }

    /// Entries refused because the table was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Requests wait from now until [`PeerHeld::open`], or until `deadline`.
    pub fn close(&self, deadline: Instant) {
        self.closed.store(true, Ordering::SeqCst);
        self.gate.send_replace(Some(deadline));
    }

    /// Requests go on.
    pub fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        self.gate.send_replace(None);
    }

    /// Whether an exchange is under way (requests wait for it).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Returns once no exchange is under way, or its deadline has passed.
    pub async fn settled(&self) {
        if !self.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut gate = self.gate.subscribe();
        let Some(deadline) = *gate.borrow_and_update() else { return };
        let _ = tokio::time::timeout_at(deadline.into(), gate.wait_for(|g| g.is_none_or(|d| d != deadline))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(a: &str) -> Arc<str> {
        Arc::from(a)
    }

    #[test]
    fn the_first_owner_told_is_kept_for_one_to_two_windows() {
        let held = PeerHeld::new(Duration::from_millis(200), 1000);
        assert_eq!(held.owner(1), None);
        assert_eq!(held.adopt([(1, owner("a:1")), (2, owner("b:1"))]), 2);
        assert_eq!(held.adopt([(1, owner("c:1"))]), 0, "a key already held keeps its owner");
        assert_eq!(held.owner(1).as_deref(), Some("a:1"));
        assert_eq!(held.len(), 2);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(held.owner(2).as_deref(), Some("b:1"), "kept in the previous generation");
        std::thread::sleep(Duration::from_millis(450));
        assert_eq!(held.owner(1), None, "forgotten after two windows");
        assert_eq!(held.entries().len(), 0);
        assert!(held.is_empty());
    }

    #[test]
    fn size_is_bounded() {
        let held = PeerHeld::new(Duration::from_secs(60), 320);
        let added = held.adopt((0..10_000u64).map(|k| (k.wrapping_mul(0x9e37_79b9_7f4a_7c15), owner("a:1"))));
        assert!(added <= 320 && held.len() == added, "{added} added, {} held", held.len());
        assert_eq!(held.dropped(), 10_000 - added as u64);
        assert_eq!(held.capacity(), 320);
    }

    #[tokio::test]
    async fn the_gate_holds_requests_until_opened_or_its_deadline() {
        let held = Arc::new(PeerHeld::new(Duration::from_secs(1), 100));
        held.settled().await;
        let started = Instant::now();
        held.close(started + Duration::from_millis(150));
        held.settled().await;
        assert!(started.elapsed() >= Duration::from_millis(150), "held until the deadline");
        held.close(Instant::now() + Duration::from_secs(30));
        let opener = Arc::clone(&held);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            opener.open();
        });
        let started = Instant::now();
        held.settled().await;
        assert!(started.elapsed() < Duration::from_secs(5), "released when the gate opens");
    }
}
