//! Prometheus metrics, named as the Collector names them so that existing dashboards carry over.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::signal::Signal;

/// Handle to the process's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    num_resolutions: IntCounterVec,
    num_backends: IntGaugeVec,
    num_backend_updates: IntCounterVec,
    backend_latency: HistogramVec,
    backend_outcome: IntCounterVec,
    coalesced: IntCounterVec,
    accepted: [IntCounterVec; 3],
    refused: [IntCounterVec; 3],
    sent: [IntCounterVec; 3],
    send_failed: [IntCounterVec; 3],
    inflight_bytes: IntGauge,
    ring_version: IntGauge,
    backend_health: IntGaugeVec,
    queue_size: IntGaugeVec,
    queue_capacity: IntGaugeVec,
    affinity_traces: IntGauge,
    affinity_early_rotations: IntGauge,
    observed: Observed,
}

/// Metrics for dashboards and alerts: ring shares, ejections, resolver sync and the affinity table's bound.
struct Observed {
    ring_share: GaugeVec,
    ring_moved: Gauge,
    ejections: IntCounterVec,
    resolver_synced: IntGaugeVec,
    affinity_capacity: IntGauge,
}

impl Observed {
    fn new(r: &Registry) -> Observed {
        let ring_share = registered(
            r,
            GaugeVec::new(
                Opts::new("otlp_lb_backend_ring_share", "Fraction of the key space a backend owns"),
                &["endpoint"],
            ),
        );
        let ring_moved = registered(
            r,
            Gauge::new(
                "otlp_lb_ring_moved_keys_ratio",
                "Fraction of the key space whose backend changed in the last pool change",
            ),
        );
        let resolver_synced = registered(
            r,
            IntGaugeVec::new(
                Opts::new(
                    "otlp_lb_resolver_synced",
                    "1 while the pool follows the resolver's source (EndpointSlices, DNS, file), 0 while the resolver \
                     cannot read it or the pool could not take its members",
                ),
                &["resolver"],
            ),
        );
        let affinity_capacity = registered(
            r,
            IntGauge::new(
                "otlp_lb_affinity_capacity",
                "Most trace ids the affinity table holds before it forgets early",
            ),
        );
        Observed {
            ring_share,
            ring_moved,
            ejections: counter(r, "otlp_lb_backend_ejections_total", "Times a backend was ejected", &["endpoint"]),
            resolver_synced,
            affinity_capacity,
        }
    }
}

/// `metric`, registered with `registry`. The definitions are constants of the code that calls this, so an invalid
/// one or a name registered twice is a bug there, not an input error.
pub fn registered<C: Collector + Clone + 'static>(registry: &Registry, metric: prometheus::Result<C>) -> C {
    let metric = metric.expect("valid metric definition");
    registry.register(Box::new(metric.clone())).expect("metric registered once");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

