//! Fitting LoadBalancedCollectors written for a production cluster (the
//! samples) to the test node, and nothing else:
//!
//! * the test cluster has no registry: a LoadBalancedCollector that leaves a
//!   Collector image to the operator's default (an upstream image that cannot
//!   be pulled here) gets the Collector image built by `make e2e-images`, for
//!   its backends (unless they are a Service of the user's) and for the load
//!   balancer's Collector sidecar; so does a workload (a sample's own
//!   Collector Deployment) that names an upstream Collector image;
//! * the node has the few CPUs of this machine: CPU requests (which the
//!   scheduler sums against them) are left out. Memory requests and every
//!   limit are kept, and the kubelet enforces them.

use anyhow::{Context, Result};
use serde_json::Value;

/// `yaml` (one or more documents) with `image` filled in where a
/// LoadBalancedCollector names no Collector image and without CPU requests;
/// as JSON documents, one a line, which kubectl and the harness read as YAML.
pub fn for_test_node(yaml: &str, image: &str) -> Result<String> {
    let mut out = String::new();
    for doc in serde_saphyr::from_multiple::<Value>(yaml).context("parsing YAML documents")? {
        if doc.is_null() {
            continue;
        }
        let mut doc = doc;
        if doc["kind"] == "LoadBalancedCollector" {
            fill(&mut doc, image);
        }
        if ["Deployment", "StatefulSet", "DaemonSet"].iter().any(|k| doc["kind"] == *k) {
            fit_workload(&mut doc, image);
        }
        out.push_str(&serde_json::to_string(&doc).context("serializing a document")?);
        out.push_str("\n---\n");
    }
    Ok(out)
}

fn fill(lbc: &mut Value, image: &str) {
    let Some(spec) = lbc.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(backends) = spec.get_mut("backends").and_then(Value::as_object_mut)
        && !backends.contains_key("serviceRef")
    {
        backends.entry("image").or_insert_with(|| image.into());
    }
    if let Some(collector) =
        spec.get_mut("loadBalancer").and_then(|lb| lb.get_mut("collector")).and_then(Value::as_object_mut)
    {
        collector.entry("image").or_insert_with(|| image.into());
    }
    for path in [&["backends"][..], &["loadBalancer"], &["loadBalancer", "collector"]] {
        let mut v = lbc.get_mut("spec");
        for key in path {
            v = v.and_then(|v| v.get_mut(*key));
        }
        let requests = v.and_then(|v| v.get_mut("resources")).and_then(|r| r.get_mut("requests"));
        if let Some(requests) = requests.and_then(Value::as_object_mut) {
            requests.remove("cpu");
        }
    }
}

/// Where a Deployment's containers name an upstream Collector image, the local one; no CPU requests.
fn fit_workload(workload: &mut Value, image: &str) {
    let containers = workload.pointer_mut("/spec/template/spec/containers").and_then(Value::as_array_mut);
    for c in containers.into_iter().flatten() {
        if c["image"].as_str().is_some_and(|i| i.contains("opentelemetry-collector")) {
            c["image"] = image.into();
        }
        if let Some(requests) = c.pointer_mut("/resources/requests").and_then(Value::as_object_mut) {
            requests.remove("cpu");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_only_missing_collector_images_and_drops_cpu_requests() {
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\nkind: LoadBalancedCollector\nspec:\n  \
                    loadBalancer: {collector: {config: {}}}\n  backends: {replicas: 1, resources: {requests: {cpu: 2, \
                    memory: 1Gi}, limits: {memory: 2Gi}}}\n---\nkind: LoadBalancedCollector\n\
                    spec:\n  backends: {serviceRef: {name: s, port: 4317}}\n---\nkind: LoadBalancedCollector\nspec:\n  \
                    backends: {image: mine:1}\n---\nkind: Deployment\nspec: {template: {spec: {containers: [{name: c, \
                    image: 'otel/opentelemetry-collector-contrib:0.160.0', resources: {requests: {cpu: 1}}}]}}}\n";
        let out = for_test_node(yaml, "local:1").unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&out).unwrap();
        let docs: Vec<&Value> = docs.iter().filter(|d| !d.is_null()).collect();
        assert_eq!(docs.len(), 5);
        assert_eq!(docs[4]["spec"]["template"]["spec"]["containers"][0]["image"], "local:1");
        assert_eq!(
            docs[4]["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"],
            serde_json::json!({})
        );
        assert_eq!(docs[0]["kind"], "ConfigMap");
        assert_eq!(docs[1]["spec"]["backends"]["image"], "local:1");
        assert_eq!(docs[1]["spec"]["loadBalancer"]["collector"]["image"], "local:1");
        assert_eq!(
            docs[1]["spec"]["backends"]["resources"],
            serde_json::json!({"requests": {"memory": "1Gi"}, "limits": {"memory": "2Gi"}})
        );
        assert!(docs[2]["spec"]["backends"].get("image").is_none());
        assert_eq!(docs[3]["spec"]["backends"]["image"], "mine:1");
    }
}
