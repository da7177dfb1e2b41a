//! The `LoadBalancedCollector` custom resource: its spec, its status and the CRD generated from them.
//!
//! Doc comments become the descriptions `kubectl explain` shows; `#[x_kube(validation)]` rules become
//! CEL `x-kubernetes-validations` whose messages are written for the person who applied the resource.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod durable_queue;
pub use durable_queue::{
    DURABLE_QUEUE_DIR, DurableQueueSpec, DurableStorageSpec, EmptyDirStorage, Fsync, MIN_DURABLE_QUEUE_MIB,
};

/// API group of the resource.
pub const GROUP: &str = "otlp-lb.dev";
/// The OpenTelemetry Collector image the backend pool and the sidecar run unless the spec names one.
pub const DEFAULT_COLLECTOR_IMAGE: &str = "otel/opentelemetry-collector-contrib:0.160.0";
/// Port the backends receive OTLP/gRPC on, and the port the load balancer targets.
pub const OTLP_GRPC_PORT: i32 = 4317;
/// Port the load balancer receives OTLP/HTTP on.
pub const OTLP_HTTP_PORT: i32 = 4318;
/// Port of the data plane's metrics, `/healthz` and `/readyz`.
pub const METRICS_PORT: i32 = 8888;

/// The image of the data plane matching this operator's version.
pub fn default_load_balancer_image() -> String {
    format!("ghcr.io/otlp-lb/otlp-lb:{}", env!("CARGO_PKG_VERSION"))
}

/// A load-balanced tier of OpenTelemetry Collectors: an OTLP load balancer (the otlp-lb data plane)
/// that routes telemetry by consistent hashing (trace ID, service, ...) to a pool of Collectors,
/// so that all spans of a trace, or all points of a metric stream, reach the same Collector.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "otlp-lb.dev",
    version = "v1alpha1",
    kind = "LoadBalancedCollector",
    namespaced,
    shortname = "lbc",
    category = "otlp-lb",
    status = "LoadBalancedCollectorStatus",
    derive = "PartialEq",
    doc = "A load-balanced tier of OpenTelemetry Collectors: an OTLP load balancer that routes telemetry by consistent hashing to a pool of Collectors.",
    scale(
        spec_replicas_path = ".spec.backends.replicas",
        status_replicas_path = ".status.backends.ready",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Backends", type_ = "integer", json_path = ".status.backends.ready", description = "Backend Collectors ready"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".status.backends.desired", description = "Backend Collectors desired"),
    printcolumn(name = "In-Ring", type_ = "integer", json_path = ".status.backends.inRing", description = "Backends in the load balancer's hash ring", priority = "1"),
    printcolumn(name = "LB-Ready", type_ = "integer", json_path = ".status.loadBalancer.ready", description = "Load balancer replicas ready"),
    printcolumn(name = "Ring", type_ = "integer", json_path = ".status.ring.version", description = "Version of the hash ring's member set: it counts every change of the backends in the ring", priority = "1"),
    printcolumn(name = "Rebalanced", type_ = "date", json_path = ".status.ring.lastRebalanceTime", description = "When the ring's members last changed", priority = "1"),
    printcolumn(name = "Routing", type_ = "string", json_path = ".status.routing", description = "Routing key per signal"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Ready condition"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 54").message("metadata.name must be at most 54 characters: the operator names a Service <name>-backends, and Service names are limited to 63 characters"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must start with a lowercase letter and contain only lowercase letters, digits and '-': it names Services")
)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancedCollectorSpec {
    /// The pool the load balancer spreads telemetry over: either a pool of Collectors the operator
    /// runs (set `config`), or an existing Service (set `serviceRef`).
    pub backends: BackendsSpec,

    /// The load-balancing tier: the otlp-lb data plane that receives OTLP and routes it to the backends.
    #[serde(default)]
    pub load_balancer: LoadBalancerSpec,
}

/// The backend pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.config) != has(self.serviceRef)").message("set exactly one of backends.config (the operator runs a pool of Collectors with this configuration) or backends.serviceRef (balance over an existing Service)"),
    validation = Rule::new("!has(self.serviceRef) || !(has(self.image) || has(self.resources) || has(self.env) || has(self.nodeSelector) || has(self.tolerations) || has(self.affinity))").message("backends.image, resources, env, nodeSelector, tolerations and affinity configure a pool the operator runs: remove them when backends.serviceRef points at a pool you run yourself")
)]
pub struct BackendsSpec {
    /// Number of Collector replicas in the pool the operator runs. `kubectl scale lbc NAME --replicas N`
    /// and a HorizontalPodAutoscaler targeting this resource set it. Ignored with `serviceRef`.
    #[serde(default = "default_backend_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,

