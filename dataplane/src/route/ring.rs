//! The hash ring: maps a 64-bit key hash (xxh3 of a trace id, computed elsewhere) to one backend of
//! the pool, so that every span of a trace reaches the same Collector.
//!
//! **Design: rendezvous (highest-random-weight) hashing compiled into a slot table.** The key space
//! is cut into 2^22 equal slots, the same for every pool size so slot boundaries never move;
//! `lookup` is `table[key >> 42]` (u8 entries, 4 MiB, up to 256 members; u16, 8 MiB, beyond).
//! Slot `s` belongs to the member with the best draw for `s`; a member's draw is splitmix64 output
//! `s` of the stream seeded with xxh3(address).
//! Measured by `cargo run --release -p dataplane --example ring_report` (N = 3..=64, equal weights):
//! - *Deterministic*: draws depend on (address, slot) only, members are sorted by address, ties
//!   go to the lower address; no randomness, no history ([`Ring::update`] equals [`Ring::new`]).
//! - *Strictly monotone*: a joining member only takes the slots it wins; a leaving member's slots
//!   go to their runners-up; no other slot changes. 0 keys moved between other backends, moves
//!   0.997–1.007 × the ideal 1/(N+1) or 1/N. [`Ring::candidates`] lists the members by draw, so
//!   failover sends a key exactly where removing its owner would.
//! - *Balanced*: shares are Binomial(2^22, 1/N) noise, max/mean ≤ 1.0105 (≈ 1 + 2.4 sqrt(N/2^22)).
//!   2^21 slots would give ≈ 1.013 at N=64 with ~1% of pools above 1.02, hence 2^22. The
//!   Collector's Karger ring (131071 positions, 200 points/endpoint) reaches 1.45, moves up to
//!   1.27 × ideal and moves some keys between unaffected backends (linear probing on collisions).
//! - *Weighted*: exponential race, score = -ln(u)/w, lowest wins, so P(win) = w/Σw (weights 1:2
//!   measured within 1.3%) and the race stays HRW, hence monotone. Equal weights rank by raw hash,
//!   the same order since `neg_ln` is provably monotone over draws (and built from IEEE +-*/ only,
//!   so bit-identical on every platform, unlike libm): only the best draw of each weight group
//!   enters the race, and logarithms are computed only where the bounds x/w ≤ score ≤ (x+x²)/w
//!   (x = 1-u) leave more than one possible winner.
//! - *Cost*: a full build is 2^22 × N draws at ~2 ns CPU (N=64: ~0.5 s CPU, ~0.65 s with weights
//!   1 and 2), spread over all cores. [`Ring::update`] only races the old owner against joiners and
//!   re-races the leavers' slots: ~40–60 ms CPU for one change at N=64. Build on a blocking thread.
//! - *Rejected*: Maglev (a pool change also reshuffles slots between unaffected backends), bounded
//!   loads (owner depends on load: not monotone, not replica-deterministic), jump hash (removes only
//!   the last bucket, no weights), Karger rings (balance ~1/sqrt(points), see above).

use std::cmp::Ordering;

use xxhash_rust::xxh3::xxh3_64;

/// log2 of the number of slots. Fixed for every pool size so that slot boundaries never move.
pub const SLOT_BITS: u32 = 22;
/// Number of slots of the lookup table.
pub const SLOTS: usize = 1 << SLOT_BITS;
/// Largest pool a ring can hold (table entries are at most `u16`).
pub const MAX_MEMBERS: usize = u16::MAX as usize;

/// The low bits of a packed draw hold `IDX_MASK - index`, the tie-break (lower address wins).
const IDX_MASK: u64 = 0xFFFF;

/// One backend of the pool.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    /// Its address (`host:port`); it identifies the backend and seeds its hashes.
    pub address: String,
    /// Relative weight, at least 1: a member of weight 2 owns twice the keys of one of weight 1.
    pub weight: u32,
}

/// Why a member set cannot form a ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("the pool has no member")]
    Empty,
    #[error("member {0} has weight 0")]
    ZeroWeight(String),
    #[error("member {0} is listed more than once")]
    Duplicate(String),
    #[error("{0} members exceed the limit of {max}", max = MAX_MEMBERS)]
    TooMany(usize),
}

