//! TLS server material for the broker gate and the firmware server: the server's certificate
//! chain and key ([`ServerIdentity`], from the user's PEM files or issued by the site CA of
//! [`super::site_ca`]), the rustls server configuration built from it with or without client
//! certificates ([`server_config`], [`ClientCerts`]), and the identity a verified client
//! certificate stands for ([`identity_of_cert`]).
//!
//! Every configuration is built with rustls's aws-lc-rs provider given explicitly, as the MQTT
//! link does: with more than one provider compiled in, rustls panics at run time when a
//! configuration relies on a process-wide default that nobody installed.
//!
//! Files are read only by the functions that say so, bounded in size; errors name the file.
//! Nothing here panics on certificate bytes: client certificates come from the network.

use crate::i18n::tr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;

/// PEM files of certificates and keys are small; anything bigger is not one.
pub const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;

/// Why TLS material could not be loaded, generated or assembled.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}", tr!("error.file", path = path.display(), why = crate::i18n::io_error(cause)))]
    Io { path: PathBuf, cause: io::Error },
    #[error("{}", tr!("error.tls.too_large", path = path.display(), limit = MAX_PEM_FILE_BYTES))]
    TooLarge { path: PathBuf },
    #[error("{}", tr!("error.tls.no_certificate", path = path.display()))]
    NoCertificate { path: PathBuf },
    #[error("{}", tr!("error.file", path = path.display(), why = detail))]
    BadPem { path: PathBuf, detail: String },
    #[error("{}", tr!("error.tls.encrypted_key", path = path.display()))]
    EncryptedKey { path: PathBuf },
    #[error("{}", tr!("error.tls.key_mismatch", key = key.display(), cert = cert.display()))]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{}", tr!("error.tls.site_ca_incomplete", dir = dir.display(), present = present.display(), missing = missing.display()))]
    SiteCaIncomplete {
        dir: PathBuf,
        present: PathBuf,
        missing: PathBuf,
    },
    #[error("{}", tr!("error.tls.bad_site_ca", path = path.display(), detail = detail, dir = dir.display()))]
    BadSiteCa {
        dir: PathBuf,
        path: PathBuf,
        detail: String,
    },
    #[error("{}", tr!("error.tls.bad_name", name = format!("{name:?}"), detail = detail))]
    BadName { name: String, detail: String },
    #[error("{}", tr!("error.tls.no_names"))]
    NoNames,
    #[error("{}", tr!("error.tls.generate", why = _0))]
    Generate(String),
    #[error("{}", tr!("error.tls.no_client_roots"))]
    NoClientRoots,
    #[error("{}", tr!("error.tls.config", what = what, detail = detail))]
    Config { what: String, detail: String },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TlsError + '_ {
    move |cause| TlsError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Reads a whole PEM file, bounded; `None` when it does not exist.
pub(crate) fn read_pem_file(path: &Path) -> Result<Option<Vec<u8>>, TlsError> {
    crate::private_fs::read_bounded(path, MAX_PEM_FILE_BYTES).map_err(|e| match e {
        crate::private_fs::BoundedReadError::Io(e) => io_err(path)(e),
        crate::private_fs::BoundedReadError::TooLarge => TlsError::TooLarge {
            path: path.to_path_buf(),
        },
    })
}

fn read_existing_pem_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    read_pem_file(path)?.ok_or_else(|| TlsError::Io {
        path: path.to_path_buf(),
        cause: io::Error::new(io::ErrorKind::NotFound, "no such file"),
    })
}

/// Every certificate of a PEM text, in order (other PEM sections are skipped).
pub(crate) fn certs_from_pem(
    pem: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            path: path.to_path_buf(),
            detail: format!("not a readable PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The certificates of a PEM file, e.g. the CA certificates client certificates are checked
/// against ([`ClientCerts`]).
pub fn certs_from_pem_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certs_from_pem(&read_existing_pem_file(path)?, path)
}

/// The crypto provider of every configuration made here.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A server's certificate chain (leaf first) and its private key, checked to belong together.
pub struct ServerIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// Where it came from, for messages: the files, or the site CA.
    origin: String,
}

impl Clone for ServerIdentity {
    fn clone(&self) -> Self {
        ServerIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            origin: self.origin.clone(),
        }
    }
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("origin", &self.origin)
            .field("chain_len", &self.chain.len())
            .field("key", &"<hidden>")
            .finish()
    }
}

