//! `validate()`: what the operator refuses before building anything, and how it says so.

mod common;

use common::{FULL, MINIMAL, SERVICE_REF, lbc};
use operator::Error;
use operator::crd::Compression;
use operator::validate::{duration_ms, validate};
use serde_json::json;

fn problems(lbc: &operator::LoadBalancedCollector) -> String {
    match validate(lbc) {
        Err(Error::InvalidSpec(message)) => message,
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
}

#[test]
fn fixtures_are_valid() {
    for yaml in [MINIMAL, SERVICE_REF, FULL] {
        validate(&lbc(yaml)).expect("valid");
    }
}

#[test]
fn exactly_one_of_config_and_service_ref() {
    let mut both = lbc(MINIMAL);
    both.spec.backends.service_ref = lbc(SERVICE_REF).spec.backends.service_ref;
    assert!(problems(&both).contains("set exactly one of backends.config"));

    let mut neither = lbc(MINIMAL);
    neither.spec.backends.config = None;
    assert!(problems(&neither).contains("set exactly one of backends.config"));
}

#[test]
fn pool_fields_are_refused_with_service_ref() {
    let mut lbc = lbc(SERVICE_REF);
    lbc.spec.backends.image = Some("otel/opentelemetry-collector:1".into());
    lbc.spec.backends.node_selector = Some([("a".to_string(), "b".to_string())].into());
    let message = problems(&lbc);
    assert!(message.contains("backends.image, nodeSelector configure a pool the operator runs"), "{message}");
}

#[test]
fn backend_config_needs_pipelines_with_exporters() {
    let mut lbc = lbc(MINIMAL);
    lbc.spec.backends.config = Some(serde_json::Map::new());
    assert!(problems(&lbc).contains("backends.config needs service.pipelines"));

    let config = json!({"service": {"pipelines": {"traces": {"receivers": ["otlp"]}}}});
    lbc.spec.backends.config = config.as_object().cloned();
    assert!(problems(&lbc).contains("backends.config.service.pipelines.traces needs at least one exporter"));

    let config = json!({"receivers": ["otlp"], "service": {"pipelines": {"traces": {"exporters": "debug"}}}});
    lbc.spec.backends.config = config.as_object().cloned();
    let message = problems(&lbc);
    assert!(message.contains("backends.config.receivers must be a map"), "{message}");
    assert!(message.contains("pipelines.traces.exporters must be a list"), "{message}");
}

#[test]
fn sidecar_config_may_omit_pipelines_but_not_be_malformed() {
    let mut lbc = lbc(MINIMAL);
    lbc.spec.load_balancer.collector = serde_json::from_value(json!({"config": {}})).ok();
    validate(&lbc).expect("a sidecar without pipelines gets default ones");
    lbc.spec.load_balancer.collector = serde_json::from_value(json!({"config": {"service": []}})).ok();
    assert!(problems(&lbc).contains("loadBalancer.collector.config.service must be a map"));
}

#[test]
fn load_balancer_settings_are_checked() {
    let mut lbc = lbc(MINIMAL);
    lbc.spec.load_balancer.timeout = "5 seconds".into();
    lbc.spec.load_balancer.retry.initial_interval = "2s".into();
    lbc.spec.load_balancer.retry.max_interval = "1s".into();
    lbc.spec.load_balancer.routing.logs = operator::crd::LogsRouting::Attributes;
    lbc.spec.load_balancer.autoscaling = serde_json::from_value(json!({"minReplicas": 4, "maxReplicas": 2})).ok();
    lbc.spec.load_balancer.pod_disruption_budget =
        serde_json::from_value(json!({"minAvailable": 1, "maxUnavailable": "10%"})).ok();
    lbc.spec.load_balancer.compression_level = Some(12);
    let message = problems(&lbc);
    for expected in [
        "loadBalancer.compressionLevel must be 1 to 9 with gzip",
        "loadBalancer.timeout must be a duration",
        "initialInterval must not be longer than maxInterval",
        "routingAttributes must name at least one attribute",
        "minReplicas must not be greater than maxReplicas",
        "minAvailable or maxUnavailable, not both",
    ] {
        assert!(message.contains(expected), "missing {expected:?} in {message}");
    }
}

#[test]
fn compression_level_fits_the_compression() {
    let mut lbc = lbc(MINIMAL);
    for (compression, level, ok) in [
        (Compression::Gzip, 1, true),
        (Compression::Gzip, 9, true),
        (Compression::Gzip, 10, false),
        (Compression::Gzip, 0, false),
        (Compression::Zstd, 19, true),
        (Compression::Zstd, 23, false),
        (Compression::None, 1, false),
    ] {
        lbc.spec.load_balancer.compression = compression;
        lbc.spec.load_balancer.compression_level = Some(level);
        assert_eq!(validate(&lbc).is_ok(), ok, "{compression:?} level {level}");
    }
    lbc.spec.load_balancer.compression_level = None;
    validate(&lbc).expect("no level with compression none");
}

#[test]
fn tls_settings_need_tls_and_client_certificates_need_a_secret() {
    let mut plaintext = lbc(MINIMAL);
    plaintext.spec.load_balancer.tls.secret_name = Some("certs".into());
    assert!(problems(&plaintext).contains("set loadBalancer.tls.insecure to false"));

    let mut no_secret = lbc(MINIMAL);
    no_secret.spec.load_balancer.tls.insecure = false;
    no_secret.spec.load_balancer.tls.client_certificate = true;
    assert!(problems(&no_secret).contains("clientCertificate needs secretName"));

    let mut system_roots = lbc(MINIMAL);
    system_roots.spec.load_balancer.tls.insecure = false;
    validate(&system_roots).expect("TLS with the system roots");
}

#[test]
fn names_must_fit_the_derived_service_names() {
    let mut long = lbc(MINIMAL);
    long.metadata.name = Some("a".repeat(55));
    assert!(problems(&long).contains("at most 54 characters"));
    let mut digit = lbc(MINIMAL);
    digit.metadata.name = Some("1demo".into());
    assert!(problems(&digit).contains("must start with a lowercase letter"));
}

#[test]
fn missing_server_metadata_is_reported() {
    let mut lbc = lbc(MINIMAL);
    lbc.metadata.uid = None;
    assert!(matches!(validate(&lbc), Err(Error::MissingObjectKey("metadata.uid"))));
}

#[test]
fn durations() {
    assert_eq!(duration_ms("250ms"), Some(250));
    assert_eq!(duration_ms("5s"), Some(5_000));
    assert_eq!(duration_ms("2m"), Some(120_000));
    assert_eq!(duration_ms("1h"), Some(3_600_000));
    for bad in ["", "s", "5", "5sec", "-1s", "1.5s", "1m30s"] {
        assert_eq!(duration_ms(bad), None, "{bad}");
    }
}

#[test]
fn a_durable_queue_needs_a_volume_that_holds_its_log() {
    let with = |queue: serde_json::Value| {
        let mut lbc = lbc(MINIMAL);
        lbc.spec.load_balancer.durable_queue = Some(serde_json::from_value(queue).expect("a durable queue"));
        lbc
    };
    validate(&with(json!({"enabled": true}))).expect("an emptyDir sized by the operator");
    validate(&with(json!({"enabled": true, "maxSizeMiB": 512, "storage": {"emptyDir": {"sizeLimit": "1Gi"}}})))
        .expect("1Gi holds 512 MiB and a segment");
    assert_eq!(
        problems(&with(json!({"enabled": true, "storage": {"emptyDir": {"sizeLimit": "200Mi"}}}))),
        "loadBalancer.durableQueue.storage.emptyDir.sizeLimit (200Mi) must hold maxSizeMiB plus one 16 MiB segment: at least 272Mi"
    );
    let claim = json!({"enabled": true, "storage": {"volumeClaimTemplate": {"accessModes": ["ReadWriteOnce"]}}});
    assert_eq!(
        problems(&with(claim)),
        "loadBalancer.durableQueue.storage.volumeClaimTemplate.resources.requests.storage must be set"
    );
    let both = json!({"enabled": true, "storage": {"emptyDir": {}, "volumeClaimTemplate": {}}});
    assert!(problems(&with(both)).contains("takes emptyDir or volumeClaimTemplate, not both"));
    assert!(problems(&with(json!({"enabled": true, "maxSizeMiB": 8}))).contains("maxSizeMiB must be between 16"));
    // A disabled queue is not checked: it builds nothing.
    validate(&with(json!({"enabled": false, "maxSizeMiB": 8}))).expect("disabled");
}

#[test]
fn a_valid_spec_is_read_into_the_data_planes_types() {
    use operator::crd::Backends;
    use otlp_lb_config::{Compression, Dur, RoutingKey};

    let full = lbc(FULL);
    let cluster = validate(&full).expect("valid");
    let lb = &cluster.load_balancer;
    assert_eq!((lb.exporter.timeout, lb.max_connection_age), (Dur::secs(10), Dur::secs(600)));
    assert_eq!((lb.exporter.compression, lb.exporter.compression_params.level), (Compression::Zstd, Some(9)));
    assert_eq!(
        (lb.retry.initial_interval, lb.retry.max_interval, lb.retry.max_elapsed_time),
        (Dur::millis(100), Dur::secs(2), Dur::secs(30))
    );
    let queue = &lb.exporter.sending_queue;
    assert_eq!((queue.enabled, queue.num_consumers, queue.queue_size), (false, 4, 100));
    assert_eq!(
        (lb.routing.traces, lb.routing.metrics, lb.routing.logs),
        (RoutingKey::Attributes, RoutingKey::StreamId, RoutingKey::Service)
    );
    assert_eq!(lb.routing.attributes, ["tenant.id"]);
    assert_eq!(lb.memory_limit_mib, 512);
    assert!(matches!(cluster.backends, Backends::Pool { .. }), "{:?}", cluster.backends);

    let service_ref = lbc(SERVICE_REF);
    let cluster = validate(&service_ref).expect("valid");
    assert_eq!(cluster.backends, Backends::Service { name: "external-gateway", port: 4317 });
    let routing = &cluster.load_balancer.routing;
    assert_eq!(
        (routing.traces, routing.metrics, routing.logs),
        (RoutingKey::Service, RoutingKey::Resource, RoutingKey::Resource)
    );
}
