//! The rollout state machine: one [`Campaign`] = one firmware offer × a set of target devices ×
//! a [`Policy`]. Pure and deterministic: `(input, now) -> actions`. It owns every decision of a
//! rollout (who is noticed when, what a report means, when a device succeeded, failed, timed
//! out, when a wave opens, when the campaign aborts) and does no I/O: no clock, no randomness,
//! no MQTT, no SQLite, no logging framework. Time comes in as `now`, ids from an [`IdSource`].
//!
//! # Using it (the engine's side)
//!
//! ```text
//! let spec = CampaignSpec { name, offer, module, settings, policy };
//! let id = store.next_campaign_id()?;
//! let mut campaign = Campaign::new(id, spec, targets, now)?;      // Draft
//! store.create_campaign(&campaign.persisted())?;
//! for action in campaign.handle(Input::Start, now, &mut ids) { execute(action) }
//! // then, for every decoded protocol::Event about a target, every device seen online/offline,
//! // every operator command, and whenever now >= campaign.next_deadline() (Input::Tick):
//! for action in campaign.handle(input, now, &mut ids) { execute(action) }
//! ```
//!
//! - `now` is a [`Timestamp`] (milliseconds since the Unix epoch) read by the engine; a clock
//!   that steps back is treated as standing still.
//! - `ids` is the [`IdSource`] for UUID task keys ([`KeySource::Uuid`]) and the exchange ids of
//!   requests answered by reply (UUID strings; DJI bids and tids): [`RandomIds`] in the engine,
//!   [`SequentialIds`] (or any `FnMut() -> String`) in tests. Counter task keys
//!   ([`KeySource::Counter`], FogCloud `task_id`s) are counted inside the campaign.
//! - [`Campaign::next_deadline`] says when the campaign next needs an `Input::Tick` (device
//!   timeouts, reply waits, retry times, the rate limiter's next token); `None` = only an
//!   input can change anything. Every `handle` call fires due timers first, so a late tick is
//!   harmless and an early one does nothing.
//!
//! # Executing actions, in order
//!
//! - [`Action::Persist`]: write the [`Transition`] with `Store::apply` and wait for it to return
//!   before executing any later action: a transition is durable before what it causes goes out.
//!   Consecutive `Persist` actions may be applied in one transaction (`Store::apply_all`).
//! - [`Action::SendUpgrade`]: build the notice with [`Campaign::build_notice`] (the campaign
//!   holds the offer and dialect settings; the engine supplies the route: the gateway of a
//!   sub-device ([`SubDevices::ThroughGateway`]; a FogCloud gateway, a DJI dock), a message id,
//!   a timestamp, the device's own download
//!   link when the embedded server grants one per device), encode it with
//!   `protocol::encode` and publish. If the publish fails, feed [`Input::PublishFailed`].
//! - [`Action::ReplyFirmwareGet`]: answer the device's request with
//!   `Notice::FirmwareGetReply { request, pending: pending.map(build_notice) }`. `pending` is
//!   `None` only for dialects with a "nothing pending" reply ([`NothingPending::EmptyReply`],
//!   e.g. Alibaba); for [`NothingPending::Silence`] dialects (e.g. FogCloud) the campaign emits
//!   no reply at all then.
//! - [`Action::CampaignStateChanged`], [`Action::Log`]: for the UI and the event log.
//!
//! The UI reads [`Campaign::snapshot`] (serde-serialisable, also the JSON report).
//!
//! # Routing (the engine's job)
//!
//! A campaign ignores events about devices that are not its targets and answers `FirmwareGet`
//! only for its targets ([`Campaign::is_target`]): when no campaign has the device, the engine
//! answers "nothing pending" itself where the dialect has such a reply (e.g. Alibaba) and stays
//! silent where it has none (e.g. FogCloud). A device+module belongs to at most one unfinished
//! campaign; the engine refuses to start a second one over the same device+module. Reports of a
//! dialect whose task key is global ([`KeyScope::Global`]) and whose progress comes from the
//! gateway ([`Subject::Gateway`]) name only the gateway and the key (e.g. a DJI dock and the
//! bid): offer them to every campaign with devices of that dialect, the key decides.
//! `Event::Topology` is not a campaign input: turn it into [`Input::Seen`] for the gateway and
//! its sub-devices.
//!
//! # Semantics, precisely
//!
//! - **Statuses**: `pending → noticed → downloading(%) → installing(%) → succeeded`, or
//!   `failed(reason, code)`, `rejected`, `timed_out`, `canceled`, `skipped`. A device waiting for
//!   a retry is `pending` with `attempts > 0`, its last `error`, and `retry_at`.
//! - **Success** only when the device reports the target version (a `Version` event for that
//!   device+module, whatever the dialect calls it, e.g. DJI's `firmware_version`) after our
//!   notice. A progress report of 100 % or "done" only means "installing 100 %"; without the
//!   version report the attempt ends `timed_out`. A device
//!   with no notice in flight claiming progress or success changes nothing. A target-version
//!   report after a timeout or failure of this campaign still counts (a late success).
//! - **Percent** is per phase (downloading, then installing), never lower than before within a
//!   phase of one attempt; phases never go back; out-of-range values arrive clamped by the
//!   codec and cause a `Log`. A new attempt starts at 0.
//! - **Finished** = a terminal status: succeeded, failed / timed_out with no retry left,
//!   rejected, canceled, skipped.
//! - **Waves**: at start, devices whose known version the filter excludes are skipped; the rest
//!   are cut into a canary wave and waves of `wave_size`, most recently heard first (the
//!   target's `heard_at`, then any `Seen` or report before the start; devices not heard since
//!   the console started go last; ties keep the target order). The next wave opens
//!   when `succeeded * 100 >= success_threshold_percent * (wave members - skipped - canceled)`
//!   for the latest opened wave (default 100: every device of the wave succeeded), or at once
//!   on `AdvanceWave`. A wave that finished below the threshold blocks (a `Log`, and
//!   `snapshot().waves.blocked`) until the operator advances.
//! - **Version filter**: a device already on the target version is skipped; with
//!   `only_from_versions`, a device on another version is skipped with the reason, and a device
//!   whose version is unknown waits until it reports one. Checked at start, when its wave opens
//!   and just before its notice.
//! - **Rate** ([`policy::RateLimit`]) counts first notices and retries; re-sends (reply wait,
//!   ack window, device back online) do not. **Concurrency**: at most `max_in_flight` devices
//!   noticed/downloading/installing.
//! - **Acknowledged by first report** ([`Acknowledgement::ByFirstReport`], e.g. Alibaba,
//!   FogCloud): a notice is answered by the device's first progress or version report. Without
//!   one within `ack_window_ms` the same notice (same attempt, same task key) is re-sent, up to
//!   `ack_resends` times, each wait `ack_backoff` times longer (defaults: 10 s, 3, ×2: re-sent at
//!   +10 s, +30 s, +70 s); then only the device timeout is left. Re-sends are counted per device
//!   (`resends`, persisted; shown in the window and the report) and the wait is persisted, so it
//!   goes on after a restart. Dialects acknowledged by reply keep their own reply wait instead
//!   (below), not doubled.
//! - **Acknowledged by reply** ([`Acknowledgement::ByReply`], e.g. DJI `ota_create` answered by
//!   `services_reply`): without a matching reply (or any progress on the task key) within
//!   `reply_timeout_ms` the request is re-sent, `reply_resends` times (with a fresh exchange id
//!   when [`ReplySpec::fresh_exchange_per_send`]; the task key stays), then the attempt fails
//!   with "no reply". A reply carrying a failure code fails the attempt with that code
//!   (rejected if the reply says so).
//! - **Task keys** ([`TaskKeySpec`]): one key per attempt, from the dialect's [`KeySource`]
//!   (none, e.g. Alibaba: progress is matched by device+module while in flight; a counter, e.g.
//!   FogCloud `task_id`; a UUID, e.g. DJI `bid`). With a key, progress naming another key than
//!   the device's current one is ignored with a `Log`. Its [`KeyScope`] says whether reports
//!   carry the device beside the key or only the key (and the gateway it came through).
//! - **One upgrade per gateway** ([`Capabilities::one_upgrade_per_gateway`], e.g. a DJI dock and
//!   its drone): a gateway and its sub-devices are never noticed at the same time; the others
//!   wait until the one in flight finishes.
//! - **Presence** ([`Presence`]) and **Settle**: a device of a dialect that announces itself on
//!   connect ([`Presence::AnnouncesOnConnect`], e.g. Alibaba, FogCloud) heard while it waits for
//!   its notice (a version report), one that comes back online, and one the engine heard less
//!   than `settle_ms` before the start (`note_heard`) is not noticed before `settle_ms`
//!   (default 2 s) has passed: some SDKs publish their version before they subscribe. A device
//!   that asks (`FirmwareGet`) is listening, so it is not made to wait. Devices that report all
//!   the time ([`Presence::Continuous`], e.g. DJI) are never held.
//! - **Timeout** from each notice to the target version report. **Retries**: a failed or
//!   timed-out device is noticed again after `retry_interval_secs`, up to `retries` times;
//!   rejected (and canceled by the device) never. `RetryFailed` gives failed and timed-out devices a
//!   fresh budget (and re-opens a completed campaign).
//! - **Abort**: when `failures * 100 > failure_percent * judged` with `judged >= min_finished`
//!   (judged = succeeded + final failures), the campaign is `aborted`: no notice ever again,
//!   pending devices end canceled (or as their last failure if they were waiting for a retry);
//!   devices in flight are still followed to their end. `Cancel` does the same on command.
//!   `Pause` stops new notices and retries; in-flight devices still report and time out.
//! - **Broker outage** (`BrokerLost` .. `BrokerBack`): while the console's own link is down it
//!   can hear no device, so no timer fires (timeouts, reply waits, retries) and no notice
//!   goes out; when the link is back, the deadline and reply wait of every device in flight
//!   move later by the length of the outage (persisted), and everything due fires from then.
//!   A partition longer than the device timeout therefore times out nobody by itself; a device
//!   that stays silent after the link is back times out at its shifted deadline. Devices still
//!   `noticed` then get their notice re-sent (it may have been lost with their session).
//! - **Re-sends on resume**: a resumed campaign re-sends the notice in flight to its online
//!   `noticed` devices (acknowledged by first report only; a reply wait re-sends on its own):
//!   the console may have died between recording a notice and
//!   publishing it. With `settle_ms > 0` this re-send (and the one after a broker outage) waits
//!   `settle_ms` for an answer first, as does an ack wait that ran out while the console was
//!   down: what devices reported meanwhile arrives from the console's persistent session, and a
//!   device that already succeeded must not get a second notice.
//! - **Offline** devices are not noticed; they get their notice when seen again
//!   (`Input::Seen`, or any event from them). A device seen again while `noticed`
//!   (acknowledged by first report) gets the same notice re-sent (as the Alibaba platform does).
//! - **FirmwareGet** (a pull, where the dialect supports it: [`Pull::Supported`]) from a target:
//!   answered at once, with the request's id, with the
//!   notice in flight (a re-send), or a new notice carried by the reply instead of a separate
//!   `SendUpgrade`. A pull is a notice: a pending device whose turn may come (campaign running,
//!   wave open, version filter passed, no retry wait) is noticed by its pull even when the
//!   scheduler has not reached it. It takes a concurrency slot like any notice (when the cap is
//!   full the pull is not answered with a notice: the device asks again, or gets the push when a
//!   slot frees), and it takes a rate token when one is there but never waits for one (the rate
//!   paces pushes; a device paces its own pulls). Otherwise the dialect's "nothing pending":
//!   an empty reply ([`NothingPending::EmptyReply`], e.g. Alibaba's `"data":{}`) or nothing at
//!   all ([`NothingPending::Silence`], e.g. FogCloud, whose document defines no empty reply).
//! - **Resume** ([`Campaign::resume`]): from the store's [`PersistedCampaign`]; succeeded
//!   devices are never noticed again; in-flight devices stay in flight with their deadlines;
//!   a campaign stored as `draft` still needs `Start`.
//!
//! [`Acknowledgement::ByFirstReport`]: crate::protocol::Acknowledgement::ByFirstReport
//! [`Acknowledgement::ByReply`]: crate::protocol::Acknowledgement::ByReply
//! [`Capabilities::one_upgrade_per_gateway`]: crate::protocol::Capabilities::one_upgrade_per_gateway
//! [`KeyScope`]: crate::protocol::KeyScope
//! [`KeyScope::Global`]: crate::protocol::KeyScope::Global
//! [`KeySource`]: crate::protocol::KeySource
//! [`KeySource::Counter`]: crate::protocol::KeySource::Counter
//! [`KeySource::Uuid`]: crate::protocol::KeySource::Uuid
//! [`NothingPending::EmptyReply`]: crate::protocol::NothingPending::EmptyReply
//! [`NothingPending::Silence`]: crate::protocol::NothingPending::Silence
//! [`Presence`]: crate::protocol::Presence
//! [`Presence::AnnouncesOnConnect`]: crate::protocol::Presence::AnnouncesOnConnect
//! [`Presence::Continuous`]: crate::protocol::Presence::Continuous
//! [`Pull::Supported`]: crate::protocol::Pull::Supported
//! [`ReplySpec::fresh_exchange_per_send`]: crate::protocol::ReplySpec::fresh_exchange_per_send
//! [`SubDevices::ThroughGateway`]: crate::protocol::SubDevices::ThroughGateway
//! [`Subject::Gateway`]: crate::protocol::Subject::Gateway
//! [`TaskKeySpec`]: crate::protocol::TaskKeySpec

