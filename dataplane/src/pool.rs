//! The backend pool: the ring and one client per backend, published as an immutable snapshot on a
//! `tokio::sync::watch` channel. Resolvers hand in the member set; the manager builds the new ring off the async
//! threads, keeps the clients of backends that stay, swaps the snapshot atomically and reports the change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{Mutex, watch};

use crate::config::OtlpExporter;
use crate::export::Backend;
use crate::route::ring::{Member, Ring};
use crate::telemetry::Metrics;

/// An immutable view of the pool; requests route against the snapshot they started with.
pub struct Pool {
    /// `None` while the pool is empty.
    pub ring: Option<Ring>,
    /// One client per ring member, in the ring's member order.
    pub backends: Vec<Arc<Backend>>,
    /// Increments on every change.
    pub version: u64,
    pub resolver: &'static str,
    pub updated: SystemTime,
}

impl Pool {
    fn empty(resolver: &'static str) -> Pool {
        Pool { ring: None, backends: Vec::new(), version: 0, resolver, updated: SystemTime::now() }
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
    metrics: Metrics,
    resolver: &'static str,
    apply_lock: Mutex<()>,
}

impl PoolManager {
    pub fn new(exporter: OtlpExporter, metrics: Metrics, resolver: &'static str) -> (Arc<PoolManager>, watch::Receiver<Arc<Pool>>) {
        let (tx, rx) = watch::channel(Arc::new(Pool::empty(resolver)));
        (Arc::new(PoolManager { tx, exporter, metrics, resolver, apply_lock: Mutex::new(()) }), rx)
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
        let mut current: Vec<(String, u32)> = old.ring.iter().flat_map(|r| r.members()).map(|m| (m.address.clone(), m.weight)).collect();
        current.sort();
        if wanted == current {
            return Ok(None);
        }
        let ring = if members.is_empty() {
            None
        } else {
            let built = tokio::task::spawn_blocking(move || Ring::new(members)).await.map_err(|e| e.to_string())?;
            Some(built.map_err(|e| e.to_string())?)
        };
        let mut clients: HashMap<&str, &Arc<Backend>> = old.backends.iter().map(|b| (b.address.as_str(), b)).collect();
        let mut backends = Vec::new();
        for m in ring.iter().flat_map(|r| r.members()) {
            let backend = match clients.remove(m.address.as_str()) {
                Some(b) => Arc::clone(b),
                None => Arc::new(Backend::new(&m.address, &self.exporter, self.metrics.clone())?),
            };
            backends.push(backend);
        }
        let added: Vec<String> = wanted.iter().filter(|w| !current.iter().any(|c| c.0 == w.0)).map(|w| w.0.clone()).collect();
        let removed: Vec<String> = current.iter().filter(|c| !wanted.iter().any(|w| w.0 == c.0)).map(|c| c.0.clone()).collect();
        let moved = match (&old.ring, &ring) {
            (Some(a), Some(b)) => Ring::moved_fraction(a, b),
            (None, None) => 0.0,
            _ => 1.0,
        };
        let version = old.version + 1;
        let fingerprint = ring.as_ref().map(|r| r.fingerprint()).unwrap_or(0);
        let size = backends.len();
        let pool = Pool { ring, backends, version, resolver: self.resolver, updated: SystemTime::now() };
        self.tx.send_replace(Arc::new(pool));
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

    fn member(a: &str) -> Member {
        Member { address: a.to_string(), weight: 1 }
    }

    #[tokio::test]
    async fn swaps_rings_keeps_clients_and_reports_changes() {
        let (mgr, rx) = PoolManager::new(OtlpExporter::default(), Metrics::new(), "static");
        assert!(rx.borrow().ring.is_none());
        let first = mgr.apply(vec![member("10.0.0.2:4317"), member("10.0.0.1:4317")]).await.expect("valid").expect("changed");
        assert_eq!(first.added.len(), 2);
        assert_eq!(first.moved, 1.0);
        let kept = Arc::clone(&rx.borrow().backends[0]);
        assert!(mgr.apply(vec![member("10.0.0.1:4317"), member("10.0.0.2:4317")]).await.expect("valid").is_none(), "same set, any order: no change");
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
        let emptied = mgr.apply(vec![]).await.expect("valid").expect("changed");
        assert_eq!(emptied.removed.len(), 3);
        assert!(rx.borrow().ring.is_none());
    }
}
