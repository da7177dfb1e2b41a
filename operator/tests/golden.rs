//! Golden tests of the pure builders: every child object of each fixture and each sample in
//! config/samples, compared with `tests/golden/<name>.json`. After an intended change, regenerate
//! with `UPDATE_GOLDEN=1 cargo test -p operator --test golden` and review the diff. The data plane's
//! configuration is also checked for meaning: the data plane's loader accepts it without warnings and reads
//! back exactly the configuration the operator wrote.

mod common;

use std::path::PathBuf;

use common::{FULL, MINIMAL, SERVICE_REF, lbc, samples};
use operator::LoadBalancedCollector;
use operator::build::{build, lb_configmap};
use operator::validate::validate;

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.json"))
}

fn check(name: &str, lbc: &LoadBalancedCollector) {
    let cluster = validate(lbc).unwrap_or_else(|e| panic!("{name}: {e}"));
    let children = build(&cluster).unwrap_or_else(|e| panic!("{name}: {e}"));
    // The data plane must accept what the operator writes (its configuration rejects unknown keys).
    let config =
        children.lb_config_map.data.as_ref().and_then(|d| d.get(lb_configmap::DATA_PLANE_KEY)).expect("config.yaml");
    let parsed = dataplane::config::Config::parse(config)
        .unwrap_or_else(|e| panic!("{name}: the data plane rejects its configuration: {e}\n{config}"));
    let warnings = parsed.warnings();
    assert!(warnings.is_empty(), "{name}: data plane warnings {warnings:?}");
    let read_back = parsed.to_yaml().expect("writes");
    assert_eq!(&read_back, config, "{name}: the data plane reads another configuration than the operator wrote");

    let actual = serde_json::to_string_pretty(&children.to_json().expect("serializes")).expect("serializes") + "\n";
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!("{} is missing: run UPDATE_GOLDEN=1 cargo test -p operator --test golden", path.display())
    });
    assert!(
        expected == actual,
        "{name}: the built objects differ from {}; if the change is intended, run \
         UPDATE_GOLDEN=1 cargo test -p operator --test golden and review the diff\n--- actual ---\n{actual}",
        path.display()
    );
}

#[test]
fn minimal() {
    check("minimal", &lbc(MINIMAL));
}

#[test]
fn service_ref() {
    check("service-ref", &lbc(SERVICE_REF));
}

#[test]
fn full() {
    check("full", &lbc(FULL));
}

#[test]
fn samples_build_and_match_golden_files() {
    let files =
        ["tail-sampling.yaml", "span-metrics.yaml", "metrics-streamid.yaml", "two-tier.yaml", "per-signal-pools.yaml"];
    for file in files {
        let lbcs = samples(file);
        assert!(!lbcs.is_empty(), "{file} holds no LoadBalancedCollector");
        for lbc in lbcs {
            let stem = file.trim_end_matches(".yaml");
            let name = lbc.metadata.name.clone().unwrap_or_default();
            check(&format!("sample-{stem}-{name}"), &lbc);
        }
    }
}

#[test]
fn every_sample_file_is_covered() {
    let dir = common::workspace().join("config/samples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("config/samples")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["metrics-streamid.yaml", "per-signal-pools.yaml", "span-metrics.yaml", "tail-sampling.yaml", "two-tier.yaml"]
    );
}

#[test]
fn config_edits_change_the_pod_template_hash() {
    let hash = |lbc: &LoadBalancedCollector| {
        let children = build(&validate(lbc).expect("valid")).expect("builds");
        let annotations = |t: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>| {
            t.and_then(|t| t.metadata.as_ref()).and_then(|m| m.annotations.clone()).unwrap_or_default()
        };
        let pool = children.backends.expect("pool").deployment;
        (annotations(children.lb_workload.template()), annotations(pool.spec.as_ref().map(|s| &s.template)))
    };
    let before = lbc(MINIMAL);
    let mut after = before.clone();
    after.spec.load_balancer.timeout = "7s".into();
    if let Some(config) = after.spec.backends.config.as_mut() {
        config.insert("processors".into(), serde_json::json!({"batch": {}}));
    }
    let (lb_before, pool_before) = hash(&before);
    let (lb_after, pool_after) = hash(&after);
    assert_ne!(lb_before.get("otlp-lb.dev/config-hash"), lb_after.get("otlp-lb.dev/config-hash"));
    assert_ne!(pool_before.get("otlp-lb.dev/config-hash"), pool_after.get("otlp-lb.dev/config-hash"));
}
