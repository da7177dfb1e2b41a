//! Status and events: endpoint counting, conditions, the scale selector, and which events fire.

mod common;

use common::{MINIMAL, SERVICE_REF, lbc};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::jiff::Timestamp;
use operator::Error;
use operator::crd::{BackendsStatus, LoadBalancedCollectorStatus, LoadBalancerStatus};
use operator::{events, status};

fn endpoint(pod: &str, address: &str, ready: Option<bool>) -> Endpoint {
    Endpoint {
        addresses: vec![address.into()],
        conditions: Some(EndpointConditions { ready, ..EndpointConditions::default() }),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            name: Some(pod.into()),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    }
}

fn slice(port: i32, endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(vec![EndpointPort { port: Some(port), ..EndpointPort::default() }]),
        ..EndpointSlice::default()
    }
}

#[test]
fn endpoints_are_counted_once_per_pod_and_only_on_the_port() {
    let slices = vec![
        slice(
            4317,
            vec![
                endpoint("a", "10.0.0.1", Some(true)),
                endpoint("b", "10.0.0.2", None),
                endpoint("c", "10.0.0.3", Some(false)),
            ],
        ),
        // The IPv6 slice of the same pods (dual stack).
        slice(4317, vec![endpoint("a", "fd00::1", Some(true)), endpoint("b", "fd00::2", None)]),
        // Another port: not what the load balancer sends to.
        slice(9999, vec![endpoint("d", "10.0.0.4", Some(true))]),
    ];
    assert_eq!(status::count_endpoints(&slices, 4317), (3, 2));
    assert_eq!(status::count_endpoints(&[], 4317), (0, 0));
}

fn now() -> Timestamp {
    Timestamp::from_second(1_700_000_000).expect("valid timestamp")
}

fn condition<'a>(
    status: &'a LoadBalancedCollectorStatus,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    status.conditions.iter().find(|c| c.type_ == type_).expect("condition")
}

#[test]
fn all_ready_is_ready() {
    let lbc = lbc(MINIMAL);
    let next = status::compute(
        &lbc,
        BackendsStatus { desired: 2, ready: 2, in_ring: 2 },
        LoadBalancerStatus { desired: 2, ready: 2 },
        None,
        now(),
    );
    assert_eq!(condition(&next, "Ready").status, "True");
    assert_eq!(condition(&next, "BackendsReady").status, "True");
    assert_eq!(condition(&next, "LoadBalancerReady").status, "True");
    assert_eq!(condition(&next, "Degraded").status, "False");
    assert_eq!(next.observed_generation, Some(1));
    assert_eq!(
        next.selector.as_deref(),
        Some(
            "app.kubernetes.io/component=backends,app.kubernetes.io/instance=demo,app.kubernetes.io/managed-by=otlp-lb-operator"
        )
    );
    assert_eq!(next.routing.as_deref(), Some("traces=traceID,metrics=service,logs=traceID"));
}

#[test]
fn no_backend_in_ring_is_not_ready() {
    let next = status::compute(
        &lbc(MINIMAL),
        BackendsStatus { desired: 2, ready: 0, in_ring: 0 },
        LoadBalancerStatus { desired: 2, ready: 2 },
        None,
        now(),
    );
    assert_eq!(condition(&next, "BackendsReady").reason, "NoBackendsInRing");
    assert_eq!(condition(&next, "Ready").status, "False");
    assert_eq!(condition(&next, "Ready").reason, "NoBackendsInRing");
}

#[test]
fn failure_is_degraded_and_keeps_counts() {
    let mut lbc = lbc(MINIMAL);
    lbc.status = Some(LoadBalancedCollectorStatus {
        backends: BackendsStatus { desired: 2, ready: 2, in_ring: 2 },
        ..LoadBalancedCollectorStatus::default()
    });
    let error = Error::ChildConflict { kind: "Service", name: "demo-backends".into() };
    let next = status::degraded(&lbc, &error, now());
    let degraded = condition(&next, "Degraded");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "ChildConflict"));
    assert!(degraded.message.contains("Service demo-backends already exists"));
    assert_eq!(condition(&next, "Ready").reason, "Degraded");
    assert_eq!(next.backends.in_ring, 2);
}

#[test]
fn transition_times_change_only_on_transitions() {
    let mut lbc = lbc(MINIMAL);
    let ready = (BackendsStatus { desired: 1, ready: 1, in_ring: 1 }, LoadBalancerStatus { desired: 1, ready: 1 });
    let first = status::compute(&lbc, ready.0.clone(), ready.1.clone(), None, now());
    lbc.status = Some(first.clone());
    let later = Timestamp::from_second(1_700_000_600).expect("valid timestamp");
    let second = status::compute(&lbc, ready.0.clone(), LoadBalancerStatus { desired: 1, ready: 0 }, None, later);
    assert_eq!(
        condition(&second, "BackendsReady").last_transition_time,
        condition(&first, "BackendsReady").last_transition_time
    );
    assert_eq!(condition(&second, "LoadBalancerReady").last_transition_time.0, later);
}

#[test]
fn service_ref_has_no_scale_selector() {
    let next =
        status::compute(&lbc(SERVICE_REF), BackendsStatus::default(), LoadBalancerStatus::default(), None, now());
    assert_eq!(next.selector, None);
    assert!(condition(&next, "BackendsReady").message.contains("external-gateway"));
}

#[test]
fn events_for_create_scale_change_and_delete() {
    let mut lbc = lbc(MINIMAL);
    let next = LoadBalancedCollectorStatus {
        observed_generation: Some(1),
        backends: BackendsStatus { desired: 2, ..BackendsStatus::default() },
        load_balancer: LoadBalancerStatus { desired: 2, ready: 0 },
        ..LoadBalancedCollectorStatus::default()
    };
    let reasons = |events: Vec<kube::runtime::events::Event>| events.into_iter().map(|e| e.reason).collect::<Vec<_>>();
    assert_eq!(reasons(events::plan(&lbc, &next, &[])), ["Created"]);

    lbc.status = Some(next.clone());
    assert!(events::plan(&lbc, &next, &[]).is_empty(), "nothing changed, nothing to say");

    lbc.metadata.generation = Some(2);
    let mut scaled = next.clone();
    scaled.backends.desired = 5;
    let deleted = [("HorizontalPodAutoscaler", "demo".to_string())];
    let events = events::plan(&lbc, &scaled, &deleted);
    assert_eq!(events[1].note.as_deref(), Some("backends scaled from 2 to 5"));
    assert_eq!(reasons(events), ["SpecChanged", "Scaled", "Deleted"]);

    let warning = events::warning(&Error::InvalidSpec("x".repeat(2000)));
    assert_eq!(warning.reason, "InvalidSpec");
    assert!(warning.note.is_some_and(|n| n.len() <= 1000));
}
