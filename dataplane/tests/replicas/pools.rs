//! The backends of the replicas test: in-process OTLP/gRPC servers that record every span, or real Collectors
//! (`otelcol-lb` from `make tools`) whose tail sampling keeps the traces with an ERROR span and writes them with the
//! file exporter. Spans are named `t<trace>-s<span>`. The backends of a pool listen on distinct loopback addresses
//! of a subnet of their own, all on one port, as the addresses a DNS name resolves to do.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::common::backend::{Backend, State};
use super::common::procs::{Guard, stable_port};

/// Whether trace `t` has an ERROR span (its last): the traces the Collectors' tail sampling keeps.
pub fn has_error(t: u64) -> bool {
    t.is_multiple_of(2)
}

/// (trace, span) of a span named `t<trace>-s<span>`.
pub fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (t, s) = name.strip_prefix('t')?.split_once("-s")?;
    Some((t.parse().ok()?, s.parse().ok()?))
}

/// Listeners on `n` distinct loopback addresses (127.a.b.1 up, with `a.b` this pool's own) that share one port.
fn bind_loopback(n: usize) -> Vec<TcpListener> {
    static POOLS: AtomicU32 = AtomicU32::new(0);
    let mut last = String::new();
    for _ in 0..20 {
        let x = u32::from(std::process::id() as u16) ^ POOLS.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37);
        let (a, b) = (16 + (x % 200) as u8, (x >> 8) as u8);
        let port = stable_port();
        let bound: Result<Vec<_>, _> =
            (1..=n as u8).map(|c| TcpListener::bind((Ipv4Addr::new(127, a, b, c), port))).collect();
        match bound {
            Ok(listeners) => return listeners,
            Err(e) => last = format!("127.{a}.{b}.x:{port}: {e}"),
        }
    }
    panic!("no port free on {n} loopback addresses: {last}");
}

/// (IP addresses, the one port) of a pool's backends.
pub fn hosts_and_port(addresses: &[SocketAddr]) -> (Vec<String>, u16) {
    let port = addresses.first().map_or(0, SocketAddr::port);
    assert!(addresses.iter().all(|a| a.port() == port), "one port for every backend: {addresses:?}");
    (addresses.iter().map(|a| a.ip().to_string()).collect(), port)
}

/// `otelcol-lb` from `make tools`: `$TOOLS_DIR/bin`, default `$HOME/.cache/otlp-lb/tools/bin`.
pub fn otelcol() -> PathBuf {
    let tools = match std::env::var_os("TOOLS_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/otlp-lb/tools"),
    };
    let bin = tools.join("bin/otelcol-lb");
    assert!(bin.is_file(), "{} is missing: run `make tools`", bin.display());
    bin
}

/// The backends the replicas send to.
pub trait Pool {
    fn addresses(&self) -> Vec<SocketAddr>;
    /// Once the load is over: the (trace, span) pairs each backend holds, and which traces must be whole.
    async fn received(&mut self) -> (Vec<Vec<(u64, u64)>>, fn(u64) -> bool);
    /// Spans received so far, where the backends keep every span (not the Collectors, which sample).
    fn delivered(&self) -> Option<usize>;
}

/// In-process OTLP/gRPC servers that record every span.
pub struct Recorders(Vec<Backend>);

impl Recorders {
    pub async fn start(n: usize) -> Recorders {
        let backends = bind_loopback(n).into_iter().map(|l| {
            l.set_nonblocking(true).expect("a non-blocking listener");
            let listener = tokio::net::TcpListener::from_std(l).expect("a tokio listener");
            Backend::serve(listener, Arc::new(State::default()))
        });
        Recorders(backends.collect())
    }

    /// Every backend refuses exports with UNAVAILABLE (`true`), or takes them again.
    pub fn refuse(&self, refuse: bool) {
        let code = if refuse { tonic::Code::Unavailable as u32 } else { 0 };
        for b in &self.0 {
            b.state.fail_code.store(code, Ordering::SeqCst);
        }
    }
}

impl Pool for Recorders {
    fn addresses(&self) -> Vec<SocketAddr> {
        self.0.iter().map(|b| b.addr).collect()
    }

