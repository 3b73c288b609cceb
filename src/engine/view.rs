//! Builds the [`Snapshot`] the UI and the commands read from the read views of the engine's
//! components (never from the runner itself). The revision is the publisher's to set.


use super::alerts::Alerts;
use super::campaigns::{Campaigns, LiveCampaign};
use super::io::Io;
use super::library::Library;
use super::snapshot::{CampaignView, DeviceRows, RowChangeLog, Snapshot, TimelinePoint};
use super::traffic::TrafficMeter;
use crate::rollout::{CampaignState, DeviceStatus, Policy, TargetRecord, Timestamp};

/// What the snapshot is made of, each part read-only.
pub(super) struct Parts<'a> {
    pub(super) campaigns: &'a Campaigns,
    pub(super) io: &'a Io,
    pub(super) traffic: &'a TrafficMeter,
    pub(super) library: &'a Library,
    pub(super) alerts: &'a Alerts,
    /// The device table, brought up to date by the runner's `RowCache`.
    pub(super) devices: DeviceRows,
    /// The engine clock's time, for the ETA.
    pub(super) now_ms: u64,
}

/// The snapshot of `parts` (revision 0: the publisher numbers it).
pub(super) fn build(parts: &Parts<'_>) -> Snapshot {
    let campaigns = campaign_views(parts.campaigns, parts.now_ms);
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
        devices: parts.devices.clone(),
        row_changes: RowChangeLog::default(),
        packages: parts.library.packages().to_vec(),
        import: parts.library.import_progress().cloned(),
        campaigns,
        alerts: parts.alerts.to_vec(),
    }
}

/// The live campaigns and the history, newest first.
pub(super) fn campaign_views(campaigns: &Campaigns, now_ms: u64) -> Vec<CampaignView> {
    let mut views: Vec<CampaignView> = campaigns
        .live()
        .iter()
        .map(|l| live_view(l, now_ms))
        .collect();
    views.extend(campaigns.history().iter().cloned());
    views.sort_by_key(|c| std::cmp::Reverse(c.snapshot.id));
    views
}

