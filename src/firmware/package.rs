//! `FirmwarePackage`: the identity of one firmware file (size and the three digests the device
//! dialects ask for). Plain data; computing it is `digest`'s job, keeping it is `store`'s.

use serde::{Deserialize, Serialize};

/// Size and digests of one firmware file, all digests in lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwarePackage {
    /// The file's name as imported (no directory).
    pub file_name: String,
    /// Bytes.
    pub size: u64,
    /// MD5, 32 hex digits (Alibaba `md5`/`sign` with `signMethod` Md5, FogCloud `md5`).
    pub md5: String,
    /// SHA-256, 64 hex digits (Alibaba `SHA256` signing, DJI, the store's file name).
    pub sha256: String,
    /// FogCloud additive checksum, 8 hex digits (see [`super::checksum`]).
    pub checksum: String,
}

/// Whether `s` is a SHA-256 digest in lowercase hex: the only names the store accepts.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_names() {
        let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(is_sha256_hex(good));
        assert!(!is_sha256_hex(&good.to_uppercase()));
        assert!(!is_sha256_hex(&good[1..]));
        assert!(!is_sha256_hex("../../../../etc/passwd"));
        assert!(!is_sha256_hex(&format!("{}/", &good[1..])));
        assert!(!is_sha256_hex(""));
    }

    #[test]
    fn json_field_names() {
        let p = FirmwarePackage {
            file_name: "fw.bin".into(),
            size: 3,
            md5: "m".into(),
            sha256: "s".into(),
            checksum: "06000000".into(),
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["size"], 3);
        assert_eq!(v["checksum"], "06000000");
        let back: FirmwarePackage = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
    }
}
