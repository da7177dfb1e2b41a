//! The status the operator writes: the pool, the load-balancer tier and the hash ring as observed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
