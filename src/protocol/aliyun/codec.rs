//! Alibaba Cloud IoT OTA dialect (`/ota/device/...` and `/sys/.../thing/ota/firmware/...`).
//!
//! Owns the topic shapes and payloads of Alibaba's OTA: version reports (inform), progress,
//! the device's `thing.ota.firmware.get`, and what we send back: the upgrade push and the
//! `get_reply`. Pure: no I/O, no clock; never panics on device input.
//!
//! What we send follows the device SDKs to the letter (`signMethod` spelled `Md5`/`SHA256`,
//! `md5` in lowercase hex in every notice whatever the sign method (the C 3.x SDKs read only
//! `md5` and drop a notice without it), `message` exactly `"success"`, `size` the exact byte
//! count, `module` left out for the default module, every field non-empty); what
//! we accept is liberal (`step` and `id` as string or number, `null` as absent).

use serde::{Deserialize, Serialize};

use super::{ID, SIGN_METHOD};
use crate::device_id::DeviceId;
use crate::protocol::fields::{self, Object};
use crate::protocol::{
    DecodeError, EncodeError, Event, Failure, FirmwareGet, MsgId, Notice, Outbound, Phase,
    ProgressReport, TaskRef, UpgradeNotice, UpgradeStatus, VersionReport,
};

/// What the console subscribes to: everything devices send about OTA.
pub const SUBSCRIPTIONS: &[&str] = &[
    "/ota/device/inform/+/+",
    "/ota/device/progress/+/+",
    "/sys/+/+/thing/ota/firmware/get",
];

/// Whether `topic` has the shape of an Alibaba OTA topic (either direction). Claimed broadly so
/// a malformed Alibaba topic gets a precise error from [`decode`] instead of "unknown topic".
pub fn owns_topic(topic: &str) -> bool {
    topic.starts_with("/ota/device/")
        || (topic.starts_with("/sys/") && topic.contains("/thing/ota/"))
}

/// What a progress `step` of -1..-4 means (`None` for percentages and unknown codes). The same
/// wording as [`Failure::describe`].
pub fn describe_step(step: i64) -> Option<&'static str> {
    super::ERRORS.meaning(step)
}

fn failure_of_step(step: i64) -> Option<Failure> {
    describe_step(step).map(|_| super::failure(step))
}

/// How the firmware's signature is computed (Alibaba `signMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SignMethod {
    #[default]
    Md5,
    Sha256,
}

/// Parses `signMethod` as devices and examples spell it (`Md5`, `MD5`, `md5`, `SHA256`,
/// `sha256`, `SHA-256`).
pub fn parse_sign_method(text: &str) -> Option<SignMethod> {
    match text.trim().to_ascii_lowercase().as_str() {
        "md5" => Some(SignMethod::Md5),
        "sha256" | "sha-256" => Some(SignMethod::Sha256),
        _ => None,
    }
}

