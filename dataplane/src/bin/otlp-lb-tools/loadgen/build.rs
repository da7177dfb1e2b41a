//! Builds the template requests (the shared workload of `dataplane::fixtures::workload`, with placeholder ids) and
//! decides the batching layout: how many traces a request holds and in how many requests a trace is sent.

use anyhow::{Context, Result};
use dataplane::fixtures::workload::{Ids, Workload};
use dataplane::signal::Signal;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::template::{Template, placeholder_span, placeholder_trace};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Plan {
    pub signal: Signal,
    pub spans_per_trace: u32,
    pub items_per_request: u32,
    pub services: u32,
    pub spread: u32,
    /// Wall-clock time of the run start, for span and point timestamps.
    pub start_ns: u64,
}

/// How traces are batched into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Traces whose items share a request (0 for metrics).
    pub traces_per_group: u32,
    /// Requests each trace is sent in.
    pub chunks: u32,
    /// Log records without trace context per request.
    pub untraced: u32,
}

impl Plan {
    pub fn layout(&self) -> Layout {
        let spt = self.spans_per_trace.max(1);
        let ipr = self.items_per_request.max(1);
        match self.signal {
            Signal::Traces => {
                let chunks = self.spread.max(spt.div_ceil(ipr)).clamp(1, spt);
                let chunk_max = spt.div_ceil(chunks);
                Layout { traces_per_group: (ipr / chunk_max).max(1), chunks, untraced: 0 }
            }
            Signal::Logs => {
                let traces = (ipr * 9 / 10 / spt).max(1);
                Layout { traces_per_group: traces, chunks: 1, untraced: ipr.saturating_sub(traces * spt) }
            }
            Signal::Metrics => Layout { traces_per_group: 0, chunks: 1, untraced: 0 },
        }
    }

    /// The requests of one group of `traces` traces in pool variant `variant`, one per chunk.
    pub fn group(&self, variant: u32, traces: u32) -> Result<Vec<Template>> {
        let layout = self.layout();
        let slots = traces as usize;
        (0..layout.chunks)
            .map(|chunk| {
                let bytes = match self.signal {
                    Signal::Traces => self.traces(variant, traces, chunk, layout.chunks).encode_to_vec(),
                    Signal::Logs => self.logs(variant, traces, layout.untraced).encode_to_vec(),
                    Signal::Metrics => self.metrics(variant).encode_to_vec(),
                };
                Template::new(self.signal, bytes, slots).context("indexing a generated request")
            })
            .collect()
    }

    fn workload(&self, variant: u32) -> Workload {
        Workload { spans_per_trace: self.spans_per_trace, services: self.services, start_ns: self.start_ns, variant }
    }

    fn traces(&self, variant: u32, traces: u32, chunk: u32, chunks: u32) -> ExportTraceServiceRequest {
        let spt = self.spans_per_trace.max(1);
        let spans = chunk * spt / chunks..(chunk + 1) * spt / chunks;
        self.workload(variant).traces(&PLACEHOLDERS, traces, spans)
    }

    fn logs(&self, variant: u32, traces: u32, untraced: u32) -> ExportLogsServiceRequest {
        self.workload(variant).logs(&PLACEHOLDERS, traces, untraced)
    }

    fn metrics(&self, variant: u32) -> ExportMetricsServiceRequest {
        self.workload(variant).metrics(self.items_per_request)
    }
}

/// Placeholder ids, patched per request by the templates.
const PLACEHOLDERS: Ids = Ids { trace: &placeholder_trace, span: &|_, index| placeholder_span(index) };
