//! TLS for the receivers (rustls): a server certificate, and with `client_ca_file` mutual TLS — clients must
//! present a certificate signed by that CA.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};

use crate::config::ServerTls;

/// Builds the acceptor of a listener; `alpn` lists the protocols offered (`h2`, `http/1.1`).
pub fn acceptor(tls: &ServerTls, alpn: &[&[u8]]) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("tls.cert_file {}: {e}", tls.cert_file))?;
    if certs.is_empty() {
        return Err(format!("tls.cert_file {}: no certificate found", tls.cert_file));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|e| format!("tls.key_file {}: {e}", tls.key_file))?;
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("tls.client_ca_file {ca}: {e}"))? {
                roots
                    .add(cert.map_err(|e| format!("tls.client_ca_file {ca}: {e}"))?)
                    .map_err(|e| format!("tls.client_ca_file {ca}: {e}"))?;
            }
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