/// `signMethod` exactly as the device SDKs compare it.
pub fn sign_method_wire(method: SignMethod) -> &'static str {
    match method {
        SignMethod::Md5 => "Md5",
        SignMethod::Sha256 => "SHA256",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Uplink {
    Inform,
    Progress,
    FirmwareGet,
}

fn unknown_topic(topic: &str) -> DecodeError {
    DecodeError::UnknownTopic(crate::protocol::truncate_for_log(topic))
}

fn parse_topic(topic: &str) -> Result<(Uplink, DeviceId), DecodeError> {
    if let Some(["", "ota", "device", kind, pk, dn]) = fields::topic_segments::<6>(topic) {
        let kind = match kind {
            "inform" => Uplink::Inform,
            "progress" => Uplink::Progress,
            _ => return Err(unknown_topic(topic)),
        };
        return Ok((kind, DeviceId::aliyun(pk, dn)?));
    }
    if let Some(["", "sys", pk, dn, "thing", "ota", "firmware", "get"]) =
        fields::topic_segments::<8>(topic)
    {
        return Ok((Uplink::FirmwareGet, DeviceId::aliyun(pk, dn)?));
    }
    Err(unknown_topic(topic))
}

/// Decodes one message a device published on an Alibaba OTA topic.
pub fn decode(topic: &str, payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let (kind, device) = parse_topic(topic)?;
    let root = crate::protocol::parse_json(payload)?;
    let root = fields::as_object(&root, "(payload)")?;
    let event = match kind {
        Uplink::Inform => decode_inform(root, device)?,
        Uplink::Progress => decode_progress(root, device)?,
        Uplink::FirmwareGet => decode_firmware_get(root, device)?,
    };
    Ok(vec![event])
}

fn with_module(device: DeviceId, params: &Object) -> Result<DeviceId, DecodeError> {
    let module = fields::optional_token(params, "module", "params.module")?;
    Ok(device.with_module(module)?)
}

fn decode_inform(root: &Object, device: DeviceId) -> Result<Event, DecodeError> {
    let params = fields::required_object(root, "params", "params")?;
    let version = fields::version(params, "version", "params.version")?;
    Ok(Event::Version(VersionReport {
        device: with_module(device, params)?,
        version,
        gateway: None,
    }))
}

fn decode_progress(root: &Object, device: DeviceId) -> Result<Event, DecodeError> {
    let params = fields::required_object(root, "params", "params")?;
    let step = fields::saturating_int(
        fields::required(params, "step", "params.step")?,
        "params.step",
    )?;
    let (status, percent, percent_clamped) = if step >= 0 {
        let (p, clamped) = fields::clamp_percent(step);
        (UpgradeStatus::InProgress, Some(p), clamped)
    } else {
        let failure = failure_of_step(step).ok_or_else(|| DecodeError::BadValue {
            field: "params.step",
            detail: format!("{step} is neither a percentage nor a failure code -1..-4"),
        })?;
        (UpgradeStatus::Failed(failure), None, false)
    };
    Ok(Event::Progress(ProgressReport {
        device: with_module(device, params)?,
        task: TaskRef::None,
        status,
        phase: Phase::Unspecified,
        percent,
        percent_clamped,
        desc: fields::desc(params, "desc", "params.desc")?,
        gateway: None,
    }))
}

fn decode_firmware_get(root: &Object, device: DeviceId) -> Result<Event, DecodeError> {
    let id = fields::msg_id(fields::required(root, "id", "id")?, "id")?;
    // `params` (and its `module`) may be left out: then the device asks about its default module.
    let device = match fields::optional(root, "params") {
        Some(p) => with_module(device, fields::as_object(p, "params")?)?,
        None => device,
    };
    Ok(Event::FirmwareGet(FirmwareGet { device, id }))
}

/// The `data` object of the upgrade push and of a non-empty `get_reply`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PushData<'a> {
    size: u64,
    version: &'a str,
    url: &'a str,
    sign_method: &'static str,
    sign: &'a str,
    /// Always present: device SDKs of the C 3.x line verify with `md5` only (notes.md).
    md5: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    module: Option<&'a str>,
}

#[derive(Serialize)]
struct UpgradePush<'a> {
    code: &'static str,
    data: PushData<'a>,
    id: i64,
    message: &'static str,
}

/// Serializes as `{}`: the get_reply's "nothing pending".
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(untagged)]
enum ReplyData<'a> {
    Pending(PushData<'a>),
    Nothing(Empty),
}

#[derive(Serialize)]
struct GetReply<'a> {
    id: &'a MsgId,
    code: u16,
    data: ReplyData<'a>,
    message: &'static str,
}

/// Encodes a notice for an Alibaba device.
pub fn encode(notice: &Notice) -> Result<Outbound, EncodeError> {
    match notice {
        Notice::Upgrade(n) => {
            let (id, data) = push_data(n)?;
            let body = UpgradePush {
                code: "1000",
                data,
                id,
                message: "success",
            };
            let (pk, dn) = topic_identity(&n.device)?;
            outbound(format!("/ota/device/upgrade/{pk}/{dn}"), &body)
        }
        Notice::FirmwareGetReply { request, pending } => {
            let data = match pending {
                Some(n) => {
                    if n.device.device() != request.device.device() {
                        return Err(EncodeError::Invalid(format!(
                            "get_reply to {} offers an upgrade for {}",
                            request.device, n.device
                        )));
                    }
                    ReplyData::Pending(push_data(n)?.1)
                }
                None => ReplyData::Nothing(Empty {}),
            };
            let body = GetReply {
                id: &request.id,
                code: 200,
                data,
                message: "success",
            };
            let (pk, dn) = topic_identity(&request.device)?;
            outbound(
                format!("/sys/{pk}/{dn}/thing/ota/firmware/get_reply"),
                &body,
            )
        }
        Notice::Answer { .. } => Err(EncodeError::Invalid(
            "Alibaba devices expect no answers to their messages".into(),
        )),
    }
}

