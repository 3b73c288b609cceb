//! The site CA: a certificate authority generated once per data directory, which issues the
//! server certificates of the broker gate and the firmware server, and client certificates for
//! devices provisioned for mutual TLS (subject CN = the identity the certificate logs in as).
//!
//! Owns `<data dir>/site-ca/` (0700): `ca.pem`, the CA certificate devices are given to trust
//! (what the window exports, and what `LinkOptions::ca_file` can point to), and `ca.key`, its
//! private key (0600). They are created together (in a staging folder renamed into place, so two
//! consoles starting at once agree on one CA) and reused after; a folder with one of them
//! missing, unreadable, mismatched or expired is an error naming the file, never replaced
//! silently: devices were provisioned with that CA.
//!
//! Keys are ECDSA P-256, which rustls, OpenSSL, mbedTLS and the device SDKs accept. The CA is
//! valid for 10 years and may only sign end-entity certificates (path length 0); issued
//! certificates are valid for 2 years (never beyond the CA) and are not stored: a server
//! certificate is issued again at each start, so it follows the host's current addresses.

use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use super::tls::{ServerIdentity, TlsError, certs_from_pem, io_err, read_pem_file};
use crate::private_fs;

/// The site CA's folder in the data directory.
pub const SITE_CA_DIR: &str = "site-ca";
/// The CA certificate (public) in [`SITE_CA_DIR`].
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA's private key (0600) in [`SITE_CA_DIR`].
pub const CA_KEY_FILE: &str = "ca.key";
/// Validity of a new site CA.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// Validity of an issued server or client certificate (capped at the CA's end).
pub const ISSUED_VALIDITY_DAYS: i64 = 730;
/// Issued certificates start this much in the past, for devices whose clock runs behind.
const BACKDATE: Duration = Duration::hours(1);
/// Longest client identity put in a subject CN (X.509's upper bound for a common name).
pub const MAX_IDENTITY_CHARS: usize = 64;

/// A loaded site CA, ready to issue certificates.
pub struct SiteCa {
    dir: PathBuf,
    cert_pem: String,
    cert: CertificateDer<'static>,
    not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for SiteCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteCa")
            .field("dir", &self.dir)
            .field("not_after", &self.not_after)
            .field("key", &"<hidden>")
            .finish()
    }
}

impl SiteCa {
    /// The data directory's site CA, generated on first use and reused after.
    pub fn load_or_create(data_dir: &Path) -> Result<SiteCa, TlsError> {
        private_fs::create_private_dir(data_dir).map_err(io_err(data_dir))?;
        let dir = data_dir.join(SITE_CA_DIR);
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if !exists(&cert_path)? && !exists(&key_path)? {
            create(data_dir, &dir)?;
        }
        Self::load(data_dir)
    }

    /// The data directory's existing site CA (an error names what is missing or wrong).
    pub fn load(data_dir: &Path) -> Result<SiteCa, TlsError> {
        let dir = data_dir.join(SITE_CA_DIR);
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let bad = |path: &Path, detail: String| TlsError::BadSiteCa {
            dir: dir.clone(),
            path: path.to_path_buf(),
            detail,
        };
        let (cert_bytes, key_bytes) = match (read_pem_file(&cert_path)?, read_pem_file(&key_path)?)
        {
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => {
                return Err(TlsError::SiteCaIncomplete {
                    dir: dir.clone(),
                    present: cert_path,
                    missing: key_path,
                });
            }
            (None, Some(_)) => {
                return Err(TlsError::SiteCaIncomplete {
                    dir: dir.clone(),
                    present: key_path,
                    missing: cert_path,
                });
            }
            (None, None) => {
                return Err(TlsError::Io {
                    path: cert_path,
                    cause: io::Error::new(
                        io::ErrorKind::NotFound,
                        "missing: this folder holds no site CA",
                    ),
                });
            }
        };
        let key_text = String::from_utf8(key_bytes)
            .map_err(|_| bad(&key_path, "not a PEM text".to_owned()))?;
        let key = KeyPair::from_pem(&key_text)
            .map_err(|e| bad(&key_path, format!("not a usable PEM private key ({e})")))?;
        let cert_pem = String::from_utf8(cert_bytes)
            .map_err(|_| bad(&cert_path, "not a PEM text".to_owned()))?;
        let cert = certs_from_pem(cert_pem.as_bytes(), &cert_path)
            .map_err(|e| bad(&cert_path, e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| bad(&cert_path, "no PEM certificate in it".to_owned()))?;
        let not_after = {
            let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
                .map_err(|e| bad(&cert_path, format!("not an X.509 certificate ({e})")))?;
            if !parsed.is_ca() {
                return Err(bad(&cert_path, "not a CA certificate".to_owned()));
            }
            if parsed.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
                return Err(bad(
                    &key_path,
                    format!("not the private key of {}", cert_path.display()),
                ));
            }
            parsed.validity().not_after.to_datetime()
        };
        if not_after <= OffsetDateTime::now_utc() {
            return Err(bad(&cert_path, format!("expired on {not_after}")));
        }
        let issuer = Issuer::from_ca_cert_der(&cert, key)
            .map_err(|e| bad(&cert_path, format!("cannot sign with it ({e})")))?;
        // Made private at creation; an older or hand-made folder is tightened on load.
        private_fs::tighten_if_present(&key_path).map_err(io_err(&key_path))?;
        private_fs::tighten_dir(&dir).map_err(io_err(&dir))?;
        Ok(SiteCa {
            dir,
            cert_pem,
            cert,
            not_after,
            issuer,
        })
    }

