//! What a strict device stack refuses: notices with a missing or empty field, read as the
//! C SDKs read them (protocols/notes.md: "Device SDKs treat every field of the notice as
//! required and non-empty"). Used by the simulated devices under `SimConfig::strict`; a notice
//! refused here is ignored and counted in `broken_notices`.
//!
//! Owns: the field lists per dialect and the checks. Pure: no I/O, never panics on input.
//! Each check returns `Some(why)` for a broken notice and `None` for a good one.

use serde_json::{Map, Value};

/// Every `data` field of an Alibaba upgrade push or non-empty `get_reply`.
const ALIYUN_DATA: &[&str] = &["size", "version", "url", "signMethod", "sign", "md5"];
/// Every `params` field of a FogCloud `firmware.post` (the document's, plus notes.md's
/// `checksum`).
const FOGCLOUD_POST: &[&str] = &[
    "size",
    "sign",
    "version",
    "url",
    "sign_method",
    "module",
    "description",
    "task_id",
    "checksum",
];
/// Every field of a `sub.firmware.post` entry (`desc` for the description).
const FOGCLOUD_SUB_ENTRY: &[&str] = &[
    "identity",
    "size",
    "sign",
    "version",
    "url",
    "sign_method",
    "module",
    "desc",
    "task_id",
    "checksum",
];
/// Every field of one `ota_create` device entry.
const DJI_DEVICE: &[&str] = &[
    "sn",
    "product_version",
    "firmware_upgrade_type",
    "file_url",
    "md5",
    "file_size",
    "file_name",
];

