//! Process lifecycle: SIGTERM drains and exits 0; SIGHUP and file changes reload the static pool (an invalid
//! file keeps the running pool); `--validate`; `max_connection_age` closes connections with GOAWAY.

mod common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::backend::Backend;
use common::lb::{Lb, Opts};
use dataplane::fixtures as otlp;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

fn pool_size(lb: &Lb) -> usize {
    let (_, body) = lb.get("/debug/pool").expect("debug pool");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    v["backends"].as_array().map(Vec::len).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_and_exits_zero() {
    // SIGTERM: /readyz turns 503 at once, /healthz stays 200, the request in flight completes, exit 0.
    let backend = Backend::start().await;
    let mut lb = Lb::start(&[backend.address()]);
    backend.state.delay_ms.store(700, Ordering::SeqCst);
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    let inflight = tokio::spawn(async move { client.export(otlp::traces(0..10, 0..2, 1)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(lb.get("/readyz").map(|(code, _)| code), Some(200));
    lb.signal("TERM");
    // While the request drains: not ready (load balancers in front stop sending), but alive.
    let deadline = Instant::now() + Duration::from_millis(400);
    let mut readyz = lb.get("/readyz");
    while readyz.as_ref().is_some_and(|(code, _)| *code == 200) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        readyz = lb.get("/readyz");
    }
    assert_eq!(readyz, Some((503, "draining\n".to_string())), "/readyz during the drain");
    assert_eq!(lb.get("/healthz").map(|(code, _)| code), Some(200), "/healthz during the drain");
    assert!(!inflight.is_finished(), "the probes ran while the request was still in flight");
    let reply = inflight.await.expect("join");
    assert!(reply.is_ok(), "the request in flight completes: {reply:?}");
    let status = lb.wait_exit(Duration::from_secs(10)).expect("exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert_eq!(backend.spans().len(), 20);
    assert!(lb.logs().contains("otlp-lb stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_it_like_sigterm() {
    let backend = Backend::start().await;
    let mut lb = Lb::start(&[backend.address()]);
    lb.signal("INT");
    let status = lb.wait_exit(Duration::from_secs(10)).expect("exits after SIGINT");
    assert!(status.success(), "exit status {status}");
    let logs = lb.logs();
    assert!(logs.contains("SIGINT received") && logs.contains("otlp-lb stopped"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_file_changes_reload_the_static_pool() {
    let backends = [Backend::start().await, Backend::start().await, Backend::start().await];
    let lb = Lb::start(&[backends[0].address(), backends[1].address()]);
    assert_eq!(pool_size(&lb), 2);
    let text = std::fs::read_to_string(&lb.config).expect("config");
    let grown = text.replace(
        &format!("\"{}\"]", backends[1].address()),
        &format!("\"{}\", \"{}\"]", backends[1].address(), backends[2].address()),
    );
    assert_ne!(grown, text);
    std::fs::write(&lb.config, &grown).expect("write");
    lb.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool_size(&lb) != 3 {
        assert!(Instant::now() < deadline, "pool not reloaded:\n{}", lb.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lb.metric("otelcol_loadbalancer_num_backend_updates{resolver=\"static\"}"), 2.0);
    let logs = lb.logs();
    let changes: Vec<&str> = logs.lines().filter(|l| l.contains("backend pool changed")).collect();
    assert_eq!(changes.len(), 2, "one log line per change (the first pool, then the reload): {changes:?}");
    let grow = changes[1];
    assert!(grow.contains(&format!("added=[\"{}\"]", backends[2].address())) && grow.contains("removed=[]"), "{grow}");
    assert!(grow.contains("moved_keys=\"33."), "a third of the keys moved to the added backend: {grow}");
    // Data now reaches the third backend.
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    client.export(otlp::traces(0..90, 0..1, 3)).await.expect("accepted");
    assert!(!backends[2].spans().is_empty(), "the added backend takes keys");
    // An invalid file is reported and the running pool kept (picked up by the file watch, no signal).
    std::fs::write(&lb.config, grown.replace("hostnames: [", "hostnames: [\"\", ")).expect("write");
    let deadline = Instant::now() + Duration::from_secs(8);
    while !lb.logs().contains("invalid configuration; keeping the running pool") {
        assert!(Instant::now() < deadline, "invalid file not reported:\n{}", lb.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(pool_size(&lb), 3);
    assert_eq!(lb.get("/readyz").map(|r| r.0), Some(200));
}

#[test]
fn validate_flag_checks_and_exits() {
    let dir = tempfile::tempdir().expect("dir");
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "loadbalancing:\n  protocol:\n    otlp: {sending_queue: {enabled: true, blocking: true}}\n  resolver:\n    static: {hostnames: [a:4317]}\n").expect("write");
    let out =
        Command::new(env!("CARGO_BIN_EXE_otlp-lb")).args(["--validate", "--config"]).arg(&good).output().expect("run");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("warning: loadbalancing.protocol.otlp.sending_queue.blocking is not supported")
    );
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "loadbalancing:\n  resolver:\n    static: {hostnames: [a:4317]}\nrouting:\n  metrics: traceID\n",
    )
    .expect("write");
    let out =
        Command::new(env!("CARGO_BIN_EXE_otlp-lb")).args(["--validate", "--config"]).arg(&bad).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("routing.metrics: traceID is not a key for metrics"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connection_age_sends_goaway() {
    let backend = Backend::start().await;
    let lb = Lb::start_with(
        &[backend.address()],
        Opts { grpc: ", max_connection_age: 1s, max_connection_age_grace: 1s", ..Opts::default() },
    );
    let tcp = tokio::net::TcpStream::connect(lb.grpc).await.expect("connect");
    let (_sender, conn) = hyper::client::conn::http2::handshake::<_, _, http_body_util::Empty<bytes::Bytes>>(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), conn).await;
    let age = started.elapsed();
    assert!(closed.is_ok(), "the server closed the connection");
    assert!(age >= Duration::from_millis(850) && age < Duration::from_millis(3500), "closed after {age:?}");
    // A channel keeps working across the age limit. A request that races the GOAWAY is not processed: its stream
    // is refused (GOAWAY, NO_ERROR) or it was still queued in the client when the connection closed. gRPC clients
    // retry such requests transparently; tonic does not, so this loop does, at most once per request. Exactly 60
    // spans arrive: nothing is lost and nothing refused was processed.
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    let mut retried = 0;
    for i in 0..12u64 {
        let request = otlp::traces(i * 5..i * 5 + 5, 0..1, 1);
        match client.export(request.clone()).await {
            Ok(_) => {}
            Err(e) if unsent_before_goaway(&e) => {
                retried += 1;
                client.export(request).await.expect("accepted on a new connection");
            }
            Err(e) => panic!("accepted across reconnections: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(retried <= 3, "{retried} of 12 requests raced a GOAWAY");
    assert_eq!(backend.spans().len(), 60);
}

/// Whether a call failed before the server processed it because the connection was going away: its stream was
/// refused by the server's graceful GOAWAY, or the client cancelled it unsent when the connection closed.
fn unsent_before_goaway(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR);
        }
        if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_canceled) {
            return true;
        }
        source = e.source();
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_out_splits_no_trace_in_flight() {
    let backends = [Backend::start().await, Backend::start().await, Backend::start().await];
    let lb = Lb::start(&[backends[0].address(), backends[1].address()]);
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    // The first half of 300 traces, then a backend joins, then the second half and 300 new traces.
    client.export(otlp::traces(0..300, 0..3, 3)).await.expect("accepted");
    let text = std::fs::read_to_string(&lb.config).expect("config");
    let grown = text.replace(
        &format!("\"{}\"]", backends[1].address()),
        &format!("\"{}\", \"{}\"]", backends[1].address(), backends[2].address()),
    );
    std::fs::write(&lb.config, grown).expect("write");
    lb.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool_size(&lb) != 3 {
        assert!(Instant::now() < deadline, "pool not reloaded:\n{}", lb.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    client.export(otlp::traces(0..300, 3..6, 3)).await.expect("accepted");
    client.export(otlp::traces(300..600, 0..6, 3)).await.expect("accepted");
    let mut homes: std::collections::BTreeMap<Vec<u8>, std::collections::BTreeSet<usize>> = Default::default();
    for (i, b) in backends.iter().enumerate() {
        for (t, _) in b.spans() {
            homes.entry(t).or_default().insert(i);
        }
    }
    assert_eq!(homes.len(), 600);
    let split = homes.values().filter(|h| h.len() > 1).count();
    assert_eq!(split, 0, "traces in flight during the scale-out stayed whole");
    let on_new = homes.values().filter(|h| h.contains(&2)).count();
    assert!((60..=160).contains(&on_new), "about a third of the 300 new traces use the added backend: {on_new}");
    // The table behind the affinity holds the 600 trace ids seen, and says so (published every second).
    let deadline = Instant::now() + Duration::from_secs(3);
    while lb.metric("otlp_lb_affinity_traces") != 600.0 {
        assert!(Instant::now() < deadline, "otlp_lb_affinity_traces = {}", lb.metric("otlp_lb_affinity_traces"));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_queued_for_a_removed_backend_go_to_its_successor_and_its_request_in_flight_finishes() {
    // Backend A answers after 1.5 s and takes one request at a time (num_consumers: 1): request 1 is in flight on
    // it, request 2 waits for its slot. A is then replaced by B: request 2 is re-routed to B at once (it was never
    // sent to A), request 1 finishes on A (drain). Nothing is lost, nothing is sent twice.
    let (a, b) = (Backend::start().await, Backend::start().await);
    a.state.delay_ms.store(1500, Ordering::SeqCst);
    let otlp =
        "timeout: 5s, compression: gzip, tls: {insecure: true}, sending_queue: {num_consumers: 1, queue_size: 10}";
    let lb = Lb::start_with(&[a.address()], Opts { otlp, ..Default::default() });
    let send = |traces: std::ops::Range<u64>| {
        let url = lb.grpc_url();
        tokio::spawn(async move {
            let mut client = TraceServiceClient::connect(url).await.expect("connect");
            let reply = client.export(otlp::traces(traces, 0..2, 1)).await;
            (reply.map(|_| ()), Instant::now())
        })
    };
    let first = send(0..10);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = send(10..20);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(a.spans().is_empty() && !first.is_finished() && !second.is_finished());

    let text = std::fs::read_to_string(&lb.config).expect("config");
    std::fs::write(&lb.config, text.replace(&a.address(), &b.address())).expect("write");
    let reloaded = Instant::now();
    lb.signal("HUP");
    let (second, second_done) = second.await.expect("join");
    let (first, first_done) = first.await.expect("join");
    assert!(first.is_ok() && second.is_ok(), "both acknowledged: {first:?} {second:?}\n{}", lb.logs());
    assert!(second_done < first_done, "the queued request did not wait for the removed backend");
    assert!(
        second_done.duration_since(reloaded) < Duration::from_millis(1000),
        "re-routed at once, not after a backoff"
    );
    // Span names are `t<trace>-s<span>`: the trace numbers each backend received.
    let traces = |backend: &Backend| -> Vec<u64> {
        let mut t: Vec<u64> =
            backend.spans().iter().filter_map(|(_, n)| n.strip_prefix('t')?.split('-').next()?.parse().ok()).collect();
        t.sort_unstable();
        t
    };
    let two_each = |r: std::ops::Range<u64>| r.flat_map(|t| [t, t]).collect::<Vec<_>>();
    assert_eq!(traces(&a), two_each(0..10), "request 1 drained on A, and only it");
    assert_eq!(traces(&b), two_each(10..20), "request 2 on B, once");
    assert!(lb.logs().contains("left the pool"), "{}", lb.logs());
}
