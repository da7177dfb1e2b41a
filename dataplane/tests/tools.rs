//! Integration tests of `otlp-lb-tools`: a sink and loadgen runs against it, as processes. Every count the sink
//! reports must equal what loadgen says it delivered; fault modes must surface as errors with the right code.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_otlp-lb-tools");

/// Kills the child process when dropped, so no test leaves a process behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Sink {
    guard: Guard,
    grpc: String,
    http: String,
    admin: String,
}

impl Sink {
    fn start(extra: &[&str]) -> Sink {
        let mut child = Command::new(BIN)
            .args(["sink", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--name", "t"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sink");
        let stdout = child.stdout.take().expect("stdout");
        let guard = Guard(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).expect("sink printed its addresses");
        let bound: Value = serde_json::from_str(&line).expect("address line is JSON");
        let addr = |k: &str| bound[k].as_str().expect("bound address").to_string();
        Sink { grpc: addr("grpc"), http: addr("http"), admin: addr("admin"), guard }
    }

    fn report(&self) -> Value {
        let (status, body) = http(&self.admin, "GET", "/report?traces=1", "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("report is JSON")
    }

    fn set_mode(&self, mode: &str) {
        let (status, body) = http(&self.admin, "POST", "/mode", mode);
        assert_eq!(status, 200, "{body}");
    }
}

/// A minimal HTTP/1.1 client for the admin API: (status, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect admin");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    (status, body.to_string())
}

/// Starts loadgen with `--report-json`.
fn spawn_loadgen(args: &[&str]) -> Guard {
    let child = Command::new(BIN)
        .args(["loadgen", "--quiet", "--report-json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn loadgen");
    Guard(child)
}

/// Waits (bounded) for a loadgen run and returns its JSON report.
fn finish(mut lg: Guard) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = lg.0.try_wait().expect("wait") {
            assert!(status.success(), "loadgen exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "loadgen did not finish in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    lg.0.stdout.take().expect("stdout").read_to_string(&mut out).expect("read stdout");
    serde_json::from_str(out.trim().lines().last().expect("a report line")).expect("report is JSON")
}

fn loadgen(args: &[&str]) -> Value {
    finish(spawn_loadgen(args))
}

fn temp_file(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("otlp-lb-tools-{}-{name}", std::process::id()))
}

fn read_record(path: &std::path::Path) -> HashMap<String, u64> {
    let text = std::fs::read_to_string(path).expect("record file");
    text.lines()
        .map(|l| {
            let (id, n) = l.split_once(' ').expect("`<id> <count>`");
            (id.to_string(), n.parse().expect("count"))
        })
        .collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn traces_over_grpc_match_the_sink_exactly_and_are_recorded() {
    let sink = Sink::start(&[]);
    let record = temp_file("grpc-record");
    let r = loadgen(&[
        "--endpoint",
        &sink.grpc,
        "--traces",
        "300",
        "--spans-per-trace",
        "7",
        "--items-per-request",
        "50",
        "--connections",
        "3",
        "--record",
        record.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(u(&r["sent_items"]), 2100);
    assert_eq!(u(&r["traces"]), 300);
    assert_eq!(u(&r["failed_requests"]), 0);
    let s = sink.report();
    assert_eq!(s["traces"]["spans"], r["sent_items"]);
    assert_eq!(s["traces"]["requests"], r["sent_requests"]);
    assert_eq!(u(&s["traces"]["distinct_trace_ids"]), 300);
    assert_eq!(u(&s["traces"]["duplicate_spans"]), 0);
    let per_service: u64 = s["services"].as_object().expect("services").values().map(|c| u(&c["spans"])).sum();
    assert_eq!(per_service, 2100);
    assert_eq!(s["services"].as_object().map(|m| m.len()), Some(5));
    let recorded = read_record(&record);
    let _ = std::fs::remove_file(&record);
    assert_eq!(recorded.len(), 300);
    for (id, n) in &recorded {
        assert_eq!(*n, 7);
        assert_eq!(u(&s["trace_ids"][id]["spans"]), 7, "trace {id}");
    }
}

#[test]
fn traces_over_http_with_gzip_at_a_bounded_rate() {
    let sink = Sink::start(&[]);
    let r = loadgen(&[
        "--endpoint",
        &format!("http://{}", sink.http),
        "--protocol",
        "http",
        "--compression",
        "gzip",
        "--rate",
        "4000",
        "--duration",
        "1500ms",
        "--connections",
        "2",
    ]);
    let sent = u(&r["sent_items"]);
    assert!((3000..=7000).contains(&sent), "rate 4000/s for 1.5 s sent {sent}");
    assert_eq!(u(&r["failed_requests"]), 0);
    let s = sink.report();
    assert_eq!(u(&s["traces"]["spans"]), sent);
    assert_eq!(s["traces"]["requests"], r["sent_requests"]);
    assert_eq!(u(&s["traces"]["distinct_trace_ids"]), u(&r["traces"]));
    assert_eq!(u(&s["traces"]["duplicate_spans"]), 0);
}

#[test]
fn metrics_and_logs_counts_match_and_logs_share_trace_ids_with_traces() {
    let sink = Sink::start(&[]);
    let m = loadgen(&["--endpoint", &sink.grpc, "--signal", "metrics", "--requests", "40", "--compression", "gzip"]);
    assert_eq!(u(&m["sent_items"]), 4000);
    let t = loadgen(&["--endpoint", &sink.grpc, "--traces", "50", "--seed", "7", "--connections", "3"]);
    let l = loadgen(&[
        "--endpoint",
        &sink.http,
        "--protocol",
        "http",
        "--signal",
        "logs",
        "--traces",
        "50",
        "--seed",
        "7",
        "--connections",
        "2",
    ]);
    let s = sink.report();
    assert_eq!(s["metrics"]["data_points"], m["sent_items"]);
    assert_eq!(s["metrics"]["requests"], m["sent_requests"]);
    assert_eq!(u(&s["metrics"]["duplicate_data_points"]), 0);
    assert_eq!(s["traces"]["spans"], t["sent_items"]);
    assert_eq!(s["logs"]["log_records"], l["sent_items"]);
    assert_eq!(s["logs"]["requests"], l["sent_requests"]);
    assert_eq!(u(&s["logs"]["with_trace_id"]), 500);
    assert!(u(&l["sent_items"]) > 500, "some log records have no trace context");
    assert_eq!(u(&s["logs"]["duplicate_log_records"]), 0);
    // Same seed and --traces: the logs carry exactly the trace ids of the traces.
    let ids = s["trace_ids"].as_object().expect("trace ids");
    assert_eq!(ids.len(), 50);
    assert!(ids.values().all(|c| u(&c["spans"]) == 10 && u(&c["log_records"]) == 10), "{ids:?}");
}

#[test]
fn trace_spread_sends_each_trace_in_that_many_requests_over_time() {
    let sink = Sink::start(&[]);
    let started = Instant::now();
    let r = loadgen(&[
        "--endpoint",
        &sink.grpc,
        "--traces",
        "40",
        "--trace-spread",
        "3",
        "--spread-interval",
        "300ms",
        "--connections",
        "2",
    ]);
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(u(&r["traces"]), 40);
    let s = sink.report();
    assert_eq!(s["traces"]["spans"], r["sent_items"]);
    let ids = s["trace_ids"].as_object().expect("trace ids");
    assert_eq!(ids.len(), 40);
    for (id, c) in ids {
        assert_eq!((u(&c["spans"]), u(&c["requests"])), (10, 3), "trace {id}");
    }
}

#[test]
fn failure_modes_are_reported_by_code() {
    let sink = Sink::start(&["--reply", "unavailable"]);
    let r = loadgen(&["--endpoint", &sink.grpc, "--requests", "8", "--connections", "2"]);
    assert_eq!(u(&r["errors"]["UNAVAILABLE"]), 8);
    assert_eq!((u(&r["failed_requests"]), u(&r["sent_items"])), (8, 0));
    let r = loadgen(&["--endpoint", &sink.http, "--protocol", "http", "--requests", "3", "--connections", "1"]);
    assert_eq!(u(&r["errors"]["HTTP_503"]), 3);
    sink.set_mode(r#"{"reply": "resource_exhausted"}"#);
    let r = loadgen(&["--endpoint", &sink.grpc, "--requests", "2", "--connections", "1"]);
    assert_eq!(u(&r["errors"]["RESOURCE_EXHAUSTED"]), 2);
    sink.set_mode(r#"{"fail_every": 3}"#);
    let r = loadgen(&["--endpoint", &sink.grpc, "--requests", "9", "--connections", "1"]);
    assert_eq!((u(&r["errors"]["UNAVAILABLE"]), u(&r["sent_requests"])), (3, 6));
    sink.set_mode(r#"{"reply": "hang"}"#);
    let r = loadgen(&["--endpoint", &sink.grpc, "--requests", "2", "--connections", "1", "--timeout", "300ms"]);
    assert_eq!(u(&r["failed_requests"]), 2);
    assert_eq!(u(&r["errors"]["DEADLINE_EXCEEDED"]), 2, "{r}");
    assert_eq!(u(&r["traces_failed"]), 20);
    let r = loadgen(&["--endpoint", &sink.http, "--protocol", "http", "--requests", "1", "--timeout", "300ms"]);
    assert_eq!(u(&r["errors"]["TIMEOUT"]), 1, "{r}");
    let s = sink.report();
    assert_eq!(u(&s["rejected_requests"]["UNAVAILABLE"]), 8 + 3 + 3);
    assert_eq!(u(&s["rejected_requests"]["RESOURCE_EXHAUSTED"]), 2);
    assert_eq!(u(&s["traces"]["spans"]), 600);
    let (status, body) = http(&sink.admin, "POST", "/mode", r#"{"reply": "sometimes"}"#);
    assert_eq!(status, 400, "{body}");
}

#[test]
fn retry_recovers_when_the_sink_comes_back() {
    let sink = Sink::start(&["--reply", "unavailable"]);
    let lg = spawn_loadgen(&[
        "--endpoint",
        &sink.grpc,
        "--traces",
        "100",
        "--connections",
        "2",
        "--retry",
        "--retry-initial",
        "50ms",
        "--retry-max-interval",
        "200ms",
    ]);
    std::thread::sleep(Duration::from_millis(800));
    sink.set_mode(r#"{"reply": "ok"}"#);
    let r = finish(lg);
    assert_eq!(u(&r["failed_requests"]), 0, "{r}");
    assert!(u(&r["retries"]) > 0 && u(&r["errors"]["UNAVAILABLE"]) > 0, "{r}");
    assert_eq!(u(&r["sent_items"]), 1000);
    let s = sink.report();
    assert_eq!(u(&s["traces"]["spans"]), 1000);
    assert_eq!(u(&s["traces"]["distinct_trace_ids"]), 100);
    assert_eq!(u(&s["traces"]["duplicate_spans"]), 0);
}

#[test]
fn duplicates_reset_health_and_sigterm() {
    let sink = Sink::start(&[]);
    assert_eq!(http(&sink.admin, "GET", "/healthz", "").0, 200);
    // The same seed sends the same trace and span ids again: the sink counts them as duplicates.
    for _ in 0..2 {
        loadgen(&["--endpoint", &sink.grpc, "--traces", "20", "--seed", "1"]);
    }
    let s = sink.report();
    assert_eq!((u(&s["traces"]["spans"]), u(&s["traces"]["duplicate_spans"])), (400, 200));
    assert_eq!(s["name"], "t");
    assert_eq!(http(&sink.admin, "POST", "/reset", "").0, 200);
    assert_eq!(u(&sink.report()["traces"]["spans"]), 0);
    let mut sink = sink;
    let pid = sink.guard.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = sink.guard.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "sink ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}
