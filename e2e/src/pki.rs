//! Certificates and keys of one test cluster, made with rcgen (ECDSA P-256):
//! a CA; the kube-apiserver serving certificate (IP SANs for 127.0.0.1 and the
//! bridge gateway pods use, plus the `kubernetes` Service's names and IP);
//! client certificates (admin in `system:masters`, the controller-manager and
//! the scheduler under their standard user names); and the service-account
//! signing key pair.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate and its private key, written as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The cluster's PKI, written under one directory.
pub struct Pki {
    dir: PathBuf,
    ca: Issuer<'static, KeyPair>,
    pub ca_cert: PathBuf,
    pub ca_pem: String,
    pub apiserver: CertFiles,
    /// Service-account token signing key (private, PKCS#8 PEM).
    pub sa_key: PathBuf,
    /// Its public key (SPKI PEM).
    pub sa_pub: PathBuf,
}

impl Pki {
    /// Generates the CA, the apiserver serving certificate for `server_ips`
    /// (plus the usual in-cluster DNS names) and the service-account keys.
    pub fn generate(dir: &Path, server_ips: &[IpAddr]) -> Result<Pki> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca_key = KeyPair::generate().context("generating CA key")?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = dn("otlp-lb-e2e-ca", None);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca_params.self_signed(&ca_key).context("self-signing CA")?;
        let ca_pem = ca_cert.pem();
        let ca_cert_path = dir.join("ca.crt");
        write(&ca_cert_path, &ca_pem)?;
        write(&dir.join("ca.key"), &ca_key.serialize_pem())?;
        let ca = Issuer::new(ca_params, ca_key);

        let sa = KeyPair::generate().context("generating service-account key")?;
        let sa_key = dir.join("sa.key");
        let sa_pub = dir.join("sa.pub");
        write(&sa_key, &sa.serialize_pem())?;
        write(&sa_pub, &sa.public_key_pem())?;

        let mut pki = Pki {
            dir: dir.to_path_buf(),
            ca,
            ca_cert: ca_cert_path,
            ca_pem,
            apiserver: CertFiles {
                cert: PathBuf::new(),
                key: PathBuf::new(),
                cert_pem: String::new(),
                key_pem: String::new(),
            },
            sa_key,
            sa_pub,
        };
        let mut sans: Vec<SanType> = server_ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
        for name in [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ] {
            sans.push(SanType::DnsName(name.try_into().context("DNS SAN")?));
        }
        pki.apiserver = pki.issue("apiserver", "kube-apiserver", None, sans, ExtendedKeyUsagePurpose::ServerAuth)?;
        Ok(pki)
    }

    /// A client certificate for user `cn`, in group `org` if given (rcgen
    /// writes one O= attribute, so one group).
    pub fn client_cert(&self, file_stem: &str, cn: &str, org: Option<&str>) -> Result<CertFiles> {
        self.issue(file_stem, cn, org, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        file_stem: &str,
        cn: &str,
        org: Option<&str>,
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<CertFiles> {
        let key = KeyPair::generate().with_context(|| format!("generating key for {cn}"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn, org);
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.ca).with_context(|| format!("signing certificate for {cn}"))?;
        let files = CertFiles {
            cert: self.dir.join(format!("{file_stem}.crt")),
            key: self.dir.join(format!("{file_stem}.key")),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        write(&files.cert, &files.cert_pem)?;
        write(&files.key, &files.key_pem)?;
        Ok(files)
    }
}

fn dn(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = org {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_files() {
        let dir = std::env::temp_dir().join(format!("olb-pki-test-{}", std::process::id()));
        let pki = Pki::generate(&dir, &["127.0.0.1".parse().unwrap()]).unwrap();
        let admin = pki.client_cert("admin", "admin", Some("system:masters")).unwrap();
        assert!(admin.cert_pem.contains("BEGIN CERTIFICATE"));
        assert!(std::fs::read_to_string(&pki.sa_pub).unwrap().contains("PUBLIC KEY"));
        assert!(pki.apiserver.key.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
