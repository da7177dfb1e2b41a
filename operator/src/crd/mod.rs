//! The `LoadBalancedCollector` custom resource: its spec, its status and the CRD generated from them.
//!
//! Doc comments become the descriptions `kubectl explain` shows; `#[x_kube(validation)]` rules become
//! CEL `x-kubernetes-validations` whose messages are written for the person who applied the resource.

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod backends;
mod durable_queue;
mod export;
mod load_balancer;
mod routing;
pub mod rules;
mod status;
mod validated;

pub use backends::{BackendsSpec, ServiceRef};
pub use durable_queue::{DURABLE_QUEUE_DIR, DurableQueueSpec, DurableStorageSpec, EmptyDirStorage, Fsync};
pub use export::{Compression, QueueSpec, RetrySpec, TlsSpec};
pub use load_balancer::{AutoscalingSpec, CollectorSidecarSpec, LoadBalancerSpec, PodDisruptionBudgetSpec};
pub use routing::{LogsRouting, MetricsRouting, RoutingSpec, TraceRouting};
pub use rules::{DURATION_RULE, MIN_DURABLE_QUEUE_MIB};
pub use status::{BackendsStatus, LoadBalancedCollectorStatus, LoadBalancerStatus, RingStatus};
pub use validated::{Backends, LoadBalancerSettings, ValidatedCluster};

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
    validation = Rule::new(rules::name_length_rule()).message(rules::name_length().as_str()),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message(rules::NAME_PATTERN)
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

/// Schema of a free-form Collector configuration: an object whose keys the apiserver keeps as they are.
pub(crate) fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
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
