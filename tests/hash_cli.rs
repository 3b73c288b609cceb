//! Black-box test of `ota-console hash FILE [--json]`: runs the real binary and checks its
//! digests against the system's `md5sum`/`sha256sum` (when installed) and known vectors.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::path::Path;
use std::process::{Command, Output};

fn ota_console(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ota-console"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("run ota-console")
}

fn hash_json(path: &Path) -> serde_json::Value {
    let out = ota_console(&["hash".as_ref(), path.as_os_str(), "--json".as_ref()]);
    assert!(
        out.status.success(),
        "hash failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

/// The first word of `tool FILE`, or None when the tool is not installed.
fn system_digest(tool: &str, path: &Path) -> Option<String> {
    let out = Command::new(tool).arg(path).output().ok()?;
    assert!(out.status.success(), "{tool} failed");
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace().next().map(str::to_owned)
}

#[test]
fn json_matches_system_tools() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fw-2.0.bin");
    // Several MiB, not a multiple of any power-of-two chunk size.
    let data: Vec<u8> = (0..5_000_003u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(&path, &data).unwrap();

    let v = hash_json(&path);
    assert_eq!(v["size"].as_u64(), Some(data.len() as u64));
    assert_eq!(v["file_name"], "fw-2.0.bin");
    let sum = data
        .iter()
        .fold(0u32, |acc, &b| acc.wrapping_add(u32::from(b)));
    assert_eq!(
        v["checksum"].as_str(),
        Some(hex::encode(sum.to_le_bytes()).as_str())
    );

    let md5 = v["md5"].as_str().unwrap();
    let sha256 = v["sha256"].as_str().unwrap();
    assert_eq!((md5.len(), sha256.len()), (32, 64));
    match system_digest("md5sum", &path) {
        Some(expected) => assert_eq!(md5, expected),
        None => eprintln!("md5sum not installed: MD5 checked only by the vectors test"),
    }
    match system_digest("sha256sum", &path) {
        Some(expected) => assert_eq!(sha256, expected),
        None => eprintln!("sha256sum not installed: SHA-256 checked only by the vectors test"),
    }
}

#[test]
fn json_for_known_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abc.bin");
    std::fs::write(&path, b"abc").unwrap();
    let v = hash_json(&path);
    assert_eq!(
        v,
        serde_json::json!({
            "file_name": "abc.bin",
            "size": 3,
            "md5": "900150983cd24fb0d6963f7d28e17f72",
            "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "checksum": "26010000",
        })
    );
}

#[test]
fn text_output_lists_every_digest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fog.bin");
    std::fs::write(&path, [1u8, 2, 3]).unwrap();
    let out = ota_console(&["hash".as_ref(), path.as_os_str()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("06000000"), "{text}");
    assert!(text.contains("5289df737df57326fcdd22597afb1fac"), "{text}");
    assert!(
        text.contains("039058c6f2c0cb492c533b0a4d14ef77cc0f78abccced5287d84a1a2011cfb81"),
        "{text}"
    );
    // stderr is not a terminal here, so no progress bar pollutes it.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn missing_file_fails_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.bin");
    let out = ota_console(&["hash".as_ref(), path.as_os_str(), "--json".as_ref()]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.bin"), "{err}");
}
