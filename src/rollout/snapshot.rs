//! The read-only, serde-serialisable view of a campaign for the UI and the JSON report:
//! summary counts per status and one line per device. Built from a campaign, never fed back.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::record::{CampaignState, DeviceStatus, TargetRecord};
use super::{CampaignId, Timestamp};
use crate::device_id::DeviceId;

/// One line per target device, in target order: a persistent vector, so each campaign snapshot
/// shares the lines that did not change with the one before it (taking a snapshot costs nothing
/// per device, changing a line costs O(log n)).
pub type DeviceLines = imbl::Vector<Arc<DeviceSnapshot>>;

/// How many devices are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: usize,
    pub pending: usize,
    pub noticed: usize,
    pub downloading: usize,
    pub installing: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub rejected: usize,
    pub timed_out: usize,
    pub canceled: usize,
    pub skipped: usize,
}

impl Counts {
    fn slot(&mut self, status: DeviceStatus) -> &mut usize {
        match status {
            DeviceStatus::Pending => &mut self.pending,
            DeviceStatus::Noticed => &mut self.noticed,
            DeviceStatus::Downloading => &mut self.downloading,
            DeviceStatus::Installing => &mut self.installing,
            DeviceStatus::Succeeded => &mut self.succeeded,
            DeviceStatus::Failed => &mut self.failed,
            DeviceStatus::Rejected => &mut self.rejected,
            DeviceStatus::TimedOut => &mut self.timed_out,
            DeviceStatus::Canceled => &mut self.canceled,
            DeviceStatus::Skipped => &mut self.skipped,
        }
    }

    pub fn get(&self, status: DeviceStatus) -> usize {
        match status {
            DeviceStatus::Pending => self.pending,
            DeviceStatus::Noticed => self.noticed,
            DeviceStatus::Downloading => self.downloading,
            DeviceStatus::Installing => self.installing,
            DeviceStatus::Succeeded => self.succeeded,
            DeviceStatus::Failed => self.failed,
            DeviceStatus::Rejected => self.rejected,
            DeviceStatus::TimedOut => self.timed_out,
            DeviceStatus::Canceled => self.canceled,
            DeviceStatus::Skipped => self.skipped,
        }
    }

    pub fn add(&mut self, status: DeviceStatus) {
        self.add_n(status, 1);
    }

    pub fn add_n(&mut self, status: DeviceStatus, n: usize) {
        self.total += n;
        *self.slot(status) += n;
    }

    pub fn remove(&mut self, status: DeviceStatus) {
        self.total = self.total.saturating_sub(1);
        let slot = self.slot(status);
        *slot = slot.saturating_sub(1);
    }

    pub fn in_flight(&self) -> usize {
        self.noticed + self.downloading + self.installing
    }

    /// Failed, rejected or timed out with no retry left.
    pub fn failures(&self) -> usize {
        self.failed + self.rejected + self.timed_out
    }

    pub fn from_statuses(statuses: impl IntoIterator<Item = DeviceStatus>) -> Self {
        let mut counts = Counts::default();
        statuses.into_iter().for_each(|s| counts.add(s));
        counts
    }
}

/// One device's line in the UI table and the JSON report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSnapshot {
    pub id: DeviceId,
    pub status: DeviceStatus,
    pub from_version: Option<String>,
    /// The version the device reported after our notice, if any.
    pub to_version: Option<String>,
    pub percent: u8,
    pub attempts: u32,
    /// 0-based wave, `None` before the start or when skipped at the start.
    pub wave: Option<u32>,
    pub error: Option<String>,
    pub code: Option<i64>,
    /// A pending device waiting for its retry is not noticed before this.
    pub retry_at: Option<Timestamp>,
    /// Notices re-sent for want of an answer (see [`TargetRecord::resends`]).
    #[serde(default)]
    pub resends: u32,
    /// An unanswered notice in flight is re-sent at this time (`None`: no re-send planned).
    #[serde(default)]
    pub next_resend_at: Option<Timestamp>,
}

impl From<&TargetRecord> for DeviceSnapshot {
    fn from(rec: &TargetRecord) -> Self {
        Self {
            id: rec.device.clone(),
            status: rec.status,
            from_version: rec.from_version.clone(),
            to_version: rec.to_version.clone(),
            percent: rec.percent,
            attempts: rec.attempts,
            wave: rec.wave,
            error: rec.error.clone(),
            code: rec.code.map(|c| c.code),
            retry_at: rec.retry_at,
            resends: rec.resends,
            next_resend_at: rec
                .reply_wait
                .filter(|w| rec.status.in_flight() && w.resends_left > 0)
                .map(|w| w.deadline_at),
        }
    }
}

/// Where the waves stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveSnapshot {
    /// 0-based index of the latest opened wave.
    pub current: Option<u32>,
    pub count: u32,
    /// The current wave finished below the success threshold: only `AdvanceWave` moves on.
    pub blocked: bool,
}

/// The whole campaign, for the UI and `rollout --report json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignSnapshot {
    pub id: CampaignId,
    pub name: String,
    pub state: CampaignState,
    pub target_version: String,
    pub module: Option<String>,
    pub package_sha256: String,
    pub waves: WaveSnapshot,
    pub counts: Counts,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub devices: DeviceLines,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_track_statuses() {
        let mut c = Counts::from_statuses([
            DeviceStatus::Pending,
            DeviceStatus::Noticed,
            DeviceStatus::Failed,
        ]);
        assert_eq!(c.total, 3);
        assert_eq!(c.in_flight(), 1);
        c.remove(DeviceStatus::Noticed);
        c.add(DeviceStatus::TimedOut);
        assert_eq!(c.failures(), 2);
        assert_eq!(c.get(DeviceStatus::TimedOut), 1);
        assert_eq!(c.total, 3);
    }

    #[test]
    fn device_line_serialises_with_snake_case_status() {
        let mut rec = TargetRecord::new("dji:SN1".parse().unwrap(), 0, Some("1.0".into()));
        rec.status = DeviceStatus::TimedOut;
        rec.error = Some("late".into());
        let json = serde_json::to_value(DeviceSnapshot::from(&rec)).unwrap();
        assert_eq!(json["id"], "dji:SN1");
        assert_eq!(json["status"], "timed_out");
        assert_eq!(json["code"], serde_json::Value::Null);
        assert_eq!(json["error"], "late");
    }
}
