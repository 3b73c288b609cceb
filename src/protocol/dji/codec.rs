//! DJI Cloud API dialect for docks and their drones: `sys/product/{gw}/status` (topology),
//! `thing/product/{sn}/state|osd` (versions), `thing/product/{gw}/services_reply` and
//! `thing/product/{gw}/events` (`ota_progress`), and what we send: `ota_create` on `services`,
//! and the `status_reply` / `events_reply` acknowledgements.
//!
//! Owns those payloads and the meaning of DJI's OTA error codes. Pure: no I/O, no clock, no
//! uuid generation (tid/bid/timestamp come from the caller); never panics on device input.
//! We send `timestamp`; we accept (and ignore) both `timestamp` and the documentation's typo
//! `timestamp:`.

use serde::Serialize;

use super::{ID, UPGRADE_TYPE, failure};
use crate::device_id::DeviceId;
use crate::protocol::fields::{self, Object};
use crate::protocol::{
    Answer, DecodeError, EncodeError, Event, ExchangeReply, MemberInfo, Notice, Outbound, Phase,
    ProgressReport, TaskRef, Topology, UpgradeNotice, UpgradeStatus, VersionReport,
};
use serde_json::Value;

/// What the console subscribes to.
pub const SUBSCRIPTIONS: &[&str] = &[
    "sys/product/+/status",
    "thing/product/+/state",
    "thing/product/+/osd",
    "thing/product/+/services_reply",
    "thing/product/+/events",
];

/// Whether `topic` has the shape of a DJI topic. Claimed broadly so a malformed DJI topic gets
/// a precise error from [`decode`].
pub fn owns_topic(topic: &str) -> bool {
    topic.starts_with("sys/product/") || topic.starts_with("thing/product/")
}

/// What a DJI firmware-upgrade error code means, for the UI and reports (the dialect's
/// [`super::ERRORS`] table).
pub fn error_meaning(code: i64) -> Option<&'static str> {
    super::ERRORS.meaning(code)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Uplink {
    Status,
    State,
    Osd,
    ServicesReply,
    Events,
}

fn unknown_topic(topic: &str) -> DecodeError {
    DecodeError::UnknownTopic(crate::protocol::truncate_for_log(topic))
}

fn parse_topic(topic: &str) -> Result<(Uplink, DeviceId), DecodeError> {
    let (kind, sn) = match fields::topic_segments::<4>(topic) {
        Some(["sys", "product", sn, "status"]) => (Uplink::Status, sn),
        Some(["thing", "product", sn, kind]) => match kind {
            "state" => (Uplink::State, sn),
            "osd" => (Uplink::Osd, sn),
            "services_reply" => (Uplink::ServicesReply, sn),
            "events" => (Uplink::Events, sn),
            _ => return Err(unknown_topic(topic)),
        },
        _ => return Err(unknown_topic(topic)),
    };
    Ok((kind, DeviceId::dji(sn)?))
}

/// Decodes one message a dock or drone published.
pub fn decode(topic: &str, payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let (kind, device) = parse_topic(topic)?;
    let root = crate::protocol::parse_json(payload)?;
    let root = fields::as_object(&root, "(payload)")?;
    match kind {
        Uplink::Status => decode_status(root, device),
        Uplink::State | Uplink::Osd => decode_properties(root, device),
        Uplink::ServicesReply => decode_services_reply(root, device).map(|e| vec![e]),
        Uplink::Events => decode_event(root, device),
    }
}

/// The reply on `channel` that a message with `method` needs: it echoes the message's `tid`
/// and `bid`.
fn ack_for(
    root: &Object,
    gateway: &DeviceId,
    channel: &'static str,
    method: &str,
) -> Result<Answer, DecodeError> {
    Ok(Answer {
        to: gateway.clone(),
        channel,
        method: method.to_owned(),
        echo: vec![
            (
                "tid",
                fields::required_token(root, "tid", "tid")?.to_owned(),
            ),
            (
                "bid",
                fields::required_token(root, "bid", "bid")?.to_owned(),
            ),
        ],
    })
}

/// `status_reply`, the answer to `update_topo`.
const STATUS_REPLY: &str = "status_reply";
/// `events_reply`, the answer to an event with `need_reply: 1`.
const EVENTS_REPLY: &str = "events_reply";

/// The envelope's `method`: non-empty, since replies must echo it.
fn envelope_method(root: &Object) -> Result<&str, DecodeError> {
    let method = fields::required_token(root, "method", "method")?;
    if method.trim().is_empty() {
        return Err(DecodeError::BadValue {
            field: "method",
            detail: "empty".into(),
        });
    }
    Ok(method)
}

fn optional_int(obj: &Object, key: &str, field: &'static str) -> Result<Option<i64>, DecodeError> {
    fields::optional(obj, key)
        .map(|v| fields::exact_int(v, field))
        .transpose()
}

fn optional_owned(
    obj: &Object,
    key: &str,
    field: &'static str,
) -> Result<Option<String>, DecodeError> {
    Ok(fields::optional_token(obj, key, field)?.map(str::to_owned))
}

