//! Deployment `<name>-backends`: the pool of OpenTelemetry Collectors, sized by `spec.backends.replicas`
//! (which `kubectl scale` and autoscalers set through the scale subresource). A pod told to stop drains first
//! (see [`drain`](super::drain)).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction, Lifecycle, LifecycleHandler, PodSpec,
    PodTemplateSpec, Probe, SleepAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::collector_config::HEALTH_CHECK_PORT;
use super::labels::{CONFIG_HASH, Component, labels, selector_labels};
use super::{Owner, backend_configmap, config_hash, container_security_context, pod_security_context};
use crate::crd::{DEFAULT_COLLECTOR_IMAGE, OTLP_GRPC_PORT};

const CONFIG_DIR: &str = "/etc/otelcol";

/// The Deployment running the Collectors with the configuration of `config_map`; each pod's preStop sleep and
/// termination grace period are `lifetime` ([`super::drain::pod_lifetime`]), in seconds.
pub fn build(owner: &Owner<'_>, config_map: &ConfigMap, lifetime: (i64, i64)) -> Deployment {
    let spec = &owner.lbc.spec.backends;
    let (drain_seconds, grace_seconds) = lifetime;
    let health_probe = |period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/".into()),
            port: IntOrString::String("health".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let container = Container {
        name: "otelcol".into(),
        image: Some(spec.image.clone().unwrap_or_else(|| DEFAULT_COLLECTOR_IMAGE.to_string())),
        args: Some(vec![format!("--config={CONFIG_DIR}/{}", backend_configmap::KEY)]),
        ports: Some(vec![
            ContainerPort {
                name: Some("otlp-grpc".into()),
                container_port: OTLP_GRPC_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("health".into()),
                container_port: HEALTH_CHECK_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        env: spec.env.clone(),
        resources: spec.resources.clone(),
        readiness_probe: Some(health_probe(5, 3)),
        liveness_probe: Some(health_probe(10, 6)),
        volume_mounts: Some(vec![VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        security_context: Some(container_security_context()),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: drain_seconds }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        ..Container::default()
    };
    Deployment {
        metadata: owner.meta(&owner.names.backends, Component::Backends),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(owner.name, Component::Backends)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(owner.name, Component::Backends)),
                    annotations: Some(BTreeMap::from([(CONFIG_HASH.to_string(), config_hash(config_map))])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "config".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: owner.names.backends.clone(),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    node_selector: spec.node_selector.clone(),
                    tolerations: spec.tolerations.clone(),
                    affinity: spec.affinity.clone(),
                    security_context: Some(pod_security_context()),
                    termination_grace_period_seconds: Some(grace_seconds),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}
