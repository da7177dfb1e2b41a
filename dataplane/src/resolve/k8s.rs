//! The k8s resolver: watches the `discovery.k8s.io/v1` EndpointSlices of a Service (label
//! `kubernetes.io/service-name`) with kube-runtime, feeds them to a [`SliceIndex`] and gives the member set
//! (active and draining) on every change. Watch errors back off and recover; the last good pool stays in use
//! meanwhile.

use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use super::endpointslice::{SliceIndex, Target};
use super::{Resolve, Update, Updates, Wording};
use crate::config::K8sResolver;

/// The resolver's name in metric labels and `/debug/pool`.
pub const NAME: &str = "k8s";

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

/// The k8s resolver, as configured.
pub struct K8s {
    target: Target,
    connect_timeout: Duration,
}

impl K8s {
    pub fn new(cfg: &K8sResolver) -> K8s {
        let connect_timeout =
            cfg.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(1)).max(Duration::from_millis(100));
        K8s { target: target(cfg), connect_timeout }
    }
}

impl Resolve for K8s {
    fn name(&self) -> &'static str {
        NAME
    }

    fn wording(&self) -> Wording {
        Wording {
            failed: "EndpointSlice watch failed; keeping the current pool and retrying",
            recovered: "EndpointSlice watch recovered",
        }
    }

    /// Connects to the API server (in-cluster configuration or KUBECONFIG) and starts the watch.
    fn updates(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<Updates>> {
        let K8s { target, connect_timeout } = *self;
        Box::pin(async move {
            let mut config = kube::Config::infer()
                .await
                .map_err(|e| anyhow::anyhow!("loadbalancing.resolver.k8s: no Kubernetes configuration: {e}"))?;
            config.connect_timeout = Some(connect_timeout);
            let client = Client::try_from(config)?;
            tracing::info!(service = %target.service, namespace = %target.namespace, ports = ?target.ports, "watching EndpointSlices");
            let api: Api<EndpointSlice> = Api::namespaced(client, &target.namespace);
            let selector = format!("kubernetes.io/service-name={}", target.service);
            let events = watcher::watcher(api, watcher::Config::default().labels(&selector)).default_backoff().boxed();
            let watch = Watch { events, target, index: SliceIndex::default(), listing: Vec::new() };
            Ok(futures::stream::unfold(watch, |mut w| async move { Some((w.next_update().await?, w)) }).boxed())
        })
    }
}

/// The watch of one Service's EndpointSlices and what it has seen.
struct Watch {
    events: BoxStream<'static, Result<Event<EndpointSlice>, watcher::Error>>,
    target: Target,
    index: SliceIndex,
    /// Slices of an initial listing (or relist) not yet complete.
    listing: Vec<EndpointSlice>,
}

impl Watch {
    /// The member set at its next change, or the next watch error; `None` when the watch ends.
    async fn next_update(&mut self) -> Option<Update> {
        loop {
            let changed = match self.events.next().await? {
                Err(e) => return Some(Update::Failed(e.to_string())),
                Ok(Event::Init) => {
                    self.listing.clear();
                    false
                }
                Ok(Event::InitApply(s)) => {
                    self.listing.push(s);
                    false
                }
                Ok(Event::InitDone) => {
                    self.index.reset(&self.target, &self.listing);
                    self.listing.clear();
                    true
                }
                Ok(Event::Apply(s)) => self.index.apply(&self.target, &s),
                Ok(Event::Delete(s)) => self.index.delete(&s),
            };
            if changed {
                return Some(Update::Reset(self.index.members()));
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
