//! The aws_cloud_map resolver: asks AWS Cloud Map (DiscoverInstances) every `interval` for the instances of
//! `service_name` in `namespace` that pass `health_status`, and hands their addresses to the pool. A failed call
//! keeps the last good pool; a successful answer is the pool, even an empty one.
//!
//! Credentials and region come from the standard AWS chain (environment, shared config and credentials files,
//! web identity, ECS and EC2 instance roles); the region defaults to us-east-1, as in the Collector. The endpoint
//! follows `AWS_ENDPOINT_URL_SERVICEDISCOVERY` / `AWS_ENDPOINT_URL` (or `endpoint_url` in the shared config); such
//! a URL is used exactly as given, without the `data-` host prefix the SDK adds for DiscoverInstances.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_servicediscovery::Client;
use aws_sdk_servicediscovery::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_servicediscovery::config::{ConfigBag, Intercept, Region, RuntimeComponents};
use aws_sdk_servicediscovery::error::{BoxError, DisplayErrorContext};
use aws_sdk_servicediscovery::types::{self, HttpInstanceSummary};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::endpoint::EndpointPrefix;
use aws_types::endpoint_config::EndpointUrl;
use futures::future::BoxFuture;

use super::{Resolve, Updates};
use crate::config::{AwsCloudMapResolver, HealthStatusFilter};
use crate::route::ring::Member;

/// The resolver's name in metric labels and `/debug/pool`, as the Collector labels it.
pub const NAME: &str = "aws";
/// The most instances one DiscoverInstances call returns (the API's maximum `MaxResults`; it has no paging).
pub const MAX_RESULTS: i32 = 1000;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_REGION: &str = "us-east-1";

/// The instance attributes Cloud Map sets when an instance is registered with an address and a port.
const IPV4: &str = "AWS_INSTANCE_IPV4";
const IPV6: &str = "AWS_INSTANCE_IPV6";
const PORT: &str = "AWS_INSTANCE_PORT";

/// The aws_cloud_map resolver, as configured.
pub struct CloudMap {
    cfg: AwsCloudMapResolver,
}

impl CloudMap {
    pub fn new(cfg: &AwsCloudMapResolver) -> CloudMap {
        CloudMap { cfg: cfg.clone() }
    }
}

impl Resolve for CloudMap {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Loads the AWS configuration, then discovers periodically; the first call happens at once.
    fn updates(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<Updates>> {
        let cfg = self.cfg;
        Box::pin(async move {
            let interval = Some(cfg.interval.map_or(DEFAULT_INTERVAL, |d| d.0))
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_INTERVAL)
                .max(Duration::from_millis(100));
            let timeout =
                Some(cfg.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0)).filter(|d| !d.is_zero()).unwrap_or(DEFAULT_TIMEOUT);
            let client = client(timeout).await;
            tracing::info!(
                namespace = %cfg.namespace,
                service_name = %cfg.service_name,
                health_status = ?cfg.health_status,
                ?interval,
                ?timeout,
                "discovering backends in AWS Cloud Map"
            );
            let lookup = move || {
                let (client, cfg) = (client.clone(), cfg.clone());
                async move { discover(&client, &cfg).await }
            };
            Ok(super::poll::updates(lookup, interval))
        })
    }
}

/// A Cloud Map client from the standard AWS configuration chain, each call bounded by `timeout`.
pub async fn client(timeout: Duration) -> Client {
    let http = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build())
        .load()
        .await;
    let mut config = aws_sdk_servicediscovery::config::Builder::from(&shared).interceptor(ExactEndpoint);
    if shared.region().is_none() {
        config = config.region(Region::from_static(DEFAULT_REGION));
    }
    Client::from_conf(config.build())
}

/// One DiscoverInstances call, as pool members.
async fn discover(client: &Client, cfg: &AwsCloudMapResolver) -> Result<Vec<Member>, String> {
    let answer = client
        .discover_instances()
        .namespace_name(&cfg.namespace)
        .service_name(&cfg.service_name)
        .health_status(filter(cfg.health_status))
        .set_owner_account(cfg.owner_account.clone())
        .max_results(MAX_RESULTS)
        .send()
        .await
        .map_err(|e| format!("DiscoverInstances {}/{}: {}", cfg.namespace, cfg.service_name, DisplayErrorContext(e)))?;
    let instances = answer.instances();
    if instances.len() >= MAX_RESULTS as usize {
        tracing::warn!(
            service_name = %cfg.service_name,
            "Cloud Map returned its maximum of {MAX_RESULTS} instances: any further instances are not in the pool"
        );
    }
    let (members, skipped) = members(instances, cfg.port);
    for (id, why) in &skipped {
        tracing::warn!(instance = %id, "Cloud Map instance left out of the pool: {why}");
    }
    Ok(members)
}

