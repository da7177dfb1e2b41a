//! Headless Service `<name>-backends`: its EndpointSlices list the ready backend Collectors, which the
//! data plane's Kubernetes resolver puts in its hash ring.

use k8s_openapi::api::core::v1::Service;

use super::Owner;
use super::headless::{self, Port};
use super::labels::Component;
use crate::crd::OTLP_GRPC_PORT;

/// The headless Service of the pool: no cluster IP, only ready pods published.
pub fn build(owner: &Owner<'_>) -> Service {
    let port = Port { name: "otlp-grpc", number: OTLP_GRPC_PORT, app_protocol: "grpc" };
    headless::service(owner, &owner.names.backends, Component::Backends, false, port)
}
