//! MXCHIP FogCloud OTA dialect: one JSON envelope `{"id","version":"1.0","method","params"}`
//! on `fogcloud/{pk}/{dn}/thing/up/ota` (device to console) and `.../thing/down/ota` (console to
//! device), the method saying what it is.
//!
//! Owns the decoding of `version.post`, `upgrade.post`, `firmware.get` and the gateway forms
//! `sub.version.post` / `sub.upgrade.post`, and the encoding of `firmware.post` and
//! `sub.firmware.post`. Pure: no I/O, no clock; never panics on device input.
//!
//! Sub-device arrays: each entry is decoded on its own. Entries that fail (bad identity, bad
//! field) are skipped with a warning in the log so one broken entry cannot hide the others'
//! reports; only when no entry is usable is the message refused, with the first entry's error.

use serde::Serialize;

use super::ID;
use crate::device_id::DeviceId;
use crate::protocol::fields::{self, Object};
use crate::protocol::{
    DecodeError, EncodeError, Event, FirmwareGet, MsgId, Notice, Outbound, Phase, ProgressReport,
    TaskRef, UpgradeNotice, UpgradeStatus, VersionReport,
};
use serde_json::Value;

/// What the console subscribes to: every device's uplink.
pub const SUBSCRIPTIONS: &[&str] = &["fogcloud/+/+/thing/up/ota"];

/// Whether `topic` has the shape of a FogCloud topic. Claimed broadly so a malformed FogCloud
/// topic gets a precise error from [`decode`].
pub fn owns_topic(topic: &str) -> bool {
    topic.starts_with("fogcloud/")
}

/// FogCloud has no sign method in its options: packages are always signed with MD5.
const SIGN_METHOD: &str = "MD5";
const ENVELOPE_VERSION: &str = "1.0";

fn parse_topic(topic: &str) -> Result<DeviceId, DecodeError> {
    match fields::topic_segments::<6>(topic) {
        Some(["fogcloud", pk, dn, "thing", "up", "ota"]) => Ok(DeviceId::fogcloud(pk, dn)?),
        _ => Err(DecodeError::UnknownTopic(
            crate::protocol::truncate_for_log(topic),
        )),
    }
}

/// How the fields of one report are named in errors: at the top (`params.step`) or inside a
/// gateway's array (`params[].step`).
struct Paths {
    version: &'static str,
    module: &'static str,
    step: &'static str,
    desc: &'static str,
    task_id: &'static str,
}

const TOP: Paths = Paths {
    version: "params.version",
    module: "params.module",
    step: "params.step",
    desc: "params.desc",
    task_id: "params.task_id",
};

const SUB: Paths = Paths {
    version: "params[].version",
    module: "params[].module",
    step: "params[].step",
    desc: "params[].desc",
    task_id: "params[].task_id",
};

type EntryDecoder = fn(&Object, DeviceId, Option<DeviceId>, &Paths) -> Result<Event, DecodeError>;

/// Decodes one message a device published on its FogCloud uplink.
pub fn decode(topic: &str, payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let device = parse_topic(topic)?;
    let root = crate::protocol::parse_json(payload)?;
    let root = fields::as_object(&root, "(payload)")?;
    let method = fields::required_token(root, "method", "method")?;
    match method {
        "version.post" => single(root, device, version_report),
        "upgrade.post" => single(root, device, progress_report),
        "firmware.get" => decode_firmware_get(root, device),
        "sub.version.post" => sub_entries(root, device, version_report),
        "sub.upgrade.post" => sub_entries(root, device, progress_report),
        "firmware.post" | "sub.firmware.post" => Err(DecodeError::BadValue {
            field: "method",
            detail: format!("{method} is sent by the cloud, not by devices"),
        }),
        other => Err(DecodeError::UnknownMethod(fields::short(other))),
    }
}

fn single(root: &Object, device: DeviceId, each: EntryDecoder) -> Result<Vec<Event>, DecodeError> {
    let params = fields::required_object(root, "params", "params")?;
    Ok(vec![each(params, device, None, &TOP)?])
}

