//! The control plane of one run: etcd, kube-apiserver, kube-controller-manager
//! and kube-scheduler as local processes on free ports, with the run's PKI
//! and kubeconfigs. The apiserver listens on the bridge gateway address only
//! (its advertise address), where both pods and the root namespace reach it
//! and nothing outside the host does; it runs with RBAC and
//! service-account token signing; the controller-manager runs the controllers
//! the tests need with per-controller service-account credentials.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::kubeconfig;
use crate::pki::Pki;
use crate::process::{Proc, ProcTable, Spec, tail_file};
use crate::run::Run;
use crate::tools;
use crate::wait::{self, Check};

/// The service-account token issuer (and default audience).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Virtual Service IPs (kube-proxy on the real node DNATs them).
pub const SERVICE_CIDR: &str = "10.214.0.0/24";
/// The `kubernetes` Service's IP (the first of [`SERVICE_CIDR`]).
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 214, 0, 1);
/// The cluster DNS address (CoreDNS on the real node), in [`SERVICE_CIDR`].
pub const CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(10, 214, 0, 10);
/// Controllers the controller-manager runs.
pub const CONTROLLERS: &[&str] = &[
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "horizontal-pod-autoscaler-controller",
    "disruption-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "pod-garbage-collector-controller",
    // Binds PersistentVolumeClaims (the load balancer's durable queue) to PersistentVolumes.
    "persistentvolume-binder-controller",
    // Node readiness from the kubelet's heartbeats, and with it the removal of
    // the `not-ready` taint every new Node is registered with.
    "node-lifecycle-controller",
];

/// A running control plane.
pub struct ControlPlane {
    pub etcd: Proc,
    pub apiserver: Proc,
    /// How kube-apiserver was started (to start it again after an outage).
    api_spec: Spec,
    pub controller_manager: Proc,
    pub scheduler: Proc,
    /// The apiserver's secure port (on the bridge gateway address).
    pub api_port: u16,
    /// Admin kubeconfig (client certificate in `system:masters`).
    pub admin_kubeconfig: PathBuf,
    pub admin: kube::Client,
    /// The run's PKI (the node's certificates are issued from it).
    pub pki: Pki,
}

