//! The dns resolver: resolves `hostname` (A and AAAA) every `interval`, with `timeout` per lookup, and hands the
//! addresses to the pool. A failed or empty lookup keeps the last good pool.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::DnsResolver;
use crate::pool::PoolManager;
use crate::route::ring::Member;
use crate::telemetry::Metrics;

/// Starts periodic resolution; the first lookup happens at once.
pub fn start(
    cfg: &DnsResolver,
    pool: Arc<PoolManager>,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let hostname = cfg.hostname.clone();
    let port = cfg.port.unwrap_or(4317);
    let interval = cfg.interval.map(|d| d.0).unwrap_or(Duration::from_secs(5)).max(Duration::from_millis(100));
    let timeout = cfg.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(1));
    let lookup = move || {
        let hostname = hostname.clone();
        async move { resolve(&hostname, port, timeout).await.map_err(|e| format!("{hostname}: {e}")) }
    };
    tokio::spawn(run(lookup, interval, pool, metrics, shutdown))
}

/// Looks up the members every `interval` until `shutdown`, and applies each successful answer to the pool.
async fn run<F, Fut>(
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
                metrics.resolution("dns", outcome.is_ok());
                if let Err(e) = outcome {
                    tracing::error!(error = %e, "cannot apply the resolved members");
                }
            }
            Err(e) => {
                metrics.resolution("dns", false);
                tracing::warn!(error = %e, "DNS resolution failed; keeping the current pool");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// The addresses `hostname` resolves to, as members on `port`.
pub async fn resolve(hostname: &str, port: u16, timeout: Duration) -> Result<Vec<Member>, String> {
    let found = tokio::time::timeout(timeout, tokio::net::lookup_host((hostname, port)))
        .await
        .map_err(|_| format!("no answer in {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    let addrs: BTreeSet<String> = found.map(|a| a.to_string()).collect();
    if addrs.is_empty() {
        return Err("no addresses".into());
    }
    Ok(addrs.into_iter().map(|address| Member { address, weight: 1 }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Only names the machine answers itself (the hosts file, literals): tests send no DNS query anywhere.
    #[tokio::test]
    async fn resolves_a_and_aaaa() {
        let m = resolve("localhost", 4317, Duration::from_secs(2)).await.expect("localhost resolves");
        let addrs: Vec<_> = m.iter().map(|m| m.address.as_str()).collect();
        assert!(addrs.contains(&"127.0.0.1:4317"), "{addrs:?}");
        let m = resolve("::1", 4318, Duration::from_secs(2)).await.expect("an IPv6 address");
        assert_eq!(
            m.iter().map(|m| m.address.as_str()).collect::<Vec<_>>(),
            ["[::1]:4318"],
            "IPv6 members are bracketed"
        );
        assert!(
            resolve("", 4317, Duration::from_secs(2)).await.is_err(),
            "an empty name is an error, not an empty pool"
        );
    }

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
        let task = tokio::spawn(run(lookup, Duration::from_millis(10), pool, metrics.clone(), shutdown));
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