/// The members the instances describe: `AWS_INSTANCE_IPV4` (else `AWS_INSTANCE_IPV6`) with `port`, else the
/// instance's `AWS_INSTANCE_PORT`. Instances without a usable address or port are returned apart, with the reason.
pub fn members(instances: &[HttpInstanceSummary], port: Option<u16>) -> (Vec<Member>, Vec<(String, String)>) {
    let mut addresses = BTreeSet::new();
    let mut skipped = Vec::new();
    for instance in instances {
        match address(instance, port) {
            Ok(a) => {
                addresses.insert(a.to_string());
            }
            Err(why) => skipped.push((instance.instance_id().unwrap_or("(no id)").to_string(), why)),
        }
    }
    (addresses.into_iter().map(|address| Member { address, weight: 1 }).collect(), skipped)
}

fn address(instance: &HttpInstanceSummary, port: Option<u16>) -> Result<SocketAddr, String> {
    let attrs = instance.attributes();
    let attr = |key: &str| attrs.and_then(|a| a.get(key)).map(|v| v.trim());
    let ip: IpAddr = match (attr(IPV4), attr(IPV6)) {
        (Some(v4), _) => v4.parse::<Ipv4Addr>().map_err(|_| format!("{IPV4} {v4:?} is not an IPv4 address"))?.into(),
        (None, Some(v6)) => v6.parse::<Ipv6Addr>().map_err(|_| format!("{IPV6} {v6:?} is not an IPv6 address"))?.into(),
        (None, None) => return Err(format!("it has neither {IPV4} nor {IPV6}")),
    };
    let port = match (port, attr(PORT)) {
        (Some(p), _) => p,
        (None, Some(p)) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or(format!("{PORT} {p:?} is not a port"))?,
        (None, None) => return Err(format!("it has no {PORT} and the resolver sets no port")),
    };
    Ok(SocketAddr::new(ip, port))
}

fn filter(status: HealthStatusFilter) -> types::HealthStatusFilter {
    match status {
        HealthStatusFilter::Healthy => types::HealthStatusFilter::Healthy,
        HealthStatusFilter::Unhealthy => types::HealthStatusFilter::Unhealthy,
        HealthStatusFilter::All => types::HealthStatusFilter::All,
        HealthStatusFilter::HealthyOrElseAll => types::HealthStatusFilter::HealthyOrElseAll,
    }
}

/// Sends requests to a configured endpoint URL exactly as given: the SDK would otherwise put DiscoverInstances'
/// `data-` host prefix in front of it (`data-localhost`), which no local or private endpoint answers.
#[derive(Debug)]
struct ExactEndpoint;

impl Intercept for ExactEndpoint {
    fn name(&self) -> &'static str {
        "ExactEndpoint"
    }

    fn modify_before_retry_loop(
        &self,
        _context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<EndpointUrl>().is_some() {
            cfg.interceptor_state().unset::<EndpointPrefix>();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, attrs: &[(&str, &str)]) -> HttpInstanceSummary {
        let mut b = HttpInstanceSummary::builder().instance_id(id);
        for (k, v) in attrs {
            b = b.attributes(*k, *v);
        }
        b.build()
    }

    #[test]
    fn addresses_and_ports_from_the_instance_attributes() {
        let instances = [
            instance("a", &[(IPV4, "10.0.0.2"), (PORT, "4317")]),
            instance("b", &[(IPV4, "10.0.0.1"), (PORT, "4318")]),
            instance("v6", &[(IPV6, "fd00::1"), (PORT, "4317")]),
            instance("both", &[(IPV4, "10.0.0.3"), (IPV6, "fd00::3"), (PORT, "4317")]),
            instance("dup", &[(IPV4, "10.0.0.2"), (PORT, "4317")]),
            instance("noport", &[(IPV4, "10.0.0.9")]),
            instance("badport", &[(IPV4, "10.0.0.9"), (PORT, "http")]),
            instance("noaddr", &[(PORT, "4317")]),
            instance("badaddr", &[(IPV4, "collector-1"), (PORT, "4317")]),
        ];
        let (members, skipped) = members(&instances, None);
        let addrs: Vec<&str> = members.iter().map(|m| m.address.as_str()).collect();
        assert_eq!(addrs, ["10.0.0.1:4318", "10.0.0.2:4317", "10.0.0.3:4317", "[fd00::1]:4317"]);
        let ids: Vec<&str> = skipped.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["noport", "badport", "noaddr", "badaddr"]);
        assert!(skipped[0].1.contains(PORT) && skipped[3].1.contains("collector-1"), "{skipped:?}");
    }

    #[test]
    fn a_configured_port_replaces_the_instance_port() {
        let instances =
            [instance("a", &[(IPV4, "10.0.0.1"), (PORT, "4318")]), instance("noport", &[(IPV4, "10.0.0.2")])];
        let (members, skipped) = members(&instances, Some(4317));
        let addrs: Vec<&str> = members.iter().map(|m| m.address.as_str()).collect();
        assert_eq!(addrs, ["10.0.0.1:4317", "10.0.0.2:4317"]);
        assert!(skipped.is_empty());
    }
}
