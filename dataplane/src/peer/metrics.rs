//! The peer exchange's metrics: switches on time and late, peers that did not answer within the bound, how long
//! the last exchange held requests, and the size and bound of the table of traces the peers hold.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

use crate::metrics::{Metrics, registered};

#[derive(Clone)]
pub struct PeerMetrics {
    switches: IntCounterVec,
    unanswered: IntCounterVec,
    exchange_ms: IntGauge,
    adopted: IntCounter,
    held: IntGauge,
    held_capacity: IntGauge,
    held_dropped: IntGauge,
}

impl PeerMetrics {
    pub fn new(metrics: &Metrics) -> PeerMetrics {
        let r = metrics.registry();
        let gauge = |name: &str, help: &str| registered(r, IntGauge::new(name, help));
        PeerMetrics {
            switches: registered(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "otlp_lb_peer_switches_total",
                        "Ring switches: at the time agreed with the peers (on_time), at once because this replica \
                         saw the change after that time (late), or given up before that time for a newer member set \
                         (superseded)",
                    ),
                    &["timing"],
                ),
            ),
            unanswered: registered(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "otlp_lb_peer_unanswered_total",
                        "Peer requests that failed or got no answer within exchange_timeout",
                    ),
                    &["request"],
                ),
            ),
            exchange_ms: gauge(
                "otlp_lb_peer_exchange_last_milliseconds",
                "At the last switch: how long until every peer's table was in (exchange_timeout at most)",
            ),
            adopted: registered(
                r,
                IntCounter::new("otlp_lb_peer_traces_adopted_total", "Trace keys learned from peers' tables"),
            ),
            held: gauge("otlp_lb_peer_held_traces", "Trace keys the peers routed under an earlier ring, held here"),
            held_capacity: gauge("otlp_lb_peer_held_capacity", "Most trace keys learned from peers held at once"),
            held_dropped: gauge(
                "otlp_lb_peer_held_dropped",
                "Trace keys from peers refused because the table was full",
            ),
        }
    }

    pub fn switched(&self, late: bool) {
        self.switches.with_label_values(&[if late { "late" } else { "on_time" }]).inc();
    }

    /// A ring given up before its switch time for a newer member set.
    pub fn superseded(&self) {
        self.switches.with_label_values(&["superseded"]).inc();
    }

    pub fn unanswered(&self, request: &str) {
        self.unanswered.with_label_values(&[request]).inc();
    }

    pub fn exchange(&self, waited_ms: u64) {
        self.exchange_ms.set(waited_ms.min(i64::MAX as u64) as i64);
    }

    pub fn adopted(&self, n: usize) {
        self.adopted.inc_by(n as u64);
    }

    pub fn held(&self, held: usize, capacity: usize, dropped: u64) {
        self.held.set(held.min(i64::MAX as usize) as i64);
        self.held_capacity.set(capacity.min(i64::MAX as usize) as i64);
        self.held_dropped.set(dropped.min(i64::MAX as u64) as i64);
    }
}
