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

use super::fields::{self, Object};
use super::{
    DecodeError, DialectOptions, DjiAck, DjiDevice, EncodeError, Event, Failure, Notice, Outbound,
    Phase, ProgressReport, ServiceReply, TaskRef, Topology, UpgradeNotice, UpgradeStatus,
    VersionReport,
};
use crate::device_id::{DeviceId, Dialect};
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

/// What a DJI firmware-upgrade error code means, for the UI and reports.
///
/// Source: the `FirmwareErrorCodeEnum` of DJI's Cloud API sample server (DJI-Cloud-API-Demo,
/// `cloud-sdk/.../cloudapi/firmware/FirmwareErrorCodeEnum.java`), found with the code search;
/// the wording here is ours. 312014, 312015, 312022, 312027 and 312704 are also in our notes.
pub fn error_meaning(code: i64) -> Option<&'static str> {
    Some(match code {
        312001 => "consistency upgrade triggered, but the device did not ask for one",
        312002 => "upgrade failed while preparing (stage 1); try again",
        312003 => "upgrade failed: package verification failed; try again",
        312004 => "upgrade failed while preparing (stage 2); try again",
        312010 => "the upgrade request does not match the API",
        312012 => "invalid upgrade parameters",
        312013 | 312018 | 312019 | 312020 | 312021 | 312024 => {
            "upgrade command failed on the device; try again"
        }
        312014 => "the device is already upgrading",
        312015 => "the aircraft is in flight; upgrade after it lands",
        312016 => "transmission error between dock and aircraft; restart both and retry",
        312017 => "version check failed",
        312022 => "aircraft is powered off or not linked to the dock",
        312023 => {
            "dock driving rods could not reset (emergency stop pressed or rods stuck); \
             aircraft cannot be upgraded"
        }
        312025 => "failed to delete the old firmware package",
        312026 => "failed to decompress the offline upgrade package",
        312027 => "no aircraft detected in the dock",
        312028 => "the device restarted during the upgrade",
        312029 => "the device is restarting; cannot upgrade now",
        312030 => "aircraft enhanced (4G) transmission is on; turn it off and retry",
        312704 => "aircraft battery below 20%; charge it and retry",
        _ => return None,
    })
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
    DecodeError::UnknownTopic(super::truncate_for_log(topic))
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
    let root = super::parse_json(payload)?;
    let root = fields::as_object(&root, "(payload)")?;
    match kind {
        Uplink::Status => decode_status(root, device).map(|e| vec![e]),
        Uplink::State | Uplink::Osd => decode_properties(root, device),
        Uplink::ServicesReply => decode_services_reply(root, device).map(|e| vec![e]),
        Uplink::Events => decode_event(root, device).map(|e| vec![e]),
    }
}

fn ack_for(root: &Object, gateway: &DeviceId, method: &str) -> Result<DjiAck, DecodeError> {
    Ok(DjiAck {
        gateway: gateway.clone(),
        method: method.to_owned(),
        tid: fields::required_token(root, "tid", "tid")?.to_owned(),
        bid: fields::required_token(root, "bid", "bid")?.to_owned(),
    })
}

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

