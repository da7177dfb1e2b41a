//! PodDisruptionBudget `<name>` (policy/v1): keeps load-balancer pods up during node drains.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Owner;
use super::labels::{Component, selector_labels};

/// The budget, when `spec.loadBalancer.podDisruptionBudget` is set (maxUnavailable 1 unless told).
pub fn build(owner: &Owner<'_>) -> Option<PodDisruptionBudget> {
    let budget = owner.lbc.spec.load_balancer.pod_disruption_budget.as_ref()?;
    let max_unavailable = match (&budget.min_available, &budget.max_unavailable) {
        (None, None) => Some(IntOrString::Int(1)),
        (_, max) => max.clone(),
    };
    Some(PodDisruptionBudget {
        metadata: owner.meta(&owner.names.load_balancer, Component::LoadBalancer),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: budget.min_available.clone(),
            max_unavailable,
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(owner.name, Component::LoadBalancer)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}
