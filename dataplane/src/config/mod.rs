//! Configuration: the YAML file given by `--config`, parsed and validated before anything starts.
//!
//! The `loadbalancing:` block takes the keys of the Collector's loadbalancing exporter, so a block can be pasted
//! from a Collector configuration unchanged. Keys the Collector knows but otlp-lb does not implement are accepted
//! and reported by name as **warnings** ([`Config::warnings`]); keys nobody knows are **errors** naming the field.

mod duration;
mod model;

pub use duration::Dur;
pub use model::*;

use std::path::Path;

use thiserror::Error;

use crate::route::key::{RoutingKey, RoutingPolicy};
use crate::signal::Signal;

/// A configuration that could not be read or is invalid.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Config::parse(&text)
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let de = serde_saphyr::from_str::<serde_json::Value>(text)
            .map_err(|e| invalid("(document)", format!("invalid YAML: {e}")))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            invalid(if path == "." { "(document)".to_string() } else { path }, e.into_inner().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.routing_policy()?;
        self.loadbalancing.resolver.validate()?;
        if self.receivers.otlp.protocols.grpc.is_none() && self.receivers.otlp.protocols.http.is_none() {
            return Err(invalid("receivers.otlp.protocols", "enable grpc, http or both"));
        }
        let otlp = &self.loadbalancing.protocol.otlp;
        if otlp.timeout.0.is_zero() {
            return Err(invalid("loadbalancing.protocol.otlp.timeout", "must be greater than 0"));
        }
        if let Some(level) = otlp.compression_params.level {
            let (valid, allowed) = match otlp.compression {
                Compression::Gzip => (
                    level == -1 || (1..=9).contains(&level),
                    "gzip takes 1 (fastest) to 9 (smallest), or -1 for the default 6",
                ),
                Compression::Zstd => ((1..=22).contains(&level), "zstd takes 1 to 22"),
                Compression::None => (false, "compression none takes no level"),
            };
            if !valid {
                return Err(invalid(
                    "loadbalancing.protocol.otlp.compression_params.level",
                    format!("{level} is not a valid level: {allowed}"),
                ));
            }
        }
        let queue = &self.loadbalancing.sending_queue;
        if queue.ack == AckMode::Queued && queue.storage.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return Err(invalid(
                "loadbalancing.sending_queue.storage",
                "ack: queued needs a directory for the write-ahead log",
            ));
        }
        if queue.segment_size_mib == 0 || queue.segment_size_mib > queue.max_size_mib {
            return Err(invalid("loadbalancing.sending_queue.segment_size_mib", "must be between 1 and max_size_mib"));
        }
        let retry = &self.loadbalancing.retry_on_failure;
        if retry.initial_interval > retry.max_interval {
            return Err(invalid("loadbalancing.retry_on_failure.initial_interval", "must not exceed max_interval"));
        }
        Ok(())
    }

    /// The routing key of each signal: `routing.<signal>`, else `loadbalancing.routing_key` where it is valid for
    /// the signal, else the signal's default.
    pub fn routing_policy(&self) -> Result<RoutingPolicy, ConfigError> {
        let lb = &self.loadbalancing;
        let single = match lb.routing_key.as_deref() {
            None => None,
            Some(name) => {
                let key = RoutingKey::parse(name).ok_or_else(|| {
                    invalid(
                        "loadbalancing.routing_key",
                        format!(
                            "unknown key {name:?}; one of traceID, service, resource, metric, streamID, attributes"
                        ),
                    )
                })?;
                Some(key)
            }
        };
        let mut policy = RoutingPolicy { attributes: lb.routing_attributes.clone(), ..RoutingPolicy::default() };
        for signal in Signal::ALL {
            let explicit = self.routing.get(signal);
            let key = match explicit {
                Some(name) => {
                    let field = format!("routing.{signal}");
                    let key =
                        RoutingKey::parse(name).ok_or_else(|| invalid(&field, format!("unknown key {name:?}")))?;
                    if !RoutingKey::valid_for(signal).contains(&key) {
                        let valid: Vec<_> = RoutingKey::valid_for(signal).iter().map(|k| k.name()).collect();
                        return Err(invalid(
                            field,
                            format!("{name} is not a key for {signal}; use one of {}", valid.join(", ")),
                        ));
                    }
                    key
                }
                None => single
                    .filter(|k| RoutingKey::valid_for(signal).contains(k))
                    .unwrap_or(RoutingKey::default_for(signal)),
            };
            if key == RoutingKey::Attributes && policy.attributes.is_empty() {
                return Err(invalid(
                    "loadbalancing.routing_attributes",
                    format!("{signal} are routed by attributes: list at least one"),
                ));
            }
            match signal {
                Signal::Traces => policy.traces = key,
                Signal::Metrics => policy.metrics = key,
                Signal::Logs => policy.logs = key,
            }
        }
        Ok(policy)
    }

    /// Keys of the Collector's loadbalancing exporter that are accepted but not implemented, with what happens.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let lb = &self.loadbalancing;
        let otlp = &lb.protocol.otlp;
        let ignored = [
            ("loadbalancing.protocol.otlp.endpoint", otlp.endpoint.is_some(), "backends come from the resolver"),
            ("loadbalancing.protocol.otlp.balancer_name", otlp.balancer_name.is_some(), "one connection per backend"),
            ("loadbalancing.protocol.otlp.keepalive", otlp.keepalive.is_some(), "not implemented"),
            ("loadbalancing.protocol.otlp.auth", otlp.auth.is_some(), "use headers"),
            ("loadbalancing.protocol.otlp.write_buffer_size", otlp.write_buffer_size.is_some(), "not implemented"),
            ("loadbalancing.protocol.otlp.read_buffer_size", otlp.read_buffer_size.is_some(), "not implemented"),
            ("loadbalancing.protocol.otlp.wait_for_ready", otlp.wait_for_ready.is_some(), "not implemented"),
            (
                "loadbalancing.protocol.otlp.sending_queue.storage",
                otlp.sending_queue.storage.is_some(),
                "use loadbalancing.sending_queue.storage",
            ),
            (
                "loadbalancing.protocol.otlp.sending_queue.blocking",
                otlp.sending_queue.blocking.is_some(),
                "a full queue fails the part, which is retried",
            ),
            (
                "loadbalancing.protocol.otlp.sending_queue.block_on_overflow",
                otlp.sending_queue.block_on_overflow.is_some(),
                "a full queue fails the part, which is retried",
            ),
            (
                "loadbalancing.protocol.otlp.sending_queue.wait_for_result",
                otlp.sending_queue.wait_for_result.is_some(),
                "requests are acknowledged after the backends accept them",
            ),
            (
                "loadbalancing.protocol.otlp.sending_queue.batch",
                otlp.sending_queue.batch.is_some(),
                "parts waiting for the same backend are coalesced instead: sending_queue.coalesce",
            ),
            (
                "loadbalancing.protocol.otlp.retry_on_failure",
                otlp.retry_on_failure.is_some(),
                "use loadbalancing.retry_on_failure",
            ),
            (
                "loadbalancing.sending_queue.enabled",
                lb.sending_queue.enabled.is_some(),
                "use sending_queue.ack: queued",
            ),
            (
                "loadbalancing.sending_queue.num_consumers",
                lb.sending_queue.num_consumers.is_some(),
                "use protocol.otlp.sending_queue for per-backend queues",
            ),
            (
                "loadbalancing.sending_queue.queue_size",
                lb.sending_queue.queue_size.is_some(),
                "use protocol.otlp.sending_queue for per-backend queues",
            ),
            (
                "loadbalancing.timeout",
                lb.timeout.is_some(),
                "use loadbalancing.protocol.otlp.timeout and retry_on_failure.max_elapsed_time",
            ),
        ];
        for (key, present, what) in ignored {
            if present {
                out.push(format!("{key} is not supported and is ignored ({what})"));
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
