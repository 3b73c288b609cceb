//! A test PKI for mutual TLS and a real Mosquitto that demands it: a throw-away CA, a server
//! certificate for `127.0.0.1`/`localhost`, and client certificates issued per name (the console,
//! each device), all as PEM files in a temp dir, as AWS IoT Core gives a thing its certificate,
//! private key and root CA. The broker listens on a free 127.0.0.1 port and refuses a client
//! without a certificate of this CA (`require_certificate true`), so a device SDK that connects
//! through it has really done a TLS handshake with its client certificate.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::mosquitto::{Mosquitto, free_port};

/// One certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The CA, the broker's server certificate, and whatever client certificates were issued.
pub struct TestPki {
    dir: PathBuf,
    /// The CA certificate (PEM): what clients trust and what the broker checks clients against.
    pub ca: PathBuf,
    pub server: CertFiles,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestPki {
    /// A new CA and server certificate in `dir`.
    pub fn create(dir: &Path) -> TestPki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ota-console mutual TLS test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let ca = dir.join("test-ca.pem");
        std::fs::write(&ca, issuer.pem()).unwrap();
        let mut pki = TestPki {
            dir: dir.to_path_buf(),
            ca,
            server: CertFiles {
                cert: PathBuf::new(),
                key: PathBuf::new(),
            },
            issuer,
        };
        pki.server = pki.issue(
            "server",
            vec!["127.0.0.1".into(), "localhost".into()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        pki
    }

    /// A client certificate whose subject CN is `name` (a thing name, `ota-console`), written as
    /// `<name>.pem` and `<name>.key` (the name must be usable in a file name).
    pub fn client(&self, name: &str) -> CertFiles {
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "client certificate name {name:?} is not a plain file name"
        );
        self.issue(
            &format!("client-{name}"),
            vec![],
            name,
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    fn issue(
        &self,
        file: &str,
        sans: Vec<String>,
        cn: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> CertFiles {
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = CertFiles {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}

/// A Mosquitto whose only listener (free 127.0.0.1 port) is TLS and takes only clients with a
/// certificate of `pki`'s CA; `extra` are more config lines. `url()` of the result is `mqtt://`:
/// use [`mqtts_url`] for clients.
pub fn start_mutual_tls_mosquitto(dir: &Path, pki: &TestPki, extra: &str) -> Mosquitto {
    let conf = format!(
        "allow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n{extra}",
        pki.ca.display(),
        pki.server.cert.display(),
        pki.server.key.display(),
    );
    Mosquitto::start(dir, free_port(), &conf)
}

/// `mqtts://127.0.0.1:PORT` of a broker from [`start_mutual_tls_mosquitto`].
pub fn mqtts_url(broker: &Mosquitto) -> String {
    format!("mqtts://127.0.0.1:{}", broker.port)
}