fn sub_entries(
    root: &Object,
    gateway: DeviceId,
    each: EntryDecoder,
) -> Result<Vec<Event>, DecodeError> {
    let entries = fields::required(root, "params", "params")?
        .as_array()
        .ok_or(DecodeError::WrongType {
            field: "params",
            expected: "an array of sub-device entries",
        })?;
    let mut events = Vec::new();
    let mut first_error = None;
    for entry in entries {
        match sub_entry(entry, &gateway, each) {
            Ok(event) => events.push(event),
            Err(e) => {
                tracing::warn!(gateway = %gateway, error = %e, "skipping a bad sub-device entry");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if events.is_empty() => Err(e),
        None if events.is_empty() => Err(DecodeError::BadValue {
            field: "params",
            detail: "empty array: no sub-device reported".into(),
        }),
        _ => Ok(events),
    }
}

fn sub_entry(entry: &Value, gateway: &DeviceId, each: EntryDecoder) -> Result<Event, DecodeError> {
    let entry = fields::as_object(entry, "params[]")?;
    let identity = fields::required_object(entry, "identity", "params[].identity")?;
    let pk = fields::required_token(identity, "product_key", "params[].identity.product_key")?;
    let dn = fields::required_token(identity, "device_name", "params[].identity.device_name")?;
    let device = DeviceId::fogcloud(pk, dn)?;
    each(entry, device, Some(gateway.clone()), &SUB)
}

fn with_module(device: DeviceId, params: &Object, paths: &Paths) -> Result<DeviceId, DecodeError> {
    let module = fields::optional_token(params, "module", paths.module)?;
    Ok(device.with_module(module)?)
}

fn version_report(
    params: &Object,
    device: DeviceId,
    gateway: Option<DeviceId>,
    paths: &Paths,
) -> Result<Event, DecodeError> {
    let version = fields::version(params, "version", paths.version)?;
    Ok(Event::Version(VersionReport {
        device: with_module(device, params, paths)?,
        version,
        gateway,
    }))
}

fn progress_report(
    params: &Object,
    device: DeviceId,
    gateway: Option<DeviceId>,
    paths: &Paths,
) -> Result<Event, DecodeError> {
    let step = fields::saturating_int(fields::required(params, "step", paths.step)?, paths.step)?;
    let (status, percent, percent_clamped) = match step {
        0.. => {
            let (p, clamped) = fields::clamp_percent(step);
            (UpgradeStatus::InProgress, Some(p), clamped)
        }
        -1 => (UpgradeStatus::Failed(super::failure(-1)), None, false),
        _ => {
            return Err(DecodeError::BadValue {
                field: paths.step,
                detail: format!("{step} is neither a percentage nor the failure code -1"),
            });
        }
    };
    Ok(Event::Progress(ProgressReport {
        device: with_module(device, params, paths)?,
        task: task_ref(params, paths)?,
        status,
        phase: Phase::Unspecified,
        percent,
        percent_clamped,
        desc: fields::desc(params, "desc", paths.desc)?,
        gateway,
    }))
}

/// `task_id` as we sent it (an integer in a string); devices that echo it as a number are
/// accepted too. Absent or empty means the device did not say which task.
fn task_ref(params: &Object, paths: &Paths) -> Result<TaskRef, DecodeError> {
    let Some(value) = fields::optional(params, "task_id") else {
        return Ok(TaskRef::None);
    };
    let text = match value {
        Value::Number(_) => fields::exact_int(value, paths.task_id)?.to_string(),
        _ => fields::token(value, paths.task_id)?.trim().to_owned(),
    };
    Ok(if text.is_empty() {
        TaskRef::None
    } else {
        TaskRef::Key(text)
    })
}

fn decode_firmware_get(root: &Object, device: DeviceId) -> Result<Vec<Event>, DecodeError> {
    let id = fields::msg_id(fields::required(root, "id", "id")?, "id")?;
    let device = match fields::optional(root, "params") {
        Some(p) => with_module(device, fields::as_object(p, "params")?, &TOP)?,
        None => device,
    };
    Ok(vec![Event::FirmwareGet(FirmwareGet { device, id })])
}

#[derive(Serialize)]
struct Envelope<P: Serialize> {
    id: MsgId,
    version: &'static str,
    method: &'static str,
    params: P,
}

#[derive(Serialize)]
struct FirmwarePost<'a> {
    size: u64,
    sign: &'a str,
    version: &'a str,
    url: &'a str,
    sign_method: &'static str,
    checksum: &'a str,
    module: &'a str,
    description: &'a str,
    task_id: &'a str,
}

/// The notice's description, never empty (notes.md: a device treats a `firmware.post` with an
/// empty field as broken): the operator's text, else the file name, else the version (which
/// `check` guarantees).
fn description(offer: &crate::protocol::FirmwareOffer) -> &str {
    [&offer.description, &offer.file_name, &offer.version]
        .into_iter()
        .map(|s| s.as_str())
        .find(|s| !s.trim().is_empty())
        .unwrap_or(offer.version.as_str())
}

#[derive(Serialize)]
struct Identity<'a> {
    product_key: &'a str,
    device_name: &'a str,
}

