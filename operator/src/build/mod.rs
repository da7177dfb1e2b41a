//! Builds every child object of a LoadBalancedCollector. Pure: no client, no clock, no randomness,
//! so the output is compared with golden JSON files in `tests/golden/`.
//!
//! One Kubernetes kind per file; this module holds what they share (owner, metadata, pod security).

pub mod backend_configmap;
pub mod backend_deployment;
pub mod backend_service;
pub mod collector_config;
pub mod drain;
pub mod headless;
pub mod hpa;
pub mod labels;
pub mod lb_configmap;
pub mod lb_deployment;
pub mod lb_peer_service;
pub mod lb_service;
pub mod lb_statefulset;
pub mod pdb;
pub mod rbac;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, PodSecurityContext, PodTemplateSpec, SeccompProfile, SecurityContext, Service,
    ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::crd::{Backends, LoadBalancedCollector, ValidatedCluster};
use crate::error::{Error, Result};
use labels::{Component, Names};

/// The LoadBalancedCollector as its children see it: where they live and who owns them.
#[derive(Clone, Debug)]
pub struct Owner<'a> {
    /// What validation read from the resource.
    pub cluster: &'a ValidatedCluster<'a>,
    /// The resource being built for.
    pub lbc: &'a LoadBalancedCollector,
    /// Its name (the `instance` label).
    pub name: &'a str,
    /// Its namespace, and so every child's.
    pub namespace: &'a str,
    /// Names of the children.
    pub names: Names,
    /// The controller owner reference every child carries.
    pub owner_ref: OwnerReference,
}

impl<'a> Owner<'a> {
    /// The owner of a validated resource's children.
    pub fn new(cluster: &'a ValidatedCluster<'a>) -> Self {
        Self {
            cluster,
            lbc: cluster.lbc,
            name: cluster.name,
            namespace: cluster.namespace,
            names: Names::new(cluster.name),
            owner_ref: cluster.owner_ref.clone(),
        }
    }

    /// Metadata of a child named `name` of `component`.
    pub fn meta(&self, name: &str, component: Component) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.namespace.to_string()),
            labels: Some(labels::labels(self.name, component)),
            owner_references: Some(vec![self.owner_ref.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// The backend pool the operator runs (absent with `backends.serviceRef`).
#[derive(Clone, Debug, PartialEq)]
pub struct BackendPool {
    /// The Collectors' configuration.
    pub config_map: ConfigMap,
    /// Headless Service whose EndpointSlices the load balancer resolves.
    pub service: Service,
    /// The Collectors.
    pub deployment: Deployment,
}

/// The data plane's pods: a Deployment, or a StatefulSet when the durable queue keeps a claim per replica.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadBalancerWorkload {
    Deployment(Deployment),
    StatefulSet(StatefulSet),
}

impl LoadBalancerWorkload {
    /// The workload's pod template.
    pub fn template(&self) -> Option<&PodTemplateSpec> {
        match self {
            LoadBalancerWorkload::Deployment(d) => d.spec.as_ref().map(|s| &s.template),
            LoadBalancerWorkload::StatefulSet(s) => s.spec.as_ref().map(|s| &s.template),
        }
    }

    /// The workload's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            LoadBalancerWorkload::Deployment(_) => "Deployment",
            LoadBalancerWorkload::StatefulSet(_) => "StatefulSet",
        }
    }
}

/// Every child object the spec wants, in the order they are applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    /// Identity of the load-balancer pods.
    pub service_account: ServiceAccount,
    /// Read access to EndpointSlices, for the data plane's resolver.
    pub role: Role,
    /// Grants the Role to the ServiceAccount.
    pub role_binding: RoleBinding,
    /// The pool, unless the backends are an existing Service.
    pub backends: Option<BackendPool>,
    /// The data plane's (and sidecar's) configuration.
    pub lb_config_map: ConfigMap,
    /// Where clients send OTLP.
    pub lb_service: Service,
    /// How the load-balancer replicas find each other, when there can be more than one.
    pub lb_peer_service: Option<Service>,
    /// The data plane.
    pub lb_workload: LoadBalancerWorkload,
    /// Autoscaler of the load-balancer tier.
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// Disruption budget of the load-balancer tier.
    pub pdb: Option<PodDisruptionBudget>,
}

