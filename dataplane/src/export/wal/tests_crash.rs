//! Crash tests (a child process, the test binary itself running the ignored `crash_child`, appends until it is
//! SIGKILLed; the parent then checks that every append the child saw acknowledged is replayed) and the append
//! throughput benchmark (ignored:
//! `cargo test -p dataplane --release --lib export::wal::tests_crash::bench -- --ignored --nocapture`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tests::{config, payload};
use super::{FsyncPolicy, Wal};

const DIR_VAR: &str = "OTLP_LB_WAL_CRASH_DIR";
const POLICY_VAR: &str = "OTLP_LB_WAL_CRASH_POLICY";
const TASKS: u64 = 4;

fn policy(name: &str) -> FsyncPolicy {
    match name {
        "never" => FsyncPolicy::Never,
        "interval" => FsyncPolicy::Interval(Duration::from_millis(2)),
        _ => FsyncPolicy::Always,
    }
}

/// The child of the SIGKILL tests, which start it with `--ignored --exact` and its two variables set: appends from
/// several tasks and prints `ACK <seq> <tag>` for each acknowledged record, until killed. Run on its own it fails.
#[test]
#[ignore = "the child process of the sigkill_loses_nothing_acknowledged tests, started by them"]
fn crash_child() {
    let (Ok(dir), Ok(name)) = (std::env::var(DIR_VAR), std::env::var(POLICY_VAR)) else {
        panic!(
            "crash_child runs only as the child of a sigkill_loses_nothing_acknowledged test ({DIR_VAR}, {POLICY_VAR})"
        );
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let (wal, _) = Wal::open(config(dir.as_ref(), 256 << 10, 1 << 30, policy(&name))).expect("open");
        let wal = Arc::new(wal);
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let wal = wal.clone();
                tokio::spawn(async move {
                    // Bounded: the parent kills the child long before.
                    for i in 0..1_000_000u64 {
                        let tag = t << 32 | i;
                        let seq = wal.append(t as u8, payload(tag, 2048)).await.expect("append");
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "ACK {seq} {tag}").and_then(|()| out.flush());
                    }
                })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    });
}

fn crash(name: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["export::wal::tests_crash::crash_child", "--ignored", "--exact", "--nocapture", "--test-threads=1"])
        .env(DIR_VAR, dir.path())
        .env(POLICY_VAR, name)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut acked: HashMap<u64, u64> = HashMap::new();
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        if words.next() != Some("ACK") {
            continue;
        }
        let mut num = || words.next().and_then(|w| w.parse::<u64>().ok()).expect("ACK line");
        let (seq, tag) = (num(), num());
        acked.insert(seq, tag);
        if acked.len() == 300 && !killed {
            child.kill().expect("SIGKILL the child"); // the lines already in the pipe are read on
            killed = true;
        }
    }
    let status = child.wait().expect("wait");
    assert!(killed && !status.success(), "the child was killed mid-run: {status:?}");
    let (_wal, replay) = Wal::open(config(dir.path(), 256 << 10, 1 << 30, policy(name))).expect("reopen");
    let found: HashMap<u64, _> = replay.iter().map(|r| (r.seq, r)).collect();
    for (seq, tag) in &acked {
        let r = found.get(seq).unwrap_or_else(|| panic!("{name}: acknowledged seq {seq} lost"));
        assert_eq!((r.signal as u64, &r.payload), (tag >> 32, &payload(*tag, 2048)), "{name}: seq {seq}");
    }
    assert!(replay.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[test]
fn sigkill_loses_nothing_acknowledged_under_always() {
    crash("always");
}

#[test]
fn sigkill_loses_nothing_acknowledged_under_interval() {
    crash("interval");
}

#[test]
fn sigkill_loses_nothing_acknowledged_under_never() {
    crash("never");
}

/// Append throughput with 10 KiB payloads, each record committed once appended (steady state).
#[test]
#[ignore = "benchmark"]
fn bench() {
    const LEN: usize = 10 << 10;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let policies = [
        ("always", FsyncPolicy::Always),
        ("interval 2ms", FsyncPolicy::Interval(Duration::from_millis(2))),
        ("never", FsyncPolicy::Never),
    ];
    for (name, policy) in policies {
        for tasks in [1u64, 16, 64] {
            let dir = tempfile::tempdir().expect("tempdir");
            let (wal, _) = Wal::open(config(dir.path(), 64 << 20, 1 << 30, policy)).expect("open");
            let wal = Arc::new(wal);
            let budget = Duration::from_secs(2);
            let start = Instant::now();
            let total: u64 = rt.block_on(async {
                let handles: Vec<_> = (0..tasks)
                    .map(|t| {
                        let wal = wal.clone();
                        tokio::spawn(async move {
                            let body = payload(t, LEN);
                            let mut n = 0u64;
                            while start.elapsed() < budget && n < 1_000_000 {
                                let seq = wal.append(0, body.clone()).await.expect("append");
                                wal.commit(seq).expect("commit");
                                n += 1;
                            }
                            n
                        })
                    })
                    .collect();
                let mut total = 0;
                for h in handles {
                    total += h.await.expect("task");
                }
                total
            });
            let secs = start.elapsed().as_secs_f64();
            let fsyncs = wal.stats().fsyncs;
            let per_fsync = if fsyncs == 0 {
                "no fsync".to_string()
            } else {
                format!("{:.1} per fsync", total as f64 / fsyncs as f64)
            };
            println!(
                "{name:>12} tasks={tasks:>2}: {:>8.0} records/s {:>7.1} MB/s  ({total} records, {per_fsync})",
                total as f64 / secs,
                total as f64 * LEN as f64 / secs / 1e6,
            );
        }
    }
}
