//! Hostile and malformed device messages against the real engine while a rollout runs.
//!
//! The corpus is generated here from documented templates (see [`corpus`]): every entry has a
//! topic, the payload bytes and a short `why`. It is published by raw MQTT clients on the
//! embedded broker while a small simulated fleet upgrades, then the test checks that the engine
//! kept working (the rollout completes, every target as the simulator itself says), that what
//! the decoders refuse is in the inspector with a reason, that the oversized payload was refused
//! for its size, that hostile identities never reached a campaign, and that memory stayed bounded.
//!
//! This file must never depend on timing luck: every wait is bounded by a timeout.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::collections::HashMap;
use std::time::Duration;

use ota_console::device_id::DeviceId;
use ota_console::engine::{CampaignRequest, EngineHandle};
use ota_console::fleet::inspector::{Direction, MAX_KEPT_PAYLOAD_BYTES};
use ota_console::protocol::{self, MAX_PAYLOAD_BYTES};
use ota_console::rollout::{DeviceStatus, DialectSettings};
use ota_console::sim::{Behaviour, FaultOdds, SimConfig, SimFleet};
use ota_console::testing::engine::{loopback_config, start_engine, wait_for};
use ota_console::testing::sim_units;
use ota_console::testing::{self, firmware_file};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(40);
const PK: &str = "a1SimProduct";
/// Payload of the one oversized message: 10 MiB, forty times the decoders' limit.
const HUGE: usize = 10 * 1024 * 1024;
/// How much the process may grow over the first pass, apart from the 10 MiB payload's copies.
const RSS_BOUND_BYTES: u64 = 64 * 1024 * 1024;
/// How much it may grow over the first pass: the bound above, plus the copies of the 10 MiB
/// payload that exist at once in this one process and that glibc keeps for reuse afterwards
/// (measured +65..+95 MiB in total): the corpus, the publisher's clone and write buffer; the
/// embedded broker's read buffer, its filter log (which keeps recent messages by design) and its
/// write buffer to the engine; the engine's read buffer.
const FIRST_PASS_BOUND_BYTES: u64 = RSS_BOUND_BYTES + 7 * HUGE as u64;
/// How much it may grow when the same corpus is sent again after the rollout (measured
/// +30..+50 MiB): the broker's filter log keeps this second copy too (~14 MiB), the rest is
/// buffers; anything the engine kept per message would add up on top.
const SECOND_PASS_BOUND_BYTES: u64 = RSS_BOUND_BYTES + 2 * HUGE as u64;

/// What the engine must do with one corpus entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The decoders must refuse it: it is in the inspector with an error.
    Refused,
    /// Refused because of its size.
    TooLarge,
    /// Whatever `protocol::decode` says; the inspector must agree with it (error or not).
    AsDecoded,
    /// Decodes, but names a task or identity that is not the sender's: no target may change
    /// because of it (checked against the simulator's ground truth).
    Ignored,
    /// Decodes, but a gateway speaks in it for a device that is not its own (another gateway's
    /// sub-device, or itself): the engine refuses it with a reason.
    RefusedByEngine,
    /// Not a valid MQTT topic name (wildcards): the broker may drop it (and the sender's
    /// connection); if it reaches the engine it must be refused.
    MaybeUndelivered,
}

#[derive(Debug, Clone)]
struct Hostile {
    topic: String,
    payload: Vec<u8>,
    why: String,
    expect: Expect,
}

fn h(topic: impl Into<String>, payload: impl Into<Vec<u8>>, why: &str, expect: Expect) -> Hostile {
    Hostile {
        topic: topic.into(),
        payload: payload.into(),
        why: why.to_owned(),
        expect,
    }
}

