//! Test support: real OTLP/gRPC backends in-process and the `otlp-lb` binary as a child process. The requests
//! come from `dataplane::fixtures`.
#![allow(dead_code)]

pub mod backend;
pub mod browser;
pub mod lb;
pub mod procs;
