//! Certificates, made at test time.

use std::path::PathBuf;

use aggregator::tls::client::{ClientTls, TlsArgs};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType,
};

use super::TempDir;

/// A certificate authority, and the files of what it signs, in a scratch directory.
pub struct Ca {
    name: &'static str,
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &'static str, dir: &TempDir) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).unwrap();
        let ca = Ca {
            name,
            dir: dir.0.clone(),
            issuer: Issuer::new(params, key),
        };
        std::fs::write(ca.path("ca.pem"), cert.pem()).unwrap();
        ca
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(format!("{}-{file}", self.name))
    }

    /// Signs a certificate for `names` (DNS names, and 127.0.0.1 for a server), expired if asked;
    /// writes `FILE.pem` and `FILE.key` and returns their paths.
    pub fn sign(
        &self,
        file: &str,
        names: &[&str],
        server: bool,
        expired: bool,
    ) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        if server {
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
        }
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            self.path(&format!("{file}.pem")),
            self.path(&format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// A client's TLS trusting this CA, with the certificate `client` (from [`Ca::sign`]).
    pub fn client(&self, client: Option<(PathBuf, PathBuf)>) -> ClientTls {
        let (cert, key) = client.unzip();
        TlsArgs {
            ca: Some(self.path("ca.pem")),
            cert,
            key,
            server_name: None,
        }
        .client()
        .unwrap()
        .unwrap()
    }
}
