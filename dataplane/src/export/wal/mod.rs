//! Write-ahead log behind `ack: queued`: a request is acknowledged to its client once it is durably in this log;
//! delivery to the backends happens from the log in the background, and a crash of the load balancer (even
//! SIGKILL) loses nothing acknowledged, because `Wal::open` returns every record not yet committed for replay.
//!
//! # On disk
//! One directory of segment pairs named by the segment's first seq (20 digits, so names sort like seqs):
//! `<first>.wal` holds records, `<first>.ack` holds the commits of those records; a `LOCK` file, flock-ed while
//! the log is open, keeps a second process (a second replica on the same volume) out.
//! - Record (see `record`): `"OLW" 0x01 | len u32 | seq u64 | signal u8 | 3 reserved | payload | CRC-32` over
//!   everything before it, little-endian; 24 bytes of framing. A bad record in the middle of a segment (bit flip)
//!   fails its CRC: it is skipped with a warning and the scan resynchronises on the next offset where a whole
//!   record with magic and a matching CRC starts. An invalid tail (torn write) is truncated, with a warning.
//! - Commit entry: `seq u64 | CRC-32("ACK" ++ seq)`, 12 bytes, appended to the `.ack` file of the record's
//!   segment. Replay skips committed seqs. A segment is deleted, with its `.ack` file, once it is sealed (no
//!   longer appended to) and all its records are committed, so commit files never need compaction: they live
//!   and die with their segment, and are at most half its size.
//!
//! Appends go to the active segment until the next record would take it past `segment_bytes` (a record larger
//! than that gets a segment of its own); then it is sealed and a new one is started. `Wal::open` never appends
//! to an old segment. Bounds: segment + commit bytes never exceed `max_bytes` (an append that would is refused
//! with `WalError::Full`; an all-committed active segment is reclaimed first), and since two consecutive
//! segments always hold more than `segment_bytes`, there are at most `2 * max_bytes / segment_bytes + 1`
//! segments, each with at most one commit file.
//!
//! # Durability per `FsyncPolicy`
//! A single writer thread does all writes and groups appends (see `writer`).
//! - `Always`: every batch of appends (what queued up while the previous fsync ran) is `fdatasync`ed before any
//!   of them is acknowledged. New segment files are created with a directory fsync. Acknowledged records survive
//!   a process crash and a machine crash.
//! - `Interval(d)`: group commit: the batch is held open for up to `d` after its first append, then written and
//!   fsynced once, then acknowledged. Loss window for acknowledged records = 0 (acknowledgements wait for the
//!   fsync); the price is up to `d` more latency per append, for fewer fsyncs under load.
//! - `Never`: written with `write(2)` and acknowledged, never fsynced: acknowledged records survive a crash of the
//!   process (they are in the page cache) but not of the machine (power loss, kernel panic).
//!
//! # Duplicate window
//! Replay re-delivers records whose commit did not reach the disk. After a process crash: the commits still in
//! the writer's queue (a batch at most, microseconds). After a machine crash: also the commits not yet fsynced,
//! at most `ACK_SYNC_INTERVAL` (1 s) worth under `Always`/`Interval`, whatever the kernel had not written back
//! under `Never`. Also re-delivered: a record whose commit entry is corrupt; a record whose `append` future was
//! dropped after it was written (it is committed as abandoned right away, so only a crash in between replays
//! it); a record written whole but refused because its fsync failed (the writer then starts a new segment). In
//! the last two cases the client was never acknowledged and may have sent it again. Receivers must tolerate
//! duplicates (OTLP delivery is at-least-once anyway).
//!
//! Seqs increase across restarts as long as a segment survives; once everything is committed and deleted, a
//! restart may begin again at 1. Replay holds every pending payload in memory (bounded by `max_bytes`).

mod index;
mod record;
mod segment;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_crash;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use index::{Committed, Index};
use writer::{Msg, Writer};

/// Where and how the log is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    pub dir: PathBuf,
    /// Upper bound on the bytes of all segment and commit files.
    pub max_bytes: u64,
    /// A segment is sealed when the next record would take it past this size.
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
}

/// When appends are fsynced; see the module documentation for what survives which crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Each batch of appends is fsynced before it is acknowledged.
    Always,
    /// Group commit: appends arriving within the interval are written and fsynced together, then acknowledged.
    /// Nothing acknowledged is lost on a machine crash.
    Interval(Duration),
    /// Never fsynced: survives a process crash (page cache), not a machine crash.
    Never,
}

/// A record to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub signal: u8,
    pub payload: Bytes,
}

