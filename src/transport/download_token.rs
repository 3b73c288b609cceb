//! Per-device download links: the secret key they are derived from and the link text.
//!
//! A campaign served by the embedded firmware server has one campaign link,
//! `{base}/fw/{campaign token}/{file}`, stored with the campaign. It is never served itself: it
//! is the grant key. Each device is told its own link, the same one with the campaign token
//! replaced by `HMAC-SHA256(key, campaign id, campaign token, device id)` cut to 128 bits (32
//! lowercase hex digits). The key is 32 random bytes kept 0600 in the data directory and made
//! once, so a console restarted on the same data directory derives the same link for the same
//! device (devices in flight resume their downloads) and nothing new has to be stored.
//!
//! The link carries no device id (ids hold `:` and `/`, and would tell a finder of the link
//! which device it is); only the console, which made the token, knows whose it is: the
//! firmware server holds the token table of each running campaign (`FirmwareServer::grant`).
//!
//! Must never: put anything but RFC 3986 unreserved characters in a token, or reuse a key file
//! it cannot read back exactly (a new key would silently change the links of running
//! campaigns: it is refused instead, saying which file to remove).

use crate::i18n::tr;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::http::OfferUrl;
use crate::private_fs;

/// The key file in the data directory.
pub const DOWNLOAD_KEY_FILE: &str = "download-url.key";
/// Key length in bytes (stored as 64 hex digits and a newline).
const KEY_BYTES: usize = 32;
/// Token length in bytes before hex (128 bits: as unguessable as a random offer token).
const TOKEN_BYTES: usize = 16;
/// Separates this use of the key from any other the key might get.
const DOMAIN: &[u8] = b"ota-console per-device download link v1";

#[derive(Debug, thiserror::Error)]
pub enum DownloadKeyError {
    #[error("{}", tr!("error.download_key.create", path = path.display(), why = crate::i18n::io_error(cause)))]
    Create { path: PathBuf, cause: io::Error },
    #[error("{}", tr!("error.download_key.read", path = path.display(), why = crate::i18n::io_error(cause)))]
    Read { path: PathBuf, cause: io::Error },
    #[error("{}", tr!("error.download_key.damaged", path = _0.display()))]
    Damaged(PathBuf),
}

/// The secret the per-device tokens are derived from.
#[derive(Clone)]
pub struct DownloadKey([u8; KEY_BYTES]);

impl fmt::Debug for DownloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DownloadKey(<hidden>)")
    }
}

impl DownloadKey {
    /// A key from its bytes (tests, or a key kept elsewhere).
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> DownloadKey {
        DownloadKey(bytes)
    }

    /// The data directory's key, created (0600) on first use and read back after.
    pub fn load_or_create(data_dir: &Path) -> Result<DownloadKey, DownloadKeyError> {
        let path = data_dir.join(DOWNLOAD_KEY_FILE);
        let create = |cause| DownloadKeyError::Create {
            path: path.clone(),
            cause,
        };
        private_fs::create_private_dir(data_dir).map_err(create)?;
        match fs::metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_new(&path, &hex::encode(rand::random::<[u8; KEY_BYTES]>()))
                    .map_err(create)?;
            }
            Err(cause) => return Err(DownloadKeyError::Read { path, cause }),
        }
        // An older, looser file is tightened (never loosened).
        private_fs::private_file(&path, b"").map_err(create)?;
        let text = fs::read(&path).map_err(|cause| DownloadKeyError::Read {
            path: path.clone(),
            cause,
        })?;
        let hex_text = std::str::from_utf8(&text).map(str::trim).unwrap_or("");
        let mut key = [0u8; KEY_BYTES];
        hex::decode_to_slice(hex_text, &mut key).map_err(|_| DownloadKeyError::Damaged(path))?;
        Ok(DownloadKey(key))
    }

    /// The token of `device` in campaign `campaign` whose campaign link carries
    /// `campaign_token`: 32 lowercase hex digits, the same for the same inputs and key.
    pub fn device_token(&self, campaign: i64, campaign_token: &str, device: &str) -> String {
        // HMAC takes keys of any length: `new_from_slice` cannot fail for 32 bytes.
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0) else {
            return String::new();
        };
        // Length-prefixed fields: no two different inputs give the same message.
        mac.update(DOMAIN);
        mac.update(&campaign.to_be_bytes());
        for field in [campaign_token, device] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        let digest = mac.finalize().into_bytes();
        hex::encode(digest.get(..TOKEN_BYTES).unwrap_or_default())
    }

    /// The link `device` is told, from its campaign's link: the same link with the device's
    /// own token.
    pub fn device_url(&self, campaign: i64, campaign_url: &OfferUrl, device: &str) -> OfferUrl {
        campaign_url.with_token(self.device_token(campaign, campaign_url.token(), device))
    }
}

