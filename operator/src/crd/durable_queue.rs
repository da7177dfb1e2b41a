//! `spec.loadBalancer.durableQueue`: the data plane's write-ahead log (`ack: queued`), and where it lives.

use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rules::{self, MAX_DURABLE_QUEUE_MIB, MIN_DURABLE_QUEUE_MIB};

/// Directory of the write-ahead log in the data plane container.
pub const DURABLE_QUEUE_DIR: &str = "/var/lib/otlp-lb";

/// Durable acknowledgement: each load-balancer replica acknowledges a request once it is in an on-disk
/// write-ahead log, delivers it from there in the background, and replays what was not delivered after a
/// restart. What it survives depends on `storage`: an emptyDir survives a crash of the data plane (the
/// container restarts in the same pod) but not the loss of the pod; a volumeClaimTemplate gives each replica a
/// PersistentVolumeClaim (the tier is then a StatefulSet) and survives the loss of the pod too.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.storage) || !(has(self.storage.emptyDir) && has(self.storage.volumeClaimTemplate))").message(rules::DURABLE_STORAGE_ONE_OF)
)]
pub struct DurableQueueSpec {
    /// Acknowledge requests once they are in the write-ahead log rather than once the backends accepted them.
    #[serde(default)]
    pub enabled: bool,

    /// Bound of the log, on disk and in memory, in MiB. A full log refuses requests with RESOURCE_EXHAUSTED /
    /// HTTP 429, which clients retry. The volume must hold at least this much.
    #[serde(default = "default_max_size_mib", rename = "maxSizeMiB")]
    #[schemars(range(min = MIN_DURABLE_QUEUE_MIB, max = MAX_DURABLE_QUEUE_MIB))]
    pub max_size_mib: i32,

    /// When appends reach the disk before the request is acknowledged: `always` (each batch is fsynced;
    /// survives a machine crash), `interval` (batches within 5ms are fsynced together), or `never` (survives a
    /// crash of the process, not of the machine).
    #[serde(default)]
    pub fsync: Fsync,

    /// Where the log lives. Absent: an emptyDir.
    #[serde(default)]
    pub storage: DurableStorageSpec,
}

impl Default for DurableQueueSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            max_size_mib: default_max_size_mib(),
            fsync: Fsync::default(),
            storage: Default::default(),
        }
    }
}

fn default_max_size_mib() -> i32 {
    256
}

/// When appends to the write-ahead log are fsynced.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    #[default]
    Always,
    Interval,
    Never,
}

/// The volume of the write-ahead log: at most one of emptyDir and volumeClaimTemplate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct DurableStorageSpec {
    /// An emptyDir volume (the default). It survives a crash of the data plane, not the loss of its pod: data
    /// acknowledged but not yet delivered is lost when the pod is deleted or evicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirStorage>,

    /// A PersistentVolumeClaim per replica, made from this template; the load-balancer tier becomes a StatefulSet.
    /// It survives the loss of a pod: the replica that comes back with the same claim replays the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_template: Option<PersistentVolumeClaimSpec>,
}

/// An emptyDir for the write-ahead log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDirStorage {
    /// Limit of the volume's size, e.g. 1Gi. Absent: maxSizeMiB plus one segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<Quantity>,
}

impl DurableQueueSpec {
    /// Whether the log lives on a PersistentVolumeClaim per replica (and so the tier is a StatefulSet).
    pub fn persistent(&self) -> bool {
        self.enabled && self.storage.volume_claim_template.is_some()
    }
}

impl From<Fsync> for otlp_lb_config::FsyncMode {
    fn from(fsync: Fsync) -> Self {
        match fsync {
            Fsync::Always => otlp_lb_config::FsyncMode::Always,
            Fsync::Interval => otlp_lb_config::FsyncMode::Interval,
            Fsync::Never => otlp_lb_config::FsyncMode::Never,
        }
    }
}
