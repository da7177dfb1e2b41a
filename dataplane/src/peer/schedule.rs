//! The switch schedule: when each new ring takes effect, agreed between the replicas. A replica that builds a
//! ring nobody has proposed yet proposes to switch `delay` from now; every replica switches at the earliest
//! proposal it has for that ring (identified by its fingerprint). A replica that builds the ring after the agreed
//! time has passed switches at once, late. Pure logic: times are milliseconds since the Unix epoch.

use std::collections::HashMap;

/// How long a proposal is kept after its time, for a replica that sees the change late. A ring seen again after
/// this is a new change.
pub const FORGET_AFTER_MS: u64 = 30_000;

/// When this replica switches to a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agreed {
    /// Nobody had proposed a time: this replica proposes `at` (and tells its peers).
    Proposed { at: u64 },
    /// A peer proposed `at`, still ahead.
    Heard { at: u64 },
    /// The agreed time passed `late_by` ms ago: switch at once.
    Late { late_by: u64 },
}

#[derive(Debug, Default)]
pub struct Schedule {
    /// Earliest proposal per ring fingerprint.
    proposals: HashMap<u64, u64>,
}

impl Schedule {
    /// A peer proposes to switch to `ring` at `at`: the earliest proposal is kept. Returns the time now agreed.
    pub fn heard(&mut self, ring: u64, at: u64, now: u64) -> u64 {
        self.forget(now);
        let agreed = self.proposals.entry(ring).or_insert(at);
        *agreed = (*agreed).min(at);
        *agreed
    }

    /// This replica has built `ring`: when to switch to it.
    pub fn agree(&mut self, ring: u64, now: u64, delay_ms: u64) -> Agreed {
        self.forget(now);
        match self.proposals.get(&ring) {
            Some(&at) if at > now => Agreed::Heard { at },
            Some(&at) => Agreed::Late { late_by: now - at },
            None => {
                let at = now + delay_ms;
                self.proposals.insert(ring, at);
                Agreed::Proposed { at }
            }
        }
    }

    /// The time agreed for `ring`, if any.
    pub fn at(&self, ring: u64) -> Option<u64> {
        self.proposals.get(&ring).copied()
    }

    /// This replica switched to `ring`: the next time it is built is a new change.
    pub fn switched(&mut self, ring: u64) {
        self.proposals.remove(&ring);
    }

    fn forget(&mut self, now: u64) {
        self.proposals.retain(|_, at| at.saturating_add(FORGET_AFTER_MS) > now);
    }

    /// Proposals held.
    pub fn len(&self) -> usize {
        self.proposals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.proposals.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_to_see_a_ring_proposes_and_the_earliest_proposal_wins() {
        let mut a = Schedule::default();
        let mut b = Schedule::default();
        // A sees the ring first and proposes 2 s ahead; B hears it before it sees the ring itself.
        let Agreed::Proposed { at } = a.agree(7, 1_000, 2_000) else { panic!("A proposes") };
        assert_eq!(at, 3_000);
        assert_eq!(b.heard(7, at, 1_010), 3_000);
        assert_eq!(b.agree(7, 1_500, 2_000), Agreed::Heard { at: 3_000 }, "B switches when A does");
        // B and C propose for ring 9 before hearing each other (3 000 and 3 100): everyone ends with 3 000.
        let mut c = Schedule::default();
        let Agreed::Proposed { at: c_at } = c.agree(9, 1_100, 2_000) else { panic!("C proposes") };
        assert_eq!(c.heard(9, 3_000, 1_120), 3_000);
        assert_eq!(a.heard(9, c_at, 1_120), 3_100);
        assert_eq!(a.agree(9, 1_130, 2_000), Agreed::Heard { at: 3_100 }, "A keeps C's proposal for ring 9");
        assert_eq!(a.heard(9, 3_000, 1_140), 3_000, "then B's earlier one");
        assert_eq!(c.at(9), Some(3_000));
    }

    #[test]
    fn a_replica_that_sees_the_ring_after_the_agreed_time_switches_at_once() {
        let mut s = Schedule::default();
        s.heard(7, 3_000, 1_000);
        assert_eq!(s.agree(7, 3_250, 2_000), Agreed::Late { late_by: 250 });
    }

    #[test]
    fn a_ring_seen_again_later_is_a_new_change() {
        let mut s = Schedule::default();
        assert_eq!(s.agree(7, 1_000, 2_000), Agreed::Proposed { at: 3_000 });
        s.switched(7);
        assert!(s.is_empty());
        assert_eq!(s.agree(7, 5_000, 2_000), Agreed::Proposed { at: 7_000 }, "after a switch, proposed anew");
        // A proposal for a ring this replica never built is forgotten in time.
        s.heard(8, 8_000, 6_000);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.agree(8, 8_000 + FORGET_AFTER_MS + 1, 2_000),
            Agreed::Proposed { at: 8_000 + FORGET_AFTER_MS + 2_001 }
        );
    }
}
