//! Reading what Collector backends received: the file exporter's output
//! (OTLP/JSON, one `ExportTraceServiceRequest` per line) reduced to
//! (trace id, span id) pairs, and the distribution checks the load-balancing
//! tests assert (every span arrived exactly once, each trace on exactly one
//! backend, every backend got some).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One received span.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SpanKey {
    pub trace_id: String,
    pub span_id: String,
}

/// Spans in OTLP/JSON lines. A last line that does not parse (still being
/// written) is ignored; a bad line in the middle is an error.
pub fn spans_in_text(text: &str) -> Result<Vec<SpanKey>> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let doc: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) if i + 1 == lines.len() => break,
            Err(e) => bail!("line {} is not JSON: {e}", i + 1),
        };
        for rs in doc.get("resourceSpans").and_then(Value::as_array).into_iter().flatten() {
            for ss in rs.get("scopeSpans").and_then(Value::as_array).into_iter().flatten() {
                for span in ss.get("spans").and_then(Value::as_array).into_iter().flatten() {
                    let id = |k: &str| span.get(k).and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
                    out.push(SpanKey { trace_id: id("traceId"), span_id: id("spanId") });
                }
            }
        }
    }
    Ok(out)
}

/// The spans of the OTLP/JSON lines in a container's log; other lines (the
/// process's own log messages) and an unfinished last line are skipped.
pub fn spans_in_log(log: &str) -> Vec<SpanKey> {
    log.lines()
        .filter(|l| l.starts_with('{') && l.contains("resourceSpans"))
        .filter_map(|l| spans_in_text(l).ok())
        .flatten()
        .collect()
}

/// Spans in every regular file under `dir` (recursively).
pub fn spans_in_dir(dir: &Path) -> Result<Vec<SpanKey>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for e in entries.filter_map(|e| e.ok()) {
        let path = e.path();
        if path.is_dir() {
            out.extend(spans_in_dir(&path)?);
        } else if path.is_file() {
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            out.extend(
                spans_in_text(&String::from_utf8_lossy(&bytes))
                    .with_context(|| format!("parsing {}", path.display()))?,
            );
        }
    }
    Ok(out)
}

/// How spans spread over the backends.
#[derive(Debug, Clone, Default)]
pub struct Distribution {
    /// Backend → (spans, distinct traces).
    pub per_backend: BTreeMap<String, (usize, usize)>,
    pub total_spans: usize,
    pub distinct_spans: usize,
    pub traces: usize,
    /// Traces seen on more than one backend, with those backends.
    pub split_traces: BTreeMap<String, BTreeSet<String>>,
}

impl Distribution {
    pub fn of(backends: &BTreeMap<String, Vec<SpanKey>>) -> Distribution {
        let mut d = Distribution::default();
        let mut where_trace: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut distinct = BTreeSet::new();
        for (name, spans) in backends {
            let traces: BTreeSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
            d.per_backend.insert(name.clone(), (spans.len(), traces.len()));
            d.total_spans += spans.len();
            for s in spans {
                distinct.insert(s);
                where_trace.entry(&s.trace_id).or_default().insert(name);
            }
        }
        d.distinct_spans = distinct.len();
        d.traces = where_trace.len();
        d.split_traces = where_trace
            .into_iter()
            .filter(|(_, b)| b.len() > 1)
            .map(|(t, b)| (t.to_string(), b.into_iter().map(str::to_string).collect()))
            .collect();
        d
    }

    /// The load-balancing contract: exactly `expected_spans` spans (no loss,
    /// no duplicates), `expected_traces` traces, each on exactly one backend,
    /// and every one of `backends` backends used.
    pub fn check(&self, expected_spans: usize, expected_traces: usize, backends: usize) -> Result<()> {
        if self.total_spans != expected_spans || self.distinct_spans != expected_spans {
            bail!(
                "expected {expected_spans} spans, got {} ({} distinct): {self}",
                self.total_spans,
                self.distinct_spans
            );
        }
        if self.traces != expected_traces {
            bail!("expected {expected_traces} traces, got {}: {self}", self.traces);
        }
        if !self.split_traces.is_empty() {
            bail!(
                "{} traces were split across backends (e.g. {:?}): {self}",
                self.split_traces.len(),
                self.split_traces.iter().next()
            );
        }
        let used = self.per_backend.values().filter(|(s, _)| *s > 0).count();
        if used != backends {
            bail!("expected all {backends} backends to receive spans, {used} did: {self}");
        }
        Ok(())
    }
}

impl std::fmt::Display for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} spans ({} distinct) in {} traces;", self.total_spans, self.distinct_spans, self.traces)?;
        for (name, (spans, traces)) in &self.per_backend {
            write!(f, " {name}: {spans} spans/{traces} traces;")?;
        }
        write!(f, " split traces: {}", self.split_traces.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(spans: &[(&str, &str)]) -> String {
        let spans: Vec<Value> =
            spans.iter().map(|(t, s)| serde_json::json!({"traceId": t, "spanId": s, "name": "x"})).collect();
        serde_json::json!({"resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {}, "spans": spans}]}]})
            .to_string()
    }

    #[test]
    fn parses_lines_and_ignores_partial_tail() {
        let text = format!("{}\n{}\n{{\"resourceSp", line(&[("AA", "01"), ("aa", "02")]), line(&[("bb", "03")]));
        let spans = spans_in_text(&text).unwrap();
        assert_eq!(spans.len(), 3);
        assert_eq!(spans[0].trace_id, "aa");
        assert!(spans_in_text("{bad\n{}\n").is_err());
    }

    #[test]
    fn distribution_checks() {
        let mut b = BTreeMap::new();
        b.insert("a".to_string(), spans_in_text(&line(&[("t1", "1"), ("t1", "2")])).unwrap());
        b.insert("b".to_string(), spans_in_text(&line(&[("t2", "3")])).unwrap());
        let d = Distribution::of(&b);
        d.check(3, 2, 2).unwrap();
        assert!(d.check(4, 2, 2).is_err());
        assert!(d.check(3, 2, 3).is_err());
        b.insert("c".to_string(), spans_in_text(&line(&[("t2", "4")])).unwrap());
        let d = Distribution::of(&b);
        assert_eq!(d.split_traces.len(), 1);
        assert!(d.check(4, 2, 3).is_err());
    }
}
