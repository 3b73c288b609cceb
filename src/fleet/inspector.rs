//! The message inspector's memory: a bounded ring of raw MQTT messages, in and out, each tagged
//! with the device it concerns and, for refused messages, why.
//!
//! Bounded in count and in bytes per entry, so a chatty or hostile device cannot grow it.
//! Secrets that devices send (DJI `device_secret`) are masked before they are stored, so they
//! never reach the UI or an export.

use std::collections::VecDeque;

use serde::Serialize;

use crate::device_id::DeviceId;

/// Payload bytes kept per message; the rest is cut (the inspector is for reading, not replay).
pub const MAX_KEPT_PAYLOAD_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

#[derive(Debug, Clone, Serialize)]
pub struct RawMessage {
    pub seq: u64,
    pub at_ms: i64,
    pub direction: Direction,
    pub topic: String,
    /// The payload as text (invalid UTF-8 replaced), cut at [`MAX_KEPT_PAYLOAD_BYTES`].
    pub payload: String,
    /// The full size of the payload on the wire.
    pub payload_len: usize,
    pub device: Option<DeviceId>,
    /// Why the console refused the message, when it did.
    pub error: Option<String>,
}

/// A ring of the most recent messages.
#[derive(Debug)]
pub struct Inspector {
    capacity: usize,
    next_seq: u64,
    messages: VecDeque<RawMessage>,
}

impl Inspector {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            next_seq: 0,
            messages: VecDeque::new(),
        }
    }

    /// Records one message and returns its sequence number.
    pub fn record(
        &mut self,
        at_ms: i64,
        direction: Direction,
        topic: &str,
        payload: &[u8],
        device: Option<DeviceId>,
        error: Option<String>,
    ) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.messages.len() == self.capacity {
            self.messages.pop_front();
        }
        self.messages.push_back(RawMessage {
            seq,
            at_ms,
            direction,
            topic: crate::protocol::truncate_for_log(topic),
            payload: kept_text(payload),
            payload_len: payload.len(),
            device,
            error,
        });
        seq
    }

    /// Messages about `device` (any module of it), oldest first.
    pub fn for_device<'a>(&'a self, device: &'a DeviceId) -> impl Iterator<Item = &'a RawMessage> {
        let key = device.device();
        self.messages
            .iter()
            .filter(move |m| m.device.as_ref().is_some_and(|d| d.device() == key))
    }

    /// All kept messages, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &RawMessage> {
        self.messages.iter()
    }

    /// Messages with a sequence number of at least `seq` (for incremental readers).
    pub fn since(&self, seq: u64) -> impl Iterator<Item = &RawMessage> {
        self.messages.iter().filter(move |m| m.seq >= seq)
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

fn kept_text(payload: &[u8]) -> String {
    let cut = &payload[..payload.len().min(MAX_KEPT_PAYLOAD_BYTES)];
    let text = String::from_utf8_lossy(cut);
    mask_secrets(&text)
}

/// Replaces the values of secret fields (`device_secret`, `password`) in JSON text. Works on
/// text rather than parsed JSON so it also masks payloads that failed to parse.
fn mask_secrets(text: &str) -> String {
    let mut out = text.to_owned();
    for key in ["\"device_secret\"", "\"password\"", "\"secret\""] {
        let mut search_from = 0;
        while let Some(found) = out[search_from..].find(key) {
            let after_key = search_from + found + key.len();
            let Some(value_start) = out[after_key..]
                .find(|c: char| !c.is_whitespace() && c != ':')
                .map(|i| after_key + i)
            else {
                break;
            };
            if !out[after_key..value_start].contains(':') || !out[value_start..].starts_with('"') {
                search_from = after_key;
                continue;
            }
            let value_end = closing_quote(&out, value_start + 1).unwrap_or(out.len());
            out.replace_range(value_start..value_end, "\"***\"");
            search_from = value_start + 5;
        }
    }
    out
}

/// Index just past the quote that closes the string starting at `from`, honouring escapes.
fn closing_quote(text: &str, from: usize) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text[from..].char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(from + i + 1),
            _ => escaped = false,
        }
    }
    None
}

/// Pretty-prints a payload when it is JSON, for the inspector view.
pub fn pretty(payload: &str) -> String {
    serde_json::from_str::<serde_json::Value>(payload)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| payload.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_and_filterable() {
        let mut ins = Inspector::new(3);
        let a = DeviceId::aliyun("pk", "a").unwrap();
        let b = DeviceId::aliyun("pk", "b").unwrap();
        for i in 0..5 {
            let dev = if i % 2 == 0 { a.clone() } else { b.clone() };
            ins.record(i, Direction::In, "t", b"{}", Some(dev), None);
        }
        assert_eq!(ins.len(), 3);
        assert_eq!(ins.all().next().unwrap().seq, 2);
        let a_mcu = a.clone().with_module(Some("MCU")).unwrap();
        assert_eq!(ins.for_device(&a_mcu).count(), 2);
        assert_eq!(ins.since(4).count(), 1);
    }

    #[test]
    fn payloads_are_cut_and_lossy() {
        let mut ins = Inspector::new(2);
        let big = vec![b'x'; MAX_KEPT_PAYLOAD_BYTES * 3];
        ins.record(0, Direction::In, "t", &big, None, None);
        ins.record(0, Direction::In, "t", &[0xff, 0xfe, b'a'], None, None);
        let kept: Vec<_> = ins.all().collect();
        assert_eq!(kept[0].payload.len(), MAX_KEPT_PAYLOAD_BYTES);
        assert_eq!(kept[0].payload_len, MAX_KEPT_PAYLOAD_BYTES * 3);
        assert!(kept[1].payload.ends_with('a'));
    }

    #[test]
    fn secrets_are_masked() {
        let text = r#"{"data":{"device_secret" : "s3cr\"et","nonce":"n","sub_devices":[{"device_secret":"x2"}]},"password":"pw"}"#;
        let masked = mask_secrets(text);
        assert!(!masked.contains("s3cr"), "{masked}");
        assert!(!masked.contains("x2"), "{masked}");
        assert!(!masked.contains("pw\""), "{masked}");
        assert!(masked.contains(r#""nonce":"n""#));
        assert_eq!(masked.matches("***").count(), 3);
        // Not a key/value pair: left alone, no panic.
        assert_eq!(mask_secrets(r#"["device_secret"]"#), r#"["device_secret"]"#);
        assert_eq!(
            mask_secrets(r#"{"device_secret":"unterminated"#),
            r#"{"device_secret":"***""#
        );
    }

    #[test]
    fn pretty_prints_json_and_passes_text() {
        assert!(pretty(r#"{"a":1}"#).contains("\n"));
        assert_eq!(pretty("not json"), "not json");
    }
}
