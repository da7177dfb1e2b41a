//! Configuration: the YAML file given by `--config`, parsed and validated before anything starts.
//!
//! The `loadbalancing:` block takes the keys of the Collector's loadbalancing exporter, so a block can be pasted
//! from a Collector configuration unchanged, under any of the Collector's names for it ([`compat`]). Keys the
//! Collector knows but otlp-lb does not implement are accepted and reported by name as **warnings**
//! ([`Config::warnings`]) or refused with what to write instead; keys nobody knows are **errors** naming the field.

pub mod compat;
mod duration;
mod model;
mod peers;

pub use duration::Dur;
pub use model::*;
pub use peers::{PeerDns, Peers};

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
        let mut de = serde_saphyr::from_str::<serde_json::Value>(text)
            .map_err(|e| invalid("(document)", format!("invalid YAML: {e}")))?;
        let ignored = compat::normalize(&mut de)?;
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            invalid(if path == "." { "(document)".to_string() } else { path }, e.into_inner().to_string())
        })?;
        config.validate()?;
        config.ignored = ignored;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.routing_policy()?;
        self.loadbalancing.resolver.validate()?;
        if let Some(peers) = &self.peers {
            peers.validate()?;
        }
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
        otlp.tls.protocol_versions().map_err(|e| invalid("loadbalancing.protocol.otlp.tls", e))?;
        let queue = &self.loadbalancing.sending_queue;
        match queue.storage.as_deref().map(str::trim) {
            Some(id) if compat::is_component_id(id) => {
                return Err(invalid(
                    "loadbalancing.sending_queue.storage",
                    format!(
                        "{id:?} names a Collector storage extension; otlp-lb keeps its own write-ahead log: \
                         set ack: queued and storage to a directory (an absolute path)"
                    ),
                ));
            }
            Some(dir) if !dir.is_empty() && !dir.starts_with('/') => {
                return Err(invalid(
                    "loadbalancing.sending_queue.storage",
                    format!("{dir:?}: give the write-ahead log's directory as an absolute path"),
                ));
            }
            None | Some("") if queue.ack == AckMode::Queued => {
                return Err(invalid(
                    "loadbalancing.sending_queue.storage",
                    "ack: queued needs a directory for the write-ahead log",
                ));
            }
            _ => {}
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
            // The Collector reads an empty key as its default.
            None | Some("") => None,
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
        let keys = [policy.traces, policy.metrics, policy.logs];
        if !policy.attributes.is_empty() && !keys.contains(&RoutingKey::Attributes) {
            return Err(invalid(
                "loadbalancing.routing_attributes",
                "only used with routing_key: attributes (or a routing.<signal>: attributes); remove it or set the key",
            ));
        }
        Ok(policy)
    }

    /// What the configuration says that otlp-lb does not do: each key accepted and ignored, named in full, with
    /// what happens instead.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self.ignored.clone();
        let lb = &self.loadbalancing;
        let tls = &lb.protocol.otlp.tls;
        if tls.plaintext() {
            for (key, set) in [("cert_file", tls.cert_file.is_some()), ("key_file", tls.key_file.is_some())] {
                if set {
                    out.push(compat::ignored_warning(
                        &format!("loadbalancing.protocol.otlp.tls.{key}"),
                        "insecure: true without ca_file is plaintext, as in the Collector",
                    ));
                }
            }
        }
        if lb.sending_queue.ack == AckMode::Delivered && lb.sending_queue.storage.is_some() {
            out.push(compat::ignored_warning("loadbalancing.sending_queue.storage", "only used with ack: queued"));
        }
        out
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
