//! Record and commit-entry framing: encoding, validation, and the recovery scan that resynchronises after a
//! corrupt record.
//!
//! A segment file is a plain sequence of records, no file header (the file name carries the first seq):
//!
//! ```text
//! offset  size  field
//! 0       3     magic "OLW"
//! 3       1     format version (1)
//! 4       4     payload length, u32 little-endian
//! 8       8     seq, u64 little-endian
//! 16      1     signal
//! 17      3     reserved (written as zero, covered by the CRC)
//! 20      len   payload
//! 20+len  4     CRC-32 (IEEE, crc32fast) of bytes [0, 20+len), little-endian
//! ```
//!
//! A commit file (`.ack`) is a sequence of fixed 12-byte entries: seq (u64 LE) then the CRC-32 of
//! `"ACK" ++ seq` (u32 LE). Fixed-size entries keep the file aligned: a bad entry is skipped without losing the
//! ones after it, and a torn final entry is cut off.

use std::ops::Range;

/// Magic and version: the first four bytes of every record.
pub(super) const MAGIC: [u8; 4] = *b"OLW\x01";
/// Bytes before the payload.
pub(super) const HEADER: usize = 20;
/// Bytes after the payload (the CRC).
pub(super) const TRAILER: usize = 4;
/// Framing overhead of one record.
pub(super) const OVERHEAD: usize = HEADER + TRAILER;
/// Size of one commit entry.
pub(super) const ACK_LEN: usize = 12;

/// Bytes a record with a payload of `payload_len` takes on disk.
pub(super) fn encoded_len(payload_len: usize) -> u64 {
    (payload_len + OVERHEAD) as u64
}

/// Appends the framed record to `out`. The caller guarantees `payload.len() <= u32::MAX`.
pub(super) fn encode(out: &mut Vec<u8>, seq: u64, signal: u8, payload: &[u8]) {
    let start = out.len();
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.reserve(payload.len() + OVERHEAD);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(signal);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// A record found valid in a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Found {
    pub seq: u64,
    pub signal: u8,
    /// Where the payload is in the scanned buffer.
    pub payload: Range<usize>,
    /// Where the record starts.
    pub start: usize,
    /// One past the record's last byte.
    pub end: usize,
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// The record starting at `pos`, if one is there whole and its CRC matches.
pub(super) fn decode_at(buf: &[u8], pos: usize) -> Option<Found> {
    let rest = buf.get(pos..)?;
    if rest.len() < OVERHEAD || rest[..4] != MAGIC {
        return None;
    }
    let len = le_u32(&rest[4..]) as usize;
    let total = len.checked_add(OVERHEAD)?;
    if total > rest.len() {
        return None;
    }
    let body = &rest[..HEADER + len];
    if crc32fast::hash(body) != le_u32(&rest[HEADER + len..]) {
        return None;
    }
    Some(Found {
        seq: le_u64(&rest[8..]),
        signal: rest[16],
        payload: pos + HEADER..pos + HEADER + len,
        start: pos,
        end: pos + total,
    })
}

/// The first valid record starting at or after `from`. Visits each offset at most once.
fn resync(buf: &[u8], from: usize) -> Option<Found> {
    let last = buf.len().checked_sub(OVERHEAD)?;
    (from..=last).filter(|&q| buf[q] == MAGIC[0]).find_map(|q| decode_at(buf, q))
}

/// What a scan of a segment found.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Valid records, in file order.
    pub records: Vec<Found>,
    /// Corrupt stretches followed by a valid record: (offset, length).
    pub skipped: Vec<(usize, usize)>,
    /// Bytes at the end that hold no valid record (torn write or corruption): (offset, length). The file should be
    /// truncated at that offset.
    pub tail: Option<(usize, usize)>,
}

