use super::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Slot bits of the rings of the structural tests (the quality bars use the real `SLOT_BITS`).
const SMALL: u32 = 16;

fn addr(i: usize) -> String {
    format!("10.{}.{}.{}:4317", 1 + i % 3, (i * 37) % 256, (i * 101 + 7) % 256)
}

fn pool(n: usize) -> Vec<Member> {
    (0..n).map(|i| Member { address: addr(i), weight: 1 }).collect()
}

fn small(members: Vec<Member>) -> Ring {
    Ring::with_slot_bits(validate(members).expect("valid pool"), SMALL).expect("ring")
}

fn max_over_mean(ring: &Ring) -> f64 {
    let max = (0..ring.len()).map(|i| ring.share(i)).fold(0.0, f64::max);
    max * ring.len() as f64
}

/// Slots whose owner changed from `old` to `new` although the old owner is not `allowed_old` (an
/// address that left) and the new one is not `allowed_new` (an address that joined).
fn stray_moves(old: &Ring, new: &Ring, allowed_old: Option<&str>, allowed_new: Option<&str>) -> usize {
    assert_eq!(old.table.len(), new.table.len());
    let map = match_members(&old.members, &new.members, false);
    let allowed_old = allowed_old.and_then(|a| old.index_of(a)).map_or(u16::MAX, |i| i as u16);
    let allowed_new = allowed_new.and_then(|a| new.index_of(a)).map_or(u16::MAX, |i| i as u16);
    let (old_table, new_table) = (old.table.owners(), new.table.owners());
    let (mut stray, mut s) = (0, 0);
    while s < old_table.len() {
        let (o, n) = (old_table[s], new_table[s]);
        if map[o as usize] != Some(n) && o != allowed_old && n != allowed_new {
            stray += 1;
        }
        s += 1;
    }
    stray
}

#[test]
fn rejects_invalid_sets() {
    assert_eq!(Ring::new(Vec::new()).unwrap_err(), RingError::Empty);
    let mut zero = pool(3);
    zero[1].weight = 0;
    assert_eq!(Ring::new(zero).unwrap_err(), RingError::ZeroWeight(addr(1)));
    let mut dup = pool(3);
    dup.push(Member { address: addr(2), weight: 5 });
    assert_eq!(Ring::new(dup).unwrap_err(), RingError::Duplicate(addr(2)));
    let many = (0..=MAX_MEMBERS).map(|i| Member { address: format!("h{i}"), weight: 1 });
    assert_eq!(Ring::new(many).unwrap_err(), RingError::TooMany(MAX_MEMBERS + 1));
}

#[test]
fn order_independent() {
    let mut rng = StdRng::seed_from_u64(7);
    for weighted in [false, true] {
        let mut members = pool(17);
        if weighted {
            members.iter_mut().enumerate().for_each(|(i, m)| m.weight = 1 + (i % 4) as u32);
        }
        let reference = small(members.clone());
        assert!(reference.members().windows(2).all(|w| w[0].address < w[1].address));
        for _ in 0..3 {
            members.shuffle(&mut rng);
            let ring = small(members.clone());
            assert_eq!(ring.members(), reference.members());
            assert!(ring.table.owners() == reference.table.owners(), "the updated table equals the full build");
            assert_eq!(ring.fingerprint(), reference.fingerprint());
        }
        // The fingerprint tracks the set and the weights.
        members[0].weight += 1;
        assert_ne!(small(members.clone()).fingerprint(), reference.fingerprint());
        members.pop();
        assert_ne!(small(members).fingerprint(), reference.fingerprint());
    }
}

/// The quality bars for a pool of `n` equal-weight members, at the real slot count.
fn check_bars(n: usize) {
    let ring = Ring::new(pool(n)).expect("ring");
    let balance = max_over_mean(&ring);
    assert!(balance <= 1.02, "n={n}: max/mean {balance}");

    let joined = addr(1000);
    let mut grown = pool(n);
    grown.push(Member { address: joined.clone(), weight: 1 });
    let grown = ring.update(grown).expect("ring");
    let moved = Ring::moved_fraction(&ring, &grown);
    let ideal = 1.0 / (n + 1) as f64;
    assert!((0.95 * ideal..=1.05 * ideal).contains(&moved), "n={n}: add moved {moved}");
    assert_eq!(stray_moves(&ring, &grown, None, Some(&joined)), 0, "n={n}: add");
    let joined_index = grown.index_of(&joined).expect("joined");
    assert!((grown.share(joined_index) - moved).abs() < 1e-12);

    let left = addr(n / 2);
    let shrunk = ring.update(pool(n).into_iter().filter(|m| m.address != left)).expect("ring");
    let moved = Ring::moved_fraction(&ring, &shrunk);
    let ideal = 1.0 / n as f64;
    assert!((0.95 * ideal..=1.05 * ideal).contains(&moved), "n={n}: remove moved {moved}");
    assert_eq!(stray_moves(&ring, &shrunk, Some(&left), None), 0, "n={n}: remove");
}