/// An immutable consistent-hash ring over a pool of members. Cheap to query, 4 MiB (8 MiB over 256
/// members), rebuilt on every pool change with [`Ring::new`] or, faster for small changes,
/// [`Ring::update`].
#[derive(Clone)]
pub struct Ring {
    /// `64 - log2(slots)`: slot of a key = `key >> shift`. Always `64 - SLOT_BITS` except in tests.
    shift: u32,
    members: Vec<Member>,
    scorer: Scorer,
    table: Table,
    counts: Vec<u32>,
    fingerprint: u64,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("members", &self.members)
            .field("fingerprint", &format_args!("{:016x}", self.fingerprint))
            .finish_non_exhaustive()
    }
}

impl Ring {
    /// Builds the ring of `members`; the result depends only on the set, not on its order.
    pub fn new(members: impl IntoIterator<Item = Member>) -> Result<Ring, RingError> {
        Ring::with_slot_bits(validate(members)?, SLOT_BITS)
    }

    /// Full build over `2^bits` slots (`bits` other than `SLOT_BITS` only in tests).
    fn with_slot_bits(members: Vec<Member>, bits: u32) -> Result<Ring, RingError> {
        let scorer = Scorer::new(&members);
        let table = Table::build(members.len(), 1 << bits, |slot, scratch| scorer.owner(slot, scratch));
        Ok(Ring::assemble(64 - bits, members, scorer, table))
    }

    /// Builds the ring of `members` reusing `self`: the result is identical to `Ring::new(members)`
    /// but costs O(slots × (1 + added)) plus a full pass over the slots of removed members, instead of
    /// O(slots × members). A member whose weight changed counts as removed and added.
    pub fn update(&self, members: impl IntoIterator<Item = Member>) -> Result<Ring, RingError> {
        let members = validate(members)?;
        let scorer = Scorer::new(&members);
        // Old index -> new index of the members kept with the same weight.
        let kept = match_members(&self.members, &members, true);
        let mut is_kept = vec![false; members.len()];
        kept.iter().flatten().for_each(|&j| is_kept[j as usize] = true);
        let added: Vec<usize> = (0..members.len()).filter(|&j| !is_kept[j]).collect();
        let lost: u64 = (kept.iter().zip(&self.counts)).filter(|(k, _)| k.is_none()).map(|(_, &c)| u64::from(c)).sum();
        let (n, slots) = (members.len() as u64, self.table.len() as u64);
        if slots * (1 + added.len() as u64) + lost * n >= slots * n {
            return Ring::with_slot_bits(members, 64 - self.shift);
        }
        let table = Table::build(members.len(), self.table.len(), |slot, scratch| {
            match kept[self.table.get(slot as usize)] {
                // HRW: the old owner beats every kept member, so only the added ones can beat it.
                Some(owner) => {
                    let contenders = std::iter::once(owner as usize).chain(added.iter().copied());
                    scorer.race(contenders.map(|i| scorer.packed(i, slot)), scratch)
                }
                None => scorer.owner(slot, scratch),
            }
        });
        Ok(Ring::assemble(self.shift, members, scorer, table))
    }

    fn assemble(shift: u32, members: Vec<Member>, scorer: Scorer, table: Table) -> Ring {
        let mut counts = vec![0u32; members.len()];
        (0..table.len()).for_each(|s| counts[table.get(s)] += 1);
        let mut fp = Vec::with_capacity(members.len() * 32);
        fp.extend_from_slice(b"otlp-lb/ring/hrw-v1");
        fp.push((64 - shift) as u8);
        for m in &members {
            fp.extend_from_slice(&(m.address.len() as u64).to_le_bytes());
            fp.extend_from_slice(m.address.as_bytes());
            fp.extend_from_slice(&m.weight.to_le_bytes());
        }
        let fingerprint = xxh3_64(&fp);
        Ring { shift, members, scorer, table, counts, fingerprint }
    }

    /// The members, sorted by address; every index handed out by the ring refers to this slice.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Number of members (never 0).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a ring has at least one member.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Index of the member with this address.
    pub fn index_of(&self, address: &str) -> Option<usize> {
        self.members.binary_search_by(|m| m.address.as_str().cmp(address)).ok()
    }

    /// The owner of `key_hash` (an index into [`Ring::members`]).
    #[inline]
    pub fn lookup(&self, key_hash: u64) -> usize {
        self.table.get((key_hash >> self.shift) as usize)
    }

