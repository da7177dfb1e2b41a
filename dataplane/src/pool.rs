//! The backend pool: the ring and one client per backend, published as an immutable snapshot on a
//! `tokio::sync::watch` channel. Resolvers hand in the member set; the manager builds the new ring off the async
//! threads, keeps the clients of backends that stay, swaps the snapshot atomically and reports the change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{Mutex, Notify, watch};

use crate::config::{HealthCheck, OtlpExporter};
use crate::export::Backend;
use crate::route::affinity::Affinity;
use crate::route::ring::{Member, Ring};
use crate::telemetry::Metrics;

/// An immutable view of the pool; requests route against the snapshot they started with.
pub struct Pool {
    /// `None` while the pool is empty.
    pub ring: Option<Arc<Ring>>,
    /// One client per ring member, in the ring's member order.
    pub backends: Vec<Arc<Backend>>,
    /// Increments on every change: the version of the ring, as trace affinity remembers it.
    pub version: u64,
    pub resolver: &'static str,
    pub updated: SystemTime,
    /// The rings in use before this one, oldest first, for as long as trace affinity may still need them.
    pub history: Vec<Epoch>,
    index: HashMap<String, usize>,
}

/// The ring of pool version `version`, replaced at `until`.
pub struct Epoch {
    pub ring: Arc<Ring>,
    pub version: u64,
    pub until: Instant,
}

/// A key was first routed by a pool newer than the snapshot asked: route it against the current pool.
/// `fallback` is its backend by the snapshot's own ring, for when there is no newer pool to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewerRing {
    pub fallback: usize,
}