    /// Collector image of the pool. Defaults to a pinned OpenTelemetry Collector contrib image
    /// (otel/opentelemetry-collector-contrib:0.160.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// Configuration of the pool's Collectors (receivers, processors, exporters, service.pipelines),
    /// as in a Collector config file. The operator makes sure an `otlp` receiver listens for gRPC on
    /// 0.0.0.0:4317, the port the load balancer sends to, and is in every pipeline, and adds a
    /// `health_check` extension on port 13133 for the readiness probe.
    ///
    /// A pod leaving the pool (scale-in, a rolling update) drains: the load balancer goes on sending
    /// it the traces it already holds for its trace affinity window (30s), and no new ones. Its
    /// preStop sleep lasts that window plus the longest `decision_wait` of the config's
    /// `tail_sampling` processors (the Collector's default of 30s where one does not set it), and its
    /// terminationGracePeriodSeconds 30s more for the Collector to shut down and flush.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub config: Option<Map<String, Value>>,

    /// Compute resources of each Collector. Set CPU requests when an autoscaler sizes the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Environment variables of the Collector container, e.g. credentials the config reads with `${env:NAME}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,

    /// Node labels the Collector pods must be scheduled on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Tolerations of the Collector pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Affinity rules of the Collector pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Balance over an existing Service in this namespace instead of a pool the operator runs,
    /// e.g. the gateway tier of a two-tier layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_ref: Option<ServiceRef>,
}

fn default_backend_replicas() -> i32 {
    2
}

/// A Service in the namespace of the LoadBalancedCollector whose ready endpoints form the pool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRef {
    /// Name of the Service.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,

    /// Port the backend pods receive OTLP/gRPC on (the Service's targetPort, as the EndpointSlices list it).
    #[serde(default = "default_otlp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

fn default_otlp_port() -> i32 {
    OTLP_GRPC_PORT
}

/// The load-balancing tier.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(self.routing.traces == 'attributes' || self.routing.metrics == 'attributes' || self.routing.logs == 'attributes') || size(self.routingAttributes) > 0").message("loadBalancer.routingAttributes must name at least one attribute when loadBalancer.routing routes a signal by 'attributes'"),
    validation = Rule::new("!has(self.compressionLevel) || (has(self.compression) && self.compression == 'zstd') || ((!has(self.compression) || self.compression == 'gzip') && self.compressionLevel <= 9)").message("loadBalancer.compressionLevel must be 1 to 9 with gzip, 1 to 22 with zstd, and absent with compression none")
)]
pub struct LoadBalancerSpec {
    /// Number of load-balancer replicas. Ignored when `autoscaling` is set.
    #[serde(default = "default_lb_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,

    /// Image of the otlp-lb data plane. Defaults to the image matching the operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// Compute resources of the data plane container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// What each signal is routed by: everything with the same key reaches the same backend.
    #[serde(default)]
    pub routing: RoutingSpec,

    /// Attribute names whose values form the routing key of signals routed by `attributes`.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub routing_attributes: Vec<String>,

    /// The queue in front of each backend (bounds requests in flight and waiting per backend).
    #[serde(default)]
    pub queue: QueueSpec,

    /// Retries of failed exports to a backend.
    #[serde(default)]
    pub retry: RetrySpec,

    /// Timeout of one export to a backend, e.g. 5s.
    #[serde(default = "default_timeout")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("loadBalancer.timeout must be a duration such as 500ms, 5s, 1m or 1h"))]
    pub timeout: String,

