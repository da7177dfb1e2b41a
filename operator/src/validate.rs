//! Checks a LoadBalancedCollector before anything is built. The CRD's CEL rules reject most mistakes
//! at `kubectl apply` time; this repeats them (a CRD may be older than the operator) and adds the
//! checks CEL cannot do on free-form Collector configurations.

use serde_json::{Map, Value};

use crate::build::lb_configmap::quantity_bytes;
use crate::crd::{
    Compression, DurableQueueSpec, LoadBalancedCollector, LogsRouting, MIN_DURABLE_QUEUE_MIB, MetricsRouting,
    TraceRouting,
};
use crate::error::{Error, Result};

/// Longest LoadBalancedCollector name: `<name>-backends` must fit a 63-character Service name.
pub const MAX_NAME_LEN: usize = 54;

/// Every problem of `lbc`, joined into one [`Error::InvalidSpec`], or `Ok` when it can be run.
pub fn validate(lbc: &LoadBalancedCollector) -> Result<()> {
    let meta = &lbc.metadata;
    let name = meta.name.as_deref().ok_or(Error::MissingObjectKey("metadata.name"))?;
    meta.namespace.as_deref().ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    meta.uid.as_deref().ok_or(Error::MissingObjectKey("metadata.uid"))?;

    let mut problems = Vec::new();
    check_name(name, &mut problems);

    let backends = &lbc.spec.backends;
    match (&backends.config, &backends.service_ref) {
        (Some(_), Some(_)) | (None, None) => problems.push(
            "set exactly one of backends.config (the operator runs a pool of Collectors) or backends.serviceRef (balance over an existing Service)"
                .to_string(),
        ),
        (Some(config), None) => {
            if backends.replicas < 0 {
                problems.push("backends.replicas must not be negative".to_string());
            }
            check_collector_config("backends.config", config, true, &mut problems);
            if let Err(problem) = crate::build::drain::decision_wait_ms(config) {
                problems.push(format!("backends.config.{problem}"));
            }
        }
        (None, Some(service_ref)) => {
            let pool_fields = [
                ("image", backends.image.is_some()),
                ("resources", backends.resources.is_some()),
                ("env", backends.env.is_some()),
                ("nodeSelector", backends.node_selector.is_some()),
                ("tolerations", backends.tolerations.is_some()),
                ("affinity", backends.affinity.is_some()),
            ];
            let set: Vec<_> = pool_fields.iter().filter(|(_, set)| *set).map(|(f, _)| *f).collect();
            if !set.is_empty() {
                problems.push(format!(
                    "backends.{} configure a pool the operator runs: remove them when backends.serviceRef points at a pool you run yourself",
                    set.join(", ")
                ));
            }
            if service_ref.name.is_empty() {
                problems.push("backends.serviceRef.name must not be empty".to_string());
            }
            if !(1..=65535).contains(&service_ref.port) {
                problems.push("backends.serviceRef.port must be between 1 and 65535".to_string());
            }
        }
    }

    let lb = &lbc.spec.load_balancer;
    if lb.replicas < 0 {
        problems.push("loadBalancer.replicas must not be negative".to_string());
    }
    let by_attributes = lb.routing.traces == TraceRouting::Attributes
        || lb.routing.metrics == MetricsRouting::Attributes
        || lb.routing.logs == LogsRouting::Attributes;
    if by_attributes && lb.routing_attributes.is_empty() {
        problems.push(
            "loadBalancer.routingAttributes must name at least one attribute when loadBalancer.routing routes a signal by 'attributes'"
                .to_string(),
        );
    }
    if let Some(level) = lb.compression_level {
        let valid = match lb.compression {
            Compression::Gzip => (1..=9).contains(&level),
            Compression::Zstd => (1..=22).contains(&level),
            Compression::None => false,
        };
        if !valid {
            problems.push(format!(
                "loadBalancer.compressionLevel must be 1 to 9 with gzip, 1 to 22 with zstd, and absent with compression none, not {level} with {:?}",
                lb.compression
            ));
        }
    }
    if lb.routing_attributes.iter().any(|a| a.trim().is_empty()) {
        problems.push("loadBalancer.routingAttributes must not contain empty names".to_string());
    }
    for (field, value) in [
        ("loadBalancer.timeout", &lb.timeout),
        ("loadBalancer.maxConnectionAge", &lb.max_connection_age),
        ("loadBalancer.retry.initialInterval", &lb.retry.initial_interval),
        ("loadBalancer.retry.maxInterval", &lb.retry.max_interval),
        ("loadBalancer.retry.maxElapsedTime", &lb.retry.max_elapsed_time),
    ] {
        if !is_duration(value) {
            problems.push(format!("{field} must be a duration such as 500ms, 5s, 1m or 1h, not {value:?}"));
        }
    }
    if lb.queue.num_consumers < 1 || lb.queue.queue_size < 1 {
        problems.push("loadBalancer.queue.numConsumers and queueSize must be at least 1".to_string());
    }
    if lb.tls.insecure && (lb.tls.secret_name.is_some() || lb.tls.server_name.is_some() || lb.tls.client_certificate) {
        problems.push(
            "loadBalancer.tls.secretName, serverName and clientCertificate apply to TLS connections: set loadBalancer.tls.insecure to false to use them"
                .to_string(),
        );
    }
    if lb.tls.client_certificate && lb.tls.secret_name.is_none() {
        problems.push(
            "loadBalancer.tls.clientCertificate needs secretName: the Secret holding tls.crt and tls.key".to_string(),
        );
    }
    if let (Some(initial), Some(max)) = (duration_ms(&lb.retry.initial_interval), duration_ms(&lb.retry.max_interval))
        && initial > max
    {
        problems.push("loadBalancer.retry.initialInterval must not be longer than maxInterval".to_string());
    }
    if let Some(hpa) = &lb.autoscaling {
        if hpa.min_replicas < 1 {
            problems.push("loadBalancer.autoscaling.minReplicas must be at least 1".to_string());
        }
        if hpa.min_replicas > hpa.max_replicas {
            problems.push("loadBalancer.autoscaling.minReplicas must not be greater than maxReplicas".to_string());
        }
        if !(1..=100).contains(&hpa.target_cpu_utilization_percentage) {
            problems
                .push("loadBalancer.autoscaling.targetCPUUtilizationPercentage must be between 1 and 100".to_string());
        }
    }
    if let Some(pdb) = &lb.pod_disruption_budget
        && pdb.min_available.is_some()
        && pdb.max_unavailable.is_some()
    {
        problems
            .push("set either loadBalancer.podDisruptionBudget.minAvailable or maxUnavailable, not both".to_string());
    }
    if let Some(sidecar) = &lb.collector {
        check_collector_config("loadBalancer.collector.config", &sidecar.config, false, &mut problems);
    }
    if let Some(queue) = lb.durable_queue.as_ref().filter(|q| q.enabled) {
        check_durable_queue(queue, &mut problems);
    }

    if problems.is_empty() { Ok(()) } else { Err(Error::InvalidSpec(problems.join("; "))) }
}

