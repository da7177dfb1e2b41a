//! `spec.loadBalancer.routing`: the routing key of each signal. The per-signal enums list the keys of the
//! configuration's table (`otlp_lb_config::key::KEYS`) valid for their signal; a test checks that they match it.

use otlp_lb_config::{RoutingKey, Signal};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Routing key per signal.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RoutingSpec {
    /// traceID keeps whole traces together (tail sampling); service keeps a service together (span metrics);
    /// attributes uses routingAttributes.
    #[serde(default)]
    pub traces: TraceRouting,
    /// service, resource, metric, streamID (one time series per backend, for cumulative-to-delta and
    /// similar stateful processing) or attributes.
    #[serde(default)]
    pub metrics: MetricsRouting,
    /// traceID, service, resource or attributes.
    #[serde(default)]
    pub logs: LogsRouting,
}

/// Routing key of traces.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum TraceRouting {
    /// All spans of a trace go to one backend.
    #[default]
    #[serde(rename = "traceID")]
    TraceId,
    /// All spans of a service go to one backend.
    #[serde(rename = "service")]
    Service,
    /// Spans with the same values of routingAttributes go to one backend.
    #[serde(rename = "attributes")]
    Attributes,
}

/// Routing key of metrics.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum MetricsRouting {
    /// By service.name.
    #[default]
    #[serde(rename = "service")]
    Service,
    /// By all resource attributes.
    #[serde(rename = "resource")]
    Resource,
    /// By metric name.
    #[serde(rename = "metric")]
    Metric,
    /// By time series (resource, scope, metric and point attributes).
    #[serde(rename = "streamID")]
    StreamId,
    /// By routingAttributes.
    #[serde(rename = "attributes")]
    Attributes,
}

/// Routing key of logs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum LogsRouting {
    /// By the trace ID of the log record.
    #[default]
    #[serde(rename = "traceID")]
    TraceId,
    /// By service.name.
    #[serde(rename = "service")]
    Service,
    /// By all resource attributes.
    #[serde(rename = "resource")]
    Resource,
    /// By routingAttributes.
    #[serde(rename = "attributes")]
    Attributes,
}

impl From<TraceRouting> for RoutingKey {
    fn from(key: TraceRouting) -> RoutingKey {
        match key {
            TraceRouting::TraceId => RoutingKey::TraceId,
            TraceRouting::Service => RoutingKey::Service,
            TraceRouting::Attributes => RoutingKey::Attributes,
        }
    }
}

impl From<MetricsRouting> for RoutingKey {
    fn from(key: MetricsRouting) -> RoutingKey {
        match key {
            MetricsRouting::Service => RoutingKey::Service,
            MetricsRouting::Resource => RoutingKey::Resource,
            MetricsRouting::Metric => RoutingKey::Metric,
            MetricsRouting::StreamId => RoutingKey::StreamId,
            MetricsRouting::Attributes => RoutingKey::Attributes,
        }
    }
}

impl From<LogsRouting> for RoutingKey {
    fn from(key: LogsRouting) -> RoutingKey {
        match key {
            LogsRouting::TraceId => RoutingKey::TraceId,
            LogsRouting::Service => RoutingKey::Service,
            LogsRouting::Resource => RoutingKey::Resource,
            LogsRouting::Attributes => RoutingKey::Attributes,
        }
    }
}

impl RoutingSpec {
    /// The key of each signal, as the data plane names it.
    pub fn key(&self, signal: Signal) -> RoutingKey {
        match signal {
            Signal::Traces => self.traces.into(),
            Signal::Metrics => self.metrics.into(),
            Signal::Logs => self.logs.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CRD's enum of each signal is the table's keys for that signal, in the table's order, and each value
    /// reads back as the key it names.
    #[test]
    fn the_crd_enums_are_the_key_table() {
        let crd = serde_json::to_value(crate::crd::crd()).expect("CRD as JSON");
        let routing = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["loadBalancer"]
            ["properties"]["routing"]["properties"];
        for signal in Signal::ALL {
            let names = RoutingKey::names_for(signal);
            assert_eq!(routing[signal.name()]["enum"], serde_json::json!(names), "{signal}");
            for name in names {
                let mut spec = serde_json::json!({});
                spec[signal.name()] = serde_json::json!(name);
                let spec: RoutingSpec = serde_json::from_value(spec).expect("a key of the table");
                assert_eq!(spec.key(signal).name(), name, "{signal}");
            }
        }
    }
}
