//! The k8s resolver: watches the `discovery.k8s.io/v1` EndpointSlices of a Service (label
//! `kubernetes.io/service-name`) with kube-runtime, feeds them to a [`SliceIndex`] and hands the member set (active and draining)
//! to the pool on every change. Watch errors back off and recover; the last good pool stays in use meanwhile.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;

use super::endpointslice::{SliceIndex, Target};
use crate::config::K8sResolver;
use crate::pool::PoolManager;
use crate::telemetry::Metrics;

const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The Service to watch: `name[.namespace]`, the namespace inferred from the service-account file, else `default`.
pub fn target(cfg: &K8sResolver) -> Target {
    target_with(cfg, std::path::Path::new(NAMESPACE_FILE))
}

/// [`target`] with the service-account namespace read from `namespace_file`.
fn target_with(cfg: &K8sResolver, namespace_file: &std::path::Path) -> Target {
    let (service, namespace) = match cfg.service.split_once('.') {
        Some((s, ns)) => (s.to_string(), ns.split('.').next().unwrap_or(ns).to_string()),
        None => {
            let ns =
                std::fs::read_to_string(namespace_file).map(|s| s.trim().to_string()).ok().filter(|s| !s.is_empty());
            (cfg.service.clone(), ns.unwrap_or_else(|| "default".to_string()))
        }
    };
    let ports = if cfg.ports.is_empty() { vec![4317] } else { cfg.ports.clone() };
    Target { service, namespace, ports, return_hostnames: cfg.return_hostnames }
}

/// Connects to the API server (in-cluster configuration or KUBECONFIG) and starts the watch.
pub async fn start(
    cfg: &K8sResolver,
    pool: Arc<PoolManager>,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let target = target(cfg);
    let mut config = kube::Config::infer()
        .await
        .map_err(|e| anyhow::anyhow!("loadbalancing.resolver.k8s: no Kubernetes configuration: {e}"))?;
    config.connect_timeout =
        Some(cfg.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(1)).max(Duration::from_millis(100)));
    let client = Client::try_from(config)?;
    tracing::info!(service = %target.service, namespace = %target.namespace, ports = ?target.ports, "watching EndpointSlices");
    Ok(tokio::spawn(run(client, target, pool, metrics, shutdown)))
}

async fn run(
    client: Client,
    target: Target,
    pool: Arc<PoolManager>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<EndpointSlice> = Api::namespaced(client, &target.namespace);
    let selector = format!("kubernetes.io/service-name={}", target.service);
    let events = watcher::watcher(api, watcher::Config::default().labels(&selector)).default_backoff();
    tokio::pin!(events);
    let mut index = SliceIndex::default();
    let mut listing: Vec<EndpointSlice> = Vec::new();
    let mut healthy = true;
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let changed = match event {
            None => {
                tracing::error!("EndpointSlice watch ended");
                return;
            }
            Some(Err(e)) => {
                if healthy {
                    tracing::warn!(error = %e, "EndpointSlice watch failed; keeping the current pool and retrying");
                }
                healthy = false;
                metrics.resolution("k8s", false);
                false
            }
            Some(Ok(Event::Init)) => {
                listing.clear();
                false
            }
            Some(Ok(Event::InitApply(s))) => {
                listing.push(s);
                false
            }
            Some(Ok(Event::InitDone)) => {
                index.reset(&target, &listing);
                listing.clear();
                true
            }
            Some(Ok(Event::Apply(s))) => index.apply(&target, &s),
            Some(Ok(Event::Delete(s))) => index.delete(&s),
        };
        if changed {
            if !healthy {
                tracing::info!("EndpointSlice watch recovered");
                healthy = true;
            }
            let outcome = pool.apply_members(index.members()).await;
            metrics.resolution("k8s", outcome.is_ok());
            if let Err(e) = outcome {
                tracing::error!(error = %e, "cannot apply the EndpointSlice members");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_and_default_port() {
        let t = target(&K8sResolver { service: "pool.observability".into(), ..Default::default() });
        assert_eq!(
            (t.service.as_str(), t.namespace.as_str(), t.ports.as_slice()),
            ("pool", "observability", &[4317u16][..])
        );
        let t = target(&K8sResolver {
            service: "pool.obs.svc.cluster.local".into(),
            ports: vec![4317, 4318],
            ..Default::default()
        });
        assert_eq!((t.service.as_str(), t.namespace.as_str(), t.ports.len()), ("pool", "obs", 2));
    }

    #[test]
    fn namespace_from_the_service_account_file_else_default() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("namespace");
        let cfg = K8sResolver { service: "pool".into(), ..Default::default() };
        assert_eq!(target_with(&cfg, &file).namespace, "default", "no file");
        std::fs::write(&file, "observability\n").expect("write");
        assert_eq!(target_with(&cfg, &file).namespace, "observability");
        let named = K8sResolver { service: "pool.other".into(), ..Default::default() };
        assert_eq!(target_with(&named, &file).namespace, "other", "an explicit namespace wins");
    }
}
