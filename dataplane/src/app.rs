//! The running process: builds the pool, pipeline, receivers and telemetry from a [`Config`], serves until SIGTERM
//! or SIGINT, then stops accepting, lets requests in flight finish (bounded by `drain_timeout`) and returns.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::config::{AckMode, Config};
use crate::durable::DurableAck;
use crate::metrics::Metrics;
use crate::peer::{Coordinator, PeerSwitch};
use crate::pipeline::Pipeline;
use crate::pool::PoolManager;
use crate::receive::auth::Bearer;
use crate::receive::grpc::GrpcReceiver;
use crate::receive::server::{self, ServeOptions};
use crate::receive::tls;
use crate::resolve;
use crate::route::affinity::Affinity;
use crate::telemetry::status::Status;
use crate::telemetry::{self, Health};

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} ({what})"))
}

/// Runs the load balancer until a termination signal.
pub async fn run(config_path: PathBuf, config: Config) -> anyhow::Result<()> {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let metrics = Metrics::new();
    let health = Arc::new(Health::default());
    let (stop_tx, stop) = watch::channel(false);
    let lb = &config.loadbalancing;
    let resolver = resolve::from_config(&config, &config_path)?;
    let resolver_name = resolver.name();
    let window = config.routing.affinity_window.0;
    let (pool, pools) =
        PoolManager::new(lb.protocol.otlp.clone(), lb.health_check.clone(), metrics.clone(), resolver_name, window);
    let _prober = tokio::spawn(Arc::clone(&pool).probe_ejected(stop.clone()));
    let affinity = Arc::new(Affinity::new(window, config.routing.affinity_max_traces));
    metrics.affinity_capacity(affinity.capacity());

    let telemetry_addr = config.telemetry.metrics.address;
    // The telemetry server outlives the drain: /readyz answers 503 and /metrics stays scrapable until the
    // receivers have finished.
    let (telemetry_stop_tx, telemetry_stop) = watch::channel(false);
    pool.changes().track_affinity(Arc::clone(&affinity));
    let status = Arc::new(Status::new(pools.clone(), pool.changes(), Arc::clone(&affinity), metrics.clone()));
    let telemetry = telemetry::serve(telemetry_addr, metrics.clone(), Arc::clone(&health), status, telemetry_stop)
        .await
        .with_context(|| format!("cannot listen on {telemetry_addr} (telemetry)"))?;

    // With peers, each new ring takes effect at the time agreed with the other replicas.
    let peers = match &config.peers {
        Some(p) => {
            let c = Coordinator::start(p, Arc::clone(&affinity), pools.clone(), &metrics, stop.clone()).await?;
            pool.set_switch(Arc::new(PeerSwitch(Arc::clone(&c))));
            Some(c)
        }
        None => None,
    };
    let _resolver_task = resolve::driver::start(resolver, Arc::clone(&pool), metrics.clone(), stop.clone()).await?;

    let policy = config.routing_policy()?;
    let mut pipeline = Pipeline::new(
        pools,
        policy,
        Arc::clone(&affinity),
        lb.retry_on_failure.clone(),
        config.limits.memory_limit_mib,
        metrics.clone(),
    );
    let mut log = None;
    if lb.sending_queue.ack == AckMode::Queued {
        let (cfg, delivery) = (lb.sending_queue.clone(), Arc::clone(pipeline.delivery()));
        let (durable, backlog) = tokio::task::spawn_blocking(move || DurableAck::open(&cfg, delivery))
            .await?
            .map_err(|e| anyhow::anyhow!("loadbalancing.sending_queue: {e}"))?;
        tracing::info!(storage = ?lb.sending_queue.storage, pending = durable.pending(), "requests are acknowledged once written to the queue");
        pipeline = pipeline.with_durable_ack(Arc::clone(&durable));
        log = Some((durable, backlog));
    }
    let pipeline = Arc::new(pipeline);
    let _affinity_gauge = tokio::spawn(report_affinity(affinity, metrics.clone(), stop.clone()));
    let grace = config.drain_timeout.0;
    let auth = Bearer::from_config(config.receivers.otlp.auth.as_ref()).map_err(anyhow::Error::msg)?;
    if let Some(peers) = &peers {
        peers.sync_at_start().await;
    }
    // The records replayed from the log are routed as new requests are: once the peers' tables are in.
    let queue = log.map(|(durable, backlog)| {
        tokio::spawn(Arc::clone(&durable).run(backlog));
        durable
    });
    let mut servers = Vec::new();
    if let Some(g) = &config.receivers.otlp.protocols.grpc {
        let tls = g
            .tls
            .as_ref()
            .map(|t| tls::acceptor(t, &[b"h2"]))
            .transpose()
            .map_err(|e| anyhow::anyhow!("receivers.otlp.protocols.grpc.{e}"))?;
        let listener = bind(g.endpoint, "OTLP/gRPC").await?;
        let max_age = Some(g.max_connection_age.0).filter(|d| !d.is_zero());
        let opts = ServeOptions { http2_only: true, max_connection_age: max_age, grace, tls };
        let receiver = GrpcReceiver::new(Arc::clone(&pipeline), (g.max_recv_msg_size_mib as usize) << 20, auth.clone());
        tracing::info!(address = %listener.local_addr()?, tls = g.tls.is_some(), "OTLP/gRPC receiver listening");
        servers.push(server::spawn(listener, receiver, opts, stop.clone()));
    }
    if let Some(h) = &config.receivers.otlp.protocols.http {
        let tls = h
            .tls
            .as_ref()
            .map(|t| tls::acceptor(t, &[b"h2", b"http/1.1"]))
            .transpose()
            .map_err(|e| anyhow::anyhow!("receivers.otlp.protocols.http.{e}"))?;
        let listener = bind(h.endpoint, "OTLP/HTTP").await?;
        let router = crate::receive::http::router(Arc::clone(&pipeline), h, auth.clone());
        tracing::info!(address = %listener.local_addr()?, tls = h.tls.is_some(), "OTLP/HTTP receiver listening");
        let opts = ServeOptions { http2_only: false, max_connection_age: None, grace, tls };
        servers.push(server::spawn(listener, router, opts, stop.clone()));
    }
    health.receivers_bound.store(true, Ordering::Relaxed);
    tracing::info!(telemetry = %telemetry_addr, resolver = resolver_name, "otlp-lb started");

    wait_for_termination().await?;
    tracing::info!(drain_timeout = ?grace, "shutting down: no new connections; finishing requests in flight");
    let drain_by = Instant::now() + grace;
    health.draining.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(grace + Duration::from_secs(2), futures::future::join_all(servers)).await;
    if drained.is_err() {
        tracing::warn!("requests still in flight after the drain timeout");
    }
    // What the log acknowledged is delivered before the process leaves, within the same bound; the rest is
    // replayed at the next start.
    if let Some(queue) = &queue
        && !queue.drained(drain_by).await
    {
        tracing::warn!(records = queue.pending(), "queued records not delivered by the drain timeout: kept in the log");
    }
    let _ = telemetry_stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), telemetry).await;
    tracing::info!("otlp-lb stopped");
    Ok(())
}

/// Publishes the size of the trace-affinity table every second.
async fn report_affinity(affinity: Arc<Affinity>, metrics: Metrics, mut stop: watch::Receiver<bool>) {
    loop {
        metrics.affinity(affinity.len(), affinity.early_rotations());
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn wait_for_termination() -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}
