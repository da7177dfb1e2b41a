//! Headless Service `<name>-backends`: its EndpointSlices list the ready backend Collectors, which the
//! data plane's Kubernetes resolver puts in its hash ring.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Owner;
use super::labels::{Component, selector_labels};
use crate::crd::OTLP_GRPC_PORT;

/// The headless Service of the pool: no cluster IP, only ready pods published.
pub fn build(owner: &Owner<'_>) -> Service {
    Service {
        metadata: owner.meta(&owner.names.backends, Component::Backends),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(false),
            selector: Some(selector_labels(owner.name, Component::Backends)),
            ports: Some(vec![ServicePort {
                name: Some("otlp-grpc".into()),
                port: OTLP_GRPC_PORT,
                target_port: Some(IntOrString::Int(OTLP_GRPC_PORT)),
                protocol: Some("TCP".into()),
                app_protocol: Some("grpc".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