#[derive(Serialize)]
struct SubFirmware<'a> {
    identity: Identity<'a>,
    size: u64,
    sign: &'a str,
    version: &'a str,
    url: &'a str,
    sign_method: &'static str,
    checksum: &'a str,
    module: &'a str,
    desc: &'a str,
    task_id: &'a str,
}

/// Encodes a notice for a FogCloud device or gateway.
pub fn encode(notice: &Notice) -> Result<Outbound, EncodeError> {
    match notice {
        Notice::Upgrade(n) => {
            let checked = check(n)?;
            match checked.gateway {
                None => {
                    let body = envelope(
                        MsgId::Num(checked.id),
                        "firmware.post",
                        firmware_post(&checked),
                    );
                    outbound(&n.device, &body)
                }
                Some(gateway) => {
                    let body = envelope(
                        MsgId::Num(checked.id),
                        "sub.firmware.post",
                        [sub_firmware(&checked)?],
                    );
                    outbound(gateway, &body)
                }
            }
        }
        Notice::FirmwareGetReply { request, pending } => match pending {
            // The answer to `firmware.get` is a `firmware.post` with the request's id.
            Some(n) => {
                if n.device.device() != request.device.device() {
                    return Err(EncodeError::Invalid(format!(
                        "reply to {} offers an upgrade for {}",
                        request.device, n.device
                    )));
                }
                let checked = check(n)?;
                let body = envelope(request.id.clone(), "firmware.post", firmware_post(&checked));
                outbound(&request.device, &body)
            }
            // notes.md: the document defines no empty reply, and a strict device counts a
            // `firmware.post` without fields as a broken notice: "nothing pending" is silence.
            None => Err(EncodeError::Invalid(format!(
                "FogCloud has no \"nothing pending\" reply to firmware.get (from {})",
                request.device
            ))),
        },
        Notice::Answer { .. } => Err(EncodeError::Invalid(
            "FogCloud devices expect no answers to their messages".into(),
        )),
    }
}

/// `sub.firmware.post` offering upgrades to several sub-devices of `gateway` in one message
/// (message id `id`); each notice must be addressed through that gateway.
pub fn encode_sub_firmware(
    gateway: &DeviceId,
    id: i64,
    notices: &[UpgradeNotice],
) -> Result<Outbound, EncodeError> {
    if notices.is_empty() {
        return Err(EncodeError::Invalid(format!(
            "sub.firmware.post to {gateway} with no sub-device"
        )));
    }
    let mut entries = Vec::with_capacity(notices.len());
    for n in notices {
        let checked = check(n)?;
        if checked.gateway != Some(gateway) {
            return Err(EncodeError::Invalid(format!(
                "{} is not addressed through gateway {gateway}",
                n.device
            )));
        }
        entries.push(sub_firmware(&checked)?);
    }
    outbound(
        gateway,
        &envelope(MsgId::Num(id), "sub.firmware.post", entries),
    )
}

fn envelope<P: Serialize>(id: MsgId, method: &'static str, params: P) -> Envelope<P> {
    Envelope {
        id,
        version: ENVELOPE_VERSION,
        method,
        params,
    }
}