impl ServerIdentity {
    /// The user's certificates: `cert` holds the chain in PEM, leaf first (intermediates after
    /// it, as nginx and Mosquitto take it); `key` the leaf's unencrypted private key in PEM,
    /// PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ServerIdentity, TlsError> {
        let chain = certs_from_pem_file(cert)?;
        let key_pem = read_existing_pem_file(key)?;
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            if key_pem
                .windows(b"ENCRYPTED PRIVATE KEY".len())
                .any(|w| w == b"ENCRYPTED PRIVATE KEY")
            {
                TlsError::EncryptedKey {
                    path: key.to_path_buf(),
                }
            } else {
                TlsError::BadPem {
                    path: key.to_path_buf(),
                    detail: format!("no usable PEM private key in it: {e}"),
                }
            }
        })?;
        Self::checked(
            chain,
            key_der,
            format!("{} and {}", cert.display(), key.display()),
        )
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            },
            other => TlsError::BadPem {
                path: key.to_path_buf(),
                detail: format!("cannot use this key with {}: {other}", cert.display()),
            },
        })
    }

    /// A chain and key made in memory (the site CA's [`super::site_ca::SiteCa::issue_server`]).
    pub(crate) fn from_parts(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        origin: String,
    ) -> Result<ServerIdentity, TlsError> {
        Self::checked(chain, key, origin.clone()).map_err(|e| TlsError::Config {
            what: origin,
            detail: e.to_string(),
        })
    }

    fn checked(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        origin: String,
    ) -> Result<ServerIdentity, rustls::Error> {
        // Loading with the provider that will sign handshakes also proves the key type is
        // supported; `from_der` compares the key's public half with the leaf's.
        CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider())?;
        Ok(ServerIdentity { chain, key, origin })
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// Where this identity came from (file names, or the site CA's folder), for messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// Whether a TLS server asks connecting clients for a certificate.
#[derive(Debug, Clone)]
pub enum ClientCerts {
    /// No client certificate is asked for (clients log in with user name and password).
    NotAsked,
    /// A certificate is asked for; a client may send none, but one it sends must chain to one
    /// of these CA certificates.
    Optional(Vec<CertificateDer<'static>>),
    /// Every client must present a certificate chaining to one of these CA certificates.
    Required(Vec<CertificateDer<'static>>),
}

/// A rustls server configuration (TLS 1.2 and 1.3, aws-lc-rs) presenting `identity` and
/// treating client certificates as `client` says. No ALPN protocol is set.
pub fn server_config(
    identity: &ServerIdentity,
    client: ClientCerts,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let config_error = |e: &dyn std::fmt::Display| TlsError::Config {
        what: identity.origin.clone(),
        detail: e.to_string(),
    };
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(&e))?;
    let builder = match client {
        ClientCerts::NotAsked => builder.with_no_client_auth(),
        ClientCerts::Optional(roots) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(root_store(roots)?, provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| config_error(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
        ClientCerts::Required(roots) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(root_store(roots)?, provider)
                    .build()
                    .map_err(|e| config_error(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| config_error(&e))?;
    Ok(Arc::new(config))
}

fn root_store(roots: Vec<CertificateDer<'static>>) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    let (_, unusable) = store.add_parsable_certificates(roots);
    // A CA certificate that cannot anchor would silently refuse its devices: say it at start.
    if store.is_empty() || unusable > 0 {
        return Err(TlsError::NoClientRoots);
    }
    Ok(Arc::new(store))
}

/// The identity a client certificate stands for: the subject common name (CN) of the leaf,
/// e.g. a device id text (`dji:DOCK1SN`, `fogcloud:a1pk/gw-1`) or a `mqtt-users.txt` user name.
/// `None` when the certificate cannot be parsed or its subject has no CN, an empty one, or more
/// than one (an ambiguous subject names no one).
///
/// Only meaningful for a certificate the TLS handshake has verified against the CA.
pub fn identity_of_cert(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let mut names = parsed.subject().iter_common_name();
    let name = names.next()?.as_str().ok()?;
    if names.next().is_some() || name.is_empty() {
        return None;
    }
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::site_ca::SiteCa;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name)
    }

    fn verify_server(
        ca: &SiteCa,
        identity: &ServerIdentity,
        name: &str,
    ) -> Result<(), rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.certificate()).unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
        let (leaf, intermediates) = identity.chain().split_first().unwrap();
        verifier
            .verify_server_cert(
                leaf,
                intermediates,
                &ServerName::try_from(name.to_owned()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn a_server_certificate_verifies_against_its_site_ca_only() {
        let data = tempfile::tempdir().unwrap();
        let ca = SiteCa::load_or_create(data.path()).unwrap();
        let identity = ca
            .issue_server(&["127.0.0.1".into(), "localhost".into(), "ota.lan".into()])
            .unwrap();
        for name in ["127.0.0.1", "localhost", "ota.lan"] {
            verify_server(&ca, &identity, name).unwrap();
        }
        let wrong_name = verify_server(&ca, &identity, "10.9.9.9").unwrap_err();
        assert!(
            matches!(wrong_name, rustls::Error::InvalidCertificate(_)),
            "{wrong_name:?}"
        );
        let other_data = tempfile::tempdir().unwrap();
        let other = SiteCa::load_or_create(other_data.path()).unwrap();
        let foreign = verify_server(&other, &identity, "127.0.0.1").unwrap_err();
        assert!(
            matches!(foreign, rustls::Error::InvalidCertificate(_)),
            "{foreign:?}"
        );
    }

    /// A client of `ca` presenting `client_pem` (cert, key) if given.
    fn client_config(ca: &SiteCa, client_pem: Option<&(String, String)>) -> rustls::ClientConfig {
        let mut roots = RootCertStore::empty();
        roots.add(ca.certificate()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        match client_pem {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .collect::<Result<_, _>>()
                        .unwrap(),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        }
    }

    /// A real handshake over an in-memory pipe, then one byte each way. The server's result:
    /// the identity of the client's certificate (`None` without one), or the handshake error.
    async fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: rustls::ClientConfig,
    ) -> Result<Option<String>, String> {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let serve = async move {
            let mut tls = acceptor
                .accept(server_io)
                .await
                .map_err(|e| e.to_string())?;
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| identity_of_cert(leaf).unwrap_or_default());
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
            tls.write_all(&byte).await.map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())?;
            Ok(identity)
        };
        let connect = async move {
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let mut tls = connector.connect(name, client_io).await?;
            tls.write_all(b"x").await?;
            tls.flush().await?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await?;
            Ok::<_, io::Error>(())
        };
        let (served, connected) = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            tokio::join!(serve, connect)
        })
        .await
        .expect("handshake finishes");
        if served.is_ok() {
            connected.expect("the client completes when the server does");
        }
        served
    }