fn decode_status(root: &Object, gateway: DeviceId) -> Result<Event, DecodeError> {
    let method = envelope_method(root)?;
    if method != "update_topo" {
        return Err(DecodeError::UnknownMethod(fields::short(method)));
    }
    let ack = ack_for(root, &gateway, method)?;
    let data = fields::required_object(root, "data", "data")?;
    let gateway_info = DjiDevice {
        sn: gateway.name().to_owned(),
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
    Ok(Event::Topology(Topology {
        gateway,
        gateway_info,
        sub_devices,
        sub_device_info,
        ack,
    }))
}

fn sub_device(entry: &Value) -> Result<(DeviceId, DjiDevice), DecodeError> {
    let entry = fields::as_object(entry, "data.sub_devices[]")?;
    let sn = fields::required_token(entry, "sn", "data.sub_devices[].sn")?;
    let id = DeviceId::dji(sn)?;
    // `index` is a letter ("A") in the documents; tolerate a number.
    let index = match fields::optional(entry, "index") {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(v) => Some(fields::token(v, "data.sub_devices[].index")?.to_owned()),
        None => None,
    };
    let info = DjiDevice {
        sn: sn.to_owned(),
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
        events.push(Event::DjiCompatibility {
            device,
            compatible_status,
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
    Ok(Event::ServiceReply(ServiceReply {
        gateway,
        method,
        tid,
        bid,
        result,
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
        "rejected" => UpgradeStatus::Rejected { code: result },
        "failed" => UpgradeStatus::Failed(Failure::Dji { code: result }),
        "timeout" if result != 0 => UpgradeStatus::Failed(Failure::Dji { code: result }),
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

fn decode_event(root: &Object, gateway: DeviceId) -> Result<Event, DecodeError> {
    let method = envelope_method(root)?;
    let need_reply = fields::is_one(fields::optional(root, "need_reply"));
    if method != "ota_progress" {
        let ack = need_reply
            .then(|| ack_for(root, &gateway, method))
            .transpose()?;
        return Ok(Event::DjiOtherEvent {
            gateway,
            method: method.to_owned(),
            ack,
        });
    }
    let bid = fields::required_token(root, "bid", "bid")?.to_owned();
    let ack = need_reply
        .then(|| ack_for(root, &gateway, method))
        .transpose()?;
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
    Ok(Event::Progress(ProgressReport {
        device: gateway,
        task: TaskRef::Bid(bid),
        status,
        phase: phase(output, progress)?,
        percent,
        percent_clamped,
        desc: None,
        gateway: None,
        ack,
    }))
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
        Notice::DjiStatusReply { ack, timestamp_ms } => {
            let gw = gateway_sn(&ack.gateway)?;
            reply(
                format!("sys/product/{gw}/status_reply"),
                ack,
                "update_topo",
                *timestamp_ms,
            )
        }
        Notice::DjiEventsReply { ack, timestamp_ms } => {
            if ack.method.is_empty() {
                return Err(EncodeError::Invalid("events_reply without a method".into()));
            }
            let gw = gateway_sn(&ack.gateway)?;
            reply(
                format!("thing/product/{gw}/events_reply"),
                ack,
                &ack.method,
                *timestamp_ms,
            )
        }
        Notice::FirmwareGetReply { request, .. } => Err(EncodeError::DialectMismatch {
            device: request.device.clone(),
        }),
        Notice::FogCloudSubFirmware { gateway, .. } => Err(EncodeError::DialectMismatch {
            device: gateway.clone(),
        }),
    }
}

fn reply(
    topic: String,
    ack: &DjiAck,
    method: &str,
    timestamp: i64,
) -> Result<Outbound, EncodeError> {
    let body = Envelope {
        tid: &ack.tid,
        bid: &ack.bid,
        timestamp,
        method,
        data: ResultData { result: 0 },
    };
    outbound(topic, &body)
}

fn encode_ota_create(n: &UpgradeNotice) -> Result<Outbound, EncodeError> {
    let DialectOptions::Dji {
        gateway,
        tid,
        bid,
        timestamp_ms,
        upgrade_type,
    } = &n.dialect
    else {
        return Err(EncodeError::DialectMismatch {
            device: n.device.clone(),
        });
    };
    if n.device.dialect() != Dialect::Dji {
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
        ("tid", tid.as_str()),
        ("bid", bid.as_str()),
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
        timestamp: *timestamp_ms,
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
    if gateway.dialect() != Dialect::Dji {
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
    use crate::protocol::{DjiUpgradeType, FirmwareOffer};
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
        let [Event::Topology(t)] = events.as_slice() else {
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
                t.ack.tid.as_str(),
                t.ack.bid.as_str(),
                t.ack.method.as_str()
            ),
            ("t", "b", "update_topo")
        );

        for data in [json!({"sub_devices": []}), json!({})] {
            let events = dec(STATUS, topo(data)).unwrap();
            let [Event::Topology(t)] = events.as_slice() else {
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
            Event::DjiCompatibility {
                device: gw(),
                compatible_status: 1
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
        match dec(EVENTS, v).unwrap().remove(0) {
            Event::Progress(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ota_progress_in_progress_with_ack() {
        let p = progress(progress_msg(
            json!({"status": "in_progress", "progress": {"percent": 10, "step_key": "download_firmware"}}),
            0,
            json!(1),
        ));
        assert_eq!(p.device, gw());
        assert_eq!(p.task, TaskRef::Bid("b".into()));
        assert_eq!(p.status, UpgradeStatus::InProgress);
        assert_eq!(p.phase, Phase::Download);
        assert_eq!(p.percent, Some(10));
        assert_eq!(
            p.ack,
            Some(DjiAck {
                gateway: gw(),
                method: "ota_progress".into(),
                tid: "t".into(),
                bid: "b".into()
            })
        );
        let p = progress(progress_msg(json!({"status": "ok"}), 0, json!(0)));
        assert_eq!(
            (p.status, p.ack, p.percent),
            (UpgradeStatus::Ok, None, None)
        );
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
            (
                "failed",
                312016,
                UpgradeStatus::Failed(Failure::Dji { code: 312016 }),
            ),
            ("failed", 0, UpgradeStatus::Failed(Failure::Dji { code: 0 })),
            (
                "timeout",
                312013,
                UpgradeStatus::Failed(Failure::Dji { code: 312013 }),
            ),
            ("timeout", 0, UpgradeStatus::Timeout),
            ("rejected", 312015, UpgradeStatus::Rejected { code: 312015 }),
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
            vec![Event::DjiOtherEvent {
                gateway: gw(),
                method: "hms".into(),
                ack: Some(DjiAck {
                    gateway: gw(),
                    method: "hms".into(),
                    tid: "t".into(),
                    bid: "b".into()
                })
            }]
        );
        let events = dec(EVENTS, json!({"method": "hms", "data": {}})).unwrap();
        assert_eq!(
            events,
            vec![Event::DjiOtherEvent {
                gateway: gw(),
                method: "hms".into(),
                ack: None
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
            vec![Event::ServiceReply(ServiceReply {
                gateway: gw(),
                method: "ota_create".into(),
                tid: "t".into(),
                bid: "b".into(),
                result: 0,
                status: Some(UpgradeStatus::InProgress)
            })]
        );
        let events = dec(
            REPLY,
            json!({"method": "ota_create", "tid": "t", "bid": "b", "data": {"result": 312014}}),
        )
        .unwrap();
        let [Event::ServiceReply(r)] = events.as_slice() else {
            panic!()
        };
        assert_eq!((r.result, &r.status), (312014, &None));

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
            Failure::Dji { code: 312015 }.describe(),
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
            dialect: DialectOptions::Dji {
                gateway: gw(),
                tid: "t".into(),
                bid: "b".into(),
                timestamp_ms: 1654070968655,
                upgrade_type: DjiUpgradeType::Consistency,
            },
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
        n.dialect = DialectOptions::Dji {
            gateway: gw(),
            tid: "t".into(),
            bid: "b".into(),
            timestamp_ms: 0,
            upgrade_type: DjiUpgradeType::Normal,
        };
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
        n.dialect = DialectOptions::Dji {
            gateway: DeviceId::aliyun("pk", "dn").unwrap(),
            tid: "t".into(),
            bid: "b".into(),
            timestamp_ms: 0,
            upgrade_type: DjiUpgradeType::Normal,
        };
        assert!(matches!(
            encode(&Notice::Upgrade(n)),
            Err(EncodeError::DialectMismatch { .. })
        ));
        let mut n = notice(gw());
        n.dialect = DialectOptions::Dji {
            gateway: gw(),
            tid: String::new(),
            bid: "b".into(),
            timestamp_ms: 0,
            upgrade_type: DjiUpgradeType::Normal,
        };
        assert!(matches!(
            encode(&Notice::Upgrade(n)),
            Err(EncodeError::Invalid(_))
        ));
    }

    #[test]
    fn replies() {
        let ack = DjiAck {
            gateway: gw(),
            method: "update_topo".into(),
            tid: "t".into(),
            bid: "b".into(),
        };
        let o = encode(&Notice::DjiStatusReply {
            ack: ack.clone(),
            timestamp_ms: 5,
        })
        .unwrap();
        assert_eq!(o.topic, "sys/product/DOCK1/status_reply");
        assert_eq!(
            body(&o),
            json!({"tid": "t", "bid": "b", "timestamp": 5, "method": "update_topo", "data": {"result": 0}})
        );
        let ack = DjiAck {
            method: "ota_progress".into(),
            ..ack
        };
        let o = encode(&Notice::DjiEventsReply {
            ack: ack.clone(),
            timestamp_ms: 6,
        })
        .unwrap();
        assert_eq!(o.topic, "thing/product/DOCK1/events_reply");
        assert_eq!(
            body(&o),
            json!({"tid": "t", "bid": "b", "timestamp": 6, "method": "ota_progress", "data": {"result": 0}})
        );
        let bad = DjiAck {
            gateway: DeviceId::fogcloud("a", "b").unwrap(),
            ..ack.clone()
        };
        assert!(matches!(
            encode(&Notice::DjiEventsReply {
                ack: bad,
                timestamp_ms: 0
            }),
            Err(EncodeError::DialectMismatch { .. })
        ));
        let no_method = DjiAck {
            method: String::new(),
            ..ack
        };
        assert!(matches!(
            encode(&Notice::DjiEventsReply {
                ack: no_method,
                timestamp_ms: 0
            }),
            Err(EncodeError::Invalid(_))
        ));
    }
}