/// The message id and `data` of an upgrade notice, after checking that every field the device
/// SDKs require is present.
fn push_data(n: &UpgradeNotice) -> Result<(i64, PushData<'_>), EncodeError> {
    let id = n.address.msg_id;
    let sign_method = parse_sign_method(n.settings.value_of(&SIGN_METHOD)).unwrap_or_default();
    if n.device.dialect() != ID {
        return Err(EncodeError::DialectMismatch {
            device: n.device.clone(),
        });
    }
    let offer = &n.offer;
    let sign = match sign_method {
        SignMethod::Md5 => offer.md5.as_str(),
        SignMethod::Sha256 => offer.sha256.as_str(),
    };
    for (name, value) in [
        ("version", offer.version.as_str()),
        ("url", offer.url.as_str()),
        ("sign", sign),
        ("md5", offer.md5.as_str()),
    ] {
        if value.is_empty() {
            return Err(EncodeError::Invalid(format!(
                "upgrade notice for {}: {name} is empty, and Alibaba device SDKs require it",
                n.device
            )));
        }
    }
    if offer.size == 0 {
        return Err(EncodeError::Invalid(format!(
            "upgrade notice for {}: size is 0",
            n.device
        )));
    }
    Ok((
        id,
        PushData {
            size: offer.size,
            version: &offer.version,
            url: &offer.url,
            sign_method: sign_method_wire(sign_method),
            sign,
            md5: offer.md5.to_ascii_lowercase(),
            module: n.device.module(),
        },
    ))
}

/// The product key and device name that go into an Alibaba device's topics.
fn topic_identity(device: &DeviceId) -> Result<(&str, &str), EncodeError> {
    match (device.dialect(), device.product_key()) {
        (dialect, Some(pk)) if dialect == ID => Ok((pk, device.name())),
        _ => Err(EncodeError::DialectMismatch {
            device: device.clone(),
        }),
    }
}

