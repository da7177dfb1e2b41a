//! Prometheus metrics of the operator: reconciliations, failures by error, durations, leadership.

use std::time::Instant;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::error::Error;

/// The operator's metrics, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    /// `otlp_lb_operator_reconciliations_total`.
    pub reconciliations: IntCounter,
    /// `otlp_lb_operator_reconcile_failures_total{error}`.
    pub failures: IntCounterVec,
    /// `otlp_lb_operator_reconcile_duration_seconds`.
    pub duration: Histogram,
    /// `otlp_lb_operator_leader`: 1 while this replica holds the lease.
    pub leader: IntGauge,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            reconciliations: IntCounter::with_opts(Opts::new(
                "otlp_lb_operator_reconciliations_total",
                "Reconciliations of LoadBalancedCollectors started",
            ))?,
            failures: IntCounterVec::new(
                Opts::new("otlp_lb_operator_reconcile_failures_total", "Reconciliations that failed, by error"),
                &["error"],
            )?,
            duration: Histogram::with_opts(
                HistogramOpts::new("otlp_lb_operator_reconcile_duration_seconds", "Duration of reconciliations")
                    .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            )?,
            leader: IntGauge::with_opts(Opts::new(
                "otlp_lb_operator_leader",
                "1 while this replica holds the leader-election lease",
            ))?,
        };
        registry.register(Box::new(metrics.reconciliations.clone()))?;
        for label in Error::METRIC_LABELS {
            metrics.failures.with_label_values(&[label]);
        }
        registry.register(Box::new(metrics.failures.clone()))?;
        registry.register(Box::new(metrics.duration.clone()))?;
        registry.register(Box::new(metrics.leader.clone()))?;
        Ok(metrics)
    }

    /// Counts a reconciliation and returns a timer that records its duration when dropped.
    pub fn start(&self) -> ReconcileTimer {
        self.reconciliations.inc();
        ReconcileTimer { histogram: self.duration.clone(), start: Instant::now() }
    }

    /// Counts a failed reconciliation under the error's label.
    pub fn failed(&self, error: &Error) {
        self.failures.with_label_values(&[error.metric_label()]).inc();
    }
}

/// Observes the elapsed time into the duration histogram on drop.
pub struct ReconcileTimer {
    histogram: Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// The registry's metrics in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    match prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out) {
        Ok(()) => out,
        Err(e) => format!("# encoding failed: {e}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_series_exist_before_the_first_failure() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).expect("register");
        let text = encode(&registry);
        for label in Error::METRIC_LABELS {
            let line = format!("otlp_lb_operator_reconcile_failures_total{{error=\"{label}\"}} 0");
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        metrics.failed(&Error::InvalidSpec("x".into()));
        assert!(encode(&registry).contains("otlp_lb_operator_reconcile_failures_total{error=\"invalid_spec\"} 1"));
    }
}
