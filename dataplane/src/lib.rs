//! otlp-lb data plane: receive OTLP → route (key, ring) → export to a pool of Collectors.
//!
//! - [`receive`]: OTLP/gRPC and OTLP/HTTP front ends and the connection server.
//! - [`pipeline`]: admits a request, then delivers it ([`delivery`]: split against the current [`pool`], parts
//!   sent) or, with `ack: queued`, writes it to the log it is delivered from ([`durable`]); [`refusal`]: why not.
//! - [`route`]: routing keys, the hash ring, the per-backend splitter.
//! - [`export`]: one client per backend; concurrent delivery that retries only what failed.
//! - [`resolve`]: where the pool's members come from.
//! - [`peer`]: with several load-balancer replicas, agreed ring switches and the exchange of held traces.
//! - [`config`]: the configuration file; [`metrics`]: the Prometheus metrics; [`telemetry`]: health,
//!   `/debug/pool`, the status page and the server that shows them with the metrics.
//! - [`fixtures`]: OTLP requests built with prost, for the tests, benches, fuzz seeds and `otlp-lb-tools loadgen`.
#![forbid(unsafe_code)]

pub mod app;
pub mod codec;
pub mod config;
pub mod delivery;
pub mod durable;
pub mod export;
pub mod fixtures;
pub mod metrics;
pub mod peer;
pub mod pem;
pub mod pipeline;
pub mod pool;
pub mod receive;
pub mod refusal;
pub mod resolve;
pub mod route;
pub mod signal;
pub mod telemetry;
pub mod wire;
