//! The peer exchange of the load-balancer tier: made when the tier can have two replicas or more (the headless
//! Service, the peer port, the token's volume and the data plane's `peers:` block, which the data plane accepts),
//! and absent with one replica.

mod common;

use common::{MINIMAL, lbc};
use operator::build::{self, LoadBalancerWorkload};
use operator::validate::validate;

/// MINIMAL with `load_balancer` (YAML lines under `loadBalancer:`).
fn with_load_balancer(load_balancer: &str) -> String {
    format!("{MINIMAL}  loadBalancer:\n{load_balancer}")
}

/// (peer Service name, the data plane's peers block, the pod's peer port, the token's volume).
fn peer_parts(yaml: &str) -> (Option<String>, Option<dataplane::config::Peers>, bool, Option<String>) {
    let lbc = lbc(yaml);
    let children = build::build(&validate(&lbc).expect("valid")).expect("builds");
    let service = children.lb_peer_service.as_ref().and_then(|s| s.metadata.name.clone());
    if let Some(spec) = children.lb_peer_service.as_ref().and_then(|s| s.spec.as_ref()) {
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"), "headless");
        assert_eq!(spec.publish_not_ready_addresses, Some(true), "a starting replica is a peer");
    }
    let config = children.lb_config_map.data.as_ref().and_then(|d| d.get("config.yaml")).expect("a config");
    let peers = dataplane::config::Config::parse(config).expect("the data plane accepts its config").peers;
    let LoadBalancerWorkload::Deployment(d) = &children.lb_workload else { panic!("a Deployment") };
    let pod = d.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("a pod");
    let ports = pod.containers[0].ports.iter().flatten();
    let port = ports.into_iter().any(|p| p.name.as_deref() == Some("peers") && p.container_port == 4319);
    let volume = pod.volumes.iter().flatten().find(|v| v.name == "peers");
    (service, peers, port, volume.and_then(|v| v.secret.as_ref()).and_then(|s| s.secret_name.clone()))
}

#[test]
fn two_replicas_or_more_exchange_what_they_hold() {
    let (service, peers, port, token) = peer_parts(MINIMAL);
    assert_eq!(service.as_deref(), Some("demo-peers"), "two replicas by default");
    let peers = peers.expect("a peers block");
    assert_eq!(peers.endpoint.port(), 4319);
    let dns = peers.dns.expect("found through the headless Service");
    assert_eq!((dns.hostname.as_str(), dns.port), ("demo-peers.observability.svc", 4319));
    assert_eq!(peers.auth.bearer_token_file.as_deref(), Some("/etc/otlp-lb-peers/token"));
    assert!(port);
    assert_eq!(token.as_deref(), Some("demo-peers"));
}

#[test]
fn one_replica_needs_none_of_it() {
    let (service, peers, port, token) = peer_parts(&with_load_balancer("    replicas: 1\n"));
    assert_eq!((service, peers.is_none(), port, token), (None, true, false, None));
}

#[test]
fn an_autoscaled_tier_that_can_grow_to_two_exchanges() {
    let yaml = with_load_balancer("    replicas: 1\n    autoscaling: {minReplicas: 1, maxReplicas: 3}\n");
    let (service, peers, port, token) = peer_parts(&yaml);
    assert!(service.is_some() && peers.is_some() && port && token.is_some());
}
