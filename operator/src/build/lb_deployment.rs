//! Deployment `<name>`: the otlp-lb data plane (and the optional sidecar Collector). The pod template
//! carries a hash of the ConfigMap so configuration edits roll the pods. With autoscaling the
//! replica count is left to the HorizontalPodAutoscaler. The pod template is also the StatefulSet's
//! (`lb_statefulset`) when the durable queue keeps a claim per replica.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction, KeyToPath,
    PodSpec, PodTemplateSpec, Probe, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::collector_config::{HEALTH_CHECK_PORT, SIDECAR_METRICS_PORT};
use super::labels::{CONFIG_HASH, Component, labels, selector_labels};
use super::lb_configmap::{CONFIG_DIR, DATA_PLANE_KEY, SIDECAR_KEY, TLS_DIR};
use super::lb_peer_service::{self, PEER_PORT, PEER_TOKEN_DIR};
use super::{NON_ROOT_GROUP, Owner, config_hash, container_security_context, pod_security_context};
use crate::crd::{
    CollectorSidecarSpec, DEFAULT_COLLECTOR_IMAGE, DURABLE_QUEUE_DIR, DurableQueueSpec, METRICS_PORT,
    MIN_DURABLE_QUEUE_MIB, OTLP_GRPC_PORT, OTLP_HTTP_PORT, default_load_balancer_image,
};

/// Name of the durable queue's volume (and of the StatefulSet's claim template).
pub const DURABLE_QUEUE_VOLUME: &str = "wal";

const SIDECAR_CONFIG_DIR: &str = "/etc/otelcol";

fn port(name: &str, container_port: i32) -> ContainerPort {
    ContainerPort { name: Some(name.into()), container_port, protocol: Some("TCP".into()), ..ContainerPort::default() }
}

fn http_probe(path: &str, port: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), read_only: Some(true), ..VolumeMount::default() }
}

