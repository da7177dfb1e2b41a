//! `loadbalancing`: the Collector's loadbalancing exporter block, and its retry and health-check settings.

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Dur, DurableQueue, Protocol, Resolver, invalid};

/// The Collector's loadbalancing exporter block.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancing {
    #[serde(default)]
    pub routing_key: Option<String>,
    #[serde(default)]
    pub routing_attributes: Vec<String>,
    #[serde(default)]
    pub protocol: Protocol,
    pub resolver: Resolver,
    #[serde(default)]
    pub retry_on_failure: Retry,
    /// Passive ejection and active probing of backends (an otlp-lb extension).
    #[serde(default)]
    pub health_check: HealthCheck,
    /// When clients are acknowledged: after delivery (default) or once the request is in an on-disk queue.
    #[serde(default)]
    pub sending_queue: DurableQueue,
}

impl LoadBalancing {
    /// The block with `resolver` and every other key at its default.
    pub fn new(resolver: Resolver) -> LoadBalancing {
        LoadBalancing {
            routing_key: None,
            routing_attributes: Vec::new(),
            protocol: Protocol::default(),
            resolver,
            retry_on_failure: Retry::default(),
            health_check: HealthCheck::default(),
            sending_queue: DurableQueue::default(),
        }
    }
}

/// Retries of the parts of a request that a backend did not accept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    pub enabled: bool,
    pub initial_interval: Dur,
    pub max_interval: Dur,
    /// The longest a request is held while its parts are retried (a client's own gRPC deadline, if shorter, wins).
    pub max_elapsed_time: Dur,
    pub multiplier: f64,
    pub randomization_factor: f64,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            enabled: true,
            initial_interval: Dur::millis(50),
            max_interval: Dur::secs(1),
            max_elapsed_time: Dur::secs(10),
            multiplier: 2.0,
            randomization_factor: 0.2,
        }
    }
}

impl Retry {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.initial_interval > self.max_interval {
            return Err(invalid("loadbalancing.retry_on_failure.initial_interval", "must not exceed max_interval"));
        }
        Ok(())
    }
}

/// Failure detection: `consecutive_failures` failures or timeouts in a row eject a backend for `ejection_time`,
/// doubling up to `max_ejection_time` while probes fail; a successful probe (an empty export) readmits it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    pub enabled: bool,
    pub consecutive_failures: u32,
    pub ejection_time: Dur,
    pub max_ejection_time: Dur,
    pub probe_timeout: Dur,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            enabled: true,
            consecutive_failures: 3,
            ejection_time: Dur::secs(1),
            max_ejection_time: Dur::secs(30),
            probe_timeout: Dur::secs(1),
        }
    }
}