fn decode_status(root: &Object, gateway: DeviceId) -> Result<Vec<Event>, DecodeError> {
    let method = envelope_method(root)?;
    if method != "update_topo" {
        return Err(DecodeError::UnknownMethod(fields::short(method)));
    }
    let ack = ack_for(root, &gateway, STATUS_REPLY, method)?;
    let data = fields::required_object(root, "data", "data")?;
    let gateway_info = MemberInfo {
        name: gateway.name().to_owned(),
        device_type: optional_int(data, "type", "data.type")?,
        sub_type: optional_int(data, "sub_type", "data.sub_type")?,
        index: None,
        thing_version: optional_owned(data, "thing_version", "data.thing_version")?,
    };
    // A missing list is read like an empty one: no drone is attached.
    let entries: &[Value] = match fields::optional(data, "sub_devices") {
        None => &[],
        Some(v) => v.as_array().ok_or(DecodeError::WrongType {
            field: "data.sub_devices",
            expected: "an array",
        })?,
    };
    let mut sub_devices = Vec::with_capacity(entries.len());
    let mut sub_device_info = Vec::with_capacity(entries.len());
    for entry in entries {
        let (id, info) = sub_device(entry)?;
        sub_devices.push(id);
        sub_device_info.push(info);
    }
    // The answer goes first: the engine sends it before it acts on the topology.
    Ok(vec![
        Event::Answer(ack),
        Event::Topology(Topology {
            gateway,
            gateway_info,
            sub_devices,
            sub_device_info,
        }),
    ])
}

fn sub_device(entry: &Value) -> Result<(DeviceId, MemberInfo), DecodeError> {
    let entry = fields::as_object(entry, "data.sub_devices[]")?;
    let sn = fields::required_token(entry, "sn", "data.sub_devices[].sn")?;
    let id = DeviceId::dji(sn)?;
    // `index` is a letter ("A") in the documents; tolerate a number.
    let index = match fields::optional(entry, "index") {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(v) => Some(fields::token(v, "data.sub_devices[].index")?.to_owned()),
        None => None,
    };
    let info = MemberInfo {
        name: sn.to_owned(),
        device_type: optional_int(entry, "type", "data.sub_devices[].type")?,
        sub_type: optional_int(entry, "sub_type", "data.sub_devices[].sub_type")?,
        index,
        thing_version: optional_owned(entry, "thing_version", "data.sub_devices[].thing_version")?,
    };
    Ok((id, info))
}

/// `state` and `osd`: most properties are not ours; only the firmware version and the dock's
/// consistency status become events.
fn decode_properties(root: &Object, device: DeviceId) -> Result<Vec<Event>, DecodeError> {
    let data = fields::required_object(root, "data", "data")?;
    let mut events = Vec::new();
    if let Some(v) = fields::optional_token(data, "firmware_version", "data.firmware_version")? {
        // An empty version is what a drone that is off reports: nothing to record.
        if !v.trim().is_empty() {
            events.push(Event::Version(VersionReport {
                device: device.clone(),
                version: v.to_owned(),
                gateway: None,
            }));
        }
    }
    if let Some(compatible_status) =
        optional_int(data, "compatible_status", "data.compatible_status")?
    {
        events.push(Event::Attribute {
            device,
            name: "compatible_status",
            value: compatible_status,
        });
    }
    Ok(events)
}

fn decode_services_reply(root: &Object, gateway: DeviceId) -> Result<Event, DecodeError> {
    let method = envelope_method(root)?.to_owned();
    let tid = fields::required_token(root, "tid", "tid")?.to_owned();
    let bid = fields::required_token(root, "bid", "bid")?.to_owned();
    let data = fields::required_object(root, "data", "data")?;
    let result = fields::exact_int(
        fields::required(data, "result", "data.result")?,
        "data.result",
    )?;
    let status = match fields::optional(data, "output") {
        Some(output) => {
            let output = fields::as_object(output, "data.output")?;
            fields::optional_token(output, "status", "data.output.status")?
                .map(|s| parse_status(s, result))
                .transpose()?
        }
        None => None,
    };
    Ok(Event::Reply(ExchangeReply {
        gateway,
        request: method,
        exchange_id: tid,
        task: TaskRef::Key(bid),
        failure: (result != 0).then(|| failure(result)),
        status,
    }))
}

/// `output.status`, with the `result` code attached to the outcomes it explains.
fn parse_status(text: &str, result: i64) -> Result<UpgradeStatus, DecodeError> {
    Ok(match text.trim().to_ascii_lowercase().as_str() {
        "sent" => UpgradeStatus::Sent,
        "in_progress" => UpgradeStatus::InProgress,
        "paused" => UpgradeStatus::Paused,
        "ok" => UpgradeStatus::Ok,
        "rejected" => UpgradeStatus::Rejected(failure(result)),
        "failed" => UpgradeStatus::Failed(failure(result)),
        "timeout" if result != 0 => UpgradeStatus::Failed(failure(result)),
        "timeout" => UpgradeStatus::Timeout,
        "canceled" | "cancelled" => UpgradeStatus::Canceled,
        _ => {
            return Err(DecodeError::BadValue {
                field: "data.output.status",
                detail: format!("unknown status {:?}", fields::short(text)),
            });
        }
    })
}

