//! `kubectl apply -f` in Rust: multi-document YAML parsed into dynamic
//! objects, each server-side applied (field manager `otlp-lb-e2e`) through
//! API discovery — so any kind works, including CRDs applied a moment before
//! (discovery is retried, bounded, until the new kind is served).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::{Api, Client};

use crate::wait::{self, Check};

/// Parses YAML documents (`---`-separated; `kind: List` expanded).
pub fn parse_yaml(text: &str) -> Result<Vec<DynamicObject>> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text).context("parsing YAML")?;
    let mut out = Vec::new();
    for doc in docs {
        if doc.is_null() {
            continue;
        }
        let items = if doc.get("kind").and_then(|k| k.as_str()) == Some("List") {
            doc.get("items").and_then(|i| i.as_array()).cloned().unwrap_or_default()
        } else {
            vec![doc]
        };
        for item in items {
            let obj: DynamicObject = serde_json::from_value(item).context("not a Kubernetes object")?;
            if obj.types.is_none() {
                bail!("object {:?} has no apiVersion/kind", obj.metadata.name);
            }
            if obj.metadata.name.as_deref().unwrap_or("").is_empty() {
                bail!("object of kind {:?} has no metadata.name", obj.types.as_ref().map(|t| t.kind.clone()));
            }
            out.push(obj);
        }
    }
    Ok(out)
}

/// Finds the API resource of `gvk`, waiting (bounded) for it to be served.
pub async fn resolve(client: &Client, gvk: &GroupVersionKind) -> Result<(ApiResource, ApiCapabilities)> {
    wait::until(
        &format!("the API to serve {}/{} {}", gvk.group, gvk.version, gvk.kind),
        Duration::from_secs(30),
        Duration::from_millis(500),
        || async {
            Ok(match kube::discovery::pinned_kind(client, gvk).await {
                Ok(found) => Check::Done(found),
                Err(e) => Check::Pending(e.to_string()),
            })
        },
    )
    .await
}

/// A dynamic API for `obj`'s kind in its namespace (or `default_ns`).
pub async fn api_for(client: &Client, obj: &DynamicObject, default_ns: &str) -> Result<Api<DynamicObject>> {
    let types = obj.types.as_ref().context("object without apiVersion/kind")?;
    let gvk = GroupVersionKind::try_from(types).context("bad apiVersion")?;
    let (ar, caps) = resolve(client, &gvk).await?;
    Ok(match caps.scope {
        Scope::Namespaced => {
            Api::namespaced_with(client.clone(), obj.metadata.namespace.as_deref().unwrap_or(default_ns), &ar)
        }
        Scope::Cluster => Api::all_with(client.clone(), &ar),
    })
}

/// Server-side applies every object; returns them as stored.
pub async fn apply_all(client: &Client, objs: &[DynamicObject], default_ns: &str) -> Result<Vec<DynamicObject>> {
    let pp = PatchParams::apply("otlp-lb-e2e").force();
    let mut out = Vec::new();
    for obj in objs {
        let api = api_for(client, obj, default_ns).await?;
        let name = obj.metadata.name.clone().unwrap_or_default();
        let kind = obj.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
        let applied =
            api.patch(&name, &pp, &Patch::Apply(obj)).await.with_context(|| format!("applying {kind} {name}"))?;
        out.push(applied);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documents() {
        let objs = parse_yaml(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: b}}\n",
        )
        .unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1].types.as_ref().unwrap().kind, "Service");
        assert!(parse_yaml("kind: X\nmetadata: {name: a}\n").is_err());
        assert!(parse_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n").is_err());
    }
}
