//! Replays every input in `tests/fuzz_regressions/` through `protocol::decode`: crash reproducers
//! found by the fuzz targets in `fuzz/` (and a few hand-made hostile inputs) stay covered by the
//! normal, stable test run, where no fuzzer is available. `corpus/<target>/` holds each target's
//! corpus as the fuzzer left it, minimised (`cargo fuzz cmin`): the inputs that reach every
//! branch it found, replayed here the way their target reads them.
//!
//! File format (that of the `decode_any` fuzz target): the first byte is the topic's length `n`,
//! the next `n` bytes the topic (lossy UTF-8), the rest the payload. A reproducer from another
//! target (`decode_aliyun`, `decode_fogcloud`, `decode_dji`: first byte picks a topic template)
//! is converted to this format when it is copied here. Each file's bytes are also decoded as the
//! payload of every topic the console subscribes to, so a reproducer keeps testing all dialects.
//!
//! This test never allows a panic; what the decoder answers (events or an error) is its business.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::path::PathBuf;

use ota_console::protocol;

const SAMPLE_TOPICS: &[&str] = &[
    "/ota/device/inform/pk/dn",
    "/ota/device/progress/pk/dn",
    "/sys/pk/dn/thing/ota/firmware/get",
    "fogcloud/pk/dn/thing/up/ota",
    "sys/product/DOCK/status",
    "thing/product/DOCK/state",
    "thing/product/DOCK/osd",
    "thing/product/DOCK/services_reply",
    "thing/product/DOCK/events",
];

fn split(data: &[u8]) -> Option<(String, &[u8])> {
    let (&len, rest) = data.split_first()?;
    let (topic, payload) = rest.split_at(usize::from(len).min(rest.len()));
    Some((String::from_utf8_lossy(topic).into_owned(), payload))
}

#[test]
fn every_regression_input_decodes_without_panicking() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let files = files_under(&dir);
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    for file in &files {
        let data = std::fs::read(file).unwrap();
        if let Some((topic, payload)) = split(&data) {
            let _ = protocol::decode(&topic, payload);
        }
        // The dialect targets spend the first byte on picking a topic.
        let after_pick = data.get(1..).unwrap_or_default();
        for topic in SAMPLE_TOPICS {
            let _ = protocol::decode(topic, &data);
            let _ = protocol::decode(topic, after_pick);
        }
    }
}

#[test]
fn every_fuzz_target_keeps_a_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions/corpus");
    for target in [
        "decode_aliyun",
        "decode_fogcloud",
        "decode_dji",
        "decode_any",
    ] {
        let inputs = files_under(&dir.join(target)).len();
        assert!(inputs >= 100, "{target}: only {inputs} corpus inputs kept");
    }
}

/// Every file under `dir`, recursively, sorted.
fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