    /// The CA certificate in PEM, as devices are given it to trust.
    pub fn ca_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The CA certificate (DER): the root for [`super::tls::ClientCerts`] and for clients.
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// `<data dir>/site-ca/ca.pem`, e.g. for `LinkOptions::ca_file` of the console's own link.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// `<data dir>/site-ca`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// When the CA certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// A new server certificate for `names` (DNS names or IP addresses, e.g. `localhost`,
    /// `127.0.0.1`, the host name; see [`local_server_names`]) with a fresh key. Its chain is the
    /// leaf alone: clients hold the CA certificate.
    pub fn issue_server(&self, names: &[String]) -> Result<ServerIdentity, TlsError> {
        let mut unique: Vec<String> = Vec::new();
        for name in names {
            let name = name.trim();
            check_server_name(name)?;
            if !unique.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                unique.push(name.to_owned());
            }
        }
        let first = unique.first().cloned().ok_or(TlsError::NoNames)?;
        let mut params = CertificateParams::new(unique).map_err(|e| TlsError::BadName {
            name: names.join(", "),
            detail: e.to_string(),
        })?;
        params.distinguished_name = subject(&first);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (cert, key) = self.sign(params)?;
        ServerIdentity::from_parts(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            format!("a server certificate of the site CA {}", self.dir.display()),
        )
    }

    /// A new client certificate and key (both PEM; the key unencrypted PKCS#8) whose subject
    /// CN is `identity_name`: a device id text (`dji:DOCK1SN`, `fogcloud:a1pk/gw-1`) or a
    /// `mqtt-users.txt` user name, which [`super::tls::identity_of_cert`] gives back after a
    /// verified handshake.
    pub fn issue_client(&self, identity_name: &str) -> Result<(String, String), TlsError> {
        let bad = |detail: &str| TlsError::BadName {
            name: identity_name.to_owned(),
            detail: detail.to_owned(),
        };
        if identity_name.is_empty() {
            return Err(bad("an identity cannot be empty"));
        }
        if identity_name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(bad(
                "an identity cannot contain spaces or control characters",
            ));
        }
        if identity_name.chars().count() > MAX_IDENTITY_CHARS {
            return Err(bad(
                "longer than the 64 characters of a certificate's common name",
            ));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(identity_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (cert, key) = self.sign(params)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Signs an end-entity certificate with a fresh key: serial, validity and usages set here.
    fn sign(
        &self,
        mut params: CertificateParams,
    ) -> Result<(rcgen::Certificate, KeyPair), TlsError> {
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = (now + Duration::days(ISSUED_VALIDITY_DAYS)).min(self.not_after);
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        Ok((cert, key))
    }
}

/// Names a server certificate of this machine should carry: `localhost`, the loopback
/// addresses, the host name (when it is a valid DNS name) and the primary LAN addresses (the
/// source address towards the internet, IPv4 and IPv6), the ones devices on the site use.
pub fn local_server_names() -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let uname = rustix::system::uname();
    if let Ok(host) = uname.nodename().to_str()
        && !host.is_empty()
        && check_server_name(host).is_ok()
        && host.parse::<IpAddr>().is_err()
    {
        names.push(host.to_owned());
    }
    for v6 in [false, true] {
        if let Some(ip) = crate::host::primary_lan_ip(v6)
            && !ip.is_loopback()
        {
            names.push(ip.to_string());
        }
    }
    names
}

