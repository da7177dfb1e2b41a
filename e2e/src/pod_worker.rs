//! One pod's supervisor in the node agent — the kubelet's pod worker.
//!
//! It gives the pod a network namespace and IP, fetches what the pod refers to
//! (ConfigMaps, Secrets, service-account tokens via the TokenRequest API),
//! writes its volumes, starts one local process per container (init
//! containers first, to completion), runs startup/liveness/readiness probes,
//! restarts exited containers per `restartPolicy` with backoff, refreshes
//! ConfigMap/Secret volumes, and reports the pod status (IPs, phase,
//! conditions, container statuses) to the API server. When the pod gets a
//! deletionTimestamp it runs the containers' `preStop: {sleep}` hooks (the
//! pod keeps serving meanwhile), stops the processes (SIGTERM, SIGKILL when
//! the grace period, which the hooks count against, is over), tears the
//! network down and deletes the pod object with grace period 0, as the kubelet
//! does.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, Probe, Secret, ServiceAccount,
};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::images::ImageTable;
use crate::netns::{Bridge, PodNet};
use crate::pod_spec::{self, Inputs, PodContext};
use crate::probe::{self, Outcome};
use crate::process::{BindMount, Proc, ProcTable, Spec};
use crate::run::Run;

/// How often the worker wakes up to reap, probe and report.
const TICK: Duration = Duration::from_millis(200);
/// Probes run at most this far apart, whatever `periodSeconds` says (the
/// harness probes more often than a kubelet so tests do not idle).
const MAX_PROBE_PERIOD: Duration = Duration::from_secs(2);
/// ConfigMap/Secret volumes are re-synced this often.
const VOLUME_RESYNC: Duration = Duration::from_secs(3);
/// Longest grace period honoured on deletion.
const MAX_GRACE: Duration = Duration::from_secs(180);
/// Restart backoff: first delay and cap (shorter than the kubelet's 10s..5m).
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(20);
/// Setup (fetching inputs, starting containers) is retried at most this many
/// times, one TICK*5 apart, before the pod is marked Failed.
const MAX_SETUP_ATTEMPTS: u32 = 600;

/// What the cluster knows about a pod the agent runs (for logs, IPs, exec).
#[derive(Debug, Clone)]
pub struct PodRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub dir: PathBuf,
    pub ip: Ipv4Addr,
    pub netns: String,
    /// Container name → log file.
    pub logs: BTreeMap<String, PathBuf>,
    /// False once the pod's processes and network are gone.
    pub active: bool,
}

/// All pods the agent has run in this cluster, by (namespace, name); the
/// latest incarnation wins.
pub type PodRegistry = Arc<Mutex<BTreeMap<(String, String), PodRecord>>>;

/// What the node agent shares with its workers.
pub struct AgentShared {
    pub client: kube::Client,
    pub node_name: String,
    pub bridge: Bridge,
    pub api_port: u16,
    pub run: Arc<Run>,
    pub images: ImageTable,
    pub table: ProcTable,
    pub registry: PodRegistry,
}

/// Messages from the agent to a worker.
#[derive(Debug)]
pub enum Msg {
    /// A newer version of the pod.
    Update(Box<Pod>),
    /// The pod object is gone from the API (force-deleted).
    Gone,
}

/// A container's current state as reported in its status.
#[derive(Debug, Clone)]
enum State {
    Waiting { reason: String, message: String },
    Running { started_at: Timestamp },
    Terminated { exit_code: i32, signal: Option<i32>, reason: String, started_at: Timestamp, finished_at: Timestamp },
}

impl State {
    fn to_json(&self, container_id: &str) -> Value {
        match self {
            State::Waiting { reason, message } => {
                json!({"waiting": {"reason": reason, "message": message}})
            }
            State::Running { started_at } => {
                json!({"running": {"startedAt": started_at.to_string()}})
            }
            State::Terminated { exit_code, signal, reason, started_at, finished_at } => json!({"terminated": {
                "exitCode": exit_code, "signal": signal, "reason": reason, "containerID": container_id,
                "startedAt": started_at.to_string(), "finishedAt": finished_at.to_string()
            }}),
        }
    }
}

/// Probe bookkeeping for one probe of one container.
#[derive(Debug, Default)]
struct ProbeState {
    next: Option<Instant>,
    successes: i32,
    failures: i32,
}

