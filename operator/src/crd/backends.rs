//! `spec.backends`: the pool the load balancer spreads telemetry over, run by the operator or an existing Service.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{OTLP_GRPC_PORT, free_form_object, rules};

/// The backend pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.config) != has(self.serviceRef)").message(rules::CONFIG_XOR_SERVICE_REF),
    validation = Rule::new("!has(self.serviceRef) || !(has(self.image) || has(self.resources) || has(self.env) || has(self.nodeSelector) || has(self.tolerations) || has(self.affinity))").message(format!("backends.image, resources, env, nodeSelector, tolerations and affinity {}", rules::POOL_FIELDS_WITH_SERVICE_REF).as_str())
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
