//! The durable shape of a campaign: statuses, the per-device record, the campaign's fixed spec
//! and the [`Transition`]s the state machine asks to persist. Everything here is plain data that
//! the store writes and reads back for [`super::Campaign::resume`]; no logic beyond naming.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::policy::Policy;
use super::{CampaignId, Timestamp};
use crate::device_id::DeviceId;
use crate::protocol::{DjiUpgradeType, FirmwareOffer, SignMethod, TaskRef};

/// Where one device stands in a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Not noticed yet (or waiting for a retry: then `attempts > 0` and `error` says why).
    Pending,
    /// Notice sent, nothing heard since.
    Noticed,
    Downloading,
    Installing,
    Succeeded,
    Failed,
    Rejected,
    TimedOut,
    Canceled,
    Skipped,
}

impl DeviceStatus {
    pub const ALL: [DeviceStatus; 10] = [
        DeviceStatus::Pending,
        DeviceStatus::Noticed,
        DeviceStatus::Downloading,
        DeviceStatus::Installing,
        DeviceStatus::Succeeded,
        DeviceStatus::Failed,
        DeviceStatus::Rejected,
        DeviceStatus::TimedOut,
        DeviceStatus::Canceled,
        DeviceStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Noticed => "noticed",
            DeviceStatus::Downloading => "downloading",
            DeviceStatus::Installing => "installing",
            DeviceStatus::Succeeded => "succeeded",
            DeviceStatus::Failed => "failed",
            DeviceStatus::Rejected => "rejected",
            DeviceStatus::TimedOut => "timed_out",
            DeviceStatus::Canceled => "canceled",
            DeviceStatus::Skipped => "skipped",
        }
    }

    /// Noticed, downloading or installing: occupies a concurrency slot.
    pub fn in_flight(self) -> bool {
        matches!(
            self,
            DeviceStatus::Noticed | DeviceStatus::Downloading | DeviceStatus::Installing
        )
    }

    /// Nothing more will happen to the device in this campaign unless the operator re-queues it.
    /// (A device waiting for a retry is `Pending`, so it is not finished.)
    pub fn is_terminal(self) -> bool {
        !self.in_flight() && self != DeviceStatus::Pending
    }

    /// Counts against the abort threshold.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            DeviceStatus::Failed | DeviceStatus::Rejected | DeviceStatus::TimedOut
        )
    }
}

impl fmt::Display for DeviceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of [`DeviceStatus`] or [`CampaignState`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
}

impl FromStr for DeviceStatus {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "device status",
                value: s.chars().take(40).collect(),
            })
    }
}

/// Where the campaign as a whole stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    /// Created, nothing sent.
    Draft,
    Running,
    /// No new notices; devices in flight are still followed and time out.
    Paused,
    /// Every device reached a terminal status.
    Completed,
    /// The abort threshold was crossed: no new notices ever.
    Aborted,
    /// The operator canceled: no new notices ever.
    Canceled,
}

impl CampaignState {
    pub const ALL: [CampaignState; 6] = [
        CampaignState::Draft,
        CampaignState::Running,
        CampaignState::Paused,
        CampaignState::Completed,
        CampaignState::Aborted,
        CampaignState::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Draft => "draft",
            CampaignState::Running => "running",
            CampaignState::Paused => "paused",
            CampaignState::Completed => "completed",
            CampaignState::Aborted => "aborted",
            CampaignState::Canceled => "canceled",
        }
    }

    /// Completed, aborted or canceled.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            CampaignState::Completed | CampaignState::Aborted | CampaignState::Canceled
        )
    }
}

impl fmt::Display for CampaignState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CampaignState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CampaignState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "campaign state",
                value: s.chars().take(40).collect(),
            })
    }
}

/// The task reference of a device's current attempt, as it is persisted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskRecord {
    /// Alibaba, or never noticed: the device+module is the task.
    #[default]
    None,
    /// FogCloud `task_id` (an integer in a string).
    TaskId(String),
    /// DJI: `bid` for the whole device upgrade, `tid` of the latest `ota_create` sent.
    Dji { bid: String, tid: String },
}

impl TaskRecord {
    /// The reference progress reports carry.
    pub fn task_ref(&self) -> TaskRef {
        match self {
            TaskRecord::None => TaskRef::None,
            TaskRecord::TaskId(id) => TaskRef::TaskId(id.clone()),
            TaskRecord::Dji { bid, .. } => TaskRef::Bid(bid.clone()),
        }
    }
}

/// A notice waits for its answer: DJI's `ota_create` for its `services_reply` (or progress);
/// an Alibaba / FogCloud notice for the first progress or version report (the ack window).
/// When `deadline_at` passes, the notice is re-sent while `resends_left > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyWait {
    pub deadline_at: Timestamp,
    pub resends_left: u32,
}

