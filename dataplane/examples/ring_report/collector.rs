//! A replay of the hash ring of the OpenTelemetry Collector's `loadbalancing` exporter as it is in the
//! pinned release (contrib v0.160, `consistent_hashing.go`), evaluated for every position of its circle.
//!
//! - The circle has 131071 positions. Each endpoint (the resolver's string, e.g. `10.0.0.7:4317`)
//!   proposes 200 points: point `i` hashes the endpoint's bytes followed by `i` as a little-endian
//!   u32 with CRC-32/IEEE, and sits at that hash modulo 131071.
//! - The build is independent of the order endpoints are listed in: all proposals are placed in the
//!   order (position, hash, endpoint). A proposal whose position is taken moves to the next free
//!   one among the 10 positions starting at it, and is dropped when all 10 are taken.
//! - A key (the 16 trace id bytes for `traceID` routing) goes to the owner of the first point at
//!   or after CRC-32/IEEE(key) modulo 131071, wrapping round the circle.

/// Number of positions on the circle.
pub const POSITIONS: u32 = 131_071;
/// Points each endpoint proposes.
const POINTS: u32 = 200;
/// Positions tried for one point: its own and the 9 after it.
const PROBES: u32 = 10;

/// Position of a key on the circle.
pub fn position(key: &[u8]) -> u32 {
    crc32fast::hash(key) % POSITIONS
}

/// Share of uniformly distributed 32-bit hashes that land on `position`: 2^32 is not a multiple
/// of the circle, so the first 2^32 mod 131071 positions get one hash value more than the others.
pub fn position_weight(position: u32) -> f64 {
    let per = (1u64 << 32) / u64::from(POSITIONS);
    let extra = (1u64 << 32) % u64::from(POSITIONS);
    let count = if u64::from(position) < extra { per + 1 } else { per };
    count as f64 / (1u64 << 32) as f64
}

/// The ring of one endpoint set.
pub struct CollectorRing {
    /// The endpoints, in the order they were given.
    endpoints: Vec<String>,
    /// Owner (index into `endpoints`) of every position.
    owner: Vec<u16>,
}

impl CollectorRing {
    /// Builds the ring of `endpoints` (distinct, at most 65535).
    pub fn new(endpoints: &[String]) -> CollectorRing {
        let mut proposals: Vec<(u32, u32, &str, u16)> = Vec::with_capacity(endpoints.len() * POINTS as usize);
        for (index, endpoint) in endpoints.iter().enumerate() {
            let index = u16::try_from(index).expect("at most 65535 endpoints");
            for point in 0..POINTS {
                let mut hasher = crc32fast::Hasher::new();
                hasher.update(endpoint.as_bytes());
                hasher.update(&point.to_le_bytes());
                let hash = hasher.finalize();
                proposals.push((hash % POSITIONS, hash, endpoint.as_str(), index));
            }
        }
        proposals.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));

        // Point owner of each position, if a point sits there.
        let mut placed: Vec<Option<u16>> = vec![None; POSITIONS as usize];
        for &(start, _, _, index) in &proposals {
            let free = (0..PROBES).map(|step| (start + step) % POSITIONS).find(|&p| placed[p as usize].is_none());
            if let Some(p) = free {
                placed[p as usize] = Some(index);
            }
        }

        // Every position belongs to the next point at or after it: sweep backwards from the
        // first point's owner, which also owns the positions past the last point.
        let mut next = placed.iter().flatten().next().copied().expect("a ring has at least one point");
        let mut owner = vec![0u16; POSITIONS as usize];
        for p in (0..POSITIONS as usize).rev() {
            if let Some(o) = placed[p] {
                next = o;
            }
            owner[p] = next;
        }
        CollectorRing { endpoints: endpoints.to_vec(), owner }
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Owner (index into [`CollectorRing::endpoints`]) of a position.
    pub fn owner_at(&self, position: u32) -> usize {
        usize::from(self.owner[position as usize])
    }

    /// Owner of a key, e.g. the 16 bytes of a trace id.
    pub fn owner_of(&self, key: &[u8]) -> usize {
        self.owner_at(position(key))
    }

    /// Fraction of the key space each endpoint owns, exactly (over all 2^32 hash values).
    pub fn shares(&self) -> Vec<f64> {
        let mut shares = vec![0.0; self.endpoints.len()];
        for (p, &o) in self.owner.iter().enumerate() {
            shares[usize::from(o)] += position_weight(p as u32);
        }
        shares
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.1.{i}.9:4317")).collect()
    }

    #[test]
    fn crc_is_ieee_and_weights_cover_every_hash() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        let total: f64 = (0..POSITIONS).map(position_weight).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn order_of_endpoints_does_not_matter() {
        let forward = CollectorRing::new(&names(7));
        let mut reversed = names(7);
        reversed.reverse();
        let backward = CollectorRing::new(&reversed);
        for p in (0..POSITIONS).step_by(97) {
            assert_eq!(forward.endpoints()[forward.owner_at(p)], backward.endpoints()[backward.owner_at(p)]);
        }
        let sum: f64 = forward.shares().iter().sum();
        assert!((sum - 1.0).abs() < 1e-9);
    }
}
