//! The e2e cluster's node is a real one: the kubelet runs pods from the
//! imported images under containerd and reports their status (IPs,
//! conditions, container statuses) with readiness from its probes; the
//! container runs as the image's user with env, ConfigMap, emptyDir and
//! service-account mounts in its own mount namespace and the cluster DNS in
//! its resolv.conf; Service IPs work through kube-proxy (the `kubernetes`
//! Service from a pod and from the host), CoreDNS answers for a headless
//! Service; a killed container is restarted; a deleted pod is stopped and
//! replaced; `kubectl logs` reaches the kubelet; and teardown leaves no
//! process, cgroup, mount, network namespace, interface or iptables chain.
//!
//! Needs root, `make tools` and `make images e2e-images`; fails (never skips)
//! without them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use e2e::controlplane::{CLUSTER_DNS, KUBERNETES_SERVICE_IP};
use e2e::node::{cgroups, cleanup};
use e2e::scenario::{self, NAMESPACE};
use e2e::wait::Check;
use e2e::{Cluster, dns, netns, tools};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

/// The pid of the (only) container process of pod `name`: a process of its
/// cgroup other than the sandbox's pause.
fn container_pid(cluster: &Cluster, name: &str) -> Result<i32> {
    let files = cluster.pod_files(NAMESPACE, name)?;
    let cgroup = cluster.pod_cgroup(&files.uid).with_context(|| format!("no cgroup for pod {name}"))?;
    let mut dirs = vec![cgroup];
    while let Some(d) = dirs.pop() {
        for pid in std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().split_whitespace() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "otelcol-lb" {
                return pid.parse().context("pid");
            }
        }
        dirs.extend(std::fs::read_dir(&d)?.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()));
    }
    bail!("no otelcol-lb process in pod {name}'s cgroup")
}

fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
}

