//! HorizontalPodAutoscaler `<name>` (autoscaling/v2): sizes the load-balancer tier (its Deployment or
//! StatefulSet) on CPU.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};

use super::labels::Component;
use super::{Owner, lb_statefulset};

/// The autoscaler, when `spec.loadBalancer.autoscaling` is set.
pub fn build(owner: &Owner<'_>) -> Option<HorizontalPodAutoscaler> {
    let autoscaling = owner.lbc.spec.load_balancer.autoscaling.as_ref()?;
    Some(HorizontalPodAutoscaler {
        metadata: owner.meta(&owner.names.load_balancer, Component::LoadBalancer),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: if lb_statefulset::wanted(owner) { "StatefulSet" } else { "Deployment" }.into(),
                name: owner.names.load_balancer.clone(),
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(autoscaling.target_cpu_utilization_percentage),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        ..HorizontalPodAutoscaler::default()
    })
}
