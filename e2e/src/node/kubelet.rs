//! The node's kubelet: its configuration (cgroup v1 with the cgroupfs driver,
//! pod cgroups under the run's own cgroup root, the cluster DNS, no image
//! garbage collection or disk eviction that would remove the imported
//! images, client-certificate authentication of the apiserver), its root
//! directory bind-mounted onto itself and made rshared (volume mounts must
//! propagate into containers), and the process.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::process::{Proc, ProcTable, Spec};
use crate::tools;

/// The kubelet's settings for one run.
pub struct KubeletConfig<'a> {
    pub node_name: &'a str,
    pub node_ip: Ipv4Addr,
    pub port: u16,
    pub healthz_port: u16,
    pub cgroup_root: &'a str,
    pub containerd_socket: &'a Path,
    pub client_ca: &'a Path,
    pub cluster_dns: Ipv4Addr,
    pub pod_logs_dir: &'a Path,
    pub volume_plugin_dir: &'a Path,
    pub resolv_conf: &'a Path,
}

/// `KubeletConfiguration` (kubelet.config.k8s.io/v1beta1) as JSON.
pub fn config_json(c: &KubeletConfig<'_>) -> String {
    serde_json::json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        // The host has cgroup v1 only and no systemd.
        "failCgroupV1": false,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": c.cgroup_root,
        "containerRuntimeEndpoint": format!("unix://{}", c.containerd_socket.display()),
        "address": c.node_ip.to_string(),
        "port": c.port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": c.healthz_port,
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"enabled": true},
            "x509": {"clientCAFile": c.client_ca},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": "cluster.local",
        "clusterDNS": [c.cluster_dns.to_string()],
        "resolvConf": c.resolv_conf,
        "podLogsDir": c.pod_logs_dir,
        "volumePluginDir": c.volume_plugin_dir,
        // Images are imported, never pulled: nothing may delete them, and a
        // nearly full shared disk must not evict the tests' pods.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "0%", "nodefs.inodesFree": "0%", "imagefs.available": "0%", "imagefs.inodesFree": "0%"},
        "serializeImagePulls": false,
        "failSwapOn": false,
        "nodeStatusUpdateFrequency": "2s",
        "syncFrequency": "5s",
        "fileCheckFrequency": "5s",
        "rotateCertificates": false,
        "serverTLSBootstrap": false,
        "staticPodPath": "",
        "localStorageCapacityIsolation": true,
        "containerLogMaxSize": "50Mi",
    })
    .to_string()
}

/// Makes `dir` a mount point of its own and rshared, so that the kubelet's
/// volume mounts under it reach the containers' mount namespaces.
pub fn make_shared_root(dir: &Path) -> Result<()> {
    use nix::mount::{MsFlags, mount};
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .with_context(|| format!("bind-mounting {} onto itself", dir.display()))?;
    mount(None::<&str>, dir, None::<&str>, MsFlags::MS_SHARED | MsFlags::MS_REC, None::<&str>)
        .with_context(|| format!("making {} rshared", dir.display()))?;
    Ok(())
}

/// Starts the kubelet with `config` written to `dir/config.json`.
pub fn start(dir: &Path, config: &KubeletConfig<'_>, kubeconfig: &Path, log: &Path, table: &ProcTable) -> Result<Proc> {
    let root = dir.join("root");
    make_shared_root(&root)?;
    for d in [config.pod_logs_dir, config.volume_plugin_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let file = dir.join("config.json");
    std::fs::write(&file, config_json(config)).context("writing the kubelet config")?;
    let spec = Spec::new("kubelet", tools::tool(tools::KUBELET)?, log).args([
        format!("--config={}", file.display()),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--root-dir={}", root.display()),
        format!("--cert-dir={}", dir.join("pki").display()),
        format!("--hostname-override={}", config.node_name),
        format!("--node-ip={}", config.node_ip),
        "--v=1".into(),
    ]);
    Proc::spawn(&spec, table)
}

/// The kubelet's root directory inside its run directory `dir`.
pub fn root_dir(dir: &Path) -> PathBuf {
    dir.join("root")
}
