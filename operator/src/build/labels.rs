//! Names, labels, selectors and annotations shared by every child object.
//!
//! Children are found again by their labels (`managed-by`, `instance`, `component`), which is how
//! the operator deletes the ones the spec no longer wants.

use std::collections::BTreeMap;

/// The operator's field manager, `managed-by` label value and event reporter.
pub const MANAGER: &str = "otlp-lb-operator";
/// Label naming the tool that manages an object.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label holding the name of the owning LoadBalancedCollector.
pub const INSTANCE: &str = "app.kubernetes.io/instance";
/// Label telling the backend pool from the load-balancer tier.
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// Label naming the application.
pub const NAME: &str = "app.kubernetes.io/name";
/// Label naming the larger application.
pub const PART_OF: &str = "app.kubernetes.io/part-of";
/// Pod-template annotation holding a hash of the mounted configuration, so edits roll the pods.
pub const CONFIG_HASH: &str = "otlp-lb.dev/config-hash";
/// Label the EndpointSlice controller sets to the name of the Service a slice belongs to.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// The two halves of a LoadBalancedCollector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// The pool of Collectors.
    Backends,
    /// The otlp-lb data plane, its RBAC, autoscaler and disruption budget.
    LoadBalancer,
}

impl Component {
    /// Value of the `component` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Backends => "backends",
            Component::LoadBalancer => "load-balancer",
        }
    }

    fn app_name(self) -> &'static str {
        match self {
            Component::Backends => "opentelemetry-collector",
            Component::LoadBalancer => "otlp-lb",
        }
    }
}

/// Names of the children of the LoadBalancedCollector `instance`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Deployment, ConfigMap, Service, HPA and PDB of the load-balancer tier.
    pub load_balancer: String,
    /// Deployment, ConfigMap and headless Service of the backend pool.
    pub backends: String,
    /// ServiceAccount, Role and RoleBinding of the load-balancer pods.
    pub rbac: String,
}

impl Names {
    /// The names derived from the LoadBalancedCollector's name.
    pub fn new(instance: &str) -> Self {
        Self {
            load_balancer: instance.to_string(),
            backends: format!("{instance}-backends"),
            rbac: format!("{instance}-load-balancer"),
        }
    }
}

/// Labels a Deployment selects its pods by (immutable once created: keep this set small).
pub fn selector_labels(instance: &str, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.to_string(), MANAGER.to_string()),
        (INSTANCE.to_string(), instance.to_string()),
        (COMPONENT.to_string(), component.as_str().to_string()),
    ])
}

/// Labels of every child object and pod.
pub fn labels(instance: &str, component: Component) -> BTreeMap<String, String> {
    let mut labels = selector_labels(instance, component);
    labels.insert(NAME.to_string(), component.app_name().to_string());
    labels.insert(PART_OF.to_string(), "otlp-lb".to_string());
    labels
}

/// A label map as a selector string, e.g. for the scale subresource's `status.selector`.
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Selector matching every child of the LoadBalancedCollector `instance`.
pub fn instance_selector(instance: &str) -> String {
    format!("{MANAGED_BY}={MANAGER},{INSTANCE}={instance}")
}
