//! The backend pool: the ring and one client per backend, published as an immutable snapshot on a
//! `tokio::sync::watch` channel. Resolvers hand in the member set; the manager builds the new ring off the async
//! threads, keeps the clients of backends that stay, swaps the snapshot atomically and reports the change.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{Mutex, Notify, watch};

use crate::config::{HealthCheck, OtlpExporter};
use crate::export::Backend;
use crate::metrics::Metrics;
use crate::route::affinity::Affinity;
use crate::route::ring::{Member, Ring};

pub mod changes;
use changes::{ChangeLog, ChangeRecord};

/// What a resolver hands to the pool: the members that take new keys, and those that drain (they keep the keys
/// trace affinity gives them, and take no new one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    pub active: Vec<Member>,
    pub draining: Vec<Member>,
}

impl Members {
    /// Members that all take new keys.
    pub fn all_active(members: Vec<Member>) -> Members {
        Members { active: members, draining: Vec::new() }
    }
}

/// An immutable view of the pool; requests route against the snapshot they started with.
pub struct Pool {
    /// `None` while the pool is empty.
    pub ring: Option<Arc<Ring>>,
    /// One client per ring member, in the ring's member order, then one per draining member (not in the ring).
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
        if first > self.version {
            return None;
        }
        // A trace another load-balancer replica routed under an earlier ring keeps the backend it went to.
        if let Some(peer) = affinity.peers().owner(key).and_then(|a| self.index.get(&*a).copied()) {
            return Some(peer);
        }
        if first == self.version {
            return Some(current);
        }
        // An earlier ring, while it is remembered; a backend that left the pool leaves its keys to the current ring.
        Some(self.ring_owner(key, first).and_then(|a| self.index.get(a)).copied().unwrap_or(current))
    }

    /// The address the ring of pool version `version` gave `key`, while that ring is remembered.
    pub fn ring_owner(&self, key: u64, version: u64) -> Option<&str> {
        let ring = if version == self.version {
            self.ring.as_ref()?
        } else {
            &self.history.get(self.history.binary_search_by_key(&version, |e| e.version).ok()?)?.ring
        };
        Some(&ring.members()[ring.lookup(key)].address)
    }

    /// Whether `address` is a backend of the pool (in the ring, or draining).
    pub fn holds(&self, address: &str) -> bool {
        self.index.contains_key(address)
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
            draining: self.backends[members.len()..].iter().map(|b| b.address.clone()).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PoolView {
    pub version: u64,
    pub resolver: &'static str,
    pub ring_fingerprint: Option<String>,
    pub updated_unix_ms: u128,
    /// The ring's members.
    pub backends: Vec<BackendView>,
    /// Members that keep the traces they hold and take no new one.
    pub draining: Vec<String>,
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
    /// Members draining after the change.
    pub draining: Vec<String>,
    /// Share of the key space whose backend changed.
    pub moved: f64,
    pub version: u64,
}

/// When a new ring takes effect: agreed with the other load-balancer replicas by the peer exchange. Without one,
/// a new ring takes effect as soon as it is built.
pub trait Switch: Send + Sync {
    /// Returns `true` when the ring with fingerprint `ring` may take effect, or `false` when it never will: a newer
    /// member set waits (`superseded()` turned true) while the switch time is still far enough away for the newer
    /// set to take its place.
    fn activation<'a>(
        &'a self,
        ring: u64,
        superseded: &'a (dyn Fn() -> bool + Send + Sync),
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>>;
    /// `pool`, with a new ring, is in use.
    fn switched(&self, pool: &Arc<Pool>);
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
    /// The recent changes, for the status page.
    changes: Arc<ChangeLog>,
    switch: OnceLock<Arc<dyn Switch>>,
    /// The number of the latest member set applied, and that of one a newer set waits behind.
    applying: AtomicU64,
    newer_behind: AtomicU64,
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
                changes: Arc::default(),
                switch: OnceLock::new(),
                applying: AtomicU64::new(0),
                newer_behind: AtomicU64::new(0),
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

    /// Lets `switch` decide when each new ring takes effect. Set once, before the first member set.
    pub fn set_switch(&self, switch: Arc<dyn Switch>) {
        let _ = self.switch.set(switch);
    }

    /// The recent changes of the pool.
    pub fn changes(&self) -> Arc<ChangeLog> {
        Arc::clone(&self.changes)
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Pool>> {
        self.tx.subscribe()
    }

    /// A newer member set has come while the one being applied waits for its switch time: that one gives way if it
    /// is still early enough ([`Switch::activation`]).
    pub fn newer_waiting(&self) {
        self.newer_behind.store(self.applying.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Replaces the pool's members, all active. Returns `None` when nothing changed.
    pub async fn apply(&self, members: Vec<Member>) -> Result<Option<PoolChange>, String> {
        self.apply_members(Members::all_active(members)).await
    }

    /// Replaces the pool's members. The ring holds the active ones (the draining ones when none is active, rather
    /// than refuse everything); a draining member keeps its client. Returns `None` when nothing changed, or when a
    /// newer member set ([`PoolManager::newer_waiting`]) took the place of this one's new ring before its switch.
    pub async fn apply_members(&self, members: Members) -> Result<Option<PoolChange>, String> {
        let _serial = self.apply_lock.lock().await;
        let number = self.applying.fetch_add(1, Ordering::SeqCst) + 1;
        let started = Instant::now();
        let old = self.tx.borrow().clone();
        let Members { active, mut draining } = members;
        draining.retain(|d| !active.iter().any(|a| a.address == d.address));
        let (members, draining) = if active.is_empty() { (draining, Vec::new()) } else { (active, draining) };
        let mut wanted: Vec<(String, u32)> = members.iter().map(|m| (m.address.clone(), m.weight)).collect();
        wanted.sort();
        let mut current: Vec<(String, u32)> =
            old.ring.iter().flat_map(|r| r.members()).map(|m| (m.address.clone(), m.weight)).collect();
        current.sort();
        let ring_members = old.ring.as_ref().map_or(0, |r| r.members().len());
        let mut old_draining: Vec<&str> = old.backends[ring_members..].iter().map(|b| b.address.as_str()).collect();
        old_draining.sort();
        let mut wanted_draining: Vec<&str> = draining.iter().map(|m| m.address.as_str()).collect();
        wanted_draining.sort();
        wanted_draining.dedup();
        if wanted == current && wanted_draining == old_draining {
            return Ok(None);
        }
        let ring = if members.is_empty() {
            None
        } else if wanted == current {
            old.ring.clone()
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
        // The ring's members first (their index is the ring's), then the draining ones.
        let addresses = ring.iter().flat_map(|r| r.members()).map(|m| m.address.as_str());
        for address in addresses.chain(wanted_draining.iter().copied()) {
            let backend = match clients.remove(address) {
                Some(b) => Arc::clone(b),
                None => Arc::new(Backend::new(
                    address,
                    &self.exporter,
                    &self.health,
                    &self.ejections,
                    self.metrics.clone(),
                )?),
            };
            backends.push(backend);
        }
        let was = |a: &str| current.iter().any(|c| c.0 == a) || old_draining.contains(&a);
        let added: Vec<String> = wanted.iter().filter(|w| !was(&w.0)).map(|w| w.0.clone()).collect();
        let removed: Vec<String> = current
            .iter()
            .map(|c| c.0.as_str())
            .chain(old_draining.iter().copied())
            .filter(|a| !wanted.iter().any(|w| w.0 == *a) && !wanted_draining.contains(a))
            .map(str::to_string)
            .collect();
        let draining: Vec<String> = wanted_draining.iter().map(|a| a.to_string()).collect();
        let moved = match (&old.ring, &ring) {
            (Some(a), Some(b)) => Ring::moved_fraction(a, b),
            (None, None) => 0.0,
            _ => 1.0,
        };
        let version = old.version + 1;
        let fingerprint = ring.as_ref().map(|r| r.fingerprint()).unwrap_or(0);
        let new_ring =
            old.ring.is_some() && ring.is_some() && old.ring.as_ref().map(|r| r.fingerprint()) != Some(fingerprint);
        let switch = self.switch.get().filter(|_| new_ring);
        if let Some(switch) = switch {
            let superseded = || self.newer_behind.load(Ordering::SeqCst) == number;
            if !switch.activation(fingerprint, &superseded).await {
                return Ok(None);
            }
        }
        let size = ring.as_ref().map_or(0, |r| r.members().len());
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
        let shares: Vec<(String, f64)> = ring
            .iter()
            .flat_map(|r| r.members().iter().enumerate().map(|(i, m)| (m.address.clone(), r.share(i))))
            .collect();
        let index = backends.iter().enumerate().map(|(i, b)| (b.address.clone(), i)).collect();
        let pool =
            Pool { ring, backends, version, resolver: self.resolver, updated: SystemTime::now(), history, index };
        let pool = Arc::new(pool);
        self.tx.send_replace(Arc::clone(&pool));
        if let Some(switch) = switch {
            switch.switched(&pool);
        }
        // What is left of the old clients has left the pool: parts not yet sent to them are handed back to be
        // re-routed; requests already sent finish, and each connection closes when its last request lets go.
        for gone in clients.values() {
            gone.retire();
        }
        self.metrics.pool_changed(self.resolver, size, fingerprint);
        self.metrics.ring(&shares, moved);
        let record = ChangeRecord {
            version,
            at_unix_ms: pool.updated.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            added: added.clone(),
            removed: removed.clone(),
            moved_fraction: moved,
            backends: size,
            affinity_held_traces: None,
        };
        self.changes.record(record, old.ring.as_deref().zip(pool.ring.as_deref()));
        tracing::info!(
            resolver = self.resolver,
            version,
            backends = size,
            added = ?added,
            removed = ?removed,
            draining = ?draining,
            moved_keys = format!("{:.1}%", moved * 100.0),
            took_ms = started.elapsed().as_millis() as u64,
            "backend pool changed"
        );
        Ok(Some(PoolChange { added, removed, draining, moved, version }))
    }
}

#[cfg(test)]
mod tests;
