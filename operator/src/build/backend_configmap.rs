//! ConfigMap `<name>-backends`: the backend Collectors' configuration (key `collector.yaml`).

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Map, Value};

use super::labels::Component;
use super::{Owner, collector_config, string_map, to_yaml};
use crate::error::Result;

/// Key of the configuration in the ConfigMap.
pub const KEY: &str = "collector.yaml";

/// The ConfigMap holding the user's configuration, completed by [`collector_config::backend_config`].
pub fn build(owner: &Owner<'_>, user_config: &Map<String, Value>) -> Result<ConfigMap> {
    let config = collector_config::backend_config(user_config);
    Ok(ConfigMap {
        metadata: owner.meta(&owner.names.backends, Component::Backends),
        data: Some(string_map([(KEY, to_yaml("the backend Collector configuration", &config)?)])),
        ..ConfigMap::default()
    })
}
