//! Whole processes for fault tests: `otlp-lb-tools sink` backends (killable, restartable on the same port, every
//! span they accept appended to an `--out` file that survives a SIGKILL), `otlp-lb-tools loadgen` clients (with
//! `--record`), and the `otlp-lb` binary on fixed ports (so that a new one can take over the old one's ports).
//! Every process is killed when its handle is dropped. [`Tally`] counts what the sinks hold against what loadgen
//! says was acknowledged.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::lb::{Opts, config};

pub const TOOLS: &str = env!("CARGO_BIN_EXE_otlp-lb-tools");
pub const OTLP_LB: &str = env!("CARGO_BIN_EXE_otlp-lb");

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Guard(pub Child);

impl Guard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends a signal by name (`TERM`, `KILL`, `HUP`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "kill -{sig} {} failed", self.pid());
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Waits for the process to exit, at most `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Resident set size in KiB, from `/proc/<pid>/status`.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port below the kernel's ephemeral range, free now. Listeners that go away and come back (a killed
/// sink, a replaced load balancer) use such ports: no outgoing connection can take the port while its listener is
/// down, and a client retrying the port cannot connect to itself (TCP simultaneous open).
pub fn stable_port() -> u16 {
    static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32768);
    let (from, to) = if low > 12_000 { (10_000u64, u64::from(low)) } else { (u64::from(low) + 30_000, 65_000) };
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32);
    for _ in 0..1000 {
        x = x.wrapping_add(SEQ.fetch_add(1, Ordering::Relaxed)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 29;
        let port = (from + x % (to - from)) as u16;
        if taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.insert(port);
            return port;
        }
    }
    panic!("no free port in {from}..{to}");
}

/// Reads the first stdout line of `child` (bounded in time); `None` if the process exited or stayed silent.
fn first_line(child: &mut Child, within: Duration) -> Option<String> {
    let stdout = child.stdout.take()?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so the child never blocks on a full pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    rx.recv_timeout(within).ok().filter(|l| !l.trim().is_empty())
}

/// A minimal HTTP/1.1 request: (status, body); `None` on any connection error.
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let addr: SocketAddr = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// An `otlp-lb-tools sink` on fixed loopback ports, recording every accepted span in `out`.
pub struct Sink {
    proc: Option<Guard>,
    pub name: String,
    /// `127.0.0.1:port` of the OTLP/gRPC listener: the backend address to give the load balancer.
    pub grpc: String,
    pub admin: String,
    /// One JSON line per span accepted, over every incarnation of the sink.
    pub out: PathBuf,
}

impl Sink {
    pub fn start(dir: &Path, name: &str, extra: &[&str]) -> Sink {
        let grpc = format!("127.0.0.1:{}", stable_port());
        let admin = format!("127.0.0.1:{}", stable_port());
        let out = dir.join(format!("{name}.spans.jsonl"));
        let mut sink = Sink { proc: None, name: name.to_string(), grpc, admin, out };
        sink.spawn(extra);
        sink
    }

    /// Starts the process on the sink's ports, retrying for a few seconds while a port is still taken.
    fn spawn(&mut self, extra: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut child = Command::new(TOOLS)
                .args(["sink", "--grpc", &self.grpc, "--admin", &self.admin, "--name", &self.name, "--out"])
                .arg(&self.out)
                .args(extra)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn otlp-lb-tools sink");
            let line = first_line(&mut child, Duration::from_secs(10));
            let mut guard = Guard(child);
            if let Some(line) = line {
                let bound: Value = serde_json::from_str(&line).expect("the sink's address line is JSON");
                assert_eq!(bound["grpc"].as_str(), Some(self.grpc.as_str()), "{line}");
                self.proc = Some(guard);
                return;
            }
            guard.kill();
            assert!(Instant::now() < deadline, "sink {} could not bind {} / {}", self.name, self.grpc, self.admin);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends a signal (`STOP`, `CONT`, `TERM`) to the running process.
    pub fn signal(&self, sig: &str) {
        self.proc.as_ref().expect("sink running").signal(sig);
    }

    /// SIGKILL: no goodbye to open connections, requests in flight are cut.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// A new process on the same ports (fresh counters; `out` keeps growing).
    pub fn restart(&mut self, extra: &[&str]) {
        self.kill();
        self.spawn(extra);
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    /// `/report?traces=1` of the running process.
    pub fn report(&self) -> Value {
        let (status, body) = http(&self.admin, "GET", "/report?traces=1", "").expect("sink admin API reachable");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("report is JSON")
    }

    /// Spans counted by the running process since it started.
    pub fn spans_counted(&self) -> u64 {
        self.report()["traces"]["spans"].as_u64().unwrap_or(0)
    }

    pub fn set_mode(&self, mode: &str) {
        let (status, body) = http(&self.admin, "POST", "/mode", mode).expect("sink admin API reachable");
        assert_eq!(status, 200, "{body}");
    }
}

/// A running `otlp-lb-tools loadgen --quiet --report-json --record FILE`.
pub struct Loadgen {
    proc: Guard,
    pub record: PathBuf,
    stderr: PathBuf,
    pub started: Instant,
}

/// What a finished loadgen run says.
pub struct LoadReport {
    pub json: Value,
    /// Acknowledged items per trace id (hex).
    pub acked: HashMap<String, u64>,
}

impl LoadReport {
    pub fn u(&self, key: &str) -> u64 {
        self.json[key].as_u64().unwrap_or_else(|| panic!("loadgen report has no count {key}: {}", self.json))
    }

    pub fn error(&self, code: &str) -> u64 {
        self.json["errors"][code].as_u64().unwrap_or(0)
    }

    pub fn acked_items(&self) -> u64 {
        self.acked.values().sum()
    }
}

impl Loadgen {
    pub fn spawn(dir: &Path, name: &str, args: &[&str]) -> Loadgen {
        let record = dir.join(format!("{name}.record"));
        let stderr = dir.join(format!("{name}.stderr"));
        let child = Command::new(TOOLS)
            .args(["loadgen", "--quiet", "--report-json", "--record"])
            .arg(&record)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("loadgen stderr file"))
            .spawn()
            .expect("spawn otlp-lb-tools loadgen");
        Loadgen { proc: Guard(child), record, stderr, started: Instant::now() }
    }

    /// Waits (at most `within`) for the run to end and reads its report and record.
    pub fn finish(mut self, within: Duration) -> LoadReport {
        let status = self.proc.wait_exit(within);
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let status = status.unwrap_or_else(|| panic!("loadgen did not finish within {within:?}: {err}"));
        assert!(status.success(), "loadgen exited with {status}: {err}");
        let mut out = String::new();
        self.proc.0.stdout.take().expect("stdout").read_to_string(&mut out).expect("read loadgen stdout");
        let json: Value =
            serde_json::from_str(out.trim().lines().last().expect("a report line")).expect("report is JSON");
        let text = std::fs::read_to_string(&self.record).expect("record file");
        let acked = text
            .lines()
            .map(|l| {
                let (id, n) = l.split_once(' ').expect("`<id> <count>`");
                (id.to_string(), n.parse().expect("count"))
            })
            .collect();
        LoadReport { json, acked }
    }
}

/// Listening addresses of an `otlp-lb`, kept across restarts.
#[derive(Debug, Clone, Copy)]
pub struct LbAddrs {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub telemetry: SocketAddr,
}

impl LbAddrs {
    pub fn stable() -> LbAddrs {
        let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        LbAddrs { grpc: a(stable_port()), http: a(stable_port()), telemetry: a(stable_port()) }
    }
}

/// The `otlp-lb` binary on given addresses, with the configuration of [`super::lb::config`].
pub struct LbProc {
    pub proc: Guard,
    pub addrs: LbAddrs,
    pub log: PathBuf,
    pub started: Instant,
}

impl LbProc {
    /// Starts it and waits until `/readyz` answers 200.
    pub fn start(dir: &Path, tag: &str, addrs: LbAddrs, backends: &[String], opts: Opts<'_>) -> LbProc {
        let path = dir.join(format!("{tag}.yaml"));
        std::fs::write(&path, config(addrs.grpc, addrs.http, addrs.telemetry, backends, opts)).expect("write config");
        let log = dir.join(format!("{tag}.log"));
        let child = Command::new(OTLP_LB)
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info,dataplane=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start otlp-lb");
        let mut lb = LbProc { proc: Guard(child), addrs, log, started: Instant::now() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = lb.proc.0.try_wait() {
                panic!("otlp-lb exited early ({status}):\n{}", lb.logs());
            }
            if lb.get("/readyz").is_some_and(|(code, _)| code == 200) {
                return lb;
            }
            assert!(Instant::now() < deadline, "otlp-lb not ready in 20s:\n{}", lb.logs());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http(&self.addrs.telemetry.to_string(), "GET", path, "")
    }

    pub fn metrics(&self) -> String {
        self.get("/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    /// The value of one series (`name{labels}` exactly as exposed) in `metrics`, if present.
    pub fn series(metrics: &str, series: &str) -> Option<f64> {
        metrics.lines().find_map(|l| {
            l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())
        })
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log without terminal colours, for matching `key=value` fields.
    pub fn plain_logs(&self) -> String {
        strip_ansi(&self.logs())
    }

    /// What the log says about failed parts: retried parts by code, rejected parts by code, ejections, readmissions.
    pub fn log_summary(&self) -> String {
        let logs = self.plain_logs();
        let field = |line: &str, key: &str| -> String {
            line.split_whitespace().find_map(|w| w.strip_prefix(key)).unwrap_or("?").trim_matches('"').to_string()
        };
        let mut retried: std::collections::BTreeMap<String, u64> = Default::default();
        let mut rejected: std::collections::BTreeMap<String, u64> = Default::default();
        let (mut ejections, mut readmissions) = (0, 0);
        for line in logs.lines() {
            if line.contains("part failed, will retry") {
                *retried.entry(field(line, "code=")).or_default() += 1;
            } else if line.contains("part rejected") {
                *rejected.entry(field(line, "code=")).or_default() += 1;
            } else if line.contains("backend ejected") {
                ejections += 1;
            } else if line.contains("backend readmitted") {
                readmissions += 1;
            }
        }
        format!(
            "parts retried {retried:?}, parts rejected {rejected:?}, {ejections} ejections, {readmissions} readmissions"
        )
    }

    pub fn grpc(&self) -> String {
        self.addrs.grpc.to_string()
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addrs.http)
    }
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every span the sinks accepted (from their `--out` files), against what clients were told was delivered.
#[derive(Debug, Default)]
pub struct Tally {
    /// Span receptions over all sinks and incarnations.
    pub received: u64,
    /// Distinct (trace id, span id) pairs.
    pub distinct: u64,
    /// Distinct span ids per trace id.
    pub per_trace: HashMap<String, HashSet<String>>,
    /// Receptions per sink name.
    pub per_sink: HashMap<String, u64>,
}

impl Tally {
    pub fn of(sinks: &[&Sink]) -> Tally {
        let mut t = Tally::default();
        for s in sinks {
            let text = std::fs::read_to_string(&s.out).unwrap_or_default();
            let mut n = 0;
            for line in text.lines() {
                // A SIGKILL can only cut a line the sink had not acknowledged yet: skip what does not parse.
                let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
                let (Some(trace), Some(span)) = (v["trace_id"].as_str(), v["span_id"].as_str()) else { continue };
                n += 1;
                if t.per_trace.entry(trace.to_string()).or_default().insert(span.to_string()) {
                    t.distinct += 1;
                }
            }
            t.received += n;
            *t.per_sink.entry(s.name.clone()).or_default() += n;
        }
        t
    }

    pub fn duplicates(&self) -> u64 {
        self.received - self.distinct
    }

    /// Acknowledged spans that no sink has: (lost spans, traces with lost spans, a few examples).
    pub fn lost(&self, run: &LoadReport) -> (u64, u64, Vec<String>) {
        let (mut spans, mut traces, mut examples) = (0, 0, Vec::new());
        for (id, n) in &run.acked {
            let have = self.per_trace.get(id).map_or(0, |s| s.len() as u64);
            if have < *n {
                spans += n - have;
                traces += 1;
                if examples.len() < 5 {
                    examples.push(format!("{id}: acknowledged {n}, at the sinks {have}"));
                }
            }
        }
        (spans, traces, examples)
    }
}

/// Fault tests of one binary run one at a time: each starts several processes with timing expectations.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
