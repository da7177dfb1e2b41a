//! The cluster DNS: CoreDNS as a process on the node, serving the
//! `cluster.local` zone from the apiserver (its kubernetes plugin, under an
//! identity with read access to Services, EndpointSlices, Pods and
//! Namespaces) on the cluster DNS address, which the kubelet writes into
//! every pod's resolv.conf. The address is held by the run's bridge, so pods
//! reach it through their default route and the host directly. Names outside
//! the cluster are not resolved (the test cluster is offline).

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result};

use crate::process::{Proc, ProcTable, Spec};
use crate::tools;

/// The user name CoreDNS authenticates as (client certificate CN).
pub const USER: &str = "otlp-lb-e2e:coredns";

/// RBAC that lets [`USER`] watch what the kubernetes plugin serves.
pub fn rbac_yaml() -> String {
    format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: otlp-lb-e2e-coredns
rules:
  - apiGroups: [""]
    resources: [services, endpoints, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: otlp-lb-e2e-coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: otlp-lb-e2e-coredns
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: {USER}
"#
    )
}

/// The Corefile: `cluster.local` and reverse lookups from the apiserver.
pub fn corefile(listen: Ipv4Addr, kubeconfig: &Path, health_port: u16) -> String {
    format!(
        r#".:53 {{
    bind {listen}
    errors
    health 127.0.0.1:{health_port}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} otlp-lb-e2e
        pods insecure
        ttl 5
    }}
    cache 5
}}
"#,
        kubeconfig = kubeconfig.display()
    )
}

/// Starts CoreDNS with its Corefile written to `dir/Corefile`.
pub fn start(
    dir: &Path,
    listen: Ipv4Addr,
    kubeconfig: &Path,
    health_port: u16,
    log: &Path,
    table: &ProcTable,
) -> Result<Proc> {
    let file = dir.join("Corefile");
    std::fs::write(&file, corefile(listen, kubeconfig, health_port)).context("writing the Corefile")?;
    let spec =
        Spec::new("coredns", tools::tool(tools::COREDNS)?, log).args(["-conf".to_string(), file.display().to_string()]);
    Proc::spawn(&spec, table)
}
