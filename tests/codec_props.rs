//! Property test: `protocol::decode` never panics, whatever the topic and payload, and what it
//! returns keeps the codecs' promises (percent within 0..=100, events of the topic's dialect,
//! every ack encodable into its reply).
//!
//! Inputs mix pure noise (random topic strings, random bytes, random JSON) with structured
//! messages of each dialect whose segments and field values are random, so the decoders' deep
//! paths are reached and not only their first `match`.
//!
//! The case count defaults to 2000 so CI stays fast; raise it for a long run:
//! `PROPTEST_CASES=300000 cargo test --release --test codec_props -- --nocapture`.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ota_console::protocol::{self, DecodeError, Event, Notice};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Number, Value};

const DEFAULT_CASES: u32 = 2000;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

// ---------------------------------------------------------------- topics

fn segment() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[A-Za-z0-9_-]{1,16}",
        1 => Just(String::new()),
        1 => prop_oneof![Just("+"), Just("#"), Just("a/b"), Just("nul\0"), Just("default")]
            .prop_map(String::from),
        1 => "\\PC{0,12}",
        1 => Just("x".repeat(129)),
    ]
    .boxed()
}

fn one_of(words: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(words).prop_map(String::from)
}

fn word_or_segment(words: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![4 => one_of(words), 1 => segment()].boxed()
}

fn topic() -> BoxedStrategy<String> {
    let base = prop_oneof![
        1 => "\\PC{0,80}",
        1 => "[/+#a-z]{0,30}",
        2 => (word_or_segment(&["inform", "progress", "upgrade"]), segment(), segment())
            .prop_map(|(k, pk, dn)| format!("/ota/device/{k}/{pk}/{dn}")),
        1 => (segment(), segment(), word_or_segment(&["get", "get_reply"]))
            .prop_map(|(pk, dn, g)| format!("/sys/{pk}/{dn}/thing/ota/firmware/{g}")),
        2 => (segment(), segment(), word_or_segment(&["up", "down"]))
            .prop_map(|(pk, dn, d)| format!("fogcloud/{pk}/{dn}/thing/{d}/ota")),
        1 => (segment(), word_or_segment(&["status", "status_reply"]))
            .prop_map(|(sn, k)| format!("sys/product/{sn}/{k}")),
        3 => (segment(), word_or_segment(&["state", "osd", "services_reply", "events", "events_reply"]))
            .prop_map(|(sn, k)| format!("thing/product/{sn}/{k}")),
    ];
    // Sometimes an extra or a missing trailing segment.
    (base, 0u8..10, segment())
        .prop_map(|(t, roll, extra)| match roll {
            0 => format!("{t}/{extra}"),
            1 => t
                .rsplit_once('/')
                .map(|(head, _)| head.to_owned())
                .unwrap_or(t),
            _ => t,
        })
        .boxed()
}

// ---------------------------------------------------------------- JSON values

const KEYS: &[&str] = &[
    "id",
    "version",
    "method",
    "params",
    "step",
    "desc",
    "module",
    "task_id",
    "identity",
    "product_key",
    "device_name",
    "data",
    "tid",
    "bid",
    "timestamp",
    "timestamp:",
    "need_reply",
    "result",
    "output",
    "status",
    "progress",
    "percent",
    "step_key",
    "current_step",
    "sub_devices",
    "sn",
    "type",
    "sub_type",
    "index",
    "thing_version",
    "firmware_version",
    "compatible_status",
];

const WORDS: &[&str] = &[
    "-1",
    "-2",
    "-3",
    "-4",
    "-5",
    "0",
    "1",
    "2",
    "100",
    "101",
    "1e300",
    "-1e300",
    "NaN",
    "inf",
    "99999999999999999999",
    "default",
    "mcu",
    "ok",
    "failed",
    "rejected",
    "timeout",
    "canceled",
    "sent",
    "in_progress",
    "paused",
    "download_firmware",
    "upgrade_firmware",
    "update_topo",
    "ota_progress",
    "ota_create",
    "version.post",
    "upgrade.post",
    "firmware.get",
    "sub.version.post",
    "sub.upgrade.post",
    "firmware.post",
    "hms",
    "a/b",
    "+",
    "#",
    "",
];

fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => (-5i64..=105).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        1 => prop_oneof![Just(1e300), Just(-1e300), Just(0.5), Just(100.0), Just(-1.0)]
            .prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
    ]
    .boxed()
}

fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        3 => number(),
        3 => one_of(WORDS).prop_map(Value::String),
        1 => "\\PC{0,20}".prop_map(Value::String),
        1 => (0usize..300).prop_map(|n| Value::String("é".repeat(n))),
    ]
    .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![5 => one_of(KEYS), 1 => "\\PC{0,8}"].boxed()
}

fn any_json() -> BoxedStrategy<Value> {
    scalar()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// Builds an object from `(key, maybe value)` pairs, leaving absent fields out.
fn object(fields: Vec<(&'static str, Option<Value>)>) -> Value {
    let map: Map<String, Value> = fields
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect();
    Value::Object(map)
}

/// A field that is usually a plausible value, sometimes absent, sometimes anything at all.
fn mostly(good: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        12 => good.prop_map(Some),
        1 => Just(None),
        1 => scalar().prop_map(Some),
        1 => any_json().prop_map(Some),
    ]
    .boxed()
}

fn text(pattern: &'static str) -> BoxedStrategy<Value> {
    pattern.prop_map(Value::String).boxed()
}

fn word(words: &'static [&'static str]) -> BoxedStrategy<Value> {
    one_of(words).prop_map(Value::String).boxed()
}

/// A topic segment that is usually valid.
fn good_segment() -> BoxedStrategy<String> {
    prop_oneof![9 => "[A-Za-z0-9]{1,12}", 1 => segment()].boxed()
}

fn step() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => (-6i64..=110).prop_map(Value::from),
        2 => (-6i64..=110).prop_map(|i| Value::String(i.to_string())),
        1 => number(),
    ]
    .boxed()
}

fn msg_id() -> BoxedStrategy<Value> {
    prop_oneof![any::<i64>().prop_map(Value::from), text("[0-9]{1,6}")].boxed()
}

fn module() -> BoxedStrategy<Value> {
    prop_oneof![word(&["default", "MCU", "mcu"]), text("[a-z]{1,6}")].boxed()
}

fn report_params() -> BoxedStrategy<Value> {
    (
        mostly(text("[0-9.]{1,8}")),
        mostly(step()),
        mostly(module()),
        mostly(msg_id()),
        mostly(text("\\PC{0,12}")),
    )
        .prop_map(|(version, step, module, task_id, desc)| {
            object(vec![
                ("version", version),
                ("step", step),
                ("module", module),
                ("task_id", task_id),
                ("desc", desc),
            ])
        })
        .boxed()
}

fn sub_entry() -> BoxedStrategy<Value> {
    let identity = (good_segment(), good_segment())
        .prop_map(|(pk, dn)| serde_json::json!({"product_key": pk, "device_name": dn}))
        .boxed();
    (mostly(identity), report_params())
        .prop_map(|(identity, mut entry)| {
            if let (Some(id), Some(obj)) = (identity, entry.as_object_mut()) {
                obj.insert("identity".into(), id);
            }
            entry
        })
        .boxed()
}

fn aliyun_case() -> BoxedStrategy<(String, Value)> {
    let topic = (0u8..3, good_segment(), good_segment()).prop_map(|(k, pk, dn)| match k {
        0 => format!("/ota/device/inform/{pk}/{dn}"),
        1 => format!("/ota/device/progress/{pk}/{dn}"),
        _ => format!("/sys/{pk}/{dn}/thing/ota/firmware/get"),
    });
    let body = (mostly(msg_id()), mostly(report_params()))
        .prop_map(|(id, params)| object(vec![("id", id), ("params", params)]));
    (topic, body).boxed()
}

const FOG_METHODS: &[&str] = &[
    "version.post",
    "upgrade.post",
    "firmware.get",
    "sub.version.post",
    "sub.upgrade.post",
    "firmware.post",
];

fn fogcloud_case() -> BoxedStrategy<(String, Value)> {
    let topic = (good_segment(), good_segment())
        .prop_map(|(pk, dn)| format!("fogcloud/{pk}/{dn}/thing/up/ota"));
    let body = (mostly(word(FOG_METHODS)), mostly(msg_id()))
        .prop_flat_map(|(method, id)| {
            let is_sub = method
                .as_ref()
                .and_then(Value::as_str)
                .is_some_and(|m| m.starts_with("sub."));
            let params = if is_sub {
                mostly(
                    prop::collection::vec(sub_entry(), 0..4)
                        .prop_map(Value::Array)
                        .boxed(),
                )
            } else {
                mostly(report_params())
            };
            (Just(method), Just(id), params)
        })
        .prop_map(|(method, id, params)| {
            object(vec![
                ("id", id),
                ("version", Some(Value::from("1.0"))),
                ("method", method),
                ("params", params),
            ])
        });
    (topic, body).boxed()
}

