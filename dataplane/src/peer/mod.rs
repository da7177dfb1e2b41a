//! The peer exchange between the replicas of a load-balancer tier, so that a trace whose requests reach several
//! replicas keeps one backend through every pool change:
//!
//! - **Agree on a switch time** ([`schedule`]): a replica that builds a new ring does not use it at once; it
//!   proposes a time `switch_delay` ahead to its peers, and every replica switches at the earliest proposal it has
//!   for that ring. One that sees the change after that time switches at once and reports it.
//! - **Exchange held traces** ([`wire::Held`]): at its switch each replica sends its peers the trace keys it routed
//!   under an earlier ring whose backend the new ring changes, with that backend. A receiver keeps them
//!   ([`PeerHeld`](crate::route::peer_held::PeerHeld)), so a trace any replica held keeps its backend, and a trace
//!   no replica held goes by the new ring. From its switch until every peer's table is in (at most
//!   `exchange_timeout`) a replica holds the requests with a trace it knows nothing of; a peer that does not answer
//!   is reported (log and metric) and never holds delivery beyond that bound.
//! - **Start-up**: a starting replica pulls every peer's table before its receivers open.
//!
//! The API ([`api`]) is authenticated by a shared bearer token. Peers are a static list or the addresses of a DNS
//! name (a headless Service); a replica recognises itself among them by the id it answers with.

pub mod api;
mod client;
mod exchange;
mod metrics;
pub mod schedule;
pub mod table;
pub mod wire;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use http::Method;
use prost::Message;
use tokio::sync::watch;

use crate::config::Peers;
use crate::metrics::Metrics;
use crate::pool::{Pool, Switch};
use crate::receive::auth::Bearer;
use crate::route::affinity::Affinity;
use exchange::Exchange;
use metrics::PeerMetrics;
use schedule::{Agreed, Schedule};
use wire::{Ack, Held, Proposal};

/// Time between a switch and the building of this replica's table: requests split against the previous ring
/// just before the switch have recorded their traces by then.
const SETTLE: Duration = Duration::from_millis(10);

/// Bound on the steps of waiting for a switch time (each at most `STEP`).
const STEP: Duration = Duration::from_millis(50);

