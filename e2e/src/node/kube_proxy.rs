//! The node's kube-proxy in iptables mode: Service virtual IPs (ClusterIP)
//! DNAT to ready endpoints in the root namespace's iptables, for pods and for
//! the harness alike. It leaves the host's conntrack sysctls alone, and
//! `kube-proxy --cleanup` removes its chains at teardown.

use anyhow::{Context, Result};
use std::path::Path;

use crate::process::{Proc, ProcTable, Spec, run_sync};
use crate::tools;

/// The kube-proxy settings of one run.
pub struct ProxyConfig<'a> {
    pub node_name: &'a str,
    pub kubeconfig: &'a Path,
    pub cluster_cidr: &'a str,
    pub healthz_port: u16,
    pub metrics_port: u16,
}

/// `KubeProxyConfiguration` (kubeproxy.config.k8s.io/v1alpha1) as JSON.
pub fn config_json(c: &ProxyConfig<'_>) -> String {
    serde_json::json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": c.kubeconfig},
        "hostnameOverride": c.node_name,
        "clusterCIDR": c.cluster_cidr,
        "healthzBindAddress": format!("127.0.0.1:{}", c.healthz_port),
        "metricsBindAddress": format!("127.0.0.1:{}", c.metrics_port),
        // Zero: leave the host's conntrack table size and timeouts as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"syncPeriod": "10s", "minSyncPeriod": "0s", "localhostNodePorts": false},
    })
    .to_string()
}

/// Starts kube-proxy with `config` written to `dir/kube-proxy.json`.
pub fn start(dir: &Path, config: &ProxyConfig<'_>, log: &Path, table: &ProcTable) -> Result<Proc> {
    let file = dir.join("kube-proxy.json");
    std::fs::write(&file, config_json(config)).context("writing the kube-proxy config")?;
    let spec = Spec::new("kube-proxy", tools::tool(tools::KUBE_PROXY)?, log)
        .args([format!("--config={}", file.display()), "--v=1".into()]);
    Proc::spawn(&spec, table)
}

/// Removes every iptables rule and chain kube-proxy created (synchronous:
/// teardown runs in `Drop`).
pub fn cleanup() -> Result<()> {
    let program = tools::tool(tools::KUBE_PROXY)?;
    let program = program.display().to_string();
    run_sync("timeout", &["60", &program, "--cleanup", "--v=0"]).context("kube-proxy --cleanup")?;
    Ok(())
}
