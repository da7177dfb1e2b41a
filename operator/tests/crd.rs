//! The CRD: the checked-in copies match the code, the schema has what `kubectl` users rely on
//! (CEL rules, scale subresource, printer columns), and the CEL rules accept good specs and reject
//! bad ones with their messages — evaluated client-side with schema defaults applied, as the API
//! server does.

mod common;

use kube::core::cel::{ScopeContext, Validator, analyze_rule, compile_schema};
use operator::crd;
use serde_json::Value;

fn schema() -> Value {
    let crd = crd();
    let version = crd.spec.versions.first().expect("one version");
    serde_json::to_value(version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).expect("schema"))
        .expect("schema as JSON")
}

#[test]
fn checked_in_crd_matches_the_code() {
    let generated = operator::crd_yaml().expect("CRD renders");
    for file in ["crds/loadbalancedcollector.yaml", "charts/otlp-lb/crds/loadbalancedcollector.yaml"] {
        let path = common::workspace().join(file);
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{file} differs from the CRD the code generates: run `make crds` (cargo run -p operator -- crd > {file}) and commit it"
        );
    }
}

#[test]
fn crd_has_names_subresources_and_printer_columns() {
    let crd = crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("loadbalancedcollectors.otlp-lb.dev"));
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["lbc".to_string()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    let subresources = version.subresources.as_ref().expect("subresources");
    assert!(subresources.status.is_some(), "status subresource");
    let scale = subresources.scale.as_ref().expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.backends.replicas");
    assert_eq!(scale.status_replicas_path, ".status.backends.ready");
    assert_eq!(scale.label_selector_path.as_deref(), Some(".status.selector"));
    let columns: Vec<_> = version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(
        columns,
        ["Backends", "Desired", "In-Ring", "LB-Ready", "Ring", "Rebalanced", "Routing", "Ready", "Age"]
    );
}

#[test]
fn schema_is_documented_defaulted_and_carries_cel_rules() {
    let mut rules = Vec::new();
    collect_rules(&schema(), &mut rules);
    for rule in [
        "has(self.config) != has(self.serviceRef)",
        "self.minReplicas <= self.maxReplicas",
        "!(has(self.minAvailable) && has(self.maxUnavailable))",
        "size(self.metadata.name) <= 54",
        "duration(self.initialInterval) <= duration(self.maxInterval)",
        "!has(self.storage) || !(has(self.storage.emptyDir) && has(self.storage.volumeClaimTemplate))",
    ] {
        assert!(rules.iter().any(|r| r == rule), "missing rule {rule}");
    }
    let lb = &schema()["properties"]["spec"]["properties"]["loadBalancer"]["properties"];
    assert_eq!(lb["routing"]["properties"]["traces"]["default"], "traceID");
    assert_eq!(
        lb["routing"]["properties"]["metrics"]["enum"],
        serde_json::json!(["service", "resource", "metric", "streamID", "attributes"])
    );
    assert_eq!(lb["timeout"]["default"], "5s");
    assert!(lb["collector"]["properties"]["config"]["x-kubernetes-preserve-unknown-fields"] == true);
    assert!(lb["replicas"]["description"].as_str().is_some_and(|d| d.contains("load-balancer replicas")));
}

#[test]
fn every_cel_rule_compiles_in_scope_and_within_cost() {
    let schema = schema();
    let compiled = compile_schema(&schema);
    assert!(!compiled.has_errors(), "{:?}", compiled.compilation_errors());
    let mut rules = Vec::new();
    collect_rules(&schema, &mut rules);
    assert!(rules.len() >= 12, "found only {} rules", rules.len());
    for rule in rules {
        let warnings = analyze_rule(&rule, &compiled, ScopeContext::CrdValidation);
        assert!(warnings.is_empty(), "{rule}: {warnings:?}");
    }
}

fn collect_rules(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for rule in map.get("x-kubernetes-validations").and_then(Value::as_array).into_iter().flatten() {
                out.extend(rule["rule"].as_str().map(String::from));
            }
            map.values().for_each(|v| collect_rules(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_rules(v, out)),
        _ => {}
    }
}

