//! The one driver of every resolver: applies each [`Update`] to the pool, counts it in
//! `otelcol_loadbalancer_num_resolutions{resolver,success}`, and logs failures in the resolver's own terms: a
//! failure when it differs from the one before (a repeat only at debug level), and the recovery.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::watch;

use super::{Resolve, Update, Updates, Wording};
use crate::pool::{PoolChange, PoolManager};
use crate::telemetry::Metrics;

/// Starts `resolver` and drives its updates into `pool` until `shutdown`. Fails when the resolver cannot be set
/// up, or when it requires its first update to apply and that update fails.
pub async fn start(
    resolver: Box<dyn Resolve>,
    pool: Arc<PoolManager>,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut driver = Driver { name: resolver.name(), wording: resolver.wording(), pool, metrics, failure: None };
    let required = resolver.first_update_required();
    let mut updates = resolver.updates().await?;
    if required {
        let first = updates.next().await.ok_or_else(|| anyhow::anyhow!("resolver {} gave no members", driver.name))?;
        driver.apply(first).await.map_err(anyhow::Error::msg)?;
    }
    Ok(tokio::spawn(driver.run(updates, shutdown)))
}

struct Driver {
    name: &'static str,
    wording: Wording,
    pool: Arc<PoolManager>,
    metrics: Metrics,
    /// Why the last update failed; `None` when it applied.
    failure: Option<String>,
}

impl Driver {
    async fn run(mut self, mut updates: Updates, mut shutdown: watch::Receiver<bool>) {
        loop {
            let update = tokio::select! {
                u = updates.next() => u,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let Some(update) = update else {
                tracing::error!(resolver = self.name, "the resolver's source ended; the pool no longer follows it");
                return;
            };
            // A failure is counted and logged; the driver goes on with the next update.
            let _ = self.apply(update).await;
        }
    }

    /// Applies one update: the pool's change (`None` when nothing changed), or why the pool in use stays.
    async fn apply(&mut self, update: Update) -> Result<Option<PoolChange>, String> {
        let outcome = match update {
            Update::Reset(members) => self.pool.apply_members(members).await.map_err(|e| {
                tracing::error!(resolver = self.name, error = %e, "cannot apply the resolved members");
                e
            }),
            Update::Failed(e) => {
                if self.failure.as_ref() == Some(&e) {
                    tracing::debug!(resolver = self.name, error = %e, "{}", self.wording.failed);
                } else {
                    tracing::warn!(resolver = self.name, error = %e, "{}", self.wording.failed);
                }
                Err(e)
            }
        };
        self.metrics.resolution(self.name, outcome.is_ok());
        match &outcome {
            Ok(change) => {
                if self.failure.take().is_some() {
                    tracing::info!(resolver = self.name, "{}", self.wording.recovered);
                }
                if change.is_none() {
                    tracing::debug!(resolver = self.name, "members unchanged");
                }
            }
            Err(e) => self.failure = Some(e.clone()),
        }
        outcome
    }
}
