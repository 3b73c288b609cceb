//! Alibaba Cloud IoT's MQTT signature ("one device, one secret"), as the device SDKs send it.
//!
//! Owns: parsing the signed client id `{cid}|securemode=N,signmethod=M,timestamp=T|` (other
//! parameters, e.g. Link Kit's `ext=1,_ss=1,lan=Python,_v=…`, are ignored; `timestamp` is
//! optional), the user name `{deviceName}&{productKey}`, and checking the password: the hex HMAC
//! (either case) of `clientId{cid}deviceName{dn}productKey{pk}[timestamp{T}]`, keyed by the
//! device secret, with the method the client id names (`hmacsha1`, `hmacsha256`, `hmacmd5`).
//!
//! Checked against Alibaba's Python device SDK `aliyun-iot-linkkit` 1.2.13
//! (`LinkKit.__config_mqtt_client_internal`): it sends the client id
//! `{pk}&{dn}|securemode=2|3,signmethod=hmacsha1,ext=1,_ss=1,lan=Python,_v=1.2.13,timestamp=T|`,
//! signs `clientId{pk}&{dn}deviceName{dn}productKey{pk}timestamp{T}` (the client id *before*
//! the first `|`) with HMAC-SHA1 and sends it as lowercase hex. The golden test below is that
//! SDK's own output.
//!
//! The timestamp is not checked against a clock: Alibaba's broker does not require it fresh
//! either, and devices without a real-time clock send whatever they have.
//!
//! Pure; never panics on what a client sends; comparisons are constant-time.

use crate::i18n::tr;
use hmac::{Hmac, KeyInit, Mac};

/// Longest client id, user name or password looked at (Alibaba's limits are far lower).
pub const MAX_FIELD_BYTES: usize = 512;

/// The HMAC the client id's `signmethod` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMethod {
    HmacSha1,
    HmacSha256,
    HmacMd5,
}

impl SignMethod {
    fn parse(text: &str) -> Option<SignMethod> {
        // The SDKs write `hmacsha1`; Link Kit's gateway messages write `hmacSha256`.
        match text.to_ascii_lowercase().as_str() {
            "hmacsha1" => Some(SignMethod::HmacSha1),
            "hmacsha256" => Some(SignMethod::HmacSha256),
            "hmacmd5" => Some(SignMethod::HmacMd5),
            _ => None,
        }
    }
}

/// A field of a signed login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignField {
    #[error("{}", tr!("error.sign.field.client_id"))]
    ClientId,
    #[error("{}", tr!("error.sign.field.user_name"))]
    UserName,
    #[error("{}", tr!("error.sign.field.password"))]
    Password,
}

/// Why a signed login was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("{}", tr!("error.sign.too_long", what = what, max = MAX_FIELD_BYTES))]
    TooLong { what: SignField },
    #[error("{}", tr!("error.sign.not_signed"))]
    NotSigned,
    #[error("{}", tr!("error.sign.malformed_params", params = format!("{_0:?}")))]
    MalformedParams(String),
    #[error("{}", tr!("error.sign.no_sign_method"))]
    NoSignMethod,
    #[error("{}", tr!("error.sign.unknown_sign_method", method = format!("{_0:?}")))]
    UnknownSignMethod(String),
    #[error("{}", tr!("error.sign.bad_secure_mode", mode = format!("{_0:?}")))]
    BadSecureMode(String),
    #[error("{}", tr!("error.sign.bad_user_name"))]
    BadUserName,
    #[error("{}", tr!("error.sign.password_not_hex"))]
    PasswordNotHex,
    #[error("{}", tr!("error.sign.mismatch"))]
    Mismatch,
}

/// The parts of a signed client id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedClientId<'a> {
    /// The client id proper: the text before the first `|`, which is what is signed.
    pub client_id: &'a str,
    pub secure_mode: Option<i64>,
    pub sign_method: SignMethod,
    pub timestamp: Option<&'a str>,
}