/// A DNS name or IP address a certificate can carry (checked here so the error names it).
fn check_server_name(name: &str) -> Result<(), TlsError> {
    let bad = |detail: &str| TlsError::BadName {
        name: name.to_owned(),
        detail: detail.to_owned(),
    };
    if name.is_empty() {
        return Err(bad("an empty name"));
    }
    if name.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*')
    };
    if name.len() > 253 || !name.trim_end_matches('.').split('.').all(label_ok) {
        return Err(bad(
            "not a DNS name (letters, digits, '-' and dots) nor an IP address",
        ));
    }
    Ok(())
}

fn subject(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "ota-console");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// 16 random bytes, positive (RFC 5280: at most 20 octets, non-negative).
fn random_serial() -> SerialNumber {
    let mut bytes = rand::random::<[u8; 16]>();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // no leading zero octet to strip
    SerialNumber::from_slice(&bytes)
}

fn exists(path: &Path) -> Result<bool, TlsError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// A new CA certificate (PEM) and key (PKCS#8 PEM).
fn generate_ca() -> Result<(String, String), TlsError> {
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = KeyPair::generate().map_err(generate)?;
    let mut params = CertificateParams::default();
    let name = format!(
        "ota-console site CA {}",
        hex::encode(rand::random::<[u8; 4]>())
    );
    params.distinguished_name = subject(&name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes a new CA into a private staging folder and renames it to `dir`. If `dir` appeared
/// meanwhile (another console made it) or holds other files, it is left alone and
/// [`SiteCa::load`] says what it finds there.
fn create(data_dir: &Path, dir: &Path) -> Result<(), TlsError> {
    let (cert_pem, key_pem) = generate_ca()?;
    // tempfile makes the folder 0700.
    let staging = tempfile::Builder::new()
        .prefix(".site-ca-")
        .tempdir_in(data_dir)
        .map_err(io_err(data_dir))?;
    let key_path = staging.path().join(CA_KEY_FILE);
    private_fs::private_file(&key_path, key_pem.as_bytes()).map_err(io_err(&key_path))?;
    let cert_path = staging.path().join(CA_CERT_FILE);
    let mut cert_file = fs::File::create(&cert_path).map_err(io_err(&cert_path))?;
    cert_file
        .write_all(cert_pem.as_bytes())
        .map_err(io_err(&cert_path))?;
    for file in [&key_path, &cert_path] {
        fs::File::open(file)
            .and_then(|f| f.sync_all())
            .map_err(io_err(file))?;
    }
    // rename(2) replaces an empty folder and refuses a non-empty one: never a partial CA.
    match fs::rename(staging.path(), dir) {
        Ok(()) => {
            // Moved into place: nothing left to clean up.
            let _ = staging.keep();
            Ok(())
        }
        Err(_) if exists(dir)? => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_ca_is_created_once_private_and_reused() {
        let data = tempfile::tempdir().unwrap();
        let first = SiteCa::load_or_create(data.path()).unwrap();
        let dir = data.path().join(SITE_CA_DIR);
        assert_eq!(first.dir(), dir);
        assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(first.cert_path(), dir.join(CA_CERT_FILE));
        assert_eq!(
            fs::read_to_string(first.cert_path()).unwrap(),
            first.ca_pem()
        );
        let years = (first.not_after() - OffsetDateTime::now_utc()).whole_days() / 365;
        assert!((9..=10).contains(&years), "{years}");
        let again = SiteCa::load_or_create(data.path()).unwrap();
        assert_eq!(again.certificate(), first.certificate());
        // No staging folder is left behind.
        let entries: Vec<_> = fs::read_dir(data.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, vec![std::ffi::OsString::from(SITE_CA_DIR)]);
    }

    #[test]
    fn consoles_starting_together_agree_on_one_ca() {
        let data = tempfile::tempdir().unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let dir = data.path().to_path_buf();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    SiteCa::load_or_create(&dir).unwrap().certificate()
                })
            })
            .collect();
        let certs: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(certs.iter().all(|c| *c == certs[0]));
        let entries = fs::read_dir(data.path()).unwrap().count();
        assert_eq!(entries, 1, "staging folders are cleaned up");
    }

    #[test]
    fn a_site_ca_folder_with_other_files_is_left_alone() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join(SITE_CA_DIR);
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("notes.txt"), b"mine").unwrap();
        let err = SiteCa::load_or_create(data.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains(&dir.join(CA_CERT_FILE).display().to_string()),
            "{err}"
        );
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn a_loosened_key_is_tightened_on_load() {
        let data = tempfile::tempdir().unwrap();
        let ca = SiteCa::load_or_create(data.path()).unwrap();
        let key = ca.dir().join(CA_KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        SiteCa::load_or_create(data.path()).unwrap();
        assert_eq!(mode(&key), 0o600);
    }

    #[test]
    fn a_broken_ca_is_never_replaced_and_the_error_names_the_file() {
        let data = tempfile::tempdir().unwrap();
        let ca = SiteCa::load_or_create(data.path()).unwrap();
        let key = ca.dir().join(CA_KEY_FILE);
        let cert = ca.cert_path();
        let original_cert = fs::read(&cert).unwrap();

        // Key missing.
        let key_pem = fs::read(&key).unwrap();
        fs::remove_file(&key).unwrap();
        let err = SiteCa::load_or_create(data.path()).unwrap_err();
        assert!(matches!(err, TlsError::SiteCaIncomplete { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&key.display().to_string()),
            "{err}"
        );
        assert_eq!(fs::read(&cert).unwrap(), original_cert);

        // Key garbled.
        fs::write(
            &key,
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = SiteCa::load_or_create(data.path()).unwrap_err();
        assert!(
            err.to_string().contains(&key.display().to_string()),
            "{err}"
        );

        // Another key.
        fs::write(&key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
        let err = SiteCa::load_or_create(data.path()).unwrap_err();
        assert!(err.to_string().contains("not the private key"), "{err}");
        assert!(
            err.to_string().contains(&key.display().to_string()),
            "{err}"
        );

        // Certificate garbled.
        fs::write(&key, &key_pem).unwrap();
        fs::write(&cert, b"not a certificate").unwrap();
        let err = SiteCa::load_or_create(data.path()).unwrap_err();
        assert!(
            err.to_string().contains(&cert.display().to_string()),
            "{err}"
        );
        assert_eq!(fs::read(&cert).unwrap(), b"not a certificate");

        // Certificate missing.
        fs::remove_file(&cert).unwrap();
        let err = SiteCa::load_or_create(data.path()).unwrap_err();
        assert!(
            err.to_string().contains(&cert.display().to_string()),
            "{err}"
        );
        assert!(!cert.exists());
        assert_eq!(fs::read(&key).unwrap(), key_pem);
    }

    #[test]
    fn a_leaf_is_refused_as_a_ca() {
        let data = tempfile::tempdir().unwrap();
        let ca = SiteCa::load_or_create(data.path()).unwrap();
        let (leaf, leaf_key) = ca.issue_client("dji:X").unwrap();
        fs::write(ca.cert_path(), leaf).unwrap();
        fs::write(ca.dir().join(CA_KEY_FILE), leaf_key).unwrap();
        let err = SiteCa::load(data.path()).unwrap_err();
        assert!(err.to_string().contains("not a CA certificate"), "{err}");
    }

    #[test]
    fn an_empty_site_ca_folder_gets_a_ca() {
        let data = tempfile::tempdir().unwrap();
        fs::create_dir(data.path().join(SITE_CA_DIR)).unwrap();
        let ca = SiteCa::load_or_create(data.path()).unwrap();
        assert!(ca.cert_path().exists());
    }

    #[test]
    fn names_and_identities_are_checked() {
        let data = tempfile::tempdir().unwrap();
        let ca = SiteCa::load_or_create(data.path()).unwrap();
        assert!(matches!(ca.issue_server(&[]), Err(TlsError::NoNames)));
        let err = ca
            .issue_server(&["localhost".into(), "bad name".into()])
            .unwrap_err();
        assert!(err.to_string().contains("\"bad name\""), "{err}");
        assert!(ca.issue_server(&["héte".into()]).is_err());
        assert!(ca.issue_client("").is_err());
        assert!(ca.issue_client("a b").is_err());
        assert!(ca.issue_client(&"x".repeat(65)).is_err());
        assert!(ca.issue_client("fogcloud:a1pk/gw-1").is_ok());
    }

    #[test]
    fn local_names_start_with_loopback() {
        let names = local_server_names();
        assert_eq!(&names[..3], ["localhost", "127.0.0.1", "::1"]);
        for name in &names {
            check_server_name(name).unwrap();
        }
    }
}
