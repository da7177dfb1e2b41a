//! Segment files on disk: naming, listing, deletion, and the recovery run by `Wal::open`.
//!
//! The directory holds pairs of files named by the first seq of the segment, zero-padded to 20 digits so that
//! names sort like seqs: `00000000000000000042.wal` (records, see `record`) and `00000000000000000042.ack`
//! (commit entries for records of that segment), and a `LOCK` file held locked (flock) by the process that has
//! the log open. Any other file is left alone.
//!
//! Recovery, oldest segment first: scan the records (skipping corrupt ones, truncating an invalid tail, one
//! warning line each with file, offset and bytes), read the commit file (truncating a torn final entry), and
//! keep the records that are not committed. A segment with nothing left pending is deleted; a commit file whose
//! segment is gone (a crash between the two deletions) is deleted too.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::index::{Index, SegMeta};
use super::record::{self, Acks};
use super::{Record, WalError};

const SEG_EXT: &str = "wal";
const ACK_EXT: &str = "ack";

pub(super) fn seg_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.{SEG_EXT}"))
}

pub(super) fn ack_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.{ACK_EXT}"))
}

pub(super) fn io_err(op: &'static str, path: &Path, source: io::Error) -> WalError {
    WalError::Io { op, path: path.to_path_buf(), source }
}

/// Takes the directory's lock file (`LOCK`), so that two processes never share a log (the lock goes with the
/// returned file, and with the process).
pub(super) fn lock_dir(dir: &Path) -> Result<File, WalError> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path);
    let file = file.map_err(|e| io_err("create", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(WalError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err("lock", &path, e)),
    }
}

/// Makes the directory's entries (created, deleted files) durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err("fsync directory", dir, e))
}

/// Removes a file; a file already gone is fine.
pub(super) fn remove(path: &Path) -> Result<(), WalError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("delete", path, e)),
        _ => Ok(()),
    }
}

/// Deletes a segment: the records first, then (after a directory fsync when `sync`) the commit file, so that a
/// crash in between never leaves records without their commits (which would replay them all).
pub(super) fn delete(dir: &Path, first: u64, sync: bool) -> Result<(), WalError> {
    remove(&seg_path(dir, first))?;
    if sync {
        sync_dir(dir)?;
    }
    remove(&ack_path(dir, first))
}

/// First seqs of the segment files and of the commit files in `dir`.
fn list(dir: &Path) -> Result<(BTreeSet<u64>, BTreeSet<u64>), WalError> {
    let mut segs = BTreeSet::new();
    let mut acks = BTreeSet::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err("list", dir, e))? {
        let path = entry.map_err(|e| io_err("list", dir, e))?.path();
        let (Some(stem), Some(ext)) = (path.file_stem().and_then(|s| s.to_str()), path.extension()) else { continue };
        let Ok(first) = stem.parse::<u64>() else { continue };
        if stem.len() != 20 {
            continue;
        }
        if ext == SEG_EXT {
            segs.insert(first);
        } else if ext == ACK_EXT {
            acks.insert(first);
        }
    }
    Ok((segs, acks))
}

/// Cuts `path` to `len` bytes, durably.
fn truncate(path: &Path, len: usize) -> Result<(), WalError> {
    let file = OpenOptions::new().write(true).open(path).map_err(|e| io_err("open", path, e))?;
    file.set_len(len as u64).and_then(|()| file.sync_all()).map_err(|e| io_err("truncate", path, e))
}

/// The state found on disk.
pub(super) struct Recovered {
    pub index: Index,
    pub records: Vec<Record>,
    /// Greater than every seq and every segment name found.
    pub next_seq: u64,
}

/// Scans `dir` (which exists), repairs what it must and returns what to replay.
pub(super) fn recover(dir: &Path) -> Result<Recovered, WalError> {
    let (segs, acks) = list(dir)?;
    for orphan in acks.difference(&segs) {
        remove(&ack_path(dir, *orphan))?;
    }
    let mut out = Recovered { index: Index::default(), records: Vec::new(), next_seq: 1 };
    // Seqs must increase through the whole log; anything else is not a record of this log.
    let mut last_seq: Option<u64> = None;
    for &first in &segs {
        out.next_seq = out.next_seq.max(first.saturating_add(1));
        let path = seg_path(dir, first);
        let buf = fs::read(&path).map_err(|e| io_err("read", &path, e))?;
        let scan = record::scan(&buf);
        for &(offset, bytes) in &scan.skipped {
            tracing::warn!(file = %path.display(), offset, bytes, "WAL: corrupt record skipped");
        }
        let mut seg_len = buf.len();
        if let Some((offset, bytes)) = scan.tail {
            tracing::warn!(file = %path.display(), offset, bytes, "WAL: torn or corrupt tail truncated");
            truncate(&path, offset)?;
            seg_len = offset;
        }
        let acks = read_acks(dir, first)?;
        let committed: HashSet<u64> = acks.seqs.iter().copied().collect();
        let mut meta = SegMeta { bytes: (seg_len + acks.valid_len) as u64, sealed: true, ..SegMeta::default() };
        for found in scan.records {
            if found.seq < first || last_seq.is_some_and(|l| found.seq <= l) {
                tracing::warn!(file = %path.display(), offset = found.start, seq = found.seq,
                    "WAL: record out of sequence skipped");
                continue;
            }
            last_seq = Some(found.seq);
            out.next_seq = out.next_seq.max(found.seq.saturating_add(1));
            if committed.contains(&found.seq) {
                continue;
            }
            meta.pending.insert(found.seq);
            let payload = Bytes::copy_from_slice(&buf[found.payload]);
            out.records.push(Record { seq: found.seq, signal: found.signal, payload });
        }
        if meta.pending.is_empty() {
            delete(dir, first, true)?;
            continue;
        }
        out.index.bytes += meta.bytes;
        out.index.pending += meta.pending.len() as u64;
        out.index.segs.insert(first, meta);
    }
    Ok(out)
}

/// Reads a segment's commit file (absent: nothing committed), cutting off a torn final entry.
fn read_acks(dir: &Path, first: u64) -> Result<Acks, WalError> {
    let path = ack_path(dir, first);
    let buf = match fs::read(&path) {
        Ok(buf) => buf,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Acks::default()),
        Err(e) => return Err(io_err("read", &path, e)),
    };
    let acks = record::decode_acks(&buf);
    if acks.corrupt > 0 {
        tracing::warn!(file = %path.display(), entries = acks.corrupt,
            "WAL: corrupt commit entries skipped (their records will be delivered again)");
    }
    if acks.valid_len < buf.len() {
        tracing::warn!(file = %path.display(), offset = acks.valid_len, bytes = buf.len() - acks.valid_len,
            "WAL: torn commit entry truncated");
        truncate(&path, acks.valid_len)?;
    }
    Ok(acks)
}