fn per_signal(registry: &Registry, prefix: &str, help: &str, labels: &[&str]) -> [IntCounterVec; 3] {
    Signal::ALL.map(|s| {
        counter(registry, &format!("{prefix}_{}", s.item_name()), &format!("{help} ({})", s.item_name()), labels)
    })
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let num_backends =
            IntGaugeVec::new(Opts::new("otelcol_loadbalancer_num_backends", "Backends in use"), &["resolver"])
                .expect("valid metric definition");
        registry.register(Box::new(num_backends.clone())).expect("registered once");
        let backend_latency = HistogramVec::new(
            HistogramOpts::new("otelcol_loadbalancer_backend_latency", "Response latency of backends, in ms")
                .buckets(vec![1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0]),
            &["endpoint"],
        )
        .expect("valid metric definition");
        registry.register(Box::new(backend_latency.clone())).expect("registered once");
        let gauge_vec = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["endpoint"]).expect("valid metric definition");
            registry.register(Box::new(g.clone())).expect("registered once");
            g
        };
        let backend_health =
            gauge_vec("otelcol_loadbalancer_backend_health", "1 while a backend takes keys, 0 while it is ejected");
        let queue_size = gauge_vec(
            "otelcol_exporter_queue_size",
            "Parts waiting for a sending slot of the backend, in sending_queue.sizer units",
        );
        let queue_capacity = gauge_vec(
            "otelcol_exporter_queue_capacity",
            "What may wait for a sending slot of the backend (queue_size, in sending_queue.sizer units)",
        );
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric definition");
            registry.register(Box::new(g.clone())).expect("registered once");
            g
        };
        let inner = Inner {
            num_resolutions: counter(
                r,
                "otelcol_loadbalancer_num_resolutions",
                "Resolutions by the resolver",
                &["resolver", "success"],
            ),
            num_backends,
            num_backend_updates: counter(
                r,
                "otelcol_loadbalancer_num_backend_updates",
                "Changes of the backend pool",
                &["resolver"],
            ),
            backend_latency,
            backend_outcome: counter(
                r,
                "otelcol_loadbalancer_backend_outcome",
                "Exports to backends by outcome",
                &["endpoint", "success"],
            ),
            coalesced: counter(
                r,
                "otlp_lb_exporter_coalesced_parts",
                "Parts sent to a backend in one request with other parts",
                &["endpoint"],
            ),
            accepted: per_signal(
                r,
                "otelcol_receiver_accepted",
                "Items accepted from clients",
                &["receiver", "transport"],
            ),
            refused: per_signal(r, "otelcol_receiver_refused", "Items refused to clients", &["receiver", "transport"]),
            sent: per_signal(r, "otelcol_exporter_sent", "Items delivered to a backend", &["exporter", "endpoint"]),
            send_failed: per_signal(
                r,
                "otelcol_exporter_send_failed",
                "Items a backend did not accept on one attempt",
                &["exporter", "endpoint"],
            ),
            inflight_bytes: gauge("otlp_lb_inflight_bytes", "Bytes of request data held in flight"),
            ring_version: gauge("otlp_lb_ring_version", "Version of the ring in use (low 53 bits of its fingerprint)"),
            backend_health,
            queue_size,
            queue_capacity,
            affinity_traces: gauge("otlp_lb_affinity_traces", "Trace ids remembered for affinity across ring changes"),
            affinity_early_rotations: gauge(
                "otlp_lb_affinity_early_rotations",
                "Times the affinity table was full and forgot traces early",
            ),
            observed: Observed::new(r),
            registry,
        };
        // Receiver counters start at 0 on both transports, so that rates (and alerts) see the first refusal.
        for set in [&inner.accepted, &inner.refused] {
            for counter in set {
                for transport in ["grpc", "http"] {
                    counter.with_label_values(&["otlp", transport]);
                }
            }
        }
        Metrics(Arc::new(inner))
    }

    pub fn registry(&self) -> &Registry {
        &self.0.registry
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.0.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    pub fn resolution(&self, resolver: &str, success: bool) {
        self.0.num_resolutions.with_label_values(&[resolver, bool_label(success)]).inc();
        self.0.observed.resolver_synced.with_label_values(&[resolver]).set(i64::from(success));
    }

    pub fn pool_changed(&self, resolver: &str, backends: usize, fingerprint: u64) {
        self.0.num_backend_updates.with_label_values(&[resolver]).inc();
        self.0.num_backends.with_label_values(&[resolver]).set(backends as i64);
        self.0.ring_version.set((fingerprint & ((1 << 53) - 1)) as i64);
    }

    pub fn received(&self, signal: Signal, transport: &str, items: u64, accepted: bool) {
        let set = if accepted { &self.0.accepted } else { &self.0.refused };
        set[signal.index()].with_label_values(&["otlp", transport]).inc_by(items);
    }

    pub fn backend_result(&self, endpoint: &str, signal: Signal, items: u64, latency: Duration, success: bool) {
        self.0.backend_latency.with_label_values(&[endpoint]).observe(latency.as_secs_f64() * 1000.0);
        self.0.backend_outcome.with_label_values(&[endpoint, bool_label(success)]).inc();
        let set = if success { &self.0.sent } else { &self.0.send_failed };
        set[signal.index()].with_label_values(&[EXPORTER, endpoint]).inc_by(items);
    }

    /// One request to `endpoint` carried `parts` parts.
    pub fn sent_parts(&self, endpoint: &str, parts: usize) {
        if parts > 1 {
            self.0.coalesced.with_label_values(&[endpoint]).inc_by(parts as u64);
        }
    }

    pub fn backend_health(&self, endpoint: &str, healthy: bool) {
        self.0.backend_health.with_label_values(&[endpoint]).set(i64::from(healthy));
        // A backend's first report (when it joins) creates its counters at 0, so that rates see their first
        // increase.
        for set in [&self.0.sent, &self.0.send_failed] {
            for counter in set {
                counter.with_label_values(&[EXPORTER, endpoint]);
            }
        }
        let ejections = self.0.observed.ejections.with_label_values(&[endpoint]);
        if !healthy {
            ejections.inc();
        }
    }

    pub fn queue(&self, endpoint: &str, waiting: usize, capacity: usize) {
        self.0.queue_size.with_label_values(&[endpoint]).set(waiting as i64);
        self.0.queue_capacity.with_label_values(&[endpoint]).set(capacity.min(i64::MAX as usize) as i64);
    }

    pub fn affinity(&self, traces: usize, early_rotations: u64) {
        self.0.affinity_traces.set(traces as i64);
        self.0.affinity_early_rotations.set(early_rotations as i64);
    }

    /// The ring after a pool change: each member's share of the key space (members absent from `shares` are
    /// dropped) and the fraction of keys that moved.
    pub fn ring(&self, shares: &[(String, f64)], moved: f64) {
        let gauge = &self.0.observed.ring_share;
        let gone: Vec<String> = gauge
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .flat_map(|m| m.get_label().iter().map(|l| l.value().to_string()))
            .filter(|endpoint| !shares.iter().any(|(e, _)| e == endpoint))
            .collect();
        for endpoint in gone {
            let _ = gauge.remove_label_values(&[&endpoint]);
        }
        for (endpoint, share) in shares {
            gauge.with_label_values(&[endpoint]).set(*share);
        }
        self.0.observed.ring_moved.set(moved);
    }

    /// The most trace ids the affinity table holds.
    pub fn affinity_capacity(&self, capacity: usize) {
        self.0.observed.affinity_capacity.set(capacity.min(i64::MAX as usize) as i64);
    }

    pub fn inflight(&self) -> &IntGauge {
        &self.0.inflight_bytes
    }

    /// Items of `signal` accepted and refused so far, over every transport: (accepted, refused).
    pub fn received_totals(&self, signal: Signal) -> (u64, u64) {
        let total = |c: &IntCounterVec| -> u64 {
            c.collect().iter().flat_map(|f| f.get_metric()).map(|m| m.get_counter().get_value() as u64).sum()
        };
        (total(&self.0.accepted[signal.index()]), total(&self.0.refused[signal.index()]))
    }

    /// Every backend's latency histogram so far, by endpoint.
    pub fn latency_histograms(&self) -> HashMap<String, LatencyHistogram> {
        let mut out = HashMap::new();
        for m in self.0.backend_latency.collect().iter().flat_map(|f| f.get_metric()) {
            let Some(endpoint) = m.get_label().iter().find(|l| l.name() == "endpoint") else { continue };
            let h = m.get_histogram();
            let buckets = h.get_bucket().iter().map(|b| (b.upper_bound(), b.cumulative_count())).collect();
            out.insert(endpoint.value().to_string(), LatencyHistogram { buckets, count: h.get_sample_count() });
        }
        out
    }
}

