//! The whole file: its top-level blocks, how it is read (YAML, the Collector's forms, then the model), and
//! the checks that span blocks.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{AckMode, ConfigError, Dur, Limits, LoadBalancing, Peers, Receivers, Routing, Telemetry, compat, invalid};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub receivers: Receivers,
    pub loadbalancing: LoadBalancing,
    /// Per-signal routing keys (they override `loadbalancing.routing_key`) and trace affinity.
    #[serde(default)]
    pub routing: Routing,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub telemetry: Telemetry,
    /// The other load-balancer replicas (see [`Peers`]).
    #[serde(default)]
    pub peers: Option<Peers>,
    /// How long SIGTERM waits for requests in flight before exiting.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: Dur,
    /// Warnings of the Collector keys that were accepted and ignored (see [`compat`]).
    #[serde(skip)]
    ignored: Vec<String>,
}

fn default_drain_timeout() -> Dur {
    Dur::secs(20)
}

impl Config {
    /// A configuration with `loadbalancing` and every other block at its defaults.
    pub fn new(loadbalancing: LoadBalancing) -> Config {
        Config {
            receivers: Receivers::default(),
            loadbalancing,
            routing: Routing::default(),
            limits: Limits::default(),
            telemetry: Telemetry::default(),
            peers: None,
            drain_timeout: default_drain_timeout(),
            ignored: Vec::new(),
        }
    }

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

    /// The configuration as a file: every setting, each block's keys in alphabetical order, unset options left
    /// out. [`Config::parse`] reads it back to the same value.
    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        let mut value = serde_json::to_value(self).map_err(|e| ConfigError::Write(e.to_string()))?;
        drop_nulls(&mut value);
        serde_saphyr::to_string(&value).map_err(|e| ConfigError::Write(e.to_string()))
    }

    /// Every check of the model: each block's own, then those that span blocks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.routing_policy()?;
        let lb = &self.loadbalancing;
        lb.resolver.validate()?;
        if let Some(peers) = &self.peers {
            peers.validate()?;
        }
        self.receivers.validate()?;
        lb.protocol.otlp.validate()?;
        lb.sending_queue.validate()?;
        lb.retry_on_failure.validate()
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

/// Removes the keys whose value is null (an unset option) at every depth.
fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}
