//! The node agent behaves like a kubelet where the otlp-lb tests rely on it:
//! pod status (IPs, conditions, container statuses) with readiness from the
//! real probe; env and ConfigMap/emptyDir/service-account mounts inside the
//! pod's own mount namespace; a working in-cluster identity (TokenRequest
//! token + CA, checked with `kubectl auth whoami` from the pod's network
//! namespace); restart after the process dies; graceful deletion that stops
//! the process, frees the network and lets the ReplicaSet replace the pod;
//! and a teardown that leaves nothing behind.
//!
//! Needs root and `make tools`; fails (never skips) without them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use e2e::scenario::{self, NAMESPACE};
use e2e::wait::Check;
use e2e::{Cluster, netns, tools};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

fn pid_of(pod: &Pod) -> Result<i32> {
    let id = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.container_id.clone())
        .context("no containerID")?;
    id.trim_start_matches("e2e://").parse().context("containerID is not e2e://PID")
}

fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
}

async fn scenario(cluster: &Cluster) -> Result<()> {
    let pods_api: Api<Pod> = Api::namespaced(cluster.client(), NAMESPACE);
    let ips = scenario::deploy_backends(cluster, 2).await?;
    let pods = cluster.pods(NAMESPACE, "app=otlp-backend").await?;
    ensure!(pods.len() == 2, "expected 2 pods, got {}", pods.len());
    let pod = &pods[0];
    let name = pod.metadata.name.clone().context("pod name")?;

    // Status as a kubelet reports it.
    let st = pod.status.clone().context("no status")?;
    let ip = st.pod_ip.clone().context("no podIP")?;
    ensure!(ips.iter().any(|i| i.to_string() == ip), "podIP {ip} not among endpoints {ips:?}");
    ensure!(st.pod_ips.as_ref().is_some_and(|v| v.len() == 1 && v[0].ip == ip), "podIPs {:?}", st.pod_ips);
    ensure!(st.phase.as_deref() == Some("Running"), "phase {:?}", st.phase);
    for ty in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        let c = st.conditions.iter().flatten().find(|c| c.type_ == ty);
        ensure!(c.is_some_and(|c| c.status == "True"), "condition {ty}: {c:?}");
    }
    let cs = &st.container_statuses.clone().context("no containerStatuses")?[0];
    ensure!(cs.ready && cs.started == Some(true) && cs.restart_count == 0, "container status {cs:?}");
    ensure!(cs.state.as_ref().is_some_and(|s| s.running.is_some()), "state {:?}", cs.state);

    // Env and mounts live in the process, not on the host.
    let pid = pid_of(pod)?;
    let environ = std::fs::read(format!("/proc/{pid}/environ"))?;
    let environ = String::from_utf8_lossy(&environ);
    let gw = cluster.gateway().to_string();
    for want in [format!("KUBERNETES_SERVICE_HOST={gw}"), "GOMEMLIMIT=200MiB".to_string(), format!("HOSTNAME={name}")] {
        ensure!(environ.split('\0').any(|e| e == want), "missing {want} in the process env");
    }
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    for mp in [" /conf ", " /data ", "/secrets/kubernetes.io/serviceaccount "] {
        ensure!(mountinfo.contains(mp), "{mp} is not mounted in the pod");
    }
    ensure!(!PathBuf::from("/conf/config.yaml").exists(), "the ConfigMap leaked onto the host's /conf");

    // In-cluster identity from the pod's network namespace.
    let rec = cluster.pod_record(NAMESPACE, &name)?;
    let vols = std::fs::read_dir(rec.dir.join("volumes"))?;
    let api_vol = vols
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("kube-api-access-")))
        .context("no kube-api-access volume")?;
    let token = std::fs::read_to_string(api_vol.join("token"))?;
    let ns = std::fs::read_to_string(api_vol.join("namespace"))?;
    ensure!(ns == NAMESPACE, "namespace file {ns:?}");
    let out = cluster
        .exec_in_pod_netns(
            NAMESPACE,
            &name,
            &tools::tool(tools::KUBECTL)?,
            &[
                format!("--server=https://{gw}:{}", cluster.api_port()),
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

    // The process dies: restarted, ready again, restartCount 1.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)?;
    cluster
        .wait_for("the killed container to be restarted and ready", Duration::from_secs(60), || async {
            let p = pods_api.get(&name).await?;
            let cs = p.status.and_then(|s| s.container_statuses).unwrap_or_default();
            Ok(match cs.first() {
                Some(c) if c.restart_count == 1 && c.ready => Check::Done(()),
                other => Check::Pending(format!("{other:?}")),
            })
        })
        .await?;
    let pid = pid_of(&pods_api.get(&name).await?)?;

    // Deletion: SIGTERM, network gone, object gone, replaced by the ReplicaSet.
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
    ensure!(!netns::ns_path(&rec.netns).exists(), "netns {} of the deleted pod still exists", rec.netns);
    ensure!(!cluster.pod_record(NAMESPACE, &name)?.active, "the agent still counts the deleted pod active");
    let logs = cluster.logs(NAMESPACE, &name)?;
    ensure!(logs.matches("=== otlp-lb e2e: starting").count() == 2, "expected 2 starts in the logs:\n{logs}");
    cluster.wait_deployment_ready(NAMESPACE, scenario::BACKENDS, 2, Duration::from_secs(60)).await?;
    let after = cluster.wait_ready_endpoints(NAMESPACE, scenario::BACKENDS, 2, Duration::from_secs(60)).await?;
    ensure!(!after.iter().any(|i| i.to_string() == ip), "the deleted pod's IP {ip} is still an endpoint: {after:?}");

    // The admin kubeconfig works for external tools.
    let out = cluster
        .exec_on_host(
            &tools::tool(tools::KUBECTL)?,
            &[
                format!("--kubeconfig={}", cluster.kubeconfig_path().display()),
                "get".into(),
                "nodes".into(),
                "-o".into(),
                "name".into(),
            ],
            Duration::from_secs(30),
        )
        .await?
        .check("kubectl get nodes")?;
    if !out.stdout.contains("node/otlp-lb-e2e-node") {
        bail!("kubectl get nodes: {}", out.stdout);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_lifecycle() -> Result<()> {
    e2e::init_logging();
    tools::require(&[tools::OTELCOL, tools::KUBECTL])?;
    let cluster = Cluster::start().await?;
    let id = cluster.run_id().to_string();
    let dir = cluster.run_dir().to_path_buf();
    let res = scenario(&cluster).await;
    cluster.finish(res).await?;

    // Teardown left nothing: no netns/interfaces, no process from the run.
    ensure!(!netns::owner_ids().contains(&id), "leftover network resources of run {id}");
    let needle = format!("{}/", dir.display());
    let mut left = Vec::new();
    for e in std::fs::read_dir("/proc")?.filter_map(|e| e.ok()) {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(&needle)
            && e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()).is_some_and(alive)
        {
            left.push(String::from_utf8_lossy(&cmd).replace('\0', " "));
        }
    }
    ensure!(left.is_empty(), "processes of the run still alive: {left:?}");
    ensure!(!PathBuf::from("/var/run/secrets/kubernetes.io").exists(), "mount point left on the host");
    Ok(())
}
