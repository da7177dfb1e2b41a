//! The static resolver: the `hostnames` (and `weights`) of the configuration file. On SIGHUP, and when the file
//! changes on disk, the file is read again and the pool replaced in place; an invalid file is reported and the
//! running pool kept.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::config::{Config, ConfigError, Resolver, StaticResolver};
use crate::pool::PoolManager;
use crate::route::ring::Member;
use crate::telemetry::Metrics;

/// How often the file's modification time is checked.
const POLL: Duration = Duration::from_secs(2);

/// The members a static resolver lists.
pub fn members(cfg: &StaticResolver) -> Result<Vec<Member>, ConfigError> {
    Ok(cfg.members()?.into_iter().map(|(address, weight)| Member { address, weight }).collect())
}

/// Applies the configured pool, then watches for SIGHUP and file changes until `shutdown`.
pub async fn start(
    path: PathBuf,
    initial: &StaticResolver,
    pool: Arc<PoolManager>,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let applied = pool.apply(members(initial)?).await;
    metrics.resolution("static", applied.is_ok());
    applied.map_err(anyhow::Error::msg)?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        let mut shutdown = shutdown;
        let mut seen = modified(&path);
        loop {
            tokio::select! {
                _ = hup.recv() => tracing::info!(path = %path.display(), "SIGHUP: reloading the static pool"),
                _ = tokio::time::sleep(POLL) => {
                    let now = modified(&path);
                    if now == seen { continue; }
                    tracing::info!(path = %path.display(), "configuration file changed: reloading the static pool");
                }
                _ = shutdown.wait_for(|s| *s) => return,
            }
            seen = modified(&path);
            reload(&path, &pool, &metrics).await;
        }
    }))
}

async fn reload(path: &std::path::Path, pool: &PoolManager, metrics: &Metrics) {
    let result = match Config::load(path) {
        Ok(cfg) => match &cfg.loadbalancing.resolver {
            Resolver::Static(s) => members(s).map_err(|e| e.to_string()),
            _ => Err("the resolver is no longer static; restart to change resolvers".to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    let outcome = match result {
        Ok(m) => pool.apply(m).await,
        Err(e) => Err(e),
    };
    metrics.resolution("static", outcome.is_ok());
    match outcome {
        Ok(Some(_)) => {}
        Ok(None) => tracing::info!("static pool unchanged"),
        Err(e) => tracing::error!(error = %e, "invalid configuration; keeping the running pool"),
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
