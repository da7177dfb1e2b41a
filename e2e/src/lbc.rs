//! LoadBalancedCollectors in a test cluster, as users handle them: `kubectl` (the real one, with the run's
//! kubeconfig), their status (Ready, backends desired/ready/in the ring), their load-balancer pods and what each
//! pod's `/debug/pool` lists.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::process::Output;
use crate::scenario::image_vars;
use crate::tools;
use crate::wait::Check;

pub async fn kubectl(cluster: &Cluster, args: &[&str]) -> Result<Output> {
    let mut argv = vec![format!("--kubeconfig={}", cluster.kubeconfig_path().display())];
    argv.extend(args.iter().map(|s| s.to_string()));
    cluster.exec_on_host(&tools::tool(tools::KUBECTL)?, &argv, Duration::from_secs(90)).await
}

/// `kubectl ARGS` that must succeed; returns stdout.
pub async fn kubectl_ok(cluster: &Cluster, args: &[&str]) -> Result<String> {
    Ok(kubectl(cluster, args).await?.check(&format!("kubectl {}", args.join(" ")))?.stdout)
}

/// Writes `text` into the run directory and returns its path (for `kubectl apply -f`).
pub fn write_run_file(cluster: &Cluster, name: &str, text: &str) -> Result<PathBuf> {
    let path = cluster.run_dir().join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `yaml` with the test cluster's Collector image wherever a LoadBalancedCollector names none.
pub fn local_collector(yaml: &str) -> Result<String> {
    let image = image_vars()?.into_iter().find(|(k, _)| *k == "OTELCOL_IMAGE").context("no Collector image")?.1;
    crate::fit::for_test_node(yaml, &image)
}

pub fn lbc_api(cluster: &Cluster, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("otlp-lb.dev", "v1alpha1", "LoadBalancedCollector");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "loadbalancedcollectors");
    Api::namespaced_with(cluster.client(), ns, &ar)
}

/// `Ok` when `lbc` is Ready for its current generation with every backend desired ready and in
/// the ring (`want_backends` of them, if given) and every load-balancer replica ready; else why not.
pub fn ready_state(lbc: &DynamicObject, want_backends: Option<i64>) -> std::result::Result<(), String> {
    let status = &lbc.data["status"];
    let generation = lbc.metadata.generation.unwrap_or(0);
    let observed = status["observedGeneration"].as_i64().unwrap_or(-1);
    let ready = status["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Ready");
    let b = &status["backends"];
    let lb = &status["loadBalancer"];
    let n = |v: &Value| v.as_i64().unwrap_or(-1);
    let ok = observed == generation
        && ready.is_some_and(|c| c["status"] == "True")
        && n(&b["desired"]) > 0
        && want_backends.is_none_or(|w| n(&b["desired"]) == w)
        && n(&b["ready"]) == n(&b["desired"])
        && n(&b["inRing"]) == n(&b["desired"])
        && n(&lb["desired"]) > 0
        && n(&lb["ready"]) == n(&lb["desired"]);
    if ok {
        Ok(())
    } else {
        Err(format!("generation {generation}, status {}", serde_json::to_string(status).unwrap_or_default()))
    }
}

/// Waits until LoadBalancedCollector `ns/name` is Ready (see [`ready_state`]); returns its status.
pub async fn wait_lbc_ready(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    want_backends: Option<i64>,
    timeout: Duration,
) -> Result<Value> {
    let api = lbc_api(cluster, ns);
    let what = match want_backends {
        Some(n) => format!("LoadBalancedCollector {ns}/{name} Ready with {n} backends in the ring"),
        None => format!("LoadBalancedCollector {ns}/{name} Ready"),
    };
    cluster
        .wait_for(&what, timeout, || {
            let api = api.clone();
            async move {
                Ok(match api.get_opt(name).await {
                    Ok(Some(o)) => match ready_state(&o, want_backends) {
                        Ok(()) => Check::Done(o.data["status"].clone()),
                        Err(state) => Check::Pending(state),
                    },
                    Ok(None) => Check::Pending("not found".into()),
                    Err(e) => Check::Pending(e.to_string()),
                })
            }
        })
        .await
}

/// Names of the load-balancer pods of `name` that are running.
pub async fn lb_pods(cluster: &Cluster, ns: &str, name: &str) -> Result<Vec<String>> {
    let pods = cluster
        .pods(ns, &format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=load-balancer"))
        .await?;
    Ok(pods
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| p.metadata.name)
        .collect())
}

/// The backend addresses in a load-balancer pod's `/debug/pool`.
pub async fn debug_pool(ip: Ipv4Addr) -> Result<Vec<String>> {
    let (code, body) =
        crate::probe::http_get(SocketAddr::from((ip, 8888)), "/debug/pool", &[], Duration::from_secs(5)).await?;
    ensure!(code == 200, "/debug/pool: {code} {body}");
    let v: Value = serde_json::from_str(&body).with_context(|| format!("/debug/pool: {body}"))?;
    Ok(v["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["address"].as_str().map(str::to_string))
        .collect())
}

/// Waits until every load-balancer pod of `name` lists `n` backends in `/debug/pool`.
pub async fn wait_pool_size(cluster: &Cluster, ns: &str, name: &str, n: usize, timeout: Duration) -> Result<()> {
    cluster
        .wait_for(&format!("/debug/pool of every {name} load-balancer pod to list {n} backends"), timeout, || async {
            let pods = lb_pods(cluster, ns, name).await?;
            if pods.is_empty() {
                return Ok(Check::Pending("no load-balancer pod".into()));
            }
            let mut seen = Vec::new();
            for pod in &pods {
                let ip = cluster.pod_ip(ns, pod)?;
                match debug_pool(ip).await {
                    Ok(b) if b.len() == n => {}
                    Ok(b) => seen.push(format!("{pod}: {b:?}")),
                    Err(e) => seen.push(format!("{pod}: {e:#}")),
                }
            }
            Ok(if seen.is_empty() { Check::Done(()) } else { Check::Pending(seen.join("; ")) })
        })
        .await
}