fn j(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

/// JSON values a careless or hostile device puts where a number or string belongs. Raw text so
/// that numbers JSON allows but `serde_json::Value` would round (2^64, 1e400) stay as sent.
const BAD_VALUES: &[(&str, &str)] = &[
    ("null", "null"),
    ("true", "boolean"),
    ("[]", "empty array"),
    ("{}", "empty object"),
    ("\"x\"", "non-numeric string"),
    ("\"\"", "empty string"),
    ("1e308", "largest double"),
    ("-1e308", "most negative double"),
    ("1e400", "number beyond f64"),
    ("18446744073709551616", "2^64"),
    ("-9223372036854775808", "-2^63"),
    ("-9223372036854775809", "-2^63 - 1"),
    ("3.5", "fraction"),
    ("-7", "negative"),
    ("101", "percentage over 100"),
    ("1000000", "far over 100"),
    ("\"a\\u0000b\"", "NUL inside a string"),
    ("[1,2,3]", "array of numbers"),
    ("{\"$ne\":1}", "injection-shaped object"),
    ("\"💥\"", "emoji"),
];

fn splice(template: &str, value: &str) -> Vec<u8> {
    template.replace("@", value).into_bytes()
}

/// The static corpus: malformed messages under identities that are not targets of the rollout
/// (so a wrongly accepted one shows up as a stray device, not as a changed target), plus
/// malformed messages on the targets' own topics that must be refused outright.
#[expect(
    clippy::too_many_lines,
    reason = "the corpus is data: one entry per hostile message"
)]
fn corpus() -> Vec<Hostile> {
    use Expect::*;
    let mut out = Vec::new();
    let ali_inform = "/ota/device/inform/evilpk/intruder";
    let ali_progress = "/ota/device/progress/evilpk/intruder";
    let ali_get = "/sys/evilpk/intruder/thing/ota/firmware/get";
    let fog = "fogcloud/evilpk/evil-dev/thing/up/ota";
    let evil_gw = "fogcloud/evilpk/evil-gw/thing/up/ota";
    let dji_events = "thing/product/EVILDOCK1/events";
    let dji_state = "thing/product/EVILDOCK1/state";
    let dji_status = "sys/product/EVILDOCK1/status";
    let dji_reply = "thing/product/EVILDOCK1/services_reply";

    // 1. A bad value in every field that carries a number or a version (10 × 20 entries).
    let templates: &[(&str, &str, &str)] = &[
        (
            ali_progress,
            r#"{"id":"1","params":{"step":@,"desc":"x"}}"#,
            "alibaba progress step",
        ),
        (
            ali_inform,
            r#"{"id":"1","params":{"version":@}}"#,
            "alibaba inform version",
        ),
        (
            ali_get,
            r#"{"id":@,"version":"1.0","params":{},"method":"thing.ota.firmware.get"}"#,
            "alibaba firmware.get id",
        ),
        (
            fog,
            r#"{"id":1,"version":"1.0","method":"upgrade.post","params":{"step":@,"task_id":"1"}}"#,
            "fogcloud upgrade.post step",
        ),
        (
            fog,
            r#"{"id":1,"version":"1.0","method":"version.post","params":{"version":@}}"#,
            "fogcloud version.post version",
        ),
        (
            fog,
            r#"{"id":1,"version":"1.0","method":"upgrade.post","params":{"step":5,"task_id":@}}"#,
            "fogcloud upgrade.post task_id",
        ),
        (
            dji_events,
            r#"{"method":"ota_progress","bid":"b","tid":"t","need_reply":1,"data":{"result":0,"output":{"status":"in_progress","progress":{"percent":@,"step_key":"download_firmware"}}}}"#,
            "dji ota_progress percent",
        ),
        (
            dji_events,
            r#"{"method":"ota_progress","bid":"b","tid":"t","data":{"result":@,"output":{"status":"failed"}}}"#,
            "dji ota_progress result",
        ),
        (
            dji_state,
            r#"{"tid":"t","bid":"b","timestamp":1,"data":{"firmware_version":@}}"#,
            "dji state firmware_version",
        ),
        (
            dji_status,
            r#"{"tid":"t","bid":"b","timestamp":1,"method":"update_topo","data":{"type":1,"sub_type":0,"sub_devices":@}}"#,
            "dji update_topo sub_devices",
        ),
    ];
    for (topic, template, field) in templates {
        for (value, what) in BAD_VALUES {
            out.push(h(
                *topic,
                splice(template, value),
                &format!("{field}: {what}"),
                AsDecoded,
            ));
        }
    }

    // 2. Payloads that are not JSON objects at all, on every dialect's topics (its samples',
    // from the registry) and targets'.
    let mut real_topics: Vec<String> = vec![
        "/ota/device/inform/a1SimProduct/sim-ali-0001".to_owned(),
        "/ota/device/progress/a1SimProduct/sim-ali-0001".to_owned(),
        "fogcloud/a1SimProduct/sim-fgw-0001/thing/up/ota".to_owned(),
        "thing/product/sim-dock-0001/events".to_owned(),
        "sys/product/sim-dock-0001/status".to_owned(),
    ];
    for d in protocol::registry::all() {
        for sample in d.samples().uplink {
            if !real_topics.iter().any(|t| t == sample.topic) {
                real_topics.push(sample.topic.to_owned());
            }
        }
    }
    let garbage: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "empty payload"),
        (b"\xff\xfe\xfd".to_vec(), "invalid UTF-8"),
        (
            b"{\"id\":\"1\",\"params\":{\"version\":\"\xc0\xaf\"}}".to_vec(),
            "overlong UTF-8 in a string",
        ),
        (
            b"{\"id\":\"1\",\"params\":{\"version\":\"\xed\xa0\x80\"}}".to_vec(),
            "UTF-16 surrogate in UTF-8",
        ),
        (b"[".repeat(100_000), "100k nested arrays"),
        ("{\"a\":".repeat(40_000).into_bytes(), "40k nested objects"),
        (b"{\"id\":1,".to_vec(), "truncated JSON"),
        (b"nul".to_vec(), "bad literal"),
        (b"42".to_vec(), "a number, not an object"),
        (b"\"str\"".to_vec(), "a string, not an object"),
        (b"[{\"id\":1}]".to_vec(), "an array, not an object"),
        (b"\0\0\0\0".to_vec(), "NUL bytes"),
    ];
    for topic in &real_topics {
        for (payload, why) in &garbage {
            out.push(h(topic.clone(), payload.clone(), why, Refused));
        }
    }

    // 3. Size: just over the limit on each dialect (a topic of its samples), and one 10 MiB
    // message.
    let over = MAX_PAYLOAD_BYTES + 1;
    for d in protocol::registry::all() {
        let topic = d
            .samples()
            .uplink
            .first()
            .expect("a dialect has samples")
            .topic;
        out.push(h(
            topic,
            vec![b' '; over],
            "one byte over the limit",
            TooLarge,
        ));
    }
    let mut huge = b"{\"id\":\"1\",\"params\":{\"version\":\"".to_vec();
    huge.resize(HUGE - 3, b'9');
    huge.extend_from_slice(b"\"}}");
    out.push(h(ali_inform, huge, "10 MiB inform", TooLarge));

    // 4. Unknown or misdirected methods.
    for method in [
        "reboot",
        "firmware.post",
        "sub.firmware.post",
        "",
        "VERSION.POST",
        "version.post ",
        &"m".repeat(10_000),
    ] {
        out.push(h(
            fog,
            j(json!({"id": 1, "version": "1.0", "method": method, "params": {"version": "1"}})),
            "fogcloud method that devices do not send",
            Refused,
        ));
    }
    for method in ["update_topo_x", "", "ota_progress"] {
        out.push(h(
            dji_status,
            j(json!({"tid": "t", "bid": "b", "method": method, "data": {}})),
            "dji status with a method other than update_topo",
            Refused,
        ));
    }
    out.push(h(
        dji_events,
        j(json!({"tid": "t", "bid": "b", "method": 7, "data": {}})),
        "dji event method of the wrong type",
        Refused,
    ));
    out.push(h(
        dji_reply,
        j(json!({"tid": "t", "bid": "b", "method": "ota_create", "data": {"result": "x"}})),
        "dji services_reply with a non-numeric result",
        Refused,
    ));
    out.push(h(dji_reply, j(json!({"tid": "t", "bid": "b", "method": "ota_create", "data": {"result": 0, "output": {"status": "hacked"}}})), "dji services_reply with an unknown status", Refused));

    // 5. Topics: empty segments, dot segments, over-long segments, identities that are not ids.
    let inform = j(json!({"id": "1", "params": {"version": "2.0.0"}}));
    let fog_version = j(
        json!({"id": 1, "version": "1.0", "method": "version.post", "params": {"version": "2.0.0"}}),
    );
    let dji_topo =
        j(json!({"tid": "t", "bid": "b", "method": "update_topo", "data": {"sub_devices": []}}));
    let long = "x".repeat(70);
    let very_long = "y".repeat(20_000);
    // Segments the id rules allow (dots, spaces, long names, format characters): devices may
    // really be named so; what matters is that they are never used as paths.
    for (topic, payload, why, expect) in [
        (
            "/ota/device/inform//intruder".to_owned(),
            &inform,
            "empty product key",
            Refused,
        ),
        (
            "/ota/device/inform/evilpk/".to_owned(),
            &inform,
            "empty device name",
            Refused,
        ),
        (
            "/ota/device/inform/../..".to_owned(),
            &inform,
            "dot-dot segments",
            AsDecoded,
        ),
        (
            "/ota/device/inform/./intruder".to_owned(),
            &inform,
            "dot segment",
            AsDecoded,
        ),
        (
            format!("/ota/device/inform/evilpk/{long}"),
            &inform,
            "device name over 64 characters",
            AsDecoded,
        ),
        (
            format!("/ota/device/inform/evilpk/{very_long}"),
            &inform,
            "20k-character segment",
            Refused,
        ),
        (
            "/ota/device/inform/evil pk/intruder".to_owned(),
            &inform,
            "space in the product key",
            AsDecoded,
        ),
        (
            "/ota/device/inform/evilpk/in\u{0}truder".to_owned(),
            &inform,
            "NUL in the device name",
            Refused,
        ),
        (
            "/ota/device/inform/evilpk/intr\u{202e}uder".to_owned(),
            &inform,
            "bidi override in the device name",
            AsDecoded,
        ),
        (
            "fogcloud//evil-dev/thing/up/ota".to_owned(),
            &fog_version,
            "fogcloud empty product key",
            Refused,
        ),
        (
            "fogcloud/evilpk//thing/up/ota".to_owned(),
            &fog_version,
            "fogcloud empty device name",
            Refused,
        ),
        (
            "fogcloud/../../thing/up/ota".to_owned(),
            &fog_version,
            "fogcloud dot-dot identity",
            AsDecoded,
        ),
        (
            format!("fogcloud/evilpk/{very_long}/thing/up/ota"),
            &fog_version,
            "fogcloud 20k-character name",
            Refused,
        ),
        (
            "sys/product//status".to_owned(),
            &dji_topo,
            "dji empty serial number",
            Refused,
        ),
        (
            "sys/product/../status".to_owned(),
            &dji_topo,
            "dji dot-dot serial number",
            AsDecoded,
        ),
        (
            format!("sys/product/{very_long}/status"),
            &dji_topo,
            "dji 20k-character serial number",
            Refused,
        ),
        (
            "thing/product/ /state".to_owned(),
            &j(json!({"data": {"firmware_version": "2.0.0"}})),
            "dji blank serial number",
            AsDecoded,
        ),
    ] {
        out.push(h(topic, payload.clone(), why, expect));
    }
    for topic in [
        "/ota/device/inform/+/intruder",
        "/ota/device/inform/evilpk/#",
        "fogcloud/+/+/thing/up/ota",
        "thing/product/+/events",
        "sys/product/#",
    ] {
        out.push(h(
            topic,
            inform.clone(),
            "wildcard in a topic name",
            MaybeUndelivered,
        ));
    }

    // Names that would render as another device's (bidi override, zero-width space, BOM).
    let dji_version =
        j(json!({"tid": "t", "bid": "b", "timestamp": 1, "data": {"firmware_version": "2.0.0"}}));
    for (topic, payload) in [
        (
            "/ota/device/inform/a1SimProduct/sim-ali-\u{202E}1000",
            &inform,
        ),
        (
            "/ota/device/inform/a1SimProduct/sim-ali-0001\u{200B}",
            &inform,
        ),
        (
            "fogcloud/a1SimProduct/\u{FEFF}sim-fog-0001/thing/up/ota",
            &fog_version,
        ),
        ("thing/product/\u{2067}SIMDOCK0001/state", &dji_version),
    ] {
        out.push(h(
            topic,
            payload.clone(),
            "invisible or bidi characters in a device name",
            Refused,
        ));
    }

    // 6. Identities that are not the sender's, and non-targets claiming the target version.
    out.push(h(
        "/ota/device/inform/evilpk/bystander",
        inform.clone(),
        "non-target claims the target version without a notice",
        AsDecoded,
    ));
    out.push(h(
        "fogcloud/evilpk/bystander/thing/up/ota",
        fog_version.clone(),
        "non-target claims the target version without a notice",
        AsDecoded,
    ));
    out.push(h(
        "thing/product/EVILDRONE1/state",
        j(json!({"tid": "t", "bid": "b", "data": {"firmware_version": "2.0.0"}})),
        "non-target drone claims the target version",
        AsDecoded,
    ));
    out.push(h(
        "/ota/device/progress/evilpk/bystander",
        j(json!({"id": "1", "params": {"step": "100"}})),
        "non-target reports 100 % without a notice",
        AsDecoded,
    ));
    out.push(h(dji_events, j(json!({"method": "ota_progress", "bid": "no-such-bid", "tid": "t", "data": {"result": 0, "output": {"status": "ok"}}})), "success for a bid nobody issued", Ignored));
    out.push(h("thing/product/sim-dock-0001/events", j(json!({"method": "ota_progress", "bid": "no-such-bid", "tid": "t", "data": {"result": 312003, "output": {"status": "failed"}}})), "failure for a bid nobody issued, on a target dock's topic", Ignored));
    out.push(h("fogcloud/a1SimProduct/sim-fog-0001/thing/up/ota", j(json!({"id": 1, "version": "1.0", "method": "upgrade.post", "params": {"step": -1, "task_id": "987654321987"}})), "failure for a task_id that was never issued, on a target's topic", Ignored));

    // 7. Big arrays: a gateway inventing thousands of sub-devices, a dock listing itself.
    let subs: Vec<Value> = (0..2_000)
        .map(|i| json!({"identity": {"product_key": "evilpk", "device_name": format!("ghost-{i}")}, "version": "2.0.0"}))
        .collect();
    out.push(h(
        evil_gw,
        j(json!({"id": 1, "version": "1.0", "method": "sub.version.post", "params": subs})),
        "2,000 invented sub-devices in one sub.version.post",
        AsDecoded,
    ));
    let many: Vec<Value> = (0..5_000)
        .map(|i| json!({"identity": {"product_key": "evilpk", "device_name": format!("ghost-{i}")}, "version": "2.0.0", "module": "default"}))
        .collect();
    out.push(h(
        evil_gw,
        j(json!({"id": 1, "version": "1.0", "method": "sub.version.post", "params": many})),
        "5,000 sub-devices: over the size limit",
        TooLarge,
    ));
    out.push(h(
        evil_gw,
        j(json!({"id": 1, "version": "1.0", "method": "sub.version.post", "params": []})),
        "empty sub-device array",
        Refused,
    ));
    out.push(h(evil_gw, j(json!({"id": 1, "version": "1.0", "method": "sub.version.post", "params": vec![json!(1); 50_000]})), "50,000 numbers as sub-device entries", Refused));
    let drones: Vec<Value> = (0..3_000)
        .map(|i| json!({"sn": format!("GHOST{i:05}"), "type": 67, "sub_type": 0, "index": "A"}))
        .collect();
    out.push(h(dji_status, j(json!({"tid": "t", "bid": "b", "method": "update_topo", "data": {"type": 1, "sub_devices": drones}})), "update_topo with 3,000 sub-devices", AsDecoded));
    out.push(h(dji_status, j(json!({"tid": "t", "bid": "b", "method": "update_topo", "data": {"type": 1, "sub_devices": [{"sn": "EVILDOCK1", "type": 67}]}})), "update_topo where the dock lists itself", RefusedByEngine));
    out.push(h(dji_status, j(json!({"tid": "t", "bid": "b", "method": "update_topo", "data": {"type": 1, "sub_devices": [{"sn": "sim-drone-0001", "type": 67, "index": "A"}]}})), "update_topo from another dock claiming a target drone (would re-route its ota_create)", RefusedByEngine));
    out.push(h(dji_status, j(json!({"tid": "t", "bid": "b", "method": "update_topo", "data": {"sub_devices": [{"sn": "a/b"}]}})), "update_topo with a slash in a serial number", Refused));

    // 8. Replays: the same refused and the same accepted message many times.
    for _ in 0..20 {
        out.push(h(
            fog,
            b"{\"id\":1,".to_vec(),
            "replayed truncated JSON (log flood)",
            Refused,
        ));
        out.push(h(
            "/ota/device/inform/evilpk/replayer",
            inform.clone(),
            "replayed inform of a non-target",
            AsDecoded,
        ));
    }
    out
}

