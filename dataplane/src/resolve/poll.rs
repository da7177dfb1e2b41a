//! Polling resolvers (dns, aws_cloud_map): ask for the member set every `interval`; each answer is an update, a
//! failed lookup an [`Update::Failed`] (the pool in use stays).

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;

use super::{Update, Updates};
use crate::pool::Members;
use crate::route::ring::Member;

/// The answers of `lookup`, asked at once and then every `interval`.
pub fn updates<F, Fut>(lookup: F, interval: Duration) -> Updates
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<Member>, String>> + Send + 'static,
{
    futures::stream::unfold((lookup, true), move |(mut lookup, first)| async move {
        if !first {
            tokio::time::sleep(interval).await;
        }
        let update = match lookup().await {
            Ok(members) => Update::Reset(Members::all_active(members)),
            Err(e) => Update::Failed(e),
        };
        Some((update, (lookup, false)))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClientTls, HealthCheck, OtlpExporter};
    use crate::metrics::Metrics;
    use crate::pool::PoolManager;
    use crate::resolve::{Resolve, driver};
    use futures::future::BoxFuture;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use tokio::sync::watch;

    /// A polling resolver whose lookups answer from a script.
    struct Scripted(Updates);

    impl Resolve for Scripted {
        fn name(&self) -> &'static str {
            "dns"
        }

        fn updates(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<Updates>> {
            Box::pin(async move { Ok(self.0) })
        }
    }

    /// How many resolutions the driver has counted, failed or not.
    fn resolutions(metrics: &Metrics) -> u64 {
        let rendered = metrics.render();
        rendered
            .lines()
            .filter(|l| l.starts_with("otelcol_loadbalancer_num_resolutions{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    #[tokio::test]
    async fn a_failed_lookup_keeps_the_last_good_pool() {
        let member = |a: &str| Member { address: a.to_string(), weight: 1 };
        let answers = Arc::new(Mutex::new(VecDeque::from([
            Ok(vec![member("127.0.0.1:4317"), member("127.0.0.2:4317")]),
            Err("SERVFAIL".to_string()),
            Err("no answer in 1s".to_string()),
            Ok(vec![member("127.0.0.1:4317"), member("127.0.0.2:4317"), member("127.0.0.3:4317")]),
        ])));
        let steps = answers.lock().expect("script").len();
        let metrics = Metrics::new();
        let (pool, pools) = PoolManager::new(
            OtlpExporter { tls: ClientTls { insecure: true, ..ClientTls::default() }, ..OtlpExporter::default() },
            HealthCheck::default(),
            metrics.clone(),
            "dns",
            Duration::from_secs(30),
        );
        let (stop, shutdown) = watch::channel(false);
        // The driver reads the next answer while it applies one, so each lookup answers only when the test lets
        // it: one at a time, after the one before was counted.
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (script, lookups) = (Arc::clone(&answers), Arc::clone(&gate));
        let lookup = move || {
            let next = script.lock().expect("script").pop_front();
            let gate = Arc::clone(&lookups);
            async move {
                gate.acquire().await.expect("open").forget();
                next.unwrap_or_else(|| Err("script over".to_string()))
            }
        };
        let resolver = Box::new(Scripted(updates(lookup, Duration::from_millis(10))));
        let task = driver::start(resolver, pool, metrics.clone(), shutdown).await.expect("started");
        let members = |p: &crate::pool::Pool| p.ring.as_ref().map(|r| r.members().len()).unwrap_or(0);
        let seen = |pools: &watch::Receiver<Arc<crate::pool::Pool>>| {
            let p = pools.borrow().clone();
            (p.version, members(&p))
        };
        let mut versions = vec![seen(&pools)];
        for step in 1..=steps {
            gate.add_permits(1);
            let counted = async {
                while resolutions(&metrics) < step as u64 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(30), counted).await.expect("each answer is counted");
            versions.push(seen(&pools));
        }
        stop.send(true).expect("stop");
        task.await.expect("the loop ends at shutdown");
        // Before any answer: empty. After the good answer: 2 members, kept through both failures; then 3.
        assert_eq!(versions, [(0, 0), (1, 2), (1, 2), (1, 2), (2, 3)]);
        let rendered = metrics.render();
        for line in [
            "otelcol_loadbalancer_num_resolutions{resolver=\"dns\",success=\"true\"} 2",
            "otelcol_loadbalancer_num_resolutions{resolver=\"dns\",success=\"false\"} 2",
        ] {
            assert!(rendered.lines().any(|l| l == line), "{line}:\n{rendered}");
        }
    }
}
