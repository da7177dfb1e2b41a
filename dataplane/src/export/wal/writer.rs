//! The writer thread: the only code that writes to the log's files. It takes appends, commits and deletions
//! from one channel, in order, and groups them: every message waiting in the channel (and, under
//! `FsyncPolicy::Interval`, every message arriving within the interval) forms one batch, written with one
//! `write` per file and made durable with one `fdatasync` before any append of the batch is acknowledged.
//!
//! Commit entries are written in the batch they arrive in, and fsynced at most once per `ACK_SYNC_INTERVAL`
//! (bounding the duplicate window after a machine crash) and when the log is dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::index::{Committed, Index};
use super::segment::{self, ack_path, io_err, seg_path};
use super::{FsyncPolicy, Shared, WalConfig, WalError, record};

/// Commit files are fsynced at most this often.
const ACK_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Bounds on one batch.
const MAX_BATCH_MSGS: usize = 4096;
const MAX_BATCH_BYTES: usize = 16 << 20;

pub(super) enum Msg {
    Append {
        signal: u8,
        payload: Bytes,
        reply: oneshot::Sender<Result<u64, WalError>>,
    },
    /// Write the commit entry of `seq` to segment `seg`'s commit file.
    Ack {
        seg: u64,
        seq: u64,
    },
    /// Delete segment `seg` (already out of the index).
    Delete {
        seg: u64,
    },
}

/// The segment being appended to.
struct Active {
    first: u64,
    file: File,
    len: u64,
}

pub(super) struct Writer {
    dir: PathBuf,
    policy: FsyncPolicy,
    max_bytes: u64,
    segment_bytes: u64,
    shared: Arc<Shared>,
    next_seq: u64,
    active: Option<Active>,
    /// Segments whose files exist (commits for any other segment are dropped).
    live: BTreeSet<u64>,
    ack_files: HashMap<u64, File>,
    /// Commit entries of the current batch, per segment.
    ack_buf: BTreeMap<u64, Vec<u8>>,
    /// Commit files written since their last fsync; `new_ack_files`: some were created since.
    ack_dirty: BTreeSet<u64>,
    new_ack_files: bool,
    last_ack_sync: Instant,
    /// The current batch's encoded records (all for the active segment) and their waiters.
    buf: Vec<u8>,
    waiters: Vec<(u64, oneshot::Sender<Result<u64, WalError>>)>,
}

impl Writer {
    pub fn new(cfg: &WalConfig, shared: Arc<Shared>, next_seq: u64, live: BTreeSet<u64>) -> Self {
        Writer {
            dir: cfg.dir.clone(),
            policy: cfg.fsync,
            max_bytes: cfg.max_bytes,
            segment_bytes: cfg.segment_bytes,
            shared,
            next_seq,
            active: None,
            live,
            ack_files: HashMap::new(),
            ack_buf: BTreeMap::new(),
            ack_dirty: BTreeSet::new(),
            new_ack_files: false,
            last_ack_sync: Instant::now(),
            buf: Vec::new(),
            waiters: Vec::new(),
        }
    }

    fn syncs(&self) -> bool {
        !matches!(self.policy, FsyncPolicy::Never)
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.shared.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs until every `Wal` handle is gone and the channel is drained.
    pub fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let first = if self.ack_dirty.is_empty() || !self.syncs() {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                rx.recv_timeout((self.last_ack_sync + ACK_SYNC_INTERVAL).saturating_duration_since(Instant::now()))
            };
            let first = match first {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => {
                    self.sync_acks();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let batch = self.collect(&rx, first);
            for msg in batch {
                self.handle(msg);
            }
            self.flush();
            self.write_acks();
            if self.syncs() && self.last_ack_sync.elapsed() >= ACK_SYNC_INTERVAL {
                self.sync_acks();
            }
        }
        self.write_acks();
        if self.syncs() {
            self.sync_acks();
        }
    }

    /// The batch that starts with `first`: whatever is queued, and under `Interval(d)` whatever arrives within `d`
    /// of the first append.
    fn collect(&self, rx: &Receiver<Msg>, first: Msg) -> Vec<Msg> {
        let start = Instant::now();
        let mut bytes = if let Msg::Append { payload, .. } = &first { payload.len() } else { 0 };
        let mut appends = matches!(first, Msg::Append { .. });
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_MSGS && bytes < MAX_BATCH_BYTES {
            let msg = match (rx.try_recv(), self.policy) {
                (Ok(msg), _) => msg,
                (Err(_), FsyncPolicy::Interval(d)) if appends => {
                    let Some(left) = (start + d).checked_duration_since(Instant::now()) else { break };
                    match rx.recv_timeout(left) {
                        Ok(msg) => msg,
                        Err(_) => break,
                    }
                }
                (Err(_), _) => break,
            };
            if let Msg::Append { payload, .. } = &msg {
                appends = true;
                bytes += payload.len();
            }
            batch.push(msg);
        }
        batch
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Append { signal, payload, reply } => match self.stage(signal, &payload) {
                Ok(seq) => self.waiters.push((seq, reply)),
                Err(e) => {
                    tracing::debug!(error = %e, "WAL append refused");
                    let _ = reply.send(Err(e));
                }
            },
            Msg::Ack { seg, seq } => {
                if self.live.contains(&seg) {
                    record::encode_ack(self.ack_buf.entry(seg).or_default(), seq);
                }
            }
            Msg::Delete { seg } => self.delete(seg),
        }
    }