const DJI_STATUSES: &[&str] = &[
    "sent",
    "in_progress",
    "ok",
    "paused",
    "rejected",
    "failed",
    "canceled",
    "timeout",
    "OK",
    "exploded",
];

fn dji_data() -> BoxedStrategy<Value> {
    let progress = (
        mostly(step()),
        mostly(word(&["download_firmware", "upgrade_firmware", "other"])),
        mostly((0i64..4).prop_map(Value::from).boxed()),
    )
        .prop_map(|(percent, step_key, current_step)| {
            object(vec![
                ("percent", percent),
                ("step_key", step_key),
                ("current_step", current_step),
            ])
        })
        .boxed();
    let output = (mostly(word(DJI_STATUSES)), mostly(progress))
        .prop_map(|(status, progress)| object(vec![("status", status), ("progress", progress)]))
        .boxed();
    let sub_device = (
        mostly(good_segment().prop_map(Value::String).boxed()),
        mostly(msg_id()),
    )
        .prop_map(|(sn, index)| {
            object(vec![
                ("sn", sn),
                ("index", index),
                ("type", Some(Value::from(67))),
            ])
        })
        .boxed();
    let result = prop_oneof![
        3 => Just(Value::from(0)),
        1 => (312000i64..312800).prop_map(Value::from),
        1 => number(),
    ]
    .boxed();
    (
        mostly(result),
        mostly(output),
        mostly(text("[0-9.]{0,10}")),
        mostly((0i64..3).prop_map(Value::from).boxed()),
        mostly(
            prop::collection::vec(sub_device, 0..3)
                .prop_map(Value::Array)
                .boxed(),
        ),
    )
        .prop_map(|(result, output, fw, compat, subs)| {
            object(vec![
                ("result", result),
                ("output", output),
                ("firmware_version", fw),
                ("compatible_status", compat),
                ("sub_devices", subs),
            ])
        })
        .boxed()
}

fn dji_case() -> BoxedStrategy<(String, Value)> {
    let topic = (0u8..5, good_segment()).prop_map(|(k, sn)| match k {
        0 => format!("sys/product/{sn}/status"),
        1 => format!("thing/product/{sn}/state"),
        2 => format!("thing/product/{sn}/osd"),
        3 => format!("thing/product/{sn}/services_reply"),
        _ => format!("thing/product/{sn}/events"),
    });
    let uuid = text("[0-9a-f-]{1,36}");
    let body = (
        mostly(uuid.clone()),
        mostly(uuid),
        mostly(word(&["update_topo", "ota_progress", "ota_create", "hms"])),
        mostly(
            prop_oneof![
                Just(Value::from(1)),
                Just(Value::from(0)),
                Just(Value::Bool(true))
            ]
            .boxed(),
        ),
        mostly(dji_data()),
        any::<bool>(),
    )
        .prop_map(|(tid, bid, method, need_reply, data, typo)| {
            let ts = Some(Value::from(1654070968655_i64));
            object(vec![
                ("tid", tid),
                ("bid", bid),
                (if typo { "timestamp:" } else { "timestamp" }, ts),
                ("method", method),
                ("need_reply", need_reply),
                ("data", data),
            ])
        });
    (topic, body).boxed()
}

fn noise_payload() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        2 => any_json().prop_map(|v| v.to_string().into_bytes()),
        // Valid JSON, then corrupted at a random place.
        1 => (any_json(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(v, at, b)| {
            let mut bytes = v.to_string().into_bytes();
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            bytes
        }),
    ]
    .boxed()
}

/// Topic and payload: mostly a plausible message of one dialect, sometimes noise, sometimes a
/// structured message on a random (often wrong) topic.
fn input() -> BoxedStrategy<(String, Vec<u8>)> {
    let structured = prop_oneof![aliyun_case(), fogcloud_case(), dji_case()].boxed();
    prop_oneof![
        6 => structured.clone().prop_map(|(t, v)| (t, v.to_string().into_bytes())),
        1 => (topic(), structured).prop_map(|(t, (_, v))| (t, v.to_string().into_bytes())),
        2 => (topic(), noise_payload()),
    ]
    .boxed()
}

