//! The otlp-lb tier of the replicas test: otlp-lb processes with a static pool in a file each one polls, with or
//! without `peers:`, acknowledging once delivered or (`ack: queued`) once in each replica's log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::common::lb::{Lb, free_port};
use super::tier::Tier;

pub const TOKEN: &str = "replicas-test-token";

/// What one replica's configuration says of the pool.
pub struct PoolFile<'a> {
    pub active: &'a [SocketAddr],
    pub draining: &'a [SocketAddr],
}

fn quoted<T: std::fmt::Display>(list: &[T]) -> String {
    list.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ")
}

/// How the tier runs: with `peers:` or without, and whether requests are acknowledged once delivered or once in
/// each replica's log (`ack: queued`).
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    pub peers: bool,
    pub queued: bool,
}

impl Mode {
    pub const WITHOUT_PEERS: Mode = Mode { peers: false, queued: false };
    pub const WITH_PEERS: Mode = Mode { peers: true, queued: false };
    pub const QUEUED_WITH_PEERS: Mode = Mode { peers: true, queued: true };
}

/// The configuration of replica `me`: its own ports, the pool, (with `peers`) every replica's peer address, and
/// (with `queue`) the directory of its log.
fn config(
    addrs: (SocketAddr, SocketAddr, SocketAddr),
    pool: &PoolFile<'_>,
    peers: Option<(&[u16], usize)>,
    queue: Option<&Path>,
) -> String {
    let (grpc, http, telemetry) = addrs;
    let peers = match peers {
        Some((ports, me)) => {
            let all: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
            format!(
                "peers:\n  endpoint: \"127.0.0.1:{}\"\n  addresses: [{}]\n  auth: {{bearer_token: \"{TOKEN}\"}}\n  \
                 switch_delay: 3s\n  exchange_timeout: 2s\n",
                ports[me],
                quoted(&all)
            )
        }
        None => String::new(),
    };
    let queue = queue.map_or(String::new(), |dir| {
        format!("  sending_queue: {{ack: queued, storage: \"{}\", fsync: never}}\n", dir.display())
    });
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: \"{grpc}\"}}\n      http: {{endpoint: \"{http}\"}}\n\
         loadbalancing:\n  protocol:\n    otlp: {{timeout: 2s, tls: {{insecure: true}}}}\n  resolver:\n    \
         static: {{hostnames: [{}], draining: [{}]}}\n{queue}\
         routing:\n  affinity_window: 20s\n\
         telemetry:\n  metrics: {{address: \"{telemetry}\"}}\ndrain_timeout: 5s\n{peers}",
        quoted(pool.active),
        quoted(pool.draining),
    )
}

pub struct Cluster {
    pub lbs: Vec<Lb>,
    pub peer_ports: Option<Vec<u16>>,
    /// With `ack: queued`: replica `i`'s log is in `<queues>/<i>`, kept across its restarts.
    queues: Option<tempfile::TempDir>,
}

impl Cluster {
    pub fn start(replicas: usize, pool: &PoolFile<'_>, mode: Mode) -> Cluster {
        Cluster::start_n(replicas, 0, pool, mode)
    }

    /// `replicas` replicas; with peers, their list also names `stopped` replicas that do not run.
    pub fn start_n(replicas: usize, stopped: usize, pool: &PoolFile<'_>, mode: Mode) -> Cluster {
        let listed = replicas + stopped;
        let peer_ports: Option<Vec<u16>> = mode.peers.then(|| (0..listed).map(|_| free_port()).collect());
        let queues = mode.queued.then(|| tempfile::tempdir().expect("queue dir"));
        let mut cluster = Cluster { lbs: Vec::new(), peer_ports, queues };
        for me in 0..replicas {
            let (peers, queue) = (cluster.peers(me), cluster.queue(me));
            cluster.lbs.push(Lb::start_config(|g, h, t| config((g, h, t), pool, peers, queue.as_deref()), &[]));
        }
        cluster
    }

    fn peers(&self, me: usize) -> Option<(&[u16], usize)> {
        self.peer_ports.as_deref().map(|p| (p, me))
    }

    fn queue(&self, me: usize) -> Option<PathBuf> {
        self.queues.as_ref().map(|d| d.path().join(me.to_string()))
    }

    /// Rewrites every replica's configuration file; each replica notices on its own poll.
    pub fn write_pool(&self, pool: &PoolFile<'_>) {
        for (me, lb) in self.lbs.iter().enumerate() {
            let text = config((lb.grpc, lb.http, lb.telemetry), pool, self.peers(me), self.queue(me).as_deref());
            std::fs::write(&lb.config, text).expect("rewrite config");
        }
    }

    /// Each replica's `otlp_lb_peer*` series, one line per replica.
    pub fn peer_metrics(&self) -> Vec<String> {
        let lines =
            |lb: &Lb| lb.metrics().lines().filter(|l| l.starts_with("otlp_lb_peer")).collect::<Vec<_>>().join(" | ");
        self.lbs.iter().enumerate().map(|(i, lb)| format!("replica {i}: {}", lines(lb))).collect()
    }
}

impl Tier for Cluster {
    fn urls(&self) -> Vec<String> {
        self.lbs.iter().map(Lb::grpc_url).collect()
    }

    fn set_pool(&mut self, active: &[SocketAddr], draining: &[SocketAddr]) {
        self.write_pool(&PoolFile { active, draining });
    }

    fn restart(&mut self, i: usize) {
        let lb = &mut self.lbs[i];
        lb.signal("TERM");
        assert!(lb.wait_exit(Duration::from_secs(10)).is_some(), "replica {i} stops on SIGTERM");
        lb.respawn();
    }
}