    /// Compression of exports to the backends.
    #[serde(default)]
    pub compression: Compression,

    /// Level of that compression: gzip 1 (fastest) to 9 (smallest), zstd 1 to 22. Absent: gzip 6 (as
    /// the Collector), zstd 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 22))]
    pub compression_level: Option<i32>,

    /// TLS of the connections to the backends.
    #[serde(default)]
    pub tls: TlsSpec,

    /// Clients' gRPC connections are closed after this age so that they reconnect and spread over
    /// new load-balancer replicas, e.g. 300s.
    #[serde(default = "default_max_connection_age")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("loadBalancer.maxConnectionAge must be a duration such as 30s, 5m or 1h"))]
    pub max_connection_age: String,

    /// Size the load-balancer tier with a HorizontalPodAutoscaler on CPU. Remove to stop autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// Protect the load-balancer tier with a PodDisruptionBudget. Remove to delete it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_disruption_budget: Option<PodDisruptionBudgetSpec>,

    /// A Collector sidecar in each load-balancer pod: it receives OTLP on 4317/4318, runs your
    /// receivers and processors (memory_limiter, resource, ...) and exports to the data plane over localhost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<CollectorSidecarSpec>,

    /// Durable acknowledgement through an on-disk write-ahead log in each replica. Absent or disabled: a request
    /// is acknowledged once every backend accepted its part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable_queue: Option<DurableQueueSpec>,
}

impl Default for LoadBalancerSpec {
    fn default() -> Self {
        Self {
            replicas: default_lb_replicas(),
            image: None,
            resources: None,
            routing: RoutingSpec::default(),
            routing_attributes: Vec::new(),
            queue: QueueSpec::default(),
            retry: RetrySpec::default(),
            timeout: default_timeout(),
            compression: Compression::default(),
            compression_level: None,
            tls: TlsSpec::default(),
            max_connection_age: default_max_connection_age(),
            autoscaling: None,
            pod_disruption_budget: None,
            collector: None,
            durable_queue: None,
        }
    }
}

/// CEL rule accepting the durations the data plane parses: a number and one unit.
pub const DURATION_RULE: &str = "self.matches('^[0-9]+(ms|s|m|h)$')";

fn default_lb_replicas() -> i32 {
    2
}
fn default_timeout() -> String {
    "5s".into()
}
fn default_max_connection_age() -> String {
    "300s".into()
}

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
#[x_kube(validation = Rule::new("duration(self.initialInterval) <= duration(self.maxInterval)").message("loadBalancer.retry.initialInterval must not be longer than maxInterval"))]
pub struct RetrySpec {
    /// Retry failed exports.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Wait before the first retry, e.g. 50ms.
    #[serde(default = "default_initial_interval")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("loadBalancer.retry.initialInterval must be a duration such as 500ms, 5s or 1m"))]
    pub initial_interval: String,
    /// Upper bound of the wait between retries, e.g. 1s.
    #[serde(default = "default_max_interval")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("loadBalancer.retry.maxInterval must be a duration such as 5s, 30s or 1m"))]
    pub max_interval: String,
    /// Give up on a request after this long, e.g. 10s.
    #[serde(default = "default_max_elapsed_time")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("loadBalancer.retry.maxElapsedTime must be a duration such as 60s, 5m or 1h"))]
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
    validation = Rule::new("!self.insecure || (!has(self.secretName) && !has(self.serverName) && !self.clientCertificate)").message("loadBalancer.tls.secretName, serverName and clientCertificate apply to TLS connections: set loadBalancer.tls.insecure to false to use them"),
    validation = Rule::new("!self.clientCertificate || has(self.secretName)").message("loadBalancer.tls.clientCertificate needs secretName: the Secret holding tls.crt and tls.key")
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

/// A HorizontalPodAutoscaler for the load-balancer tier.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("loadBalancer.autoscaling.minReplicas must not be greater than maxReplicas"))]
pub struct AutoscalingSpec {
    /// Fewest load-balancer replicas.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Most load-balancer replicas.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Average CPU utilization, in percent of the CPU request, the autoscaler aims for.
    #[serde(default = "default_target_cpu", rename = "targetCPUUtilizationPercentage")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

fn default_min_replicas() -> i32 {
    2
}
fn default_target_cpu() -> i32 {
    70
}

/// A PodDisruptionBudget for the load-balancer tier. With neither field set, maxUnavailable is 1.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.minAvailable) && has(self.maxUnavailable))").message("set either loadBalancer.podDisruptionBudget.minAvailable or maxUnavailable, not both"))]
pub struct PodDisruptionBudgetSpec {
    /// Load-balancer pods that must stay available during voluntary disruptions (a number or a percentage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrString>,
    /// Load-balancer pods that may be unavailable during voluntary disruptions (a number or a percentage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// A Collector container in each load-balancer pod, in front of the data plane.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollectorSidecarSpec {
    /// Collector image. Defaults to the same pinned contrib image as the backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// Collector configuration (receivers, processors, service.pipelines). The operator makes the
    /// `otlp` receiver listen on 0.0.0.0:4317 and 0.0.0.0:4318, adds an `otlp/otlp-lb` exporter to
    /// the data plane on localhost to every pipeline, and moves the sidecar's own metrics to port 8889.
    #[schemars(schema_with = "free_form_object")]
    pub config: Map<String, Value>,

