//! Unit tests of the generator: templates built with prost, patched in place, decode to the intended ids.

use dataplane::signal::Signal;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;

use super::build::{Layout, Plan};
use super::ids::IdGen;

fn plan(signal: Signal, spt: u32, ipr: u32, spread: u32) -> Plan {
    Plan {
        signal,
        spans_per_trace: spt,
        items_per_request: ipr,
        services: 3,
        spread,
        start_ns: 1_700_000_000_000_000_000,
    }
}

#[test]
fn layouts() {
    assert_eq!(plan(Signal::Traces, 10, 100, 1).layout(), Layout { traces_per_group: 10, chunks: 1, untraced: 0 });
    assert_eq!(plan(Signal::Traces, 10, 100, 3).layout(), Layout { traces_per_group: 25, chunks: 3, untraced: 0 });
    assert_eq!(plan(Signal::Traces, 50, 20, 1).layout(), Layout { traces_per_group: 1, chunks: 3, untraced: 0 });
    assert_eq!(plan(Signal::Logs, 10, 100, 1).layout(), Layout { traces_per_group: 9, chunks: 1, untraced: 10 });
    assert_eq!(plan(Signal::Metrics, 10, 100, 1).layout().traces_per_group, 0);
}

#[test]
fn trace_templates_patch_to_the_right_ids() {
    let p = plan(Signal::Traces, 10, 100, 3);
    let ids = IdGen::new(42);
    let group = p.group(1, 4).expect("templates");
    assert_eq!(group.len(), 3);
    let traces = [7u64, 11, 13, 17];
    let mut spans_per_trace = [0u32; 4];
    for (chunk, t) in group.iter().enumerate() {
        assert_eq!(t.slot_items.iter().sum::<u32>(), t.items);
        let req = ExportTraceServiceRequest::decode(t.instantiate(&ids, &traces, 5)).expect("decodes");
        let spans: Vec<_> = req.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans).collect();
        assert_eq!(spans.len() as u32, t.items, "chunk {chunk}");
        for span in spans {
            let slot = traces.iter().position(|g| ids.trace_id(*g).as_slice() == span.trace_id).expect("known trace");
            spans_per_trace[slot] += 1;
            let g = traces[slot];
            let i = (0..10).find(|i| ids.span_id(g, *i).as_slice() == span.span_id).expect("known span");
            if i > 0 {
                assert_eq!(span.parent_span_id, ids.span_id(g, (i - 1) / 2));
            }
        }
    }
    assert_eq!(spans_per_trace, [10; 4]);
}

#[test]
fn logs_and_metrics_get_ids_and_fresh_timestamps() {
    let ids = IdGen::new(1);
    let logs = plan(Signal::Logs, 5, 20, 1).group(0, 3).expect("templates");
    let req = ExportLogsServiceRequest::decode(logs[0].instantiate(&ids, &[1, 2, 3], 99)).expect("decodes");
    let records: Vec<_> = req.resource_logs.iter().flat_map(|r| &r.scope_logs).flat_map(|s| &s.log_records).collect();
    assert_eq!(records.len(), 20);
    assert_eq!(records.iter().filter(|r| r.trace_id == ids.trace_id(2)).count(), 5);
    assert_eq!(records.iter().filter(|r| r.trace_id.is_empty()).count(), 5);
    assert!(records.iter().all(|r| r.time_unix_nano == 99));

    let metrics = plan(Signal::Metrics, 5, 25, 1).group(2, 0).expect("templates");
    assert_eq!(metrics[0].items, 25);
    let req = ExportMetricsServiceRequest::decode(metrics[0].instantiate(&ids, &[], 77)).expect("decodes");
    let mut points = 0;
    for m in req.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics) {
        let dps = match &m.data {
            Some(Data::Sum(s)) => &s.data_points,
            Some(Data::Gauge(g)) => &g.data_points,
            other => panic!("unexpected {other:?}"),
        };
        assert!(dps.iter().all(|p| p.time_unix_nano == 77));
        points += dps.len();
    }
    assert_eq!(points, 25);
}
