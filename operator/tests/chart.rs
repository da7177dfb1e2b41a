//! The Helm chart grants the operator what its code uses (and the data plane Role it creates can
//! be granted without RBAC escalation), and its appVersion matches the crate so the default data
//! plane image tag and the operator image tag agree. The RBAC check renders the chart with helm
//! when helm is installed (`$HOME/.cache/otlp-lb/tools/bin/helm` or on PATH).

mod common;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn chart() -> PathBuf {
    common::workspace().join("charts/otlp-lb")
}

#[test]
fn app_version_matches_the_crate() {
    let text = std::fs::read_to_string(chart().join("Chart.yaml")).expect("Chart.yaml");
    let chart: Value = serde_saphyr::from_str(&text).expect("YAML");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}

fn helm() -> Option<PathBuf> {
    let cached = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/otlp-lb/tools/bin/helm"));
    cached.filter(|p| p.exists()).or_else(|| {
        Command::new("helm").arg("version").output().ok().filter(|o| o.status.success()).map(|_| "helm".into())
    })
}

/// (apiGroup, resource, verb) triples the rendered ClusterRole named `*-operator` grants.
fn operator_grants(rendered: &[Value]) -> Vec<(String, String, String)> {
    let role = rendered
        .iter()
        .find(|d| {
            d["kind"] == "ClusterRole" && d["metadata"]["name"].as_str().is_some_and(|n| n.ends_with("-operator"))
        })
        .expect("the operator's ClusterRole");
    let mut grants = Vec::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        for group in rule["apiGroups"].as_array().into_iter().flatten() {
            for resource in rule["resources"].as_array().into_iter().flatten() {
                for verb in rule["verbs"].as_array().into_iter().flatten() {
                    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
                    grants.push((s(group), s(resource), s(verb)));
                }
            }
        }
    }
    grants
}

#[test]
fn rendered_chart_grants_what_the_operator_needs_and_nothing_broad() {
    let Some(helm) = helm() else {
        eprintln!("helm not installed: only the static chart checks ran");
        return;
    };
    let output = Command::new(helm).args(["template", "t"]).arg(chart()).output().expect("helm runs");
    assert!(output.status.success(), "helm template failed: {}", String::from_utf8_lossy(&output.stderr));
    let rendered: Vec<Value> =
        common::documents(&String::from_utf8_lossy(&output.stdout)).into_iter().filter(|d| !d.is_null()).collect();
    let grants = operator_grants(&rendered);
    let has = |group: &str, resource: &str, verb: &str| {
        grants.iter().any(|g| g == &(group.into(), resource.into(), verb.into()))
    };

    // Children: found by labels, applied (create or patch), pruned.
    for (group, resource) in [
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("", "services"),
        ("", "configmaps"),
        ("", "serviceaccounts"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("autoscaling", "horizontalpodautoscalers"),
        ("policy", "poddisruptionbudgets"),
    ] {
        for verb in ["get", "list", "create", "patch", "delete"] {
            assert!(has(group, resource, verb), "missing {verb} {group}/{resource}");
        }
    }
    for verb in ["get", "list", "watch"] {
        assert!(has("otlp-lb.dev", "loadbalancedcollectors", verb));
    }
    assert!(has("otlp-lb.dev", "loadbalancedcollectors/status", "patch"));
    assert!(has("events.k8s.io", "events", "create"));
    // The tiers' pods, to explain one that is not ready.
    assert!(has("", "pods", "list"));

    // Escalation prevention: the operator holds everything the data plane Role it creates grants.
    let lbc = common::lbc(common::MINIMAL);
    let cluster = operator::validate::validate(&lbc).expect("valid");
    let role = operator::build::rbac::role(&operator::build::Owner::new(&cluster));
    for rule in role.rules.iter().flatten() {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert!(
                        has(group, resource, verb),
                        "the operator cannot grant {verb} {group}/{resource} it does not hold"
                    );
                }
            }
        }
    }

    // Least privilege: no wildcards, no escalate/bind/impersonate; Secrets may be created (the load-balancer
    // replicas' token), never read.
    for (group, resource, verb) in &grants {
        assert!(group != "*" && resource != "*" && verb != "*", "wildcard grant {group}/{resource} {verb}");
        assert!(!["escalate", "bind", "impersonate"].contains(&verb.as_str()), "{verb} granted");
        assert!(resource != "secrets" || verb == "create", "{verb} secrets granted");
    }
    assert!(has("", "secrets", "create"), "the load-balancer replicas' token");

    // Leases only in the operator's namespace, through a Role.
    let lease_role = rendered
        .iter()
        .find(|d| {
            d["kind"] == "Role" && d["metadata"]["name"].as_str().is_some_and(|n| n.ends_with("-leader-election"))
        })
        .expect("leader-election Role");
    assert_eq!(lease_role["rules"][1]["resourceNames"][0], "otlp-lb-operator-leader");
}
