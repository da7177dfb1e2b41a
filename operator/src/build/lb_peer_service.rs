//! With two or more load-balancer replicas: the headless Service `<name>-peers` through which the replicas find
//! each other (its DNS name lists every pod, ready or starting), the peer port, and where the shared token is
//! mounted. The replicas agree on ring switches and exchange the traces they hold over it, so a trace whose
//! requests reach several replicas keeps one backend through pool changes. One replica needs none of it.

use k8s_openapi::api::core::v1::Service;

use super::Owner;
use super::headless::{self, Port};
use super::labels::Component;

/// Port of the data plane's peer API.
pub const PEER_PORT: i32 = 4319;
/// Directory the peer token Secret is mounted at in the data plane container.
pub const PEER_TOKEN_DIR: &str = "/etc/otlp-lb-peers";
/// Key of the token in the Secret.
pub const PEER_TOKEN_KEY: &str = "token";

/// Whether the tier can have more than one replica.
pub fn wanted(owner: &Owner<'_>) -> bool {
    let lb = &owner.lbc.spec.load_balancer;
    lb.autoscaling.as_ref().map_or(lb.replicas, |a| a.max_replicas) >= 2
}

/// Name of the headless Service, and of the Secret holding the peers' token.
pub fn name(owner: &Owner<'_>) -> String {
    format!("{}-peers", owner.names.load_balancer)
}

/// The DNS name the replicas resolve to find each other.
pub fn hostname(owner: &Owner<'_>) -> String {
    format!("{}.{}.svc", name(owner), owner.namespace)
}

/// The headless Service of the load-balancer pods, when the tier can have more than one replica.
pub fn build(owner: &Owner<'_>) -> Option<Service> {
    // A starting replica is a peer before it is ready: it pulls the others' tables to become ready.
    let port = Port { name: "peers", number: PEER_PORT, app_protocol: "http" };
    wanted(owner).then(|| headless::service(owner, &name(owner), Component::LoadBalancer, true, port))
}
