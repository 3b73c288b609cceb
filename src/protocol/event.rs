//! What devices say, decoded: [`Event`](crate::protocol::Event) and the reports it carries. Shared by every dialect; no
//! type here names one (dialect-specific detail travels as data: task keys, failure codes with
//! their dialect, answers whose content the dialect's codec chose).

use serde::{Deserialize, Serialize};

use crate::device_id::{DeviceId, DialectId};

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
    /// sends it back as [`Notice::Answer`](crate::protocol::Notice::Answer).
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

/// The kind of an [`Event`], without its data (what a dialect's [`Sample`](crate::protocol::Sample)s decode to).
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

    /// The device the event is about (for progress and replies of a [`Subject::Gateway`](crate::protocol::Subject::Gateway)
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
    /// The dialect issues no key ([`KeySource::None`](crate::protocol::KeySource::None)): the device+module is the task.
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

/// Why a device says its upgrade failed: a code of its dialect's
/// [`ErrorTable`](crate::protocol::ErrorTable), which gives the sentence for it
/// ([`crate::protocol::registry::describe`]). Two words, no text: a fleet keeps one per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub dialect: DialectId,
    /// The device-side code (Alibaba step, FogCloud step, DJI result).
    pub code: i64,
}

impl Failure {
    pub fn code(&self) -> i64 {
        self.code
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
    /// The device with its module. For a [`Subject::Gateway`](crate::protocol::Subject::Gateway) dialect this is the gateway the
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

/// A device's reply to a request the console made ([`Acknowledgement::ByReply`](crate::protocol::Acknowledgement::ByReply)).
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