/// Messages that impersonate another device's upgrade, built from the notices the engine sent
/// (read back from the inspector, as any client on the broker could read them).
fn impersonations(sniffed: &Sniffed) -> Vec<Hostile> {
    use Expect::*;
    let mut out = Vec::new();
    let evil_gw = "fogcloud/evilpk/evil-gw/thing/up/ota";
    for (sub, task_id) in &sniffed.fog_sub_tasks {
        let identity = json!({"product_key": PK, "device_name": sub});
        out.push(h(evil_gw, j(json!({"id": 1, "version": "1.0", "method": "sub.upgrade.post", "params": [{"identity": identity, "step": -1, "task_id": task_id, "desc": "spoofed"}]})), "another gateway's sub-device reported failed, with its real task_id", RefusedByEngine));
        out.push(h(evil_gw, j(json!({"id": 1, "version": "1.0", "method": "sub.version.post", "params": [{"identity": identity, "version": "6.6.6"}]})), "another gateway's sub-device reported at another version", RefusedByEngine));
        out.push(h("fogcloud/a1SimProduct/sim-fog-0001/thing/up/ota", j(json!({"id": 1, "version": "1.0", "method": "upgrade.post", "params": {"step": -1, "task_id": task_id}})), "a target reports failure with a task_id that belongs to another device", Ignored));
    }
    if let Some(task_id) = &sniffed.fog_plain_task {
        let identity = json!({"product_key": PK, "device_name": "sim-fog-0001"});
        out.push(h(evil_gw, j(json!({"id": 1, "version": "1.0", "method": "sub.upgrade.post", "params": [{"identity": identity, "step": -1, "task_id": task_id}]})), "a gateway claims a directly connected target as its sub-device and fails it", RefusedByEngine));
        out.push(h(evil_gw, j(json!({"id": 1, "version": "1.0", "method": "sub.version.post", "params": [{"identity": identity, "version": "1.0.0"}]})), "a gateway claims a directly connected target (would re-route its notices)", RefusedByEngine));
    }
    for bid in &sniffed.dji_bids {
        out.push(h("thing/product/EVILDOCK1/events", j(json!({"method": "ota_progress", "bid": bid, "tid": "t", "need_reply": 1, "data": {"result": 312003, "output": {"status": "failed"}}})), "another dock's bid reported failed", Ignored));
        out.push(h("thing/product/EVILDOCK1/services_reply", j(json!({"method": "ota_create", "bid": bid, "tid": "t", "data": {"result": 312015, "output": {"status": "rejected"}}})), "another dock's ota_create answered rejected", Ignored));
    }
    out
}