fn kubectl_args(cluster: &Cluster, rest: &[&str]) -> Vec<String> {
    let mut v = vec![format!("--kubeconfig={}", cluster.kubeconfig_path().display())];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

async fn scenario(cluster: &Cluster) -> Result<()> {
    let kubectl = tools::tool(tools::KUBECTL)?;
    let pods_api: Api<Pod> = Api::namespaced(cluster.client(), NAMESPACE);
    let ips = scenario::deploy_backends(cluster, 2).await?;
    let pods = cluster.pods(NAMESPACE, "app=otlp-backend").await?;
    ensure!(pods.len() == 2, "expected 2 pods, got {}", pods.len());
    let pod = &pods[0];
    let name = pod.metadata.name.clone().context("pod name")?;

    // Status as the kubelet reports it.
    let st = pod.status.clone().context("no status")?;
    let ip = st.pod_ip.clone().context("no podIP")?;
    ensure!(ips.iter().any(|i| i.to_string() == ip), "podIP {ip} not among endpoints {ips:?}");
    ensure!(cluster.pod_ip(NAMESPACE, &name)?.to_string() == ip, "the node's pod IP differs from podIP {ip}");
    ensure!(st.phase.as_deref() == Some("Running"), "phase {:?}", st.phase);
    for ty in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        let c = st.conditions.iter().flatten().find(|c| c.type_ == ty);
        ensure!(c.is_some_and(|c| c.status == "True"), "condition {ty}: {c:?}");
    }
    let cs = &st.container_statuses.clone().context("no containerStatuses")?[0];
    ensure!(cs.ready && cs.started == Some(true) && cs.restart_count == 0, "container status {cs:?}");
    ensure!(cs.container_id.as_deref().is_some_and(|id| id.starts_with("containerd://")), "containerID {cs:?}");
    ensure!(cs.image.contains("otlp-lb-e2e/otelcol-lb"), "image {}", cs.image);

    // The container process: the image's user, the pod's env, mounts and resolv.conf.
    let pid = container_pid(cluster, &name)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    ensure!(status.lines().any(|l| l.starts_with("Uid:") && l.contains("65532")), "not user 65532:\n{status}");
    let environ = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ"))?).into_owned();
    for want in [
        format!("KUBERNETES_SERVICE_HOST={KUBERNETES_SERVICE_IP}"),
        "GOMEMLIMIT=200MiB".into(),
        format!("HOSTNAME={name}"),
    ] {
        ensure!(environ.split('\0').any(|e| e == want), "missing {want} in the process env");
    }
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    for mp in [" /conf ", " /data ", "/secrets/kubernetes.io/serviceaccount "] {
        ensure!(mountinfo.contains(mp), "{mp} is not mounted in the pod");
    }
    let resolv = std::fs::read_to_string(format!("/proc/{pid}/root/etc/resolv.conf"))?;
    ensure!(resolv.contains(&format!("nameserver {CLUSTER_DNS}")), "resolv.conf:\n{resolv}");
    ensure!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "resolv.conf:\n{resolv}"
    );

    // The cluster DNS answers for the headless Service with the pods' IPs.
    let dns_server = SocketAddr::from((CLUSTER_DNS, 53));
    let name_ips = dns::lookup_a(dns_server, "otlp-backend.default.svc.cluster.local", Duration::from_secs(5)).await?;
    ensure!(name_ips == ips, "DNS answered {name_ips:?} for the headless Service, endpoints are {ips:?}");

    // In-cluster identity through the `kubernetes` Service IP (kube-proxy), from the pod's network namespace.
    let api_vol = cluster.service_account_dir(NAMESPACE, &name)?;
    let token = std::fs::read_to_string(api_vol.join("token"))?;
    let out = cluster
        .exec_in_pod_netns(
            NAMESPACE,
            &name,
            &kubectl,
            &[
                format!("--server=https://{KUBERNETES_SERVICE_IP}:443"),
                format!("--certificate-authority={}", api_vol.join("ca.crt").display()),
                format!("--token={}", token.trim()),
                "auth".into(),
                "whoami".into(),
                "-o".into(),
                "jsonpath={.status.userInfo.username}".into(),
            ],
            Duration::from_secs(30),
        )
        .await?
        .check("kubectl auth whoami from the pod")?;
    ensure!(out.stdout.trim() == "system:serviceaccount:default:default", "whoami: {:?}", out.stdout);
    // ... and from the host, as a client outside the pod network.
    let server = format!("--server=https://{KUBERNETES_SERVICE_IP}:443");
    let out = cluster
        .exec_on_host(&kubectl, &kubectl_args(cluster, &[&server, "get", "--raw", "/readyz"]), Duration::from_secs(30))
        .await?
        .check("kubectl get --raw /readyz through the kubernetes Service")?;
    ensure!(out.stdout.trim() == "ok", "readyz: {:?}", out.stdout);

    // The process dies: the kubelet restarts the container, ready again, restartCount 1.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)?;
    cluster
        .wait_for("the killed container to be restarted and ready", Duration::from_secs(90), || async {
            let p = pods_api.get(&name).await?;
            let cs = p.status.and_then(|s| s.container_statuses).unwrap_or_default();
            Ok(match cs.first() {
                Some(c) if c.restart_count == 1 && c.ready => Check::Done(()),
                other => Check::Pending(format!("{other:?}")),
            })
        })
        .await?;
    let pid = container_pid(cluster, &name)?;
    let out = cluster
        .exec_on_host(&kubectl, &kubectl_args(cluster, &["logs", &name, "--previous"]), Duration::from_secs(30))
        .await?
        .check("kubectl logs --previous (through the kubelet)")?;
    ensure!(out.stdout.contains("Everything is ready"), "previous container's logs:\n{}", out.stdout);

    let logs = cluster.logs(NAMESPACE, &name)?;
    ensure!(logs.matches("Everything is ready").count() == 2, "expected 2 starts in the node's logs:\n{logs}");

    // Deletion: the container stops, the pod's cgroup goes, the ReplicaSet replaces it.
    let uid = cluster.pod_files(NAMESPACE, &name)?.uid;
    pods_api.delete(&name, &Default::default()).await?;
    cluster
        .wait_for(&format!("pod {name} to be deleted"), Duration::from_secs(60), || async {
            Ok(match pods_api.get_opt(&name).await? {
                None => Check::Done(()),
                Some(p) => Check::Pending(format!("deletionTimestamp {:?}", p.metadata.deletion_timestamp)),
            })
        })
        .await?;
    ensure!(!alive(pid), "process {pid} of the deleted pod still runs");
    cluster
        .wait_for("the deleted pod's cgroup to be removed", Duration::from_secs(30), || async {
            Ok(match cluster.pod_cgroup(&uid) {
                None => Check::Done(()),
                Some(d) => Check::Pending(d.display().to_string()),
            })
        })
        .await?;
    cluster.wait_deployment_ready(NAMESPACE, scenario::BACKENDS, 2, Duration::from_secs(60)).await?;
    let after = cluster.wait_ready_endpoints(NAMESPACE, scenario::BACKENDS, 2, Duration::from_secs(60)).await?;
    ensure!(!after.iter().any(|i| i.to_string() == ip), "the deleted pod's IP {ip} is still an endpoint: {after:?}");

    let out = cluster
        .exec_on_host(&kubectl, &kubectl_args(cluster, &["get", "nodes", "-o", "name"]), Duration::from_secs(30))
        .await?
        .check("kubectl get nodes")?;
    ensure!(out.stdout.trim() == "node/otlp-lb-e2e-node", "kubectl get nodes: {}", out.stdout);
    Ok(())
}

/// What of the run is still on the host.
fn leftovers(id: &str, dir: &Path) -> Result<Vec<String>> {
    let mut left = Vec::new();
    if netns::owner_ids().contains(id) {
        left.push(format!("network namespaces or interfaces of run {id}"));
    }
    let needle = format!("{}/", dir.display());
    for e in std::fs::read_dir("/proc")?.filter_map(|e| e.ok()) {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(&needle)
            && e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()).is_some_and(alive)
        {
            left.push(format!("process {}", String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    let cgroup = cgroups::cgroup_root(id);
    for h in std::fs::read_dir("/sys/fs/cgroup")?.filter_map(|e| e.ok()) {
        let d = h.path().join(cgroup.trim_start_matches('/'));
        if d.exists() {
            left.push(format!("cgroup {}", d.display()));
        }
    }
    left.extend(cleanup::mounts_under(dir).into_iter().map(|m| format!("mount {}", m.display())));
    let rules = std::process::Command::new("iptables-save").output().context("iptables-save")?;
    let rules = String::from_utf8_lossy(&rules.stdout);
    left.extend(rules.lines().filter(|l| l.starts_with(":KUBE-")).map(|l| format!("iptables chain {l}")));
    Ok(left)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_lifecycle() -> Result<()> {
    e2e::init_logging();
    tools::require(&[tools::KUBECTL])?;
    let cluster = Cluster::start().await?;
    let id = cluster.run_id().to_string();
    let dir: PathBuf = cluster.run_dir().to_path_buf();
    let res = scenario(&cluster).await;
    cluster.finish(res).await?;
    let left = leftovers(&id, &dir)?;
    ensure!(left.is_empty(), "the run left on the host: {left:#?}");
    Ok(())
}
