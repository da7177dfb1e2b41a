//! The process's own telemetry: Prometheus metrics, health and readiness, and the HTTP server that shows them.

mod metrics;
mod server;

pub use metrics::Metrics;
pub use server::{Health, serve};
