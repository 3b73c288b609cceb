//! Fuzzes `protocol::decode` with a raw topic and payload: the first input byte is the topic's
//! length (at most 255 bytes, cut to what is there), the topic is those bytes read as lossy UTF-8
//! (MQTT topics are UTF-8), the rest is the payload. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(len).min(rest.len());
    let (topic, payload) = rest.split_at(split);
    let topic = String::from_utf8_lossy(topic);
    let _ = ota_console::protocol::decode(&topic, payload);
});
