//! The node agent: plays the kubelet of the one fake Node.
//!
//! It registers the Node (Ready, with capacity for many pods, no taints),
//! keeps its Lease in `kube-node-lease` renewed, watches the pods bound to it
//! (kube-runtime watcher with a `spec.nodeName` field selector) and runs one
//! [`Worker`](crate::pod_worker::Worker) per pod, handing it every newer
//! version of the pod. Pod IPs come from the run's /24 (round robin, so a
//! deleted pod's IP is not reused at once). The node lifecycle controller is
//! not run, so the Node's status needs no heartbeat beyond the Lease.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt as _;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::pod_worker::{AgentShared, Msg, Worker};

/// How often the node Lease is renewed.
const LEASE_RENEW: Duration = Duration::from_secs(10);
/// How long shutdown waits for workers to stop their pods.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(15);

/// Round-robin allocator of host numbers .2–.254 of the run's /24.
struct IpPool {
    next: u8,
    used: BTreeSet<u8>,
}

impl IpPool {
    fn new() -> IpPool {
        IpPool { next: 2, used: BTreeSet::new() }
    }

    fn alloc(&mut self) -> Option<u8> {
        for _ in 0..253 {
            let h = self.next;
            self.next = if self.next >= 254 { 2 } else { self.next + 1 };
            if self.used.insert(h) {
                return Some(h);
            }
        }
        None
    }

    fn free(&mut self, h: u8) {
        self.used.remove(&h);
    }
}

/// The running agent.
pub struct NodeAgent {
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl NodeAgent {
    /// Registers the node and starts watching pods.
    pub async fn start(shared: Arc<AgentShared>) -> Result<NodeAgent> {
        register_node(&shared).await?;
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(agent_loop(shared, rx));
        Ok(NodeAgent { shutdown: tx, task: Some(task) })
    }

    /// Stops every pod (SIGKILL, network teardown) and the agent.
    pub async fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(SHUTDOWN_WAIT + Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn register_node(shared: &AgentShared) -> Result<()> {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let name = &shared.node_name;
    let capacity = json!({"cpu": "64", "memory": "256Gi", "pods": "250", "ephemeral-storage": "100Gi"});
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                "node.kubernetes.io/instance-type": "otlp-lb-e2e"
            }
        },
        "spec": {}
    }))
    .context("building Node")?;
    nodes.create(&PostParams::default(), &node).await.context("creating the Node")?;
    let now = Timestamp::now().to_string();
    let cond = |ty: &str, status: &str, reason: &str| {
        json!({"type": ty, "status": status, "reason": reason, "message": reason,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let gw = shared.bridge.gateway().to_string();
    let status = json!({"status": {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID"),
            cond("Ready", "True", "KubeletReady"),
        ],
        "addresses": [{"type": "InternalIP", "address": gw}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": "otlp-lb-e2e", "systemUUID": "otlp-lb-e2e", "bootID": "otlp-lb-e2e",
            "kernelVersion": "", "osImage": "otlp-lb e2e node agent", "containerRuntimeVersion": "e2e-local://1",
            "kubeletVersion": "v1.36.0", "kubeProxyVersion": "", "operatingSystem": "linux",
            "architecture": std::env::consts::ARCH
        }
    }});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.context("setting Node status")?;
    // The TaintNodesByCondition admission plugin taints new nodes not-ready;
    // the (not running) node lifecycle controller would lift it.
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"taints": null}})))
        .await
        .context("removing Node taints")?;
    Ok(())
}

async fn renew_lease(shared: &AgentShared) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), "kube-node-lease");
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": shared.node_name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": shared.node_name, "leaseDurationSeconds": 40,
                 "renewTime": Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}
    });
    let pp = PatchParams::apply("otlp-lb-e2e-node-agent").force();
    leases.patch(&shared.node_name, &pp, &Patch::Apply(&lease)).await.context("renewing node lease")?;
    Ok(())
}

struct WorkerHandle {
    tx: mpsc::UnboundedSender<Msg>,
    task: JoinHandle<()>,
    host: u8,
}

async fn agent_loop(shared: Arc<AgentShared>, mut shutdown: watch::Receiver<bool>) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.node_name));
    let mut events = watcher::watcher(pods, cfg).default_backoff().boxed();
    let mut workers: BTreeMap<String, WorkerHandle> = BTreeMap::new();
    let mut pool = IpPool::new();
    let mut seq: u32 = 0;
    let mut listed: Option<BTreeSet<String>> = None;
    let mut lease_tick = tokio::time::interval(LEASE_RENEW);
    let mut reap_tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            _ = lease_tick.tick() => {
                if let Err(e) = renew_lease(&shared).await {
                    tracing::debug!("{e:#}");
                }
            }
            _ = reap_tick.tick() => {
                let finished: Vec<String> = workers.iter().filter(|(_, w)| w.task.is_finished()).map(|(k, _)| k.clone()).collect();
                for uid in finished {
                    if let Some(w) = workers.remove(&uid) {
                        pool.free(w.host);
                    }
                }
            }
            ev = events.next() => {
                let Some(ev) = ev else { break };
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::warn!("node agent: pod watch error (retrying): {e}");
                        continue;
                    }
                };
                match ev {
                    Event::Init => listed = Some(BTreeSet::new()),
                    Event::InitApply(pod) | Event::Apply(pod) => {
                        let uid = pod.metadata.uid.clone().unwrap_or_default();
                        if let Some(l) = listed.as_mut() {
                            l.insert(uid.clone());
                        }
                        if let Some(w) = workers.get(&uid) {
                            let _ = w.tx.send(Msg::Update(Box::new(pod)));
                            continue;
                        }
                        let terminal = pod.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|p| p == "Succeeded" || p == "Failed");
                        if terminal && pod.metadata.deletion_timestamp.is_none() {
                            continue;
                        }
                        let Some(host) = pool.alloc() else {
                            tracing::error!("node agent: out of pod IPs");
                            continue;
                        };
                        seq += 1;
                        let ip: Ipv4Addr = shared.bridge.ip(host);
                        let (tx, rx) = mpsc::unbounded_channel();
                        let worker = Worker::new(shared.clone(), pod, seq, ip);
                        let task = tokio::spawn(worker.run(rx, shutdown.clone()));
                        workers.insert(uid, WorkerHandle { tx, task, host });
                    }
                    Event::Delete(pod) => {
                        let uid = pod.metadata.uid.clone().unwrap_or_default();
                        if let Some(w) = workers.get(&uid) {
                            let _ = w.tx.send(Msg::Gone);
                        }
                    }
                    Event::InitDone => {
                        if let Some(seen) = listed.take() {
                            for (uid, w) in workers.iter() {
                                if !seen.contains(uid) {
                                    let _ = w.tx.send(Msg::Gone);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    // Shutdown: workers see the same signal; wait (bounded) for them.
    let tasks: Vec<JoinHandle<()>> = workers.into_values().map(|w| w.task).collect();
    let _ = tokio::time::timeout(SHUTDOWN_WAIT, futures::future::join_all(tasks)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_pool_round_robin() {
        let mut p = IpPool::new();
        assert_eq!(p.alloc(), Some(2));
        assert_eq!(p.alloc(), Some(3));
        p.free(2);
        assert_eq!(p.alloc(), Some(4));
        let mut n = 0;
        while p.alloc().is_some() {
            n += 1;
        }
        assert_eq!(n, 253 - 3 + 1);
    }
}
