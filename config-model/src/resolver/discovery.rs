//! The resolvers that discover backends: `dns` (A/AAAA records of a name), `k8s` (the EndpointSlices of a
//! Service) and `aws_cloud_map` (DiscoverInstances).

use serde::{Deserialize, Deserializer, Serialize};

use crate::{ConfigError, Dur, invalid};

/// A port given as a number or a string of digits; empty or null means unset.
fn port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    use serde::de::Error;
    let value = Option::<serde_json::Value>::deserialize(d)?;
    let text = match &value {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(serde_json::Value::String(s)) => s.trim().to_string(),
        Some(other) => other.to_string(),
    };
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(Some(p)),
        _ => Err(D::Error::custom(format!("{text} is not a port (1 to 65535)"))),
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsResolver {
    pub hostname: String,
    /// A number or, as the Collector writes it, a string (`"4317"`).
    #[serde(default, deserialize_with = "port")]
    pub port: Option<u16>,
    #[serde(default)]
    pub interval: Option<Dur>,
    #[serde(default)]
    pub timeout: Option<Dur>,
}

impl DnsResolver {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.hostname.trim().is_empty() {
            return Err(invalid("loadbalancing.resolver.dns.hostname", "must not be empty"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct K8sResolver {
    /// `name` or `name.namespace` of the Service whose EndpointSlices list the backends.
    pub service: String,
    #[serde(default)]
    pub ports: Vec<u16>,
    #[serde(default)]
    pub timeout: Option<Dur>,
    #[serde(default)]
    pub return_hostnames: bool,
}

impl K8sResolver {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.service.trim().is_empty() {
            return Err(invalid("loadbalancing.resolver.k8s.service", "must not be empty"));
        }
        Ok(())
    }
}

/// The instances AWS Cloud Map's DiscoverInstances returns for `service_name` in `namespace`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsCloudMapResolver {
    /// The namespace's HTTP name.
    pub namespace: String,
    pub service_name: String,
    pub health_status: HealthStatusFilter,
    /// How often Cloud Map is asked (unset or 0s: 30s).
    pub interval: Option<Dur>,
    /// How long one call may take, retries included (unset or 0s: 5s).
    pub timeout: Option<Dur>,
    /// The port of every backend; unset, each instance's `AWS_INSTANCE_PORT` attribute.
    pub port: Option<u16>,
    /// The account that owns a namespace shared with this one.
    pub owner_account: Option<String>,
}

impl AwsCloudMapResolver {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let field = |name: &str| format!("loadbalancing.resolver.aws_cloud_map.{name}");
        if self.namespace.trim().is_empty() {
            return Err(invalid(field("namespace"), "required: the Cloud Map namespace of the backends"));
        }
        if self.service_name.trim().is_empty() {
            return Err(invalid(field("service_name"), "required: the Cloud Map service of the backends"));
        }
        if self.port == Some(0) {
            return Err(invalid(field("port"), "must be between 1 and 65535"));
        }
        if let Some(account) = &self.owner_account
            && (account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid(field("owner_account"), format!("{account:?} is not a 12-digit AWS account id")));
        }
        Ok(())
    }
}

/// Which instances DiscoverInstances returns, by their health (spelled as the API spells it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatusFilter {
    #[default]
    Healthy,
    Unhealthy,
    All,
    /// Healthy instances, or all of them when none is healthy.
    HealthyOrElseAll,
}
