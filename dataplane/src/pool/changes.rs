//! A bounded history of pool changes for the status page: when each happened, the endpoints added and removed,
//! the share of the key space that moved, and how many traces trace affinity held on their former backend.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use crate::route::affinity::Affinity;
use crate::route::ring::Ring;

/// How many changes are kept (the oldest is forgotten first).
pub const KEEP: usize = 32;

/// One change of the pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeRecord {
    /// The pool version the change produced.
    pub version: u64,
    pub at_unix_ms: u64,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Share of the key space whose backend changed (0 to 1).
    pub moved_fraction: f64,
    /// Backends in the pool after the change.
    pub backends: usize,
    /// Traces first seen before the change whose key moved to another backend while their former backend stayed
    /// in the pool: trace affinity keeps them there. `None` when no ring was replaced (the pool was or became
    /// empty) or trace affinity is not in use.
    pub affinity_held_traces: Option<u64>,
}

/// The recent pool changes, newest last.
#[derive(Default)]
pub struct ChangeLog {
    entries: Mutex<VecDeque<ChangeRecord>>,
    affinity: OnceLock<Arc<Affinity>>,
}

impl ChangeLog {
    /// Counts the traces held by `affinity` in every change recorded from now on.
    pub fn track_affinity(&self, affinity: Arc<Affinity>) {
        let _ = self.affinity.set(affinity);
    }

    /// Records a change. `rings` (the ring replaced and the ring that replaced it) gives the traces held by
    /// affinity.
    pub fn record(&self, mut change: ChangeRecord, rings: Option<(&Ring, &Ring)>) {
        if let (Some(affinity), Some((old, new))) = (self.affinity.get(), rings) {
            change.affinity_held_traces = Some(held_traces(affinity, old, new, change.version));
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() == KEEP {
            entries.pop_front();
        }
        entries.push_back(change);
    }

    /// The changes kept, newest first.
    pub fn recent(&self) -> Vec<ChangeRecord> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).iter().rev().cloned().collect()
    }
}

/// Traces that a pool older than `version` (the new ring's) first routed, whose owner in `new` is not their owner
/// in `old`, where that owner is still in `new`.
fn held_traces(affinity: &Affinity, old: &Ring, new: &Ring, version: u64) -> u64 {
    let stays: Vec<Option<usize>> = old.members().iter().map(|m| new.index_of(&m.address)).collect();
    let keys = affinity.keys_routed_before(version);
    keys.iter().filter(|&&k| stays[old.lookup(k)].is_some_and(|i| i != new.lookup(k))).count() as u64
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::route::ring::Member;

    fn ring(n: usize) -> Ring {
        Ring::new((0..n).map(|i| Member { address: format!("10.0.0.{i}:4317"), weight: 1 })).expect("ring")
    }

    fn change(version: u64) -> ChangeRecord {
        ChangeRecord {
            version,
            at_unix_ms: version * 1000,
            added: vec![],
            removed: vec![],
            moved_fraction: 0.0,
            backends: 1,
            affinity_held_traces: None,
        }
    }

    #[test]
    fn keeps_the_latest_changes_newest_first() {
        let log = ChangeLog::default();
        for v in 1..=(KEEP as u64 + 5) {
            log.record(change(v), None);
        }
        let recent = log.recent();
        assert_eq!(recent.len(), KEEP);
        assert_eq!(recent[0].version, KEEP as u64 + 5);
        assert_eq!(recent[KEEP - 1].version, 6);
    }

    #[test]
    fn counts_the_traces_affinity_holds_when_a_backend_joins() {
        let affinity = Arc::new(Affinity::new(Duration::from_secs(30), 1_000_000));
        let log = ChangeLog::default();
        log.track_affinity(Arc::clone(&affinity));
        let now = affinity.now_ms();
        let keys: Vec<u64> = (0..4000u64).map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        for k in &keys {
            affinity.first_routed(*k, 1, now);
        }
        let (three, four) = (ring(3), ring(4));
        let moved = keys
            .iter()
            .filter(|k| three.members()[three.lookup(**k)].address != four.members()[four.lookup(**k)].address)
            .count();
        log.record(change(2), Some((&three, &four)));
        let held = log.recent()[0].affinity_held_traces.expect("affinity tracked");
        assert_eq!(held, moved as u64, "every trace whose key moved is held: no backend left");
        assert!((700..1300).contains(&held), "about a quarter of 4000: {held}");
        // Scaling in: the traces of the removed backend cannot be held.
        log.record(change(3), Some((&four, &three)));
        let held_in = log.recent()[0].affinity_held_traces.expect("affinity tracked");
        assert_eq!(held_in, 0, "only the removed backend's keys move, and those have nowhere to be held");
    }
}