/// Parses `{cid}|key=value,…|`.
pub fn parse_client_id(text: &str) -> Result<SignedClientId<'_>, SignError> {
    if text.len() > MAX_FIELD_BYTES {
        return Err(SignError::TooLong {
            what: SignField::ClientId,
        });
    }
    let (client_id, rest) = text.split_once('|').ok_or(SignError::NotSigned)?;
    let params = rest.strip_suffix('|').ok_or(SignError::NotSigned)?;
    if params.contains('|') {
        return Err(SignError::MalformedParams(params.to_owned()));
    }
    let mut sign_method = None;
    let mut secure_mode = None;
    let mut timestamp = None;
    for pair in params.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| SignError::MalformedParams(params.to_owned()))?;
        match key {
            "signmethod" => {
                sign_method = Some(
                    SignMethod::parse(value)
                        .ok_or_else(|| SignError::UnknownSignMethod(value.to_owned()))?,
                );
            }
            "securemode" => {
                secure_mode = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignError::BadSecureMode(value.to_owned()))?,
                );
            }
            "timestamp" => timestamp = Some(value),
            _ => {}
        }
    }
    Ok(SignedClientId {
        client_id,
        secure_mode,
        sign_method: sign_method.ok_or(SignError::NoSignMethod)?,
        timestamp,
    })
}

/// Splits `{deviceName}&{productKey}` (product keys never contain `&`).
pub fn parse_username(text: &str) -> Result<(&str, &str), SignError> {
    if text.len() > MAX_FIELD_BYTES {
        return Err(SignError::TooLong {
            what: SignField::UserName,
        });
    }
    match text.rsplit_once('&') {
        Some((dn, pk)) if !dn.is_empty() && !pk.is_empty() => Ok((dn, pk)),
        _ => Err(SignError::BadUserName),
    }
}

/// The signed content: the parameters sorted by name, each name followed by its value.
pub fn content(
    client_id: &str,
    device_name: &str,
    product_key: &str,
    timestamp: Option<&str>,
) -> String {
    let mut text = format!("clientId{client_id}deviceName{device_name}productKey{product_key}");
    if let Some(t) = timestamp {
        text.push_str("timestamp");
        text.push_str(t);
    }
    text
}

/// The password a device with `secret` sends (lowercase hex), for tests and provisioning tools.
pub fn sign(method: SignMethod, secret: &str, content: &str) -> String {
    fn mac<M: Mac + KeyInit>(secret: &str, content: &str) -> String {
        // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
        match <M as KeyInit>::new_from_slice(secret.as_bytes()) {
            Ok(mut m) => {
                m.update(content.as_bytes());
                hex::encode(m.finalize().into_bytes())
            }
            Err(_) => String::new(),
        }
    }
    match method {
        SignMethod::HmacSha1 => mac::<Hmac<sha1::Sha1>>(secret, content),
        SignMethod::HmacSha256 => mac::<Hmac<sha2::Sha256>>(secret, content),
        SignMethod::HmacMd5 => mac::<Hmac<md5::Md5>>(secret, content),
    }
}

/// Checks `password` (hex, either case) against the HMAC of `content` keyed by `secret`, in
/// constant time.
pub fn verify(
    method: SignMethod,
    secret: &str,
    content: &str,
    password: &[u8],
) -> Result<(), SignError> {
    if password.len() > MAX_FIELD_BYTES {
        return Err(SignError::TooLong {
            what: SignField::Password,
        });
    }
    let expected = hex::decode(password).map_err(|_| SignError::PasswordNotHex)?;
    fn check<M: Mac + KeyInit>(
        secret: &str,
        content: &str,
        expected: &[u8],
    ) -> Result<(), SignError> {
        let mut m =
            <M as KeyInit>::new_from_slice(secret.as_bytes()).map_err(|_| SignError::Mismatch)?;
        m.update(content.as_bytes());
        // `verify_slice` compares in constant time (and refuses a wrong length).
        m.verify_slice(expected).map_err(|_| SignError::Mismatch)
    }
    match method {
        SignMethod::HmacSha1 => check::<Hmac<sha1::Sha1>>(secret, content, &expected),
        SignMethod::HmacSha256 => check::<Hmac<sha2::Sha256>>(secret, content, &expected),
        SignMethod::HmacMd5 => check::<Hmac<md5::Md5>>(secret, content, &expected),
    }
}