/// What a container runs, once resolved.
struct Plan {
    spec: Spec,
}

struct Ctr {
    c: Container,
    init: bool,
    plan: Option<Plan>,
    proc: Option<Proc>,
    state: State,
    last_state: Option<State>,
    restarts: i32,
    /// Startup probe passed (or none).
    started: bool,
    ready: bool,
    startup: ProbeState,
    liveness: ProbeState,
    readiness: ProbeState,
    restart_at: Option<Instant>,
    backoff: Duration,
    container_id: String,
    /// Init container finished successfully.
    done: bool,
}

impl Ctr {
    fn new(c: Container, init: bool) -> Ctr {
        Ctr {
            c,
            init,
            plan: None,
            proc: None,
            state: State::Waiting { reason: "ContainerCreating".into(), message: String::new() },
            last_state: None,
            restarts: 0,
            started: false,
            ready: false,
            startup: ProbeState::default(),
            liveness: ProbeState::default(),
            readiness: ProbeState::default(),
            restart_at: None,
            backoff: BACKOFF_START,
            container_id: String::new(),
            done: false,
        }
    }

    fn status_json(&self) -> Value {
        let mut v = json!({
            "name": self.c.name,
            "image": self.c.image.clone().unwrap_or_default(),
            "imageID": format!("e2e-local://{}", self.plan.as_ref().map(|p| p.spec.program.display().to_string()).unwrap_or_default()),
            "ready": self.ready,
            "started": matches!(self.state, State::Running { .. }) && self.started,
            "restartCount": self.restarts,
            "state": self.state.to_json(&self.container_id),
        });
        if !self.container_id.is_empty() {
            v["containerID"] = json!(self.container_id);
        }
        if let Some(last) = &self.last_state {
            v["lastState"] = last.to_json(&self.container_id);
        }
        v
    }
}

fn probe_period(p: &Probe) -> Duration {
    Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64).min(MAX_PROBE_PERIOD)
}

/// The pod worker.
pub struct Worker {
    shared: Arc<AgentShared>,
    pod: Pod,
    uid: String,
    ns: String,
    name: String,
    dir: PathBuf,
    net: Option<PodNet>,
    ip: Ipv4Addr,
    seq: u32,
    ctrs: Vec<Ctr>,
    inputs: Inputs,
    volumes: BTreeMap<String, PathBuf>,
    start_time: Timestamp,
    conditions: BTreeMap<&'static str, (bool, Timestamp)>,
    last_status: Option<Value>,
    setup_error: Option<String>,
    setup_attempts: u32,
    failed: bool,
    last_resync: Instant,
}

impl Worker {
    pub fn new(shared: Arc<AgentShared>, pod: Pod, seq: u32, ip: Ipv4Addr) -> Worker {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let short_uid: String = uid.chars().take(8).collect();
        let dir = shared.run.dir.join("pods").join(format!("{ns}_{name}_{short_uid}"));
        let mut ctrs = Vec::new();
        if let Some(spec) = &pod.spec {
            ctrs.extend(spec.init_containers.iter().flatten().cloned().map(|c| Ctr::new(c, true)));
            ctrs.extend(spec.containers.iter().cloned().map(|c| Ctr::new(c, false)));
        }
        Worker {
            shared,
            pod,
            uid,
            ns,
            name,
            dir,
            net: None,
            ip,
            seq,
            ctrs,
            inputs: Inputs::default(),
            volumes: BTreeMap::new(),
            start_time: Timestamp::now(),
            conditions: BTreeMap::new(),
            last_status: None,
            setup_error: None,
            setup_attempts: 0,
            failed: false,
            last_resync: Instant::now(),
        }
    }

    fn label(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }

    fn ctx(&self) -> PodContext {
        PodContext {
            pod_ip: self.ip,
            host_ip: self.shared.bridge.gateway(),
            node_name: self.shared.node_name.clone(),
            api_host: self.shared.bridge.gateway().to_string(),
            api_port: self.shared.api_port,
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.shared.client.clone(), &self.ns)
    }