/// Walks `buf` record by record; on a bad record, looks for the next offset where a whole valid record starts
/// (magic, length within the buffer, matching CRC) and goes on from there. Never panics on any input.
pub(super) fn scan(buf: &[u8]) -> Scan {
    let mut out = Scan::default();
    let mut pos = 0;
    // Each turn moves `pos` forward by at least one byte or stops: at most `buf.len()` turns.
    while pos < buf.len() {
        if let Some(found) = decode_at(buf, pos) {
            pos = found.end;
            out.records.push(found);
            continue;
        }
        match resync(buf, pos + 1) {
            Some(found) => {
                out.skipped.push((pos, found.start - pos));
                pos = found.end;
                out.records.push(found);
            }
            None => {
                out.tail = Some((pos, buf.len() - pos));
                break;
            }
        }
    }
    out
}

fn ack_crc(seq: u64) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(b"ACK");
    h.update(&seq.to_le_bytes());
    h.finalize()
}

/// Appends the commit entry for `seq` to `out`.
pub(super) fn encode_ack(out: &mut Vec<u8>, seq: u64) {
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&ack_crc(seq).to_le_bytes());
}

/// What a commit file holds.
#[derive(Debug, Default)]
pub(super) struct Acks {
    pub seqs: Vec<u64>,
    /// Entries whose CRC did not match (skipped).
    pub corrupt: usize,
    /// Length of the whole entries; bytes past it are a torn final entry.
    pub valid_len: usize,
}

/// Decodes a commit file.
pub(super) fn decode_acks(buf: &[u8]) -> Acks {
    let mut out = Acks { valid_len: buf.len() - buf.len() % ACK_LEN, ..Acks::default() };
    for entry in buf.chunks_exact(ACK_LEN) {
        let seq = le_u64(entry);
        if ack_crc(seq) == le_u32(&entry[8..]) {
            out.seqs.push(seq);
        } else {
            out.corrupt += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        for (seq, body) in [(7u64, &b"alpha"[..]), (8, b""), (9, b"gamma-gamma")] {
            starts.push(buf.len());
            encode(&mut buf, seq, 2, body);
        }
        (buf, starts)
    }

    #[test]
    fn round_trip() {
        let (buf, _) = three();
        let scan = scan(&buf);
        assert!(scan.skipped.is_empty() && scan.tail.is_none());
        let seqs: Vec<u64> = scan.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [7, 8, 9]);
        assert_eq!(&buf[scan.records[2].payload.clone()], b"gamma-gamma");
        assert_eq!(buf.len() as u64, encoded_len(5) + encoded_len(0) + encoded_len(11));
    }

    #[test]
    fn any_single_bit_flip_is_detected_and_never_panics() {
        let (buf, starts) = three();
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[byte] ^= 1 << bit;
                let scan = scan(&b);
                let hit = starts.iter().rposition(|&s| s <= byte).unwrap_or(0);
                let seqs: Vec<u64> = scan.records.iter().map(|r| r.seq).collect();
                let expect: Vec<u64> =
                    [7u64, 8, 9].iter().enumerate().filter(|(i, _)| *i != hit).map(|(_, s)| *s).collect();
                assert_eq!(seqs, expect, "flip at byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn garbage_and_truncation() {
        let (buf, _) = three();
        for cut in 0..buf.len() {
            let scan = scan(&buf[..cut]);
            let kept: usize = scan.records.iter().map(|r| r.end - r.start).sum();
            assert_eq!(kept + scan.tail.map_or(0, |t| t.1), cut);
        }
        let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        assert!(scan(&noise).records.is_empty());
    }

    #[test]
    fn acks() {
        let mut buf = Vec::new();
        for seq in [3, 5, 9] {
            encode_ack(&mut buf, seq);
        }
        buf[ACK_LEN] ^= 0x10;
        buf.extend_from_slice(&[1, 2, 3]);
        let acks = decode_acks(&buf);
        assert_eq!(acks.seqs, [3, 9]);
        assert_eq!(acks.corrupt, 1);
        assert_eq!(acks.valid_len, 3 * ACK_LEN);
    }
}
