//! Service `<name>`: where applications send OTLP (4317 gRPC, 4318 HTTP), and the data plane's metrics (8888).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Owner;
use super::labels::{Component, selector_labels};
use crate::crd::{METRICS_PORT, OTLP_GRPC_PORT, OTLP_HTTP_PORT};

/// The ClusterIP Service in front of the load-balancer pods.
pub fn build(owner: &Owner<'_>) -> Service {
    let port = |name: &str, port: i32, app_protocol: &str| ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        app_protocol: Some(app_protocol.into()),
        ..ServicePort::default()
    };
    Service {
        metadata: owner.meta(&owner.names.load_balancer, Component::LoadBalancer),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(owner.name, Component::LoadBalancer)),
            ports: Some(vec![
                port("otlp-grpc", OTLP_GRPC_PORT, "grpc"),
                port("otlp-http", OTLP_HTTP_PORT, "http"),
                port("metrics", METRICS_PORT, "http"),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
