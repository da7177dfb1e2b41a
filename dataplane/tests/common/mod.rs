//! Test support: real OTLP/gRPC backends in-process, the `otlp-lb` binary as a child process, and request builders.
#![allow(dead_code)]

pub mod backend;
pub mod browser;
pub mod lb;
pub mod otlp;
pub mod procs;