    /// Runs until the pod is deleted (or gone, or the agent shuts down).
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>, mut shutdown: watch::Receiver<bool>) {
        let label = self.label();
        tracing::info!(pod = %label, ip = %self.ip, "node agent: starting pod");
        if let Err(e) = self.setup_network() {
            tracing::warn!(pod = %label, "network setup failed: {e:#}");
            self.setup_error = Some(format!("{e:#}"));
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut since_setup_try = 0u32;
        // Bounded by the pod's life: every exit path below ends the loop; the
        // agent's shutdown (bounded by the cluster's lifetime) ends it too.
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Msg::Update(pod)) => {
                        self.pod = *pod;
                        if self.pod.metadata.deletion_timestamp.is_some() {
                            self.terminate_and_delete().await;
                            break;
                        }
                    }
                    Some(Msg::Gone) | None => {
                        self.kill_all().await;
                        break;
                    }
                },
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        self.kill_all().await;
                        break;
                    }
                }
                _ = tick.tick() => {
                    if self.pod.metadata.deletion_timestamp.is_some() {
                        self.terminate_and_delete().await;
                        break;
                    }
                    if self.net.is_some() && self.plans_missing() && !self.failed {
                        since_setup_try += 1;
                        if since_setup_try >= 5 || self.setup_attempts == 0 {
                            since_setup_try = 0;
                            self.try_setup().await;
                        }
                    }
                    if !self.plans_missing() {
                        self.step().await;
                    }
                    self.report().await;
                }
            }
        }
        tracing::info!(pod = %label, "node agent: pod finished");
    }

    fn plans_missing(&self) -> bool {
        self.ctrs.iter().any(|c| c.plan.is_none())
    }

    fn setup_network(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        let net = self.shared.bridge.add_pod(self.seq, self.ip)?;
        let record = PodRecord {
            namespace: self.ns.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            dir: self.dir.clone(),
            ip: self.ip,
            netns: net.ns.clone(),
            logs: self.ctrs.iter().map(|c| (c.c.name.clone(), self.dir.join(format!("{}.log", c.c.name)))).collect(),
            active: true,
        };
        if let Ok(mut reg) = self.shared.registry.lock() {
            reg.insert((self.ns.clone(), self.name.clone()), record);
        }
        self.net = Some(net);
        Ok(())
    }

    /// Fetches inputs, writes volumes, resolves every container's plan.
    async fn try_setup(&mut self) {
        self.setup_attempts += 1;
        match self.setup().await {
            Ok(()) => self.setup_error = None,
            Err(e) => {
                let msg = format!("{e:#}");
                if self.setup_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(pod = %self.label(), "pod setup: {msg}");
                }
                for c in self.ctrs.iter_mut().filter(|c| c.plan.is_none()) {
                    c.state = State::Waiting { reason: "CreateContainerConfigError".into(), message: msg.clone() };
                }
                self.setup_error = Some(msg);
                if self.setup_attempts >= MAX_SETUP_ATTEMPTS {
                    self.failed = true;
                }
            }
        }
    }

    async fn fetch_inputs(&self) -> Result<Inputs> {
        let client = &self.shared.client;
        let mut inputs = Inputs::default();
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &self.ns);
        for name in pod_spec::referenced_configmaps(&self.pod) {
            if let Some(cm) = cms.get_opt(&name).await.with_context(|| format!("getting configmap {name}"))? {
                inputs.configmaps.insert(name, cm);
            }
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &self.ns);
        for name in pod_spec::referenced_secrets(&self.pod) {
            if let Some(s) = secrets.get_opt(&name).await.with_context(|| format!("getting secret {name}"))? {
                inputs.secrets.insert(name, s);
            }
        }
        // A claim's volume is the directory of the PersistentVolume it is bound to, as a kubelet mounts it.
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &self.ns);
        let volumes: Api<PersistentVolume> = Api::all(client.clone());
        for name in pod_spec::referenced_claims(&self.pod) {
            let claim = claims.get(&name).await.with_context(|| format!("getting claim {name}"))?;
            let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
            let Some(volume) = claim.spec.and_then(|s| s.volume_name).filter(|_| bound) else {
                bail!("claim {name} is not bound yet")
            };
            let pv = volumes.get(&volume).await.with_context(|| format!("getting volume {volume}"))?;
            let spec = pv.spec.unwrap_or_default();
            let path = match (spec.host_path, spec.local) {
                (Some(h), _) => PathBuf::from(h.path),
                (None, Some(l)) => PathBuf::from(l.path),
                _ => bail!("volume {volume} of claim {name} is neither hostPath nor local"),
            };
            std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
            inputs.claims.insert(name, path);
        }
        Ok(inputs)
    }

    async fn request_tokens(&self, inputs: &mut Inputs) -> Result<()> {
        let sas: Api<ServiceAccount> = Api::namespaced(self.shared.client.clone(), &self.ns);
        for need in pod_spec::token_needs(&self.pod) {
            if let Some(t) = self.inputs.tokens.get(&need.key) {
                inputs.tokens.insert(need.key.clone(), t.clone());
                continue;
            }
            let req = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: need.audience.iter().cloned().collect(),
                    expiration_seconds: need.expiration_seconds,
                    bound_object_ref: Some(BoundObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Pod".into()),
                        name: Some(self.name.clone()),
                        uid: Some(self.uid.clone()),
                    }),
                },
                ..Default::default()
            };
            let resp =
                sas.create_token_request(&need.service_account, &PostParams::default(), &req).await.with_context(
                    || format!("requesting a token for service account {}/{}", self.ns, need.service_account),
                )?;
            let token =
                resp.status.map(|s| s.token).filter(|t| !t.is_empty()).context("TokenRequest returned no token")?;
            inputs.tokens.insert(need.key, token);
        }
        Ok(())
    }

    async fn setup(&mut self) -> Result<()> {
        let mut inputs = self.fetch_inputs().await?;
        self.request_tokens(&mut inputs).await?;
        let ctx = self.ctx();
        self.volumes = pod_spec::materialize_volumes(&self.pod, &ctx, &inputs, &self.dir)?;
        self.inputs = inputs;
        self.last_resync = Instant::now();
        let Some(net) = &self.net else { bail!("no pod network") };
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].plan.is_some() {
                continue;
            }
            let c = self.ctrs[i].c.clone();
            let image = c.image.clone().unwrap_or_default();
            let program = self.shared.images.binary(&image).with_context(|| format!("container {}", c.name))?;
            let env = pod_spec::container_env(&self.pod, &ctx, &c, &self.inputs)
                .with_context(|| format!("container {} env", c.name))?;
            let args = pod_spec::container_argv(&c, &env);
            let mounts = pod_spec::container_mounts(&c, &self.volumes)
                .with_context(|| format!("container {} mounts", c.name))?;
            self.prepare_mount_points(&mounts)?;
            let cwd = c.working_dir.as_ref().map(PathBuf::from).filter(|d| d.is_dir());
            let spec = Spec {
                name: format!("{}/{}/{}", self.ns, self.name, c.name),
                program,
                args,
                env: Some(env.into_vec()),
                cwd,
                log: self.dir.join(format!("{}.log", c.name)),
                netns: Some(net.ns_path()),
                mounts,
            };
            self.ctrs[i].plan = Some(Plan { spec });
        }
        Ok(())
    }

    fn prepare_mount_points(&self, mounts: &[BindMount]) -> Result<()> {
        for (loc, is_file) in pod_spec::mount_point_locations(mounts) {
            if loc.starts_with(&self.shared.run.dir) {
                if !loc.exists() {
                    if is_file {
                        std::fs::File::create(&loc).with_context(|| format!("creating {}", loc.display()))?;
                    } else {
                        std::fs::create_dir_all(&loc).with_context(|| format!("creating {}", loc.display()))?;
                    }
                }
            } else {
                self.shared.run.ensure_host_path(&loc, is_file)?;
            }
        }
        Ok(())
    }

    /// One supervision step: init containers in order, then the app
    /// containers; reap exits, restart, probe.
    async fn step(&mut self) {
        let policy = self.pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into());
        if self.last_resync.elapsed() >= VOLUME_RESYNC {
            self.resync_volumes().await;
        }
        let pod_ip = IpAddr::V4(self.ip);
        let table = self.shared.table.clone();
        let mut blocked_by_init = false;
        for ctr in self.ctrs.iter_mut() {
            if ctr.init && ctr.done {
                continue;
            }
            if blocked_by_init {
                if !ctr.init {
                    ctr.state = State::Waiting { reason: "PodInitializing".into(), message: String::new() };
                }
                continue;
            }
            supervise(ctr, &policy, pod_ip, &table).await;
            // Init containers run one at a time, each to completion, first.
            if ctr.init && !ctr.done {
                blocked_by_init = true;
            }
        }
    }

    async fn resync_volumes(&mut self) {
        self.last_resync = Instant::now();
        match self.fetch_inputs().await {
            Ok(mut inputs) => {
                inputs.tokens = self.inputs.tokens.clone();
                match pod_spec::materialize_volumes(&self.pod, &self.ctx(), &inputs, &self.dir) {
                    Ok(v) => {
                        self.volumes = v;
                        self.inputs = inputs;
                    }
                    Err(e) => tracing::debug!(pod = %self.label(), "volume resync: {e:#}"),
                }
            }
            Err(e) => tracing::debug!(pod = %self.label(), "volume resync: {e:#}"),
        }
    }

    fn set_condition(&mut self, ty: &'static str, value: bool) {
        let now = Timestamp::now();
        match self.conditions.get(ty) {
            Some((v, _)) if *v == value => {}
            _ => {
                self.conditions.insert(ty, (value, now));
            }
        }
    }

    fn phase(&self) -> &'static str {
        if self.failed {
            return "Failed";
        }
        let init_failed = self.ctrs.iter().any(|c| {
            c.init && c.restart_at.is_none() && matches!(c.state, State::Terminated { exit_code, .. } if exit_code != 0)
        });
        if init_failed {
            return "Failed";
        }
        let apps: Vec<&Ctr> = self.ctrs.iter().filter(|c| !c.init).collect();
        let policy = self.pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
        let all_terminated = !apps.is_empty()
            && apps.iter().all(|c| matches!(c.state, State::Terminated { .. }) && c.restart_at.is_none());
        if all_terminated && policy != "Always" {
            let ok = apps.iter().all(|c| matches!(c.state, State::Terminated { exit_code: 0, .. }));
            return if ok { "Succeeded" } else { "Failed" };
        }
        if apps.iter().any(|c| c.proc.is_some() || c.restarts > 0) {
            return "Running";
        }
        "Pending"
    }

    fn status_json(&mut self) -> Value {
        let inits_done = self.ctrs.iter().filter(|c| c.init).all(|c| c.done);
        let all_ready = self.ctrs.iter().filter(|c| !c.init).all(|c| c.ready);
        self.set_condition("PodReadyToStartContainers", self.net.is_some());
        self.set_condition("Initialized", inits_done);
        self.set_condition("ContainersReady", all_ready);
        self.set_condition("Ready", all_ready);
        self.set_condition("PodScheduled", true);
        let conditions: Vec<Value> = self
            .conditions
            .iter()
            .map(|(ty, (v, t))| json!({"type": ty, "status": if *v { "True" } else { "False" }, "lastTransitionTime": t.to_string()}))
            .collect();
        let gw = self.shared.bridge.gateway().to_string();
        let mut status = json!({
            "phase": self.phase(),
            "hostIP": gw,
            "hostIPs": [{"ip": gw}],
            "startTime": self.start_time.to_string(),
            "conditions": conditions,
            "containerStatuses": self.ctrs.iter().filter(|c| !c.init).map(Ctr::status_json).collect::<Vec<_>>(),
        });
        if self.ctrs.iter().any(|c| c.init) {
            status["initContainerStatuses"] =
                json!(self.ctrs.iter().filter(|c| c.init).map(Ctr::status_json).collect::<Vec<_>>());
        }
        if self.net.is_some() {
            status["podIP"] = json!(self.ip.to_string());
            status["podIPs"] = json!([{"ip": self.ip.to_string()}]);
        }
        if let Some(err) = &self.setup_error {
            status["message"] = json!(err);
        }
        status
    }

    /// Patches the status if it changed since the last successful report.
    async fn report(&mut self) {
        let status = self.status_json();
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let patch = json!({"status": status});
        match self.pods().patch_status(&self.name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => self.last_status = Some(status),
            Err(e) => {
                tracing::debug!(pod = %self.label(), "status update failed (will retry): {e}")
            }
        }
    }

    /// Graceful stop on deletion, then delete the pod object.
    async fn terminate_and_delete(&mut self) {
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(Duration::from_secs(30))
            .min(MAX_GRACE);
        let started = Instant::now();
        // preStop sleep hooks run side by side, within the grace period; the processes serve meanwhile.
        let pre_stop = self
            .ctrs
            .iter()
            .filter(|c| c.proc.is_some())
            .filter_map(|c| c.c.lifecycle.as_ref()?.pre_stop.as_ref()?.sleep.as_ref())
            .map(|s| Duration::from_secs(s.seconds.max(0) as u64))
            .max()
            .unwrap_or_default()
            .min(grace);
        if !pre_stop.is_zero() {
            tracing::info!(pod = %self.label(), "node agent: preStop sleep {pre_stop:?}");
            tokio::time::sleep(pre_stop).await;
        }
        let grace = grace.saturating_sub(started.elapsed());
        tracing::info!(pod = %self.label(), "node agent: stopping pod (grace left {grace:?})");
        let stops = self.ctrs.iter_mut().filter_map(|c| c.proc.as_mut()).map(|p| p.stop(grace));
        futures::future::join_all(stops).await;
        for c in self.ctrs.iter_mut() {
            if let Some(mut p) = c.proc.take() {
                let st = p.try_status();
                c.state = terminated_state(st, &c.state);
            }
            c.ready = false;
            c.restart_at = None;
        }
        self.report().await;
        self.teardown();
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(self.uid.clone()), resource_version: None }),
            ..DeleteParams::default()
        };
        for attempt in 0..5 {
            match self.pods().delete(&self.name, &dp).await {
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => break,
                Err(e) => {
                    tracing::warn!(pod = %self.label(), "deleting pod object (attempt {attempt}): {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Immediate stop (pod force-deleted, or agent shutdown).
    async fn kill_all(&mut self) {
        let stops = self.ctrs.iter_mut().filter_map(|c| c.proc.as_mut()).map(|p| p.stop(Duration::ZERO));
        futures::future::join_all(stops).await;
        for c in self.ctrs.iter_mut() {
            c.proc = None;
        }
        self.teardown();
    }

    fn teardown(&mut self) {
        if let Some(net) = self.net.take() {
            net.delete();
        }
        if let Ok(mut reg) = self.shared.registry.lock()
            && let Some(r) = reg.get_mut(&(self.ns.clone(), self.name.clone()))
            && r.uid == self.uid
        {
            r.active = false;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Processes die with their `Proc`s; the network needs explicit removal.
        for c in self.ctrs.iter_mut() {
            c.proc = None;
        }
        self.teardown();
    }
}

fn terminated_state(st: Option<std::process::ExitStatus>, prev: &State) -> State {
    use std::os::unix::process::ExitStatusExt as _;
    let started_at = match prev {
        State::Running { started_at } => *started_at,
        State::Terminated { started_at, .. } => *started_at,
        State::Waiting { .. } => Timestamp::now(),
    };
    let (exit_code, signal) = match st {
        Some(st) => match (st.code(), st.signal()) {
            (Some(c), _) => (c, None),
            (None, Some(sig)) => (128 + sig, Some(sig)),
            (None, None) => (-1, None),
        },
        None => (137, Some(9)),
    };
    State::Terminated {
        exit_code,
        signal,
        reason: if exit_code == 0 { "Completed".into() } else { "Error".into() },
        started_at,
        finished_at: Timestamp::now(),
    }
}

/// Reaps, restarts and probes one container.
async fn supervise(ctr: &mut Ctr, policy: &str, pod_ip: IpAddr, table: &ProcTable) {
    // Reap.
    if let Some(proc) = ctr.proc.as_mut()
        && let Some(st) = proc.try_status()
    {
        let ran = proc.age();
        ctr.proc = None;
        let state = terminated_state(Some(st), &ctr.state);
        let ok = st.success();
        tracing::info!(container = %ctr.c.name, "container exited: {st}");
        ctr.ready = false;
        ctr.started = false;
        let restart =
            if ctr.init { !ok && policy != "Never" } else { policy == "Always" || (policy == "OnFailure" && !ok) };
        if ctr.init && ok {
            ctr.done = true;
        }
        if ran > Duration::from_secs(60) {
            ctr.backoff = BACKOFF_START;
        }
        if restart {
            ctr.restart_at = Some(Instant::now() + ctr.backoff);
            ctr.last_state = Some(state);
            ctr.state = State::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: format!("back-off {:?} restarting failed container {}", ctr.backoff, ctr.c.name),
            };
            ctr.backoff = (ctr.backoff * 2).min(BACKOFF_MAX);
        } else {
            ctr.state = state;
        }
    }
    // Start or restart.
    if ctr.proc.is_none() && !ctr.done {
        let first = matches!(ctr.state, State::Waiting { .. }) && ctr.last_state.is_none() && ctr.restart_at.is_none();
        let due = ctr.restart_at.is_some_and(|t| Instant::now() >= t);
        if (first || due)
            && let Some(plan) = &ctr.plan
        {
            match Proc::spawn(&plan.spec, table) {
                Ok(p) => {
                    if due {
                        ctr.restarts += 1;
                    }
                    ctr.container_id = format!("e2e://{}", p.pid());
                    ctr.proc = Some(p);
                    ctr.restart_at = None;
                    ctr.state = State::Running { started_at: Timestamp::now() };
                    ctr.startup = ProbeState::default();
                    ctr.liveness = ProbeState::default();
                    ctr.readiness = ProbeState::default();
                    ctr.started = ctr.c.startup_probe.is_none();
                }
                Err(e) => {
                    ctr.state = State::Waiting { reason: "RunContainerError".into(), message: format!("{e:#}") };
                    ctr.restart_at = Some(Instant::now() + ctr.backoff);
                    ctr.backoff = (ctr.backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
    let Some(proc) = ctr.proc.as_ref() else {
        return;
    };
    let age = proc.age();
    let now = Instant::now();
    // Startup probe gates the others.
    if !ctr.started {
        if let Some(p) = ctr.c.startup_probe.clone() {
            match run_if_due(&p, &mut ctr.startup, age, now, pod_ip, &ctr.c).await {
                Some(true) => ctr.started = true,
                Some(false) if ctr.startup.failures >= p.failure_threshold.unwrap_or(3).max(1) => {
                    tracing::info!(container = %ctr.c.name, "startup probe failed; killing container");
                    proc.signal(nix::sys::signal::Signal::SIGKILL);
                }
                _ => {}
            }
        }
        return;
    }
    if let Some(p) = ctr.c.liveness_probe.clone()
        && run_if_due(&p, &mut ctr.liveness, age, now, pod_ip, &ctr.c).await == Some(false)
        && ctr.liveness.failures >= p.failure_threshold.unwrap_or(3).max(1)
    {
        tracing::info!(container = %ctr.c.name, "liveness probe failed; killing container");
        proc.signal(nix::sys::signal::Signal::SIGKILL);
        return;
    }
    match ctr.c.readiness_probe.clone() {
        None => ctr.ready = !ctr.init,
        Some(p) => match run_if_due(&p, &mut ctr.readiness, age, now, pod_ip, &ctr.c).await {
            Some(true) if ctr.readiness.successes >= p.success_threshold.unwrap_or(1).max(1) => ctr.ready = true,
            Some(false) if ctr.readiness.failures >= p.failure_threshold.unwrap_or(3).max(1) => ctr.ready = false,
            _ => {}
        },
    }
}

/// Runs `probe` if it is due; returns its success, or None if not run.
async fn run_if_due(
    probe: &Probe,
    st: &mut ProbeState,
    age: Duration,
    now: Instant,
    pod_ip: IpAddr,
    c: &Container,
) -> Option<bool> {
    let initial = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
    if age < initial || st.next.is_some_and(|t| now < t) {
        return None;
    }
    st.next = Some(now + probe_period(probe));
    if probe.exec.is_some() {
        // The image's tools are not here; an exec probe passes while running.
        st.successes += 1;
        st.failures = 0;
        return Some(true);
    }
    match probe::run(probe, pod_ip, c).await {
        Outcome::Success => {
            st.successes += 1;
            st.failures = 0;
            Some(true)
        }
        Outcome::Failure(msg) => {
            tracing::debug!(container = %c.name, "probe failed: {msg}");
            st.failures += 1;
            st.successes = 0;
            Some(false)
        }
    }
}
