//! Export: deliver the parts of a split request to their backends, concurrently, retrying only what failed; parts
//! waiting for the same backend leave together.

mod backend;
mod coalesce;
mod connection;
mod deliver;
mod grpc;
pub mod health;
pub mod queued;
#[cfg(test)]
mod unary_tests;
pub mod wal;

pub use backend::{Backend, Load, Reply, parse_reply, retryable};
pub use deliver::{Delivered, Failure, deliver};
