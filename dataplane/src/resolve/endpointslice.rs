//! The member set of a Service from its EndpointSlices, kept as an index fed by watch events: all slices of
//! the Service are merged, only endpoints that are ready (serving and not terminating) count, and each address
//! gives one backend per configured port. Pure: tested without a cluster.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::discovery::v1::EndpointSlice;

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

/// The EndpointSlices of one Service, by slice name.
#[derive(Debug, Default, Clone)]
pub struct SliceIndex {
    slices: BTreeMap<String, BTreeSet<String>>,
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

    /// The merged member set, deduplicated (an address may appear in two slices during a handover).
    pub fn members(&self) -> Vec<Member> {
        let all: BTreeSet<&String> = self.slices.values().flatten().collect();
        all.into_iter().map(|a| Member { address: a.clone(), weight: 1 }).collect()
    }
}

fn slice_name(s: &EndpointSlice) -> String {
    s.metadata.name.clone().unwrap_or_default()
}

/// Whether an endpoint should take traffic: ready (an unknown state counts as ready, as Kubernetes advises)
/// and not terminating.
pub fn usable(e: &k8s_openapi::api::discovery::v1::Endpoint) -> bool {
    let c = e.conditions.as_ref();
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    let serving = c.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
    ready && serving && !terminating
}

fn addresses(target: &Target, slice: &EndpointSlice) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
        return out;
    }
    for e in slice.endpoints.iter().filter(|e| usable(e)) {
        let hosts: Vec<String> = match (&e.hostname, target.return_hostnames) {
            (Some(h), true) => vec![format!("{h}.{}.{}", target.service, target.namespace)],
            _ => e.addresses.iter().map(|a| if a.contains(':') { format!("[{a}]") } else { a.clone() }).collect(),
        };
        for host in hosts {
            for port in &target.ports {
                out.insert(format!("{host}:{port}"));
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

    fn addrs(idx: &SliceIndex) -> Vec<String> {
        idx.members().into_iter().map(|m| m.address).collect()
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
        // A pod starts terminating: removed at once, before its endpoint leaves the slice.
        let draining =
            slice("a", "IPv4", vec![ep("10.0.0.1", Some(true), None), ep("10.0.0.2", Some(false), Some(true))]);
        assert!(idx.apply(&t, &draining));
        assert_eq!(addrs(&idx), vec!["10.0.0.1:4317"]);
        // An address moving between slices is counted once.
        assert!(idx.apply(&t, &slice("b", "IPv4", vec![ep("10.0.0.1", Some(true), None)])));
        assert_eq!(addrs(&idx), vec!["10.0.0.1:4317"]);
        assert!(idx.delete(&slice("a", "IPv4", vec![])));
        assert_eq!(addrs(&idx), vec!["10.0.0.1:4317"]);
        assert!(idx.delete(&slice("b", "IPv4", vec![])));
        assert!(idx.members().is_empty());
        // A relist replaces everything.
        idx.reset(&t, &[slice("c", "IPv4", vec![ep("10.0.0.9", Some(true), None)])]);
        assert_eq!(addrs(&idx), vec!["10.0.0.9:4317"]);
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