    /// Every member in the preference order of `key_hash`: the owner first, then the member that
    /// would own the key if the owner were removed, and so on. O(n log n); meant for failover.
    pub fn candidates(&self, key_hash: u64) -> Vec<usize> {
        let slot = key_hash >> self.shift;
        let mut draws: Vec<Draw> = (0..self.len()).map(|i| self.scorer.draw(i, slot)).collect();
        draws.sort_unstable_by(|a, b| if a.beats(b) { Ordering::Less } else { Ordering::Greater });
        draws.iter().map(|d| d.index() as usize).collect()
    }

    /// Fraction of the key space owned by member `index` (0 for an index out of range).
    pub fn share(&self, index: usize) -> f64 {
        self.counts.get(index).map_or(0.0, |&c| f64::from(c) / self.table.len() as f64)
    }

    /// Hash of the member set and weights (and of the algorithm): equal on every replica for the
    /// same pool, different after any change. A "ring version" for logs and `/debug/pool`.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Share of the key space whose owner (by address) differs between `old` and `new`.
    pub fn moved_fraction(old: &Ring, new: &Ring) -> f64 {
        let map = match_members(&old.members, &new.members, false);
        // Slot counts differ only between test rings: compare at the finer resolution.
        let bits = 64 - old.shift.min(new.shift);
        let (old_sh, new_sh) = (old.shift - old.shift.min(new.shift), new.shift - old.shift.min(new.shift));
        let moved = (0..1usize << bits)
            .filter(|&s| map[old.table.get(s >> old_sh)].map(usize::from) != Some(new.table.get(s >> new_sh)))
            .count();
        moved as f64 / (1u64 << bits) as f64
    }
}

/// Checks the member set and sorts it by address.
fn validate(members: impl IntoIterator<Item = Member>) -> Result<Vec<Member>, RingError> {
    let mut members: Vec<Member> = members.into_iter().collect();
    if members.is_empty() {
        return Err(RingError::Empty);
    }
    if members.len() > MAX_MEMBERS {
        return Err(RingError::TooMany(members.len()));
    }
    members.sort_unstable_by(|a, b| a.address.cmp(&b.address).then(a.weight.cmp(&b.weight)));
    if let Some(m) = members.iter().find(|m| m.weight == 0) {
        return Err(RingError::ZeroWeight(m.address.clone()));
    }
    if let Some(w) = members.windows(2).find(|w| w[0].address == w[1].address) {
        return Err(RingError::Duplicate(w[0].address.clone()));
    }
    Ok(members)
}

/// For each member of `old` (sorted), its index in `new` (sorted), matching the address and, if
/// `same_weight`, the weight.
fn match_members(old: &[Member], new: &[Member], same_weight: bool) -> Vec<Option<u16>> {
    old.iter()
        .map(|m| {
            let j = new.binary_search_by(|n| n.address.cmp(&m.address)).ok()?;
            (!same_weight || new[j].weight == m.weight).then_some(j as u16)
        })
        .collect()
}

/// A member's draw for a slot; the best draw owns the slot.
#[derive(Clone, Copy, Debug)]
struct Draw {
    /// Weighted score, lower is better (0 for every draw of an equal-weight ring).
    score: f64,
    /// 48 hash bits, then `IDX_MASK - index`: higher is better; unique per member.
    packed: u64,
}

impl Draw {
    #[inline]
    fn beats(&self, other: &Draw) -> bool {
        self.score < other.score || (self.score == other.score && self.packed > other.packed)
    }

    #[inline]
    fn index(&self) -> u16 {
        (IDX_MASK - (self.packed & IDX_MASK)) as u16
    }
}

/// Computes the draws of the members of a ring.
#[derive(Clone, Debug)]
struct Scorer {
    /// xxh3 of each member's address.
    seeds: Vec<u64>,
    /// `(weight, 2^-48 / weight)` per member; empty when all weights are equal (then only the hash
    /// counts).
    weights: Vec<(f64, f64)>,
    /// `(seed, index)` of the members grouped by weight: one group when all weights are equal.
    groups: Vec<Vec<(u64, usize)>>,
}

