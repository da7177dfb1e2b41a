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

    #[tokio::test]
    async fn a_failed_lookup_keeps_the_last_good_pool() {
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
        let resolver = Box::new(Scripted(updates(lookup, Duration::from_millis(10))));
        let task = driver::start(resolver, pool, metrics.clone(), shutdown).await.expect("started");
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
