//! `spec.loadBalancer`: the otlp-lb data plane's tier, its scaling and its optional Collector sidecar.

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use otlp_lb_config::{GZIP_LEVELS, ZSTD_LEVELS};

use super::rules::{self, DURATION_RULE};
use super::{Compression, DurableQueueSpec, QueueSpec, RetrySpec, RoutingSpec, TlsSpec, free_form_object};

/// The load-balancing tier.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(self.routing.traces == 'attributes' || self.routing.metrics == 'attributes' || self.routing.logs == 'attributes') || size(self.routingAttributes) > 0").message(rules::ROUTING_ATTRIBUTES_NEEDED),
    validation = Rule::new(rules::compression_level_rule()).message(rules::compression_level().as_str())
)]
pub struct LoadBalancerSpec {
    /// Number of load-balancer replicas. Ignored when `autoscaling` is set. With two or more (or autoscaling that
    /// can reach two), the operator also makes a headless Service `<name>-peers` and a token Secret, through
    /// which the replicas agree when a new ring takes effect and exchange the traces they hold, so that a trace
    /// whose requests reach several replicas keeps one backend.
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
    #[x_kube(validation = Rule::new(DURATION_RULE).message(rules::duration("loadBalancer.timeout").as_str()))]
    pub timeout: String,

    /// Compression of exports to the backends.
    #[serde(default)]
    pub compression: Compression,

    /// Level of that compression: gzip 1 (fastest) to 9 (smallest), zstd 1 to 22. Absent: gzip 6 (as
    /// the Collector), zstd 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = *GZIP_LEVELS.start(), max = *ZSTD_LEVELS.end()))]
    pub compression_level: Option<i32>,

    /// TLS of the connections to the backends.
    #[serde(default)]
    pub tls: TlsSpec,

    /// Clients' gRPC connections are closed after this age so that they reconnect and spread over
    /// new load-balancer replicas, e.g. 300s.
    #[serde(default = "default_max_connection_age")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(rules::duration("loadBalancer.maxConnectionAge").as_str()))]
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

fn default_lb_replicas() -> i32 {
    2
}
fn default_timeout() -> String {
    "5s".into()
}
fn default_max_connection_age() -> String {
    "300s".into()
}

/// A HorizontalPodAutoscaler for the load-balancer tier.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message(rules::AUTOSCALING_BOUNDS))]
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
#[x_kube(validation = Rule::new("!(has(self.minAvailable) && has(self.maxUnavailable))").message(rules::PDB_ONE_OF))]
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
