//! Deployment `<name>`: the otlp-lb data plane (and the optional sidecar Collector). The pod template
//! carries a hash of the ConfigMap so configuration edits roll the pods. With autoscaling the
//! replica count is left to the HorizontalPodAutoscaler.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction, KeyToPath, PodSpec, PodTemplateSpec,
    Probe, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::collector_config::{HEALTH_CHECK_PORT, SIDECAR_METRICS_PORT};
use super::labels::{CONFIG_HASH, Component, labels, selector_labels};
use super::lb_configmap::{CONFIG_DIR, DATA_PLANE_KEY, SIDECAR_KEY, TLS_DIR};
use super::{Owner, config_hash, container_security_context, pod_security_context};
use crate::crd::{
    CollectorSidecarSpec, DEFAULT_COLLECTOR_IMAGE, METRICS_PORT, OTLP_GRPC_PORT, OTLP_HTTP_PORT,
    default_load_balancer_image,
};

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
    let mut ports = Vec::new();
    if lb.collector.is_none() {
        ports.push(port("otlp-grpc", OTLP_GRPC_PORT));
        ports.push(port("otlp-http", OTLP_HTTP_PORT));
    }
    ports.push(port("metrics", METRICS_PORT));

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
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(owner.name, Component::LoadBalancer)),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(owner.names.rbac.clone()),
                    containers,
                    volumes: Some(volumes),
                    security_context: Some(pod_security_context()),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
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
