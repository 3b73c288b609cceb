//! Fuzzes the Alibaba Cloud IoT decoder: the first input byte picks one of the dialect's uplink
//! topics (some with hostile device names), the rest is the payload. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

const TOPICS: &[&str] = &[
    "/ota/device/inform/a1pk/dev-1",
    "/ota/device/progress/a1pk/dev-1",
    "/sys/a1pk/dev-1/thing/ota/firmware/get",
    "/ota/device/inform/a1pk/",
    "/ota/device/progress//dev",
    "/ota/device/inform/a1pk/dev/extra",
    "/sys/a1pk/dev-1/thing/ota/firmware/get/x",
    "/ota/device/inform/+/#",
    "/ota/device/progress/a1pk/..",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let topic = TOPICS[usize::from(pick) % TOPICS.len()];
    let _ = ota_console::protocol::decode(topic, payload);
});
