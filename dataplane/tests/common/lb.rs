//! The `otlp-lb` binary as a child process with a generated configuration; killed when dropped.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

pub struct Lb {
    pub child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub telemetry: SocketAddr,
    pub config: PathBuf,
    _dir: tempfile::TempDir,
    pub log: PathBuf,
}

/// Extra YAML for the generated configuration: inside the grpc and http receiver maps (`, key: value`), inside
/// `loadbalancing:` (indented lines), at the top level, a receiver `auth:` value, and the exporter's
/// `protocol.otlp` map contents (default: plaintext, 2s timeout, gzip).
#[derive(Debug, Default, Clone, Copy)]
pub struct Opts<'a> {
    pub grpc: &'a str,
    pub http: &'a str,
    pub lb: &'a str,
    pub top: &'a str,
    pub auth: &'a str,
    pub otlp: &'a str,
}

pub fn config(grpc: SocketAddr, http: SocketAddr, telemetry: SocketAddr, backends: &[String], o: Opts<'_>) -> String {
    let hosts: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "receivers:\n  otlp:\n{}    protocols:\n      grpc: {{endpoint: \"{grpc}\"{}}}\n      http: {{endpoint: \"{http}\"{}}}\n\
         loadbalancing:\n  protocol:\n    otlp: {{{}}}\n  resolver:\n    static: {{hostnames: [{}]}}\n{}\
         telemetry:\n  metrics: {{address: \"{telemetry}\"}}\ndrain_timeout: 5s\n{}",
        if o.auth.is_empty() { String::new() } else { format!("    auth: {}\n", o.auth) },
        o.grpc,
        o.http,
        if o.otlp.is_empty() { "timeout: 2s, compression: gzip, tls: {insecure: true}" } else { o.otlp },
        hosts.join(", "),
        o.lb,
        o.top
    )
}

impl Lb {
    pub fn start(backends: &[String]) -> Lb {
        Lb::start_with(backends, Opts::default())
    }

    pub fn start_with(backends: &[String], opts: Opts<'_>) -> Lb {
        Lb::start_config(|grpc, http, telemetry| config(grpc, http, telemetry, backends, opts), &[])
    }

    /// Starts the binary with the configuration `config` writes for the (grpc, http, telemetry) addresses, and
    /// `env` added to its environment.
    pub fn start_config(config: impl Fn(SocketAddr, SocketAddr, SocketAddr) -> String, env: &[(&str, &str)]) -> Lb {
        // A port found free can be taken by another test before otlp-lb binds it: then try other ports, a few times.
        for attempt in 1..=3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let telemetry: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let path = dir.path().join("config.yaml");
            std::fs::write(&path, config(grpc, http, telemetry)).expect("write config");
            let log = dir.path().join("otlp-lb.log");
            let child = Command::new(env!("CARGO_BIN_EXE_otlp-lb"))
                .arg("--config")
                .arg(&path)
                .env("RUST_LOG", "info,dataplane=debug")
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"))
                .spawn()
                .expect("start otlp-lb");
            let mut lb = Lb { child, grpc, http, telemetry, config: path, _dir: dir, log };
            match lb.ready() {
                Ok(()) => return lb,
                Err(e) if attempt < 3 && e.contains("Address already in use") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// SIGKILLs the process (no drain, nothing flushed).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the binary again with the same configuration (and ports, and storage), appending to the same log.
    pub fn respawn(&mut self) {
        let log = std::fs::OpenOptions::new().append(true).open(&self.log).expect("log file");
        self.child = Command::new(env!("CARGO_BIN_EXE_otlp-lb"))
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info,dataplane=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("restart otlp-lb");
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        if let Err(e) = self.ready() {
            panic!("{e}");
        }
    }

    /// Waits until `/readyz` answers 200; the reason otherwise.
    fn ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("otlp-lb exited early ({status}):\n{}", self.logs()));
            }
            if self.get("/readyz").is_some_and(|(code, _)| code == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("otlp-lb not ready in 20s:\n{}", self.logs()))
    }

    /// GET on the telemetry port: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect_timeout(&self.telemetry, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((code, body))
    }

    pub fn metrics(&self) -> String {
        self.get("/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    /// The value of one metric series (the whole `name{labels}` text), or 0.
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok =
            Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "kill -{sig} failed");
    }

    /// Waits for the process to exit, at most `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- otlp-lb log ---\n{}", self.logs());
        }
    }
}
