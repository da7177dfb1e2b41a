//! `loadbalancing.resolver`: where the backends come from. The file names exactly one resolver block
//! (`static:`, `dns:`, `k8s:` or `aws_cloud_map:`), read into one variant of [`Resolver`]; adding a resolver is
//! a variant, its block's field in [`ResolverBlock`], and its own file.

mod discovery;
mod static_list;

pub use discovery::{AwsCloudMapResolver, DnsResolver, HealthStatusFilter, K8sResolver};
pub use static_list::{StaticResolver, Weights, with_default_port};

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// The one resolver of the pool.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolver {
    Static(StaticResolver),
    Dns(DnsResolver),
    K8s(K8sResolver),
    AwsCloudMap(AwsCloudMapResolver),
}

impl Resolver {
    /// Every resolver's name, as its block is keyed.
    pub const NAMES: [&str; 4] = ["static", "dns", "k8s", "aws_cloud_map"];

    /// The resolver's name: the key of its block.
    pub fn name(&self) -> &'static str {
        let [static_, dns, k8s, aws_cloud_map] = Self::NAMES;
        match self {
            Resolver::Static(_) => static_,
            Resolver::Dns(_) => dns,
            Resolver::K8s(_) => k8s,
            Resolver::AwsCloudMap(_) => aws_cloud_map,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Resolver::Static(s) => s.validate(),
            Resolver::Dns(d) => d.validate(),
            Resolver::K8s(k) => k.validate(),
            Resolver::AwsCloudMap(c) => c.validate(),
        }
    }
}

/// The block as written: any of the resolvers' keys, of which exactly one must be set.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolverBlock {
    #[serde(default, rename = "static")]
    static_: Option<StaticResolver>,
    #[serde(default)]
    dns: Option<DnsResolver>,
    #[serde(default)]
    k8s: Option<K8sResolver>,
    #[serde(default)]
    aws_cloud_map: Option<AwsCloudMapResolver>,
}

impl TryFrom<ResolverBlock> for Resolver {
    type Error = String;

    fn try_from(block: ResolverBlock) -> Result<Resolver, String> {
        let mut set: Vec<Resolver> = [
            block.static_.map(Resolver::Static),
            block.dns.map(Resolver::Dns),
            block.k8s.map(Resolver::K8s),
            block.aws_cloud_map.map(Resolver::AwsCloudMap),
        ]
        .into_iter()
        .flatten()
        .collect();
        let names = Self::NAMES.join(", ");
        match set.len() {
            0 => Err(format!("configure one of {names}")),
            1 => Ok(set.remove(0)),
            _ => Err(format!("configure only one of {names}")),
        }
    }
}

impl<'de> Deserialize<'de> for Resolver {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Resolver::try_from(ResolverBlock::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_block_keys() {
        let k8s = Resolver::K8s(K8sResolver { service: "pool".into(), ..K8sResolver::default() });
        let dns = Resolver::Dns(DnsResolver { hostname: "pool".into(), ..DnsResolver::default() });
        let resolvers = [
            Resolver::Static(StaticResolver { hostnames: vec!["a".into()], ..StaticResolver::default() }),
            dns,
            k8s,
            Resolver::AwsCloudMap(AwsCloudMapResolver::default()),
        ];
        for (resolver, name) in resolvers.iter().zip(Resolver::NAMES) {
            assert_eq!(resolver.name(), name);
            let written = serde_json::to_value(resolver).expect("serializes");
            assert!(written.get(name).is_some(), "{written}");
        }
    }
}
