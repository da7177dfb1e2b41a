//! How long a backend pod of the pool the operator runs goes on serving once it is told to stop (scale-in, a
//! rolling update): while it terminates, its endpoint is `serving` and `terminating`, and the load balancer keeps
//! sending it the traces it already holds for the trace affinity window, and no new ones. The pod's preStop sleep
//! covers that window plus the time its Collector waits before deciding on a trace (`tail_sampling`'s
//! `decision_wait`); its termination grace period adds the time the Collector needs to shut down and flush.

use otlp_lb_config::DEFAULT_AFFINITY_WINDOW;
use serde_json::{Map, Value};

/// The data plane's trace affinity window (`routing.affinity_window`), in seconds: its default.
pub const AFFINITY_WINDOW_SECONDS: i64 = DEFAULT_AFFINITY_WINDOW.0.as_secs() as i64;
/// The Collector's `tail_sampling.decision_wait` when the processor does not set it, in milliseconds.
pub const DEFAULT_DECISION_WAIT_MS: u64 = 30_000;
/// Time the Collector gets to shut down and flush after the preStop sleep (SIGTERM to SIGKILL), in seconds.
pub const SHUTDOWN_SECONDS: i64 = 30;

/// The preStop sleep and the termination grace period of a backend pod running `config`, in seconds.
pub fn pod_lifetime(config: &Map<String, Value>) -> (i64, i64) {
    // An unreadable decision_wait is reported by validation before anything is built.
    let decision_ms = decision_wait_ms(config).ok().flatten().unwrap_or(0);
    let sleep = AFFINITY_WINDOW_SECONDS + decision_ms.div_ceil(1000).min(i64::MAX as u64 / 2) as i64;
    (sleep, sleep + SHUTDOWN_SECONDS)
}

/// The longest `decision_wait` of the `tail_sampling` processors of `config` (the Collector's default where one
/// does not set it), in milliseconds; `None` without such a processor. An error names a value that is not a
/// duration.
pub fn decision_wait_ms(config: &Map<String, Value>) -> Result<Option<u64>, String> {
    let Some(processors) = config.get("processors").and_then(Value::as_object) else { return Ok(None) };
    let mut longest = None;
    for (name, processor) in processors {
        if name != "tail_sampling" && !name.starts_with("tail_sampling/") {
            continue;
        }
        let wait = match processor.get("decision_wait") {
            None | Some(Value::Null) => DEFAULT_DECISION_WAIT_MS,
            Some(value) => value.as_str().and_then(go_duration_ms).ok_or_else(|| {
                format!("processors.{name}.decision_wait must be a duration such as 10s, 500ms or 1m30s")
            })?,
        };
        longest = longest.max(Some(wait));
    }
    Ok(longest)
}

/// Milliseconds of a duration as the Collector writes them (Go's `time.ParseDuration`): one or more numbers, each
/// with a unit of ns, us, µs, ms, s, m or h, such as `1m30s` or `1.5s`; rounded up to a millisecond.
fn go_duration_ms(value: &str) -> Option<u64> {
    match value {
        "" => return None,
        "0" => return Some(0),
        _ => {}
    }
    let mut rest = value;
    let mut total_ns = 0f64;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit_ns = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total_ns += number * unit_ns;
    }
    let ms = (total_ns / 1e6).ceil();
    (ms.is_finite() && ms <= u64::MAX as f64).then_some(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn reads_durations_as_the_collector_writes_them() {
        for (text, ms) in [("10s", 10_000), ("500ms", 500), ("1m30s", 90_000), ("1.5s", 1_500), ("1h", 3_600_000)] {
            assert_eq!(go_duration_ms(text), Some(ms), "{text}");
        }
        assert_eq!(go_duration_ms("1500us"), Some(2), "rounded up");
        assert_eq!(go_duration_ms("0"), Some(0));
        for bad in ["", "10", "s", "10 s", "1d", "-1s", "1..5s"] {
            assert_eq!(go_duration_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_pod_outlives_the_affinity_window_and_the_longest_decision_wait() {
        let plain = config(json!({"processors": {"batch": {}}}));
        assert_eq!(decision_wait_ms(&plain), Ok(None));
        assert_eq!(pod_lifetime(&plain), (30, 60));
        let sampling = config(json!({"processors": {
            "tail_sampling": {"decision_wait": "10s"},
            "tail_sampling/slow": {"decision_wait": "1m30s"},
            "batch": {}
        }}));
        assert_eq!(decision_wait_ms(&sampling), Ok(Some(90_000)));
        assert_eq!(pod_lifetime(&sampling), (120, 150));
        let default_wait = config(json!({"processors": {"tail_sampling": {"policies": []}}}));
        assert_eq!(pod_lifetime(&default_wait), (60, 90), "the Collector's default decision_wait is 30s");
        let bad = config(json!({"processors": {"tail_sampling": {"decision_wait": 10}}}));
        assert_eq!(
            decision_wait_ms(&bad),
            Err("processors.tail_sampling.decision_wait must be a duration such as 10s, 500ms or 1m30s".to_string())
        );
    }
}
