//! Kubeconfig files (written as JSON, which every YAML reader accepts) with
//! the CA and client certificate embedded, and turning one into a
//! `kube::Client`.

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::pki::CertFiles;

/// Writes a kubeconfig for `server` authenticating with `cert`.
pub fn write(path: &Path, server: &str, ca_pem: &str, cert: &CertFiles, user: &str) -> Result<()> {
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "otlp-lb-e2e",
            "cluster": {
                "server": server,
                "certificate-authority-data": STANDARD.encode(ca_pem),
            }
        }],
        "users": [{
            "name": user,
            "user": {
                "client-certificate-data": STANDARD.encode(&cert.cert_pem),
                "client-key-data": STANDARD.encode(&cert.key_pem),
            }
        }],
        "contexts": [{
            "name": "otlp-lb-e2e",
            "context": {"cluster": "otlp-lb-e2e", "user": user, "namespace": "default"}
        }],
        "current-context": "otlp-lb-e2e",
    });
    let text = serde_json::to_string_pretty(&doc).context("serializing kubeconfig")?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A client from a kubeconfig file.
pub async fn client(path: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let mut config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .context("loading kubeconfig")?;
    config.read_timeout = Some(std::time::Duration::from_secs(60));
    config.connect_timeout = Some(std::time::Duration::from_secs(10));
    kube::Client::try_from(config).context("building kube client")
}
