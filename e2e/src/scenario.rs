//! Reusable end-to-end scenarios over the fixtures in `e2e/fixtures/`.
//!
//! The load-balancing scenario: a Deployment of Collector backends behind a
//! headless Service (each writing what it receives to a file the harness can
//! read), a balancer under test configured with the backends' pod IPs,
//! telemetrygen sending traces to the balancer from the root namespace, and
//! the check that every span arrived exactly once and every trace landed on
//! exactly one backend, with every backend used.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cluster::Cluster;
use crate::otlp_json::{self, Distribution};
use crate::telemetrygen::Traces;
use crate::tools;
use crate::wait::Check;

/// Namespace the scenarios use.
pub const NAMESPACE: &str = "default";
/// The backends' Deployment, Service and pod label value.
pub const BACKENDS: &str = "otlp-backend";

/// A fixture file's text (`e2e/fixtures/<name>`).
pub fn fixture(name: &str) -> Result<String> {
    let path = tools::workspace_root().join("e2e/fixtures").join(name);
    std::fs::read_to_string(&path).with_context(|| format!("reading fixture {}", path.display()))
}

/// Replaces each `${KEY}` in `text`.
pub fn substitute(text: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(text.to_string(), |t, (k, v)| t.replace(&format!("${{{k}}}"), v))
}

/// The image references fixtures name as `${OTELCOL_IMAGE}`, `${OTLP_LB_IMAGE}`
/// and `${OTLP_LB_OPERATOR_IMAGE}`: the images `make images e2e-images` built.
pub fn image_vars() -> Result<Vec<(&'static str, String)>> {
    let images = crate::node::images::all()?;
    let r = |name| crate::node::images::reference(&images, name);
    Ok(vec![
        ("OTELCOL_IMAGE", r("otelcol-lb")?),
        ("OTLP_LB_IMAGE", r("otlp-lb")?),
        ("OTLP_LB_OPERATOR_IMAGE", r("otlp-lb-operator")?),
    ])
}

/// A fixture with `vars` and the [`image_vars`] substituted.
pub fn fixture_with(name: &str, vars: &[(&str, String)]) -> Result<String> {
    let mut all = image_vars()?;
    all.extend(vars.iter().cloned());
    Ok(substitute(&fixture(name)?, &all))
}

/// `["ip:4317", ...]` as a YAML flow sequence.
pub fn hostnames(ips: &[Ipv4Addr], port: u16) -> String {
    let items: Vec<String> = ips.iter().map(|ip| format!("\"{ip}:{port}\"")).collect();
    format!("[{}]", items.join(", "))
}

/// Deploys `replicas` backends and waits for them to be ready endpoints of
/// their Service; returns their pod IPs.
pub async fn deploy_backends(cluster: &Cluster, replicas: usize) -> Result<Vec<Ipv4Addr>> {
    let yaml = fixture_with("backends.yaml", &[("REPLICAS", replicas.to_string())])?;
    cluster.apply_yaml_in(NAMESPACE, &yaml).await?;
    cluster.wait_deployment_ready(NAMESPACE, BACKENDS, replicas as i32, Duration::from_secs(120)).await?;
    cluster.wait_ready_endpoints(NAMESPACE, BACKENDS, replicas, Duration::from_secs(60)).await
}

/// Each backend pod's name and the host directory its file exporter writes.
pub async fn backend_dirs(cluster: &Cluster) -> Result<BTreeMap<String, PathBuf>> {
    let pods = cluster.pods(NAMESPACE, &format!("app={BACKENDS}")).await?;
    let mut out = BTreeMap::new();
    for p in pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        out.insert(name.clone(), cluster.pod_volume_dir(NAMESPACE, &name, "data")?);
    }
    Ok(out)
}

/// What each backend has received so far.
pub fn received(dirs: &BTreeMap<String, PathBuf>) -> Result<Distribution> {
    let mut spans = BTreeMap::new();
    for (name, dir) in dirs {
        spans.insert(name.clone(), otlp_json::spans_in_dir(dir)?);
    }
    Ok(Distribution::of(&spans))
}

/// The first ready pod of Deployment-label `app=<app>` and its IP.
pub async fn ready_pod_ip(cluster: &Cluster, app: &str) -> Result<(String, Ipv4Addr)> {
    let pods = cluster.pods(NAMESPACE, &format!("app={app}")).await?;
    let pod = pods
        .into_iter()
        .find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .with_context(|| format!("no ready pod with app={app}"))?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    Ok((name.clone(), cluster.pod_ip(NAMESPACE, &name)?))
}

