//! The Collector's exporter blocks in `config/examples/collector/`: the pinned Collector (`otelcol-lb validate`,
//! the block wrapped in a minimal Collector configuration) and `otlp-lb --validate` (the file as it is) agree on
//! each one, accepted or refused. The differences on purpose are listed in [`DIFFERENCES`] with the reason; any
//! other disagreement, or a listed difference that no longer holds, fails the test.
//!
//! The Collector comes from `make tools` (`$TOOLS_DIR/bin/otelcol-lb`); without it the test fails under `CI=true`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accepted,
    Refused,
}

use Verdict::{Accepted, Refused};

const STORAGE: &str = "the queue names a Collector storage extension; otlp-lb keeps its own write-ahead log \
                       (sending_queue: {ack: queued, storage: <directory>}) and says so";

/// Blocks where otlp-lb and the Collector differ on purpose: (file, otlp-lb, the Collector, why).
const DIFFERENCES: &[(&str, Verdict, Verdict, &str)] = &[
    ("static-weights-list.yaml", Accepted, Refused, "weights are otlp-lb's; the pinned Collector has none"),
    ("static-weights-map.yaml", Accepted, Refused, "weights are otlp-lb's; the pinned Collector has none"),
    ("routing-per-signal.yaml", Accepted, Refused, "the routing block (a key per signal) is otlp-lb's"),
    ("dns-number-port.yaml", Accepted, Refused, "the pinned Collector takes a string port only; otlp-lb both"),
    ("file-storage-queue.yaml", Refused, Accepted, STORAGE),
    ("collector-readme-persistent-queue.yaml", Refused, Accepted, STORAGE),
    ("two-blocks.yaml", Refused, Accepted, "one otlp-lb is one load balancer: one block per configuration"),
    ("tls-pem-inline.yaml", Refused, Accepted, "TLS material is read from files; the error names the file key"),
];

/// The routing keys each of the Collector's exporters takes (its traces, metrics and logs exporters).
const COLLECTOR_KEYS_BY_SIGNAL: [(&str, &[&str]); 3] = [
    ("traces", &["", "traceID", "service", "attributes"]),
    ("metrics", &["", "service", "resource", "metric", "streamID", "attributes"]),
    ("logs", &["", "service", "traceID", "resource", "attributes"]),
];

fn blocks_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/collector")
}

fn otelcol() -> Option<PathBuf> {
    let tools = match std::env::var_os("TOOLS_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/otlp-lb/tools"),
    };
    let bin = tools.join("bin/otelcol-lb");
    bin.is_file().then_some(bin)
}

fn is_block_name(key: &str) -> bool {
    let kind = key.split_once('/').map_or(key, |(k, _)| k);
    kind == "loadbalancing" || kind == "load_balancing"
}

/// A Collector configuration with the file's blocks as exporters, each in a pipeline of every signal its
/// routing key is valid for (all three when it is valid for none, so that the Collector judges the key).
fn collector_config(block: &Map<String, Value>) -> Value {
    let mut pipelines = Map::new();
    for (i, (id, cfg)) in block.iter().enumerate() {
        if !is_block_name(id) {
            continue;
        }
        let key = cfg.get("routing_key").and_then(Value::as_str).unwrap_or("");
        let valid: Vec<&str> =
            COLLECTOR_KEYS_BY_SIGNAL.iter().filter(|(_, keys)| keys.contains(&key)).map(|(s, _)| *s).collect();
        let signals = if valid.is_empty() { vec!["traces", "metrics", "logs"] } else { valid };
        for signal in signals {
            pipelines.insert(format!("{signal}/b{i}"), json!({"receivers": ["otlp"], "exporters": [id]}));
        }
    }
    json!({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "exporters": block,
        "service": {"pipelines": pipelines, "telemetry": {"metrics": {"level": "none"}}},
    })
}

/// Runs a validating command: accepted (exit 0) or refused (any other exit), with its output.
fn verdict(cmd: &mut Command) -> (Verdict, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (if out.status.success() { Accepted } else { Refused }, text)
}

#[test]
fn collector_blocks_get_the_same_verdict_from_otlp_lb_and_the_collector() {
    let Some(otelcol) = otelcol() else {
        let msg = "otelcol-lb is missing from $TOOLS_DIR/bin: run `make tools`";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("SKIPPED (not CI): {msg}");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files: Vec<PathBuf> = std::fs::read_dir(blocks_dir())
        .expect("config/examples/collector exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 13, "found {} blocks", files.len());

    let (mut routing_keys, mut resolvers) = (BTreeSet::new(), BTreeSet::new());
    let mut failures = Vec::new();
    let mut listed = BTreeSet::new();
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8 name").to_string();
        let text = std::fs::read_to_string(path).expect("read block");
        let block: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let block = block.as_object().unwrap_or_else(|| panic!("{name}: not a map")).clone();
        for cfg in block.iter().filter(|(k, _)| is_block_name(k)).map(|(_, v)| v) {
            routing_keys.extend(cfg.get("routing_key").and_then(Value::as_str).map(str::to_string));
            resolvers
                .extend(cfg.get("resolver").and_then(Value::as_object).into_iter().flat_map(|r| r.keys().cloned()));
        }

        let wrapped = dir.path().join(&name);
        std::fs::write(&wrapped, collector_config(&block).to_string()).expect("write the Collector's configuration");
        let (collector, collector_out) = verdict(Command::new(&otelcol).arg("validate").arg("--config").arg(&wrapped));
        let (ours, our_out) =
            verdict(Command::new(env!("CARGO_BIN_EXE_otlp-lb")).arg("--validate").arg("--config").arg(path));
        let expected = DIFFERENCES.iter().find(|d| d.0 == name);
        let (want_ours, want_collector) = match expected {
            Some((_, o, c, _)) => {
                listed.insert(name.clone());
                (*o, *c)
            }
            None => (collector, collector),
        };
        eprintln!("{name}: otlp-lb {ours:?}, Collector {collector:?}");
        if (ours, collector) != (want_ours, want_collector) {
            failures.push(format!(
                "{name}: otlp-lb {ours:?} (expected {want_ours:?}), Collector {collector:?} (expected \
                 {want_collector:?})\n  otlp-lb: {}\n  Collector: {}",
                our_out.trim(),
                collector_out.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "disagreements:\n{}", failures.join("\n"));
    for (name, ..) in DIFFERENCES {
        assert!(listed.contains(*name), "{name} is listed as a difference but is not in config/examples/collector");
    }
    for key in ["traceID", "service", "resource", "metric", "streamID", "attributes"] {
        assert!(routing_keys.contains(key), "no block routes by {key}");
    }
    for resolver in ["static", "dns", "k8s"] {
        assert!(resolvers.contains(resolver), "no block uses the {resolver} resolver");
    }
}