fn check_name(name: &str, problems: &mut Vec<String>) {
    if name.len() > MAX_NAME_LEN {
        problems.push(format!(
            "metadata.name must be at most {MAX_NAME_LEN} characters: the operator names a Service <name>-backends, and Service names are limited to 63 characters"
        ));
    }
    let bytes = name.as_bytes();
    let valid = bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes.last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !valid {
        problems.push(
            "metadata.name must start with a lowercase letter and contain only lowercase letters, digits and '-': it names Services"
                .to_string(),
        );
    }
}

/// Whether `value` is a duration the data plane parses: digits and one of ms, s, m, h.
pub fn is_duration(value: &str) -> bool {
    duration_ms(value).is_some()
}

/// Milliseconds of a duration such as `250ms`, `5s`, `1m` or `1h`.
pub fn duration_ms(value: &str) -> Option<u64> {
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    let number: u64 = value.get(..digits)?.parse().ok()?;
    let unit = match value.get(digits..)? {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(unit)
}

/// Checks the parts of a Collector configuration the operator edits or the Collector needs.
/// `needs_pipelines`: the backend pool must bring its own pipelines; the sidecar gets defaults.
fn check_collector_config(path: &str, config: &Map<String, Value>, needs_pipelines: bool, problems: &mut Vec<String>) {
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

/// The durable queue's bounds, and a volume that can hold the log (its bound plus one segment).
fn check_durable_queue(queue: &DurableQueueSpec, problems: &mut Vec<String>) {
    if !(MIN_DURABLE_QUEUE_MIB..=1 << 20).contains(&queue.max_size_mib) {
        problems
            .push(format!("loadBalancer.durableQueue.maxSizeMiB must be between {MIN_DURABLE_QUEUE_MIB} and 1048576"));
    }
    let storage = &queue.storage;
    if storage.empty_dir.is_some() && storage.volume_claim_template.is_some() {
        problems.push("loadBalancer.durableQueue.storage takes emptyDir or volumeClaimTemplate, not both".to_string());
        return;
    }
    let (field, size) = match (&storage.empty_dir, &storage.volume_claim_template) {
        (_, Some(claim)) => (
            "storage.volumeClaimTemplate.resources.requests.storage",
            Some(claim.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage"))),
        ),
        (Some(dir), None) => ("storage.emptyDir.sizeLimit", dir.size_limit.as_ref().map(Some)),
        (None, None) => return,
    };
    let needed = (u64::try_from(queue.max_size_mib).unwrap_or(0) + MIN_DURABLE_QUEUE_MIB as u64) << 20;
    match size {
        None => {}
        Some(None) => problems.push(format!("loadBalancer.durableQueue.{field} must be set")),
        Some(Some(quantity)) => match quantity_bytes(&quantity.0) {
            None => problems.push(format!("loadBalancer.durableQueue.{field}: {:?} is not a quantity", quantity.0)),
            Some(bytes) if bytes < needed => problems.push(format!(
                "loadBalancer.durableQueue.{field} ({}) must hold maxSizeMiB plus one 16 MiB segment: at least {}Mi",
                quantity.0,
                needed >> 20
            )),
            Some(_) => {}
        },
    }
}
