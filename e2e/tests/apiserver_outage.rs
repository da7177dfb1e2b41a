//! The k8s resolver through an API server outage: otlp-lb watches the EndpointSlices of three
//! Collector backends (the `rebalance` fixtures); kube-apiserver is killed and stays down for 6 s while loadgen
//! sends 5000 spans through otlp-lb. Asserted: the watch failure is logged, the last good pool stays in use (same
//! ring version and backends on `/debug/pool`), every span is acknowledged and written by a backend; once the API
//! server is back, the watch recovers and a scale-out to 4 backends reaches the ring.
//!
//! Needs root, `make tools`, `make images e2e-images` and `make test-build`; fails (never skips) without them.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use e2e::scenario::{fixture_with, ready_pod_ip};
use e2e::wait::Check;
use e2e::{Cluster, otlp_json, probe, tools};
use serde_json::Value;

const NS: &str = "default";
const SPANS: u64 = 5000;
const DOWN: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_outage() -> Result<()> {
    e2e::init_logging();
    let loadgen = tools::otlp_lb_tools_bin()?;
    let cluster = Cluster::start().await?;
    let res = scenario(&cluster, &loadgen).await;
    cluster.finish(res).await
}

/// (ring version, backend addresses) on `/debug/pool`.
async fn pool(addr: SocketAddr) -> Result<(u64, BTreeSet<String>)> {
    let (code, body) = probe::http_get(addr, "/debug/pool", &[], Duration::from_secs(2)).await?;
    ensure!(code == 200, "GET /debug/pool: {code} {body}");
    let v: Value = serde_json::from_str(&body).with_context(|| format!("parsing {body:?}"))?;
    let version = v["version"].as_u64().context("no version")?;
    let set = v["backends"]
        .as_array()
        .context("no backends")?
        .iter()
        .filter_map(|b| b["address"].as_str().map(str::to_string))
        .collect();
    Ok((version, set))
}

async fn wait_pool(cluster: &Cluster, addr: SocketAddr, want: &BTreeSet<String>) -> Result<u64> {
    cluster
        .wait_for(&format!("/debug/pool to list {want:?}"), Duration::from_secs(60), || async move {
            Ok(match pool(addr).await {
                Ok((v, set)) if set == *want => Check::Done(v),
                Ok((_, set)) => Check::Pending(format!("{set:?}")),
                Err(e) => Check::Pending(format!("{e:#}")),
            })
        })
        .await
}

fn addresses(ips: &[Ipv4Addr]) -> BTreeSet<String> {
    ips.iter().map(|ip| format!("{ip}:4317")).collect()
}

/// Distinct span ids the backends have written.
fn spans_written(dir: &Path) -> Result<usize> {
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        // A line still being written is not counted yet.
        let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
        ids.extend(otlp_json::spans_in_text(complete)?.into_iter().map(|s| (s.trace_id, s.span_id)));
    }
    Ok(ids.len())
}

async fn scenario(cluster: &Cluster, loadgen: &Path) -> Result<()> {
    let data_dir = cluster.run_dir().join("backend-data");
    std::fs::create_dir_all(&data_dir)?;
    // The backends run as the Collector image's user: their hostPath must be writable to it.
    std::fs::set_permissions(&data_dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
    let yaml = fixture_with(
        "rebalance/backends.yaml",
        &[("REPLICAS", "3".into()), ("DATA_DIR", data_dir.display().to_string())],
    )?;
    cluster.apply_yaml_in(NS, &yaml).await?;
    cluster.wait_deployment_ready(NS, "backends", 3, Duration::from_secs(120)).await?;
    let ips = cluster.wait_ready_endpoints(NS, "backends", 3, Duration::from_secs(60)).await?;
    let yaml = fixture_with("rebalance/otlp-lb.yaml", &[("NAMESPACE", NS.into()), ("LB_LOG", "info".into())])?;
    cluster.apply_yaml_in(NS, &yaml).await?;
    cluster.wait_deployment_ready(NS, "otlp-lb", 1, Duration::from_secs(90)).await?;
    let (lb_pod, lb_ip) = ready_pod_ip(cluster, "otlp-lb").await?;
    let telemetry = SocketAddr::from((lb_ip, 8888));
    let before = addresses(&ips);
    let version = wait_pool(cluster, telemetry, &before).await?;

    // The outage, with the load sent while the API server is down.
    let record = cluster.run_dir().join("loadgen.txt");
    let args: Vec<String> = [
        "loadgen",
        "--endpoint",
        &format!("{lb_ip}:4317"),
        "--traces",
        &(SPANS / 10).to_string(),
        "--spans-per-trace",
        "10",
        "--rate",
        "2000",
        "--connections",
        "2",
        "--retry",
        "--seed",
        "5",
        "--report-json",
        "--quiet",
        "--record",
        &record.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let load = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let out = cluster.exec_on_host(loadgen, &args, Duration::from_secs(60)).await?.check("loadgen")?;
        let during = pool(telemetry).await;
        anyhow::Ok((out, during))
    };
    let (outage, load) = tokio::join!(cluster.restart_apiserver(DOWN), load);
    outage?;
    let (out, during) = load?;
    let report: Value =
        out.stdout.lines().rev().find_map(|l| serde_json::from_str(l.trim()).ok()).context("no loadgen report")?;
    eprintln!("apiserver_outage: loadgen during the outage: {report}");
    ensure!(report["failed_requests"].as_u64() == Some(0), "requests failed during the outage: {report}");
    ensure!(report["sent_items"].as_u64() == Some(SPANS), "not every span acknowledged: {report}");
    let during = during.context("/debug/pool during the outage")?;
    ensure!(
        during == (version, before.clone()),
        "the pool changed during the outage: {during:?}, was {version} {before:?}"
    );
    let log = cluster.logs(NS, &lb_pod)?;
    ensure!(log.contains("EndpointSlice watch failed; keeping the current pool"), "no watch failure logged:\n{log}");

    // Every acknowledged span is in a backend's file (they flush every 100 ms).
    let written = cluster
        .wait_for("the backends to write every span", Duration::from_secs(30), || {
            let n = spans_written(&data_dir);
            async move {
                let n = n?;
                Ok(if n as u64 >= SPANS { Check::Done(n) } else { Check::Pending(format!("{n} of {SPANS}")) })
            }
        })
        .await?;
    eprintln!("apiserver_outage: {written} spans written by the backends");

    // The watch recovers: a scale-out reaches the ring.
    cluster.scale_deployment(NS, "backends", 4).await?;
    let ips = cluster.wait_ready_endpoints(NS, "backends", 4, Duration::from_secs(90)).await?;
    let after = wait_pool(cluster, telemetry, &addresses(&ips)).await?;
    ensure!(after > version, "ring version {after} after the scale-out, {version} before");
    let log = cluster.logs(NS, &lb_pod)?;
    ensure!(log.contains("EndpointSlice watch recovered"), "no recovery logged:\n{log}");
    eprintln!(
        "apiserver_outage: pool kept at version {version} through a {DOWN:?} outage; 4 backends at version {after} after it"
    );
    Ok(())
}