    /// Compute resources of the sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Environment variables of the sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
}

/// Observed state, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancedCollectorStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, BackendsReady, LoadBalancerReady and Degraded.
    #[serde(default)]
    pub conditions: Vec<Condition>,

    /// The backend pool.
    #[serde(default)]
    pub backends: BackendsStatus,

    /// The load-balancer tier.
    #[serde(default)]
    pub load_balancer: LoadBalancerStatus,

    /// Label selector of the backend pods, used by the scale subresource (and so by autoscalers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// Routing key per signal, e.g. traces=traceID,metrics=service,logs=traceID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<String>,

    /// The load balancer's hash ring as the operator observes it from the backend Service's EndpointSlices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring: Option<RingStatus>,
}

/// The hash ring's members and its last change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RingStatus {
    /// Starts at 1 and counts every change of the ring's member set.
    #[serde(default)]
    pub version: i64,
    /// The ready backend endpoints (address:port) the ring holds, sorted.
    #[serde(default)]
    pub members: Vec<String>,
    /// When the members last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rebalance_time: Option<Time>,
    /// The last change: versions, backends before and after, endpoints added and removed, and the share of keys
    /// that moved to another backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rebalance: Option<String>,
}

/// Observed state of the backend pool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackendsStatus {
    /// Backends wanted: the replicas of the pool the operator runs, or the endpoints of the referenced Service.
    #[serde(default)]
    pub desired: i32,
    /// Backends ready.
    #[serde(default)]
    pub ready: i32,
    /// Ready endpoints of the backend Service, which the load balancer's hash ring holds.
    #[serde(default)]
    pub in_ring: i32,
}

/// Observed state of the load-balancer tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerStatus {
    /// Load-balancer replicas wanted.
    #[serde(default)]
    pub desired: i32,
    /// Load-balancer replicas ready.
    #[serde(default)]
    pub ready: i32,
}

/// Schema of a free-form Collector configuration: an object whose keys the apiserver keeps as they are.
fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// The CustomResourceDefinition of `LoadBalancedCollector`, with doc-comment line breaks unwrapped
/// in descriptions so that `kubectl explain` can wrap them itself.
pub fn crd() -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    let crd = LoadBalancedCollector::crd();
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    unwrap_descriptions(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
}

/// Joins the lines of every `description`, keeping blank-line paragraph breaks.
fn unwrap_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::String(text) if key == "description" => {
                        *text = text
                            .split("\n\n")
                            .map(|paragraph| paragraph.lines().map(str::trim).collect::<Vec<_>>().join(" "))
                            .collect::<Vec<_>>()
                            .join("\n\n");
                    }
                    _ => unwrap_descriptions(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// The CRD as the YAML document `crds/loadbalancedcollector.yaml` holds.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(&crd())
}
