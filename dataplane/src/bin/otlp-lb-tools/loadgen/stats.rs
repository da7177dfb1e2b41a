//! Per-worker counters, a log-linear latency histogram, and the final report (text or one JSON line).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Sub-buckets per power of two: values are kept within 1/128 (< 0.8 %).
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;

/// Latency histogram in microseconds with bounded relative error and fixed memory.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; ((64 - SUB_BITS as usize) + 1) * SUB as usize], total: 0, max: 0 }
    }
}

fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let shift = e - SUB_BITS;
    (((shift + 1) as u64) * SUB + ((v >> shift) - SUB)) as usize
}

fn bucket_value(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = i / SUB - 1;
    let m = SUB + i % SUB;
    (m << shift) + ((1u64 << shift) >> 1)
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if let Some(c) = self.counts.get_mut(bucket(us)) {
            *c += 1;
        }
        self.total += 1;
        self.max = self.max.max(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The `q` quantile (0..=1) in microseconds.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_value(i).min(self.max);
            }
        }
        self.max
    }

    pub fn max(&self) -> u64 {
        self.max
    }
}

/// What one worker did.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub sent_items: u64,
    pub sent_requests: u64,
    pub sent_bytes: u64,
    pub failed_requests: u64,
    pub failed_items: u64,
    pub rejected_items: u64,
    pub retries: u64,
    pub errors: BTreeMap<String, u64>,
    pub latency: Histogram,
    pub traces_complete: u64,
    pub traces_incomplete: u64,
    pub traces_failed: u64,
}

impl Stats {
    pub fn merge(&mut self, o: &Stats) {
        self.sent_items += o.sent_items;
        self.sent_requests += o.sent_requests;
        self.sent_bytes += o.sent_bytes;
        self.failed_requests += o.failed_requests;
        self.failed_items += o.failed_items;
        self.rejected_items += o.rejected_items;
        self.retries += o.retries;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.latency.merge(&o.latency);
        self.traces_complete += o.traces_complete;
        self.traces_incomplete += o.traces_incomplete;
        self.traces_failed += o.traces_failed;
    }
}

/// The final report; field names are a contract with the tests and scripts that read `--report-json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub signal: &'static str,
    pub protocol: &'static str,
    pub endpoint: String,
    pub seed: u64,
    pub sent_items: u64,
    pub sent_requests: u64,
    pub sent_bytes: u64,
    pub failed_requests: u64,
    pub failed_items: u64,
    pub rejected_items: u64,
    pub errors: BTreeMap<String, u64>,
    pub retries: u64,
    pub elapsed_s: f64,
    pub items_per_s: f64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Traces all of whose items were acknowledged.
    pub traces: u64,
    /// Traces of which some items were acknowledged and some not (failed, or cut short by a stop).
    pub traces_incomplete: u64,
    /// Traces of which no item was acknowledged.
    pub traces_failed: u64,
}

impl Report {
    pub fn new(stats: &Stats, elapsed: Duration, head: (&'static str, &'static str, String, u64)) -> Report {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let ms = |us: u64| us as f64 / 1000.0;
        Report {
            signal: head.0,
            protocol: head.1,
            endpoint: head.2,
            seed: head.3,
            sent_items: stats.sent_items,
            sent_requests: stats.sent_requests,
            sent_bytes: stats.sent_bytes,
            failed_requests: stats.failed_requests,
            failed_items: stats.failed_items,
            rejected_items: stats.rejected_items,
            errors: stats.errors.clone(),
            retries: stats.retries,
            elapsed_s: elapsed.as_secs_f64(),
            items_per_s: stats.sent_items as f64 / secs,
            requests_per_s: stats.sent_requests as f64 / secs,
            p50_ms: ms(stats.latency.quantile(0.5)),
            p99_ms: ms(stats.latency.quantile(0.99)),
            max_ms: ms(stats.latency.max()),
            traces: stats.traces_complete,
            traces_incomplete: stats.traces_incomplete,
            traces_failed: stats.traces_failed,
        }
    }

    /// The human-readable report.
    pub fn text(&self, item_name: &str) -> String {
        let mut s = format!(
            "loadgen: {} over {} to {} (seed {})\n\
             sent     {} {item_name} in {} requests ({} bytes), {} requests failed ({} {item_name}), {} rejected\n\
             elapsed  {:.2} s\n\
             rate     {:.1} {item_name}/s, {:.1} requests/s\n\
             latency  p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n\
             retries  {}\n",
            self.signal,
            self.protocol,
            self.endpoint,
            self.seed,
            self.sent_items,
            self.sent_requests,
            self.sent_bytes,
            self.failed_requests,
            self.failed_items,
            self.rejected_items,
            self.elapsed_s,
            self.items_per_s,
            self.requests_per_s,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.retries,
        );
        if self.traces + self.traces_incomplete + self.traces_failed > 0 {
            s.push_str(&format!(
                "traces   {} complete, {} incomplete, {} failed\n",
                self.traces, self.traces_incomplete, self.traces_failed
            ));
        }
        let errors: Vec<String> = self.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
        s.push_str(&format!("errors   {}\n", if errors.is_empty() { "none".into() } else { errors.join(", ") }));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_monotonic_and_quantiles_close() {
        let mut last = 0;
        for v in (0..1_000_000u64).step_by(997) {
            let b = bucket(v);
            assert!(b >= last);
            last = b;
            let back = bucket_value(b);
            assert!(back.abs_diff(v) <= v / 100 + 1, "{v} -> {back}");
        }
        let mut h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        assert!(h.quantile(0.5).abs_diff(50_000) < 500);
        assert!(h.quantile(0.99).abs_diff(99_000) < 1000);
        assert_eq!(h.max(), 100_000);
    }
}
