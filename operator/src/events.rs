//! Which Kubernetes Events a reconciliation publishes: created, scaled, changed, deleted children,
//! and warnings on failure. Pure; the reconciler publishes them with a `Recorder`.
//!
//! The Recorder folds events of the same type and reason about the same object into one series,
//! so each reason is used at most once per reconciliation.

use kube::runtime::events::{Event, EventType};

use crate::crd::{LoadBalancedCollector, LoadBalancedCollectorStatus};
use crate::error::Error;
use crate::ring::Rebalance;

fn replicas(n: i32) -> String {
    if n == 1 { "1 replica".into() } else { format!("{n} replicas") }
}

fn normal(reason: &str, note: String) -> Event {
    Event {
        type_: EventType::Normal,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    }
}

/// Events describing the change from `lbc.status` to `next` and the `deleted` children.
pub fn plan(
    lbc: &LoadBalancedCollector,
    next: &LoadBalancedCollectorStatus,
    deleted: &[(&'static str, String)],
) -> Vec<Event> {
    let name = lbc.metadata.name.clone().unwrap_or_default();
    let mut events = Vec::new();
    let pool = match &lbc.spec.backends.service_ref {
        Some(service_ref) => format!("balancing over Service {}", service_ref.name),
        None => format!("backend pool {name}-backends ({})", replicas(lbc.spec.backends.replicas)),
    };
    match lbc.status.as_ref() {
        None | Some(LoadBalancedCollectorStatus { observed_generation: None, .. }) => {
            events.push(normal(
                "Created",
                format!("created load balancer {name} ({}), {pool}", replicas(next.load_balancer.desired)),
            ));
        }
        Some(previous) => {
            if previous.observed_generation < lbc.metadata.generation {
                events.push(normal(
                    "SpecChanged",
                    format!("applied generation {}: {pool}", lbc.metadata.generation.unwrap_or_default()),
                ));
            }
            if previous.backends.desired != next.backends.desired {
                events.push(normal(
                    "Scaled",
                    format!("backends scaled from {} to {}", previous.backends.desired, next.backends.desired),
                ));
            }
            if previous.load_balancer.desired != next.load_balancer.desired {
                events.push(normal(
                    "LoadBalancerScaled",
                    format!(
                        "load balancer scaled from {} to {}",
                        previous.load_balancer.desired,
                        replicas(next.load_balancer.desired)
                    ),
                ));
            }
        }
    }
    if !deleted.is_empty() {
        let children: Vec<_> = deleted.iter().map(|(kind, name)| format!("{kind} {name}")).collect();
        events.push(normal("Deleted", format!("deleted {}: the spec no longer asks for them", children.join(", "))));
    }
    events
}

/// The event of a change of the hash ring's members: versions, backends before and after, and keys moved.
///
/// The Recorder folds events of the same type, reason and action into one series that keeps the first note, so
/// each ring version is an action of its own: every rebalance is an event that says what it moved.
pub fn rebalanced(rebalance: &Rebalance) -> Event {
    Event {
        action: format!("RebalanceToRingVersion{}", rebalance.to_version),
        ..normal("Rebalanced", rebalance.summary())
    }
}

/// The Warning event of a pod whose container cannot start: the container's waiting reason and which pod.
pub fn stuck(pod: &crate::status::StuckPod) -> Event {
    Event {
        type_: EventType::Warning,
        reason: pod.reason.clone(),
        note: Some(format!("{} pod not starting: {}", pod.component, pod.message)),
        action: "Observe".into(),
        secondary: None,
    }
}

/// The Warning event of a failed reconciliation.
pub fn warning(error: &Error) -> Event {
    let mut note = error.to_string();
    if note.len() > 1000 {
        let end = (0..=1000).rev().find(|i| note.is_char_boundary(*i)).unwrap_or(0);
        note.truncate(end);
    }
    Event {
        type_: EventType::Warning,
        reason: error.reason().into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    }
}
