//! The dns resolver: resolves `hostname` (A and AAAA) every `interval`, with `timeout` per lookup, and hands the
//! addresses to the pool. A failed or empty lookup keeps the last good pool.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{Resolve, Updates};
use crate::config::DnsResolver;
use crate::route::ring::Member;

/// The resolver's name in metric labels and `/debug/pool`.
pub const NAME: &str = "dns";

/// The dns resolver, as configured.
pub struct Dns {
    hostname: String,
    port: u16,
    interval: Duration,
    timeout: Duration,
}

impl Dns {
    pub fn new(cfg: &DnsResolver) -> Dns {
        Dns {
            hostname: cfg.hostname.clone(),
            port: cfg.port.unwrap_or(4317),
            interval: cfg.interval.map(|d| d.0).unwrap_or(Duration::from_secs(5)).max(Duration::from_millis(100)),
            timeout: cfg.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(1)),
        }
    }
}

impl Resolve for Dns {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Periodic resolution; the first lookup happens at once.
    fn updates(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<Updates>> {
        let Dns { hostname, port, interval, timeout } = *self;
        let lookup = move || {
            let hostname = hostname.clone();
            async move { resolve(&hostname, port, timeout).await.map_err(|e| format!("{hostname}: {e}")) }
        };
        Box::pin(async move { Ok(super::poll::updates(lookup, interval)) })
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
}
