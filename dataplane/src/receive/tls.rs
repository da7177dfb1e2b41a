//! TLS for the receivers (rustls): a server certificate, and with `client_ca_file` mutual TLS — clients must
//! present a certificate signed by that CA.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ServerConfig, crypto};

use crate::config::ServerTls;
use crate::pem;

/// Builds the acceptor of a listener; `alpn` lists the protocols offered (`h2`, `http/1.1`).
pub fn acceptor(tls: &ServerTls, alpn: &[&[u8]]) -> Result<TlsAcceptor, String> {
    let certs = pem::certificates("tls.cert_file", &tls.cert_file)?;
    let key = pem::private_key("tls.key_file", &tls.key_file)?;
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = pem::roots("tls.client_ca_file", ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("tls.client_ca_file {ca}: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| format!("tls: {e}"))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}
