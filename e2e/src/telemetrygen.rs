//! Driving `telemetrygen traces` and knowing what it sent.
//!
//! telemetrygen's `--traces N` is per worker, and each trace is one parent
//! span (`lets-go`) plus `--child-spans C` children, so a run sends
//! `workers × N` traces and `workers × N × (1 + C)` spans. Its default
//! `--rate` is 1 span/s per worker, so the harness always passes `--rate 0`.
//! It exits 0 even when exports fail, so its output is checked for export
//! errors and for the per-worker "traces generated" counts.

use anyhow::{Result, bail};

/// One `telemetrygen traces` invocation.
#[derive(Debug, Clone, Copy)]
pub struct Traces {
    pub workers: u32,
    pub traces_per_worker: u32,
    pub child_spans: u32,
}

impl Traces {
    /// Arguments for an insecure OTLP/gRPC run against `endpoint` (`ip:port`).
    pub fn args(&self, endpoint: &str) -> Vec<String> {
        vec![
            "traces".into(),
            "--otlp-insecure".into(),
            "--otlp-endpoint".into(),
            endpoint.into(),
            "--traces".into(),
            self.traces_per_worker.to_string(),
            "--child-spans".into(),
            self.child_spans.to_string(),
            "--workers".into(),
            self.workers.to_string(),
            "--rate".into(),
            "0".into(),
            "--timeout".into(),
            "30s".into(),
        ]
    }

    pub fn expected_traces(&self) -> usize {
        (self.workers * self.traces_per_worker) as usize
    }

    pub fn expected_spans(&self) -> usize {
        self.expected_traces() * (1 + self.child_spans as usize)
    }

    /// Checks telemetrygen's combined output: no export error, and the
    /// workers' "traces generated" counts add up to what was asked.
    pub fn check_output(&self, output: &str) -> Result<()> {
        if let Some(err) = output.lines().find(|l| l.contains("traces export:") || l.contains("failed to export")) {
            bail!("telemetrygen reported an export failure: {err}");
        }
        let generated: u64 = output
            .lines()
            .filter(|l| l.contains("traces generated"))
            .filter_map(|l| l.split("\"traces\":").nth(1))
            .filter_map(|rest| rest.trim().trim_end_matches('}').trim().parse::<u64>().ok())
            .sum();
        if generated != self.expected_traces() as u64 {
            bail!("telemetrygen generated {generated} traces, expected {}", self.expected_traces());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_output() {
        let t = Traces { workers: 2, traces_per_worker: 100, child_spans: 4 };
        assert_eq!(t.expected_traces(), 200);
        assert_eq!(t.expected_spans(), 1000);
        let out = "x\tINFO\ttraces/worker.go:180\ttraces generated\t{\"worker\": 1, \"traces\": 100}\n\
                   x\tINFO\ttraces/worker.go:180\ttraces generated\t{\"worker\": 0, \"traces\": 100}\n";
        t.check_output(out).unwrap();
        assert!(t.check_output(&out[..out.len() / 2]).is_err());
        assert!(t.check_output(&format!("{out}2026/11/21 traces export: exporter export timeout\n")).is_err());
    }
}