/// A snapshot of the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Bytes of the segment and commit files.
    pub bytes_used: u64,
    /// Records acknowledged and not committed.
    pub records_pending: u64,
    pub segments: usize,
    pub oldest_pending_seq: Option<u64>,
    /// Record fsyncs since open (appends per fsync tells how well group commit batches).
    pub fsyncs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The log has no room for the record until records are committed.
    #[error("the write-ahead log is full")]
    Full,
    /// The record could never fit in the log.
    #[error("a record of {size} bytes cannot fit in a write-ahead log of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("invalid write-ahead log configuration: {0}")]
    Config(String),
    /// Commit of a seq never acknowledged.
    #[error("unknown write-ahead log sequence number {0}")]
    UnknownSeq(u64),
    /// Another process (or another `Wal` in this one) has the directory open.
    #[error("write-ahead log directory {0} is in use by another process")]
    Locked(PathBuf),
    #[error("the write-ahead log writer has stopped")]
    Closed,
    #[error("write-ahead log: cannot {op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
}

/// State shared by the handle and the writer thread.
struct Shared {
    index: Mutex<Index>,
    /// One past the highest acknowledged seq.
    next_seq: AtomicU64,
    fsyncs: AtomicU64,
}

/// The log. `Send + Sync`; share it in an `Arc`. Dropping it lets the writer finish its queue, fsync the
/// commit files and stop (the drop waits for that).
pub struct Wal {
    shared: Arc<Shared>,
    tx: Option<Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    /// Held for the log's lifetime; released after the writer has stopped.
    _lock: std::fs::File,
}

impl Wal {
    /// Opens (creating) the directory, scans segments, detects and truncates a corrupt or torn tail (logging one
    /// warning line with the file, offset and bytes skipped), and returns the not-yet-committed records to
    /// replay, oldest first. Blocking: call it before serving, or in `spawn_blocking`.
    pub fn open(cfg: WalConfig) -> Result<(Wal, Vec<Record>), WalError> {
        if cfg.segment_bytes == 0 || cfg.max_bytes < cfg.segment_bytes {
            return Err(WalError::Config(format!(
                "need 0 < segment_bytes ({}) <= max_bytes ({})",
                cfg.segment_bytes, cfg.max_bytes
            )));
        }
        std::fs::create_dir_all(&cfg.dir).map_err(|e| segment::io_err("create", &cfg.dir, e))?;
        let lock = segment::lock_dir(&cfg.dir)?;
        let recovered = segment::recover(&cfg.dir)?;
        let live = recovered.index.segs.keys().copied().collect();
        let shared = Arc::new(Shared {
            index: Mutex::new(recovered.index),
            next_seq: AtomicU64::new(recovered.next_seq),
            fsyncs: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(&cfg, shared.clone(), recovered.next_seq, live);
        let thread = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| segment::io_err("start the writer for", &cfg.dir, e))?;
        if !recovered.records.is_empty() {
            tracing::info!(dir = %cfg.dir.display(), records = recovered.records.len(), "WAL: records to replay");
        }
        Ok((Wal { shared, tx: Some(tx), thread: Some(thread), _lock: lock }, recovered.records))
    }

    /// Appends durably per the fsync policy; returns the record's seq. Err(WalError::Full) when max_bytes would
    /// be exceeded (the caller refuses the client request with RESOURCE_EXHAUSTED). Dropping the future after
    /// the record was written commits it (abandoned).
    pub async fn append(&self, signal: u8, payload: Bytes) -> Result<u64, WalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Append { signal, payload, reply })?;
        rx.await.map_err(|_| WalError::Closed)?
    }

    /// Marks a record delivered; segments whose records are all committed are deleted (space reclaimed).
    /// Committing a seq twice is fine. Does no I/O itself: the writer thread records the commit.
    pub fn commit(&self, seq: u64) -> Result<(), WalError> {
        let mut index = self.index();
        // Sent under the lock, so the writer sees commits and deletions in the order the index made them.
        match index.commit(seq) {
            Committed::Ack { seg } => self.send(Msg::Ack { seg, seq }),
            Committed::Delete { seg } => self.send(Msg::Delete { seg }),
            Committed::NotPending if seq >= self.shared.next_seq.load(Ordering::Acquire) => {
                Err(WalError::UnknownSeq(seq))
            }
            Committed::NotPending => Ok(()),
        }
    }

    /// Bytes used, records pending, segments, oldest pending seq.
    pub fn stats(&self) -> WalStats {
        let index = self.index();
        WalStats {
            bytes_used: index.bytes,
            records_pending: index.pending,
            segments: index.segs.len(),
            oldest_pending_seq: index.oldest_pending(),
            fsyncs: self.shared.fsyncs.load(Ordering::Relaxed),
        }
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.shared.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, msg: Msg) -> Result<(), WalError> {
        self.tx.as_ref().ok_or(WalError::Closed)?.send(msg).map_err(|_| WalError::Closed)
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("WAL writer thread panicked");
        }
    }
}
