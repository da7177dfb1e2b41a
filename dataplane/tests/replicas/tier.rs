//! A load-balancer tier of several replicas, as the replicas scenario drives it: otlp-lb processes, or Collectors
//! with the `loadbalancing` exporter. The scenario starts it on a pool, changes the pool and restarts a replica.

use std::net::SocketAddr;

pub trait Tier {
    /// The replicas' OTLP/gRPC URLs, in order.
    fn urls(&self) -> Vec<String>;
    /// The pool becomes `active` (new traces go there), and `draining` (backends that keep the traces they hold,
    /// for a balancer that drains). Each replica notices the change on its own.
    fn set_pool(&mut self, active: &[SocketAddr], draining: &[SocketAddr]);
    /// Stops replica `i` (SIGTERM, waiting for it to exit) and starts it again on the same addresses.
    fn restart(&mut self, i: usize);
}
