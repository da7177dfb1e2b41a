//! The configuration's shape: one struct per YAML block, with the defaults a block gets when it is left out.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Deserializer, Serialize};

use super::{ConfigError, Dur, invalid};
use crate::signal::Signal;

/// An empty key (`grpc:`) means "on, with defaults", as in the Collector.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

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
    /// The other load-balancer replicas (see [`super::Peers`]).
    #[serde(default)]
    pub peers: Option<super::Peers>,
    /// How long SIGTERM waits for requests in flight before exiting.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: Dur,
    /// Warnings of the Collector keys that were accepted and ignored (see [`super::compat`]).
    #[serde(skip)]
    pub(super) ignored: Vec<String>,
}

fn default_drain_timeout() -> Dur {
    Dur::secs(20)
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Receivers {
    #[serde(default)]
    pub otlp: OtlpReceiver,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiver {
    #[serde(default)]
    pub protocols: Protocols,
    /// Bearer-token authentication of clients, on both protocols.
    #[serde(default)]
    pub auth: Option<ReceiverAuth>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverAuth {
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<String>,
}

/// TLS of a receiver; with `client_ca_file`, mutual TLS.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    pub cert_file: String,
    pub key_file: String,
    #[serde(default)]
    pub client_ca_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "present")]
    pub grpc: Option<GrpcReceiver>,
    #[serde(default, deserialize_with = "present")]
    pub http: Option<HttpReceiver>,
}

