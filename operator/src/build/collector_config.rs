//! Edits the user's Collector configurations so the pieces fit together: the backends' `otlp`
//! receiver listens where the load balancer sends and is in every pipeline; the sidecar exports to
//! the data plane over localhost. Pure functions over JSON maps.

use serde_json::{Map, Value, json};

use crate::crd::OTLP_GRPC_PORT;

/// Port of the `health_check` extension added to the backends, probed for readiness.
pub const HEALTH_CHECK_PORT: i32 = 13133;
/// Port the data plane receives OTLP/gRPC on, on localhost, when a sidecar sits in front of it.
pub const DATA_PLANE_INTERNAL_GRPC_PORT: i32 = 14317;
/// Port the data plane receives OTLP/HTTP on, on localhost, when a sidecar sits in front of it.
pub const DATA_PLANE_INTERNAL_HTTP_PORT: i32 = 14318;
/// Port of the sidecar Collector's own metrics (8888 belongs to the data plane).
pub const SIDECAR_METRICS_PORT: i32 = 8889;
/// Name of the exporter the operator adds to the sidecar.
pub const SIDECAR_EXPORTER: &str = "otlp/otlp-lb";

/// The backend pool's configuration: the user's, with an `otlp` gRPC receiver on 0.0.0.0:4317 in
/// every pipeline and a `health_check` extension on 0.0.0.0:13133.
pub fn backend_config(user: &Map<String, Value>) -> Map<String, Value> {
    let mut config = user.clone();
    let otlp = object_at(&mut config, &["receivers", "otlp"]);
    object_at(otlp, &["protocols", "grpc"]).insert("endpoint".into(), json!(format!("0.0.0.0:{OTLP_GRPC_PORT}")));

    add_health_check(&mut config);
    for pipeline in object_at(&mut config, &["service", "pipelines"]).values_mut() {
        if let Some(pipeline) = pipeline.as_object_mut() {
            push_unique(list_at(pipeline, "receivers"), "otlp");
        }
    }
    config
}

/// The sidecar's configuration: the user's, with the `otlp` receiver on 0.0.0.0:4317 (gRPC) and
/// 0.0.0.0:4318 (HTTP), an `otlp/otlp-lb` exporter to the data plane on localhost in every
/// pipeline (traces, metrics and logs pipelines when the user has none), its own metrics on 8889
/// and a `health_check` extension on 0.0.0.0:13133 for its readiness probe.
pub fn sidecar_config(user: &Map<String, Value>) -> Map<String, Value> {
    let mut config = user.clone();
    add_health_check(&mut config);
    let protocols = object_at(&mut config, &["receivers", "otlp", "protocols"]);
    object_at(protocols, &["grpc"]).insert("endpoint".into(), json!(format!("0.0.0.0:{OTLP_GRPC_PORT}")));
    object_at(protocols, &["http"]).insert("endpoint".into(), json!(format!("0.0.0.0:{}", crate::crd::OTLP_HTTP_PORT)));

    object_at(&mut config, &["exporters"]).insert(
        SIDECAR_EXPORTER.into(),
        json!({
            "endpoint": format!("127.0.0.1:{DATA_PLANE_INTERNAL_GRPC_PORT}"),
            "compression": "none",
            "tls": {"insecure": true}
        }),
    );

    let service = object_at(&mut config, &["service"]);
    let metrics = object_at(service, &["telemetry", "metrics"]);
    if !metrics.contains_key("readers") && !metrics.contains_key("address") {
        metrics.insert(
            "readers".into(),
            json!([{"pull": {"exporter": {"prometheus": {"host": "0.0.0.0", "port": SIDECAR_METRICS_PORT}}}}]),
        );
    }
    let pipelines = object_at(service, &["pipelines"]);
    if pipelines.is_empty() {
        for signal in ["traces", "metrics", "logs"] {
            pipelines.insert(signal.into(), json!({"receivers": ["otlp"], "exporters": []}));
        }
    }
    for pipeline in pipelines.values_mut() {
        if let Some(pipeline) = pipeline.as_object_mut() {
            push_unique(list_at(pipeline, "exporters"), SIDECAR_EXPORTER);
        }
    }
    config
}

