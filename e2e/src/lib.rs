//! End-to-end harness for otlp-lb.
//!
//! Each test run gets a throwaway Kubernetes control plane on this machine
//! (etcd, kube-apiserver, kube-controller-manager, kube-scheduler), one fake
//! Node, and a small node agent (in Rust, in this crate) that plays the
//! kubelet: every pod bound to the node runs as a local process in its own
//! network namespace with its own pod IP, with its ConfigMaps, service-account
//! token and env handed to it, and its readiness taken from its real probe.
//!
//! Tests use [`Cluster`]: `Cluster::start().await?`, then the Kubernetes API
//! through [`Cluster::client`] and helpers for waiting, pod IPs, logs and
//! running commands inside pod network namespaces. Everything is torn down when
//! the `Cluster` is dropped (also on failure and panic); logs stay in the run
//! directory and are printed (tails) on failure.
//!
//! Requirements: root (network namespaces, bind mounts) and the pinned tools
//! built by `make tools`. A missing requirement is a test failure, never a skip.

pub mod apply;
pub mod cluster;
pub mod controlplane;
pub mod dns;
pub mod images;
pub mod kubeconfig;
pub mod local_images;
pub mod netns;
pub mod node;
pub mod node_agent;
pub mod otlp_json;
pub mod pki;
pub mod pod_spec;
pub mod pod_worker;
pub mod probe;
pub mod process;
pub mod run;
pub mod scenario;
pub mod telemetrygen;
pub mod tools;
pub mod wait;

pub use cluster::{Cluster, ClusterOptions};

/// Installs a `tracing` subscriber for the harness (once per test binary).
/// `RUST_LOG` overrides the default filter (`info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_client::client::builder=off"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}
