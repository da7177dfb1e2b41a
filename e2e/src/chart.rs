//! Installing the product into a test cluster as users do: `helm install` of
//! `charts/otlp-lb` with its default values (the operator image `make images`
//! built, which the node imported), then waiting until every operator replica
//! is ready and answers `/readyz`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};

use crate::cluster::Cluster;
use crate::tools;

/// Where the chart is installed, and its release name (objects are named `otlp-lb-operator`).
pub const OPERATOR_NS: &str = "otlp-lb-system";
pub const RELEASE: &str = "otlp-lb";
pub const OPERATOR_DEPLOYMENT: &str = "otlp-lb-operator";
/// The chart's default `replicaCount` (two replicas, leader election).
pub const OPERATOR_REPLICAS: i32 = 2;

/// `helm install` of the chart, then every operator pod Ready and answering `/readyz`.
pub async fn install_operator(cluster: &Cluster) -> Result<()> {
    let t0 = Instant::now();
    let chart = tools::workspace_root().join("charts/otlp-lb");
    let kubeconfig = cluster.kubeconfig_path();
    let args: Vec<String> = [
        "install",
        RELEASE,
        &chart.to_string_lossy(),
        "--namespace",
        OPERATOR_NS,
        "--create-namespace",
        "--kubeconfig",
        &kubeconfig.to_string_lossy(),
        "--set",
        "logFormat=text",
        "--timeout",
        "2m",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    cluster
        .exec_on_host(&tools::tool(tools::HELM)?, &args, Duration::from_secs(150))
        .await?
        .check("helm install charts/otlp-lb")?;
    cluster.wait_deployment_ready(OPERATOR_NS, OPERATOR_DEPLOYMENT, OPERATOR_REPLICAS, Duration::from_secs(90)).await?;
    let pods = cluster.pods(OPERATOR_NS, "app.kubernetes.io/name=otlp-lb,app.kubernetes.io/component=operator").await?;
    ensure!(
        pods.len() == OPERATOR_REPLICAS as usize,
        "expected {OPERATOR_REPLICAS} operator pods, found {}",
        pods.len()
    );
    for p in &pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        let ip = cluster.pod_ip(OPERATOR_NS, &name)?;
        let (code, body) =
            crate::probe::http_get(SocketAddr::from((ip, 8080)), "/readyz", &[], Duration::from_secs(5)).await?;
        ensure!(code == 200, "operator {name} /readyz: {code} {body}");
    }
    tracing::info!("operator installed and ready after {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}
