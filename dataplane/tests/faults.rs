//! Faults with real processes on loopback: `otlp-lb-tools sink` backends (real gRPC servers, killed and restarted
//! on the same port), the `otlp-lb` binary, and `otlp-lb-tools loadgen --retry` clients that retry refused
//! requests as OTLP exporters do. Every span id the sinks accept is written to their `--out` files (which survive
//! a SIGKILL) and counted against the trace ids loadgen recorded as acknowledged:
//! lost = acknowledged spans that no sink has; duplicates = span receptions beyond the first.
//!
//! The cases run one at a time (each starts 6+ processes with timing expectations) and each prints its numbers
//! (`cargo test -p dataplane --test faults -- --nocapture`).

mod common;

use std::time::{Duration, Instant};

use common::lb::Opts;
use common::procs::{LbAddrs, LbProc, LoadReport, Loadgen, Sink, Tally, serial, strip_ansi};

/// The balancer's calls to backends: a 1 s timeout per attempt.
const OTLP_1S: &str = "timeout: 1s, compression: gzip, tls: {insecure: true}";

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

fn start_sinks(dir: &std::path::Path, prefix: &str, n: usize) -> Vec<Sink> {
    (0..n).map(|i| Sink::start(dir, &format!("{prefix}{i}"), &[])).collect()
}

fn addresses(sinks: &[Sink]) -> Vec<String> {
    sinks.iter().map(|s| s.grpc.clone()).collect()
}

fn health_series(backend: &str) -> String {
    format!("otelcol_loadbalancer_backend_health{{endpoint=\"{backend}\"}}")
}