/// An event, preceded by its answer when it carries `need_reply: 1` (or the dock keeps
/// re-sending it).
fn decode_event(root: &Object, gateway: DeviceId) -> Result<Vec<Event>, DecodeError> {
    let method = envelope_method(root)?;
    let need_reply = fields::is_one(fields::optional(root, "need_reply"));
    let mut events = Vec::with_capacity(2);
    if method != "ota_progress" {
        if need_reply {
            events.push(Event::Answer(ack_for(
                root,
                &gateway,
                EVENTS_REPLY,
                method,
            )?));
        }
        events.push(Event::Heard {
            device: gateway,
            what: method.to_owned(),
        });
        return Ok(events);
    }
    let bid = fields::required_token(root, "bid", "bid")?.to_owned();
    if need_reply {
        events.push(Event::Answer(ack_for(
            root,
            &gateway,
            EVENTS_REPLY,
            method,
        )?));
    }
    let data = fields::required_object(root, "data", "data")?;
    let result = optional_int(data, "result", "data.result")?.unwrap_or(0);
    let output = fields::required_object(data, "output", "data.output")?;
    let status = parse_status(
        fields::required_token(output, "status", "data.output.status")?,
        result,
    )?;
    let progress = match fields::optional(output, "progress") {
        Some(p) => Some(fields::as_object(p, "data.output.progress")?),
        None => None,
    };
    let (percent, percent_clamped) = match progress.and_then(|p| fields::optional(p, "percent")) {
        Some(v) => {
            let raw = fields::saturating_int(v, "data.output.progress.percent")?;
            let (p, clamped) = fields::clamp_percent(raw);
            (Some(p), clamped)
        }
        None => (None, false),
    };
    events.push(Event::Progress(ProgressReport {
        device: gateway,
        task: TaskRef::Key(bid),
        status,
        phase: phase(output, progress)?,
        percent,
        percent_clamped,
        desc: None,
        gateway: None,
    }));
    Ok(events)
}

/// `progress.step_key` by name, or the numeric `current_step` some firmware sends (in
/// `progress` or directly in `output`). Unknown steps are `Unspecified`, not errors: the
/// percentage and status still matter.
fn phase(output: &Object, progress: Option<&Object>) -> Result<Phase, DecodeError> {
    let step_key = progress.and_then(|p| fields::optional(p, "step_key"));
    if let Some(Value::String(key)) = step_key {
        return Ok(match key.as_str() {
            "download_firmware" => Phase::Download,
            "upgrade_firmware" => Phase::Install,
            _ => Phase::Unspecified,
        });
    }
    let numeric = step_key
        .map(|v| (v, "data.output.progress.step_key"))
        .or_else(|| {
            progress
                .and_then(|p| fields::optional(p, "current_step"))
                .map(|v| (v, "data.output.progress.current_step"))
        })
        .or_else(|| {
            fields::optional(output, "current_step").map(|v| (v, "data.output.current_step"))
        });
    Ok(match numeric {
        Some((v, field)) => match fields::exact_int(v, field)? {
            1 => Phase::Download,
            2 => Phase::Install,
            _ => Phase::Unspecified,
        },
        None => Phase::Unspecified,
    })
}

/// DJI `firmware_upgrade_type`, by name. The document says 2 = consistency, 3 = normal
/// (DJI's sample server has them swapped; we follow the document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DjiUpgradeType {
    #[default]
    Normal,
    Consistency,
}

impl DjiUpgradeType {
    pub fn wire_value(self) -> i64 {
        match self {
            DjiUpgradeType::Consistency => 2,
            DjiUpgradeType::Normal => 3,
        }
    }

    /// The [`super::UPGRADE_TYPE`] choice value.
    pub fn setting(self) -> &'static str {
        match self {
            DjiUpgradeType::Consistency => "consistency",
            DjiUpgradeType::Normal => "normal",
        }
    }

    fn from_setting(value: &str) -> Self {
        if value == DjiUpgradeType::Consistency.setting() {
            DjiUpgradeType::Consistency
        } else {
            DjiUpgradeType::Normal
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    tid: &'a str,
    bid: &'a str,
    timestamp: i64,
    method: &'a str,
    data: D,
}

#[derive(Serialize)]
struct OtaCreate<'a> {
    devices: [OtaDevice<'a>; 1],
}

#[derive(Serialize)]
struct OtaDevice<'a> {
    sn: &'a str,
    product_version: &'a str,
    file_url: &'a str,
    md5: &'a str,
    file_size: u64,
    file_name: &'a str,
    firmware_upgrade_type: i64,
}

#[derive(Serialize)]
struct ResultData {
    result: i64,
}

/// Encodes a notice for a dock (and through it, its drone).
pub fn encode(notice: &Notice) -> Result<Outbound, EncodeError> {
    match notice {
        Notice::Upgrade(n) => encode_ota_create(n),
        Notice::Answer {
            answer,
            timestamp_ms,
        } => encode_answer(answer, *timestamp_ms),
        Notice::FirmwareGetReply { request, .. } => Err(EncodeError::DialectMismatch {
            device: request.device.clone(),
        }),
    }
}