    async fn received(&mut self) -> (Vec<Vec<(u64, u64)>>, fn(u64) -> bool) {
        let spans = self.0.iter().map(|b| b.spans().iter().filter_map(|(_, n)| parse_name(n)).collect()).collect();
        (spans, |_| true)
    }

    fn delivered(&self) -> Option<usize> {
        Some(self.0.iter().map(|b| b.spans().len()).sum())
    }
}

/// How long the Collectors wait for a trace's spans before deciding whether to keep it.
const DECISION_WAIT: Duration = Duration::from_secs(4);

/// Real Collectors: tail sampling keeps the traces with an ERROR span, and the file exporter writes them.
pub struct Collectors {
    procs: Vec<Guard>,
    addresses: Vec<SocketAddr>,
    dir: tempfile::TempDir,
}

impl Collectors {
    pub fn start(n: usize) -> Collectors {
        let bin = otelcol();
        let dir = tempfile::tempdir().expect("temp dir");
        let file = |name: String| dir.path().join(name);
        // The Collectors bind the addresses found free (the subnet is this pool's own).
        let addresses: Vec<SocketAddr> =
            bind_loopback(n).iter().map(|l| l.local_addr().expect("a bound address")).collect();
        let mut procs = Vec::new();
        for (i, address) in addresses.iter().enumerate() {
            let config = format!(
                "receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: \"{address}\"}}\n\
                 processors:\n  tail_sampling:\n    decision_wait: {}s\n    policies:\n      - name: errors\n        \
                 type: status_code\n        status_code: {{status_codes: [ERROR]}}\n\
                 exporters:\n  file:\n    path: \"{}\"\n\
                 service:\n  telemetry: {{metrics: {{level: none}}}}\n  pipelines:\n    traces: \
                 {{receivers: [otlp], processors: [tail_sampling], exporters: [file]}}\n",
                DECISION_WAIT.as_secs(),
                file(format!("spans-{i}.json")).display()
            );
            std::fs::write(file(format!("collector-{i}.yaml")), config).expect("write the Collector's config");
            let child = Command::new(&bin)
                .arg(format!("--config={}", file(format!("collector-{i}.yaml")).display()))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(file(format!("collector-{i}.log"))).expect("log file"))
                .spawn()
                .expect("start otelcol-lb");
            procs.push(Guard(child));
        }
        for (i, a) in addresses.iter().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(a).is_err() {
                let log = std::fs::read_to_string(file(format!("collector-{i}.log"))).unwrap_or_default();
                assert!(Instant::now() < deadline, "Collector {i} not listening on {a} in 30s:\n{log}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Collectors { procs, addresses, dir }
    }

    /// The (trace, span) pairs in Collector `i`'s file.
    fn spans(&self, i: usize) -> Vec<(u64, u64)> {
        let text = std::fs::read_to_string(self.dir.path().join(format!("spans-{i}.json"))).unwrap_or_default();
        let mut spans = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).expect("the file exporter writes JSON lines");
            let list = |v: &serde_json::Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
            for r in list(&v, "resourceSpans") {
                for s in list(&r, "scopeSpans") {
                    spans.extend(list(&s, "spans").iter().filter_map(|s| s["name"].as_str().and_then(parse_name)));
                }
            }
        }
        spans
    }
}

impl Pool for Collectors {
    fn addresses(&self) -> Vec<SocketAddr> {
        self.addresses.clone()
    }

    async fn received(&mut self) -> (Vec<Vec<(u64, u64)>>, fn(u64) -> bool) {
        // Every trace decided; then each Collector stops, which flushes its file.
        tokio::time::sleep(DECISION_WAIT + Duration::from_secs(2)).await;
        for p in &mut self.procs {
            p.signal("TERM");
            assert!(p.wait_exit(Duration::from_secs(20)).is_some(), "the Collector stops on SIGTERM");
        }
        ((0..self.procs.len()).map(|i| self.spans(i)).collect(), has_error)
    }

    fn delivered(&self) -> Option<usize> {
        None
    }
}
