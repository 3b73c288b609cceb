//! Pulls: a device asking for its firmware (`FirmwareGet`) is noted as listening, and answered
//! after scheduling, with a notice now when its turn may come, or with what is pending.

use super::Campaign;
use super::effects::{log, order_for};
use crate::protocol::FirmwareGet;
use crate::rollout::device;
use crate::rollout::note::Note;
use crate::rollout::record::{CampaignState, DeviceStatus};
use crate::rollout::{Action, IdSource, LogLevel};

impl Campaign {
    /// Notes the request; the reply is built after scheduling, which may notice the device now.
    pub(super) fn on_firmware_get(&mut self, request: FirmwareGet) -> Option<(FirmwareGet, usize)> {
        let idx = *self.by_device.get(&request.device)?;
        if let Some(flag) = self.online.get_mut(idx) {
            // The reply carries the notice, so coming online here needs no separate re-send.
            *flag = true;
        }
        // A device that asks is listening: no settle delay.
        if let Some(settle) = self.settle_until.get_mut(idx) {
            *settle = None;
        }
        if let Some(at) = self.heard_at.get_mut(idx) {
            *at = Some(self.now);
        }
        self.refresh_queue(idx);
        Some((request, idx))
    }

    /// Answers a pull. A device that asks is surely listening, so when its turn may come (its
    /// wave is open, the campaign runs, the version filter passes, no retry wait) it is noticed
    /// now even if the scheduler did not reach it: the answer is a notice like any other, so it
    /// takes a concurrency slot (a full cap leaves the pull unanswered: the device asks again,
    /// or gets the push when a slot frees), and it takes a rate token when one is there but
    /// never waits for one (the rate paces pushes; the device itself paces its pulls).
    pub(super) fn reply_firmware_get(
        &mut self,
        request: FirmwareGet,
        idx: usize,
        ids: &mut dyn IdSource,
        out: &mut Vec<Action>,
    ) {
        let Some(device) = self.devices.get(idx).map(|r| r.device.clone()) else {
            return;
        };
        // A notice sent to this very device by this call travels in the reply instead.
        let before = out.len();
        out.retain(|a| !matches!(a, Action::SendUpgrade(o) if o.device == device));
        let mut sent_now = out.len() != before;
        if !sent_now && self.pull_may_notice(idx) {
            // Skipped devices never get this far (`pull_may_notice` checks the filter).
            let _ = self.bucket.try_take(self.now);
            self.send_notice(idx, ids, out);
            out.retain(|a| !matches!(a, Action::SendUpgrade(o) if o.device == device));
            sent_now = true;
        }
        let Some(rec) = self.devices.get(idx) else {
            return;
        };
        let pending = rec.status.in_flight().then(|| order_for(rec, !sent_now));
        if pending.is_none() && !super::caps(&device).pull.replies_nothing_pending() {
            // A dialect without an empty reply (FogCloud, notes.md): silence is the answer.
            let message = if rec.status == DeviceStatus::Pending {
                Note::NothingPendingYet
            } else {
                Note::NothingPending { status: rec.status }
            };
            log(out, Some(&device), LogLevel::Info, message);
            return;
        }
        out.push(Action::ReplyFirmwareGet { request, pending });
    }

    /// Whether a pending device that asks for its firmware may be noticed right now.
    fn pull_may_notice(&self, idx: usize) -> bool {
        let Some(rec) = self.devices.get(idx) else {
            return false;
        };
        let max = usize::try_from(self.spec.policy.max_in_flight).unwrap_or(usize::MAX);
        let gateway_busy = self
            .gateways
            .get(idx)
            .cloned()
            .flatten()
            .is_some_and(|g| self.busy_gateways().contains(&g));
        self.state == CampaignState::Running
            && self.broker_lost_at.is_none()
            && self.queue.contains(&idx)
            && self.counts.in_flight() < max
            && rec.retry_at.is_none_or(|t| t <= self.now)
            && device::skip_reason(rec, &self.spec.offer.version, &self.spec.policy).is_none()
            && (self.spec.policy.only_from_versions.is_empty() || rec.from_version.is_some())
            && !gateway_busy
    }
}