/// One replica's side of the exchange.
pub struct Coordinator {
    /// Random, per process: how a replica recognises its own address among its peers'.
    id: u64,
    cfg: Peers,
    bearer: Bearer,
    affinity: Arc<Affinity>,
    pools: watch::Receiver<Arc<Pool>>,
    schedule: Mutex<Schedule>,
    exchange: Mutex<Exchange>,
    /// The peers' addresses as last resolved, and those found to be this replica.
    addresses: Mutex<Vec<String>>,
    selves: Mutex<HashSet<String>>,
    metrics: PeerMetrics,
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Coordinator {
    /// Serves the peer API on `cfg.endpoint` until `stop`.
    pub async fn start(
        cfg: &Peers,
        affinity: Arc<Affinity>,
        pools: watch::Receiver<Arc<Pool>>,
        metrics: &Metrics,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<Coordinator>> {
        let bearer = Bearer::from_field("peers.auth", Some(&cfg.auth)).map_err(anyhow::Error::msg)?;
        let coordinator = Arc::new(Coordinator {
            id: rand::random(),
            cfg: cfg.clone(),
            bearer,
            affinity,
            pools,
            schedule: Mutex::default(),
            exchange: Mutex::default(),
            addresses: Mutex::new(cfg.addresses.clone()),
            selves: Mutex::default(),
            metrics: PeerMetrics::new(metrics),
        });
        let listener = tokio::net::TcpListener::bind(cfg.endpoint)
            .await
            .with_context(|| format!("cannot listen on {} (peers)", cfg.endpoint))?;
        tracing::info!(address = %listener.local_addr()?, "peer API listening");
        let app = api::router(Arc::clone(&coordinator));
        let mut until = stop.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = until.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
                tracing::error!(error = %e, "peer API failed");
            }
        });
        tokio::spawn(Arc::clone(&coordinator).report(stop));
        Ok(coordinator)
    }

    pub(crate) fn bearer(&self) -> &Bearer {
        &self.bearer
    }

    fn timeout(&self) -> Duration {
        self.cfg.exchange_timeout.0
    }

    /// The peers' addresses, this replica's own left out once it is recognised. A failed lookup keeps the last.
    async fn peers(&self) -> Vec<String> {
        if let Some(dns) = &self.cfg.dns {
            match crate::resolve::dns::resolve(&dns.hostname, dns.port, self.timeout()).await {
                Ok(found) => *self.lock_addresses() = found.into_iter().map(|m| m.address).collect(),
                Err(e) => {
                    tracing::warn!(hostname = %dns.hostname, error = %e, "cannot resolve the peers; using the last answer")
                }
            }
        }
        self.known_peers()
    }

    /// The peers' addresses as last resolved, this replica's own left out once it is recognised.
    fn known_peers(&self) -> Vec<String> {
        let selves = self.selves.lock().map(|s| s.clone()).unwrap_or_default();
        self.lock_addresses().iter().filter(|a| !selves.contains(*a)).cloned().collect()
    }

    fn lock_addresses(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.addresses.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_exchange(&self) -> std::sync::MutexGuard<'_, Exchange> {
        self.exchange.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `address` answered as `from`: remembered if that is this replica.
    fn answered(&self, address: &str, from: u64) -> bool {
        let me = from == self.id;
        if me && let Ok(mut s) = self.selves.lock() {
            s.insert(address.to_string());
        }
        me
    }

    /// Sends `body` to every peer at once; the answers (or failures) by address.
    async fn broadcast<T: Message + Default>(
        &self,
        peers: &[String],
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Vec<(String, Result<T, String>)> {
        let auth = self.bearer.header();
        let calls = peers.iter().map(|p| {
            let (auth, body, method) = (auth.clone(), body.clone(), method.clone());
            async move {
                let answer = client::call::<T>(p, method, path, auth.as_deref(), body, self.timeout()).await;
                (p.clone(), answer)
            }
        });
        futures::future::join_all(calls).await
    }

    /// Before the receivers open: pulls every peer's table. Bounded by `exchange_timeout`.
    pub async fn sync_at_start(&self) {
        let started = Instant::now();
        let peers = self.peers().await;
        let answers = self.broadcast::<Held>(&peers, Method::GET, api::HELD, Vec::new()).await;
        let (mut adopted, mut answered) = (0, 0);
        for (address, answer) in answers {
            match answer.and_then(|h| h.entries().map(|e| (h.from, e))) {
                Ok((from, _)) if self.answered(&address, from) => {}
                Ok((_, entries)) => {
                    answered += 1;
                    adopted += self.affinity.peers().adopt(entries);
                }
                Err(e) => {
                    self.metrics.unanswered("pull");
                    tracing::warn!(peer = %address, error = %e, "no table from a peer at start");
                }
            }
        }
        self.metrics.adopted(adopted);
        tracing::info!(
            peers = answered,
            traces = adopted,
            took_ms = started.elapsed().as_millis() as u64,
            "pulled the traces the peers hold"
        );
    }

    /// This replica's table against `pool` ([`table::held`]).
    pub fn held(&self, pool: &Pool) -> Held {
        let ring = pool.ring.as_ref().map_or(0, |r| r.fingerprint());
        Held::new(self.id, ring, table::held(&self.affinity, pool))
    }

    /// A peer proposes a switch time.
    pub fn on_proposal(&self, p: &Proposal) -> Ack {
        let at = self.lock_schedule().heard(p.ring, p.at_unix_ms, unix_ms());
        tracing::debug!(ring = format!("{:016x}", p.ring), proposed = p.at_unix_ms, agreed = at, "switch proposed");
        Ack { from: self.id }
    }

    /// A peer sends its table: its traces are kept, and the exchange ends when every peer's is in.
    pub fn on_held(&self, h: &Held) -> Result<Ack, String> {
        let entries = h.entries()?;
        if h.from != self.id {
            let adopted = self.affinity.peers().adopt(entries);
            self.metrics.adopted(adopted);
            let mut ex = self.lock_exchange();
            if ex.arrived(h.ring, h.from) {
                self.finish(&mut ex, h.ring);
            }
        }
        Ok(Ack { from: self.id })
    }

    /// Every peer's table for `ring` is in (or the bound has passed): requests go on.
    fn finish(&self, ex: &mut Exchange, ring: u64) {
        if let Some(since) = ex.finish(ring) {
            self.affinity.peers().open();
            self.metrics.exchange(since.elapsed().as_millis() as u64);
        }
    }

    /// Waits for the agreed time of `ring`, then closes the gate until the peers' tables are in; `true`. Gives way
    /// (`false`) when `superseded()` turns true while the agreed time is at least half the switch delay away: the
    /// newer member set is then agreed on and switched to in its place, and every replica, seeing the same changes
    /// within that time, gives way too. Later, the agreed switch goes ahead and the newer set follows it.
    async fn activate(&self, ring: u64, superseded: &(dyn Fn() -> bool + Send + Sync)) -> bool {
        let peers = self.peers().await;
        let now = unix_ms();
        let agreed = self.lock_schedule().agree(ring, now, self.cfg.switch_delay.0.as_millis() as u64);
        let name = format!("{ring:016x}");
        match agreed {
            Agreed::Proposed { at } => {
                tracing::info!(ring = %name, in_ms = at - now, "new ring: proposing a switch time to the peers")
            }
            Agreed::Heard { at } => {
                tracing::info!(ring = %name, in_ms = at - now, "new ring: switching at the time a peer proposed")
            }
            Agreed::Late { late_by } => {
                tracing::warn!(ring = %name, late_by_ms = late_by, "new ring seen after the time agreed by the peers: switching at once");
            }
        }
        let late = matches!(agreed, Agreed::Late { .. });
        let announce = async {
            let Agreed::Proposed { at } = agreed else { return };
            let body = Proposal { from: self.id, ring, at_unix_ms: at }.encode_to_vec();
            for (address, answer) in self.broadcast::<Ack>(&peers, Method::POST, api::PROPOSAL, body).await {
                match answer {
                    Ok(a) => {
                        self.answered(&address, a.from);
                    }
                    Err(e) => {
                        self.metrics.unanswered("proposal");
                        tracing::warn!(peer = %address, error = %e, "a peer did not take the switch time");
                    }
                }
            }
        };
        // Wait for the agreed time, which an earlier proposal may still bring forward.
        let delay_ms = self.cfg.switch_delay.0.as_millis() as u64;
        let wait = async {
            for _ in 0..delay_ms / STEP.as_millis() as u64 + 2 {
                let at = self.lock_schedule().at(ring).unwrap_or(0);
                let now = unix_ms();
                if late || now >= at {
                    break;
                }
                if superseded() && at - now >= delay_ms / 2 {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(at - now).min(STEP)).await;
            }
            true
        };
        let ((), go) = tokio::join!(announce, wait);
        self.lock_schedule().switched(ring);
        if !go {
            tracing::info!(ring = %name, "a newer member set came before the switch time: switching to that one instead");
            self.metrics.superseded();
            return false;
        }
        self.metrics.switched(late);
        let expected = self.known_peers().len();
        let mut ex = self.lock_exchange();
        if ex.begin(ring, expected, Instant::now()) {
            self.finish(&mut ex, ring);
        } else {
            self.affinity.peers().close(Instant::now() + self.timeout());
        }
        true
    }

    /// After the switch: sends this replica's table to every peer, and reports peers whose table did not come.
    async fn exchange(self: Arc<Self>, pool: Arc<Pool>) {
        tokio::time::sleep(SETTLE).await;
        let ring = pool.ring.as_ref().map_or(0, |r| r.fingerprint());
        let me = Arc::clone(&self);
        let built = tokio::task::spawn_blocking(move || me.held(&pool).encode_to_vec()).await;
        let Ok(body) = built else { return };
        let peers = self.known_peers();
        for (address, answer) in self.broadcast::<Ack>(&peers, Method::POST, api::HELD, body).await {
            match answer {
                Ok(a) => {
                    self.answered(&address, a.from);
                }
                Err(e) => {
                    self.metrics.unanswered("push");
                    tracing::warn!(peer = %address, error = %e, "a peer did not take this replica's table");
                    if e.starts_with(client::CONNECT_FAILED) {
                        // Not serving (stopping, or not started yet): it sends no table either.
                        let mut ex = self.lock_exchange();
                        if ex.arrived(ring, xxhash_rust::xxh3::xxh3_64(address.as_bytes())) {
                            self.finish(&mut ex, ring);
                        }
                    }
                }
            }
        }
        self.affinity.peers().settled().await;
        let mut ex = self.lock_exchange();
        if let Some((pending, expected, received)) = ex.pending().filter(|p| p.0 == ring) {
            self.metrics.unanswered("table");
            tracing::warn!(
                expected,
                received,
                "not every peer's table came within exchange_timeout: routing the traces of the others by the new ring"
            );
            self.finish(&mut ex, pending);
        }
    }

    /// Publishes the table's size every second until `stop`.
    async fn report(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let held = self.affinity.peers();
            self.metrics.held(held.len(), held.capacity(), held.dropped());
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// This replica's table against the current pool.
    pub fn current_table(&self) -> Held {
        let pool = self.pools.borrow().clone();
        self.held(&pool)
    }
}

/// The switch of the pool: at the agreed time, then the exchange.
pub struct PeerSwitch(pub Arc<Coordinator>);

impl Switch for PeerSwitch {
    fn activation<'a>(
        &'a self,
        ring: u64,
        superseded: &'a (dyn Fn() -> bool + Send + Sync),
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(self.0.activate(ring, superseded))
    }

    fn switched(&self, pool: &Arc<Pool>) {
        tokio::spawn(Arc::clone(&self.0).exchange(Arc::clone(pool)));
    }
}
