//! otlp-lb data plane.
#![forbid(unsafe_code)]
