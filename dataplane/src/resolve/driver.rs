//! The one driver of every resolver: applies each [`Update`] to the pool, counts it in
//! `otelcol_loadbalancer_num_resolutions{resolver,success}`, and logs failures in the resolver's own terms: a
//! failure when it differs from the one before (a repeat only at debug level), and the recovery.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::watch;

use super::{Resolve, Update, Updates, Wording};
use crate::metrics::Metrics;
use crate::pool::{PoolChange, PoolManager};

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
        let mut next: Option<Update> = None;
        let mut ended = false;
        loop {
            let update = match next.take() {
                Some(u) => Some(u),
                None if ended => None,
                None => tokio::select! {
                    u = updates.next() => u,
                    _ = shutdown.wait_for(|s| *s) => return,
                },
            };
            let Some(update) = update else {
                tracing::error!(resolver = self.name, "the resolver's source ended; the pool no longer follows it");
                return;
            };
            // While a new ring waits for its switch time, the updates that come are read: the latest member set
            // waits behind it, and may take its place; a failure is reported after it.
            let (pool, metrics, name) = (Arc::clone(&self.pool), self.metrics.clone(), self.name);
            // An update that never applies is counted still, as a resolution.
            let skipped = |u: &Update| metrics.resolution(name, matches!(u, Update::Reset(_)));
            let apply = self.apply(update);
            tokio::pin!(apply);
            loop {
                tokio::select! {
                    biased;
                    // A failure is counted and logged; the driver goes on with the next update.
                    _ = &mut apply => break,
                    u = updates.next(), if !ended => match u {
                        Some(u @ Update::Reset(_)) => {
                            if let Some(replaced) = next.replace(u) {
                                skipped(&replaced);
                            }
                            pool.newer_waiting();
                        }
                        // The member set waiting is the last one resolved: a failure after it changes nothing.
                        Some(failed) if matches!(next, Some(Update::Reset(_))) => skipped(&failed),
                        Some(failed) => {
                            if let Some(replaced) = next.replace(failed) {
                                skipped(&replaced);
                            }
                        }
                        None => ended = true,
                    },
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClientTls, HealthCheck, OtlpExporter};
    use crate::pool::Members;
    use crate::route::ring::Member;
    use futures::future::BoxFuture;
    use std::time::Duration;

    /// A resolver known before start whose updates are given.
    struct Given(Vec<Update>);

    impl Resolve for Given {
        fn name(&self) -> &'static str {
            "static"
        }

        fn first_update_required(&self) -> bool {
            true
        }

        fn updates(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<Updates>> {
            Box::pin(async move { Ok(futures::stream::iter(self.0).chain(futures::stream::pending()).boxed()) })
        }
    }

    fn pool(metrics: &Metrics) -> (Arc<PoolManager>, watch::Receiver<Arc<crate::pool::Pool>>) {
        let plaintext =
            OtlpExporter { tls: ClientTls { insecure: true, ..ClientTls::default() }, ..OtlpExporter::default() };
        PoolManager::new(plaintext, HealthCheck::default(), metrics.clone(), "static", Duration::from_secs(30))
    }

    fn members(addresses: &[&str]) -> Update {
        Update::Reset(Members::all_active(
            addresses.iter().map(|a| Member { address: a.to_string(), weight: 1 }).collect(),
        ))
    }

    #[tokio::test]
    async fn a_required_first_update_must_apply_for_the_start_to_succeed() {
        let metrics = Metrics::new();
        let (_stop, shutdown) = watch::channel(false);
        let (manager, _) = pool(&metrics);
        let failed = Box::new(Given(vec![Update::Failed("unreadable".into())]));
        let e = start(failed, manager, metrics.clone(), shutdown.clone()).await.expect_err("no pool");
        assert!(e.to_string().contains("unreadable"), "{e}");
        let (manager, _) = pool(&metrics);
        let invalid = Box::new(Given(vec![members(&["not an address"])]));
        let e = start(invalid, manager, metrics.clone(), shutdown.clone()).await.expect_err("an invalid member");
        assert!(e.to_string().contains("not a valid backend address"), "{e}");
        let failures = "otelcol_loadbalancer_num_resolutions{resolver=\"static\",success=\"false\"} 2";
        assert!(metrics.render().lines().any(|l| l == failures), "both are counted:\n{}", metrics.render());
    }

    #[tokio::test]
    async fn updates_after_the_first_are_applied_until_shutdown() {
        let metrics = Metrics::new();
        let (stop, shutdown) = watch::channel(false);
        let (manager, mut pools) = pool(&metrics);
        let updates = vec![
            members(&["127.0.0.1:4317"]),
            Update::Failed("unreadable".into()),
            members(&["127.0.0.1:4317", "127.0.0.2:4317"]),
        ];
        let task = start(Box::new(Given(updates)), manager, metrics.clone(), shutdown).await.expect("started");
        assert_eq!(pools.borrow().version, 1, "the first update applied before the start returned");
        tokio::time::timeout(Duration::from_secs(10), pools.wait_for(|p| p.version == 2))
            .await
            .expect("applied")
            .expect("open");
        assert_eq!(pools.borrow().backends.len(), 2, "the failure in between kept the pool, the next update applied");
        stop.send(true).expect("stop");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the driver ends at shutdown")
            .expect("no panic");
        let rendered = metrics.render();
        for line in [
            "otelcol_loadbalancer_num_resolutions{resolver=\"static\",success=\"true\"} 2",
            "otelcol_loadbalancer_num_resolutions{resolver=\"static\",success=\"false\"} 1",
        ] {
            assert!(rendered.lines().any(|l| l == line), "{line}:\n{rendered}");
        }
    }

    /// A switch that waits up to 2 s for each new ring, giving way as soon as a newer member set waits.
    #[derive(Default)]
    struct GivesWay {
        asked: std::sync::Mutex<Vec<(u64, bool)>>,
    }

    impl crate::pool::Switch for GivesWay {
        fn activation<'a>(
            &'a self,
            ring: u64,
            superseded: &'a (dyn Fn() -> bool + Send + Sync),
        ) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
            Box::pin(async move {
                let mut go = true;
                for _ in 0..200 {
                    if superseded() {
                        go = false;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                self.asked.lock().expect("lock").push((ring, go));
                go
            })
        }

        fn switched(&self, _: &Arc<crate::pool::Pool>) {}
    }

    #[tokio::test]
    async fn a_member_set_that_comes_while_a_ring_waits_for_its_switch_takes_its_place() {
        let metrics = Metrics::new();
        let (_stop, shutdown) = watch::channel(false);
        let (manager, mut pools) = pool(&metrics);
        let switch = Arc::new(GivesWay::default());
        manager.set_switch(switch.clone());
        let (one, two, three) = ("127.0.0.1:4317", "127.0.0.2:4317", "127.0.0.3:4317");
        let timed = vec![(0, members(&[one])), (0, members(&[one, two])), (300, members(&[one, two, three]))];
        let updates = futures::stream::iter(timed)
            .then(|(ms, u)| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                u
            })
            .chain(futures::stream::pending())
            .boxed();
        let started = std::time::Instant::now();
        let _task = tokio::spawn(
            Driver {
                name: "static",
                wording: crate::resolve::RESOLUTION,
                pool: manager,
                metrics: metrics.clone(),
                failure: None,
            }
            .run(updates, shutdown),
        );
        let mut seen = Vec::new();
        let last = tokio::time::timeout(
            Duration::from_secs(10),
            pools.wait_for(|p| {
                seen.push(p.backends.len());
                p.backends.len() == 3
            }),
        )
        .await
        .expect("the last member set applies")
        .expect("open")
        .clone();
        assert!(!seen.contains(&2), "the ring of two backends never took effect: {seen:?}");
        assert!(
            started.elapsed() < Duration::from_millis(2_900),
            "not one switch wait after the other: {:?}",
            started.elapsed()
        );
        let asked = switch.asked.lock().expect("lock").clone();
        assert_eq!(asked.len(), 2, "{asked:?}");
        assert!(!asked[0].1 && asked[1].1, "the first new ring gave way, the second switched: {asked:?}");
        assert_eq!(asked[1].0, last.ring.as_ref().map(|r| r.fingerprint()).unwrap_or(0));
        let rendered = metrics.render();
        let line = "otelcol_loadbalancer_num_resolutions{resolver=\"static\",success=\"true\"} 3";
        assert!(rendered.lines().any(|l| l == line), "every member set is counted:\n{rendered}");
    }
}
