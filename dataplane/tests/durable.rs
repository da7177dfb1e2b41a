//! `ack: queued`: requests acknowledged once they are in the on-disk queue survive a SIGKILL of the load balancer
//! and are delivered after the restart; malformed requests are refused before they are queued; a full queue
//! refuses with RESOURCE_EXHAUSTED; a SIGTERM delivers what the queue holds before the process exits.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::backend::Backend;
use common::lb::{Lb, Opts};
use dataplane::fixtures as otlp;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

fn queued(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "  retry_on_failure: {{initial_interval: 20ms, max_interval: 200ms, max_elapsed_time: 2s}}\n  sending_queue: {{ack: queued, storage: \"{}\", fsync: always{extra}}}\n",
        dir.display()
    )
}

async fn wait_spans(backends: &[Backend], want: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let n: usize = backends.iter().map(|b| b.spans().len()).sum();
        if n >= want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_requests_survive_sigkill_and_are_delivered_after_restart() {
    let backends = [Backend::start().await, Backend::start().await];
    for b in &backends {
        b.state.fail_code.store(tonic::Code::Unavailable as u32, Ordering::SeqCst);
    }
    let storage = tempfile::tempdir().expect("dir");
    let lb_cfg = queued(storage.path(), "");
    let mut lb = Lb::start_with(
        &backends.iter().map(Backend::address).collect::<Vec<_>>(),
        Opts { lb: &lb_cfg, ..Opts::default() },
    );
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    let started = Instant::now();
    for batch in 0..20u64 {
        client.export(otlp::traces(batch * 10..batch * 10 + 10, 0..5, 2)).await.expect("acknowledged once queued");
    }
    assert!(started.elapsed() < Duration::from_secs(10), "acknowledged without waiting for the backends");
    assert_eq!(backends.iter().map(Backend::requests).sum::<usize>(), 0, "nothing could be delivered yet");
    lb.kill9();
    for b in &backends {
        b.state.fail_code.store(0, Ordering::SeqCst);
    }
    lb.respawn();
    let got = wait_spans(&backends, 1000, Duration::from_secs(20)).await;
    assert_eq!(got, 1000, "every acknowledged span delivered after the restart:\n{}", lb.logs());
    let names: std::collections::BTreeSet<String> = backends.iter().flat_map(|b| b.spans()).map(|s| s.1).collect();
    assert_eq!(names.len(), 1000, "exactly once");
    assert!(lb.logs().contains("replaying records acknowledged before the last stop"));
    // Delivered records are committed: a second restart replays nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    lb.signal("TERM");
    assert!(lb.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()));
    lb.respawn();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        backends.iter().map(|b| b.spans().len()).sum::<usize>(),
        1000,
        "nothing delivered twice after a clean restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_mode_still_refuses_malformed_requests_and_reports_a_full_queue() {
    let backend = Backend::start().await;
    backend.state.fail_code.store(tonic::Code::Unavailable as u32, Ordering::SeqCst);
    let storage = tempfile::tempdir().expect("dir");
    let lb_cfg = queued(storage.path(), ", max_size_mib: 1, segment_size_mib: 1");
    let lb = Lb::start_with(&[backend.address()], Opts { lb: &lb_cfg, ..Opts::default() });
    let r = reqwest::Client::new()
        .post(lb.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(vec![0x0a, 0x7f, 0x01])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400, "malformed: refused, not queued");
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    let mut big = otlp::traces(0..1, 0..1, 1);
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(200 * 1024);
    let mut accepted = 0;
    let mut refused = None;
    for _ in 0..20 {
        match client.export(big.clone()).await {
            Ok(_) => accepted += 1,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let err = refused.expect("a 1 MiB queue fills up");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert!((2..=5).contains(&accepted), "about 1 MiB of 200 KiB requests queued: {accepted}");
    // Once the backend is back, the queue drains and takes requests again.
    backend.state.fail_code.store(0, Ordering::SeqCst);
    let got = wait_spans(std::slice::from_ref(&backend), accepted, Duration::from_secs(15)).await;
    assert_eq!(got, accepted);
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.export(big.clone()).await.is_err() {
        assert!(Instant::now() < deadline, "queue space not reclaimed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_load_balancer_delivers_its_log_before_it_exits() {
    let backend = Backend::start().await;
    // One record at a time, each answered after 150ms: 20 records take 3s of the 5s drain_timeout.
    backend.state.delay_ms.store(150, Ordering::SeqCst);
    let storage = tempfile::tempdir().expect("dir");
    let lb_cfg = queued(storage.path(), ", max_concurrent_deliveries: 1");
    let mut lb = Lb::start_with(&[backend.address()], Opts { lb: &lb_cfg, ..Opts::default() });
    let mut client = TraceServiceClient::connect(lb.grpc_url()).await.expect("connect");
    for batch in 0..20u64 {
        client.export(otlp::traces(batch * 10..batch * 10 + 10, 0..5, 2)).await.expect("acknowledged once queued");
    }
    assert!(backend.spans().len() < 500, "the log holds a backlog when the stop begins");
    lb.signal("TERM");
    assert!(lb.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()), "exits 0 within the drain timeout");
    assert_eq!(backend.spans().len(), 1000, "the log delivered before the exit:\n{}", lb.logs());
    backend.state.delay_ms.store(0, Ordering::SeqCst);
    lb.respawn();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(backend.spans().len(), 1000, "nothing left to replay, nothing delivered twice");
}
