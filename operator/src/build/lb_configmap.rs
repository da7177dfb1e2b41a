//! ConfigMap `<name>`: the data plane's configuration (key `config.yaml`), generated from typed
//! structs, and the sidecar Collector's configuration (key `collector.yaml`) when there is one.

use k8s_openapi::api::core::v1::ConfigMap;
use serde::Serialize;

use super::collector_config::{self, DATA_PLANE_INTERNAL_GRPC_PORT, DATA_PLANE_INTERNAL_HTTP_PORT};
use super::drain::AFFINITY_WINDOW_SECONDS;
use super::labels::Component;
use super::lb_peer_service::{self, PEER_PORT, PEER_TOKEN_DIR, PEER_TOKEN_KEY};
use super::{Owner, string_map, to_yaml};
use crate::crd::{
    Compression, DURABLE_QUEUE_DIR, Fsync, LoadBalancerSpec, LogsRouting, METRICS_PORT, MetricsRouting, OTLP_GRPC_PORT,
    OTLP_HTTP_PORT, TraceRouting,
};
use crate::error::Result;

/// Key of the data plane configuration.
pub const DATA_PLANE_KEY: &str = "config.yaml";
/// Key of the sidecar Collector configuration.
pub const SIDECAR_KEY: &str = "collector.yaml";
/// Directory the ConfigMap is mounted at in the data plane container.
pub const CONFIG_DIR: &str = "/etc/otlp-lb";
/// Directory the TLS Secret is mounted at in the data plane container (beside, not inside, the
/// ConfigMap mount).
pub const TLS_DIR: &str = "/etc/otlp-lb-tls";

/// The otlp-lb data plane configuration file. Key names follow the data plane's configuration
/// model (the Collector's `loadbalancing` exporter block), which rejects unknown keys.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct DataPlaneConfig {
    /// Where the data plane receives OTLP.
    pub receivers: Receivers,
    /// Where and how it sends to the backends.
    pub loadbalancing: LoadBalancing,
    /// Routing key per signal.
    pub routing: Routing,
    /// Bounds on what the data plane holds.
    pub limits: Limits,
    /// The data plane's own telemetry.
    pub telemetry: Telemetry,
    /// The other load-balancer replicas, when there can be more than one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<Peers>,
}

/// `peers`: the replicas find each other through the headless Service and authenticate with the shared token.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Peers {
    /// Where the peer API listens.
    pub endpoint: String,
    /// The headless Service's name and the peer port.
    pub dns: PeersDns,
    /// The token file.
    pub auth: PeersAuth,
}

/// `peers.dns`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct PeersDns {
    /// The headless Service's DNS name.
    pub hostname: String,
    /// The peer port.
    pub port: i32,
}

/// `peers.auth`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct PeersAuth {
    /// The mounted Secret's token.
    pub bearer_token_file: String,
}

/// `limits`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Limits {
    /// Budget of request data in flight, in MiB.
    pub memory_limit_mib: u32,
}

/// In-flight budget when the container has no memory limit (the data plane's default).
pub const DEFAULT_MEMORY_LIMIT_MIB: u32 = 256;

/// `receivers`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Receivers {
    /// The OTLP receiver.
    pub otlp: OtlpReceiver,
}

/// `receivers.otlp`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct OtlpReceiver {
    /// Its protocols.
    pub protocols: Protocols,
}

/// `receivers.otlp.protocols`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Protocols {
    /// OTLP/gRPC.
    pub grpc: GrpcProtocol,
    /// OTLP/HTTP.
    pub http: HttpProtocol,
}

/// `receivers.otlp.protocols.grpc`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct GrpcProtocol {
    /// Listen address.
    pub endpoint: String,
    /// Connections are closed after this age so clients rebalance.
    pub max_connection_age: String,
}

/// `receivers.otlp.protocols.http`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct HttpProtocol {
    /// Listen address.
    pub endpoint: String,
}

/// `loadbalancing`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct LoadBalancing {
    /// Attributes forming the key of signals routed by `attributes`.
    pub routing_attributes: Vec<String>,
    /// How to send to a backend.
    pub protocol: ExportProtocol,
    /// How to find the backends.
    pub resolver: Resolver,
    /// Retries of failed exports.
    pub retry_on_failure: RetryOnFailure,
    /// Durable acknowledgement, when `durableQueue` is enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sending_queue: Option<DurableAck>,
}