/// A whole signed login: the parsed client id and user name, checked with the secret
/// `secret_of(productKey, deviceName)` returns. `Ok((productKey, deviceName))` when it matches.
pub fn verify_login<'u, 's>(
    client_id: &str,
    username: &'u str,
    password: &[u8],
    secret_of: impl FnOnce(&str, &str) -> Option<&'s str>,
) -> Result<(&'u str, &'u str), SignError> {
    let cid = parse_client_id(client_id)?;
    let (dn, pk) = parse_username(username)?;
    // An unknown device is refused with the same answer as a wrong secret, after the same
    // work, so a guesser cannot list the devices.
    let secret = secret_of(pk, dn);
    let text = content(cid.client_id, dn, pk, cid.timestamp);
    let result = verify(cid.sign_method, secret.unwrap_or(""), &text, password);
    match (secret, result) {
        (Some(_), Ok(())) => Ok((pk, dn)),
        (_, Err(SignError::PasswordNotHex)) => Err(SignError::PasswordNotHex),
        _ => Err(SignError::Mismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from Alibaba's own device SDK, aliyun-iot-linkkit 1.2.13, with
    /// `tests/sdk/linkkit_sign_vector.py`:
    /// `time.time` pinned to 1764590000, then `LinkKit(host_name="cn-shanghai",
    /// product_key="a1TestPk01", device_name="pump-7",
    /// device_secret="Zx9sEcReT0123456789abcdefABCDEF0")._LinkKit__config_mqtt_client_internal()`
    /// and the paho client's `_client_id`, `_username`, `_password` read back.
    const SDK_CLIENT_ID: &str = "a1TestPk01&pump-7|securemode=2,signmethod=hmacsha1,ext=1,_ss=1,lan=Python,_v=1.2.13,timestamp=1764590000|";
    const SDK_USERNAME: &str = "pump-7&a1TestPk01";
    const SDK_PASSWORD: &str = "d0b20aa7a71066bd21bbba4acd100a06bc4f12e8";
    const SECRET: &str = "Zx9sEcReT0123456789abcdefABCDEF0";

    fn lookup(pk: &str, dn: &str) -> Option<&'static str> {
        (pk == "a1TestPk01" && dn == "pump-7").then_some(SECRET)
    }

    #[test]
    fn the_linkkit_sdks_own_login_verifies() {
        let cid = parse_client_id(SDK_CLIENT_ID).unwrap();
        assert_eq!(cid.client_id, "a1TestPk01&pump-7");
        assert_eq!(cid.sign_method, SignMethod::HmacSha1);
        assert_eq!(cid.secure_mode, Some(2));
        assert_eq!(cid.timestamp, Some("1764590000"));
        assert_eq!(
            verify_login(SDK_CLIENT_ID, SDK_USERNAME, SDK_PASSWORD.as_bytes(), lookup),
            Ok(("a1TestPk01", "pump-7"))
        );
        // Upper-case hex is the same signature.
        let upper = SDK_PASSWORD.to_ascii_uppercase();
        assert!(verify_login(SDK_CLIENT_ID, SDK_USERNAME, upper.as_bytes(), lookup).is_ok());
        let text = content(
            "a1TestPk01&pump-7",
            "pump-7",
            "a1TestPk01",
            Some("1764590000"),
        );
        assert_eq!(sign(SignMethod::HmacSha1, SECRET, &text), SDK_PASSWORD);
    }

    #[test]
    fn sha256_and_md5_and_no_timestamp() {
        // Vectors from Python's hmac module (hashlib.sha256 / hashlib.md5) on the same content.
        let with_ts = "dev-1|securemode=3,signmethod=hmacsha256,timestamp=1764590000123|";
        let sha256 = "6938951b6c05cf1436d81e8d7c7b3ffa86a2a43c76b1017a3f4da37bcb56a9fe";
        assert!(verify_login(with_ts, SDK_USERNAME, sha256.as_bytes(), lookup).is_ok());
        let no_ts = "dev-1|securemode=3,signmethod=hmacmd5|";
        let md5 = "2c8f60420d301e0de6ea14ee00899d80";
        assert!(verify_login(no_ts, SDK_USERNAME, md5.as_bytes(), lookup).is_ok());
        // The method is the client id's: the MD5 password under sha1 fails.
        let as_sha1 = "dev-1|securemode=3,signmethod=hmacsha1|";
        assert_eq!(
            verify_login(as_sha1, SDK_USERNAME, md5.as_bytes(), lookup),
            Err(SignError::Mismatch)
        );
        // Timestamp is signed: a changed one fails.
        let other_ts = SDK_CLIENT_ID.replace("1764590000", "1764590001");
        assert_eq!(
            verify_login(&other_ts, SDK_USERNAME, SDK_PASSWORD.as_bytes(), lookup),
            Err(SignError::Mismatch)
        );
    }

    #[test]
    fn wrong_secret_device_or_password_is_a_mismatch() {
        let wrong_secret = |_: &str, _: &str| Some("another-secret");
        assert_eq!(
            verify_login(
                SDK_CLIENT_ID,
                SDK_USERNAME,
                SDK_PASSWORD.as_bytes(),
                wrong_secret
            ),
            Err(SignError::Mismatch)
        );
        // An unknown device answers the same as a wrong secret.
        assert_eq!(
            verify_login(
                SDK_CLIENT_ID,
                "pump-8&a1TestPk01",
                SDK_PASSWORD.as_bytes(),
                lookup
            ),
            Err(SignError::Mismatch)
        );
        // Another device's name in the user name with this device's signature.
        let both = |_: &str, _: &str| Some(SECRET);
        assert_eq!(
            verify_login(
                SDK_CLIENT_ID,
                "pump-8&a1TestPk01",
                SDK_PASSWORD.as_bytes(),
                both
            ),
            Err(SignError::Mismatch)
        );
        let mut flipped = SDK_PASSWORD.to_owned();
        flipped.replace_range(0..1, "e");
        assert_eq!(
            verify_login(SDK_CLIENT_ID, SDK_USERNAME, flipped.as_bytes(), lookup),
            Err(SignError::Mismatch)
        );
        // Truncated and empty passwords.
        assert_eq!(
            verify_login(
                SDK_CLIENT_ID,
                SDK_USERNAME,
                &SDK_PASSWORD.as_bytes()[..38],
                lookup
            ),
            Err(SignError::Mismatch)
        );
        assert_eq!(
            verify_login(SDK_CLIENT_ID, SDK_USERNAME, b"", lookup),
            Err(SignError::Mismatch)
        );
        assert_eq!(
            verify_login(SDK_CLIENT_ID, SDK_USERNAME, b"xyz", lookup),
            Err(SignError::PasswordNotHex)
        );
        assert_eq!(
            verify_login(SDK_CLIENT_ID, SDK_USERNAME, &[0xff, 0xfe], lookup),
            Err(SignError::PasswordNotHex)
        );
    }

    #[test]
    fn malformed_client_ids_and_user_names_are_refused() {
        for (cid, want) in [
            ("plain-client", SignError::NotSigned),
            ("cid|securemode=3,signmethod=hmacsha1", SignError::NotSigned),
            (
                "cid|securemode=3|x|",
                SignError::MalformedParams("securemode=3|x".into()),
            ),
            (
                "cid|securemode=3,junk|",
                SignError::MalformedParams("securemode=3,junk".into()),
            ),
            ("cid|securemode=3|", SignError::NoSignMethod),
            (
                "cid|signmethod=hmacsha512|",
                SignError::UnknownSignMethod("hmacsha512".into()),
            ),
            (
                "cid|signmethod=hmacsha1,securemode=tls|",
                SignError::BadSecureMode("tls".into()),
            ),
        ] {
            assert_eq!(parse_client_id(cid), Err(want), "{cid}");
        }
        assert!(
            parse_client_id(&format!(
                "{}|signmethod=hmacsha1|",
                "x".repeat(MAX_FIELD_BYTES)
            ))
            .is_err()
        );
        // Parameter order and the method's case do not matter; an empty client id is allowed.
        let cid = parse_client_id("|timestamp=1,signmethod=HmacSHA256,securemode=-2|").unwrap();
        assert_eq!(
            (cid.client_id, cid.sign_method, cid.secure_mode),
            ("", SignMethod::HmacSha256, Some(-2))
        );
        for user in ["", "pump-7", "&pk", "dn&", "dn-pk"] {
            assert_eq!(parse_username(user), Err(SignError::BadUserName), "{user}");
        }
        assert_eq!(parse_username("a&b&pk"), Ok(("a&b", "pk")));
    }
}