impl Scorer {
    fn new(members: &[Member]) -> Scorer {
        let seeds: Vec<u64> = members.iter().map(|m| xxh3_64(m.address.as_bytes())).collect();
        let mut by_weight: Vec<usize> = (0..members.len()).collect();
        by_weight.sort_by_key(|&i| members[i].weight);
        let groups: Vec<Vec<(u64, usize)>> = by_weight
            .chunk_by(|&a, &b| members[a].weight == members[b].weight)
            .map(|group| group.iter().map(|&i| (seeds[i], i)).collect())
            .collect();
        let weights = if groups.len() == 1 {
            Vec::new()
        } else {
            members.iter().map(|m| (f64::from(m.weight), TWO_POW_M48 / f64::from(m.weight))).collect()
        };
        Scorer { seeds, weights, groups }
    }

    #[inline(always)]
    fn packed(&self, index: usize, slot: u64) -> u64 {
        pack(mix(self.seeds[index].wrapping_add(stream(slot))), index)
    }

    #[inline]
    fn score(&self, packed: u64) -> f64 {
        let index = Draw { score: 0.0, packed }.index();
        self.weights.get(usize::from(index)).map_or(0.0, |&(w, _)| neg_ln(unit(packed)) / w)
    }

    #[inline]
    fn draw(&self, index: usize, slot: u64) -> Draw {
        let packed = self.packed(index, slot);
        Draw { score: self.score(packed), packed }
    }

    /// The owner of `slot` among all members; `scratch` is working memory.
    #[inline]
    fn owner(&self, slot: u64, scratch: &mut Vec<(f64, u64)>) -> u16 {
        let base = stream(slot);
        // Among equal weights the highest hash wins, exactly as the weighted order would decide;
        // then the winners of the weight groups race. (Plain loop: also hot in unoptimized tests.)
        let winners = self.groups.iter().map(|group| {
            let (mut best, mut k) = (0, 0);
            while k < group.len() {
                let (seed, index) = group[k];
                let draw = pack(mix(seed.wrapping_add(base)), index);
                if draw > best {
                    best = draw;
                }
                k += 1;
            }
            best
        });
        self.race(winners, scratch)
    }

    /// The owner among contenders given by their packed draws for one slot (at least one).
    fn race(&self, draws: impl Iterator<Item = u64>, scratch: &mut Vec<(f64, u64)>) -> u16 {
        if self.weights.is_empty() {
            return Draw { score: 0.0, packed: draws.max().unwrap_or(IDX_MASK) }.index();
        }
        // Exponential race: score = -ln(u) / w, lowest wins. With x = 1 - u (exact: the complement
        // of the hash bits), x / w <= score <= (x + x^2) / w when x <= 1/2. A branch-free first
        // pass computes the bounds; logarithms are computed only if more than one member has a
        // lower bound under the least upper bound. The margin dwarfs rounding errors.
        const MARGIN: f64 = 1.0 + 1e-9;
        const HALF_X48: f64 = (1u64 << 47) as f64;
        scratch.clear();
        let mut cap = f64::INFINITY;
        for packed in draws {
            let x48 = ((!packed >> 16) as i64 as f64) + 0.5; // x * 2^48
            let index = usize::from(Draw { score: 0.0, packed }.index());
            let lower = x48 * self.weights[index].1;
            let upper = if x48 <= HALF_X48 { lower + lower * (x48 * TWO_POW_M48) } else { f64::INFINITY };
            cap = if upper < cap { upper } else { cap }; // minsd: a short dependency chain
            scratch.push((lower, packed));
        }
        let cap = cap * MARGIN;
        scratch.retain(|&(lower, _)| lower <= cap);
        if let [(_, packed)] = scratch[..] {
            return Draw { score: 0.0, packed }.index();
        }
        let draws = scratch.iter().map(|&(_, packed)| Draw { score: self.score(packed), packed });
        draws.reduce(|best, d| if d.beats(&best) { d } else { best }).map_or(0, |d| d.index())
    }
}

/// The slot table: the index of each slot's owner, one byte per slot while the pool has at most 256 members
/// (the usual case: half the memory, and half the cache footprint for lookups), two bytes beyond.
#[derive(Clone)]
enum Table {
    Narrow(Box<[u8]>),
    Wide(Box<[u16]>),
}

impl Table {
    /// A table of `len` slots for `members` members, slot `s` owned by `owner(s, scratch)`.
    fn build(members: usize, len: usize, owner: impl Fn(u64, &mut Vec<(f64, u64)>) -> u16 + Sync) -> Table {
        if members <= 1 << u8::BITS {
            let mut table = vec![0u8; len].into_boxed_slice();
            // An owner's index is below `members`, so it fits in a byte.
            fill(&mut table, |slot, scratch| owner(slot, scratch) as u8);
            Table::Narrow(table)
        } else {
            let mut table = vec![0u16; len].into_boxed_slice();
            fill(&mut table, owner);
            Table::Wide(table)
        }
    }

