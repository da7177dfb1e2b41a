//! `limits` and `telemetry`: what the load balancer holds at most, and where it serves its own metrics.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Bounds on what the load balancer holds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Budget for request data in flight, in MiB; a request that does not fit is refused with
    /// RESOURCE_EXHAUSTED / HTTP 429 and Retry-After.
    pub memory_limit_mib: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_limit_mib: 256 }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    #[serde(default)]
    pub metrics: MetricsTelemetry,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsTelemetry {
    /// Address of `/metrics`, `/healthz`, `/readyz`, `/debug/pool` and the status page (`/`, `/api/v1/status`).
    pub address: SocketAddr,
}

impl Default for MetricsTelemetry {
    fn default() -> Self {
        MetricsTelemetry { address: SocketAddr::from(([0, 0, 0, 0], 8888)) }
    }
}