    #[tokio::test]
    async fn mutual_tls_admits_the_site_cas_clients_and_names_them() {
        let data = tempfile::tempdir().unwrap();
        let ca = SiteCa::load_or_create(data.path()).unwrap();
        let identity = ca.issue_server(&["127.0.0.1".into()]).unwrap();
        let other_data = tempfile::tempdir().unwrap();
        let other = SiteCa::load_or_create(other_data.path()).unwrap();
        let dock = ca.issue_client("dji:DOCK1SN").unwrap();
        let gateway = ca.issue_client("fogcloud:a1pk/gw-1").unwrap();
        let impostor = other.issue_client("dji:DOCK1SN").unwrap();

        let required =
            server_config(&identity, ClientCerts::Required(vec![ca.certificate()])).unwrap();
        assert_eq!(
            handshake(required.clone(), client_config(&ca, Some(&dock))).await,
            Ok(Some("dji:DOCK1SN".to_owned()))
        );
        assert_eq!(
            handshake(required.clone(), client_config(&ca, Some(&gateway))).await,
            Ok(Some("fogcloud:a1pk/gw-1".to_owned()))
        );
        let refused = handshake(required.clone(), client_config(&ca, Some(&impostor))).await;
        assert!(refused.is_err(), "{refused:?}");
        let anonymous = handshake(required, client_config(&ca, None)).await;
        assert!(anonymous.is_err(), "{anonymous:?}");

        let optional =
            server_config(&identity, ClientCerts::Optional(vec![ca.certificate()])).unwrap();
        assert_eq!(
            handshake(optional.clone(), client_config(&ca, None)).await,
            Ok(None)
        );
        assert_eq!(
            handshake(optional.clone(), client_config(&ca, Some(&dock))).await,
            Ok(Some("dji:DOCK1SN".to_owned()))
        );
        let refused = handshake(optional, client_config(&ca, Some(&impostor))).await;
        assert!(refused.is_err(), "{refused:?}");

        let not_asked = server_config(&identity, ClientCerts::NotAsked).unwrap();
        assert_eq!(
            handshake(not_asked, client_config(&ca, None)).await,
            Ok(None)
        );
    }