/// Adds the `health_check` extension on 0.0.0.0:13133 (probed by the kubelet) to `config`.
fn add_health_check(config: &mut Map<String, Value>) {
    object_at(config, &["extensions", "health_check"])
        .insert("endpoint".into(), json!(format!("0.0.0.0:{HEALTH_CHECK_PORT}")));
    push_unique(list_at(object_at(config, &["service"]), "extensions"), "health_check");
}

/// The map at `path` under `map`, creating (or replacing non-maps with) empty maps on the way.
fn object_at<'a>(map: &'a mut Map<String, Value>, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut current = map;
    for key in path {
        let slot = current.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        current = match slot {
            Value::Object(next) => next,
            _ => unreachable!("slot was just made an object"),
        };
    }
    current
}

/// The list at `key` of `map`, created (or replacing a non-list) when needed.
fn list_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = map.entry(key.to_string()).or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(list) => list,
        _ => unreachable!("slot was just made a list"),
    }
}

fn push_unique(list: &mut Vec<Value>, item: &str) {
    if !list.iter().any(|v| v.as_str() == Some(item)) {
        list.push(json!(item));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn backend_config_adds_otlp_receiver_to_every_pipeline() {
        let user = map(json!({
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "localhost:9999"}, "http": {}}}},
            "exporters": {"debug": {}},
            "service": {"pipelines": {
                "traces": {"receivers": ["otlp"], "exporters": ["debug"]},
                "metrics": {"exporters": ["debug"]}
            }}
        }));
        let config = Value::Object(backend_config(&user));
        assert_eq!(config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"], "0.0.0.0:4317");
        assert_eq!(config["receivers"]["otlp"]["protocols"]["http"], json!({}));
        assert_eq!(config["service"]["pipelines"]["traces"]["receivers"], json!(["otlp"]));
        assert_eq!(config["service"]["pipelines"]["metrics"]["receivers"], json!(["otlp"]));
        assert_eq!(config["service"]["extensions"], json!(["health_check"]));
        assert_eq!(config["extensions"]["health_check"]["endpoint"], "0.0.0.0:13133");
    }

    #[test]
    fn backend_config_creates_missing_receiver() {
        let user = map(json!({"service": {"pipelines": {"logs": {"receivers": ["filelog"], "exporters": ["debug"]}}}}));
        let config = Value::Object(backend_config(&user));
        assert_eq!(config["receivers"]["otlp"], json!({"protocols": {"grpc": {"endpoint": "0.0.0.0:4317"}}}));
        assert_eq!(config["service"]["pipelines"]["logs"]["receivers"], json!(["filelog", "otlp"]));
    }

    #[test]
    fn sidecar_config_exports_to_data_plane() {
        let user = map(json!({
            "processors": {"memory_limiter": {"check_interval": "1s", "limit_percentage": 80}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["memory_limiter"]}}}
        }));
        let config = Value::Object(sidecar_config(&user));
        assert_eq!(config["exporters"]["otlp/otlp-lb"]["endpoint"], "127.0.0.1:14317");
        assert_eq!(config["service"]["pipelines"]["traces"]["exporters"], json!(["otlp/otlp-lb"]));
        assert_eq!(config["receivers"]["otlp"]["protocols"]["http"]["endpoint"], "0.0.0.0:4318");
        assert!(config["service"]["telemetry"]["metrics"]["readers"].is_array());
        assert_eq!(config["service"]["extensions"], json!(["health_check"]));
    }

    #[test]
    fn sidecar_config_without_pipelines_gets_all_three() {
        let config = Value::Object(sidecar_config(&Map::new()));
        for signal in ["traces", "metrics", "logs"] {
            assert_eq!(config["service"]["pipelines"][signal]["exporters"], json!(["otlp/otlp-lb"]));
        }
    }
}