// ---------------------------------------------------------------- the property

fn check_promises(topic: &str, events: &[Event]) -> Result<(), TestCaseError> {
    let dialect = protocol::dialect_of_topic(topic).map(|d| d.id());
    prop_assert!(
        dialect.is_some(),
        "decoded a topic no dialect owns: {topic:?}"
    );
    for event in events {
        prop_assert_eq!(Some(event.device().dialect()), dialect);
        match event {
            Event::Progress(p) => {
                prop_assert!(p.percent.is_none_or(|x| x <= 100), "{p:?}");
                prop_assert!(!p.percent_clamped || p.percent.is_some(), "{p:?}");
            }
            Event::Topology(t) => {
                prop_assert_eq!(t.sub_devices.len(), t.sub_device_info.len());
            }
            Event::Answer(answer) => {
                let reply = Notice::Answer {
                    answer: answer.clone(),
                    timestamp_ms: 0,
                };
                prop_assert!(protocol::encode(&reply).is_ok(), "{answer:?}");
            }
            Event::FirmwareGet(g) => {
                let reply = Notice::FirmwareGetReply {
                    request: g.clone(),
                    pending: None,
                };
                // Only where the dialect defines a "nothing pending" reply (not FogCloud).
                prop_assert_eq!(
                    protocol::encode(&reply).is_ok(),
                    protocol::registry::capabilities(g.device.dialect())
                        .pull
                        .replies_nothing_pending(),
                    "{:?}",
                    g
                );
            }
            _ => {}
        }
    }
    Ok(())
}

fn event_kind(e: &Event) -> &'static str {
    match e {
        Event::Version(_) => "Version",
        Event::Progress(_) => "Progress",
        Event::FirmwareGet(_) => "FirmwareGet",
        Event::Topology(_) => "Topology",
        Event::Reply(_) => "Reply",
        Event::Answer(_) => "Answer",
        Event::Attribute { .. } => "Attribute",
        Event::Heard { .. } => "Heard",
    }
}

fn error_kind(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::TooLarge { .. } => "TooLarge",
        DecodeError::UnknownTopic(_) => "UnknownTopic",
        DecodeError::BadIdentity(_) => "BadIdentity",
        DecodeError::Json(_) => "Json",
        DecodeError::MissingField(_) => "MissingField",
        DecodeError::WrongType { .. } => "WrongType",
        DecodeError::BadValue { .. } => "BadValue",
        DecodeError::UnknownMethod(_) => "UnknownMethod",
    }
}

#[test]
fn decode_never_panics_and_keeps_its_promises() {
    let config = Config {
        cases: cases(),
        // Failures are reported by the test; no regression files are written into the tree.
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let inputs = AtomicU64::new(0);
    // How often each outcome was reached, so a long run shows the deep paths were exercised.
    let outcomes: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
    let count = |what: String| {
        if let Ok(mut map) = outcomes.lock() {
            *map.entry(what).or_default() += 1;
        }
    };
    let result = runner.run(&input(), |(topic, payload)| {
        inputs.fetch_add(1, Ordering::Relaxed);
        // A panic here fails the run (proptest catches it and shrinks the input).
        match protocol::decode(&topic, &payload) {
            Ok(events) => {
                for e in &events {
                    count(format!("ok {}", event_kind(e)));
                }
                if events.is_empty() {
                    count("ok (no events)".into());
                }
                check_promises(&topic, &events)?;
            }
            Err(e) => count(format!("err {}", error_kind(&e))),
        }
        Ok(())
    });
    eprintln!(
        "codec_props: ran {} inputs ({} configured cases); outcomes: {:?}",
        inputs.load(Ordering::Relaxed),
        cases(),
        outcomes.lock().map(|m| m.clone()).unwrap_or_default()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Topics far beyond any real one must cost nothing and fail cleanly.
#[test]
fn huge_topics_are_refused_quickly() {
    let slashes = "/".repeat(1 << 20);
    for topic in [
        format!("/ota/device/inform{slashes}"),
        format!("fogcloud/{slashes}"),
        format!("thing/product/{}/state", "x".repeat(1 << 20)),
    ] {
        let err = protocol::decode(&topic, b"{}").unwrap_err();
        assert!(
            err.to_string().len() < 1000,
            "errors quote topics shortened"
        );
    }
}