impl Default for Protocols {
    fn default() -> Self {
        Protocols { grpc: Some(GrpcReceiver::default()), http: Some(HttpReceiver::default()) }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcReceiver {
    pub endpoint: SocketAddr,
    /// Largest decompressed request, in MiB.
    pub max_recv_msg_size_mib: u32,
    /// Close connections older than this (GOAWAY, ±10% jitter) so clients spread over replicas; 0s = never.
    pub max_connection_age: Dur,
    /// How long a closing connection may finish its requests.
    pub max_connection_age_grace: Dur,
    pub tls: Option<ServerTls>,
}

impl Default for GrpcReceiver {
    fn default() -> Self {
        GrpcReceiver {
            endpoint: SocketAddr::from(([0, 0, 0, 0], 4317)),
            max_recv_msg_size_mib: 16,
            max_connection_age: Dur::secs(0),
            max_connection_age_grace: Dur::secs(10),
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpReceiver {
    pub endpoint: SocketAddr,
    /// Largest request body as sent (compressed), in bytes.
    pub max_request_body_size: usize,
    /// Largest request body after decompression, in bytes.
    pub max_decompressed_body_size: usize,
    pub tls: Option<ServerTls>,
}

impl Default for HttpReceiver {
    fn default() -> Self {
        HttpReceiver {
            endpoint: SocketAddr::from(([0, 0, 0, 0], 4318)),
            max_request_body_size: 20 << 20,
            max_decompressed_body_size: 64 << 20,
            tls: None,
        }
    }
}

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

/// `ack: delivered` (default): a request is acknowledged after every backend accepted its part. `ack: queued`: it
/// is acknowledged once written to the write-ahead log in `storage` (fsynced per `fsync`), delivered from there in
/// the background with unbounded retries, and replayed after a restart. Pending records are also held in memory,
/// so `max_size_mib` bounds both disk and memory.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DurableQueue {
    pub ack: AckMode,
    /// Directory of the write-ahead log (`ack: queued`).
    pub storage: Option<String>,
    pub max_size_mib: u64,
    pub segment_size_mib: u64,
    pub fsync: FsyncMode,
    /// Group-commit window of `fsync: interval`.
    pub fsync_interval: Dur,
    /// Records delivered at the same time.
    pub max_concurrent_deliveries: usize,
}

impl Default for DurableQueue {
    fn default() -> Self {
        DurableQueue {
            ack: AckMode::Delivered,
            storage: None,
            max_size_mib: 256,
            segment_size_mib: 16,
            fsync: FsyncMode::Always,
            fsync_interval: Dur::millis(5),
            max_concurrent_deliveries: 64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    Delivered,
    Queued,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    /// Every batch of appends is fsynced before its requests are acknowledged (survives a machine crash).
    Always,
    /// Appends within `fsync_interval` are fsynced together, then acknowledged.
    Interval,
    /// Never fsynced: survives a process crash, not a machine crash.
    Never,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    #[serde(default)]
    pub otlp: OtlpExporter,
}

/// How each backend is called.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpExporter {
    /// Timeout of one attempt to one backend.
    pub timeout: Dur,
    pub compression: Compression,
    /// The compression's level (the Collector's `compression_params`).
    pub compression_params: CompressionParams,
    pub headers: BTreeMap<String, String>,
    pub tls: ClientTls,
    /// Per-backend concurrency and queue bound.
    pub sending_queue: EndpointQueue,
}

/// Per-backend sending: at most `num_consumers` requests in flight, at most `queue_size` more waiting, counted in
/// `sizer` units (parts, their items, or their bytes); a part that finds the queue full fails with
/// RESOURCE_EXHAUSTED and is retried. `enabled: false` removes both bounds. Parts waiting together leave as one
/// request (`coalesce`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointQueue {
    pub enabled: bool,
    pub num_consumers: usize,
    pub queue_size: usize,
    pub sizer: Sizer,
    pub coalesce: Coalesce,
}

/// Parts of concurrent requests bound for the same backend that wait at the same moment (for a sending slot, or
/// for the scheduler's next turn) are sent as one request of at most `max_bytes` (uncompressed; a larger part goes
/// alone). Nothing waits on purpose: coalescing adds no latency. `enabled: false` sends every part on its own.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Coalesce {
    pub enabled: bool,
    pub max_bytes: usize,
}

impl Default for Coalesce {
    fn default() -> Self {
        // Well below the 4 MiB a Collector's OTLP receiver takes by default.
        Coalesce { enabled: true, max_bytes: 1 << 20 }
    }
}

impl Default for EndpointQueue {
    fn default() -> Self {
        EndpointQueue {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            sizer: Sizer::Requests,
            coalesce: Coalesce::default(),
        }
    }
}

impl Default for OtlpExporter {
    fn default() -> Self {
        OtlpExporter {
            timeout: Dur::secs(5),
            compression: Compression::Gzip,
            compression_params: CompressionParams::default(),
            headers: BTreeMap::new(),
            tls: ClientTls::default(),
            sending_queue: EndpointQueue::default(),
        }
    }
}

/// What `queue_size` counts, as the Collector's `sending_queue.sizer`: parts (one per backend per incoming
/// request), their items (spans, data points, log records), or their encoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sizer {
    Requests,
    Items,
    Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[serde(alias = "")]
    None,
    Gzip,
    Zstd,
}

/// `level`: gzip 1 (fastest) to 9 (smallest), unset or -1 for zlib's default 6; zstd 1 to 22, unset for 3. Not
/// set with `compression: none`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionParams {
    pub level: Option<i32>,
}

/// TLS towards the backends, as the Collector reads it: TLS unless `insecure: true` (default false) and no
/// `ca_file`; verified against `ca_file` (or the system's roots), with a client certificate (`cert_file`,
/// `key_file`) for mutual TLS; TLS 1.2 and 1.3 within `min_version` and `max_version`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTls {
    pub insecure: bool,
    pub insecure_skip_verify: bool,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name_override: Option<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
}

/// TLS versions as the Collector names them, oldest first; otlp-lb speaks the last two.
const TLS_VERSIONS: [&str; 4] = ["1.0", "1.1", "1.2", "1.3"];

impl ClientTls {
    /// Plaintext: `insecure: true` and no CA to verify with (the Collector's rule: a CA turns TLS on).
    pub fn plaintext(&self) -> bool {
        self.insecure && self.ca_file.is_none()
    }

