//! Pure protocol codecs: `(topic, bytes)` from devices in, typed [`Event`]s out; typed
//! [`Notice`]s in, `(topic, bytes)` for devices out. No I/O, no clocks, no randomness: ids,
//! timestamps and task ids are chosen by the caller and passed in.
//!
//! One file per dialect (`aliyun`, `fogcloud`, `dji`); this file holds the types they share and
//! the two entry points, [`decode`] and [`encode`]. Adding a dialect touches more than this
//! folder today (ARCHITECTURE.md, "Adding a dialect", lists the places).
//!
//! Everything decoded here came from the network: decoders never panic, refuse payloads over
//! [`MAX_PAYLOAD_BYTES`] before parsing, and name what was wrong in a [`DecodeError`].

pub mod aliyun;
pub mod dji;
mod fields;
pub mod fogcloud;

use serde::{Deserialize, Serialize};

use crate::device_id::{DeviceId, DeviceIdError, Dialect};

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
    /// DJI `update_topo`: a gateway (dock) and its sub-devices (drone). Must be answered with
    /// [`Notice::DjiStatusReply`].
    Topology(Topology),
    /// DJI `services_reply` to a service call we made (`ota_create`).
    ServiceReply(ServiceReply),
    /// DJI dock's `compatible_status` (0 consistent, 1 needs a consistency upgrade).
    DjiCompatibility {
        device: DeviceId,
        compatible_status: i64,
    },
    /// A DJI event on `thing/product/{gateway}/events` other than `ota_progress` (hms,
    /// flighttask_progress, ...). The console does nothing with it except answering it: when it
    /// carries `need_reply: 1`, `ack` is set and must be answered with
    /// [`Notice::DjiEventsReply`], or the dock keeps re-sending it.
    DjiOtherEvent {
        gateway: DeviceId,
        method: String,
        ack: Option<DjiAck>,
    },
}

