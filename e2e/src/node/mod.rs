//! A real Kubernetes node for the run, on this host: containerd (runc, the
//! CNI bridge on the run's bridge), the kubelet registering Node
//! `node_name`, kube-proxy (Service virtual IPs in iptables) and CoreDNS
//! (the cluster DNS). Pods run from the images of `make images` and `make
//! e2e-images`, imported into containerd. The host reaches pod IPs through the
//! bridge and Service IPs through a route to the bridge and kube-proxy's
//! rules, as a cluster's nodes do.
//!
//! Teardown (synchronous, also from `Drop`) stops the node's processes,
//! kills what runs in its pod cgroups and removes them, unmounts everything
//! under its directory, and removes kube-proxy's and the kubelet's iptables
//! chains; the bridge, and with it the routes and addresses added here, goes
//! with the run's network.

pub mod cgroups;
pub mod cleanup;
pub mod containerd;
pub mod coredns;
pub mod images;
pub mod kube_proxy;
pub mod kubelet;
pub mod pods;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Node as NodeObject;
use kube::Api;

use crate::controlplane::{self, ControlPlane, free_port};
use crate::kubeconfig;
use crate::netns::Bridge;
use crate::process::{Proc, ProcTable, run_sync, tail_file};
use crate::run::Run;
use crate::wait::{self, Check};

use self::containerd::Containerd;

/// The node's directory in the run directory.
pub const DIR: &str = "node";
/// How long the node may take to register and become Ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The running node.
pub struct Node {
    pub name: String,
    containerd: Option<Containerd>,
    kubelet: Option<Proc>,
    kube_proxy: Option<Proc>,
    coredns: Option<Proc>,
    /// The kubelet's root directory (`pods/<uid>/volumes/...`).
    pub kubelet_root: PathBuf,
    /// Container logs: `<namespace>_<pod>_<uid>/<container>/<restart>.log`.
    pub pod_logs: PathBuf,
    run_id: String,
    dir: PathBuf,
    torn_down: bool,
}

impl Node {
    /// Starts the node's components and waits until the Node is Ready and
    /// the cluster DNS answers.
    pub async fn start(run: &Run, table: &ProcTable, cp: &ControlPlane, bridge: &Bridge, name: &str) -> Result<Node> {
        let dir = run.dir.join(DIR);
        let logs = run.dir.join("logs");
        let mut node = Node {
            name: name.to_string(),
            containerd: None,
            kubelet: None,
            kube_proxy: None,
            coredns: None,
            kubelet_root: kubelet::root_dir(&dir.join("kubelet")),
            pod_logs: dir.join("pod-logs"),
            run_id: run.id.clone(),
            dir: dir.clone(),
            torn_down: false,
        };
        let images = images::all()?;
        let gateway = bridge.gateway();
        // Service IPs route to the bridge (kube-proxy DNATs them); the bridge
        // holds the cluster DNS address.
        run_sync("ip", &["route", "add", controlplane::SERVICE_CIDR, "dev", &bridge.name, "src", &gateway.to_string()])
            .context("routing the Service network to the bridge")?;
        run_sync("ip", &["addr", "add", &format!("{}/32", controlplane::CLUSTER_DNS), "dev", &bridge.name])
            .context("adding the cluster DNS address to the bridge")?;

        let ctr_paths = containerd::Paths::new(&dir.join("containerd"));
        let sandbox = images::reference(&images, "pause")?;
        let ctrd = Containerd::start(&ctr_paths, bridge, &sandbox, &logs.join("containerd.log"), table).await?;
        for image in &images {
            ctrd.import(&image.archive, table).await?;
        }
        tracing::info!("node: containerd up, {} images imported", images.len());

        let server = format!("https://{gateway}:{}", cp.api_port);
        let pki = &cp.pki;
        let kubelet_dir = dir.join("kubelet");
        std::fs::create_dir_all(&kubelet_dir).context("creating the kubelet dir")?;
        let cert = pki.client_cert("kubelet", &format!("system:node:{name}"), Some("system:nodes"))?;
        let kubelet_kc = kubelet_dir.join("kubelet.kubeconfig");
        kubeconfig::write(&kubelet_kc, &server, &pki.ca_pem, &cert, "kubelet")?;
        let resolv = kubelet_dir.join("resolv.conf");
        std::fs::write(&resolv, "").context("writing the kubelet's resolv.conf")?;
        let cgroup_root = cgroups::cgroup_root(&run.id);
        cgroups::create_root(&run.id)?;
        let ctrd_socket = ctrd.socket.clone();
        let cfg = kubelet::KubeletConfig {
            node_name: name,
            node_ip: gateway,
            port: free_port(gateway)?,
            healthz_port: free_port(Ipv4Addr::LOCALHOST)?,
            cgroup_root: &cgroup_root,
            containerd_socket: &ctrd_socket,
            client_ca: &pki.ca_cert,
            cluster_dns: controlplane::CLUSTER_DNS,
            pod_logs_dir: &node.pod_logs,
            volume_plugin_dir: &kubelet_dir.join("volume-plugins"),
            resolv_conf: &resolv,
        };
        node.containerd = Some(ctrd);
        node.kubelet = Some(kubelet::start(&kubelet_dir, &cfg, &kubelet_kc, &logs.join("kubelet.log"), table)?);

        let proxy_cert = pki.client_cert("kube-proxy", "system:kube-proxy", None)?;
        let proxy_kc = dir.join("kube-proxy.kubeconfig");
        kubeconfig::write(&proxy_kc, &server, &pki.ca_pem, &proxy_cert, "kube-proxy")?;
        let cluster_cidr = format!("{}/24", bridge.ip(0));
        let proxy_cfg = kube_proxy::ProxyConfig {
            node_name: name,
            kubeconfig: &proxy_kc,
            cluster_cidr: &cluster_cidr,
            healthz_port: free_port(Ipv4Addr::LOCALHOST)?,
            metrics_port: free_port(Ipv4Addr::LOCALHOST)?,
        };
        node.kube_proxy = Some(kube_proxy::start(&dir, &proxy_cfg, &logs.join("kube-proxy.log"), table)?);

        crate::apply::apply_all(&cp.admin, &crate::apply::parse_yaml(&coredns::rbac_yaml())?, "default").await?;
        let dns_cert = pki.client_cert("coredns", coredns::USER, None)?;
        let dns_kc = dir.join("coredns.kubeconfig");
        kubeconfig::write(&dns_kc, &server, &pki.ca_pem, &dns_cert, "coredns")?;
        let dns_health = free_port(Ipv4Addr::LOCALHOST)?;
        node.coredns = Some(coredns::start(
            &dir,
            controlplane::CLUSTER_DNS,
            &dns_kc,
            dns_health,
            &logs.join("coredns.log"),
            table,
        )?);

        node.wait_ready(&cp.admin, dns_health).await?;
        Ok(node)
    }