/// Why `value` is not a usable field value: null, an empty string, an empty object or array,
/// or (for sizes) zero.
fn empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Every field in `required` present and non-empty, and no field at all empty (an SDK that
/// copies every string it finds treats an empty optional one as broken too).
fn fields_problem(obj: &Map<String, Value>, required: &[&str], what: &str) -> Option<String> {
    if let Some(missing) = required.iter().find(|k| !obj.contains_key(**k)) {
        return Some(format!("{what}: {missing} is missing"));
    }
    if let Some((key, _)) = obj.iter().find(|(_, v)| empty(v)) {
        return Some(format!("{what}: {key} is empty"));
    }
    for size in ["size", "file_size"] {
        if obj
            .get(size)
            .is_some_and(|v| v.as_u64().is_none_or(|n| n == 0))
        {
            return Some(format!("{what}: {size} is not a positive integer"));
        }
    }
    None
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An Alibaba push (`get_reply: false`) or `get_reply`. A `get_reply` whose `data` is `{}` is
/// the documented "nothing pending" and is not broken.
pub(crate) fn aliyun_problem(msg: &Map<String, Value>, get_reply: bool) -> Option<String> {
    if msg.get("message").and_then(Value::as_str) != Some("success") {
        return Some("message is not exactly \"success\"".into());
    }
    if msg.get("id").is_none_or(empty) {
        return Some("id is missing".into());
    }
    let data = match msg.get("data") {
        Some(Value::Object(d)) => d,
        _ => return Some("data is missing or not an object".into()),
    };
    if get_reply && data.is_empty() {
        return None;
    }
    if let Some(why) = fields_problem(data, ALIYUN_DATA, "data") {
        return Some(why);
    }
    match data.get("md5").and_then(Value::as_str) {
        Some(md5) if is_lower_hex(md5, 32) => None,
        _ => Some("data: md5 is not 32 lowercase hex digits".into()),
    }
}

/// A FogCloud down message: `firmware.post` (any `params` without every field, `{}` included,
/// is broken: the document defines no empty reply) or `sub.firmware.post`.
pub(crate) fn fogcloud_problem(msg: &Map<String, Value>) -> Option<String> {
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
    if !matches!(method, "firmware.post" | "sub.firmware.post") {
        return None;
    }
    if msg.get("id").is_none_or(empty) {
        return Some(format!("{method}: id is missing"));
    }
    match (method, msg.get("params")) {
        ("firmware.post", Some(Value::Object(p))) => fields_problem(p, FOGCLOUD_POST, "params"),
        ("sub.firmware.post", Some(Value::Array(entries))) if !entries.is_empty() => {
            entries.iter().find_map(|e| match e {
                Value::Object(entry) => fields_problem(entry, FOGCLOUD_SUB_ENTRY, "params[]"),
                _ => Some("params[]: an entry is not an object".into()),
            })
        }
        _ => Some(format!(
            "{method}: params is missing, empty or of the wrong type"
        )),
    }
}

/// A DJI `ota_create` service call (other methods are not notices: `None`).
pub(crate) fn dji_problem(msg: &Map<String, Value>) -> Option<String> {
    if msg.get("method").and_then(Value::as_str) != Some("ota_create") {
        return None;
    }
    for key in ["tid", "bid", "timestamp"] {
        if msg.get(key).is_none_or(empty) {
            return Some(format!("{key} is missing or empty"));
        }
    }
    let devices = match msg.get("data").and_then(|d| d.get("devices")) {
        Some(Value::Array(d)) if !d.is_empty() => d,
        _ => return Some("data.devices is missing or empty".into()),
    };
    devices.iter().find_map(|d| match d {
        Value::Object(entry) => fields_problem(entry, DJI_DEVICE, "data.devices[]"),
        _ => Some("data.devices[]: an entry is not an object".into()),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const MD5: &str = "83254ac96e141affb8aa42cbfec90000";

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("{other}"),
        }
    }

    fn ali_push() -> Value {
        json!({"code": "1000", "id": 1, "message": "success", "data": {
            "size": 10, "version": "2.0", "url": "http://h/f", "signMethod": "SHA256",
            "sign": "ab", "md5": MD5}})
    }

    #[test]
    fn aliyun_needs_every_field_md5_and_success() {
        assert_eq!(aliyun_problem(&obj(ali_push()), false), None);
        for key in ["size", "version", "url", "signMethod", "sign", "md5"] {
            let mut m = ali_push();
            m["data"].as_object_mut().unwrap().remove(key);
            assert!(aliyun_problem(&obj(m), false).is_some(), "without {key}");
            let mut m = ali_push();
            m["data"][key] = json!("");
            assert!(aliyun_problem(&obj(m), false).is_some(), "empty {key}");
        }
        let mut m = ali_push();
        m["message"] = json!("Success");
        assert!(aliyun_problem(&obj(m), false).is_some());
        let mut m = ali_push();
        m["data"]["md5"] = json!(MD5.to_uppercase());
        assert!(aliyun_problem(&obj(m), false).is_some(), "uppercase md5");
        let mut m = ali_push();
        m["data"]["size"] = json!(0);
        assert!(aliyun_problem(&obj(m), false).is_some(), "size 0");
        let mut m = ali_push();
        m["data"]["module"] = json!("");
        assert!(
            aliyun_problem(&obj(m), false).is_some(),
            "empty optional field"
        );
        // The documented "nothing pending" is fine in a get_reply, not in a push.
        let nothing = json!({"id": "1", "code": 200, "data": {}, "message": "success"});
        assert_eq!(aliyun_problem(&obj(nothing.clone()), true), None);
        assert!(aliyun_problem(&obj(nothing), false).is_some());
    }

    fn fog_post() -> Value {
        json!({"id": 5, "version": "1.0", "method": "firmware.post", "params": {
            "size": 10, "sign": MD5, "version": "2.0", "url": "http://h/f",
            "sign_method": "MD5", "module": "default", "description": "d", "task_id": "1",
            "checksum": "06000000"}})
    }

    #[test]
    fn fogcloud_firmware_post_needs_every_field_and_no_empty_reply() {
        assert_eq!(fogcloud_problem(&obj(fog_post())), None);
        for key in FOGCLOUD_POST {
            let mut m = fog_post();
            m["params"].as_object_mut().unwrap().remove(*key);
            assert!(fogcloud_problem(&obj(m),).is_some(), "without {key}");
        }
        let empty_reply =
            json!({"id": 5, "version": "1.0", "method": "firmware.post", "params": {}});
        assert!(fogcloud_problem(&obj(empty_reply)).is_some());
        let mut m = fog_post();
        m["params"]["description"] = json!("");
        assert!(fogcloud_problem(&obj(m)).is_some());
        let sub = json!({"id": 5, "method": "sub.firmware.post", "params": [{
            "identity": {"product_key": "pk", "device_name": "s1"},
            "size": 10, "sign": MD5, "version": "2.0", "url": "http://h/f",
            "sign_method": "MD5", "module": "default", "desc": "d", "task_id": "1",
            "checksum": "06000000"}]});
        assert_eq!(fogcloud_problem(&obj(sub.clone())), None);
        let mut broken = sub;
        broken["params"][0]
            .as_object_mut()
            .unwrap()
            .remove("task_id");
        assert!(fogcloud_problem(&obj(broken)).is_some());
        // Other methods are not notices.
        assert_eq!(fogcloud_problem(&obj(json!({"method": "x"}))), None);
    }

    #[test]
    fn dji_ota_create_needs_every_device_field() {
        let good = json!({"tid": "t", "bid": "b", "timestamp": 1, "method": "ota_create",
            "data": {"devices": [{"sn": "SN", "product_version": "2.0",
            "firmware_upgrade_type": 3, "file_url": "http://h/f", "md5": MD5,
            "file_size": 10, "file_name": "f.bin"}]}});
        assert_eq!(dji_problem(&obj(good.clone())), None);
        for key in DJI_DEVICE {
            let mut m = good.clone();
            m["data"]["devices"][0]
                .as_object_mut()
                .unwrap()
                .remove(*key);
            assert!(dji_problem(&obj(m)).is_some(), "without {key}");
        }
        let mut m = good;
        m["bid"] = json!("");
        assert!(dji_problem(&obj(m)).is_some());
        assert_eq!(dji_problem(&obj(json!({"method": "other"}))), None);
    }
}