/// `loadbalancing.sending_queue`: acknowledge once in the write-ahead log.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct DurableAck {
    /// Always `queued`.
    pub ack: &'static str,
    /// Directory of the log: the durable-queue volume's mount.
    pub storage: String,
    /// Bound of the log, in MiB.
    pub max_size_mib: i32,
    /// When appends are fsynced.
    pub fsync: Fsync,
}

/// `loadbalancing.protocol`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct ExportProtocol {
    /// OTLP/gRPC export settings.
    pub otlp: OtlpExport,
}

/// `loadbalancing.protocol.otlp`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct OtlpExport {
    /// Timeout of one export.
    pub timeout: String,
    /// gzip, zstd or none.
    pub compression: &'static str,
    /// The compression's level, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_params: Option<CompressionParams>,
    /// TLS settings.
    pub tls: Tls,
    /// Per-backend bounds of requests in flight and waiting.
    pub sending_queue: SendingQueue,
}

/// `loadbalancing.protocol.otlp.compression_params`, with the Collector's key name.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct CompressionParams {
    /// gzip 1-9, zstd 1-22.
    pub level: i32,
}

/// `loadbalancing.protocol.otlp.tls`, with the Collector's key names.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Tls {
    /// Plaintext.
    pub insecure: bool,
    /// CA bundle the backends' certificates are checked against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Client certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// Client key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// Name checked in the backends' certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name_override: Option<String>,
}

/// `loadbalancing.resolver`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Resolver {
    /// Kubernetes EndpointSlices of a Service.
    pub k8s: K8sResolver,
}

/// `loadbalancing.resolver.k8s`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct K8sResolver {
    /// `name.namespace` of the Service.
    pub service: String,
    /// Endpoint ports to send to.
    pub ports: Vec<i32>,
}

/// `routing`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Routing {
    /// Key of traces.
    pub traces: TraceRouting,
    /// Key of metrics.
    pub metrics: MetricsRouting,
    /// Key of logs.
    pub logs: LogsRouting,
    /// How long a trace keeps the backend it was first sent to after the pool changes (the backends' pods
    /// drain for as long).
    pub affinity_window: String,
}

/// `loadbalancing.protocol.otlp.sending_queue`, with the Collector's key names.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct SendingQueue {
    /// Queue or send synchronously.
    pub enabled: bool,
    /// Consumers draining the queue.
    pub num_consumers: i32,
    /// Maximum batches queued.
    pub queue_size: i32,
}

/// `retry_on_failure`, with the Collector's key names.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct RetryOnFailure {
    /// Retry or drop.
    pub enabled: bool,
    /// First wait.
    pub initial_interval: String,
    /// Longest wait.
    pub max_interval: String,
    /// Give up after.
    pub max_elapsed_time: String,
}

/// `telemetry`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Telemetry {
    /// Metrics endpoint.
    pub metrics: MetricsTelemetry,
}

/// `telemetry.metrics`: also serves `/healthz` and `/readyz`.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct MetricsTelemetry {
    /// Listen address.
    pub address: String,
}