fn live_view(live: &LiveCampaign, now_ms: u64) -> CampaignView {
    let snapshot = live.campaign().snapshot();
    let eta_secs = eta_secs(live, now_ms);
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

/// A device still at "noticed" this long after its notice is taken as silent: healthy devices
/// answer a notice within seconds, and a silent one ends only at its timeout (then its retries).
pub(super) const SILENT_AFTER_MS: u64 = 20_000;

/// Seconds until the campaign ends: the later of (a) the devices still moving, at the recent
/// finishing rate (over the last timeline minute), and (b) the silent devices, each at its
/// deadline plus, per retry left, the retry interval and another timeout. `None` while the rate
/// is unknown and devices other than silent ones remain. Reckoned at most once per
/// [`ETA_EVERY_MS`] (it reads every device; the snapshot is published up to ten times a second).
fn eta_secs(live: &LiveCampaign, now_ms: u64) -> Option<u64> {
    let campaign = live.campaign();
    if campaign.state() != CampaignState::Running {
        return None;
    }
    if let Some((at_ms, eta)) = live.eta_memo()
        && now_ms.saturating_sub(at_ms) < ETA_EVERY_MS
    {
        return eta;
    }
    let eta = eta_from(
        campaign.devices(),
        campaign.policy(),
        live.timeline(),
        Timestamp::from_millis(now_ms),
    );
    live.remember_eta(now_ms, eta);
    eta
}

/// How long a reckoned ETA is shown before it is reckoned again.
const ETA_EVERY_MS: u64 = 1_000;

fn eta_from(
    devices: &[TargetRecord],
    policy: &Policy,
    timeline: &[TimelinePoint],
    now: Timestamp,
) -> Option<u64> {
    let mut silent = 0usize;
    let mut silent_end_ms = 0u64;
    let mut remaining = 0usize;
    let per_retry = policy
        .retry_interval_ms()
        .saturating_add(policy.device_timeout_ms());
    for rec in devices {
        if !(rec.status == DeviceStatus::Pending || rec.status.in_flight()) {
            continue;
        }
        remaining += 1;
        let noticed_long_ago = rec
            .noticed_at
            .is_some_and(|at| now.as_millis().saturating_sub(at.as_millis()) >= SILENT_AFTER_MS);
        if rec.status == DeviceStatus::Noticed && noticed_long_ago {
            silent += 1;
            let deadline = rec.deadline_at.map_or(0, |d| d.as_millis());
            let retries = u64::from(rec.retries_left(policy));
            let end = deadline
                .saturating_sub(now.as_millis())
                .saturating_add(retries.saturating_mul(per_retry));
            silent_end_ms = silent_end_ms.max(end);
        }
    }
    let moving = remaining - silent;
    let silent_secs = silent_end_ms.div_ceil(1000);
    if moving == 0 {
        return Some(silent_secs);
    }
    let last = timeline.last()?;
    let first = timeline.iter().find(|p| last.at_ms - p.at_ms <= 60_000)?;
    let finished = (last.succeeded + last.failed).saturating_sub(first.succeeded + first.failed);
    let span_secs = (last.at_ms - first.at_ms) as f64 / 1000.0;
    if finished == 0 || span_secs <= 0.0 {
        return None;
    }
    let moving_secs = (moving as f64 * span_secs / finished as f64).ceil() as u64;
    Some(moving_secs.max(silent_secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_id::DeviceId;

    fn rec(n: u32, status: DeviceStatus) -> TargetRecord {
        let id: DeviceId = format!("dji:SN{n}").parse().unwrap();
        let mut rec = TargetRecord::new(id, n, None);
        rec.status = status;
        rec
    }

    fn point(at_s: i64, finished: usize) -> TimelinePoint {
        TimelinePoint {
            at_ms: at_s * 1000,
            succeeded: finished,
            failed: 0,
            in_flight: 0,
        }
    }

    #[test]
    fn the_eta_waits_for_silent_devices_to_time_out_and_be_retried() {
        let now = Timestamp::from_millis(1_000_000);
        let policy = Policy {
            device_timeout_secs: 120,
            retries: 1,
            retry_interval_secs: 10,
            ..Policy::default()
        };
        // Ten finished in the last 10 s: one a second. Two devices still downloading.
        let timeline = [point(990, 0), point(1000, 10)];
        let mut devices: Vec<TargetRecord> =
            (0..10).map(|n| rec(n, DeviceStatus::Succeeded)).collect();
        devices.push(rec(10, DeviceStatus::Downloading));
        devices.push(rec(11, DeviceStatus::Downloading));
        assert_eq!(eta_from(&devices, &policy, &timeline, now), Some(2));

        // A device noticed a minute ago that never answered: it ends at its deadline (60 s
        // from now), is noticed again after 10 s and may stay silent for another 120 s.
        let mut silent = rec(12, DeviceStatus::Noticed);
        silent.attempts = 1;
        silent.noticed_at = Some(Timestamp::from_millis(1_000_000 - 60_000));
        silent.deadline_at = Some(Timestamp::from_millis(1_000_000 + 60_000));
        devices.push(silent.clone());
        assert_eq!(
            eta_from(&devices, &policy, &timeline, now),
            Some(60 + 10 + 120)
        );

        // Without retries left, the deadline alone.
        silent.attempts = 2;
        *devices.last_mut().unwrap() = silent.clone();
        assert_eq!(eta_from(&devices, &policy, &timeline, now), Some(60));

        // Only silent devices left: their deadline even though nothing finished lately.
        let only_silent = [silent.clone()];
        assert_eq!(eta_from(&only_silent, &policy, &[], now), Some(60));

        // A device noticed a moment ago is not silent yet: it counts at the finishing rate.
        silent.noticed_at = Some(Timestamp::from_millis(1_000_000 - 1_000));
        *devices.last_mut().unwrap() = silent;
        assert_eq!(eta_from(&devices, &policy, &timeline, now), Some(3));
    }
}