fn outbound(topic: String, body: &impl Serialize) -> Result<Outbound, EncodeError> {
    let payload = serde_json::to_vec(body).map_err(|e| EncodeError::Invalid(e.to_string()))?;
    Ok(Outbound { topic, payload })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FirmwareOffer;
    use serde_json::{Value, json};

    const INFORM: &str = "/ota/device/inform/pk/dn";
    const PROGRESS: &str = "/ota/device/progress/pk/dn";
    const GET: &str = "/sys/pk/dn/thing/ota/firmware/get";

    fn dev() -> DeviceId {
        DeviceId::aliyun("pk", "dn").unwrap()
    }

    fn one(topic: &str, v: Value) -> Event {
        let mut events = decode(topic, v.to_string().as_bytes()).unwrap();
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    fn err(topic: &str, v: Value) -> DecodeError {
        decode(topic, v.to_string().as_bytes()).unwrap_err()
    }

    fn progress(v: Value) -> ProgressReport {
        match one(PROGRESS, v) {
            Event::Progress(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inform_with_and_without_module() {
        let e = one(
            INFORM,
            json!({"id": "1", "params": {"version": "1.0.1", "module": "MCU"}}),
        );
        assert_eq!(
            e,
            Event::Version(VersionReport {
                device: dev().with_module(Some("MCU")).unwrap(),
                version: "1.0.1".into(),
                gateway: None
            })
        );
        for params in [
            json!({"version": "2"}),
            json!({"version": "2", "module": "default"}),
            json!({"version": "2", "module": null}),
        ] {
            assert_eq!(
                one(INFORM, json!({"id": 1, "params": params})).device(),
                &dev()
            );
        }
    }

    #[test]
    fn inform_errors_name_the_field() {
        assert_eq!(
            err(INFORM, json!({"id": 1})),
            DecodeError::MissingField("params")
        );
        assert_eq!(
            err(INFORM, json!({"params": {}})),
            DecodeError::MissingField("params.version")
        );
        assert!(matches!(
            err(INFORM, json!({"params": {"version": 1}})),
            DecodeError::WrongType {
                field: "params.version",
                ..
            }
        ));
        assert!(matches!(
            err(INFORM, json!({"params": {"version": ""}})),
            DecodeError::BadValue {
                field: "params.version",
                ..
            }
        ));
        assert!(matches!(
            err(INFORM, json!({"params": {"version": "1", "module": 3}})),
            DecodeError::WrongType {
                field: "params.module",
                ..
            }
        ));
        assert!(matches!(
            err(INFORM, json!({"params": {"version": "1", "module": "a/b"}})),
            DecodeError::BadIdentity(_)
        ));
        assert!(matches!(
            err(INFORM, json!({"params": []})),
            DecodeError::WrongType {
                field: "params",
                ..
            }
        ));
        assert!(matches!(
            err(INFORM, json!([1])),
            DecodeError::WrongType {
                field: "(payload)",
                ..
            }
        ));
        assert!(matches!(
            decode(INFORM, b"{not json"),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn progress_percent_as_string_or_number() {
        for step in [json!("42"), json!(42), json!(42.0), json!(" 42 ")] {
            let p = progress(
                json!({"id": "1", "params": {"step": step, "desc": "d", "module": "MCU"}}),
            );
            assert_eq!(p.percent, Some(42));
            assert_eq!(p.status, UpgradeStatus::InProgress);
            assert_eq!(p.desc.as_deref(), Some("d"));
            assert_eq!(p.device.module(), Some("MCU"));
            assert!(!p.percent_clamped);
        }
        assert_eq!(progress(json!({"params": {"step": "0"}})).percent, Some(0));
    }

    #[test]
    fn progress_failures() {
        for (step, failure) in [
            ("-1", super::super::failure(-1)),
            ("-2", super::super::failure(-2)),
            ("-3", super::super::failure(-3)),
            ("-4", super::super::failure(-4)),
        ] {
            let p = progress(json!({"params": {"step": step}}));
            assert_eq!(p.status, UpgradeStatus::Failed(failure));
            assert_eq!(p.percent, None);
        }
        assert!(matches!(
            err(PROGRESS, json!({"params": {"step": "-5"}})),
            DecodeError::BadValue {
                field: "params.step",
                ..
            }
        ));
        assert!(matches!(
            err(PROGRESS, json!({"params": {"step": -1e300}})),
            DecodeError::BadValue {
                field: "params.step",
                ..
            }
        ));
    }

    #[test]
    fn progress_out_of_range_is_clamped() {
        for step in [json!("101"), json!(1e300), json!(u64::MAX), json!("1e300")] {
            let p = progress(json!({"params": {"step": step}}));
            assert_eq!((p.percent, p.percent_clamped), (Some(100), true));
        }
    }

    #[test]
    fn progress_errors_name_the_field() {
        assert_eq!(
            err(PROGRESS, json!({"params": {"desc": "x"}})),
            DecodeError::MissingField("params.step")
        );
        assert!(matches!(
            err(PROGRESS, json!({"params": {"step": "abc"}})),
            DecodeError::BadValue {
                field: "params.step",
                ..
            }
        ));
        assert!(matches!(
            err(PROGRESS, json!({"params": {"step": [1]}})),
            DecodeError::WrongType {
                field: "params.step",
                ..
            }
        ));
        assert!(matches!(
            err(PROGRESS, json!({"params": {"step": 1, "desc": 5}})),
            DecodeError::WrongType {
                field: "params.desc",
                ..
            }
        ));
    }

    #[test]
    fn firmware_get_echoes_id() {
        let e = one(
            GET,
            json!({"id": "77", "version": "1.0", "params": {"module": "MCU"}, "method": "thing.ota.firmware.get"}),
        );
        assert_eq!(
            e,
            Event::FirmwareGet(FirmwareGet {
                device: dev().with_module(Some("MCU")).unwrap(),
                id: MsgId::Str("77".into())
            })
        );
        let Event::FirmwareGet(g) = one(GET, json!({"id": 5})) else {
            panic!()
        };
        assert_eq!((g.id, g.device), (MsgId::Num(5), dev()));
        assert_eq!(
            err(GET, json!({"params": {}})),
            DecodeError::MissingField("id")
        );
        assert!(matches!(
            err(GET, json!({"id": [1]})),
            DecodeError::WrongType { field: "id", .. }
        ));
        assert!(matches!(
            err(GET, json!({"id": 1, "params": "x"})),
            DecodeError::WrongType {
                field: "params",
                ..
            }
        ));
    }

    #[test]
    fn bad_topics() {
        let body = json!({"params": {"version": "1"}});
        for topic in [
            "/ota/device/inform/pk/dn/extra",
            "/ota/device/inform/pk",
            "/ota/device/upgrade/pk/dn",
            "/ota/device/whatever/pk/dn",
            "/sys/pk/dn/thing/ota/firmware/get_reply",
            "/sys/pk/dn/thing/ota/firmware/get/x",
        ] {
            assert!(
                matches!(err(topic, body.clone()), DecodeError::UnknownTopic(_)),
                "{topic}"
            );
        }
        for topic in [
            "/ota/device/inform//dn",
            "/ota/device/inform/pk/",
            "/ota/device/inform/+/dn",
            "/ota/device/inform/pk/#",
            "/sys/p+k/dn/thing/ota/firmware/get",
        ] {
            assert!(
                matches!(err(topic, body.clone()), DecodeError::BadIdentity(_)),
                "{topic}"
            );
        }
        assert!(owns_topic("/ota/device/anything"));
        assert!(owns_topic("/sys/pk/dn/thing/ota/firmware/get"));
        assert!(!owns_topic("/sys/pk/dn/thing/event/property/post"));
        assert!(!owns_topic("sys/product/sn/status"));
        assert!(SUBSCRIPTIONS.iter().all(|s| owns_topic(s)));
    }

    #[test]
    fn payload_errors() {
        let big = vec![b' '; crate::protocol::MAX_PAYLOAD_BYTES + 1];
        assert_eq!(
            decode(INFORM, &big),
            Err(DecodeError::TooLarge { len: big.len() })
        );
        for bad in [&b""[..], b"\xff\xfe", b"{\"id\":1,", b"nul"] {
            assert!(matches!(decode(PROGRESS, bad), Err(DecodeError::Json(_))));
        }
        // A bad topic is reported before the payload is even parsed.
        assert!(matches!(
            decode("/ota/device/inform/pk/dn/x", b"garbage"),
            Err(DecodeError::UnknownTopic(_))
        ));
    }

    #[test]
    fn describe_steps() {
        assert_eq!(describe_step(-1), Some("upgrade failed"));
        assert_eq!(describe_step(-2), Some("download failed"));
        assert!(describe_step(-3).unwrap().contains("verification"));
        assert!(describe_step(-4).unwrap().contains("flash"));
        assert_eq!(describe_step(0), None);
        assert_eq!(describe_step(50), None);
        assert_eq!(describe_step(-5), None);
        for step in -4..=-1 {
            let failure = failure_of_step(step).unwrap();
            assert_eq!(
                describe_step(step),
                Some(crate::protocol::registry::describe(&failure).as_str())
            );
            assert_eq!(failure.code(), step);
        }
    }

    #[test]
    fn sign_methods_parse_case_insensitively() {
        for s in ["Md5", "MD5", "md5", " md5 "] {
            assert_eq!(parse_sign_method(s), Some(SignMethod::Md5));
        }
        for s in ["SHA256", "sha256", "Sha-256"] {
            assert_eq!(parse_sign_method(s), Some(SignMethod::Sha256));
        }
        assert_eq!(parse_sign_method("crc32"), None);
        for m in [SignMethod::Md5, SignMethod::Sha256] {
            assert_eq!(parse_sign_method(sign_method_wire(m)), Some(m));
        }
    }

    fn offer() -> FirmwareOffer {
        FirmwareOffer {
            version: "2-0-0".into(),
            url: "https://h/f.zip".into(),
            size: 11,
            md5: "aa".into(),
            sha256: "bb".into(),
            checksum: "06000000".into(),
            file_name: "f.zip".into(),
            description: "d".into(),
        }
    }

    fn notice(device: DeviceId, sign_method: SignMethod) -> UpgradeNotice {
        UpgradeNotice {
            device,
            offer: offer(),
            address: crate::protocol::NoticeAddress {
                msg_id: 9,
                ..Default::default()
            },
            settings: super::super::settings(sign_method),
        }
    }

    fn body(o: &Outbound) -> Value {
        serde_json::from_slice(&o.payload).unwrap()
    }

    #[test]
    fn push_md5_default_module() {
        let o = encode(&Notice::Upgrade(notice(dev(), SignMethod::Md5))).unwrap();
        assert_eq!(o.topic, "/ota/device/upgrade/pk/dn");
        assert_eq!(
            body(&o),
            json!({"code": "1000", "id": 9, "message": "success", "data": {
                "size": 11, "version": "2-0-0", "url": "https://h/f.zip",
                "signMethod": "Md5", "sign": "aa", "md5": "aa"}})
        );
    }

    #[test]
    fn push_sha256_with_module() {
        let d = dev().with_module(Some("MCU")).unwrap();
        let o = encode(&Notice::Upgrade(notice(d, SignMethod::Sha256))).unwrap();
        let data = &body(&o)["data"];
        assert_eq!(data["signMethod"], "SHA256");
        assert_eq!(data["sign"], "bb");
        assert_eq!(data["module"], "MCU");
        // C 3.x SDKs read only `md5`: it goes out whatever the sign method.
        assert_eq!(data["md5"], "aa");
        assert_eq!(body(&o)["message"], "success");
        assert_eq!(data["size"], 11);
    }

    #[test]
    fn push_refuses_empty_fields_and_other_dialects() {
        for edit in [
            |o: &mut FirmwareOffer| o.version.clear(),
            |o: &mut FirmwareOffer| o.url.clear(),
            |o: &mut FirmwareOffer| o.md5.clear(),
            |o: &mut FirmwareOffer| o.size = 0,
        ] {
            let mut n = notice(dev(), SignMethod::Md5);
            edit(&mut n.offer);
            assert!(matches!(
                encode(&Notice::Upgrade(n)),
                Err(EncodeError::Invalid(_))
            ));
        }
        let mut n = notice(dev(), SignMethod::Sha256);
        n.offer.sha256.clear();
        assert!(matches!(
            encode(&Notice::Upgrade(n)),
            Err(EncodeError::Invalid(_))
        ));
        // `md5` is required with SHA256 too (device SDKs read only it).
        let mut n = notice(dev(), SignMethod::Sha256);
        n.offer.md5.clear();
        assert!(matches!(
            encode(&Notice::Upgrade(n)),
            Err(EncodeError::Invalid(_))
        ));
        // Sent in lowercase hex whatever case the offer carries.
        let mut n = notice(dev(), SignMethod::Sha256);
        n.offer.md5 = "AB12".into();
        let o = encode(&Notice::Upgrade(n)).unwrap();
        assert_eq!(body(&o)["data"]["md5"], "ab12");

        let n = notice(DeviceId::dji("SN").unwrap(), SignMethod::Md5);
        assert!(matches!(
            encode(&Notice::Upgrade(n)),
            Err(EncodeError::DialectMismatch { .. })
        ));
    }

    #[test]
    fn get_reply_pending_and_nothing() {
        let request = FirmwareGet {
            device: dev(),
            id: MsgId::Str("1".into()),
        };
        let o = encode(&Notice::FirmwareGetReply {
            request: request.clone(),
            pending: None,
        })
        .unwrap();
        assert_eq!(o.topic, "/sys/pk/dn/thing/ota/firmware/get_reply");
        assert_eq!(
            body(&o),
            json!({"id": "1", "code": 200, "data": {}, "message": "success"})
        );
        let o = encode(&Notice::FirmwareGetReply {
            request: request.clone(),
            pending: Some(notice(dev(), SignMethod::Md5)),
        })
        .unwrap();
        let b = body(&o);
        assert_eq!(b["id"], "1");
        assert_eq!(b["data"]["signMethod"], "Md5");
        assert_eq!(b["data"]["md5"], "aa");

        let other = notice(DeviceId::aliyun("pk", "other").unwrap(), SignMethod::Md5);
        assert!(matches!(
            encode(&Notice::FirmwareGetReply {
                request,
                pending: Some(other)
            }),
            Err(EncodeError::Invalid(_))
        ));
    }

    #[test]
    fn other_notices_are_refused() {
        let answer = crate::protocol::Answer {
            to: dev(),
            channel: "status_reply",
            method: "update_topo".into(),
            echo: vec![("tid", "t".into()), ("bid", "b".into())],
        };
        assert!(
            encode(&Notice::Answer {
                answer,
                timestamp_ms: 0
            })
            .is_err()
        );
    }
}
