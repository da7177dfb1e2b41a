//! Polling resolvers (dns, aws_cloud_map): ask for the member set every `interval`, apply each answer to the pool,
//! and keep the pool in use when a lookup fails.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::pool::PoolManager;
use crate::route::ring::Member;
use crate::telemetry::Metrics;

/// Looks up the members every `interval` until `shutdown`, and applies each successful answer to the pool. Each
/// lookup is counted in `otelcol_loadbalancer_num_resolutions{resolver}`; the first happens at once.
pub async fn run<F, Fut>(
    resolver: &'static str,
    mut lookup: F,
    interval: Duration,
    pool: Arc<PoolManager>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Member>, String>>,
{
    loop {
        match lookup().await {
            Ok(members) => {
                let outcome = pool.apply(members).await;
                metrics.resolution(resolver, outcome.is_ok());
                if let Err(e) = outcome {
                    tracing::error!(resolver, error = %e, "cannot apply the resolved members");
                }
            }
            Err(e) => {
                metrics.resolution(resolver, false);
                tracing::warn!(resolver, error = %e, "resolution failed; keeping the current pool");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_lookup_keeps_the_last_good_pool() {
        use crate::config::{ClientTls, HealthCheck, OtlpExporter};
        use std::collections::VecDeque;
        use std::sync::Mutex;

        let member = |a: &str| Member { address: a.to_string(), weight: 1 };
        let answers = Arc::new(Mutex::new(VecDeque::from([
            Ok(vec![member("127.0.0.1:4317"), member("127.0.0.2:4317")]),
            Err("SERVFAIL".to_string()),
            Err("no answer in 1s".to_string()),
            Ok(vec![member("127.0.0.1:4317"), member("127.0.0.2:4317"), member("127.0.0.3:4317")]),
        ])));
        let metrics = Metrics::new();
        let (pool, pools) = PoolManager::new(
            OtlpExporter { tls: ClientTls { insecure: true, ..ClientTls::default() }, ..OtlpExporter::default() },
            HealthCheck::default(),
            metrics.clone(),
            "dns",
            Duration::from_secs(30),
        );
        let (stop, shutdown) = watch::channel(false);
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let script = Arc::clone(&answers);
        let lookup = move || {
            let next = script.lock().expect("script").pop_front();
            let _ = seen_tx.send(next.is_some());
            async move { next.unwrap_or_else(|| Err("script over".into())) }
        };
        let task = tokio::spawn(run("dns", lookup, Duration::from_millis(10), pool, metrics.clone(), shutdown));
        let members = |p: &crate::pool::Pool| p.ring.as_ref().map(|r| r.members().len()).unwrap_or(0);
        let mut versions = Vec::new();
        // Each lookup is reported before it answers; look at the pool when the next one starts.
        for step in 0..5 {
            let scripted =
                tokio::time::timeout(Duration::from_secs(30), seen.recv()).await.expect("the loop runs").expect("open");
            let p = pools.borrow().clone();
            versions.push((p.version, members(&p)));
            if !scripted {
                assert_eq!(step, 4);
                break;
            }
        }
        stop.send(true).expect("stop");
        task.await.expect("the loop ends at shutdown");
        // Before lookup 1: empty. After the good answer: 2 members, kept through both failures; then 3.
        assert_eq!(versions, [(0, 0), (1, 2), (1, 2), (1, 2), (2, 3)]);
        let failed = metrics
            .render()
            .lines()
            .any(|l| l.starts_with("otelcol_loadbalancer_num_resolutions{resolver=\"dns\",success=\"false\"} 3"));
        assert!(failed, "two failed lookups and the end of the script are counted:\n{}", metrics.render());
    }
}