impl Event {
    /// The device the event is about (for DJI progress and replies: the gateway it came from).
    pub fn device(&self) -> &DeviceId {
        match self {
            Event::Version(v) => &v.device,
            Event::Progress(p) => &p.device,
            Event::FirmwareGet(g) => &g.device,
            Event::Topology(t) => &t.gateway,
            Event::ServiceReply(r) => &r.gateway,
            Event::DjiCompatibility { device, .. } => device,
            Event::DjiOtherEvent { gateway, .. } => gateway,
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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TaskRef {
    /// Alibaba: a device runs at most one upgrade per module, so the device+module is the task.
    None,
    /// FogCloud `task_id`, an integer in a string, echoed from our notice.
    TaskId(String),
    /// DJI `bid`, one per device upgrade.
    Bid(String),
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

/// Why a device says its upgrade failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// Alibaba -1, FogCloud -1.
    UpgradeFailed,
    /// Alibaba -2.
    DownloadFailed,
    /// Alibaba -3: digest or signature check failed.
    VerifyFailed,
    /// Alibaba -4.
    FlashFailed,
    /// DJI: `status` failed/timeout with an error code in `result` (0 when none was given).
    Dji { code: i64 },
}

impl Failure {
    /// The device-side code: Alibaba/FogCloud step, DJI result code.
    pub fn code(&self) -> i64 {
        match self {
            Failure::UpgradeFailed => -1,
            Failure::DownloadFailed => -2,
            Failure::VerifyFailed => -3,
            Failure::FlashFailed => -4,
            Failure::Dji { code } => *code,
        }
    }

    /// A sentence for the UI and reports.
    pub fn describe(&self) -> String {
        match self {
            Failure::UpgradeFailed => "upgrade failed".into(),
            Failure::DownloadFailed => "download failed".into(),
            Failure::VerifyFailed => "verification failed (digest or signature)".into(),
            Failure::FlashFailed => "writing to flash failed".into(),
            Failure::Dji { code } => match dji::error_meaning(*code) {
                Some(m) => format!("DJI error {code}: {m}"),
                None => format!("DJI error {code}"),
            },
        }
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
    /// DJI `rejected`, with the result code that says why (e.g. 312015 aircraft in flight).
    Rejected {
        code: i64,
    },
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
    /// The device with its module. For DJI this is the gateway the event arrived on; the
    /// `task` bid says which device's upgrade it is.
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
    /// FogCloud `sub.upgrade.post`: the gateway that reported for this device.
    pub gateway: Option<DeviceId>,
    /// DJI events with `need_reply: 1` must be answered with this.
    pub ack: Option<DjiAck>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FirmwareGet {
    /// The device with the module it asks about.
    pub device: DeviceId,
    /// Echoed in the reply.
    pub id: MsgId,
}

/// What a DJI reply must echo: the topic's gateway, the method, tid and bid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DjiAck {
    pub gateway: DeviceId,
    pub method: String,
    pub tid: String,
    pub bid: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DjiDevice {
    pub sn: String,
    pub device_type: Option<i64>,
    pub sub_type: Option<i64>,
    pub index: Option<String>,
    pub thing_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub gateway: DeviceId,
    pub gateway_info: DjiDevice,
    /// Empty means the drone went offline.
    pub sub_devices: Vec<DeviceId>,
    pub sub_device_info: Vec<DjiDevice>,
    pub ack: DjiAck,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceReply {
    pub gateway: DeviceId,
    pub method: String,
    pub tid: String,
    pub bid: String,
    /// Non-zero is a DJI error code.
    pub result: i64,
    /// `output.status`, when present.
    pub status: Option<UpgradeStatus>,
}

/// How the firmware's signature is computed (Alibaba `signMethod`, FogCloud `sign_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SignMethod {
    #[default]
    Md5,
    Sha256,
}

/// DJI `firmware_upgrade_type`, by name. The document says 2 = consistency, 3 = normal
/// (DJI's sample server has them swapped; we follow the document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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
    /// FogCloud additive checksum, 8 lowercase hex digits (see `firmware`).
    pub checksum: String,
    /// File name (DJI `file_name`).
    pub file_name: String,
    /// Free text for the device (FogCloud `description`/`desc`).
    pub description: String,
}

/// One upgrade notice to one device (module in its id).
#[derive(Debug, Clone, PartialEq)]
pub struct UpgradeNotice {
    pub device: DeviceId,
    pub offer: FirmwareOffer,
    pub dialect: DialectOptions,
}

/// What each dialect needs beyond the package to address one notice.
#[derive(Debug, Clone, PartialEq)]
pub enum DialectOptions {
    Aliyun {
        /// Message id (a number; Alibaba uses milliseconds).
        id: i64,
        sign_method: SignMethod,
    },
    FogCloud {
        id: i64,
        /// Integer in a string, unique per device upgrade.
        task_id: String,
        /// When set, the device is a sub-device and the notice goes to this gateway as
        /// `sub.firmware.post`.
        gateway: Option<DeviceId>,
    },
    Dji {
        /// The dock the `ota_create` goes to (the device itself when it is a dock).
        gateway: DeviceId,
        tid: String,
        bid: String,
        timestamp_ms: i64,
        upgrade_type: DjiUpgradeType,
    },
}

/// What the console sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// Push an upgrade to one device.
    Upgrade(UpgradeNotice),
    /// FogCloud `sub.firmware.post` for several sub-devices of one gateway in one message.
    /// Each notice's options must be `FogCloud` with this gateway.
    FogCloudSubFirmware {
        gateway: DeviceId,
        id: i64,
        notices: Vec<UpgradeNotice>,
    },
    /// Answer a [`FirmwareGet`]: the pending notice, or `None` for "nothing pending" (only
    /// where the dialect defines such a reply: see [`has_nothing_pending_reply`]).
    FirmwareGetReply {
        request: FirmwareGet,
        pending: Option<UpgradeNotice>,
    },
    /// Answer DJI `update_topo` on `status_reply`.
    DjiStatusReply { ack: DjiAck, timestamp_ms: i64 },
    /// Answer a DJI event with `need_reply: 1` on `events_reply`.
    DjiEventsReply { ack: DjiAck, timestamp_ms: i64 },
}

/// A message ready to publish (QoS 1); defined in the leaf `wire` so that `transport` needs no
/// `protocol`.
pub use crate::wire::Outbound;

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
    #[error("notice for {device} carries options of another dialect")]
    DialectMismatch { device: DeviceId },
    #[error("{0}")]
    Invalid(String),
}

/// The wildcard topics the console subscribes to for one dialect.
pub fn subscriptions(dialect: Dialect) -> &'static [&'static str] {
    match dialect {
        Dialect::Aliyun => aliyun::SUBSCRIPTIONS,
        Dialect::FogCloud => fogcloud::SUBSCRIPTIONS,
        Dialect::Dji => dji::SUBSCRIPTIONS,
    }
}

/// Whether the dialect defines a reply to a device's firmware request that says "nothing
/// pending": Alibaba's `get_reply` with `"data":{}` does. FogCloud's document defines none (a
/// device parses a `firmware.post` without fields as a broken notice), so there the answer to
/// "nothing pending" is silence. DJI devices never ask.
pub fn has_nothing_pending_reply(dialect: Dialect) -> bool {
    dialect == Dialect::Aliyun
}

/// Which dialect a topic belongs to, by its shape alone.
pub fn dialect_of_topic(topic: &str) -> Option<Dialect> {
    if aliyun::owns_topic(topic) {
        Some(Dialect::Aliyun)
    } else if fogcloud::owns_topic(topic) {
        Some(Dialect::FogCloud)
    } else if dji::owns_topic(topic) {
        Some(Dialect::Dji)
    } else {
        None
    }
}

/// Decodes one inbound message into the events it carries.
pub fn decode(topic: &str, payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(DecodeError::TooLarge { len: payload.len() });
    }
    match dialect_of_topic(topic) {
        Some(Dialect::Aliyun) => aliyun::decode(topic, payload),
        Some(Dialect::FogCloud) => fogcloud::decode(topic, payload),
        Some(Dialect::Dji) => dji::decode(topic, payload),
        None => Err(DecodeError::UnknownTopic(truncate_for_log(topic))),
    }
}

/// Encodes one notice into the message to publish.
pub fn encode(notice: &Notice) -> Result<Outbound, EncodeError> {
    let dialect = match notice {
        Notice::Upgrade(n) => n.device.dialect(),
        Notice::FogCloudSubFirmware { .. } => Dialect::FogCloud,
        Notice::FirmwareGetReply { request, .. } => request.device.dialect(),
        Notice::DjiStatusReply { .. } | Notice::DjiEventsReply { .. } => Dialect::Dji,
    };
    match dialect {
        Dialect::Aliyun => aliyun::encode(notice),
        Dialect::FogCloud => fogcloud::encode(notice),
        Dialect::Dji => dji::encode(notice),
    }
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
