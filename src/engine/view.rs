//! Builds the [`Snapshot`] the UI and the commands read from the engine's state.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::live::LiveCampaign;
use super::runner::Runner;
use super::snapshot::{CampaignView, DeviceRow, Snapshot};
use crate::device_id::DeviceId;
use crate::rollout::{CampaignState, DeviceSnapshot};

pub(super) fn build(runner: &Runner) -> Snapshot {
    let live: Vec<CampaignView> = runner.live.iter().map(live_view).collect();
    let devices = Arc::new(device_rows(runner, &live));
    let mut campaigns = live;
    campaigns.extend(runner.history.iter().cloned());
    campaigns.sort_by_key(|c| std::cmp::Reverse(c.snapshot.id));
    Snapshot {
        revision: runner.revision,
        link: runner.link.state().borrow().clone(),
        broker: runner.broker_label.clone(),
        broker_guard: runner.broker_guard,
        broker_refusals: runner.broker_refusals,
        firmware_base: runner.firmware_base.clone(),
        served: runner.http.as_ref().map(|h| h.stats()),
        traffic: runner.traffic,
        devices,
        packages: runner.library.clone(),
        import: runner.import.as_ref().map(|j| j.progress.clone()),
        campaigns,
        alerts: runner.alerts.iter().cloned().collect(),
    }
}

fn live_view(live: &LiveCampaign) -> CampaignView {
    let snapshot = live.campaign.snapshot();
    let eta_secs = eta_secs(live);
    CampaignView {
        snapshot,
        spec: live.campaign.spec().clone(),
        dialects: live.dialects.clone(),
        timeline: live.timeline.clone(),
        eta_secs,
        live: true,
        halted: live.halted.clone(),
    }
}

/// Remaining devices divided by the recent finishing rate (over the last timeline minute).
fn eta_secs(live: &LiveCampaign) -> Option<u64> {
    if live.campaign.state() != CampaignState::Running {
        return None;
    }
    let counts = live.campaign.counts();
    let remaining = counts.pending + counts.in_flight();
    if remaining == 0 {
        return Some(0);
    }
    let last = live.timeline.last()?;
    let first = live
        .timeline
        .iter()
        .find(|p| last.at_ms - p.at_ms <= 60_000)?;
    let finished = (last.succeeded + last.failed).saturating_sub(first.succeeded + first.failed);
    let span_secs = (last.at_ms - first.at_ms) as f64 / 1000.0;
    if finished == 0 || span_secs <= 0.0 {
        return None;
    }
    Some((remaining as f64 * span_secs / finished as f64).ceil() as u64)
}

/// One row per device, with its standing in the newest campaign that targets it. The standings
/// are the device snapshots already built for the live campaign views: with 10,000 devices the
/// snapshot is rebuilt several times a second, and building each standing twice was a large share
/// of the engine's time under load.
fn device_rows(runner: &Runner, live: &[CampaignView]) -> Vec<DeviceRow> {
    let mut standing: HashMap<Cow<'_, DeviceId>, &DeviceSnapshot> = HashMap::new();
    // Oldest first, so newer campaigns overwrite.
    let mut oldest_first: Vec<&CampaignView> = live.iter().collect();
    oldest_first.sort_by_key(|c| c.snapshot.id);
    for view in oldest_first {
        for d in &view.snapshot.devices {
            // Rows are per device: a module-qualified target stands for its device.
            let key = match d.id.module() {
                None => Cow::Borrowed(&d.id),
                Some(_) => Cow::Owned(d.id.device()),
            };
            standing.insert(key, d);
        }
    }
    runner
        .fleet
        .sorted()
        .into_iter()
        .map(|record| DeviceRow {
            last_message: runner.last_message.get(&record.id).cloned(),
            rollout: standing.get(&record.id).map(|d| (*d).clone()),
            record: record.clone(),
        })
        .collect()
}
