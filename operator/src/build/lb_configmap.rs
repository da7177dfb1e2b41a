//! ConfigMap `<name>`: the data plane's configuration (key `config.yaml`), a value of the data plane's own
//! configuration model serialized, and the sidecar Collector's configuration (key `collector.yaml`) when there is
//! one.

use std::net::{Ipv4Addr, SocketAddr};

use k8s_openapi::api::core::v1::ConfigMap;
use otlp_lb_config::{
    ClientTls, Config, GrpcReceiver, HttpReceiver, K8sResolver, LoadBalancing, PeerDns, Peers, ReceiverAuth, Resolver,
    Signal,
};

use super::collector_config::{self, DATA_PLANE_INTERNAL_GRPC_PORT, DATA_PLANE_INTERNAL_HTTP_PORT};
use super::labels::Component;
use super::lb_peer_service::{self, PEER_PORT, PEER_TOKEN_DIR, PEER_TOKEN_KEY};
use super::{Owner, string_map, to_yaml};
use crate::crd::{Backends, METRICS_PORT, OTLP_GRPC_PORT, OTLP_HTTP_PORT};
use crate::error::{Error, Result};

/// Key of the data plane configuration.
pub const DATA_PLANE_KEY: &str = "config.yaml";
/// Key of the sidecar Collector configuration.
pub const SIDECAR_KEY: &str = "collector.yaml";
/// Directory the ConfigMap is mounted at in the data plane container.
pub const CONFIG_DIR: &str = "/etc/otlp-lb";
/// Directory the TLS Secret is mounted at in the data plane container (beside, not inside, the
/// ConfigMap mount).
pub const TLS_DIR: &str = "/etc/otlp-lb-tls";

/// One of the operator's fixed ports (each a valid port number) as the data plane's configuration takes it.
fn port(port: i32) -> u16 {
    u16::try_from(port).unwrap_or_default()
}

fn address(ip: Ipv4Addr, number: i32) -> SocketAddr {
    SocketAddr::from((ip, port(number)))
}

/// The data plane configuration of the LoadBalancedCollector `owner`.
pub fn data_plane_config(owner: &Owner<'_>) -> Config {
    let settings = &owner.cluster.load_balancer;
    let spec = &owner.lbc.spec.load_balancer;
    let (service, port) = match &owner.cluster.backends {
        Backends::Service { name, port } => (*name, *port),
        Backends::Pool { .. } => (owner.names.backends.as_str(), port(OTLP_GRPC_PORT)),
    };
    let resolver =
        K8sResolver { service: format!("{service}.{}", owner.namespace), ports: vec![port], ..K8sResolver::default() };
    let mut loadbalancing = LoadBalancing::new(Resolver::K8s(resolver));
    loadbalancing.routing_attributes = settings.routing.attributes.clone();
    loadbalancing.protocol.otlp = settings.exporter.clone();
    loadbalancing.protocol.otlp.tls = tls(owner);
    loadbalancing.retry_on_failure = settings.retry.clone();
    if let Some(queue) = &settings.durable_queue {
        loadbalancing.sending_queue = queue.clone();
    }

    let mut config = Config::new(loadbalancing);
    let (ip, grpc, http) = if spec.collector.is_some() {
        (Ipv4Addr::LOCALHOST, DATA_PLANE_INTERNAL_GRPC_PORT, DATA_PLANE_INTERNAL_HTTP_PORT)
    } else {
        (Ipv4Addr::UNSPECIFIED, OTLP_GRPC_PORT, OTLP_HTTP_PORT)
    };
    let protocols = &mut config.receivers.otlp.protocols;
    protocols.grpc = Some(GrpcReceiver {
        endpoint: address(ip, grpc),
        max_connection_age: settings.max_connection_age,
        ..GrpcReceiver::default()
    });
    protocols.http = Some(HttpReceiver { endpoint: address(ip, http), ..HttpReceiver::default() });
    for signal in Signal::ALL {
        config.routing.set(signal, settings.routing.key(signal));
    }
    // routing.affinity_window keeps its default, which the backends' drain is derived from (`drain`).
    config.limits.memory_limit_mib = settings.memory_limit_mib;
    config.telemetry.metrics.address = address(Ipv4Addr::UNSPECIFIED, METRICS_PORT);
    config.peers = lb_peer_service::wanted(owner).then(|| peers(owner));
    config
}

/// `peers`: the replicas find each other through the headless Service and authenticate with the shared token.
fn peers(owner: &Owner<'_>) -> Peers {
    let dns = PeerDns { hostname: lb_peer_service::hostname(owner), port: port(PEER_PORT) };
    let auth =
        ReceiverAuth { bearer_token: None, bearer_token_file: Some(format!("{PEER_TOKEN_DIR}/{PEER_TOKEN_KEY}")) };
    Peers::by_dns(address(Ipv4Addr::UNSPECIFIED, PEER_PORT), dns, auth)
}

/// TLS towards the backends, with the Secret's files where the data plane container mounts them.
fn tls(owner: &Owner<'_>) -> ClientTls {
    let tls = &owner.lbc.spec.load_balancer.tls;
    if tls.insecure {
        return ClientTls { insecure: true, ..ClientTls::default() };
    }
    let secret = tls.secret_name.is_some();
    let client = secret && tls.client_certificate;
    let file = |name: &str, wanted: bool| wanted.then(|| format!("{TLS_DIR}/{name}"));
    ClientTls {
        insecure: false,
        ca_file: file("ca.crt", secret),
        cert_file: file("tls.crt", client),
        key_file: file("tls.key", client),
        server_name_override: tls.server_name.clone(),
        ..ClientTls::default()
    }
}

/// The ConfigMap of the load-balancer tier. The data plane's configuration passes the data plane's own checks.
pub fn build(owner: &Owner<'_>) -> Result<ConfigMap> {
    let config = data_plane_config(owner);
    config.validate().map_err(|e| Error::InvalidSpec(format!("the data plane would refuse its configuration: {e}")))?;
    let text =
        config.to_yaml().map_err(|e| Error::Render { what: "the data plane configuration", reason: e.to_string() })?;
    let mut data = string_map([(DATA_PLANE_KEY, text)]);
    if let Some(sidecar) = &owner.lbc.spec.load_balancer.collector {
        let config = collector_config::sidecar_config(&sidecar.config);
        data.insert(SIDECAR_KEY.to_string(), to_yaml("the sidecar Collector configuration", &config)?);
    }
    Ok(ConfigMap {
        metadata: owner.meta(&owner.names.load_balancer, Component::LoadBalancer),
        data: Some(data),
        ..ConfigMap::default()
    })
}
