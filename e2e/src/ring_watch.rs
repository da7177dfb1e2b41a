//! Timing ring updates: the test's own watch of a Service's EndpointSlices reports every change of its ready
//! (ready, serving, not terminating) addresses, as a load balancer should see them; tests time how long the load
//! balancer takes to show each change, and summarise the delays ([`RingStats`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::watcher;
use tokio::sync::mpsc;

/// `address:port` strings.
pub type Set = BTreeSet<String>;

/// A change of the ready set.
pub struct SliceUpdate {
    /// When the watch event arrived.
    pub at: Instant,
    pub ready: Set,
    /// The set before; `None` for the initial listing.
    pub previous: Option<Set>,
}

/// The ready, serving, not terminating endpoints of all `slices`, as `address:port`.
pub fn ready_set(slices: &BTreeMap<String, EndpointSlice>, port: u16) -> Set {
    slices
        .values()
        .flat_map(|s| s.endpoints.iter())
        .filter(|ep| {
            let c = ep.conditions.as_ref();
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            ready && serving && !terminating
        })
        .flat_map(|ep| ep.addresses.iter().map(move |a| format!("{a}:{port}")))
        .collect()
}

/// Watches the EndpointSlices of Service `namespace/service` and sends every change of its ready set (on
/// `port`); counts watch events in `events`. Ends when the receiver is dropped or the task aborted.
pub async fn watch_ready(
    client: kube::Client,
    namespace: &str,
    service: &str,
    port: u16,
    tx: mpsc::UnboundedSender<SliceUpdate>,
    events: Arc<AtomicU64>,
) {
    let api: Api<EndpointSlice> = Api::namespaced(client, namespace);
    let cfg = watcher::Config::default().labels(&format!("kubernetes.io/service-name={service}"));
    let mut stream = watcher::watcher(api, cfg).boxed();
    let mut slices: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut listing: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut last: Option<Set> = None;
    let name = |s: &EndpointSlice| s.metadata.name.clone().unwrap_or_default();
    while let Some(ev) = stream.next().await {
        let at = Instant::now();
        match ev {
            Ok(watcher::Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(s)) => {
                listing.insert(name(&s), s);
                continue;
            }
            Ok(watcher::Event::InitDone) => slices = std::mem::take(&mut listing),
            Ok(watcher::Event::Apply(s)) => {
                slices.insert(name(&s), s);
            }
            Ok(watcher::Event::Delete(s)) => {
                slices.remove(&name(&s));
            }
            Err(e) => {
                tracing::warn!("EndpointSlice watch of {namespace}/{service}: {e} (retrying)");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        events.fetch_add(1, Ordering::SeqCst);
        let ready = ready_set(&slices, port);
        if last.as_ref() != Some(&ready) {
            let previous = last.replace(ready.clone());
            if tx.send(SliceUpdate { at, ready, previous }).is_err() {
                return;
            }
        }
    }
}

/// Ring update delays, summarised.
pub struct RingStats {
    pub sorted_ms: Vec<u64>,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

impl RingStats {
    pub fn of(mut ms: Vec<u64>) -> RingStats {
        ms.sort_unstable();
        RingStats {
            p50_ms: nearest_rank(&ms, 0.50),
            p99_ms: nearest_rank(&ms, 0.99),
            max_ms: ms.last().copied().unwrap_or(0),
            sorted_ms: ms,
        }
    }
}

/// The nearest-rank percentile of sorted values (0 when empty).
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let s = RingStats::of(vec![40, 10, 30, 20]);
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (20, 40, 40));
        assert_eq!(RingStats::of(Vec::new()).p99_ms, 0);
        assert_eq!(RingStats::of(vec![5]).p99_ms, 5);
        let s = RingStats::of((1..=200).rev().collect());
        assert_eq!((s.p50_ms, s.p99_ms), (100, 198));
    }
}