/// Messages of the CEL rules `yaml` (a spec, as a user writes it) breaks.
fn cel_errors(name: &str, spec: &str) -> Vec<String> {
    let spec: Value = serde_saphyr::from_str(spec).expect("YAML");
    let object = serde_json::json!({
        "apiVersion": "otlp-lb.dev/v1alpha1",
        "kind": "LoadBalancedCollector",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    });
    match Validator::new().validate(&schema(), &object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

const POOL: &str = "backends: {config: {service: {pipelines: {traces: {exporters: [debug]}}}}}";

#[test]
fn cel_accepts_minimal_specs_and_samples() {
    assert_eq!(cel_errors("demo", POOL), Vec::<String>::new());
    assert_eq!(cel_errors("demo", "backends: {serviceRef: {name: gateway}}"), Vec::<String>::new());
    for file in
        ["tail-sampling.yaml", "span-metrics.yaml", "metrics-streamid.yaml", "two-tier.yaml", "per-signal-pools.yaml"]
    {
        let text = std::fs::read_to_string(common::workspace().join("config/samples").join(file)).expect("sample");
        for doc in common::documents(&text).into_iter().filter(|d| d["kind"] == "LoadBalancedCollector") {
            let errors = Validator::new().validate(&schema(), &doc, None);
            assert!(errors.is_ok(), "{file}: {errors:?}");
        }
    }
}

fn assert_rejected(name: &str, spec: &str, expected: &str) {
    let errors = cel_errors(name, spec);
    assert!(errors.iter().any(|e| e.contains(expected)), "expected {expected:?} for {spec}, got {errors:?}");
}

#[test]
fn cel_rejects_bad_specs_with_readable_messages() {
    assert_rejected("demo", "backends: {replicas: 3}", "set exactly one of backends.config");
    assert_rejected("demo", "backends: {serviceRef: {name: gw}, config: {}}", "set exactly one of backends.config");
    assert_rejected(
        "demo",
        "backends: {serviceRef: {name: gw}, image: otel/collector:1}",
        "configure a pool the operator runs",
    );
    assert_rejected(
        "demo",
        &format!("{POOL}\nloadBalancer: {{routing: {{traces: attributes}}}}"),
        "routingAttributes must name at least one attribute",
    );
    for spec in [
        "{compressionLevel: 12}",
        "{compression: gzip, compressionLevel: 10}",
        "{compression: none, compressionLevel: 1}",
    ] {
        assert_rejected(
            "demo",
            &format!("{POOL}\nloadBalancer: {spec}"),
            "loadBalancer.compressionLevel must be 1 to 9 with gzip",
        );
    }
    for spec in ["{compressionLevel: 9}", "{compression: zstd, compressionLevel: 19}"] {
        assert_eq!(cel_errors("demo", &format!("{POOL}\nloadBalancer: {spec}")), Vec::<String>::new(), "{spec}");
    }
    assert_rejected(
        "demo",
        &format!("{POOL}\nloadBalancer: {{timeout: 5 seconds}}"),
        "loadBalancer.timeout must be a duration",
    );
    assert_rejected(
        "demo",
        &format!("{POOL}\nloadBalancer: {{retry: {{initialInterval: 2s, maxInterval: 1s}}}}"),
        "initialInterval must not be longer than maxInterval",
    );
    assert_rejected(
        "demo",
        &format!("{POOL}\nloadBalancer: {{autoscaling: {{minReplicas: 5, maxReplicas: 2}}}}"),
        "minReplicas must not be greater than maxReplicas",
    );
    assert_rejected(
        "demo",
        &format!("{POOL}\nloadBalancer: {{podDisruptionBudget: {{minAvailable: 1, maxUnavailable: 1}}}}"),
        "not both",
    );
    assert_rejected(
        "demo",
        &format!("{POOL}\nloadBalancer: {{tls: {{secretName: certs}}}}"),
        "set loadBalancer.tls.insecure to false",
    );
    assert_rejected(
        "demo",
        &format!("{POOL}\nloadBalancer: {{tls: {{insecure: false, clientCertificate: true}}}}"),
        "clientCertificate needs secretName",
    );
    assert_rejected(&"a".repeat(55), POOL, "at most 54 characters");
    assert_rejected("1abc", POOL, "must start with a lowercase letter");
}
