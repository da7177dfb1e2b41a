//! Configuration: the YAML file given by `--config`, parsed and validated before anything starts. The model, its
//! Collector-compatible forms and its checks live in `otlp-lb-config`, which the operator writes files with.

pub use otlp_lb_config::*;
