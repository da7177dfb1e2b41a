//! The one shape of the operator's headless Services: no cluster IP, the pods of one component selected, one TCP
//! port. DNS and EndpointSlices then list the pods themselves.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Owner;
use super::labels::{Component, selector_labels};

/// The port a headless Service publishes: its name, number (the pods' port too) and application protocol.
pub struct Port {
    pub name: &'static str,
    pub number: i32,
    pub app_protocol: &'static str,
}

/// A headless Service `name` of `component`'s pods; `not_ready` publishes pods before they are ready.
pub fn service(owner: &Owner<'_>, name: &str, component: Component, not_ready: bool, port: Port) -> Service {
    Service {
        metadata: owner.meta(name, component),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(not_ready),
            selector: Some(selector_labels(owner.name, component)),
            ports: Some(vec![ServicePort {
                name: Some(port.name.into()),
                port: port.number,
                target_port: Some(IntOrString::Int(port.number)),
                protocol: Some("TCP".into()),
                app_protocol: Some(port.app_protocol.into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
