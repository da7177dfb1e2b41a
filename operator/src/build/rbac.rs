//! ServiceAccount, Role and RoleBinding `<name>-load-balancer`: the data plane may get, list and
//! watch EndpointSlices in its namespace (its Kubernetes resolver) and nothing else.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::Owner;
use super::labels::Component;

/// Identity of the load-balancer pods.
pub fn service_account(owner: &Owner<'_>) -> ServiceAccount {
    ServiceAccount { metadata: owner.meta(&owner.names.rbac, Component::LoadBalancer), ..ServiceAccount::default() }
}

/// Read access to EndpointSlices, nothing else.
pub fn role(owner: &Owner<'_>) -> Role {
    Role {
        metadata: owner.meta(&owner.names.rbac, Component::LoadBalancer),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["discovery.k8s.io".into()]),
            resources: Some(vec!["endpointslices".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..PolicyRule::default()
        }]),
    }
}

/// Grants [`role`] to [`service_account`].
pub fn role_binding(owner: &Owner<'_>) -> RoleBinding {
    RoleBinding {
        metadata: owner.meta(&owner.names.rbac, Component::LoadBalancer),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: owner.names.rbac.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: owner.names.rbac.clone(),
            namespace: Some(owner.namespace.to_string()),
            ..Subject::default()
        }]),
    }
}
