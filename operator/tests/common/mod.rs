//! Fixtures shared by the integration tests: LoadBalancedCollectors from YAML, as the API server
//! would hand them to the operator (namespace, uid and generation set, defaults applied by serde).
#![allow(dead_code)]

use std::path::PathBuf;

use operator::LoadBalancedCollector;
use serde_json::Value;

pub const NAMESPACE: &str = "observability";
pub const UID: &str = "3f6c1f9e-6a43-4d61-9d6e-6f1c2b1a0001";

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every YAML document of `text`, as JSON values.
pub fn documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text).expect("valid YAML")
}

/// A LoadBalancedCollector from YAML, with namespace, uid and generation as the API server sets them.
pub fn lbc(yaml: &str) -> LoadBalancedCollector {
    from_value(serde_saphyr::from_str::<Value>(yaml).expect("valid YAML"))
}

/// A LoadBalancedCollector from a JSON value, completed like [`lbc`].
pub fn from_value(value: Value) -> LoadBalancedCollector {
    let mut lbc: LoadBalancedCollector = serde_json::from_value(value).expect("a LoadBalancedCollector");
    lbc.metadata.namespace.get_or_insert_with(|| NAMESPACE.to_string());
    lbc.metadata.uid = Some(UID.to_string());
    lbc.metadata.generation = Some(1);
    lbc
}

/// The LoadBalancedCollectors of a sample file in config/samples.
pub fn samples(file: &str) -> Vec<LoadBalancedCollector> {
    let path = workspace().join("config/samples").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    documents(&text).into_iter().filter(|d| d["kind"] == "LoadBalancedCollector").map(from_value).collect()
}

/// A minimal managed pool.
pub const MINIMAL: &str = r#"
apiVersion: otlp-lb.dev/v1alpha1
kind: LoadBalancedCollector
metadata:
  name: demo
spec:
  backends:
    config:
      exporters:
        debug: {}
      service:
        pipelines:
          traces:
            receivers: [otlp]
            exporters: [debug]
"#;

/// Balancing over an existing Service.
pub const SERVICE_REF: &str = r#"
apiVersion: otlp-lb.dev/v1alpha1
kind: LoadBalancedCollector
metadata:
  name: gateway
spec:
  loadBalancer:
    routing: {traces: service, metrics: resource, logs: resource}
  backends:
    serviceRef: {name: external-gateway, port: 4317}
"#;

/// Everything optional set.
pub const FULL: &str = r#"
apiVersion: otlp-lb.dev/v1alpha1
kind: LoadBalancedCollector
metadata:
  name: full
spec:
  loadBalancer:
    replicas: 3
    image: registry.example/otlp-lb:test
    resources:
      requests: {cpu: 250m, memory: 256Mi}
      limits: {memory: 1Gi}
    routing: {traces: attributes, metrics: streamID, logs: service}
    routingAttributes: [tenant.id]
    queue: {enabled: false, numConsumers: 4, queueSize: 100}
    retry: {enabled: true, initialInterval: 100ms, maxInterval: 2s, maxElapsedTime: 30s}
    timeout: 10s
    compression: zstd
    compressionLevel: 9
    tls: {insecure: false, secretName: backend-tls, clientCertificate: true, serverName: collectors.example}
    maxConnectionAge: 10m
    autoscaling: {minReplicas: 2, maxReplicas: 8, targetCPUUtilizationPercentage: 60}
    podDisruptionBudget: {minAvailable: 50%}
    collector:
      image: registry.example/otelcol:test
      config:
        processors:
          memory_limiter: {check_interval: 1s, limit_percentage: 80}
        service:
          pipelines:
            traces: {receivers: [otlp], processors: [memory_limiter]}
      env:
        - {name: GOMEMLIMIT, value: 200MiB}
  backends:
    replicas: 4
    image: registry.example/otelcol:test
    resources:
      requests: {cpu: 500m}
    env:
      - {name: API_TOKEN, valueFrom: {secretKeyRef: {name: token, key: token}}}
    nodeSelector: {pool: telemetry}
    tolerations:
      - {key: dedicated, operator: Equal, value: telemetry, effect: NoSchedule}
    config:
      receivers:
        otlp:
          protocols:
            grpc: {endpoint: 127.0.0.1:9999}
      exporters:
        otlphttp: {endpoint: "https://example.invalid", headers: {authorization: "${env:API_TOKEN}"}}
      service:
        pipelines:
          traces: {exporters: [otlphttp]}
          logs: {receivers: [otlp], exporters: [otlphttp]}
"#;
