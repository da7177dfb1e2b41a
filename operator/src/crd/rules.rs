//! The rules a LoadBalancedCollector must follow that the CRD states as CEL and the operator checks again in
//! [`crate::validate`] (a CRD may be older than the operator): each rule's message and bounds, once. The CEL
//! rules and the Rust checks both take them from here; bounds the data plane shares come from its configuration.

use otlp_lb_config::{GZIP_LEVELS, SEGMENT_SIZE_MIB, ZSTD_LEVELS};

/// Longest LoadBalancedCollector name: `<name>-backends` must fit a 63-character Service name.
pub const MAX_NAME_LEN: usize = 54;

/// The CEL rule of [`MAX_NAME_LEN`].
pub fn name_length_rule() -> String {
    format!("size(self.metadata.name) <= {MAX_NAME_LEN}")
}

pub fn name_length() -> String {
    format!(
        "metadata.name must be at most {MAX_NAME_LEN} characters: the operator names a Service <name>-backends, and \
         Service names are limited to 63 characters"
    )
}

pub const NAME_PATTERN: &str = "metadata.name must start with a lowercase letter and contain only lowercase letters, \
                                digits and '-': it names Services";

pub const CONFIG_XOR_SERVICE_REF: &str = "set exactly one of backends.config (the operator runs a pool of Collectors \
     with this configuration) or backends.serviceRef (balance over an existing Service)";

/// What follows the list of pool fields set beside `backends.serviceRef`.
pub const POOL_FIELDS_WITH_SERVICE_REF: &str =
    "configure a pool the operator runs: remove them when backends.serviceRef points at a pool you run yourself";

/// The pool fields set beside `backends.serviceRef`, named in a message.
pub fn pool_fields_with_service_ref(fields: &[&str]) -> String {
    format!("backends.{} {POOL_FIELDS_WITH_SERVICE_REF}", fields.join(", "))
}

pub const ROUTING_ATTRIBUTES_NEEDED: &str = "loadBalancer.routingAttributes must name at least one attribute when \
     loadBalancer.routing routes a signal by 'attributes'";

/// The CEL rule of the compression level, with the data plane's bounds.
pub fn compression_level_rule() -> String {
    format!(
        "!has(self.compressionLevel) || (has(self.compression) && self.compression == 'zstd') || \
         ((!has(self.compression) || self.compression == 'gzip') && self.compressionLevel <= {})",
        GZIP_LEVELS.end()
    )
}

pub fn compression_level() -> String {
    format!(
        "loadBalancer.compressionLevel must be {} to {} with gzip, {} to {} with zstd, and absent with compression none",
        GZIP_LEVELS.start(),
        GZIP_LEVELS.end(),
        ZSTD_LEVELS.start(),
        ZSTD_LEVELS.end()
    )
}

/// CEL rule accepting the durations the data plane parses: a number and one unit.
pub const DURATION_RULE: &str = "self.matches('^[0-9]+(ms|s|m|h)$')";

/// Milliseconds of a duration such as `250ms`, `5s`, `1m` or `1h`: what [`DURATION_RULE`] accepts.
pub fn duration_ms(value: &str) -> Option<u64> {
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    let number: u64 = value.get(..digits)?.parse().ok()?;
    let unit = match value.get(digits..)? {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(unit)
}

/// The message of [`DURATION_RULE`] for `field`.
pub fn duration(field: &str) -> String {
    format!("{field} must be a duration such as 500ms, 5s, 1m or 1h")
}

pub const TLS_FIELDS_NEED_TLS: &str = "loadBalancer.tls.secretName, serverName and clientCertificate apply to TLS \
     connections: set loadBalancer.tls.insecure to false to use them";

pub const CLIENT_CERTIFICATE_NEEDS_SECRET: &str =
    "loadBalancer.tls.clientCertificate needs secretName: the Secret holding tls.crt and tls.key";

pub const RETRY_INTERVALS: &str = "loadBalancer.retry.initialInterval must not be longer than maxInterval";

pub const AUTOSCALING_BOUNDS: &str = "loadBalancer.autoscaling.minReplicas must not be greater than maxReplicas";

pub const PDB_ONE_OF: &str = "set either loadBalancer.podDisruptionBudget.minAvailable or maxUnavailable, not both";

pub const DURABLE_STORAGE_ONE_OF: &str =
    "loadBalancer.durableQueue.storage takes emptyDir or volumeClaimTemplate, not both";

/// Smallest durable queue: one segment of the data plane's write-ahead log.
pub const MIN_DURABLE_QUEUE_MIB: i32 = SEGMENT_SIZE_MIB as i32;
/// Largest durable queue (1 TiB).
pub const MAX_DURABLE_QUEUE_MIB: i32 = 1 << 20;

pub fn durable_queue_size() -> String {
    format!("loadBalancer.durableQueue.maxSizeMiB must be between {MIN_DURABLE_QUEUE_MIB} and {MAX_DURABLE_QUEUE_MIB}")
}