    /// Which of TLS 1.2 and 1.3 `min_version` and `max_version` allow (both when unset).
    pub fn protocol_versions(&self) -> Result<(bool, bool), String> {
        let index = |key: &str, v: &Option<String>, unset: usize| match v.as_deref().map(str::trim) {
            None | Some("") => Ok(unset),
            Some(v) => TLS_VERSIONS
                .iter()
                .position(|t| *t == v)
                .ok_or_else(|| format!("{key}: {v:?} is not a TLS version; one of {}", TLS_VERSIONS.join(", "))),
        };
        let min = index("min_version", &self.min_version, 0)?;
        let max = index("max_version", &self.max_version, TLS_VERSIONS.len() - 1)?;
        let (tls12, tls13) = ((min..=max).contains(&2), (min..=max).contains(&3));
        if !tls12 && !tls13 {
            return Err("min_version and max_version leave no version otlp-lb speaks (1.2, 1.3)".to_string());
        }
        Ok((tls12, tls13))
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

/// Where the backends come from. Exactly one resolver.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Resolver {
    #[serde(default, rename = "static")]
    pub static_: Option<StaticResolver>,
    #[serde(default)]
    pub dns: Option<DnsResolver>,
    #[serde(default)]
    pub k8s: Option<K8sResolver>,
    #[serde(default)]
    pub aws_cloud_map: Option<AwsCloudMapResolver>,
}

impl Resolver {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let set = [self.static_.is_some(), self.dns.is_some(), self.k8s.is_some(), self.aws_cloud_map.is_some()];
        match set.iter().filter(|s| **s).count() {
            0 => return Err(invalid("loadbalancing.resolver", "configure one of static, dns, k8s, aws_cloud_map")),
            1 => {}
            _ => {
                return Err(invalid("loadbalancing.resolver", "configure only one of static, dns, k8s, aws_cloud_map"));
            }
        }
        if let Some(s) = &self.static_ {
            if s.hostnames.is_empty() {
                return Err(invalid(
                    "loadbalancing.resolver.static.hostnames",
                    "the pool is empty: list at least one backend",
                ));
            }
            let members = s.members()?;
            match &s.weights {
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
                Weights::InOrder(list) if list.len() != s.hostnames.len() => {
                    return Err(invalid(
                        "loadbalancing.resolver.static.weights",
                        format!(
                            "{} weights for {} hostnames: give one per hostname, in the hostnames' order",
                            list.len(),
                            s.hostnames.len()
                        ),
                    ));
                }
                Weights::InOrder(_) => {}
            }
        }
        if let Some(d) = &self.dns
            && d.hostname.trim().is_empty()
        {
            return Err(invalid("loadbalancing.resolver.dns.hostname", "must not be empty"));
        }
        if let Some(k) = &self.k8s
            && k.service.trim().is_empty()
        {
            return Err(invalid("loadbalancing.resolver.k8s.service", "must not be empty"));
        }
        if let Some(c) = &self.aws_cloud_map {
            c.validate()?;
        }
        Ok(())
    }
}

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
    #[serde(default)]
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
    fn validate(&self) -> Result<(), ConfigError> {
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
            affinity_window: Dur::secs(30),
            affinity_max_traces: 1_000_000,
        }
    }
}

impl Routing {
    pub fn get(&self, signal: Signal) -> Option<&str> {
        match signal {
            Signal::Traces => self.traces.as_deref(),
            Signal::Metrics => self.metrics.as_deref(),
            Signal::Logs => self.logs.as_deref(),
        }
    }
}

/// Bounds on what the load balancer holds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Budget for request data in flight, in MiB; a request that does not fit is refused with
    /// RESOURCE_EXHAUSTED / HTTP 429 and Retry-After.
    pub memory_limit_mib: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_limit_mib: 256 }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    #[serde(default)]
    pub metrics: MetricsTelemetry,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsTelemetry {
    /// Address of `/metrics`, `/healthz`, `/readyz`, `/debug/pool` and the status page (`/`, `/api/v1/status`).
    pub address: SocketAddr,
}

impl Default for MetricsTelemetry {
    fn default() -> Self {
        MetricsTelemetry { address: SocketAddr::from(([0, 0, 0, 0], 8888)) }
    }
}