// One test per size, so that the harness spreads them over the cores.
macro_rules! bars {
    ($($name:ident: $n:expr),*) => { $(#[test] fn $name() { check_bars($n) })* };
}
bars!(bars_3: 3, bars_5: 5, bars_8: 8, bars_17: 17, bars_33: 33, bars_64: 64);

#[test]
fn lookup_matches_slot_shares() {
    let ring = Ring::new(pool(8)).expect("ring");
    let mut rng = StdRng::seed_from_u64(11);
    let keys = 1_000_000;
    let mut hits = [0u32; 8];
    (0..keys).for_each(|_| hits[ring.lookup(rng.random())] += 1);
    for (i, &h) in hits.iter().enumerate() {
        let (p, seen) = (ring.share(i), f64::from(h) / f64::from(keys));
        let sigma = (p * (1.0 - p) / f64::from(keys)).sqrt();
        assert!((seen - p).abs() < 5.0 * sigma, "member {i}: {seen} vs {p}");
    }
    assert_eq!(ring.lookup(0), ring.table.get(0));
    assert_eq!(ring.lookup(u64::MAX), ring.table.get(SLOTS - 1));
}

#[test]
fn weights_are_proportional() {
    let mut members = pool(8);
    members[3].weight = 2;
    let ring = Ring::new(members).expect("ring");
    for (i, m) in ring.members().iter().enumerate() {
        let ideal = f64::from(m.weight) / 9.0;
        let ratio = ring.share(i) / ideal;
        assert!((0.98..=1.02).contains(&ratio), "{}: share {} ideal {ideal}", m.address, ring.share(i));
    }
}

#[test]
fn weight_change_moves_keys_only_to_or_from_that_member() {
    let mut members = pool(9);
    members.iter_mut().enumerate().for_each(|(i, m)| m.weight = 1 + (i % 3) as u32);
    let before = small(members.clone());
    let changed = addr(4);
    for (weight, to, from) in [(6, Some(&changed), None), (1, None, Some(&changed))] {
        members[4].weight = weight;
        let after = before.update(members.clone()).expect("ring");
        assert!(
            after.table.owners() == small(members.clone()).table.owners(),
            "the updated table equals the full build"
        );
        assert!(Ring::moved_fraction(&before, &after) > 0.01);
        assert_eq!(stray_moves(&before, &after, from.map(|s| s.as_str()), to.map(|s| s.as_str())), 0);
    }
}

#[test]
fn failover_order_matches_removal() {
    let mut rng = StdRng::seed_from_u64(3);
    for weighted in [false, true] {
        let mut members = pool(9);
        if weighted {
            members.iter_mut().enumerate().for_each(|(i, m)| m.weight = 1 + (i % 3) as u32);
        }
        let ring = small(members.clone());
        // The ring without each member in turn.
        let without: Vec<Ring> = (0..ring.len())
            .map(|i| {
                let gone = &ring.members()[i].address;
                small(members.iter().filter(|m| &m.address != gone).cloned().collect())
            })
            .collect();
        for _ in 0..2000 {
            let key: u64 = rng.random();
            let order = ring.candidates(key);
            assert_eq!(order[0], ring.lookup(key));
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..ring.len()).collect::<Vec<_>>());
            let rest = &without[order[0]];
            let addresses =
                |r: &Ring, o: &[usize]| -> Vec<String> { o.iter().map(|&i| r.members()[i].address.clone()).collect() };
            assert_eq!(rest.members()[rest.lookup(key)].address, ring.members()[order[1]].address);
            assert_eq!(addresses(rest, &rest.candidates(key)), addresses(&ring, &order[1..]));
        }
    }
}

#[test]
fn update_matches_full_build() {
    let base = pool(12);
    let weighted: Vec<Member> = base.iter().map(|m| Member { weight: 1 + m.weight * 2, ..m.clone() }).collect();
    let mut mixed = base.clone();
    mixed[5].weight = 3;
    let mut churn = base[2..].to_vec();
    churn.extend([Member { address: addr(500), weight: 1 }, Member { address: addr(501), weight: 1 }]);
    let replaced: Vec<Member> = (100..112).map(|i| Member { address: addr(i), weight: 1 }).collect();
    let cases = [(&base, &pool(13)), (&base, &base[1..].to_vec()), (&base, &churn), (&base, &mixed)];
    let more = [(&mixed, &base), (&base, &weighted), (&weighted, &mixed), (&base, &replaced)];
    for (from, to) in cases.into_iter().chain(more) {
        let updated = small(from.clone()).update(to.clone()).expect("ring");
        let full = small(to.clone());
        assert!(updated.table.owners() == full.table.owners(), "the updated table equals the full build");
        assert_eq!(updated.counts, full.counts);
        assert_eq!(updated.fingerprint(), full.fingerprint());
    }
}

