//! Presence: whether each device is online, the settle delay before a device that just came
//! online is noticed, the gateways devices upgrade through where a dialect runs one upgrade per
//! gateway at a time,
//! the console's broker link going down and coming back, and the re-sends of notices that may
//! not have arrived (after a resume, an outage, or a device coming back).

use std::collections::HashSet;

use super::effects::{log, order_for};
use super::{Campaign, caps};
use crate::device_id::DeviceId;
use crate::protocol::Presence;
use crate::rollout::device::{self, Step};
use crate::rollout::note::Note;
use crate::rollout::record::DeviceStatus;
use crate::rollout::{Action, LogLevel, Timestamp};

impl Campaign {
    /// Tells the campaign which gateway each device of a one-upgrade-per-gateway dialect is
    /// attached to (`gateway_of` answers from the fleet's topology), so that a gateway and its
    /// sub-devices are never upgraded at the same time (a DJI dock and its drone).
    pub fn set_gateways(&mut self, gateway_of: &dyn Fn(&DeviceId) -> Option<DeviceId>) {
        for (rec, gateway) in self.devices.iter().zip(self.gateways.iter_mut()) {
            if caps(&rec.device).one_upgrade_per_gateway {
                *gateway = Some(gateway_of(&rec.device).unwrap_or_else(|| rec.device.device()));
            }
        }
        self.gateways_known = true;
    }

    /// Whether the campaign has devices of a one-upgrade-per-gateway dialect.
    pub fn has_gateway_limits(&self) -> bool {
        self.gateways.iter().any(Option::is_some)
    }

    /// The engine last heard `device` at `heard_at`, before the campaign could see it. Devices
    /// that announce themselves when they connect ([`Presence::AnnouncesOnConnect`]) may have
    /// sent a report less than `settle_ms` ago before they subscribed: the notice waits until
    /// the device has settled. (Devices that report all the time are not held.)
    pub fn note_heard(&mut self, device: &DeviceId, heard_at: Timestamp) {
        if let Some(idx) = self.index_of(device) {
            self.start_settle(idx, heard_at);
        }
    }

    /// The one place a settle delay starts: a device heard at `heard_at` is not noticed before
    /// `heard_at + settle_ms`, since SDKs that report before they subscribe would lose it.
    /// Devices that report all the time are never held (DJI docks; `ota_create` has its own
    /// reply wait).
    pub(super) fn start_settle(&mut self, idx: usize, heard_at: Timestamp) {
        let until = heard_at.plus_ms(self.spec.policy.settle_ms);
        let continuous = self
            .devices
            .get(idx)
            .is_none_or(|rec| caps(&rec.device).presence == Presence::Continuous);
        if continuous || until <= self.now {
            return;
        }
        if let Some(slot) = self.settle_until.get_mut(idx) {
            *slot = Some(until);
            // Wakes the scheduler when the delay is over (the device timer does nothing then).
            self.timers.insert((until, idx));
        }
    }

    /// Gateways with a device in flight (only campaigns with one-upgrade-per-gateway dialects
    /// have any).
    pub(super) fn busy_gateways(&self) -> HashSet<&DeviceId> {
        self.devices
            .iter()
            .zip(&self.gateways)
            .filter(|(rec, _)| rec.status.in_flight())
            .filter_map(|(_, gateway)| gateway.as_ref())
            .collect()
    }

    /// The devices whose notice may not have arrived after a resume or a broker outage: online
    /// and `noticed`. Devices answered by reply are left out: that exchange has its own re-sends.
    fn noticed_online(&self) -> impl Iterator<Item = usize> + '_ {
        self.devices.iter().enumerate().filter_map(|(idx, rec)| {
            (self.online.get(idx).copied().unwrap_or(false)
                && rec.status == DeviceStatus::Noticed
                && caps(&rec.device).ack.by_first_report())
            .then_some(idx)
        })
    }

    /// After a resume or a broker outage, with settling on: every [`Self::noticed_online`]
    /// device waits `settle_ms` for an answer before its notice goes again. What devices
    /// reported while the console could not listen is still arriving from its persistent
    /// session, and a device that answers in that time (or already succeeded) must not get a
    /// second notice.
    pub(super) fn await_noticed_answers(&mut self, out: &mut Vec<Action>) {
        let due = self.now.plus_ms(self.spec.policy.settle_ms);
        let waiting: Vec<usize> = self.noticed_online().collect();
        for &idx in &waiting {
            self.update(idx, out, |rec, _| {
                device::await_answer(rec, due);
                Step::default()
            });
        }
        if !waiting.is_empty() {
            log(
                out,
                None,
                LogLevel::Info,
                Note::MaybeLost {
                    count: waiting.len(),
                    ms: self.spec.policy.settle_ms,
                },
            );
        }
    }

    /// Re-sends the notice in flight to every [`Self::noticed_online`] device at once (settling
    /// off): a notice that never arrived would otherwise cost a timeout.
    pub(super) fn resend_to_noticed(&self, out: &mut Vec<Action>) {
        let mut count = 0;
        for idx in self.noticed_online() {
            if let Some(rec) = self.devices.get(idx) {
                out.push(Action::SendUpgrade(order_for(rec, true)));
                count += 1;
            }
        }
        if count > 0 {
            log(out, None, LogLevel::Info, Note::MaybeLostResent { count });
        }
    }

    pub(super) fn set_online(&mut self, idx: usize, online: bool, out: &mut Vec<Action>) {
        let Some(flag) = self.online.get_mut(idx) else {
            return;
        };
        let came_back = online && !*flag;
        *flag = online;
        if came_back {
            self.start_settle(idx, self.now);
        }
        if online && let Some(at) = self.heard_at.get_mut(idx) {
            *at = Some(self.now);
        }
        self.refresh_queue(idx);
        let Some(rec) = self.devices.get(idx) else {
            return;
        };
        // A notice published while the device was away was lost with its session: send it again
        // (a request answered by reply has its own re-sends).
        if came_back
            && rec.status == DeviceStatus::Noticed
            && caps(&rec.device).ack.by_first_report()
        {
            log(out, Some(&rec.device), LogLevel::Info, Note::BackOnline);
            out.push(Action::SendUpgrade(order_for(rec, true)));
        }
    }

    /// The device came online less than `settle_ms` ago.
    pub(super) fn settling(&self, idx: usize) -> bool {
        self.settle_until
            .get(idx)
            .copied()
            .flatten()
            .is_some_and(|t| t > self.now)
    }

    pub(super) fn broker_lost(&mut self, out: &mut Vec<Action>) {
        if self.broker_lost_at.is_some()
            || (self.state.is_finished() && self.counts.in_flight() == 0)
        {
            return;
        }
        self.broker_lost_at = Some(self.now);
        log(out, None, LogLevel::Warn, Note::BrokerDown);
    }

    /// Gives every device in flight the outage back, so that only its own silence times it out.
    pub(super) fn broker_back(&mut self, out: &mut Vec<Action>) {
        let Some(lost_at) = self.broker_lost_at.take() else {
            return;
        };
        self.resend_noticed = true;
        let outage_ms = self.now.as_millis().saturating_sub(lost_at.as_millis());
        let in_flight: Vec<usize> = (0..self.devices.len())
            .filter(|&i| self.devices.get(i).is_some_and(|r| r.status.in_flight()))
            .collect();
        for &idx in &in_flight {
            self.update(idx, out, |rec, _| {
                device::postpone(rec, outage_ms);
                Step::default()
            });
        }
        log(
            out,
            None,
            LogLevel::Info,
            Note::BrokerBack {
                outage_ms,
                count: in_flight.len(),
            },
        );
    }
}
