//! Fuzzes the DJI Cloud API decoder: the first input byte picks one of the uplink topics of a
//! dock (status, state, osd, services_reply, events) or a malformed one, the rest is the payload.
//! Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

const TOPICS: &[&str] = &[
    "sys/product/DOCK1/status",
    "thing/product/DOCK1/state",
    "thing/product/DOCK1/osd",
    "thing/product/DOCK1/services_reply",
    "thing/product/DOCK1/events",
    "thing/product/DRONE1/osd",
    "thing/product/DOCK1/services",
    "sys/product//status",
    "thing/product/DOCK1/events/x",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let topic = TOPICS[usize::from(pick) % TOPICS.len()];
    let _ = ota_console::protocol::decode(topic, payload);
});
