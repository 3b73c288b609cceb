//! The check on an operator-given download URL (a campaign offered from an existing server
//! instead of the embedded one). Devices receive this text verbatim in the upgrade notice, so
//! it must be an absolute http(s) URL with nothing a device parser could trip on. Only checks
//! the text; never fetches the URL.

use crate::i18n::tr;

/// Longest download URL accepted (bytes). Device SDKs keep the URL in fixed buffers; 2 KiB is
/// well above any real link and far below MQTT packet limits.
pub const MAX_DOWNLOAD_URL_BYTES: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadUrlError {
    #[error("{}", tr!("error.download_url.empty"))]
    Empty,
    #[error("{}", tr!("error.download_url.scheme", url = format!("{_0:?}")))]
    Scheme(String),
    #[error("{}", tr!("error.download_url.no_host"))]
    NoHost,
    #[error("{}", tr!("error.download_url.too_long", len = len, max = MAX_DOWNLOAD_URL_BYTES))]
    TooLong { len: usize },
    #[error("{}", tr!("error.download_url.bad_character", at = at))]
    BadCharacter { at: usize },
}

/// Accepts `url` as a download link for devices, or says what is wrong with it.
pub fn validate_download_url(url: &str) -> Result<(), DownloadUrlError> {
    if url.is_empty() {
        return Err(DownloadUrlError::Empty);
    }
    if url.len() > MAX_DOWNLOAD_URL_BYTES {
        return Err(DownloadUrlError::TooLong { len: url.len() });
    }
    if let Some((at, _)) = url
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || c.is_control())
    {
        return Err(DownloadUrlError::BadCharacter { at });
    }
    let rest = ["http://", "https://"]
        .iter()
        .find_map(|scheme| strip_prefix_ignore_case(url, scheme))
        .ok_or_else(|| DownloadUrlError::Scheme(url.chars().take(16).collect()))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.starts_with(':') {
        return Err(DownloadUrlError::NoHost);
    }
    Ok(())
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_https_urls_pass() {
        for ok in [
            "http://fw.example.test/a.bin",
            "https://cdn.example.test:8443/fw/x%20y.bin?sig=abc#frag",
            "HTTPS://EXAMPLE.TEST/x",
            "http://[::1]:8080/fw.bin",
        ] {
            assert_eq!(validate_download_url(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn other_schemes_and_missing_hosts_are_refused() {
        assert_eq!(validate_download_url(""), Err(DownloadUrlError::Empty));
        for bad in [
            "ftp://x/y",
            "file:///etc/passwd",
            "example.test/fw.bin",
            "http:/x",
        ] {
            assert!(
                matches!(validate_download_url(bad), Err(DownloadUrlError::Scheme(_))),
                "{bad}"
            );
        }
        for bad in ["http://", "https:///path", "http://:80/x", "http://?q"] {
            assert_eq!(
                validate_download_url(bad),
                Err(DownloadUrlError::NoHost),
                "{bad}"
            );
        }
    }

    #[test]
    fn whitespace_control_characters_and_long_urls_are_refused() {
        assert_eq!(
            validate_download_url("http://x/a b.bin"),
            Err(DownloadUrlError::BadCharacter { at: 10 })
        );
        assert_eq!(
            validate_download_url(" http://x/a.bin"),
            Err(DownloadUrlError::BadCharacter { at: 0 })
        );
        for bad in [
            "http://x/a\n",
            "http://x/\u{0}",
            "http://x/\t",
            "http://x/\u{7f}",
        ] {
            assert!(
                matches!(
                    validate_download_url(bad),
                    Err(DownloadUrlError::BadCharacter { .. })
                ),
                "{bad:?}"
            );
        }
        let limit = format!("http://x/{}", "a".repeat(MAX_DOWNLOAD_URL_BYTES - 9));
        assert_eq!(limit.len(), MAX_DOWNLOAD_URL_BYTES);
        assert_eq!(validate_download_url(&limit), Ok(()));
        let over = format!("{limit}a");
        assert_eq!(
            validate_download_url(&over),
            Err(DownloadUrlError::TooLong {
                len: MAX_DOWNLOAD_URL_BYTES + 1
            })
        );
        let err = validate_download_url(&over).unwrap_err().to_string();
        assert!(err.contains("2049 bytes"), "{err}");
    }
}