#[derive(Debug, Default)]
struct Sniffed {
    /// FogCloud sub-device name → task_id of its notice.
    fog_sub_tasks: Vec<(String, String)>,
    dji_bids: Vec<String>,
    /// task_id of the notice to the directly connected FogCloud device.
    fog_plain_task: Option<String>,
}

fn sniff(handle: &EngineHandle) -> Sniffed {
    let mut s = Sniffed::default();
    for m in handle.messages(None, 20_000) {
        if m.direction != Direction::Out {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&m.payload) else {
            continue;
        };
        if m.topic.ends_with("/services")
            && v["method"] == "ota_create"
            && let Some(bid) = v["bid"].as_str()
        {
            s.dji_bids.push(bid.to_owned());
        }
        if v["method"] == "firmware.post"
            && m.topic.contains("sim-fog-0001")
            && let Some(task) = v["params"]["task_id"].as_str()
        {
            s.fog_plain_task = Some(task.to_owned());
        }
        if v["method"] == "sub.firmware.post" {
            for entry in v["params"].as_array().into_iter().flatten() {
                if let (Some(dn), Some(task)) = (
                    entry["identity"]["device_name"].as_str(),
                    entry["task_id"].as_str(),
                ) {
                    s.fog_sub_tasks.push((dn.to_owned(), task.to_owned()));
                }
            }
        }
    }
    s
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn broker_port(handle: &EngineHandle) -> u16 {
    handle
        .broker_url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Publishes `messages` at QoS 1 from one fresh client and waits (bounded) for every PUBACK.
async fn publish_acked(port: u16, client_id: &str, messages: &[&Hostile]) {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(HUGE * 2, HUGE * 2);
    let (client, mut eventloop) = AsyncClient::new(options, messages.len() + 10);
    let expected = messages.len();
    let poller = tokio::spawn(async move {
        let mut acked = 0;
        while acked < expected {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => panic!("hostile publisher lost its connection: {e}"),
            }
        }
        eventloop
    });
    for m in messages {
        client
            .publish_bytes(
                m.topic.clone(),
                QoS::AtLeastOnce,
                false,
                m.payload.clone().into(),
            )
            .await
            .unwrap();
    }
    let mut eventloop = tokio::time::timeout(WAIT, poller)
        .await
        .expect("every hostile message acknowledged by the broker")
        .unwrap();
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(2), eventloop.poll()).await;
}

