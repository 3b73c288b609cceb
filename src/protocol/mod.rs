//! Pure protocol codecs: `(topic, bytes)` from devices in, typed [`Event`]s out; typed
//! [`Notice`]s in, `(topic, bytes)` for devices out. No I/O, no clocks, no randomness: ids,
//! timestamps and task ids are chosen by the caller and passed in.
//!
//! One folder per dialect (`aliyun`, `fogcloud`, `dji`), each implementing the [`Dialect`] trait
//! of `dialect.rs` and listed once in `registry.rs`; this file holds the value types they share
//! (none of them names a dialect) and the two entry points, [`decode`] and [`encode`], which
//! dispatch through the registry. Adding a dialect is a folder and a registry line
//! (ARCHITECTURE.md, "Adding a dialect").
//!
//! Everything decoded here came from the network: decoders never panic, refuse payloads over
//! [`MAX_PAYLOAD_BYTES`] before parsing, and name what was wrong in a [`DecodeError`].

pub mod aliyun;
mod dialect;
pub mod dji;
mod fields;
pub mod fogcloud;
pub mod registry;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use self::dialect::{
    Acknowledgement, CancelSupport, Capabilities, Choice, Dialect, ErrorCode, ErrorTable, KeyScope,
    KeySource, NothingPending, NoticeSetting, OfferField, Presence, Pull, ReplySpec, Sample,
    Samples, SubDevices, Subject, TaskKeySpec,
};
pub use self::registry::{dialect_of_topic, subscriptions};
use crate::device_id::{DeviceId, DeviceIdError, DialectId};

/// Largest payload any decoder will parse. Real OTA messages are well under 4 KiB.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// A message id as the device sent it (Alibaba sends strings, FogCloud numbers), echoed back
/// unchanged in replies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MsgId {
    Num(i64),
    Str(String),
}

/// What a device reported, decoded from one message. One message may carry several events
/// (FogCloud `sub.*` arrays, DJI state with several properties).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The version of one module (Alibaba inform, FogCloud `version.post` / `sub.version.post`,
    /// DJI `firmware_version` on state or osd).
    Version(VersionReport),
    /// Upgrade progress or outcome (Alibaba progress, FogCloud `upgrade.post` /
    /// `sub.upgrade.post`, DJI `ota_progress`).
    Progress(ProgressReport),
    /// The device asks for its pending upgrade (Alibaba `thing.ota.firmware.get`, FogCloud
    /// `firmware.get`).
    FirmwareGet(FirmwareGet),
    /// A gateway and the sub-devices attached to it now (DJI `update_topo`).
    Topology(Topology),
    /// A reply to a request the console made (DJI `services_reply` to `ota_create`).
    Reply(ExchangeReply),
    /// The protocol requires this message to be answered (DJI `need_reply`, `update_topo`).
    /// The codec that decoded the message puts it before the events of that message; the engine
    /// sends it back as [`Notice::Answer`].
    Answer(Answer),
    /// A numeric property of a device that the window shows (DJI dock `compatible_status`).
    Attribute {
        device: DeviceId,
        name: &'static str,
        value: i64,
    },
    /// A message the console has no use for beyond knowing the device is alive (DJI `hms`,
    /// `flighttask_progress`, …).
    Heard { device: DeviceId, what: String },
}

/// The kind of an [`Event`], without its data (what a dialect's [`Sample`]s decode to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Version,
    Progress,
    FirmwareGet,
    Topology,
    Reply,
    Answer,
    Attribute,
    Heard,
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Version(_) => EventKind::Version,
            Event::Progress(_) => EventKind::Progress,
            Event::FirmwareGet(_) => EventKind::FirmwareGet,
            Event::Topology(_) => EventKind::Topology,
            Event::Reply(_) => EventKind::Reply,
            Event::Answer(_) => EventKind::Answer,
            Event::Attribute { .. } => EventKind::Attribute,
            Event::Heard { .. } => EventKind::Heard,
        }
    }

    /// The device the event is about (for progress and replies of a [`Subject::Gateway`]
    /// dialect: the gateway it came from).
    pub fn device(&self) -> &DeviceId {
        match self {
            Event::Version(v) => &v.device,
            Event::Progress(p) => &p.device,
            Event::FirmwareGet(g) => &g.device,
            Event::Topology(t) => &t.gateway,
            Event::Reply(r) => &r.gateway,
            Event::Answer(a) => &a.to,
            Event::Attribute { device, .. } | Event::Heard { device, .. } => device,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VersionReport {
    /// The device, with its module (`None` = default module).
    pub device: DeviceId,
    pub version: String,
    /// The gateway that reported for this device (FogCloud `sub.version.post`), if any.
    pub gateway: Option<DeviceId>,
}

/// Which upgrade a progress report belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum TaskRef {
    /// The dialect issues no key ([`KeySource::None`]): the device+module is the task.
    #[default]
    None,
    /// The key the console issued with the notice, echoed by the device (FogCloud `task_id`,
    /// DJI `bid`).
    Key(String),
}

/// The upgrade step a device is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Download,
    Install,
    /// The dialect does not say (Alibaba and FogCloud report one percentage for everything).
    Unspecified,
}

