//! Ring updates with several load-balancer pods: the delay from the test's own watch seeing a change of the
//! backends' ready set to the moment every running load-balancer pod's `/debug/pool` lists exactly that set. With
//! `peers:` the replicas switch together at an agreed time, so this includes the switch delay.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use e2e::Cluster;
use e2e::lbc::{debug_pool, lb_pods};
use e2e::ring_watch::{Set, SliceUpdate};
use tokio::sync::{mpsc, watch};

const POLL: Duration = Duration::from_millis(20);
/// The load-balancer pods are listed again every this many polls.
const RELIST_EVERY: u64 = 25;

pub struct Delay {
    pub at: Instant,
    pub from: usize,
    pub to: usize,
    pub ms: u64,
    /// A newer change came before the ring showed this one: timed until the ring showed the newer set.
    pub superseded: bool,
}

#[derive(Default)]
pub struct Monitor {
    pub delays: Vec<Delay>,
    /// Ready sets the ring never showed.
    pub unresolved: Vec<(Instant, Set)>,
    pub polls: u64,
    pub poll_errors: u64,
    pub last_error: String,
}

/// Polls the `/debug/pool` of every load-balancer pod of LoadBalancedCollector `namespace/name` until `stop`.
pub async fn run(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    mut updates: mpsc::UnboundedReceiver<SliceUpdate>,
    mut stop: watch::Receiver<bool>,
) -> Monitor {
    let mut m = Monitor::default();
    let mut pending: Vec<SliceUpdate> = Vec::new();
    let mut ips: Vec<Ipv4Addr> = Vec::new();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if m.polls % RELIST_EVERY == 0 {
            let pods = lb_pods(cluster, namespace, name).await.unwrap_or_default();
            ips = pods.iter().filter_map(|p| cluster.pod_ip(namespace, p).ok()).collect();
        }
        m.polls += 1;
        let mut shown: Option<Set> = None;
        let mut agree = !ips.is_empty();
        for ip in &ips {
            match debug_pool(*ip).await {
                Ok(list) => {
                    let set: Set = list.into_iter().collect();
                    agree &= shown.as_ref().is_none_or(|s| *s == set);
                    shown = Some(set);
                }
                Err(e) => {
                    m.poll_errors += 1;
                    m.last_error = format!("{ip}: {e:#}");
                    agree = false;
                }
            }
        }
        let now = Instant::now();
        while let Ok(u) = updates.try_recv() {
            pending.push(u);
        }
        let Some(shown) = shown.filter(|_| agree) else { continue };
        if let Some(i) = pending.iter().rposition(|u| u.ready == shown) {
            for (j, u) in pending.drain(..=i).enumerate() {
                // The initial listing was in the ring before the watch started: nothing to time.
                let Some(from) = u.previous else { continue };
                m.delays.push(Delay {
                    at: u.at,
                    from: from.len(),
                    to: u.ready.len(),
                    ms: now.saturating_duration_since(u.at).as_millis() as u64,
                    superseded: j < i,
                });
            }
        }
    }
    m.unresolved = pending.into_iter().filter(|u| u.previous.is_some()).map(|u| (u.at, u.ready)).collect();
    m
}