/// An upgrade notice whose fields were checked against what FogCloud devices require.
struct Checked<'a> {
    notice: &'a UpgradeNotice,
    id: i64,
    task_id: &'a str,
    gateway: Option<&'a DeviceId>,
    module: &'a str,
}

fn check(n: &UpgradeNotice) -> Result<Checked<'_>, EncodeError> {
    let id = n.address.msg_id;
    let gateway = &n.address.gateway;
    let task_id = match &n.address.task {
        TaskRef::Key(key) => key.as_str(),
        TaskRef::None => "",
    };
    if n.device.dialect() != ID {
        return Err(EncodeError::DialectMismatch {
            device: n.device.clone(),
        });
    }
    if let Some(g) = gateway.as_ref().filter(|g| g.dialect() != ID) {
        return Err(EncodeError::DialectMismatch { device: g.clone() });
    }
    let invalid =
        |what: &str| EncodeError::Invalid(format!("upgrade notice for {}: {what}", n.device));
    let offer = &n.offer;
    for (name, value) in [
        ("version", &offer.version),
        ("url", &offer.url),
        ("md5", &offer.md5),
    ] {
        if value.is_empty() {
            return Err(invalid(&format!("{name} is empty")));
        }
    }
    if offer.size == 0 {
        return Err(invalid("size is 0"));
    }
    let is_checksum = offer.checksum.len() == 8
        && offer
            .checksum
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !is_checksum {
        return Err(invalid(&format!(
            "checksum {:?} is not 8 lowercase hex digits",
            offer.checksum
        )));
    }
    if task_id.is_empty() || !task_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(&format!(
            "task_id {task_id:?} is not an integer string"
        )));
    }
    Ok(Checked {
        notice: n,
        id,
        task_id,
        gateway: gateway.as_ref(),
        module: n.device.module().unwrap_or("default"),
    })
}

fn firmware_post<'a>(c: &Checked<'a>) -> FirmwarePost<'a> {
    let offer = &c.notice.offer;
    FirmwarePost {
        size: offer.size,
        sign: &offer.md5,
        version: &offer.version,
        url: &offer.url,
        sign_method: SIGN_METHOD,
        checksum: &offer.checksum,
        module: c.module,
        description: description(offer),
        task_id: c.task_id,
    }
}

fn sub_firmware<'a>(c: &Checked<'a>) -> Result<SubFirmware<'a>, EncodeError> {
    let device = &c.notice.device;
    let offer = &c.notice.offer;
    let product_key = device
        .product_key()
        .ok_or_else(|| EncodeError::DialectMismatch {
            device: device.clone(),
        })?;
    Ok(SubFirmware {
        identity: Identity {
            product_key,
            device_name: device.name(),
        },
        size: offer.size,
        sign: &offer.md5,
        version: &offer.version,
        url: &offer.url,
        sign_method: SIGN_METHOD,
        checksum: &offer.checksum,
        module: c.module,
        desc: description(offer),
        task_id: c.task_id,
    })
}

