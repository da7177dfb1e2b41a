//! Runs the operator: metrics server, leader election, and one controller per watched namespace
//! (or one for all namespaces). [`run`] is what the binary and the e2e tests call.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::{self, Either};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus::Registry;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::build::labels::{COMPONENT, Component, INSTANCE, MANAGED_BY, MANAGER};
use crate::crd::LoadBalancedCollector;
use crate::leader::{LeaderElectionConfig, LeaderElector};
use crate::metrics::Metrics;
use crate::reconcile::{Context, error_policy, reconcile};

/// How to run the operator.
#[derive(Clone, Debug)]
pub struct Config {
    /// Namespaces to watch; empty watches all.
    pub namespaces: Vec<String>,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub metrics_address: SocketAddr,
    /// Lease settings; `None` runs without leader election (one replica only).
    pub leader_election: Option<LeaderElectionConfig>,
    /// Reporting instance of Events (the pod name).
    pub instance: Option<String>,
}

/// Connects with the default kubeconfig or in-cluster config and runs until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    run_with_client(client, config, shutdown_signal()).await
}

/// Runs with `client` until `shutdown` completes or leadership is lost (an error: the process
/// should exit so it restarts as a follower).
pub async fn run_with_client(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let registry = Registry::new();
    let metrics = Metrics::register(&registry)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let listener = crate::server::bind(config.metrics_address).await?;
    info!(address = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    let server = tokio::spawn(crate::server::serve(listener, registry, stopped(stop_rx.clone())));

    let mut shutdown = Box::pin(shutdown);
    let elector = config.leader_election.clone().map(|c| LeaderElector::new(client.clone(), c));
    if let Some(elector) = &elector {
        match future::select(Box::pin(elector.acquire()), shutdown.as_mut()).await {
            Either::Left(((), _)) => metrics.leader.set(1),
            Either::Right(((), _)) => {
                let _ = stop_tx.send(true);
                let _ = server.await;
                return Ok(());
            }
        }
    }

    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter { controller: MANAGER.into(), instance: config.instance.clone() },
        ),
        metrics: metrics.clone(),
    });
    let namespaces: Vec<Option<String>> =
        if config.namespaces.is_empty() { vec![None] } else { config.namespaces.iter().cloned().map(Some).collect() };
    let controllers = future::join_all(
        namespaces.into_iter().map(|ns| controller(client.clone(), ns, ctx.clone(), stopped(stop_rx.clone()))),
    );
    let mut controllers = Box::pin(controllers);

    let lost = match &elector {
        Some(elector) => Either::Left(elector.hold()),
        None => Either::Right(future::pending()),
    };
    let outcome = tokio::select! {
        _ = &mut controllers => Ok(()),
        () = shutdown.as_mut() => Ok(()),
        error = lost => Err(error),
    };
    let _ = stop_tx.send(true);
    controllers.await;
    if let Some(elector) = &elector {
        metrics.leader.set(0);
        if outcome.is_ok() {
            elector.release().await;
        }
    }
    let _ = server.await;
    outcome.map_err(Into::into)
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The LoadBalancedCollector of an EndpointSlice of a managed backend Service.
fn owner_of_slice(slice: EndpointSlice) -> Option<ObjectRef<LoadBalancedCollector>> {
    let instance = slice.labels().get(INSTANCE)?.clone();
    let namespace = slice.namespace()?;
    Some(ObjectRef::new(&instance).within(&namespace))
}

async fn controller(
    client: Client,
    namespace: Option<String>,
    ctx: Arc<Context>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = namespace.as_deref();
    info!(namespace = ns.unwrap_or("<all>"), "starting controller");
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER}"));
    let backend_slices = watcher::Config::default()
        .labels(&format!("{MANAGED_BY}={MANAGER},{COMPONENT}={}", Component::Backends.as_str()));
    Controller::new(api::<LoadBalancedCollector>(&client, ns), watcher::Config::default())
        .owns(api::<Deployment>(&client, ns), managed.clone())
        .owns(api::<StatefulSet>(&client, ns), managed.clone())
        .owns(api::<Service>(&client, ns), managed.clone())
        .owns(api::<ConfigMap>(&client, ns), managed.clone())
        .owns(api::<HorizontalPodAutoscaler>(&client, ns), managed.clone())
        .owns(api::<PodDisruptionBudget>(&client, ns), managed)
        .watches(api::<EndpointSlice>(&client, ns), backend_slices, owner_of_slice)
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(name = %object.name, "reconciled"),
                Err(error) => warn!(%error, "reconcile failed"),
            }
        })
        .await;
}

/// Completes on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
