//! `loadbalancing.sending_queue`: when clients are acknowledged, and the write-ahead log behind `ack: queued`.

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Dur, invalid};

/// Size of a write-ahead log segment unless `segment_size_mib` says otherwise: also the smallest useful log.
pub const SEGMENT_SIZE_MIB: u64 = 16;

/// `ack: delivered` (default): a request is acknowledged after every backend accepted its part. `ack: queued`: it
/// is acknowledged once written to the write-ahead log in `storage` (fsynced per `fsync`), delivered from there in
/// the background with unbounded retries, and replayed after a restart. Pending records are also held in memory,
/// so `max_size_mib` bounds both disk and memory.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DurableQueue {
    pub ack: AckMode,
    /// Directory of the write-ahead log (`ack: queued`).
    pub storage: Option<String>,
    pub max_size_mib: u64,
    pub segment_size_mib: u64,
    pub fsync: FsyncMode,
    /// Group-commit window of `fsync: interval`.
    pub fsync_interval: Dur,
    /// Records delivered at the same time.
    pub max_concurrent_deliveries: usize,
}

impl Default for DurableQueue {
    fn default() -> Self {
        DurableQueue {
            ack: AckMode::Delivered,
            storage: None,
            max_size_mib: 256,
            segment_size_mib: SEGMENT_SIZE_MIB,
            fsync: FsyncMode::Always,
            fsync_interval: Dur::millis(5),
            max_concurrent_deliveries: 64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    Delivered,
    Queued,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    /// Every batch of appends is fsynced before its requests are acknowledged (survives a machine crash).
    Always,
    /// Appends within `fsync_interval` are fsynced together, then acknowledged.
    Interval,
    /// Never fsynced: survives a process crash, not a machine crash.
    Never,
}

impl DurableQueue {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        const FIELD: &str = "loadbalancing.sending_queue.storage";
        match self.storage.as_deref().map(str::trim) {
            Some(id) if is_component_id(id) => {
                return Err(invalid(
                    FIELD,
                    format!(
                        "{id:?} names a Collector storage extension; otlp-lb keeps its own write-ahead log: \
                         set ack: queued and storage to a directory (an absolute path)"
                    ),
                ));
            }
            Some(dir) if !dir.is_empty() && !dir.starts_with('/') => {
                return Err(invalid(
                    FIELD,
                    format!("{dir:?}: give the write-ahead log's directory as an absolute path"),
                ));
            }
            None | Some("") if self.ack == AckMode::Queued => {
                return Err(invalid(FIELD, "ack: queued needs a directory for the write-ahead log"));
            }
            _ => {}
        }
        if self.segment_size_mib == 0 || self.segment_size_mib > self.max_size_mib {
            return Err(invalid("loadbalancing.sending_queue.segment_size_mib", "must be between 1 and max_size_mib"));
        }
        Ok(())
    }
}

/// Whether a `sending_queue.storage` value is a Collector component id (`file_storage`, `file_storage/otc`): a type
/// of letters, digits and underscores starting with a letter, and an optional `/name`.
fn is_component_id(value: &str) -> bool {
    let kind = value.split_once('/').map_or(value, |(k, _)| k);
    kind.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_ids() {
        for id in ["file_storage", "file_storage/otc", "db_storage/a/b"] {
            assert!(is_component_id(id), "{id}");
        }
        for path in ["/var/lib/otlp-lb", "./wal", "", "1x"] {
            assert!(!is_component_id(path), "{path}");
        }
    }
}
