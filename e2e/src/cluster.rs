//! The test-facing API: one throwaway cluster per test.
//!
//! `Cluster::start()` checks the prerequisites (root, iproute2, the pinned
//! tools, the images), begins a run (host-wide lock, stale sweep, run
//! directory), creates the pod bridge, starts the control plane and the node
//! (containerd, kubelet, kube-proxy, CoreDNS), and waits until pods can run
//! (the Node is Ready, the `default` service account exists). Tests then use
//! the admin `kube::Client`, `apply_yaml`, bounded waits, Service IPs, and
//! what the node holds of a pod: its IP, volumes, logs, network namespace.
//!
//! Teardown stops the node (its pods, cgroups, mounts and iptables rules),
//! kills every process of the run, removes every namespace and interface it
//! created, and happens on `finish`, or in `Drop` on early return or panic.
//! On failure the tails of every log are printed and the run directory is
//! kept (its path is printed).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};

use crate::apply;
use crate::controlplane::ControlPlane;
use crate::netns::{self, Bridge};
use crate::node::Node;
use crate::node::pods::{self, PodFiles};
use crate::process::{Output, ProcTable, Spec, run_captured, tail_file};
use crate::run::Run;
use crate::tools;
use crate::wait::{self, Check};

/// Lines of each log printed on failure.
const DUMP_LINES: usize = 40;

/// Knobs for [`Cluster::start_with`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub node_name: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions { node_name: "otlp-lb-e2e-node".into() }
    }
}

/// A running test cluster.
pub struct Cluster {
    run: Arc<Run>,
    table: ProcTable,
    bridge: Option<Bridge>,
    control_plane: Option<Mutex<ControlPlane>>,
    node: Option<Mutex<Node>>,
    client: Option<kube::Client>,
    api_port: u16,
    torn_down: bool,
}

impl Cluster {
    /// Starts a cluster with default options.
    pub async fn start() -> Result<Cluster> {
        Cluster::start_with(ClusterOptions::default()).await
    }

    /// Starts a cluster.
    pub async fn start_with(opts: ClusterOptions) -> Result<Cluster> {
        tools::require(tools::CONTROL_PLANE_TOOLS)?;
        tools::require(tools::NODE_TOOLS)?;
        crate::node::images::all()?;
        let started = std::time::Instant::now();
        let run = Arc::new(Run::begin().await?);
        tracing::info!("e2e run {} in {}", run.id, run.dir.display());
        let mut cluster = Cluster {
            run,
            table: ProcTable::default(),
            bridge: None,
            control_plane: None,
            node: None,
            client: None,
            api_port: 0,
            torn_down: false,
        };
        match cluster.boot(opts).await {
            Ok(()) => {
                tracing::info!("e2e cluster up in {:.1}s", started.elapsed().as_secs_f64());
                Ok(cluster)
            }
            Err(e) => {
                cluster.dump_logs().await;
                cluster.teardown(false);
                Err(e.context(format!("starting the e2e cluster (logs kept in {})", cluster.run.dir.display())))
            }
        }
    }

    async fn boot(&mut self, opts: ClusterOptions) -> Result<()> {
        let bridge = Bridge::create(&self.run.id).context("creating the pod bridge")?;
        let gateway = bridge.gateway();
        self.bridge = Some(bridge.clone());
        let cp = ControlPlane::start(&self.run, &self.table, gateway).await?;
        let client = cp.admin.clone();
        self.api_port = cp.api_port;
        let node = Node::start(&self.run, &self.table, &cp, &bridge, &opts.node_name).await;
        self.control_plane = Some(Mutex::new(cp));
        self.client = Some(client);
        self.node = Some(Mutex::new(node?));
        self.wait_for_service_account("default", Duration::from_secs(90)).await?;
        Ok(())
    }

    /// The admin client (`system:masters`).
    pub fn client(&self) -> kube::Client {
        match &self.client {
            Some(c) => c.clone(),
            None => unreachable!("a started Cluster always has a client"),
        }
    }

