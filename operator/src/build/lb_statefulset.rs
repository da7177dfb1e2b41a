//! StatefulSet `<name>`: the load-balancer tier when its durable queue keeps a PersistentVolumeClaim per
//! replica, so that a replica that comes back finds its write-ahead log and replays it. Same pods as the
//! Deployment otherwise (`lb_deployment::pod_template`).

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::Owner;
use super::labels::{Component, selector_labels};
use super::lb_deployment::{DURABLE_QUEUE_VOLUME, pod_template};

/// Whether the tier is a StatefulSet: the durable queue is enabled with a volumeClaimTemplate.
pub fn wanted(owner: &Owner<'_>) -> bool {
    owner.lbc.spec.load_balancer.durable_queue.as_ref().is_some_and(|q| q.persistent())
}

/// The StatefulSet of the load-balancer tier, mounting `config_map` and a claim per replica.
pub fn build(owner: &Owner<'_>, config_map: &ConfigMap) -> StatefulSet {
    let lb = &owner.lbc.spec.load_balancer;
    let claim = lb.durable_queue.as_ref().and_then(|q| q.storage.volume_claim_template.clone());
    StatefulSet {
        metadata: owner.meta(&owner.names.load_balancer, Component::LoadBalancer),
        spec: Some(StatefulSetSpec {
            // Left to the HorizontalPodAutoscaler when there is one.
            replicas: if lb.autoscaling.is_some() { None } else { Some(lb.replicas) },
            service_name: Some(owner.names.load_balancer.clone()),
            // Replicas are alike: start and stop them together rather than one by one.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(owner.name, Component::LoadBalancer)),
                ..LabelSelector::default()
            },
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy::default()),
            }),
            template: pod_template(owner, config_map),
            volume_claim_templates: claim.map(|spec| {
                vec![PersistentVolumeClaim {
                    metadata: ObjectMeta { name: Some(DURABLE_QUEUE_VOLUME.into()), ..ObjectMeta::default() },
                    spec: Some(spec),
                    ..PersistentVolumeClaim::default()
                }]
            }),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}
