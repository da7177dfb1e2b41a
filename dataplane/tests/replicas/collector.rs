//! The contrast tier of the replicas test: Collectors (`otelcol-lb` from `make tools`) whose `load_balancing`
//! exporter finds the pool with its `dns` resolver, each as one replica. Every replica runs in a user and mount
//! namespace of its own (`unshare --map-root-user --mount --propagation private`, which needs no privileges where
//! unprivileged user namespaces are allowed) with the test's hosts file bind-mounted over `/etc/hosts`, where
//! `backends.test` names the active backends' loopback addresses (all on one port). The pool changes by rewriting
//! that file in place, so the bind mount keeps showing it. Go's resolver re-reads the file when its modification
//! time changes, checking at most every 5s, and the exporter resolves every second: each replica sees a change on
//! its own, within 6s of the write (2–3s in the test's runs), and that delay is printed. The Collector has no
//! draining: a backend leaves the ring when it leaves the file. A replica's namespace, and so its mount, ends with
//! its process, which is killed when the tier is dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::common::lb::free_port;
use super::common::procs::Guard;
use super::pools::{hosts_and_port, otelcol};
use super::tier::Tier;

/// The name the replicas resolve for the pool.
const HOSTNAME: &str = "backends.test";
/// How long a replica may take to see a pool change: Go's 5s check of the hosts file, the 1s resolver interval.
const SEEN_WITHIN: Duration = Duration::from_secs(15);
/// Binds the hosts file (`$0`) over `/etc/hosts` in the new mount namespace, then becomes the Collector.
const ENTER: &str = r#"mount --bind "$0" /etc/hosts && exec "$1" --config="$2""#;

struct Replica {
    proc: Guard,
    grpc: SocketAddr,
    metrics: SocketAddr,
}

pub struct CollectorTier {
    dir: tempfile::TempDir,
    hosts: PathBuf,
    port: u16,
    /// Backends in the hosts file now.
    active: usize,
    replicas: Vec<Replica>,
    /// One per pool change: how long until every replica's exporter used the new pool.
    changes: Vec<JoinHandle<Option<Duration>>>,
}

impl CollectorTier {
    /// `replicas` Collectors resolving `active` by name; returns once each uses that pool.
    pub fn start(replicas: usize, active: &[SocketAddr]) -> CollectorTier {
        let dir = tempfile::tempdir().expect("temp dir");
        let hosts = dir.path().join("hosts");
        let (_, port) = hosts_and_port(active);
        let mut tier = CollectorTier { dir, hosts, port, active: 0, replicas: Vec::new(), changes: Vec::new() };
        tier.write_hosts(active);
        for i in 0..replicas {
            let (grpc, metrics) = (loopback(free_port()), loopback(free_port()));
            std::fs::write(tier.file(i, "yaml"), tier.config(grpc, metrics)).expect("write the Collector's config");
            let proc = tier.spawn(i);
            tier.replicas.push(Replica { proc, grpc, metrics });
            tier.wait_ready(i);
        }
        let own = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        assert!(!own.contains(HOSTNAME), "the hosts file shows only inside the Collectors' mount namespaces");
        tier
    }

    fn file(&self, replica: usize, ext: &str) -> PathBuf {
        self.dir.path().join(format!("balancer-{replica}.{ext}"))
    }

