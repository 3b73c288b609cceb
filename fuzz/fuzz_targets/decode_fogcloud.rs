//! Fuzzes the MXCHIP FogCloud decoder: the first input byte picks a topic (the uplink topic of a
//! plain device or a gateway, and malformed variants), the rest is the payload (a JSON envelope
//! with `method` and `params`). Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

const TOPICS: &[&str] = &[
    "fogcloud/fpk/dev-1/thing/up/ota",
    "fogcloud/gpk/gw-1/thing/up/ota",
    "fogcloud/fpk/dev-1/thing/down/ota",
    "fogcloud//dev-1/thing/up/ota",
    "fogcloud/fpk/+/thing/up/ota",
    "fogcloud/fpk/dev-1/thing/up/ota/x",
    "fogcloud/..",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let topic = TOPICS[usize::from(pick) % TOPICS.len()];
    let _ = ota_console::protocol::decode(topic, payload);
});
