//! The load balancer's hash ring as the operator observes it: the ready endpoints of the backend Service, a
//! version that counts each change of that set, and what each change moved. Pure; the reconciler stores the
//! result in `status.ring` and publishes a `Rebalanced` event for every change.
//!
//! The data plane hashes keys by rendezvous hashing over equal weights, so when the member set goes from A to B
//! a key keeps its backend exactly when the best-scoring member of A ∪ B is in both: the share of keys moved is
//! `1 - |A ∩ B| / |A ∪ B|`.

use std::collections::BTreeSet;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::crd::RingStatus;
use crate::status::{endpoints_on_port, is_ready};

/// `address:port` of every endpoint of `slices` that serves `port` and is ready (a nil `ready` counts as
/// ready, as for every EndpointSlice consumer), sorted: the members the load balancer's ring holds.
pub fn members(slices: &[EndpointSlice], port: i32) -> BTreeSet<String> {
    let ready = endpoints_on_port(slices, port).filter(|e| is_ready(e));
    let addresses = ready.flat_map(|e| e.addresses.iter());
    addresses.map(|a| if a.contains(':') { format!("[{a}]:{port}") } else { format!("{a}:{port}") }).collect()
}

/// One change of the ring's members.
#[derive(Debug, Clone, PartialEq)]
pub struct Rebalance {
    pub from_version: i64,
    pub to_version: i64,
    pub before: usize,
    pub after: usize,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Share of keys whose backend changed, 0 to 1.
    pub keys_moved: f64,
}

impl Rebalance {
    /// The sentence of the `Rebalanced` event and of `status.ring.lastRebalance`.
    pub fn summary(&self) -> String {
        let list = |verb: &str, items: &[String]| match items.len() {
            0 => None,
            n if n <= 5 => Some(format!("{verb} {}", items.join(", "))),
            n => Some(format!("{verb} {} and {} more", items[..5].join(", "), n - 5)),
        };
        let changes: Vec<String> =
            [list("added", &self.added), list("removed", &self.removed)].into_iter().flatten().collect();
        format!(
            "ring version {} -> {}: backends {} -> {} ({}); {:.1}% of keys moved",
            self.from_version,
            self.to_version,
            self.before,
            self.after,
            changes.join("; "),
            self.keys_moved * 100.0
        )
    }
}

/// Share of keys that change backend when the ring's members go from `before` to `after`.
pub fn keys_moved(before: &BTreeSet<String>, after: &BTreeSet<String>) -> f64 {
    let union = before.union(after).count();
    if union == 0 {
        return 0.0;
    }
    1.0 - before.intersection(after).count() as f64 / union as f64
}

/// The ring status after observing `members`, and the rebalance it records if the members changed.
///
/// The first observation starts at version 1 and is not a rebalance: there was no ring before it.
pub fn observe(
    previous: Option<&RingStatus>,
    members: BTreeSet<String>,
    now: Timestamp,
) -> (RingStatus, Option<Rebalance>) {
    let Some(previous) = previous.filter(|p| p.version > 0) else {
        let status = RingStatus { version: 1, members: members.into_iter().collect(), ..RingStatus::default() };
        return (status, None);
    };
    let before: BTreeSet<String> = previous.members.iter().cloned().collect();
    if before == members {
        return (previous.clone(), None);
    }
    let rebalance = Rebalance {
        from_version: previous.version,
        to_version: previous.version + 1,
        before: before.len(),
        after: members.len(),
        added: members.difference(&before).cloned().collect(),
        removed: before.difference(&members).cloned().collect(),
        keys_moved: keys_moved(&before, &members),
    };
    let status = RingStatus {
        version: rebalance.to_version,
        members: members.into_iter().collect(),
        last_rebalance_time: Some(Time(now)),
        last_rebalance: Some(rebalance.summary()),
    };
    (status, Some(rebalance))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn keys_moved_is_the_ideal_share_of_a_rendezvous_ring() {
        assert_eq!(keys_moved(&set(&[]), &set(&[])), 0.0);
        assert_eq!(keys_moved(&set(&["a", "b", "c"]), &set(&["a", "b", "c"])), 0.0);
        // Growing 3 -> 4 moves the new member's quarter; shrinking 5 -> 2 moves the removed members' 3/5.
        assert!((keys_moved(&set(&["a", "b", "c"]), &set(&["a", "b", "c", "d"])) - 0.25).abs() < 1e-12);
        assert!((keys_moved(&set(&["a", "b", "c", "d", "e"]), &set(&["a", "b"])) - 0.6).abs() < 1e-12);
        assert_eq!(keys_moved(&set(&[]), &set(&["a"])), 1.0);
    }

    #[test]
    fn the_first_observation_is_version_one_and_no_rebalance() {
        let (status, rebalance) = observe(None, set(&["10.0.0.1:4317"]), now());
        assert_eq!(status.version, 1);
        assert_eq!(status.members, vec!["10.0.0.1:4317".to_string()]);
        assert_eq!(status.last_rebalance_time, None);
        assert_eq!(rebalance, None);
    }

    #[test]
    fn a_change_of_members_bumps_the_version_and_says_what_moved() {
        let (first, _) = observe(None, set(&["a:1", "b:1", "c:1"]), now());
        let (same, none) = observe(Some(&first), set(&["a:1", "b:1", "c:1"]), now());
        assert_eq!((same.version, none), (1, None), "an unchanged set is no rebalance");
        let (second, rebalance) = observe(Some(&first), set(&["a:1", "b:1", "d:1", "e:1"]), now());
        let rebalance = rebalance.expect("a rebalance");
        assert_eq!(second.version, 2);
        assert_eq!(second.last_rebalance_time, Some(Time(now())));
        assert_eq!(rebalance.added, vec!["d:1".to_string(), "e:1".to_string()]);
        assert_eq!(rebalance.removed, vec!["c:1".to_string()]);
        assert_eq!(
            second.last_rebalance.as_deref(),
            Some("ring version 1 -> 2: backends 3 -> 4 (added d:1, e:1; removed c:1); 60.0% of keys moved")
        );
    }
}
