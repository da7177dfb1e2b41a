//! Tests of the pool: swaps, clients kept, trace affinity across changes, draining members.

use super::*;
use crate::config::ClientTls;

/// The backend of `key` in `pool`, which must be the newest pool.
fn backend_of(pool: &Pool, key: u64, affinity: Option<&Affinity>, now_ms: u64) -> usize {
    pool.owner(key, affinity, now_ms).expect("no pool is newer")
}

/// A pool manager for `resolver` of plaintext backends and default health checks.
fn manager(resolver: &'static str) -> (Arc<PoolManager>, watch::Receiver<Arc<Pool>>) {
    PoolManager::new(
        OtlpExporter { tls: ClientTls { insecure: true, ..ClientTls::default() }, ..OtlpExporter::default() },
        HealthCheck::default(),
        Metrics::new(),
        resolver,
        Duration::from_secs(30),
    )
}

fn member(a: &str) -> Member {
    Member { address: a.to_string(), weight: 1 }
}

#[tokio::test]
async fn swaps_rings_keeps_clients_and_reports_changes() {
    let (mgr, rx) = manager("static");
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
    let (mgr, rx) = manager("static");
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
    let (mgr, rx) = manager("static");
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

#[tokio::test]
async fn a_draining_backend_keeps_its_traces_and_takes_no_new_one() {
    let (mgr, rx) = manager("k8s");
    let three: Vec<Member> = (1..=3).map(|i| member(&format!("10.0.0.{i}:4317"))).collect();
    mgr.apply_members(Members { active: three.clone(), draining: vec![] }).await.expect("valid");
    let affinity = Affinity::new(Duration::from_secs(30), 1_000_000);
    let before = rx.borrow().clone();
    let leaving = "10.0.0.3:4317";
    let held: Vec<u64> = (0..3000u64)
        .map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .filter(|k| before.backends[backend_of(&before, *k, Some(&affinity), 0)].address == leaving)
        .collect();
    assert!(held.len() > 700, "about a third of the traces are on the leaving backend: {}", held.len());
    let kept = Arc::clone(&before.backends[2]);

    // Scale-in: the pod terminates and still serves.
    let change = mgr
        .apply_members(Members { active: three[..2].to_vec(), draining: vec![three[2].clone()] })
        .await
        .expect("valid")
        .expect("changed");
    assert_eq!((change.removed.len(), change.draining.as_slice()), (0, &[leaving.to_string()][..]));
    let draining = rx.borrow().clone();
    assert_eq!(draining.ring.as_ref().map(|r| r.members().len()), Some(2), "the ring holds the active members");
    assert!(Arc::ptr_eq(&draining.backends[2], &kept), "the draining backend keeps its client");
    assert!(!kept.is_retired());
    assert_eq!(draining.describe().draining, vec![leaving.to_string()]);
    for k in &held {
        assert_eq!(draining.backends[backend_of(&draining, *k, Some(&affinity), 0)].address, leaving);
    }
    let fresh = (5000..8000u64).map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    assert!(
        fresh.map(|k| backend_of(&draining, k, Some(&affinity), 0)).all(|i| draining.backends[i].address != leaving),
        "no new trace goes to a draining backend"
    );
    assert!(
        mgr.apply_members(Members { active: three[..2].to_vec(), draining: vec![three[2].clone()] })
            .await
            .expect("valid")
            .is_none(),
        "the same members again change nothing"
    );

    // The pod stops serving: it leaves, and its traces go by the current ring.
    let change = mgr.apply_members(Members { active: three[..2].to_vec(), draining: vec![] }).await.expect("valid");
    assert_eq!(change.expect("changed").removed, vec![leaving.to_string()]);
    assert!(kept.is_retired());
    let gone = rx.borrow().clone();
    for k in &held {
        assert_eq!(backend_of(&gone, *k, Some(&affinity), 0), backend_of(&gone, *k, None, 0));
    }
}

#[tokio::test]
async fn a_pool_whose_every_member_drains_routes_by_them() {
    let (mgr, rx) = manager("k8s");
    let two: Vec<Member> = (1..=2).map(|i| member(&format!("10.0.0.{i}:4317"))).collect();
    mgr.apply_members(Members { active: vec![], draining: two }).await.expect("valid");
    let pool = rx.borrow().clone();
    assert_eq!(pool.ring.as_ref().map(|r| r.members().len()), Some(2));
    assert!(pool.describe().draining.is_empty());
}