/// `status_reply` (always for `update_topo`) or `events_reply` (echoing the event's method).
fn encode_answer(answer: &Answer, timestamp: i64) -> Result<Outbound, EncodeError> {
    let gw = gateway_sn(&answer.to)?;
    let (topic, method) = match answer.channel {
        STATUS_REPLY => (format!("sys/product/{gw}/status_reply"), "update_topo"),
        EVENTS_REPLY => (
            format!("thing/product/{gw}/events_reply"),
            answer.method.as_str(),
        ),
        other => {
            return Err(EncodeError::Invalid(format!(
                "DJI devices have no {other:?} reply"
            )));
        }
    };
    if method.is_empty() {
        return Err(EncodeError::Invalid(format!(
            "{} without a method",
            answer.channel
        )));
    }
    let (Some(tid), Some(bid)) = (answer.echoed("tid"), answer.echoed("bid")) else {
        return Err(EncodeError::Invalid(format!(
            "{} without the tid and bid to echo",
            answer.channel
        )));
    };
    let body = Envelope {
        tid,
        bid,
        timestamp,
        method,
        data: ResultData { result: 0 },
    };
    outbound(topic, &body)
}

fn encode_ota_create(n: &UpgradeNotice) -> Result<Outbound, EncodeError> {
    let gateway = n.address.gateway.as_ref().unwrap_or(&n.device);
    let tid = n.address.exchange_id.as_deref().unwrap_or("");
    let bid = match &n.address.task {
        TaskRef::Key(key) => key.as_str(),
        TaskRef::None => "",
    };
    let timestamp_ms = n.address.timestamp_ms;
    let upgrade_type = DjiUpgradeType::from_setting(n.settings.value_of(&UPGRADE_TYPE));
    if n.device.dialect() != ID {
        return Err(EncodeError::DialectMismatch {
            device: n.device.clone(),
        });
    }
    let invalid =
        |what: String| EncodeError::Invalid(format!("ota_create for {}: {what}", n.device));
    if let Some(module) = n.device.module() {
        return Err(invalid(format!(
            "DJI upgrades whole devices; module {module:?} cannot be addressed"
        )));
    }
    let offer = &n.offer;
    for (name, value) in [
        ("tid", tid),
        ("bid", bid),
        ("product_version", offer.version.as_str()),
        ("file_url", offer.url.as_str()),
        ("md5", offer.md5.as_str()),
        ("file_name", offer.file_name.as_str()),
    ] {
        if value.is_empty() {
            return Err(invalid(format!("{name} is empty")));
        }
    }
    if offer.size == 0 {
        return Err(invalid("file_size is 0".into()));
    }
    let gw = gateway_sn(gateway)?;
    let body = Envelope {
        tid,
        bid,
        timestamp: timestamp_ms,
        method: "ota_create",
        data: OtaCreate {
            devices: [OtaDevice {
                sn: n.device.name(),
                product_version: &offer.version,
                file_url: &offer.url,
                md5: &offer.md5,
                file_size: offer.size,
                file_name: &offer.file_name,
                firmware_upgrade_type: upgrade_type.wire_value(),
            }],
        },
    };
    outbound(format!("thing/product/{gw}/services"), &body)
}

fn gateway_sn(gateway: &DeviceId) -> Result<&str, EncodeError> {
    if gateway.dialect() != ID {
        return Err(EncodeError::DialectMismatch {
            device: gateway.clone(),
        });
    }
    Ok(gateway.name())
}