/// Why a device says its upgrade failed: the code in its dialect's [`ErrorTable`] and the
/// sentence that table gives for it (filled in by the codec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub dialect: DialectId,
    /// The device-side code (Alibaba step, FogCloud step, DJI result).
    pub code: i64,
    pub text: String,
}

impl Failure {
    pub fn code(&self) -> i64 {
        self.code
    }

    /// A sentence for the UI and reports.
    pub fn describe(&self) -> String {
        self.text.clone()
    }
}

/// Where a device says its upgrade stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeStatus {
    /// DJI `sent`: the task reached the device, nothing done yet.
    Sent,
    /// Working; see `percent` and `phase`.
    InProgress,
    /// DJI `paused`.
    Paused,
    /// DJI `ok`. Alibaba and FogCloud never say this: their success is a version report.
    Ok,
    Failed(Failure),
    /// The device refused the upgrade, and why (DJI `rejected` with e.g. 312015, aircraft in
    /// flight).
    Rejected(Failure),
    /// DJI `canceled`.
    Canceled,
    /// DJI `timeout` (the device's own timeout, not ours).
    Timeout,
}

impl UpgradeStatus {
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            UpgradeStatus::Sent | UpgradeStatus::InProgress | UpgradeStatus::Paused
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProgressReport {
    /// The device with its module. For a [`Subject::Gateway`] dialect this is the gateway the
    /// report arrived on, and the `task` key says which device's upgrade it is.
    pub device: DeviceId,
    pub task: TaskRef,
    pub status: UpgradeStatus,
    pub phase: Phase,
    /// 0..=100 when the device gave one (clamped; see `percent_clamped`).
    pub percent: Option<u8>,
    /// The device sent a percentage outside 0..=100 and it was clamped.
    pub percent_clamped: bool,
    /// Free text from the device (`desc`), often Chinese.
    pub desc: Option<String>,
    /// The gateway that reported for this device (FogCloud `sub.upgrade.post`), if any.
    pub gateway: Option<DeviceId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FirmwareGet {
    /// The device with the module it asks about.
    pub device: DeviceId,
    /// Echoed in the reply.
    pub id: MsgId,
}

/// A reply the device's protocol requires, built by the codec that decoded the message and
/// encoded by the same dialect: what it must echo is the codec's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Where the answer goes (the gateway whose topic the message came on).
    pub to: DeviceId,
    /// Which reply (e.g. DJI `status_reply`, `events_reply`).
    pub channel: &'static str,
    /// The request's method, echoed.
    pub method: String,
    /// Values the reply must echo, by field name (e.g. DJI `tid`, `bid`).
    pub echo: Vec<(&'static str, String)>,
}

impl Answer {
    /// The echoed value of `field`.
    pub fn echoed(&self, field: &str) -> Option<&str> {
        self.echo
            .iter()
            .find(|(name, _)| *name == field)
            .map(|(_, value)| value.as_str())
    }
}

/// What a gateway said about one device it reports (DJI `update_topo` entries).
#[derive(Debug, Clone, PartialEq)]
pub struct MemberInfo {
    /// The device's own name or serial number.
    pub name: String,
    pub device_type: Option<i64>,
    pub sub_type: Option<i64>,
    pub index: Option<String>,
    pub thing_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub gateway: DeviceId,
    pub gateway_info: MemberInfo,
    /// Empty means the sub-device went offline.
    pub sub_devices: Vec<DeviceId>,
    pub sub_device_info: Vec<MemberInfo>,
}

/// A device's reply to a request the console made ([`Acknowledgement::ByReply`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeReply {
    /// The gateway whose topic the reply came on.
    pub gateway: DeviceId,
    /// The request's name (`ota_create`).
    pub request: String,
    /// The exchange id the request carried (DJI `tid`).
    pub exchange_id: String,
    /// The task key the request carried (DJI `bid`).
    pub task: TaskRef,
    /// Set when the device refused the request.
    pub failure: Option<Failure>,
    /// Where the upgrade stands, when the reply says.
    pub status: Option<UpgradeStatus>,
}

/// The package a notice offers, as every dialect needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareOffer {
    /// Target version.
    pub version: String,
    /// Where the device downloads it.
    pub url: String,
    pub size: u64,
    /// Lowercase hex.
    pub md5: String,
    /// Lowercase hex.
    pub sha256: String,
    /// 32-bit additive checksum, 8 lowercase hex digits (see `firmware`).
    pub checksum: String,
    /// File name.
    pub file_name: String,
    /// Free text for the device (only dialects whose [`Capabilities::offer_fields`] list
    /// [`OfferField::Description`] carry it).
    pub description: String,
}

