//! Leader election over a `coordination.k8s.io/v1` Lease, so two operator replicas are safe: only
//! the holder reconciles; the other takes over when the holder stops renewing. Optimistic
//! concurrency (resourceVersion) settles races: a write that loses gets 409 and waits.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use tracing::{info, warn};

use crate::error::{Error, Result};

/// Where the lease lives and how it is timed.
#[derive(Clone, Debug)]
pub struct LeaderElectionConfig {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease holds without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews, and others retry.
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// Defaults: 15 s leases renewed every 2 s.
    pub fn new(namespace: impl Into<String>, lease_name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with a lease as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or the holder's lease expired: take it.
    Acquire,
    /// Someone else holds it.
    Wait {
        /// The current holder.
        holder: String,
    },
}

/// Decides from the lease's spec (pure, for tests).
pub fn decide(spec: &LeaseSpec, identity: &str, now: Timestamp, default_duration: Duration) -> Decision {
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    let seconds = spec
        .lease_duration_seconds
        .map(i64::from)
        .unwrap_or_else(|| i64::try_from(default_duration.as_secs()).unwrap_or(i64::MAX));
    let expires = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .and_then(|t| t.0.checked_add(SignedDuration::from_secs(seconds)).ok());
    match expires {
        Some(expires) if expires > now => Decision::Wait { holder },
        _ => Decision::Acquire,
    }
}

/// Takes, keeps and gives back the lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
}

impl LeaderElector {
    /// An elector using `client`.
    pub fn new(client: Client, config: LeaderElectionConfig) -> Self {
        Self { api: Api::namespaced(client, &config.namespace), config }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// One attempt: `Ok(true)` when this replica holds the lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        let now = Timestamp::now();
        let name = &self.config.lease_name;
        let lease = self.api.get_opt(name).await.map_err(|e| Error::LeaderElection(e.to_string()))?;
        let Some(mut lease) = lease else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(self.duration_seconds()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return conflict_is_false(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        match decide(spec, &self.config.identity, now, self.config.lease_duration) {
            Decision::Wait { .. } => Ok(false),
            Decision::Renew => {
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(self.duration_seconds());
                conflict_is_false(self.api.replace(name, &PostParams::default(), &lease).await)
            }
            Decision::Acquire => {
                spec.holder_identity = Some(self.config.identity.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(self.duration_seconds());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
                conflict_is_false(self.api.replace(name, &PostParams::default(), &lease).await)
            }
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) {
        info!(lease = %self.config.lease_name, identity = %self.config.identity, "waiting for leadership");
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(identity = %self.config.identity, "became leader");
                    return;
                }
                Ok(false) => {}
                Err(error) => warn!(%error, "leader election attempt failed"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews until a renewal has not succeeded for a lease duration; returns the loss as an error.
    pub async fn hold(&self) -> Error {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => return Error::LeaderElection("another replica took the lease".into()),
                Err(error) => warn!(%error, "could not renew the lease"),
            }
            // Stop before the lease can expire under us (keep a retry period of margin).
            if last_renewal.elapsed() + self.config.retry_period >= self.config.lease_duration {
                return Error::LeaderElection("could not renew the lease in time".into());
            }
        }
    }

    /// Gives the lease up (on shutdown) so another replica takes over at once. Best effort.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.lease_name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(error) = self.api.replace(&self.config.lease_name, &PostParams::default(), &lease).await {
            warn!(%error, "could not release the lease");
        }
    }
}

fn conflict_is_false(result: kube::Result<Lease>) -> Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(Error::LeaderElection(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed_secs_ago: i64) -> LeaseSpec {
        let now = Timestamp::from_second(1_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        LeaseSpec {
            holder_identity: holder.map(String::from),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(now - SignedDuration::from_secs(renewed_secs_ago))),
            ..LeaseSpec::default()
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn holder_renews() {
        assert_eq!(decide(&spec(Some("me"), 3), "me", now(), Duration::from_secs(15)), Decision::Renew);
    }

    #[test]
    fn live_lease_of_other_waits() {
        assert_eq!(
            decide(&spec(Some("other"), 3), "me", now(), Duration::from_secs(15)),
            Decision::Wait { holder: "other".into() }
        );
    }

    #[test]
    fn expired_or_released_lease_is_taken() {
        assert_eq!(decide(&spec(Some("other"), 16), "me", now(), Duration::from_secs(15)), Decision::Acquire);
        assert_eq!(decide(&spec(None, 1), "me", now(), Duration::from_secs(15)), Decision::Acquire);
        assert_eq!(decide(&LeaseSpec::default(), "me", now(), Duration::from_secs(15)), Decision::Acquire);
    }
}
