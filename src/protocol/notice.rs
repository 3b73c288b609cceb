//! What the console sends: [`Notice`](crate::protocol::Notice) — an upgrade offered to one device (the package, how it is
//! addressed, the campaign's settings for the device's dialect), the answer to a device asking,
//! or an answer the device's protocol requires.

use serde::{Deserialize, Serialize};

use super::event::{Answer, FirmwareGet, TaskRef};
use super::settings::SettingValues;
use crate::device_id::DeviceId;

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
    /// Free text for the device (only dialects whose [`Capabilities::offer_fields`](crate::protocol::Capabilities::offer_fields) list
    /// [`OfferField::Description`](crate::protocol::OfferField::Description) carry it).
    pub description: String,
}

/// One upgrade notice to one device (module in its id).
#[derive(Debug, Clone, PartialEq)]
pub struct UpgradeNotice {
    pub device: DeviceId,
    pub offer: FirmwareOffer,
    pub address: NoticeAddress,
    /// The campaign's choices for this dialect's [`NoticeSetting`](crate::protocol::NoticeSetting)s.
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
    /// [`Subject::Gateway`](crate::protocol::Subject::Gateway) dialect: always set, the device itself when it is a gateway).
    pub gateway: Option<DeviceId>,
    /// The task key the campaign issued ([`TaskKeySpec`](crate::protocol::TaskKeySpec)).
    pub task: TaskRef,
    /// The exchange id of a request answered by reply ([`Acknowledgement::ByReply`](crate::protocol::Acknowledgement::ByReply)).
    pub exchange_id: Option<String>,
    /// How long the campaign gives the device from this notice to the new version (its
    /// policy's device timeout), for a protocol that carries a timeout of its own (AWS IoT Jobs
    /// times the execution out with it).
    pub device_timeout_ms: Option<u64>,
}

/// What the console sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// Push an upgrade to one device.
    Upgrade(UpgradeNotice),
    /// Answer a [`FirmwareGet`](crate::protocol::FirmwareGet): the pending notice, or `None` for "nothing pending" (only
    /// where the dialect defines such a reply: [`NothingPending::EmptyReply`](crate::protocol::NothingPending::EmptyReply)).
    FirmwareGetReply {
        request: FirmwareGet,
        pending: Option<UpgradeNotice>,
    },
    /// Answer a message the protocol requires answered ([`Event::Answer`](crate::protocol::Event::Answer)).
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
