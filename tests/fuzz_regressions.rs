//! Replays every input in `tests/fuzz_regressions/` through `protocol::decode`: crash reproducers
//! found by the fuzz targets in `fuzz/` (and a few hand-made hostile inputs) stay covered by the
//! normal, stable test run, where no fuzzer is available. `corpus/<target>/` holds each target's
//! corpus as the fuzzer left it, minimised (`cargo fuzz cmin`): the inputs that reach every
//! branch it found, replayed here the way their target reads them.
//!
//! File formats: a reproducer at the top level and `corpus/decode_any/` are read as the
//! `decode_any` target reads them (first byte the topic's length `n`, the next `n` bytes the
//! topic as lossy UTF-8, the rest the payload); `corpus/decode_dialect/` as `decode_dialect`
//! does ([`pick`]: a dialect of the registry, one of its sample topics, the payload). Each file's
//! bytes are also decoded as the payload of every sample topic of every registered dialect, so
//! a reproducer keeps testing all dialects, a new one included.
//!
//! This test never allows a panic; what the decoder answers (events or an error) is its business.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::path::{Path, PathBuf};

use ota_console::protocol::{self, registry};

/// Every sample topic of every registered dialect.
fn sample_topics() -> Vec<&'static str> {
    let topics: Vec<&str> = registry::all()
        .iter()
        .flat_map(|d| d.samples().uplink.iter().map(|s| s.topic))
        .collect();
    assert!(!topics.is_empty());
    topics
}

/// The topic and payload the `decode_dialect` fuzz target makes of `data`
/// (fuzz/fuzz_targets/decode_dialect.rs: keep the two alike).
fn pick(data: &[u8]) -> Option<(String, &[u8])> {
    let [dialect, topic, payload @ ..] = data else {
        return None;
    };
    let dialects = registry::all();
    let d = dialects.get(usize::from(*dialect) % dialects.len().max(1))?;
    let samples = d.samples().uplink;
    let n = samples.len().max(1);
    let sample = samples.get(usize::from(*topic) % n)?;
    let topic = match usize::from(*topic) / n % 4 {
        2 => format!("{}/x", sample.topic),
        3 => sample
            .topic
            .rsplit_once('/')
            .map_or(String::new(), |(head, _)| head.to_owned()),
        _ => sample.topic.to_owned(),
    };
    Some((topic, payload))
}

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
    let dialect_corpus = dir.join("corpus/decode_dialect");
    let topics = sample_topics();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let read_as_its_target = if file.starts_with(&dialect_corpus) {
            pick(&data)
        } else {
            split(&data)
        };
        if let Some((topic, payload)) = read_as_its_target {
            let _ = protocol::decode(&topic, payload);
        }
        // The dialect target spends the first two bytes on picking a topic.
        let after_pick = data.get(2..).unwrap_or_default();
        for topic in &topics {
            let _ = protocol::decode(topic, &data);
            let _ = protocol::decode(topic, after_pick);
        }
    }
}

/// The fuzz targets, as fuzz/Cargo.toml lists them (`[[bin]]` names).
fn fuzz_targets() -> Vec<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut targets = Vec::new();
    let mut in_bin = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(name) = line.strip_prefix("name = ") {
            targets.push(name.trim_matches('"').to_owned());
        }
    }
    targets
}

#[test]
fn every_fuzz_target_keeps_a_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions/corpus");
    let targets = fuzz_targets();
    assert!(targets.len() >= 2, "{targets:?}");
    for target in &targets {
        let inputs = files_under(&dir.join(target)).len();
        assert!(inputs >= 100, "{target}: only {inputs} corpus inputs kept");
    }
    // No corpus of a target that is gone.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(targets.contains(&name), "corpus/{name} has no fuzz target");
    }
}

/// Every file under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
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