    /// Index of the owner of `slot`.
    #[inline]
    fn get(&self, slot: usize) -> usize {
        match self {
            Table::Narrow(t) => usize::from(t[slot]),
            Table::Wide(t) => usize::from(t[slot]),
        }
    }

    fn len(&self) -> usize {
        match self {
            Table::Narrow(t) => t.len(),
            Table::Wide(t) => t.len(),
        }
    }

    /// Every slot's owner, whatever the entry width.
    #[cfg(test)]
    fn owners(&self) -> Vec<u16> {
        match self {
            Table::Narrow(t) => t.iter().map(|&i| u16::from(i)).collect(),
            Table::Wide(t) => t.to_vec(),
        }
    }
}

/// Sets every entry of `table` to `owner(slot, scratch)`, spreading chunks of slots over the cores.
fn fill<T: Send>(table: &mut [T], owner: impl Fn(u64, &mut Vec<(f64, u64)>) -> T + Sync) {
    const CHUNK: usize = 1 << 16;
    let parts = std::sync::Mutex::new(table.chunks_mut(CHUNK).enumerate());
    let work = || {
        let mut scratch = Vec::new();
        loop {
            let next = parts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).next();
            let Some((c, part)) = next else { return };
            for (slot, entry) in (c * CHUNK..).zip(part.iter_mut()) {
                *entry = owner(slot as u64, &mut scratch);
            }
        }
    };
    let helpers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8) - 1;
    std::thread::scope(|scope| {
        for _ in 0..helpers {
            // A helper that cannot start leaves its share to the others.
            let _ = std::thread::Builder::new().spawn_scoped(scope, work);
        }
        work();
    });
}

// The hash of (member, slot) is splitmix64's output number `slot` of the stream seeded with the
// member's seed: mix(seed + (slot + 1) * golden gamma).
#[inline(always)]
fn stream(slot: u64) -> u64 {
    slot.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// splitmix64's finalizer (Stafford's mix13), a bijection with full avalanche.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A draw: the top 48 bits of the hash, then the tie-break `IDX_MASK - index`.
#[inline(always)]
fn pack(hash: u64, index: usize) -> u64 {
    (hash | IDX_MASK) ^ index as u64
}

const TWO_POW_M48: f64 = 1.0 / (1u64 << 48) as f64;

/// The 48 hash bits of a packed draw as a uniform number in (0, 1), exactly: (h + 0.5) / 2^48.
#[inline]
fn unit(packed: u64) -> f64 {
    ((packed >> 16) as i64 as f64 + 0.5) * TWO_POW_M48
}

/// -ln(x) for x in (0, 1], from IEEE +, -, *, / only, so every platform computes the same bits
/// (libm's `ln` may differ between builds of the replicas). Before its final rounding the result is
/// within ~3e-16 of -ln(x), far below the >= 2^-48 gap between the logs of two distinct draws, so
/// it is monotone over draws: an equal-weight ring ranks members exactly by hash either way.
fn neg_ln(x: f64) -> f64 {
    // ln 2 = LN2_HI + LN2_LO (fdlibm's split); LN2_HI ends in 21 zero bits, so e * LN2_HI is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    // 1 / (2k + 1): ln(m) = 2 atanh(s) = 2 s sum z^k / (2k + 1), s = (m-1)/(m+1), z = s^2 < 0.0295.
    const C: [f64; 13] = [
        1.0,
        1.0 / 3.0,
        1.0 / 5.0,
        1.0 / 7.0,
        1.0 / 9.0,
        1.0 / 11.0,
        1.0 / 13.0,
        1.0 / 15.0,
        1.0 / 17.0,
        1.0 / 19.0,
        1.0 / 21.0,
        1.0 / 23.0,
        1.0 / 25.0,
    ];
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let mut m = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52)); // x = m 2^e, m in [1, 2)
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    let poly = C.iter().rev().fold(0.0, |acc, &c| acc * z + c);
    let e = f64::from(e);
    -(e * LN2_HI + (e * LN2_LO + 2.0 * s * poly))
}

#[cfg(test)]
mod tests;
