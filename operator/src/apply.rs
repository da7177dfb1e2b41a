//! Writes the children: server-side apply with one field manager (`otlp-lb-operator`) and force,
//! after checking that no object of the same name belongs to someone else; then deletes the
//! children (found by their labels) that the spec no longer wants.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PartialObjectMeta, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::build::labels::{MANAGER, instance_selector};
use crate::build::{Children, LoadBalancerWorkload};
use crate::error::{Error, Result};

/// What applying changed and what the status needs from the responses.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    /// The backend pool's Deployment as the API server returned it (with its status).
    pub backend_deployment: Option<Deployment>,
    /// Replicas of the load-balancer tier (its Deployment or StatefulSet) as the API server returned them:
    /// (desired, ready).
    pub lb_replicas: Option<(i32, i32)>,
    /// Children deleted because the spec no longer wants them, as (kind, name).
    pub deleted: Vec<(&'static str, String)>,
}

/// Whether `meta` names the LoadBalancedCollector with uid `owner_uid` as its controller.
pub fn controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    meta.owner_references.iter().flatten().any(|r| r.controller == Some(true) && r.uid == owner_uid)
}

/// The children of one kind: its API and the objects carrying the instance's labels.
struct Kind<K: Resource> {
    api: Api<K>,
    kind: &'static str,
    owned: Vec<PartialObjectMeta<K>>,
}

impl<K> Kind<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
{
    async fn list(client: &Client, namespace: &str, instance: &str, kind: &'static str) -> Result<Self> {
        let api = Api::namespaced(client.clone(), namespace);
        let owned = api
            .list_metadata(&ListParams::default().labels(&instance_selector(instance)))
            .await
            .map_err(|source| Error::Read { kind, source })?
            .items;
        Ok(Self { api, kind, owned })
    }

    /// Server-side applies `object` unless an object of its name is controlled by someone else.
    async fn apply(&self, object: &K, owner_uid: &str) -> Result<K> {
        let name = object.meta().name.clone().unwrap_or_default();
        let known = self.owned.iter().any(|o| o.name_any() == name && controlled_by(o.meta(), owner_uid));
        if !known {
            let existing =
                self.api.get_metadata_opt(&name).await.map_err(|source| Error::Read { kind: self.kind, source })?;
            if let Some(existing) = existing
                && !controlled_by(existing.meta(), owner_uid)
            {
                return Err(Error::ChildConflict { kind: self.kind, name });
            }
        }
        self.api
            .patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(object))
            .await
            .map_err(|source| Error::Apply { kind: self.kind, name, source })
    }

    /// Deletes the owned objects not named in `wanted`; returns what it deleted.
    async fn prune(&self, wanted: &[&K], owner_uid: &str, deleted: &mut Vec<(&'static str, String)>) -> Result<()> {
        for object in &self.owned {
            let name = object.name_any();
            let is_wanted = wanted.iter().any(|w| w.meta().name.as_deref() == Some(name.as_str()));
            if is_wanted || !controlled_by(object.meta(), owner_uid) {
                continue;
            }
            match self.api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => deleted.push((self.kind, name)),
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => {
                    return Err(Error::Delete { kind: self.kind, name, source });
                }
            }
        }
        Ok(())
    }
}

