//! Observed state: counts ready backends and EndpointSlice endpoints, computes the conditions
//! (Ready, BackendsReady, LoadBalancerReady, Degraded), explains a tier that is not ready by a pod
//! whose container cannot start (its waiting reason, e.g. ErrImageNeverPull or ImagePullBackOff)
//! and writes the status subresource. Everything but the API calls at the bottom is pure.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::apply::Applied;
use crate::build::labels::{
    COMPONENT, Component, MANAGER, Names, SERVICE_NAME, instance_selector, selector_labels, selector_string,
};
use crate::crd::{
    BackendsStatus, LoadBalancedCollector, LoadBalancedCollectorStatus, LoadBalancerStatus, OTLP_GRPC_PORT,
};
use crate::error::{Error, Result};

/// Condition: the whole tier accepts and delivers telemetry.
pub const READY: &str = "Ready";
/// Condition: the backends are ready and in the load balancer's ring.
pub const BACKENDS_READY: &str = "BackendsReady";
/// Condition: the load-balancer replicas are ready.
pub const LOAD_BALANCER_READY: &str = "LoadBalancerReady";
/// Condition: the last reconciliation failed (the reason says how).
pub const DEGRADED: &str = "Degraded";

/// Waiting reasons of a container that does not start until something changes (its image, its spec,
/// the registry): a pod waiting for one of them explains why its tier is not ready.
pub const STUCK_REASONS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "RegistryUnavailable",
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
];

/// A pod of the instance whose container waits for one of [`STUCK_REASONS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckPod {
    /// The pod's `app.kubernetes.io/component` (`backends` or `load-balancer`).
    pub component: String,
    /// The container's waiting reason.
    pub reason: String,
    /// Which pod and container, and the kubelet's message.
    pub message: String,
}

/// The stuck containers of `pods`, one per pod (the first stuck container), in pod order.
pub fn stuck_pods(pods: &[Pod]) -> Vec<StuckPod> {
    pods.iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter_map(|pod| {
            let status = pod.status.as_ref()?;
            let mut containers =
                status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
            containers.find_map(|c| {
                let waiting = c.state.as_ref()?.waiting.as_ref()?;
                let reason = waiting.reason.as_deref().filter(|r| STUCK_REASONS.contains(r))?;
                Some(StuckPod {
                    component: pod.metadata.labels.as_ref()?.get(COMPONENT)?.clone(),
                    reason: reason.to_string(),
                    message: format!(
                        "pod {} container {} ({}): {}",
                        pod.metadata.name.as_deref().unwrap_or_default(),
                        c.name,
                        c.image,
                        waiting.message.as_deref().unwrap_or(reason)
                    ),
                })
            })
        })
        .collect()
}

/// Gives each not-ready tier condition (and Ready, when it reports that tier) the reason and message of
/// the tier's first stuck pod.
pub fn explain_stuck(status: &mut LoadBalancedCollectorStatus, stuck: &[StuckPod]) {
    for (component, condition_type) in
        [(Component::Backends, BACKENDS_READY), (Component::LoadBalancer, LOAD_BALANCER_READY)]
    {
        let Some(pod) = stuck.iter().find(|p| p.component == component.as_str()) else {
            continue;
        };
        let Some(tier) = status.conditions.iter_mut().find(|c| c.type_ == condition_type && c.status == "False") else {
            continue;
        };
        let before = tier.reason.clone();
        tier.reason.clone_from(&pod.reason);
        tier.message = format!("{}; {}", tier.message, pod.message);
        let (reason, message) = (tier.reason.clone(), tier.message.clone());
        if let Some(ready) = status.conditions.iter_mut().find(|c| c.type_ == READY && c.reason == before) {
            ready.reason = reason;
            ready.message = message;
        }
    }
}

/// Name and port of the Service whose endpoints form the backend pool.
pub fn backend_service(lbc: &LoadBalancedCollector, names: &Names) -> (String, i32) {
    match &lbc.spec.backends.service_ref {
        Some(service_ref) => (service_ref.name.clone(), service_ref.port),
        None => (names.backends.clone(), OTLP_GRPC_PORT),
    }
}

/// The endpoints of `slices` that serve `port` (a slice without ports serves every port).
pub fn endpoints_on_port(slices: &[EndpointSlice], port: i32) -> impl Iterator<Item = &Endpoint> {
    slices
        .iter()
        .filter(move |slice| {
            let ports = slice.ports.as_deref().unwrap_or_default();
            ports.is_empty() || ports.iter().any(|p| p.port == Some(port))
        })
        .flat_map(|slice| slice.endpoints.iter())
}