    async fn wait_ready(&mut self, admin: &kube::Client, dns_health: u16) -> Result<()> {
        let nodes: Api<NodeObject> = Api::all(admin.clone());
        let name = self.name.clone();
        wait::until(&format!("node {name} Ready"), READY_TIMEOUT, Duration::from_millis(500), || {
            let alive = self.check_alive();
            let nodes = nodes.clone();
            let name = name.clone();
            async move {
                alive?;
                let node = match nodes.get_opt(&name).await {
                    Ok(Some(n)) => n,
                    Ok(None) => return Ok(Check::Pending("not registered yet".into())),
                    Err(e) => return Ok(Check::Pending(e.to_string())),
                };
                let conds = node.status.and_then(|s| s.conditions).unwrap_or_default();
                Ok(match conds.iter().find(|c| c.type_ == "Ready") {
                    Some(c) if c.status == "True" => Check::Done(()),
                    Some(c) => Check::Pending(format!("Ready={}: {}", c.status, c.message.clone().unwrap_or_default())),
                    None => Check::Pending("no Ready condition yet".into()),
                })
            }
        })
        .await?;
        let health: SocketAddr = (Ipv4Addr::LOCALHOST, dns_health).into();
        wait::until("CoreDNS health", Duration::from_secs(30), Duration::from_millis(200), || async move {
            Ok(match crate::probe::http_get(health, "/health", &[], Duration::from_secs(2)).await {
                Ok((200, _)) => Check::Done(()),
                Ok((code, body)) => Check::Pending(format!("{code} {body}")),
                Err(e) => Check::Pending(format!("{e:#}")),
            })
        })
        .await
    }

    /// Fails with the log tail if a component has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        let procs = [self.kubelet.as_mut(), self.kube_proxy.as_mut(), self.coredns.as_mut()];
        let ctrd = self.containerd.as_mut().map(|c| &mut c.proc);
        for proc in procs.into_iter().chain([ctrd]).flatten() {
            if let Some(st) = proc.try_status() {
                bail!("{} exited ({st}); last log lines:\n{}", proc.name(), tail_file(proc.log_path(), 40));
            }
        }
        Ok(())
    }

    /// The host directory of pod `uid`'s emptyDir volume `volume`.
    pub fn empty_dir(&self, uid: &str, volume: &str) -> PathBuf {
        self.kubelet_root.join("pods").join(uid).join("volumes/kubernetes.io~empty-dir").join(volume)
    }

    /// The directory of pod `uid`'s cgroup (in the `pids` hierarchy), if it exists.
    pub fn pod_cgroup(&self, uid: &str) -> Option<PathBuf> {
        let root = Path::new("/sys/fs/cgroup/pids").join(cgroups::cgroup_root(&self.run_id).trim_start_matches('/'));
        let pod = format!("pod{uid}");
        [
            root.join("kubepods").join(&pod),
            root.join("kubepods/burstable").join(&pod),
            root.join("kubepods/besteffort").join(&pod),
        ]
        .into_iter()
        .find(|d| d.is_dir())
    }

    /// Stops everything and removes what the node left on the host. Idempotent.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        // The kubelet first, so that nothing restarts what is being removed.
        drop(self.kubelet.take());
        drop(self.coredns.take());
        drop(self.kube_proxy.take());
        drop(self.containerd.take());
        crate::run::kill_processes_mentioning(&format!("{}/", self.dir.display()));
        cleanup::sweep(&self.run_id, &self.dir);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.teardown();
    }
}