/// A free TCP port on `ip` (bound then released; a small race is accepted).
pub fn free_port(ip: Ipv4Addr) -> Result<u16> {
    let l = std::net::TcpListener::bind(SocketAddr::from((ip, 0))).context("finding a free port")?;
    Ok(l.local_addr().context("local_addr")?.port())
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// Fails with the log tail if `proc` has exited.
fn check_alive(proc: &mut Proc) -> Result<()> {
    if let Some(st) = proc.try_status() {
        bail!("{} exited ({st}); last log lines:\n{}", proc.name(), tail_file(proc.log_path(), 40));
    }
    Ok(())
}

impl ControlPlane {
    /// Starts everything and waits for etcd health and apiserver readiness.
    /// `gateway` is the bridge address pods use to reach the apiserver.
    pub async fn start(run: &Run, table: &ProcTable, gateway: Ipv4Addr) -> Result<ControlPlane> {
        let dir = &run.dir;
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).context("creating logs dir")?;
        let pki =
            Pki::generate(&dir.join("pki"), &["127.0.0.1".parse()?, gateway.into(), KUBERNETES_SERVICE_IP.into()])?;
        // The apiserver's identity towards kubelets (logs, exec, port-forward).
        let kubelet_client =
            pki.client_cert("apiserver-kubelet-client", "kube-apiserver-kubelet-client", Some("system:masters"))?;

        // etcd
        let etcd_client = free_port(Ipv4Addr::LOCALHOST)?;
        let etcd_peer = free_port(Ipv4Addr::LOCALHOST)?;
        let client_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        let etcd_spec = Spec::new("etcd", tools::tool(tools::ETCD)?, logs.join("etcd.log")).args([
            "--name".to_string(),
            "e2e".into(),
            "--data-dir".into(),
            p(&dir.join("etcd")),
            "--listen-client-urls".into(),
            client_url.clone(),
            "--advertise-client-urls".into(),
            client_url.clone(),
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url.clone(),
            "--initial-cluster".into(),
            format!("e2e={peer_url}"),
            "--unsafe-no-fsync".into(),
            "--log-level".into(),
            "warn".into(),
        ]);
        let mut etcd = Proc::spawn(&etcd_spec, table)?;
        let health: SocketAddr = ([127, 0, 0, 1], etcd_client).into();
        wait::until("etcd health", Duration::from_secs(30), Duration::from_millis(200), || {
            let alive = check_alive(&mut etcd);
            async move {
                alive?;
                Ok(match crate::probe::http_get(health, "/health", &[], Duration::from_secs(2)).await {
                    Ok((200, body)) if body.contains("true") => Check::Done(()),
                    Ok((code, body)) => Check::Pending(format!("{code} {body}")),
                    Err(e) => Check::Pending(format!("{e:#}")),
                })
            }
        })
        .await?;

        // kube-apiserver
        let api_port = free_port(gateway)?;
        let api_spec =
            Spec::new("kube-apiserver", tools::tool(tools::KUBE_APISERVER)?, logs.join("kube-apiserver.log")).args([
                format!("--etcd-servers={client_url}"),
                format!("--bind-address={gateway}"),
                format!("--secure-port={api_port}"),
                format!("--advertise-address={gateway}"),
                format!("--cert-dir={}", p(&dir.join("pki"))),
                format!("--tls-cert-file={}", p(&pki.apiserver.cert)),
                format!("--tls-private-key-file={}", p(&pki.apiserver.key)),
                format!("--client-ca-file={}", p(&pki.ca_cert)),
                "--authorization-mode=Node,RBAC".into(),
                format!("--service-account-issuer={ISSUER}"),
                format!("--service-account-key-file={}", p(&pki.sa_pub)),
                format!("--service-account-signing-key-file={}", p(&pki.sa_key)),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                "--allow-privileged=true".into(),
                format!("--kubelet-client-certificate={}", p(&kubelet_client.cert)),
                format!("--kubelet-client-key={}", p(&kubelet_client.key)),
                "--kubelet-preferred-address-types=InternalIP".into(),
                "--profiling=false".into(),
                "--v=1".into(),
            ]);
        let mut apiserver = Proc::spawn(&api_spec, table)?;

        let admin_cert = pki.client_cert("admin", "otlp-lb-e2e-admin", Some("system:masters"))?;
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        let local_server = format!("https://{gateway}:{api_port}");
        kubeconfig::write(&admin_kubeconfig, &local_server, &pki.ca_pem, &admin_cert, "admin")?;
        let admin = kubeconfig::client(&admin_kubeconfig).await?;
        wait::until("kube-apiserver /readyz", Duration::from_secs(120), Duration::from_millis(500), || {
            let alive = check_alive(&mut apiserver);
            let admin = admin.clone();
            async move {
                alive?;
                let req = http::Request::get("/readyz").body(Vec::new()).context("building /readyz request")?;
                Ok(match admin.request_text(req).await {
                    Ok(body) if body.trim() == "ok" => Check::Done(()),
                    Ok(body) => Check::Pending(body),
                    Err(e) => Check::Pending(format!("{e}")),
                })
            }
        })
        .await?;

        // kube-controller-manager
        let kcm_cert = pki.client_cert("controller-manager", "system:kube-controller-manager", None)?;
        let kcm_kubeconfig = dir.join("controller-manager.kubeconfig");
        kubeconfig::write(&kcm_kubeconfig, &local_server, &pki.ca_pem, &kcm_cert, "system:kube-controller-manager")?;
        let kcm_spec = Spec::new(
            "kube-controller-manager",
            tools::tool(tools::KUBE_CONTROLLER_MANAGER)?,
            logs.join("kube-controller-manager.log"),
        )
        .args([
            format!("--kubeconfig={}", p(&kcm_kubeconfig)),
            format!("--authentication-kubeconfig={}", p(&kcm_kubeconfig)),
            format!("--authorization-kubeconfig={}", p(&kcm_kubeconfig)),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", free_port(Ipv4Addr::LOCALHOST)?),
            format!("--controllers={}", CONTROLLERS.join(",")),
            format!("--root-ca-file={}", p(&pki.ca_cert)),
            format!("--service-account-private-key-file={}", p(&pki.sa_key)),
            "--use-service-account-credentials=true".into(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--cluster-name=otlp-lb-e2e".into(),
            "--leader-elect=false".into(),
            "--v=1".into(),
        ]);
        let controller_manager = Proc::spawn(&kcm_spec, table)?;

        // kube-scheduler
        let sched_cert = pki.client_cert("scheduler", "system:kube-scheduler", None)?;
        let sched_kubeconfig = dir.join("scheduler.kubeconfig");
        kubeconfig::write(&sched_kubeconfig, &local_server, &pki.ca_pem, &sched_cert, "system:kube-scheduler")?;
        let sched_spec =
            Spec::new("kube-scheduler", tools::tool(tools::KUBE_SCHEDULER)?, logs.join("kube-scheduler.log")).args([
                format!("--kubeconfig={}", p(&sched_kubeconfig)),
                format!("--authentication-kubeconfig={}", p(&sched_kubeconfig)),
                format!("--authorization-kubeconfig={}", p(&sched_kubeconfig)),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", free_port(Ipv4Addr::LOCALHOST)?),
                "--leader-elect=false".into(),
                "--v=1".into(),
            ]);
        let scheduler = Proc::spawn(&sched_spec, table)?;

        Ok(ControlPlane {
            etcd,
            apiserver,
            api_spec,
            controller_manager,
            scheduler,
            api_port,
            admin_kubeconfig,
            admin,
            pki,
        })
    }

    /// Kills kube-apiserver (SIGKILL, as a crash would) and waits for it to exit: every client's connection
    /// breaks and new ones are refused until [`ControlPlane::respawn_apiserver`].
    pub fn kill_apiserver(&mut self) -> Result<()> {
        self.apiserver.signal(nix::sys::signal::Signal::SIGKILL);
        for _ in 0..100 {
            if self.apiserver.try_status().is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("kube-apiserver did not exit within 5 s of SIGKILL")
    }

    /// Starts kube-apiserver again with its original arguments (same port, certificates and etcd); its
    /// readiness is the caller's to wait for.
    pub fn respawn_apiserver(&mut self, table: &ProcTable) -> Result<()> {
        self.apiserver = Proc::spawn(&self.api_spec, table)?;
        Ok(())
    }

    /// Fails if any component has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for proc in [&mut self.etcd, &mut self.apiserver, &mut self.controller_manager, &mut self.scheduler] {
            check_alive(proc)?;
        }
        Ok(())
    }
}