/// Whether `endpoint` is ready: a nil `ready` means unknown, which consumers treat as ready.
pub fn is_ready(endpoint: &Endpoint) -> bool {
    endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false)
}

/// Endpoints (total, ready) of `slices` that serve `port`, each pod counted once across slices.
pub fn count_endpoints(slices: &[EndpointSlice], port: i32) -> (i32, i32) {
    let mut all = BTreeSet::new();
    let mut ready = BTreeSet::new();
    for endpoint in endpoints_on_port(slices, port) {
        let key = match &endpoint.target_ref {
            Some(target) => {
                format!("{}/{}", target.kind.as_deref().unwrap_or(""), target.name.as_deref().unwrap_or(""))
            }
            None => endpoint.addresses.first().cloned().unwrap_or_default(),
        };
        if is_ready(endpoint) {
            ready.insert(key.clone());
        }
        all.insert(key);
    }
    (to_i32(all.len()), to_i32(ready.len()))
}

fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn ready_replicas(deployment: Option<&Deployment>) -> i32 {
    deployment.and_then(|d| d.status.as_ref()).and_then(|s| s.ready_replicas).unwrap_or(0)
}

/// Backend and load-balancer counts from the applied Deployments and the backend EndpointSlices.
pub fn observe(
    lbc: &LoadBalancedCollector,
    applied: &Applied,
    slices: &[EndpointSlice],
) -> (BackendsStatus, LoadBalancerStatus) {
    let (_, port) = backend_service(lbc, &Names::new(&lbc.metadata.name.clone().unwrap_or_default()));
    let (endpoints, ready_endpoints) = count_endpoints(slices, port);
    let backends = if lbc.spec.backends.service_ref.is_some() {
        BackendsStatus { desired: endpoints, ready: ready_endpoints, in_ring: ready_endpoints }
    } else {
        BackendsStatus {
            desired: lbc.spec.backends.replicas,
            ready: ready_replicas(applied.backend_deployment.as_ref()),
            in_ring: ready_endpoints,
        }
    };
    let (desired, ready) = applied.lb_replicas.unwrap_or_default();
    (backends, LoadBalancerStatus { desired, ready })
}

/// `traces=…,metrics=…,logs=…` for the Routing printer column.
pub fn routing_summary(lbc: &LoadBalancedCollector) -> String {
    let routing = &lbc.spec.load_balancer.routing;
    let name = |v: serde_json::Result<serde_json::Value>| {
        v.ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
    };
    format!(
        "traces={},metrics={},logs={}",
        name(serde_json::to_value(routing.traces)),
        name(serde_json::to_value(routing.metrics)),
        name(serde_json::to_value(routing.logs))
    )
}

/// The status to write: counts, conditions (keeping transition times of unchanged ones),
/// observed generation, scale selector and routing summary. `error` makes it Degraded.
pub fn compute(
    lbc: &LoadBalancedCollector,
    backends: BackendsStatus,
    load_balancer: LoadBalancerStatus,
    error: Option<&Error>,
    now: Timestamp,
) -> LoadBalancedCollectorStatus {
    let previous = lbc.status.clone().unwrap_or_default();
    let generation = lbc.metadata.generation;
    let name = lbc.metadata.name.clone().unwrap_or_default();
    let (service, _) = backend_service(lbc, &Names::new(&name));

    let backends_ready = if backends.in_ring == 0 {
        (
            false,
            "NoBackendsInRing",
            format!("no backend of Service {service} is ready: the load balancer has nowhere to send"),
        )
    } else if backends.ready < backends.desired {
        (
            false,
            "BackendsNotReady",
            format!(
                "{}/{} backends ready, {} in the load balancer's ring",
                backends.ready, backends.desired, backends.in_ring
            ),
        )
    } else {
        (
            true,
            "BackendsReady",
            format!(
                "{}/{} backends ready, {} in the load balancer's ring",
                backends.ready, backends.desired, backends.in_ring
            ),
        )
    };
    let lb_ready = if load_balancer.desired == 0 {
        (false, "ScaledToZero", "the load balancer has no replicas".to_string())
    } else if load_balancer.ready < load_balancer.desired {
        (
            false,
            "LoadBalancerNotReady",
            format!("{}/{} load-balancer replicas ready", load_balancer.ready, load_balancer.desired),
        )
    } else {
        (
            true,
            "LoadBalancerReady",
            format!("{}/{} load-balancer replicas ready", load_balancer.ready, load_balancer.desired),
        )
    };
    let degraded = match error {
        Some(e) => (true, e.reason(), e.to_string()),
        None => (false, "ReconcileSucceeded", "every child object is applied".to_string()),
    };
    let ready = if degraded.0 {
        (false, "Degraded", format!("the last reconciliation failed: {}", degraded.2))
    } else if !backends_ready.0 {
        (false, backends_ready.1, backends_ready.2.clone())
    } else if !lb_ready.0 {
        (false, lb_ready.1, lb_ready.2.clone())
    } else {
        (true, "Ready", format!("receiving on Service {name}, balancing over {} backends", backends.in_ring))
    };

    let condition = |type_: &str, (status, reason, message): (bool, &str, String)| {
        let status = if status { "True" } else { "False" };
        let last_transition_time = previous
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time,
        }
    };
    let managed = lbc.spec.backends.service_ref.is_none();
    LoadBalancedCollectorStatus {
        observed_generation: generation,
        conditions: vec![
            condition(READY, ready),
            condition(BACKENDS_READY, backends_ready),
            condition(LOAD_BALANCER_READY, lb_ready),
            condition(DEGRADED, degraded),
        ],
        backends,
        load_balancer,
        selector: managed.then(|| selector_string(&selector_labels(&name, Component::Backends))),
        routing: Some(routing_summary(lbc)),
        ring: previous.ring,
    }
}

