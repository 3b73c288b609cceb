//! Builds the [`Snapshot`] the UI and the commands read from the read views of the engine's
//! components (never from the runner itself). The revision is the publisher's to set.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::alerts::Alerts;
use super::campaigns::{Campaigns, LiveCampaign};
use super::fleet_state::FleetState;
use super::io::Io;
use super::library::Library;
use super::snapshot::{CampaignView, DeviceRow, Snapshot};
use super::traffic::TrafficMeter;
use crate::device_id::DeviceId;
use crate::rollout::{CampaignState, DeviceSnapshot};

/// What the snapshot is made of, each part read-only.
pub(super) struct Parts<'a> {
    pub(super) fleet: &'a FleetState,
    pub(super) campaigns: &'a Campaigns,
    pub(super) io: &'a Io,
    pub(super) traffic: &'a TrafficMeter,
    pub(super) library: &'a Library,
    pub(super) alerts: &'a Alerts,
}

/// The snapshot of `parts` (revision 0: the publisher numbers it).
pub(super) fn build(parts: &Parts<'_>) -> Snapshot {
    let live: Vec<CampaignView> = parts.campaigns.live().iter().map(live_view).collect();
    let devices = Arc::new(device_rows(parts, &live));
    let mut campaigns = live;
    campaigns.extend(parts.campaigns.history().iter().cloned());
    campaigns.sort_by_key(|c| std::cmp::Reverse(c.snapshot.id));
    let io = parts.io;
    Snapshot {
        revision: 0,
        link: io.link_state(),
        broker: io.broker_label().to_owned(),
        broker_guard: io.broker_guard(),
        broker_refusals: parts.traffic.broker_refusals(),
        firmware_base: io.firmware_base().cloned(),
        served: io.served(),
        traffic: parts.traffic.counts(),
        devices,
        packages: parts.library.packages().to_vec(),
        import: parts.library.import_progress().cloned(),
        campaigns,
        alerts: parts.alerts.to_vec(),
    }
}

fn live_view(live: &LiveCampaign) -> CampaignView {
    let snapshot = live.campaign().snapshot();
    let eta_secs = eta_secs(live);
    CampaignView {
        snapshot,
        spec: live.campaign().spec().clone(),
        dialects: live.dialects().to_vec(),
        timeline: live.timeline().to_vec(),
        eta_secs,
        live: true,
        halted: live.halted().cloned(),
    }
}

/// Remaining devices divided by the recent finishing rate (over the last timeline minute).
fn eta_secs(live: &LiveCampaign) -> Option<u64> {
    if live.campaign().state() != CampaignState::Running {
        return None;
    }
    let counts = live.campaign().counts();
    let remaining = counts.pending + counts.in_flight();
    if remaining == 0 {
        return Some(0);
    }
    let last = live.timeline().last()?;
    let first = live
        .timeline()
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
fn device_rows(parts: &Parts<'_>, live: &[CampaignView]) -> Vec<DeviceRow> {
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
    parts.fleet.rows(|id| standing.get(id).copied())
}
