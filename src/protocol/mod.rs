//! Pure protocol codecs: `(topic, bytes)` from devices in, typed [`Event`]s out; typed
//! [`Notice`]s in, `(topic, bytes)` for devices out. No I/O, no clocks, no randomness: ids,
//! timestamps and task ids are chosen by the caller and passed in.
//!
//! One folder per dialect (`aliyun`, `fogcloud`, `dji`), each implementing the [`Dialect`] trait
//! of `dialect.rs` and listed once in `registry.rs`. The value types they share name no dialect:
//! `event.rs` (what devices say), `notice.rs` (what the console sends), `settings.rs` (notice
//! settings), `error.rs`, `payload.rs` (size and JSON bounds). This file only re-exports them and
//! holds the two entry points, [`decode`] and [`encode`], which dispatch through the registry; no
//! child imports it back. Adding a dialect is a folder and a registry line (ARCHITECTURE.md,
//! "Adding a dialect"). `user/` implements the trait once more, over a dialect file loaded at
//! run time (`ota-console --dialect-file`, the data dir's `dialects/` folder).
//!
//! Everything decoded here came from the network: decoders never panic, refuse payloads over
//! [`MAX_PAYLOAD_BYTES`] before parsing, and name what was wrong in a [`DecodeError`].

pub mod aliyun;
pub mod aws;
mod dialect;
pub mod dji;
mod error;
mod event;
mod fields;
pub mod fogcloud;
mod notice;
mod payload;
pub mod registry;
mod service;
mod services;
mod settings;
pub mod user;

pub use self::dialect::{
    Acknowledgement, CancelSupport, Capabilities, Dialect, ErrorCode, ErrorTable, FailureValues,
    KeyScope, KeySource, NothingPending, OfferField, Presence, Pull, ReplySpec, Sample, Samples,
    SubDevices, Subject, TaskKeySpec,
};
pub use self::error::{DecodeError, EncodeError, MAX_PAYLOAD_BYTES};
pub use self::event::{
    Answer, Event, EventKind, ExchangeReply, Failure, FirmwareGet, MemberInfo, MsgId, Phase,
    ProgressReport, TaskRef, Topology, UpgradeStatus, VersionReport,
};
pub use self::notice::{FirmwareOffer, Notice, NoticeAddress, UpgradeNotice};
pub(crate) use self::payload::{parse_json, truncate_for_log};
pub use self::registry::{dialect_of_topic, subscriptions};
pub use self::service::{Served, Service};
pub use self::services::Services;
pub use self::settings::{Choice, NoticeSetting, SettingValues};

/// A message ready to publish (QoS 1); defined in the leaf `wire` so that `transport` needs no
/// `protocol`.
pub use crate::wire::Outbound;

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
