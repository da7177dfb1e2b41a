//! The PEM files of TLS settings, shared by the receivers' and the backend client's TLS: certificate chains, CA
//! bundles and private keys, read with the setting's name and the file's path in every error.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::RootCertStore;

/// The certificates of `path`, in order (a chain: the leaf first); at least one.
pub fn certificates(setting: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("{setting} {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{setting} {path}: no certificate found"));
    }
    Ok(certs)
}

/// The CA certificates of `path` as trust roots; at least one.
pub fn roots(setting: &str, path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(setting, path)? {
        roots.add(cert).map_err(|e| format!("{setting} {path}: {e}"))?;
    }
    Ok(roots)
}

/// The private key of `path` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(setting: &str, path: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{setting} {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_without_what_is_asked_are_refused_with_setting_and_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params").self_signed(&key);
        let cert = cert.expect("self-signed");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path.to_string_lossy().into_owned()
        };
        let cert_file = write("cert.pem", &cert.pem());
        let key_file = write("key.pem", &key.serialize_pem());
        let empty = write("empty.pem", "");

        assert_eq!(certificates("tls.cert_file", &cert_file).expect("one certificate").len(), 1);
        assert_eq!(roots("tls.ca_file", &cert_file).expect("one root").len(), 1);
        assert!(private_key("tls.key_file", &key_file).is_ok());

        let err = certificates("tls.cert_file", &empty).expect_err("no certificate");
        assert_eq!(err, format!("tls.cert_file {empty}: no certificate found"));
        let err = roots("tls.ca_file", &key_file).expect_err("a key is no CA");
        assert!(err.starts_with(&format!("tls.ca_file {key_file}: ")), "{err}");
        let err = private_key("tls.key_file", &cert_file).expect_err("a certificate is no key");
        assert!(err.starts_with(&format!("tls.key_file {cert_file}: ")), "{err}");
        let missing = dir.path().join("missing.pem").to_string_lossy().into_owned();
        assert!(certificates("tls.cert_file", &missing).expect_err("missing").contains("missing.pem"));
    }
}