/// Applies every child in dependency order, then deletes unwanted ones.
pub async fn apply_all(
    client: &Client,
    namespace: &str,
    instance: &str,
    owner_uid: &str,
    children: &Children,
) -> Result<Applied> {
    let service_accounts = Kind::<ServiceAccount>::list(client, namespace, instance, "ServiceAccount").await?;
    let roles = Kind::<Role>::list(client, namespace, instance, "Role").await?;
    let role_bindings = Kind::<RoleBinding>::list(client, namespace, instance, "RoleBinding").await?;
    let config_maps = Kind::<ConfigMap>::list(client, namespace, instance, "ConfigMap").await?;
    let services = Kind::<Service>::list(client, namespace, instance, "Service").await?;
    let deployments = Kind::<Deployment>::list(client, namespace, instance, "Deployment").await?;
    let stateful_sets = Kind::<StatefulSet>::list(client, namespace, instance, "StatefulSet").await?;
    let hpas = Kind::<HorizontalPodAutoscaler>::list(client, namespace, instance, "HorizontalPodAutoscaler").await?;
    let pdbs = Kind::<PodDisruptionBudget>::list(client, namespace, instance, "PodDisruptionBudget").await?;

    let mut applied = Applied::default();
    service_accounts.apply(&children.service_account, owner_uid).await?;
    roles.apply(&children.role, owner_uid).await?;
    role_bindings.apply(&children.role_binding, owner_uid).await?;
    if let Some(pool) = &children.backends {
        config_maps.apply(&pool.config_map, owner_uid).await?;
        services.apply(&pool.service, owner_uid).await?;
        applied.backend_deployment = Some(deployments.apply(&pool.deployment, owner_uid).await?);
    }
    config_maps.apply(&children.lb_config_map, owner_uid).await?;
    services.apply(&children.lb_service, owner_uid).await?;
    if let Some(peers) = &children.lb_peer_service {
        services.apply(peers, owner_uid).await?;
    }
    applied.lb_replicas = Some(match &children.lb_workload {
        LoadBalancerWorkload::Deployment(d) => {
            let d = deployments.apply(d, owner_uid).await?;
            let status = d.status.as_ref();
            let desired = d.spec.as_ref().and_then(|s| s.replicas).or_else(|| status.and_then(|s| s.replicas));
            (desired.unwrap_or(0), status.and_then(|s| s.ready_replicas).unwrap_or(0))
        }
        LoadBalancerWorkload::StatefulSet(s) => {
            let s = stateful_sets.apply(s, owner_uid).await?;
            let status = s.status.as_ref();
            let desired = s.spec.as_ref().and_then(|s| s.replicas).or_else(|| status.map(|s| s.replicas));
            (desired.unwrap_or(0), status.and_then(|s| s.ready_replicas).unwrap_or(0))
        }
    });
    if let Some(hpa) = &children.hpa {
        hpas.apply(hpa, owner_uid).await?;
    }
    if let Some(pdb) = &children.pdb {
        pdbs.apply(pdb, owner_uid).await?;
    }

    // Only now that the load balancer points at the new backends, remove what is no longer wanted.
    let pool = children.backends.as_ref();
    let deleted = &mut applied.deleted;
    hpas.prune(&children.hpa.iter().collect::<Vec<_>>(), owner_uid, deleted).await?;
    pdbs.prune(&children.pdb.iter().collect::<Vec<_>>(), owner_uid, deleted).await?;
    let mut wanted_deployments: Vec<&Deployment> = pool.map(|p| &p.deployment).into_iter().collect();
    let mut wanted_stateful_sets = Vec::new();
    match &children.lb_workload {
        LoadBalancerWorkload::Deployment(d) => wanted_deployments.push(d),
        LoadBalancerWorkload::StatefulSet(s) => wanted_stateful_sets.push(s),
    }
    deployments.prune(&wanted_deployments, owner_uid, deleted).await?;
    stateful_sets.prune(&wanted_stateful_sets, owner_uid, deleted).await?;
    let mut wanted_services = vec![&children.lb_service];
    wanted_services.extend(pool.map(|p| &p.service));
    wanted_services.extend(children.lb_peer_service.as_ref());
    services.prune(&wanted_services, owner_uid, deleted).await?;
    let mut wanted_config_maps = vec![&children.lb_config_map];
    wanted_config_maps.extend(pool.map(|p| &p.config_map));
    config_maps.prune(&wanted_config_maps, owner_uid, deleted).await?;
    role_bindings.prune(&[&children.role_binding], owner_uid, deleted).await?;
    roles.prune(&[&children.role], owner_uid, deleted).await?;
    service_accounts.prune(&[&children.service_account], owner_uid, deleted).await?;
    Ok(applied)
}