/// Runs the whole load-balancing scenario with the balancer described by
/// fixture `balancer_fixture` (a Deployment labelled `app=<balancer_app>`
/// listening for OTLP/gRPC on :4317; `${BACKEND_HOSTNAMES}` is filled in).
pub async fn balanced_traces(
    cluster: &Cluster,
    backends: usize,
    balancer_fixture: &str,
    balancer_app: &str,
    load: Traces,
) -> Result<Distribution> {
    let t0 = Instant::now();
    let ips = deploy_backends(cluster, backends).await?;
    tracing::info!("{backends} backends ready at {ips:?} after {:.1}s", t0.elapsed().as_secs_f64());

    let yaml = fixture_with(balancer_fixture, &[("BACKEND_HOSTNAMES", hostnames(&ips, 4317))])?;
    cluster.apply_yaml_in(NAMESPACE, &yaml).await?;
    cluster.wait_deployment_ready(NAMESPACE, balancer_app, 1, Duration::from_secs(90)).await?;
    let (lb_pod, lb_ip) = ready_pod_ip(cluster, balancer_app).await?;
    tracing::info!("balancer {lb_pod} ready at {lb_ip} after {:.1}s", t0.elapsed().as_secs_f64());

    // Clients send to the balancer's Service, as SDKs in a cluster do.
    let target = cluster.service_ip(NAMESPACE, balancer_app).await?;
    let telemetrygen = tools::tool(tools::TELEMETRYGEN)?;
    let out = cluster
        .exec_on_host(&telemetrygen, &load.args(&format!("{target}:4317")), Duration::from_secs(120))
        .await?
        .check("telemetrygen")?;
    load.check_output(&format!("{}\n{}", out.stdout, out.stderr))?;
    tracing::info!("telemetrygen sent {} spans after {:.1}s", load.expected_spans(), t0.elapsed().as_secs_f64());

    let dirs = backend_dirs(cluster).await?;
    let expected = load.expected_spans();
    cluster
        .wait_for(&format!("{expected} spans to reach the backends"), Duration::from_secs(60), || {
            let d = received(&dirs);
            async move {
                let d = d?;
                Ok(if d.total_spans >= expected { Check::Done(()) } else { Check::Pending(d.to_string()) })
            }
        })
        .await
        .with_context(|| {
            format!(
                "balancer logs:\n{}",
                cluster.logs(NAMESPACE, &lb_pod).map(|l| crate::process::tail(&l, 30)).unwrap_or_default()
            )
        })?;
    // Let any duplicate or straggler arrive before the final count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let d = received(&dirs)?;
    tracing::info!("received: {d}");
    d.check(expected, load.expected_traces(), backends)?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_and_hostnames() {
        let h = hostnames(&[Ipv4Addr::new(10, 213, 0, 2), Ipv4Addr::new(10, 213, 0, 3)], 4317);
        assert_eq!(h, "[\"10.213.0.2:4317\", \"10.213.0.3:4317\"]");
        assert_eq!(substitute("a: ${X}\nb: ${X}", &[("X", "1".into())]), "a: 1\nb: 1");
    }

    #[test]
    fn fixtures_parse_after_substitution() {
        let vars = [
            ("REPLICAS", "3".to_string()),
            ("BACKEND_HOSTNAMES", hostnames(&[Ipv4Addr::LOCALHOST], 4317)),
            ("OTELCOL_IMAGE", "otelcol-lb:1".to_string()),
            ("OTLP_LB_IMAGE", "otlp-lb:1".to_string()),
        ];
        for f in ["backends.yaml", "collector-lb.yaml", "otlp-lb.yaml"] {
            let objs = crate::apply::parse_yaml(&substitute(&fixture(f).unwrap(), &vars)).unwrap();
            assert!(!objs.is_empty(), "{f}");
            // Embedded configs are valid YAML too.
            for o in objs.iter().filter(|o| o.types.as_ref().is_some_and(|t| t.kind == "ConfigMap")) {
                let conf = o.data["data"]["config.yaml"].as_str().unwrap();
                let v: serde_json::Value = serde_saphyr::from_str(conf).unwrap();
                assert!(v.get("receivers").is_some(), "{f}");
            }
        }
    }
}