mod campaign;
pub(crate) mod device;
pub mod lock;
pub mod note;
pub mod policy;
pub mod rate;
pub mod record;
pub mod snapshot;
pub mod status;
pub mod waves;

use crate::i18n::tr;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Defined in the leaf `time`, so that `access` (login back-off) needs no `rollout`.
pub use crate::time::Timestamp;
pub use campaign::{Campaign, NoticeRoute};
pub use note::Note;
pub use policy::{AbortThreshold, CanarySize, LIMITS, Policy, PolicyLimits, RateLimit};
pub use record::{
    CampaignSpec, CampaignState, Change, DeviceStatus, DialectSettings, FailureCode,
    PersistedCampaign, ReplyWait, SettingRefused, Target, TargetRecord, TaskRecord, Transition,
};
pub use snapshot::{CampaignSnapshot, Counts, DeviceLines, DeviceSnapshot, WaveSnapshot};

use crate::device_id::{DeviceId, DeviceIdError};
use crate::protocol::{Event, FirmwareGet, TaskRef};

/// A campaign's id (the store's primary key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CampaignId(pub i64);

impl fmt::Display for CampaignId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where the ids the protocol needs unique come from (UUID task keys and exchange ids, e.g. DJI
/// bid and tid).
pub trait IdSource {
    fn uuid(&mut self) -> String;
}

impl<F: FnMut() -> String> IdSource for F {
    fn uuid(&mut self) -> String {
        self()
    }
}

/// Random v4 UUIDs: what the engine uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn uuid(&mut self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}

/// Deterministic, well-formed v4-shaped UUIDs numbered from 1: for tests and replays.
#[derive(Debug, Default, Clone)]
pub struct SequentialIds {
    issued: u64,
}

impl SequentialIds {
    pub fn new() -> Self {
        Self::default()
    }
}

impl IdSource for SequentialIds {
    fn uuid(&mut self) -> String {
        self.issued += 1;
        let bytes = u128::from(self.issued).to_be_bytes();
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }
}

/// What the campaign is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Draft → running: apply the version filter, cut the waves, open the first.
    Start,
    /// A decoded device event (`Version`, `Progress`, `FirmwareGet`, `ServiceReply`; others are
    /// ignored).
    Event(Event),
    /// The engine learnt that a device (any module) connected or disconnected.
    Seen {
        device: DeviceId,
        online: bool,
    },
    /// Nothing but time passed.
    Tick,
    Pause,
    Resume,
    Cancel,
    /// Open the next wave now, whatever the threshold says.
    AdvanceWave,
    /// Give every failed and timed-out device a fresh retry budget.
    RetryFailed,
    /// The console's own link to the broker went down: from now on the console hears nothing,
    /// so silence says nothing about a device. Holds every timer and every new notice.
    BrokerLost,
    /// The link is back: every in-flight deadline and reply wait moves later by the outage.
    BrokerBack,
    /// The `SendUpgrade` for this device and attempt could not be published.
    PublishFailed {
        device: DeviceId,
        attempt: u32,
        error: String,
    },
}