#[test]
fn equal_weight_fast_path_matches_weighted_order() {
    let members = pool(17);
    let fast = Scorer::new(&members);
    assert!(fast.weights.is_empty());
    // Every member in a group of its own: the owner is decided by the weighted race alone.
    let groups = (0..17).map(|i| vec![(fast.seeds[i], i)]).collect();
    let slow = Scorer { weights: vec![(3.0, TWO_POW_M48 / 3.0); 17], groups, ..fast.clone() };
    let mut scratch = Vec::new();
    for slot in 0..1u64 << SMALL {
        assert_eq!(fast.owner(slot, &mut scratch), slow.owner(slot, &mut scratch), "slot {slot}");
        if slot % 64 == 0 {
            let order = |s: &Scorer| {
                let mut d: Vec<Draw> = (0..17).map(|i| s.draw(i, slot)).collect();
                d.sort_unstable_by(|a, b| if a.beats(b) { Ordering::Less } else { Ordering::Greater });
                d.iter().map(Draw::index).collect::<Vec<_>>()
            };
            assert_eq!(order(&fast), order(&slow));
        }
    }
}

#[test]
fn neg_ln_is_accurate_and_monotone() {
    let mut rng = StdRng::seed_from_u64(5);
    let top = (1u64 << 48) - 1;
    let mut hashes: Vec<u64> = vec![0, 1, 2, top - 1, top];
    hashes.extend((0..48).flat_map(|b| [(1u64 << b) - 1, 1 << b]));
    hashes.extend((0..48).map(|b| ((1u64 << b) as f64 * std::f64::consts::SQRT_2) as u64));
    hashes.extend((0..100_000).map(|_| rng.random::<u64>() >> 16));
    for h in hashes {
        let (u, next) = (unit(h << 16), unit((h + 1).min(top) << 16));
        let (got, want) = (neg_ln(u), -u.ln());
        assert!((got - want).abs() <= 2.0 * f64::EPSILON * want.max(1e-300) + 1e-30, "u={u}: {got} vs {want}");
        assert!(neg_ln(next) <= got, "not monotone at hash {h}");
    }
    assert_eq!(neg_ln(1.0), 0.0);
}

#[test]
fn moved_fraction_compares_owners_by_address() {
    let ring = small(pool(10));
    assert_eq!(Ring::moved_fraction(&ring, &ring), 0.0);
    let mut heavier = pool(10);
    heavier[0].weight = 2;
    let other = small(heavier);
    let differing = (ring.table.owners().iter().zip(other.table.owners().iter())).filter(|(a, b)| a != b).count();
    assert!(differing > 0);
    assert_eq!(Ring::moved_fraction(&ring, &other), differing as f64 / (1 << SMALL) as f64);
    let disjoint = small((50..60).map(|i| Member { address: addr(i), weight: 1 }).collect());
    assert_eq!(Ring::moved_fraction(&ring, &disjoint), 1.0);
}

#[test]
fn pruned_weighted_race_matches_naive_race() {
    // Small pools often have every x > 1/2 (no finite upper bound) and near ties; big weights skew.
    for (n, max_weight) in [(1, 1), (2, 3), (3, 7), (9, 5), (20, 3), (24, 100)] {
        let members: Vec<Member> =
            (0..n).map(|i| Member { address: addr(i), weight: 1 + (i * 7 % max_weight) as u32 }).collect();
        let scorer = Scorer::new(&validate(members).expect("valid"));
        let mut scratch = Vec::new();
        for slot in 0..1u64 << 14 {
            let naive = (0..n).map(|i| scorer.draw(i, slot)).reduce(|b, d| if d.beats(&b) { d } else { b });
            assert_eq!(scorer.owner(slot, &mut scratch), naive.expect("members").index(), "n={n} slot={slot}");
        }
    }
}

#[test]
fn tables_are_one_byte_per_slot_up_to_256_members_and_two_beyond() {
    let mut rng = StdRng::seed_from_u64(256);
    for n in [255, 256, 257, 300] {
        let ring = small(pool(n));
        assert_eq!(matches!(ring.table, Table::Narrow(_)), n <= 256, "{n} members");
        assert_eq!(ring.counts.iter().map(|&c| c as usize).sum::<usize>(), 1 << SMALL);
        assert!(ring.counts.iter().all(|&c| c > 0), "{n} members: every member, the last included, owns slots");
        for _ in 0..2000 {
            let key: u64 = rng.random();
            assert_eq!(ring.lookup(key), ring.candidates(key)[0], "{n} members: the table holds the draw's winner");
        }
    }
    // Growing past 256 members by an update widens the table and gives the full build's owners.
    let (narrow, wide) = (small(pool(256)), small(pool(257)));
    let grown = narrow.update(pool(257)).expect("ring");
    assert!(matches!(grown.table, Table::Wide(_)));
    assert!(grown.table.owners() == wide.table.owners(), "the updated table equals the full build");
}
