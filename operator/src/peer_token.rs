//! The Secret holding the token the load-balancer replicas present to each other's peer API. Made once, with a
//! random token, when the tier can have more than one replica, and kept as it is afterwards (replacing it rolls
//! nothing: restart the tier after editing it). Owned by the LoadBalancedCollector, so it goes with it. The
//! operator only creates Secrets: it never reads one, so an existing Secret of that name (made by a previous run,
//! or by you with your own token) is simply kept.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::build::Owner;
use crate::build::labels::Component;
use crate::build::lb_peer_service::{self, PEER_TOKEN_KEY};
use crate::error::{Error, Result};

/// Creates the token Secret unless it exists.
pub async fn ensure(client: &Client, owner: &Owner<'_>) -> Result<()> {
    if !lb_peer_service::wanted(owner) {
        return Ok(());
    }
    let name = lb_peer_service::name(owner);
    let api: Api<Secret> = Api::namespaced(client.clone(), owner.namespace);
    let token: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    let secret = Secret {
        metadata: owner.meta(&name, Component::LoadBalancer),
        string_data: Some(BTreeMap::from([(PEER_TOKEN_KEY.to_string(), token)])),
        ..Secret::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(()),
        // Made before: keep it.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(source) => Err(Error::Apply { kind: "Secret", name, source }),
    }
}
