//! The static resolver: the `hostnames` (and `weights`, and the `draining` hostnames) of the configuration file. On SIGHUP, and when the file
//! changes on disk, the file is read again and the pool replaced in place; an invalid file is reported and the
//! running pool kept.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::signal::unix::{SignalKind, signal};

use super::{Resolve, Update, Updates, Wording};
use crate::config::{Config, ConfigError, Resolver, StaticResolver};
use crate::pool::Members;
use crate::route::ring::Member;

/// The resolver's name in metric labels and `/debug/pool`.
pub const NAME: &str = "static";

/// How often the file's modification time is checked.
const POLL: Duration = Duration::from_secs(2);

/// The members a static resolver lists, and those it drains.
pub fn members(cfg: &StaticResolver) -> Result<Members, ConfigError> {
    let active = cfg.members()?.into_iter().map(|(address, weight)| Member { address, weight }).collect();
    let draining = cfg.draining_members()?.into_iter().map(|address| Member { address, weight: 1 }).collect();
    Ok(Members { active, draining })
}

/// The static resolver: the pool configured at start, and the file to read again.
pub struct StaticPool {
    path: PathBuf,
    initial: Members,
}

impl StaticPool {
    pub fn new(path: &Path, cfg: &StaticResolver) -> anyhow::Result<StaticPool> {
        Ok(StaticPool { path: path.to_path_buf(), initial: members(cfg)? })
    }
}

impl Resolve for StaticPool {
    fn name(&self) -> &'static str {
        NAME
    }

    fn wording(&self) -> Wording {
        Wording { failed: "invalid configuration; keeping the running pool", recovered: "configuration valid again" }
    }

    /// The configured pool is known before start: it must apply.
    fn first_update_required(&self) -> bool {
        true
    }

    /// The configured pool, then the file's pool at each SIGHUP or change on disk.
    fn updates(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<Updates>> {
        let StaticPool { path, initial } = *self;
        Box::pin(async move {
            let hup = signal(SignalKind::hangup())?;
            let seen = modified(&path);
            let first = Update::Reset(initial);
            let reloads = futures::stream::unfold((path, hup, seen), |(path, mut hup, mut seen)| async move {
                loop {
                    tokio::select! {
                        _ = hup.recv() => tracing::info!(path = %path.display(), "SIGHUP: reloading the static pool"),
                        _ = tokio::time::sleep(POLL) => {
                            if modified(&path) == seen { continue; }
                            tracing::info!(path = %path.display(), "configuration file changed: reloading the static pool");
                        }
                    }
                    seen = modified(&path);
                    return Some((reload(&path), (path, hup, seen)));
                }
            });
            Ok(futures::stream::once(async { first }).chain(reloads).boxed())
        })
    }
}

/// The pool the file lists now.
fn reload(path: &Path) -> Update {
    let cfg = match Config::load(path) {
        Ok(cfg) => cfg,
        Err(e) => return Update::Failed(e.to_string()),
    };
    match &cfg.loadbalancing.resolver {
        Resolver::Static(s) => match members(s) {
            Ok(m) => Update::Reset(m),
            Err(e) => Update::Failed(e.to_string()),
        },
        _ => Update::Failed("the resolver is no longer static; restart to change resolvers".to_string()),
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
