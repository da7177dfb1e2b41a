//! End-to-end harness for otlp-lb.
//!
//! Each test run gets a throwaway Kubernetes cluster on this machine: a
//! control plane (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler) and one real node ([`node`]: containerd with runc and the
//! CNI bridge, the kubelet, kube-proxy and CoreDNS), whose pods run from the
//! images `make images` and `make e2e-images` build, imported into
//! containerd.
//!
//! Tests use [`Cluster`]: `Cluster::start().await?`, then the Kubernetes API
//! through [`Cluster::client`] and helpers for waiting, Service and pod IPs,
//! pod logs and volumes on the node, and running commands inside pod network
//! namespaces. Everything is torn down when
//! the `Cluster` is dropped (also on failure and panic); logs stay in the run
//! directory and are printed (tails) on failure.
//!
//! Requirements: root (network namespaces, cgroups, mounts, iptables), the
//! pinned tools built by `make tools`, the images, and containerd, runc, the
//! CNI plugins and iptables from the system's packages. A missing requirement
//! is a test failure, never a skip.

pub mod apply;
pub mod chart;
pub mod cluster;
pub mod controlplane;
pub mod dns;
pub mod fit;
pub mod kubeconfig;
pub mod lbc;
pub mod netns;
pub mod node;
pub mod otlp_json;
pub mod pki;
pub mod probe;
pub mod process;
pub mod ring_watch;
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