/// Writes `text` to a private temporary file, then links it in as `path`: a crash never
/// leaves a half-written key, and of two consoles starting together one key wins.
fn write_new(path: &Path, text: &str) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let temp = dir.join(format!(
        ".{DOWNLOAD_KEY_FILE}.{:08x}",
        rand::random::<u32>()
    ));
    private_fs::private_file(&temp, format!("{text}\n").as_bytes())?;
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const LINK: &str = "http://10.0.0.2:8080/fw/0123456789abcdef0123456789abcdef/fw%201.bin";

    #[test]
    fn tokens_are_per_campaign_and_device_and_url_safe() {
        let key = DownloadKey::from_bytes([7; KEY_BYTES]);
        let token = "0123456789abcdef0123456789abcdef";
        let a = key.device_token(1, token, "aliyun:a1Prod/pump-1");
        assert_eq!(a.len(), 32);
        assert!(super::super::http::is_offer_token(&a), "{a}");
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        );
        // Deterministic: the same link after a restart.
        assert_eq!(a, key.device_token(1, token, "aliyun:a1Prod/pump-1"));
        // Any input changes it.
        let others = [
            key.device_token(1, token, "aliyun:a1Prod/pump-2"),
            key.device_token(2, token, "aliyun:a1Prod/pump-1"),
            key.device_token(
                1,
                "fedcba9876543210fedcba9876543210",
                "aliyun:a1Prod/pump-1",
            ),
            DownloadKey::from_bytes([8; KEY_BYTES]).device_token(1, token, "aliyun:a1Prod/pump-1"),
        ];
        for other in &others {
            assert_ne!(&a, other);
        }
        // Fields cannot run into each other.
        assert_ne!(
            key.device_token(1, "ab", "c"),
            key.device_token(1, "a", "bc")
        );
    }

    #[test]
    fn device_links_replace_only_the_token() {
        let key = DownloadKey::from_bytes([1; KEY_BYTES]);
        let link = OfferUrl::parse(LINK).unwrap();
        let url = key.device_url(3, &link, "dji:SN1/x").to_string();
        let token = key.device_token(3, "0123456789abcdef0123456789abcdef", "dji:SN1/x");
        assert_eq!(url, format!("http://10.0.0.2:8080/fw/{token}/fw%201.bin"));
        assert_eq!(
            OfferUrl::parse(&url).map(|u| u.token().to_owned()),
            Some(token)
        );
        assert!(!url.contains("SN1"));
        assert_eq!(crate::engine::validate_download_url(&url), Ok(()));
        for foreign in [
            "https://cdn.example.test/fw/2.0.0/fw.bin",
            "http://x/fw/0123456789abcdef0123456789abcdef",
            "http://x/fw/0123456789abcdef0123456789abcdef/",
            "http://x/a.bin",
        ] {
            // Not a link of ours: there is no campaign link to derive a device's link from.
            assert_eq!(OfferUrl::parse(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn the_key_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = DownloadKey::load_or_create(&data).unwrap();
        let path = data.join(DOWNLOAD_KEY_FILE);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = DownloadKey::load_or_create(&data).unwrap();
        assert_eq!(first.0, again.0);
        assert_ne!(first.0, [0; KEY_BYTES]);
        assert!(!format!("{first:?}").contains(&hex::encode(first.0)));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [DOWNLOAD_KEY_FILE]);
    }

    #[test]
    fn a_damaged_key_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DOWNLOAD_KEY_FILE);
        fs::write(&path, "not hex\n").unwrap();
        let err = DownloadKey::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, DownloadKeyError::Damaged(_)), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "not hex\n");
        fs::write(&path, "").unwrap();
        assert!(DownloadKey::load_or_create(dir.path()).is_err());
    }
}
