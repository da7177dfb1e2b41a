//! Routing keys: what decides the backend a resource, scope or item goes to. [`KEYS`] is the one table of them:
//! each key's name (the Collector's spelling) and the signals it applies to. Parsing, [`RoutingKey::valid_for`],
//! the messages that list the keys, and the operator's per-signal enums all derive from it.

use std::fmt;
use std::sync::LazyLock;

use crate::signal::Signal;

/// What a signal is routed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoutingKey {
    TraceId,
    Service,
    Resource,
    Metric,
    StreamId,
    Attributes,
}

/// One row of [`KEYS`].
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub key: RoutingKey,
    /// The name in configuration, as the Collector's loadbalancing exporter spells it (case-sensitive).
    pub name: &'static str,
    /// The signals the key applies to.
    pub signals: &'static [Signal],
}

use Signal::{Logs, Metrics, Traces};

/// Every routing key, in the order messages list them.
pub const KEYS: &[KeySpec] = &[
    KeySpec { key: RoutingKey::TraceId, name: "traceID", signals: &[Traces, Logs] },
    KeySpec { key: RoutingKey::Service, name: "service", signals: &[Traces, Metrics, Logs] },
    KeySpec { key: RoutingKey::Resource, name: "resource", signals: &[Metrics, Logs] },
    KeySpec { key: RoutingKey::Metric, name: "metric", signals: &[Metrics] },
    KeySpec { key: RoutingKey::StreamId, name: "streamID", signals: &[Metrics] },
    KeySpec { key: RoutingKey::Attributes, name: "attributes", signals: &[Traces, Metrics, Logs] },
];

impl RoutingKey {
    fn spec(self) -> &'static KeySpec {
        // Every key has its row; the table test checks it.
        KEYS.iter().find(|s| s.key == self).unwrap_or(&KEYS[0])
    }

    /// The name used in configuration (the Collector's spelling).
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The key of a configuration name.
    pub fn parse(name: &str) -> Option<RoutingKey> {
        KEYS.iter().find(|s| s.name == name).map(|s| s.key)
    }

    /// Whether the key applies to a signal.
    pub fn applies_to(self, signal: Signal) -> bool {
        self.spec().signals.contains(&signal)
    }

    /// The keys valid for a signal, in table order.
    pub fn valid_for(signal: Signal) -> &'static [RoutingKey] {
        static VALID: LazyLock<[Vec<RoutingKey>; 3]> = LazyLock::new(|| {
            Signal::ALL.map(|signal| KEYS.iter().filter(|s| s.signals.contains(&signal)).map(|s| s.key).collect())
        });
        &VALID[signal.index()]
    }

    /// The names of the keys valid for a signal, in table order (the operator's enum for that signal).
    pub fn names_for(signal: Signal) -> Vec<&'static str> {
        KEYS.iter().filter(|s| s.signals.contains(&signal)).map(|s| s.name).collect()
    }

    /// Every key's name, comma-separated, for messages.
    pub fn all_names() -> String {
        KEYS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
    }

    /// The default key of a signal: trace id for spans and logs, service for metrics.
    pub fn default_for(signal: Signal) -> RoutingKey {
        match signal {
            Signal::Traces | Signal::Logs => RoutingKey::TraceId,
            Signal::Metrics => RoutingKey::Service,
        }
    }
}

impl fmt::Display for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The routing keys of all three signals plus the attribute names the `attributes` key looks up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingPolicy {
    pub traces: RoutingKey,
    pub metrics: RoutingKey,
    pub logs: RoutingKey,
    pub attributes: Vec<String>,
}

impl Default for RoutingPolicy {
    fn default() -> Self {
        RoutingPolicy {
            traces: RoutingKey::default_for(Signal::Traces),
            metrics: RoutingKey::default_for(Signal::Metrics),
            logs: RoutingKey::default_for(Signal::Logs),
            attributes: Vec::new(),
        }
    }
}

impl RoutingPolicy {
    pub fn key(&self, signal: Signal) -> RoutingKey {
        match signal {
            Signal::Traces => self.traces,
            Signal::Metrics => self.metrics,
            Signal::Logs => self.logs,
        }
    }

    /// The policy with `key` for `signal`.
    pub fn with(mut self, signal: Signal, key: RoutingKey) -> RoutingPolicy {
        match signal {
            Signal::Traces => self.traces = key,
            Signal::Metrics => self.metrics = key,
            Signal::Logs => self.logs = key,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_one_row_and_names_round_trip() {
        let all = [
            RoutingKey::TraceId,
            RoutingKey::Service,
            RoutingKey::Resource,
            RoutingKey::Metric,
            RoutingKey::StreamId,
            RoutingKey::Attributes,
        ];
        assert_eq!(KEYS.len(), all.len());
        for k in all {
            assert_eq!(KEYS.iter().filter(|s| s.key == k).count(), 1, "{k:?}");
            assert_eq!(RoutingKey::parse(k.name()), Some(k));
            assert!(k.applies_to(Signal::Traces) || k.applies_to(Signal::Metrics) || k.applies_to(Signal::Logs));
        }
        assert_eq!(RoutingKey::parse("traceid"), None);
        assert_eq!(RoutingKey::all_names(), "traceID, service, resource, metric, streamID, attributes");
    }

    #[test]
    fn validity_per_signal() {
        assert!(!RoutingKey::valid_for(Signal::Traces).contains(&RoutingKey::Metric));
        assert!(RoutingKey::valid_for(Signal::Metrics).contains(&RoutingKey::StreamId));
        assert!(!RoutingKey::valid_for(Signal::Logs).contains(&RoutingKey::StreamId));
        assert_eq!(RoutingKey::names_for(Signal::Traces), ["traceID", "service", "attributes"]);
        assert_eq!(RoutingKey::names_for(Signal::Metrics), ["service", "resource", "metric", "streamID", "attributes"]);
        assert_eq!(RoutingKey::names_for(Signal::Logs), ["traceID", "service", "resource", "attributes"]);
        for signal in Signal::ALL {
            assert!(RoutingKey::default_for(signal).applies_to(signal), "{signal}");
        }
    }
}
