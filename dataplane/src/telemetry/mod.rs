//! The process's own telemetry: Prometheus metrics, health and readiness, the live status page, and the HTTP
//! server that shows them.

mod metrics;
mod server;
pub mod status;

pub use metrics::{LatencyHistogram, Metrics, registered};
pub use server::{Health, serve};