/// The status after a failed reconciliation: the previous counts, Degraded with the error.
pub fn degraded(lbc: &LoadBalancedCollector, error: &Error, now: Timestamp) -> LoadBalancedCollectorStatus {
    let previous = lbc.status.clone().unwrap_or_default();
    compute(lbc, previous.backends, previous.load_balancer, Some(error), now)
}

/// The EndpointSlices of the backend Service.
pub async fn endpoint_slices(api: &Api<EndpointSlice>, service: &str) -> Result<Vec<EndpointSlice>> {
    api.list(&ListParams::default().labels(&format!("{SERVICE_NAME}={service}")))
        .await
        .map(|list| list.items)
        .map_err(|source| Error::Read { kind: "EndpointSlice", source })
}

/// The pods of LoadBalancedCollector `instance` (both tiers).
pub async fn pods(api: &Api<Pod>, instance: &str) -> Result<Vec<Pod>> {
    api.list(&ListParams::default().labels(&instance_selector(instance)))
        .await
        .map(|list| list.items)
        .map_err(|source| Error::Read { kind: "Pod", source })
}

/// Server-side applies `status` to the status subresource.
pub async fn write(api: &Api<LoadBalancedCollector>, name: &str, status: &LoadBalancedCollectorStatus) -> Result<()> {
    let patch = json!({
        "apiVersion": format!("{}/v1alpha1", crate::crd::GROUP),
        "kind": "LoadBalancedCollector",
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map(|_| ())
        .map_err(Error::Status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, component: &str, reason: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {COMPONENT: component}},
            "status": {"containerStatuses": [{
                "name": "otelcol", "image": "nope:1", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": "the image is not present"}},
            }]},
        }))
        .expect("pod")
    }

    #[test]
    fn a_stuck_backend_explains_backends_ready_and_ready() {
        let pods = [pod("a", "backends", "ContainerCreating"), pod("b", "backends", "ErrImageNeverPull")];
        let stuck = stuck_pods(&pods);
        assert_eq!(stuck.len(), 1, "{stuck:?}");
        assert_eq!(stuck[0].reason, "ErrImageNeverPull");
        let condition = |type_: &str, reason: &str| Condition {
            type_: type_.into(),
            status: "False".into(),
            reason: reason.into(),
            message: "0/2 backends ready".into(),
            observed_generation: None,
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        };
        let mut status = LoadBalancedCollectorStatus {
            conditions: vec![condition(READY, "NoBackendsInRing"), condition(BACKENDS_READY, "NoBackendsInRing")],
            ..LoadBalancedCollectorStatus::default()
        };
        explain_stuck(&mut status, &stuck);
        for c in &status.conditions {
            assert_eq!(c.reason, "ErrImageNeverPull", "{c:?}");
            assert!(c.message.contains("pod b container otelcol (nope:1): the image is not present"), "{c:?}");
        }
    }
}
