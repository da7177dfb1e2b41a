//! Trace and span ids of the generated traffic: a pure function of (seed, global trace index, span index).
//!
//! Trace `g` of a run gets the same id whatever the number of connections or the batching, so a logs run and a
//! traces run with the same seed and `--traces N` carry exactly the same trace ids (and span ids). The low 64 bits
//! of a trace id are a bijection of `g`, so trace ids never repeat within a run.

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The splitmix64 finalizer: a bijection of `u64` with good avalanche.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Derives ids from a run seed.
#[derive(Debug, Clone, Copy)]
pub struct IdGen {
    hi_key: u64,
    lo_key: u64,
    span_key: u64,
}

impl IdGen {
    pub fn new(seed: u64) -> IdGen {
        IdGen {
            hi_key: mix64(seed ^ 0x6869),
            lo_key: mix64(seed.wrapping_add(GOLDEN)),
            span_key: mix64(seed ^ 0x7370_616e),
        }
    }

    /// The trace id of global trace index `g`.
    pub fn trace_id(&self, g: u64) -> [u8; 16] {
        let hi = mix64(g.wrapping_add(self.hi_key));
        let lo = mix64(g ^ self.lo_key);
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&hi.to_be_bytes());
        out[8..].copy_from_slice(&lo.to_be_bytes());
        out
    }

    /// The id of span `i` of trace `g`: distinct for every `i` of one trace, never zero.
    pub fn span_id(&self, g: u64, i: u32) -> [u8; 8] {
        let v = mix64(g ^ self.span_key).wrapping_add(u64::from(i).wrapping_mul(GOLDEN));
        if v == 0 { 1u64.to_be_bytes() } else { v.to_be_bytes() }
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn trace_ids_are_unique_and_span_ids_distinct_within_a_trace() {
        let ids = IdGen::new(7);
        let traces: HashSet<_> = (0..10_000).map(|g| ids.trace_id(g)).collect();
        assert_eq!(traces.len(), 10_000);
        let spans: HashSet<_> = (0..1000).map(|i| ids.span_id(3, i)).collect();
        assert_eq!(spans.len(), 1000);
        assert_ne!(IdGen::new(8).trace_id(0), ids.trace_id(0));
        assert_eq!(hex(&[0x0a, 0xff]), "0aff");
    }
}
