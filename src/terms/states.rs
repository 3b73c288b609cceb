//! The names of campaign states and device statuses in the language in force (the stored
//! names, `as_str`, stay English: they are data in the database, reports and JSON).

use crate::i18n::tr;
use crate::rollout::{CampaignState, Counts, DeviceStatus};

pub fn campaign_state(state: CampaignState) -> String {
    match state {
        CampaignState::Draft => tr!("state.campaign.draft"),
        CampaignState::Running => tr!("state.campaign.running"),
        CampaignState::Paused => tr!("state.campaign.paused"),
        CampaignState::Completed => tr!("state.campaign.completed"),
        CampaignState::Aborted => tr!("state.campaign.aborted"),
        CampaignState::Canceled => tr!("state.campaign.canceled"),
    }
}

pub fn device_status(status: DeviceStatus) -> String {
    match status {
        DeviceStatus::Pending => tr!("state.device.pending"),
        DeviceStatus::Noticed => tr!("state.device.noticed"),
        DeviceStatus::Downloading => tr!("state.device.downloading"),
        DeviceStatus::Installing => tr!("state.device.installing"),
        DeviceStatus::Succeeded => tr!("state.device.succeeded"),
        DeviceStatus::Failed => tr!("state.device.failed"),
        DeviceStatus::Rejected => tr!("state.device.rejected"),
        DeviceStatus::TimedOut => tr!("state.device.timed_out"),
        DeviceStatus::Canceled => tr!("state.device.canceled"),
        DeviceStatus::Skipped => tr!("state.device.skipped"),
    }
}

/// "3 succeeded, 1 failed, …": a campaign's counts in one line.
pub fn counts(c: &Counts) -> String {
    tr!(
        "state.counts",
        succeeded = c.succeeded,
        failed = c.failed,
        rejected = c.rejected,
        timed_out = c.timed_out,
        canceled = c.canceled,
        skipped = c.skipped,
        in_flight = c.in_flight(),
        pending = c.pending
    )
}
