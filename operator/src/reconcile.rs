//! The reconciler: validate → build → apply → status, plus events, metrics and the error policy.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, warn};

use crate::apply::apply_all;
use crate::build::{self, labels::Names};
use crate::crd::LoadBalancedCollector;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::{events, ring, status, validate};

/// Requeue after success when the backends are a Service the operator does not watch.
pub const REQUEUE_SERVICE_REF: Duration = Duration::from_secs(30);
/// Requeue after success otherwise (children and EndpointSlices are watched).
pub const REQUEUE: Duration = Duration::from_secs(300);
/// How soon a LoadBalancedCollector that is not Ready is reconciled again.
pub const REQUEUE_NOT_READY: Duration = Duration::from_secs(15);

/// What every reconciliation shares.
pub struct Context {
    /// Client of the API server.
    pub client: Client,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Metrics,
}

/// Reconciles one LoadBalancedCollector. On failure the status says Degraded, a Warning event is
/// published, the failure is counted, and the error is returned for the error policy.
pub async fn reconcile(lbc: Arc<LoadBalancedCollector>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.start();
    match reconcile_inner(&lbc, &ctx).await {
        Ok(action) => Ok(action),
        Err(error) => {
            ctx.metrics.failed(&error);
            warn!(name = %lbc.name_any(), namespace = ?lbc.namespace(), %error, "reconciliation failed");
            publish(&ctx, &lbc, &[events::warning(&error)]).await;
            if let (Some(name), Some(namespace)) = (lbc.metadata.name.as_deref(), lbc.metadata.namespace.as_deref()) {
                let api = Api::<LoadBalancedCollector>::namespaced(ctx.client.clone(), namespace);
                let degraded = status::degraded(&lbc, &error, Timestamp::now());
                if let Err(status_error) = status::write(&api, name, &degraded).await {
                    warn!(%name, %status_error, "could not record the failure in the status");
                }
            }
            Err(error)
        }
    }
}

async fn reconcile_inner(lbc: &LoadBalancedCollector, ctx: &Context) -> Result<Action> {
    if lbc.metadata.deletion_timestamp.is_some() {
        // Being deleted: the garbage collector removes the children through their owner references.
        return Ok(Action::await_change());
    }
    let cluster = validate::validate(lbc)?;
    let children = build::build(&cluster)?;
    let owner = build::Owner::new(&cluster);
    let uid = owner.owner_ref.uid.clone();

    // The pods mount the peers' token: it exists before they are applied.
    crate::peer_token::ensure(&ctx.client, &owner).await?;
    let applied = apply_all(&ctx.client, owner.namespace, owner.name, &uid, &children).await?;

    let (service, port) = status::backend_service(lbc, &Names::new(owner.name));
    let slices =
        status::endpoint_slices(&Api::<EndpointSlice>::namespaced(ctx.client.clone(), owner.namespace), &service)
            .await?;
    let (backends, load_balancer) = status::observe(lbc, &applied, &slices);
    let now = Timestamp::now();
    let mut next = status::compute(lbc, backends, load_balancer, None, now);
    let pods = status::pods(&Api::<Pod>::namespaced(ctx.client.clone(), owner.namespace), owner.name).await?;
    let stuck = status::stuck_pods(&pods);
    status::explain_stuck(&mut next, &stuck);
    let previous_ring = lbc.status.as_ref().and_then(|s| s.ring.as_ref());
    let (ring, rebalance) = ring::observe(previous_ring, ring::members(&slices, port), now);
    next.ring = Some(ring);
    let mut planned = events::plan(lbc, &next, &applied.deleted);
    planned.extend(rebalance.as_ref().map(events::rebalanced));
    planned.extend(stuck.iter().map(events::stuck));

    let api = Api::<LoadBalancedCollector>::namespaced(ctx.client.clone(), owner.namespace);
    status::write(&api, owner.name, &next).await?;
    publish(ctx, lbc, &planned).await;
    info!(name = owner.name, namespace = owner.namespace, backends = next.backends.in_ring, "reconciled");

    // A tier that is not ready yet is looked at again soon: its pods' progress changes no watched object.
    let ready = next.conditions.iter().any(|c| c.type_ == status::READY && c.status == "True");
    Ok(Action::requeue(if !ready {
        REQUEUE_NOT_READY
    } else if lbc.spec.backends.service_ref.is_some() {
        REQUEUE_SERVICE_REF
    } else {
        REQUEUE
    }))
}

async fn publish(ctx: &Context, lbc: &LoadBalancedCollector, events: &[Event]) {
    let reference = lbc.object_ref(&());
    for event in events {
        if let Err(error) = ctx.recorder.publish(event, &reference).await {
            warn!(%error, reason = %event.reason, "could not publish an event");
        }
    }
}

/// Retry API failures soon; spec problems only after a while (a spec edit triggers a run anyway).
pub fn error_policy(_lbc: Arc<LoadBalancedCollector>, error: &Error, _ctx: Arc<Context>) -> Action {
    if error.is_transient() {
        Action::requeue(Duration::from_secs(15))
    } else {
        Action::requeue(Duration::from_secs(300))
    }
}
