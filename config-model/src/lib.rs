//! otlp-lb's configuration: the YAML file the data plane reads (`--config`) and the operator writes.
//!
//! The `loadbalancing:` block takes the keys of the Collector's loadbalancing exporter, so a block can be pasted
//! from a Collector configuration unchanged, under any of the Collector's names for it ([`compat`]). Keys the
//! Collector knows but otlp-lb does not implement are accepted and reported by name as **warnings**
//! ([`Config::warnings`]) or refused with what to write instead; keys nobody knows are **errors** naming the field.
//!
//! One file per block; each block's type holds its defaults and its checks. [`Config::parse`] reads and
//! validates a file; [`Config::to_yaml`] writes one (the operator's) that parses back to the same value.

#![forbid(unsafe_code)]

pub mod compat;
mod config;
mod duration;
mod exporter;
pub mod key;
mod loadbalancing;
mod peers;
mod queue;
mod receivers;
mod resolver;
mod routing;
mod signal;
mod telemetry;
mod tls;

pub use config::Config;
pub use duration::Dur;
pub use exporter::{
    Coalesce, Compression, CompressionParams, EndpointQueue, GZIP_DEFAULT_LEVEL, GZIP_LEVELS, OtlpExporter, Protocol,
    Sizer, ZSTD_LEVELS,
};
pub use key::{RoutingKey, RoutingPolicy};
pub use loadbalancing::{HealthCheck, LoadBalancing, Retry};
pub use peers::{PeerDns, Peers};
pub use queue::{AckMode, DurableQueue, FsyncMode, SEGMENT_SIZE_MIB};
pub use receivers::{GrpcReceiver, HttpReceiver, OtlpReceiver, Protocols, ReceiverAuth, Receivers, ServerTls};
pub use resolver::{
    AwsCloudMapResolver, DnsResolver, HealthStatusFilter, K8sResolver, Resolver, StaticResolver, Weights,
    with_default_port,
};
pub use routing::{DEFAULT_AFFINITY_WINDOW, Routing};
pub use signal::Signal;
pub use telemetry::{Limits, MetricsTelemetry, Telemetry};
pub use tls::ClientTls;

use thiserror::Error;

/// A configuration that could not be read or is invalid.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("cannot write the configuration: {0}")]
    Write(String),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}
