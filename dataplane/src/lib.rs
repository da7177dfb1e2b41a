//! otlp-lb data plane: receive OTLP → route (key, ring) → export to a pool of Collectors.
#![forbid(unsafe_code)]

pub mod codec;
pub mod config;
pub mod route;
pub mod signal;
pub mod wire;
