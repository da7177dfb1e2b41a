//! The test cluster has no registry: a LoadBalancedCollector that leaves a
//! Collector image to the operator's default (an upstream image that cannot
//! be pulled here) gets the Collector image built by `make e2e-images`
//! instead, for its backends (unless they are a Service of the user's) and
//! for the load balancer's Collector sidecar. Everything else in the YAML is
//! kept as written.

use anyhow::{Context, Result};
use serde_json::Value;

/// `yaml` (one or more documents) with `image` filled in where a
/// LoadBalancedCollector names no Collector image; as JSON documents, one a
/// line, which kubectl and the harness read as YAML.
pub fn with_collector_image(yaml: &str, image: &str) -> Result<String> {
    let mut out = String::new();
    for doc in serde_saphyr::from_multiple::<Value>(yaml).context("parsing YAML documents")? {
        if doc.is_null() {
            continue;
        }
        let mut doc = doc;
        if doc["kind"] == "LoadBalancedCollector" {
            fill(&mut doc, image);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_only_missing_collector_images() {
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\nkind: LoadBalancedCollector\nspec:\n  \
                    loadBalancer: {collector: {config: {}}}\n  backends: {replicas: 1}\n---\nkind: LoadBalancedCollector\n\
                    spec:\n  backends: {serviceRef: {name: s, port: 4317}}\n---\nkind: LoadBalancedCollector\nspec:\n  \
                    backends: {image: mine:1}\n";
        let out = with_collector_image(yaml, "local:1").unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&out).unwrap();
        let docs: Vec<&Value> = docs.iter().filter(|d| !d.is_null()).collect();
        assert_eq!(docs.len(), 4);
        assert_eq!(docs[0]["kind"], "ConfigMap");
        assert_eq!(docs[1]["spec"]["backends"]["image"], "local:1");
        assert_eq!(docs[1]["spec"]["loadBalancer"]["collector"]["image"], "local:1");
        assert!(docs[2]["spec"]["backends"].get("image").is_none());
        assert_eq!(docs[3]["spec"]["backends"]["image"], "mine:1");
    }
}
