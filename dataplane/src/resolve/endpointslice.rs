//! The member set of a Service from its EndpointSlices, kept as an index fed by watch events: all slices of
//! the Service are merged; endpoints that are ready (serving and not terminating) are active, those still serving
//! but terminating (a pod in its preStop) drain; each address gives one backend per configured port. Pure: tested
//! without a cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

use crate::pool::Members;
use crate::route::ring::Member;

/// How endpoints become backend addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub service: String,
    pub namespace: String,
    /// Ports to use on every address (the Collector's `ports`, default 4317).
    pub ports: Vec<u16>,
    /// Use `hostname.service.namespace` where an endpoint has a hostname (StatefulSet pods).
    pub return_hostnames: bool,
}

/// What an endpoint's conditions make of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    /// Takes new keys.
    Active,
    /// Keeps the keys it holds, takes no new one.
    Draining,
}

/// Addresses of one slice and their state.
type Addresses = BTreeMap<String, State>;

/// The EndpointSlices of one Service, by slice name.
#[derive(Debug, Default, Clone)]
pub struct SliceIndex {
    slices: BTreeMap<String, Addresses>,
}

impl SliceIndex {
    /// Replaces the index with a full listing (the watcher's initial list or a relist).
    pub fn reset(&mut self, target: &Target, slices: &[EndpointSlice]) {
        self.slices = slices.iter().map(|s| (slice_name(s), addresses(target, s))).collect();
    }

    /// A slice was added or changed. Returns whether the member set may have changed.
    pub fn apply(&mut self, target: &Target, slice: &EndpointSlice) -> bool {
        let addrs = addresses(target, slice);
        self.slices.insert(slice_name(slice), addrs.clone()) != Some(addrs)
    }

    /// A slice was deleted.
    pub fn delete(&mut self, slice: &EndpointSlice) -> bool {
        self.slices.remove(&slice_name(slice)).is_some()
    }

    /// The merged member set, deduplicated (an address may appear in two slices during a handover, where
    /// active wins over draining).
    pub fn members(&self) -> Members {
        let mut all: BTreeMap<&String, State> = BTreeMap::new();
        for (address, state) in self.slices.values().flatten() {
            let merged = all.entry(address).or_insert(*state);
            *merged = (*merged).min(*state);
        }
        let mut members = Members::default();
        for (address, state) in all {
            let member = Member { address: address.clone(), weight: 1 };
            match state {
                State::Active => members.active.push(member),
                State::Draining => members.draining.push(member),
            }
        }
        members
    }
}

fn slice_name(s: &EndpointSlice) -> String {
    s.metadata.name.clone().unwrap_or_default()
}

/// Active: ready (an unknown state counts as ready, as Kubernetes advises), serving and not terminating.
/// Draining: serving and terminating. Anything else takes no traffic.
fn state(e: &Endpoint) -> Option<State> {
    let c = e.conditions.as_ref();
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    let serving = c.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
    match (serving, terminating) {
        (true, true) => Some(State::Draining),
        (true, false) if ready => Some(State::Active),
        _ => None,
    }
}

