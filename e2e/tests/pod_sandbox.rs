//! The harness's pod sandbox without Kubernetes: a run's bridge, pod network
//! namespaces with their own IPs, processes with private bind mounts, kill on
//! drop, and a teardown that leaves nothing behind. Needs root and iproute2.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use e2e::netns::{self, Bridge};
use e2e::process::{BindMount, Proc, ProcTable, Spec, run_captured};
use e2e::run::Run;

/// Removes the run's network and files even if the test fails.
struct Cleanup<'a>(&'a Run);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        netns::sweep(&self.0.id);
        self.0.finish(true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_network_and_mounts() -> anyhow::Result<()> {
    e2e::init_logging();
    let run = Run::begin().await?;
    let id = run.id.clone();
    {
        let _cleanup = Cleanup(&run);
        let table = ProcTable::default();
        let bridge = Bridge::create(&run.id)?;
        let a = bridge.add_pod(1, bridge.ip(2))?;
        let b = bridge.add_pod(2, bridge.ip(3))?;

        // Each pod sees its own address on eth0.
        for pod in [&a, &b] {
            let spec = Spec::new("ip addr", "ip", PathBuf::new())
                .args(["-4", "-o", "addr", "show", "eth0"])
                .netns(pod.ns_path());
            let out = run_captured(&spec, &table, Duration::from_secs(10)).await?.check("ip addr")?;
            assert!(out.stdout.contains(&format!("{}/24", pod.ip)), "{}", out.stdout);
        }

        // A pod reaches the root namespace on the gateway through the bridge.
        let listener = tokio::net::TcpListener::bind((bridge.gateway(), 0)).await?;
        let port = listener.local_addr()?.port();
        let accept = tokio::spawn(async move {
            let (mut s, peer) = listener.accept().await?;
            let mut buf = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut s, &mut buf).await?;
            anyhow::Ok((peer, buf))
        });
        let script = format!("echo hello >/dev/tcp/{}/{port}", bridge.gateway());
        let spec = Spec::new("bash /dev/tcp", "bash", PathBuf::new()).args(["-c", script.as_str()]).netns(b.ns_path());
        run_captured(&spec, &table, Duration::from_secs(10)).await?.check("connect to gateway")?;
        let (peer, msg) =
            tokio::time::timeout(Duration::from_secs(10), accept).await.context("accept timed out")???;
        assert_eq!(peer.ip(), std::net::IpAddr::V4(b.ip));
        assert_eq!(msg.trim(), "hello");

        // Bind mounts are private to the process; the mount point is
        // created on the host and removed at the end of the run.
        let src = run.dir.join("conf");
        std::fs::create_dir_all(&src)?;
        std::fs::write(src.join("config.yaml"), "answer: 42\n")?;
        let dst = PathBuf::from(format!("/run/otlp-lb-e2e-test-{id}/conf"));
        run.ensure_host_path(&dst, false)?;
        let mut spec = Spec::new("cat", "cat", PathBuf::new())
            .args([dst.join("config.yaml").display().to_string()])
            .netns(a.ns_path());
        spec.mounts = vec![BindMount { src: src.clone(), dst: dst.clone(), read_only: true }];
        let out = run_captured(&spec, &table, Duration::from_secs(10)).await?.check("cat in mount")?;
        assert_eq!(out.stdout, "answer: 42\n");
        assert!(!dst.join("config.yaml").exists(), "the bind mount leaked into the host mount namespace");
        let mut spec = Spec::new("touch", "touch", PathBuf::new()).args([dst.join("x").display().to_string()]);
        spec.mounts = vec![BindMount { src, dst: dst.clone(), read_only: true }];
        let out = run_captured(&spec, &table, Duration::from_secs(10)).await?;
        assert!(!out.success(), "read-only mount was writable");

        // Dropping a Proc kills its process group.
        let log = run.dir.join("sleep.log");
        let proc = Proc::spawn(&Spec::new("sleep", "sleep", &log).args(["300"]).netns(a.ns_path()), &table)?;
        let pid = proc.pid();
        assert!(PathBuf::from(format!("/proc/{pid}")).exists());
        drop(proc);
        e2e::wait::until("sleep to die", Duration::from_secs(5), Duration::from_millis(50), || async move {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let gone = state.is_empty() || state.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            Ok(if gone { e2e::wait::Check::Done(()) } else { e2e::wait::Check::Pending(state) })
        })
        .await?;
        assert!(table.groups().is_empty());
        a.delete();
        assert!(!netns::ns_path(&a.ns).exists());
        bridge.delete();
    }
    // Nothing of the run is left.
    assert!(!netns::owner_ids().contains(&id), "leftover netns/interfaces of run {id}");
    assert!(!PathBuf::from(format!("/run/otlp-lb-e2e-test-{id}")).exists(), "leftover mount point");
    Ok(())
}
