//! The load: traces whose requests reach different load-balancer replicas. Every [`BATCH_EVERY`] a batch of
//! [`TRACES_PER_BATCH`] traces starts; request `k` of a batch carries span `k` of each of its traces and goes
//! `k` × [`SPAN_GAP`] after the batch started, to endpoint `(batch + k) mod n` of the `n` ready endpoints of the
//! load balancer's Service at that moment: client-side round robin over the Service's endpoints, as a gRPC client
//! with a `dns:///` target and `round_robin` does, so consecutive requests of a trace reach different replicas. A
//! request that fails is retried on the next endpoint, a bounded number of times.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dataplane::fixtures::requests;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};

pub const BATCH_EVERY: Duration = Duration::from_millis(100);
pub const TRACES_PER_BATCH: u64 = 5;
/// Requests (one span each) per trace.
pub const SPANS: u64 = 4;
pub const SPAN_GAP: Duration = Duration::from_secs(1);
/// Bound on the batches of one run (10 minutes of load).
const MAX_BATCHES: u64 = 6_000;
const ATTEMPTS: usize = 60;
const RETRY_AFTER: Duration = Duration::from_millis(100);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What was sent and acknowledged.
#[derive(Default)]
pub struct Sent {
    pub batches: u64,
    /// When each batch started (index: batch number).
    pub started: Vec<Instant>,
    /// (trace, span) numbers acknowledged.
    pub acked: Vec<(u64, u64)>,
    /// Trace number → the load-balancer endpoints that acknowledged its requests.
    pub served_by: HashMap<u64, BTreeSet<SocketAddr>>,
    pub failed_requests: u64,
    pub retries: u64,
    pub last_error: String,
}

impl Sent {
    /// Traces whose acknowledged requests went to more than one replica.
    pub fn crossing(&self) -> usize {
        self.served_by.values().filter(|s| s.len() > 1).count()
    }
}

/// The trace numbers of batch `b`.
fn traces(b: u64) -> std::ops::Range<u64> {
    b * TRACES_PER_BATCH..(b + 1) * TRACES_PER_BATCH
}

/// Starts a batch every [`BATCH_EVERY`] until `stop` is true, then waits for every started trace to be sent.
pub async fn run(endpoints: watch::Receiver<Vec<SocketAddr>>, mut stop: watch::Receiver<bool>) -> Sent {
    let mut sent = Sent::default();
    let mut tasks = JoinSet::new();
    let t0 = Instant::now();
    for b in 0..MAX_BATCHES {
        let at = t0 + BATCH_EVERY * b as u32;
        tokio::select! {
            () = tokio::time::sleep_until(at.into()) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        sent.started.push(Instant::now());
        sent.batches = b + 1;
        let endpoints = endpoints.clone();
        tasks.spawn(async move {
            let mut outcomes = Vec::new();
            for k in 0..SPANS {
                tokio::time::sleep_until((at + SPAN_GAP * k as u32).into()).await;
                outcomes.push((k, send(&endpoints, b, k).await));
            }
            (b, outcomes)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let Ok((b, outcomes)) = done else { continue };
        for (k, outcome) in outcomes {
            match outcome {
                Ok((addr, retries)) => {
                    sent.retries += retries;
                    for t in traces(b) {
                        sent.acked.push((t, k));
                        sent.served_by.entry(t).or_default().insert(addr);
                    }
                }
                Err(e) => {
                    sent.failed_requests += 1;
                    sent.last_error = e;
                }
            }
        }
    }
    sent
}

/// Sends span `k` of batch `b`'s traces; returns the endpoint that acknowledged it and the retries it took.
async fn send(endpoints: &watch::Receiver<Vec<SocketAddr>>, b: u64, k: u64) -> Result<(SocketAddr, u64), String> {
    let request = requests::traces(traces(b), k..k + 1, 1);
    let mut last = String::from("no ready load-balancer endpoint");
    for attempt in 0..ATTEMPTS {
        let list = endpoints.borrow().clone();
        if !list.is_empty() {
            let addr = list[(b as usize + k as usize + attempt) % list.len()];
            let mut r = tonic::Request::new(request.clone());
            r.set_timeout(REQUEST_TIMEOUT);
            match client(addr).export(r).await {
                Ok(_) => return Ok((addr, attempt as u64)),
                Err(e) => last = format!("{addr}: {} {}", e.code(), e.message()),
            }
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
    Err(last)
}

fn client(addr: SocketAddr) -> TraceServiceClient<Channel> {
    thread_local! {
        static CLIENTS: std::cell::RefCell<HashMap<SocketAddr, TraceServiceClient<Channel>>> = Default::default();
    }
    CLIENTS.with(|c| {
        c.borrow_mut()
            .entry(addr)
            .or_insert_with(|| {
                // A literal `http://ip:port` always parses.
                let endpoint = Endpoint::from_shared(format!("http://{addr}")).expect("an http:// URI of an address");
                TraceServiceClient::new(endpoint.connect_timeout(Duration::from_secs(2)).connect_lazy())
            })
            .clone()
    })
}

/// The trace number of a fixture trace id (the inverse of `dataplane::fixtures::trace_id`), from its hex form.
pub fn trace_number(hex: &str) -> Option<u64> {
    u64::from_str_radix(hex.get(..16)?, 16).ok()?.checked_sub(1)
}

/// The (trace, span) numbers of a fixture span id (`trace × 1000 + span + 1`), from its hex form.
pub fn span_numbers(hex: &str) -> Option<(u64, u64)> {
    let n = u64::from_str_radix(hex, 16).ok()?.checked_sub(1)?;
    Some((n / 1000, n % 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_back_to_numbers() {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let r = requests::traces(traces(7), 2..3, 1);
        let span = &r.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(trace_number(&hex(&span.trace_id)), Some(35));
        assert_eq!(span_numbers(&hex(&span.span_id)), Some((35, 2)));
    }
}
