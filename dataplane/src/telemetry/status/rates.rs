//! Rates for the status page: the process's counters sampled every second, compared with a reading taken when
//! the page asks. Gives items accepted and refused per signal per second, and each backend's requests per second
//! and p99 latency (from the latency histogram, as Prometheus' `histogram_quantile` estimates it) over the last
//! few seconds.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::metrics::{LatencyHistogram, Metrics};
use crate::signal::Signal;

/// The span rates are measured over (at least; at most one sampling period more).
pub const WINDOW: Duration = Duration::from_secs(5);
const EVERY: Duration = Duration::from_secs(1);

struct Sample {
    at: Instant,
    /// (accepted, refused) per signal, in [`Signal::ALL`] order.
    received: [(u64, u64); 3],
    latency: HashMap<String, LatencyHistogram>,
}

/// Rates of one signal.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SignalRate {
    pub accepted_per_s: f64,
    pub refused_per_s: f64,
    pub accepted_total: u64,
    pub refused_total: u64,
}

/// Rates of one backend.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BackendRate {
    pub requests_per_s: f64,
    /// `None` without a request in the window.
    pub p99_ms: Option<f64>,
}

/// Rates over the window ending now.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub seconds: f64,
    pub signals: [SignalRate; 3],
    pub backends: HashMap<String, BackendRate>,
}

/// Samples of the counters, the oldest at most [`WINDOW`] + one period old.
pub struct Rates {
    metrics: Metrics,
    samples: Mutex<VecDeque<Sample>>,
}

impl Rates {
    pub fn new(metrics: Metrics) -> Rates {
        let rates = Rates { metrics, samples: Mutex::new(VecDeque::new()) };
        rates.sample();
        rates
    }

    fn read(&self) -> Sample {
        Sample {
            at: Instant::now(),
            received: Signal::ALL.map(|s| self.metrics.received_totals(s)),
            latency: self.metrics.latency_histograms(),
        }
    }

    /// Takes a sample now and forgets those no longer needed.
    pub fn sample(&self) {
        let fresh = self.read();
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        // Keep the newest sample that is at least WINDOW old, and everything after it.
        while samples.len() > 1 && fresh.at.duration_since(samples[1].at) >= WINDOW {
            samples.pop_front();
        }
        samples.push_back(fresh);
    }

    /// Samples every second until `stop`.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => self.sample(),
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Rates from the oldest sample kept to a reading taken now.
    pub fn window(&self) -> Window {
        let now = self.read();
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let Some(old) = samples.front() else { return Window::default() };
        let seconds = now.at.duration_since(old.at).as_secs_f64();
        let per_s = |n: u64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
        let signals = std::array::from_fn(|i| {
            let ((a, r), (a0, r0)) = (now.received[i], old.received[i]);
            SignalRate {
                accepted_per_s: per_s(a.saturating_sub(a0)),
                refused_per_s: per_s(r.saturating_sub(r0)),
                accepted_total: a,
                refused_total: r,
            }
        });
        let empty = LatencyHistogram::default();
        let backends = now
            .latency
            .iter()
            .map(|(endpoint, h)| {
                let delta = difference(h, old.latency.get(endpoint).unwrap_or(&empty));
                let rate = BackendRate { requests_per_s: per_s(delta.count), p99_ms: quantile(0.99, &delta) };
                (endpoint.clone(), rate)
            })
            .collect();
        Window { seconds, signals, backends }
    }
}

/// The observations of `now` that `before` did not have yet.
fn difference(now: &LatencyHistogram, before: &LatencyHistogram) -> LatencyHistogram {
    let buckets = now
        .buckets
        .iter()
        .enumerate()
        .map(|(i, (le, n))| (*le, n.saturating_sub(before.buckets.get(i).map_or(0, |b| b.1))))
        .collect();
    LatencyHistogram { buckets, count: now.count.saturating_sub(before.count) }
}

/// The `q` quantile of a cumulative histogram, interpolated linearly inside its bucket; the highest finite bound
/// when it falls in the `+Inf` bucket; `None` without observations.
fn quantile(q: f64, h: &LatencyHistogram) -> Option<f64> {
    if h.count == 0 {
        return None;
    }
    let rank = q * h.count as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for &(le, n) in &h.buckets {
        if n as f64 >= rank && n > below {
            return Some(lower + (le - lower) * (rank - below as f64) / (n - below) as f64);
        }
        (lower, below) = (le, n);
    }
    h.buckets.last().map(|b| b.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(buckets: &[(f64, u64)], count: u64) -> LatencyHistogram {
        LatencyHistogram { buckets: buckets.to_vec(), count }
    }

    #[test]
    fn quantile_interpolates_inside_the_bucket() {
        // 100 observations: 50 at or below 1 ms, 90 at or below 2, all at or below 5.
        let h = histogram(&[(1.0, 50), (2.0, 90), (5.0, 100)], 100);
        assert_eq!(quantile(0.5, &h), Some(1.0));
        let p99 = quantile(0.99, &h).expect("observations");
        assert!((p99 - 4.7).abs() < 1e-9, "{p99}");
        assert_eq!(quantile(0.99, &histogram(&[(1.0, 0), (2.0, 0)], 3)), Some(2.0), "beyond the last bound");
        assert_eq!(quantile(0.99, &histogram(&[(1.0, 0)], 0)), None);
    }

    #[test]
    fn rates_count_what_happened_in_the_window() {
        let metrics = Metrics::new();
        metrics.received(Signal::Traces, "grpc", 500, true);
        metrics.backend_result("b:1", Signal::Traces, 5, Duration::from_millis(30), true);
        let rates = Rates::new(metrics.clone());
        metrics.received(Signal::Traces, "grpc", 100, true);
        metrics.received(Signal::Logs, "http", 7, false);
        for _ in 0..10 {
            metrics.backend_result("b:1", Signal::Traces, 5, Duration::from_millis(3), true);
        }
        std::thread::sleep(Duration::from_millis(50));
        let w = rates.window();
        let traces = w.signals[Signal::Traces.index()];
        assert_eq!((traces.accepted_total, traces.refused_total), (600, 0));
        let expected = 100.0 / w.seconds;
        assert!((traces.accepted_per_s - expected).abs() < 1e-6, "{traces:?} over {}s", w.seconds);
        assert!(w.signals[Signal::Logs.index()].refused_per_s > 0.0);
        let b = w.backends["b:1"];
        assert!((b.requests_per_s - 10.0 / w.seconds).abs() < 1e-6, "{b:?}");
        let p99 = b.p99_ms.expect("requests in the window");
        assert!((2.0..=5.0).contains(&p99), "only the 3 ms requests are in the window: {p99}");
    }
}
