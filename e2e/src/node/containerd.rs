//! containerd for the run's node: its config (runc, the CRI plugin with the
//! CNI bridge, host-local and portmap plugins on the run's bridge, the
//! locally built pause image as the sandbox image, pod network namespaces
//! under its own state directory), the daemon itself with its own root and
//! state directories in the run directory, and the import of the images the
//! pods run (`ctr images import`; nothing is ever pulled).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::Bridge;
use crate::process::{Proc, ProcTable, Spec, run_captured, tail_file};
use crate::wait::{self, Check};

/// Where the CNI plugins are installed (`containernetworking-plugins`).
pub const CNI_BIN_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];

/// The daemon and its paths.
pub struct Containerd {
    pub proc: Proc,
    /// The CRI/containerd socket.
    pub socket: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
}

/// containerd's paths inside `dir`.
pub struct Paths {
    pub dir: PathBuf,
    pub socket: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path) -> Paths {
        Paths { dir: dir.to_path_buf(), socket: dir.join("containerd.sock") }
    }
}

fn cni_bin_dir() -> Result<&'static str> {
    CNI_BIN_DIRS.iter().copied().find(|d| Path::new(d).join("bridge").exists()).with_context(|| {
        format!("no CNI bridge plugin in {}: apt-get install containernetworking-plugins", CNI_BIN_DIRS.join(" or "))
    })
}

/// The CNI network of the node: pods on the run's bridge, addresses from its
/// /24 (the gateway is the bridge's own address), hostPorts through portmap.
pub fn cni_conflist(bridge: &Bridge, ipam_dir: &Path) -> String {
    let gw = bridge.gateway();
    let subnet = Ipv4Addr::new(bridge.subnet[0], bridge.subnet[1], bridge.subnet[2], 0);
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "otlp-lb-e2e",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge.name,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir,
                    "ranges": [[{"subnet": format!("{subnet}/24"), "gateway": gw.to_string()}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    })
    .to_string()
}

/// containerd's configuration (version 2, containerd 1.6 and later).
pub fn config_toml(paths: &Paths, cni_bin: &str, sandbox_image: &str) -> String {
    let d = paths.dir.display();
    let sock = paths.socket.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{d}/net.d"
"#
    )
}

impl Containerd {
    /// Writes the config and CNI network, starts containerd and waits for
    /// its socket to answer.
    pub async fn start(
        paths: &Paths,
        bridge: &Bridge,
        sandbox_image: &str,
        log: &Path,
        table: &ProcTable,
    ) -> Result<Containerd> {
        let cni_bin = cni_bin_dir()?;
        let net_d = paths.dir.join("net.d");
        std::fs::create_dir_all(&net_d).with_context(|| format!("creating {}", net_d.display()))?;
        let conflist = cni_conflist(bridge, &paths.dir.join("cni-ipam"));
        std::fs::write(net_d.join("10-otlp-lb-e2e.conflist"), conflist).context("writing the CNI network")?;
        let config = paths.dir.join("config.toml");
        std::fs::write(&config, config_toml(paths, cni_bin, sandbox_image)).context("writing containerd config")?;
        let program = which("containerd").context("containerd is required: apt-get install containerd runc")?;
        which("runc").context("runc is required: apt-get install runc")?;
        let spec = Spec::new("containerd", program, log).args(["--config".to_string(), config.display().to_string()]);
        let mut proc = Proc::spawn(&spec, table)?;
        let socket = paths.socket.clone();
        wait::until("containerd socket", Duration::from_secs(30), Duration::from_millis(200), || {
            let exited = proc.try_status();
            let socket = socket.clone();
            async move {
                if let Some(st) = exited {
                    bail!("containerd exited ({st}); last log lines:\n{}", tail_file(log, 30));
                }
                Ok(if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                    Check::Done(())
                } else {
                    Check::Pending(format!("{} not accepting yet", socket.display()))
                })
            }
        })
        .await?;
        Ok(Containerd {
            proc,
            socket: paths.socket.clone(),
            root: paths.dir.join("root"),
            state: paths.dir.join("state"),
        })
    }

    /// Imports an image archive (OCI or docker format) into the CRI namespace.
    pub async fn import(&self, archive: &Path, table: &ProcTable) -> Result<()> {
        let spec = Spec::new("ctr images import", "ctr", PathBuf::new()).args([
            "--address".to_string(),
            self.socket.display().to_string(),
            "--namespace".into(),
            "k8s.io".into(),
            "images".into(),
            "import".into(),
            archive.display().to_string(),
        ]);
        run_captured(&spec, table, Duration::from_secs(120))
            .await?
            .check(&format!("importing {} into containerd", archive.display()))?;
        Ok(())
    }
}

/// The full path of `program` on `PATH` (and the sbin directories).
pub fn which(program: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("`{program}` not found on PATH"))
}