fn outbound(topic: String, body: &impl Serialize) -> Result<Outbound, EncodeError> {
    let payload = serde_json::to_vec(body).map_err(|e| EncodeError::Invalid(e.to_string()))?;
    Ok(Outbound { topic, payload })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{FirmwareOffer, NoticeAddress};
    use serde_json::json;

    fn gw() -> DeviceId {
        DeviceId::dji("DOCK1").unwrap()
    }

    fn dec(topic: &str, v: Value) -> Result<Vec<Event>, DecodeError> {
        decode(topic, v.to_string().as_bytes())
    }

    fn err(topic: &str, v: Value) -> DecodeError {
        dec(topic, v).unwrap_err()
    }

    const STATUS: &str = "sys/product/DOCK1/status";
    const EVENTS: &str = "thing/product/DOCK1/events";
    const REPLY: &str = "thing/product/DOCK1/services_reply";

    fn topo(data: Value) -> Value {
        json!({"tid": "t", "bid": "b", "timestamp": 1, "method": "update_topo", "data": data})
    }

    #[test]
    fn update_topo_with_drone_and_offline() {
        let events = dec(
            STATUS,
            topo(json!({"type": 1, "sub_type": 0, "device_secret": "s", "nonce": "n", "thing_version": "1.1.2",
                "sub_devices": [{"sn": "DRONE1", "type": 67, "sub_type": 0, "index": "A", "device_secret": "s", "nonce": "n", "thing_version": "1.1.2"}]})),
        )
        .unwrap();
        let [Event::Answer(ack), Event::Topology(t)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(t.gateway, gw());
        assert_eq!(t.sub_devices, vec![DeviceId::dji("DRONE1").unwrap()]);
        assert_eq!(t.sub_device_info[0].index.as_deref(), Some("A"));
        assert_eq!(t.sub_device_info[0].device_type, Some(67));
        assert_eq!(t.gateway_info.device_type, Some(1));
        assert_eq!(t.gateway_info.thing_version.as_deref(), Some("1.1.2"));
        assert_eq!(
            (
                ack.echoed("tid"),
                ack.echoed("bid"),
                ack.method.as_str(),
                ack.channel
            ),
            (Some("t"), Some("b"), "update_topo", STATUS_REPLY)
        );

        for data in [json!({"sub_devices": []}), json!({})] {
            let events = dec(STATUS, topo(data)).unwrap();
            let [Event::Answer(_), Event::Topology(t)] = events.as_slice() else {
                panic!()
            };
            assert!(t.sub_devices.is_empty());
        }
    }

    #[test]
    fn update_topo_errors() {
        assert!(matches!(
            err(
                STATUS,
                json!({"tid": "t", "bid": "b", "method": "other", "data": {}})
            ),
            DecodeError::UnknownMethod(_)
        ));
        assert_eq!(
            err(
                STATUS,
                json!({"bid": "b", "method": "update_topo", "data": {}})
            ),
            DecodeError::MissingField("tid")
        );
        assert_eq!(
            err(
                STATUS,
                json!({"tid": "t", "method": "update_topo", "data": {}})
            ),
            DecodeError::MissingField("bid")
        );
        assert_eq!(
            err(
                STATUS,
                json!({"tid": "t", "bid": "b", "method": "update_topo"})
            ),
            DecodeError::MissingField("data")
        );
        assert!(matches!(
            err(STATUS, topo(json!({"sub_devices": {}}))),
            DecodeError::WrongType {
                field: "data.sub_devices",
                ..
            }
        ));
        assert_eq!(
            err(STATUS, topo(json!({"sub_devices": [{"type": 1}]}))),
            DecodeError::MissingField("data.sub_devices[].sn")
        );
        assert!(matches!(
            err(STATUS, topo(json!({"sub_devices": [{"sn": "a/b"}]}))),
            DecodeError::BadIdentity(_)
        ));
        assert!(matches!(
            err(STATUS, topo(json!({"sub_devices": [3]}))),
            DecodeError::WrongType {
                field: "data.sub_devices[]",
                ..
            }
        ));
        assert!(matches!(
            err(STATUS, topo(json!({"type": "x"}))),
            DecodeError::BadValue {
                field: "data.type",
                ..
            }
        ));
        assert!(matches!(
            err(
                STATUS,
                topo(json!({"sub_devices": [{"sn": "D", "index": []}]}))
            ),
            DecodeError::WrongType {
                field: "data.sub_devices[].index",
                ..
            }
        ));
    }

    #[test]
    fn state_and_osd_versions() {
        for kind in ["state", "osd"] {
            let topic = format!("thing/product/DRONE1/{kind}");
            let events = dec(&topic, json!({"tid": "t", "bid": "b", "timestamp:": 1, "data": {"firmware_version": "1.00.223"}})).unwrap();
            assert_eq!(
                events,
                vec![Event::Version(VersionReport {
                    device: DeviceId::dji("DRONE1").unwrap(),
                    version: "1.00.223".into(),
                    gateway: None
                })]
            );
            assert_eq!(
                dec(&topic, json!({"data": {"latitude": 1.0}})).unwrap(),
                vec![]
            );
            assert_eq!(
                dec(&topic, json!({"data": {"firmware_version": ""}})).unwrap(),
                vec![]
            );
        }
        let events = dec(
            "thing/product/DOCK1/state",
            json!({"data": {"firmware_version": "1", "compatible_status": 1}}),
        )
        .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[1],
            Event::Attribute {
                device: gw(),
                name: "compatible_status",
                value: 1
            }
        );
    }

    #[test]
    fn state_errors() {
        let t = "thing/product/DOCK1/state";
        assert_eq!(err(t, json!({})), DecodeError::MissingField("data"));
        assert!(matches!(
            err(t, json!({"data": {"firmware_version": 3}})),
            DecodeError::WrongType {
                field: "data.firmware_version",
                ..
            }
        ));
        assert!(matches!(
            err(t, json!({"data": {"compatible_status": "x"}})),
            DecodeError::BadValue {
                field: "data.compatible_status",
                ..
            }
        ));
        assert!(matches!(
            err(t, json!({"data": 5})),
            DecodeError::WrongType { field: "data", .. }
        ));
    }

    fn progress_msg(output: Value, result: i64, need_reply: Value) -> Value {
        json!({"method": "ota_progress", "tid": "t", "bid": "b", "timestamp:": 1, "need_reply": need_reply,
            "data": {"result": result, "output": output}})
    }

    fn progress(v: Value) -> ProgressReport {
        progress_and_answer(v).0
    }

    fn progress_and_answer(v: Value) -> (ProgressReport, Option<Answer>) {
        let events = dec(EVENTS, v).unwrap();
        match events.as_slice() {
            [Event::Progress(p)] => (p.clone(), None),
            [Event::Answer(a), Event::Progress(p)] => (p.clone(), Some(a.clone())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ota_progress_in_progress_with_ack() {
        let (p, ack) = progress_and_answer(progress_msg(
            json!({"status": "in_progress", "progress": {"percent": 10, "step_key": "download_firmware"}}),
            0,
            json!(1),
        ));
        assert_eq!(p.device, gw());
        assert_eq!(p.task, TaskRef::Key("b".into()));
        assert_eq!(p.status, UpgradeStatus::InProgress);
        assert_eq!(p.phase, Phase::Download);
        assert_eq!(p.percent, Some(10));
        assert_eq!(
            ack,
            Some(Answer {
                to: gw(),
                channel: EVENTS_REPLY,
                method: "ota_progress".into(),
                echo: vec![("tid", "t".into()), ("bid", "b".into())],
            })
        );
        let (p, ack) = progress_and_answer(progress_msg(json!({"status": "ok"}), 0, json!(0)));
        assert_eq!((p.status, ack, p.percent), (UpgradeStatus::Ok, None, None));
    }

    #[test]
    fn ota_progress_phases() {
        for (progress_obj, phase) in [
            (json!({"step_key": "upgrade_firmware"}), Phase::Install),
            (json!({"step_key": "something_new"}), Phase::Unspecified),
            (json!({"current_step": 1}), Phase::Download),
            (json!({"current_step": "2"}), Phase::Install),
            (json!({"step_key": 2}), Phase::Install),
            (json!({"current_step": 9}), Phase::Unspecified),
            (json!({}), Phase::Unspecified),
        ] {
            let p = progress(progress_msg(
                json!({"status": "in_progress", "progress": progress_obj}),
                0,
                json!(0),
            ));
            assert_eq!(p.phase, phase);
        }
        let p = progress(progress_msg(
            json!({"status": "in_progress", "current_step": 2}),
            0,
            json!(0),
        ));
        assert_eq!(p.phase, Phase::Install);
    }

    #[test]
    fn ota_progress_outcomes() {
        for (status, result, expected) in [
            ("failed", 312016, UpgradeStatus::Failed(failure(312016))),
            ("failed", 0, UpgradeStatus::Failed(failure(0))),
            ("timeout", 312013, UpgradeStatus::Failed(failure(312013))),
            ("timeout", 0, UpgradeStatus::Timeout),
            ("rejected", 312015, UpgradeStatus::Rejected(failure(312015))),
            ("canceled", 0, UpgradeStatus::Canceled),
            ("paused", 0, UpgradeStatus::Paused),
            ("sent", 0, UpgradeStatus::Sent),
            ("OK", 0, UpgradeStatus::Ok),
        ] {
            let p = progress(progress_msg(json!({"status": status}), result, json!(0)));
            assert_eq!(p.status, expected, "{status}");
        }
    }

    #[test]
    fn ota_progress_percent_clamped() {
        for (percent, expected) in [
            (json!(150), 100),
            (json!(-3), 0),
            (json!(1e300), 100),
            (json!("55"), 55),
        ] {
            let p = progress(progress_msg(
                json!({"status": "in_progress", "progress": {"percent": percent}}),
                0,
                json!(0),
            ));
            assert_eq!(p.percent, Some(expected));
            assert_eq!(p.percent_clamped, expected != 55);
        }
    }

    #[test]
    fn ota_progress_errors() {
        let ok_output = json!({"status": "in_progress"});
        assert_eq!(
            err(
                EVENTS,
                json!({"method": "ota_progress", "tid": "t", "data": {"output": ok_output}})
            ),
            DecodeError::MissingField("bid")
        );
        assert_eq!(
            err(
                EVENTS,
                json!({"method": "ota_progress", "bid": "b", "need_reply": 1, "data": {"output": ok_output}})
            ),
            DecodeError::MissingField("tid")
        );
        assert_eq!(
            err(
                EVENTS,
                json!({"method": "ota_progress", "bid": "b", "data": {"result": 0}})
            ),
            DecodeError::MissingField("data.output")
        );
        assert_eq!(
            err(EVENTS, progress_msg(json!({}), 0, json!(0))),
            DecodeError::MissingField("data.output.status")
        );
        assert!(matches!(
            err(
                EVENTS,
                progress_msg(json!({"status": "exploded"}), 0, json!(0))
            ),
            DecodeError::BadValue {
                field: "data.output.status",
                ..
            }
        ));
        assert!(matches!(
            err(
                EVENTS,
                progress_msg(json!({"status": "ok", "progress": []}), 0, json!(0))
            ),
            DecodeError::WrongType {
                field: "data.output.progress",
                ..
            }
        ));
        assert!(matches!(
            err(
                EVENTS,
                progress_msg(
                    json!({"status": "ok", "progress": {"percent": "x"}}),
                    0,
                    json!(0)
                )
            ),
            DecodeError::BadValue {
                field: "data.output.progress.percent",
                ..
            }
        ));
        assert!(matches!(
            err(
                EVENTS,
                progress_msg(
                    json!({"status": "ok", "progress": {"current_step": [1]}}),
                    0,
                    json!(0)
                )
            ),
            DecodeError::WrongType {
                field: "data.output.progress.current_step",
                ..
            }
        ));
        assert!(matches!(
            err(
                EVENTS,
                json!({"method": "ota_progress", "bid": "b", "data": {"result": 1e300, "output": ok_output}})
            ),
            DecodeError::BadValue {
                field: "data.result",
                ..
            }
        ));
        assert_eq!(
            err(EVENTS, json!({"bid": "b"})),
            DecodeError::MissingField("method")
        );
    }

    #[test]
    fn other_events_surface_their_ack() {
        let events = dec(
            EVENTS,
            json!({"method": "hms", "tid": "t", "bid": "b", "need_reply": 1, "data": {}}),
        )
        .unwrap();
        assert_eq!(
            events,
            vec![
                Event::Answer(Answer {
                    to: gw(),
                    channel: EVENTS_REPLY,
                    method: "hms".into(),
                    echo: vec![("tid", "t".into()), ("bid", "b".into())],
                }),
                Event::Heard {
                    device: gw(),
                    what: "hms".into(),
                }
            ]
        );
        let events = dec(EVENTS, json!({"method": "hms", "data": {}})).unwrap();
        assert_eq!(
            events,
            vec![Event::Heard {
                device: gw(),
                what: "hms".into(),
            }]
        );
        assert_eq!(
            err(
                EVENTS,
                json!({"method": "hms", "bid": "b", "need_reply": 1})
            ),
            DecodeError::MissingField("tid")
        );
    }

    #[test]
    fn services_reply() {
        let events = dec(
            REPLY,
            json!({"method": "ota_create", "tid": "t", "bid": "b", "timestamp:": 1, "data": {"result": 0, "output": {"status": "in_progress"}}}),
        )
        .unwrap();
        assert_eq!(
            events,
            vec![Event::Reply(ExchangeReply {
                gateway: gw(),
                request: "ota_create".into(),
                exchange_id: "t".into(),
                task: TaskRef::Key("b".into()),
                failure: None,
                status: Some(UpgradeStatus::InProgress)
            })]
        );
        let events = dec(
            REPLY,
            json!({"method": "ota_create", "tid": "t", "bid": "b", "data": {"result": 312014}}),
        )
        .unwrap();
        let [Event::Reply(r)] = events.as_slice() else {
            panic!()
        };
        assert_eq!((&r.failure, &r.status), (&Some(failure(312014)), &None));

        assert_eq!(
            err(
                REPLY,
                json!({"method": "ota_create", "tid": "t", "bid": "b", "data": {}})
            ),
            DecodeError::MissingField("data.result")
        );
        assert!(matches!(
            err(
                REPLY,
                json!({"method": "ota_create", "tid": "t", "bid": "b", "data": {"result": 0, "output": 1}})
            ),
            DecodeError::WrongType {
                field: "data.output",
                ..
            }
        ));
        assert_eq!(
            err(
                REPLY,
                json!({"tid": "t", "bid": "b", "data": {"result": 0}})
            ),
            DecodeError::MissingField("method")
        );
    }

    #[test]
    fn payload_errors() {
        let big = vec![b' '; crate::protocol::MAX_PAYLOAD_BYTES + 1];
        assert_eq!(
            decode(EVENTS, &big),
            Err(DecodeError::TooLarge { len: big.len() })
        );
        for bad in [&b""[..], b"\x00", b"{\"tid\":", b"{\"a\":1}}"] {
            assert!(matches!(decode(STATUS, bad), Err(DecodeError::Json(_))));
        }
        assert!(matches!(
            err(EVENTS, json!([])),
            DecodeError::WrongType {
                field: "(payload)",
                ..
            }
        ));
        let long_tid = "t".repeat(200);
        assert!(matches!(
            err(
                STATUS,
                json!({"tid": long_tid, "bid": "b", "method": "update_topo", "data": {}})
            ),
            DecodeError::BadValue { field: "tid", .. }
        ));
        // Serde's depth limit refuses hostile nesting instead of overflowing the stack.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            decode(EVENTS, deep.as_bytes()),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn bad_topics() {
        let body = json!({"data": {}});
        for topic in [
            "thing/product/SN/state/x",
            "thing/product/SN/services",
            "thing/product/SN/events_reply",
            "sys/product/SN/status_reply",
            "thing/product/SN",
            "sys/product/SN/state",
        ] {
            assert!(
                matches!(err(topic, body.clone()), DecodeError::UnknownTopic(_)),
                "{topic}"
            );
        }
        for topic in [
            "thing/product//state",
            "thing/product/+/osd",
            "sys/product/#/status",
        ] {
            assert!(
                matches!(err(topic, body.clone()), DecodeError::BadIdentity(_)),
                "{topic}"
            );
        }
        assert!(SUBSCRIPTIONS.iter().all(|s| owns_topic(s)));
        assert!(!owns_topic("/sys/pk/dn/thing/ota/firmware/get"));
    }

    #[test]
    fn error_meanings() {
        assert!(error_meaning(312014).unwrap().contains("already upgrading"));
        assert!(error_meaning(312015).unwrap().contains("flight"));
        assert!(error_meaning(312022).unwrap().contains("powered off"));
        assert!(error_meaning(312027).unwrap().contains("no aircraft"));
        assert!(error_meaning(312704).unwrap().contains("20%"));
        assert_eq!(error_meaning(0), None);
        assert_eq!(error_meaning(-1), None);
        assert_eq!(
            crate::protocol::registry::describe(&failure(312015)),
            format!("DJI error 312015: {}", error_meaning(312015).unwrap())
        );
    }

    fn notice(device: DeviceId) -> UpgradeNotice {
        UpgradeNotice {
            device,
            offer: FirmwareOffer {
                version: "1.00.223".into(),
                url: "https://s3.com/x.zip".into(),
                size: 653467234,
                md5: "abcdef".into(),
                sha256: String::new(),
                checksum: String::new(),
                file_name: "x.zip".into(),
                description: String::new(),
            },
            address: NoticeAddress {
                gateway: Some(gw()),
                exchange_id: Some("t".into()),
                task: TaskRef::Key("b".into()),
                timestamp_ms: 1654070968655,
                ..NoticeAddress::default()
            },
            settings: super::super::settings(DjiUpgradeType::Consistency),
        }
    }

    fn body(o: &Outbound) -> Value {
        serde_json::from_slice(&o.payload).unwrap()
    }

    #[test]
    fn ota_create_shape() {
        let o = encode(&Notice::Upgrade(notice(DeviceId::dji("DRONE1").unwrap()))).unwrap();
        assert_eq!(o.topic, "thing/product/DOCK1/services");
        assert_eq!(
            body(&o),
            json!({"tid": "t", "bid": "b", "timestamp": 1654070968655_i64, "method": "ota_create", "data": {"devices": [{
                "sn": "DRONE1", "product_version": "1.00.223", "file_url": "https://s3.com/x.zip", "md5": "abcdef",
                "file_size": 653467234, "file_name": "x.zip", "firmware_upgrade_type": 2}]}})
        );
        let mut n = notice(gw());
        n.settings = super::super::settings(DjiUpgradeType::Normal);
        assert_eq!(
            body(&encode(&Notice::Upgrade(n)).unwrap())["data"]["devices"][0]["firmware_upgrade_type"],
            3
        );
    }

    #[test]
    fn ota_create_refusals() {
        let edits: [fn(&mut UpgradeNotice); 5] = [
            |n| n.offer.version.clear(),
            |n| n.offer.url.clear(),
            |n| n.offer.md5.clear(),
            |n| n.offer.file_name.clear(),
            |n| n.offer.size = 0,
        ];
        for edit in edits {
            let mut n = notice(gw());
            edit(&mut n);
            assert!(matches!(
                encode(&Notice::Upgrade(n)),
                Err(EncodeError::Invalid(_))
            ));
        }
        let n = notice(gw().with_module(Some("camera")).unwrap());
        assert!(matches!(
            encode(&Notice::Upgrade(n)),
            Err(EncodeError::Invalid(_))
        ));
        let mut n = notice(gw());
        n.address.gateway = Some(DeviceId::aliyun("pk", "dn").unwrap());
        assert!(matches!(
            encode(&Notice::Upgrade(n)),
            Err(EncodeError::DialectMismatch { .. })
        ));
        let mut n = notice(gw());
        n.address.exchange_id = None;
        assert!(matches!(
            encode(&Notice::Upgrade(n)),
            Err(EncodeError::Invalid(_))
        ));
    }

    #[test]
    fn replies() {
        let ack = Answer {
            to: gw(),
            channel: STATUS_REPLY,
            method: "update_topo".into(),
            echo: vec![("tid", "t".into()), ("bid", "b".into())],
        };
        let reply = |answer: Answer, timestamp_ms| Notice::Answer {
            answer,
            timestamp_ms,
        };
        let o = encode(&reply(ack.clone(), 5)).unwrap();
        assert_eq!(o.topic, "sys/product/DOCK1/status_reply");
        assert_eq!(
            body(&o),
            json!({"tid": "t", "bid": "b", "timestamp": 5, "method": "update_topo", "data": {"result": 0}})
        );
        let ack = Answer {
            channel: EVENTS_REPLY,
            method: "ota_progress".into(),
            ..ack
        };
        let o = encode(&reply(ack.clone(), 6)).unwrap();
        assert_eq!(o.topic, "thing/product/DOCK1/events_reply");
        assert_eq!(
            body(&o),
            json!({"tid": "t", "bid": "b", "timestamp": 6, "method": "ota_progress", "data": {"result": 0}})
        );
        let bad = Answer {
            to: DeviceId::fogcloud("a", "b").unwrap(),
            ..ack.clone()
        };
        assert!(matches!(
            encode(&reply(bad, 0)),
            Err(EncodeError::DialectMismatch { .. })
        ));
        let no_method = Answer {
            method: String::new(),
            ..ack.clone()
        };
        assert!(matches!(
            encode(&reply(no_method, 0)),
            Err(EncodeError::Invalid(_))
        ));
        let no_echo = Answer {
            echo: Vec::new(),
            ..ack.clone()
        };
        assert!(matches!(
            encode(&reply(no_echo, 0)),
            Err(EncodeError::Invalid(_))
        ));
        let unknown_channel = Answer {
            channel: "get_reply",
            ..ack
        };
        assert!(matches!(
            encode(&reply(unknown_channel, 0)),
            Err(EncodeError::Invalid(_))
        ));
    }
}
