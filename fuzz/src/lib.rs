//! Helpers shared by the fuzz targets and the seed generator: decoding a request of any signal with prost, counting
//! its items the way the splitter does, flattening it into one entry per item with that item's resource and scope,
//! and the gzip-with-limit reader of `dataplane::receive::http` (a private detail there, mirrored here).

use std::io::Read;

use dataplane::route::key::{RoutingKey, RoutingPolicy};
use dataplane::signal::Signal;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric};
use prost::Message;

/// A request of one of the three signals, decoded by prost.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

/// One item of a request where it sits: the encoding of its resource envelope (`Resource*` without its scopes), of
/// its scope envelope (`Scope*` without its items) and of the item itself. For metrics an item is one data point,
/// carried in a copy of its metric that holds only that point (a metric with no points is one item on its own).
pub type Placed = (Vec<u8>, Vec<u8>, Vec<u8>);

impl Request {
    pub fn decode(signal: Signal, body: &[u8]) -> Option<Request> {
        match signal {
            Signal::Traces => ExportTraceServiceRequest::decode(body).ok().map(Request::Traces),
            Signal::Metrics => ExportMetricsServiceRequest::decode(body).ok().map(Request::Metrics),
            Signal::Logs => ExportLogsServiceRequest::decode(body).ok().map(Request::Logs),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Traces(r) => r.encode_to_vec(),
            Request::Metrics(r) => r.encode_to_vec(),
            Request::Logs(r) => r.encode_to_vec(),
        }
    }

    /// Spans, data points or log records.
    pub fn items(&self) -> u64 {
        match self {
            Request::Traces(r) => {
                r.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len() as u64).sum()
            }
            Request::Logs(r) => {
                r.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len() as u64).sum()
            }
            Request::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(|m| point_count(m) as u64)
                .sum(),
        }
    }

    /// Every item with its resource and scope, sorted.
    pub fn placed(&self) -> Vec<Placed> {
        let mut out = Vec::new();
        match self {
            Request::Traces(r) => {
                for rs in &r.resource_spans {
                    let renv = rs.clone().tap(|r| r.scope_spans.clear()).encode_to_vec();
                    for ss in &rs.scope_spans {
                        let senv = ss.clone().tap(|s| s.spans.clear()).encode_to_vec();
                        for sp in &ss.spans {
                            out.push((renv.clone(), senv.clone(), sp.encode_to_vec()));
                        }
                    }
                }
            }
            Request::Logs(r) => {
                for rl in &r.resource_logs {
                    let renv = rl.clone().tap(|r| r.scope_logs.clear()).encode_to_vec();
                    for sl in &rl.scope_logs {
                        let senv = sl.clone().tap(|s| s.log_records.clear()).encode_to_vec();
                        for lr in &sl.log_records {
                            out.push((renv.clone(), senv.clone(), lr.encode_to_vec()));
                        }
                    }
                }
            }
            Request::Metrics(r) => {
                for rm in &r.resource_metrics {
                    let renv = rm.clone().tap(|r| r.scope_metrics.clear()).encode_to_vec();
                    for sm in &rm.scope_metrics {
                        let senv = sm.clone().tap(|s| s.metrics.clear()).encode_to_vec();
                        for m in &sm.metrics {
                            for one in per_point(m) {
                                out.push((renv.clone(), senv.clone(), one.encode_to_vec()));
                            }
                        }
                    }
                }
            }
        }
        out.sort();
        out
    }
}

trait Tap: Sized {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}
impl<T> Tap for T {}

/// Data points of a metric.
pub fn point_count(m: &Metric) -> usize {
    match &m.data {
        None => 0,
        Some(metric::Data::Gauge(d)) => d.data_points.len(),
        Some(metric::Data::Sum(d)) => d.data_points.len(),
        Some(metric::Data::Histogram(d)) => d.data_points.len(),
        Some(metric::Data::ExponentialHistogram(d)) => d.data_points.len(),
        Some(metric::Data::Summary(d)) => d.data_points.len(),
    }
}

/// One copy of `m` per data point, each holding that point only; `m` itself when it has none.
pub fn per_point(m: &Metric) -> Vec<Metric> {
    macro_rules! split_points {
        ($variant:ident, $d:expr) => {
            $d.data_points
                .iter()
                .map(|p| {
                    let mut d = $d.clone();
                    d.data_points = vec![p.clone()];
                    Metric { data: Some(metric::Data::$variant(d)), ..m.clone() }
                })
                .collect::<Vec<_>>()
        };
    }
    let out = match &m.data {
        None => Vec::new(),
        Some(metric::Data::Gauge(d)) => split_points!(Gauge, d),
        Some(metric::Data::Sum(d)) => split_points!(Sum, d),
        Some(metric::Data::Histogram(d)) => split_points!(Histogram, d),
        Some(metric::Data::ExponentialHistogram(d)) => split_points!(ExponentialHistogram, d),
        Some(metric::Data::Summary(d)) => split_points!(Summary, d),
    };
    if out.is_empty() { vec![m.clone()] } else { out }
}

/// The routing attributes of the `attributes` key in the fuzz targets.
pub fn routing_attributes() -> Vec<String> {
    vec!["service.name".into(), "tenant".into()]
}

/// The (signal, key) pairs the splitter is fuzzed with: every key valid for each signal.
pub fn signal_keys() -> Vec<(Signal, RoutingKey)> {
    Signal::ALL.into_iter().flat_map(|s| RoutingKey::valid_for(s).iter().map(move |k| (s, *k))).collect()
}

/// A policy that routes `signal` by `key` (the other signals keep their defaults).
pub fn policy(signal: Signal, key: RoutingKey) -> RoutingPolicy {
    let mut p = RoutingPolicy { attributes: routing_attributes(), ..Default::default() };
    match signal {
        Signal::Traces => p.traces = key,
        Signal::Metrics => p.metrics = key,
        Signal::Logs => p.logs = key,
    }
    p
}

/// Why [`gunzip_limited`] refused a body.
#[derive(Debug)]
pub enum GunzipError {
    /// The decompressed body is larger than the limit.
    TooLarge,
    /// Not a valid gzip stream.
    Invalid(std::io::Error),
}

/// The gzip decompression of `dataplane::receive::http::handle` (`Content-Encoding: gzip`), with its limit:
/// read at most `max + 1` bytes of output; more than `max` is "too large".
pub fn gunzip_limited(raw: &[u8], max: usize) -> Result<Vec<u8>, GunzipError> {
    let mut out = Vec::new();
    let reader = flate2::read::GzDecoder::new(raw);
    match reader.take(max as u64 + 1).read_to_end(&mut out) {
        Ok(n) if n > max => Err(GunzipError::TooLarge),
        Ok(_) => Ok(out),
        Err(e) => Err(GunzipError::Invalid(e)),
    }
}

/// Whether the fuzz targets skip the checks that known, still open bugs fail (set by `scripts/fuzz.sh` while it
/// fuzzes, so that a known bug does not stop the search for others; unset when it replays `regressions/`, and when
/// a target is run by hand, so that those fail until the bug is fixed).
pub fn skip_known_issues() -> bool {
    static SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SKIP.get_or_init(|| std::env::var_os("OTLP_LB_FUZZ_SKIP_KNOWN").is_some_and(|v| v == "1"))
}
