//! otlp-lb operator: turns one `LoadBalancedCollector` resource into a load-balanced, observable and
//! scalable OTLP tier (the otlp-lb data plane in front of a pool of OpenTelemetry Collectors).
//!
//! Reconcile flow: [`validate`] → [`build`] (pure, no client) → [`apply`] (server-side apply, one
//! field manager, force) → [`status`]. [`run`] runs it all; [`crd()`] is the CustomResourceDefinition.
#![forbid(unsafe_code)]

pub mod apply;
pub mod build;
pub mod crd;
pub mod error;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod peer_token;
pub mod reconcile;
pub mod ring;
pub mod run;
pub mod server;
pub mod status;
pub mod telemetry;
pub mod validate;

pub use crd::{LoadBalancedCollector, LoadBalancedCollectorSpec, LoadBalancedCollectorStatus, crd, crd_yaml};
pub use error::Error;
pub use leader::LeaderElectionConfig;
pub use run::{Config, run, run_with_client};
