//! `loadbalancing.protocol.otlp`: how each backend is called: timeout, compression, headers, TLS and the
//! per-backend sending queue.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::{ClientTls, ConfigError, Dur, invalid};

/// gzip's levels: 1 (fastest) to 9 (smallest).
pub const GZIP_LEVELS: RangeInclusive<i32> = 1..=9;
/// The level that asks gzip for zlib's default (6), as the Collector writes it.
pub const GZIP_DEFAULT_LEVEL: i32 = -1;
/// zstd's levels.
pub const ZSTD_LEVELS: RangeInclusive<i32> = 1..=22;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    #[serde(default)]
    pub otlp: OtlpExporter,
}

/// How each backend is called.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpExporter {
    /// Timeout of one attempt to one backend.
    pub timeout: Dur,
    pub compression: Compression,
    /// The compression's level (the Collector's `compression_params`).
    pub compression_params: CompressionParams,
    pub headers: BTreeMap<String, String>,
    pub tls: ClientTls,
    /// Per-backend concurrency and queue bound.
    pub sending_queue: EndpointQueue,
}

/// Per-backend sending: at most `num_consumers` requests in flight, at most `queue_size` more waiting, counted in
/// `sizer` units (parts, their items, or their bytes); a part that finds the queue full fails with
/// RESOURCE_EXHAUSTED and is retried. `enabled: false` removes both bounds. Parts waiting together leave as one
/// request (`coalesce`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointQueue {
    pub enabled: bool,
    pub num_consumers: usize,
    pub queue_size: usize,
    pub sizer: Sizer,
    pub coalesce: Coalesce,
}

/// Parts of concurrent requests bound for the same backend that wait at the same moment (for a sending slot, or
/// for the scheduler's next turn) are sent as one request of at most `max_bytes` (uncompressed; a larger part goes
/// alone). Nothing waits on purpose: coalescing adds no latency. `enabled: false` sends every part on its own.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Coalesce {
    pub enabled: bool,
    pub max_bytes: usize,
}

impl Default for Coalesce {
    fn default() -> Self {
        // Well below the 4 MiB a Collector's OTLP receiver takes by default.
        Coalesce { enabled: true, max_bytes: 1 << 20 }
    }
}

impl Default for EndpointQueue {
    fn default() -> Self {
        EndpointQueue {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            sizer: Sizer::Requests,
            coalesce: Coalesce::default(),
        }
    }
}

impl Default for OtlpExporter {
    fn default() -> Self {
        OtlpExporter {
            timeout: Dur::secs(5),
            compression: Compression::Gzip,
            compression_params: CompressionParams::default(),
            headers: BTreeMap::new(),
            tls: ClientTls::default(),
            sending_queue: EndpointQueue::default(),
        }
    }
}

impl OtlpExporter {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout.0.is_zero() {
            return Err(invalid("loadbalancing.protocol.otlp.timeout", "must be greater than 0"));
        }
        if let Some(level) = self.compression_params.level {
            self.compression.check_level(level).map_err(|allowed| {
                invalid(
                    "loadbalancing.protocol.otlp.compression_params.level",
                    format!("{level} is not a valid level: {allowed}"),
                )
            })?;
        }
        self.tls.protocol_versions().map_err(|e| invalid("loadbalancing.protocol.otlp.tls", e))?;
        Ok(())
    }
}

/// What `queue_size` counts, as the Collector's `sending_queue.sizer`: parts (one per backend per incoming
/// request), their items (spans, data points, log records), or their encoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sizer {
    Requests,
    Items,
    Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[serde(alias = "")]
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Whether `level` is one of this compression's levels; if not, which levels it takes.
    pub fn check_level(self, level: i32) -> Result<(), String> {
        let (valid, allowed) = match self {
            Compression::Gzip => (
                level == GZIP_DEFAULT_LEVEL || GZIP_LEVELS.contains(&level),
                format!(
                    "gzip takes {} (fastest) to {} (smallest), or {GZIP_DEFAULT_LEVEL} for the default 6",
                    GZIP_LEVELS.start(),
                    GZIP_LEVELS.end()
                ),
            ),
            Compression::Zstd => {
                (ZSTD_LEVELS.contains(&level), format!("zstd takes {} to {}", ZSTD_LEVELS.start(), ZSTD_LEVELS.end()))
            }
            Compression::None => (false, "compression none takes no level".to_string()),
        };
        if valid { Ok(()) } else { Err(allowed) }
    }
}

/// `level`: gzip 1 (fastest) to 9 (smallest), unset or -1 for zlib's default 6; zstd 1 to 22, unset for 3. Not
/// set with `compression: none`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionParams {
    pub level: Option<i32>,
}
