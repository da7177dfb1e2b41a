//! `ack: queued`: a request is acknowledged once it is in the write-ahead log, and delivered from the log in the
//! background.
//!
//! Each record is delivered like any request ([`Delivery::deliver`]: split, concurrent parts, failed parts retried
//! and re-routed), with no deadline of its own: it is retried with backoff until every part is accepted, then
//! committed. Records the backends reject for good are committed with a log line, so they do not block the log.
//! A stopping process delivers what its log holds within `drain_timeout`. Records still pending then, or after a
//! crash, are replayed on start; with `peers:`, once the peers' tables are in, so that a replayed trace keeps the
//! backend another replica sent it to (the app starts [`DurableAck::run`]).
//!
//! A record is walked twice. When it is accepted, [`Delivery::check`] refuses what can never be delivered (and
//! counts its items) before the client is told it is safe; when it is delivered, it is split against the pool of
//! that moment. It cannot be split once for both: the log holds the request as it was received, which is all a
//! replay after a restart has, and a record may wait in the log while the pool changes (no backend, a backlog),
//! so parts routed when it arrived could name backends that have left. Keeping those parts in memory beside the
//! log would also double what a backlog holds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};

use crate::config::{DurableQueue, FsyncMode};
use crate::delivery::Delivery;
use crate::export::Delivered;
use crate::export::wal::{FsyncPolicy, Record, Wal, WalConfig, WalError};
use crate::refusal::Refusal;
use crate::signal::Signal;

/// How long the delivery loop waits between attempts at a record, at most.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How often a stopping process looks whether the log is delivered.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// The signal of a record, as stored in the log.
pub fn signal_code(signal: Signal) -> u8 {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

pub fn signal_of(code: u8) -> Option<Signal> {
    Signal::ALL.into_iter().find(|s| signal_code(*s) == code)
}

/// Records to deliver, in the order they were written: first those replayed from disk, then each one accepted.
pub type Backlog = mpsc::UnboundedReceiver<Record>;

/// The write-ahead log, and the delivery of its records.
pub struct DurableAck {
    wal: Wal,
    /// Hands each record written to the delivery loop.
    to_deliver: mpsc::UnboundedSender<Record>,
    delivery: Arc<Delivery>,
    max_concurrent: usize,
}

impl DurableAck {
    /// Opens the log (blocking: scans the segments) and returns the records to deliver, starting with the ones
    /// replayed from disk.
    pub fn open(cfg: &DurableQueue, delivery: Arc<Delivery>) -> Result<(Arc<DurableAck>, Backlog), WalError> {
        let dir = PathBuf::from(cfg.storage.clone().unwrap_or_default());
        let fsync = match cfg.fsync {
            FsyncMode::Always => FsyncPolicy::Always,
            FsyncMode::Interval => FsyncPolicy::Interval(cfg.fsync_interval.0),
            FsyncMode::Never => FsyncPolicy::Never,
        };
        let wal_cfg =
            WalConfig { dir, max_bytes: cfg.max_size_mib << 20, segment_bytes: cfg.segment_size_mib << 20, fsync };
        let (wal, replay) = Wal::open(wal_cfg)?;
        let (tx, rx) = mpsc::unbounded_channel();
        if !replay.is_empty() {
            tracing::info!(records = replay.len(), "replaying records acknowledged before the last stop");
        }
        for r in replay {
            let _ = tx.send(r);
        }
        let max_concurrent = cfg.max_concurrent_deliveries.max(1);
        Ok((Arc::new(DurableAck { wal, to_deliver: tx, delivery, max_concurrent }), rx))
    }

    /// Accepts a request: refuses what can never be delivered, then writes it durably and queues it for delivery.
    /// Returns its item count and whether it may be acknowledged.
    pub async fn accept(&self, signal: Signal, body: Bytes) -> (u64, Result<Delivered, Refusal>) {
        let items = match self.delivery.check(signal, &body) {
            Ok(items) => items,
            Err(refusal) => return (0, Err(refusal)),
        };
        let written = match self.wal.append(signal_code(signal), body.clone()).await {
            Ok(seq) => seq,
            Err(e @ (WalError::Full | WalError::TooLarge { .. })) => {
                return (items, Err(Refusal::Overloaded(e.to_string())));
            }
            Err(e) => return (items, Err(Refusal::Unavailable(e.to_string()))),
        };
        // The loop lives as long as the process serves; if it is gone the record stays in the log.
        let _ = self.to_deliver.send(Record { seq: written, signal: signal_code(signal), payload: body });
        (items, Ok(Delivered::default()))
    }

    /// Delivers every record of `backlog`, at most `max_concurrent_deliveries` at a time, until the log closes.
    pub async fn run(self: Arc<Self>, mut backlog: Backlog) {
        let slots = Arc::new(Semaphore::new(self.max_concurrent));
        while let Some(record) = backlog.recv().await {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
            let this = Arc::clone(&self);
            tokio::spawn(async move {
                this.deliver(record).await;
                drop(slot);
            });
        }
    }

    /// Records written and not yet delivered.
    pub fn pending(&self) -> u64 {
        self.wal.stats().records_pending
    }

    /// Waits until every record written has been delivered (or rejected for good), at most until `deadline`:
    /// whether the log is empty.
    pub async fn drained(&self, deadline: Instant) -> bool {
        while self.pending() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        true
    }

    /// Delivers one record, retrying until every part is accepted, then commits it.
    async fn deliver(&self, record: Record) {
        let Some(signal) = signal_of(record.signal) else {
            tracing::error!(seq = record.seq, signal = record.signal, "record of an unknown signal; dropping it");
            self.commit(record.seq);
            return;
        };
        let mut backoff = self.delivery.retry().initial_interval.0.max(Duration::from_millis(10));
        loop {
            let deadline = self.delivery.deadline(None);
            match self.delivery.deliver(signal, record.payload.clone(), deadline).await.1 {
                Ok(_) => break,
                Err(Refusal::Invalid(m) | Refusal::Rejected(_, m)) => {
                    tracing::warn!(seq = record.seq, error = %m, "queued record rejected by the backends for good; dropping it");
                    break;
                }
                Err(Refusal::Overloaded(m) | Refusal::Unavailable(m)) => {
                    tracing::debug!(seq = record.seq, error = %m, ?backoff, "queued record not delivered yet");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.commit(record.seq);
    }

    fn commit(&self, seq: u64) {
        if let Err(e) = self.wal.commit(seq) {
            tracing::error!(seq, error = %e, "cannot commit a delivered record");
        }
    }
}
