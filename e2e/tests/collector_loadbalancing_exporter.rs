//! The reference balancer: the Collector's own loadbalancing exporter
//! (routing by trace ID, static resolver of the backend pod IPs) in front of
//! 3 Collector backends. Shows the harness serves both balancers with the
//! same scenario, and pins what "correct" looks like for otlp-lb.
//!
//! Needs root, `make tools` and `make e2e-images`; fails (never skips)
//! without them.

use e2e::Cluster;
use e2e::scenario;
use e2e::telemetrygen::Traces;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_loadbalancing_exporter() -> anyhow::Result<()> {
    e2e::init_logging();
    e2e::tools::require(&[e2e::tools::OTELCOL, e2e::tools::TELEMETRYGEN])?;
    let cluster = Cluster::start().await?;
    let load = Traces { workers: 2, traces_per_worker: 100, child_spans: 4 };
    let res = scenario::balanced_traces(&cluster, 3, "collector-lb.yaml", "collector-lb", load).await;
    cluster.finish(res.map(|d| eprintln!("collector loadbalancing exporter: {d}"))).await
}