/// One device's row in a campaign: the state machine's whole memory of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// Device with the campaign's module.
    pub device: DeviceId,
    /// Index in the campaign's target list (the order waves are cut in).
    pub position: u32,
    /// `None` until the campaign starts (and for devices skipped at start).
    pub wave: Option<u32>,
    pub status: DeviceStatus,
    /// The version before our first notice (latest known until then).
    pub from_version: Option<String>,
    /// The latest version the device reported after our notice.
    pub to_version: Option<String>,
    /// 0..=100 within the current phase (downloading / installing); never goes down within a
    /// phase of one attempt.
    pub percent: u8,
    /// Notices sent in this campaign (first notice and retries).
    pub attempts: u32,
    /// `attempts` when the current retry budget began (the operator's `RetryFailed` starts a
    /// new one).
    pub round_start: u32,
    pub error: Option<String>,
    /// Device-side code: Alibaba/FogCloud step (-1..-4), DJI result code.
    pub code: Option<i64>,
    pub task: TaskRecord,
    /// Failed or TimedOut while waiting for a retry: what the device ends as if no retry comes.
    pub last_outcome: Option<DeviceStatus>,
    pub noticed_at: Option<Timestamp>,
    /// Our timeout for the current attempt.
    pub deadline_at: Option<Timestamp>,
    /// A pending device is not noticed before this.
    pub retry_at: Option<Timestamp>,
    pub reply_wait: Option<ReplyWait>,
    /// Notices re-sent in this campaign because none was answered in time (DJI `ota_create`
    /// without a reply, Alibaba / FogCloud notices without progress or version report).
    pub resends: u32,
}

impl TargetRecord {
    /// A fresh, never-noticed record.
    pub fn new(device: DeviceId, position: u32, from_version: Option<String>) -> Self {
        Self {
            device,
            position,
            wave: None,
            status: DeviceStatus::Pending,
            from_version,
            to_version: None,
            percent: 0,
            attempts: 0,
            round_start: 0,
            error: None,
            code: None,
            task: TaskRecord::None,
            last_outcome: None,
            noticed_at: None,
            deadline_at: None,
            retry_at: None,
            reply_wait: None,
            resends: 0,
        }
    }

    /// Notices left in the current retry budget.
    pub fn retries_left(&self, policy: &Policy) -> u32 {
        let used = self.attempts.saturating_sub(self.round_start);
        (1 + policy.retries).saturating_sub(used)
    }
}

/// Dialect-specific choices made once per campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DialectSettings {
    /// Alibaba `signMethod`.
    pub sign_method: SignMethod,
    /// DJI `firmware_upgrade_type`.
    pub dji_upgrade_type: DjiUpgradeType,
}

/// What a campaign is, fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignSpec {
    pub name: String,
    /// The package; `offer.version` is the target version and `offer.sha256` the package key.
    pub offer: FirmwareOffer,
    /// The module upgraded on every target (`None` = the default module).
    pub module: Option<String>,
    pub settings: DialectSettings,
    pub policy: Policy,
}

/// A device to include in a new campaign, with what the fleet knows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub device: DeviceId,
    /// The module's current version, when known.
    pub version: Option<String>,
    /// Whether the device is connected now.
    pub online: bool,
    /// When this console last heard the device, `None` when it has not heard it since it
    /// started (a device only remembered from earlier runs). Devices heard most recently go
    /// into the canary and the early waves.
    pub heard_at: Option<Timestamp>,
}

/// Everything [`super::Campaign::resume`] needs, as the store loads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedCampaign {
    pub id: CampaignId,
    pub spec: CampaignSpec,
    pub state: CampaignState,
    /// The latest wave opened, `None` before the start.
    pub current_wave: Option<u32>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Ordered by position.
    pub devices: Vec<TargetRecord>,
}

/// A change the store must make durable before the actions that follow it go out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub campaign: CampaignId,
    pub at: Timestamp,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A device changed status: write its row and a journal line `from -> record.status`.
    Device {
        from: DeviceStatus,
        record: TargetRecord,
        detail: String,
    },
    /// A device's row changed without a status change (percent, wave, tid, timers): write the
    /// row only, no journal line.
    Update { record: TargetRecord },
    /// The campaign changed state or opened a wave: write the campaign row and a journal line
    /// (with no device).
    Campaign {
        from: CampaignState,
        to: CampaignState,
        current_wave: Option<u32>,
        detail: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for st in DeviceStatus::ALL {
            assert_eq!(st.as_str().parse::<DeviceStatus>().unwrap(), st);
            assert_eq!(
                serde_json::to_string(&st).unwrap(),
                format!("\"{}\"", st.as_str())
            );
        }
        for st in CampaignState::ALL {
            assert_eq!(st.as_str().parse::<CampaignState>().unwrap(), st);
            assert_eq!(
                serde_json::to_string(&st).unwrap(),
                format!("\"{}\"", st.as_str())
            );
        }
        assert!("done".parse::<DeviceStatus>().is_err());
    }

    #[test]
    fn terminal_and_in_flight_partition_the_statuses() {
        for st in DeviceStatus::ALL {
            let kinds = [
                st == DeviceStatus::Pending,
                st.in_flight(),
                st.is_terminal(),
            ];
            assert_eq!(kinds.iter().filter(|k| **k).count(), 1, "{st}");
        }
    }
}