impl Children {
    /// Every child as JSON with `apiVersion` and `kind`, in apply order (for golden files and logs).
    pub fn to_json(&self) -> Result<Vec<Value>> {
        let mut out = vec![to_json(&self.service_account)?, to_json(&self.role)?, to_json(&self.role_binding)?];
        if let Some(pool) = &self.backends {
            out.push(to_json(&pool.config_map)?);
            out.push(to_json(&pool.service)?);
            out.push(to_json(&pool.deployment)?);
        }
        out.push(to_json(&self.lb_config_map)?);
        out.push(to_json(&self.lb_service)?);
        if let Some(peers) = &self.lb_peer_service {
            out.push(to_json(peers)?);
        }
        out.push(match &self.lb_workload {
            LoadBalancerWorkload::Deployment(d) => to_json(d)?,
            LoadBalancerWorkload::StatefulSet(s) => to_json(s)?,
        });
        if let Some(hpa) = &self.hpa {
            out.push(to_json(hpa)?);
        }
        if let Some(pdb) = &self.pdb {
            out.push(to_json(pdb)?);
        }
        Ok(out)
    }
}

fn to_json<K: Serialize>(object: &K) -> Result<Value> {
    serde_json::to_value(object).map_err(|e| Error::Render { what: "child object", reason: e.to_string() })
}

/// Builds every child of a validated resource.
pub fn build(cluster: &ValidatedCluster<'_>) -> Result<Children> {
    let owner = Owner::new(cluster);
    let backends = match &cluster.backends {
        Backends::Pool { config, lifetime } => {
            let config_map = backend_configmap::build(&owner, config)?;
            Some(BackendPool {
                service: backend_service::build(&owner),
                deployment: backend_deployment::build(&owner, &config_map, *lifetime),
                config_map,
            })
        }
        Backends::Service { .. } => None,
    };
    let lb_config_map = lb_configmap::build(&owner)?;
    Ok(Children {
        service_account: rbac::service_account(&owner),
        role: rbac::role(&owner),
        role_binding: rbac::role_binding(&owner),
        backends,
        lb_service: lb_service::build(&owner),
        lb_peer_service: lb_peer_service::build(&owner),
        lb_workload: if lb_statefulset::wanted(&owner) {
            LoadBalancerWorkload::StatefulSet(lb_statefulset::build(&owner, &lb_config_map))
        } else {
            LoadBalancerWorkload::Deployment(lb_deployment::build(&owner, &lb_config_map))
        },
        lb_config_map,
        hpa: hpa::build(&owner),
        pdb: pdb::build(&owner),
    })
}

/// SHA-256 of a ConfigMap's data, hex-encoded: the pod-template annotation that rolls pods on edits.
pub fn config_hash(config_map: &ConfigMap) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in config_map.data.iter().flatten() {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Group of the non-root user (65532) the images run as: owner of volumes they write.
pub const NON_ROOT_GROUP: i64 = 65532;

/// Pod security context of every pod: non-root, default seccomp profile.
pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..SeccompProfile::default() }),
        ..PodSecurityContext::default()
    }
}

/// Container security context of every container: read-only root, no privileges, no capabilities.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
        ..SecurityContext::default()
    }
}

/// Serializes a Collector configuration to YAML.
pub fn to_yaml<T: Serialize>(what: &'static str, value: &T) -> Result<String> {
    serde_saphyr::to_string(value).map_err(|e| Error::Render { what, reason: e.to_string() })
}

/// A string map from pairs.
pub fn string_map<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
