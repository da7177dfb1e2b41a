//! Resolvers: where the pool's members come from.
//!
//! Each resolver is a [`Resolve`]: a source of [`Update`]s, in the shape of linkerd2-proxy's discovery streams.
//! One driver ([`driver::start`]) applies every update to the [`PoolManager`](crate::pool::PoolManager), which
//! diffs it against the pool in use, and logs and counts it. [`from_config`] builds the resolver the
//! configuration chose and is the one reader of that choice: adding a resolver touches its own file, its variant
//! of the configuration's `Resolver` enum and [`from_config`].

pub mod aws_cloud_map;
pub mod dns;
pub mod driver;
pub mod endpointslice;
pub mod k8s;
pub mod poll;
pub mod static_pool;

use std::path::Path;

use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::config::{Config, Resolver};
use crate::pool::Members;

/// What a resolver learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// The complete member set now. Every source here knows its whole set, so no update is partial.
    Reset(Members),
    /// The source could not be read; the pool in use stays. The text says why.
    Failed(String),
}

/// The updates of one resolver, until its source ends.
pub type Updates = BoxStream<'static, Update>;

/// How a resolver's failures read in the log, in its own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wording {
    /// Logged when an update fails after one that applied.
    pub failed: &'static str,
    /// Logged when an update applies after one that failed.
    pub recovered: &'static str,
}

/// The wording of resolvers that ask their source for the member set now and then.
pub const RESOLUTION: Wording =
    Wording { failed: "resolution failed; keeping the current pool", recovered: "resolution succeeded again" };

/// A source of member sets.
pub trait Resolve: Send {
    /// The resolver's name in metric labels, logs and `/debug/pool` (`otelcol_loadbalancer_num_backends{resolver}`).
    fn name(&self) -> &'static str;

    /// How its failures read in the log.
    fn wording(&self) -> Wording {
        RESOLUTION
    }

    /// Whether the process must not start unless the first update applies: true for a pool known before start.
    fn first_update_required(&self) -> bool {
        false
    }

    /// Sets up what the updates need (a client, a signal handler) and returns them. A setup failure stops the
    /// process; failures after it are [`Update::Failed`].
    fn updates(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<Updates>>;
}

/// The resolver `config` chose; `config_path` is the file it was read from (the static resolver reloads it).
pub fn from_config(config: &Config, config_path: &Path) -> anyhow::Result<Box<dyn Resolve>> {
    Ok(match &config.loadbalancing.resolver {
        Resolver::Static(s) => Box::new(static_pool::StaticPool::new(config_path, s)?),
        Resolver::Dns(d) => Box::new(dns::Dns::new(d)),
        Resolver::K8s(k) => Box::new(k8s::K8s::new(k)),
        Resolver::AwsCloudMap(c) => Box::new(aws_cloud_map::CloudMap::new(c)),
    })
}