/// The Deployment of the load-balancer tier, mounting `config_map`.
pub fn build(owner: &Owner<'_>, config_map: &ConfigMap) -> Deployment {
    let lb = &owner.lbc.spec.load_balancer;
    Deployment {
        metadata: owner.meta(&owner.names.load_balancer, Component::LoadBalancer),
        spec: Some(DeploymentSpec {
            // Left to the HorizontalPodAutoscaler when there is one.
            replicas: if lb.autoscaling.is_some() { None } else { Some(lb.replicas) },
            selector: LabelSelector {
                match_labels: Some(selector_labels(owner.name, Component::LoadBalancer)),
                ..LabelSelector::default()
            },
            // Never lose capacity during a rollout: the tier is in the path of every export.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: pod_template(owner, config_map),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The load-balancer pod, mounting `config_map` (and the durable queue's volume, when there is one): the
/// template of the Deployment, or of the StatefulSet when the queue has a claim per replica.
pub fn pod_template(owner: &Owner<'_>, config_map: &ConfigMap) -> PodTemplateSpec {
    let lb = &owner.lbc.spec.load_balancer;
    let mut ports = Vec::new();
    if lb.collector.is_none() {
        ports.push(port("otlp-grpc", OTLP_GRPC_PORT));
        ports.push(port("otlp-http", OTLP_HTTP_PORT));
    }
    ports.push(port("metrics", METRICS_PORT));
    let peers = lb_peer_service::wanted(owner);
    if peers {
        ports.push(port("peers", PEER_PORT));
    }

    let mut mounts = vec![mount("config", CONFIG_DIR)];
    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: owner.names.load_balancer.clone(),
            items: Some(vec![KeyToPath { key: DATA_PLANE_KEY.into(), path: DATA_PLANE_KEY.into(), mode: None }]),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    if let Some(secret) = lb.tls.secret_name.as_ref().filter(|_| !lb.tls.insecure) {
        mounts.push(mount("tls", TLS_DIR));
        volumes.push(Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource { secret_name: Some(secret.clone()), ..SecretVolumeSource::default() }),
            ..Volume::default()
        });
    }

    let mut containers = vec![Container {
        name: "otlp-lb".into(),
        image: Some(lb.image.clone().unwrap_or_else(default_load_balancer_image)),
        args: Some(vec!["--config".into(), format!("{CONFIG_DIR}/{DATA_PLANE_KEY}")]),
        ports: Some(ports),
        resources: lb.resources.clone(),
        readiness_probe: Some(http_probe("/readyz", "metrics", 5, 3)),
        liveness_probe: Some(http_probe("/healthz", "metrics", 10, 6)),
        volume_mounts: Some(mounts),
        security_context: Some(container_security_context()),
        ..Container::default()
    }];
    if let Some(sidecar) = &lb.collector {
        containers.push(sidecar_container(sidecar));
        volumes.push(Volume {
            name: "collector-config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: owner.names.load_balancer.clone(),
                items: Some(vec![KeyToPath { key: SIDECAR_KEY.into(), path: SIDECAR_KEY.into(), mode: None }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }

    let annotations = BTreeMap::from([
        (CONFIG_HASH.to_string(), config_hash(config_map)),
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), METRICS_PORT.to_string()),
    ]);
    let mut security_context = pod_security_context();
    if let Some(queue) = lb.durable_queue.as_ref().filter(|q| q.enabled) {
        // The log's volume must be writable by the non-root user.
        security_context.fs_group = Some(NON_ROOT_GROUP);
        if let Some(mounts) = containers[0].volume_mounts.as_mut() {
            mounts.push(VolumeMount {
                name: DURABLE_QUEUE_VOLUME.into(),
                mount_path: DURABLE_QUEUE_DIR.into(),
                ..VolumeMount::default()
            });
        }
        if !queue.persistent() {
            let size_limit = queue.storage.empty_dir.as_ref().and_then(|e| e.size_limit.clone());
            volumes.push(Volume {
                name: DURABLE_QUEUE_VOLUME.into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(size_limit.unwrap_or_else(|| default_volume_size(queue))),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            });
        }
    }
    if peers {
        // The token the replicas present to each other (see `lb_peer_service`).
        if let Some(mounts) = containers[0].volume_mounts.as_mut() {
            mounts.push(mount("peers", PEER_TOKEN_DIR));
        }
        volumes.push(Volume {
            name: "peers".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(lb_peer_service::name(owner)),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(owner.name, Component::LoadBalancer)),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(owner.names.rbac.clone()),
            containers,
            volumes: Some(volumes),
            security_context: Some(security_context),
            ..PodSpec::default()
        }),
    }
}

/// The durable queue's volume when nothing sets its size: the log's bound plus one segment.
pub fn default_volume_size(queue: &DurableQueueSpec) -> Quantity {
    Quantity(format!("{}Mi", i64::from(queue.max_size_mib) + i64::from(MIN_DURABLE_QUEUE_MIB)))
}

fn sidecar_container(sidecar: &CollectorSidecarSpec) -> Container {
    Container {
        name: "collector".into(),
        image: Some(sidecar.image.clone().unwrap_or_else(|| DEFAULT_COLLECTOR_IMAGE.to_string())),
        args: Some(vec![format!("--config={SIDECAR_CONFIG_DIR}/{SIDECAR_KEY}")]),
        ports: Some(vec![
            port("otlp-grpc", OTLP_GRPC_PORT),
            port("otlp-http", OTLP_HTTP_PORT),
            port("otel-metrics", SIDECAR_METRICS_PORT),
            port("health", HEALTH_CHECK_PORT),
        ]),
        env: sidecar.env.clone(),
        resources: sidecar.resources.clone(),
        readiness_probe: Some(http_probe("/", "health", 5, 3)),
        liveness_probe: Some(http_probe("/", "health", 10, 6)),
        volume_mounts: Some(vec![mount("collector-config", SIDECAR_CONFIG_DIR)]),
        security_context: Some(container_security_context()),
        ..Container::default()
    }
}