/// One upgrade notice to send to one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeOrder {
    /// The device with the campaign's module.
    pub device: DeviceId,
    /// 1-based attempt number in this campaign.
    pub attempt: u32,
    /// What the device will echo in its progress reports.
    pub task: TaskRef,
    /// The exchange id of this request, for a dialect answered by reply (fresh for every
    /// request sent when the dialect says so, re-sends included).
    pub exchange_id: Option<String>,
    /// The same attempt sent again (a request without reply, device back online): not a new attempt.
    pub resend: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Info,
    Warn,
}

/// What the engine must do, in this order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Make this durable before executing any later action.
    /// Boxed: a transition carries a whole device record, several times any other action.
    Persist(Box<Transition>),
    SendUpgrade(UpgradeOrder),
    /// Answer a device's `FirmwareGet`: the pending notice, or `None` for "nothing pending".
    ReplyFirmwareGet {
        request: FirmwareGet,
        pending: Option<UpgradeOrder>,
    },
    CampaignStateChanged {
        from: CampaignState,
        to: CampaignState,
    },
    Log {
        device: Option<DeviceId>,
        level: LogLevel,
        message: Note,
    },
}

/// Why a campaign could not be built or resumed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    #[error("{}", tr!("error.rollout.invalid_policy", field = field, detail = detail))]
    InvalidPolicy { field: &'static str, detail: String },
    #[error("{}", tr!("error.rollout.no_target_version"))]
    NoTargetVersion,
    #[error("{}", tr!("error.rollout.target_version_too_long", version = format!("{_0:?}")))]
    TargetVersionTooLong(String),
    #[error("{}", tr!("error.rollout.no_targets"))]
    NoTargets,
    #[error("{}", tr!("error.rollout.too_many_targets", count = count, max = max))]
    TooManyTargets { count: usize, max: usize },
    #[error("{}", tr!("error.rollout.bad_module", why = _0))]
    BadModule(#[from] DeviceIdError),
    #[error("{}", tr!("error.rollout.corrupt", id = id, detail = detail))]
    Corrupt { id: CampaignId, detail: String },
}

/// The largest campaign accepted (bounds memory and the start-up transaction).
pub const MAX_TARGETS: usize = 100_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_are_distinct_uuids() {
        let mut ids = SequentialIds::new();
        let a = ids.uuid();
        let b = ids.uuid();
        assert_ne!(a, b);
        for id in [&a, &b] {
            let parsed = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version_num(), 4);
        }
        let mut n = 0;
        let mut closure = move || {
            n += 1;
            format!("id-{n}")
        };
        assert_eq!(IdSource::uuid(&mut closure), "id-1");
    }
}