/// Serializes `body` for the downlink of `device` (a device or a gateway).
fn outbound(device: &DeviceId, body: &impl Serialize) -> Result<Outbound, EncodeError> {
    let (true, Some(pk)) = (device.dialect() == ID, device.product_key()) else {
        return Err(EncodeError::DialectMismatch {
            device: device.clone(),
        });
    };
    let payload = serde_json::to_vec(body).map_err(|e| EncodeError::Invalid(e.to_string()))?;
    Ok(Outbound {
        topic: format!("fogcloud/{pk}/{}/thing/down/ota", device.name()),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FirmwareOffer;
    use serde_json::json;

    const UP: &str = "fogcloud/pk/dn/thing/up/ota";

    fn dev() -> DeviceId {
        DeviceId::fogcloud("pk", "dn").unwrap()
    }

    fn sub(dn: &str) -> DeviceId {
        DeviceId::fogcloud("spk", dn).unwrap()
    }

    fn ok(v: Value) -> Vec<Event> {
        decode(UP, v.to_string().as_bytes()).unwrap()
    }

    fn err(v: Value) -> DecodeError {
        decode(UP, v.to_string().as_bytes()).unwrap_err()
    }

    fn msg(method: &str, params: Value) -> Value {
        json!({"id": 123, "version": "1.0", "method": method, "params": params})
    }

    fn progress(params: Value) -> ProgressReport {
        match ok(msg("upgrade.post", params)).remove(0) {
            Event::Progress(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn version_post_default_and_named_module() {
        let events = ok(msg(
            "version.post",
            json!({"version": "1.0.0", "module": "default"}),
        ));
        assert_eq!(
            events,
            vec![Event::Version(VersionReport {
                device: dev(),
                version: "1.0.0".into(),
                gateway: None
            })]
        );
        let events = ok(msg(
            "version.post",
            json!({"version": "1", "module": "mcu"}),
        ));
        assert_eq!(events[0].device().module(), Some("mcu"));
    }

    #[test]
    fn upgrade_post_fields() {
        let p = progress(json!({"step": 30, "desc": "d", "module": "mcu", "task_id": "123"}));
        assert_eq!(p.status, UpgradeStatus::InProgress);
        assert_eq!(p.percent, Some(30));
        assert_eq!(p.task, TaskRef::Key("123".into()));
        assert_eq!(p.desc.as_deref(), Some("d"));
        assert_eq!(p.device.module(), Some("mcu"));
        assert_eq!(
            progress(json!({"step": "7", "task_id": 123})).task,
            TaskRef::Key("123".into())
        );
        assert_eq!(progress(json!({"step": 7})).task, TaskRef::None);
        assert_eq!(
            progress(json!({"step": 7, "task_id": ""})).task,
            TaskRef::None
        );
        let failed = progress(json!({"step": -1}));
        assert_eq!(
            failed.status,
            UpgradeStatus::Failed(super::super::failure(-1))
        );
        assert_eq!(failed.percent, None);
        let clamped = progress(json!({"step": 250}));
        assert_eq!(
            (clamped.percent, clamped.percent_clamped),
            (Some(100), true)
        );
        let huge = progress(json!({"step": 1e300}));
        assert_eq!((huge.percent, huge.percent_clamped), (Some(100), true));
    }

    #[test]
    fn upgrade_post_errors() {
        assert!(matches!(
            err(msg("upgrade.post", json!({"step": -2}))),
            DecodeError::BadValue {
                field: "params.step",
                ..
            }
        ));
        assert_eq!(
            err(msg("upgrade.post", json!({}))),
            DecodeError::MissingField("params.step")
        );
        assert!(matches!(
            err(msg("upgrade.post", json!({"step": 1, "task_id": 1.5}))),
            DecodeError::BadValue {
                field: "params.task_id",
                ..
            }
        ));
        assert!(matches!(
            err(msg("upgrade.post", json!({"step": 1, "task_id": [1]}))),
            DecodeError::WrongType {
                field: "params.task_id",
                ..
            }
        ));
        assert!(matches!(
            err(msg("upgrade.post", json!({"step": 1, "module": "a+b"}))),
            DecodeError::BadIdentity(_)
        ));
    }

    #[test]
    fn firmware_get_keeps_id() {
        let events = ok(msg("firmware.get", json!({"module": "string"})));
        assert_eq!(
            events,
            vec![Event::FirmwareGet(FirmwareGet {
                device: dev().with_module(Some("string")).unwrap(),
                id: MsgId::Num(123)
            })]
        );
        assert_eq!(
            err(json!({"method": "firmware.get", "params": {}})),
            DecodeError::MissingField("id")
        );
        assert!(matches!(
            err(json!({"id": 1, "method": "firmware.get", "params": 3})),
            DecodeError::WrongType {
                field: "params",
                ..
            }
        ));
    }

    #[test]
    fn envelope_errors() {
        assert_eq!(
            err(json!({"id": 1, "params": {}})),
            DecodeError::MissingField("method")
        );
        assert!(matches!(
            err(json!({"method": 5, "params": {}})),
            DecodeError::WrongType {
                field: "method",
                ..
            }
        ));
        assert!(matches!(
            err(msg("reboot", json!({}))),
            DecodeError::UnknownMethod(_)
        ));
        assert!(matches!(
            err(msg("firmware.post", json!({}))),
            DecodeError::BadValue {
                field: "method",
                ..
            }
        ));
        assert_eq!(
            err(json!({"method": "version.post"})),
            DecodeError::MissingField("params")
        );
        assert!(matches!(
            err(msg("version.post", json!([]))),
            DecodeError::WrongType {
                field: "params",
                ..
            }
        ));
        assert!(matches!(
            err(json!("x")),
            DecodeError::WrongType {
                field: "(payload)",
                ..
            }
        ));
    }

    fn entry(dn: &str, version: &str) -> Value {
        json!({"identity": {"product_key": "spk", "device_name": dn}, "version": version, "module": "default"})
    }

    #[test]
    fn sub_version_post_one_event_per_entry() {
        let events = ok(msg(
            "sub.version.post",
            json!([entry("a", "1"), entry("b", "2")]),
        ));
        assert_eq!(
            events,
            vec![
                Event::Version(VersionReport {
                    device: sub("a"),
                    version: "1".into(),
                    gateway: Some(dev())
                }),
                Event::Version(VersionReport {
                    device: sub("b"),
                    version: "2".into(),
                    gateway: Some(dev())
                }),
            ]
        );
    }

    #[test]
    fn sub_entries_with_bad_identity_are_skipped() {
        let bad_identity =
            json!({"identity": {"product_key": "spk", "device_name": "x/y"}, "version": "1"});
        let no_identity = json!({"version": "1"});
        let bad_version =
            json!({"identity": {"product_key": "spk", "device_name": "c"}, "version": 1});
        let events = ok(msg(
            "sub.version.post",
            json!([bad_identity, entry("a", "1"), no_identity, bad_version, 5]),
        ));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].device(), &sub("a"));

        // None valid: the first entry's error.
        assert!(matches!(
            err(msg("sub.version.post", json!([bad_identity, no_identity]))),
            DecodeError::BadIdentity(_)
        ));
        assert_eq!(
            err(msg("sub.version.post", json!([no_identity]))),
            DecodeError::MissingField("params[].identity")
        );
        assert!(matches!(
            err(msg(
                "sub.version.post",
                json!([{"identity": {"product_key": 1, "device_name": "d"}, "version": "1"}])
            )),
            DecodeError::WrongType {
                field: "params[].identity.product_key",
                ..
            }
        ));
        assert!(matches!(
            err(msg("sub.version.post", json!([]))),
            DecodeError::BadValue {
                field: "params",
                ..
            }
        ));
        assert!(matches!(
            err(msg("sub.version.post", json!({}))),
            DecodeError::WrongType {
                field: "params",
                ..
            }
        ));
        assert!(matches!(
            err(msg(
                "sub.upgrade.post",
                json!([{"identity": {"product_key": "spk", "device_name": "d"}}])
            )),
            DecodeError::MissingField("params[].step")
        ));
    }

    #[test]
    fn sub_upgrade_post_carries_gateway_and_task() {
        let events = ok(msg(
            "sub.upgrade.post",
            json!([{"identity": {"product_key": "spk", "device_name": "a"}, "step": -1, "module": "mcu", "task_id": "9"}]),
        ));
        let Event::Progress(p) = &events[0] else {
            panic!()
        };
        assert_eq!(p.device, sub("a").with_module(Some("mcu")).unwrap());
        assert_eq!(p.gateway, Some(dev()));
        assert_eq!(p.task, TaskRef::Key("9".into()));
        assert_eq!(p.status, UpgradeStatus::Failed(super::super::failure(-1)));
    }

    #[test]
    fn payload_errors() {
        let big = vec![b' '; crate::protocol::MAX_PAYLOAD_BYTES + 1];
        assert_eq!(
            decode(UP, &big),
            Err(DecodeError::TooLarge { len: big.len() })
        );
        for bad in [&b""[..], b"\xff", b"{\"method\":", b"[1,2"] {
            assert!(matches!(decode(UP, bad), Err(DecodeError::Json(_))));
        }
        assert!(matches!(
            err(msg("sub.version.post", json!([5]))),
            DecodeError::WrongType {
                field: "params[]",
                ..
            }
        ));
        assert!(matches!(
            err(msg(
                "sub.version.post",
                json!([{"identity": 5, "version": "1"}])
            )),
            DecodeError::WrongType {
                field: "params[].identity",
                ..
            }
        ));
        assert!(matches!(
            err(msg(
                "sub.upgrade.post",
                json!([{"identity": {"product_key": "p", "device_name": "d"}, "step": -7}])
            )),
            DecodeError::BadValue {
                field: "params[].step",
                ..
            }
        ));
        assert!(matches!(
            err(msg("version.post", json!({"version": "x".repeat(200)}))),
            DecodeError::BadValue {
                field: "params.version",
                ..
            }
        ));
    }

    #[test]
    fn bad_topics() {
        let body = msg("version.post", json!({"version": "1"})).to_string();
        for topic in [
            "fogcloud/pk/dn/thing/down/ota",
            "fogcloud/pk/dn/thing/up/ota/x",
            "fogcloud/pk/thing/up/ota",
            "fogcloud/pk/dn/thing/up/other",
        ] {
            assert!(
                matches!(
                    decode(topic, body.as_bytes()),
                    Err(DecodeError::UnknownTopic(_))
                ),
                "{topic}"
            );
        }
        for topic in [
            "fogcloud//dn/thing/up/ota",
            "fogcloud/pk/+/thing/up/ota",
            "fogcloud/#/dn/thing/up/ota",
        ] {
            assert!(
                matches!(
                    decode(topic, body.as_bytes()),
                    Err(DecodeError::BadIdentity(_))
                ),
                "{topic}"
            );
        }
        assert!(SUBSCRIPTIONS.iter().all(|s| owns_topic(s)));
        assert!(!owns_topic("/ota/device/inform/pk/dn"));
    }

    fn offer() -> FirmwareOffer {
        FirmwareOffer {
            version: "1.0.1".into(),
            url: "https://h/f".into(),
            size: 3,
            md5: "f8d8".into(),
            sha256: "ab".into(),
            checksum: "06000000".into(),
            file_name: "f.bin".into(),
            description: "desc".into(),
        }
    }

    fn notice(device: DeviceId, gateway: Option<DeviceId>) -> UpgradeNotice {
        UpgradeNotice {
            device,
            offer: offer(),
            address: crate::protocol::NoticeAddress {
                msg_id: 5,
                task: TaskRef::Key("123".into()),
                gateway,
                ..Default::default()
            },
            settings: crate::protocol::SettingValues::default(),
        }
    }

    fn body(o: &Outbound) -> Value {
        serde_json::from_slice(&o.payload).unwrap()
    }

    #[test]
    fn firmware_post_shape() {
        let o = encode(&Notice::Upgrade(notice(dev(), None))).unwrap();
        assert_eq!(o.topic, "fogcloud/pk/dn/thing/down/ota");
        assert_eq!(
            body(&o),
            json!({"id": 5, "version": "1.0", "method": "firmware.post", "params": {
                "size": 3, "sign": "f8d8", "version": "1.0.1", "url": "https://h/f",
                "sign_method": "MD5", "checksum": "06000000", "module": "default",
                "description": "desc", "task_id": "123"}})
        );
        let o = encode(&Notice::Upgrade(notice(
            dev().with_module(Some("mcu")).unwrap(),
            None,
        )))
        .unwrap();
        assert_eq!(body(&o)["params"]["module"], "mcu");
    }

    #[test]
    fn an_empty_description_is_never_sent() {
        let mut n = notice(dev(), None);
        n.offer.description.clear();
        let b = body(&encode(&Notice::Upgrade(n.clone())).unwrap());
        assert_eq!(b["params"]["description"], n.offer.file_name.as_str());
        n.offer.file_name = " ".into();
        let b = body(&encode(&Notice::Upgrade(n.clone())).unwrap());
        assert_eq!(b["params"]["description"], "1.0.1");
        let mut n = notice(sub("a"), Some(dev()));
        n.offer.description.clear();
        let b = body(&encode(&Notice::Upgrade(n.clone())).unwrap());
        assert_eq!(b["params"][0]["desc"], n.offer.file_name.as_str());
    }

    #[test]
    fn sub_device_upgrade_goes_to_gateway() {
        let o = encode(&Notice::Upgrade(notice(sub("a"), Some(dev())))).unwrap();
        assert_eq!(o.topic, "fogcloud/pk/dn/thing/down/ota");
        let b = body(&o);
        assert_eq!(b["method"], "sub.firmware.post");
        assert_eq!(
            b["params"][0]["identity"],
            json!({"product_key": "spk", "device_name": "a"})
        );
        assert_eq!(b["params"][0]["desc"], "desc");
        assert_eq!(b["params"][0]["task_id"], "123");
    }

    #[test]
    fn sub_firmware_many() {
        let notices = [notice(sub("a"), Some(dev())), notice(sub("b"), Some(dev()))];
        let b = body(&encode_sub_firmware(&dev(), 77, &notices).unwrap());
        assert_eq!(b["id"], 77);
        assert_eq!(b["params"].as_array().unwrap().len(), 2);
        assert_eq!(b["params"][1]["identity"]["device_name"], "b");

        let wrong_gateway = [notice(sub("a"), None)];
        assert!(matches!(
            encode_sub_firmware(&dev(), 1, &wrong_gateway),
            Err(EncodeError::Invalid(_))
        ));
        assert!(matches!(
            encode_sub_firmware(&dev(), 1, &[]),
            Err(EncodeError::Invalid(_))
        ));
    }

    #[test]
    fn encode_refuses_bad_fields() {
        let edits: [fn(&mut UpgradeNotice); 7] = [
            |n| n.offer.version.clear(),
            |n| n.offer.url.clear(),
            |n| n.offer.md5.clear(),
            |n| n.offer.size = 0,
            |n| n.offer.checksum = "0600000".into(),
            |n| n.offer.checksum = "0600000G".into(),
            |n| n.address.task = TaskRef::Key("12a".into()),
        ];
        for edit in edits {
            let mut n = notice(dev(), None);
            edit(&mut n);
            assert!(matches!(
                encode(&Notice::Upgrade(n)),
                Err(EncodeError::Invalid(_))
            ));
        }
        let mut n = notice(dev(), None);
        n.offer.checksum = "0600000A".into();
        assert!(
            encode(&Notice::Upgrade(n)).is_err(),
            "uppercase hex is refused"
        );

        let mut n = notice(dev(), None);
        n.address.task = TaskRef::None;
        assert!(matches!(
            encode(&Notice::Upgrade(n)),
            Err(EncodeError::Invalid(_))
        ));
        let mut n = notice(dev(), None);
        n.device = DeviceId::aliyun("pk", "dn").unwrap();
        assert!(matches!(
            encode(&Notice::Upgrade(n)),
            Err(EncodeError::DialectMismatch { .. })
        ));
        let n = notice(dev(), Some(DeviceId::dji("GW").unwrap()));
        assert!(matches!(
            encode(&Notice::Upgrade(n)),
            Err(EncodeError::DialectMismatch { .. })
        ));
    }

    #[test]
    fn firmware_get_reply_same_id() {
        let request = FirmwareGet {
            device: dev(),
            id: MsgId::Num(4242),
        };
        // No empty `firmware.post` exists (notes.md): "nothing pending" cannot be encoded.
        assert!(matches!(
            encode(&Notice::FirmwareGetReply {
                request: request.clone(),
                pending: None,
            }),
            Err(EncodeError::Invalid(_))
        ));
        let o = encode(&Notice::FirmwareGetReply {
            request: request.clone(),
            pending: Some(notice(dev(), None)),
        })
        .unwrap();
        let b = body(&o);
        assert_eq!(b["id"], 4242, "the request's id, not the notice's");
        assert_eq!(b["params"]["task_id"], "123");
        assert!(matches!(
            encode(&Notice::FirmwareGetReply {
                request,
                pending: Some(notice(sub("x"), None))
            }),
            Err(EncodeError::Invalid(_))
        ));
    }
}