/// Publishes one message whose topic the broker may refuse (and close the connection for),
/// from a throwaway client; returns whether the broker acknowledged it.
async fn publish_maybe(port: u16, client_id: &str, m: &Hostile) -> bool {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client
        .publish_bytes(
            m.topic.clone(),
            QoS::AtLeastOnce,
            false,
            m.payload.clone().into(),
        )
        .await
        .unwrap();
    let acked = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    let _ = client.try_disconnect();
    acked
}

/// Whether the engine subscribes to a topic (only those can reach it).
fn engine_hears(topic: &str) -> bool {
    ota_console::protocol::registry::ids().iter().any(|d| {
        protocol::subscriptions(*d)
            .iter()
            .any(|filter| rumqttc::matches(topic, filter))
    })
}

/// The inspector's form of a topic (shortened like the engine's logs).
fn logged_topic(topic: &str) -> String {
    if topic.chars().count() <= 200 {
        topic.to_owned()
    } else {
        let mut s: String = topic.chars().take(200).collect();
        s.push('…');
        s
    }
}

type Key = (String, usize);

fn key(m: &Hostile) -> Key {
    (logged_topic(&m.topic), m.payload.len())
}

/// Inbound inspector records per (topic, size): how many with an error, how many without, and
/// the errors themselves.
fn inbound_records(handle: &EngineHandle) -> HashMap<Key, (usize, usize, Vec<String>)> {
    let mut seen: HashMap<Key, (usize, usize, Vec<String>)> = HashMap::new();
    for m in handle.messages(None, 20_000) {
        if m.direction != Direction::In {
            continue;
        }
        let slot = seen.entry((m.topic.clone(), m.payload_len)).or_default();
        match m.error {
            Some(e) => {
                slot.0 += 1;
                slot.2.push(e);
            }
            None => slot.1 += 1,
        }
    }
    seen
}

