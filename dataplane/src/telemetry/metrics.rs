//! Prometheus metrics, named as the Collector names them so that existing dashboards carry over.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
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
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry.register(Box::new(c.clone())).expect("metric registered once");
    c
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
            registry,
        };
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
    }

    pub fn queue(&self, endpoint: &str, waiting: usize, capacity: usize) {
        self.0.queue_size.with_label_values(&[endpoint]).set(waiting as i64);
        self.0.queue_capacity.with_label_values(&[endpoint]).set(capacity.min(i64::MAX as usize) as i64);
    }

    pub fn affinity(&self, traces: usize, early_rotations: u64) {
        self.0.affinity_traces.set(traces as i64);
        self.0.affinity_early_rotations.set(early_rotations as i64);
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
}
