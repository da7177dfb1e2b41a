//! The one error type of the operator, with the label it carries in metrics and the reason it gives
//! in the `Degraded` condition.

/// Everything a reconciliation, the leader election or the binary can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is well-formed YAML but cannot be run (the CRD's CEL rules catch most of these first).
    #[error("invalid spec: {0}")]
    InvalidSpec(String),

    /// The object misses metadata the API server always sets (name, namespace, uid).
    #[error("the LoadBalancedCollector has no {0}")]
    MissingObjectKey(&'static str),

    /// A generated configuration could not be serialized.
    #[error("could not render {what}: {reason}")]
    Render { what: &'static str, reason: String },

    /// A child object of that name exists and is not controlled by this LoadBalancedCollector.
    #[error(
        "{kind} {name} already exists and is not managed by this LoadBalancedCollector: delete or rename it, or rename the LoadBalancedCollector"
    )]
    ChildConflict { kind: &'static str, name: String },

    /// Server-side apply of a child failed.
    #[error("applying {kind} {name} failed: {source}")]
    Apply {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },

    /// Reading children or EndpointSlices failed.
    #[error("reading {kind} failed: {source}")]
    Read {
        kind: &'static str,
        #[source]
        source: kube::Error,
    },

    /// Deleting a child the spec no longer wants failed.
    #[error("deleting {kind} {name} failed: {source}")]
    Delete {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },

    /// Writing the status subresource failed.
    #[error("updating the status failed: {0}")]
    Status(#[source] kube::Error),

    /// The leader-election Lease could not be read or written.
    #[error("leader election failed: {0}")]
    LeaderElection(String),
}

impl Error {
    /// Every value of [`Error::metric_label`]: the failure counter starts each at 0, so that rates and alerts see
    /// a series before the first failure of its kind.
    pub const METRIC_LABELS: [&'static str; 9] = [
        "invalid_spec",
        "missing_object_key",
        "render",
        "child_conflict",
        "apply",
        "read",
        "delete",
        "status",
        "leader_election",
    ];

    /// Value of the `error` label of `otlp_lb_operator_reconcile_failures_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::MissingObjectKey(_) => "missing_object_key",
            Error::Render { .. } => "render",
            Error::ChildConflict { .. } => "child_conflict",
            Error::Apply { .. } => "apply",
            Error::Read { .. } => "read",
            Error::Delete { .. } => "delete",
            Error::Status(_) => "status",
            Error::LeaderElection(_) => "leader_election",
        }
    }

    /// Reason of the `Degraded` condition and of the Warning event (CamelCase, as Kubernetes wants).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) | Error::MissingObjectKey(_) => "InvalidSpec",
            Error::Render { .. } => "RenderFailed",
            Error::ChildConflict { .. } => "ChildConflict",
            Error::Apply { .. } => "ApplyFailed",
            Error::Read { .. } => "ReadFailed",
            Error::Delete { .. } => "DeleteFailed",
            Error::Status(_) => "StatusUpdateFailed",
            Error::LeaderElection(_) => "LeaderElectionFailed",
        }
    }

    /// Whether retrying soon can help (API errors) or only a spec change can (invalid spec, conflicts).
    pub fn is_transient(&self) -> bool {
        !matches!(self, Error::InvalidSpec(_) | Error::MissingObjectKey(_) | Error::ChildConflict { .. })
    }
}

/// Result of the operator's functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_label_is_listed() {
        let api = || kube::Error::LinesCodecMaxLineLengthExceeded;
        let errors = [
            Error::InvalidSpec(String::new()),
            Error::MissingObjectKey("name"),
            Error::Render { what: "config", reason: String::new() },
            Error::ChildConflict { kind: "Service", name: String::new() },
            Error::Apply { kind: "Service", name: String::new(), source: api() },
            Error::Read { kind: "Service", source: api() },
            Error::Delete { kind: "Service", name: String::new(), source: api() },
            Error::Status(api()),
            Error::LeaderElection(String::new()),
        ];
        let labels: Vec<&str> = errors.iter().map(Error::metric_label).collect();
        assert_eq!(labels, Error::METRIC_LABELS);
    }
}
