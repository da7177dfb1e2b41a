//! The process's own telemetry: health and readiness, the live status page, and the HTTP server that shows them
//! with the Prometheus metrics ([`crate::metrics`]).

mod server;
pub mod status;

pub use server::{Health, serve};