    fn config(&self, grpc: SocketAddr, metrics: SocketAddr) -> String {
        format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: \"{grpc}\"}}\n\
             exporters:\n  load_balancing:\n    routing_key: traceID\n    protocol:\n      otlp: \
             {{timeout: 2s, tls: {{insecure: true}}, sending_queue: {{enabled: false}}}}\n    resolver:\n      \
             dns: {{hostname: {HOSTNAME}, port: \"{}\", interval: 1s, timeout: 1s}}\n\
             service:\n  telemetry:\n    metrics:\n      level: detailed\n      readers:\n        - pull: \
             {{exporter: {{prometheus: {{host: \"{}\", port: {}}}}}}}\n  pipelines:\n    traces: \
             {{receivers: [otlp], exporters: [load_balancing]}}\n",
            self.port,
            metrics.ip(),
            metrics.port()
        )
    }

    /// Rewrites the hosts file in place (truncate and write: the bind mounts show its one inode).
    fn write_hosts(&mut self, active: &[SocketAddr]) {
        let (ips, port) = hosts_and_port(active);
        assert_eq!(port, self.port, "the pool keeps its port");
        let lines: String = ips.iter().map(|ip| format!("{ip} {HOSTNAME}\n")).collect();
        std::fs::write(&self.hosts, format!("127.0.0.1 localhost\n{lines}")).expect("rewrite the hosts file");
        self.active = active.len();
    }

    /// Starts replica `i` in a new user and mount namespace; its log grows over restarts.
    fn spawn(&self, i: usize) -> Guard {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.file(i, "log")).expect("log file");
        let child = Command::new("unshare")
            .args(["--map-root-user", "--mount", "--propagation", "private", "sh", "-c", ENTER])
            .arg(&self.hosts)
            .arg(otelcol())
            .arg(self.file(i, "yaml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start unshare");
        Guard(child)
    }

    /// Waits until replica `i` takes OTLP and its exporter uses the pool in the hosts file.
    fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let r = &mut self.replicas[i];
        while TcpStream::connect(r.grpc).is_err() || backends_in_use(r.metrics) != Some(self.active) {
            let exited = r.proc.0.try_wait().ok().flatten();
            let log = || std::fs::read_to_string(self.dir.path().join(format!("balancer-{i}.log"))).unwrap_or_default();
            assert!(exited.is_none(), "Collector replica {i} exited ({exited:?}):\n{}", log());
            assert!(Instant::now() < deadline, "Collector replica {i} not ready with the pool in 30s:\n{}", log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// For each pool change: how long until every replica's exporter used the new pool (`None`: not within
    /// `SEEN_WITHIN`).
    pub fn pool_changes(&mut self) -> Vec<Option<Duration>> {
        self.changes.drain(..).map(|w| w.join().ok().flatten()).collect()
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The exporter's `otelcol_loadbalancer_num_backends`, read from the Collector's Prometheus endpoint.
fn backends_in_use(metrics: SocketAddr) -> Option<usize> {
    let mut s = TcpStream::connect_timeout(&metrics, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    // HTTP/1.0: the answer is not chunked, and ends with the connection.
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {metrics}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let line = text.lines().find(|l| l.starts_with("otelcol_loadbalancer_num_backends{"))?;
    line.rsplit(' ').next()?.parse::<f64>().ok().map(|n| n as usize)
}

/// Polls every replica until each has used `want` backends: the time that took, or `None` after `SEEN_WITHIN`.
fn watch(metrics: Vec<SocketAddr>, want: usize) -> Option<Duration> {
    let since = Instant::now();
    let mut seen = vec![false; metrics.len()];
    while since.elapsed() < SEEN_WITHIN {
        for (m, s) in metrics.iter().zip(&mut seen) {
            *s = *s || backends_in_use(*m) == Some(want);
        }
        if seen.iter().all(|s| *s) {
            return Some(since.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

impl Tier for CollectorTier {
    fn urls(&self) -> Vec<String> {
        self.replicas.iter().map(|r| format!("http://{}", r.grpc)).collect()
    }

    /// The Collector has no draining: `draining` backends are simply gone from the name.
    fn set_pool(&mut self, active: &[SocketAddr], _draining: &[SocketAddr]) {
        self.write_hosts(active);
        let metrics = self.replicas.iter().map(|r| r.metrics).collect();
        let want = active.len();
        self.changes.push(std::thread::spawn(move || watch(metrics, want)));
    }

    fn restart(&mut self, i: usize) {
        let r = &mut self.replicas[i];
        r.proc.signal("TERM");
        assert!(r.proc.wait_exit(Duration::from_secs(10)).is_some(), "Collector replica {i} stops on SIGTERM");
        let proc = self.spawn(i);
        self.replicas[i].proc = proc;
        self.wait_ready(i);
    }
}

impl Drop for CollectorTier {
    fn drop(&mut self) {
        // Kill the replicas (and so end their namespaces) before the directory with the hosts file goes.
        self.replicas.clear();
    }
}