/// A cumulative latency histogram: (upper bound in ms, observations at or below it) per bucket, and all
/// observations (the `+Inf` bucket).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyHistogram {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
}

/// The `exporter` label of the Collector's exporter metrics (the loadbalancing exporter's component id).
const EXPORTER: &str = "load_balancing";

fn bool_label(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_collector_names() {
        let m = Metrics::new();
        m.resolution("static", true);
        m.pool_changed("static", 3, 42);
        m.received(Signal::Traces, "grpc", 10, true);
        m.received(Signal::Logs, "http", 2, false);
        m.backend_result("10.0.0.1:4317", Signal::Traces, 10, Duration::from_millis(3), true);
        let text = m.render();
        for line in [
            "otelcol_loadbalancer_num_resolutions{resolver=\"static\",success=\"true\"} 1",
            "otelcol_loadbalancer_num_backends{resolver=\"static\"} 3",
            "otelcol_loadbalancer_num_backend_updates{resolver=\"static\"} 1",
            "otelcol_receiver_accepted_spans{receiver=\"otlp\",transport=\"grpc\"} 10",
            "otelcol_receiver_refused_log_records{receiver=\"otlp\",transport=\"http\"} 2",
            "otelcol_exporter_sent_spans{endpoint=\"10.0.0.1:4317\",exporter=\"load_balancing\"} 10",
            "otelcol_loadbalancer_backend_outcome{endpoint=\"10.0.0.1:4317\",success=\"true\"} 1",
            "otelcol_loadbalancer_backend_latency_bucket{endpoint=\"10.0.0.1:4317\",le=\"5\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn ring_shares_follow_the_pool_and_ejections_count() {
        let m = Metrics::new();
        m.ring(&[("a:1".into(), 0.5), ("b:1".into(), 0.5)], 1.0);
        m.ring(&[("b:1".into(), 0.4), ("c:1".into(), 0.6)], 0.6);
        m.backend_health("b:1", false);
        m.backend_health("b:1", true);
        m.backend_health("b:1", false);
        m.resolution("k8s", true);
        m.resolution("k8s", false);
        m.affinity_capacity(1000);
        let text = m.render();
        for line in [
            "otlp_lb_backend_ring_share{endpoint=\"b:1\"} 0.4",
            "otlp_lb_backend_ring_share{endpoint=\"c:1\"} 0.6",
            "otlp_lb_ring_moved_keys_ratio 0.6",
            "otlp_lb_backend_ejections_total{endpoint=\"b:1\"} 2",
            "otlp_lb_resolver_synced{resolver=\"k8s\"} 0",
            "otlp_lb_affinity_capacity 1000",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("endpoint=\"a:1\""), "a backend that left keeps no share:\n{text}");
    }
}
