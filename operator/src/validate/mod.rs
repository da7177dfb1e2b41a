//! Checks a LoadBalancedCollector before anything is built, and reads it into a [`ValidatedCluster`], the only
//! input of [`crate::build::build`]. The CRD's CEL rules reject most mistakes at `kubectl apply` time; this
//! repeats them with the same messages ([`rules`]; a CRD may be older than the operator), adds the checks CEL
//! cannot do on free-form Collector configurations, and reads the load balancer's settings into the data plane's
//! configuration types.

mod collector;
mod load_balancer;
pub mod quantity;

use kube::Resource;

use crate::build::drain;
pub use crate::crd::rules::duration_ms;
use crate::crd::rules::{self, MAX_DURABLE_QUEUE_MIB, MAX_NAME_LEN, MIN_DURABLE_QUEUE_MIB};
use crate::crd::{Backends, BackendsSpec, DurableQueueSpec, LoadBalancedCollector, ValidatedCluster};
use crate::error::{Error, Result};
use collector::check_collector_config;
use quantity::quantity_bytes;

/// Every problem of `lbc`, joined into one [`Error::InvalidSpec`], or what it says when it can be run.
pub fn validate(lbc: &LoadBalancedCollector) -> Result<ValidatedCluster<'_>> {
    let meta = &lbc.metadata;
    let name = meta.name.as_deref().ok_or(Error::MissingObjectKey("metadata.name"))?;
    let namespace = meta.namespace.as_deref().ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    meta.uid.as_deref().ok_or(Error::MissingObjectKey("metadata.uid"))?;
    let owner_ref = lbc.controller_owner_ref(&()).ok_or(Error::MissingObjectKey("metadata.uid"))?;

    let mut problems = Vec::new();
    check_name(name, &mut problems);
    let backends = check_backends(&lbc.spec.backends, &mut problems);
    let load_balancer = load_balancer::read(&lbc.spec.load_balancer, &mut problems);
    if let Some(queue) = lbc.spec.load_balancer.durable_queue.as_ref().filter(|q| q.enabled) {
        check_durable_queue(queue, &mut problems);
    }
    match (backends, load_balancer) {
        (Some(backends), Some(load_balancer)) if problems.is_empty() => {
            Ok(ValidatedCluster { lbc, name, namespace, owner_ref, backends, load_balancer })
        }
        _ => Err(Error::InvalidSpec(problems.join("; "))),
    }
}

fn check_name(name: &str, problems: &mut Vec<String>) {
    if name.len() > MAX_NAME_LEN {
        problems.push(rules::name_length());
    }
    let bytes = name.as_bytes();
    let valid = bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes.last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !valid {
        problems.push(rules::NAME_PATTERN.to_string());
    }
}

/// The pool the operator runs or the Service the spec names; `None` with a problem.
fn check_backends<'a>(backends: &'a BackendsSpec, problems: &mut Vec<String>) -> Option<Backends<'a>> {
    match (&backends.config, &backends.service_ref) {
        (Some(_), Some(_)) | (None, None) => {
            problems.push(rules::CONFIG_XOR_SERVICE_REF.to_string());
            None
        }
        (Some(config), None) => {
            if backends.replicas < 0 {
                problems.push("backends.replicas must not be negative".to_string());
            }
            check_collector_config("backends.config", config, true, problems);
            if let Err(problem) = drain::decision_wait_ms(config) {
                problems.push(format!("backends.config.{problem}"));
            }
            Some(Backends::Pool { config, lifetime: drain::pod_lifetime(config) })
        }
        (None, Some(service_ref)) => {
            let pool_fields = [
                ("image", backends.image.is_some()),
                ("resources", backends.resources.is_some()),
                ("env", backends.env.is_some()),
                ("nodeSelector", backends.node_selector.is_some()),
                ("tolerations", backends.tolerations.is_some()),
                ("affinity", backends.affinity.is_some()),
            ];
            let set: Vec<_> = pool_fields.iter().filter(|(_, set)| *set).map(|(f, _)| *f).collect();
            if !set.is_empty() {
                problems.push(rules::pool_fields_with_service_ref(&set));
            }
            if service_ref.name.is_empty() {
                problems.push("backends.serviceRef.name must not be empty".to_string());
            }
            match u16::try_from(service_ref.port) {
                Ok(port) if port > 0 => Some(Backends::Service { name: &service_ref.name, port }),
                _ => {
                    problems.push("backends.serviceRef.port must be between 1 and 65535".to_string());
                    None
                }
            }
        }
    }
}

/// The durable queue's bounds, and a volume that can hold the log (its bound plus one segment).
fn check_durable_queue(queue: &DurableQueueSpec, problems: &mut Vec<String>) {
    if !(MIN_DURABLE_QUEUE_MIB..=MAX_DURABLE_QUEUE_MIB).contains(&queue.max_size_mib) {
        problems.push(rules::durable_queue_size());
    }
    let storage = &queue.storage;
    if storage.empty_dir.is_some() && storage.volume_claim_template.is_some() {
        problems.push(rules::DURABLE_STORAGE_ONE_OF.to_string());
        return;
    }
    let (field, size) = match (&storage.empty_dir, &storage.volume_claim_template) {
        (_, Some(claim)) => (
            "storage.volumeClaimTemplate.resources.requests.storage",
            Some(claim.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage"))),
        ),
        (Some(dir), None) => ("storage.emptyDir.sizeLimit", dir.size_limit.as_ref().map(Some)),
        (None, None) => return,
    };
    let needed = (u64::try_from(queue.max_size_mib).unwrap_or(0) + MIN_DURABLE_QUEUE_MIB as u64) << 20;
    match size {
        None => {}
        Some(None) => problems.push(format!("loadBalancer.durableQueue.{field} must be set")),
        Some(Some(quantity)) => match quantity_bytes(&quantity.0) {
            None => problems.push(format!("loadBalancer.durableQueue.{field}: {:?} is not a quantity", quantity.0)),
            Some(bytes) if bytes < needed => problems.push(format!(
                "loadBalancer.durableQueue.{field} ({}) must hold maxSizeMiB plus one {MIN_DURABLE_QUEUE_MIB} MiB segment: at \
                 least {}Mi",
                quantity.0,
                needed >> 20
            )),
            Some(_) => {}
        },
    }
}
