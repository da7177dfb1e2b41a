//! `ack: queued`: requests acknowledged once they are in the write-ahead log, delivered from it in the background.
//!
//! Each record is delivered like any request (split, concurrent parts, failed parts retried and re-routed), with
//! no deadline: it is retried with backoff until every part is accepted, then committed. Records the backends
//! reject for good are committed with a log line, so they do not block the queue. Records still pending at shutdown
//! or after a crash are replayed on start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};

use super::wal::{FsyncPolicy, Record, Wal, WalConfig, WalError};
use crate::config::{DurableQueue, FsyncMode};
use crate::signal::Signal;

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

/// The log and the channel that hands its records to the delivery loop.
pub struct Durable {
    wal: Wal,
    pending: mpsc::UnboundedSender<Record>,
    pub max_concurrent: usize,
}

impl Durable {
    /// Opens the log (blocking: scans the segments) and returns the receiver of records to deliver, starting with
    /// the ones replayed from disk.
    pub fn open(cfg: &DurableQueue) -> Result<(Arc<Durable>, mpsc::UnboundedReceiver<Record>), WalError> {
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
        Ok((Arc::new(Durable { wal, pending: tx, max_concurrent: cfg.max_concurrent_deliveries.max(1) }), rx))
    }

    /// Writes a request durably and queues it for delivery; returns once it may be acknowledged.
    pub async fn enqueue(&self, signal: Signal, body: Bytes) -> Result<(), WalError> {
        let seq = self.wal.append(signal_code(signal), body.clone()).await?;
        // The receiver lives as long as the process serves; if it is gone the record stays in the log.
        let _ = self.pending.send(Record { seq, signal: signal_code(signal), payload: body });
        Ok(())
    }

    pub fn commit(&self, seq: u64) {
        if let Err(e) = self.wal.commit(seq) {
            tracing::error!(seq, error = %e, "cannot commit a delivered record");
        }
    }

    pub fn pending(&self) -> u64 {
        self.wal.stats().records_pending
    }
}

/// How long the delivery loop waits between attempts at a record, at most.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs `deliver` for every record with at most `max_concurrent` at a time.
pub async fn run<F, Fut>(durable: Arc<Durable>, mut records: mpsc::UnboundedReceiver<Record>, deliver: F)
where
    F: Fn(Record) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(durable.max_concurrent));
    while let Some(record) = records.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let work = deliver(record);
        tokio::spawn(async move {
            work.await;
            drop(slot);
        });
    }
}