    #[test]
    fn client_certificates_need_usable_roots() {
        let data = tempfile::tempdir().unwrap();
        let ca = SiteCa::load_or_create(data.path()).unwrap();
        let identity = ca.issue_server(&["localhost".into()]).unwrap();
        for client in [
            ClientCerts::Required(Vec::new()),
            ClientCerts::Optional(Vec::new()),
            ClientCerts::Required(vec![CertificateDer::from(vec![1, 2, 3])]),
        ] {
            let err = server_config(&identity, client).unwrap_err();
            assert!(matches!(err, TlsError::NoClientRoots), "{err:?}");
        }
    }

    #[test]
    fn user_pem_files_in_every_key_format_are_read() {
        for (cert, key) in [
            ("ec.pem", "ec-pkcs8.key"),
            ("ec.pem", "ec-sec1.key"),
            ("rsa.pem", "rsa-pkcs1.key"),
        ] {
            let identity = ServerIdentity::from_pem_files(&fixture(cert), &fixture(key))
                .unwrap_or_else(|e| panic!("{cert} + {key}: {e}"));
            assert_eq!(identity.chain().len(), 1);
            assert!(identity.origin().contains(key));
            server_config(&identity, ClientCerts::NotAsked).unwrap();
        }
    }

    #[test]
    fn bad_user_pem_files_are_named() {
        let mismatch =
            ServerIdentity::from_pem_files(&fixture("rsa.pem"), &fixture("ec-pkcs8.key"))
                .unwrap_err();
        assert!(
            matches!(mismatch, TlsError::KeyMismatch { .. }),
            "{mismatch:?}"
        );
        let text = mismatch.to_string();
        assert!(
            text.contains("ec-pkcs8.key") && text.contains("rsa.pem"),
            "{text}"
        );

        let encrypted =
            ServerIdentity::from_pem_files(&fixture("ec.pem"), &fixture("ec-encrypted.key"))
                .unwrap_err();
        assert!(
            matches!(encrypted, TlsError::EncryptedKey { .. }),
            "{encrypted:?}"
        );
        assert!(encrypted.to_string().contains("ec-encrypted.key"));

        let missing =
            ServerIdentity::from_pem_files(&fixture("absent.pem"), &fixture("ec-pkcs8.key"))
                .unwrap_err();
        assert!(missing.to_string().contains("absent.pem"), "{missing}");

        // A key given as the certificate file: no certificate in it.
        let swapped = ServerIdentity::from_pem_files(&fixture("ec-pkcs8.key"), &fixture("ec.pem"))
            .unwrap_err();
        assert!(
            matches!(swapped, TlsError::NoCertificate { .. }),
            "{swapped:?}"
        );
        assert!(swapped.to_string().contains("ec-pkcs8.key"), "{swapped}");

        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'A'; MAX_PEM_FILE_BYTES as usize + 1]).unwrap();
        let too_large = certs_from_pem_file(&big).unwrap_err();
        assert!(
            matches!(too_large, TlsError::TooLarge { .. }),
            "{too_large:?}"
        );
    }

    #[test]
    fn the_identity_is_the_single_common_name() {
        let data = tempfile::tempdir().unwrap();
        let ca = SiteCa::load_or_create(data.path()).unwrap();
        let (pem, _) = ca.issue_client("site-user-7").unwrap();
        let cert = certs_from_pem(pem.as_bytes(), Path::new("x")).unwrap();
        assert_eq!(identity_of_cert(&cert[0]).as_deref(), Some("site-user-7"));

        let two = certs_from_pem_file(&fixture("two-cn.pem")).unwrap();
        assert_eq!(identity_of_cert(&two[0]), None);
        assert_eq!(
            identity_of_cert(&CertificateDer::from(vec![0x30, 0x03])),
            None
        );
        assert_eq!(identity_of_cert(&CertificateDer::from(Vec::new())), None);
        // The CA itself has a CN too; a server certificate's CN is its first name.
        let server = ca.issue_server(&["gate.lan".into()]).unwrap();
        assert_eq!(
            identity_of_cert(&server.chain()[0]).as_deref(),
            Some("gate.lan")
        );
    }
}
