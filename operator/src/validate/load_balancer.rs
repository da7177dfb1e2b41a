//! `spec.loadBalancer`: its checks, and its settings read into the data plane's configuration types.

use otlp_lb_config::{
    AckMode, CompressionParams, Dur, DurableQueue, EndpointQueue, OtlpExporter, Retry, RoutingKey, RoutingPolicy,
    Signal,
};

use super::{check_collector_config, duration_ms, quantity};
use crate::crd::rules;
use crate::crd::{DURABLE_QUEUE_DIR, LoadBalancerSettings, LoadBalancerSpec};

/// The load balancer's settings, or `None` with the problems that keep them from being read.
pub(super) fn read(lb: &LoadBalancerSpec, problems: &mut Vec<String>) -> Option<LoadBalancerSettings> {
    let before = problems.len();
    if lb.replicas < 0 {
        problems.push("loadBalancer.replicas must not be negative".to_string());
    }
    let routing = routing(lb, problems);
    let compression = otlp_lb_config::Compression::from(lb.compression);
    if let Some(level) = lb.compression_level {
        // The data plane also takes gzip's -1 (its default level); the resource's range starts at 1.
        if level < 1 || compression.check_level(level).is_err() {
            problems.push(format!("{}, not {level} with {:?}", rules::compression_level(), lb.compression));
        }
    }
    let mut duration = |field: &str, value: &str| match duration_ms(value) {
        Some(ms) => Dur::millis(ms),
        None => {
            problems.push(format!("{}, not {value:?}", rules::duration(field)));
            Dur::default()
        }
    };
    let timeout = duration("loadBalancer.timeout", &lb.timeout);
    let max_connection_age = duration("loadBalancer.maxConnectionAge", &lb.max_connection_age);
    let initial_interval = duration("loadBalancer.retry.initialInterval", &lb.retry.initial_interval);
    let max_interval = duration("loadBalancer.retry.maxInterval", &lb.retry.max_interval);
    let max_elapsed_time = duration("loadBalancer.retry.maxElapsedTime", &lb.retry.max_elapsed_time);
    if initial_interval > max_interval {
        problems.push(rules::RETRY_INTERVALS.to_string());
    }
    let (num_consumers, queue_size) =
        match (usize::try_from(lb.queue.num_consumers), usize::try_from(lb.queue.queue_size)) {
            (Ok(consumers), Ok(size)) if consumers >= 1 && size >= 1 => (consumers, size),
            _ => {
                problems.push("loadBalancer.queue.numConsumers and queueSize must be at least 1".to_string());
                (1, 1)
            }
        };
    if lb.tls.insecure && (lb.tls.secret_name.is_some() || lb.tls.server_name.is_some() || lb.tls.client_certificate) {
        problems.push(rules::TLS_FIELDS_NEED_TLS.to_string());
    }
    if lb.tls.client_certificate && lb.tls.secret_name.is_none() {
        problems.push(rules::CLIENT_CERTIFICATE_NEEDS_SECRET.to_string());
    }
    check_scaling(lb, problems);
    if let Some(sidecar) = &lb.collector {
        check_collector_config("loadBalancer.collector.config", &sidecar.config, false, problems);
    }
    if problems.len() > before {
        return None;
    }
    let exporter = OtlpExporter {
        timeout,
        compression,
        compression_params: CompressionParams { level: lb.compression_level },
        sending_queue: EndpointQueue {
            enabled: lb.queue.enabled,
            num_consumers,
            queue_size,
            ..EndpointQueue::default()
        },
        ..OtlpExporter::default()
    };
    let retry =
        Retry { enabled: lb.retry.enabled, initial_interval, max_interval, max_elapsed_time, ..Retry::default() };
    let durable_queue = lb.durable_queue.as_ref().filter(|q| q.enabled).map(|q| DurableQueue {
        ack: AckMode::Queued,
        storage: Some(DURABLE_QUEUE_DIR.to_string()),
        // Checked against its bounds (at least one segment) with the volume.
        max_size_mib: u64::try_from(q.max_size_mib).unwrap_or_default(),
        fsync: q.fsync.into(),
        ..DurableQueue::default()
    });
    Some(LoadBalancerSettings {
        routing: routing?,
        max_connection_age,
        exporter,
        retry,
        durable_queue,
        memory_limit_mib: quantity::memory_budget_mib(lb),
    })
}

/// The routing key of each signal, and the attributes that `attributes` reads.
fn routing(lb: &LoadBalancerSpec, problems: &mut Vec<String>) -> Option<RoutingPolicy> {
    let mut policy = RoutingPolicy { attributes: lb.routing_attributes.clone(), ..RoutingPolicy::default() };
    for signal in Signal::ALL {
        policy = policy.with(signal, lb.routing.key(signal));
    }
    let by_attributes = Signal::ALL.into_iter().any(|s| policy.key(s) == RoutingKey::Attributes);
    let before = problems.len();
    if by_attributes && lb.routing_attributes.is_empty() {
        problems.push(rules::ROUTING_ATTRIBUTES_NEEDED.to_string());
    }
    if lb.routing_attributes.iter().any(|a| a.trim().is_empty()) {
        problems.push("loadBalancer.routingAttributes must not contain empty names".to_string());
    }
    (problems.len() == before).then_some(policy)
}

/// The autoscaler's and the disruption budget's bounds.
fn check_scaling(lb: &LoadBalancerSpec, problems: &mut Vec<String>) {
    if let Some(hpa) = &lb.autoscaling {
        if hpa.min_replicas < 1 {
            problems.push("loadBalancer.autoscaling.minReplicas must be at least 1".to_string());
        }
        if hpa.min_replicas > hpa.max_replicas {
            problems.push(rules::AUTOSCALING_BOUNDS.to_string());
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
        problems.push(rules::PDB_ONE_OF.to_string());
    }
}
