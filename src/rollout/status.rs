//! Where a device and a campaign stand ([`DeviceStatus`], [`CampaignState`], their stored
//! names) and a device's failure code with its dialect ([`FailureCode`]): plain values that
//! both the durable record (`record.rs`) and the campaign's words (`note.rs`) name, kept in a
//! leaf so neither depends on the other.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::device_id::DialectId;
use crate::i18n::tr;

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
#[error("{}", tr!("error.unknown_name", what = what, value = format!("{value:?}")))]
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

/// A failure code as a device reported it, with its dialect: codes of different dialects
/// overlap (Alibaba's step -2 is not DJI's result -2), so a code is never read without it. The
/// store keeps the number; the tag is the dialect of the row's device (every code a device
/// reports is its own dialect's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCode {
    pub dialect: DialectId,
    pub code: i64,
}

impl From<&crate::protocol::Failure> for FailureCode {
    fn from(failure: &crate::protocol::Failure) -> Self {
        FailureCode {
            dialect: failure.dialect,
            code: failure.code,
        }
    }
}
