//! otlp-lb with a static pool: the data plane (a Deployment pod of the
//! `otlp-lb` image, behind its Service) in front of 3 Collector backends,
//! configured with their pod IPs. Every trace's spans must land on exactly
//! one backend, no span lost or duplicated, every backend used.
//!
//! Needs root, `make tools` and `make images e2e-images`; fails (never
//! skips) without them.

use e2e::Cluster;
use e2e::scenario;
use e2e::telemetrygen::Traces;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pool_traces() -> anyhow::Result<()> {
    e2e::init_logging();
    e2e::tools::require(&[e2e::tools::OTELCOL, e2e::tools::TELEMETRYGEN])?;
    let cluster = Cluster::start().await?;
    let load = Traces { workers: 2, traces_per_worker: 100, child_spans: 4 };
    let res = scenario::balanced_traces(&cluster, 3, "otlp-lb.yaml", "otlp-lb", load).await;
    cluster.finish(res.map(|d| eprintln!("otlp-lb static pool: {d}"))).await
}