    /// Encodes one append into the batch, rotating the segment first if it would overflow; refusals are
    /// answered here.
    /// Encodes one append into the batch, rotating the segment first if it would overflow; returns its seq.
    fn stage(&mut self, signal: u8, payload: &[u8]) -> Result<u64, WalError> {
        let size = record::encoded_len(payload.len());
        if payload.len() > u32::MAX as usize || size > self.max_bytes {
            return Err(WalError::TooLarge { size, max: self.max_bytes });
        }
        let used = |w: &Self| w.index().bytes + w.buf.len() as u64;
        if used(self) + size > self.max_bytes && self.buf.is_empty() {
            // The active segment may be all committed already: reclaim it rather than refuse.
            if let Some(first) = self.active.as_ref().map(|a| a.first).filter(|f| self.index().all_committed(*f)) {
                self.seal(first);
            }
        }
        if used(self) + size > self.max_bytes {
            return Err(WalError::Full);
        }
        if let Some(active) = &self.active {
            let len = active.len + self.buf.len() as u64;
            if len > 0 && len + size > self.segment_bytes {
                let first = active.first;
                self.flush();
                self.seal(first);
            }
        }
        if self.active.is_none() {
            self.open_segment()?;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        record::encode(&mut self.buf, seq, signal, payload);
        Ok(seq)
    }

    fn open_segment(&mut self) -> Result<(), WalError> {
        let first = self.next_seq;
        let path = seg_path(&self.dir, first);
        let file =
            OpenOptions::new().append(true).create_new(true).open(&path).map_err(|e| io_err("create", &path, e))?;
        self.live.insert(first);
        self.index().segs.entry(first).or_default();
        if self.syncs()
            && let Err(e) = segment::sync_dir(&self.dir)
        {
            self.seal(first);
            return Err(e);
        }
        self.active = Some(Active { first, file, len: 0 });
        Ok(())
    }

    /// Seals a segment: no more appends go to it; deleted if nothing in it is pending.
    fn seal(&mut self, first: u64) {
        if self.active.as_ref().is_some_and(|a| a.first == first) {
            self.active = None;
        }
        if self.index().seal(first) {
            self.delete(first);
        }
    }

    fn delete(&mut self, seg: u64) {
        self.live.remove(&seg);
        self.ack_files.remove(&seg);
        self.ack_buf.remove(&seg);
        self.ack_dirty.remove(&seg);
        if let Err(e) = segment::delete(&self.dir, seg, self.syncs()) {
            tracing::warn!(error = %e, "WAL: cannot delete a committed segment");
        }
    }

    /// Writes the batch's records, makes them durable per the policy, then acknowledges them.
    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let syncs = self.syncs();
        let Some(active) = self.active.as_mut() else { return };
        let mut result = active.file.write_all(&self.buf);
        if result.is_ok() && syncs {
            result = active.file.sync_data();
            self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        let first = active.first;
        let waiters = std::mem::take(&mut self.waiters);
        let written = self.buf.len() as u64;
        self.buf.clear();
        if let Err(e) = result {
            let path = seg_path(&self.dir, first);
            tracing::error!(file = %path.display(), error = %e, "WAL write failed; starting a new segment");
            self.seal(first);
            for (_, reply) in waiters {
                let _ = reply.send(Err(io_err("append", &path, io::Error::new(e.kind(), e.to_string()))));
            }
            return;
        }
        active.len += written;
        {
            let mut index = self.index();
            index.add(first, written, waiters.iter().map(|(seq, _)| *seq));
            self.shared.next_seq.store(self.next_seq, Ordering::Release);
        }
        for (seq, reply) in waiters {
            if reply.send(Ok(seq)).is_err() {
                // The caller gave up waiting (its client saw no acknowledgement and will send again): abandon.
                let outcome = self.index().commit(seq);
                match outcome {
                    Committed::Ack { seg } => record::encode_ack(self.ack_buf.entry(seg).or_default(), seq),
                    Committed::Delete { seg } => self.delete(seg),
                    Committed::NotPending => {}
                }
            }
        }
    }

    fn write_acks(&mut self) {
        let bufs = std::mem::take(&mut self.ack_buf);
        for (seg, bytes) in bufs {
            let path = ack_path(&self.dir, seg);
            let file = match self.ack_files.entry(seg) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    match OpenOptions::new().append(true).create(true).open(&path) {
                        Ok(f) => {
                            self.new_ack_files = true;
                            v.insert(f)
                        }
                        Err(e) => {
                            tracing::warn!(file = %path.display(), error = %e, "WAL: cannot open a commit file");
                            continue;
                        }
                    }
                }
            };
            match file.write_all(&bytes) {
                Ok(()) => {
                    self.ack_dirty.insert(seg);
                }
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "WAL: cannot write commits"),
            }
        }
    }

    fn sync_acks(&mut self) {
        for seg in std::mem::take(&mut self.ack_dirty) {
            if let Some(file) = self.ack_files.get(&seg)
                && let Err(e) = file.sync_data()
            {
                tracing::warn!(file = %ack_path(&self.dir, seg).display(), error = %e, "WAL: cannot fsync commits");
            }
        }
        if std::mem::take(&mut self.new_ack_files)
            && let Err(e) = segment::sync_dir(&self.dir)
        {
            tracing::warn!(error = %e, "WAL: cannot fsync the directory");
        }
        self.last_ack_sync = Instant::now();
    }
}
