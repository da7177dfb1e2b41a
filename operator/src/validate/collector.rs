//! The checks of the free-form Collector configurations (the pool's and the sidecar's) that CEL cannot do.

use serde_json::{Map, Value};

/// Checks the parts of a Collector configuration the operator edits or the Collector needs.
/// `needs_pipelines`: the backend pool must bring its own pipelines; the sidecar gets defaults.
pub(super) fn check_collector_config(
    path: &str,
    config: &Map<String, Value>,
    needs_pipelines: bool,
    problems: &mut Vec<String>,
) {
    for section in ["receivers", "processors", "exporters", "connectors", "extensions"] {
        if let Some(value) = config.get(section)
            && !value.is_object()
        {
            problems.push(format!("{path}.{section} must be a map of component configurations"));
        }
    }
    if let Some(otlp) = config.get("receivers").and_then(|r| r.get("otlp"))
        && !(otlp.is_object() || otlp.is_null())
    {
        problems.push(format!("{path}.receivers.otlp must be a map"));
    }
    let service = match config.get("service") {
        None => None,
        Some(Value::Object(service)) => Some(service),
        Some(_) => {
            problems.push(format!("{path}.service must be a map"));
            return;
        }
    };
    let pipelines = match service.and_then(|s| s.get("pipelines")) {
        None => None,
        Some(Value::Object(pipelines)) => Some(pipelines),
        Some(_) => {
            problems.push(format!("{path}.service.pipelines must be a map of pipelines"));
            return;
        }
    };
    if let Some(extensions) = service.and_then(|s| s.get("extensions"))
        && !is_string_list(extensions)
    {
        problems.push(format!("{path}.service.extensions must be a list of extension names"));
    }
    match pipelines {
        Some(pipelines) if !pipelines.is_empty() => {
            for (name, pipeline) in pipelines {
                let Some(pipeline) = pipeline.as_object() else {
                    problems.push(format!("{path}.service.pipelines.{name} must be a map"));
                    continue;
                };
                for key in ["receivers", "processors", "exporters"] {
                    if let Some(list) = pipeline.get(key)
                        && !is_string_list(list)
                    {
                        problems.push(format!("{path}.service.pipelines.{name}.{key} must be a list of component names"));
                    }
                }
                if needs_pipelines && pipeline.get("exporters").and_then(Value::as_array).is_none_or(Vec::is_empty) {
                    problems.push(format!("{path}.service.pipelines.{name} needs at least one exporter"));
                }
            }
        }
        _ if needs_pipelines => problems.push(format!(
            "{path} needs service.pipelines: at least one pipeline (traces, metrics or logs) saying where the pool sends telemetry"
        )),
        _ => {}
    }
}

fn is_string_list(value: &Value) -> bool {
    value.as_array().is_some_and(|items| items.iter().all(Value::is_string))
}