/// What the inspector must show for the delivered entries: per key, errors and clean records.
fn expected_records(entries: &[&Hostile]) -> HashMap<Key, (usize, usize)> {
    let mut want: HashMap<Key, (usize, usize)> = HashMap::new();
    for m in entries {
        let refused =
            m.expect == Expect::RefusedByEngine || protocol::decode(&m.topic, &m.payload).is_err();
        let slot = want.entry(key(m)).or_default();
        if refused {
            slot.0 += 1;
        } else {
            slot.1 += 1;
        }
    }
    want
}

fn missing_records(handle: &EngineHandle, want: &HashMap<Key, (usize, usize)>) -> Vec<String> {
    let seen = inbound_records(handle);
    let mut missing = Vec::new();
    for (k, (errors, clean)) in want {
        let (got_errors, got_clean, _) = seen.get(k).cloned().unwrap_or_default();
        if got_errors < *errors || got_clean < *clean {
            missing.push(format!(
                "{:?} ({} bytes): want {errors} refused + {clean} accepted, inspector has {got_errors} + {got_clean}",
                k.0.chars().take(80).collect::<String>(),
                k.1
            ));
        }
    }
    missing.sort();
    missing
}

/// Polls `check` (it reads the inspector, which has no change notification) until it returns
/// an empty list, at most `WAIT`.
async fn poll_until_empty(mut check: impl FnMut() -> Vec<String>, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = check();
        if left.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "{what}: {} left, e.g. {:#?}",
                left.len(),
                &left[..left.len().min(20)]
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn corpus_is_large_and_documented() {
    let all = corpus();
    assert!(all.len() >= 200, "{} entries", all.len());
    assert!(all.iter().all(|m| !m.why.is_empty() && !m.topic.is_empty()));
    // The expectations written by hand agree with the decoders (the engine test then checks
    // that the engine does what the decoders say).
    let mut wrong = Vec::new();
    for m in &all {
        let result = protocol::decode(&m.topic, &m.payload);
        let agrees = match m.expect {
            Expect::Refused | Expect::MaybeUndelivered => result.is_err(),
            Expect::TooLarge => matches!(result, Err(protocol::DecodeError::TooLarge { .. })),
            Expect::Ignored | Expect::RefusedByEngine => result.is_ok(),
            Expect::AsDecoded => true,
        };
        if !agrees {
            wrong.push(format!("{:?} {}: {result:?}", m.expect, m.why));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[expect(
    clippy::too_many_lines,
    reason = "one scenario: rollout, corpus injected, then every device and campaign checked"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_corpus_during_a_rollout_changes_nothing_it_should_not() {
    let dir = tempfile::tempdir().unwrap();
    // Open: the hostile messages must reach the console's decoders, which is what this test
    // is about (tests/hostile_lan.rs shows the secure broker refusing such clients first).
    let handle = start_engine(loopback_config(dir.path()).with_open_broker()).await;
    handle.wait_connected(WAIT).await.unwrap();
    let fleet = SimFleet::start(SimConfig {
        broker_url: handle.broker_url().to_owned(),
        units: sim_units(&[
            ("aliyun", 2),
            ("fogcloud", 1),
            ("fogcloud-gateways", 1),
            ("subs", 2),
            ("dji-docks", 1),
        ]),
        version: "1.0.0".into(),
        seed: 3,
        behaviour: Behaviour {
            // Slow enough that the corpus arrives while devices download and install.
            bandwidth_bytes_per_sec: Some(100_000),
            install: Duration::from_millis(700),
            faults: FaultOdds::default(),
            ..Behaviour::default()
        },
        // Devices download like embedded SDKs: exact header names, Content-Length required.
        strict: true,
        ..SimConfig::default()
    })
    .await
    .expect("simulated fleet starts");
    let targets = fleet.device_ids();
    assert_eq!(targets.len(), 8, "{targets:?}");
    {
        let targets = targets.clone();
        wait_for(&handle, "discovery", move |s| {
            targets.iter().all(|id| {
                s.devices
                    .iter()
                    .any(|r| &r.record.id == id && r.record.version(None).is_some())
            })
        })
        .await;
    }

    let package = handle
        .import_firmware(firmware_file(dir.path(), 100_000))
        .await
        .unwrap();
    let policy = testing::fast_policy(30);
    let rss_before = rss_bytes();
    let before = handle.snapshot().traffic;
    let campaign = handle
        .start_campaign(CampaignRequest {
            name: "hostile".into(),
            package_sha256: package.package.sha256,
            version: "2.0.0".into(),
            module: None,
            description: "under attack".into(),
            targets: targets.clone(),
            policy,
            settings: DialectSettings::default(),
            download_url: None,
        })
        .await
        .unwrap();

    // The static corpus, while the canary upgrades.
    let port = broker_port(&handle);
    let all = corpus();
    let (maybe, normal): (Vec<&Hostile>, Vec<&Hostile>) = all
        .iter()
        .partition(|m| m.expect == Expect::MaybeUndelivered);
    publish_acked(port, "hostile-corpus", &normal).await;
    let mut maybe_acked = 0;
    for (i, m) in maybe.iter().enumerate() {
        maybe_acked += usize::from(publish_maybe(port, &format!("hostile-wild-{i}"), m).await);
    }

    // Impersonations need the bids and task_ids of real notices: wait until the FogCloud
    // sub-devices and the DJI devices have been noticed (they follow the canary).
    let sniffed = {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = sniff(&handle);
            if !s.fog_sub_tasks.is_empty() && !s.dji_bids.is_empty() && s.fog_plain_task.is_some() {
                break s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no FogCloud sub-device or DJI notice seen: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let spoofs = impersonations(&sniffed);
    let spoof_refs: Vec<&Hostile> = spoofs.iter().collect();
    publish_acked(port, "hostile-impersonator", &spoof_refs).await;
    let published = normal.len() + maybe.len() + spoofs.len();

    // The engine keeps working: the rollout completes and every target upgraded.
    let snap = wait_for(&handle, "the campaign to finish", |s| {
        s.campaigns.iter().any(|c| {
            c.snapshot.id == campaign
                && c.snapshot.state.is_finished()
                && c.snapshot.counts.in_flight() == 0
        })
    })
    .await;
    let view = snap
        .campaigns
        .iter()
        .find(|c| c.snapshot.id == campaign)
        .unwrap();
    let stats = fleet.stats();
    assert_eq!(view.snapshot.devices.len(), targets.len());
    for device in &view.snapshot.devices {
        let truth = stats.get(&device.id.device()).expect("simulated");
        assert_eq!(
            device.status,
            DeviceStatus::Succeeded,
            "{device:?}; the device says {truth:?}"
        );
        assert_eq!(truth.version, "2.0.0", "{device:?}");
        assert_eq!(truth.upgrades_failed, 0, "{truth:?}");
    }

    // Everything the decoders refuse is in the inspector with a reason, and what they accept
    // is there without one.
    let delivered: Vec<&Hostile> = normal
        .iter()
        .chain(spoof_refs.iter())
        .copied()
        .filter(|m| engine_hears(&m.topic))
        .collect();
    let want = expected_records(&delivered);
    poll_until_empty(
        || missing_records(&handle, &want),
        "corpus entries missing from the inspector",
    )
    .await;
    // A gateway speaking for a device that is not its own is refused with the reason.
    let seen = inbound_records(&handle);
    for m in delivered
        .iter()
        .filter(|m| m.expect == Expect::RefusedByEngine)
    {
        let (_, _, reasons) = seen.get(&key(m)).cloned().unwrap_or_default();
        assert!(
            reasons
                .iter()
                .any(|r| r.contains(", not ") || r.contains("its own sub-device")),
            "{}: {reasons:?}",
            m.why
        );
    }
    // The 10 MiB message was refused for its size.
    let huge_key = ("/ota/device/inform/evilpk/intruder".to_owned(), HUGE);
    let (_, _, reasons) = seen.get(&huge_key).cloned().unwrap_or_default();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains(&HUGE.to_string()) && r.contains("at most")),
        "{reasons:?}"
    );
    // Wildcard topics: whatever reached the engine was refused.
    let mut wild_seen = 0;
    for m in &maybe {
        if let Some((errors, clean, _)) = seen.get(&key(m)) {
            assert_eq!(*clean, 0, "accepted a wildcard topic: {:?}", m.topic);
            wild_seen += errors;
        }
    }

    let after = handle.snapshot();
    let refused_expected = delivered
        .iter()
        .filter(|m| {
            m.expect == Expect::RefusedByEngine || protocol::decode(&m.topic, &m.payload).is_err()
        })
        .count() as u64;
    assert!(
        after.traffic.rejected >= before.rejected + refused_expected,
        "rejected {} → {}, expected at least {refused_expected} more",
        before.rejected,
        after.traffic.rejected
    );
    // Non-targets named by the corpus never joined a campaign.
    let campaign_devices: Vec<&DeviceId> = after
        .campaigns
        .iter()
        .flat_map(|c| c.snapshot.devices.iter().map(|d| &d.id))
        .collect();
    for id in &campaign_devices {
        assert!(targets.contains(&id.device()), "stray campaign device {id}");
    }
    // The inspector keeps at most 8 KiB of each payload (×3 when invalid UTF-8 is replaced).
    let kept = handle.messages(None, 20_000);
    let largest = kept.iter().map(|m| m.payload.len()).max().unwrap_or(0);
    assert!(
        largest <= 3 * MAX_KEPT_PAYLOAD_BYTES,
        "{largest} bytes kept"
    );
    drop(kept);
    let rss_first = rss_bytes();
    assert!(
        rss_first < rss_before + FIRST_PASS_BOUND_BYTES,
        "RSS grew from {} MiB to {} MiB over the first pass",
        rss_before >> 20,
        rss_first >> 20
    );

    // Steady state: the same corpus again, once the rollout is over.
    let second: Vec<&Hostile> = normal
        .iter()
        .copied()
        .filter(|m| engine_hears(&m.topic))
        .collect();
    let received_before = handle.snapshot().traffic.received;
    let rss_second_before = rss_bytes();
    publish_acked(port, "hostile-corpus-again", &normal).await;
    let want_received = received_before + second.len() as u64;
    wait_for(&handle, "the second pass to be received", |s| {
        s.traffic.received >= want_received
    })
    .await;
    let rss_second = rss_bytes();
    assert!(
        rss_second < rss_second_before + SECOND_PASS_BOUND_BYTES,
        "RSS grew from {} MiB to {} MiB over the second pass",
        rss_second_before >> 20,
        rss_second >> 20
    );
    let (static_count, wild_count, spoof_count, delivered_count) =
        (normal.len(), maybe.len(), spoofs.len(), delivered.len());
    let rss_after = rss_second;
    println!(
        "hostile corpus: {published} published ({} static, {} wildcard of which {maybe_acked} acked by the broker and {wild_seen} reached the engine, {} impersonations); engine received {} → {} messages, rejected {} → {}; delivered to the engine's subscriptions: {}; RSS {} → {} MiB over the first pass, {} → {} MiB over the second",
        static_count,
        wild_count,
        spoof_count,
        before.received,
        after.traffic.received,
        before.rejected,
        after.traffic.rejected,
        delivered_count,
        rss_before >> 20,
        rss_first >> 20,
        rss_second_before >> 20,
        rss_after >> 20
    );
    fleet.shutdown().await;
}