    /// The admin kubeconfig (for kubectl, helm, or an out-of-cluster process).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.run.dir.join("admin.kubeconfig")
    }

    /// The run id (in every netns and interface name of this run).
    pub fn run_id(&self) -> &str {
        &self.run.id
    }

    /// The run directory (logs, pod files, certificates).
    pub fn run_dir(&self) -> &Path {
        &self.run.dir
    }

    /// The bridge gateway: the root namespace's address on the pod network,
    /// where pods reach the apiserver.
    pub fn gateway(&self) -> Ipv4Addr {
        self.bridge.as_ref().map(Bridge::gateway).unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    /// The apiserver's secure port.
    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    /// Fails if a control-plane or node process has exited.
    pub fn check_alive(&self) -> Result<()> {
        match &self.control_plane {
            Some(cp) => cp.lock().map_err(|_| anyhow::anyhow!("control plane lock poisoned"))?.check_alive()?,
            None => bail!("no control plane"),
        }
        match &self.node {
            Some(node) => node.lock().map_err(|_| anyhow::anyhow!("node lock poisoned"))?.check_alive(),
            None => bail!("no node"),
        }
    }

    fn with_node<T>(&self, f: impl FnOnce(&Node) -> Result<T>) -> Result<T> {
        let node = self.node.as_ref().context("the cluster has no node")?;
        f(&*node.lock().map_err(|_| anyhow::anyhow!("node lock poisoned"))?)
    }

    /// The node's files of pod `namespace/name` (its latest incarnation).
    pub fn pod_files(&self, namespace: &str, name: &str) -> Result<PodFiles> {
        self.with_node(|n| pods::find(&n.kubelet_root, &n.pod_logs, namespace, name))
    }

    /// The node's cgroup directory of pod `uid` (`pids` hierarchy), while it exists.
    pub fn pod_cgroup(&self, uid: &str) -> Option<PathBuf> {
        self.with_node(|n| Ok(n.pod_cgroup(uid))).ok().flatten()
    }

    /// The apiserver address pods use: the `kubernetes` Service (through kube-proxy).
    pub fn api_server_for_pods(&self) -> String {
        format!("https://{}:443", crate::controlplane::KUBERNETES_SERVICE_IP)
    }

    /// The host directory of the pod's service-account volume (`kube-api-access-*`: token, ca.crt, namespace).
    pub fn service_account_dir(&self, namespace: &str, pod: &str) -> Result<PathBuf> {
        let volumes = self.pod_files(namespace, pod)?.dir.join("volumes/kubernetes.io~projected");
        std::fs::read_dir(&volumes)
            .with_context(|| format!("reading {}", volumes.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("kube-api-access-")))
            .with_context(|| format!("pod {namespace}/{pod} has no kube-api-access volume"))
    }

    /// The ClusterIP of Service `namespace/name`.
    pub async fn service_ip(&self, namespace: &str, name: &str) -> Result<Ipv4Addr> {
        let api: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(self.client(), namespace);
        let svc = api.get(name).await.with_context(|| format!("reading service {namespace}/{name}"))?;
        let ip = svc
            .spec
            .and_then(|s| s.cluster_ip)
            .with_context(|| format!("service {namespace}/{name} has no clusterIP"))?;
        ip.parse().with_context(|| format!("service {namespace}/{name} has clusterIP {ip:?}"))
    }

    /// Polls `check` (bounded by `timeout`), failing early if the control
    /// plane dies.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Check<T>>>,
    {
        wait::until(what, timeout, Duration::from_millis(250), || {
            let alive = self.check_alive();
            let fut = check();
            async move {
                alive?;
                fut.await
            }
        })
        .await
    }

    /// Server-side applies YAML documents (namespace `default` unless set).
    pub async fn apply_yaml(&self, yaml: &str) -> Result<Vec<DynamicObject>> {
        self.apply_yaml_in("default", yaml).await
    }

    /// Server-side applies YAML documents into `namespace` unless they set one.
    pub async fn apply_yaml_in(&self, namespace: &str, yaml: &str) -> Result<Vec<DynamicObject>> {
        let objs = apply::parse_yaml(yaml)?;
        apply::apply_all(&self.client(), &objs, namespace).await
    }

    /// Creates a namespace and waits until pods can be created in it.
    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        Api::<Namespace>::all(self.client())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        self.wait_for_service_account(name, Duration::from_secs(60)).await
    }

    async fn wait_for_service_account(&self, namespace: &str, timeout: Duration) -> Result<()> {
        let sas: Api<ServiceAccount> = Api::namespaced(self.client(), namespace);
        self.wait_for(&format!("service account {namespace}/default"), timeout, || {
            let sas = sas.clone();
            async move {
                Ok(match sas.get_opt("default").await {
                    Ok(Some(_)) => Check::Done(()),
                    Ok(None) => Check::Pending("not created yet (kube-controller-manager)".into()),
                    Err(e) => Check::Pending(e.to_string()),
                })
            }
        })
        .await
    }

    /// Waits until Deployment `name` has `replicas` updated, ready replicas.
    pub async fn wait_deployment_ready(
        &self,
        namespace: &str,
        name: &str,
        replicas: i32,
        timeout: Duration,
    ) -> Result<()> {
        let api: Api<Deployment> = Api::namespaced(self.client(), namespace);
        self.wait_for(&format!("deployment {namespace}/{name} to have {replicas} ready replicas"), timeout, || {
            let api = api.clone();
            async move {
                let d = match api.get_opt(name).await {
                    Ok(Some(d)) => d,
                    Ok(None) => return Ok(Check::Pending("not found".into())),
                    Err(e) => return Ok(Check::Pending(e.to_string())),
                };
                let gen_ = d.metadata.generation.unwrap_or(0);
                let st = d.status.unwrap_or_default();
                let done = st.observed_generation.unwrap_or(0) >= gen_
                    && st.ready_replicas.unwrap_or(0) == replicas
                    && st.updated_replicas.unwrap_or(0) == replicas
                    && st.replicas.unwrap_or(0) == replicas;
                Ok(if done {
                    Check::Done(())
                } else {
                    Check::Pending(format!(
                        "replicas={:?} updated={:?} ready={:?} observedGeneration={:?}/{gen_}",
                        st.replicas, st.updated_replicas, st.ready_replicas, st.observed_generation
                    ))
                })
            }
        })
        .await
    }

    /// Sets Deployment `name` to `replicas` through its scale subresource (as
    /// `kubectl scale` does); returns at once (wait with
    /// [`Cluster::wait_deployment_ready`]).
    pub async fn scale_deployment(&self, namespace: &str, name: &str, replicas: i32) -> Result<()> {
        let api: Api<Deployment> = Api::namespaced(self.client(), namespace);
        let patch = serde_json::json!({"spec": {"replicas": replicas}});
        api.patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("scaling deployment {namespace}/{name} to {replicas}"))?;
        Ok(())
    }

    /// An API server outage: kube-apiserver is killed, stays down for `down`, then starts again on the same
    /// address; returns once it answers `/readyz` again. Control-plane liveness checks fail while it is down.
    pub async fn restart_apiserver(&self, down: Duration) -> Result<()> {
        let cp = self.control_plane.as_ref().context("no control plane")?;
        let lock = || cp.lock().map_err(|_| anyhow::anyhow!("control plane lock poisoned"));
        lock()?.kill_apiserver()?;
        tokio::time::sleep(down).await;
        lock()?.respawn_apiserver(&self.table)?;
        let client = self.client();
        self.wait_for("kube-apiserver /readyz after its restart", Duration::from_secs(120), || {
            let client = client.clone();
            async move {
                let req = http::Request::get("/readyz").body(Vec::new()).context("building /readyz request")?;
                Ok(match client.request_text(req).await {
                    Ok(body) if body.trim() == "ok" => Check::Done(()),
                    Ok(body) => Check::Pending(body),
                    Err(e) => Check::Pending(format!("{e}")),
                })
            }
        })
        .await
    }

    /// Ready endpoint addresses of Service `service` (from its EndpointSlices).
    pub async fn ready_endpoints(&self, namespace: &str, service: &str) -> Result<Vec<Ipv4Addr>> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client(), namespace);
        let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
        let slices = api.list(&lp).await.with_context(|| format!("listing EndpointSlices of {namespace}/{service}"))?;
        let mut out = Vec::new();
        for s in slices.items {
            for ep in s.endpoints {
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if ready {
                    out.extend(ep.addresses.iter().filter_map(|a| a.parse::<Ipv4Addr>().ok()));
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Waits until Service `service` has exactly `n` ready endpoints.
    pub async fn wait_ready_endpoints(
        &self,
        namespace: &str,
        service: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Ipv4Addr>> {
        self.wait_for(&format!("{n} ready endpoints of service {namespace}/{service}"), timeout, || async move {
            Ok(match self.ready_endpoints(namespace, service).await {
                Ok(eps) if eps.len() == n => Check::Done(eps),
                Ok(eps) => Check::Pending(format!("ready endpoints {eps:?}")),
                Err(e) => Check::Pending(format!("{e:#}")),
            })
        })
        .await
    }

    /// Pods in `namespace` matching `label_selector`.
    pub async fn pods(&self, namespace: &str, label_selector: &str) -> Result<Vec<Pod>> {
        let api: Api<Pod> = Api::namespaced(self.client(), namespace);
        Ok(api.list(&ListParams::default().labels(label_selector)).await.context("listing pods")?.items)
    }

    /// The pod's IP.
    pub fn pod_ip(&self, namespace: &str, name: &str) -> Result<Ipv4Addr> {
        self.pod_files(namespace, name)?.ip()
    }

    /// The host directory behind the pod's volume `volume` (emptyDir,
    /// ConfigMap, ...): tests read what the pod wrote there.
    pub fn pod_volume_dir(&self, namespace: &str, pod: &str, volume: &str) -> Result<PathBuf> {
        self.pod_files(namespace, pod)?.volume_dir(volume)
    }

    /// All container logs of the pod on the node (stdout and stderr, every
    /// restart), as long as the pod exists.
    pub fn logs(&self, namespace: &str, pod: &str) -> Result<String> {
        Ok(self.pod_files(namespace, pod)?.logs(&format!("{namespace}/{pod}")))
    }

    /// Runs `program args` to completion inside the pod's network namespace
    /// (the root mount namespace, the harness's environment).
    pub async fn exec_in_pod_netns(
        &self,
        namespace: &str,
        pod: &str,
        program: &Path,
        args: &[String],
        timeout: Duration,
    ) -> Result<Output> {
        let uid = self.pod_files(namespace, pod)?.uid;
        let cgroup = self
            .with_node(|n| n.pod_cgroup(&uid).with_context(|| format!("pod {namespace}/{pod} is no longer running")))?;
        let ns_path = pods::netns_of_cgroup(&cgroup)?;
        let spec = Spec::new(format!("exec in {namespace}/{pod}"), program, PathBuf::new())
            .args(args.iter().cloned())
            .netns(ns_path);
        run_captured(&spec, &self.table, timeout).await
    }

    /// Runs `program args` to completion in the root namespace (which
    /// reaches pod IPs through the bridge).
    pub async fn exec_on_host(&self, program: &Path, args: &[String], timeout: Duration) -> Result<Output> {
        let spec = Spec::new(format!("exec {}", program.display()), program, PathBuf::new()).args(args.iter().cloned());
        run_captured(&spec, &self.table, timeout).await
    }

    /// Ends the test: on `Err`, prints diagnostics and keeps the run
    /// directory; tears everything down either way; returns `result`.
    pub async fn finish<T>(mut self, result: Result<T>) -> Result<T> {
        let ok = result.is_ok();
        if !ok {
            self.dump_logs().await;
        }
        self.teardown(ok);
        result
    }

    /// Prints pods, events and the tails of all logs to stderr.
    pub async fn dump_logs(&self) {
        eprintln!("===== otlp-lb e2e diagnostics: run {} in {} =====", self.run.id, self.run.dir.display());
        if let Some(client) = &self.client {
            let pods: Api<Pod> = Api::all(client.clone());
            if let Ok(Ok(list)) = tokio::time::timeout(Duration::from_secs(5), pods.list(&ListParams::default())).await
            {
                for p in list.items {
                    let st = p.status.unwrap_or_default();
                    let conds: Vec<String> =
                        st.conditions.iter().flatten().map(|c| format!("{}={}", c.type_, c.status)).collect();
                    eprintln!(
                        "pod {}/{} node={:?} phase={:?} ip={:?} {} {}",
                        p.metadata.namespace.unwrap_or_default(),
                        p.metadata.name.unwrap_or_default(),
                        p.spec.and_then(|s| s.node_name),
                        st.phase,
                        st.pod_ip,
                        conds.join(","),
                        st.message.unwrap_or_default()
                    );
                }
            }
            let events: Api<k8s_openapi::api::core::v1::Event> = Api::all(client.clone());
            if let Ok(Ok(list)) =
                tokio::time::timeout(Duration::from_secs(5), events.list(&ListParams::default())).await
            {
                for e in list.items.iter().filter(|e| e.type_.as_deref() != Some("Normal")) {
                    eprintln!(
                        "event {} {}/{}: {} {}",
                        e.type_.clone().unwrap_or_default(),
                        e.involved_object.kind.clone().unwrap_or_default(),
                        e.involved_object.name.clone().unwrap_or_default(),
                        e.reason.clone().unwrap_or_default(),
                        e.message.clone().unwrap_or_default()
                    );
                }
            }
        }
        self.dump_log_files();
    }

    fn dump_log_files(&self) {
        let mut files = Vec::new();
        collect_logs(&self.run.dir.join("logs"), &mut files);
        collect_logs(&self.run.dir.join("node/pod-logs"), &mut files);
        for f in files {
            eprintln!("----- {} (last {DUMP_LINES} lines) -----\n{}", f.display(), tail_file(&f, DUMP_LINES));
        }
        eprintln!("===== end of diagnostics; run directory kept: {} =====", self.run.dir.display());
    }

    /// Synchronous teardown: kill everything, remove network and mount
    /// points, release the run. Idempotent.
    fn teardown(&mut self, success: bool) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        if let Some(node) = self.node.take() {
            match node.into_inner() {
                Ok(mut n) => n.teardown(),
                Err(poisoned) => poisoned.into_inner().teardown(),
            }
        }
        self.table.kill_all();
        netns::sweep(&self.run.id);
        if let Some(b) = self.bridge.take() {
            b.delete();
        }
        // Control-plane `Proc`s kill their groups on drop.
        drop(self.control_plane.take());
        let keep = !success || std::env::var_os("OTLP_LB_E2E_KEEP").is_some();
        self.run.finish(!keep);
        if keep {
            eprintln!("otlp-lb e2e: run directory kept: {}", self.run.dir.display());
        }
    }
}

fn collect_logs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() && !p.ends_with("volumes") {
            collect_logs(&p, out);
        } else if p.extension().is_some_and(|e| e == "log") {
            out.push(p);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        let panicking = std::thread::panicking();
        if panicking {
            self.dump_log_files();
        }
        self.teardown(!panicking);
    }
}
