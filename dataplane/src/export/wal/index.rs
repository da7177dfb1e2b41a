//! In-memory index of the log, shared by the callers (`commit`, `stats`) and the writer thread: the live segments,
//! the records still pending in each, and the bytes the log uses on disk. Nothing here does I/O.

use std::collections::{BTreeMap, BTreeSet};

use super::record::ACK_LEN;

/// One segment (a `.wal` file and its `.ack` file).
#[derive(Debug, Default)]
pub(super) struct SegMeta {
    /// Bytes of the segment file plus its commit file.
    pub bytes: u64,
    /// Seqs written (and acknowledged) but not committed yet.
    pub pending: BTreeSet<u64>,
    /// No more appends go to this segment: once nothing is pending it is deleted.
    pub sealed: bool,
}

/// What committing a seq asks of the writer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Committed {
    /// Not pending: already committed, or never acknowledged.
    NotPending,
    /// Record the commit in the segment's commit file.
    Ack { seg: u64 },
    /// The segment (sealed) has nothing pending any more: delete its files. It has left the index.
    Delete { seg: u64 },
}

/// The live segments, keyed by first seq: segment seq ranges are disjoint and increasing.
#[derive(Debug, Default)]
pub(super) struct Index {
    pub segs: BTreeMap<u64, SegMeta>,
    /// Sum of `SegMeta::bytes`.
    pub bytes: u64,
    /// Sum of the `pending` set sizes.
    pub pending: u64,
}

impl Index {
    /// The first seq of the segment that holds `seq`.
    fn segment_of(&self, seq: u64) -> Option<u64> {
        self.segs.range(..=seq).next_back().map(|(first, _)| *first)
    }

    /// Marks `seq` committed; the commit entry's bytes are accounted for here.
    pub fn commit(&mut self, seq: u64) -> Committed {
        let Some(first) = self.segment_of(seq) else { return Committed::NotPending };
        let Some(seg) = self.segs.get_mut(&first) else { return Committed::NotPending };
        if !seg.pending.remove(&seq) {
            return Committed::NotPending;
        }
        self.pending -= 1;
        if seg.sealed && seg.pending.is_empty() {
            self.remove(first);
            return Committed::Delete { seg: first };
        }
        seg.bytes += ACK_LEN as u64;
        self.bytes += ACK_LEN as u64;
        Committed::Ack { seg: first }
    }

    /// Seals the segment; true when it has nothing pending and left the index (its files are to be deleted).
    pub fn seal(&mut self, first: u64) -> bool {
        let Some(seg) = self.segs.get_mut(&first) else { return false };
        seg.sealed = true;
        if seg.pending.is_empty() {
            self.remove(first);
            return true;
        }
        false
    }

    /// Adds `written` bytes and the newly durable `seqs` to a segment.
    pub fn add(&mut self, first: u64, written: u64, seqs: impl Iterator<Item = u64>) {
        let seg = self.segs.entry(first).or_default();
        seg.bytes += written;
        self.bytes += written;
        for seq in seqs {
            if seg.pending.insert(seq) {
                self.pending += 1;
            }
        }
    }

    fn remove(&mut self, first: u64) {
        if let Some(seg) = self.segs.remove(&first) {
            self.bytes -= seg.bytes;
            self.pending -= seg.pending.len() as u64;
        }
    }

    /// Whether the segment exists and has nothing pending.
    pub fn all_committed(&self, first: u64) -> bool {
        self.segs.get(&first).is_some_and(|s| s.pending.is_empty())
    }

    /// The oldest pending seq. Visits the segments in order: stops at the first with something pending.
    pub fn oldest_pending(&self) -> Option<u64> {
        self.segs.values().find_map(|s| s.pending.first().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_accounting() {
        let mut idx = Index::default();
        idx.add(1, 100, 1..=3);
        idx.add(4, 50, 4..=5);
        assert_eq!((idx.bytes, idx.pending, idx.oldest_pending()), (150, 5, Some(1)));
        assert!(!idx.seal(1));
        assert_eq!(idx.commit(2), Committed::Ack { seg: 1 });
        assert_eq!(idx.commit(2), Committed::NotPending);
        assert_eq!(idx.commit(0), Committed::NotPending);
        assert_eq!(idx.commit(1), Committed::Ack { seg: 1 });
        assert_eq!(idx.commit(4), Committed::Ack { seg: 4 });
        assert_eq!(idx.oldest_pending(), Some(3));
        assert_eq!(idx.commit(3), Committed::Delete { seg: 1 });
        assert_eq!((idx.bytes, idx.pending, idx.segs.len()), (50 + ACK_LEN as u64, 1, 1));
        assert!(!idx.all_committed(4));
        assert_eq!(idx.commit(5), Committed::Ack { seg: 4 });
        assert!(idx.all_committed(4));
        assert!(idx.seal(4));
        assert_eq!((idx.bytes, idx.pending, idx.segs.len()), (0, 0, 0));
    }
}