/// Polls `/metrics` until the backend's health gauge reads `value`: the time since `since` when it did, or `None`
/// after `within`.
fn wait_health(lb: &LbProc, backend: &str, value: f64, since: Instant, within: Duration) -> Option<Duration> {
    let series = health_series(backend);
    while since.elapsed() < within {
        if LbProc::series(&lb.metrics(), &series) == Some(value) {
            return Some(since.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The clients' retry budget: longer than every outage of these cases.
const RETRY_BUDGET: &str = "30s";

/// Loadgen arguments shared by the cases: traces of 10 spans, 100 spans a request, retrying like an OTLP exporter
/// (backoff from 100 ms up to 1 s) for at most `budget`.
fn load_args<'a>(
    endpoint: &'a str,
    rate: &'a str,
    duration: &'a str,
    connections: &'a str,
    seed: &'a str,
    budget: &'a str,
) -> Vec<&'a str> {
    vec![
        "--endpoint",
        endpoint,
        "--rate",
        rate,
        "--duration",
        duration,
        "--connections",
        connections,
        "--seed",
        seed,
        "--spans-per-trace",
        "10",
        "--items-per-request",
        "100",
        "--retry",
        "--retry-initial",
        "100ms",
        "--retry-max-interval",
        "1s",
        "--retry-max-elapsed",
        budget,
        "--retry-max-attempts",
        "200",
    ]
}

/// Counts one run against the sinks, prints them, and returns (lost spans, duplicates, received).
fn count(case: &str, runs: &[(&str, &LoadReport)], sinks: &[&Sink]) -> (u64, u64, u64) {
    let tally = Tally::of(sinks);
    let mut lost_total = 0;
    for (name, run) in runs {
        let (lost, traces, examples) = tally.lost(run);
        lost_total += lost;
        println!(
            "[{case}] {name}: acknowledged {} spans ({} recorded, {} of them reported rejected) in {} requests, \
             failed_requests {}, retries {}, errors {}, p99 {} ms, max {} ms; lost {lost} spans in {traces} traces \
             {examples:?}",
            run.u("sent_items"),
            run.acked_items(),
            run.u("rejected_items"),
            run.u("sent_requests"),
            run.u("failed_requests"),
            run.u("retries"),
            run.json["errors"],
            run.json["p99_ms"],
            run.json["max_ms"],
        );
        assert_eq!(
            run.acked_items(),
            run.u("sent_items"),
            "[{case}] {name}: the record covers every acknowledged span"
        );
    }
    let mut per_sink: Vec<_> = tally.per_sink.iter().collect();
    per_sink.sort();
    println!(
        "[{case}] sinks: {} spans received, {} distinct, {} duplicates; per sink {per_sink:?}",
        tally.received,
        tally.distinct,
        tally.duplicates()
    );
    (lost_total, tally.duplicates(), tally.received)
}

/// A running sink's own report agrees with its `--out` file (the counting method is sound).
fn assert_report_matches_out(sink: &Sink) {
    let tally = Tally::of(&[sink]);
    let report = sink.report();
    assert_eq!(report["traces"]["spans"].as_u64(), Some(tally.received), "{}: report vs --out", sink.name);
}

/// (a) SIGKILL one of four backends mid-stream, restart it on the same port 5 s later: nothing acknowledged is
/// lost, duplicates come only from requests cut mid-flight, and the restarted backend is readmitted. The victim is
/// frozen (SIGSTOP) for 300 ms before the kill, as a backend stuck in a pause before the OOM killer takes it: parts
/// are then certainly in flight, unread in its socket, when it dies (the kernel resets those connections).
#[test]
fn a_backend_killed_and_restarted_loses_nothing() {
    let _serial = serial();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sinks = start_sinks(dir.path(), "a", 4);
    let lb_opts = Opts {
        lb: "  health_check: {consecutive_failures: 3, ejection_time: 500ms, max_ejection_time: 2s, probe_timeout: 500ms}\n",
        otlp: OTLP_1S,
        ..Opts::default()
    };
    let lb = LbProc::start(dir.path(), "lb", LbAddrs::stable(), &addresses(&sinks), lb_opts);
    let endpoint = lb.grpc();
    let lg = Loadgen::spawn(dir.path(), "load", &load_args(&endpoint, "4000", "13s", "4", "1", RETRY_BUDGET));
    sleep_until(lg.started + Duration::from_secs(3));
    let victim = sinks[1].grpc.clone();
    let before_kill = sinks[1].spans_counted();
    sinks[1].signal("STOP");
    std::thread::sleep(Duration::from_millis(300));
    sinks[1].kill();
    let killed_at = Instant::now();
    let ejected = wait_health(&lb, &victim, 0.0, killed_at, Duration::from_secs(5));
    sleep_until(killed_at + Duration::from_secs(5));
    sinks[1].restart(&[]);
    let restarted_at = Instant::now();
    let readmitted = wait_health(&lb, &victim, 1.0, restarted_at, Duration::from_secs(5));
    let run = lg.finish(Duration::from_secs(70));
    let refs: Vec<&Sink> = sinks.iter().collect();
    let (lost, duplicates, received) = count("a", &[("grpc", &run)], &refs);
    println!("[a] balancer: {}", lb.log_summary());
    let after_restart = sinks[1].spans_counted();
    println!(
        "[a] killed {victim} after it had {before_kill} spans; ejected {ejected:?} after the kill, readmitted \
         {readmitted:?} after the restart, then took {after_restart} spans; restart {:?} after the kill; \
         runtime {:?}",
        restarted_at - killed_at,
        started.elapsed()
    );
    assert_eq!(lost, 0, "acknowledged spans missing at the sinks:\n{}", lb.logs());
    assert_eq!(run.u("rejected_items"), 0, "no sink rejects anything, yet the client was told of rejected spans");
    assert_eq!(run.u("failed_requests"), 0, "the client's retries cover the failover");
    assert!(duplicates * 200 < run.u("sent_items"), "duplicates {duplicates} of {received} received: not < 0.5%");
    assert!(before_kill > 0, "the victim took keys before it was killed");
    assert!(ejected.is_some(), "the killed backend was never ejected:\n{}", lb.logs());
    assert!(readmitted.is_some(), "the restarted backend was not readmitted within 5 s:\n{}", lb.logs());
    assert!(after_restart > 0, "the restarted backend takes its keys again");
    for s in [&sinks[0], &sinks[2], &sinks[3]] {
        assert_report_matches_out(s);
    }
}

/// (b) A backend that accepts connections and never answers: it is ejected within its timeout (plus a margin for a
/// loaded machine, and the log says so), the others keep serving, nothing acknowledged is lost; once it answers
/// again it is readmitted by the next probe (its backoff grew by one step per failed probe round, not more).
#[test]
fn b_a_hanging_backend_is_ejected_and_the_others_keep_serving() {
    let _serial = serial();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let sinks = start_sinks(dir.path(), "b", 4);
    let lb_opts = Opts {
        lb: "  retry_on_failure: {max_elapsed_time: 5s}\n  health_check: {consecutive_failures: 3, ejection_time: 1s, max_ejection_time: 30s, probe_timeout: 500ms}\n",
        otlp: OTLP_1S,
        ..Opts::default()
    };
    let timeout = Duration::from_secs(1);
    let lb = LbProc::start(dir.path(), "lb", LbAddrs::stable(), &addresses(&sinks), lb_opts);
    let endpoint = lb.grpc();
    // A shorter client budget bounds the run time should the hanging backend stall requests.
    let lg = Loadgen::spawn(dir.path(), "load", &load_args(&endpoint, "4000", "12s", "4", "2", "15s"));
    sleep_until(lg.started + Duration::from_secs(2));
    let hung = sinks[2].grpc.clone();
    let others = [&sinks[0], &sinks[1], &sinks[3]];
    sinks[2].set_mode(r#"{"reply": "hang"}"#);
    let hang_at = Instant::now();
    let ejected = wait_health(&lb, &hung, 0.0, hang_at, Duration::from_secs(6));
    // Throughput of the other three over 2.5 s while the hung one is out.
    let served = |s: &[&Sink; 3]| s.iter().map(|s| s.spans_counted()).sum::<u64>();
    let (c0, t0) = (served(&others), Instant::now());
    std::thread::sleep(Duration::from_millis(2500));
    let (c1, window) = (served(&others), t0.elapsed());
    // The backend answers again: one failed probe round (1 s after the ejection) doubled its backoff to 2 s, so
    // the next probe comes about 3.5 s after the ejection.
    let before_release = sinks[2].spans_counted();
    sinks[2].set_mode(r#"{"reply": "ok"}"#);
    let released = Instant::now();
    let readmitted = wait_health(&lb, &hung, 1.0, released, Duration::from_secs(6));
    let run = lg.finish(Duration::from_secs(70));
    let after_release = sinks[2].spans_counted() - before_release;
    let refs: Vec<&Sink> = sinks.iter().collect();
    let (lost, duplicates, _) = count("b", &[("grpc", &run)], &refs);
    println!("[b] balancer: {}", lb.log_summary());
    let logs = lb.plain_logs();
    let ejections: Vec<&str> = logs.lines().filter(|l| l.contains("backend ejected") && l.contains(&hung)).collect();
    let rate = (c1 - c0) as f64 / window.as_secs_f64();
    println!(
        "[b] {hung} hangs: ejected {ejected:?} after the hang started (timeout {timeout:?}); the other three served \
         {rate:.0} spans/s meanwhile; {} ejection log lines for it, ejected_for {:?}; released {:?} after the hang \
         started, readmitted {readmitted:?} after that, then took {after_release} spans; runtime {:?}",
        ejections.len(),
        ejections
            .iter()
            .map(|l| l.split("ejected_for=").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or("?"))
            .collect::<Vec<_>>(),
        released - hang_at,
        started.elapsed()
    );
    let ejected = ejected.unwrap_or_else(|| panic!("the hanging backend was never ejected:\n{logs}"));
    assert!(
        ejected <= timeout + Duration::from_millis(1500),
        "ejected {ejected:?} after the hang started (timeout {timeout:?})"
    );
    assert!(!ejections.is_empty(), "no \"backend ejected\" log line for {hung}:\n{logs}");
    assert!(rate > 1000.0, "the other backends kept serving at only {rate:.0} spans/s (loadgen offers 4000/s)");
    assert_eq!(lost, 0, "acknowledged spans missing at the sinks:\n{logs}");
    assert_eq!(run.u("rejected_items"), 0, "no sink rejects anything, yet the client was told of rejected spans");
    assert_eq!(run.u("failed_requests"), 0, "the client's requests all succeeded");
    assert!(duplicates * 200 < run.u("sent_items"), "duplicates {duplicates}: not < 0.5%");
    assert!(readmitted.is_some(), "not readmitted within 6 s of answering again:\n{logs}");
    assert!(after_release > 0, "the readmitted backend takes its keys again");
    for s in others {
        assert_report_matches_out(s);
    }
}

/// (c) A backend that always answers UNAVAILABLE from the start, and another that turns UNAVAILABLE mid-run: their
/// keys fail over, nothing is lost, nothing refused, and no error at all reaches the client.
#[test]
fn c_backends_answering_unavailable_fail_over_without_refusals() {
    let _serial = serial();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sinks = start_sinks(dir.path(), "c", 3);
    sinks.push(Sink::start(dir.path(), "c3", &["--reply", "unavailable"]));
    let lb_opts = Opts {
        lb: "  health_check: {consecutive_failures: 3, ejection_time: 1s, max_ejection_time: 4s, probe_timeout: 500ms}\n",
        otlp: OTLP_1S,
        ..Opts::default()
    };
    let lb = LbProc::start(dir.path(), "lb", LbAddrs::stable(), &addresses(&sinks), lb_opts);
    let endpoint = lb.grpc();
    let lg = Loadgen::spawn(dir.path(), "load", &load_args(&endpoint, "4000", "10s", "4", "3", RETRY_BUDGET));
    sleep_until(lg.started + Duration::from_secs(3));
    let before = sinks[1].spans_counted();
    sinks[1].set_mode(r#"{"reply": "unavailable"}"#);
    let turned_at = Instant::now();
    let ejected = wait_health(&lb, &sinks[1].grpc, 0.0, turned_at, Duration::from_secs(5));
    let run = lg.finish(Duration::from_secs(70));
    let refs: Vec<&Sink> = sinks.iter().collect();
    let (lost, duplicates, _) = count("c", &[("grpc", &run)], &refs);
    println!("[c] balancer: {}", lb.log_summary());
    let after = sinks[1].spans_counted();
    let r3 = sinks[3].report();
    let refused = LbProc::series(&lb.metrics(), "otelcol_receiver_refused_spans{receiver=\"otlp\",transport=\"grpc\"}");
    println!(
        "[c] c3 unavailable from the start: {} spans, rejected {}; c1 unavailable after {before} spans: ejected \
         {ejected:?} later, {} spans accepted after; balancer refused {refused:?} spans; client errors {}; runtime {:?}",
        r3["traces"]["spans"],
        r3["rejected_requests"],
        after - before,
        run.json["errors"],
        started.elapsed()
    );
    assert_eq!(lost, 0, "acknowledged spans missing at the sinks:\n{}", lb.logs());
    assert_eq!(run.u("failed_requests"), 0, "no request refused");
    assert_eq!(run.u("rejected_items"), 0, "no span reported rejected");
    assert_eq!(run.json["errors"], serde_json::json!({}), "no error reached the client");
    assert_eq!(refused.unwrap_or(0.0), 0.0, "the balancer refused nothing");
    assert_eq!(duplicates, 0, "an UNAVAILABLE answer accepts nothing: a duplicate means an accepted part was resent");
    assert_eq!(r3["traces"]["spans"].as_u64(), Some(0));
    assert!(r3["rejected_requests"]["UNAVAILABLE"].as_u64().unwrap_or(0) > 0, "c3 was tried");
    assert!(ejected.is_some(), "c1 was never ejected:\n{}", lb.logs());
    assert!(before > 0, "c1 took keys while healthy");
    for s in [&sinks[0], &sinks[2]] {
        assert_report_matches_out(s);
    }
}

/// (d) Every backend down for 5 s (two killed, two answering UNAVAILABLE): clients get UNAVAILABLE / 503 within
/// `max_elapsed_time`, nothing is acknowledged during the outage, memory stays bounded, and once the backends
/// return the retrying clients end with nothing failed and nothing lost.
#[test]
fn d_all_backends_down_refuses_quickly_and_recovers() {
    let _serial = serial();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sinks = start_sinks(dir.path(), "d", 4);
    let limit_mib = 16u64;
    let lb_opts = Opts {
        lb: "  retry_on_failure: {initial_interval: 50ms, max_interval: 500ms, max_elapsed_time: 2s}\n  health_check: {consecutive_failures: 3, ejection_time: 250ms, max_ejection_time: 1s, probe_timeout: 500ms}\n",
        top: "limits: {memory_limit_mib: 16}\n",
        otlp: OTLP_1S,
        ..Opts::default()
    };
    let max_elapsed = Duration::from_secs(2);
    let lb = LbProc::start(dir.path(), "lb", LbAddrs::stable(), &addresses(&sinks), lb_opts);
    let grpc = lb.grpc();
    let http = lb.http_url();
    let lg_grpc = Loadgen::spawn(dir.path(), "grpc", &load_args(&grpc, "3000", "13s", "16", "41", RETRY_BUDGET));
    let mut http_args = load_args(&http, "1000", "13s", "8", "42", RETRY_BUDGET);
    http_args.extend(["--protocol", "http"]);
    let lg_http = Loadgen::spawn(dir.path(), "http", &http_args);
    let t0 = lg_grpc.started;
    // Baseline: resident memory and bytes in flight under load, all backends up.
    let sample = || {
        let m = lb.metrics();
        (lb.proc.rss_kib().unwrap_or(0), LbProc::series(&m, "otlp_lb_inflight_bytes").unwrap_or(0.0) as u64)
    };
    let (mut base_rss, mut base_inflight) = (0, 0);
    std::thread::sleep(Duration::from_millis(800));
    while t0.elapsed() < Duration::from_secs(3) {
        let (rss, inflight) = sample();
        (base_rss, base_inflight) = (base_rss.max(rss), base_inflight.max(inflight));
        std::thread::sleep(Duration::from_millis(100));
    }
    let accepted = || {
        let m = lb.metrics();
        ["grpc", "http"]
            .iter()
            .map(|t| {
                LbProc::series(&m, &format!("otelcol_receiver_accepted_spans{{receiver=\"otlp\",transport=\"{t}\"}}"))
                    .unwrap_or(0.0) as u64
            })
            .sum::<u64>()
    };
    let before_outage = [&sinks[2], &sinks[3]].map(|s| s.spans_counted());
    sinks[0].kill();
    sinks[1].kill();
    sinks[2].set_mode(r#"{"reply": "unavailable"}"#);
    sinks[3].set_mode(r#"{"reply": "unavailable"}"#);
    let outage = Instant::now();
    let (mut max_rss, mut max_inflight) = (0, 0);
    let mut accepted_early = None;
    while outage.elapsed() < Duration::from_secs(5) {
        let (rss, inflight) = sample();
        (max_rss, max_inflight) = (max_rss.max(rss), max_inflight.max(inflight));
        if accepted_early.is_none() && outage.elapsed() >= Duration::from_millis(500) {
            accepted_early = Some(accepted());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let accepted_late = accepted();
    let ejected: Vec<_> = sinks.iter().map(|s| LbProc::series(&lb.metrics(), &health_series(&s.grpc))).collect();
    sinks[0].restart(&[]);
    sinks[1].restart(&[]);
    sinks[2].set_mode(r#"{"reply": "ok"}"#);
    sinks[3].set_mode(r#"{"reply": "ok"}"#);
    let restored = Instant::now();
    let run_grpc = lg_grpc.finish(Duration::from_secs(80));
    let run_http = lg_http.finish(Duration::from_secs(80));
    let refs: Vec<&Sink> = sinks.iter().collect();
    let (lost, duplicates, _) = count("d", &[("grpc", &run_grpc), ("http", &run_http)], &refs);
    println!("[d] balancer: {}", lb.log_summary());
    let after: Vec<u64> = sinks.iter().map(Sink::spans_counted).collect();
    println!(
        "[d] outage {:?}: health gauges at its end {ejected:?}; accepted spans {accepted_early:?} at +0.5 s, \
         {accepted_late} at the end; RSS {base_rss} KiB before, max {max_rss} KiB during (limit {limit_mib} MiB); \
         inflight bytes max {base_inflight} before, {max_inflight} during; spans taken after the return {after:?} \
         (c2, c3 had {before_outage:?}); restored {:?} after the start; runtime {:?}",
        restored - outage,
        restored - t0,
        started.elapsed()
    );
    let logs = lb.logs();
    assert_eq!(lost, 0, "acknowledged spans missing at the sinks:\n{logs}");
    assert_eq!(accepted_early, Some(accepted_late), "spans acknowledged while every backend was down");
    assert!(run_grpc.error("UNAVAILABLE") > 0, "gRPC clients were told UNAVAILABLE: {}", run_grpc.json);
    assert!(run_http.error("HTTP_503") > 0, "HTTP clients were told 503: {}", run_http.json);
    for (name, run) in [("grpc", &run_grpc), ("http", &run_http)] {
        let max_ms = run.json["max_ms"].as_f64().unwrap_or(f64::MAX);
        assert!(
            max_ms < (max_elapsed + Duration::from_millis(1500)).as_secs_f64() * 1000.0,
            "{name}: an attempt took {max_ms} ms"
        );
        assert_eq!(run.u("failed_requests"), 0, "{name}: the clients' retries outlast the outage");
    }
    assert!(max_inflight <= limit_mib << 20, "inflight {max_inflight} bytes over the budget");
    assert!(max_rss <= base_rss + (limit_mib << 10), "RSS {max_rss} KiB during the outage, {base_rss} KiB before");
    assert!(after.iter().all(|n| *n > 0), "every backend takes data again: {after:?}");
    assert!(after[2] > before_outage[0] && after[3] > before_outage[1]);
    // A request in flight when the outage starts may have parts accepted and others not: it fails and its
    // client sends it all again. At most one such request per connection (24) of 100 spans.
    assert!(duplicates <= 24 * 100, "duplicates {duplicates}: more than one request per client connection");
    for run in [&run_grpc, &run_http] {
        assert_eq!(run.u("rejected_items"), 0, "no sink rejects anything, yet the client was told of rejected spans");
    }
}

/// (e) SIGTERM the balancer under load: it drains (the backends take 100 ms per request, so requests are in flight
/// when the signal comes) and exits 0; a new one on the same ports takes over and the retrying clients (gRPC and
/// HTTP) end with every acknowledged span at the sinks, and none twice: a drained request is answered, not cut.
#[test]
fn e_sigterm_drains_and_a_new_balancer_takes_over() {
    let _serial = serial();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let sinks: Vec<Sink> = (0..4).map(|i| Sink::start(dir.path(), &format!("e{i}"), &["--delay-ms", "100"])).collect();
    let addrs = LbAddrs::stable();
    let lb_opts = Opts { otlp: OTLP_1S, ..Opts::default() };
    let mut lb1 = LbProc::start(dir.path(), "lb1", addrs, &addresses(&sinks), lb_opts);
    let grpc = lb1.grpc();
    let http = lb1.http_url();
    let lg_grpc = Loadgen::spawn(dir.path(), "grpc", &load_args(&grpc, "3000", "12s", "8", "51", RETRY_BUDGET));
    let mut http_args = load_args(&http, "1000", "12s", "4", "52", RETRY_BUDGET);
    http_args.extend(["--protocol", "http"]);
    let lg_http = Loadgen::spawn(dir.path(), "http", &http_args);
    sleep_until(lg_grpc.started + Duration::from_secs(4));
    let accepted_by = |lb: &LbProc| {
        let m = lb.metrics();
        ["grpc", "http"]
            .iter()
            .map(|t| {
                LbProc::series(&m, &format!("otelcol_receiver_accepted_spans{{receiver=\"otlp\",transport=\"{t}\"}}"))
                    .unwrap_or(0.0) as u64
            })
            .sum::<u64>()
    };
    let before_term = accepted_by(&lb1);
    // Signal while requests are in flight (each waits 100 ms for its backends).
    let inflight_now = || LbProc::series(&lb1.metrics(), "otlp_lb_inflight_bytes").unwrap_or(0.0);
    let mut inflight = inflight_now();
    let look = Instant::now();
    while inflight == 0.0 && look.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
        inflight = inflight_now();
    }
    lb1.proc.signal("TERM");
    let term_at = Instant::now();
    let status = lb1.proc.wait_exit(Duration::from_secs(10));
    let drained = term_at.elapsed();
    let logs1 = lb1.logs();
    let status = status.unwrap_or_else(|| panic!("otlp-lb did not exit within 10 s of SIGTERM:\n{logs1}"));
    let lb2 = LbProc::start(dir.path(), "lb2", addrs, &addresses(&sinks), lb_opts);
    let gap = term_at.elapsed();
    let run_grpc = lg_grpc.finish(Duration::from_secs(80));
    let run_http = lg_http.finish(Duration::from_secs(80));
    let refs: Vec<&Sink> = sinks.iter().collect();
    let (lost, duplicates, _) = count("e", &[("grpc", &run_grpc), ("http", &run_http)], &refs);
    println!("[e] balancer: first {}; second {}", lb1.log_summary(), lb2.log_summary());
    let by_second = accepted_by(&lb2);
    println!(
        "[e] first balancer: {before_term} spans accepted and {inflight} bytes in flight at SIGTERM, exited {status} \
         {drained:?} after it; \
         the second was ready {gap:?} after SIGTERM and accepted {by_second} spans; runtime {:?}",
        started.elapsed()
    );
    assert!(inflight > 0.0, "no request in flight at SIGTERM: the drain was not exercised");
    assert!(status.success(), "exit status {status}:\n{logs1}");
    assert!(logs1.contains("otlp-lb stopped"), "{logs1}");
    assert_eq!(lost, 0, "acknowledged spans missing at the sinks:\n{logs1}\n--- second ---\n{}", lb2.logs());
    for (name, run) in [("grpc", &run_grpc), ("http", &run_http)] {
        assert_eq!(run.u("failed_requests"), 0, "{name}: the clients' retries outlast the restart");
        assert_eq!(run.u("rejected_items"), 0, "{name}: no span reported rejected");
    }
    assert!(by_second > 0, "the second balancer took over");
    assert_eq!(duplicates, 0, "requests in flight at SIGTERM were cut after delivery and sent again by their clients");
    assert!(!logs1.contains("still in flight after the drain timeout"), "{logs1}");
    for s in &sinks {
        assert_report_matches_out(s);
    }
}

/// (f) `ack: queued`: the balancer is SIGKILLed under load (each backend answers after 100 ms, so records are
/// queued and in flight at the kill) and started again on the same write-ahead log 1 s later. Clients retry what
/// was not acknowledged; what was acknowledged before the kill is replayed from the log: not one acknowledged span
/// is missing at the sinks.
#[test]
fn f_ack_queued_survives_sigkill_under_load() {
    let _serial = serial();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let wal = dir.path().join("wal");
    let sinks: Vec<Sink> = (0..4).map(|i| Sink::start(dir.path(), &format!("f{i}"), &["--delay-ms", "100"])).collect();
    let addrs = LbAddrs::stable();
    let queued = format!(
        "  retry_on_failure: {{initial_interval: 50ms, max_interval: 500ms, max_elapsed_time: 10s}}\n  sending_queue: {{ack: queued, storage: \"{}\", fsync: always}}\n",
        wal.display()
    );
    let lb_opts = Opts { lb: &queued, otlp: OTLP_1S, ..Opts::default() };
    let mut lb1 = LbProc::start(dir.path(), "lb1", addrs, &addresses(&sinks), lb_opts);
    let grpc = lb1.grpc();
    let lg = Loadgen::spawn(dir.path(), "load", &load_args(&grpc, "3000", "10s", "4", "61", RETRY_BUDGET));
    sleep_until(lg.started + Duration::from_secs(4));
    let before_kill = Tally::of(&sinks.iter().collect::<Vec<_>>()).received;
    lb1.proc.kill();
    let killed_at = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let lb2 = LbProc::start(dir.path(), "lb2", addrs, &addresses(&sinks), lb_opts);
    let restarted = killed_at.elapsed();
    let run = lg.finish(Duration::from_secs(80));
    // The replayed records and the last ones are delivered in the background: wait for them (bounded).
    let refs: Vec<&Sink> = sinks.iter().collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Tally::of(&refs).lost(&run).0 > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (lost, duplicates, received) = count("f", &[("grpc", &run)], &refs);
    let logs2 = lb2.logs();
    let replayed = logs2.lines().find(|l| l.contains("replaying records")).map(strip_ansi).unwrap_or_default();
    println!(
        "[f] {before_kill} spans at the sinks at the kill; restarted {restarted:?} after it; {received} received, \
         {duplicates} duplicates; second balancer: {replayed}; runtime {:?}",
        started.elapsed()
    );
    assert_eq!(lost, 0, "acknowledged spans missing at the sinks:\n{}\n--- second ---\n{logs2}", lb1.logs());
    assert_eq!(run.u("failed_requests"), 0, "the clients' retries outlast the restart");
    assert!(before_kill > 0 && run.u("sent_items") > before_kill, "the kill came in the middle of the load");
    assert!(!replayed.is_empty(), "the second balancer replayed the log:\n{logs2}");
}
