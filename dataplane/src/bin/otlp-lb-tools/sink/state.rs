//! The sink's counters: totals per signal, per service, per trace id, and the identities of items seen (for
//! duplicate detection). One mutex, taken once per accepted request to merge its `Summary`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use dataplane::signal::Signal;
use serde_json::{Map, Value, json};

use super::walk::Summary;

/// Keys are already xxh3 hashes: use them as they are.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type KeySet = HashSet<u64, BuildHasherDefault<IdentityHasher>>;

#[derive(Debug, Default, Clone, Copy)]
struct SignalTotals {
    requests: u64,
    items: u64,
    bytes: u64,
    duplicates: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct TraceCounts {
    spans: u32,
    /// Requests that carried spans of the trace.
    requests: u32,
    log_records: u32,
}

/// Everything the report shows.
#[derive(Debug, Default)]
pub struct Totals {
    signals: [SignalTotals; 3],
    services: HashMap<String, [u64; 3]>,
    traces: HashMap<[u8; 16], TraceCounts>,
    seen: [KeySet; 3],
    logs_with_trace: u64,
    rejected: BTreeMap<&'static str, u64>,
    malformed: u64,
}

fn index(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Totals {
    /// Adds an accepted request of `bytes` bytes.
    pub fn merge(&mut self, signal: Signal, bytes: usize, mut summary: Summary<'_>) {
        let i = index(signal);
        let t = &mut self.signals[i];
        t.requests += 1;
        t.items += summary.items;
        t.bytes += bytes as u64;
        for (service, n) in summary.services {
            match self.services.get_mut(service) {
                Some(c) => c[i] += n,
                None => {
                    let mut c = [0; 3];
                    c[i] = n;
                    self.services.insert(service.to_string(), c);
                }
            }
        }
        self.logs_with_trace += summary.with_trace;
        summary.trace_ids.sort_unstable();
        for run in summary.trace_ids.chunk_by(|a, b| a == b) {
            let entry = self.traces.entry(run[0]).or_default();
            let n = u32::try_from(run.len()).unwrap_or(u32::MAX);
            if signal == Signal::Traces {
                entry.spans = entry.spans.saturating_add(n);
                entry.requests += 1;
            } else {
                entry.log_records = entry.log_records.saturating_add(n);
            }
        }
        let seen = &mut self.seen[i];
        for key in summary.keys {
            if !seen.insert(key) {
                t.duplicates += 1;
            }
        }
    }

    pub fn rejected(&mut self, code: &'static str) {
        *self.rejected.entry(code).or_default() += 1;
    }

    pub fn malformed(&mut self) {
        self.malformed += 1;
    }

    /// The JSON report; with `traces`, per trace id counts as well.
    pub fn report(&self, traces: bool) -> Map<String, Value> {
        let [tr, me, lo] = self.signals;
        let distinct_traces = self.traces.values().filter(|c| c.spans > 0).count();
        let distinct_log_traces = self.traces.values().filter(|c| c.log_records > 0).count();
        let services: Map<String, Value> = self
            .services
            .iter()
            .map(|(name, c)| {
                let name = if name.is_empty() { "(none)".to_string() } else { name.clone() };
                (name, json!({"spans": c[0], "data_points": c[1], "log_records": c[2]}))
            })
            .collect();
        let mut report = Map::new();
        report.insert("requests".into(), json!(tr.requests + me.requests + lo.requests));
        report.insert("bytes".into(), json!(tr.bytes + me.bytes + lo.bytes));
        report.insert(
            "traces".into(),
            json!({"requests": tr.requests, "spans": tr.items, "bytes": tr.bytes,
                   "distinct_trace_ids": distinct_traces, "duplicate_spans": tr.duplicates}),
        );
        report.insert(
            "metrics".into(),
            json!({"requests": me.requests, "data_points": me.items, "bytes": me.bytes,
                   "duplicate_data_points": me.duplicates}),
        );
        report.insert(
            "logs".into(),
            json!({"requests": lo.requests, "log_records": lo.items, "bytes": lo.bytes,
                   "with_trace_id": self.logs_with_trace, "distinct_trace_ids": distinct_log_traces,
                   "duplicate_log_records": lo.duplicates}),
        );
        report.insert("services".into(), Value::Object(services));
        report.insert("rejected_requests".into(), json!(self.rejected));
        report.insert("malformed_requests".into(), json!(self.malformed));
        if traces {
            let ids: Map<String, Value> = self
                .traces
                .iter()
                .map(|(id, c)| {
                    (hex(id), json!({"spans": c.spans, "requests": c.requests, "log_records": c.log_records}))
                })
                .collect();
            report.insert("trace_ids".into(), Value::Object(ids));
        }
        report
    }
}
