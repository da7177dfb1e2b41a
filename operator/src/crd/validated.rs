//! A LoadBalancedCollector that passed [`crate::validate::validate`], with what validation read from it: the
//! only input of [`crate::build::build`]. Validation does the reading once (which backends, the data plane's
//! settings in the data plane's own types, how long a backend pod drains); build turns that into objects and
//! copies the pod settings (images, resources, scheduling, scaling) from the resource as they are.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use otlp_lb_config::{Dur, DurableQueue, OtlpExporter, Retry, RoutingPolicy};
use serde_json::{Map, Value};

use super::LoadBalancedCollector;

/// A resource that can be built. Only [`crate::validate::validate`] makes one.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ValidatedCluster<'a> {
    /// The resource, for the settings build copies as they are.
    pub lbc: &'a LoadBalancedCollector,
    /// Its name.
    pub name: &'a str,
    /// Its namespace, and so every child's.
    pub namespace: &'a str,
    /// The controller owner reference every child carries.
    pub owner_ref: OwnerReference,
    /// Where telemetry goes.
    pub backends: Backends<'a>,
    /// The data plane's settings.
    pub load_balancer: LoadBalancerSettings,
}

/// The backend pool: run by the operator, or an existing Service.
#[derive(Clone, Debug, PartialEq)]
pub enum Backends<'a> {
    /// The operator runs a pool of Collectors with this configuration.
    Pool {
        /// The Collectors' configuration as the spec gives it.
        config: &'a Map<String, Value>,
        /// A backend pod's preStop sleep and termination grace period, in seconds.
        lifetime: (i64, i64),
    },
    /// The ready endpoints of an existing Service, on this port.
    Service { name: &'a str, port: u16 },
}

/// `spec.loadBalancer` read into the data plane's configuration types.
#[derive(Clone, Debug)]
pub struct LoadBalancerSettings {
    /// The routing key of each signal and the attributes of the `attributes` key.
    pub routing: RoutingPolicy,
    /// Age after which clients' gRPC connections are closed.
    pub max_connection_age: Dur,
    /// How each backend is called; TLS is left to build, which knows where the Secret is mounted.
    pub exporter: OtlpExporter,
    /// Retries of failed exports.
    pub retry: Retry,
    /// The write-ahead log, when the durable queue is enabled.
    pub durable_queue: Option<DurableQueue>,
    /// Budget of request data in flight, in MiB.
    pub memory_limit_mib: u32,
}