impl Pool {
    fn empty(resolver: &'static str) -> Pool {
        Pool {
            ring: None,
            backends: Vec::new(),
            version: 0,
            resolver,
            updated: SystemTime::now(),
            history: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// The backend (index into `backends`) for a key hash. With `affinity` (trace-id keys), a key first routed by
    /// an earlier ring goes to the backend that ring gave it, if that backend is still in the pool; a key first
    /// routed by a newer pool than this one is [`NewerRing`]. `now_ms` is [`Affinity::now_ms`].
    /// Panics if the pool is empty: callers check `ring` first.
    pub fn owner(&self, key: u64, affinity: Option<&Affinity>, now_ms: u64) -> Result<usize, NewerRing> {
        let ring = self.ring.as_ref().expect("owner() of an empty pool");
        match self.preferred(ring, key, affinity, now_ms) {
            Some(chosen) => Ok(self.available(ring, key, chosen)),
            None => Err(NewerRing { fallback: self.available(ring, key, ring.lookup(key)) }),
        }
    }

    /// `chosen` if it takes keys, else the next available backend in the key's ring order: the backend that
    /// would own the key if the ejected ones left the pool, the same on every replica.
    fn available(&self, ring: &Ring, key: u64, chosen: usize) -> usize {
        if self.backends[chosen].health.available() {
            return chosen;
        }
        ring.candidates(key).into_iter().find(|i| self.backends[*i].health.available()).unwrap_or(chosen)
    }

    /// Whether any backend takes keys now.
    pub fn any_available(&self) -> bool {
        self.backends.iter().any(|b| b.health.available())
    }

    /// The backend the ring that first routed `key` gave it; `None` if that ring is newer than this pool's.
    fn preferred(&self, ring: &Ring, key: u64, affinity: Option<&Affinity>, now_ms: u64) -> Option<usize> {
        let current = ring.lookup(key);
        let Some(affinity) = affinity else { return Some(current) };
        let first = affinity.first_routed(key, self.version, now_ms);
        if first == self.version {
            return Some(current);
        }
        if first > self.version {
            return None;
        }
        // An earlier ring, while it is remembered; a backend that left the pool leaves its keys to the current ring.
        let Ok(i) = self.history.binary_search_by_key(&first, |e| e.version) else { return Some(current) };
        let epoch = &self.history[i];
        let address = &epoch.ring.members()[epoch.ring.lookup(key)].address;
        Some(self.index.get(address).copied().unwrap_or(current))
    }

    /// The pool as JSON, for `/debug/pool`.
    pub fn describe(&self) -> PoolView {
        let members = self.ring.as_ref().map(|r| r.members()).unwrap_or_default();
        PoolView {
            version: self.version,
            resolver: self.resolver,
            ring_fingerprint: self.ring.as_ref().map(|r| format!("{:016x}", r.fingerprint())),
            updated_unix_ms: self.updated.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0),
            backends: members
                .iter()
                .enumerate()
                .map(|(i, m)| BackendView {
                    address: m.address.clone(),
                    weight: m.weight,
                    share: self.ring.as_ref().map(|r| r.share(i)).unwrap_or(0.0),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PoolView {
    pub version: u64,
    pub resolver: &'static str,
    pub ring_fingerprint: Option<String>,
    pub updated_unix_ms: u128,
    pub backends: Vec<BackendView>,
}

#[derive(Debug, Serialize)]
pub struct BackendView {
    pub address: String,
    pub weight: u32,
    /// Fraction of the key space the backend owns.
    pub share: f64,
}

/// What one update changed.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolChange {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Share of the key space whose backend changed.
    pub moved: f64,
    pub version: u64,
}

/// Applies member sets to the pool; one per resolver.
pub struct PoolManager {
    tx: watch::Sender<Arc<Pool>>,
    exporter: OtlpExporter,
    health: HealthCheck,
    metrics: Metrics,
    resolver: &'static str,
    /// How long replaced rings are kept for trace affinity.
    keep_history: Duration,
    apply_lock: Mutex<()>,
    /// Notified by every backend's ejection: wakes the prober.
    ejections: Arc<Notify>,
}

impl PoolManager {
    pub fn new(
        exporter: OtlpExporter,
        health: HealthCheck,
        metrics: Metrics,
        resolver: &'static str,
        keep_history: Duration,
    ) -> (Arc<PoolManager>, watch::Receiver<Arc<Pool>>) {
        let (tx, rx) = watch::channel(Arc::new(Pool::empty(resolver)));
        (
            Arc::new(PoolManager {
                tx,
                exporter,
                health,
                metrics,
                resolver,
                keep_history,
                apply_lock: Mutex::new(()),
                ejections: Arc::new(Notify::new()),
            }),
            rx,
        )
    }

    /// Probes ejected backends of the current pool when their ejection time is over, until `stop`. Sleeps until
    /// the next probe is due, or until a backend is ejected; with every backend healthy it does not wake at all.
    pub async fn probe_ejected(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let pool = self.tx.borrow().clone();
            let now = Instant::now();
            for backend in pool.backends.iter().filter(|b| b.health.start_probe(now)) {
                let backend = Arc::clone(backend);
                tokio::spawn(async move { backend.probe().await });
            }
            // A backend that leaves the pool while ejected is not probed again; one that joins is healthy.
            let next = pool.backends.iter().filter_map(|b| b.health.probe_due()).min();
            drop(pool);
            let due = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = due => {}
                _ = self.ejections.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Pool>> {
        self.tx.subscribe()
    }

    /// Replaces the pool's members. Returns `None` when nothing changed.
    pub async fn apply(&self, members: Vec<Member>) -> Result<Option<PoolChange>, String> {
        let _serial = self.apply_lock.lock().await;
        let started = Instant::now();
        let old = self.tx.borrow().clone();
        let mut wanted: Vec<(String, u32)> = members.iter().map(|m| (m.address.clone(), m.weight)).collect();
        wanted.sort();
        let mut current: Vec<(String, u32)> =
            old.ring.iter().flat_map(|r| r.members()).map(|m| (m.address.clone(), m.weight)).collect();
        current.sort();
        if wanted == current {
            return Ok(None);
        }
        let ring = if members.is_empty() {
            None
        } else {
            // Updating the previous ring gives the same table as a full build, at a fraction of the cost.
            let previous = old.ring.clone();
            let built = tokio::task::spawn_blocking(move || match previous {
                Some(p) => p.update(members),
                None => Ring::new(members),
            })
            .await
            .map_err(|e| e.to_string())?;
            Some(Arc::new(built.map_err(|e| e.to_string())?))
        };
        let mut clients: HashMap<&str, &Arc<Backend>> = old.backends.iter().map(|b| (b.address.as_str(), b)).collect();
        let mut backends = Vec::new();
        for m in ring.iter().flat_map(|r| r.members()) {
            let backend = match clients.remove(m.address.as_str()) {
                Some(b) => Arc::clone(b),
                None => Arc::new(Backend::new(
                    &m.address,
                    &self.exporter,
                    &self.health,
                    &self.ejections,
                    self.metrics.clone(),
                )?),
            };
            backends.push(backend);
        }
        let added: Vec<String> =
            wanted.iter().filter(|w| !current.iter().any(|c| c.0 == w.0)).map(|w| w.0.clone()).collect();
        let removed: Vec<String> =
            current.iter().filter(|c| !wanted.iter().any(|w| w.0 == c.0)).map(|c| c.0.clone()).collect();
        let moved = match (&old.ring, &ring) {
            (Some(a), Some(b)) => Ring::moved_fraction(a, b),
            (None, None) => 0.0,
            _ => 1.0,
        };
        let version = old.version + 1;
        let fingerprint = ring.as_ref().map(|r| r.fingerprint()).unwrap_or(0);
        let size = backends.len();
        let now = Instant::now();
        let mut history: Vec<Epoch> = old
            .history
            .iter()
            .filter(|e| now.duration_since(e.until) < self.keep_history)
            .map(|e| Epoch { ring: Arc::clone(&e.ring), version: e.version, until: e.until })
            .collect();
        if let Some(r) = &old.ring {
            history.push(Epoch { ring: Arc::clone(r), version: old.version, until: now });
        }
        let index = backends.iter().enumerate().map(|(i, b)| (b.address.clone(), i)).collect();
        let pool =
            Pool { ring, backends, version, resolver: self.resolver, updated: SystemTime::now(), history, index };
        self.tx.send_replace(Arc::new(pool));
        // What is left of the old clients has left the pool: parts not yet sent to them are handed back to be
        // re-routed; requests already sent finish, and each connection closes when its last request lets go.
        for gone in clients.values() {
            gone.retire();
        }
        self.metrics.pool_changed(self.resolver, size, fingerprint);
        tracing::info!(
            resolver = self.resolver,
            version,
            backends = size,
            added = ?added,
            removed = ?removed,
            moved_keys = format!("{:.1}%", moved * 100.0),
            took_ms = started.elapsed().as_millis() as u64,
            "backend pool changed"
        );
        Ok(Some(PoolChange { added, removed, moved, version }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backend of `key` in `pool`, which must be the newest pool.
    fn backend_of(pool: &Pool, key: u64, affinity: Option<&Affinity>, now_ms: u64) -> usize {
        pool.owner(key, affinity, now_ms).expect("no pool is newer")
    }

    fn member(a: &str) -> Member {
        Member { address: a.to_string(), weight: 1 }
    }

    #[tokio::test]
    async fn swaps_rings_keeps_clients_and_reports_changes() {
        let (mgr, rx) = PoolManager::new(
            OtlpExporter::default(),
            HealthCheck::default(),
            Metrics::new(),
            "static",
            Duration::from_secs(30),
        );
        assert!(rx.borrow().ring.is_none());
        let first =
            mgr.apply(vec![member("10.0.0.2:4317"), member("10.0.0.1:4317")]).await.expect("valid").expect("changed");
        assert_eq!(first.added.len(), 2);
        assert_eq!(first.moved, 1.0);
        let kept = Arc::clone(&rx.borrow().backends[0]);
        assert!(
            mgr.apply(vec![member("10.0.0.1:4317"), member("10.0.0.2:4317")]).await.expect("valid").is_none(),
            "same set, any order: no change"
        );
        let change = mgr
            .apply(vec![member("10.0.0.1:4317"), member("10.0.0.2:4317"), member("10.0.0.3:4317")])
            .await
            .expect("valid")
            .expect("changed");
        assert_eq!(change.added, vec!["10.0.0.3:4317".to_string()]);
        assert!(change.removed.is_empty());
        assert!((0.2..0.45).contains(&change.moved), "about a third of the keys move: {}", change.moved);
        let pool = rx.borrow().clone();
        assert_eq!(pool.version, 2);
        assert_eq!(pool.backends.len(), 3);
        assert!(Arc::ptr_eq(&pool.backends[0], &kept), "a backend that stays keeps its client");
        let view = pool.describe();
        assert_eq!(view.backends.len(), 3);
        assert!((view.backends.iter().map(|b| b.share).sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(
            pool.history.len(),
            1,
            "the ring before the change is kept for affinity (the empty start is not a ring)"
        );
        let emptied = mgr.apply(vec![]).await.expect("valid").expect("changed");
        assert_eq!(emptied.removed.len(), 3);
        assert!(rx.borrow().ring.is_none());
    }

    #[tokio::test]
    async fn affinity_keeps_traces_seen_before_a_scale_out_on_their_backend() {
        let (mgr, rx) = PoolManager::new(
            OtlpExporter::default(),
            HealthCheck::default(),
            Metrics::new(),
            "static",
            Duration::from_secs(30),
        );
        let three: Vec<Member> = (1..=3).map(|i| member(&format!("10.0.0.{i}:4317"))).collect();
        mgr.apply(three.clone()).await.expect("valid");
        let affinity = Affinity::new(Duration::from_secs(30), 1_000_000);
        let before = rx.borrow().clone();
        let now = affinity.now_ms();
        let old_traces: Vec<u64> = (0..3000u64).map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        let old_owner: Vec<String> = old_traces
            .iter()
            .map(|k| before.backends[backend_of(&before, *k, Some(&affinity), now)].address.clone())
            .collect();
        let mut five = three.clone();
        five.extend((4..=5).map(|i| member(&format!("10.0.0.{i}:4317"))));
        mgr.apply(five).await.expect("valid");
        let after = rx.borrow().clone();
        let later = affinity.now_ms() + 1;
        let mut would_move = 0;
        for (k, owner) in old_traces.iter().zip(&old_owner) {
            let with = &after.backends[backend_of(&after, *k, Some(&affinity), later)].address;
            assert_eq!(with, owner, "a trace seen before the change stays where it was");
            if &after.backends[backend_of(&after, *k, None, later)].address != owner {
                would_move += 1;
            }
        }
        assert!(would_move > 600, "without affinity about 2/5 of the traces would move: {would_move}");
        // New traces use the new ring, including the added backends.
        let fresh: Vec<usize> = (5000..8000u64)
            .map(|k| backend_of(&after, k.wrapping_mul(0x9e37_79b9_7f4a_7c15), Some(&affinity), later))
            .collect();
        assert!(fresh.iter().any(|i| after.backends[*i].address == "10.0.0.4:4317"));
        // Scaling in: a removed backend's traces go to their new owner consistently.
        mgr.apply(three[..2].to_vec()).await.expect("valid");
        let shrunk = rx.borrow().clone();
        for k in &old_traces {
            let a = backend_of(&shrunk, *k, Some(&affinity), later + 2);
            let b = backend_of(&shrunk, *k, Some(&affinity), later + 3);
            assert_eq!(a, b);
            assert!(a < 2);
        }
    }

    #[tokio::test]
    async fn a_trace_keeps_the_ring_that_routed_it_whatever_the_clock_reads() {
        let (mgr, rx) = PoolManager::new(
            OtlpExporter::default(),
            HealthCheck::default(),
            Metrics::new(),
            "static",
            Duration::from_secs(30),
        );
        let four: Vec<Member> = (1..=4).map(|i| member(&format!("10.0.0.{i}:4317"))).collect();
        mgr.apply(four[..3].to_vec()).await.expect("valid");
        let old = rx.borrow().clone();
        mgr.apply(four).await.expect("valid");
        let new = rx.borrow().clone();
        // Keys the change moves, all routed at the same clock reading: the clock cannot tell the rings apart.
        let moved: Vec<u64> = (0..4000u64)
            .map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .filter(|k| backend_of(&old, *k, None, 0) != backend_of(&new, *k, None, 0))
            .collect();
        assert!(moved.len() > 500, "about a quarter of the keys move: {}", moved.len());
        let affinity = Affinity::new(Duration::from_secs(30), 1_000_000);
        let (by_old, by_new) = moved.split_at(moved.len() / 2);
        for k in by_old {
            // Routed first through the snapshot taken before the swap: the new pool keeps that backend.
            let first = old.backends[backend_of(&old, *k, Some(&affinity), 0)].address.clone();
            assert_eq!(new.backends[backend_of(&new, *k, Some(&affinity), 0)].address, first);
        }
        for k in by_new {
            // Routed first through the new pool: a request still holding the old snapshot is told to route again.
            let first = backend_of(&new, *k, Some(&affinity), 0);
            assert_eq!(first, backend_of(&new, *k, None, 0));
            let stale = old.owner(*k, Some(&affinity), 0);
            assert_eq!(stale, Err(NewerRing { fallback: backend_of(&old, *k, None, 0) }));
        }
    }
}
