//! Fuzzes every registered dialect's decoder through `protocol::decode`: the first input byte
//! picks a dialect of `protocol::registry::all()`, the second one of its sample topics
//! (`Dialect::samples`, the documents' own) and whether that topic is used as is or damaged (one
//! level more, or its last level missing), the rest is the payload. A dialect that registers is
//! fuzzed without a change here. Must never panic.
//!
//! tests/fuzz_regressions.rs reads the corpus the same way (`pick` there): keep the two alike.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ota_console::protocol::{self, registry};

fuzz_target!(|data: &[u8]| {
    let [dialect, topic, payload @ ..] = data else {
        return;
    };
    let dialects = registry::all();
    let Some(d) = dialects.get(usize::from(*dialect) % dialects.len().max(1)) else {
        return;
    };
    let samples = d.samples().uplink;
    let n = samples.len().max(1);
    let Some(sample) = samples.get(usize::from(*topic) % n) else {
        return;
    };
    let topic = match usize::from(*topic) / n % 4 {
        2 => format!("{}/x", sample.topic),
        3 => sample
            .topic
            .rsplit_once('/')
            .map_or(String::new(), |(head, _)| head.to_owned()),
        _ => sample.topic.to_owned(),
    };
    let _ = protocol::decode(&topic, payload);
});
