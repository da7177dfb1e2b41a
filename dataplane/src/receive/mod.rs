//! Receivers: OTLP/gRPC and OTLP/HTTP front ends of the [`Pipeline`](crate::pipeline::Pipeline), and the
//! connection server they run on.

pub mod auth;
pub mod grpc;
pub mod http;
mod reply;
pub mod server;
pub mod tls;

pub use reply::{export_response, rpc_status};
