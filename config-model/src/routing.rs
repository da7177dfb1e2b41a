//! `routing`: per-signal routing keys and trace affinity, and the policy they make with
//! `loadbalancing.routing_key`.

use serde::{Deserialize, Serialize};

use crate::{Config, ConfigError, Dur, RoutingKey, RoutingPolicy, Signal, invalid};

/// How long a trace keeps its backend after the pool changes, unless `routing.affinity_window` says otherwise.
pub const DEFAULT_AFFINITY_WINDOW: Dur = Dur::secs(30);

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Routing {
    pub traces: Option<String>,
    pub metrics: Option<String>,
    pub logs: Option<String>,
    /// How long a trace seen before a ring change keeps its backend (trace-id routing).
    pub affinity_window: Dur,
    /// Most trace ids remembered for affinity.
    pub affinity_max_traces: usize,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            traces: None,
            metrics: None,
            logs: None,
            affinity_window: DEFAULT_AFFINITY_WINDOW,
            affinity_max_traces: 1_000_000,
        }
    }
}

impl Routing {
    /// The key `routing.<signal>` names, if it names one.
    pub fn get(&self, signal: Signal) -> Option<&str> {
        match signal {
            Signal::Traces => self.traces.as_deref(),
            Signal::Metrics => self.metrics.as_deref(),
            Signal::Logs => self.logs.as_deref(),
        }
    }

    /// Routes `signal` by `key`, written by its name.
    pub fn set(&mut self, signal: Signal, key: RoutingKey) {
        let name = Some(key.name().to_string());
        match signal {
            Signal::Traces => self.traces = name,
            Signal::Metrics => self.metrics = name,
            Signal::Logs => self.logs = name,
        }
    }
}

impl Config {
    /// The routing key of each signal: `routing.<signal>`, else `loadbalancing.routing_key` where it is valid for
    /// the signal, else the signal's default.
    pub fn routing_policy(&self) -> Result<RoutingPolicy, ConfigError> {
        let lb = &self.loadbalancing;
        let single = match lb.routing_key.as_deref() {
            // The Collector reads an empty key as its default.
            None | Some("") => None,
            Some(name) => Some(RoutingKey::parse(name).ok_or_else(|| {
                invalid(
                    "loadbalancing.routing_key",
                    format!("unknown key {name:?}; one of {}", RoutingKey::all_names()),
                )
            })?),
        };
        let mut policy = RoutingPolicy { attributes: lb.routing_attributes.clone(), ..RoutingPolicy::default() };
        for signal in Signal::ALL {
            let key = match self.routing.get(signal) {
                Some(name) => {
                    let field = format!("routing.{signal}");
                    let key =
                        RoutingKey::parse(name).ok_or_else(|| invalid(&field, format!("unknown key {name:?}")))?;
                    if !key.applies_to(signal) {
                        return Err(invalid(
                            field,
                            format!(
                                "{name} is not a key for {signal}; use one of {}",
                                RoutingKey::names_for(signal).join(", ")
                            ),
                        ));
                    }
                    key
                }
                None => single.filter(|k| k.applies_to(signal)).unwrap_or(RoutingKey::default_for(signal)),
            };
            if key == RoutingKey::Attributes && policy.attributes.is_empty() {
                return Err(invalid(
                    "loadbalancing.routing_attributes",
                    format!("{signal} are routed by attributes: list at least one"),
                ));
            }
            policy = policy.with(signal, key);
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
}
