//! Resolvers: where the pool's members come from. Each resolver hands complete member sets to the
//! [`PoolManager`](crate::pool::PoolManager), which diffs them against the pool in use.

pub mod aws_cloud_map;
pub mod dns;
pub mod endpointslice;
pub mod k8s;
pub mod poll;
pub mod static_pool;

use crate::config::Resolver;

/// The resolver's name as used in metric labels (`otelcol_loadbalancer_num_backends{resolver=...}`).
pub fn name(resolver: &Resolver) -> &'static str {
    resolver.label()
}
