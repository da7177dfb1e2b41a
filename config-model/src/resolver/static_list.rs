//! `loadbalancing.resolver.static`: a fixed list of backends, each with an optional weight.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{ConfigError, invalid};

/// Appends the OTLP/gRPC port when an address has none.
pub fn with_default_port(host: &str) -> String {
    let bracketed_v6 = host.starts_with('[') && host.ends_with(']');
    let has_port = !bracketed_v6
        && host.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && !h.ends_with(':') && p.parse::<u16>().is_ok());
    if has_port { host.to_string() } else { format!("{host}:4317") }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticResolver {
    pub hostnames: Vec<String>,
    /// Optional weight per hostname (default 1): a backend with weight 2 takes twice the keys.
    #[serde(default)]
    pub weights: Weights,
    /// Backends leaving the pool: they keep the traces trace affinity gives them and take no new one (remove them
    /// once `routing.affinity_window` has passed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draining: Vec<String>,
}

/// Weights of a static pool: a map `hostname: weight`, or a list in the order of `hostnames`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Weights {
    ByHost(BTreeMap<String, u32>),
    InOrder(Vec<u32>),
}

impl Default for Weights {
    fn default() -> Self {
        Weights::ByHost(BTreeMap::new())
    }
}

impl<'de> Deserialize<'de> for Weights {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let shape = "a list of weights in the hostnames' order, or a map of hostname: weight";
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(Weights::default()),
            v @ serde_json::Value::Array(_) => serde_json::from_value(v)
                .map(Weights::InOrder)
                .map_err(|e| D::Error::custom(format!("{e}: weights are {shape}"))),
            v @ serde_json::Value::Object(_) => serde_json::from_value(v)
                .map(Weights::ByHost)
                .map_err(|e| D::Error::custom(format!("{e}: weights are {shape}"))),
            other => Err(D::Error::custom(format!("{other} is not {shape}"))),
        }
    }
}

impl StaticResolver {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.hostnames.is_empty() {
            return Err(invalid(
                "loadbalancing.resolver.static.hostnames",
                "the pool is empty: list at least one backend",
            ));
        }
        let members = self.members()?;
        match &self.weights {
            Weights::ByHost(map) => {
                for name in map.keys() {
                    if !members.iter().any(|(a, _)| a == name || a == &with_default_port(name)) {
                        return Err(invalid(
                            format!("loadbalancing.resolver.static.weights.{name}"),
                            "not one of the hostnames",
                        ));
                    }
                }
            }
            Weights::InOrder(list) if list.len() != self.hostnames.len() => {
                return Err(invalid(
                    "loadbalancing.resolver.static.weights",
                    format!(
                        "{} weights for {} hostnames: give one per hostname, in the hostnames' order",
                        list.len(),
                        self.hostnames.len()
                    ),
                ));
            }
            Weights::InOrder(_) => {}
        }
        Ok(())
    }

    /// `(address, weight)` of each backend, addresses with their port.
    pub fn members(&self) -> Result<Vec<(String, u32)>, ConfigError> {
        let mut out: Vec<(String, u32)> = Vec::new();
        for (i, host) in self.hostnames.iter().enumerate() {
            let field = format!("loadbalancing.resolver.static.hostnames[{i}]");
            let host = host.trim().trim_start_matches("http://");
            let addr = static_address(&field, host)?;
            if out.iter().any(|(a, _)| *a == addr) {
                return Err(invalid(field, format!("{addr} is listed twice")));
            }
            let (weight, weight_field) = match &self.weights {
                Weights::ByHost(map) => (
                    map.get(host).or_else(|| map.get(&addr)).copied(),
                    format!("loadbalancing.resolver.static.weights.{host}"),
                ),
                Weights::InOrder(list) => (list.get(i).copied(), format!("loadbalancing.resolver.static.weights[{i}]")),
            };
            let weight = weight.unwrap_or(1);
            if weight == 0 {
                return Err(invalid(weight_field, "must be at least 1"));
            }
            out.push((addr, weight));
        }
        Ok(out)
    }

    /// The addresses of the `draining` backends.
    pub fn draining_members(&self) -> Result<Vec<String>, ConfigError> {
        let field = |i| format!("loadbalancing.resolver.static.draining[{i}]");
        self.draining.iter().enumerate().map(|(i, h)| static_address(&field(i), h.trim())).collect()
    }
}

/// The address of a static backend, with the default port if it has none.
fn static_address(field: &str, host: &str) -> Result<String, ConfigError> {
    let host = host.trim_start_matches("http://");
    if host.is_empty() || host.contains('/') || host.contains(' ') {
        return Err(invalid(field, format!("{host:?} is not host:port")));
    }
    Ok(with_default_port(host))
}