/// The data plane configuration of the LoadBalancedCollector `owner`.
pub fn data_plane_config(owner: &Owner<'_>) -> DataPlaneConfig {
    let lb: &LoadBalancerSpec = &owner.lbc.spec.load_balancer;
    let (grpc, http) = if lb.collector.is_some() {
        (format!("127.0.0.1:{DATA_PLANE_INTERNAL_GRPC_PORT}"), format!("127.0.0.1:{DATA_PLANE_INTERNAL_HTTP_PORT}"))
    } else {
        (format!("0.0.0.0:{OTLP_GRPC_PORT}"), format!("0.0.0.0:{OTLP_HTTP_PORT}"))
    };
    let (service, port) = match &owner.lbc.spec.backends.service_ref {
        Some(service_ref) => (service_ref.name.as_str(), service_ref.port),
        None => (owner.names.backends.as_str(), OTLP_GRPC_PORT),
    };
    let tls = if lb.tls.insecure {
        Tls { insecure: true, ca_file: None, cert_file: None, key_file: None, server_name_override: None }
    } else {
        let secret = lb.tls.secret_name.is_some();
        let client = secret && lb.tls.client_certificate;
        let file = |name: &str, wanted: bool| wanted.then(|| format!("{TLS_DIR}/{name}"));
        Tls {
            insecure: false,
            ca_file: file("ca.crt", secret),
            cert_file: file("tls.crt", client),
            key_file: file("tls.key", client),
            server_name_override: lb.tls.server_name.clone(),
        }
    };
    DataPlaneConfig {
        receivers: Receivers {
            otlp: OtlpReceiver {
                protocols: Protocols {
                    grpc: GrpcProtocol { endpoint: grpc, max_connection_age: lb.max_connection_age.clone() },
                    http: HttpProtocol { endpoint: http },
                },
            },
        },
        loadbalancing: LoadBalancing {
            routing_attributes: lb.routing_attributes.clone(),
            protocol: ExportProtocol {
                otlp: OtlpExport {
                    timeout: lb.timeout.clone(),
                    compression: match lb.compression {
                        Compression::Gzip => "gzip",
                        Compression::Zstd => "zstd",
                        Compression::None => "none",
                    },
                    compression_params: lb.compression_level.map(|level| CompressionParams { level }),
                    tls,
                    sending_queue: SendingQueue {
                        enabled: lb.queue.enabled,
                        num_consumers: lb.queue.num_consumers,
                        queue_size: lb.queue.queue_size,
                    },
                },
            },
            resolver: Resolver {
                k8s: K8sResolver { service: format!("{service}.{}", owner.namespace), ports: vec![port] },
            },
            retry_on_failure: RetryOnFailure {
                enabled: lb.retry.enabled,
                initial_interval: lb.retry.initial_interval.clone(),
                max_interval: lb.retry.max_interval.clone(),
                max_elapsed_time: lb.retry.max_elapsed_time.clone(),
            },
            sending_queue: lb.durable_queue.as_ref().filter(|q| q.enabled).map(|q| DurableAck {
                ack: "queued",
                storage: DURABLE_QUEUE_DIR.to_string(),
                max_size_mib: q.max_size_mib,
                fsync: q.fsync,
            }),
        },
        routing: Routing {
            traces: lb.routing.traces,
            metrics: lb.routing.metrics,
            logs: lb.routing.logs,
            affinity_window: format!("{AFFINITY_WINDOW_SECONDS}s"),
        },
        limits: Limits { memory_limit_mib: memory_budget_mib(lb) },
        telemetry: Telemetry { metrics: MetricsTelemetry { address: format!("0.0.0.0:{METRICS_PORT}") } },
        peers: lb_peer_service::wanted(owner).then(|| Peers {
            endpoint: format!("0.0.0.0:{PEER_PORT}"),
            dns: PeersDns { hostname: lb_peer_service::hostname(owner), port: PEER_PORT },
            auth: PeersAuth { bearer_token_file: format!("{PEER_TOKEN_DIR}/{PEER_TOKEN_KEY}") },
        }),
    }
}

/// Half the data plane container's memory limit, in MiB (at least 16), for request data in flight;
/// the data plane's default when there is no limit.
pub fn memory_budget_mib(lb: &LoadBalancerSpec) -> u32 {
    let limit = lb
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
        .and_then(|q| quantity_bytes(&q.0));
    match limit {
        Some(bytes) => u32::try_from(bytes / 2 / (1 << 20)).unwrap_or(u32::MAX).max(16),
        None => DEFAULT_MEMORY_LIMIT_MIB,
    }
}

/// Bytes of a Kubernetes memory quantity such as `512Mi`, `1Gi`, `500M` or `1073741824`.
pub fn quantity_bytes(quantity: &str) -> Option<u64> {
    let quantity = quantity.trim();
    let split = quantity.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * multiplier;
    // Truncation is intended: budgets are whole bytes.
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

/// The ConfigMap of the load-balancer tier.
pub fn build(owner: &Owner<'_>) -> Result<ConfigMap> {
    let mut data = string_map([(DATA_PLANE_KEY, to_yaml("the data plane configuration", &data_plane_config(owner))?)]);
    if let Some(sidecar) = &owner.lbc.spec.load_balancer.collector {
        let config = collector_config::sidecar_config(&sidecar.config);
        data.insert(SIDECAR_KEY.to_string(), to_yaml("the sidecar Collector configuration", &config)?);
    }
    Ok(ConfigMap {
        metadata: owner.meta(&owner.names.load_balancer, Component::LoadBalancer),
        data: Some(data),
        ..ConfigMap::default()
    })
}