fn addresses(target: &Target, slice: &EndpointSlice) -> Addresses {
    let mut out = Addresses::new();
    if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
        return out;
    }
    for (e, state) in slice.endpoints.iter().filter_map(|e| Some((e, state(e)?))) {
        let hosts: Vec<String> = match (&e.hostname, target.return_hostnames) {
            (Some(h), true) => vec![format!("{h}.{}.{}", target.service, target.namespace)],
            _ => e.addresses.iter().map(|a| if a.contains(':') { format!("[{a}]") } else { a.clone() }).collect(),
        };
        for host in hosts {
            for port in &target.ports {
                out.insert(format!("{host}:{port}"), state);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
    use kube::api::ObjectMeta;

    fn target() -> Target {
        Target { service: "pool".into(), namespace: "obs".into(), ports: vec![4317], return_hostnames: false }
    }

    fn ep(ip: &str, ready: Option<bool>, terminating: Option<bool>) -> Endpoint {
        Endpoint {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions { ready, serving: ready, terminating }),
            hostname: Some(format!("h-{}", ip.replace(['.', ':'], "-"))),
            ..Default::default()
        }
    }

    fn slice(name: &str, family: &str, endpoints: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            address_type: family.into(),
            endpoints,
            ports: None,
        }
    }

    /// A terminating pod still passing its readiness probe, as the EndpointSlice controller reports it.
    fn leaving(ip: &str) -> Endpoint {
        Endpoint {
            conditions: Some(EndpointConditions { ready: Some(false), serving: Some(true), terminating: Some(true) }),
            ..ep(ip, None, None)
        }
    }

    fn addrs(idx: &SliceIndex) -> Vec<String> {
        idx.members().active.into_iter().map(|m| m.address).collect()
    }

    fn draining(idx: &SliceIndex) -> Vec<String> {
        idx.members().draining.into_iter().map(|m| m.address).collect()
    }

    #[test]
    fn merges_slices_and_keeps_only_ready_endpoints() {
        let t = target();
        let mut idx = SliceIndex::default();
        idx.reset(
            &t,
            &[
                slice(
                    "pool-a",
                    "IPv4",
                    vec![
                        ep("10.0.0.1", Some(true), None),
                        ep("10.0.0.2", Some(false), None),
                        ep("10.0.0.3", None, None),
                    ],
                ),
                slice("pool-b", "IPv6", vec![ep("fd00::4", Some(true), Some(false))]),
            ],
        );
        assert_eq!(addrs(&idx), vec!["10.0.0.1:4317", "10.0.0.3:4317", "[fd00::4]:4317"]);
    }

    #[test]
    fn events_update_the_index() {
        let t = target();
        let mut idx = SliceIndex::default();
        idx.reset(&t, &[slice("a", "IPv4", vec![ep("10.0.0.1", Some(true), None)])]);
        // A pod becomes ready: added.
        let grown = slice("a", "IPv4", vec![ep("10.0.0.1", Some(true), None), ep("10.0.0.2", Some(true), None)]);
        assert!(idx.apply(&t, &grown));
        assert_eq!(addrs(&idx).len(), 2);
        assert!(!idx.apply(&t, &grown), "the same slice again changes nothing");
        // A pod starts terminating and no longer serves: removed at once, before its endpoint leaves the slice.
        let stopped =
            slice("a", "IPv4", vec![ep("10.0.0.1", Some(true), None), ep("10.0.0.2", Some(false), Some(true))]);
        assert!(idx.apply(&t, &stopped));
        assert_eq!(addrs(&idx), vec!["10.0.0.1:4317"]);
        assert!(draining(&idx).is_empty());
        // An address moving between slices is counted once.
        assert!(idx.apply(&t, &slice("b", "IPv4", vec![ep("10.0.0.1", Some(true), None)])));
        assert_eq!(addrs(&idx), vec!["10.0.0.1:4317"]);
        assert!(idx.delete(&slice("a", "IPv4", vec![])));
        assert_eq!(addrs(&idx), vec!["10.0.0.1:4317"]);
        assert!(idx.delete(&slice("b", "IPv4", vec![])));
        assert_eq!(idx.members(), Members::default());
        // A relist replaces everything.
        idx.reset(&t, &[slice("c", "IPv4", vec![ep("10.0.0.9", Some(true), None)])]);
        assert_eq!(addrs(&idx), vec!["10.0.0.9:4317"]);
    }

    #[test]
    fn a_terminating_endpoint_that_still_serves_drains_until_it_leaves() {
        let t = target();
        let mut idx = SliceIndex::default();
        let three = |second: Endpoint| {
            slice("a", "IPv4", vec![ep("10.0.0.1", Some(true), None), second, ep("10.0.0.3", Some(true), None)])
        };
        idx.reset(&t, &[three(ep("10.0.0.2", Some(true), None))]);
        assert_eq!(addrs(&idx), vec!["10.0.0.1:4317", "10.0.0.2:4317", "10.0.0.3:4317"]);
        // Scale-in or a rolling update: the pod runs its preStop and still serves.
        assert!(idx.apply(&t, &three(leaving("10.0.0.2"))));
        assert_eq!(addrs(&idx), vec!["10.0.0.1:4317", "10.0.0.3:4317"]);
        assert_eq!(draining(&idx), vec!["10.0.0.2:4317"]);
        // Listed active in another slice (a handover): active wins.
        assert!(idx.apply(&t, &slice("b", "IPv4", vec![ep("10.0.0.2", Some(true), None)])));
        assert_eq!(addrs(&idx).len(), 3);
        assert!(draining(&idx).is_empty());
        assert!(idx.delete(&slice("b", "IPv4", vec![])));
        assert_eq!(draining(&idx), vec!["10.0.0.2:4317"]);
        // Its readiness fails as the Collector stops: it no longer serves, and leaves.
        let stopped = Endpoint {
            conditions: Some(EndpointConditions { ready: Some(false), serving: Some(false), terminating: Some(true) }),
            ..ep("10.0.0.2", None, None)
        };
        assert!(idx.apply(&t, &three(stopped)));
        assert_eq!(addrs(&idx), vec!["10.0.0.1:4317", "10.0.0.3:4317"]);
        assert!(draining(&idx).is_empty());
        let gone = slice("a", "IPv4", vec![ep("10.0.0.1", Some(true), None), ep("10.0.0.3", Some(true), None)]);
        assert!(!idx.apply(&t, &gone), "the endpoint leaving the slice changes nothing more");
    }

    #[test]
    fn ports_hostnames_and_address_types() {
        let mut t = Target { ports: vec![4317, 14317], ..target() };
        let mut idx = SliceIndex::default();
        idx.reset(
            &t,
            &[
                slice("a", "IPv4", vec![ep("10.0.0.1", Some(true), None)]),
                slice("f", "FQDN", vec![ep("x.example", Some(true), None)]),
            ],
        );
        assert_eq!(addrs(&idx), vec!["10.0.0.1:14317", "10.0.0.1:4317"]);
        t.return_hostnames = true;
        t.ports = vec![4317];
        idx.reset(&t, &[slice("a", "IPv4", vec![ep("10.0.0.1", Some(true), None)])]);
        assert_eq!(addrs(&idx), vec!["h-10-0-0-1.pool.obs:4317"]);
    }
}
