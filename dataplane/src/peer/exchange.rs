//! The state of one replica's exchanges: which peers' tables arrived for which ring (a table may arrive before
//! this replica switches to that ring), and the exchange under way since this replica's own switch. Pure logic.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

/// Rings whose received tables are remembered.
const RINGS_TRACKED: usize = 8;

#[derive(Debug, Default)]
pub struct Exchange {
    /// The ring this replica switched to last.
    ring: u64,
    /// When that switch happened, while its exchange is under way.
    since: Option<Instant>,
    /// How many peers' tables it waits for.
    expected: usize,
    /// The peers whose tables arrived, per ring.
    received: VecDeque<(u64, HashSet<u64>)>,
}

impl Exchange {
    fn received(&mut self, ring: u64) -> &mut HashSet<u64> {
        let i = match self.received.iter().position(|(r, _)| *r == ring) {
            Some(i) => i,
            None => {
                if self.received.len() >= RINGS_TRACKED {
                    self.received.pop_front();
                }
                self.received.push_back((ring, HashSet::new()));
                self.received.len() - 1
            }
        };
        &mut self.received[i].1
    }

    /// This replica switched to `ring`, and waits for `expected` peers' tables: whether they are all in already.
    pub fn begin(&mut self, ring: u64, expected: usize, now: Instant) -> bool {
        (self.ring, self.expected, self.since) = (ring, expected, Some(now));
        self.complete()
    }

    /// Peer `from` sent its table for `ring`: whether that completes the exchange under way.
    pub fn arrived(&mut self, ring: u64, from: u64) -> bool {
        self.received(ring).insert(from);
        self.since.is_some() && self.ring == ring && self.complete()
    }

    fn complete(&mut self) -> bool {
        let (ring, expected) = (self.ring, self.expected);
        self.received(ring).len() >= expected
    }

    /// Ends the exchange under way, if `ring`'s is: when it began. Its tables are forgotten, so that a later switch
    /// to the same ring waits for new ones.
    pub fn finish(&mut self, ring: u64) -> Option<Instant> {
        if self.ring != ring {
            return None;
        }
        self.received.retain(|(r, _)| *r != ring);
        self.since.take()
    }

    /// The exchange under way: (ring, tables expected, tables in).
    pub fn pending(&mut self) -> Option<(u64, usize, usize)> {
        self.since?;
        let ring = self.ring;
        Some((ring, self.expected, self.received(ring).len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exchange_ends_when_every_peer_table_is_in() {
        let now = Instant::now();
        let mut ex = Exchange::default();
        assert!(!ex.arrived(7, 100), "no exchange under way yet");
        assert!(!ex.begin(7, 2, now), "one of two tables arrived before the switch");
        assert_eq!(ex.pending(), Some((7, 2, 1)));
        assert!(!ex.arrived(7, 100), "the same peer twice counts once");
        assert!(!ex.arrived(9, 200), "a table for another ring does not count");
        assert!(ex.arrived(7, 200));
        assert_eq!(ex.finish(7), Some(now));
        assert_eq!(ex.pending(), None);
        assert_eq!(ex.finish(7), None, "ended once");
        // Back to ring 7 later: the earlier tables are forgotten.
        assert!(!ex.begin(7, 1, now));
        assert!(ex.arrived(7, 100));
        assert!(ex.begin(3, 0, now), "no peer: nothing to wait for");
    }

    #[test]
    fn only_a_few_rings_are_remembered() {
        let mut ex = Exchange::default();
        for ring in 0..100 {
            ex.arrived(ring, 1);
        }
        assert!(ex.received.len() <= RINGS_TRACKED);
    }
}
