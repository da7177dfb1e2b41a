//! What reached the backends of one run of the replicas scenario, against what was sent: traces split over several
//! backends, spans lost or delivered twice, and (behind tail sampling) kept traces that are incomplete.

use std::collections::{HashMap, HashSet};

/// What reached the backends, against what was sent.
#[derive(Debug, Default)]
pub struct Outcome {
    pub traces: u64,
    /// Requests that no replica accepted.
    pub failed_requests: u64,
    /// Traces with spans on more than one backend.
    pub split: usize,
    /// Spans of the traces that must be whole that reached no backend.
    pub missing: usize,
    /// Traces that must be whole of which some spans, not all, reached a backend.
    pub incomplete: usize,
    /// Spans that reached a backend more than once.
    pub twice: usize,
    /// Spans of the other traces (sampled out by the Collectors) that reached one.
    pub unexpected: usize,
    /// Spans each backend holds.
    pub per_backend: Vec<usize>,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = self;
        write!(f, "traces={} failed_requests={} split={}", o.traces, o.failed_requests, o.split)?;
        write!(f, " lost_spans={} incomplete={} duplicate_spans={}", o.missing, o.incomplete, o.twice)?;
        write!(f, " sampled_out_spans_kept={}", o.unexpected)
    }
}

/// `received[b]`: the (trace, span) pairs backend `b` holds, of `traces` traces of `spans` spans each;
/// `whole(t)`: whether trace `t` must be whole.
pub fn outcome(received: &[Vec<(u64, u64)>], traces: u64, spans: u64, whole: fn(u64) -> bool) -> Outcome {
    let mut on: HashMap<u64, HashSet<usize>> = HashMap::new();
    let mut seen: HashMap<(u64, u64), usize> = HashMap::new();
    for (b, held) in received.iter().enumerate() {
        for &(t, s) in held {
            on.entry(t).or_default().insert(b);
            *seen.entry((t, s)).or_default() += 1;
        }
    }
    let split = on.values().filter(|b| b.len() > 1).count();
    let lost = |t: &u64| (0..spans).filter(|s| !seen.contains_key(&(*t, *s))).count();
    let must: Vec<u64> = (0..traces).filter(|t| whole(*t)).collect();
    let missing = must.iter().map(lost).sum();
    let incomplete = must.iter().map(lost).filter(|n| *n > 0 && *n < spans as usize).count();
    let twice = seen.values().filter(|n| **n > 1).count();
    let unexpected = seen.keys().filter(|(t, _)| !whole(*t)).count();
    let per_backend = received.iter().map(Vec::len).collect();
    Outcome { traces, failed_requests: 0, split, missing, incomplete, twice, unexpected, per_backend }
}

#[test]
fn a_trace_over_two_backends_is_split_and_its_missing_spans_are_counted() {
    // Trace 0 whole on backend 0; trace 1 split; trace 2 sampled out but one span kept; span (0, 0)
    // twice.
    let received = vec![vec![(0, 0), (0, 1), (0, 0), (1, 0)], vec![(1, 1), (2, 0)]];
    let o = outcome(&received, 3, 2, |t| t != 2);
    assert_eq!((o.split, o.missing, o.incomplete, o.twice, o.unexpected), (1, 0, 0, 1, 1));
    let o = outcome(&received, 3, 3, |t| t != 2);
    assert_eq!((o.split, o.missing, o.incomplete), (1, 2, 2), "each whole trace lacks span 2");
}