/// One upgrade notice to one device (module in its id).
#[derive(Debug, Clone, PartialEq)]
pub struct UpgradeNotice {
    pub device: DeviceId,
    pub offer: FirmwareOffer,
    pub address: NoticeAddress,
    /// The campaign's choices for this dialect's [`NoticeSetting`]s.
    pub settings: SettingValues,
}

/// What addresses one notice beyond the package: chosen by the campaign, used by each dialect
/// as its document says (a dialect ignores what it has no field for).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NoticeAddress {
    /// Message id (Alibaba and FogCloud `id`).
    pub msg_id: i64,
    /// When the notice is built, milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// The gateway the notice goes through, when the device is a sub-device (for a
    /// [`Subject::Gateway`] dialect: always set, the device itself when it is a gateway).
    pub gateway: Option<DeviceId>,
    /// The task key the campaign issued ([`TaskKeySpec`]).
    pub task: TaskRef,
    /// The exchange id of a request answered by reply ([`Acknowledgement::ByReply`]).
    pub exchange_id: Option<String>,
}

/// The values of a dialect's notice settings for one campaign: setting key → choice value.
/// Settings not given take the setting's default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SettingValues(pub BTreeMap<String, String>);

impl SettingValues {
    /// The value of `setting`, or its default.
    pub fn value_of(&self, setting: &NoticeSetting) -> &'static str {
        self.0
            .get(setting.key)
            .and_then(|v| setting.choice(v))
            .map_or(setting.default, |c| c.value)
    }
}

/// What the console sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// Push an upgrade to one device.
    Upgrade(UpgradeNotice),
    /// Answer a [`FirmwareGet`]: the pending notice, or `None` for "nothing pending" (only
    /// where the dialect defines such a reply: [`NothingPending::EmptyReply`]).
    FirmwareGetReply {
        request: FirmwareGet,
        pending: Option<UpgradeNotice>,
    },
    /// Answer a message the protocol requires answered ([`Event::Answer`]).
    Answer { answer: Answer, timestamp_ms: i64 },
}

impl Notice {
    /// The device whose dialect encodes this notice.
    pub fn device(&self) -> &DeviceId {
        match self {
            Notice::Upgrade(n) => &n.device,
            Notice::FirmwareGetReply { request, .. } => &request.device,
            Notice::Answer { answer, .. } => &answer.to,
        }
    }
}

/// A message ready to publish (QoS 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Why an inbound message was refused. Each variant says what was wrong, for the log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is {len} bytes; at most {MAX_PAYLOAD_BYTES} are accepted")]
    TooLarge { len: usize },
    #[error("topic {0:?} is not an OTA topic of any dialect")]
    UnknownTopic(String),
    #[error("bad device identity: {0}")]
    BadIdentity(#[from] DeviceIdError),
    #[error("payload is not valid JSON: {0}")]
    Json(String),
    #[error("field `{0}` is missing")]
    MissingField(&'static str),
    #[error("field `{field}` should be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("field `{field}` has an invalid value: {detail}")]
    BadValue { field: &'static str, detail: String },
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
}

/// Why a notice could not be encoded (a caller bug or a mismatched dialect, never device data).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("notice for {device} cannot be encoded by another dialect")]
    DialectMismatch { device: DeviceId },
    #[error("{0}")]
    Invalid(String),
}

/// Decodes one inbound message into the events it carries.
pub fn decode(topic: &str, payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(DecodeError::TooLarge { len: payload.len() });
    }
    match dialect_of_topic(topic) {
        Some(dialect) => dialect.decode(topic, payload),
        None => Err(DecodeError::UnknownTopic(truncate_for_log(topic))),
    }
}

/// Encodes one notice into the message to publish, by the dialect of the device it is for.
pub fn encode(notice: &Notice) -> Result<Outbound, EncodeError> {
    registry::get(notice.device().dialect()).encode(notice)
}

/// Parses a payload as JSON after the size check, mapping errors to [`DecodeError`].
pub(crate) fn parse_json(payload: &[u8]) -> Result<serde_json::Value, DecodeError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(DecodeError::TooLarge { len: payload.len() });
    }
    // serde_json refuses nesting deeper than 128 levels, so hostile depth cannot overflow the
    // stack.
    serde_json::from_slice(payload).map_err(|e| DecodeError::Json(e.to_string()))
}

/// Topics and texts from the network are shortened before they go into errors and logs.
pub(crate) fn truncate_for_log(text: &str) -> String {
    const MAX_CHARS: usize = 200;
    if text.chars().count() <= MAX_CHARS {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(MAX_CHARS).collect();
        s.push('…');
        s
    }
}
