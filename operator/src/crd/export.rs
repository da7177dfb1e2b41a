//! How the load balancer sends to the backends: the per-backend queue, retries, compression and TLS.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rules::{self, DURATION_RULE};

/// The queue in front of each backend: at most numConsumers requests in flight to a backend and
/// queueSize more waiting; a request part that finds the queue full is retried (see retry).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueSpec {
    /// Bound requests per backend; false removes both bounds.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Requests in flight to one backend at most.
    #[serde(default = "default_num_consumers")]
    #[schemars(range(min = 1))]
    pub num_consumers: i32,
    /// Requests waiting for one backend at most.
    #[serde(default = "default_queue_size")]
    #[schemars(range(min = 1))]
    pub queue_size: i32,
}

impl Default for QueueSpec {
    fn default() -> Self {
        Self { enabled: true, num_consumers: default_num_consumers(), queue_size: default_queue_size() }
    }
}

fn default_true() -> bool {
    true
}
fn default_num_consumers() -> i32 {
    10
}
fn default_queue_size() -> i32 {
    1000
}

/// Retries of the parts of a request a backend did not accept. The load balancer answers its client
/// only once the backends accepted the data, so maxElapsedTime bounds how long a client waits.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.initialInterval) <= duration(self.maxInterval)").message(rules::RETRY_INTERVALS))]
pub struct RetrySpec {
    /// Retry failed exports.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Wait before the first retry, e.g. 50ms.
    #[serde(default = "default_initial_interval")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(rules::duration("loadBalancer.retry.initialInterval").as_str()))]
    pub initial_interval: String,
    /// Upper bound of the wait between retries, e.g. 1s.
    #[serde(default = "default_max_interval")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(rules::duration("loadBalancer.retry.maxInterval").as_str()))]
    pub max_interval: String,
    /// Give up on a request after this long, e.g. 10s.
    #[serde(default = "default_max_elapsed_time")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(rules::duration("loadBalancer.retry.maxElapsedTime").as_str()))]
    pub max_elapsed_time: String,
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_interval: default_initial_interval(),
            max_interval: default_max_interval(),
            max_elapsed_time: default_max_elapsed_time(),
        }
    }
}

fn default_initial_interval() -> String {
    "50ms".into()
}
fn default_max_interval() -> String {
    "1s".into()
}
fn default_max_elapsed_time() -> String {
    "10s".into()
}

/// Compression of exports.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip.
    #[default]
    Gzip,
    /// zstd.
    Zstd,
    /// No compression.
    None,
}

/// TLS of the connections to the backends.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!self.insecure || (!has(self.secretName) && !has(self.serverName) && !self.clientCertificate)").message(rules::TLS_FIELDS_NEED_TLS),
    validation = Rule::new("!self.clientCertificate || has(self.secretName)").message(rules::CLIENT_CERTIFICATE_NEEDS_SECRET)
)]
pub struct TlsSpec {
    /// Send in plaintext (the default), as to a Collector pool inside the cluster. With false, the
    /// backends' certificates are verified against ca.crt of secretName, or the system roots.
    #[serde(default = "default_true")]
    pub insecure: bool,
    /// A Secret in this namespace, mounted into the load balancer, holding ca.crt (the CA the
    /// backends' certificates are checked against) and, for clientCertificate, tls.crt and tls.key
    /// (the layout cert-manager writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// Present tls.crt and tls.key of secretName to the backends (mutual TLS).
    #[serde(default)]
    pub client_certificate: bool,
    /// Name the backends' certificates are checked against, instead of the endpoint address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub server_name: Option<String>,
}

impl Default for TlsSpec {
    fn default() -> Self {
        Self { insecure: true, secret_name: None, client_certificate: false, server_name: None }
    }
}

impl From<Compression> for otlp_lb_config::Compression {
    fn from(compression: Compression) -> Self {
        match compression {
            Compression::Gzip => otlp_lb_config::Compression::Gzip,
            Compression::Zstd => otlp_lb_config::Compression::Zstd,
            Compression::None => otlp_lb_config::Compression::None,
        }
    }
}
